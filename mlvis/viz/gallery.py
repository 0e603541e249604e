"""Figure and image builders for the Home gallery: pure functions, no Streamlit.

``confidence_bars`` draws one scene's per-label confidences as horizontal bars with the decision
threshold as a vertical line; ``upscale_image`` turns a small float image into a crisp uint8
array for display.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go

from mlvis.errors import DataError, InvalidInput

PRESENT_COLOUR = "#1f77b4"  # bar of a label predicted present (confidence >= threshold)
ABSENT_COLOUR = "#c7cdd6"  # bar of a label predicted absent
THRESHOLD_COLOUR = "#444444"
FOUND_COLOUR = "#2ca02c"  # ground-truth label the model predicted present (true positive)
MISSED_COLOUR = "#d62728"  # ground-truth label predicted absent (false negative)
FALSE_ALARM_COLOUR = "#d62728"  # label predicted present that is not in the ground truth (false positive)

#: x position of the ground-truth markers, right of the bars (confidences end at 1.0)
MARKER_X = 1.08


def shown_label_indices(
    probs: np.ndarray, threshold: float, truth: np.ndarray | None = None, top: int | None = 8
) -> np.ndarray:
    """Indices of the labels a chart shows, most confident first.

    The ``top`` most confident labels, plus every label predicted present and every
    ground-truth label (so misses and false alarms are never hidden); ``top=None`` shows all.
    """
    probs = np.asarray(probs, dtype=np.float64).reshape(-1)
    order = np.argsort(-probs, kind="stable")
    if top is None or top >= len(probs):
        return order
    keep = np.zeros(len(probs), dtype=bool)
    keep[order[: max(int(top), 0)]] = True
    keep |= probs >= threshold
    if truth is not None:
        keep |= np.asarray(truth).reshape(-1) > 0.5
    return order[keep[order]]


def confidence_bars(
    probs: np.ndarray | Sequence[float],
    labels: Sequence[str],
    threshold: float,
    truth: np.ndarray | Sequence[float] | None = None,
    top: int | None = 8,
    title: str | None = None,
    show_legend: bool = True,
) -> go.Figure:
    """One scene's confidences as a horizontal bar chart.

    Args:
        probs: ``(C,)`` sigmoid confidences in [0, 1].
        labels: the ``C`` label names, in the order of ``probs``.
        threshold: decision threshold; drawn as a vertical line (``layout.shapes[0]``).
        truth: optional ``(C,)`` multi-hot ground truth. Ground-truth labels get a star right of
            the bars (green when predicted present, red when missed); labels predicted present
            but absent from the ground truth get a red cross.
        top: how many of the most confident labels to show (see ``shown_label_indices``);
            ``None`` shows every label.
        title: optional chart title.
        show_legend: show the legend of the ground-truth markers (when ``truth`` is given); a
            gallery of many charts can explain the markers once instead.

    Returns:
        A figure whose first trace is the bar trace (``x`` = confidences, ``y`` = label names,
        most confident at the top); bars are coloured by predicted present/absent.
    """
    probs = np.asarray(probs, dtype=np.float64).reshape(-1)
    if len(labels) != len(probs):
        raise InvalidInput(f"Give one confidence per label: got {len(probs)} confidences for {len(labels)} labels.")
    truth_arr = None if truth is None else np.asarray(truth, dtype=np.float64).reshape(-1) > 0.5
    if truth_arr is not None and len(truth_arr) != len(probs):
        raise InvalidInput(
            f"Give one ground-truth value per label: got {len(truth_arr)} ground-truth values for {len(labels)} labels."
        )

    idx = shown_label_indices(probs, threshold, truth_arr, top)
    names = [str(labels[i]) for i in idx]
    p = probs[idx]
    present = p >= threshold
    fig = go.Figure()
    fig.add_trace(
        go.Bar(
            x=p,
            y=names,
            orientation="h",
            name="confidence",
            marker={"color": [PRESENT_COLOUR if v else ABSENT_COLOUR for v in present]},
            text=[f"{v:.2f}" for v in p],
            textposition="inside",
            insidetextanchor="end",
            textfont={"size": 10, "color": ["white" if v else "#31333f" for v in present]},
            customdata=np.where(present, "predicted present", "predicted absent"),
            hovertemplate="%{y}: %{x:.3f} (%{customdata})<extra></extra>",
            showlegend=False,
        )
    )
    if truth_arr is not None:
        t = truth_arr[idx]
        groups = (
            ("in ground truth, found", t & present, "star", FOUND_COLOUR),
            ("in ground truth, missed", t & ~present, "star", MISSED_COLOUR),
            ("false alarm", ~t & present, "x", FALSE_ALARM_COLOUR),
        )
        for name, mask, symbol, colour in groups:
            fig.add_trace(
                go.Scatter(
                    x=[MARKER_X] * int(mask.sum()),
                    y=[n for n, m in zip(names, mask) if m],
                    mode="markers",
                    name=name,
                    marker={"symbol": symbol, "color": colour, "size": 11},
                    hovertemplate="%{y}: " + name + "<extra></extra>",
                    cliponaxis=False,
                )
            )
    fig.add_vline(
        x=threshold,
        line={"color": THRESHOLD_COLOUR, "dash": "dash", "width": 1.5},
        annotation_text=f"threshold {threshold:g}",
        annotation_position="top",
        annotation_font_size=10,
    )
    fig.update_layout(
        title={"text": title} if title else None,
        height=(60 if show_legend and truth_arr is not None else 30) + 40 + 22 * len(names),
        margin={"l": 10, "r": 10, "t": 40 if title else 24, "b": 10},
        xaxis={"range": [0, MARKER_X + 0.05], "title": None, "tickvals": [0, 0.5, 1.0]},
        uniformtext={"minsize": 8, "mode": "hide"},  # a value that does not fit inside its bar is left to the hover
        yaxis={"categoryorder": "array", "categoryarray": names, "autorange": "reversed", "automargin": True},
        legend={"orientation": "h", "yanchor": "top", "y": -0.05 if len(names) > 6 else -0.15, "x": 0},
        showlegend=show_legend and truth_arr is not None,
        bargap=0.25,
    )
    return fig


def upscale_image(image: np.ndarray, scale: int = 4) -> np.ndarray:
    """A small image as a displayable ``(H*scale, W*scale, 3)`` uint8 array.

    Accepts channel-first ``(3, H, W)`` (the library's convention: any image whose first axis has
    1 or 3 entries) or channel-last ``(H, W, 3)`` images, float in [0, 1] (values outside are
    clipped) or uint8. Enlarges with nearest neighbour so that the pixels a 64x64 model sees stay
    crisp.
    """
    img = np.asarray(image)
    if img.ndim != 3:
        raise DataError(f"An image must be (3, H, W) or (H, W, 3), not shape {img.shape}.")
    if img.shape[0] in (1, 3):  # channel-first, the library's convention
        img = np.transpose(img, (1, 2, 0))
    if img.shape[-1] == 1:
        img = np.repeat(img, 3, axis=-1)
    if img.shape[-1] != 3:
        raise DataError(f"An image must have 1 or 3 channels, not shape {np.asarray(image).shape}.")
    if img.dtype != np.uint8:
        img = (np.clip(np.nan_to_num(img.astype(np.float32)), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    scale = int(scale)
    if scale < 1:
        raise InvalidInput(f"The upscaling factor must be a whole number of at least 1, not {scale}.")
    return np.repeat(np.repeat(img, scale, axis=0), scale, axis=1)
