"""Cached calls into the library, by kind (see STYLE.md, "Caching map").

- ``load_model`` (``st.cache_resource``): one shared, frozen model per registry name. Never mutate it.
- ``gallery_scenes`` / ``gallery_predictions`` (``st.cache_data``): the Home gallery's sample batch
  and the model's confidences on it, keyed by seed, count and model name; they return numpy, so
  each caller gets its own copy.

No widgets in here.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import streamlit as st
import torch

import mlvis
from mlvis.models.registry import default_device


@dataclasses.dataclass(frozen=True)
class Scenes:
    """A batch of demo-world test scenes, as numpy.

    Attributes:
        images: ``(n, 3, size, size)`` float32 in [0, 1].
        labels: ``(n, C)`` float32 multi-hot ground truth, in the order of ``label_names``.
        label_names: the demo world's labels (``mlvis.data.LABELS``).
        contexts: each scene's context (``"kitchen"``, ``"night"``, ...).
        indices: each scene's index in the test split.
    """

    images: np.ndarray
    labels: np.ndarray
    label_names: tuple[str, ...]
    contexts: tuple[str, ...]
    indices: tuple[int, ...]


def device_label() -> str:
    """The device models run on, for people: ``"CPU"`` or ``"GPU (NVIDIA H100 ...)"``."""
    device = default_device()
    if device.type == "cuda":
        return f"GPU ({torch.cuda.get_device_name(device)})"
    return device.type.upper()


@st.cache_resource(max_entries=4, show_spinner="Loading the model ...")
def load_model(name: str) -> mlvis.MultiLabelModel:
    """The registered model ``name`` on the default device, eval mode, frozen; shared by all sessions.

    Raises what ``mlvis.create_model`` raises (``ValueError`` for an unknown name,
    ``FileNotFoundError`` when its weights are missing); failures are not cached.
    """
    return mlvis.create_model(name)


def try_load_model(name: str) -> tuple[mlvis.MultiLabelModel | None, str | None]:
    """``(model, None)``, or ``(None, message)`` with a sentence to show when loading fails."""
    try:
        return load_model(name), None
    except (FileNotFoundError, ValueError, OSError, RuntimeError) as exc:
        return None, f"Could not load the model {name!r}: {exc}"


@st.cache_data(max_entries=32, show_spinner=False)
def gallery_scenes(seed: int, n: int = 6, size: int = 64) -> Scenes:
    """``n`` held-out test scenes of the demo world for ``seed`` (see ``mlvis.data.demo_batch``)."""
    images, labels = mlvis.data.demo_batch(int(n), split="test", seed=int(seed), size=int(size))
    start = int(seed) * mlvis.data.BLOCK
    w = mlvis.data.world(0, int(size))
    indices = tuple(range(start, start + int(n)))
    return Scenes(
        images=images.numpy(),
        labels=labels.numpy(),
        label_names=tuple(mlvis.data.LABELS),
        contexts=tuple(str(w.describe("test", i)["context"]) for i in indices),
        indices=indices,
    )


@st.cache_data(max_entries=32, show_spinner="Classifying the sample scenes ...")
def gallery_predictions(model_name: str, seed: int, n: int = 6) -> np.ndarray:
    """The model's confidences ``(n, C)`` (float32, in its label order) on ``gallery_scenes``."""
    model = load_model(model_name)
    scenes = gallery_scenes(seed, n, gallery_image_size(model))
    return model.predict_proba(torch.from_numpy(scenes.images)).cpu().numpy()


def gallery_image_size(model: mlvis.MultiLabelModel) -> int:
    """Side of the square scenes to draw for ``model`` (its input height)."""
    return int(model.spec.input_size[0])
