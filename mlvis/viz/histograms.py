"""Confidence histograms before and after attacks (appendix A, Figs. 10 and 11). Pure plotly, no Streamlit.

``confidence_histograms`` counts the confidences of the chosen labels (those the attack must flip up, i.e.
predicted absent on the clean image, those to flip down, or all) in bins of 0.1, before the attack and
after each method, side by side on one count axis. The flip region (past the threshold) is shaded green
and the *threshold band* (the two bins short of the threshold, where appendix A finds BCE leaves many
labels that it moved but did not flip) is shaded orange.

``histogram_counts`` is the arithmetic, for tests and tables.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from mlvis.errors import InvalidInput
from mlvis.metrics import flip_count

BEFORE_COLOUR = "#8c96a5"
AFTER_COLOUR = "#1f77b4"
FLIP_REGION = "rgba(44, 160, 44, 0.12)"
BAND_REGION = "rgba(255, 127, 14, 0.16)"
BAND_WIDTH = 0.2


def _selected(values: np.ndarray, clean_pred: np.ndarray, direction: str) -> np.ndarray:
    values, clean_pred = np.asarray(values, np.float64), np.asarray(clean_pred, bool)
    if values.shape != clean_pred.shape:
        raise InvalidInput(
            f"The confidences {values.shape} and the clean predictions {clean_pred.shape} must have the same shape."
        )
    if direction == "up":
        return values[~clean_pred]
    if direction == "down":
        return values[clean_pred]
    if direction == "all":
        return values.reshape(-1)
    raise InvalidInput(f"The direction must be up, down or all, not {direction!r}.")


def histogram_counts(
    values: np.ndarray, clean_pred: np.ndarray, threshold: float, direction: str = "up", bins: int = 10
) -> dict:
    """Counts of the selected labels' confidences in ``bins`` equal bins of [0, 1], plus how many are past the
    threshold (``flipped``, for up / down: on the other side from where they started) and how many lie in the
    threshold band (``near``: within ``BAND_WIDTH`` short of it on the attacked side)."""
    v = _selected(values, clean_pred, direction)
    edges = np.linspace(0.0, 1.0, int(bins) + 1)
    counts, _ = np.histogram(np.clip(v, 0.0, 1.0), bins=edges)
    if direction == "up":
        flipped = int((v >= threshold).sum())
        near = int(((v >= threshold - BAND_WIDTH) & (v < threshold)).sum())
    elif direction == "down":
        flipped = int((v < threshold).sum())
        near = int(((v >= threshold) & (v < threshold + BAND_WIDTH)).sum())
    else:
        flipped = int(flip_count(np.asarray(values), np.asarray(clean_pred, bool), threshold).sum())
        near = int((np.abs(v - threshold) < BAND_WIDTH).sum())
    return {"edges": edges, "counts": counts.astype(np.int64), "flipped": flipped, "near": near, "total": int(v.size)}


def confidence_histograms(
    before: np.ndarray,
    afters: Mapping[str, np.ndarray],
    clean_pred: np.ndarray,
    threshold: float,
    direction: str = "up",
    bins: int = 10,
    log_y: bool = False,
) -> go.Figure:
    """One panel before the attack and one per method (``afters``: name -> ``(N, C)`` confidences).

    Trace ``meta``: ``{"kind": "before" | "after", "method": ..., "counts": [...], "flipped": ..., "near": ...}``.
    """
    panels = [("before the attack", np.asarray(before), "before")] + [
        (str(k), np.asarray(v), "after") for k, v in afters.items()
    ]
    fig = make_subplots(
        rows=1,
        cols=len(panels),
        shared_yaxes=True,
        subplot_titles=[p[0] for p in panels],
        horizontal_spacing=0.02,
    )
    if direction == "up":
        flip_x, band_x = (threshold, 1.0), (threshold - BAND_WIDTH, threshold)
    elif direction == "down":
        flip_x, band_x = (0.0, threshold), (threshold, threshold + BAND_WIDTH)
    else:
        flip_x, band_x = None, (threshold - BAND_WIDTH, threshold + BAND_WIDTH)
    for i, (title, values, kind) in enumerate(panels):
        h = histogram_counts(values, clean_pred, threshold, direction, bins)
        centres = (h["edges"][:-1] + h["edges"][1:]) / 2
        fig.add_trace(
            go.Bar(
                x=centres,
                y=h["counts"],
                width=np.diff(h["edges"]) * 0.95,
                marker={"color": BEFORE_COLOUR if kind == "before" else AFTER_COLOUR},
                name=title,
                showlegend=False,
                hovertemplate="confidence %{x:.2f} ± 0.05: %{y} labels<extra>" + title + "</extra>",
                meta={
                    "kind": kind,
                    "method": title,
                    "counts": h["counts"].tolist(),
                    "flipped": h["flipped"],
                    "near": h["near"],
                    "total": h["total"],
                },
            ),
            row=1,
            col=i + 1,
        )
        if flip_x is not None:
            fig.add_vrect(x0=flip_x[0], x1=flip_x[1], fillcolor=FLIP_REGION, line_width=0, row=1, col=i + 1)
        fig.add_vrect(
            x0=max(band_x[0], 0.0), x1=min(band_x[1], 1.0), fillcolor=BAND_REGION, line_width=0, row=1, col=i + 1
        )
        fig.add_vline(x=threshold, line={"color": "#444444", "dash": "dash", "width": 1}, row=1, col=i + 1)
        fig.update_xaxes(range=[0, 1], tickvals=[0, threshold, 1], title_text="confidence", row=1, col=i + 1)
        if kind == "after" or direction != "all":
            label = "flipped" if kind == "after" else "past the threshold"
            fig.layout.annotations[i].text = f"{title}<br><sub>{label}: {h['flipped']} · in the band: {h['near']}</sub>"
    fig.update_yaxes(title_text="labels", type="log" if log_y else "linear", row=1, col=1)
    if log_y:  # ticks at 1, 10, 100 ... only ("1 2 5 10 2 5" reads as nonsense)
        fig.update_yaxes(dtick=1, tickformat=",d", row=1, col=1)
    fig.update_layout(height=340, margin={"l": 10, "r": 10, "t": 70, "b": 10}, bargap=0.05)
    return fig
