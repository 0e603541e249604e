"""Figures of flip profiles (section V-C, appendix L, Fig. 20). Pure plotly builders, no Streamlit.

``profile_figure`` draws one model's profile as the paper's Fig. 20 does: the mean flips measured by the
two probe attacks (BCE and linear) every ``interval`` steps, E's measured points (the larger of the two,
red dots), the fitted polynomial (green) up to eps_max and held flat beyond it, eps_max as a vertical
line, and the evaluation grid (5 ... 100 % of eps_max) as markers on the fit. ``profiles_figure``
overlays several models' fitted E(eps) / C (the p of equation 7).

The profiles are duck-typed (``mlvis.FlipProfile``: ``eps``, ``flips_bce``, ``flips_linear``, ``points``,
``eps_max``, ``labels``, ``model``, ``expected_flips``, ``flip_ratio``, ``grid``). Every trace has a
``meta`` dict with its ``kind``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go

from mlvis.analysis.profiles import FRACTIONS  # section VI-C's grid, defined once
from mlvis.errors import InvalidInput

BCE_COLOUR = "#1f77b4"
LINEAR_COLOUR = "#ff7f0e"
POINTS_COLOUR = "#d62728"
FIT_COLOUR = "#2ca02c"
MODEL_COLOURS = ("#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf")


def fit_curve(profile, n: int = 200) -> tuple[np.ndarray, np.ndarray]:
    """``(eps, E(eps))`` on a dense grid from 0 to the larger of eps_max and the last measured budget."""
    top = max(float(profile.eps_max), float(np.max(profile.eps)))
    eps = np.linspace(0.0, top, n)
    return eps, np.asarray(profile.expected_flips(eps), np.float64)


def profile_figure(profile, fractions: Sequence[float] = FRACTIONS, title: str | None = None) -> go.Figure:
    """One model's profile (Fig. 20): probe curves, E's points, the fit, eps_max and the evaluation grid."""
    eps = np.asarray(profile.eps, np.float64)
    fig = go.Figure()
    for kind, y, colour, name in (
        ("bce", profile.flips_bce, BCE_COLOUR, "BCE probe"),
        ("linear", profile.flips_linear, LINEAR_COLOUR, "linear probe"),
    ):
        fig.add_trace(
            go.Scatter(
                x=eps,
                y=np.asarray(y, np.float64),
                mode="lines",
                name=name,
                line={"color": colour, "width": 1.5},
                hovertemplate="ε = %{x:.4f}: %{y:.2f} flips<extra>" + name + "</extra>",
                meta={"kind": kind},
            )
        )
    fig.add_trace(
        go.Scatter(
            x=eps,
            y=np.asarray(profile.points, np.float64),
            mode="markers",
            name="measured E (max of the probes)",
            marker={"color": POINTS_COLOUR, "size": 6},
            hovertemplate="ε = %{x:.4f}: %{y:.2f} flips<extra>measured</extra>",
            meta={"kind": "points"},
        )
    )
    fx, fy = fit_curve(profile)
    degree = getattr(profile, "degree", None)
    fig.add_trace(
        go.Scatter(
            x=fx,
            y=fy,
            mode="lines",
            name=f"fitted E(ε), degree {degree}" if degree else "fitted E(ε)",
            line={"color": FIT_COLOUR, "width": 3},
            hovertemplate="ε = %{x:.4f}: E = %{y:.2f}<extra>fit</extra>",
            meta={"kind": "fit"},
        )
    )
    grid = np.asarray(fractions, np.float64) * float(profile.eps_max)
    fig.add_trace(
        go.Scatter(
            x=grid,
            y=np.asarray(profile.expected_flips(grid), np.float64),
            mode="markers",
            name="evaluation grid (% of ε_max)",
            marker={"symbol": "diamond", "size": 9, "color": "#31333f"},
            text=[f"{f:.0%}" for f in fractions],
            hovertemplate="%{text} of ε_max: ε = %{x:.4f}, E = %{y:.2f}<extra>grid</extra>",
            meta={"kind": "grid", "fractions": [float(f) for f in fractions]},
        )
    )
    fig.add_vline(
        x=float(profile.eps_max),
        line={"color": "#444444", "dash": "dash", "width": 1.5},
        annotation_text=f"ε_max = {float(profile.eps_max):.4g}",
        annotation_position="top left",
    )
    fig.update_layout(
        title={"text": title or f"{profile.model}: flips vs ε"},
        height=420,
        margin={"l": 10, "r": 10, "t": 50, "b": 10},
        xaxis={"title": "ε (L∞)", "rangemode": "tozero"},
        yaxis={"title": f"mean labels flipped (of {int(profile.labels)})", "rangemode": "tozero"},
        legend={"orientation": "h", "yanchor": "top", "y": -0.15, "x": 0},
    )
    return fig


def profiles_figure(profiles: Sequence, title: str = "Expected flip ratio p = E(ε) / C (equation 7)") -> go.Figure:
    """Several models' ``flip_ratio`` on one axis, each up to its eps_max (then 1, as equation 7 says)."""
    if not profiles:
        raise InvalidInput("Give at least one profile to draw.")
    fig = go.Figure()
    top = max(max(float(p.eps_max), float(np.max(p.eps))) for p in profiles)
    eps = np.linspace(0.0, top, 300)
    for i, p in enumerate(profiles):
        fig.add_trace(
            go.Scatter(
                x=eps,
                y=np.asarray(p.flip_ratio(eps), np.float64),
                mode="lines",
                name=f"{p.model} (ε_max {float(p.eps_max):.3g})",
                line={"color": MODEL_COLOURS[i % len(MODEL_COLOURS)], "width": 2.5},
                hovertemplate="ε = %{x:.4f}: p = %{y:.3f}<extra>" + str(p.model) + "</extra>",
                meta={"kind": "ratio", "model": str(p.model)},
            )
        )
    fig.update_layout(
        title={"text": title},
        height=340,
        margin={"l": 10, "r": 10, "t": 50, "b": 10},
        xaxis={"title": "ε (L∞)", "rangemode": "tozero"},
        yaxis={"title": "p", "range": [0, 1.05]},
        legend={"orientation": "h", "yanchor": "top", "y": -0.2, "x": 0},
    )
    return fig
