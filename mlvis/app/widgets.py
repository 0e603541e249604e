"""UI functions that draw controls and return plain values (no computation here).

- the shared sidebar (``sidebar``): model, seed, device.

A page's own controls live in its glue module (``mlvis/app/*_page.py``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import streamlit as st

from mlvis.app import state


@dataclasses.dataclass(frozen=True)
class SidebarChoice:
    """What the shared sidebar returns: the chosen model and seed."""

    model: str
    seed: int


def model_picker(models: Sequence[str]) -> str:
    """Selectbox over the registered models (the default one first, ``state.picker_options``), bound to ``?model=``."""
    return st.selectbox(
        "Model",
        state.picker_options(models),
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
        step=1,
        key=state.SEED,
        bind="query-params",
        help="Picks which block of held-out test scenes the pages show (0-999).",
    )
    return int(value)


def sidebar(models: Sequence[str], device: str, page: str | None = None) -> SidebarChoice:
    """The shared sidebar: model picker, seed, and the device in use (as text); ``page`` is the page this run
    shows (a switch to another one keeps the choice, ``state.init_state``)."""
    state.init_state(models, page)
    with st.sidebar:
        model = model_picker(models)
        seed = seed_input()
        state.remember(page, model, seed)
        from mlvis.app import models_page

        st.toggle("bf16 autocast", key=state.BF16, help="The Attack Lab's gradient passes in bfloat16 (fast on a "
                  "GPU; works on a CPU); clean and final evaluations stay float32.")  # fmt: skip
        st.caption(f"Device: {device} · {models_page.dtype_label()}")
        models_page.sidebar_notes(model)
    return SidebarChoice(model=model, seed=seed)
