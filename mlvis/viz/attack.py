"""Figures of the Attack Lab: what each method did to one image. Pure builders, no Streamlit.

- ``amplified_perturbation``: the perturbation made visible, ``0.5 + factor * (adv - clean)``, with the
  factor it used;
- ``perturbation_heatmaps``: per pixel, the largest change over the colour channels in 8-bit levels,
  one panel per method on a shared colour scale;
- ``confidence_change_figure``: one method's per-label confidences before and after, the threshold
  line, flipped labels highlighted;
- ``flips_figure``: flips per method, exact and after 8-bit rounding.

Every trace carries a ``meta`` dict (``{"kind": ..., "method": ...}``) so tests and pages can find it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from mlvis.errors import DataError, InvalidInput

BEFORE_COLOUR = "#b8c0cc"
AFTER_COLOUR = "#1f77b4"
FLIPPED_COLOUR = "#d62728"
EIGHT_BIT_COLOUR = "#ff7f0e"
THRESHOLD_COLOUR = "#444444"
LEVEL = 1.0 / 255.0


def _chw(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a, np.float64)
    if a.ndim != 3 or a.shape[0] not in (1, 3):
        raise DataError(f"An image must be (3, H, W) (or (1, H, W) for grey), not shape {a.shape}.")
    return a


def nice_factor(max_abs: float, target: float = 0.5) -> float:
    """The amplification that maps the largest change ``max_abs`` to about ``target`` (1, 2 or 5 x 10^k,
    rounded down so that nothing clips); 1 when nothing changed."""
    if not np.isfinite(max_abs) or max_abs <= 0:
        return 1.0
    raw = target / max_abs
    exp = np.floor(np.log10(raw))
    for m in (5.0, 2.0, 1.0):
        if m * 10**exp <= raw * (1 + 1e-9):
            return float(m * 10**exp)
    return float(10**exp)


def amplified_perturbation(clean: np.ndarray, adv: np.ndarray, factor: float | None = None) -> tuple[np.ndarray, float]:
    """``(image, factor)``: the perturbation as a displayable ``(H, W, 3)`` uint8 image.

    Grey (0.5) means unchanged; a channel made brighter shows brighter. ``factor`` defaults to
    :func:`nice_factor` of the largest change, so the strongest change reaches about +-0.5.
    """
    delta = _chw(adv) - _chw(clean)
    if factor is None:
        factor = nice_factor(float(np.abs(delta).max(initial=0.0)))
    img = np.clip(0.5 + float(factor) * delta, 0.0, 1.0).transpose(1, 2, 0)
    return (img * 255 + 0.5).astype(np.uint8), float(factor)


def perturbation_levels(clean: np.ndarray, adv: np.ndarray) -> np.ndarray:
    """``(H, W)``: per pixel, the largest absolute change over the channels, in 8-bit levels (1/255)."""
    return np.abs(_chw(adv) - _chw(clean)).max(axis=0) / LEVEL


def perturbation_heatmaps(
    clean: np.ndarray, advs: Sequence[np.ndarray], names: Sequence[str], eps: float | None = None
) -> go.Figure:
    """One heatmap per method of :func:`perturbation_levels`, side by side on one colour scale.

    The scale runs from 0 to the largest change of any method (or to ``eps`` in levels when larger), so
    the panels compare. Trace ``i`` has ``meta = {"kind": "heatmap", "method": names[i], "max_levels": ...}``.
    """
    if len(advs) != len(names) or not names:
        raise InvalidInput("Give one name per adversarial image (and at least one).")
    levels = [perturbation_levels(clean, a) for a in advs]
    top = max(float(lv.max(initial=0.0)) for lv in levels)
    if eps is not None:
        top = max(top, float(eps) / LEVEL)
    top = top or 1.0
    fig = make_subplots(rows=1, cols=len(names), subplot_titles=list(names), horizontal_spacing=0.03)
    for i, (name, lv) in enumerate(zip(names, levels)):
        fig.add_trace(
            go.Heatmap(
                z=lv,
                zmin=0.0,
                zmax=top,
                colorscale="Inferno",
                showscale=i == len(names) - 1,
                colorbar={"title": {"text": "levels"}, "thickness": 12},
                hovertemplate="x %{x}, y %{y}: %{z:.2f} levels<extra>" + str(name) + "</extra>",
                meta={"kind": "heatmap", "method": str(name), "max_levels": float(lv.max(initial=0.0))},
            ),
            row=1,
            col=i + 1,
        )
        fig.update_yaxes(
            autorange="reversed", scaleanchor=f"x{i + 1 if i else ''}", showticklabels=False, row=1, col=i + 1
        )
        fig.update_xaxes(showticklabels=False, row=1, col=i + 1)
    fig.update_layout(height=260, margin={"l": 10, "r": 10, "t": 30, "b": 10})
    return fig


def shown_labels(before: np.ndarray, after: np.ndarray, threshold: float, top: int | None = 10) -> np.ndarray:
    """Indices of the labels a confidence chart shows: every flipped label, every label present before or
    after, then the largest changes, up to ``top`` (``None``: all); in label order."""
    before, after = np.asarray(before, np.float64), np.asarray(after, np.float64)
    c = len(before)
    if top is None or top >= c:
        return np.arange(c)
    flipped = (before >= threshold) != (after >= threshold)
    present = (before >= threshold) | (after >= threshold)
    keep = flipped | present
    order = np.argsort(-np.abs(after - before), kind="stable")
    for j in order:
        if keep.sum() >= top:
            break
        keep[j] = True
    return np.flatnonzero(keep)


def confidence_change_figure(
    before: np.ndarray,
    after: np.ndarray,
    labels: Sequence[str],
    threshold: float,
    after_8bit: np.ndarray | None = None,
    top: int | None = 10,
    title: str | None = None,
) -> go.Figure:
    """One image's confidences before (grey) and after the attack (blue; red where the label flipped).

    ``after_8bit`` adds markers at the confidences after 8-bit rounding. The threshold is a dashed
    vertical line (``layout.shapes[0]``). Flipped labels are marked ``⇄`` in front of their name.
    Traces: ``meta.kind`` ``"before"``, ``"after"`` (with ``flipped``: the flipped label names) and
    ``"after_8bit"``.
    """
    before = np.asarray(before, np.float64).reshape(-1)
    after = np.asarray(after, np.float64).reshape(-1)
    if before.shape != after.shape or len(labels) != len(before):
        raise InvalidInput(
            f"Give one confidence per label before and after the attack: got {len(before)} and {len(after)} "
            f"confidences for {len(labels)} labels."
        )
    idx = shown_labels(before, after, threshold, top)
    flipped_all = (before >= threshold) != (after >= threshold)
    flipped = flipped_all[idx]
    names = [("⇄ " if f else "") + str(labels[j]) for j, f in zip(idx, flipped)]
    fig = go.Figure()
    fig.add_trace(
        go.Bar(
            x=before[idx],
            y=names,
            orientation="h",
            name="before",
            marker={"color": BEFORE_COLOUR},
            hovertemplate="%{y}: %{x:.3f} before<extra></extra>",
            meta={"kind": "before"},
        )
    )
    fig.add_trace(
        go.Bar(
            x=after[idx],
            y=names,
            orientation="h",
            name="after (red: flipped)",
            marker={"color": [FLIPPED_COLOUR if f else AFTER_COLOUR for f in flipped]},
            hovertemplate="%{y}: %{x:.3f} after<extra></extra>",
            meta={"kind": "after", "flipped": [str(labels[int(j)]) for j in np.flatnonzero(flipped_all)]},
        )
    )
    if after_8bit is not None:
        a8 = np.asarray(after_8bit, np.float64).reshape(-1)
        fig.add_trace(
            go.Scatter(
                x=a8[idx],
                y=names,
                mode="markers",
                name="after 8-bit rounding",
                marker={"symbol": "line-ns-open", "size": 14, "color": EIGHT_BIT_COLOUR, "line": {"width": 2}},
                hovertemplate="%{y}: %{x:.3f} after 8-bit rounding<extra></extra>",
                meta={"kind": "after_8bit"},
            )
        )
    fig.add_vline(x=threshold, line={"color": THRESHOLD_COLOUR, "dash": "dash", "width": 1.5})
    fig.update_layout(
        title={"text": title} if title else None,
        barmode="group",
        bargap=0.2,
        bargroupgap=0.05,
        height=90 + 34 * len(idx),
        margin={"l": 10, "r": 10, "t": 40 if title else 10, "b": 10},
        xaxis={"range": [0, 1], "title": "confidence", "tickvals": [0, threshold, 1]},
        yaxis={"categoryorder": "array", "categoryarray": names, "autorange": "reversed", "automargin": True},
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.0, "x": 0},
    )
    return fig


def flips_figure(
    names: Sequence[str], flips: Sequence[float], flips_8bit: Sequence[float], num_labels: int
) -> go.Figure:
    """Flips per method (mean over the images), exact and after 8-bit rounding, as grouped bars."""
    names = [str(n) for n in names]
    fig = go.Figure()
    for kind, values, colour, label in (
        ("flips", flips, AFTER_COLOUR, "exact"),
        ("flips_8bit", flips_8bit, EIGHT_BIT_COLOUR, "after 8-bit rounding"),
    ):
        v = np.asarray(values, np.float64)
        fig.add_trace(
            go.Bar(
                x=names,
                y=v,
                name=label,
                marker={"color": colour},
                text=[f"{x:.2f}".rstrip("0").rstrip(".") for x in v],
                textposition="outside",
                meta={"kind": kind},
            )
        )
    fig.update_layout(
        barmode="group",
        height=280,
        margin={"l": 10, "r": 10, "t": 30, "b": 10},
        yaxis={"title": f"labels flipped (of {num_labels})", "rangemode": "tozero"},
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.0, "x": 0},
    )
    return fig
