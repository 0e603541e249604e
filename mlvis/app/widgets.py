"""UI functions that draw controls and return plain values (no computation here).

- the shared sidebar (``sidebar``): model, seed, device;
- the hyperplane page's controls (``hyperplane_controls``), bound to the URL under ``hp.*`` keys.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import streamlit as st

from mlvis.analysis import hyperplane
from mlvis.app import cache, state


@dataclasses.dataclass(frozen=True)
class SidebarChoice:
    """What the shared sidebar returns: the chosen model and seed."""

    model: str
    seed: int


def model_picker(models: Sequence[str]) -> str:
    """Selectbox over the registered models, bound to ``?model=``."""
    default = state.default_model(models)
    return st.selectbox(
        "Model",
        list(models),
        index=list(models).index(default),
        key=state.MODEL,
        bind="query-params",
        help="The classifier every page uses. Demo models run offline on the demo scene world; real models "
        "(model cards in the models folder) are added on the Models page.",
    )


def seed_input() -> int:
    """Seed of the sample scenes, bound to ``?seed=``."""
    value = st.number_input(
        "Seed",
        min_value=state.SEED_MIN,
        max_value=state.SEED_MAX,
        value=state.DEFAULT_SEED,
        step=1,
        key=state.SEED,
        bind="query-params",
        help="Picks which block of held-out test scenes the pages show (0-999).",
    )
    return int(value)


def sidebar(models: Sequence[str], device: str) -> SidebarChoice:
    """The shared sidebar: model picker, seed, and the device in use (as text)."""
    state.init_state(models)
    with st.sidebar:
        model = model_picker(models)
        seed = seed_input()
        from mlvis.app import models_page

        st.caption(f"Device: {device} · {models_page.dtype_label()}")
        models_page.sidebar_notes(model)
    return SidebarChoice(model=model, seed=seed)


# ----------------------------------------------------------------------------------------------------------------------
# the hyperplane page's controls (pages/hyperplane.py)

#: widget keys of the hyperplane page; bound ones are also its URL query parameter names
HP_SOURCE = "hp.source"
HP_SEED = "hp.seed"
HP_COUNT = "hp.count"
HP_TABLE = "hp.table"  # the data editor (not bound: its edits live in session state)
HP_LINES = "hp.lines"  # URL parameter holding the custom table (hyperplane.format_rows)
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

    config: cache.HyperplaneConfig
    source: str
    link_problem: str | None = None


def _custom_base(fallback: tuple[cache.Row, ...]) -> tuple[tuple[cache.Row, ...], str | None]:
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
                rows = hyperplane.parse_rows(text)
            except ValueError as exc:
                problem = f"The link's custom table could not be read ({exc}), so it starts from the Fig. 18 preset."
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
        base, problem = _custom_base(ss.get(HP_LAST_ROWS) or cache.hyperplane_rows("fig18"))
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
        seed = c1.number_input(
            "Boundary seed",
            min_value=0,
            max_value=9999,
            value=0,
            step=1,
            key=HP_SEED,
            bind="query-params",
            help="Seed of the random boundaries; the same seed always draws the same lines.",
        )
        count = c2.number_input(
            "Number of labels",
            min_value=1,
            max_value=HP_MAX_RANDOM,
            value=6,
            step=1,
            key=HP_COUNT,
            bind="query-params",
            help="How many random boundaries (labels) to draw.",
        )
        rows = cache.hyperplane_rows("random", int(seed), int(count))
    else:
        rows = cache.hyperplane_rows(source)
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
    x1 = c1.number_input(
        "Start x₁",
        min_value=0.0,
        max_value=1.0,
        value=hyperplane.DEFAULT_START[0],
        step=0.01,
        format="%.3f",
        key=HP_X1,
        bind="query-params",
        help="Pixel 1 of the clean 2-pixel image (the walk's start).",
    )
    x2 = c2.number_input(
        "Start x₂",
        min_value=0.0,
        max_value=1.0,
        value=hyperplane.DEFAULT_START[1],
        step=0.01,
        format="%.3f",
        key=HP_X2,
        bind="query-params",
        help="Pixel 2 of the clean 2-pixel image.",
    )
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
    alpha = c4.number_input(
        "Step α",
        min_value=0.001,
        max_value=0.2,
        value=hyperplane.DEFAULT_ALPHA,
        step=0.005,
        format="%.3f",
        key=HP_ALPHA,
        bind="query-params",
        help="Every step moves each pixel by ±α (a sign step, as in MI-FGSM).",
    )
    steps = c5.number_input(
        "Steps (0 = ε/α)",
        min_value=0,
        max_value=hyperplane.MAX_STEPS,
        value=0,
        step=1,
        key=HP_STEPS,
        bind="query-params",
        help=(
            "0 follows the paper: ε/α steps in each box, so the walk never presses against the box. "
            "More steps let it slide along the box's edge."
        ),
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
    momentum = c2.slider(
        "Momentum μ",
        min_value=0.0,
        max_value=1.0,
        value=hyperplane.DEFAULT_MOMENTUM,
        step=0.1,
        key=HP_MOMENTUM,
        bind="query-params",
        help="MI-FGSM's momentum: 1 in the paper; 0 gives plain sign steps as in the Fig. 18 script.",
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
    p = c3.slider(
        "SLAM's p",
        min_value=0.0,
        max_value=1.0,
        value=0.5,
        step=0.05,
        key=HP_P,
        bind="query-params",
        disabled=not slam or p_auto,
        help="The expected ratio of labels the budget can flip (used when Auto p is unticked).",
    )
    q = c4.slider(
        "SLAM's q",
        min_value=0.0,
        max_value=1.0,
        value=hyperplane.DEFAULT_Q,
        step=0.05,
        key=HP_Q,
        bind="query-params",
        disabled=not slam,
        help="The largest share of BCE in SLAM (0.5 in the paper, appendix D).",
    )
    return {
        "start": (float(x1), float(x2)),
        "boxes": tuple(dict.fromkeys(float(e) for e in eps)),  # one box when both ends meet
        "losses": tuple(losses),
        "alpha": float(alpha),
        "steps": int(steps) or None,
        "momentum": float(momentum),
        "p": None if p_auto else float(p),
        "q": float(q),
    }


def hyperplane_controls() -> HyperplaneControls:
    """All of the hyperplane page's controls, bound to the URL; returns the configuration to run."""
    with st.container(border=True):
        source, rows, problem = boundary_controls()
        settings = attack_settings_controls()
    return HyperplaneControls(cache.HyperplaneConfig(rows=rows, **settings), source, problem)


def keep_custom_table_in_url(rows: Sequence[cache.Row]) -> None:
    """Write a valid custom table into the URL (``?hp.lines=...``) so that the link reproduces it."""
    text = hyperplane.format_rows(rows)
    if st.query_params.get(HP_LINES) != text:
        st.query_params[HP_LINES] = text
