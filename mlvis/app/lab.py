"""The Attack Lab's glue (pages/attack_lab.py): controls bound to the URL, the one-job run, downloads.

- ``lab_controls(model)``: the images (sample scenes or uploads, validated by ``mlvis.data.images``),
  methods, eps (the shared ``budget_input``), alpha, norm (with appendix C's equal-volume L2 radius),
  every exposed option (q, gamma, ...), whether the methods with their own optimisers run unbounded
  (:func:`own_optimiser`, read from the registry's kind) and the transfer option; returns a
  :class:`LabControls` whose ``recipe`` (``mlvis.recipe.Recipe``) is what runs;
- ``run_lab(...)``: every chosen method on every image as ONE ``run_job`` (through ``recipe.run_recipe``;
  the unbounded methods as a second job), plus the optional transfer to another model; returns a
  :class:`LabRun` of numpy results. ``run_section`` draws the Run button and a progress bar that only
  moves forward over the run's phases (:func:`progress_phases`);
- ``summary_frame`` / ``image_frame`` / ``transfer_frame``: tables of a run;
- ``*_bytes``: the downloads (lossless 16-bit PNG and ``.npy``, 8-bit PNG, CSV, JSON, the recipe).

Widget keys start with ``lab.``; the bound ones are also the URL query parameter names.
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
from collections.abc import Sequence

import numpy as np
import streamlit as st

import mlvis
from mlvis import recipe as rc
from mlvis.analysis.trajectory import Recording, TrajectoryRecorder, not_replayable
from mlvis.app import cache, jobs, options, state
from mlvis.app import default_view as dv
from mlvis.app.budget_input import BudgetKeys, budget_input, number_entry
from mlvis.attacks import DEFAULT_ALPHA, Budget, get_method
from mlvis.attacks.methods import RUNNER
from mlvis.data import images as uploads
from mlvis.errors import InvalidInput, ModelLoadError

LAB_SOURCE = "lab.source"
LAB_START = "lab.scene"
LAB_COUNT = "lab.n"
LAB_UPLOAD = "lab.upload"
LAB_FIT = "lab.fit"
LAB_METHODS = "lab.methods"
LAB_EPS = BudgetKeys.of("lab").exact  # "lab.eps": the budget (mlvis.app.budget_input), bound to the URL
LAB_EPS_SLIDER = BudgetKeys.of("lab").slider  # not bound: it mirrors lab.eps
LAB_ALPHA = "lab.alpha"
LAB_NORM = "lab.norm"
LAB_Q = "lab.q"  # SLAM's q (every exposed option's key is "lab." + its recipe key, see mlvis.app.options)
LAB_GAMMA = "lab.gamma"  # CLASS's gamma
LAB_TRANSFER = "lab.transfer"
LAB_UNBOUNDED = "lab.unbounded"  # whether the methods with their own optimisers run without a budget
LAB_SHOW = "lab.show"
SECTION = "lab"

SOURCES = {"demo": "Sample scenes", "upload": "Upload images"}
FITS = {"crop": "Centre crop", "stretch": "Stretch"}
DEFAULT_METHODS = ("bce", "slam", "class")
DEFAULT_EPS = dv.RULE_EPS  # the budget of the default view's rule (mlvis.app.default_view), where methods differ
MAX_SCENES = 8
MAX_UPLOADS = 8
REPLAY_BUDGET = 16 * 2**20  # bytes of 8-bit images one run's replay keeps (jobs.KEEP runs are kept per session)


@dataclasses.dataclass(frozen=True)
class LabControls:
    """What the Lab's controls return: the recipe to run (``None`` when it cannot run yet), the images
    as a ``(N, 3, H, W)`` batch with their names, notes on the uploads, and sentences to show as errors."""

    recipe: rc.Recipe | None
    images: np.ndarray | None
    names: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    errors: tuple[str, ...] = ()
    transfer_to: str | None = None


@dataclasses.dataclass(frozen=True, eq=False)
class LabRun:
    """One Lab run: the recipe, one ``AttackResult`` per method (K = 1), the image names, and the transfer
    of every method's adversarial images to ``transfer_model`` (``mlvis.transfer``), if asked."""

    recipe: rc.Recipe
    results: tuple
    names: tuple[str, ...]
    transfer_model: str | None = None
    transfers: tuple = ()
    replay: Recording | None = None  # the MI-FGSM loop's steps of this run (attack replay), if recorded

    @property
    def methods(self) -> tuple[str, ...]:
        return tuple(r.name for r in self.results)

    @property
    def num_labels(self) -> int:
        return len(self.results[0].labels)

    @property
    def unbounded(self) -> tuple:
        """The results of the methods that ran without a budget (``recipe.unbounded``)."""
        return tuple(r for r, m in zip(self.results, self.recipe.methods) if m in self.recipe.unbounded)

    @property
    def budget(self) -> float:
        """The attack's budget in its norm (the L2 radius under L2), as the bounded methods ran it."""
        return self.recipe.budget(int(np.prod(self.results[0].clean.shape[1:])))


# ---------------------------------------------------------------------------------------------------- controls


def default_scene(model_name: str) -> int:
    """The first scene the Lab opens on: the default view's rule (``mlvis.app.default_view``), else 0."""
    view = dv.default_view(model_name)
    return view.scene if view is not None else 0


def label_states(run: LabRun, image: int) -> tuple[list[int], dict[str, list[str]]]:
    """What the model sees: one common label order and, per method, each label's state in it.

    The order holds every label present before the attack or flipped by any method, by the clean
    confidence (highest first), so the same position names the same label in every method's row. States:
    ``"present"`` (on before and after), ``"up"`` (flipped on), ``"down"`` (flipped off), ``"absent"``
    (on for no method's adversarial image here, kept for the common order).
    """
    r0 = run.results[0]
    clean = np.asarray(r0.clean_probs[image]) >= r0.threshold
    show = clean.copy()
    for r in run.results:
        show |= (np.asarray(r.adv_probs[0, image]) >= r.threshold) != clean
    order = [int(j) for j in np.argsort(-np.asarray(r0.clean_probs[image]), kind="stable") if show[j]]
    states: dict[str, list[str]] = {}
    for r in run.results:
        adv = np.asarray(r.adv_probs[0, image]) >= r.threshold
        row = []
        for j in order:
            if clean[j] and adv[j]:
                row.append("present")
            elif adv[j] and not clean[j]:
                row.append("up")
            elif clean[j] and not adv[j]:
                row.append("down")
            else:
                row.append("absent")
        states[r.name] = row
    return order, states


def other_model(current: str, models: Sequence[str]) -> str | None:
    """The model a run transfers to: the other demo model when there is one, else the next registered model."""
    others = [m for m in models if m != current]
    demos = [m for m in others if m.startswith("demo-")]
    candidates: list[str | None] = [*demos, *others, None]
    return candidates[0]


def image_controls(
    model: mlvis.MultiLabelModel,
) -> tuple[rc.ImageSource | None, np.ndarray | None, tuple, tuple, tuple]:
    """Sample scenes or uploads: ``(source, images, names, notes, errors)``."""
    h, w = (int(v) for v in model.spec.input_size)
    source = st.radio(
        "Images",
        list(SOURCES),
        format_func=SOURCES.get,
        horizontal=True,
        key=LAB_SOURCE,
        bind="query-params",
        help="Attack held-out scenes of the demo world (the sidebar's seed picks the block), or your own images.",
    )
    from mlvis.app import models_page  # real models (issue 10): the model's world and resize rule

    models_page.world_notice(model.spec, source)
    if source == "demo":
        c1, c2 = st.columns(2)
        start = c1.number_input(
            "First scene",
            min_value=0,
            max_value=999,
            value=default_scene(model.spec.name),
            step=1,
            key=LAB_START,
            bind="query-params",
            help="Index of the first scene within the seed's block of test scenes.",
        )
        count = c2.number_input(
            "Scenes",
            min_value=1,
            max_value=MAX_SCENES,
            value=1,
            step=1,
            key=LAB_COUNT,
            bind="query-params",
            help=f"How many consecutive scenes to attack at once (1-{MAX_SCENES}); the cost grows with it.",
        )
        src = rc.ImageSource(kind="demo", split="test", seed=state.seed(), start=int(start), count=int(count))
        if h != w:
            return (
                src,
                None,
                (),
                (),
                (f"The demo scenes are square; {model.spec.name} expects {h}×{w}: upload images.",),
            )
        images = cache.lab_scenes(src.split, src.seed, src.start, src.count, h)
        names = tuple(f"scene {src.seed * mlvis.data.BLOCK + src.start + i}" for i in range(src.count))
        return src, images, names, (), ()
    files = st.file_uploader(
        "Images to attack (PNG, JPEG or WebP)",
        type=list(uploads.EXTENSIONS),
        accept_multiple_files=True,
        key=LAB_UPLOAD,
        help=(
            f"Up to {MAX_UPLOADS} images of at most {uploads.MAX_BYTES // 2**20} MB each; they are converted to RGB "
            f"and resized to the model's {w}×{h}. A 16-bit PNG (the Lab's lossless download) keeps all 16 bits."
        ),
    )
    st.caption(
        f"Each file may be at most {upload_limit_mb()} MB: the upload box refuses a larger one before the Lab sees "
        "it (it stays in the box, marked with an error, and is not attacked), so shrink it or save it as JPEG or "
        "WebP first."
    )
    pre = mlvis.models.preprocess_for(model.spec)
    if model.spec.world == "photos":  # a real model's card fixes the resize, as the model was evaluated
        fit = pre.fit
        st.caption(f"Images are {pre.describe()}, as {model.spec.name} was evaluated (its model card).")
    else:
        fit = st.radio(
            "Fit to the model's input",
            list(FITS),
            format_func=FITS.get,
            horizontal=True,
            key=LAB_FIT,
            bind="query-params",
            help="Centre crop keeps the proportions (cuts the sides); Stretch keeps the whole picture (distorts it).",
        )
    if not files:
        return None, None, (), (), ()
    payload = tuple((f.name, f.getvalue()) for f in files)
    loaded, errors = cache.lab_uploads(payload, h, w, fit, MAX_UPLOADS, pre.interpolation)
    if not loaded:
        return None, None, (), (), tuple(errors)
    models_page.prediction_chips(model, uploads.to_batch(loaded), [im.name for im in loaded])
    notes = tuple(f"{im.name}: {', '.join(im.notes)}." for im in loaded if im.notes)
    src = rc.ImageSource(kind="files", files=tuple(im.name for im in loaded), fit=fit)
    return src, uploads.to_batch(loaded), tuple(im.name for im in loaded), notes, tuple(errors)


def upload_limit_mb() -> int:
    """The largest upload in MB: the smaller of the server's ``server.maxUploadSize`` (the upload box refuses
    larger files itself, saying so only in a tooltip) and the image loader's own limit."""
    return int(min(uploads.MAX_BYTES // 2**20, int(st.get_option("server.maxUploadSize"))))


def method_controls(methods: Sequence[str]) -> list[str]:
    lines = "\n".join(f"- **{rc.method_title(m)}**: {rc.method_description(m)}" for m in methods)
    chosen = st.pills(
        "Methods (run side by side)",
        list(methods),
        selection_mode="multi",
        default=[m for m in DEFAULT_METHODS if m in methods],
        format_func=rc.method_title,
        key=LAB_METHODS,
        bind="query-params",
        help="Every chosen method attacks the same images in one batched job.\n\n" + lines,
    )
    return list(chosen or [])


def own_optimiser(method: str) -> bool:
    """Whether ``method`` runs its own optimiser (the registry's kind ``RUNNER``: ML-CW, ML-DeepFool, MLA-LP).

    The engine only evaluates such a method's images; its eps is a cap applied afterwards
    (:mod:`mlvis.attacks.related`), so these attacks are built to run without a budget and are read at
    the budget they reached.
    """
    return get_method(method).kind == RUNNER


def unbounded_control(methods: Sequence[str]) -> bool:
    """The switch that runs the chosen own-optimiser methods without a budget (on by default), with the
    sentence that says why; returns whether they run unbounded."""
    free = [rc.method_title(m) for m in methods if own_optimiser(m)]
    names = ", ".join(free) if free else "The related attacks"
    value = st.toggle(
        "Related attacks unbounded (as published)",
        value=True,
        key=LAB_UNBOUNDED,
        bind="query-params",
        disabled=not free,
        help="ML-CW, ML-DeepFool and MLA-LP search for the smallest perturbation that flips the labels; they "
        "have no budget of their own. Unbounded, each is read at the L∞ / L2 it reached (shown with the results); "
        "off, its perturbation is clipped to ε afterwards, which usually undoes most of its flips.",
    )
    if free:
        one = len(free) == 1
        it, is_, runs, its = ("it", "is", "runs", "its") if one else ("they", "are", "run", "their")
        was = "was" if one else "were"
        how = (
            f"{runs} without one and {is_} read at the budget {it} reached ({its} L∞ and L2 are said with the results)"
            if value
            else f"{is_} clipped to ε after {it} finish{'es' * one}, which is not how {it} {was} built"
        )
        st.caption(f"{names} {is_} built to run without a budget: here {it} {how}.")
    return bool(value)


def lab_controls(model_name: str, model: mlvis.MultiLabelModel, models: Sequence[str]) -> LabControls:
    """All of the Lab's controls; returns what to run."""
    errors: list[str] = []
    dims = 3 * int(np.prod(model.spec.input_size))
    with st.container(border=True):
        source, images, names, notes, image_errors = image_controls(model)
        errors += image_errors
        methods = method_controls(rc.lab_methods())
        eps = budget_input(SECTION, default=DEFAULT_EPS, max_value=rc.MAX_EPS).linf[0]  # the L∞ half-width
        exposed = options.exposed(rc.lab_methods())
        c1, c2, *cols = st.columns(2 + len(exposed))
        alpha = number_entry(
            c1,
            "Step α",
            key=LAB_ALPHA,
            default=DEFAULT_ALPHA,
            min_value=0.00001,
            max_value=0.05,
            step=0.0001,
            format="%.7f",
            help="Each MI-FGSM step moves every pixel by α (section VI-C: 1/2560, a tenth of an 8-bit level); "
            "the attack takes floor(ε / α) steps.",
        )
        norm = c2.radio(
            "Norm",
            list(rc.NORM_TITLES),
            format_func=rc.NORM_TITLES.get,
            horizontal=True,
            key=LAB_NORM,
            bind="query-params",
            help="L∞ bounds every pixel's change by ε (the paper's setting). L2 bounds the length of the whole "
            "perturbation by the radius of the L2 ball with the same volume as the L∞ cube (appendix C), and "
            "steps without the sign (appendix B).",
        )
        values = options.sliders(SECTION, exposed, cols, chosen=methods)
        if norm == "l2":
            radius = Budget.from_linf(eps, "l2", dims).eps[0]
            st.caption(
                f"L2 budget: radius {radius:.4f} for {dims:,} values, the L2 ball with the volume of the L∞ cube of "
                f"half-width ε = {eps:.6g} (appendix C); the L2 step is α·√d = {float(alpha) * math.sqrt(dims):.4f}."
            )
        unbounded = unbounded_control(methods)
        other = other_model(model_name, models)
        transfer = st.checkbox(
            f"Also test the adversarial images on {other}" if other else "Also test on another model",
            value=False,
            key=LAB_TRANSFER,
            bind="query-params",
            disabled=other is None,
            help="Transfer: feed each method's adversarial images to the other model and count its flips "
            "(against its own clean prediction), exact and after 8-bit rounding.",
        )
    if not methods:
        errors.append("Choose at least one attack method.")
    if images is None or not methods:
        return LabControls(None, images, names, notes, tuple(errors))
    try:
        recipe = rc.Recipe.with_values(
            model_name,
            methods,
            float(eps),
            values,
            images=source,
            alpha=float(alpha),
            norm=str(norm),
            seed=state.seed(),
            unbounded=tuple(m for m in methods if unbounded and own_optimiser(m)),
        )
    except ValueError as exc:
        return LabControls(None, images, names, notes, (*errors, str(exc)))
    return LabControls(recipe, images, names, notes, tuple(errors), other if transfer else None)


# ---------------------------------------------------------------------------------------------------- running


def run_lab(
    model: mlvis.MultiLabelModel,
    recipe: rc.Recipe,
    images: np.ndarray,
    names: Sequence[str],
    transfer_model: mlvis.MultiLabelModel | None = None,
    progress=None,
    record: bool = True,
    autocast: bool = False,
) -> LabRun:
    """Run the recipe as one job (``recipe.run_recipe``), compute PSNR/SSIM, and transfer if asked.

    ``record``: watch the MI-FGSM loop with the engine's step hook and keep the run's own steps for the
    replay (``LabRun.replay``; :class:`~mlvis.analysis.trajectory.TrajectoryRecorder`, at most
    :data:`REPLAY_BUDGET` bytes of images). Recording changes no result. ``autocast``: bf16 autocast of the
    gradient passes (the sidebar's switch).
    """
    bounded = [m for m in recipe.methods if m not in recipe.unbounded]
    recorder = TrajectoryRecorder(every=1, image_budget=REPLAY_BUDGET) if record and bounded else None
    arts = cache.lab_artifacts(recipe.model, recipe.norm)
    results = rc.run_recipe(recipe, model, images, progress=progress, artifacts=arts, hook=recorder, autocast=autocast)
    replay = None
    if recorder is not None:
        watched = [r for m, r in zip(recipe.methods, results) if m not in recipe.unbounded]
        replay = recorder.recording(watched)
        others = tuple((r.name, not_replayable(r)) for m, r in zip(recipe.methods, results) if m in recipe.unbounded)
        replay = dataclasses.replace(replay, not_replayable=replay.not_replayable + others)
    for r in results:
        _ = r.psnr, r.ssim  # computed once here, so the page and the downloads only read them
    transfers: tuple = ()
    if transfer_model is not None:
        transfers = tuple(mlvis.transfer(r, transfer_model) for r in results)
    return LabRun(
        recipe=recipe,
        results=tuple(results),
        names=tuple(names),
        transfer_model=transfer_model.spec.name if transfer_model is not None else None,
        transfers=transfers,
        replay=replay,
    )


def progress_phases(methods: Sequence[str]) -> int:
    """How many phases a run of ``methods`` reports one after the other: one per method with its own
    optimiser (each counts its own steps) and one for the MI-FGSM loop that all the others share."""
    own = sum(own_optimiser(m) for m in methods)
    return own + (own < len(methods))


def lab_cost(model_name: str, recipe: rc.Recipe, num_images: int, dims: int) -> jobs.Estimate:
    """The MI-FGSM family's image-steps; methods with their own optimisers are named in the note (and make
    the run wait for the button)."""
    calls = jobs.recipe_calls(recipe, num_images, dims)  # one scene: the per-call cost is half the time
    est = jobs.estimate(model_name, recipe.image_steps(num_images, dims), "lab", calls=calls)
    return dataclasses.replace(est, note=rc.cost_note(recipe.methods))


def run_section(controls: LabControls, model_name: str, model: mlvis.MultiLabelModel) -> jobs.Outcome:
    """The Lab's Run button, progress and kept results for the current controls (recorded for the replay)."""
    recipe, images = controls.recipe, controls.images
    if recipe is None or images is None:
        raise InvalidInput("Nothing to run: choose the images and at least one method.")
    digest = uploads.image_digest(images)
    bf16 = state.bf16()  # the sidebar's switch, part of the kept result's key
    key = (recipe, digest, controls.names, controls.transfer_to, bf16)
    dims = int(np.prod(images.shape[1:]))
    other = controls.transfer_to

    def compute(progress):
        target = None
        if other is not None:
            target, error = cache.try_load_model(other)
            if target is None:
                raise ModelLoadError(error)
        return run_lab(model, recipe, images, controls.names, target, progress, autocast=bf16)

    return jobs.run_section(
        SECTION,
        key,
        compute,
        lab_cost(model_name, recipe, len(images), dims),
        label="Attacking",
        model_name=model_name,
        run_label="Run attack",
        help="Run every chosen method on the images as one batched job.",
        phases=progress_phases(recipe.methods),
    )


# ---------------------------------------------------------------------------------------------------- tables


def summary_frame(run: LabRun):
    """One row per method: flips (exact, 8-bit; mean over the images), L∞, L2, PSNR, SSIM, steps."""
    import pandas as pd

    rows = []
    for r in run.results:
        rows.append(
            {
                "method": r.name,
                "flips": float(r.flips[0].mean()),
                "flips (8-bit)": float(r.flips_8bit[0].mean()),
                "L∞": float(r.linf[0].mean()),
                "L2": float(r.l2[0].mean()),
                "PSNR (dB)": float(np.mean(r.psnr[0])),
                "SSIM": float(np.mean(r.ssim[0])),
                "steps": int(r.steps[0].max()),
            }
        )
    return pd.DataFrame(rows)


def transfer_frame(run: LabRun):
    """One row per method: flips on the attacked model and on the transfer model (means over the images)."""
    import pandas as pd

    return pd.DataFrame(
        [
            {
                "method": t.method,
                f"flips on {run.recipe.model}": float(t.source_flips[0].mean()),
                f"flips on {t.target}": float(t.flips[0].mean()),
                f"flips on {t.target} (8-bit)": float(t.flips_8bit[0].mean()),
            }
            for t in run.transfers
        ]
    )


def settings_columns(recipe: rc.Recipe) -> dict[str, object]:
    """Every setting of a run as export columns: model, seed, norm, eps, alpha, q, gamma and the other options."""
    return {
        "model": recipe.model,
        "seed": recipe.seed,
        "norm": recipe.norm,
        "eps_setting": recipe.eps,
        "alpha": recipe.alpha,
        **recipe.values,
    }


def flipped_names(result, image: int, sign: int = 0) -> str:
    """The names of the labels ``result`` flipped on ``image`` (``sign`` +1: up only, -1: down only), ``;``-joined."""
    clean, adv = np.asarray(result.clean_pred[image]).astype(bool), np.asarray(result.adv_pred[0, image]).astype(bool)
    mask = clean != adv
    if sign > 0:
        mask &= adv
    elif sign < 0:
        mask &= clean
    return ";".join(result.labels[j] for j in np.flatnonzero(mask))


def results_frame(run: LabRun):
    """Every (method, image) row of every result (``AttackResult.to_frame``), with the image names, the
    flipped labels' names (all, up, down) and every setting of the run."""
    import pandas as pd

    frames = []
    for i, r in enumerate(run.results):
        f = r.to_frame()
        f.insert(2, "image_name", [run.names[j] for j in f["image"]])
        f["flipped_labels"] = [flipped_names(r, int(j)) for j in f["image"]]
        f["flipped_up"] = [flipped_names(r, int(j), 1) for j in f["image"]]
        f["flipped_down"] = [flipped_names(r, int(j), -1) for j in f["image"]]
        for key, value in settings_columns(run.recipe).items():
            if key not in f.columns:
                f[key] = value
        f["unbounded"] = run.recipe.methods[i] in run.recipe.unbounded  # ran without a budget (read at its L∞ / L2)
        if run.transfers:
            t = run.transfers[i]
            f[f"flips_on_{t.target}"] = t.flips.reshape(-1)
            f[f"flips_8bit_on_{t.target}"] = t.flips_8bit.reshape(-1)
        frames.append(f)
    return pd.concat(frames, ignore_index=True)


# ---------------------------------------------------------------------------------------------------- downloads


def png16_bytes(result, image: int) -> bytes:
    """The adversarial image, lossless: a 16-bit RGB PNG (``mlvis.attacks.load_png16`` reads it back)."""
    from mlvis.attacks.export import encode_png16

    return encode_png16(result.adv[0, image])


def png8_bytes(result, image: int) -> bytes:
    """The adversarial image on the 8-bit grid (``adv_8bit``, kept in the budget) as an ordinary PNG."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(result.adv_8bit[0, image].transpose(1, 2, 0)), "RGB").save(buf, format="PNG")
    return buf.getvalue()


def npy_bytes(result) -> bytes:
    """Every adversarial image of the method, bit-exact: float32 ``(N, 3, H, W)`` as ``.npy``."""
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(result.adv[0]), allow_pickle=False)
    return buf.getvalue()


def csv_bytes(run: LabRun) -> bytes:
    return results_frame(run).to_csv(index=False).encode()


def json_bytes(run: LabRun) -> bytes:
    doc = {
        "recipe": run.recipe.to_dict(),
        "images": list(run.names),
        "settings": settings_columns(run.recipe),
        "flipped": {
            r.name: [
                {
                    "up": [n for n in flipped_names(r, j, 1).split(";") if n],
                    "down": [n for n in flipped_names(r, j, -1).split(";") if n],
                }
                for j in range(len(run.names))
            ]
            for r in run.results
        },
        "results": [json.loads(r.to_json()) for r in run.results],
        "transfer": [t.summary() for t in run.transfers],
    }
    return json.dumps(doc).encode()


def recipe_bytes(run: LabRun) -> bytes:
    return (run.recipe.to_json() + "\n").encode()


def file_stem(run: LabRun, method: str, image: int | None = None) -> str:
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "-" for ch in method)
    free = any(r.name == method for r in run.unbounded)
    base = f"{run.recipe.model}_{safe}_" + ("unbounded" if free else f"eps{run.recipe.eps:.6g}")
    return base if image is None else f"{base}_img{image}"


# ---------------------------------------------------------------------------------------------------- audit


def detectability_frame(run: LabRun, rules):
    """Per method, the semantic check of the adversarial predictions against ``rules``
    (``mlvis.analysis.coherence.CooccurrenceRules``): images newly flagged, implausible flips, coherence."""
    import pandas as pd

    rows = []
    for r in run.results:
        s = rules.compare(r.clean_pred, r.adv_pred[0]).summary()
        rows.append({"method": r.name, **s})
    return pd.DataFrame(rows)


def new_violations(run: LabRun, rules, image: int) -> dict[str, list[str]]:
    """Per method, one sentence per rule the adversarial prediction of ``image`` breaks and the clean one kept."""
    out = {}
    for r in run.results:
        d = rules.compare(r.clean_pred[image : image + 1], r.adv_pred[0, image : image + 1])
        before = set(d.clean.describe(0))
        out[r.name] = [s for s in d.adv.describe(0) if s not in before]
    return out


def slide_bytes(run: LabRun, method: int, image: int, factor: float, order, kind: str = "png") -> bytes:
    """The slide-ready panel (``mlvis.viz.audit.slide_panel`` / ``slide_svg``) of one method and image."""
    from mlvis.viz import audit

    r = run.results[method]
    args = (r.clean[image], r.adv[0, image], r.clean_probs[image], r.adv_probs[0, image], r.labels, r.threshold, factor)
    title = f"{r.name} on {run.names[image]}: {int(r.flips[0, image])} / {run.num_labels} flips, ε = {run.recipe.eps:g}"
    kw = {"order": list(order) or None, "title": title}
    if kind == "svg":
        return audit.slide_svg(*args, **kw).encode()
    buf = io.BytesIO()
    audit.slide_panel(*args, **kw).save(buf, format="PNG")
    return buf.getvalue()
