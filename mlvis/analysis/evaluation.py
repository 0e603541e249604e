"""The paper's evaluation (section VI, Tables IV-VI and IX, Figs. 7 and 8) as batched jobs.

:func:`evaluate` runs every method at every budget of the grid (fractions of the profile's eps_max)
as ONE engine job and lays the flips out like Tables IV-VI: mean +- std per method x eps, a total
column, and a paired t-test of each method against the BCE baseline per eps. The sweeps (q, gamma,
number of targets, BCE vs linear) are thin layers over the same job.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import stats

from mlvis.analysis.profiles import FRACTIONS
from mlvis.attacks.engine import AttackSpec, run_job
from mlvis.attacks.methods import get_method
from mlvis.attacks.plan import as_spec, evaluation_specs, needs
from mlvis.errors import InvalidInput, check_number
from mlvis.metrics import flip_count


@dataclasses.dataclass(frozen=True)
class EvaluationTable:
    """Tables IV-VI for one model: ``flips (M, K, N)`` of M methods at K budgets on N images.

    ``p_values (M, K)``: paired t-test of each method against the baseline (nan for the baseline);
    ``best (M, K)``: the best mean of each column, marked only when significant (see :meth:`best`);
    ``same_as_baseline (M, K)``: subset methods whose subset is every label on every image at that
    budget (the paper's ``*``).
    """

    model: str
    methods: tuple[str, ...]
    eps: np.ndarray
    fractions: np.ndarray
    flips: np.ndarray
    flips_8bit: np.ndarray
    p_values: np.ndarray
    same_as_baseline: np.ndarray
    baseline: str = "BCE"
    significance: float = 0.05
    config: dict = dataclasses.field(default_factory=dict)

    @property
    def mean(self) -> np.ndarray:
        return self.flips.mean(-1)

    @property
    def std(self) -> np.ndarray:
        return self.flips.std(-1)

    @property
    def total(self) -> np.ndarray:
        return self.mean.sum(1)

    @property
    def best(self) -> np.ndarray:
        """(M, K) bool: the column's best mean, where it differs significantly from the baseline
        (for the baseline itself: from the runner-up)."""
        mean = self.mean
        out = np.zeros(mean.shape, bool)
        b = self.methods.index(self.baseline) if self.baseline in self.methods else None
        for k in range(mean.shape[1]):
            top = int(np.argmax(mean[:, k]))
            if b is None:
                continue
            if top != b:
                out[top, k] = self.p_values[top, k] < self.significance
            else:
                others = [m for m in range(len(self.methods)) if m != b]
                if others:
                    second = max(others, key=lambda m: mean[m, k])
                    out[top, k] = paired_p(self.flips[b, k], self.flips[second, k]) < self.significance
        return out

    def to_frame(self):
        """Tidy: one row per method x eps with mean, std, 8-bit mean, p-value, best, same-as-baseline."""
        import pandas as pd

        m, k = self.mean.shape
        return pd.DataFrame(
            {
                "method": np.repeat(self.methods, k),
                "fraction": np.tile(self.fractions, m),
                "eps": np.tile(self.eps, m),
                "mean": self.mean.reshape(-1),
                "std": self.std.reshape(-1),
                "mean_8bit": self.flips_8bit.mean(-1).reshape(-1),
                "p_vs_baseline": self.p_values.reshape(-1),
                "best": self.best.reshape(-1),
                "same_as_baseline": self.same_as_baseline.reshape(-1),
            }
        )

    def to_markdown(self, eight_bit: bool = False) -> str:
        """The paper's layout: methods as rows, budgets as columns, **best if significant**, * = baseline."""
        flips = self.flips_8bit if eight_bit else self.flips
        mean, std, best = flips.mean(-1), flips.std(-1), self.best
        head = "| Method | " + " | ".join(f"ε = {e:.4g}" for e in self.eps) + " | Total |"
        rows = [head, "|---" * (len(self.eps) + 2) + "|"]
        for i, name in enumerate(self.methods):
            cells = []
            for k in range(len(self.eps)):
                cell = f"{mean[i, k]:.2f} ± {std[i, k]:.2f}"
                if self.same_as_baseline[i, k]:
                    cell = "*"
                elif best[i, k] and not eight_bit:
                    cell = f"**{cell}**"
                cells.append(cell)
            rows.append(f"| {name} | " + " | ".join(cells) + f" | {mean[i].sum():.2f} |")
        return "\n".join(rows)

    def to_dict(self) -> dict:
        return {
            "model": self.model,
            "methods": list(self.methods),
            "eps": self.eps.tolist(),
            "fractions": self.fractions.tolist(),
            "mean": self.mean.tolist(),
            "std": self.std.tolist(),
            "mean_8bit": self.flips_8bit.mean(-1).tolist(),
            "total": self.total.tolist(),
            "p_values": [[None if np.isnan(v) else float(v) for v in row] for row in self.p_values],
            "best": self.best.tolist(),
            "same_as_baseline": self.same_as_baseline.tolist(),
            "flips": self.flips.tolist(),
            "config": self.config,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict())


def paired_p(a: np.ndarray, b: np.ndarray) -> float:
    """Paired t-test p-value of two methods' flips on the same images (1 for identical runs, 0 for a
    constant non-zero shift, nan for fewer than two images)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    d = a - b
    if len(d) < 2:
        return float("nan")
    if np.all(d == d[0]):  # identical runs (or a constant shift): no variance to test
        return 1.0 if d[0] == 0 else 0.0
    return float(stats.ttest_rel(a, b).pvalue)


# Tables IV-VI's rows: the baseline, SLAM, the random control and CLASS at gamma 0, 0.5 and 1
DEFAULT_METHODS = (
    "bce",
    "slam",
    "random",
    ("class", {"gamma": 0.0}),
    ("class", {"gamma": 0.5}),
    ("class", {"gamma": 1.0}),
)


def evaluate(
    model,
    images,
    methods: Sequence[Any] = DEFAULT_METHODS,
    eps_fractions: Sequence[float] = FRACTIONS,
    *,
    profile=None,
    correlations=None,
    eps: Sequence[float] | None = None,
    baseline: str = "bce",
    significance: float = 0.05,
    seed: int = 0,
    progress=None,
    protocol: str = "paper",
    **job,
) -> EvaluationTable:
    """Tables IV-VI for ``model`` on ``images``: every method at every budget as one batched job.

    The budgets are ``eps_fractions`` of the profile's eps_max (section VI-C), or ``eps`` explicitly.
    ``profile`` / ``correlations`` default to the model's shipped or cached ones when a method needs them.
    ``protocol="authors"`` runs everything as the authors' code does (:mod:`mlvis.attacks.protocol`): the
    profile is read under their convergence rule (refitted from its curves, so the grid is theirs too) and
    the job runs with their clip, equation 7, CLASS length, Z and matrix normalisation.
    With ``norm="l2"`` (a keyword of the job) the profile is the model's L2 profile, so the grid is made of
    fractions of the L2 eps_max (Table VIII); an L-inf profile given for an L2 run is refused.
    """
    from mlvis.analysis.correlation_matrices import correlations as get_correlations
    from mlvis.analysis.profiles import profile as get_profile

    profile = _protocol_profile(profile, protocol)

    if isinstance(methods, (str, bytes)) or not isinstance(methods, (list, tuple)) or not methods:
        raise InvalidInput(f"methods must be a non-empty list of method names or (name, options), not {methods!r}.")
    if eps is None:
        listed = [eps_fractions] if np.ndim(eps_fractions) == 0 else eps_fractions
        if isinstance(listed, (str, bytes)) or not isinstance(listed, (list, tuple, np.ndarray)) or not len(listed):
            raise InvalidInput(f"eps_fractions must be a non-empty list of fractions of eps_max, not {listed!r}.")
        eps_fractions = [check_number("each eps fraction", f, 0, 1e6) for f in listed]
    names = [as_spec(m).method for m in methods]
    profile = _profile_of_norm(model, profile, job, eps is None or needs(methods, "profile"), get_profile, protocol)
    if correlations is None and needs(methods, "correlations"):
        correlations = get_correlations(model, direction="up")
    if baseline not in names:
        methods = [baseline, *methods]
    specs = evaluation_specs(methods, profile, correlations)
    fr = np.asarray(eps_fractions, np.float64)
    budgets = np.asarray(eps, np.float64) if eps is not None else fr * profile.eps_max
    if eps is not None:
        fr = budgets / profile.eps_max if profile is not None else np.full(len(budgets), np.nan)
    results = run_job(model, images, specs, budgets, seed=seed, progress=progress, protocol=protocol, **job)
    flips = np.stack([r.flips for r in results]).astype(np.float64)
    flips_8bit = np.stack([r.flips_8bit for r in results]).astype(np.float64)
    b = [s.method for s in specs].index(baseline)
    same = np.zeros(flips.shape[:2], bool)
    for i, r in enumerate(results):
        if r.targets is not None and get_method(specs[i].method).subset:
            same[i] = (r.targets > 0).all(axis=(1, 2))
    return _table(
        getattr(getattr(model, "spec", None), "name", type(model).__name__),
        [str(s.name) for s in specs],
        b,
        budgets,
        fr,
        flips,
        flips_8bit,
        same,
        significance,
        {
            "seed": seed,
            "images": int(flips.shape[-1]),
            "eps_max": getattr(profile, "eps_max", None),
            **_norm_config(job.get("norm")),
            **({"protocol": protocol} if protocol != "paper" else {}),
        },
    )


def _protocol_profile(profile: Any, protocol: str) -> Any:
    """``profile`` under ``protocol``'s convergence rule (checked; unchanged under ``"paper"``)."""
    from mlvis.analysis.profiles import FlipProfile, for_protocol
    from mlvis.attacks.protocol import check_protocol

    if check_protocol(protocol) != "paper" and isinstance(profile, FlipProfile):
        return for_protocol(profile, protocol)
    return profile


def _profile_of_norm(model, profile, job: dict, wanted: bool, get_profile, protocol: str = "paper"):
    """The profile an evaluation in ``job``'s norm uses: the one given (checked to be of that norm), or the
    model's shipped or cached one of that norm (read under ``protocol``) when the grid or a method needs it."""
    from mlvis.analysis.profiles import check_profile_norm

    norm = job.get("norm") or "linf"
    if profile is None and wanted:
        return get_profile(model, norm=norm, protocol=protocol)
    if profile is not None:
        check_profile_norm(profile, norm)
    return profile


def _norm_config(norm) -> dict:
    """``{"norm": "l2"}`` for an L2 table (L-inf tables keep the config they always had)."""
    return {"norm": str(norm)} if norm not in (None, "linf") else {}


def _table(model_name, names, b, budgets, fr, flips, flips_8bit, same, significance, config) -> EvaluationTable:
    """The table of ``flips (M, K, N)`` with the paired t-tests of every method against method ``b``."""
    m, k = flips.shape[:2]
    p = np.full((m, k), np.nan)
    for i in range(m):
        if i != b:
            for kk in range(k):
                p[i, kk] = paired_p(flips[i, kk], flips[b, kk])
    return EvaluationTable(
        model=model_name,
        methods=tuple(names),
        eps=np.asarray(budgets, np.float64),
        fractions=np.asarray(fr, np.float64),
        flips=flips,
        flips_8bit=flips_8bit,
        p_values=p,
        same_as_baseline=same,
        baseline=names[b],
        significance=significance,
        config=config,
    )


# ------------------------------------------------------------------------------ run directories



def evaluate_run(
    model,
    images,
    run_dir,
    methods: Sequence[Any] = DEFAULT_METHODS,
    eps_fractions: Sequence[float] = FRACTIONS,
    *,
    chunk_size: int = 25,
    profile=None,
    correlations=None,
    eps: Sequence[float] | None = None,
    baseline: str = "bce",
    significance: float = 0.05,
    seed: int = 0,
    save_images: bool = False,
    backend: str = "local",
    address: str | None = None,
    model_ref=None,
    progress=None,
    protocol: str = "paper",
    **job,
):
    """:func:`evaluate` as a streaming, resumable run: chunks of images written into ``run_dir``.

    The same settings in the same folder continue the run from its last finished chunk (after a crash
    or a kill); :func:`table_from_run` then computes the table from the folder. Each chunk's random draws
    use :func:`mlvis.runs.chunk_seed`, so a random-subset row differs from :func:`evaluate`'s one batch
    (the deterministic methods give the same flips).

    Args:
        model: the loaded model (its profile, correlation matrices and fingerprint are read here).
        images: a :class:`mlvis.data.Dataset` aligned to the model, or :class:`mlvis.runs.DemoImages`.
        run_dir: the run directory (new or holding the same run).
        chunk_size: images per chunk (part of the run's identity: float bits depend on batch size).
        save_images: also write every 8-bit adversarial image (lossless PNGs) into the run directory.
        backend, address: ``"local"`` or ``"ray"`` (see :func:`mlvis.runs.run_chunks`).
        model_ref: how a worker loads the model (default ``ModelRef(model.spec.name)``); in this process
            the model given is used.
        progress: ``progress(done_chunks, total_chunks)``.
        protocol: ``"paper"`` or ``"authors"``, as :func:`evaluate` (part of the run's identity when not the paper's).

    Returns:
        The finished :class:`mlvis.runs.Run`.
    """
    from mlvis.analysis.correlation_matrices import correlations as get_correlations
    from mlvis.analysis.profiles import profile as get_profile
    from mlvis.runs import AttackChunks, ModelRef, cached, make_manifest, run_chunks
    from mlvis.store import model_fingerprint

    name = getattr(getattr(model, "spec", None), "name", type(model).__name__)
    profile = _protocol_profile(profile, protocol)
    if protocol != "paper":
        job = {**job, "protocol": protocol}  # the chunks' run_job reads it from the job options
    profile = _profile_of_norm(model, profile, job, eps is None or needs(methods, "profile"), get_profile, protocol)
    if correlations is None and needs(methods, "correlations"):
        correlations = get_correlations(model, direction="up")
    if baseline not in [as_spec(m).method for m in methods]:
        methods = [baseline, *methods]
    specs = evaluation_specs(methods, profile, correlations)
    fr = np.asarray(eps_fractions, np.float64)
    budgets = np.asarray(eps, np.float64) if eps is not None else fr * profile.eps_max
    if eps is not None:
        fr = budgets / profile.eps_max if profile is not None else np.full(len(budgets), np.nan)
    b = [s.method for s in specs].index(baseline)
    ref = model_ref if model_ref is not None else ModelRef(name)
    cached(("model", ref.name, ref.options), lambda: model)  # this process uses the model it was given
    manifest = make_manifest(
        "evaluate",
        model={"name": name, "fingerprint": model_fingerprint(model)},
        dataset=images.describe(),
        seed=seed,
        methods=[_spec_record(s) for s in specs],
        budgets=budgets.tolist(),
        settings={
            "fractions": [None if np.isnan(f) else float(f) for f in fr],
            "eps_max": getattr(profile, "eps_max", None),
            "baseline": str(specs[b].name),
            "significance": float(significance),
            "subset": [str(s.name) for s in specs if get_method(s.method).subset],
            "job": dict(job),
            "save_images": bool(save_images),
        },
    )
    compute = AttackChunks(ref, images, tuple(specs), tuple(budgets.tolist()),
                           tuple(sorted({"seed": seed, **job}.items())), save_images)  # fmt: skip
    return run_chunks(run_dir, manifest, len(images), chunk_size, compute, backend, progress, address=address)


def table_from_run(run, partial: bool = False) -> EvaluationTable:
    """The evaluation table (means, stds, paired t-tests, best, ``*``) of a finished ``evaluate`` run directory.

    Args:
        run: a :class:`mlvis.runs.Run` or its folder.
        partial: allow an unfinished run: the table of its finished chunks' images. ``config["images"]`` and
            ``config["of_images"]`` then say how many of how many (:func:`table_caption` writes it out).

    Raises:
        mlvis.runs.RunError: the folder is not an evaluate run, or not finished (without ``partial``), or
            has no finished chunk.
    """
    from pathlib import Path

    from mlvis.runs import Run, RunError

    run = run if isinstance(run, Run) else Run(Path(run))
    m = run.manifest
    if m.get("kind") != "evaluate":
        raise RunError(f"{run.path} holds a {m.get('kind')!r} run, not an evaluate run.")
    names = [str(r["name"]) for r in m["methods"]]
    st = m["settings"]
    subset = [n for n in names if n in st.get("subset", [])]
    keys = [f"{n}.{f}" for n in names for f in ("flips", "flips_8bit")]
    if not names:
        raise RunError(f"The evaluate run in {run.path} lists no methods; its manifest is damaged.")
    arrays = run.load(keys, partial=partial)
    if not arrays:
        raise RunError(f"The evaluate run in {run.path} has no finished chunk yet.")
    targets = {n: run.load([f"{n}.targets"], partial=partial)[f"{n}.targets"] for n in subset}
    flips = np.stack([np.moveaxis(arrays[f"{n}.flips"], 0, 1) for n in names]).astype(np.float64)
    flips_8bit = np.stack([np.moveaxis(arrays[f"{n}.flips_8bit"], 0, 1) for n in names]).astype(np.float64)
    same = np.zeros(flips.shape[:2], bool)
    for i, n in enumerate(names):
        if n in targets:
            same[i] = (targets[n] > 0).all(axis=(0, 2))
    fr = [np.nan if f is None else f for f in st["fractions"]]
    config = {"seed": m["seed"], "images": int(flips.shape[-1]), "eps_max": st.get("eps_max"),
              "chunk_size": m["chunk_size"], **_norm_config(dict(st.get("job") or {}).get("norm"))}  # fmt: skip
    if int(flips.shape[-1]) < int(m["num_items"]):  # an unfinished run's table says so
        config["of_images"] = int(m["num_items"])
    return _table(m["model"]["name"], names, names.index(st["baseline"]), m["budgets"], fr, flips, flips_8bit, same,
                  float(st["significance"]), config)  # fmt: skip


def table_caption(table: EvaluationTable) -> str:
    """What a table of a run covers: ``"100 images"``, or ``"40 of 100 images (the run is not finished)"``."""
    n = int(table.config.get("images") or table.flips.shape[-1])
    of = table.config.get("of_images")
    return f"{n} of {of} images (the run is not finished)" if of else f"{n} images"


def _spec_record(spec: AttackSpec) -> dict[str, Any]:
    """A spec as JSON for a manifest: numbers as they are, a profile or matrix as a hash of its contents."""
    import hashlib

    def plain(v: Any) -> Any:
        if v is None or isinstance(v, (bool, int, float, str)):
            return v
        if isinstance(v, np.generic):
            return v.item()
        if isinstance(v, np.ndarray):
            return v.tolist()
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {str(k): plain(x) for k, x in v.items()}
        if hasattr(v, "to_dict"):
            text = json.dumps(v.to_dict(), sort_keys=True, default=str)
            return {"type": type(v).__name__, "sha256": hashlib.sha256(text.encode()).hexdigest()[:16]}
        return repr(v)

    return {"method": spec.method, "name": str(spec.name), "options": plain(dict(spec.options))}


# ------------------------------------------------------------------------------------- sweeps


def q_sweep(model, images, qs=(0.25, 0.5, 0.75, 1.0), *, profile=None, **kw) -> EvaluationTable:
    """Table IX: SLAM at several q over the evaluation grid (totals in ``.total``)."""
    methods = [AttackSpec("slam", {"q": float(q)}) for q in qs]
    return evaluate(model, images, methods, profile=profile, **kw)


def gamma_search(model, images, step: float = 0.05, *, profile=None, correlations=None, **kw):
    """Section VI-C's search for CLASS's best gamma in steps of ``step``: returns (best gamma, table).

    Best = the largest total flips over the grid (ties: the smaller gamma).
    """
    gammas = np.round(np.arange(0.0, 1.0 + 1e-9, step), 6)
    methods = [AttackSpec("class", {"gamma": float(g)}) for g in gammas]
    table = evaluate(model, images, methods, profile=profile, correlations=correlations, **kw)
    totals = table.total[1:] if table.methods[0] == "BCE" else table.total
    return float(gammas[int(np.argmax(totals))]), table


def flips_vs_targets(model, images, eps: Sequence[float] | np.ndarray, targets: Sequence[int] | None = None, **job):
    """Fig. 7: mean flips against the number of targets (the labels closest to flipping), per eps.

    Returns ``(targets (T,), mean (K, T), std (K, T))``; one job for every target count and eps.
    """
    num_labels = len(getattr(model, "labels", ()) or ()) or None
    if targets is None:
        if num_labels is None:
            raise InvalidInput("Give the target counts (the model does not name its labels).")
        targets = range(1, num_labels + 1)
    counts = np.asarray(list(targets), np.int64)
    specs = [AttackSpec("closest", {"k": int(t)}, name=f"top{t}") for t in counts]
    results = run_job(model, images, specs, list(eps), **job)
    flips = np.stack([r.flips for r in results], axis=1).astype(np.float64)  # (K, T, N)
    return counts, flips.mean(-1), flips.std(-1)


def best_targets(targets: Sequence[int] | np.ndarray, mean: np.ndarray, eps: Sequence[float]) -> list[dict]:
    """Fig. 7's reading: per budget, the target count with the most mean flips (the first on ties).

    Returns one ``{"eps", "targets", "flips", "ratio"}`` per eps (``ratio`` = flips / targets; the paper
    finds about 0.6, the origin of CLASS's 1.66 = 1 / 0.6)."""
    t, m = np.asarray(targets, np.int64), np.asarray(mean, np.float64)
    out = []
    for k, e in enumerate(eps):
        best = int(np.argmax(m[k]))
        count, flips = int(t[best]), float(m[k, best])
        out.append({"eps": float(e), "targets": count, "flips": flips, "ratio": flips / count})
    return out


def bce_vs_linear(model, images, eps: Sequence[float], **job):
    """Fig. 8: mean and std of the flips of BCE and of the linear loss over ``eps`` (one job)."""
    res = run_job(model, images, ["bce", "linear"], list(eps), **job)
    return {r.method: (r.flips.mean(1), r.flips.std(1)) for r in res}


# ----------------------------------------------------------------------------------- transfer


@dataclasses.dataclass(frozen=True)
class TransferResult:
    """How a result's adversarial images fare on another model, flips against that model's own
    clean prediction. ``flips`` / ``flips_8bit``: (K, N); ``source_flips``: the attacked model's."""

    source: str
    target: str
    method: str
    eps: np.ndarray
    flips: np.ndarray
    flips_8bit: np.ndarray
    source_flips: np.ndarray

    def summary(self) -> dict:
        return {
            "source": self.source,
            "target": self.target,
            "method": self.method,
            "eps": self.eps.tolist(),
            "source_flips": self.source_flips.mean(1).tolist(),
            "transfer_flips": self.flips.mean(1).tolist(),
            "transfer_flips_8bit": self.flips_8bit.mean(1).tolist(),
        }


def transfer(result, other_model, batch: int = 256) -> TransferResult:
    """Re-evaluate ``result``'s adversarial images (and their 8-bit versions) on ``other_model``.

    Images are resized (bilinear, antialiased) when the other model expects another input size.
    """
    import torch
    import torch.nn.functional as F

    from mlvis.attacks.model_helpers import model_device, threshold, work_dtype

    dev, dtype = model_device(other_model), work_dtype(other_model)
    thr = threshold(other_model)
    size = tuple(getattr(getattr(other_model, "spec", None), "input_size", ()) or result.clean.shape[-2:])

    def probs(x: np.ndarray) -> np.ndarray:
        out = []
        for a in range(0, len(x), batch):
            t = torch.as_tensor(np.ascontiguousarray(x[a : a + batch])).to(dev, dtype)
            if tuple(t.shape[-2:]) != size:
                t = F.interpolate(t, size=size, mode="bilinear", antialias=True, align_corners=False).clamp_(0, 1)
            with torch.no_grad():
                out.append(torch.sigmoid(other_model(t).float()).cpu().numpy())
        return np.concatenate(out)

    k, n = result.flips.shape
    clean_pred = probs(result.clean) >= thr
    adv = probs(result.adv.reshape(k * n, *result.adv.shape[2:])).reshape(k, n, -1)
    q8 = probs(result.adv_8bit.reshape(k * n, *result.adv.shape[2:]).astype(np.float32) / 255).reshape(k, n, -1)
    return TransferResult(
        source=str(result.config.get("model", "")),
        target=getattr(getattr(other_model, "spec", None), "name", type(other_model).__name__),
        method=result.name,
        eps=result.eps.copy(),
        flips=flip_count(adv, clean_pred[None], thr),
        flips_8bit=flip_count(q8, clean_pred[None], thr),
        source_flips=result.flips.copy(),
    )


# ------------------------------------------------------------------------------ Fig. 12: L-inf vs L2


@dataclasses.dataclass(frozen=True)
class NormComparison:
    """Fig. 12: the same images attacked by one method at an L-inf budget and at the L2 radius of equal volume.

    ``linf`` and ``l2`` are the two :class:`~mlvis.attacks.result.AttackResult` s (one budget each);
    ``eps_linf`` the L-inf half-width, ``radius`` the equal-volume L2 radius (appendix C).
    """

    model: str
    method: str
    eps_linf: float
    radius: float
    linf: Any
    l2: Any

    def rows(self) -> list[dict]:
        """One row per norm: mean flips, the perturbations' L-inf and L2 norms, PSNR and SSIM (means)."""
        out = []
        for norm, r, budget in (("linf", self.linf, self.eps_linf), ("l2", self.l2, self.radius)):
            out.append({
                "norm": norm, "budget": float(budget), "flips": float(r.flips[0].mean()),
                "flips_8bit": float(r.flips_8bit[0].mean()), "linf": float(r.linf[0].mean()),
                "l2": float(r.l2[0].mean()), "psnr": float(np.mean(r.psnr[0])), "ssim": float(np.mean(r.ssim[0])),
            })  # fmt: skip
        return out

    def to_markdown(self) -> str:
        head = "| Norm | Budget | Flips | 8-bit flips | ‖δ‖∞ | ‖δ‖₂ | PSNR (dB) | SSIM |"
        lines = [head, "|---|---|---|---|---|---|---|---|"]
        for row in self.rows():
            title = "L∞" if row["norm"] == "linf" else "L2"
            lines.append(f"| {title} | {row['budget']:.4g} | {row['flips']:.2f} | {row['flips_8bit']:.2f} | "
                         f"{row['linf']:.4f} | {row['l2']:.3f} | {row['psnr']:.1f} | {row['ssim']:.3f} |")  # fmt: skip
        return "\n".join(lines)


def linf_vs_l2(model, images, eps: float = 0.024, method: Any = "bce", *, profiles=None, correlations=None, **job):
    """Fig. 12 (appendix B): ``method`` on ``images`` at the L-inf budget ``eps`` and at the L2 radius whose ball
    has the cube's volume (appendix C), so the two attacks get the same volume to search.

    A method that reads a profile gets each norm's own (``profiles``: ``{"linf": ..., "l2": ...}``, default the
    model's shipped or cached ones). Returns a :class:`NormComparison`.
    """
    from mlvis.analysis.correlation_matrices import correlations as get_correlations
    from mlvis.analysis.profiles import profile as get_profile
    from mlvis.attacks.geometry import equal_volume_l2_radius
    from mlvis.attacks.model_helpers import check_images

    eps = check_number("eps", eps, 0, 1, above=True)
    x = check_images(images)
    radius = equal_volume_l2_radius(float(eps), int(x[0].numel()))
    profiles = dict(profiles or {})
    if correlations is None and needs([method], "correlations"):
        correlations = get_correlations(model, direction="up")
    out = {}
    for norm, budget in (("linf", float(eps)), ("l2", radius)):
        prof = _profile_of_norm(model, profiles.get(norm), {"norm": norm}, needs([method], "profile"), get_profile)
        (spec,) = evaluation_specs([method], prof, correlations)
        out[norm] = run_job(model, x, [spec], [budget], norm=norm, **job)[0]
    name = getattr(getattr(model, "spec", None), "name", type(model).__name__)
    return NormComparison(name, str(out["linf"].name), float(eps), float(radius), out["linf"], out["l2"])
