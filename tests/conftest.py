"""Shared fixtures: the shipped demo models and the held-out test scenes they are judged on."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import mlvis
from mlvis.data import world


@pytest.fixture(scope="session")
def demo_models() -> dict[str, mlvis.MultiLabelModel]:
    return {name: mlvis.create_model(name, device="cpu") for name in mlvis.list_models("demo-*")}


@pytest.fixture(scope="session")
def held_out() -> tuple[np.ndarray, np.ndarray]:
    """The 2,000 held-out test scenes (uint8 NHWC images, multi-hot labels)."""
    return world(0).batch_uint8("test", range(2000))


@pytest.fixture(scope="session")
def held_out_probs(demo_models, held_out) -> dict[str, np.ndarray]:
    x = torch.from_numpy(held_out[0]).permute(0, 3, 1, 2).float().div(255)
    return {name: m.predict_proba(x, batch_size=500).numpy() for name, m in demo_models.items()}


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory, monkeypatch):
    """Every test caches computed artifacts in its own folder, never in ~/.cache/mlvis."""
    monkeypatch.setenv("MLVIS_CACHE", str(tmp_path_factory.mktemp("mlvis-cache")))


@pytest.fixture
def fresh_caches():
    """Empty Streamlit caches before and after a test (AppTests in one process share them)."""
    import streamlit as st

    st.cache_resource.clear()
    st.cache_data.clear()
    yield
    st.cache_resource.clear()
    st.cache_data.clear()


@pytest.fixture(scope="module", autouse=True)
def _registries_restored():
    """What a test module registers (plugin losses and methods, example models) is gone after it: every
    module sees the built-in registries, whatever ran before it (the registries are process-wide)."""
    from mlvis.attacks import losses, methods
    from mlvis.models import cards, registry

    mlvis.list_models()  # the built-in models and the cards register themselves first
    tables = (methods._METHODS, losses._LOSSES)
    saved = [dict(t) for t in tables]
    models_before = set(registry._entrypoints)
    yield
    for table, before in zip(tables, saved, strict=True):
        table.clear()
        table.update(before)
    for name in set(registry._entrypoints) - models_before:
        registry.unregister_model(name)
    cards.sync(force=True)


@pytest.fixture
def models_dir(tmp_path, monkeypatch):
    """An empty models folder (``MLVIS_MODELS_DIR``) for one test; the registry forgets its cards after."""
    from mlvis.models import cards

    folder = tmp_path / "models"
    folder.mkdir()
    monkeypatch.setenv(cards.ENV, str(folder))
    yield folder
    monkeypatch.delenv(cards.ENV)
    cards.sync(force=True)
