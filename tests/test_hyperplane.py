"""The 2-D hyperplane simulation (appendices G and H, Fig. 18) and its figures.

The closed-form gradients are checked against autograd through the project's own attack losses
(``mlvis.attacks.losses``) and against finite differences; the walk against its projection, its
step rule and hand-counted flips; the Fig. 18 preset against the paper's point.
"""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import pytest
import torch

from mlvis.analysis import hyperplane as hp
from mlvis.app import hyperplane_page
from mlvis.attacks import losses as attack_losses
from mlvis.viz import flips_per_step_figure, flips_vs_eps_figure, plane_figure
from mlvis.viz.hyperplane import clip_line


def random_setup(seed: int, n_labels: int = 7, batch: int = 9):
    rng = np.random.default_rng(seed)
    b = hp.make_boundaries(rng.normal(0, 8, (n_labels, 2)), rng.normal(0, 3, n_labels))
    points = rng.uniform(0, 1, (batch, 2))
    target = (rng.uniform(size=(batch, n_labels)) > 0.5).astype(float)
    return b, points, target


# ----------------------------------------------------------------------------------------------------------------------
# losses and gradients


@pytest.mark.parametrize(
    ("loss", "p", "q"),
    [("bce", 1.0, 0.5), ("linear", 1.0, 0.5), ("slam", 0.4, 0.5), ("slam", 1.0, 1.0), ("slam", 0.0, 0.7)],
)
def test_loss_and_gradient_match_autograd_through_the_attack_losses(loss, p, q):
    b, points, target = random_setup(0)
    mix = hp.loss_mix(loss, p, q)
    value, grad = hp.loss_and_gradient(b, points, target, mix)

    x = torch.tensor(points, dtype=torch.float64, requires_grad=True)
    logits = x @ torch.tensor(b.weights).T + torch.tensor(b.biases)
    t = torch.tensor(target)
    kwargs = {"p": p, "q": q} if loss == "slam" else {}
    ref = attack_losses.get_loss(loss).fn(logits, t, **kwargs)
    (ref_grad,) = torch.autograd.grad(ref.sum(), x)
    np.testing.assert_allclose(value, ref.detach().numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(grad, ref_grad.numpy(), rtol=1e-10, atol=1e-12)


def test_gradient_matches_finite_differences_with_label_weights_and_per_row_mix():
    b, points, target = random_setup(1, n_labels=5, batch=6)
    mix = np.linspace(0, 1, len(points))
    lw = np.array([1.0, 0.0, 2.0, 0.5, 1.0])
    _, grad = hp.loss_and_gradient(b, points, target, mix, lw)
    h = 1e-6
    for d in range(2):
        step = np.zeros(2)
        step[d] = h
        up, _ = hp.loss_and_gradient(b, points + step, target, mix, lw)
        down, _ = hp.loss_and_gradient(b, points - step, target, mix, lw)
        np.testing.assert_allclose(grad[:, d], (up - down) / (2 * h), rtol=1e-6, atol=1e-7)


def test_loss_mix_names_the_losses():
    assert hp.loss_mix("bce") == 1.0 and hp.loss_mix("linear") == 0.0
    assert hp.loss_mix("slam", 0.4, 0.5) == pytest.approx(0.2)
    with pytest.raises(ValueError, match="Unknown loss 'hinge'"):
        hp.loss_mix("hinge")
    with pytest.raises(ValueError, match="p and q must lie in"):
        hp.loss_mix("slam", 1.5, 0.5)


# ----------------------------------------------------------------------------------------------------------------------
# the walk


def test_first_step_is_the_sign_of_the_descent_direction_by_hand():
    # one label, logit = 50 * x1 - 27.5 (boundary x1 = 0.55), starts absent: t = 1, the walk goes right
    b = hp.make_boundaries([(50.0, 0.0)], [-27.5])
    sim = hp.simulate(b, (0.5, 0.5), [0.1], ["bce"], alpha=0.02)
    np.testing.assert_allclose(sim.points[0, 1], [0.52, 0.5])  # x2's gradient is 0: sign 0, no move
    assert sim.steps.tolist() == [5]


def test_flips_per_step_are_counted_by_hand():
    # boundary a at x1 = 0.55 (starts absent, flips up at step 3); boundary b at x1 = 0.585 on the other
    # side (starts present: it flips down at step 5); c can never flip inside the box
    b = hp.make_boundaries([(50, 0), (-50, 0), (0, 50)], [-27.5, 29.25, -45.0], ["a", "b", "c"])
    sim = hp.simulate(b, (0.5, 0.5), [0.1], ["linear", "bce"], alpha=0.02, steps=8)
    assert b.predict(np.array([0.5, 0.5])).tolist() == [False, True, False]
    for loss in ("linear", "bce"):
        tr = sim.trajectory(loss, 0.1)
        np.testing.assert_allclose(tr.points[:, 0], [0.5, 0.52, 0.54, 0.56, 0.58, 0.6, 0.6, 0.6, 0.6])
        assert tr.flips.tolist() == [0, 0, 0, 1, 1, 2, 2, 2, 2]
        assert tr.flipped[-1].tolist() == [True, True, False]
        assert tr.final_flips == 2
    # flips are recounted from the points, over every label
    manual = (b.predict(sim.points) != sim.clean).sum(-1)
    assert (sim.flips == manual).all()


@pytest.mark.parametrize("seed", range(4))
def test_projection_onto_the_box_and_the_unit_square_holds(seed):
    rng = np.random.default_rng(seed)
    b = hp.random_boundaries(8, seed)
    start = (float(rng.uniform(0, 0.1)), float(rng.uniform(0.9, 1)))  # near a corner: [0, 1] binds too
    eps = [0.03, 0.12, 0.25]
    sim = hp.simulate(b, start, eps, hp.LOSSES, alpha=0.02, steps=60, momentum=float(rng.uniform()))
    lo = np.maximum(np.asarray(start) - sim.eps[:, None], 0)[:, None]
    hi = np.minimum(np.asarray(start) + sim.eps[:, None], 1)[:, None]
    assert (sim.points >= lo - 1e-15).all() and (sim.points <= hi + 1e-15).all()
    assert ((sim.points >= 0) & (sim.points <= 1)).all()
    # not vacuous: with 60 steps of 0.02 every walk reaches the edge of its box
    at_edge = np.isclose(sim.points, lo) | np.isclose(sim.points, hi)
    assert at_edge.any(axis=(1, 2)).all()


def test_the_paper_step_rule_never_binds_so_a_smaller_box_is_a_prefix():
    b = hp.random_boundaries(6, 3)
    eps = [0.02, 0.1, 0.3, 0.31]
    sim = hp.simulate(b, (0.5, 0.5), eps, ["linear", "bce"], alpha=0.02)
    assert sim.steps.tolist() == [1, 5, 15, 15] * 2
    for loss in ("linear", "bce"):
        longest = sim.trajectory(loss, 0.31)
        for e in eps:
            tr = sim.trajectory(loss, e)
            # equal up to rounding: at the last step the clip may move a point by one ulp onto the box edge
            np.testing.assert_allclose(tr.points, longest.points[: tr.steps + 1], rtol=0, atol=1e-12)
            assert (np.abs(tr.points - 0.5).max(-1) <= np.arange(tr.steps + 1) * 0.02 + 1e-12).all()


def test_slam_interpolates_between_linear_and_bce_and_takes_p_from_the_profile():
    b = hp.preset("fig18")
    boxes = (0.1, 0.3)
    ref = hp.simulate(b, eps=boxes, losses=["linear", "bce"])
    as_bce = hp.simulate(b, eps=boxes, losses=["slam"], p=1.0, q=1.0)
    as_linear = hp.simulate(b, eps=boxes, losses=["slam"], p=0.0, q=0.5)
    np.testing.assert_array_equal(as_bce.points, ref.points[2:])
    np.testing.assert_array_equal(as_linear.points, ref.points[:2])
    auto = hp.simulate(b, eps=boxes, losses=["linear", "bce", "slam"])
    best = np.maximum(auto.final_flips[:2], auto.final_flips[2:4])
    np.testing.assert_allclose(auto.p[4:], best / b.num_labels)  # equation 7 with the toy's own profile
    assert np.isnan(auto.p[:4]).all()
    np.testing.assert_allclose(auto.mix[4:], auto.p[4:] * 0.5)


def test_preset_fig18_greedy_wins_the_small_box_and_patient_the_large_one():
    b = hp.preset("fig18")
    assert b.num_labels == 5
    for momentum in (1.0, 0.0):  # MI-FGSM's momentum and the plain sign steps of the paper's script
        sim = hp.simulate(b, hp.DEFAULT_START, hp.DEFAULT_BOXES, [hp.GREEDY, hp.PATIENT], momentum=momentum)
        small, large = hp.DEFAULT_BOXES
        greedy_small = sim.trajectory(hp.GREEDY, small).final_flips
        patient_small = sim.trajectory(hp.PATIENT, small).final_flips
        greedy_large = sim.trajectory(hp.GREEDY, large).final_flips
        patient_large = sim.trajectory(hp.PATIENT, large).final_flips
        assert greedy_small > patient_small
        assert patient_large > greedy_large
        assert (greedy_small, patient_small, greedy_large, patient_large) == (2, 0, 2, 5)
    curve = hp.flips_vs_eps(b, losses=[hp.GREEDY, hp.PATIENT])
    greedy, patient = curve.of(hp.GREEDY), curve.of(hp.PATIENT)
    k_small, k_large = (int(np.flatnonzero(np.isclose(curve.eps, e))[0]) for e in hp.DEFAULT_BOXES)
    assert greedy[k_small] > patient[k_small] and patient[k_large] > greedy[k_large]
    # the curves cross once: greedy is ahead up to some budget, patient from a larger one on
    assert (greedy[curve.eps <= 0.12] >= patient[curve.eps <= 0.12]).all()
    assert (patient[(curve.eps >= 0.16) & (curve.eps <= 0.5)] >= greedy[(curve.eps >= 0.16) & (curve.eps <= 0.5)]).all()


def test_preset_aligned_greedy_and_patient_agree():
    sim = hp.simulate(hp.preset("aligned"), losses=[hp.GREEDY, hp.PATIENT])
    np.testing.assert_array_equal(sim.final_flips[:2], sim.final_flips[2:])


def test_flips_vs_eps_equals_separate_simulations():
    b = hp.random_boundaries(5, 11)
    grid = [0.04, 0.1, 0.22]
    curve = hp.flips_vs_eps(b, (0.4, 0.6), grid, ["linear", "bce", "slam"], q=0.3)
    for j, loss in enumerate(curve.losses):
        for k, e in enumerate(grid):
            alone = hp.simulate(b, (0.4, 0.6), [e], ["linear", "bce", "slam"], q=0.3)
            assert curve.flips[j, k] == alone.trajectory(loss, e).final_flips


def test_eps_grid_holds_multiples_of_alpha_and_the_boxes():
    grid = hp.eps_grid(0.02, (0.1, 0.37))
    assert grid[0] == pytest.approx(0.02) and 0.37 in grid and 0.1 in grid
    assert grid.max() <= 1.0 and (np.diff(grid) > 0).all()
    assert len(hp.eps_grid(0.001, (0.1, 0.3), max_points=50)) <= 52


# ----------------------------------------------------------------------------------------------------------------------
# boundaries: presets, random, validation, text form


def test_random_boundaries_are_reproducible_and_near_the_start():
    a, b = hp.random_boundaries(6, 5), hp.random_boundaries(6, 5)
    np.testing.assert_array_equal(a.weights, b.weights)
    assert not np.array_equal(a.weights, hp.random_boundaries(6, 6).weights)
    # ||w||_1 = 50 (up to the 3-decimal rounding) and every line within L-inf distance 0.3 of the start
    np.testing.assert_allclose(np.abs(a.weights).sum(1), 50, atol=0.01)
    dist = np.abs(a.logits(np.array(hp.DEFAULT_START))) / np.abs(a.weights).sum(1)
    assert ((dist > 0.01) & (dist <= 0.3 + 1e-3)).all()
    assert a.names == ("a", "b", "c", "d", "e", "f")
    with pytest.raises(ValueError, match="1..32"):
        hp.random_boundaries(0, 1)


def test_unknown_preset_names_the_known_ones():
    with pytest.raises(ValueError, match="fig18, aligned"):
        hp.preset("fig19")


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([], "The boundary table is empty"),
        ([("a", 1, None, 0)], r"Row 1 \(label 'a'\) has no value in w2"),
        ([("a", 1, 2, 0), (None, 1, float("nan"), 0)], "Row 2 has no value in w2"),
        ([("a", "x", 2, 0)], r"Row 1 \(label 'a'\) has 'x' in w1, which is not a number"),
        ([("a", 1, 2, 0), ("b", 0, 0, 3)], r"Row 2 \(label 'b'\) has w1 = w2 = 0"),
        ([("a", float("inf"), 2, 0)], "w1 = inf, which is not a finite number"),
        ([("a", 1, 2, 1e9)], "keep |values| below"),
        ([("a", 1, 2, 0), ("a", 2, 1, 0)], "'a' appears more than once"),
        ([(f"l{i}", 1, 1, 0) for i in range(33)], "At most 32 boundaries"),
        ([("a", 1, 2)], "Row 1 has 3 values"),
    ],
    ids=["empty", "missing", "nan", "text", "zero-normal", "inf", "huge", "duplicate", "too-many", "short-row"],
)
def test_bad_rows_raise_a_sentence_that_names_the_row(rows, message):
    with pytest.raises(ValueError, match=message):
        hp.Boundaries.from_rows(rows)


def test_rows_round_trip_through_text_and_empty_names_become_letters():
    b = hp.Boundaries.from_rows([("", 1.5, -2, 0.25), ("x:y;z", 3, 4, -1e-3), (None, 1, 0, 0)])
    assert b.names == ("a", "x:y;z", "c")
    text = hyperplane_page.format_rows(b.rows())
    assert text == "a:1.5,-2,0.25;x_y_z:3,4,-0.001;c:1,0,0"
    back = hp.Boundaries.from_rows(hyperplane_page.parse_rows(text))
    np.testing.assert_array_equal(back.weights, b.weights)
    np.testing.assert_array_equal(back.biases, b.biases)
    fig18 = hp.preset("fig18")
    assert hyperplane_page.parse_rows(hyperplane_page.format_rows(fig18.rows())) == fig18.rows()
    for bad in ("", "a:1,2", "a:1,2,x", "a1,2,3"):
        with pytest.raises(ValueError):
            hyperplane_page.parse_rows(bad)


def test_boundaries_are_read_only():
    b = hp.preset()
    with pytest.raises(ValueError):
        b.weights[0, 0] = 3.0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"start": (1.2, 0.5)}, "start point must be two numbers in"),
        ({"eps": [-0.1]}, "Every eps must be a finite number >= 0"),
        ({"alpha": 0.0}, "alpha must be a positive number"),
        ({"steps": -1}, "number of steps must lie in"),
        ({"eps": [0.5], "alpha": 1e-5}, "more than 5000"),
        ({"momentum": 2.0}, "momentum must lie in"),
        ({"losses": []}, "Choose at least one loss"),
        ({"losses": ["slam"], "p": 1.5}, "p must lie in"),
    ],
)
def test_bad_settings_raise_sentences(kwargs, message):
    with pytest.raises(ValueError, match=message):
        hp.simulate(hp.preset(), **kwargs)


# ----------------------------------------------------------------------------------------------------------------------
# figures


def test_clip_line_to_the_unit_square():
    np.testing.assert_allclose(sorted(clip_line((1, 1), -1).tolist()), [[0, 1], [1, 0]])
    np.testing.assert_allclose(sorted(clip_line((1, 0), -0.3).tolist()), [[0.3, 0], [0.3, 1]])
    np.testing.assert_allclose(sorted(clip_line((0, 2), -1).tolist()), [[0, 0.5], [1, 0.5]])
    assert clip_line((1, 1), -3) is None  # misses the square
    assert clip_line((1, 1), -2) is None  # touches the corner (1, 1) only
    seg = clip_line((25, -25), 5.1)  # fig18's boundary c: v - u = 0.204
    np.testing.assert_allclose(seg[:, 1] - seg[:, 0], 0.204)


def walks(fig: go.Figure) -> dict:
    return {(t.meta["loss"], t.meta["eps"]): t for t in fig.data if t.meta and t.meta.get("kind") == "walk"}


def test_plane_figure_draws_boundaries_boxes_and_walks_per_panel():
    sim = hp.simulate(hp.preset(), losses=["linear", "bce", "slam"])
    fig = plane_figure(sim)
    found = walks(fig)
    assert set(found) == {(loss, e) for loss in ("linear", "bce", "slam") for e in (0.1, 0.3)}
    for (loss, e), trace in found.items():
        tr = sim.trajectory(loss, e)
        np.testing.assert_allclose(np.c_[trace.x, trace.y], tr.points)
        assert trace.meta["final_flips"] == tr.final_flips
        assert f"{tr.final_flips} flip" in trace.name
    boundaries = [t for t in fig.data if t.meta and t.meta.get("kind") == "boundary"]
    assert len(boundaries) == 2 * 5  # every boundary in both panels
    boxes = {t.meta["eps"]: t for t in fig.data if t.meta and t.meta.get("kind") == "box"}
    assert sorted(boxes) == [0.1, 0.3]
    np.testing.assert_allclose([min(boxes[0.3].x), max(boxes[0.3].x)], [0.2, 0.8])
    assert fig.layout.xaxis.range == (0, 1) and fig.layout.xaxis2.range == (0, 1)
    assert [a.text for a in fig.layout.annotations] == ["ε = 0.1 (5 steps)", "ε = 0.3 (15 steps)"]


def test_step_and_eps_figures_carry_the_counts():
    b = hp.preset()
    sim = hp.simulate(b, losses=["linear", "bce"])
    fig = flips_per_step_figure(sim)
    assert len(fig.data) == 4
    for t in fig.data:
        tr = sim.trajectory(t.meta["loss"], t.meta["eps"])
        np.testing.assert_array_equal(t.y, tr.flips)
        np.testing.assert_array_equal(t.x, np.arange(tr.steps + 1))
    curve = hp.flips_vs_eps(b)
    fig = flips_vs_eps_figure(curve, (0.1, 0.3))
    assert [t.meta["loss"] for t in fig.data] == ["linear", "bce"]
    for t in fig.data:
        np.testing.assert_array_equal(t.y, curve.of(t.meta["loss"]))
        np.testing.assert_allclose(t.x, curve.eps)
    assert sorted(s.x0 for s in fig.layout.shapes) == [0.1, 0.3]
