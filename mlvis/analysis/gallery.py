"""Fig. 21 / appendix M: one image attacked by each method at the Table IV budgets, as data for a gallery.

:func:`gallery` runs Tables IV-VI's methods (the baseline BCE, SLAM, the random subset and CLASS at
gamma 0, 0.5 and 1; :data:`mlvis.analysis.evaluation.DEFAULT_METHODS`) on ONE image at the evaluation grid,
as :func:`mlvis.analysis.evaluation.evaluate` runs them on many: the budgets are
section VI-C's fractions of the profile's eps_max (5, 10, 20, 40, 60, 80 and 100 %), the demo-scale
counterpart of the paper's Table IV columns (eps_max is a property of the model; the paper's Q2L MS-COCO
columns, 0.006 ... 0.121, are the same fractions of its eps_max 0.121). An explicit ``eps`` list replaces
the grid (e.g. :data:`PAPER_FIG21_EPS` on a real 448 x 448 model without a profile).

Each method runs as its own job on the image (all its budgets batched), so every cell is bit for bit what
``mlvis.attack(model, image, method, eps, ...)`` returns: batching several methods into one job, as
:func:`~mlvis.analysis.evaluation.evaluate` does for speed, changes the float bits of the sign steps (on
demo-asl, SLAM's pixels by up to 0.0125 at 5 % of eps_max; never the statistics), and a figure that says
"this is what SLAM does" should show exactly that.

Every cell keeps what a reader of the figure needs: the adversarial image (float and on the 8-bit grid, the
one a saved PNG holds), the flips (equation 3, over all labels) of both, and which labels flipped up
(absent -> present) and down. Rows are budgets, columns are methods; the clean image is the gallery's own.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from typing import Any

import numpy as np

from mlvis.analysis.evaluation import DEFAULT_METHODS
from mlvis.analysis.profiles import FRACTIONS
from mlvis.attacks.engine import run_job
from mlvis.attacks.methods import get_method
from mlvis.attacks.plan import as_spec, evaluation_specs
from mlvis.errors import InvalidInput, check_number

PAPER_FIG21_EPS = (0.006, 0.012, 0.024, 0.048, 0.072, 0.096, 0.121)
"""Table IV's budgets for Query2Label MS-COCO, the ones Fig. 21 shows (section VI-C's grid of that model)."""


@dataclasses.dataclass(frozen=True)
class GalleryCell:
    """One cell: ``method`` (its row name, e.g. ``CLASS(γ=0.5)``) at budget ``eps``.

    Attributes:
        image: the adversarial image ``(3, H, W)`` float32 in [0, 1]; ``image_8bit``: it on the 8-bit grid.
        flips, flips_8bit: labels whose prediction differs from the clean one (float image, 8-bit image).
        flipped_up, flipped_down: the names of the labels the float image flipped to present / to absent.
        linf: the perturbation's L-inf norm; ``same_as_baseline``: a subset method whose subset was every
            label (the paper's ``*``: the attack is BCE's).
    """

    method: str
    eps: float
    fraction: float
    image: np.ndarray
    image_8bit: np.ndarray
    flips: int
    flips_8bit: int
    flipped_up: tuple[str, ...]
    flipped_down: tuple[str, ...]
    linf: float
    same_as_baseline: bool


@dataclasses.dataclass(frozen=True)
class Gallery:
    """Fig. 21's grid for one image: ``M`` methods x ``K`` budgets.

    Attributes:
        model: the model's name; ``labels``, ``threshold``: its label names and decision threshold.
        methods: the row names of the methods (columns of the figure), in the order given.
        eps: the budgets ``(K,)``; ``fractions``: of eps_max (NaN without a profile).
        clean: the image ``(3, H, W)`` float32; ``clean_probs``: its confidences ``(C,)``.
        adv, adv_8bit: ``(M, K, 3, H, W)`` float32 / uint8; ``adv_probs``: ``(M, K, C)`` (of the float image).
        flips, flips_8bit: ``(M, K)`` int; ``linf``: ``(M, K)``; ``same_as_baseline``: ``(M, K)`` bool.
        config: what repeats the run (seed, eps_max, the methods' options).
    """

    model: str
    labels: tuple[str, ...]
    threshold: float
    methods: tuple[str, ...]
    eps: np.ndarray
    fractions: np.ndarray
    clean: np.ndarray
    clean_probs: np.ndarray
    adv: np.ndarray
    adv_8bit: np.ndarray
    adv_probs: np.ndarray
    flips: np.ndarray
    flips_8bit: np.ndarray
    linf: np.ndarray
    same_as_baseline: np.ndarray
    config: dict = dataclasses.field(default_factory=dict)

    @property
    def clean_pred(self) -> np.ndarray:
        """``(C,)`` bool: the clean prediction."""
        return self.clean_probs >= self.threshold

    @property
    def clean_8bit(self) -> np.ndarray:
        """The clean image on the 8-bit grid ``(3, H, W)`` uint8."""
        return (np.clip(self.clean, 0, 1) * 255 + 0.5).astype(np.uint8)

    def flipped(self, m: int, k: int) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """The labels method ``m`` flipped up (absent -> present) and down at budget ``k`` (float image)."""
        after = self.adv_probs[m, k] >= self.threshold
        up = np.flatnonzero(after & ~self.clean_pred)
        down = np.flatnonzero(~after & self.clean_pred)
        return tuple(self.labels[i] for i in up), tuple(self.labels[i] for i in down)

    def cell(self, m: int, k: int) -> GalleryCell:
        """Method ``m`` (index into ``methods``) at budget ``k`` (index into ``eps``)."""
        if not (0 <= m < len(self.methods) and 0 <= k < len(self.eps)):
            raise InvalidInput(
                f"The gallery has methods 0 to {len(self.methods) - 1} and budgets 0 to {len(self.eps) - 1}, "
                f"not ({m}, {k})."
            )
        up, down = self.flipped(m, k)
        return GalleryCell(
            self.methods[m], float(self.eps[k]), float(self.fractions[k]), self.adv[m, k], self.adv_8bit[m, k],
            int(self.flips[m, k]), int(self.flips_8bit[m, k]), up, down, float(self.linf[m, k]),
            bool(self.same_as_baseline[m, k]),
        )  # fmt: skip

    def best(self) -> np.ndarray:
        """``(K,)`` the index of the method with the most flips at each budget (the first on a tie)."""
        return np.argmax(self.flips, axis=0)

    def to_frame(self):
        """Tidy: one row per budget x method with the flips (float and 8-bit) and the flipped labels."""
        import pandas as pd

        rows = []
        for k in range(len(self.eps)):
            for m in range(len(self.methods)):
                c = self.cell(m, k)
                rows.append({"eps": c.eps, "fraction": c.fraction, "method": c.method, "flips": c.flips,
                             "flips_8bit": c.flips_8bit, "flipped_up": ", ".join(c.flipped_up),
                             "flipped_down": ", ".join(c.flipped_down), "linf": c.linf,
                             "same_as_baseline": c.same_as_baseline})  # fmt: skip
        return pd.DataFrame(rows)

    def to_dict(self) -> dict:
        """Plain values (no pixels) for the JSON export: the flips and the flipped labels of every cell."""
        return {
            "model": self.model,
            "labels": list(self.labels),
            "threshold": self.threshold,
            "methods": list(self.methods),
            "eps": self.eps.tolist(),
            "fractions": [None if np.isnan(f) else float(f) for f in self.fractions],
            "clean_confidence": self.clean_probs.tolist(),
            "clean_present": [self.labels[i] for i in np.flatnonzero(self.clean_pred)],
            "flips": self.flips.tolist(),
            "flips_8bit": self.flips_8bit.tolist(),
            "linf": self.linf.tolist(),
            "same_as_baseline": self.same_as_baseline.tolist(),
            "adv_confidence": self.adv_probs.tolist(),
            "cells": [
                [{"method": c.method, "eps": c.eps, "flips": c.flips, "flips_8bit": c.flips_8bit,
                  "flipped_up": list(c.flipped_up), "flipped_down": list(c.flipped_down)}
                 for c in (self.cell(m, k) for m in range(len(self.methods)))]
                for k in range(len(self.eps))
            ],  # fmt: skip
            "config": self.config,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict())


def gallery_budgets(
    profile: Any = None, eps_fractions: Sequence[float] = FRACTIONS, eps: Sequence[float] | None = None
):
    """``(eps, fractions)``: the explicit ``eps`` (fractions of the profile's eps_max when there is one, else
    NaN), or ``eps_fractions`` of eps_max (section VI-C's grid; Table IV's columns)."""
    if eps is not None:
        listed = [eps] if np.ndim(eps) == 0 else list(eps)
        if not listed:
            raise InvalidInput("Give at least one budget.")
        budgets = np.asarray([check_number("each eps", e, 0, 1, above=True) for e in listed], np.float64)
        fr = budgets / profile.eps_max if profile is not None else np.full(len(budgets), np.nan)
        return budgets, fr
    if profile is None:
        raise InvalidInput(
            "The Table IV budgets are fractions of the model's eps_max: give its flip profile (mlvis.profile) "
            "or explicit budgets (eps=...)."
        )
    listed = [eps_fractions] if np.ndim(eps_fractions) == 0 else list(eps_fractions)
    if not listed:
        raise InvalidInput("Give at least one fraction of eps_max.")
    fr = np.asarray([check_number("each eps fraction", f, 0, 1, above=True) for f in listed], np.float64)
    return fr * float(profile.eps_max), fr


def gallery(
    model,
    image,
    methods: Sequence[Any] = DEFAULT_METHODS,
    eps_fractions: Sequence[float] = FRACTIONS,
    *,
    eps: Sequence[float] | None = None,
    profile=None,
    correlations=None,
    seed: int = 0,
    progress=None,
    **job,
) -> Gallery:
    """Fig. 21 for ``image``: every method at every budget (one engine job per method, its budgets batched).

    Args:
        model: a ``MultiLabelModel`` in eval mode.
        image: one image ``(3, H, W)`` (or ``(1, 3, H, W)``) in [0, 1].
        methods: names, ``(name, options)`` or specs (default: Tables IV-VI's rows).
        eps_fractions: fractions of the profile's eps_max (default: section VI-C's grid).
        eps: explicit L-inf budgets instead of the grid.
        profile, correlations: the model's; default to its shipped or cached ones where a method reads them.
        seed: the random subset's seed (each method's draws are its own, as in :func:`mlvis.attack`).
        progress: ``progress(done, total)`` in image-steps; ``job``: further options of :func:`run_job`.

    Returns:
        A :class:`Gallery`; each cell equals ``mlvis.attack(model, image, method, eps, ...)`` for that method.
    """
    import torch

    from mlvis.analysis.correlation_matrices import correlations as get_correlations
    from mlvis.analysis.profiles import profile as get_profile
    from mlvis.attacks.plan import needs

    x = torch.as_tensor(image)
    if x.dim() == 3:
        x = x.unsqueeze(0)
    if x.dim() != 4 or x.shape[0] != 1:
        raise InvalidInput(f"The gallery attacks one image (3, H, W), not shape {tuple(x.shape)}.")
    if isinstance(methods, (str, bytes)) or not isinstance(methods, (list, tuple)) or not methods:
        raise InvalidInput(f"methods must be a non-empty list of method names or (name, options), not {methods!r}.")
    if profile is None and (eps is None or needs(methods, "profile")):
        profile = get_profile(model)
    if correlations is None and needs(methods, "correlations"):
        correlations = get_correlations(model, direction="up")
    budgets, fr = gallery_budgets(profile, eps_fractions, eps)
    specs = evaluation_specs(methods, profile, correlations)
    results = []
    for i, spec in enumerate(specs):  # one job per method: each cell is bit for bit mlvis.attack's (see above)
        step = None if progress is None else _Share(progress, i, len(specs))
        results.extend(run_job(model, x, [spec], budgets, seed=seed, progress=step, **job))
    first = results[0]
    same = np.zeros((len(specs), len(budgets)), bool)
    for i, r in enumerate(results):
        if r.targets is not None and get_method(specs[i].method).subset:
            same[i] = (r.targets[:, 0] > 0).all(-1)
    return Gallery(
        model=getattr(getattr(model, "spec", None), "name", type(model).__name__),
        labels=tuple(first.labels),
        threshold=float(first.threshold),
        methods=tuple(str(s.name) for s in specs),
        eps=budgets,
        fractions=fr,
        clean=np.asarray(first.clean[0], np.float32),
        clean_probs=np.asarray(first.clean_probs[0], np.float64),
        adv=np.stack([r.adv[:, 0] for r in results]),
        adv_8bit=np.stack([r.adv_8bit[:, 0] for r in results]),
        adv_probs=np.stack([r.adv_probs[:, 0] for r in results]).astype(np.float64),
        flips=np.stack([r.flips[:, 0] for r in results]).astype(np.int64),
        flips_8bit=np.stack([r.flips_8bit[:, 0] for r in results]).astype(np.int64),
        linf=np.stack([r.linf[:, 0] for r in results]).astype(np.float64),
        same_as_baseline=same,
        config={
            "seed": int(seed),
            "eps_max": getattr(profile, "eps_max", None),
            "methods": [{"method": as_spec(m).method, "options": _plain(as_spec(m).options)} for m in methods],
        },
    )


class _Share:
    """Job ``i`` of ``n``'s ``progress(done, total)`` as a share of the whole gallery (per mille steps)."""

    def __init__(self, progress, i: int, n: int):
        self.progress, self.i, self.n = progress, i, n

    def __call__(self, done: int, total: int, *_info) -> None:
        frac = min(max(done / total, 0.0), 1.0) if total > 0 else 1.0
        self.progress(int(round(1000 * (self.i + frac))), 1000 * self.n)


def _plain(options) -> dict:
    return {k: v for k, v in dict(options).items() if isinstance(v, (int, float, str, bool))}
