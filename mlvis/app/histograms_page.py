"""Glue of the Confidence histograms page (pages/histograms.py).

Its controls (bound to the URL under ``hist.*``), the cost in image-steps, ``compute_histograms`` (every
method on the batch as one ``mlvis.recipe.run_recipe`` job with a progress callback, run by
``mlvis.app.jobs.run_section`` inside :func:`run_histograms`) and the view of the results.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import streamlit as st

import mlvis
from mlvis import recipe as rc
from mlvis.app import cache, jobs, state
from mlvis.app.page import DIMS, scenes
from mlvis.viz import confidence_histograms, histogram_counts

HIST_METHODS = "hist.methods"
HIST_EPS = "hist.eps"
HIST_N = "hist.n"
HIST_DIRECTION = "hist.direction"
HIST_LOG = "hist.log"
HIST_SECTION = "hist.compute"
HIST_DEFAULT_METHODS = ("bce", "linear", "class")
DIRECTIONS = {"up": "Labels to flip up (absent)", "down": "Labels to flip down (present)", "all": "All labels"}


@dataclasses.dataclass(frozen=True)
class HistogramSettings:
    methods: tuple[str, ...] = HIST_DEFAULT_METHODS
    eps: float = 0.01
    images: int = 6
    seed: int = 0
    gamma: float = 0.5
    q: float = 0.5


@dataclasses.dataclass(frozen=True)
class HistogramView:
    """How the results are drawn (changing it redraws without attacking again)."""

    direction: str = "up"
    log_y: bool = False


def histogram_controls() -> tuple[HistogramSettings, HistogramView]:
    """The methods, budget and scenes (what the attack depends on) and the view options, in one bordered
    box; with no method chosen, a sentence and the page stops."""
    with st.container(border=True):
        methods = st.pills(
            "Methods",
            rc.lab_methods(),
            selection_mode="multi",
            default=list(HIST_DEFAULT_METHODS),
            format_func=rc.method_title,
            key=HIST_METHODS,
            bind="query-params",
            help="Each method attacks the same scenes (one batched job); Fig. 10 is BCE, Fig. 11 a subset and linear.",
        )
        c1, c2, c3, c4 = st.columns([1, 1, 2, 1])
        eps = c1.number_input(
            "Budget ε",
            min_value=0.0005,
            max_value=0.5,
            value=0.01,
            step=0.001,
            format="%.4f",
            key=HIST_EPS,
            bind="query-params",
            help="The L∞ budget (the paper's Fig. 11 uses 0.004 on ASL MS-COCO; the demo models are more robust).",
        )
        images = c2.number_input(
            "Scenes",
            min_value=1,
            max_value=100,
            value=6,
            step=1,
            key=HIST_N,
            bind="query-params",
            help="Demo test scenes of the sidebar's seed block (the paper uses 100).",
        )
        direction = c3.radio(
            "Labels counted",
            list(DIRECTIONS),
            format_func=DIRECTIONS.get,
            horizontal=True,
            key=HIST_DIRECTION,
            bind="query-params",
            help="Flip up: the labels absent on the clean scene (the paper's figures); flip down: the present ones.",
        )
        log_y = c4.toggle(
            "Log counts",
            value=False,
            key=HIST_LOG,
            bind="query-params",
            help="A logarithmic count axis shows the few labels near the threshold beside the many near 0.",
        )
    if not methods:
        st.error("Choose at least one attack method.")
        st.stop()
    settings = HistogramSettings(tuple(methods), float(eps), int(images), state.seed())
    return settings, HistogramView(str(direction), bool(log_y))


def histogram_recipe(model_name: str, s: HistogramSettings) -> rc.Recipe:
    return rc.Recipe(
        model_name, s.methods, s.eps, rc.ImageSource(count=s.images, seed=s.seed), q=s.q, gamma=s.gamma, seed=s.seed
    )


def histogram_steps(s: HistogramSettings, model_name: str = "") -> int:
    return histogram_recipe(model_name, s).image_steps(s.images, DIMS)


def histogram_cost(model_name: str, s: HistogramSettings) -> jobs.Estimate:
    calls = jobs.recipe_calls(histogram_recipe(model_name, s), s.images, DIMS)
    est = jobs.estimate(model_name, histogram_steps(s), "histograms", calls=calls)
    return dataclasses.replace(est, note=rc.cost_note(s.methods))


def compute_histograms(model_name: str, s: HistogramSettings, progress=None):
    """Every method on the batch as one job (``mlvis.recipe.run_recipe``): the results carry the
    confidences before and after."""
    model = cache.load_model(model_name)
    x = scenes(model, s.images, s.seed)
    recipe = histogram_recipe(model_name, s)
    return rc.run_recipe(recipe, model, x, progress=progress, artifacts=cache.lab_artifacts(model_name, recipe.norm))


def run_histograms(model_name: str, s: HistogramSettings) -> list[mlvis.AttackResult] | None:
    """The Run section (it runs by itself when cheap) and its status line: the results kept for these
    settings or the last run's, or ``None`` when nothing has run yet."""
    outcome = jobs.run_section(
        HIST_SECTION,
        (model_name, s),
        lambda progress: compute_histograms(model_name, s, progress),
        histogram_cost(model_name, s),
        label="Attacking",
        model_name=model_name,
        help="Attack the scenes with every chosen method (one job).",
    )
    jobs.show_status(outcome, "The histograms below")
    return outcome.result


def histograms_view(results: Sequence[mlvis.AttackResult], view: HistogramView) -> None:
    """Figs. 10-11: the chosen labels' confidences before and after each method, and a table of the counts."""
    first = results[0]
    afters = {r.name: r.adv_probs[0] for r in results}
    st.plotly_chart(
        confidence_histograms(
            first.clean_probs, afters, first.clean_pred, first.threshold, view.direction, log_y=view.log_y
        ),
        key="hist.fig",
        config={"displayModeBar": False},
    )
    rows = []
    for r in results:
        h = histogram_counts(r.adv_probs[0], r.clean_pred, r.threshold, view.direction)
        rows.append(
            {
                "method": r.name,
                "labels counted": h["total"],
                "past the threshold": h["flipped"],
                "in the threshold band": h["near"],
                "mean flips per scene (all labels)": float(r.flips[0].mean()),
            }
        )
    st.dataframe(rows, hide_index=True, key="hist.table")
    st.caption(
        f"{first.num_images} scenes × {len(first.labels)} labels, ε = {first.eps[0]:.4g}. 'Past the threshold' "
        "counts the chosen labels that ended on the other side of the threshold; the last column counts every "
        "flip (up and down)."
    )
