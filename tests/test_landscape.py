"""Correlation matrices (Algorithm 1) and attackabilities on an analytic model, Table II helpers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from attack_models import LinearMultiLabel

import mlvis
from mlvis.analysis import CorrelationMatrix, cooccurrence_agreement, pearson, table_ii
from mlvis.analysis.correlation_matrices import approach_matrix


def _toy():
    model = LinearMultiLabel(num_labels=5)
    x = torch.rand(6, 3, 8, 8, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    return model, x


def _closed_form(model, x, eps, direction):
    """Attack each label alone by hand: BCE's gradient on a linear model points along +-w_a, so every
    MI-FGSM step is alpha * sign(w_a) (up) or -alpha * sign(w_a) (down), clipped to the box."""
    w, b = model.weight.detach().numpy(), model.bias.detach().numpy()
    flat = x.flatten(1).numpy()
    alpha, steps = 1 / 2560, int(np.floor(eps * 2560 + 1e-9))
    sign = 1 if direction == "up" else -1
    z = np.zeros((5, 5))
    own_adv = np.zeros((5, len(flat)))
    for a in range(5):
        d = np.zeros_like(flat)
        for _ in range(steps):
            d = np.clip(d + sign * alpha * np.sign(w[a]), -eps, eps)
            d = np.clip(flat + d, 0, 1) - flat
        y0 = 1 / (1 + np.exp(-(flat @ w.T + b)))
        y1 = 1 / (1 + np.exp(-((flat + d) @ w.T + b)))
        z[a] = (y1 - y0).mean(0)
        own_adv[a] = y1[:, a]
    return z, y0, own_adv


@pytest.mark.parametrize("direction", ["up", "down"])
def test_matrix_and_attackability_match_the_closed_form(direction):
    model, x = _toy()
    # over every image (flip-down over the images with the label: tests/test_correlation_budget.py)
    cm = mlvis.correlations(model, x, eps=0.004, direction=direction, cache=False, present_only=False)
    z, y0, own_adv = _closed_form(model, x, 0.004, direction)
    assert np.abs(cm.matrix - z).max() < 1e-7
    eligible = (y0.T < 0.5) if direction == "up" else (y0.T >= 0.5)  # (C, n)
    flipped = (own_adv >= 0.5) != (y0.T >= 0.5)
    assert np.array_equal(cm.eligible, eligible.sum(1))
    expected = np.where(eligible.sum(1) > 0, (flipped & eligible).sum(1) / np.maximum(eligible.sum(1), 1), np.nan)
    assert np.allclose(cm.attackability, expected, equal_nan=True)
    diag = np.diag(cm.matrix)
    assert (diag > 0).all() if direction == "up" else (diag < 0).all()
    assert cm.cost["equation_9"]["forward"] == 10 * 5 * 6  # eps/alpha x C x n


def test_cached_and_persisted_round_trip(tmp_path):
    model, x = _toy()
    with pytest.raises(ValueError, match="No flip-up correlation matrix"):
        mlvis.correlations(model)
    cm = mlvis.correlations(model, x, eps=0.002)
    served = mlvis.correlations(model)
    assert np.array_equal(served.matrix, cm.matrix)
    assert np.array_equal(served.attackability, cm.attackability, equal_nan=True)
    cm.save(tmp_path / "up.json")
    assert np.array_equal(CorrelationMatrix.load(tmp_path / "up.json").matrix, cm.matrix)
    with pytest.raises(ValueError, match="not a correlation matrix"):
        CorrelationMatrix.from_dict({"matrix": [[1]]})


def test_table_ii_and_cooccurrence_agreement():
    model, x = _toy()
    up = mlvis.correlations(model, x, eps=0.004, direction="up", cache=False)
    down = mlvis.correlations(model, x, eps=0.004, direction="down", cache=False)
    t = table_ii(up, down, frequencies=np.array([0.5, 0.4, 0.3, 0.2, 0.1]))
    assert set(t) == {"flip up", "flip down"}
    r = t["flip up"]["occurrence frequency vs confidence"]
    ok = np.isfinite(up.confidence)
    assert r.n == ok.sum()
    same = cooccurrence_agreement(up, up.matrix * 3 + 1)  # any positive affine copy correlates perfectly
    assert same.r == pytest.approx(1.0)
    assert np.isnan(pearson([1, 1, 1], [1, 2, 3]).r)  # constant input: undefined, not a crash


@pytest.mark.parametrize("name", ["demo-asl", "demo-q2l"])
def test_shipped_demo_matrices_belong_to_the_shipped_weights(name):
    model = mlvis.create_model(name, device="cpu")
    up, down = mlvis.correlations(model, direction="up"), mlvis.correlations(model, direction="down")
    # the default ones CLASS reads: fixed budget (eps 0.005), 100 images, flip-down over every image
    assert up.model == name and up.labels == model.spec.labels and up.images == 100
    assert up.eps == down.eps == 0.005 and up.budget == {} and down.budget == {}
    assert (np.diag(up.matrix) > 0).all() and (np.diag(down.matrix) < 0).all()  # the attacked label moves most
    assert (up.eligible + down.eligible == 100).all()  # every image is eligible in exactly one direction
    # beside them, the ones made with section IV-B's budget rule (one eps per model), flip-down over the
    # images with the label (read with approach_matrix)
    a_up, a_down = approach_matrix(model, "up"), approach_matrix(model, "down")
    assert a_up.model == name and a_up.labels == model.spec.labels and a_up.images == a_down.images == 32
    assert (np.diag(a_up.matrix) > 0).all() and (np.diag(a_down.matrix) <= 0).all()
    assert (a_up.eligible + a_down.eligible == a_up.images).all()  # flip-down's eligible: the present ones
    assert a_up.budget["rule"] == "approach" and a_up.budget["reached"]
    assert a_up.eps == a_down.eps == a_up.budget["eps"] and a_up.eps != 0.005
    assert a_down.budget["images"] == "present"
    with torch.no_grad():
        model.net.state_dict()[next(iter(model.net.state_dict()))].add_(1e-3)  # other weights
    with pytest.raises(ValueError, match="No flip-up"):
        mlvis.correlations(model, direction="up")
