"""The correlation matrices of Algorithm 1 (section IV-B) and per-label attackability (section IV-A, Fig. 4).

Each label is attacked alone (BCE, weight one-hot, target 1 to flip up or 0 to flip down) on every
one of ``n`` images at a small eps; row ``a`` of the matrix is the mean change of every label's
confidence when label ``a`` is attacked. All ``C * n`` single-label attacks run as one batched job
of the engine (images repeated per label), never a Python loop per label or image.

The same attacks give each label's *attackability*: the fraction of the images on which attacking
it alone flipped it, among the images where it could flip in that direction (predicted absent for a
flip-up, present for a flip-down), and its mean clean confidence on those images (Table II).

**Flip-down uses only the images where the label is present** (predicted present on the clean image):
attacking a label down where it is already absent measures nothing but noise around 0. The authors'
flip-down script meant exactly this (it loads, per attacked label, only images with that label; the script
is broken as written); ``present_only=False`` averages over every image as mlvis did before. Flip-up
averages over every image (as the authors' flip-up script does).

**The budget** (section IV-B: eps is picked per model "such that the attacked label approaches its target").
``eps="approach"`` picks it by :func:`approach_budget`: the smallest eps of :data:`BUDGET_GRID` at which the
attacked label's mean confidence moves at least half-way (``APPROACH``) from its clean mean to the threshold,
for the median label, measured on a held-out set of images (only the images where the label can flip in
that direction). A fixed eps (0.005 by default, the authors' flip-up script) stays available.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from mlvis.errors import InvalidInput, check_number


@dataclasses.dataclass(frozen=True)
class CorrelationMatrix:
    """The flip-up or flip-down correlation matrix of a model, with the attackabilities.

    Attributes:
        matrix: (C, C) mean confidence change of label j (column) when label i (row) is attacked.
        direction: "up" (target 1) or "down" (target 0).
        eps, alpha: the attack budget and step; ``images``: n.
        attackability: (C,) flip ratio of each label attacked alone, over the images where it could
            flip in this direction (nan where there were none); ``eligible``: (C,) those images' count.
        confidence: (C,) mean clean confidence of each label over those images.
        cost: passes per image as run and equation 9's count.
    """

    model: str
    labels: tuple[str, ...]
    direction: str
    eps: float
    alpha: float
    images: int
    matrix: np.ndarray
    attackability: np.ndarray
    eligible: np.ndarray
    confidence: np.ndarray
    cost: dict = dataclasses.field(default_factory=dict)
    budget: dict = dataclasses.field(default_factory=dict, repr=False)  # (a fixed-eps matrix's repr as before)
    """How eps was chosen: ``{}`` for a fixed eps, else :meth:`BudgetRule.to_dict` (the rule and its curve);
    ``"images": "present"`` marks a flip-down matrix averaged over the images with the label only."""

    @property
    def num_labels(self) -> int:
        return self.matrix.shape[0]

    def normalised(self) -> np.ndarray:
        """Min-max normalised off the diagonal (diagonal 0), as CLASS uses it."""
        from mlvis.attacks.class_subset import normalise_correlations

        return normalise_correlations(self.matrix)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["labels"] = list(self.labels)
        d["matrix"] = np.asarray(self.matrix).tolist()
        for k in ("attackability", "eligible", "confidence"):  # JSON has no NaN: None stands for it
            d[k] = [None if isinstance(v, float) and math.isnan(v) else v for v in np.asarray(d[k]).tolist()]
        if not self.budget:  # a fixed eps over every image: the dict (and its files) as before the budget rule
            del d["budget"]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> CorrelationMatrix:
        try:
            m = cls(
                model=str(d["model"]),
                labels=tuple(d["labels"]),
                direction=str(d["direction"]),
                eps=float(d["eps"]),
                alpha=float(d["alpha"]),
                images=int(d["images"]),
                matrix=np.asarray(d["matrix"], np.float64),
                attackability=np.asarray([np.nan if v is None else v for v in d["attackability"]], np.float64),
                eligible=np.asarray(d["eligible"], np.int64),
                confidence=np.asarray([np.nan if v is None else v for v in d["confidence"]], np.float64),
                cost=dict(d.get("cost", {})),
                budget=dict(d.get("budget") or {}),  # absent in matrices written before the budget rule
            )
        except (KeyError, TypeError, ValueError) as e:
            raise InvalidInput(f"not a correlation matrix: {e}") from None
        c = len(m.labels)
        if m.matrix.shape != (c, c) or m.direction not in ("up", "down"):
            raise InvalidInput("not a correlation matrix: its shape or direction is wrong")
        return m

    def save(self, path: str | Path) -> None:
        from mlvis.store import atomic_write_text

        atomic_write_text(Path(path), json.dumps(self.to_dict(), indent=1) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> CorrelationMatrix:
        return cls.from_dict(json.loads(Path(path).read_text()))


def equation_9(eps: float, alpha: float, num_labels: int, images: int) -> dict:
    """Appendix F's cost of one matrix: (fp + bp) * eps / alpha * C * n, as counts of passes."""
    from mlvis.attacks.geometry import n_steps

    n = n_steps(eps, alpha) * num_labels * images
    return {"forward": n, "backward": n}


BUDGET_GRID = (0.0025, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.04, 0.05, 0.075, 0.1)
"""The budgets :func:`approach_budget` tries, ascending (0.005 is the fixed default)."""
APPROACH = 0.5
"""How far the attacked label's mean confidence must move from its clean mean to the threshold."""


@dataclasses.dataclass(frozen=True)
class BudgetRule:
    """The outcome of :func:`approach_budget`: the chosen ``eps`` and the curve it was read from.

    Attributes:
        eps: the smallest budget of ``grid`` whose median ``progress`` reached ``fraction`` (the largest
            tried when none did; then ``reached`` is False).
        grid: the budgets tried (up to ``eps``: the search stops there).
        progress: (len(grid), C) per label, the mean move of its confidence towards the threshold over its
            clean mean gap (1 = the mean confidence reached the threshold; nan where no image could flip).
        median: (len(grid),) the median over labels of ``progress``.
    """

    direction: str
    eps: float
    fraction: float
    grid: tuple[float, ...]
    progress: np.ndarray
    median: np.ndarray
    reached: bool
    images: int
    images_sha: str = ""

    def to_dict(self) -> dict:
        return {
            "rule": "approach",
            "direction": self.direction,
            "eps": self.eps,
            "fraction": self.fraction,
            "grid": list(self.grid),
            "median": [None if math.isnan(v) else float(v) for v in self.median],
            "reached": self.reached,
            "held_out_images": self.images,
            "held_out_sha": self.images_sha,
        }


def approach_budget(
    model,
    images,
    direction: str = "up",
    *,
    grid=BUDGET_GRID,
    fraction: float = APPROACH,
    alpha: float | None = None,
    max_batch: int | None = None,
    progress=None,
) -> BudgetRule:
    """Section IV-B's budget: the smallest eps of ``grid`` at which the attacked label "approaches its target".

    Every label is attacked alone (Algorithm 1's attack) on each of the held-out ``images`` where it can
    flip in ``direction`` (predicted absent for "up", present for "down"). For label a at budget eps,
    ``progress_a = mean(|y_adv - y_clean|) / mean(|tau - y_clean|)`` over those images (the signed move
    towards the threshold tau); the rule picks the first eps whose median over labels reaches ``fraction``.
    All single-label attacks run side by side as one lockstep job (a single-label BCE attack at a smaller
    eps is the prefix of the one at a larger eps), stopping at the first budget that satisfies the rule.
    """
    import torch

    from mlvis.analysis.profiles import images_sha
    from mlvis.attacks.geometry import DEFAULT_ALPHA, n_steps
    from mlvis.attacks.loop import StepHook, run_lockstep
    from mlvis.attacks.methods import LoopPlan, MethodContext, get_method
    from mlvis.attacks.model_helpers import CPU_MAX_BATCH, check_images, model_device, threshold, work_dtype
    from mlvis.attacks.rows import RowTable

    if not isinstance(direction, str) or direction not in ("up", "down"):
        raise InvalidInput(f"direction must be 'up' or 'down', not {direction!r}.")
    check_number("fraction", fraction, 0, 1, above=True)
    grid = tuple(sorted(float(check_number("each budget of the grid", e, 0, 1, above=True)) for e in grid))
    if not grid:
        raise InvalidInput("The budget grid needs at least one eps.")
    alpha = DEFAULT_ALPHA if alpha is None else float(check_number("alpha", alpha, 0, 1, above=True))
    x0 = check_images(images)
    dev, dtype = model_device(model), work_dtype(model)
    x0 = x0.to(dev, dtype)
    thr = threshold(model)
    with torch.no_grad():
        clean_logits = model(x0).float()
    clean = torch.sigmoid(clean_logits).double().cpu().numpy()
    n, c = clean.shape
    eligible = clean < thr if direction == "up" else clean >= thr
    img_idx, lab_idx = np.nonzero(eligible)
    if not len(img_idx):
        raise InvalidInput(f"No held-out image has a label that could flip {direction}; give other images.")
    steps = [n_steps(e, alpha) for e in grid]
    r = len(img_idx)
    x = x0.index_select(0, torch.as_tensor(img_idx, device=dev))
    cl = clean_logits.index_select(0, torch.as_tensor(img_idx, device=dev))
    cp = torch.sigmoid(cl)
    ctx = MethodContext(
        model=model, images=x, clean_logits=cl, clean_probs=cp, clean_pred=cp >= thr, target=(cp < thr).to(dtype),
        eps=np.array([np.inf]), alpha=alpha, norm="linf", threshold=thr, labels=tuple(str(i) for i in range(c)),
        generator=torch.Generator(), device=dev,
    )  # fmt: skip
    plan = get_method("single-label").fn(ctx, labels=lab_idx, direction=direction)
    assert isinstance(plan, LoopPlan)
    table = RowTable(r, c, 1, dev, dtype)
    table.add(0, plan, ctx, alpha, "linf", int(x[0].numel()), steps=max(steps))
    batch = int(max_batch) if max_batch else (CPU_MAX_BATCH if dev.type == "cpu" else r)
    parts = [np.arange(a, min(r, a + batch)) for a in range(0, r, batch)]
    own_clean = clean[img_idx, lab_idx]
    sign = 1.0 if direction == "up" else -1.0
    gap = np.bincount(lab_idx, sign * (thr - own_clean), c)
    count = np.bincount(lab_idx, minlength=c)
    own_now = np.zeros(r)
    rows_seen = {"k": -1, "n": 0}
    curve: list[np.ndarray] = []
    lab_t = torch.as_tensor(lab_idx, device=dev)

    def record(k: int, rows: np.ndarray, logits: torch.Tensor) -> None:
        if k not in steps:
            return
        own = torch.sigmoid(logits.float()).gather(1, lab_t[rows].view(-1, 1)).view(-1)
        own_now[rows] = own.double().cpu().numpy()
        rows_seen["k"], rows_seen["n"] = k, rows_seen["n"] + len(rows) if rows_seen["k"] == k else len(rows)

    def stop(k: int) -> bool:
        done = rows_seen["k"] == k and rows_seen["n"] == r
        if not done:
            return False
        move = np.bincount(lab_idx, sign * (own_now - own_clean), c)
        with np.errstate(invalid="ignore", divide="ignore"):
            curve.append(np.where((count > 0) & (gap > 0), move / gap, np.nan))
        if progress is not None:
            progress(len(curve), len(grid))
        return bool(np.nanmedian(curve[-1]) >= fraction)

    run_lockstep(model, x, table, parts, StepHook(1, record, stop), fmt=torch.contiguous_format)
    prog = np.stack(curve)
    median = np.nanmedian(prog, axis=1)
    reached = bool(median[-1] >= fraction)
    return BudgetRule(direction, grid[len(curve) - 1], float(fraction), grid[: len(curve)], prog, median, reached,
                      n, images_sha(images))  # fmt: skip


def correlations(
    model,
    images=None,
    eps: float | str = 0.005,
    direction: str = "up",
    *,
    alpha: float | None = None,
    cache: bool = True,
    progress=None,
    max_batch: int | None = None,
    held_out=None,
    present_only: bool = True,
    autocast: bool = False,
) -> CorrelationMatrix:
    """The flip-up (or flip-down) correlation matrix of ``model`` over ``images`` (Algorithm 1).

    Without ``images``: the shipped or cached matrix of these weights in that direction, or a clear
    error saying there is none. ``autocast``: bf16 autocast of the attacks' gradient passes (the cache key
    then says so; the confidences are read in full precision).

    Args:
        eps: the budget of every single-label attack, or ``"approach"``: section IV-B's rule, measured on the
            ``held_out`` images (:func:`approach_budget`; the flip-up rule's eps serves both directions).
        present_only: flip-down over the images where the attacked label is present (the default; see the
            module docstring), or over every image (``False``, mlvis before the budget rule).

    Example:
        >>> up = mlvis.correlations(model, images, eps=0.005, direction="up")
        >>> up.matrix.shape, up.attackability[:3]
        >>> rule = mlvis.correlations(model, images, eps="approach", held_out=other_images)
    """
    from mlvis.analysis import artifacts
    from mlvis.attacks.geometry import DEFAULT_ALPHA
    from mlvis.attacks.model_helpers import check_images

    if not isinstance(direction, str) or direction not in ("up", "down"):
        raise InvalidInput(f"direction must be 'up' or 'down', not {direction!r}.")
    rule: BudgetRule | None = None
    if isinstance(eps, str):
        if eps != "approach":
            raise InvalidInput(f"eps must be a number or 'approach' (section IV-B's rule), not {eps!r}.")
        if images is not None:
            if held_out is None:
                raise InvalidInput("eps='approach' measures the budget on held-out images: give held_out=...")
            rule = approach_budget(model, held_out, "up", alpha=alpha, max_batch=max_batch)
            eps = rule.eps
        else:
            eps = 1.0  # only looked up below
    check_number("eps", eps, 0, 1e6, above=True)
    alpha = DEFAULT_ALPHA if alpha is None else float(check_number("alpha", alpha, 0, 1, above=True))
    name = getattr(getattr(model, "spec", None), "name", type(model).__name__)
    kind = f"correlations-{direction}"
    if images is None:
        doc = artifacts.find(kind, model)
        if doc is None:
            raise InvalidInput(
                f"No flip-{direction} correlation matrix of {name!r} is shipped or cached for these weights. "
                f"Compute one with mlvis.correlations(model, images) or `mlvis correlations --model {name}`."
            )
        return CorrelationMatrix.from_dict(doc["correlations"])
    eps = float(eps)
    if not (math.isfinite(eps) and eps > 0):
        raise InvalidInput(f"eps must be a positive number, not {eps!r}.")
    x = check_images(images)
    subset = direction == "down" and bool(present_only)
    cache = bool(cache) and artifacts.cache_writable("correlation matrix")  # said before the attacks
    clean, adv, labels, thr = single_label_attacks(model, x, eps, direction, alpha, progress, max_batch, autocast,
                                                   present_only=subset)  # fmt: skip
    budget = rule.to_dict() if rule is not None else None
    cm = correlation_matrix(name, labels, direction, eps, alpha, clean, adv, thr, present_only=subset, budget=budget)
    if cache:
        from mlvis.analysis.profiles import images_sha

        settings: dict[str, Any] = {"eps": eps, "alpha": alpha, "images": cm.images, "images_sha": images_sha(x)}
        if autocast:
            settings["autocast"] = True
        settings |= {"budget": "approach", "held_out_sha": cm.budget["held_out_sha"]} if rule is not None else {}
        settings |= {"down_images": "present"} if subset else {}
        artifacts.save(kind, model, settings, {"correlations": cm.to_dict()})
    return cm


def attacked_pairs(model, x, present_only: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """The (label, image) pairs :func:`single_label_attacks` attacks: ``(clean, pick)`` with ``pick`` ``(C, n)``
    True where label a is attacked alone on image i (row ``a * n + i`` of its job).

    Every label on every image (flip-up, or flip-down over every image); with ``present_only`` (flip-down) a
    label only on the images where it is predicted present. ``clean``: the clean confidences ``(n, C)`` of every
    image with ``present_only``, else of the first image only (one no-grad forward, enough to count C)."""
    import torch

    from mlvis.attacks.model_helpers import model_device, threshold, work_dtype

    n = x.shape[0]
    with torch.no_grad():  # the clean confidences of every image, or (every image attacked) of one to count C
        logits = model(x[: n if present_only else 1].to(model_device(model), work_dtype(model))).float()
    clean = torch.sigmoid(logits).double().cpu().numpy()
    c = int(clean.shape[1])
    pick = clean.T >= threshold(model) if present_only else np.ones((c, n), bool)
    return clean, pick


def correlation_image_steps(
    model, images, eps: float, direction: str = "up", *, alpha: float | None = None, present_only: bool = True
) -> int:
    """The image-steps (forward + backward of one image) :func:`correlations` runs for one matrix, exactly:
    the engine's dry run of the pairs it attacks (:func:`attacked_pairs`, read by the job itself), so the
    count and the job cannot drift apart. Flip-up attacks every label on every image (C x n x floor(eps /
    alpha), equation 9's count); flip-down, with ``present_only`` (the default), a label only on the images
    where it is predicted present, which one clean no-grad forward of ``images`` finds (n forwards, none of
    the cost counted here). Equation 9 (:func:`equation_9`) is the flip-down count's upper bound."""
    from mlvis.attacks.geometry import DEFAULT_ALPHA
    from mlvis.attacks.model_helpers import check_images
    from mlvis.attacks.plan import image_steps

    if not isinstance(direction, str) or direction not in ("up", "down"):
        raise InvalidInput(f"direction must be 'up' or 'down', not {direction!r}.")
    check_number("eps", eps, 0, 1e6, above=True)
    alpha = DEFAULT_ALPHA if alpha is None else float(check_number("alpha", alpha, 0, 1, above=True))
    x = check_images(images)
    _, pick = attacked_pairs(model, x, direction == "down" and bool(present_only))
    dims = int(x[0].numel())
    return image_steps(["single-label"], [float(eps)], int(pick.sum()), alpha=alpha, dims=dims)


def single_label_attacks(
    model,
    x,
    eps: float,
    direction: str,
    alpha: float,
    progress=None,
    max_batch=None,
    autocast: bool = False,
    present_only: bool = False,
):
    """Every label attacked alone on every image of ``x`` (one engine job): ``(clean, adv, labels, threshold)``
    with ``clean`` / ``adv`` ``(C, n, C)``: every label's confidence on image i before and after attacking
    label a (row ``a * n + i`` of the job).

    ``present_only`` (flip-down): label a is attacked only on the images where it is predicted present; on the
    others ``clean`` and ``adv`` both hold the image's clean confidences (nothing was attacked there), so
    :func:`correlation_matrix` with ``present_only`` finds the attacked rows again (label a present)."""
    import torch

    from mlvis.attacks.engine import AttackSpec, run_job

    n = x.shape[0]
    clean_x, pick = attacked_pairs(model, x, present_only)
    c = int(clean_x.shape[1])
    attacked, img = np.nonzero(pick)
    if not len(attacked):
        raise InvalidInput("No image has any label present, so there is nothing to attack down.")
    rep = x[torch.as_tensor(img)]
    spec = AttackSpec("single-label", {"labels": attacked, "direction": direction})
    (res,) = run_job(model, rep, [spec], eps, alpha=alpha, progress=progress, max_batch=max_batch or None,
                     autocast=autocast)  # fmt: skip
    if not present_only:
        return res.clean_probs.reshape(c, n, c), res.adv_probs[0].reshape(c, n, c), tuple(res.labels), res.threshold
    clean = np.broadcast_to(clean_x.astype(res.clean_probs.dtype), (c, n, c)).copy()
    clean[attacked, img] = res.clean_probs
    adv = clean.copy()
    adv[attacked, img] = res.adv_probs[0]
    return clean, adv, tuple(res.labels), res.threshold


def correlation_matrix(
    name: str,
    labels,
    direction: str,
    eps: float,
    alpha: float,
    clean: np.ndarray,
    adv: np.ndarray,
    thr: float,
    present_only: bool = False,
    budget: dict | None = None,
) -> CorrelationMatrix:
    """The matrix, attackabilities and cost of the single-label attacks' confidences ``clean`` / ``adv``
    ``(C, n, C)`` (:func:`single_label_attacks`; a run directory concatenates its chunks' along ``n``).

    ``present_only`` (flip-down): each row is the mean over the images where its label is present (the rows
    :func:`single_label_attacks` attacked with ``present_only``); ``budget``: the budget rule's record."""
    from mlvis.attacks.geometry import n_steps

    c, n = clean.shape[0], clean.shape[1]
    idx = np.arange(c)
    own_clean = clean[idx, :, idx]  # (C, n): label a's clean confidence on each image
    own_adv = adv[idx, :, idx]
    subset = direction == "down" and bool(present_only)
    if not subset:  # every image: (C, n, C) as Algorithm 1 lays it out
        matrix = (adv - clean).mean(1)
        eligible = own_clean < thr if direction == "up" else own_clean >= thr
        rows = c * n
    else:  # flip-down over the images where the label is present: a mean over each label's own rows
        pick = own_clean >= thr
        attacked, img = np.nonzero(pick)
        delta = (adv[attacked, img] - clean[attacked, img]).astype(np.float64)  # (R, C)
        rows_per = np.bincount(attacked, minlength=c)
        matrix = np.zeros((c, c))
        np.add.at(matrix, attacked, delta)
        matrix = np.divide(matrix, rows_per[:, None], out=np.zeros_like(matrix), where=rows_per[:, None] > 0)
        eligible = pick
        rows = int(len(attacked))
    flipped = (own_adv >= thr) != (own_clean >= thr)
    count = eligible.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        attackability = np.where(count > 0, (flipped & eligible).sum(1) / count, np.nan)
        confidence = np.where(count > 0, (own_clean * eligible).sum(1) / count, np.nan)
    steps = n_steps(eps, alpha)
    cost = {
        # passes per row as run: clean fp, steps x (fp + bp), the final and the 8-bit evaluation fp
        "forward": rows * (steps + 3),
        "backward": rows * steps,
        "equation_9": equation_9(eps, alpha, c, n),
    }
    record = dict(budget or {})
    if subset:
        record["images"] = "present"
    return CorrelationMatrix(
        model=name,
        labels=tuple(labels),
        direction=direction,
        eps=float(eps),
        alpha=float(alpha),
        images=int(n),
        matrix=matrix,
        attackability=attackability,
        eligible=count.astype(np.int64),
        confidence=confidence,
        cost=cost,
        budget=record,
    )


APPROACH_DIR = "approach"
"""The folder of ``mlvis/models/weights/`` holding the demo models' matrices made with the budget rule."""


def approach_matrix(model, direction: str = "up") -> CorrelationMatrix:
    """A demo model's matrix made with section IV-B's budget rule (``eps="approach"``, flip-down over the images
    where the label is present), shipped in ``mlvis/models/weights/approach/`` beside the default
    fixed-budget matrices (eps 0.005, flip-down over every image) that CLASS reads.

    Raises:
        ValueError: with a sentence when there is none for this model (or it belongs to other weights).
    """
    from mlvis.analysis import artifacts
    from mlvis.models.demo import WEIGHTS_DIR
    from mlvis.store import model_fingerprint

    if not isinstance(direction, str) or direction not in ("up", "down"):
        raise InvalidInput(f"direction must be 'up' or 'down', not {direction!r}.")
    name = getattr(getattr(model, "spec", None), "name", type(model).__name__)
    path = WEIGHTS_DIR / APPROACH_DIR / f"{name}.correlations-{direction}.json"
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise InvalidInput(f"No flip-{direction} matrix made with the budget rule is shipped for {name!r}.") from None
    if not isinstance(doc, dict) or doc.get("fingerprint") != model_fingerprint(model):
        raise InvalidInput(f"The budget rule's matrix of {name!r} belongs to other weights.")
    if doc.get("checksum") != artifacts.checksum(doc):
        raise InvalidInput(f"The budget rule's matrix of {name!r} is damaged (its checksum does not match).")
    return CorrelationMatrix.from_dict(doc["correlations"])
