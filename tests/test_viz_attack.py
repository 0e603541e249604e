"""Attack Lab figures (mlvis.viz.attack): assertions on the data each figure carries."""

from __future__ import annotations

import numpy as np
import pytest

from mlvis.viz import attack as va

LABELS = [f"l{i}" for i in range(6)]


def test_nice_factor_is_1_2_or_5_times_a_power_of_ten_and_never_clips():
    assert va.nice_factor(0.01) == 50.0
    assert va.nice_factor(0.004) == 100.0
    assert va.nice_factor(0.3) == 1.0
    assert va.nice_factor(0.0) == 1.0
    for m in np.geomspace(1e-5, 0.5, 40):
        f = va.nice_factor(m)
        assert f * m <= 0.5 + 1e-12 and f * m > 0.5 / 2.5 - 1e-12
        assert f / 10 ** np.floor(np.log10(f)) in (1.0, 2.0, 5.0)


def test_amplified_perturbation_is_grey_where_nothing_changed():
    clean = np.full((3, 4, 4), 0.5)
    adv = clean.copy()
    adv[0, 0, 0] += 0.01
    adv[2, 1, 1] -= 0.004
    img, factor = va.amplified_perturbation(clean, adv)
    assert factor == 50.0 and img.shape == (4, 4, 3) and img.dtype == np.uint8
    assert img[0, 0, 0] == round((0.5 + 0.5) * 255) and img[1, 1, 2] == round((0.5 - 0.2) * 255)
    assert (img[2:, 2:] == 128).all()
    img2, f2 = va.amplified_perturbation(clean, adv, factor=10)
    assert f2 == 10 and img2[0, 0, 0] == round(0.6 * 255)


def test_perturbation_heatmaps_share_one_scale_in_8_bit_levels():
    clean = np.zeros((3, 5, 5))
    a = clean.copy()
    a[1, 2, 3] = 2 / 255
    b = clean.copy()
    b[:, 0, 0] = 4 / 255
    fig = va.perturbation_heatmaps(clean, [a, b], ["A", "B"])
    ta, tb = fig.data
    assert ta.meta == {"kind": "heatmap", "method": "A", "max_levels": pytest.approx(2.0)}
    assert tb.meta["max_levels"] == pytest.approx(4.0)
    assert ta.zmax == tb.zmax == pytest.approx(4.0) and ta.zmin == 0
    np.testing.assert_allclose(np.asarray(ta.z)[2, 3], 2.0)
    assert np.asarray(ta.z).sum() == pytest.approx(2.0)
    assert [t.showscale for t in fig.data] == [False, True]
    fig = va.perturbation_heatmaps(clean, [a], ["A"], eps=8 / 255)
    assert fig.data[0].zmax == pytest.approx(8.0)
    with pytest.raises(ValueError):
        va.perturbation_heatmaps(clean, [a, b], ["A"])


def test_confidence_change_figure_highlights_flipped_labels():
    before = np.array([0.9, 0.1, 0.45, 0.02, 0.6, 0.3])
    after = np.array([0.4, 0.2, 0.55, 0.03, 0.7, 0.1])
    a8 = after - 0.01
    fig = va.confidence_change_figure(before, after, LABELS, 0.5, after_8bit=a8, top=None)
    kinds = [t.meta["kind"] for t in fig.data]
    assert kinds == ["before", "after", "after_8bit"]
    b, a, e = fig.data
    assert list(a.y) == ["⇄ l0", "l1", "⇄ l2", "l3", "l4", "l5"]
    assert a.meta["flipped"] == ["l0", "l2"]
    np.testing.assert_allclose(b.x, before)
    np.testing.assert_allclose(a.x, after)
    np.testing.assert_allclose(e.x, a8)
    assert a.marker.color[0] == va.FLIPPED_COLOUR and a.marker.color[1] == va.AFTER_COLOUR
    assert fig.layout.shapes[0].x0 == 0.5  # the threshold line


def test_confidence_change_figure_keeps_flipped_and_present_labels_when_cut():
    c = 30
    before = np.full(c, 0.05)
    after = before.copy()
    before[7], after[7] = 0.8, 0.3  # flipped down
    before[20] = after[20] = 0.9  # present throughout
    after[np.arange(10, 20)] = np.linspace(0.06, 0.2, 10)  # growing changes
    idx = va.shown_labels(before, after, 0.5, top=5)
    assert {7, 20} <= set(idx) and len(idx) == 5
    assert {17, 18, 19} <= set(idx)  # the largest changes fill the rest
    fig = va.confidence_change_figure(before, after, [f"x{i}" for i in range(c)], 0.5, top=5)
    assert len(fig.data[0].x) == 5
    with pytest.raises(ValueError):
        va.confidence_change_figure(before, after[:3], LABELS, 0.5)


def test_flips_figure():
    fig = va.flips_figure(["BCE", "SLAM"], [1.5, 2.0], [1.0, 2.0], 24)
    exact, eight = fig.data
    assert exact.meta == {"kind": "flips"} and eight.meta == {"kind": "flips_8bit"}
    assert list(exact.x) == ["BCE", "SLAM"]
    np.testing.assert_allclose(exact.y, [1.5, 2.0])
    np.testing.assert_allclose(eight.y, [1.0, 2.0])
    assert list(exact.text) == ["1.5", "2"]
    assert "of 24" in fig.layout.yaxis.title.text
