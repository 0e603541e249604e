"""Figures of the analysis pages (mlvis.viz.profiles, landscape, sweep, histograms): assertions on their data."""

from __future__ import annotations

import numpy as np
import pytest

from mlvis.analysis import fit_profile
from mlvis.viz import histograms as vh
from mlvis.viz import landscape as vl
from mlvis.viz import profiles as vp
from mlvis.viz import sweep as vs


@pytest.fixture(scope="module")
def profile():
    eps = np.arange(0, 21) * 0.01
    bce = 10 * (1 - np.exp(-eps / 0.06))
    linear = np.minimum(bce + 0.5 * np.exp(-eps / 0.05) * (eps > 0), 10)
    return fit_profile(eps, bce, linear, labels=24, model="toy")


def kinds(fig) -> list[str]:
    return [t.meta["kind"] for t in fig.data]


def test_profile_figure_shows_the_probes_the_points_the_fit_and_eps_max(profile):
    fig = vp.profile_figure(profile)
    assert kinds(fig) == ["bce", "linear", "points", "fit", "grid"]
    bce, linear, points, fit, grid = fig.data
    np.testing.assert_allclose(bce.y, profile.flips_bce)
    np.testing.assert_allclose(linear.y, profile.flips_linear)
    np.testing.assert_allclose(points.y, np.maximum(profile.flips_bce, profile.flips_linear))
    np.testing.assert_allclose(fit.y, profile.expected_flips(np.asarray(fit.x)))
    assert fit.x[-1] == pytest.approx(max(profile.eps_max, profile.eps[-1]))
    np.testing.assert_allclose(grid.x, np.asarray(vp.FRACTIONS) * profile.eps_max)
    assert fig.layout.shapes[0].x0 == pytest.approx(profile.eps_max)
    assert "of 24" in fig.layout.yaxis.title.text


def test_profiles_figure_overlays_flip_ratios(profile):
    other = fit_profile(profile.eps, profile.flips_bce / 2, profile.flips_linear / 2, labels=24, model="half")
    fig = vp.profiles_figure([profile, other])
    assert [t.meta["model"] for t in fig.data] == ["toy", "half"]
    for t, p in zip(fig.data, (profile, other)):
        np.testing.assert_allclose(t.y, p.flip_ratio(np.asarray(t.x)))
    with pytest.raises(ValueError):
        vp.profiles_figure([])


def test_matrix_heatmap_blanks_the_diagonal_and_centres_on_zero():
    m = np.array([[5.0, 0.1, -0.3], [0.2, 5.0, 0.0], [0.05, -0.1, 5.0]])
    fig = vl.matrix_heatmap(m, ["a", "b", "c"], "up", "correlations_up")
    t = fig.data[0]
    z = np.asarray(t.z, dtype=float)
    assert np.isnan(np.diag(z)).all()
    np.testing.assert_allclose(z[0, 2], -0.3)
    assert t.meta == {"kind": "correlations_up", "min": -0.3, "max": 0.2}
    assert t.zmid == 0 and t.zmin == -0.3 and t.zmax == 0.3
    assert list(t.x) == ["a", "b", "c"]
    seq = vl.matrix_heatmap(m, ["a", "b", "c"], "co", "co", diverging=False, blank_diagonal=False)
    assert seq.data[0].zmid is None and np.asarray(seq.data[0].z)[0, 0] == 5.0
    with pytest.raises(ValueError):
        vl.matrix_heatmap(m, ["a", "b"], "x", "x")


def test_attackability_figure():
    fig = vl.attackability_figure(["a", "b"], [0.5, np.nan], [0.1, 0.2], [0.2, 0.3], None)
    assert kinds(fig) == ["attackability_up", "attackability_down", "confidence_up"]
    np.testing.assert_allclose(fig.data[0].y, [0.5, np.nan])
    with pytest.raises(ValueError):
        vl.attackability_figure(["a"], [0.5, 0.1], [0.1, 0.2])


def test_sweep_figures():
    eps = [0.01, 0.02]
    mean = np.array([[1.0, 2.0], [1.5, 2.5]])
    fig = vs.sweep_flips_figure(eps, mean, mean / 10, ["BCE", "SLAM"], 24)
    assert [t.meta["method"] for t in fig.data] == ["BCE", "SLAM"]
    np.testing.assert_allclose(fig.data[1].y, [1.5, 2.5])
    np.testing.assert_allclose(fig.data[1].error_y.array, [0.15, 0.25])
    with pytest.raises(ValueError):
        vs.sweep_flips_figure(eps, mean[:1], mean[:1], ["BCE", "SLAM"])

    tmean = np.array([[0.5, 1.2, 0.9], [0.8, 1.5, 2.0]])
    fig = vs.targets_figure([1, 2, 3], tmean, tmean * 0, eps)
    best = [t.meta for t in fig.data if t.meta["kind"] == "best"]
    assert best == [
        {"kind": "best", "eps": 0.01, "targets": 2, "flips": 1.2},
        {"kind": "best", "eps": 0.02, "targets": 3, "flips": 2.0},
    ]

    fig = vs.bce_linear_figure(eps, {"bce": ([1, 3], [0.1, 0.2]), "linear": ([2, 2.5], [0.3, 0.1])})
    means = {t.meta["method"]: t for t in fig.data if t.meta["kind"] == "mean"}
    np.testing.assert_allclose(means["linear"].y, [2, 2.5])
    band = next(t for t in fig.data if t.meta == {"kind": "band", "method": "bce"})
    np.testing.assert_allclose(band.y, [1.1, 3.2, 2.8, 0.9])

    fig = vs.q_totals_figure([0.25, 0.5], [3.0, 3.5], baseline=2.5)
    np.testing.assert_allclose(fig.data[0].y, [3.0, 3.5])
    assert fig.layout.shapes[0].y0 == 2.5


def test_histogram_counts_and_figure():
    clean_pred = np.array([[False, False, True], [False, True, True]])
    before = np.array([[0.05, 0.15, 0.9], [0.02, 0.8, 0.7]])
    after = np.array([[0.45, 0.65, 0.9], [0.35, 0.4, 0.68]])
    up = vh.histogram_counts(after, clean_pred, 0.5, "up")
    assert up["total"] == 3 and up["flipped"] == 1 and up["near"] == 2  # 0.45 and 0.35 sit in [0.3, 0.5)
    assert up["counts"].tolist() == [0, 0, 0, 1, 1, 0, 1, 0, 0, 0]
    down = vh.histogram_counts(after, clean_pred, 0.5, "down")
    assert down["total"] == 3 and down["flipped"] == 1 and down["near"] == 1  # 0.4 flipped; 0.68 in [0.5, 0.7)
    every = vh.histogram_counts(after, clean_pred, 0.5, "all")
    assert every["total"] == 6 and every["flipped"] == 2
    fig = vh.confidence_histograms(before, {"BCE": after}, clean_pred, 0.5, "up")
    assert kinds(fig) == ["before", "after"]
    assert fig.data[0].meta["counts"] == [2, 1, 0, 0, 0, 0, 0, 0, 0, 0]
    assert fig.data[1].meta["flipped"] == 1 and fig.data[1].meta["near"] == 2
    assert "flipped: 1 · in the band: 2" in fig.layout.annotations[1].text
    with pytest.raises(ValueError):
        vh.histogram_counts(after, clean_pred, 0.5, "sideways")
