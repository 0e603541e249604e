"""Figure builders of ``mlvis.viz``: the traces, shapes and pixels they produce."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import pytest

from mlvis.viz import confidence_bars, shown_label_indices, upscale_image
from mlvis.viz.gallery import ABSENT_COLOUR, PRESENT_COLOUR

LABELS = ["cat", "dog", "car", "tree", "sun"]
PROBS = np.array([0.9, 0.55, 0.2, 0.1, 0.7])


def _traces(fig: go.Figure, kind: str) -> list:
    return [t for t in fig.data if t.type == kind]


def test_bars_show_every_label_sorted_with_threshold_line():
    fig = confidence_bars(PROBS, LABELS, threshold=0.5, top=None)
    assert isinstance(fig, go.Figure)
    (bars,) = _traces(fig, "bar")
    assert bars.orientation == "h"
    assert list(bars.y) == ["cat", "sun", "dog", "car", "tree"]  # most confident first
    np.testing.assert_allclose(np.asarray(bars.x, float), [0.9, 0.7, 0.55, 0.2, 0.1])
    assert list(fig.layout.yaxis.categoryarray) == list(bars.y)
    assert fig.layout.yaxis.autorange == "reversed"  # first category at the top
    (line,) = fig.layout.shapes
    assert line.type == "line" and line.x0 == line.x1 == 0.5
    assert not _traces(fig, "scatter")  # no ground truth given, no markers


def test_bar_colours_follow_the_threshold():
    for threshold in (0.5, 0.75):
        fig = confidence_bars(PROBS, LABELS, threshold=threshold, top=None)
        bars = fig.data[0]
        expected = [PRESENT_COLOUR if p >= threshold else ABSENT_COLOUR for p in np.asarray(bars.x, float)]
        assert list(bars.marker.color) == expected
        assert fig.layout.shapes[0].x0 == threshold
    assert PRESENT_COLOUR != ABSENT_COLOUR


def test_ground_truth_markers_split_found_missed_and_false_alarms():
    truth = np.array([1, 0, 1, 0, 0])  # cat found, car missed; dog and sun are false alarms
    fig = confidence_bars(PROBS, LABELS, threshold=0.5, truth=truth, top=None)
    markers = {t.name: sorted(t.y) for t in _traces(fig, "scatter")}
    assert markers == {
        "in ground truth, found": ["cat"],
        "in ground truth, missed": ["car"],
        "false alarm": ["dog", "sun"],
    }
    assert fig.layout.showlegend is True


def test_top_keeps_predicted_and_ground_truth_labels():
    truth = np.array([0, 0, 0, 1, 0])  # "tree" is the least confident but in the ground truth
    idx = shown_label_indices(PROBS, 0.5, truth, top=1)
    assert [LABELS[i] for i in idx] == ["cat", "sun", "dog", "tree"]
    fig = confidence_bars(PROBS, LABELS, threshold=0.5, truth=truth, top=1)
    assert list(fig.data[0].y) == ["cat", "sun", "dog", "tree"]
    assert len(fig.data[0].x) == len(fig.data[0].y) == 4
    assert list(shown_label_indices(PROBS, 0.95, None, top=2)) == [0, 4]
    assert sorted(shown_label_indices(PROBS, 0.5, None, top=None)) == [0, 1, 2, 3, 4]


def test_bad_lengths_are_rejected():
    with pytest.raises(ValueError, match="labels"):
        confidence_bars(PROBS, LABELS[:3], threshold=0.5)
    with pytest.raises(ValueError, match="ground-truth"):
        confidence_bars(PROBS, LABELS, threshold=0.5, truth=[1, 0])


def test_upscale_chw_float_image_is_nearest_neighbour_uint8():
    img = np.zeros((3, 2, 2), np.float32)
    img[0, 0, 0] = 1.0  # red top-left pixel
    img[1, 1, 1] = 0.5
    img[2, 0, 1] = 2.0  # clipped to 1
    img[2, 1, 0] = -1.0  # clipped to 0
    out = upscale_image(img, scale=3)
    assert out.shape == (6, 6, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out[:3, :3], np.broadcast_to([255, 0, 0], (3, 3, 3)))
    np.testing.assert_array_equal(out[3:, 3:], np.broadcast_to([0, 128, 0], (3, 3, 3)))
    np.testing.assert_array_equal(out[:3, 3:], np.broadcast_to([0, 0, 255], (3, 3, 3)))
    np.testing.assert_array_equal(out[3:, :3], 0)


def test_upscale_accepts_hwc_uint8_and_greyscale():
    hwc = np.arange(2 * 5 * 3, dtype=np.uint8).reshape(2, 5, 3)
    out = upscale_image(hwc, scale=2)
    assert out.shape == (4, 10, 3)
    np.testing.assert_array_equal(out[::2, ::2], hwc)
    grey = upscale_image(np.full((1, 4, 4), 1.0), scale=1)
    assert grey.shape == (4, 4, 3) and (grey == 255).all()


@pytest.mark.parametrize("shape", [(64, 64), (2, 3, 64, 64), (64, 64, 4)])
def test_upscale_rejects_other_shapes(shape):
    with pytest.raises(ValueError):
        upscale_image(np.zeros(shape, np.float32))
