"""What every model page shares: the ``page_model()`` preamble, the demo scenes of the sidebar's seed
block, and the parsing of comma-separated number lists."""

from __future__ import annotations

import math

import numpy as np
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


DIMS = 3  # image-steps of L-inf jobs do not depend on the image size (the L2 step does)


def scenes(model: mlvis.MultiLabelModel, count: int, seed: int | None = None) -> np.ndarray:
    """The first ``count`` held-out demo scenes of the sidebar's seed block at the model's input size."""
    h, w = (int(v) for v in model.spec.input_size)
    if h != w:
        raise ValueError(f"The demo scenes are square; {model.spec.name} expects {h}×{w}.")
    return cache.lab_scenes("test", state.seed() if seed is None else int(seed), 0, int(count), h)


def needs_demo_labels(model: mlvis.MultiLabelModel) -> bool:
    """True when the model's labels are the demo world's (so the dataset statistics apply)."""
    return tuple(model.spec.labels) == tuple(mlvis.data.LABELS)


def parse_numbers(text: str, name: str, lo: float, hi: float, max_count: int = 12) -> tuple[float, ...]:
    """``"0.05, 0.1 0.2"`` -> ``(0.05, 0.1, 0.2)``, sorted, unique; ``ValueError`` with a sentence otherwise."""
    parts = [p for p in str(text).replace(";", ",").replace(" ", ",").split(",") if p.strip()]
    if not parts:
        raise ValueError(f"Give at least one value for {name}.")
    try:
        values = sorted({float(p) for p in parts})
    except ValueError:
        raise ValueError(f"{name} must be numbers separated by commas, not {text!r}.") from None
    if any(not (math.isfinite(v) and lo < v <= hi) for v in values):
        raise ValueError(f"Every value of {name} must lie in ({lo:g}, {hi:g}].")
    if len(values) > max_count:
        raise ValueError(f"Give at most {max_count} values for {name}.")
    return tuple(values)
