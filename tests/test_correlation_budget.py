"""The correlation attack's budget rule (section IV-B, issue 12 §3) and the flip-down matrix over the images
where the label is present."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from attack_models import LinearMultiLabel, grid_images

import mlvis
from mlvis.analysis.correlation_matrices import BUDGET_GRID, CorrelationMatrix, approach_budget

ALPHA = 1 / 2560


def _single_label(model, x, labels, eps, direction):
    return mlvis.attack(model, x, "single-label", eps, labels=labels, direction=direction, alpha=ALPHA)


def test_the_rule_picks_the_first_budget_where_the_median_label_is_half_way():
    model = LinearMultiLabel(num_labels=6, seed=2)
    x = grid_images(5, 8, seed=9)
    grid = (0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064)
    rule = approach_budget(model, x, "up", grid=grid, alpha=ALPHA)
    # by hand: every (label, image) where the label is absent, attacked up alone at every budget
    clean = torch.sigmoid(model(x)).numpy()
    img, lab = np.nonzero(clean < 0.5)
    res = _single_label(model, x[torch.as_tensor(img)], lab, list(grid), "up")
    own = res.adv_probs[:, np.arange(len(lab)), lab]  # (K, R)
    move = np.stack([np.bincount(lab, own[k] - clean[img, lab], 6) for k in range(len(grid))])
    gap = np.bincount(lab, 0.5 - clean[img, lab], 6)
    with np.errstate(invalid="ignore", divide="ignore"):
        progress = np.where(gap > 0, move / gap, np.nan)
    median = np.nanmedian(progress, axis=1)
    first = int(np.argmax(median >= 0.5))
    assert median[first] >= 0.5 and (first == 0 or median[first - 1] < 0.5)
    assert rule.eps == grid[first] and rule.reached
    assert rule.grid == grid[: first + 1]  # the search stops at the budget it picks
    np.testing.assert_allclose(rule.progress, progress[: first + 1], rtol=1e-5, atol=1e-6)
    assert rule.to_dict()["rule"] == "approach" and rule.to_dict()["eps"] == grid[first]


def test_the_rule_says_when_no_budget_of_the_grid_is_enough():
    model = LinearMultiLabel(num_labels=6, seed=2)
    rule = approach_budget(model, grid_images(3, 8, seed=1), "up", grid=(0.0005, 0.001), alpha=ALPHA)
    assert not rule.reached and rule.eps == 0.001 and len(rule.median) == 2
    assert BUDGET_GRID[1] == 0.005  # the fixed default is on the grid


def test_correlations_with_the_rule_use_the_held_out_images_budget():
    model = LinearMultiLabel(num_labels=6, seed=2)
    x, held = grid_images(4, 8, seed=3), grid_images(4, 8, seed=4)
    with pytest.raises(ValueError, match="held-out images"):
        mlvis.correlations(model, x, eps="approach", cache=False)
    with pytest.raises(ValueError, match="a number or 'approach'"):
        mlvis.correlations(model, x, eps="auto", cache=False)
    cm = mlvis.correlations(model, x, eps="approach", held_out=held, alpha=ALPHA, cache=False)
    rule = approach_budget(model, held, "up", alpha=ALPHA)
    assert cm.eps == rule.eps and cm.budget["rule"] == "approach"
    fixed = mlvis.correlations(model, x, eps=rule.eps, alpha=ALPHA, cache=False)
    np.testing.assert_array_equal(cm.matrix, fixed.matrix)
    back = CorrelationMatrix.from_dict(cm.to_dict())
    assert back.budget == cm.budget


def test_flip_down_averages_over_the_images_where_the_label_is_present():
    model = LinearMultiLabel(num_labels=6, seed=2)
    x = grid_images(6, 8, seed=5)
    eps = 0.004
    down = mlvis.correlations(model, x, eps=eps, direction="down", alpha=ALPHA, cache=False)
    every = mlvis.correlations(model, x, eps=eps, direction="down", alpha=ALPHA, cache=False, present_only=False)
    clean = torch.sigmoid(model(x)).numpy()
    img, lab = np.nonzero(clean >= 0.5)
    res = _single_label(model, x[torch.as_tensor(img)], lab, eps, "down")
    delta = (res.adv_probs[0] - res.clean_probs).astype(np.float64)
    for a in range(6):
        rows = lab == a
        want = delta[rows].mean(0) if rows.any() else np.zeros(6)
        np.testing.assert_allclose(down.matrix[a], want, rtol=1e-6, atol=1e-9)
    assert not np.allclose(down.matrix, every.matrix)
    # the attackability is over the same images either way (those where the label could flip down)
    np.testing.assert_array_equal(down.eligible, every.eligible)
    np.testing.assert_allclose(down.attackability, every.attackability)
    assert down.budget == {"images": "present"} and every.budget == {}
    assert down.cost["backward"] < every.cost["backward"]


def test_matrices_written_before_the_rule_stay_readable():
    import json

    from mlvis.models.demo import WEIGHTS_DIR

    model = mlvis.create_model("demo-asl")
    doc = json.loads((WEIGHTS_DIR / "demo-asl.correlations-up.json").read_text())
    assert "budget" not in doc["correlations"]  # the shipped default: written before the rule
    up = mlvis.correlations(model, direction="up")
    assert up.budget == {} and up.eps == 0.005
    assert CorrelationMatrix.from_dict(up.to_dict()).to_dict() == up.to_dict()


@pytest.mark.parametrize("name", ["demo-asl", "demo-q2l"])
def test_the_rule_made_matrices_are_shipped_beside_the_default_ones(name):
    from mlvis.analysis.correlation_matrices import approach_matrix

    model = mlvis.create_model(name)
    up, down = approach_matrix(model, "up"), approach_matrix(model, "down")
    default = mlvis.correlations(model, direction="up")
    assert up.images == down.images == 32 and default.images == 100
    assert up.budget["rule"] == "approach" and up.budget["eps"] == up.eps == down.eps != default.eps
    assert up.budget["held_out_images"] == 16 and down.budget["images"] == "present"
    assert not np.array_equal(up.matrix, default.matrix)
    with pytest.raises(ValueError, match="direction"):
        approach_matrix(model, "sideways")
    with torch.no_grad():
        model.net.state_dict()[next(iter(model.net.state_dict()))].add_(1e-3)  # other weights
    with pytest.raises(ValueError, match="belongs to other weights"):
        approach_matrix(model, "up")
