"""Flip profiles (paper section V-C, appendix L): the expected number of flips E(eps) of a model.

The probe attacks (unbounded MI-FGSM with BCE and with the linear loss, mean flips over the
probe images recorded every ``interval`` steps) produce two curves; this module turns them into
a :class:`FlipProfile`: the convergence point eps_max, the pointwise maximum of the two curves
(a lower bound on what is achievable), and a least-squares polynomial through it.

Convergence rule (the paper: "a derivative less than 1 % of the derivative in the origin"): the
gain of an interval is the increase of the mean flips over it; the curve has converged at the
first interval that starts a run of ``patience`` consecutive intervals whose gains are all below
``rel`` times the first interval's gain. A single flat interval is not enough: with 100 probe
images the mean moves in steps of 0.01, so one flat block is noise (appendix L says the paper
itself needed a larger interval for one model for this reason).
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np


def convergence_index(flips: np.ndarray, rel: float = 0.01, patience: int = 3) -> int | None:
    """Index into ``flips`` (measured at steps 0, i, 2i, ...) where the curve has converged.

    ``flips[0]`` is the value before the attack (0 by definition of a flip). Returns ``None``
    while the curve is still rising.
    """
    flips = np.asarray(flips, np.float64)
    if flips.ndim != 1 or len(flips) < 2:
        raise ValueError("need a 1-D curve with at least two points")
    gains = np.diff(flips)
    first = gains[0]
    if first <= 0:  # nothing moved in the first interval: the curve is flat from the origin
        return 0
    flat = gains < rel * first
    for k in range(len(flat) - patience + 1):
        if flat[k : k + patience].all():
            return k
    return None


@dataclasses.dataclass(frozen=True)
class FlipProfile:
    """E(eps) for one model, with the measurements it was fitted to.

    Attributes:
        model: model name; ``labels``: number of labels C.
        eps: (M,) budgets of the measured points (steps x alpha).
        flips_bce, flips_linear: (M,) mean flips of the two probe attacks at those budgets.
        coefficients: polynomial coefficients, lowest power first, of E in eps.
        degree: the polynomial's degree (4 by default, 3 selectable).
        eps_max: the budget where the flips converge.
        cost: measured forward and backward passes of the probes (equation 19), per image.
        settings: what the probe used (alpha, interval, images, rule), to reproduce it.
    """

    model: str
    labels: int
    eps: np.ndarray
    flips_bce: np.ndarray
    flips_linear: np.ndarray
    coefficients: np.ndarray
    degree: int
    eps_max: float
    cost: dict = dataclasses.field(default_factory=dict)
    settings: dict = dataclasses.field(default_factory=dict)

    @property
    def points(self) -> np.ndarray:
        """E's measured points: the larger of the two probe curves (a lower-bound estimate)."""
        return np.maximum(self.flips_bce, self.flips_linear)

    def expected_flips(self, eps) -> np.ndarray | float:
        """E(eps), clipped to [0, C]; eps beyond eps_max is held at E(eps_max)."""
        e = np.clip(np.asarray(eps, np.float64), 0.0, self.eps_max)
        value = np.clip(np.polynomial.polynomial.polyval(e, self.coefficients), 0.0, self.labels)
        value = np.where(np.asarray(eps) <= 0, 0.0, value)
        return float(value) if np.ndim(value) == 0 else value

    def flip_ratio(self, eps) -> np.ndarray | float:
        """p of equation 7: 1 beyond eps_max, 0 at eps <= 0, else E(eps) / C."""
        eps_arr = np.asarray(eps, np.float64)
        p = np.asarray(self.expected_flips(eps_arr)) / self.labels
        p = np.where(eps_arr > self.eps_max, 1.0, np.where(eps_arr <= 0, 0.0, p))
        return float(p) if np.ndim(p) == 0 else p

    def grid(self, fractions=(0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0)) -> np.ndarray:
        """The evaluation budgets: fractions of eps_max (section VI-C)."""
        return np.asarray(fractions, np.float64) * self.eps_max

    # -- persistence ------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        for k in ("eps", "flips_bce", "flips_linear", "coefficients"):
            d[k] = np.asarray(d[k]).tolist()
        return d

    @classmethod
    def from_dict(cls, d: dict) -> FlipProfile:
        try:
            arrays = {k: np.asarray(d[k], np.float64) for k in ("eps", "flips_bce", "flips_linear", "coefficients")}
            profile = cls(
                model=str(d["model"]),
                labels=int(d["labels"]),
                degree=int(d["degree"]),
                eps_max=float(d["eps_max"]),
                cost=dict(d.get("cost", {})),
                settings=dict(d.get("settings", {})),
                **arrays,
            )
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"not a flip profile: {e}") from None
        if not (profile.labels > 0 and math.isfinite(profile.eps_max) and profile.eps_max > 0):
            raise ValueError("not a flip profile: labels and eps_max must be positive")
        return profile

    def save(self, path: str | Path) -> None:
        from mlvis.store import atomic_write_text

        atomic_write_text(Path(path), json.dumps(self.to_dict(), indent=1) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> FlipProfile:
        return cls.from_dict(json.loads(Path(path).read_text()))


def fit_profile(
    eps: np.ndarray,
    flips_bce: np.ndarray,
    flips_linear: np.ndarray,
    labels: int,
    degree: int = 4,
    model: str = "",
    rel: float = 0.01,
    patience: int = 3,
    cost: dict | None = None,
    settings: dict | None = None,
) -> FlipProfile:
    """Fit E(eps) to the two probe curves measured at ``eps`` (first point eps = 0).

    eps_max is where the pointwise maximum of the curves converges (see the module docstring);
    a curve that never converges takes its last budget. The polynomial is fitted by least
    squares to the points up to eps_max.
    """
    eps = np.asarray(eps, np.float64)
    fb, fl = np.asarray(flips_bce, np.float64), np.asarray(flips_linear, np.float64)
    if not (eps.shape == fb.shape == fl.shape) or eps.ndim != 1:
        raise ValueError("eps, flips_bce and flips_linear must be 1-D and of equal length")
    if degree not in (3, 4):
        raise ValueError(f"degree must be 3 or 4, not {degree}")
    if len(eps) < degree + 1:
        raise ValueError(f"a degree-{degree} fit needs at least {degree + 1} points, got {len(eps)}")
    points = np.maximum(fb, fl)
    k = convergence_index(points, rel, patience)
    last = len(eps) - 1 if k is None else max(k, degree)
    eps_max = float(eps[last])
    coefficients = np.polynomial.polynomial.polyfit(eps[: last + 1], points[: last + 1], degree)
    return FlipProfile(
        model=model,
        labels=int(labels),
        eps=eps,
        flips_bce=fb,
        flips_linear=fl,
        coefficients=coefficients,
        degree=degree,
        eps_max=eps_max,
        cost=dict(cost or {}),
        settings={"rel": rel, "patience": patience, "converged": k is not None, **(settings or {})},
    )
