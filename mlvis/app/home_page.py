"""Glue of the Home page (pages/home.py): the chosen model's card and the gallery of sample test scenes."""

from __future__ import annotations

import numpy as np
import streamlit as st

import mlvis
from mlvis.app import cache
from mlvis.viz import confidence_bars, upscale_image

GALLERY_SIZE = 6
GALLERY_COLUMNS = 2
IMAGE_SCALE = 3  # 64x64 scenes are shown at 192x192, nearest neighbour


def model_card_view(name: str, model: mlvis.MultiLabelModel) -> None:
    """The model's name, description and five facts of its card (test mAP, parameters, input, labels, threshold)."""
    spec = model.spec
    card = spec.card
    st.header(f"Model: {name}")
    if spec.description:
        st.caption(spec.description)
    m1, m2, m3, m4, m5 = st.columns(5)
    test_map = card.get("test_mAP")
    m1.metric("Test mAP", f"{test_map:.3f}" if isinstance(test_map, (int, float)) else "n/a")
    params = card.get("parameters")
    m2.metric("Parameters", f"{params / 1e6:.2f} M" if isinstance(params, (int, float)) else "n/a")
    m3.metric("Input size", "×".join(str(v) for v in spec.input_size))
    m4.metric("Labels", spec.num_labels)
    m5.metric("Threshold", f"{spec.threshold:g}")


def label_list(names: list[str]) -> str:
    return ", ".join(names) if names else "none"


def scene_summary(labels, p: np.ndarray, predicted: np.ndarray, truth: np.ndarray) -> str:
    """Markdown: ground truth, predictions marked correct (green tick) or not (red cross), misses."""
    marked = [
        f":green[:material/check: {labels[j]}]" if truth[j] else f":red[:material/close: {labels[j]}]"
        for j in np.argsort(-p)
        if predicted[j]
    ]
    missed = [f":red[{labels[j]}]" for j in np.flatnonzero(truth & ~predicted)]
    errors = int((predicted != truth).sum())
    verdict = "all labels correct" if errors == 0 else f"{errors} wrong label{'s' * (errors != 1)}"
    return (
        f"**Ground truth:** {label_list([labels[j] for j in np.flatnonzero(truth)])}  \n"
        f"**Predicted:** {label_list(marked)}  \n"
        f"**Missed:** {label_list(missed)}  \n"
        f"**Verdict:** {verdict}"
    )


def gallery_view(name: str, model: mlvis.MultiLabelModel, seed: int) -> None:
    """Six held-out test scenes of ``seed`` with the model's confidence bars and what it got right."""
    spec = model.spec
    st.header("Sample test scenes")
    st.caption(
        f"{GALLERY_SIZE} held-out test scenes for seed {seed}, with the model's confidence for each label. "
        "Bars reaching the dashed threshold line are predicted present (blue). Stars mark the ground truth: "
        "green when the model found the label, red when it missed it; a red cross marks a false alarm "
        "(predicted present, not in the scene)."
    )
    scenes = cache.gallery_scenes(seed, GALLERY_SIZE, cache.gallery_image_size(model))
    probs = cache.gallery_predictions(name, seed, GALLERY_SIZE)
    truth_matches = tuple(spec.labels) == scenes.label_names
    if not truth_matches:
        st.info(f"{name} uses its own labels, not the demo world's, so the gallery cannot mark the ground truth.")
    for row_start in range(0, GALLERY_SIZE, GALLERY_COLUMNS):
        columns = st.columns(GALLERY_COLUMNS)
        for col, i in zip(columns, range(row_start, min(row_start + GALLERY_COLUMNS, GALLERY_SIZE))):
            p = probs[i]
            predicted = p >= spec.threshold
            truth = scenes.labels[i] > 0.5 if truth_matches else None
            with col.container(border=True):
                left, right = st.columns([2, 3])
                left.image(
                    upscale_image(scenes.images[i], IMAGE_SCALE),
                    caption=f"Scene {scenes.indices[i]} · {scenes.contexts[i]}",
                )
                if truth is not None:
                    right.markdown(scene_summary(spec.labels, p, predicted, truth))
                else:
                    shown = label_list([spec.labels[j] for j in np.flatnonzero(predicted)])
                    right.markdown(f"**Predicted:** {shown}")
                st.plotly_chart(
                    confidence_bars(p, spec.labels, spec.threshold, truth=truth, show_legend=False),
                    key=f"home.scene.{i}",
                    config={"displayModeBar": False},
                )
