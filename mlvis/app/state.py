"""Session-state keys shared by every page, and their defaults.

The sidebar (drawn by ``app.py`` on every run, whatever the page) owns two widgets whose keys are
defined here. Both are bound to the URL (``bind="query-params"``), so the key is also the query
parameter name: ``/?model=demo-q2l&seed=3`` opens that view, and the URL follows the sidebar.
Streamlit drops invalid values from the URL (an unknown model name, a seed out of range or not a
number) and the widgets fall back to their defaults.

Pages read the shared choice through ``model_name()`` and ``seed()``; their own keys should be
namespaced by page (``"attack.eps"``, ``"attack.last_result"``) and hold UI state only, never models.

**A page switch keeps the choice.** When the app was opened from a link (``/?model=my-card``) and a page is
then picked in the sidebar, the browser asks for the new page without the link's query string and sends
the sidebar widgets at their defaults, so without help the new page would run on ``demo-asl`` and seed 0.
``init_state`` therefore remembers the last run's page, model and seed (:func:`remember`) and, on a page
switch whose URL no longer names them, puts them back before the widgets are drawn. Neither widget states a
default Streamlit could see clash with that write: the default model is the picker's first option and the
default seed is the entry's minimum.
"""

from __future__ import annotations

from collections.abc import Sequence

import streamlit as st

from mlvis.errors import ModelLoadError

#: selected model name (sidebar selectbox); also the URL query parameter name
MODEL = "model"
#: seed of the sample scenes (sidebar number input); also the URL query parameter name
SEED = "seed"

DEFAULT_SEED = 0  # the seed entry's minimum, so the entry needs no value= (see the module docstring)
SEED_MIN = 0
SEED_MAX = 999  # mlvis.data.demo_batch accepts seeds 0..999


def picker_options(models: Sequence[str]) -> list[str]:
    """The model picker's options: the default model first (so it is the widget's own default), then the rest."""
    default = default_model(models)
    return [default, *(m for m in models if m != default)]


def default_model(models: Sequence[str]) -> str:
    """The model the app opens on: ``demo-asl`` when registered, else the first one."""
    if not models:
        raise ModelLoadError(
            "No models are registered, so the app has none to open; register one with mlvis.register_model."
        )
    return "demo-asl" if "demo-asl" in models else models[0]


LAST = "state._last"  # {"page", "model", "seed"} of the last run (see the module docstring)


def init_state(models: Sequence[str], page: str | None = None) -> None:
    """Make the shared keys safe to hand to the sidebar widgets; call once per run, before them.

    On a switch to ``page`` from another one, the last run's model and seed are put back where the URL
    no longer holds them (see the module docstring). A value a page wrote into session state that the
    widgets cannot take (a model that is no longer registered, a seed out of range) is dropped, so the
    widget falls back to its URL value or default instead of raising.
    """
    ss = st.session_state
    last = ss.get(LAST)
    if page is not None and isinstance(last, dict) and last.get("page") != page:
        for key in (MODEL, SEED):
            if key not in st.query_params and last.get(key) is not None:
                ss[key] = last[key]
    if MODEL in ss and ss[MODEL] not in models:
        del ss[MODEL]
    if SEED in ss:
        value = ss[SEED]
        if isinstance(value, bool) or not isinstance(value, int) or not SEED_MIN <= value <= SEED_MAX:
            del ss[SEED]


def remember(page: str | None, model: str, seed: int) -> None:
    """Keep this run's page and sidebar choice for the next run's :func:`init_state`."""
    st.session_state[LAST] = {"page": page, MODEL: model, SEED: int(seed)}


def model_name() -> str:
    """The model chosen in the sidebar (its registry name)."""
    if MODEL not in st.session_state:
        raise RuntimeError("No model is chosen yet: pages run inside app.py, which draws the sidebar first.")
    return str(st.session_state[MODEL])


def seed() -> int:
    """The seed chosen in the sidebar."""
    return int(st.session_state.get(SEED, DEFAULT_SEED))


BF16 = "bf16"


def bf16() -> bool:
    """The sidebar's bf16 autocast switch (the Lab's attacks run their gradient passes in bf16 when on)."""
    return bool(st.session_state.get(BF16, False))
