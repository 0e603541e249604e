"""Glue of the Label landscape page (pages/landscape.py).

Its controls (bound to the URL under ``land.*`` keys), the cost of both matrices in image-steps,
``compute_landscape`` (``mlvis.correlations`` up and down as one job with a progress callback, run by
``mlvis.app.jobs.run_section``), the demo world's scene statistics and the page's tables (pandas frames).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import streamlit as st

import mlvis
from mlvis.app import cache, state
from mlvis.app.page import DIMS, scenes
from mlvis.attacks import DEFAULT_ALPHA
from mlvis.attacks.plan import image_steps

LAND_N = "land.n"
LAND_EPS = "land.eps"
LAND_MEASURE = "land.measure"
LAND_SCENES = "land.scenes"
LAND_SECTION = "land.compute"
MEASURES = {"lift": "Lift P(i, j) / P(i)P(j)", "conditional": "P(column | row)", "counts": "Co-occurrence counts"}


@dataclasses.dataclass(frozen=True)
class LandscapeSettings:
    images: int = 4
    eps: float = 0.005
    seed: int = 0


def landscape_controls() -> LandscapeSettings:
    c1, c2 = st.columns(2)
    images = c1.number_input(
        "Images",
        min_value=1,
        max_value=100,
        value=4,
        step=1,
        key=LAND_N,
        bind="query-params",
        help="Demo test scenes every label is attacked on (the paper uses 100).",
    )
    eps = c2.number_input(
        "ε of each single-label attack",
        min_value=0.0005,
        max_value=0.05,
        value=0.005,
        step=0.0005,
        format="%.4f",
        key=LAND_EPS,
        bind="query-params",
        help="Algorithm 1 attacks one label at a time with this small budget (0.005 by default).",
    )
    return LandscapeSettings(int(images), float(eps), state.seed())


def landscape_steps(num_labels: int, s: LandscapeSettings) -> int:
    """Image-steps of both matrices: 2 directions x C labels x n images x floor(eps / alpha) (equation 9)."""
    one = image_steps(["single-label"], s.eps, int(num_labels) * s.images, alpha=DEFAULT_ALPHA, dims=DIMS)
    return 2 * one


def compute_landscape(model_name: str, s: LandscapeSettings, progress=None):
    """Both correlation matrices (``mlvis.correlations``, up and down) as one progress bar."""
    model = cache.load_model(model_name)
    x = scenes(model, s.images, s.seed)
    half = [0]

    def step(done, total):
        if progress is not None:
            progress(half[0] * total + done, 2 * total)

    up = mlvis.correlations(model, x, eps=s.eps, direction="up", progress=step)
    half[0] = 1
    down = mlvis.correlations(model, x, eps=s.eps, direction="down", progress=step)
    cache.forget_artifacts()
    return up, down


@st.cache_data(max_entries=4, show_spinner="Counting labels in the training scenes ...")
def scene_statistics(n: int = 2_000):
    """Label frequencies and co-occurrences of the demo world's training scenes (as plain arrays)."""
    stats = mlvis.data.scene_statistics("train", int(n))
    return {
        "labels": stats.labels,
        "n": stats.n,
        "frequencies": stats.frequencies,
        "counts": stats.cooccurrence.astype(np.float64),
        "conditional": stats.conditional,
        "lift": stats.lift,
    }


def table_ii_frame(up, down, frequencies):
    """Table II's analogue (``mlvis.analysis.table_ii``): Pearson's r per direction, * where p > 0.05."""
    import pandas as pd

    from mlvis.analysis import table_ii

    t = table_ii(up, down, frequencies)
    rows = []
    for quantity in ("attackability vs confidence", "occurrence frequency vs confidence"):
        row: dict[str, object] = {"correlation": quantity}
        for direction in ("flip up", "flip down"):
            c = t[direction][quantity]
            text = "n/a" if math.isnan(c.r) else f"{c.r:+.3f}" + ("" if c.significant else "*")
            row[direction] = text
            row[f"{direction} p-value"] = c.p_value
        rows.append(row)
    return pd.DataFrame(rows)


def agreement_frame(up, down, stats: dict):
    """Observation 3: Pearson's r between each matrix and each co-occurrence measure (off the diagonal)."""
    import pandas as pd

    from mlvis.analysis import cooccurrence_agreement

    rows = []
    for key, title in MEASURES.items():
        row: dict[str, object] = {"co-occurrence measure": title}
        for cm in (up, down):
            c = cooccurrence_agreement(cm, stats[key])
            row[f"flip-{cm.direction} r"] = c.r
            row[f"flip-{cm.direction} p-value"] = c.p_value
        rows.append(row)
    return pd.DataFrame(rows)
