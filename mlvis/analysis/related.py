"""Table VII: the related-work attacks against MI-FGSM and SLAM at the budget each related attack used.

For every related attack (MLA-LP, ML-CW, ML-DeepFool; :mod:`mlvis.attacks.related`) :func:`compare_related`
runs it unbounded, reads each image's achieved L-inf norm ``eps_i = ||adv_i - x_i||_inf``, and attacks the
same image with MI-FGSM (BCE, the paper's baseline) and SLAM at exactly ``eps_i``.

Per-image budgets in batched runs: the engine takes one eps list for a batch, so each chunk of images is
one job whose eps list is the chunk's distinct budgets. BCE (and SLAM with a fixed ``p``) do not depend on
eps, so every image runs one trajectory with a snapshot at every budget of the list, and the result of
image i is read at its own budget (the diagonal). The chunk size keeps the ``K x N`` snapshots within
``max_snapshot_bytes``. SLAM with a ``profile`` uses ``p_i = profile.flip_ratio(eps_i)`` (equation 7; 1
beyond eps_max): its loss then differs between images, so images sharing a p value (all those beyond
eps_max, usually every ML-CW and ML-DeepFool image) run together and the others run per distinct p.

The paper's CLASS column is "*" for every row (at these budgets CLASS's subset is every label, so it is the
baseline); it is left out here.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from mlvis.attacks.engine import AttackSpec, run_job
from mlvis.attacks.geometry import DEFAULT_ALPHA
from mlvis.attacks.model_helpers import check_images
from mlvis.attacks.plan import image_steps, runner_image_steps
from mlvis.errors import InvalidInput, check_run_work

RELATED = ("mla-lp", "ml-cw", "ml-deepfool")
"""The related attacks in Table VII's order."""
NAMES = {"mla-lp": "MLA-LP", "ml-cw": "ML-CW", "ml-deepfool": "ML-Deepfool"}
_SNAPSHOT_BYTES = 256 * 2**20


@dataclasses.dataclass(frozen=True)
class RelatedComparison:
    """Per-image results of :func:`compare_related` (``N`` images, one row per related attack).

    ``flips``, ``flips_8bit``, ``linf``, ``l2`` are the related attack's (float images; 8-bit images rounded
    inside the same L-inf ball); ``mifgsm_flips`` / ``slam_flips`` (and their ``_8bit``) are MI-FGSM's and
    SLAM's flips at each image's ``linf``; ``slam_p`` is the p SLAM used per image. Every array is
    ``(M, N)`` for the ``M`` methods. ``seconds`` holds the wall time of each related attack and of its
    MI-FGSM + SLAM runs; ``settings`` what was run, to repeat it.
    """

    model: str
    methods: tuple[str, ...]
    num_labels: int
    flips: np.ndarray
    flips_8bit: np.ndarray
    linf: np.ndarray
    l2: np.ndarray
    mifgsm_flips: np.ndarray
    mifgsm_flips_8bit: np.ndarray
    slam_flips: np.ndarray
    slam_flips_8bit: np.ndarray
    slam_p: np.ndarray
    seconds: dict[str, dict[str, float]]
    settings: dict[str, Any]

    @property
    def num_images(self) -> int:
        return int(self.flips.shape[1])

    def summary(self):
        """Table VII: mean and std per method of the flips, the achieved L-inf and L2, MI-FGSM and SLAM flips."""
        import pandas as pd

        rows = []
        for m, name in enumerate(self.methods):
            row: dict[str, Any] = {"method": NAMES.get(name, name)}
            for col, arr in (
                ("flips", self.flips),
                ("linf", self.linf),
                ("l2", self.l2),
                ("mifgsm_flips", self.mifgsm_flips),
                ("slam_flips", self.slam_flips),
                ("flips_8bit", self.flips_8bit),
                ("mifgsm_flips_8bit", self.mifgsm_flips_8bit),
                ("slam_flips_8bit", self.slam_flips_8bit),
            ):
                row[f"{col}_mean"] = float(np.mean(arr[m]))
                row[f"{col}_std"] = float(np.std(arr[m]))
            row["seconds_attack"] = self.seconds[name]["attack"]
            row["seconds_mifgsm_slam"] = self.seconds[name]["mifgsm_slam"]
            rows.append(row)
        return pd.DataFrame(rows)

    def to_frame(self):
        """One row per (method, image) with every per-image number."""
        import pandas as pd

        m, n = self.flips.shape
        cols = {
            "method": np.repeat([NAMES.get(x, x) for x in self.methods], n),
            "image": np.tile(np.arange(n), m),
        }
        for name in ("flips", "flips_8bit", "linf", "l2", "mifgsm_flips", "mifgsm_flips_8bit", "slam_flips",
                     "slam_flips_8bit", "slam_p"):  # fmt: skip
            cols[name] = getattr(self, name).reshape(-1)
        return pd.DataFrame(cols)

    def to_markdown(self) -> str:
        """Table VII's layout: Flips, eps = ||p||_inf, MI-FGSM flips, SLAM flips (mean ± std), plus L2 and time."""
        s = self.summary()
        head = (
            "| Method | Flips | ε = ‖p‖∞ | ‖p‖₂ | MI-FGSM flips | SLAM flips "
            "| 8-bit flips (attack / MI-FGSM / SLAM) | time (attack / MI-FGSM+SLAM) |"
        )
        lines = [head, "|---|---|---|---|---|---|---|---|"]
        for _, r in s.iterrows():
            lines.append(
                f"| {r['method']} | {r['flips_mean']:.2f} ± {r['flips_std']:.2f} | {r['linf_mean']:.3f} ± "
                f"{r['linf_std']:.3f} | {r['l2_mean']:.2f} ± {r['l2_std']:.2f} | {r['mifgsm_flips_mean']:.2f} ± "
                f"{r['mifgsm_flips_std']:.2f} | {r['slam_flips_mean']:.2f} ± {r['slam_flips_std']:.2f} | "
                f"{r['flips_8bit_mean']:.2f} / {r['mifgsm_flips_8bit_mean']:.2f} / {r['slam_flips_8bit_mean']:.2f} | "
                f"{r['seconds_attack']:.0f} s / {r['seconds_mifgsm_slam']:.0f} s |"
            )
        return "\n".join(lines)

    def to_dict(self) -> dict:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in d.items()}

    def to_json(self) -> str:
        return json.dumps({**self.to_dict(), "summary": self.summary().to_dict(orient="records")})


def compare_related(
    model: torch.nn.Module,
    images: Any,
    methods: Sequence[str] = RELATED,
    *,
    preset: str = "fast",
    options: Mapping[str, Mapping[str, Any]] | None = None,
    p: float = 0.5,
    q: float = 0.5,
    profile: Any = None,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
    max_snapshot_bytes: int = _SNAPSHOT_BYTES,
    **job: Any,
) -> RelatedComparison:
    """Table VII on ``model`` and ``images``: each related attack, then MI-FGSM and SLAM at its per-image L-inf.

    Args:
        methods: any of ``"mla-lp"``, ``"ml-cw"``, ``"ml-deepfool"``.
        preset: ML-CW's budget, ``"fast"`` or ``"original"`` (10 x 1,000 Adam steps, Song et al.'s).
        options: per-method options, e.g. ``{"mla-lp": {"basis": 16}, "ml-cw": {"distance": "linf"}}``.
        p, q: SLAM's expected flip ratio (used when no ``profile`` is given) and BCE share.
        profile: a ``FlipProfile``; SLAM then uses ``p = profile.flip_ratio(eps_i)`` per image.
        seed, progress, **job: passed to every engine job (``device``, ``memory_budget``, ``max_batch``, ...).

    Example:
        >>> cmp = compare_related(mlvis.create_model("demo-asl"), mlvis.data.demo_batch(20)[0])
        >>> print(cmp.to_markdown())
    """
    methods = tuple(methods)
    unknown = [m for m in methods if m not in RELATED]
    if unknown or not methods:
        raise InvalidInput(f"compare_related runs {', '.join(RELATED)}; not {', '.join(unknown) or 'nothing'}.")
    options = {k: dict(v) for k, v in (options or {}).items()}
    if set(options) - set(methods):
        raise InvalidInput(f"options were given for {sorted(set(options) - set(methods))}, which are not compared.")
    if profile is None:
        p = float(p)
        if not (0 <= p <= 1):
            raise InvalidInput(f"SLAM's p must lie in [0, 1], not {p!r}.")
    elif not hasattr(profile, "flip_ratio"):
        raise InvalidInput("profile must be a FlipProfile (see mlvis.profile).")
    x = check_images(images)
    n = x.shape[0]
    _check_related_work(model, x, methods, options, preset, q, job)
    chunk = max(1, int(np.sqrt(max_snapshot_bytes / (2 * 5 * x[0].numel()))))  # K x N x (float32 + uint8), 2 specs
    arrays = {k: np.zeros((len(methods), n)) for k in ("flips", "flips_8bit", "linf", "l2", "mifgsm_flips",
                                                         "mifgsm_flips_8bit", "slam_flips", "slam_flips_8bit",
                                                         "slam_p")}  # fmt: skip
    seconds: dict[str, dict[str, float]] = {}
    num_labels = 0
    for m, name in enumerate(methods):
        opts = dict(options.get(name, {}))
        if name == "ml-cw":
            opts.setdefault("preset", preset)
        t0 = time.perf_counter()
        res = run_job(model, x, [AttackSpec(name, opts)], [1.0], norm="linf", seed=seed, progress=progress, **job)[0]
        t1 = time.perf_counter()
        num_labels = res.clean_probs.shape[1]
        budgets = res.linf[0].astype(np.float64)
        arrays["flips"][m], arrays["flips_8bit"][m] = res.flips[0], res.flips_8bit[0]
        arrays["linf"][m], arrays["l2"][m] = budgets, res.l2[0]
        if profile is None:
            p_img = np.full(n, p)
        else:
            p_img = np.asarray(profile.flip_ratio(budgets), np.float64).reshape(n)
        arrays["slam_p"][m] = p_img
        bce_spec = AttackSpec("bce")
        if profile is None:  # SLAM does not depend on eps: BCE and SLAM share every job
            groups = [(np.arange(n), [("bce", bce_spec), ("slam", AttackSpec("slam", {"p": p, "q": q}))])]
        else:  # one job set for BCE, and SLAM per distinct p (every image beyond eps_max shares p = 1)
            groups = [(np.arange(n), [("bce", bce_spec)])]
            groups += [(np.flatnonzero(p_img == v), [("slam", AttackSpec("slam", {"p": float(v), "q": q}))])
                       for v in np.unique(p_img)]  # fmt: skip
        out = _at_own_budget(model, x, budgets, groups, chunk, seed, progress, job)
        arrays["mifgsm_flips"][m], arrays["mifgsm_flips_8bit"][m] = out["bce"]
        arrays["slam_flips"][m], arrays["slam_flips_8bit"][m] = out["slam"]
        seconds[name] = {"attack": t1 - t0, "mifgsm_slam": time.perf_counter() - t1}
    settings = {
        "methods": list(methods),
        "preset": preset,
        "options": options,
        "slam": {"q": q, "p": None if profile is not None else p, "profile": profile is not None},
        "seed": seed,
        "num_images": n,
        "job": {k: v for k, v in job.items() if isinstance(v, (int, float, str, bool))},
    }
    name = getattr(getattr(model, "spec", None), "name", type(model).__name__)
    return RelatedComparison(model=name, methods=methods, num_labels=num_labels, seconds=seconds, settings=settings,
                             **arrays)  # fmt: skip


def _check_related_work(model, x, methods, options, preset: str, q: float, job: Mapping[str, Any]) -> None:
    """Refuse, before the first attack, a comparison whose work can pass the cap of the run it is part of
    (:func:`mlvis.errors.check_run_work`): each related attack's most steps (its ``work`` rule) and, since the
    budget each reaches is known only after it ran, MI-FGSM and SLAM at the largest L-inf budget an
    unbounded attack can reach (1, the whole pixel range). A model that does not name its labels is
    checked call by call instead (the engine counts its runners after the clean forward)."""
    labels = getattr(model, "labels", None)
    if not labels:
        return
    n, dims = int(x.shape[0]), int(x[0].numel())
    runners = [AttackSpec(m, {**({"preset": preset} if m == "ml-cw" else {}), **options.get(m, {})}) for m in methods]
    most = runner_image_steps(runners, len(labels), n, protocol=str(job.get("protocol") or "paper"))
    follow = image_steps([AttackSpec("bce"), AttackSpec("slam", {"p": 1.0, "q": q})], [1.0], n,
                         alpha=float(job.get("alpha") or DEFAULT_ALPHA), dims=dims)  # fmt: skip
    check_run_work(most + len(methods) * follow, f"at most: {', '.join(methods)} on {n} images, then MI-FGSM and "
                   "SLAM at the budget each reached (at most the whole pixel range)")  # fmt: skip


def _at_own_budget(model, x, budgets, groups, chunk, seed, progress, job) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Flips and 8-bit flips ``(N,)`` per spec key, image i attacked at ``budgets[i]`` (L-inf).

    ``groups`` is a list of ``(image indices, [(key, AttackSpec), ...])``; each group is cut into chunks and
    each chunk is ONE job (all its specs) whose eps list is the chunk's distinct budgets, read at each
    image's own budget.
    """
    n = len(budgets)
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for idx, specs in groups:
        for key, _ in specs:
            out.setdefault(key, (np.zeros(n), np.zeros(n)))
        for a in range(0, len(idx), chunk):
            sel = idx[a : a + chunk]
            eps, k_of = np.unique(budgets[sel], return_inverse=True)
            results = run_job(model, x[torch.as_tensor(sel)], [s for _, s in specs], eps, norm="linf", seed=seed,
                              progress=progress, **job)  # fmt: skip
            cols = np.arange(len(sel))
            for (key, _), res in zip(specs, results):
                out[key][0][sel] = res.flips[k_of, cols]
                out[key][1][sel] = res.flips_8bit[k_of, cols]
    return out
