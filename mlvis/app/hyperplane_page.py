"""Glue of the hyperplane page (pages/hyperplane.py): its controls, its cached simulation and its URL.

The controls are bound to the URL under ``hp.*`` keys; a custom boundary table travels in ``?hp.lines=``
(:func:`format_rows` / :func:`parse_rows`). :func:`hyperplane_run` validates and runs a frozen
:class:`HyperplaneConfig` of plain values through ``mlvis.analysis.hyperplane`` (``st.cache_data``).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import streamlit as st

from mlvis.analysis import hyperplane
from mlvis.app.budget_input import number_entry
from mlvis.errors import InvalidInput

# ----------------------------------------------------------------------------------------------------------------------
# the custom table in the URL

_NAME_FORBIDDEN = str.maketrans({":": "_", ";": "_", ",": "_"})


def format_rows(rows: Sequence[Sequence]) -> str:
    """Compact text for ``(name, w1, w2, b)`` rows, for a URL: ``"a:25,25,-27.6;b:25,25,-29.1"``.

    ``:``, ``;`` and ``,`` in names become ``_``; numbers are written with ``repr`` precision (``%.17g``
    trimmed), so :func:`parse_rows` gives back the same floats.
    """
    parts = []
    for name, *values in rows:
        name = str(name).translate(_NAME_FORBIDDEN).strip()
        parts.append(f"{name}:" + ",".join(repr(float(v)).removesuffix(".0") for v in values))
    return ";".join(parts)


def parse_rows(text: str) -> tuple[tuple[str, float, float, float], ...]:
    """The rows written by :func:`format_rows`; an :class:`~mlvis.errors.InvalidInput` naming the bad part otherwise.

    Only the text format is checked here; :meth:`Boundaries.from_rows` checks the values.
    """
    rows = []
    for i, part in enumerate(p for p in str(text).split(";") if p.strip()):
        name, sep, numbers = part.rpartition(":")
        values = numbers.split(",")
        if not sep or len(values) != 3:
            raise InvalidInput(f"Part {i + 1} ({part!r}) is not of the form name:w1,w2,b.")
        try:
            w1, w2, b = (float(v) for v in values)
        except ValueError:
            raise InvalidInput(f"Part {i + 1} ({part!r}) holds something that is not a number in w1,w2,b.") from None
        rows.append((name.strip(), w1, w2, b))
    if not rows:
        raise InvalidInput("The table holds no boundaries; give at least one as name:w1,w2,b.")
    return tuple(rows)


# ----------------------------------------------------------------------------------------------------------------------
# the cached simulation

Row = tuple[str, float, float, float]


@dataclasses.dataclass(frozen=True)
class HyperplaneConfig:
    """Everything the hyperplane page simulates, as plain hashable values (the cache key).

    ``rows`` are ``(name, w1, w2, b)``; ``boxes`` the L-inf budgets; ``steps`` ``None`` for eps / alpha;
    ``p`` ``None`` for SLAM's p from the toy's own profile (see ``mlvis.analysis.hyperplane.simulate``).
    """

    rows: tuple[Row, ...]
    start: tuple[float, float] = hyperplane.DEFAULT_START
    boxes: tuple[float, ...] = hyperplane.DEFAULT_BOXES
    losses: tuple[str, ...] = (hyperplane.GREEDY, hyperplane.PATIENT)
    alpha: float = hyperplane.DEFAULT_ALPHA
    steps: int | None = None
    momentum: float = hyperplane.DEFAULT_MOMENTUM
    p: float | None = None
    q: float = hyperplane.DEFAULT_Q


@dataclasses.dataclass(frozen=True)
class HyperplaneRun:
    """What the page shows: the walks in each box and the flips-vs-eps curves of the same losses."""

    config: HyperplaneConfig
    simulation: hyperplane.Simulation
    curve: hyperplane.FlipCurve


@st.cache_data(max_entries=64, show_spinner=False)
def hyperplane_rows(source: str, seed: int = 0, n_labels: int = 6) -> tuple[Row, ...]:
    """The boundary rows of a preset (``source`` in ``hyperplane.PRESETS``) or, for ``"random"``, of
    ``random_boundaries(n_labels, seed)`` around the default start. ``ValueError`` for anything else."""
    if source == "random":
        return hyperplane.random_boundaries(int(n_labels), int(seed)).rows()
    return hyperplane.preset(source).rows()


@st.cache_data(max_entries=64, show_spinner="Simulating ...")
def hyperplane_run(config: HyperplaneConfig) -> HyperplaneRun:
    """Validate and run ``config``: the walks in its boxes and the flips-vs-eps curves.

    Raises ``ValueError`` with a sentence for people on bad input (a bad table row, a start outside
    [0, 1], ...); failures are not cached.
    """
    boundaries = hyperplane.Boundaries.from_rows(config.rows)
    settings: dict[str, Any] = {
        "alpha": config.alpha,
        "steps": config.steps,
        "momentum": config.momentum,
        "p": config.p,
        "q": config.q,
    }
    sim = hyperplane.simulate(boundaries, config.start, config.boxes, config.losses, **settings)
    grid = hyperplane.eps_grid(config.alpha, config.boxes)
    curve = hyperplane.flips_vs_eps(boundaries, config.start, grid, config.losses, **settings)
    return HyperplaneRun(config, sim, curve)


# ----------------------------------------------------------------------------------------------------------------------
# the controls

#: widget keys of the hyperplane page; bound ones are also its URL query parameter names
HP_SOURCE = "hp.source"
HP_SEED = "hp.seed"
HP_COUNT = "hp.count"
HP_TABLE = "hp.table"  # the data editor (not bound: its edits live in session state)
HP_LINES = "hp.lines"  # URL parameter holding the custom table (format_rows)
HP_X1 = "hp.x1"
HP_X2 = "hp.x2"
HP_EPS = "hp.eps"
HP_LOSSES = "hp.losses"
HP_ALPHA = "hp.alpha"
HP_STEPS = "hp.steps"
HP_MOMENTUM = "hp.mu"
HP_P_AUTO = "hp.pauto"
HP_P = "hp.p"
HP_Q = "hp.q"
#: session-state keys (not widgets): the custom table's starting rows, the rows last shown
HP_CUSTOM_BASE = "hp._custom_base"
HP_LAST_ROWS = "hp._last_rows"

HP_SOURCES = {
    "fig18": "Fig. 18 (paper)",
    "aligned": "Aligned",
    "random": "Random",
    "custom": "Custom table",
}
HP_MAX_RANDOM = 12
HP_COLUMNS = ("label", "w1", "w2", "b")


@dataclasses.dataclass(frozen=True)
class HyperplaneControls:
    """What the hyperplane page's controls return: the configuration, and a note on the table when
    a shared link's custom table could not be read (``None`` otherwise)."""

    config: HyperplaneConfig
    source: str
    link_problem: str | None = None


def _custom_base(fallback: tuple[Row, ...]) -> tuple[tuple[Row, ...], str | None]:
    """The rows the custom table starts from: the URL's ``hp.lines`` on first use, else ``fallback``.

    Fixed for as long as the custom table is shown, since the data editor's edits are relative to it.
    """
    ss = st.session_state
    problem = None
    if HP_CUSTOM_BASE not in ss:
        rows = fallback
        text = st.query_params.get(HP_LINES)
        if text:
            try:
                rows = parse_rows(text)
            except ValueError as exc:
                problem = f"The link's custom table could not be read, so it starts from the Fig. 18 preset. {exc}"
        ss[HP_CUSTOM_BASE] = rows
    return ss[HP_CUSTOM_BASE], problem


def _table_rows(df) -> tuple[tuple, ...]:
    """The edited table as raw rows (validation is the library's job)."""
    return tuple(tuple(None if _missing(v) else v for v in rec) for rec in df[list(HP_COLUMNS)].itertuples(index=False))


def _missing(v) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def boundary_controls() -> tuple[str, tuple[tuple, ...], str | None]:
    """Where the boundaries come from (preset, random with a seed, or an editable table) and the rows.

    Returns ``(source, rows, link_problem)``; ``rows`` are raw ``(label, w1, w2, b)`` tuples, which may
    be invalid when the user edited the table.
    """
    ss = st.session_state
    source = st.radio(
        "Decision boundaries",
        list(HP_SOURCES),
        format_func=HP_SOURCES.get,
        horizontal=True,
        key=HP_SOURCE,
        bind="query-params",
        help=(
            "Fig. 18 rebuilds the paper's appendix H example; Aligned has boundaries whose normals agree, so "
            "greedy and patient walk together; Random draws lines around the start from a seed; Custom table "
            "lets you edit w1, w2 and b of every label (logit = w1·x₁ + w2·x₂ + b)."
        ),
    )
    problem = None
    if source == "custom":
        base, problem = _custom_base(ss.get(HP_LAST_ROWS) or hyperplane_rows("fig18"))
        df = st.data_editor(
            _rows_frame(base),
            key=HP_TABLE,
            num_rows="dynamic",
            hide_index=True,
            column_config={
                "label": st.column_config.TextColumn("label", help="The label's name (a letter when left empty)."),
                "w1": st.column_config.NumberColumn("w1", help="Weight of pixel 1 in the label's logit."),
                "w2": st.column_config.NumberColumn("w2", help="Weight of pixel 2 in the label's logit."),
                "b": st.column_config.NumberColumn("b", help="Bias of the label's logit; the boundary is logit = 0."),
            },
            width="stretch",
        )
        return source, _table_rows(df), problem

    ss.pop(HP_CUSTOM_BASE, None)
    if HP_LINES in st.query_params:
        del st.query_params[HP_LINES]
    if source == "random":
        c1, c2 = st.columns(2)
        seed = _whole_input(
            c1,
            "Boundary seed",
            HP_SEED,
            (0, 9999),
            0,
            "Seed of the random boundaries; the same seed always draws the same lines.",
        )
        count = _whole_input(
            c2, "Number of labels", HP_COUNT, (1, HP_MAX_RANDOM), 6, "How many random boundaries (labels) to draw."
        )
        rows = hyperplane_rows("random", seed, count)
    else:
        rows = hyperplane_rows(source)
    ss[HP_LAST_ROWS] = rows
    with st.expander("The boundaries as a table (choose Custom table to edit it)"):
        st.dataframe(_rows_frame(rows), hide_index=True, width="stretch")
    return source, rows, problem


def _rows_frame(rows):
    import pandas as pd

    return pd.DataFrame(list(rows), columns=list(HP_COLUMNS))


def attack_settings_controls() -> dict:
    """Start point, the two boxes, losses, SLAM's p and q, alpha, steps and momentum, as plain values."""
    c1, c2, c3, c4, c5 = st.columns([1, 1, 2, 1, 1])
    x1 = number_entry(c1, "Start x₁", key=HP_X1, default=hyperplane.DEFAULT_START[0], min_value=0.0, max_value=1.0,
                      step=0.01, format="%.3f",
                      help="Pixel 1 of the clean 2-pixel image (the walk's start).")  # fmt: skip
    x2 = number_entry(c2, "Start x₂", key=HP_X2, default=hyperplane.DEFAULT_START[1], min_value=0.0, max_value=1.0,
                      step=0.01, format="%.3f", help="Pixel 2 of the clean 2-pixel image.")  # fmt: skip
    eps = c3.slider(
        "Budgets ε₁, ε₂ (L∞ boxes)",
        min_value=0.0,
        max_value=1.0,
        value=hyperplane.DEFAULT_BOXES,
        step=0.01,
        key=HP_EPS,
        bind="query-params",
        help=(
            "The small and the large perturbation box: each pixel may move at most ε from the start. "
            "Appendix H's point: greedy wins in the small box, patient in the large one."
        ),
    )
    alpha = number_entry(c4, "Step α", key=HP_ALPHA, default=hyperplane.DEFAULT_ALPHA, min_value=0.001,
                         max_value=0.2, step=0.005, format="%.3f",
                         help="Every step moves each pixel by ±α (a sign step, as in MI-FGSM).")  # fmt: skip
    steps = _whole_input(
        c5,
        "Steps (0 = ε/α)",
        HP_STEPS,
        (0, hyperplane.MAX_STEPS),
        0,
        "0 follows the paper: ε/α steps in each box, so the walk never presses against the box. "
        "More steps let it slide along the box's edge.",
    )
    c1, c2, c3, c4 = st.columns([2, 1, 1, 1])
    losses = c1.pills(
        "Losses",
        list(hyperplane.LOSSES),
        selection_mode="multi",
        default=[hyperplane.GREEDY, hyperplane.PATIENT],
        format_func=lambda loss: hyperplane.LOSS_TITLES.get(loss, loss),
        key=HP_LOSSES,
        bind="query-params",
        help=(
            "linear |t − y| is the greedy attacker (its derivative peaks at the threshold, so near boundaries "
            "dominate); BCE the patient one (every unflipped label pulls equally); SLAM mixes them, "
            "p·q·BCE + (1 − p·q)·linear."
        ),
    )
    momentum = _unit_slider(
        c2,
        "Momentum μ",
        HP_MOMENTUM,
        hyperplane.DEFAULT_MOMENTUM,
        0.1,
        "MI-FGSM's momentum: 1 in the paper; 0 gives plain sign steps as in the Fig. 18 script.",
    )
    slam = "slam" in losses
    p_auto = c3.checkbox(
        "Auto p (eq. 7)",
        value=True,
        key=HP_P_AUTO,
        bind="query-params",
        disabled=not slam,
        help=(
            "Equation 7: p = E(ε)/C, with E(ε) the larger of the greedy and patient flips in that box "
            "(the toy's own profile). Untick to set SLAM's p by hand."
        ),
    )
    p = _unit_slider(
        c3,
        "SLAM's p",
        HP_P,
        0.5,
        0.05,
        "The expected ratio of labels the budget can flip (used when Auto p is unticked).",
        disabled=not slam or p_auto,
    )
    q = _unit_slider(
        c4,
        "SLAM's q",
        HP_Q,
        hyperplane.DEFAULT_Q,
        0.05,
        "The largest share of BCE in SLAM (0.5 in the paper, appendix D).",
        disabled=not slam,
    )
    return {
        "start": (x1, x2),
        "boxes": tuple(dict.fromkeys(float(e) for e in eps)),  # one box when both ends meet
        "losses": tuple(losses),
        "alpha": float(alpha),
        "steps": steps or None,
        "momentum": momentum,
        "p": None if p_auto else p,
        "q": q,
    }


def _start_input(col, axis: int, help: str) -> float:
    """Pixel ``axis + 1`` of the walk's start on [0, 1], bound to ?hp.x1= / ?hp.x2=."""
    chosen = col.number_input(
        f"Start x{'₁₂'[axis]}",
        min_value=0.0,
        max_value=1.0,
        value=hyperplane.DEFAULT_START[axis],
        step=0.01,
        format="%.3f",
        key=(HP_X1, HP_X2)[axis],
        bind="query-params",
        help=help,
    )
    return float(chosen)


def _whole_input(col, label: str, key: str, bounds: tuple[int, int], value: int, help: str) -> int:
    """A whole number in ``bounds`` bound to ``?key=`` (the boundary seed and count, the steps)."""
    lo, hi = bounds
    chosen = col.number_input(
        label, min_value=lo, max_value=hi, value=value, step=1, key=key, bind="query-params", help=help
    )  # fmt: skip
    return int(chosen)


def _unit_slider(col, label: str, key: str, value: float, step: float, help: str, disabled: bool = False) -> float:
    """A slider on [0, 1] bound to ``?key=`` (the momentum, SLAM's p and q)."""
    chosen = col.slider(
        label, min_value=0.0, max_value=1.0, value=value, step=step, key=key, bind="query-params",
        disabled=disabled, help=help,
    )  # fmt: skip
    return float(chosen)


def hyperplane_controls() -> HyperplaneControls:
    """All of the hyperplane page's controls, bound to the URL; returns the configuration to run."""
    with st.container(border=True):
        source, rows, problem = boundary_controls()
        settings = attack_settings_controls()
    return HyperplaneControls(HyperplaneConfig(rows=rows, **settings), source, problem)


def keep_custom_table_in_url(rows: Sequence[Row]) -> None:
    """Write a valid custom table into the URL (``?hp.lines=...``) so that the link reproduces it."""
    text = format_rows(rows)
    if st.query_params.get(HP_LINES) != text:
        st.query_params[HP_LINES] = text


# ----------------------------------------------------------------------------------------------------------------------
# running and showing

#: session-state key: the last configuration that ran, kept so that a bad edit does not blank the page
LAST_RUN = "hp._last_run"

HOW_THE_WALK_IS_COMPUTED = r"""
Label $i$ has the logit $z_i = w_i \cdot x + b_i$, the confidence $y_i = \sigma(z_i)$ and is predicted
present when $y_i \ge 0.5$. The target is $t = 1 - $ the clean prediction for every label, and a flip is
a label whose prediction differs from the clean one. With $m = 1$ for BCE, $m = 0$ for the linear loss
$|t - y|$ and $m = p\,q$ for SLAM (equation 6), the loss is
$L = \sum_i m\,\mathrm{BCE}(y_i, t_i) + (1 - m)\,|t_i - y_i|$ and its gradient is

$$\nabla_x L = \sum_i \big(m\,(y_i - t_i) + (1 - m)(1 - 2t_i)\,y_i(1 - y_i)\big)\, w_i .$$

Each step does $g \leftarrow \mu g + \nabla_x L / \lVert \nabla_x L \rVert_1$ and
$x \leftarrow x - \alpha\,\mathrm{sign}(g)$, then clips $x$ to the ε box around the start and to
$[0, 1]$. With the paper's rule of $\lfloor ε/α \rfloor$ steps the walk never presses against its box,
so the flips-vs-budget curve is the prefix of one long walk. SLAM's $p$ comes from the toy's own
profile when its box is ticked: $E(ε)$ = the larger of the greedy and
patient flips in that box, $p = E(ε)/C$ (equation 7).
"""


def run_or_last(controls: HyperplaneControls) -> HyperplaneRun:
    """The simulation of ``controls``; on bad input its sentence is shown and the last run that worked is
    returned instead (the page stops when there is none). A valid custom table is written into the URL."""
    if controls.link_problem:
        st.warning(controls.link_problem)
    try:
        run = hyperplane_run(controls.config)
    except ValueError as exc:
        st.error(str(exc))
        last = st.session_state.get(LAST_RUN)
        if last is None:
            st.stop()
        st.caption("The figures below still show the last configuration that ran.")
        return last
    st.session_state[LAST_RUN] = run
    if controls.source == "custom":
        keep_custom_table_in_url(run.simulation.boundaries.rows())
    return run


def _losses(sim: hyperplane.Simulation) -> tuple[str, ...]:
    return tuple(dict.fromkeys(sim.losses))


def _flips_text(n: int) -> str:
    return f"{n} flip{'s' * (n != 1)}"


def flips_view(sim: hyperplane.Simulation) -> None:
    """One bordered column per box: each loss's flips at the end of its walk."""
    from mlvis.viz.hyperplane import LOSS_TITLES

    losses = _losses(sim)
    for col, eps in zip(st.columns(len(sim.boxes)), sim.boxes):
        with col.container(border=True):
            steps = int(sim.steps[sim.row(losses[0], eps)])
            st.markdown(f"**ε = {eps:g}** ({steps} steps of α = {sim.alpha:g})")
            for loss, mcol in zip(losses, st.columns(len(losses))):
                tr = sim.trajectory(loss, eps)
                mcol.metric(
                    f"{LOSS_TITLES.get(loss, loss)}, ε = {eps:g}",
                    f"{tr.final_flips} / {sim.boundaries.num_labels}",
                    help=f"Labels flipped at the end of the walk; SLAM's p = {tr.p:.2f}" if loss == "slam" else None,
                )


def verdict_sentence(sim: hyperplane.Simulation) -> str | None:
    """Whether the paper's Fig. 18 pattern (greedy wins the small box, patient the large) shows; ``None``
    unless both the linear and the BCE walk ran in exactly two boxes."""
    if not {"linear", "bce"} <= set(sim.losses) or len(sim.boxes) != 2:
        return None
    small, large = sorted(sim.boxes)
    g_small, p_small = (sim.trajectory(loss, small).final_flips for loss in ("linear", "bce"))
    g_large, p_large = (sim.trajectory(loss, large).final_flips for loss in ("linear", "bce"))
    verdict = (
        "as in the paper's Fig. 18: greedy wins the small box, patient the large one."
        if g_small > p_small and p_large > g_large
        else "so here the paper's pattern (greedy wins small, patient wins large) does not show in full."
    )
    return (
        f"In the small box (ε = {small:g}) the greedy walk makes {_flips_text(g_small)} and the patient one "
        f"{_flips_text(p_small)}; in the large box (ε = {large:g}) greedy makes {_flips_text(g_large)} and patient "
        f"{_flips_text(p_large)}, {verdict}"
    )


def figures_view(run: HyperplaneRun) -> None:
    """The plane with the walks, the flips per step and the flips-vs-budget curve."""
    from mlvis.viz import flips_per_step_figure, flips_vs_eps_figure, plane_figure

    sim, fixed = run.simulation, run.config.steps
    st.plotly_chart(plane_figure(sim), key="hp.fig.plane", config={"displayModeBar": False})
    left, right = st.columns(2)
    left.plotly_chart(flips_per_step_figure(sim), key="hp.fig.steps", config={"displayModeBar": False})
    title = "Flips vs budget (ε / α steps each)" if fixed is None else f"Flips vs budget ({fixed} steps each)"
    right.plotly_chart(
        flips_vs_eps_figure(run.curve, sim.boxes, title=title), key="hp.fig.curve", config={"displayModeBar": False}
    )
