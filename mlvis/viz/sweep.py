"""Figures of the budget sweeps (section VI, Tables IV-VI and IX, Figs. 7 and 8). Pure plotly, no Streamlit.

- ``sweep_flips_figure``: mean flips (± std) of every method against eps (the tables as curves);
- ``targets_figure``: Fig. 7, mean flips against the number of targeted labels, one curve per eps, the
  best target count marked;
- ``bce_linear_figure``: Fig. 8, BCE against the linear loss over eps with their standard deviations;
- ``q_totals_figure``: Table IX's totals per q.

Every trace has a ``meta`` dict with its ``kind`` (and ``method`` / ``eps`` where it applies).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import plotly.graph_objects as go

from mlvis.errors import InvalidInput

COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22")


def _colour(i: int) -> str:
    return COLOURS[i % len(COLOURS)]


def sweep_flips_figure(
    eps: Sequence[float] | np.ndarray,
    mean: np.ndarray,
    std: np.ndarray,
    methods: Sequence[str],
    num_labels: int | None = None,
    title: str = "Flips vs budget",
) -> go.Figure:
    """One line per method with ± std error bars; ``mean`` and ``std`` are ``(M, K)``."""
    eps = np.asarray(eps, np.float64)
    mean, std = np.asarray(mean, np.float64), np.asarray(std, np.float64)
    if mean.shape != (len(methods), len(eps)) or std.shape != mean.shape:
        raise InvalidInput(
            f"The mean and std must be ({len(methods)}, {len(eps)}) arrays (methods × budgets), not {mean.shape} "
            f"and {std.shape}."
        )
    fig = go.Figure()
    for i, m in enumerate(methods):
        fig.add_trace(
            go.Scatter(
                x=eps,
                y=mean[i],
                error_y={"type": "data", "array": std[i], "visible": True, "thickness": 1},
                mode="lines+markers",
                name=str(m),
                line={"color": _colour(i)},
                hovertemplate="ε = %{x:.4g}: %{y:.2f} flips<extra>" + str(m) + "</extra>",
                meta={"kind": "method", "method": str(m)},
            )
        )
    fig.update_layout(
        title={"text": title},
        height=380,
        margin={"l": 10, "r": 10, "t": 50, "b": 10},
        xaxis={"title": "ε (L∞)", "type": "log"},
        yaxis={"title": "mean labels flipped" + (f" (of {num_labels})" if num_labels else ""), "rangemode": "tozero"},
        legend={"orientation": "h", "yanchor": "top", "y": -0.18, "x": 0},
    )
    return fig


def targets_figure(targets: Sequence[int], mean: np.ndarray, std: np.ndarray, eps: Sequence[float]) -> go.Figure:
    """Fig. 7: flips against the number of targets (the labels closest to the threshold), one curve per eps.

    ``mean`` / ``std`` are ``(K, T)``. Each curve's best target count gets a star (``meta.kind = "best"``).
    """
    t = np.asarray(targets, np.int64)
    mean, std = np.asarray(mean, np.float64), np.asarray(std, np.float64)
    if mean.shape != (len(eps), len(t)) or std.shape != mean.shape:
        raise InvalidInput(
            f"The mean and std must be ({len(eps)}, {len(t)}) arrays (budgets × target counts), not {mean.shape} "
            f"and {std.shape}."
        )
    fig = go.Figure()
    for k, e in enumerate(eps):
        colour = _colour(k)
        fig.add_trace(
            go.Scatter(
                x=t,
                y=mean[k],
                error_y={"type": "data", "array": std[k], "visible": True, "thickness": 0.8},
                mode="lines+markers",
                name=f"ε = {float(e):.4g}",
                line={"color": colour},
                hovertemplate="%{x} targets: %{y:.2f} flips<extra>ε = " + f"{float(e):.4g}" + "</extra>",
                meta={"kind": "targets", "eps": float(e)},
            )
        )
        best = int(np.argmax(mean[k]))
        fig.add_trace(
            go.Scatter(
                x=[t[best]],
                y=[mean[k, best]],
                mode="markers",
                marker={"symbol": "star", "size": 16, "color": colour, "line": {"color": "#31333f", "width": 1}},
                name=f"best for ε = {float(e):.4g}: {t[best]} targets",
                hovertemplate="best: %{x} targets, %{y:.2f} flips<extra></extra>",
                meta={"kind": "best", "eps": float(e), "targets": int(t[best]), "flips": float(mean[k, best])},
            )
        )
    fig.update_layout(
        title={"text": "Flips vs number of targets (Fig. 7)"},
        height=380,
        margin={"l": 10, "r": 10, "t": 50, "b": 10},
        xaxis={"title": "labels targeted (closest to the threshold first)"},
        yaxis={"title": "mean labels flipped", "rangemode": "tozero"},
        legend={"orientation": "h", "yanchor": "top", "y": -0.18, "x": 0},
    )
    return fig


def bce_linear_figure(
    eps: Sequence[float] | np.ndarray, stats: Mapping[str, tuple[np.ndarray, np.ndarray]]
) -> go.Figure:
    """Fig. 8: mean flips of BCE and of the linear loss over eps, with a ± std band each.

    ``stats`` maps ``"bce"`` / ``"linear"`` to ``(mean (K,), std (K,))`` (``mlvis.analysis.bce_vs_linear``).
    """
    eps = np.asarray(eps, np.float64)
    fig = go.Figure()
    titles = {"bce": "BCE", "linear": "linear"}
    colours = {"bce": "#1f77b4", "linear": "#ff7f0e"}
    for method in ("bce", "linear"):
        if method not in stats:
            continue
        m, s = (np.asarray(v, np.float64) for v in stats[method])
        colour = colours[method]
        fig.add_trace(
            go.Scatter(
                x=np.concatenate([eps, eps[::-1]]),
                y=np.concatenate([m + s, (m - s)[::-1]]),
                fill="toself",
                fillcolor=colour,
                opacity=0.15,
                line={"width": 0},
                hoverinfo="skip",
                showlegend=False,
                meta={"kind": "band", "method": method},
            )
        )
        fig.add_trace(
            go.Scatter(
                x=eps,
                y=m,
                mode="lines+markers",
                name=titles[method],
                line={"color": colour, "width": 2.5},
                hovertemplate="ε = %{x:.4g}: %{y:.2f} flips<extra>" + titles[method] + "</extra>",
                meta={"kind": "mean", "method": method},
            )
        )
    fig.update_layout(
        title={"text": "BCE vs linear loss (Fig. 8)"},
        height=380,
        margin={"l": 10, "r": 10, "t": 50, "b": 10},
        xaxis={"title": "ε (L∞)"},
        yaxis={"title": "mean labels flipped", "rangemode": "tozero"},
        legend={"orientation": "h", "yanchor": "top", "y": -0.18, "x": 0},
    )
    return fig


def q_totals_figure(qs: Sequence[float], totals: Sequence[float], baseline: float | None = None) -> go.Figure:
    """Table IX's totals (the flips summed over the grid) per q, with the BCE baseline's total as a line."""
    qs = [float(q) for q in qs]
    fig = go.Figure(
        go.Bar(
            x=[f"q = {q:g}" for q in qs],
            y=np.asarray(totals, np.float64),
            marker={"color": "#2ca02c"},
            text=[f"{v:.2f}" for v in totals],
            textposition="outside",
            meta={"kind": "totals", "qs": qs},
        )
    )
    if baseline is not None:
        fig.add_hline(
            y=float(baseline),
            line={"color": "#1f77b4", "dash": "dash"},
            annotation_text=f"BCE {float(baseline):.2f}",
            annotation_position="top left",
        )
    fig.update_layout(
        title={"text": "SLAM's total flips per q (Table IX)"},
        height=320,
        margin={"l": 10, "r": 10, "t": 50, "b": 10},
        yaxis={"title": "total flips over the grid", "rangemode": "tozero"},
    )
    return fig


def norm_comparison_figure(comparison, image: int = 0, scale: int = 4) -> go.Figure:
    """Fig. 12: the clean image, the L-inf and the L2 adversarial, and both perturbations amplified by the same
    factor (grey = unchanged), for image ``image`` of a :class:`~mlvis.analysis.evaluation.NormComparison`.

    The five panels are ``go.Image`` traces (``meta``: ``{"kind": "clean" | "adv" | "perturbation", "norm"}``),
    upscaled ``scale`` times without smoothing so single pixels stay visible.
    """
    from plotly.subplots import make_subplots

    from mlvis.viz.attack import amplified_perturbation, nice_factor

    a, b = comparison.linf, comparison.l2
    clean = a.clean[image]
    adv = {"linf": a.adv[0, image], "l2": b.adv[0, image]}
    flips = {"linf": int(a.flips[0, image]), "l2": int(b.flips[0, image])}
    biggest = max(float(np.abs(adv[n] - clean).max(initial=0.0)) for n in adv)
    factor = nice_factor(biggest)

    def rgb(chw: np.ndarray) -> np.ndarray:
        hwc = (np.clip(np.asarray(chw, np.float64), 0, 1).transpose(1, 2, 0) * 255 + 0.5).astype(np.uint8)
        return np.repeat(np.repeat(hwc, scale, 0), scale, 1)

    def big(img: np.ndarray) -> np.ndarray:
        return np.repeat(np.repeat(img, scale, 0), scale, 1)

    titles = [
        "clean",
        f"L∞ ε = {comparison.eps_linf:.4g}: {flips['linf']} flips",
        f"L2 ε = {comparison.radius:.4g}: {flips['l2']} flips",
        f"L∞ perturbation ×{factor:g}",
        f"L2 perturbation ×{factor:g}",
    ]
    fig = make_subplots(rows=1, cols=5, subplot_titles=titles, horizontal_spacing=0.02)
    panels = [
        (rgb(clean), {"kind": "clean"}),
        (rgb(adv["linf"]), {"kind": "adv", "norm": "linf", "flips": flips["linf"]}),
        (rgb(adv["l2"]), {"kind": "adv", "norm": "l2", "flips": flips["l2"]}),
        (big(amplified_perturbation(clean, adv["linf"], factor)[0]), {"kind": "perturbation", "norm": "linf"}),
        (big(amplified_perturbation(clean, adv["l2"], factor)[0]), {"kind": "perturbation", "norm": "l2"}),
    ]
    for col, (img, meta) in enumerate(panels, start=1):
        fig.add_trace(go.Image(z=img, meta=meta, hoverinfo="skip"), row=1, col=col)
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    fig.update_layout(
        title=f"{comparison.model}, {comparison.method}: L∞ against the L2 ball of the same volume (Fig. 12)",
        height=260 + 10 * scale,
        margin={"l": 10, "r": 10, "t": 70, "b": 10},
    )
    return fig
