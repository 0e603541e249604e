"""Figures of an attack replay (issue 13 section 2): pure plotly builders over a recorded run.

- :func:`race_figure`: flips (equation 3) against the MI-FGSM step for every method, the current step marked;
- :func:`confidence_step_figure`: every label's confidence at one step, clean and per method, in ONE label
  order for all methods, the threshold line drawn and each label that crossed it marked with an ``x``;
- :func:`replay_animation`: both, as one plotly figure with its own play button and step slider (plotly's
  animation frames: it plays in the browser without a rerun).

They take a :class:`mlvis.analysis.trajectory.Recording` (the run's own trajectory) and return ``go.Figure``.
Every trace carries ``meta`` (``{"kind": "race" | "clean" | "confidence", "method": name}``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

if TYPE_CHECKING:
    from mlvis.analysis.trajectory import Recording

#: one colour per method, the same on every replay figure (others take the palette in order)
METHOD_COLOURS = {"bce": "#1f77b4", "linear": "#ff7f0e", "slam": "#2ca02c", "class": "#d62728", "random": "#9467bd"}
PALETTE = ("#8c564b", "#e377c2", "#17becf", "#bcbd22", "#7f7f7f")
CLEAN_COLOUR = "#5a5f6b"
STEP_COLOUR = "#31333f"


def method_colours(recording: Recording) -> dict[str, str]:
    """Trace name -> colour: a method's own colour, the palette for others (and for a second run of one)."""
    out: dict[str, str] = {}
    spare = iter(PALETTE * 4)
    for t in recording.traces:
        own = METHOD_COLOURS.get(t.method)
        out[t.name] = own if own and own not in out.values() else next(spare)
    return out


def label_order(recording: Recording, image: int = 0) -> list[int]:
    """One label order for every method: by clean confidence, highest first (present labels lead)."""
    return [int(i) for i in np.argsort(-recording.clean_probs[image], kind="stable")]


def _race_y(recording: Recording, name: str, image: int | None) -> np.ndarray:
    flips = recording.trace(name).flips
    return flips.mean(1) if image is None else flips[:, image]


def race_figure(recording: Recording, image: int | None = None, step: int | None = None) -> go.Figure:
    """Flips so far against the step, one line per method (held flat after a method's last step).

    Args:
        image: one image's flips, or ``None`` for the mean over the recording's images.
        step: the current step, marked with a vertical line.
    """
    fig = go.Figure()
    colours = method_colours(recording)
    last = recording.max_step
    for t in recording.traces:
        y = _race_y(recording, t.name, image)
        fig.add_trace(
            go.Scatter(
                x=t.steps.tolist(),
                y=y.tolist(),
                mode="lines",
                line={"shape": "hv", "color": colours[t.name], "width": 2.5},
                name=t.name,
                meta={"kind": "race", "method": t.name},
                hovertemplate=f"{t.name}<br>step %{{x}}<br>flips %{{y}}<extra></extra>",
            )
        )
    if step is not None:
        fig.add_vline(x=int(step), line={"color": STEP_COLOUR, "dash": "dot", "width": 1.5})
    who = "mean flips" if image is None and recording.num_images > 1 else "flips"
    fig.update_layout(
        title=f"The race: {who} after each MI-FGSM step (ε = {recording.eps:g}, {recording.norm})",
        xaxis={"title": {"text": "step (MI-FGSM iteration)"}, "range": [0, max(1, last)]},
        yaxis={"title": {"text": f"{who} (equation 3, of {len(recording.labels)} labels)"}, "rangemode": "tozero"},
        legend={"title": {"text": "method"}},
        margin={"t": 60, "l": 60, "r": 20, "b": 50},
        height=340,
    )
    return fig


def _confidence_traces(recording: Recording, step: int, image: int, order: list[int]) -> list[go.Scatter]:
    names = [recording.labels[i] for i in order]
    clean_pred = recording.clean_pred[image, order]
    colours = method_colours(recording)
    traces = [
        go.Scatter(
            x=names,
            y=recording.clean_probs[image, order].tolist(),
            mode="markers",
            marker={"symbol": "line-ew-open", "size": 18, "color": CLEAN_COLOUR, "line": {"width": 3}},
            name="clean",
            meta={"kind": "clean"},
            hovertemplate="%{x}<br>clean %{y:.3f}<extra></extra>",
        )
    ]
    for t in recording.traces:
        y = t.probs_at(step)[image, order]
        crossed = (y >= recording.threshold) != clean_pred
        traces.append(
            go.Scatter(
                x=names,
                y=y.tolist(),
                mode="markers",
                marker={
                    "symbol": ["x" if c else "circle" for c in crossed],
                    "size": [13 if c else 8 for c in crossed],
                    "color": colours[t.name],
                },
                name=t.name,
                meta={"kind": "confidence", "method": t.name},
                customdata=np.where(crossed, "crossed the threshold (flipped)", "").tolist(),
                hovertemplate=f"%{{x}}<br>{t.name}: %{{y:.3f}}<br>%{{customdata}}<extra></extra>",
            )
        )
    return traces


def confidence_step_figure(recording: Recording, step: int, image: int = 0) -> go.Figure:
    """Every label's confidence after ``step`` steps, clean (grey dashes) and per method (dots; ``x`` where the
    label crossed the threshold, i.e. flipped), labels in :func:`label_order`, the threshold drawn."""
    fig = go.Figure(_confidence_traces(recording, step, image, label_order(recording, image)))
    fig.add_hline(y=recording.threshold, line={"color": STEP_COLOUR, "dash": "dash", "width": 1.5},
                  annotation_text=f"threshold {recording.threshold:g}", annotation_position="top left")  # fmt: skip
    fig.update_layout(
        title=f"Confidences after step {int(step)} (× marks a label that crossed the threshold)",
        xaxis={"title": {"text": "label (by clean confidence)"}, "tickangle": -45},
        yaxis={"title": {"text": "confidence σ(logit)"}, "range": [-0.02, 1.02]},
        legend={"title": {"text": ""}},
        margin={"t": 60, "l": 60, "r": 20, "b": 90},
        height=400,
    )
    return fig


def replay_animation(recording: Recording, image: int = 0, max_frames: int = 120) -> go.Figure:
    """The confidences (top) and the race (bottom) as one animated figure with a play button and a slider.

    One frame per recorded step (at most ``max_frames``, evenly spaced, always with the first and last);
    the frames hold only the confidences and the step marker, so the figure stays small."""
    order = label_order(recording, image)
    all_steps = sorted({int(s) for t in recording.traces for s in t.steps})
    if len(all_steps) > max_frames:
        pick = np.unique(np.linspace(0, len(all_steps) - 1, max_frames).round().astype(int))
        all_steps = [all_steps[i] for i in pick]
    fig = make_subplots(rows=2, cols=1, row_heights=[0.6, 0.4], vertical_spacing=0.22,
                        subplot_titles=("confidences at the step", "flips so far"))  # fmt: skip
    first = _confidence_traces(recording, all_steps[0], image, order)
    for tr in first:
        fig.add_trace(tr, row=1, col=1)
    race = race_figure(recording, image)
    for tr in race.data:
        tr.showlegend = False
        fig.add_trace(tr, row=2, col=1)
    top = max(1.0, float(max((t.flips[:, image].max() for t in recording.traces), default=1)))
    marker = go.Scatter(
        x=[all_steps[0], all_steps[0]],
        y=[0, top],
        mode="lines",
        showlegend=False,
        line={"color": STEP_COLOUR, "dash": "dot"},
        meta={"kind": "step"},
        hoverinfo="skip",
    )
    fig.add_trace(marker, row=2, col=1)
    moving = list(range(len(first))) + [len(fig.data) - 1]
    frames = []
    for s in all_steps:
        data = _confidence_traces(recording, s, image, order)
        data.append(go.Scatter(x=[s, s], y=[0, top]))
        frames.append(go.Frame(data=data, traces=moving, name=str(s)))
    fig.frames = frames
    fig.add_hline(y=recording.threshold, line={"color": STEP_COLOUR, "dash": "dash", "width": 1}, row=1, col=1)
    play = {"frame": {"duration": 120, "redraw": False}, "fromcurrent": True, "transition": {"duration": 0}}
    fig.update_layout(
        height=620,
        margin={"t": 60, "l": 60, "r": 20, "b": 40},
        updatemenus=[
            {
                "type": "buttons",
                "direction": "left",
                "x": 0.0,
                "y": -0.08,
                "xanchor": "left",
                "buttons": [
                    {"label": "▶ Play", "method": "animate", "args": [None, play]},
                    {
                        "label": "❚❚ Pause",
                        "method": "animate",
                        "args": [[None], {"frame": {"duration": 0, "redraw": False}, "mode": "immediate"}],
                    },
                ],  # fmt: skip
            }
        ],
        sliders=[
            {
                "x": 0.2,
                "y": -0.04,
                "len": 0.8,
                "currentvalue": {"prefix": "step "},
                "steps": [
                    {
                        "label": str(s),
                        "method": "animate",
                        "args": [[str(s)], {"frame": {"duration": 0, "redraw": False}, "mode": "immediate"}],
                    }
                    for s in all_steps
                ],  # fmt: skip
            }
        ],
    )
    fig.update_yaxes(title_text="confidence", range=[-0.02, 1.02], row=1, col=1)
    fig.update_xaxes(title_text="label (by clean confidence)", tickangle=-45, row=1, col=1)
    fig.update_yaxes(title_text="flips", rangemode="tozero", row=2, col=1)
    fig.update_xaxes(title_text="step", row=2, col=1)
    return fig
