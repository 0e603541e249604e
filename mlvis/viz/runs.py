"""The figure of a run directory's result (``mlvis table RUN_DIR --figure``, the Runs page). Pure plotly.

- an evaluate run: Fig. 8-style mean flips (± std) of every method against the budget;
- a profile run: the profile (probe curves, fit, eps_max; Fig. 20);
- a correlations run: the flip-up matrix (the flip-down one when only that was computed);
- a compare-related run: mean flips of each related attack beside MI-FGSM and SLAM at its budgets.
"""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go


def run_figure(result, caption: str = "") -> go.Figure:
    """The figure of ``result`` (:func:`mlvis.analysis.chunked.result_from_run`); ``caption`` (how many
    images) goes into the title, so a partial result says so on the figure itself."""
    from mlvis.analysis.evaluation import EvaluationTable
    from mlvis.analysis.profiles import FlipProfile
    from mlvis.viz.landscape import matrix_heatmap
    from mlvis.viz.profiles import profile_figure
    from mlvis.viz.sweep import sweep_flips_figure

    tail = f" ({caption})" if caption else ""
    if isinstance(result, EvaluationTable):
        num_labels = result.config.get("labels")
        return sweep_flips_figure(result.eps, result.mean, result.std, result.methods, num_labels,
                                  title=f"{result.model}: flips vs budget{tail}")  # fmt: skip
    if isinstance(result, FlipProfile):
        return profile_figure(result, title=f"{result.model}: flip profile E(ε){tail}")
    if isinstance(result, dict):
        direction = "up" if "up" in result else next(iter(result))
        cm = result[direction]
        return matrix_heatmap(cm.matrix, cm.labels, f"{cm.model}: flip-{direction} correlations{tail}",
                              f"correlations-{direction}", colorbar="Δ confidence")  # fmt: skip
    return _related_figure(result, tail)


def _related_figure(cmp, tail: str) -> go.Figure:
    from mlvis.analysis.related import NAMES

    names = [NAMES.get(m, m) for m in cmp.methods]
    fig = go.Figure()
    for key, label in (("flips", "related attack"), ("mifgsm_flips", "MI-FGSM (BCE)"), ("slam_flips", "SLAM")):
        values = np.asarray(getattr(cmp, key), np.float64)
        fig.add_trace(go.Bar(x=names, y=values.mean(1), error_y={"type": "data", "array": values.std(1)},
                             name=label, meta={"kind": key}))  # fmt: skip
    fig.update_layout(barmode="group", title={"text": f"{cmp.model}: Table VII, flips at each attack's budget{tail}"},
                      yaxis={"title": f"mean labels flipped (of {cmp.num_labels})", "rangemode": "tozero"},
                      height=380, margin={"l": 10, "r": 10, "t": 50, "b": 10})  # fmt: skip
    return fig
