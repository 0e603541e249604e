"""Figures of the 2-D hyperplane simulation (appendix H, Fig. 18): pure plotly builders, no Streamlit.

- ``plane_figure``: the unit square with every label's decision boundary (clipped to the square),
  one panel per L-inf box, the box itself and each loss's walk with a marker per step;
- ``flips_per_step_figure``: labels flipped after each step, per loss and box;
- ``flips_vs_eps_figure``: final flips against the budget, greedy vs patient (and SLAM), with the
  boxes marked.

They take the results of ``mlvis.analysis.hyperplane`` (``Simulation``, ``FlipCurve``) and return
``go.Figure``. Every trace carries a ``meta`` dict (``{"kind": "walk", "loss": ..., "eps": ...,
"final_flips": ...}``, ``{"kind": "boundary", "label": ...}``, ...) so that tests and pages can find
it whatever its legend text.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from mlvis.analysis.hyperplane import LOSS_TITLES

if TYPE_CHECKING:
    from mlvis.analysis.hyperplane import FlipCurve, Simulation

#: one colour per loss: greedy orange, patient blue, SLAM green
LOSS_COLOURS = {"linear": "#ff7f0e", "bce": "#1f77b4", "slam": "#2ca02c"}
BOUNDARY_COLOUR = "#5a5f6b"
BOX_COLOUR = "#31333f"
START_COLOUR = "#d62728"
#: line dash of the walks and curves per box, in box order (small box dotted, large box solid)
BOX_DASHES = ("dot", "solid", "dash", "dashdot", "longdash")


def _fmt(v: float) -> str:
    return f"{float(v):g}"


def _flips_text(n: int) -> str:
    return f"{n} flip{'s' * (n != 1)}"


def clip_line(w: Sequence[float], b: float, lo: float = 0.0, hi: float = 1.0) -> np.ndarray | None:
    """The segment of the line ``w . x + b = 0`` inside the square ``[lo, hi]^2``: ``(2, 2)``, or ``None``.

    ``None`` when the line misses the square or only touches a corner.
    """
    w1, w2 = float(w[0]), float(w[1])
    pts: list[tuple[float, float]] = []
    tol = 1e-12 * (hi - lo)
    if w2 != 0:
        for x in (lo, hi):
            y = -(b + w1 * x) / w2
            if lo - tol <= y <= hi + tol:
                pts.append((x, min(max(y, lo), hi)))
    if w1 != 0:
        for y in (lo, hi):
            x = -(b + w2 * y) / w1
            if lo - tol <= x <= hi + tol:
                pts.append((min(max(x, lo), hi), y))
    if len(pts) < 2:
        return None
    arr = np.asarray(pts)
    d = np.linalg.norm(arr[:, None] - arr[None], axis=-1)
    i, j = np.unravel_index(np.argmax(d), d.shape)
    if d[i, j] <= tol:
        return None
    return arr[[i, j]]


def _boxes(sim: Simulation, boxes: Sequence[float] | None) -> tuple[float, ...]:
    return tuple(sim.boxes if boxes is None else boxes)


def plane_figure(
    sim: Simulation,
    boxes: Sequence[float] | None = None,
    losses: Sequence[str] | None = None,
    height: int = 520,
) -> go.Figure:
    """The walks in the input plane, one panel per L-inf box (the paper's Fig. 18, one box per panel).

    Each panel shows every boundary as a line clipped to the unit square, labelled with its name and
    an arrow (``↑`` starts absent, must be flipped up; ``↓`` starts present), the box (dashed square,
    clipped to [0, 1]), the start (red dot) and one walk per loss with a marker per step; the legend
    names each walk's final number of flips.

    Trace ``meta`` kinds: ``boundary`` (label), ``box`` (eps), ``walk`` (loss, eps, final_flips), ``start``.
    """
    boxes = _boxes(sim, boxes)
    losses = tuple(dict.fromkeys(sim.losses if losses is None else losses))
    b = sim.boundaries
    titles = [f"ε = {_fmt(e)} ({int(sim.steps[sim.row(losses[0], e)])} steps)" for e in boxes]
    fig = make_subplots(rows=1, cols=len(boxes), subplot_titles=titles, horizontal_spacing=0.06)
    x0, y0 = (float(v) for v in sim.start)
    for col, eps in enumerate(boxes, start=1):
        first = col == 1
        for i, name in enumerate(b.names):
            seg = clip_line(b.weights[i], b.biases[i])
            if seg is None:
                continue
            arrow = "↓" if sim.clean[i] else "↑"
            state = "starts present (flip down)" if sim.clean[i] else "starts absent (flip up)"
            w1, w2, bias = b.weights[i, 0], b.weights[i, 1], b.biases[i]
            eq = f"{w1:g}·x₁ {'+' if w2 >= 0 else '−'} {abs(w2):g}·x₂ {'+' if bias >= 0 else '−'} {abs(bias):g} = 0"
            # the name sits near one end, inside the square, staggered so that neighbours do not overlap
            tag = seg[0] + (0.9 - 0.08 * (i % 3)) * (seg[1] - seg[0])
            fig.add_trace(
                go.Scatter(
                    x=[seg[0, 0], tag[0], seg[1, 0]],
                    y=[seg[0, 1], tag[1], seg[1, 1]],
                    mode="lines+text",
                    text=["", f"{name} {arrow}", ""],
                    textposition="top center",
                    textfont={"color": BOUNDARY_COLOUR, "size": 13},
                    line={"color": BOUNDARY_COLOUR, "width": 1.5},
                    name=f"boundary {name}",
                    meta={"kind": "boundary", "label": name},
                    showlegend=False,
                    hovertemplate=f"label {name}: {eq}<br>{state}<extra></extra>",
                ),
                row=1,
                col=col,
            )
        lo_x, hi_x = max(x0 - eps, 0.0), min(x0 + eps, 1.0)
        lo_y, hi_y = max(y0 - eps, 0.0), min(y0 + eps, 1.0)
        fig.add_trace(
            go.Scatter(
                x=[lo_x, hi_x, hi_x, lo_x, lo_x],
                y=[lo_y, lo_y, hi_y, hi_y, lo_y],
                mode="lines",
                line={"color": BOX_COLOUR, "dash": "dash", "width": 1.5},
                name=f"box {_fmt(eps)}",
                meta={"kind": "box", "eps": float(eps)},
                showlegend=False,
                hovertemplate=f"L∞ box ε = {_fmt(eps)}<extra></extra>",
            ),
            row=1,
            col=col,
        )
        for rank, loss in enumerate(losses):
            tr = sim.trajectory(loss, eps)
            flips = tr.flips
            last = len(flips) - 1
            title = LOSS_TITLES.get(loss, loss)
            fig.add_trace(
                go.Scatter(
                    x=tr.points[:, 0],
                    y=tr.points[:, 1],
                    mode="lines+markers",
                    line={"color": LOSS_COLOURS.get(loss, "#7f7f7f"), "width": 2},
                    marker={
                        "size": [11 if k == last else 6 for k in range(last + 1)],
                        "symbol": ["star" if k == last else "circle" for k in range(last + 1)],
                    },
                    name=f"{title}, ε = {_fmt(eps)}: {_flips_text(tr.final_flips)}",
                    legendrank=100 * col + rank,
                    meta={"kind": "walk", "loss": loss, "eps": float(eps), "final_flips": tr.final_flips},
                    customdata=np.stack([np.arange(last + 1), flips], 1),
                    hovertemplate=(
                        f"{title}, ε = {_fmt(eps)}<br>step %{{customdata[0]}}: (%{{x:.3f}}, %{{y:.3f}}), "
                        "%{customdata[1]} flipped<extra></extra>"
                    ),
                ),
                row=1,
                col=col,
            )
        fig.add_trace(
            go.Scatter(
                x=[x0],
                y=[y0],
                mode="markers",
                marker={"color": START_COLOUR, "size": 10},
                name="start",
                meta={"kind": "start"},
                showlegend=first,
                hovertemplate="start (%{x:.3f}, %{y:.3f})<extra></extra>",
            ),
            row=1,
            col=col,
        )
        axis = "" if col == 1 else str(col)
        fig.update_xaxes(range=[0, 1], constrain="domain", title_text="pixel 1 (x₁)", row=1, col=col)
        fig.update_yaxes(
            range=[0, 1],
            scaleanchor=f"x{axis}",
            scaleratio=1,
            title_text="pixel 2 (x₂)" if first else None,
            row=1,
            col=col,
        )
    fig.update_layout(
        height=height,
        margin={"l": 10, "r": 10, "t": 40, "b": 10},
        legend={"orientation": "h", "yanchor": "top", "y": -0.12, "x": 0},
        hovermode="closest",
    )
    return fig


def flips_per_step_figure(sim: Simulation, height: int = 340, title: str = "Flips per step") -> go.Figure:
    """Labels flipped after each step, one step line per (loss, box): colour = loss, dash = box.

    Trace ``meta``: ``{"kind": "flips", "loss", "eps"}``; ``x`` = steps 0..n, ``y`` = flips.
    """
    boxes = sim.boxes
    fig = go.Figure()
    for i, (loss, eps) in enumerate(zip(sim.losses, sim.eps)):
        tr = sim.trajectory(loss, float(eps))
        dash = BOX_DASHES[boxes.index(float(eps)) % len(BOX_DASHES)]
        fig.add_trace(
            go.Scatter(
                x=np.arange(tr.steps + 1),
                y=tr.flips,
                mode="lines+markers",
                line={"color": LOSS_COLOURS.get(loss, "#7f7f7f"), "dash": dash, "shape": "hv", "width": 2},
                marker={"size": 5},
                name=f"{LOSS_TITLES.get(loss, loss)}, ε = {_fmt(eps)}",
                meta={"kind": "flips", "loss": loss, "eps": float(eps)},
                legendrank=i,
                hovertemplate="step %{x}: %{y} flipped<extra>%{fullData.name}</extra>",
            )
        )
    fig.update_layout(
        height=height,
        margin={"l": 10, "r": 10, "t": 30, "b": 10},
        xaxis={"title": "step", "rangemode": "tozero"},
        yaxis={"title": "labels flipped", "range": [-0.2, sim.boundaries.num_labels + 0.3], "dtick": 1},
        legend={"orientation": "h", "yanchor": "top", "y": -0.25, "x": 0},
        title={"text": title, "font": {"size": 14}},
    )
    return fig


def flips_vs_eps_figure(
    curve: FlipCurve,
    boxes: Sequence[float] = (),
    height: int = 340,
    title: str = "Flips vs budget (ε / α steps each)",
) -> go.Figure:
    """Final flips against the budget, one line per loss (greedy vs patient, and SLAM), boxes marked.

    Trace ``meta``: ``{"kind": "curve", "loss"}``, ``x`` = eps, ``y`` = flips. Each box is a dotted
    vertical line in ``layout.shapes``.
    """
    fig = go.Figure()
    for j, loss in enumerate(curve.losses):
        fig.add_trace(
            go.Scatter(
                x=curve.eps,
                y=curve.flips[j],
                mode="lines+markers",
                line={"color": LOSS_COLOURS.get(loss, "#7f7f7f"), "shape": "hv", "width": 2},
                marker={"size": 4},
                name=LOSS_TITLES.get(loss, loss),
                meta={"kind": "curve", "loss": loss},
                hovertemplate="ε = %{x:.3g}: %{y} flipped<extra>%{fullData.name}</extra>",
            )
        )
    for k, eps in enumerate(boxes, start=1):
        fig.add_vline(
            x=float(eps),
            line={"color": BOX_COLOUR, "dash": "dot", "width": 1},
            annotation_text=f"ε{chr(0x2080 + k) if k < 10 else k} = {_fmt(eps)}",
            annotation_position="top left",
            annotation_font_size=10,
        )
    fig.update_layout(
        height=height,
        margin={"l": 10, "r": 10, "t": 30, "b": 10},
        xaxis={"title": "budget ε (L∞)", "rangemode": "tozero"},
        yaxis={"title": "labels flipped", "range": [-0.2, curve.num_labels + 0.3], "dtick": 1},
        legend={"orientation": "h", "yanchor": "top", "y": -0.25, "x": 0},
        title={"text": title, "font": {"size": 14}},
    )
    return fig
