"""Figures of the label landscape (section IV-A/B, Fig. 4 and Fig. 5). Pure plotly builders, no Streamlit.

- ``matrix_heatmap``: a C x C matrix (a flip-up or flip-down correlation matrix, or the dataset's
  co-occurrence) with the labels on both axes; the diagonal (a label attacked alone moves itself the
  most) is left blank so that the off-diagonal structure shows;
- ``attackability_figure``: Fig. 4, each label's attackability (the share of images on which attacking it
  alone flipped it) for flip-up and flip-down, with its mean clean confidence on those images.

Every trace has a ``meta`` dict with its ``kind``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go

from mlvis.errors import InvalidInput

UP_COLOUR = "#1f77b4"
DOWN_COLOUR = "#d62728"


def matrix_heatmap(
    matrix: np.ndarray,
    labels: Sequence[str],
    title: str,
    kind: str,
    *,
    diverging: bool = True,
    blank_diagonal: bool = True,
    colorbar: str = "",
    row_title: str = "row: the attacked / given label",
    column_title: str = "column: the affected label",
) -> go.Figure:
    """A labelled heatmap of ``matrix`` (row = the attacked / given label, column = the affected one), with
    every label on both axes (no label skipped however many), axis titles and a hover naming both labels.

    ``diverging`` centres a red-blue scale on 0 (symmetric range over the off-diagonal values), else a
    sequential scale. The trace's ``meta`` is ``{"kind": kind, "min": ..., "max": ...}`` of the shown values.
    """
    m = np.asarray(matrix, np.float64).copy()
    c = len(labels)
    if m.shape != (c, c):
        raise InvalidInput(f"The matrix must be {c} × {c} for {c} labels, not of shape {m.shape}.")
    if blank_diagonal:
        np.fill_diagonal(m, np.nan)
    finite = m[np.isfinite(m)]
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    kw: dict = {"colorscale": "Viridis"}
    if diverging:
        top = max(abs(lo), abs(hi)) or 1.0
        kw = {"colorscale": "RdBu", "reversescale": True, "zmid": 0.0, "zmin": -top, "zmax": top}
    names = [str(v) for v in labels]
    fig = go.Figure(
        go.Heatmap(
            z=m,
            x=names,
            y=names,
            hovertemplate="row %{y} → column %{x}: %{z:.4g}<extra></extra>",
            colorbar={"title": {"text": colorbar}, "thickness": 12},
            meta={"kind": kind, "min": lo, "max": hi},
            **kw,
        )
    )
    fig.update_layout(
        title={"text": title},
        height=560,
        margin={"l": 10, "r": 10, "t": 50, "b": 10},
        xaxis={
            "tickangle": -60,
            "tickfont": {"size": 9},
            "side": "bottom",
            "automargin": True,
            "dtick": 1,
            "title": {"text": column_title},
        },
        yaxis={
            "autorange": "reversed",
            "tickfont": {"size": 9},
            "automargin": True,
            "dtick": 1,
            "title": {"text": row_title},
        },
    )
    return fig


def attackability_figure(
    labels: Sequence[str],
    attackability_up: np.ndarray,
    attackability_down: np.ndarray,
    confidence_up: np.ndarray | None = None,
    confidence_down: np.ndarray | None = None,
    title: str = "Attackability per label (Fig. 4)",
) -> go.Figure:
    """Bars: each label's flip-up and flip-down attackability; markers: the mean clean confidence over the
    images where it could flip that way. Labels with no such image have no bar (nan)."""
    names = [str(v) for v in labels]
    fig = go.Figure()
    for kind, values, colour, name in (
        ("attackability_up", attackability_up, UP_COLOUR, "flip-up attackability"),
        ("attackability_down", attackability_down, DOWN_COLOUR, "flip-down attackability"),
    ):
        v = np.asarray(values, np.float64)
        if v.shape != (len(names),):
            raise InvalidInput(f"The {kind} values must be one per label ({len(names)}), not of shape {v.shape}.")
        fig.add_trace(
            go.Bar(
                x=names,
                y=v,
                name=name,
                marker={"color": colour, "opacity": 0.8},
                hovertemplate="%{x}: %{y:.2f}<extra>" + name + "</extra>",
                meta={"kind": kind},
            )
        )
    optional: tuple[tuple[str, np.ndarray | None, str, str], ...] = (
        ("confidence_up", confidence_up, UP_COLOUR, "mean confidence (absent labels)"),
        ("confidence_down", confidence_down, DOWN_COLOUR, "mean confidence (present labels)"),
    )
    for kind, maybe, colour, name in optional:
        if maybe is None:
            continue
        fig.add_trace(
            go.Scatter(
                x=names,
                y=np.asarray(maybe, np.float64),
                mode="markers",
                name=name,
                marker={"color": colour, "symbol": "diamond-open", "size": 9, "line": {"width": 2}},
                hovertemplate="%{x}: %{y:.3f}<extra>" + name + "</extra>",
                meta={"kind": kind},
            )
        )
    fig.update_layout(
        title={"text": title},
        barmode="group",
        height=380,
        margin={"l": 10, "r": 10, "t": 50, "b": 10},
        xaxis={"tickangle": -60, "tickfont": {"size": 10}},
        yaxis={"title": "share of images / confidence", "range": [0, 1.02]},
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.0, "x": 0},
    )
    return fig
