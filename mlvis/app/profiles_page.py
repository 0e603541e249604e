"""Glue of the Profiles page (pages/profiles.py).

Its controls (bound to the URL under ``prof.*`` keys), the probes' cost in image-steps, ``compute_profile``
(one call to ``mlvis.profile`` with a progress callback, run by ``mlvis.app.jobs.run_section``) and the views
of a profile: its metrics, the evaluation grid, the cost of equation 19 and the look-up of one budget.

A profile is measured in a norm (``prof.norm``: L-inf, or L2 for the L2 attacks) on demo scenes or on the
user's own images (uploads, resized by the model card's rule); the library caches it under the weights'
fingerprint, so the Lab's SLAM and CLASS and the sweeps find it afterwards, as they find a shipped one.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
import streamlit as st

import mlvis
from mlvis.analysis.profiles import FRACTIONS
from mlvis.app import cache, jobs, state
from mlvis.app.budget_input import BudgetKeys, budget_input
from mlvis.app.page import IMAGE_SOURCES, image_uploads, norm_radio, scenes
from mlvis.attacks import DEFAULT_ALPHA, l2_step
from mlvis.attacks.class_subset import subset_length

PROF_N = "prof.n"
PROF_MAX_EPS = "prof.max_eps"
PROF_INTERVAL = "prof.interval"
PROF_DEGREE = "prof.degree"
PROF_BUDGET = "prof"  # the look-up's budget control (mlvis.app.budget_input)
PROF_EPS = BudgetKeys.of(PROF_BUDGET).exact  # "prof.eps", bound to the URL
PROF_COMPARE = "prof.compare"
PROF_SECTION = "prof.compute"
PROF_NORM = "prof.norm"
PROF_EPS_L2 = "prof.eps_l2"
PROF_MAX_EPS_L2 = "prof.max_eps_l2"
PROF_SOURCE = "prof.source"
PROF_UPLOAD = "prof.upload"
SOURCES = IMAGE_SOURCES
DEFAULT_MAX_EPS = 0.3
"""The L-inf probes' default cap (768 steps of 1/2560); the L2 default is the same number of L2 steps."""


@dataclasses.dataclass(frozen=True)
class ProfileSettings:
    """What a profile measured on this page depends on; ``files`` is the digest of the uploaded images
    (empty for demo scenes), so a new upload is a new configuration."""

    images: int = 4
    max_eps: float = DEFAULT_MAX_EPS
    interval: int = 10
    degree: int = 4
    seed: int = 0
    norm: str = "linf"
    source: str = "demo"
    files: str = ""


def norm_control(model) -> str:
    """The profile's norm (bound to the URL): L-inf, or L2, the profile L2 attacks read (appendix B)."""
    return norm_radio(
        PROF_NORM,
        "An attack reads the profile of its own norm: L∞ for the paper's attacks, L2 for the L2 ablation "
        "(Table VIII), where ε and ε_max are L2 radii.",
    )


def default_l2_max_eps(model) -> float:
    """The L2 probes' default cap: as many L2 steps (``l2_step(alpha, dims)``) as the L-inf default's."""
    h, w = (int(v) for v in model.spec.input_size)
    return round(DEFAULT_MAX_EPS / DEFAULT_ALPHA) * l2_step(DEFAULT_ALPHA, 3 * h * w)


def profile_controls(model=None, norm: str = "linf", count: int | None = None) -> ProfileSettings:
    """The probes' settings; ``count`` fixes the number of images (the uploads') instead of asking for it."""
    c1, c2, c3, c4 = st.columns(4)
    if count is None:
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
    else:
        images = count
        c1.metric("Probe images", count, help="Your images: the probes run on every one of them.")
    if norm == "l2":
        h, w = (int(v) for v in model.spec.input_size)
        top = float(np.sqrt(3 * h * w))
        max_eps = c2.number_input(
            "Largest ε (L2 radius)",
            min_value=0.1,
            max_value=round(top, 1),
            value=round(min(default_l2_max_eps(model), top), 1),
            step=0.5,
            format="%.2f",
            key=PROF_MAX_EPS_L2,
            bind="query-params",
            help=(
                "The L2 probes stop here at the latest, converged or not. Each step moves "
                f"{l2_step(DEFAULT_ALPHA, 3 * h * w):.4f} in L2 (the length of one L∞ sign step of 1/2560)."
            ),
        )
    else:
        max_eps = c2.number_input(
            "Largest ε",
            min_value=0.02,
            max_value=0.5,
            value=DEFAULT_MAX_EPS,
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
    return ProfileSettings(int(images), float(max_eps), int(interval), int(degree), state.seed(), norm)


def profile_cost(model_name: str, s: ProfileSettings, dims: int = 3 * 64 * 64) -> jobs.Estimate:
    """Two probes x images x the steps they will run, and their loop calls (one per step and probe, per batch of
    images). They stop where the curves converge, which no count knows beforehand: when this model already has
    a converged profile in this norm measured with the same step, the steps are the ones its per-image flips
    predict for ``s.images`` images at this interval and cap (``expected_probe_steps``: the stopping rule
    replayed on random sets of that many of its probe images); otherwise the estimate is the upper bound,
    floor(max_eps / step) steps (alpha, or under L2 the L2 length of a sign step over ``dims`` values)."""
    from mlvis.analysis.profiles import probe_image_steps, probe_step
    from mlvis.attacks.model_helpers import CPU_MAX_BATCH

    most = probe_image_steps(s.images, s.max_eps, DEFAULT_ALPHA, s.norm, int(dims))
    batches = 2 * -(-s.images // CPU_MAX_BATCH)  # the probe's parts: BCE and linear rows, per batch of images
    known = cache.artifact(model_name, cache.PROFILE_KINDS[s.norm])
    usable = known is not None and known.settings.get("alpha") == DEFAULT_ALPHA
    usable = usable and bool(known.settings.get("converged")) and known.per_image_bce is not None
    if usable:
        n_known = int(np.asarray(known.per_image_bce).shape[1])
        steps = _expected_steps(known, s.images, s.max_eps, s.interval, int(dims))
        image_steps = min(round(2 * s.images * steps), most)
        step = probe_step(DEFAULT_ALPHA, s.norm, int(dims))
        note = (f"the probes are expected to stop after about {steps:.0f} steps (ε ≈ {steps * step:.4g}), where "
                f"this model's profile's curves ({n_known} images, converged at ε = {known.eps_max:.4g}) converge "
                f"on {s.images} image{'s' if s.images != 1 else ''} at interval {s.interval}; at most {most:,} "
                "image-steps")  # fmt: skip
        est = jobs.estimate(model_name, image_steps, "profile", calls=round(steps) * batches)
        return dataclasses.replace(est, note=note)
    est = jobs.estimate(model_name, most, "profile", calls=(most // (2 * s.images)) * batches)
    return dataclasses.replace(est, note="an upper bound (no converged profile of this model in this norm to "
                               "predict from): the probes stop earlier when the curves converge")  # fmt: skip


def _expected_steps(known, images: int, max_eps: float, interval: int, dims: int) -> float:
    """``expected_probe_steps`` of the profile ``known``, remembered per its curves' content (a new profile of the
    model is a new entry) and the settings."""
    import hashlib

    h = hashlib.sha256()
    for a in (known.eps, known.per_image_bce, known.per_image_linear):
        h.update(np.ascontiguousarray(a).tobytes())
    return _replay(h.hexdigest(), known, int(images), float(max_eps), int(interval), int(dims))


@st.cache_data(max_entries=64, show_spinner=False)
def _replay(curves: str, _known, images: int, max_eps: float, interval: int, dims: int) -> float:
    from mlvis.analysis.profiles import expected_probe_steps

    steps = expected_probe_steps(_known, images, max_eps=max_eps, interval=interval, alpha=DEFAULT_ALPHA, dims=dims)
    assert steps is not None  # the page asks only of a profile with per-image flips
    return steps


def compute_profile(model_name: str, s: ProfileSettings, progress=None, images: np.ndarray | None = None):
    """``mlvis.profile`` in ``s.norm`` on ``images`` (the user's) or the first ``s.images`` demo scenes; the
    library caches it for these weights, and the pages' remembered artifacts are dropped so they find it."""
    model = cache.load_model(model_name)
    x = scenes(model, s.images, s.seed) if images is None else np.asarray(images, np.float32)
    prof = mlvis.profile(
        model, x, degree=s.degree, interval=s.interval, max_eps=s.max_eps, norm=s.norm, progress=progress
    )  # fmt: skip
    cache.forget_artifacts()
    return prof


def upload_images(model) -> tuple[np.ndarray | None, str, tuple[str, ...]]:
    """The user's images for the probes, resized by the model card's rule: ``(images or None, digest, errors)``."""
    return image_uploads(model, PROF_UPLOAD, "Images to probe (PNG, JPEG or WebP)", "the model should be profiled on")


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


# ---------------------------------------------------------------------------------------------------- the page's parts

PROF_WHICH = "prof.which"


def measure_section(name: str, shipped, model=None, norm: str = "linf") -> jobs.Outcome:
    """The expander that measures a profile in ``norm`` on this page (open when ``shipped`` is ``None``), on
    demo scenes or on the user's own images."""
    what = "L2 profile" if norm == "l2" else "profile"
    model = cache.load_model(name) if model is None else model
    with st.expander(
        f"Measure the {what} here" if shipped is not None else f"{name} has no {what} yet: measure it here",
        expanded=shipped is None,
    ):
        photos = model.spec.world == "photos"
        source = st.radio(
            "Probe images",
            list(SOURCES),
            index=1 if photos else 0,
            format_func=SOURCES.get,
            horizontal=True,
            key=PROF_SOURCE,
            help="The demo world's held-out scenes, or your own images (for a real model: photos of its world).",
        )
        from mlvis.app import models_page

        models_page.world_notice(model.spec, source)
        images = None
        if source == "upload":
            images, digest, errors = upload_images(model)
            for e in errors:
                st.error(e)
            if images is None:
                st.info("Upload the images to profile the model on; the cost estimate follows.")
                return jobs.Outcome()
            settings = dataclasses.replace(
                profile_controls(model, norm, count=len(images)), source="upload", files=digest
            )
            st.caption(
                "The result is cached for these weights (their fingerprint), so SLAM, CLASS and the sweeps find it."
            )
        else:
            st.caption(
                "The probes run on the first demo test scenes of the sidebar's seed block. The result is cached for "
                "these weights, so the other pages (SLAM, CLASS, the sweeps) use it too when no profile is shipped."
            )
            settings = profile_controls(model, norm)
        dims = 3 * int(np.prod([int(v) for v in model.spec.input_size]))
        outcome = jobs.run_section(
            PROF_SECTION,
            (name, settings),
            lambda progress: compute_profile(name, settings, progress, images),
            profile_cost(name, settings, dims),
            label="Probing",
            run_label="Measure",
            auto=False,
            help="Run the two probe attacks (they stop where the curves converge; the estimate says where).",
        )
        if outcome.error:
            st.error(outcome.error)
        if outcome.stopped:
            st.info("Stopped. Press Measure to start again.")
    return outcome


def profile_shown(name: str, computed, shipped, norm: str = "linf"):
    """The profile to show: the one measured here or the shipped one (a radio when there are both); the page
    stops with a hint when there is neither."""
    if computed is not None and shipped is not None:
        which = st.radio(
            "Profile shown",
            ["computed", "shipped"],
            format_func={"computed": "measured on this page", "shipped": "shipped with the model"}.get,
            horizontal=True,
            key=PROF_WHICH,
            help="The profile you measured above, or the one that ships with the model (used by the other pages).",
        )
        return computed if which == "computed" else shipped
    profile = computed if computed is not None else shipped
    if profile is None:
        flag = " --norm l2" if norm == "l2" else ""
        what = "L2 profile" if norm == "l2" else "profile"
        st.info(
            f"{name} has no shipped or cached {what}. Measure one above (or run `mlvis profile --model {name}{flag}`)."
        )
        st.stop()
    return profile


def summary_view(profile) -> None:
    """The profile's metrics (ε_max, E(ε_max), its settings), its figure and which probe leads where."""
    from mlvis.viz import profile_figure

    s = profile.settings
    l2 = getattr(profile, "norm", "linf") == "l2"
    st.header(f"{profile.model}: E(ε){' under L2' if l2 else ''}")
    m1, m2, m3, m4, m5 = st.columns(5)
    m1.metric(
        "ε_max (L2 radius)" if l2 else "ε_max",
        f"{profile.eps_max:.4f}",
        help="Where the flips converge (the end of the probe).",
    )
    m2.metric(
        "E(ε_max)",
        f"{profile.expected_flips(profile.eps_max):.2f} / {profile.labels}",
        help="The fitted flips at ε_max: most labels the model lets an attacker flip, on average.",
    )
    m3.metric("Probe images", f"{s.get('images', 'n/a')}", help="Scenes the probes ran on.")
    m4.metric("Interval i", f"{s.get('interval', 'n/a')}", help="Steps between two counts of the flips.")
    m5.metric(
        "Converged",
        "yes" if s.get("converged") else "no",
        help="No means the probe stopped at its largest ε before the flips converged; raise it.",
    )
    st.plotly_chart(profile_figure(profile), key="prof.fig.profile", config={"displayModeBar": False})
    st.caption(
        "Blue and orange: the mean flips of the BCE and linear probes; red: E's measured points (the larger of the "
        "two); green: the fitted polynomial, held at E(ε_max) beyond ε_max; diamonds: the evaluation grid. "
        + probe_lead_sentence(profile)
    )


def grid_view(profile) -> None:
    """The evaluation grid (section VI-C) and the look-up of any budget's E(ε), p and subset length."""
    st.subheader("The evaluation grid")
    st.dataframe(
        grid_frame(profile),
        hide_index=True,
        key="prof.grid",
        column_config={
            "ε": st.column_config.NumberColumn(format="%.5f"),
            "E(ε)": st.column_config.NumberColumn(format="%.2f", help="Expected flips at this budget."),
            "p = E/C": st.column_config.NumberColumn(format="%.3f", help="SLAM's p (equation 7)."),
        },
    )
    if getattr(profile, "norm", "linf") == "l2":
        eps = float(
            st.number_input(
                "Look up ε (L2 radius)",
                min_value=0.0,
                max_value=float(max(1.0, 2 * profile.eps_max)),
                value=float(round(0.05 * profile.eps_max, 3)),
                step=0.01,
                format="%.4f",
                key=PROF_EPS_L2,
                help="Any L2 radius: E(ε), SLAM's p and CLASS's subset length from this L2 profile.",
            )
        )
    else:
        eps = _linf_lookup()
    e = float(profile.expected_flips(eps))
    k = subset_length(e, profile.labels)
    st.markdown(
        f"At ε = {eps:.4g}: **E = {e:.2f}** flips, **p = {float(profile.flip_ratio(eps)):.3f}**, CLASS targets "
        f"**{k}** label{'s' * (k != 1)}."
    )


def _linf_lookup() -> float:
    return budget_input(
        PROF_BUDGET,
        default=0.01,
        min_value=0.0,
        max_value=1.0,
        step=0.001,
        format="%.4f",
        label="Look up ε",
        slider_label="ε (L∞)",
        help="Any budget: E(ε), SLAM's p and CLASS's subset length from this profile.",
        slider_help=(
            "The small budgets at a glance; type any budget into 'Look up ε', or press 1/255 for one 8-bit level."
        ),
        caption=False,
    ).linf[0]


def cost_view(name: str, profile) -> None:
    """Equation 19 against the passes the probes measured (and their time on this machine)."""
    st.subheader("What it costs (equation 19)")
    frame, note = cost_frame(profile, jobs.step_seconds(name))
    st.dataframe(frame, hide_index=True, key="prof.cost")
    st.caption(
        "Measured: the forward and backward passes each probe image went through, both probes together (the "
        "flips are read from the forwards the next step needs anyway). Equation 19 counts ε_max/α · (1 + 1/i) "
        "forwards and ε_max/α backwards per probe." + (f" {note}" if note else "")
    )


def compare_view(name: str, profile) -> None:
    """A checkbox that overlays every other model's p = E(ε)/C that has a profile."""
    from mlvis.viz import profiles_figure

    compare = st.checkbox(
        "Compare with the other models' profiles",
        value=False,
        key=PROF_COMPARE,
        bind="query-params",
        help="Overlay every model's p = E(ε)/C that has a profile (shipped or cached).",
    )
    if compare:
        others = [m for m in mlvis.list_models() if m != name]
        kind = cache.PROFILE_KINDS[getattr(profile, "norm", "linf")]
        shown = [profile] + [p for p in (cache.artifact(m, kind) for m in others) if p is not None]
        if len(shown) == 1:
            st.info("No other model has a profile yet.")
        st.plotly_chart(profiles_figure(shown), key="prof.fig.compare", config={"displayModeBar": False})
