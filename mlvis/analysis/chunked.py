"""The profile, the correlation matrices and Table VII as streaming, resumable runs (issue 11 §2).

:func:`profile_run`, :func:`correlations_run` and :func:`related_run` compute what :func:`mlvis.profile`,
:func:`mlvis.correlations` and :func:`mlvis.analysis.related.compare_related` compute, chunk by chunk of
images into a run directory (:mod:`mlvis.runs`: a manifest, checksummed chunk files, resumption after a
kill, a corrupt chunk recomputed, local or Ray); :func:`profile_from_run`, :func:`correlations_from_run`
and :func:`related_from_run` compute the results from the directory alone.

What a chunk is, and how the results compare with the in-memory functions:

- **Correlations and Table VII** are per image: a chunk of images is attacked exactly as the in-memory
  function attacks them, and the results are the chunks' per-image arrays concatenated in image order,
  then reduced by the in-memory function's own code (:func:`correlation_matrix`, the
  :class:`~mlvis.analysis.related.RelatedComparison`'s tables). So a run equals the in-memory function
  applied to each chunk's images and concatenated, bit for bit; against ONE in-memory call on all images
  it differs only by the float rounding of batch-size dependent kernels (the engine's batches differ).
- **The profile** is a mean over images of per-image flip curves, and the probe stops when that mean has
  converged, which no chunk can know alone. So the probe runs in *rounds* of ``round_steps`` steps: every
  chunk runs the round's steps for its images (continuing from the attack state the previous round saved:
  perturbation and momentum, float32, bit-exact), records each image's flips at every ``interval`` steps,
  and after the round the driver applies the probe's stopping rule (:func:`~mlvis.analysis.profiles.
  probe_converged`) to the mean of every image's records, record by record. A round past the stopping
  point is cut off there. With the probe's batches equal to the chunks (``mlvis.profile(model, images,
  max_batch=chunk_size)``), each image's curve is computed in the same batches, so the profile from the
  run directory is **bit for bit** the in-memory one; the default in-memory probe (batches of 128 images
  on a CPU) differs from it only by float rounding. A chunk whose previous round's state is missing or
  corrupt (a Ray worker on another machine, a damaged file) recomputes its earlier steps from step 0,
  which gives the same bits. The cost is at most one round's steps more than the in-memory probe.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import math
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mlvis.errors import InvalidInput, check_flag, check_number

ROUND_INTERVALS = 10  # default round: ten flip measurements (100 steps at the default interval)
PROFILE_RESULT = "profile.json"
_STATE = ("delta", "g")


def _name(model) -> str:
    return str(getattr(getattr(model, "spec", None), "name", type(model).__name__))


def _prepare(model, images, model_ref):
    """The model's registry reference (this process uses ``model`` itself) and its manifest entry."""
    from mlvis.runs import ModelRef, cached
    from mlvis.store import model_fingerprint

    ref = model_ref if model_ref is not None else ModelRef(_name(model))
    cached(("model", ref.name, ref.options), lambda: model)
    if not hasattr(images, "load_for") or not hasattr(images, "describe"):
        raise InvalidInput("A run reads its images from a dataset (mlvis.data.open_dataset) or mlvis.runs.DemoImages.")
    return ref, {"name": _name(model), "fingerprint": model_fingerprint(model)}


def _load_x(ref, images, start: int, stop: int):
    import torch

    from mlvis.attacks.engine import check_input_size
    from mlvis.attacks.model_helpers import check_images, model_device, work_dtype

    model = ref.load()
    x = check_input_size(model, check_images(torch.from_numpy(images.load_for(model, range(start, stop)))))
    return model, x.to(model_device(model), work_dtype(model))


# ------------------------------------------------------------------------------------ the profile


@dataclasses.dataclass(frozen=True)
class ProbeRound:
    """``compute_chunk`` of one round of the profile probe: iterations ``first..last`` (inclusive) of both
    probes on images ``[start, stop)``, each image's flips recorded at every ``interval`` steps (and after the
    probe's last step when ``final``), the attack state handed to the next round as float32 images."""

    model: Any
    images: Any
    alpha: float
    interval: int
    max_steps: int
    first: int
    last: int
    final: bool
    previous: str | None = None  # the previous round's run directory, whose state this round continues
    autocast: bool = False

    def record_steps(self) -> list[int]:
        """The steps whose flips this round records."""
        ks = [k for k in range(self.first, self.last + 1) if k > 0 and k % self.interval == 0]
        return ks + ([self.max_steps] if self.final else [])

    def __call__(self, start: int, stop: int) -> dict[str, np.ndarray]:
        import torch

        from mlvis.analysis.profiles import probe_rows
        from mlvis.attacks.loop import Chunk
        from mlvis.metrics import flip_count

        model, x = _load_x(self.model, self.images, start, stop)
        n = x.shape[0]
        rows = probe_rows(model, x, self.alpha, self.max_steps, n)
        rows.table.finish()
        fmt = torch.contiguous_format  # the probe's layout
        parts = [Chunk(model, x, rows.table, np.asarray(p), "linf", self.autocast, fmt) for p in rows.parts]
        begin = self.first if self.first and self._restore(parts, start, stop) else 0
        records = []

        def flips(logits) -> torch.Tensor:
            return flip_count(torch.sigmoid(logits.detach()), rows.clean_pred, rows.threshold)

        for k in range(begin, self.last + 1):
            logits = [c.step(k) for c in parts]
            if k >= self.first and k > 0 and k % self.interval == 0:
                records.append(torch.stack([flips(v) for v in logits]))
        if self.final:
            records.append(torch.stack([flips(c.current_logits()) for c in parts]))
        per = torch.stack(records).cpu().numpy() if records else np.zeros((0, 2, n), np.int64)
        out = {"flips": np.moveaxis(per, 2, 0).astype(np.int64), "labels": np.full(n, rows.labels, np.int64)}
        if not self.final:
            state = {f"{name}{p}": getattr(c, name).detach().float().cpu().numpy() for p, c in enumerate(parts)
                     for name in _STATE}  # fmt: skip
            out["state_sha"] = _row_digests(state)
            out.update({f"images/state-{k}": v for k, v in state.items()})
        return out

    def _restore(self, parts, start: int, stop: int) -> bool:
        """Load the previous round's state of these images into ``parts``; ``False`` when it is not there or
        does not match its checksum (then the round recomputes the earlier steps)."""
        import torch

        from mlvis.runs import IMAGES, Run, read_run_file

        if self.previous is None:
            return False
        prev = Run(Path(self.previous))

        def read(name: str) -> np.ndarray:  # never through a link that leads out of the round's run directory
            data = read_run_file(prev.path, f"{IMAGES}/state-{name}/chunk-{start:07d}.npy")
            return np.load(io.BytesIO(data), allow_pickle=False)

        try:
            arrays = prev.chunk(start // int(prev.manifest["chunk_size"]))
            state = {f"{name}{p}": read(f"{name}{p}") for p in range(len(parts)) for name in _STATE}
        except (OSError, ValueError, KeyError, TypeError):  # RunError (a link leading out) is a ValueError
            return False
        if arrays is None or "state_sha" not in arrays or not np.array_equal(_row_digests(state), arrays["state_sha"]):
            return False
        for p, c in enumerate(parts):
            for name in _STATE:
                t = getattr(c, name)
                v = state[f"{name}{p}"]
                if tuple(v.shape) != tuple(t.shape):
                    return False
                t.copy_(torch.from_numpy(v).to(t.device, t.dtype))
        return True


def _row_digests(state: Mapping[str, np.ndarray]) -> np.ndarray:
    """SHA-256 per image of its state arrays (``(n, 32)`` uint8), stored in the chunk file that vouches for them."""
    n = len(next(iter(state.values())))
    out = np.zeros((n, 32), np.uint8)
    for i in range(n):
        h = hashlib.sha256()
        for k in sorted(state):
            h.update(np.ascontiguousarray(state[k][i]).tobytes())
        out[i] = np.frombuffer(h.digest(), np.uint8)
    return out


def profile_run(
    model,
    images,
    run_dir,
    *,
    degree: int = 4,
    alpha: float | None = None,
    interval: int = 10,
    max_eps: float = 0.5,
    rel: float = 0.01,
    patience: int = 3,
    min_points: int = 6,
    chunk_size: int = 25,
    round_steps: int | None = None,
    backend: str = "local",
    address: str | None = None,
    model_ref=None,
    progress=None,
    autocast: bool = False,
):
    """:func:`mlvis.profile` as a streaming, resumable run in rounds of steps (see the module docstring).

    Args:
        model: the loaded model; images: a :class:`mlvis.data.Dataset` aligned to it or
            :class:`mlvis.runs.DemoImages`; run_dir: the run directory (new or holding the same run).
        degree, alpha, interval, max_eps, rel, patience, min_points, autocast: as :func:`mlvis.profile` /
            :func:`~mlvis.analysis.profiles.probe`.
        chunk_size: images per chunk (the probe's batch); round_steps: steps per round (default
            ``10 * interval``): a larger round writes the attack state less often and may overshoot the
            stopping point by more steps.
        backend, address, model_ref, progress: as :func:`mlvis.analysis.evaluation.evaluate_run`
            (``progress(done_chunks, total_chunks)`` per round).

    Returns:
        The :class:`~mlvis.analysis.profiles.FlipProfile`, also written to ``RUN_DIR/profile.json``.
    """
    import torch

    from mlvis.analysis.profiles import (
        FlipProfile,
        check_profile_settings,
        fitted_profile,
        probe_converged,
        probe_output,
    )
    from mlvis.attacks.geometry import DEFAULT_ALPHA
    from mlvis.runs import claim_run, make_manifest, read_run_file, run_chunks, stage_dir, write_result

    alpha = float(DEFAULT_ALPHA if alpha is None else alpha)
    check_profile_settings(alpha=alpha, interval=interval, max_eps=max_eps, rel=rel, patience=patience,
                           degree=degree, images=len(images))  # fmt: skip
    check_number("min_points", min_points, 2, 10**6, whole=True)
    interval = int(interval)
    rounds = int(check_number("round_steps", round_steps, 1, 10**9, whole=True)) if round_steps else 10 * interval
    max_steps = int(math.floor(float(max_eps) / alpha + 1e-9))
    if max_steps < interval * (patience + 1):
        raise InvalidInput(f"max_eps {max_eps} allows too few steps for the convergence rule; raise it.")
    ref, model_entry = _prepare(model, images, model_ref)
    settings = {"alpha": alpha, "interval": interval, "max_eps": float(max_eps), "rel": float(rel),
                "patience": int(patience), "min_points": int(min_points), "degree": int(degree),
                "round_steps": rounds, "autocast": check_flag("autocast", autocast)}  # fmt: skip
    n, most = len(images), max(1, math.ceil((max_steps - 1) / rounds))
    manifest = make_manifest("profile", model=model_entry, dataset=images.describe(), settings=settings)
    with claim_run(run_dir, manifest, n, chunk_size, label="round", most=most, result=PROFILE_RESULT) as path:
        if (path / PROFILE_RESULT).is_file():
            return FlipProfile.from_dict(json.loads(read_run_file(path, PROFILE_RESULT)))
        records: list[np.ndarray] = []
        r, end, converged, labels = 0, max_steps, False, 0
        while True:
            first, last = (0 if r == 0 else r * rounds + 1), min((r + 1) * rounds, max_steps - 1)
            step = ProbeRound(ref, images, alpha, interval, max_steps, first, last, last == max_steps - 1,
                              str(stage_dir(path, r - 1)) if r else None, bool(autocast))  # fmt: skip
            stage_manifest = make_manifest("profile-round", model=model_entry, dataset=images.describe(),
                                           settings={**settings, "round": r, "iterations": [first, last],
                                                     "final": step.final})  # fmt: skip
            run = run_chunks(stage_dir(path, r), stage_manifest, n, chunk_size, step, backend, progress,
                             address=address)  # fmt: skip
            arrays = run.load(["flips", "labels"])
            labels = int(arrays["labels"][0])
            new = np.moveaxis(arrays["flips"], 0, 2)  # (records, 2, N)
            stopped = None
            for k, rec in zip(step.record_steps(), new):
                records.append(rec)
                if probe_converged(torch.from_numpy(np.stack(records)), rel, patience, min_points):
                    stopped = k
                    break
            if r:
                shutil.rmtree(stage_dir(path, r - 1) / "images", ignore_errors=True)  # state no longer needed
            if stopped is not None or step.final:
                converged, end = stopped is not None, stopped if stopped is not None else max_steps
                shutil.rmtree(stage_dir(path, r) / "images", ignore_errors=True)
                break
            r += 1
        p = probe_output(np.stack(records), end, converged, alpha, interval, max_steps, labels)
        prof = fitted_profile(p, model, degree, alpha, interval, max_eps, rel, patience, autocast=bool(autocast))
        write_result(path, PROFILE_RESULT, (json.dumps(prof.to_dict(), indent=1) + "\n").encode())
    return prof


def profile_from_run(run_dir):
    """The profile a finished profile run directory holds (``profile.json``, written when it finished).

    Raises:
        mlvis.runs.RunError: not a profile run, or not finished.
    """
    from mlvis.analysis.profiles import FlipProfile
    from mlvis.runs import RunError, read_run_file, run_status

    st = run_status(run_dir)
    if st.manifest.get("kind") != "profile":
        raise RunError(f"{st.path} holds a {st.manifest.get('kind')!r} run, not a profile run.")
    if not st.finished:
        raise RunError(f"The profile run in {st.path} is not finished ({st.stage}); start it again to continue.")
    return FlipProfile.from_dict(json.loads(read_run_file(st.path, PROFILE_RESULT)))


# ------------------------------------------------------------------------------ correlation matrices


@dataclasses.dataclass(frozen=True)
class CorrelationChunks:
    """``compute_chunk`` of the correlation matrices: every label attacked alone on images ``[start, stop)``,
    per image and direction every label's confidence before and after each single-label attack,
    ``"<direction>.clean"`` / ``"<direction>.adv"`` ``(n, C, C)`` (attacked label, then every label)."""

    model: Any
    images: Any
    eps: float
    alpha: float
    directions: tuple[str, ...]
    max_batch: int | None = None
    autocast: bool = False
    present_only: bool = False  # flip-down over the images where the label is present

    def __call__(self, start: int, stop: int) -> dict[str, np.ndarray]:
        from mlvis.analysis.correlation_matrices import single_label_attacks

        model, x = _load_x(self.model, self.images, start, stop)
        out = {}
        for d in self.directions:
            clean, adv, _, _ = single_label_attacks(model, x, self.eps, d, self.alpha, None, self.max_batch,
                                                    self.autocast, self.present_only and d == "down")  # fmt: skip
            out[f"{d}.clean"], out[f"{d}.adv"] = np.moveaxis(clean, 1, 0), np.moveaxis(adv, 1, 0)
        return out


def correlations_run(
    model,
    images,
    run_dir,
    *,
    eps: float = 0.005,
    directions: Sequence[str] = ("up", "down"),
    alpha: float | None = None,
    chunk_size: int = 25,
    max_batch: int | None = None,
    backend: str = "local",
    address: str | None = None,
    model_ref=None,
    progress=None,
    autocast: bool = False,
    present_only: bool = True,
):
    """:func:`mlvis.correlations` (both directions by default) as a streaming, resumable run; ``present_only``
    as there (flip-down over the images where the label is present; recorded in the manifest when it applies).

    Returns:
        The finished :class:`mlvis.runs.Run`; :func:`correlations_from_run` gives the matrices.
    """
    from mlvis.attacks.geometry import DEFAULT_ALPHA
    from mlvis.attacks.model_helpers import threshold
    from mlvis.runs import make_manifest, run_chunks

    directions = tuple(directions)
    if not directions or any(d not in ("up", "down") for d in directions):
        raise InvalidInput(f"directions must be 'up' and/or 'down', not {directions!r}.")
    eps = float(check_number("eps", eps, 0, 1e6, above=True))
    alpha = DEFAULT_ALPHA if alpha is None else float(check_number("alpha", alpha, 0, 1, above=True))
    ref, model_entry = _prepare(model, images, model_ref)
    labels = list(getattr(model, "labels", None) or [])
    present = check_flag("present_only", present_only) and "down" in directions  # up-only manifests stay as they were
    manifest = make_manifest("correlations", model=model_entry, dataset=images.describe(), budgets=[eps],
                             methods=list(directions),
                             settings={"alpha": alpha, "labels": labels, "threshold": float(threshold(model)),
                                       "max_batch": max_batch,
                                       "autocast": check_flag("autocast", autocast),
                                       **({"present_only": True} if present else {})})  # fmt: skip
    compute = CorrelationChunks(ref, images, eps, alpha, directions, max_batch, bool(autocast), present)
    return run_chunks(run_dir, manifest, len(images), chunk_size, compute, backend, progress, address=address)


def correlations_from_run(run_dir, partial: bool = False) -> dict:
    """``{direction: CorrelationMatrix}`` of a correlations run directory (the finished chunks' images only
    when ``partial``; :attr:`CorrelationMatrix.images` then says how many)."""
    from mlvis.analysis.correlation_matrices import correlation_matrix
    from mlvis.runs import Run, RunError

    run = Run(Path(run_dir))
    m = run.manifest
    if m.get("kind") != "correlations":
        raise RunError(f"{run.path} holds a {m.get('kind')!r} run, not a correlations run.")
    st = m["settings"]
    out = {}
    for d in m["methods"]:
        a = run.load([f"{d}.clean", f"{d}.adv"], partial=partial)
        if not a:
            raise RunError(f"The correlations run in {run.path} has no finished chunk yet.")
        clean, adv = np.moveaxis(a[f"{d}.clean"], 0, 1), np.moveaxis(a[f"{d}.adv"], 0, 1)
        labels = st.get("labels") or [str(i) for i in range(clean.shape[0])]
        out[d] = correlation_matrix(m["model"]["name"], labels, d, m["budgets"][0], st["alpha"], clean, adv,
                                    st["threshold"], present_only=bool(st.get("present_only")))  # fmt: skip
    return out


# ------------------------------------------------------------------------------------- Table VII

_RELATED_FIELDS = ("flips", "flips_8bit", "linf", "l2", "mifgsm_flips", "mifgsm_flips_8bit", "slam_flips",
                   "slam_flips_8bit", "slam_p")  # fmt: skip


@dataclasses.dataclass(frozen=True)
class RelatedChunks:
    """``compute_chunk`` of Table VII: :func:`~mlvis.analysis.related.compare_related` on images
    ``[start, stop)`` (seeded by :func:`mlvis.runs.chunk_seed`), per image every field ``(n, M)``; the
    wall times per chunk as ``seconds.<method>.<part>`` spread evenly over its images (their sum is the time)."""

    model: Any
    images: Any
    methods: tuple[str, ...]
    preset: str
    options: tuple[tuple[str, tuple[tuple[str, Any], ...]], ...]
    p: float
    q: float
    profile: Any
    seed: int
    job: tuple[tuple[str, Any], ...] = ()

    def __call__(self, start: int, stop: int) -> dict[str, np.ndarray]:
        from mlvis.analysis.related import compare_related
        from mlvis.runs import chunk_seed

        model, x = _load_x(self.model, self.images, start, stop)
        cmp = compare_related(model, x, self.methods, preset=self.preset,
                              options={m: dict(o) for m, o in self.options}, p=self.p, q=self.q,
                              profile=self.profile, seed=chunk_seed(self.seed, start), **dict(self.job))  # fmt: skip
        n = x.shape[0]
        out = {f: np.moveaxis(getattr(cmp, f), 0, 1) for f in _RELATED_FIELDS}
        out["num_labels"] = np.full(n, cmp.num_labels, np.int64)
        for method, parts in cmp.seconds.items():
            for part, s in parts.items():
                out[f"seconds.{method}.{part}"] = np.full(n, s / n)
        return out


def related_run(
    model,
    images,
    run_dir,
    methods: Sequence[str] = ("mla-lp", "ml-cw", "ml-deepfool"),
    *,
    preset: str = "fast",
    options: Mapping[str, Mapping[str, Any]] | None = None,
    p: float = 0.5,
    q: float = 0.5,
    profile=None,
    seed: int = 0,
    chunk_size: int = 25,
    backend: str = "local",
    address: str | None = None,
    model_ref=None,
    progress=None,
    **job: Any,
):
    """:func:`~mlvis.analysis.related.compare_related` as a streaming, resumable run.

    Returns:
        The finished :class:`mlvis.runs.Run`; :func:`related_from_run` gives the comparison.
    """
    from mlvis.analysis.related import RELATED
    from mlvis.runs import make_manifest, run_chunks

    methods = tuple(methods)
    if not methods or any(m not in RELATED for m in methods):
        raise InvalidInput(f"compare_related runs {', '.join(RELATED)}; not {', '.join(methods) or 'nothing'}.")
    options = {k: dict(v) for k, v in (options or {}).items()}
    ref, model_entry = _prepare(model, images, model_ref)
    prof = None  # the profile SLAM reads, as a hash of its contents (the manifest stays small)
    if profile is not None:
        text = json.dumps(profile.to_dict(), sort_keys=True, default=str)
        prof = {"type": type(profile).__name__, "sha256": hashlib.sha256(text.encode()).hexdigest()[:16]}
    settings = {"preset": preset, "options": options, "slam": {"p": None if profile is not None else float(p),
                "q": float(q), "profile": prof}, "job": dict(job)}  # fmt: skip
    manifest = make_manifest("compare-related", model=model_entry, dataset=images.describe(), seed=seed,
                             methods=list(methods), settings=settings)  # fmt: skip
    compute = RelatedChunks(ref, images, methods, preset,
                            tuple((m, tuple(sorted(o.items()))) for m, o in sorted(options.items())), float(p),
                            float(q), profile, int(seed), tuple(sorted(job.items())))  # fmt: skip
    return run_chunks(run_dir, manifest, len(images), chunk_size, compute, backend, progress, address=address)


def related_from_run(run_dir, partial: bool = False):
    """The :class:`~mlvis.analysis.related.RelatedComparison` of a compare-related run directory (the
    finished chunks' images only when ``partial``)."""
    from mlvis.analysis.related import RelatedComparison
    from mlvis.runs import Run, RunError

    run = Run(Path(run_dir))
    m = run.manifest
    if m.get("kind") != "compare-related":
        raise RunError(f"{run.path} holds a {m.get('kind')!r} run, not a compare-related run.")
    a = run.load(partial=partial)
    if not a:
        raise RunError(f"The compare-related run in {run.path} has no finished chunk yet.")
    methods = tuple(m["methods"])
    st = m["settings"]
    seconds = {meth: {part: float(a[f"seconds.{meth}.{part}"].sum()) for part in ("attack", "mifgsm_slam")}
               for meth in methods}  # fmt: skip
    n = len(a["flips"])
    settings = {"methods": list(methods), "preset": st["preset"], "options": st["options"],
                "slam": {"q": st["slam"]["q"], "p": st["slam"]["p"], "profile": st["slam"]["profile"] is not None},
                "seed": m["seed"], "num_images": n, "job": st["job"], "chunk_size": m["chunk_size"]}  # fmt: skip
    arrays = {f: np.ascontiguousarray(np.moveaxis(a[f], 0, 1)).astype(np.float64) for f in _RELATED_FIELDS}
    return RelatedComparison(model=m["model"]["name"], methods=methods, num_labels=int(a["num_labels"][0]),
                             seconds=seconds, settings=settings, **arrays)  # fmt: skip


# ------------------------------------------------------------------------------ any run's result


def result_from_run(run_dir, partial: bool = False):
    """The result a run directory holds, by its kind: an :class:`~mlvis.analysis.evaluation.EvaluationTable`
    (evaluate), a :class:`~mlvis.analysis.profiles.FlipProfile` (profile), ``{direction: CorrelationMatrix}``
    (correlations) or a :class:`~mlvis.analysis.related.RelatedComparison` (compare-related).

    Args:
        partial: for an unfinished run, the result of its finished chunks' images (evaluate, correlations,
            compare-related; a profile exists only once its probe has stopped).

    Raises:
        mlvis.runs.RunError: not a run directory of these commands, unfinished without ``partial``, or empty.
    """
    from mlvis.analysis.evaluation import table_from_run
    from mlvis.runs import Run, RunError

    kind = Run(Path(run_dir)).manifest.get("kind")
    if kind == "evaluate":
        return table_from_run(run_dir, partial=partial)
    if kind == "profile":
        return profile_from_run(run_dir)
    if kind == "correlations":
        return correlations_from_run(run_dir, partial=partial)
    if kind == "compare-related":
        return related_from_run(run_dir, partial=partial)
    raise RunError(f"{run_dir} holds a {kind!r} run, whose results mlvis cannot show.")


def images_in(result) -> int:
    """How many images ``result`` (of :func:`result_from_run`) covers."""
    if isinstance(result, dict):
        return int(next(iter(result.values())).images)
    if hasattr(result, "num_images"):
        return int(result.num_images)
    if hasattr(result, "flips") and hasattr(result, "methods"):
        return int(result.flips.shape[-1])
    return int(result.settings.get("images", 0))
