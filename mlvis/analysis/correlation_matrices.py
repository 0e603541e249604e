"""The correlation matrices of Algorithm 1 (section IV-B) and per-label attackability (section IV-A, Fig. 4).

Each label is attacked alone (BCE, weight one-hot, target 1 to flip up or 0 to flip down) on every
one of ``n`` images at a small eps; row ``a`` of the matrix is the mean change of every label's
confidence when label ``a`` is attacked. All ``C * n`` single-label attacks run as one batched job
of the engine (images repeated per label), never a Python loop per label or image.

The same attacks give each label's *attackability*: the fraction of the images on which attacking
it alone flipped it, among the images where it could flip in that direction (predicted absent for a
flip-up, present for a flip-down), and its mean clean confidence on those images (Table II).
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

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


def correlations(
    model,
    images=None,
    eps: float = 0.005,
    direction: str = "up",
    *,
    alpha: float | None = None,
    cache: bool = True,
    progress=None,
    max_batch: int | None = None,
    autocast: bool = False,
) -> CorrelationMatrix:
    """The flip-up (or flip-down) correlation matrix of ``model`` over ``images`` (Algorithm 1).

    Without ``images``: the shipped or cached matrix of these weights in that direction, or a clear
    error saying there is none. ``autocast``: bf16 autocast of the attacks' gradient passes (the cache key
    then says so; the confidences are read in full precision).

    Example:
        >>> up = mlvis.correlations(model, images, eps=0.005, direction="up")
        >>> up.matrix.shape, up.attackability[:3]
    """
    from mlvis.analysis import artifacts
    from mlvis.attacks.geometry import DEFAULT_ALPHA
    from mlvis.attacks.model_helpers import check_images

    if not isinstance(direction, str) or direction not in ("up", "down"):
        raise InvalidInput(f"direction must be 'up' or 'down', not {direction!r}.")
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
    clean, adv, labels, thr = single_label_attacks(model, x, eps, direction, alpha, progress, max_batch, autocast)
    cm = correlation_matrix(name, labels, direction, eps, alpha, clean, adv, thr)
    if cache:
        from mlvis.analysis.profiles import images_sha

        settings = {"eps": eps, "alpha": alpha, "images": cm.images, "images_sha": images_sha(x)}
        if autocast:
            settings["autocast"] = True
        artifacts.save(kind, model, settings, {"correlations": cm.to_dict()})
    return cm


def single_label_attacks(
    model, x, eps: float, direction: str, alpha: float, progress=None, max_batch=None, autocast: bool = False
):
    """Every label attacked alone on every image of ``x`` (one engine job): ``(clean, adv, labels, threshold)``
    with ``clean`` / ``adv`` ``(C, n, C)``: every label's confidence on image i before and after attacking
    label a (row ``a * n + i`` of the job)."""
    import torch

    from mlvis.attacks.engine import AttackSpec, run_job
    from mlvis.attacks.model_helpers import model_device, work_dtype

    n = x.shape[0]
    with torch.no_grad():
        c = int(model(x[:1].to(model_device(model), work_dtype(model))).shape[1])
    # row r = (label r // n, image r % n): every label attacked alone on every image, one job
    rep = x.repeat(c, 1, 1, 1)
    attacked = np.repeat(np.arange(c), n)
    spec = AttackSpec("single-label", {"labels": attacked, "direction": direction})
    (res,) = run_job(model, rep, [spec], eps, alpha=alpha, progress=progress, max_batch=max_batch or None,
                     autocast=autocast)  # fmt: skip
    return res.clean_probs.reshape(c, n, c), res.adv_probs[0].reshape(c, n, c), tuple(res.labels), res.threshold


def correlation_matrix(
    name: str, labels, direction: str, eps: float, alpha: float, clean: np.ndarray, adv: np.ndarray, thr: float
) -> CorrelationMatrix:
    """The matrix, attackabilities and cost of the single-label attacks' confidences ``clean`` / ``adv``
    ``(C, n, C)`` (:func:`single_label_attacks`; a run directory concatenates its chunks' along ``n``)."""
    from mlvis.attacks.geometry import n_steps

    c, n = clean.shape[0], clean.shape[1]
    matrix = (adv - clean).mean(1)
    idx = np.arange(c)
    own_clean = clean[idx, :, idx]  # (C, n): label a's clean confidence on each image
    own_adv = adv[idx, :, idx]
    eligible = own_clean < thr if direction == "up" else own_clean >= thr
    flipped = (own_adv >= thr) != (own_clean >= thr)
    count = eligible.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        attackability = np.where(count > 0, (flipped & eligible).sum(1) / count, np.nan)
        confidence = np.where(count > 0, (own_clean * eligible).sum(1) / count, np.nan)
    steps = n_steps(eps, alpha)
    cost = {
        # passes per row as run: clean fp, steps x (fp + bp), the final and the 8-bit evaluation fp
        "forward": c * n * (steps + 3),
        "backward": c * n * steps,
        "equation_9": equation_9(eps, alpha, c, n),
    }
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
    )
