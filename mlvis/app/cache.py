"""Cached calls into the library, by kind (see STYLE.md, "Caching map").

- ``load_model`` (``st.cache_resource``): one shared, frozen model per registry name. Never mutate it.
- ``gallery_scenes`` / ``gallery_predictions`` (``st.cache_data``): the Home gallery's sample batch
  and the model's confidences on it, keyed by seed, count and model name; they return numpy, so
  each caller gets its own copy.
- ``model_cards`` (no cache of its own): every registered model's spec through ``load_model``.
- the 2-D hyperplane simulation's cache lives with its page (``mlvis.app.hyperplane_page``).

No widgets in here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

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


def load_model(name: str) -> mlvis.MultiLabelModel:
    """The registered model ``name`` on the default device, eval mode, frozen; shared by all sessions.

    Cached by the name and, for a model card, the card's and checkpoint's size and modification time, so
    a card replaced under the same name is loaded afresh. Raises what ``mlvis.create_model`` raises
    (``ValueError`` for an unknown name, ``FileNotFoundError`` when its weights are missing); failures are
    not cached. A large checkpoint reports its progress to ``models_page.loading_progress`` when one is open.
    """
    from mlvis.models.cards import card_version

    return _load_model(name, card_version(name))


@st.cache_resource(max_entries=4, show_spinner="Loading the model ...")
def _load_model(name: str, version: str) -> mlvis.MultiLabelModel:
    from mlvis.app import models_page

    return mlvis.create_model(name, **models_page.load_options(name))


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


def model_cards(names: Sequence[str]) -> list[tuple[str, mlvis.ModelSpec | None, str | None]]:
    """``(name, spec, None)`` for each model that loads, ``(name, None, message)`` for each that does not."""
    out: list[tuple[str, mlvis.ModelSpec | None, str | None]] = []
    for name in names:
        model, error = try_load_model(name)
        out.append((name, model.spec if model is not None else None, error))
    return out


# ----------------------------------------------------------------------------------------------------------------------
# the Attack Lab and the analysis pages (pages/attack_lab.py, histograms.py, landscape.py, profiles.py, sweep.py)


@st.cache_data(max_entries=32, show_spinner=False)
def lab_scenes(split: str, seed: int, start: int, count: int, size: int) -> np.ndarray:
    """Demo scenes ``start .. start + count - 1`` of block ``seed`` as ``(count, 3, size, size)`` float32."""
    from mlvis.recipe import ImageSource, demo_images

    return demo_images(ImageSource("demo", split, int(seed), int(start), int(count)), (int(size), int(size)))


@st.cache_data(max_entries=16, show_spinner="Reading the images ...")
def lab_uploads(
    files: tuple[tuple[str, bytes], ...], height: int, width: int, fit: str, max_files: int, interpolation="lanczos"
):
    """Validated uploads (``mlvis.data.images.load_images``): ``(images, error sentences)``."""
    from mlvis.data.images import load_images

    return load_images(files, (int(height), int(width)), fit=fit, max_files=int(max_files), interpolation=interpolation)


@st.cache_resource(max_entries=16, show_spinner=False)
def _artifact(model_name: str, kind: str):
    """The shipped or cached ``kind`` (profile, profile-l2, up, down) of a model; raises ``ValueError`` when
    there is none (failures are not cached, so an artifact computed later is found)."""
    model = load_model(model_name)
    if kind in PROFILE_KINDS.values():
        return mlvis.profile(model, norm="l2" if kind == "profile-l2" else "linf")
    return mlvis.correlations(model, direction=kind)


def artifact(model_name: str, kind: str):
    """``_artifact`` or ``None`` when the model has none of that kind."""
    try:
        return _artifact(model_name, kind)
    except ValueError:
        return None


def forget_artifacts() -> None:
    """Drop the remembered artifacts (after a page computed new ones)."""
    _artifact.clear()


PROFILE_KINDS = {"linf": "profile", "l2": "profile-l2"}
"""The artifact kind of each norm's flip profile (what :func:`artifact` takes)."""


def lab_artifacts(model_name: str, norm: str = "linf"):
    """The model's profile in ``norm`` and its correlation matrices for the Lab (``mlvis.recipe.Artifacts``)."""
    from mlvis.recipe import Artifacts

    return Artifacts(model_name, profile=artifact(model_name, PROFILE_KINDS[norm]), up=artifact(model_name, "up"),
                     down=artifact(model_name, "down"), norm=norm)  # fmt: skip
