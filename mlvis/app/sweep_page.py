"""Glue of the Budget sweep page (pages/sweep.py).

Its controls (bound to the URL under ``sweep.*`` keys), the cost of each tab in image-steps, one ``compute_*``
per tab (``mlvis.evaluate``, ``flips_vs_targets``, ``bce_vs_linear``, ``q_sweep``; each with a progress
callback, run by ``mlvis.app.jobs.run_section``) and one ``*_view`` per tab that shows its result.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
import streamlit as st

import mlvis
from mlvis import recipe as rc
from mlvis.analysis.evaluation import best_targets
from mlvis.app import cache, jobs, options, state
from mlvis.app.page import DIMS, parse_numbers, scenes
from mlvis.attacks import DEFAULT_ALPHA, AttackSpec, get_method
from mlvis.attacks.plan import exposed_values, image_steps
from mlvis.attacks.protocol import PROTOCOL_TITLES, PROTOCOLS
from mlvis.errors import InvalidInput

SWEEP_METHODS = "sweep.methods"
SWEEP_GAMMA = "sweep.gamma"
SWEEP_FRACTIONS = "sweep.fractions"
SWEEP_N = "sweep.n"
SWEEP_EIGHT = "sweep.eight_bit"
SWEEP_TARGET_EPS = "sweep.target_eps"
SWEEP_QS = "sweep.qs"
SWEEP_BL_EPS = "sweep.bl_eps"
SWEEP_PROTOCOL = "sweep.protocol"
SWEEP_NORM = "sweep.norm"
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
    norm: str = "linf"
    dims: int = DIMS  # values per image (the L2 step depends on it)
    protocol: str = "paper"


def model_dims(model) -> int:
    """Values per image of ``model``'s input (3 x H x W)."""
    h, w = (int(v) for v in model.spec.input_size)
    return 3 * h * w


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
    return image_steps(method_specs(methods, s.values), eps, s.images, alpha=DEFAULT_ALPHA, norm=s.norm, dims=s.dims)


def protocol_eps_max(model_name: str, protocol: str, eps_max: float, norm: str = "linf") -> float:
    """eps_max of the ``norm`` profile under ``protocol`` (the authors' convergence rule refits the profile:
    mlvis.attacks.protocol)."""
    if protocol == "paper":
        return eps_max
    from mlvis.analysis.profiles import for_protocol

    profile = cache.artifact(model_name, cache.PROFILE_KINDS[norm])
    return eps_max if profile is None else for_protocol(profile, protocol).eps_max


def sweep_cost(model_name: str, s: SweepSettings, eps_max: float) -> jobs.Estimate:
    eps_max = protocol_eps_max(model_name, s.protocol, eps_max, s.norm)
    est = jobs.estimate(model_name, sweep_steps(s, eps_max), "sweep.table")
    return dataclasses.replace(est, note=rc.cost_note(s.methods))


def compute_sweep(model_name: str, s: SweepSettings, progress=None):
    """Tables IV-VI (``mlvis.evaluate``; Table VIII under L2): every method at every budget as one job, the
    budgets fractions of the ε_max of the profile of the sweep's norm."""
    model = cache.load_model(model_name)
    x = scenes(model, s.images, s.seed)
    arts = cache.lab_artifacts(model_name, s.norm)
    for m in s.methods:
        problem = arts.problem(m)
        if problem:
            raise InvalidInput(problem)
    return mlvis.evaluate(
        model,
        x,
        sweep_specs(s),
        s.fractions,
        profile=arts.profile,
        correlations=arts.correlations(),
        seed=s.seed,
        progress=progress,
        norm=s.norm,
        protocol=s.protocol,
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
    protocol: str = "paper"


def bce_linear_steps(s: BceLinearSettings) -> int:
    return image_steps(["bce", "linear"], s.eps, s.images, alpha=DEFAULT_ALPHA, dims=DIMS)


def compute_bce_linear(model_name: str, s: BceLinearSettings, progress=None):
    """Fig. 8 (``bce_vs_linear``): mean and std of the flips of both losses over the eps list (one job)."""
    from mlvis.analysis import bce_vs_linear

    model = cache.load_model(model_name)
    x = scenes(model, s.images, s.seed)
    return bce_vs_linear(model, x, list(s.eps), progress=progress, protocol=s.protocol)


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
    prof = cache.artifact(model_name, "profile")  # Table IX is the paper's L-inf experiment
    if prof is None:
        raise InvalidInput(cache.lab_artifacts(model_name).problem("slam"))
    return q_sweep(model, x, s.qs, profile=prof, eps_fractions=s.fractions, seed=s.seed, progress=progress)


# ---------------------------------------------------------------------------------------------------- the page's parts


def norm_control() -> str:
    """The sweep's norm (bound to the URL): L∞ (Tables IV-VI) or L2 (Table VIII, appendix B)."""
    from mlvis.app.page import norm_radio

    return norm_radio(
        SWEEP_NORM,
        "L∞: the paper's Tables IV-VI. L2: its ablation (Table VIII): the attacks take L2 steps inside an L2 ball, "
        "and the budgets are fractions of the ε_max of the model's L2 profile (L2 radii).",
    )


def profile_or_stop(model_name: str, norm: str = "linf"):
    """The model's flip profile in ``norm`` (its ε_max is what the budgets are fractions of); without one the
    page says where to measure it and stops."""
    profile = cache.artifact(model_name, cache.PROFILE_KINDS[norm])
    if profile is None:
        what, flag = ("L2 flip profile", " --norm l2") if norm == "l2" else ("flip profile", "")
        st.error(
            f"{model_name} has no {what}, so there is no ε_max to take fractions of. Measure one on the "
            f"Profiles page (or with `mlvis profile --model {model_name}{flag}`)."
        )
        st.stop()
    return profile


def linf_eps_max(model_name: str) -> float | None:
    """The ε_max of the model's L∞ profile (``None`` without one): Table IX's grid under any sweep norm."""
    prof = cache.artifact(model_name, "profile")
    return None if prof is None else float(prof.eps_max)


def sweep_controls(eps_max: float, norm: str = "linf", dims: int = DIMS) -> SweepSettings:
    """The images, the budgets (fractions of ``eps_max``), the methods' exposed options and the methods, in
    one bordered box; the page stops with the sentence when the fractions cannot be read."""
    with st.container(border=True):
        c1, c2, c3 = st.columns([1, 2, 2])
        images = c1.number_input(
            "Images",
            min_value=2,
            max_value=100,
            value=8,
            step=1,
            key=SWEEP_N,
            bind="query-params",
            help="Demo test scenes of the sidebar's seed block (the paper uses 100; the cost grows with it). "
            "At least two, for the t-tests.",
        )
        fractions_text = c2.text_input(
            "Budgets: fractions of ε_max",
            value="0.05, 0.1, 0.2",
            key=SWEEP_FRACTIONS,
            bind="query-params",
            help=f"Comma-separated fractions of ε_max = {eps_max:.4g}; the paper's grid is "
            "0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1 (expensive here).",
        )
        exposed = sweep_options()
        values = option_sliders("sweep", exposed, [c3] * len(exposed))
        methods = st.pills(
            "Methods (BCE, the baseline, always runs)",
            rc.lab_methods(),
            selection_mode="multi",
            default=list(SWEEP_DEFAULT_METHODS),
            format_func=rc.method_title,
            key=SWEEP_METHODS,
            bind="query-params",
            help="Every method runs on the same images at every budget, in one batched job.",
        )
        # the protocol switch (issue 12 §2): the paper's text, or the authors' code's choices all together
        protocol = st.segmented_control(
            "Protocol",
            list(PROTOCOLS),
            default="paper",
            format_func=lambda p: PROTOCOL_TITLES[p],
            key=SWEEP_PROTOCOL,
            bind="query-params",
            help="As the paper says (mlvis's default) or as the authors ran it: clip to [0, 1] once after the "
            "loop, their profile convergence (a smaller ε_max, so other budgets), p = 1 at ε_max, CLASS's "
            "int(1.66·int(E)) subset length, Z not normalised, matrices min-max over every entry.",
        )
    try:
        fractions = parse_numbers(fractions_text, "the fractions", 0.0, 1.0)
    except ValueError as exc:
        st.error(str(exc))
        st.stop()
    return SweepSettings(tuple(methods or ()), tuple(values.items()), fractions, int(images), state.seed(), norm,
                         int(dims) if norm == "l2" else DIMS, protocol or "paper")  # fmt: skip


def run_table(model_name: str, s: SweepSettings, eps_max: float):
    """Tables IV-VI as one job (with its status line); the table, or ``None`` while there is none."""
    outcome = jobs.run_section(
        "sweep.table",
        (model_name, s),
        lambda progress: compute_sweep(model_name, s, progress),
        sweep_cost(model_name, s, eps_max),
        label="Evaluating",
        model_name=model_name,
        help="Run every method at every budget on the images (one job).",
    )
    jobs.show_status(outcome, "The table and figure below")
    return outcome.result


def table_view(table, num_labels: int) -> None:
    """The table in the paper's layout (optionally after 8-bit rounding), its figure and its downloads."""
    from mlvis.viz import sweep_flips_figure

    eight_bit = st.toggle(
        "After 8-bit rounding",
        value=False,
        key=SWEEP_EIGHT,
        bind="query-params",
        help="Count the flips of the images an 8-bit file would hold (no significance marks there).",
    )
    st.markdown(evaluation_markdown(table, eight_bit))
    l2 = (table.config.get("norm") or "linf") == "l2"
    st.caption(
        f"{table.model}, {table.config.get('images')} images, {'L2 radii ε (Table VIII), ' if l2 else ''}"
        f"mean ± std of the flips of {num_labels} labels; bold: "
        "the column's best, significantly different from BCE (paired t-test, p < 0.05); *: the same as BCE."
    )
    flips = table.flips_8bit if eight_bit else table.flips
    st.plotly_chart(
        sweep_flips_figure(table.eps, flips.mean(-1), flips.std(-1), table.methods, num_labels),
        key="sweep.fig.table",
        config={"displayModeBar": False},
    )
    d1, d2 = st.columns(2)
    d1.download_button(
        "Table (CSV)",
        table.to_frame().to_csv(index=False),
        file_name=f"{table.model}_evaluation.csv",
        mime="text/csv",
        key="sweep.dl.csv",
        on_click="ignore",
        help="Method x budget: mean, std, 8-bit mean, p-value against BCE, best, same-as-baseline.",
    )
    d2.download_button(
        "Table (JSON)",
        table.to_json(),
        file_name=f"{table.model}_evaluation.json",
        mime="application/json",
        key="sweep.dl.json",
        on_click="ignore",
        help="Everything above plus every image's flips.",
    )


def _numbers_input(label: str, default: str, key: str, help: str, name: str, hi: float, max_count: int = 12):
    """A bound text input of comma-separated numbers in (0, ``hi``]; ``None`` (and the sentence shown) when it
    cannot be read."""
    text = st.text_input(label, value=default, key=key, bind="query-params", help=help)
    try:
        return parse_numbers(text, name, 0.0, hi, max_count=max_count)
    except ValueError as exc:
        st.error(str(exc))
        return None


def targets_controls(s: SweepSettings, num_labels: int) -> TargetsSettings | None:
    """Fig. 7's budgets (one curve each) with the sweep's images; ``None`` when they cannot be read."""
    eps = _numbers_input(
        "Budgets ε",
        "0.01, 0.02",
        SWEEP_TARGET_EPS,
        "Comma-separated L∞ budgets, one curve each.",
        "the budgets",
        0.5,
        6,
    )
    return None if eps is None else TargetsSettings(eps, s.images, s.seed, num_labels)


def run_targets(model_name: str, ts: TargetsSettings):
    """Fig. 7 as one job (with its status line): ``(targets, mean, std)`` or ``None``."""
    out = jobs.run_section(
        "sweep.targets",
        (model_name, ts),
        lambda progress: compute_targets(model_name, ts, progress),
        jobs.estimate(model_name, targets_steps(ts), "sweep.targets"),
        label="Attacking with 1 ... C targets",
        model_name=model_name,
    )
    jobs.show_status(out, "The figure below")
    return out.result


def targets_view(result, ts: TargetsSettings) -> None:
    """Fig. 7 and, per budget, the best number of targets (``mlvis.analysis.evaluation.best_targets``)."""
    from mlvis.viz import targets_figure

    targets, mean, std = result
    st.plotly_chart(
        targets_figure(targets, mean, std, ts.eps), key="sweep.fig.targets", config={"displayModeBar": False}
    )
    st.markdown(
        "  \n".join(
            f"ε = {b['eps']:.4g}: best with **{b['targets']}** targets, {b['flips']:.2f} flips "
            f"(flips / targets = {b['ratio']:.2f}; the paper finds about 0.6)"
            for b in best_targets(targets, mean, ts.eps)
        )
    )


def bce_linear_controls(s: SweepSettings) -> BceLinearSettings | None:
    """Fig. 8's budgets with the sweep's images; ``None`` when they cannot be read."""
    eps = _numbers_input(
        "Budgets ε", "0.005, 0.01, 0.02, 0.04", SWEEP_BL_EPS, "Comma-separated L∞ budgets.", "the budgets", 0.5
    )
    return None if eps is None else BceLinearSettings(eps, s.images, s.seed, s.protocol)


def run_bce_linear(model_name: str, bs: BceLinearSettings):
    """Fig. 8 as one job (with its status line): ``bce_vs_linear``'s result or ``None``."""
    out = jobs.run_section(
        "sweep.bl",
        (model_name, bs),
        lambda progress: compute_bce_linear(model_name, bs, progress),
        jobs.estimate(model_name, bce_linear_steps(bs), "sweep.bce_linear"),
        label="BCE and linear",
        model_name=model_name,
    )
    jobs.show_status(out, "The figure below")
    return out.result


def bce_linear_view(result, bs: BceLinearSettings) -> None:
    """Fig. 8 and which loss is ahead at each budget."""
    from mlvis.viz import bce_linear_figure

    st.plotly_chart(bce_linear_figure(bs.eps, result), key="sweep.fig.bl", config={"displayModeBar": False})
    b, lin = result["bce"][0], result["linear"][0]
    lead = [f"{e:.4g}: {'linear' if lv > bv else ('BCE' if bv > lv else 'tie')}" for e, bv, lv in zip(bs.eps, b, lin)]
    st.caption("Ahead at each ε: " + ", ".join(lead) + ".")


def q_sweep_controls(s: SweepSettings) -> QSweepSettings | None:
    """Table IX's q values on the sweep's budgets and images; ``None`` when they cannot be read."""
    qs = _numbers_input("q values", "0.25, 0.5, 0.75, 1", SWEEP_QS, "Comma-separated values in (0, 1].", "q", 1.0, 8)
    return None if qs is None else QSweepSettings(qs, s.fractions, s.images, s.seed)


def run_q_sweep(model_name: str, qset: QSweepSettings, eps_max: float):
    """Table IX as one job (with its status line): the ``QSweepTable`` or ``None``."""
    out = jobs.run_section(
        "sweep.q",
        (model_name, qset),
        lambda progress: compute_q_sweep(model_name, qset, progress),
        jobs.estimate(model_name, q_sweep_steps(qset, eps_max), "sweep.q"),
        label="SLAM with each q",
        model_name=model_name,
    )
    jobs.show_status(out, "The table below")
    return out.result


def q_sweep_view(qt, qset: QSweepSettings) -> None:
    """Table IX and each q's total flips against BCE's."""
    from mlvis.viz import q_totals_figure

    st.markdown(qt.to_markdown())
    totals = [float(v) for v in qt.total]
    st.plotly_chart(
        q_totals_figure(qset.qs, totals[1:], baseline=totals[0]), key="sweep.fig.q", config={"displayModeBar": False}
    )


# ---------------------------------------------------------------------------------------------------- Fig. 12

SWEEP_NC_EPS = "sweep.nc_eps"
SWEEP_NC_METHOD = "sweep.nc_method"
SWEEP_NC_IMAGE = "sweep.nc_image"
NC_METHODS = ("bce", "linear", "slam")


@dataclasses.dataclass(frozen=True)
class NormsSettings:
    """Fig. 12: one method at an L∞ budget and at the equal-volume L2 radius, on the sweep's images."""

    eps: float = 0.024
    method: str = "bce"
    images: int = 8
    seed: int = 0
    dims: int = 3 * 64 * 64


def norms_radius(ns: NormsSettings) -> float:
    from mlvis.attacks import equal_volume_l2_radius

    return equal_volume_l2_radius(ns.eps, ns.dims)


def norms_steps(ns: NormsSettings) -> int:
    """Image-steps of Fig. 12's two jobs (the L∞ attack and the L2 one at the equal-volume radius)."""
    linf = image_steps([ns.method], [ns.eps], ns.images, alpha=DEFAULT_ALPHA, norm="linf", dims=ns.dims)
    l2 = image_steps([ns.method], [norms_radius(ns)], ns.images, alpha=DEFAULT_ALPHA, norm="l2", dims=ns.dims)
    return linf + l2


def compute_norms(model_name: str, ns: NormsSettings, progress=None):
    """Fig. 12 (``mlvis.analysis.linf_vs_l2``), each norm's attack reading that norm's profile."""
    from mlvis.analysis import linf_vs_l2

    model = cache.load_model(model_name)
    x = scenes(model, ns.images, ns.seed)
    profiles = {n: cache.artifact(model_name, kind) for n, kind in cache.PROFILE_KINDS.items()}
    if get_method(ns.method).needs and any(p is None for p in profiles.values()):
        missing = "L2" if profiles["l2"] is None else "L∞"
        raise InvalidInput(
            f"{rc.method_title(ns.method)} needs both profiles; {model_name} has no {missing} profile yet "
            "(measure it on the Profiles page)."
        )
    return linf_vs_l2(model, x, ns.eps, ns.method, profiles=profiles, progress=progress)


def norms_controls(s: SweepSettings, dims: int) -> NormsSettings:
    c1, c2 = st.columns(2)
    eps = c1.number_input(
        "L∞ budget ε",
        min_value=0.001,
        max_value=0.5,
        value=0.024,
        step=0.001,
        format="%.4f",
        key=SWEEP_NC_EPS,
        bind="query-params",
        help="Fig. 12 compares L∞ 0.024 with the L2 ball of the same volume (radius 9.0 at 448×448×3, appendix C).",
    )
    method = c2.selectbox(
        "Method",
        list(NC_METHODS),
        format_func=rc.method_title,
        key=SWEEP_NC_METHOD,
        bind="query-params",
        help="The attack run under both norms (SLAM reads each norm's own profile).",
    )
    return NormsSettings(float(eps), str(method), s.images, s.seed, int(dims))


def run_norms(model_name: str, ns: NormsSettings):
    out = jobs.run_section(
        "sweep.norms",
        (model_name, ns),
        lambda progress: compute_norms(model_name, ns, progress),
        jobs.estimate(model_name, norms_steps(ns), "sweep.norms"),
        label="L∞ and L2",
        model_name=model_name,
    )
    jobs.show_status(out, "The comparison below")
    return out.result


def norms_view(cmp, ns: NormsSettings) -> None:
    """Fig. 12's table (flips and how visible each perturbation is) and the images of one scene."""
    from mlvis.viz import norm_comparison_figure

    st.markdown(cmp.to_markdown())
    st.caption(
        f"Mean over {ns.images} images. The L2 radius {cmp.radius:.4g} is the one whose ball has the volume of the "
        f"L∞ cube of half-width {cmp.eps_linf:g} (appendix C). PSNR and SSIM say how visible the perturbation is."
    )
    i = st.number_input(
        "Image shown", min_value=0, max_value=ns.images - 1, value=0, step=1, key=SWEEP_NC_IMAGE, bind="query-params"
    )
    st.plotly_chart(norm_comparison_figure(cmp, int(i)), key="sweep.fig.norms", config={"displayModeBar": False})
