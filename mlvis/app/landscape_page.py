"""Glue of the Label landscape page (pages/landscape.py).

Its controls (bound to the URL under ``land.*`` keys), the cost of both matrices in image-steps,
``compute_landscape`` (``mlvis.correlations`` up and down as one job with a progress callback, run by
``mlvis.app.jobs.run_section`` inside :func:`measure_section`), the demo world's scene statistics, the page's
tables (pandas frames) and its views: the matrices beside the co-occurrence, attackability, Table II and
the matrices' cost.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import streamlit as st

import mlvis
from mlvis.analysis.correlation_matrices import CorrelationMatrix
from mlvis.app import cache, jobs, state
from mlvis.app.page import IMAGE_SOURCES, image_uploads, needs_demo_labels, scenes
from mlvis.attacks import DEFAULT_ALPHA
from mlvis.attacks.plan import image_steps
from mlvis.viz import attackability_figure, matrix_heatmap

LAND_N = "land.n"
LAND_EPS = "land.eps"
LAND_MEASURE = "land.measure"
LAND_SCENES = "land.scenes"
LAND_SECTION = "land.compute"
MEASURES = {"lift": "Lift P(i, j) / P(i)P(j)", "conditional": "P(column | row)", "counts": "Co-occurrence counts"}


LAND_SOURCE = "land.source"
LAND_UPLOAD = "land.upload"


@dataclasses.dataclass(frozen=True)
class LandscapeSettings:
    images: int = 4
    eps: float = 0.005
    seed: int = 0
    files: str = ""  # the digest of the user's images (their source), "" for the demo test scenes


def landscape_controls(count: int | None = None, files: str = "") -> LandscapeSettings:
    """The number of images (or ``count``, the uploads') and the budget of Algorithm 1's single-label attacks."""
    c1, c2 = st.columns(2)
    if count is not None:
        c1.metric("Images", count, help="Your images: every label is attacked on every one of them.")
    images = count if count is not None else c1.number_input(
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
    return LandscapeSettings(int(images), float(eps), state.seed(), files)


@dataclasses.dataclass(frozen=True)
class LandscapeSteps:
    """The image-steps of both matrices' jobs, exactly as they run, beside equation 9's count per matrix.

    Attributes:
        up: flip-up, every label attacked alone on every image (C x n x floor(eps / alpha), equation 9's count).
        down: flip-down, each label attacked only on the images where it is predicted present (issue 12).
        equation_9: equation 9's steps of one matrix, C x n x floor(eps / alpha) (the flip-down count's bound).
        steps: floor(eps / alpha), the steps of each single-label attack.
        calls: the engine's loop calls of both jobs (``jobs.loop_calls``: one per step and batch of rows).
    """

    up: int
    down: int
    equation_9: int
    steps: int
    calls: int = 0

    @property
    def total(self) -> int:
        return self.up + self.down


def landscape_steps(model_name: str, s: LandscapeSettings, images: np.ndarray | None = None) -> LandscapeSteps:
    """Image-steps of both matrices' jobs on ``images`` (the user's) or the demo scenes ``s`` names, counted by
    the library from the pairs each job attacks (``correlation_image_steps``: one clean no-grad forward finds
    the labels present), cached per model and settings (``s.files`` names the uploads)."""
    from mlvis.models.cards import card_version

    return _landscape_steps(model_name, card_version(model_name), s, images)


@st.cache_data(max_entries=32, show_spinner=False)
def _landscape_steps(model_name: str, version: str, s: LandscapeSettings, _images: np.ndarray | None):
    from mlvis.analysis.correlation_matrices import correlation_image_steps

    model = cache.load_model(model_name)
    x = scenes(model, s.images, s.seed) if _images is None else _images
    up, down = (correlation_image_steps(model, x, s.eps, d, alpha=DEFAULT_ALPHA) for d in ("up", "down"))
    c, n = len(model.labels), int(len(x))
    dims = int(np.prod(x.shape[1:]))
    one = image_steps(["single-label"], s.eps, c * n, alpha=DEFAULT_ALPHA, dims=dims)
    steps = one // max(c * n, 1)
    calls = sum(jobs.loop_calls(["single-label"], [s.eps], rows // max(steps, 1), alpha=DEFAULT_ALPHA, dims=dims)
                for rows in (up, down) if rows)  # fmt: skip
    return LandscapeSteps(int(up), int(down), int(one), steps, int(calls))


def compute_landscape(model_name: str, s: LandscapeSettings, progress=None, images: np.ndarray | None = None):
    """Both correlation matrices (``mlvis.correlations``, up and down) as one progress bar, on ``images`` (the
    user's) or on the first demo test scenes of the seed's block."""
    model = cache.load_model(model_name)
    x = scenes(model, s.images, s.seed) if images is None else images
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


# ----------------------------------------------------------------------------------------------------------------------
# The page's sections, in the order it draws them

Matrices = tuple[CorrelationMatrix | None, CorrelationMatrix | None]  # (flip-up, flip-down)
NO_TOOLBAR = {"displayModeBar": False}


def measure_section(name: str, model: mlvis.MultiLabelModel) -> Matrices:
    """The model's flip-up and flip-down matrices: the ones measured on this page when they are current, else
    the stored artifacts. Draws the Measure expander (open when an artifact is missing); stops the page with a
    hint when there is neither matrix."""
    up, down = cache.artifact(name, "up"), cache.artifact(name, "down")
    missing = [d for d, m in (("flip-up", up), ("flip-down", down)) if m is None]
    title = f"{name} has no {' and no '.join(missing)} matrix yet: measure both here" if missing else None
    with st.expander(title or "Measure the matrices here", expanded=bool(missing)):
        source = st.radio(
            "Images",
            list(IMAGE_SOURCES),
            index=1 if model.spec.world == "photos" else 0,
            format_func=IMAGE_SOURCES.get,
            horizontal=True,
            key=LAND_SOURCE,
            help="The demo world's held-out scenes, or your own images (for a real model: photos of its world).",
        )
        from mlvis.app import models_page

        models_page.world_notice(model.spec, source)
        images = None
        if source == "upload":
            images, digest, errors = image_uploads(
                model, LAND_UPLOAD, "Images to measure on (PNG, JPEG or WebP)", "every label is attacked on"
            )
            for e in errors:
                st.error(e)
            if images is None:
                st.info("Upload the images to measure the matrices on; the cost estimate follows.")
            settings = landscape_controls(len(images) if images is not None else 0, digest)
        else:
            settings = landscape_controls()
        c = len(model.labels)
        count = LandscapeSteps(0, 0, 0, 0) if settings.images == 0 else landscape_steps(name, settings, images)
        steps = count.total
        st.caption(
            f"Equation 9 for these settings: {c} labels × {settings.images} images × {count.steps} steps = "
            f"{count.equation_9:,} forward + {count.equation_9:,} backward passes per matrix. The jobs run "
            f"{count.up:,} image-steps for flip-up (every label on every image) and {count.down:,} for flip-down "
            f"(a label only on the images where it is present), both matrices {steps:,} image-steps."
        )
        outcome = jobs.Outcome() if settings.images == 0 else jobs.run_section(
            LAND_SECTION,
            (name, settings),
            lambda progress: compute_landscape(name, settings, progress, images),
            jobs.estimate(name, steps, "landscape", calls=count.calls),
            label="Attacking every label alone",
            model_name=name,
            run_label="Measure",
            auto=False,
            help="Measure the flip-up and flip-down matrices with these settings (one batched job each).",
        )
        if outcome.error:
            st.error(outcome.error)
        if outcome.stopped:
            st.info("Stopped. Press Measure to start again.")
    if outcome.result is not None and outcome.current:
        up, down = outcome.result
        st.caption(f"Showing the matrices measured on this page ({up.images} images, ε = {up.eps:g}).")
    if up is None and down is None:
        st.info(f"Measure the matrices above (or run `mlvis correlations --model {name}`).")
        st.stop()
    return up, down


def statistics_controls(model: mlvis.MultiLabelModel) -> dict | None:
    """The demo world's training-scene statistics over the chosen number of scenes (bound to ?land.scenes=),
    or ``None`` when the model does not use the demo world's labels."""
    if not needs_demo_labels(model):
        return None
    n_scenes = st.select_slider(
        "Training scenes counted for the co-occurrence",
        [1_000, 2_000, 5_000, 10_000, 20_000],
        value=2_000,
        key=LAND_SCENES,
        bind="query-params",
        help="Label frequencies and co-occurrences are counted over this many training scenes of the demo world "
        "(about a second per thousand on this machine; the findings report uses 20,000).",
    )
    return scene_statistics(int(n_scenes))


def matrices_view(name: str, matrices: Matrices, stats: dict | None) -> None:
    """Both correlation matrices side by side, then the co-occurrence (a measure to choose) and how well the
    matrices follow it (observation 3); without statistics, a caption saying why they are not shown."""
    up, down = matrices
    st.header("Correlation matrices beside the dataset's co-occurrence")
    for col, cm in zip(st.columns(2), [cm for cm in matrices if cm is not None]):
        col.plotly_chart(
            matrix_heatmap(
                cm.matrix,
                cm.labels,
                f"flip-{cm.direction} (ε = {cm.eps:g}, {cm.images} images)",
                f"correlations_{cm.direction}",
                colorbar="Δ confidence",
            ),
            key=f"land.fig.{cm.direction}",
            config=NO_TOOLBAR,
        )
    if stats is None:
        st.caption(f"{name} does not use the demo world's labels, so the dataset's co-occurrence is not shown.")
        return
    left, right = st.columns(2)
    with left:
        measure = st.radio(
            "Co-occurrence measure",
            list(MEASURES),
            format_func=MEASURES.get,
            horizontal=True,
            key=LAND_MEASURE,
            bind="query-params",
            help="How to count labels that appear together in the training scenes: lift (> 1: more often than "
            "chance), the conditional frequency of the column given the row, or raw counts.",
        )
        st.plotly_chart(
            matrix_heatmap(
                stats[measure],
                stats["labels"],
                f"Training scenes: {MEASURES[measure]} over {stats['n']:,} scenes",
                f"cooccurrence_{measure}",
                diverging=False,
            ),
            key="land.fig.cooc",
            config=NO_TOOLBAR,
        )
    with right:
        if up is not None and down is not None:
            st.markdown(
                "**Do the matrices follow the co-occurrence?** Pearson's r over the off-diagonal entries "
                "(observation 3); a positive r means labels that appear together also move together."
            )
            st.dataframe(
                agreement_frame(up, down, stats),
                hide_index=True,
                key="land.agreement",
                column_config={
                    k: st.column_config.NumberColumn(format="%.3g")
                    for k in ("flip-up r", "flip-up p-value", "flip-down r", "flip-down p-value")
                },
            )


def attackability_view(labels: list[str], matrices: Matrices) -> None:
    """Fig. 4: each label's attackability per direction, with its mean clean confidence."""
    up, down = matrices
    nan = np.full(len(labels), np.nan)  # a direction not measured
    st.header("Attackability")
    st.plotly_chart(
        attackability_figure(
            labels,
            up.attackability if up is not None else nan,
            down.attackability if down is not None else nan,
            up.confidence if up is not None else None,
            down.confidence if down is not None else None,
        ),
        key="land.fig.attackability",
        config=NO_TOOLBAR,
    )
    st.caption(
        "Bars: the share of images on which attacking the label alone (at the matrix's ε) flipped it, among the "
        "images where it could flip that way (absent for flip-up, present for flip-down). Diamonds: the label's mean "
        "clean confidence on those images. In the paper's Fig. 4 the two show a similar structure."
    )


def table_ii_view(matrices: Matrices, stats: dict | None) -> None:
    """Table II's analogue, when both matrices and the demo world's label frequencies are at hand."""
    up, down = matrices
    if up is None or down is None or stats is None:
        return
    st.subheader("Table II: what attackability goes with")
    st.dataframe(
        table_ii_frame(up, down, stats["frequencies"]),
        hide_index=True,
        key="land.table_ii",
        column_config={
            "flip up p-value": st.column_config.NumberColumn(format="%.3g"),
            "flip down p-value": st.column_config.NumberColumn(format="%.3g"),
        },
    )
    st.caption(
        "Pearson's r between each label's attackability and its mean confidence, and between its occurrence "
        "frequency in the training scenes and its confidence; * marks an insignificant r (p > 0.05), as in the paper."
    )


def cost_view(matrices: Matrices) -> None:
    """The passes each matrix took as run, beside equation 9's count of its steps."""
    rows = []
    for cm in matrices:
        if cm is None:
            continue
        cost = cm.cost or {}
        eq9 = cost.get("equation_9", {})
        rows.append(
            {
                "matrix": f"flip-{cm.direction}",
                "images": cm.images,
                "ε": cm.eps,
                "forward (as run)": cost.get("forward"),
                "backward (as run)": cost.get("backward"),
                "equation 9 forward": eq9.get("forward"),
                "equation 9 backward": eq9.get("backward"),
            }
        )
    st.subheader("What the matrices cost")
    st.dataframe(rows, hide_index=True, key="land.cost")
    st.caption(
        "As run: every (label, image) row's clean forward, one forward + backward per step, and the final and "
        "8-bit evaluation forwards; equation 9 counts only the steps."
    )
