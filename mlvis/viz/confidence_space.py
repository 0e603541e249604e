"""Fig. 17 / appendix G: the confidence space of three labels, with each method's attack trajectory.

The paper's appendix G draws a 3-D confidence space with its decision hyperplanes to argue that the
decision space is close to linear and each label's decision boundary a hyperplane ``p = 0.5``. Here the
space is spanned by the confidences of three chosen labels of one image; the three threshold planes
``p = 0.5`` cut it into eight octants (one per prediction of the three labels), and each method's recorded
trajectory (:class:`mlvis.analysis.trajectory.Recording`: the run's own steps, never recomputed) is a path
from the clean point to its result. The corner of the cube where all three labels are flipped (the target
``t = 1 - clean prediction``) is marked: a path that crosses a plane flips that label.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import plotly.graph_objects as go

from mlvis.analysis.trajectory import PICK_RULE, pick_labels
from mlvis.errors import InvalidInput
from mlvis.viz.replay import CLEAN_COLOUR, method_colours

if TYPE_CHECKING:
    from mlvis.analysis.trajectory import Recording

PLANE_COLOUR = "#8a8f9b"


def _plane(axis: int, level: float) -> go.Surface:
    """The plane ``p[axis] = level`` over the unit square of the other two axes."""
    u = np.array([[0.0, 1.0], [0.0, 1.0]])
    v = np.array([[0.0, 0.0], [1.0, 1.0]])
    w = np.full((2, 2), float(level))
    xyz = [u, v]
    xyz.insert(axis, w)
    return go.Surface(
        x=xyz[0].tolist(), y=xyz[1].tolist(), z=xyz[2].tolist(), showscale=False, opacity=0.18, hoverinfo="skip",
        colorscale=[[0, PLANE_COLOUR], [1, PLANE_COLOUR]], name=f"threshold plane {axis}",
        meta={"kind": "plane", "axis": axis},
    )  # fmt: skip


def confidence_space_figure(
    recording: Recording, labels: Sequence[int] | None = None, image: int = 0, step: int | None = None
) -> go.Figure:
    """The 3-D confidence space of ``labels`` (three indices; default :func:`pick_labels`, by
    :data:`~mlvis.analysis.trajectory.PICK_RULE`) for ``image``, one path per method.

    Args:
        step: mark every method's position after ``step`` steps (the replay's current step).
    """
    chosen = tuple(int(i) for i in (labels if labels is not None else pick_labels(recording, image)))
    if len(chosen) != 3 or len(set(chosen)) != 3:
        raise InvalidInput(f"The confidence space takes three different labels, not {list(chosen)}.")
    c = len(recording.labels)
    if any(not 0 <= i < c for i in chosen):
        raise InvalidInput(f"Label indices must lie in [0, {c - 1}], not {list(chosen)}.")
    names = [recording.labels[i] for i in chosen]
    thr = recording.threshold
    fig = go.Figure([_plane(a, thr) for a in range(3)])
    colours = method_colours(recording)
    clean = recording.clean_probs[image, list(chosen)]
    for t in recording.traces:
        p = t.probs[:, image][:, list(chosen)]
        fig.add_trace(
            go.Scatter3d(
                x=p[:, 0].tolist(), y=p[:, 1].tolist(), z=p[:, 2].tolist(), mode="lines+markers", name=t.name,
                line={"color": colours[t.name], "width": 6}, marker={"size": 2.5, "color": colours[t.name]},
                customdata=t.steps.tolist(), meta={"kind": "trajectory", "method": t.name},
                hovertemplate=f"{t.name}, step %{{customdata}}<br>{names[0]} %{{x:.3f}}<br>{names[1]} %{{y:.3f}}"
                f"<br>{names[2]} %{{z:.3f}}<extra></extra>",
            )
        )  # fmt: skip
        if step is not None:
            q = t.probs_at(step)[image, list(chosen)]
            fig.add_trace(
                go.Scatter3d(
                    x=[float(q[0])],
                    y=[float(q[1])],
                    z=[float(q[2])],
                    mode="markers",
                    showlegend=False,
                    marker={"size": 6, "color": colours[t.name], "symbol": "diamond"},
                    meta={"kind": "position", "method": t.name},
                    hoverinfo="skip",
                )  # fmt: skip
            )
    fig.add_trace(
        go.Scatter3d(
            x=[float(clean[0])],
            y=[float(clean[1])],
            z=[float(clean[2])],
            mode="markers",
            name="clean",
            marker={"size": 6, "color": CLEAN_COLOUR},
            meta={"kind": "clean"},
        )  # fmt: skip
    )
    corner = [float(not recording.clean_pred[image, i]) for i in chosen]
    fig.add_trace(
        go.Scatter3d(
            x=[corner[0]],
            y=[corner[1]],
            z=[corner[2]],
            mode="markers+text",
            name="target corner",
            text=["all three flipped"],
            textposition="top center",
            marker={"size": 7, "color": "#000000", "symbol": "diamond-open"},
            meta={"kind": "target"},
        )  # fmt: skip
    )
    axis = {"range": [0, 1], "dtick": 0.25}
    fig.update_layout(
        title=(
            f"Confidence space of {', '.join(names)} (Fig. 17): each method's path, the planes p = {thr:g} "
            f"(ε = {recording.eps:g})"
        ),
        scene={
            "xaxis": {**axis, "title": {"text": f"p({names[0]})"}},
            "yaxis": {**axis, "title": {"text": f"p({names[1]})"}},
            "zaxis": {**axis, "title": {"text": f"p({names[2]})"}},
            "aspectmode": "cube",
        },
        legend={"title": {"text": "method"}},
        margin={"t": 60, "l": 0, "r": 0, "b": 0},
        height=560,
        meta={"labels": list(chosen), "rule": PICK_RULE if labels is None else "chosen"},
    )
    return fig
