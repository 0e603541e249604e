"""Figures of one label's loss and its derivative (Fig. 13 and Fig. 19). Pure plotly builders, no Streamlit.

``loss_curves_figure`` draws a :class:`mlvis.analysis.loss_curves.LossCurves` as two stacked panels, the
loss on top and its derivative below, over the logit (the paper's axis: the threshold 0.5 is logit 0) or over
the confidence. BCE's piecewise-linear limits (equations 17-18) are dashed; each SLAM curve's peak of
|dL/dx| is marked where it lies inside the grid. Every trace has a ``meta`` dict with its ``kind`` and
``name``.
"""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from mlvis.errors import InvalidInput

COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf")
AXES = ("logit", "confidence")


def loss_curves_figure(curves, axis: str = "logit", title: str | None = None) -> go.Figure:
    """Loss (top) and d loss / d axis (bottom) of every curve, with the decision threshold marked."""
    if axis not in AXES:
        raise InvalidInput(f"The x axis must be one of {', '.join(AXES)}, not {axis!r}.")
    x = np.asarray(curves.logits if axis == "logit" else curves.confidence, np.float64)
    deriv = curves.dlogit if axis == "logit" else curves.dconf
    xname = "logit x (threshold at 0)" if axis == "logit" else "confidence y = σ(x) (threshold at 0.5)"
    dname = "dL / dx" if axis == "logit" else "dL / dy"
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.08, subplot_titles=("loss", dname))
    for i, name in enumerate(curves.names):
        colour = COLOURS[i % len(COLOURS)]
        hover = "x = %{x:.3f}: %{y:.4f}<extra>" + name + "</extra>"
        fig.add_trace(
            go.Scatter(x=x, y=curves.loss[i], mode="lines", name=name, legendgroup=name,
                       line={"color": colour, "width": 2}, hovertemplate=hover,
                       meta={"kind": "loss", "name": name}),
            row=1, col=1,
        )  # fmt: skip
        fig.add_trace(
            go.Scatter(x=x, y=deriv[i], mode="lines", name=name, legendgroup=name, showlegend=False,
                       line={"color": colour, "width": 2}, hovertemplate=hover,
                       meta={"kind": "derivative", "name": name}),
            row=2, col=1,
        )  # fmt: skip
        if not np.isnan(curves.asymptote[i]).all():
            fig.add_trace(
                go.Scatter(x=x, y=curves.asymptote[i], mode="lines", name=f"{name}: limits (eq. 17-18)",
                           legendgroup=name, line={"color": colour, "width": 1, "dash": "dash"},
                           hoverinfo="skip", meta={"kind": "asymptote", "name": name}),
                row=1, col=1,
            )  # fmt: skip
        peak = float(curves.peak_confidence[i])
        if 0.0 < peak < 1.0:
            px = float(np.log(peak / (1 - peak))) if axis == "logit" else peak
            if x[0] <= px <= x[-1]:
                py = float(np.interp(px, x, deriv[i]))
                fig.add_trace(
                    go.Scatter(x=[px], y=[py], mode="markers", name=f"{name}: peak", legendgroup=name,
                               showlegend=False, marker={"color": colour, "size": 9, "symbol": "diamond"},
                               hovertemplate=f"peak of {name} at y = {peak:.3f}<extra></extra>",
                               meta={"kind": "peak", "name": name, "confidence": peak}),
                    row=2, col=1,
                )  # fmt: skip
    threshold = 0.0 if axis == "logit" else 0.5
    for row in (1, 2):
        fig.add_vline(x=threshold, line={"color": "#888", "width": 1, "dash": "dot"}, row=row, col=1)
    fig.update_xaxes(title_text=xname, row=2, col=1)
    fig.update_yaxes(title_text="loss", row=1, col=1)
    fig.update_yaxes(title_text=dname, row=2, col=1)
    fig.update_layout(
        title=title, height=560, margin={"l": 60, "r": 20, "t": 60, "b": 50},
        legend={"orientation": "h", "y": -0.15}, hovermode="x unified",
    )  # fmt: skip
    return fig
