"""Glue of the analysis pages: Profiles, Label landscape, Budget sweep and Confidence histograms.

Each page has controls here (bound to the URL under its own key prefix: ``prof.``, ``land.``, ``sweep.``,
``hist.``), a cost estimate in image-steps, and a ``compute_*`` function that makes ONE library call
(``mlvis.profile``, ``mlvis.correlations``, ``mlvis.evaluate``, ``q_sweep``, ``flips_vs_targets``,
``bce_vs_linear``, ``run_job``) with a progress callback; ``mlvis.app.jobs.run_section`` runs it with
a progress bar and a Stop button and keeps the result. Tables for the pages are built here as pandas
frames; figures come from ``mlvis.viz``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np
import streamlit as st

import mlvis
from mlvis import recipe as rc
from mlvis.analysis.evaluation import best_targets  # noqa: F401  (a fact the sweep page shows)
from mlvis.analysis.profiles import FRACTIONS
from mlvis.app import cache, jobs, options, state
from mlvis.attacks import DEFAULT_ALPHA, AttackSpec, get_method
from mlvis.attacks.class_subset import subset_length
from mlvis.attacks.plan import exposed_values, image_steps

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


# ---------------------------------------------------------------------------------------------------- profiles

PROF_N = "prof.n"
PROF_MAX_EPS = "prof.max_eps"
PROF_INTERVAL = "prof.interval"
PROF_DEGREE = "prof.degree"
PROF_EPS = "prof.eps"
PROF_COMPARE = "prof.compare"
PROF_SECTION = "prof.compute"


@dataclasses.dataclass(frozen=True)
class ProfileSettings:
    images: int = 4
    max_eps: float = 0.3
    interval: int = 10
    degree: int = 4
    seed: int = 0


def profile_controls() -> ProfileSettings:
    c1, c2, c3, c4 = st.columns(4)
    images = c1.number_input(
        "Probe images",
        min_value=1,
        max_value=100,
        value=4,
        step=1,
        key=PROF_N,
        bind="query-params",
        help="Demo test scenes the two probe attacks run on (the paper uses 100; the cost grows with it).",
    )
    max_eps = c2.number_input(
        "Largest ε",
        min_value=0.02,
        max_value=0.5,
        value=0.3,
        step=0.01,
        format="%.3f",
        key=PROF_MAX_EPS,
        bind="query-params",
        help="The probes stop here at the latest, converged or not (they stop earlier once the flips converge).",
    )
    interval = c3.number_input(
        "Interval i (steps)",
        min_value=1,
        max_value=100,
        value=10,
        step=1,
        key=PROF_INTERVAL,
        bind="query-params",
        help="The flips are counted every i steps (equation 19's i); a larger i is cheaper and less noisy.",
    )
    degree = c4.radio(
        "Polynomial degree",
        [4, 3],
        horizontal=True,
        key=PROF_DEGREE,
        bind="query-params",
        help="Degree of the least-squares polynomial E(ε) fitted to the measured points (4 in the paper).",
    )
    return ProfileSettings(int(images), float(max_eps), int(interval), int(degree), state.seed())


def profile_cost(model_name: str, s: ProfileSettings) -> jobs.Estimate:
    """At most two probes x images x floor(max_eps / alpha) image-steps (they stop earlier when converged)."""
    from mlvis.analysis.profiles import probe_image_steps

    return jobs.estimate(model_name, probe_image_steps(s.images, s.max_eps, DEFAULT_ALPHA), "profile")


def compute_profile(model_name: str, s: ProfileSettings, progress=None):
    """``mlvis.profile`` on the first ``s.images`` demo scenes (cached by the library for these weights)."""
    model = cache.load_model(model_name)
    x = scenes(model, s.images, s.seed)
    prof = mlvis.profile(
        model, x, degree=s.degree, interval=s.interval, max_eps=s.max_eps, progress=progress
    )  # fmt: skip
    cache.forget_artifacts()
    return prof


def probe_lead_sentence(profile) -> str:
    """Which probe leads where (the paper's Fig. 8 pattern is linear first, BCE later), read off the profile."""
    b, lin, eps = (np.asarray(v, np.float64) for v in (profile.flips_bce, profile.flips_linear, profile.eps))
    lead = np.sign(lin - b)[1:]  # +1 linear ahead, -1 BCE ahead, 0 tie (eps = 0 is 0 for both)
    eps = eps[1:]
    ahead = lead[lead != 0]
    if not ahead.size:
        return "The two probes flip the same number of labels at every measured ε."
    if (ahead > 0).all():
        return "Here the linear probe leads at every measured ε: BCE never catches up on this model."
    if (ahead < 0).all():
        return "Here the BCE probe leads at every measured ε."
    first_bce = float(eps[np.flatnonzero(lead < 0)[0]])
    if lead[lead != 0][0] > 0 and (lead[eps >= first_bce] <= 0).all():
        return (
            f"The linear probe leads up to ε ≈ {first_bce:.3g}, then BCE (the paper's Fig. 8 pattern, which is why "
            "SLAM mixes the two)."
        )
    return "The lead changes hands more than once between the two probes."


def grid_frame(profile, fractions: Sequence[float] = FRACTIONS):
    """The evaluation grid (section VI-C): eps, E(eps), p (equation 7) and CLASS's subset length."""
    import pandas as pd

    eps = np.asarray(fractions, np.float64) * profile.eps_max
    e = np.asarray(profile.expected_flips(eps), np.float64)
    return pd.DataFrame(
        {
            "% of ε_max": [f"{f:.0%}" for f in fractions],
            "ε": eps,
            "E(ε)": e,
            "p = E/C": np.asarray(profile.flip_ratio(eps), np.float64),
            "CLASS subset length": [subset_length(v, profile.labels) for v in e],
        }
    )


def cost_frame(profile, seconds_per_step: float | None = None):
    """Equation 19 against what the probes measured, in passes per image (both probes)."""
    import pandas as pd

    cost = profile.cost or {}
    measured = cost.get("measured", {})
    eq = cost.get("equation_19", {})
    images = measured.get("images") or profile.settings.get("images")
    rows = [
        {
            "passes per image": "forward",
            "measured (both probes)": measured.get("forward"),
            "equation 19, one probe": eq.get("forward"),
            "equation 19, both probes": 2 * eq["forward"] if "forward" in eq else None,
        },
        {
            "passes per image": "backward",
            "measured (both probes)": measured.get("backward"),
            "equation 19, one probe": eq.get("backward"),
            "equation 19, both probes": 2 * eq["backward"] if "backward" in eq else None,
        },
    ]
    frame = pd.DataFrame(rows)
    note = None
    if seconds_per_step and measured.get("backward") and images:
        note = (
            f"On this machine the probes of {images} images take about "
            f"{jobs.format_seconds(measured['backward'] * images * seconds_per_step)}."
        )
    return frame, note


# ---------------------------------------------------------------------------------------------------- landscape

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


# ---------------------------------------------------------------------------------------------------- budget sweep

SWEEP_METHODS = "sweep.methods"
SWEEP_GAMMA = "sweep.gamma"
SWEEP_FRACTIONS = "sweep.fractions"
SWEEP_N = "sweep.n"
SWEEP_EIGHT = "sweep.eight_bit"
SWEEP_TARGET_EPS = "sweep.target_eps"
SWEEP_QS = "sweep.qs"
SWEEP_BL_EPS = "sweep.bl_eps"
SWEEP_DEFAULT_METHODS = ("bce", "slam", "class", "random")
SWEEP_QS_DEFAULT = (0.25, 0.5, 0.75, 1.0)


@dataclasses.dataclass(frozen=True)
class SweepSettings:
    """The sweep's controls; ``values`` are the methods' exposed options by recipe key (e.g. ``gamma``)."""

    methods: tuple[str, ...] = SWEEP_DEFAULT_METHODS
    values: tuple[tuple[str, float], ...] = (("gamma", 0.5),)
    fractions: tuple[float, ...] = (0.05, 0.1, 0.2)
    images: int = 8
    seed: int = 0


def sweep_options() -> list:
    """Every exposed option of the methods the sweep offers (CLASS's γ, SLAM's q, a plugin's own)."""
    return options.exposed(rc.lab_methods())


def option_sliders(section: str, exposed: Sequence, columns: Sequence) -> dict[str, float | int]:
    """The sliders of ``exposed`` options (none disabled: the page picks methods after them)."""
    return options.sliders(section, exposed, columns, chosen=[info.name for info, _ in exposed])


def method_specs(methods: Sequence[str], values) -> list[AttackSpec]:
    """The methods with their exposed options set from ``values`` (by recipe key; defaults elsewhere)."""
    vals = dict(values)
    return [AttackSpec(m, exposed_values(get_method(m), vals)) for m in methods]


def sweep_specs(s: SweepSettings) -> list[AttackSpec]:
    """The methods as ``evaluate`` takes them (each with its exposed options, e.g. CLASS's gamma)."""
    return method_specs(s.methods, s.values)


def sweep_steps(s: SweepSettings, eps_max: float) -> int:
    """Image-steps of the evaluation (the engine's dry run; BCE, the baseline, always runs): an eps-independent
    method runs once to the largest eps, the others once per eps (SLAM's p and the subsets depend on eps)."""
    methods = s.methods if "bce" in s.methods else ("bce", *s.methods)
    eps = np.asarray(s.fractions, np.float64) * eps_max
    return image_steps(method_specs(methods, s.values), eps, s.images, alpha=DEFAULT_ALPHA, dims=DIMS)


def sweep_cost(model_name: str, s: SweepSettings, eps_max: float) -> jobs.Estimate:
    est = jobs.estimate(model_name, sweep_steps(s, eps_max), "sweep.table")
    return dataclasses.replace(est, note=rc.cost_note(s.methods))


def compute_sweep(model_name: str, s: SweepSettings, progress=None):
    """Tables IV-VI (``mlvis.evaluate``): every method at every budget as one job."""
    model = cache.load_model(model_name)
    x = scenes(model, s.images, s.seed)
    arts = cache.lab_artifacts(model_name)
    for m in s.methods:
        problem = arts.problem(m)
        if problem:
            raise ValueError(problem)
    return mlvis.evaluate(
        model,
        x,
        sweep_specs(s),
        s.fractions,
        profile=arts.profile,
        correlations=arts.correlations(),
        seed=s.seed,
        progress=progress,
    )


def evaluation_frame(table, eight_bit: bool = False):
    """Tables IV-VI as a frame of strings: ``mean ± std`` per method x eps, ``*`` for same-as-baseline,
    and the total; ``best`` says which cells are significant winners (to make them bold)."""
    import pandas as pd

    flips = table.flips_8bit if eight_bit else table.flips
    mean, std = flips.mean(-1), flips.std(-1)
    best = table.best if not eight_bit else np.zeros(mean.shape, bool)
    data = {"method": list(table.methods)}
    for k, e in enumerate(table.eps):
        head = f"ε = {e:.4g} ({table.fractions[k]:.0%})" if np.isfinite(table.fractions[k]) else f"ε = {e:.4g}"
        data[head] = [
            "*" if table.same_as_baseline[i, k] else f"{mean[i, k]:.2f} ± {std[i, k]:.2f}"
            for i in range(len(table.methods))
        ]
    data["total"] = [f"{v:.2f}" for v in mean.sum(1)]
    return pd.DataFrame(data), best


def evaluation_markdown(table, eight_bit: bool = False) -> str:
    """The table in the paper's layout with **significant winners** in bold (``EvaluationTable.to_markdown``)."""
    return table.to_markdown(eight_bit=eight_bit)


@dataclasses.dataclass(frozen=True)
class TargetsSettings:
    eps: tuple[float, ...] = (0.01, 0.02)
    images: int = 8
    seed: int = 0
    num_labels: int = 24


def targets_steps(s: TargetsSettings) -> int:
    """Image-steps of Fig. 7's job: one ``closest`` spec per target count, each one trajectory over the eps list."""
    specs = [AttackSpec("closest", {"k": k}) for k in range(1, s.num_labels + 1)]
    return image_steps(specs, s.eps, s.images, alpha=DEFAULT_ALPHA, dims=DIMS)


def compute_targets(model_name: str, s: TargetsSettings, progress=None):
    """Fig. 7 (``flips_vs_targets``): mean flips vs the number of targets closest to the threshold."""
    from mlvis.analysis import flips_vs_targets

    model = cache.load_model(model_name)
    x = scenes(model, s.images, s.seed)
    return flips_vs_targets(model, x, list(s.eps), progress=progress)


@dataclasses.dataclass(frozen=True)
class BceLinearSettings:
    eps: tuple[float, ...] = (0.005, 0.01, 0.02, 0.04)
    images: int = 8
    seed: int = 0


def bce_linear_steps(s: BceLinearSettings) -> int:
    return image_steps(["bce", "linear"], s.eps, s.images, alpha=DEFAULT_ALPHA, dims=DIMS)


def compute_bce_linear(model_name: str, s: BceLinearSettings, progress=None):
    """Fig. 8 (``bce_vs_linear``): mean and std of the flips of both losses over the eps list (one job)."""
    from mlvis.analysis import bce_vs_linear

    model = cache.load_model(model_name)
    x = scenes(model, s.images, s.seed)
    return bce_vs_linear(model, x, list(s.eps), progress=progress)


@dataclasses.dataclass(frozen=True)
class QSweepSettings:
    qs: tuple[float, ...] = SWEEP_QS_DEFAULT
    fractions: tuple[float, ...] = (0.05, 0.1, 0.2)
    images: int = 8
    seed: int = 0


def q_sweep_steps(s: QSweepSettings, eps_max: float) -> int:
    specs = ["bce", *(AttackSpec("slam", {"q": q}) for q in s.qs)]
    eps = np.asarray(s.fractions, np.float64) * eps_max
    return image_steps(specs, eps, s.images, alpha=DEFAULT_ALPHA, dims=DIMS)


def compute_q_sweep(model_name: str, s: QSweepSettings, progress=None):
    """Table IX (``q_sweep``): SLAM at several q over the grid, with the BCE baseline."""
    from mlvis.analysis import q_sweep

    model = cache.load_model(model_name)
    x = scenes(model, s.images, s.seed)
    prof = cache.artifact(model_name, "profile")
    if prof is None:
        raise ValueError(cache.lab_artifacts(model_name).problem("slam"))
    return q_sweep(model, x, s.qs, profile=prof, eps_fractions=s.fractions, seed=s.seed, progress=progress)


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


# ---------------------------------------------------------------------------------------------------- histograms

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
    est = jobs.estimate(model_name, histogram_steps(s), "histograms")
    return dataclasses.replace(est, note=rc.cost_note(s.methods))


def compute_histograms(model_name: str, s: HistogramSettings, progress=None):
    """Every method on the batch as one job (``mlvis.recipe.run_recipe``): the results carry the
    confidences before and after."""
    model = cache.load_model(model_name)
    x = scenes(model, s.images, s.seed)
    recipe = histogram_recipe(model_name, s)
    return rc.run_recipe(recipe, model, x, progress=progress, artifacts=cache.lab_artifacts(model_name))
