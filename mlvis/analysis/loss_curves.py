"""Loss and derivative curves of one label (Fig. 13 / appendix D and Fig. 19 / appendix K).

The attack's gradient reaches the image through each label's logit ``x``, so how strongly a loss pulls on a
label is its derivative with respect to ``x``. These curves are computed from the **registered losses**
(:mod:`mlvis.attacks.losses`) with autograd, in float64, so they show exactly what the engine optimises.

- :func:`bce_curves`: ``L_BCE`` for targets 0 and 1 with the limits of equations 17 and 18
  (t = 1: ``ln(1 + e^-x)``, which tends to 0 as x -> inf and to ``-x`` as x -> -inf; t = 0: ``ln(1 + e^x)``,
  which tends to ``x`` and to 0). Its derivative goes from 1 (t = 0) or -1 (t = 1) to 0 as the loss falls.
- :func:`slam_curves`: SLAM (equation 6) for several values of the BCE share ``w = p * q`` at one target.
  For t = 0 the derivative is ``w * y + (1 - w) * y * (1 - y)`` with ``y = sigmoid(x)``: below ``w = 0.5`` it
  peaks at the confidence ``y* = 1 / (2 (1 - w))`` and falls for labels beyond it (labels near their
  hyperplane are prioritised: the greedy part); from ``w = 0.5`` on it rises all the way, so distant labels
  are no longer de-prioritised (appendix D's reason why ``p * q`` should not exceed 0.5, hence ``q``).
  The t = 1 case is the reflection ``x -> -x``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np
import torch

from mlvis.attacks.losses import get_loss
from mlvis.errors import InvalidInput

DEFAULT_RANGE = (-8.0, 8.0)
DEFAULT_POINTS = 401


@dataclasses.dataclass(frozen=True)
class LossCurves:
    """One loss curve per row over a grid of logits.

    Attributes:
        logits: the grid ``x`` ``(M,)``; ``confidence`` is ``sigmoid(x)``.
        names: one display name per curve ``(K,)``, e.g. ``"p·q = 0.25"`` or ``"t = 1"``.
        targets: the target of each curve (0 or 1).
        weights: the BCE share ``p * q`` of each curve (1 for plain BCE).
        loss: ``(K, M)`` loss values; ``dlogit``: d loss / d x; ``dconf``: d loss / d y.
        asymptote: ``(K, M)`` the piecewise-linear limit of each curve (BCE only, else NaN).
        peak_confidence: per curve, the confidence where |d loss / d x| peaks (``inf``-free: 1.0 or 0.0
            when the derivative keeps rising to the edge, i.e. no interior peak).
    """

    logits: np.ndarray
    names: tuple[str, ...]
    targets: tuple[int, ...]
    weights: tuple[float, ...]
    loss: np.ndarray
    dlogit: np.ndarray
    dconf: np.ndarray
    asymptote: np.ndarray
    peak_confidence: tuple[float, ...]

    @property
    def confidence(self) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-self.logits))

    def to_dict(self) -> dict:
        """Plain lists, for the CLI's JSON export."""
        return {
            "logits": self.logits.tolist(),
            "confidence": self.confidence.tolist(),
            "curves": [
                {
                    "name": n,
                    "target": t,
                    "bce_share": w,
                    "loss": self.loss[i].tolist(),
                    "d_loss_d_logit": self.dlogit[i].tolist(),
                    "d_loss_d_confidence": self.dconf[i].tolist(),
                    "asymptote": None if np.isnan(self.asymptote[i]).all() else self.asymptote[i].tolist(),
                    "peak_confidence": p,
                }
                for i, (n, t, w, p) in enumerate(
                    zip(self.names, self.targets, self.weights, self.peak_confidence, strict=True)
                )
            ],
        }


def slam_peak_confidence(weight: float, target: int = 0) -> float:
    """Where SLAM's |d L / d x| peaks for BCE share ``weight = p * q`` (closed form, see the module docstring).

    For t = 0 it is ``1 / (2 (1 - w))`` while ``w < 0.5``, else 1.0 (the derivative rises to the edge);
    t = 1 mirrors it (``1 - y*``).
    """
    w = _check_share(weight)
    y = 1.0 if w >= 0.5 else 1.0 / (2.0 * (1.0 - w))
    return y if _check_target(target) == 0 else 1.0 - y


def bce_curves(
    targets: Sequence[int] = (0, 1), logit_range: tuple[float, float] = DEFAULT_RANGE, points: int = DEFAULT_POINTS
) -> LossCurves:
    """``L_BCE`` of one label over its logit for each target, with the limits of equations 17-18 (Fig. 19)."""
    x = _grid(logit_range, points)
    ts = tuple(_check_target(t) for t in targets)
    if not ts:
        raise InvalidInput("bce_curves needs at least one target (0 or 1).")
    rows = [_curve("bce", x, t, {}) for t in ts]
    # eq. 18 (t = 0): L -> x for x -> inf, 0 for x -> -inf; eq. 17 (t = 1): L -> 0 and -x
    asym = np.stack([np.maximum(x, 0.0) if t == 0 else np.maximum(-x, 0.0) for t in ts])
    peaks = tuple(1.0 if t == 0 else 0.0 for t in ts)  # |dL/dx| = |y - t| rises towards the wrong side
    return _pack(x, [f"t = {t}" for t in ts], ts, tuple(1.0 for _ in ts), rows, asym, peaks)


def slam_curves(
    shares: Sequence[float] = (0.0, 0.25, 0.5, 0.75, 1.0),
    target: int = 0,
    logit_range: tuple[float, float] = DEFAULT_RANGE,
    points: int = DEFAULT_POINTS,
) -> LossCurves:
    """SLAM's loss and derivative over the logit for several BCE shares ``p * q`` at one target (Fig. 13).

    The curves are evaluated with ``p = share`` and ``q = 1`` (appendix D fixes q = 1 and varies p), which is
    the same loss as any ``p, q`` with that product.
    """
    t = _check_target(target)
    ws = tuple(_check_share(w) for w in shares)
    if not ws:
        raise InvalidInput("slam_curves needs at least one value of p·q in [0, 1].")
    x = _grid(logit_range, points)
    rows = [_curve("slam", x, t, {"p": w, "q": 1.0}) for w in ws]
    asym = np.full((len(ws), len(x)), np.nan)
    peaks = tuple(slam_peak_confidence(w, t) for w in ws)
    return _pack(x, [f"p·q = {w:g}" for w in ws], tuple(t for _ in ws), ws, rows, asym, peaks)


# ------------------------------------------------------------------------------------ helpers


def _curve(loss: str, x: np.ndarray, t: int, params: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    fn = get_loss(loss).fn
    z = torch.tensor(x, dtype=torch.float64).reshape(-1, 1).requires_grad_(True)
    tgt = torch.full_like(z, float(t))
    per = fn(z, tgt, None, **params)
    (g,) = torch.autograd.grad(per.sum(), z)
    y = torch.sigmoid(z.detach())
    dz = g.reshape(-1)
    dy = dz / (y * (1 - y)).reshape(-1).clamp_min(torch.finfo(torch.float64).tiny)  # chain rule dy/dx = y(1-y)
    return per.detach().numpy().reshape(-1), dz.numpy(), dy.numpy()


def _pack(x, names, targets, weights, rows, asym, peaks) -> LossCurves:
    loss, dz, dy = (np.stack([r[i] for r in rows]) for i in range(3))
    return LossCurves(x, tuple(names), tuple(targets), tuple(float(w) for w in weights), loss, dz, dy, asym, peaks)


def _grid(logit_range: tuple[float, float], points: int) -> np.ndarray:
    try:
        lo, hi = (float(v) for v in logit_range)
    except (TypeError, ValueError):
        raise InvalidInput(f"The logit range must be two numbers (low, high), not {logit_range!r}.") from None
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi and max(abs(lo), abs(hi)) <= 50):
        raise InvalidInput(f"The logit range must be finite with low < high and |x| <= 50, not {logit_range!r}.")
    if isinstance(points, bool) or not isinstance(points, (int, np.integer)) or not 3 <= points <= 100_000:
        raise InvalidInput(f"The number of points must be a whole number from 3 to 100000, not {points!r}.")
    return np.linspace(lo, hi, int(points))


def _check_target(t) -> int:
    if isinstance(t, bool) or t not in (0, 1):
        raise InvalidInput(f"A target must be 0 or 1, not {t!r}.")
    return int(t)


def _check_share(w) -> float:
    try:
        v = float(w)
    except (TypeError, ValueError):
        raise InvalidInput(f"p·q must be a number in [0, 1], not {w!r}.") from None
    if isinstance(w, bool) or not (math.isfinite(v) and 0.0 <= v <= 1.0):
        raise InvalidInput(f"p·q must be a number in [0, 1], not {w!r}.")
    return v
