"""The preamble every model page starts with."""

from __future__ import annotations

import streamlit as st

import mlvis
from mlvis.app import cache, state


def page_model() -> tuple[str, mlvis.MultiLabelModel]:
    """The sidebar's model, loaded (cached): ``(name, model)``; when it cannot load, its one-sentence error
    is shown and the page stops there."""
    name = state.model_name()
    model, error = cache.try_load_model(name)
    if model is None:
        st.error(error)
        st.stop()
    return name, model
