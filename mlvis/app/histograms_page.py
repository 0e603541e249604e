"""Glue of the Confidence histograms page (pages/histograms.py).

Its setting keys (bound to the URL under ``hist.*``), the cost in image-steps and ``compute_histograms``
(every method on the batch as one ``mlvis.recipe.run_recipe`` job with a progress callback, run by
``mlvis.app.jobs.run_section``).
"""

from __future__ import annotations

import dataclasses

from mlvis import recipe as rc
from mlvis.app import cache, jobs
from mlvis.app.page import DIMS, scenes

HIST_METHODS = "hist.methods"
HIST_EPS = "hist.eps"
HIST_N = "hist.n"
HIST_DIRECTION = "hist.direction"
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
    return rc.run_recipe(recipe, model, x, progress=progress, artifacts=cache.lab_artifacts(model_name))
