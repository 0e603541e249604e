"""Fig. 9: one iteration of CLASS's look-ahead tree. A pure plotly builder, no Streamlit.

Levels run left to right (the root, the set chosen so far, at the left); leaves are spread evenly and each
inner node sits at the mean height of its children. The best leaf's path is drawn thick and red, and its
first label is the one the iteration adds. Hovering a node names the label it adds, its score S at the
parent and, for leaves, the objective O. Every trace has a ``meta`` dict with its ``kind``.
"""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

PATH_COLOUR = "#d62728"
NODE_COLOUR = "#1f77b4"
EDGE_COLOUR = "#b0b0b0"


def tree_layout(nodes) -> dict[int, tuple[float, float]]:
    """(x, y) per node id: x = level, leaves at 0, 1, 2, ... in order, parents at their children's mean."""
    children: dict[int, list[int]] = {}
    for n in nodes:
        if n.parent >= 0:
            children.setdefault(n.parent, []).append(n.id)
    pos: dict[int, tuple[float, float]] = {}
    next_leaf = [0.0]

    def place(i: int, level: int) -> float:
        kids = children.get(i, [])
        if not kids:
            y = next_leaf[0]
            next_leaf[0] += 1.0
        else:
            y = float(np.mean([place(k, level + 1) for k in kids]))
        pos[i] = (float(level), y)
        return y

    if nodes:
        place(0, 0)
    return pos


def class_tree_figure(tree, iteration: int = 0, title: str | None = None) -> go.Figure:
    """The tree CLASS built in ``iteration`` (0 = the first label added after the root)."""
    nodes = tree.nodes(iteration)
    fig = go.Figure()
    if not nodes:
        fig.update_layout(title=title or "The subset has one label: CLASS built no tree.")
        return fig
    it = tree.iterations[iteration]
    pos = tree_layout(nodes)
    names = tree.labels
    for on_path, colour, width in ((False, EDGE_COLOUR, 1), (True, PATH_COLOUR, 3)):
        xs, ys = [], []
        for n in nodes:
            if n.parent < 0 or (n.on_path and nodes[n.parent].on_path) != on_path:
                continue
            (x0, y0), (x1, y1) = pos[n.parent], pos[n.id]
            xs += [x0, x1, None]
            ys += [y0, y1, None]
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", line={"color": colour, "width": width},
                                 hoverinfo="skip", showlegend=False,
                                 meta={"kind": "path" if on_path else "edges"}))  # fmt: skip
    root_text = ", ".join(names[i] for i in it["root"])
    hover, xs, ys, colours, sizes, text = [], [], [], [], [], []
    for n in nodes:
        x, y = pos[n.id]
        xs.append(x)
        ys.append(y)
        if n.parent < 0:
            hover.append(f"root: {{{root_text}}}")
            text.append("root")
        else:
            h = f"+ {names[n.label]}<br>S = {n.score:.3f}"
            if not np.isnan(n.objective):
                h += f"<br>O = {n.objective:.3f}"
            hover.append(h)
            text.append(names[n.label] if n.on_path else (str(n.label) if len(nodes) <= 90 else ""))
        colours.append(PATH_COLOUR if n.on_path else NODE_COLOUR)
        sizes.append(12 if n.on_path else 7)
    fig.add_trace(
        go.Scatter(x=xs, y=ys, mode="markers+text", text=text, textposition="middle right",
                   marker={"color": colours, "size": sizes}, hovertext=hover, hoverinfo="text",
                   showlegend=False, meta={"kind": "nodes", "ids": [n.id for n in nodes]})
    )  # fmt: skip
    chosen = names[it["chosen"]]
    fig.update_layout(
        title=title or f"Iteration {iteration + 1}: from {{{root_text}}}, CLASS adds “{chosen}”",
        xaxis={"title": "tree level (0 = the set so far)", "dtick": 1, "zeroline": False},
        yaxis={"visible": False}, height=max(360, min(1400, 9 * sum(1 for n in nodes if np.isfinite(n.objective)))),
        margin={"l": 20, "r": 20, "t": 60, "b": 50}, plot_bgcolor="rgba(0,0,0,0)",
    )  # fmt: skip
    return fig
