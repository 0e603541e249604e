"""The 2-D hyperplane simulation of appendices G and H (Fig. 18): a maximum-flip attack on a 2-pixel image.

Appendix G argues that a classifier's decision space is close to linear, so each label's decision
boundary is a hyperplane, and an attack is a walk that tries to cross as many hyperplanes as it can
without leaving the budget's L-inf box. Appendix H simulates that walk on a 2-pixel "image": here
``x in [0, 1]^2`` and label ``i`` has the logit ``z_i = w_i . x + b_i`` (confidence ``sigmoid(z_i)``,
predicted present when ``z_i >= 0``, i.e. confidence >= 0.5). Its decision boundary is the line
``w_i . x + b_i = 0``.

The attack is the project's MI-FGSM (DESIGN.md), in closed form because the model is linear:

- target ``t = 1 - clean prediction`` for every label; a flip is a label whose prediction differs
  from the clean one, counted over all labels (equation 3);
- loss ``L = sum_i m * BCE_i + (1 - m) * linear_i`` with ``m = 1`` for BCE, ``m = 0`` for the linear
  loss ``|t - y|`` and ``m = p * q`` for SLAM (equation 6), so
  ``dL/dz_i = m * (y_i - t_i) + (1 - m) * (1 - 2 t_i) * y_i (1 - y_i)`` and ``dL/dx = sum_i dL/dz_i w_i``;
- ``g = mu * g + grad / ||grad||_1``; ``x = x - alpha * sign(g)``; ``x`` is clipped to the eps box
  around the start and to ``[0, 1]`` after every step;
- ``n = max(1, floor(eps / alpha + 1e-9))`` steps (section VI-C's fixed alpha), unless a step count is
  given, in which case the projection can bind and the walk slides along the box's edge.

Equation 4 explains the two behaviours: the gradient is a sum of the boundary normals weighted by
the loss derivative at each label's confidence. The **linear** loss's derivative ``y (1 - y)`` peaks
at the threshold, so the nearest boundaries dominate: a **greedy** attacker. BCE's derivative is
nearly constant on the wrong side of a boundary, so every unflipped label pulls equally and the walk
follows the sum of their normals: a **patient** attacker. In a small box the greedy one crosses the
few boundaries that are near; in a large box the patient one reaches the far cluster that the
greedy one turned away from. ``PRESETS["fig18"]`` reproduces the paper's figure (see
``docs/decisions.md``, "Hyperplane simulation", for where its numbers come from).

Everything is numpy, vectorised over rows (one row = one loss x one eps box); no Streamlit, no plotting.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Sequence

import numpy as np

from mlvis.errors import InvalidInput

#: loss names, as in ``mlvis.attacks.losses``
LOSSES = ("linear", "bce", "slam")
#: the greedy attacker of appendix H (the linear loss) and the patient one (BCE)
GREEDY = "linear"
PATIENT = "bce"
LOSS_TITLES = {"linear": "linear (greedy)", "bce": "BCE (patient)", "slam": "SLAM"}

DEFAULT_START = (0.5, 0.5)
#: the two L-inf boxes of Fig. 18, in [0, 1] units (5 and 15 steps of DEFAULT_ALPHA)
DEFAULT_BOXES = (0.1, 0.3)
#: one sign step moves each pixel by alpha; with ||w||_1 = SHARPNESS it moves a logit by at most 1
DEFAULT_ALPHA = 0.02
DEFAULT_MOMENTUM = 1.0
DEFAULT_Q = 0.5
#: ||w||_1 of the preset and random boundaries: a logit changes by SHARPNESS per unit of L-inf move
SHARPNESS = 50.0

MAX_LABELS = 32
MAX_STEPS = 5000
MAX_ABS_VALUE = 1e6
_EPS_STEP_SLACK = 1e-9  # n = floor(eps / alpha + slack), as in the attack engine


# ----------------------------------------------------------------------------------------------------------------------
# boundaries


@dataclasses.dataclass(frozen=True, eq=False)
class Boundaries:
    """A set of linear decision boundaries on the 2-pixel image: label ``i`` has logit ``w_i . x + b_i``.

    Build with :func:`make_boundaries` (validates), :func:`preset`, :func:`random_boundaries` or
    :meth:`from_rows`.

    Attributes:
        weights: ``(L, 2)`` float64, the rows ``w_i`` (read-only).
        biases: ``(L,)`` float64 (read-only).
        names: the ``L`` label names, distinct.
    """

    weights: np.ndarray
    biases: np.ndarray
    names: tuple[str, ...]

    @property
    def num_labels(self) -> int:
        return len(self.names)

    def logits(self, points: np.ndarray) -> np.ndarray:
        """``(..., L)`` logits at ``points`` of shape ``(..., 2)``."""
        return np.asarray(points, np.float64) @ self.weights.T + self.biases

    def predict(self, points: np.ndarray) -> np.ndarray:
        """``(..., L)`` bool predictions (confidence >= 0.5, i.e. logit >= 0) at ``points``."""
        return self.logits(points) >= 0

    def rows(self) -> tuple[tuple[str, float, float, float], ...]:
        """The boundaries as ``(name, w1, w2, b)`` rows (the page's table, the URL's encoding)."""
        return tuple((n, float(w[0]), float(w[1]), float(b)) for n, w, b in zip(self.names, self.weights, self.biases))

    @classmethod
    def from_rows(cls, rows: Sequence[Sequence]) -> Boundaries:
        """Boundaries from ``(name, w1, w2, b)`` rows; a ``ValueError`` with a sentence for bad input.

        A missing or empty name becomes a letter (``a``, ``b``, ...) by position.
        """
        rows = list(rows)
        if not rows:
            raise InvalidInput("The boundary table is empty: add at least one row with w1, w2 and b.")
        names: list[str | None] = []
        values: list[list[float]] = []
        for i, row in enumerate(rows, start=1):
            row = list(row)
            if len(row) != 4:
                raise InvalidInput(f"Row {i} has {len(row)} values; each row needs a name, w1, w2 and b.")
            name = row[0]
            names.append(None if name is None or (isinstance(name, float) and math.isnan(name)) else str(name))
            values.append([_number(v, i, col, names[-1]) for v, col in zip(row[1:], ("w1", "w2", "b"))])
        arr = np.asarray(values, np.float64)
        return make_boundaries(arr[:, :2], arr[:, 2], names)


def _row_label(i: int, name: str | None) -> str:
    return f"Row {i}" + (f" (label {name!r})" if name else "")


def _number(value, i: int, column: str, name: str | None) -> float:
    """``value`` as a float, or a ``ValueError`` that names the row and column."""
    where = _row_label(i, name)
    if value is None or (isinstance(value, str) and not value.strip()):
        raise InvalidInput(f"{where} has no value in {column}: every row needs numbers for w1, w2 and b.")
    if isinstance(value, bool):
        raise InvalidInput(f"{where} has {value!r} in {column}, which is not a number.")
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise InvalidInput(f"{where} has {value!r} in {column}, which is not a number.") from None
    if math.isnan(v):
        raise InvalidInput(f"{where} has no value in {column}: every row needs numbers for w1, w2 and b.")
    return v


def _letter(i: int) -> str:
    """``a``, ``b``, ..., ``z``, ``aa``, ``ab``, ... for 0, 1, ..."""
    out = ""
    i += 1
    while i:
        i, r = divmod(i - 1, 26)
        out = chr(ord("a") + r) + out
    return out


def make_boundaries(
    weights: np.ndarray | Sequence[Sequence[float]],
    biases: np.ndarray | Sequence[float],
    names: Sequence[str | None] | None = None,
) -> Boundaries:
    """Validated :class:`Boundaries` from ``(L, 2)`` weights and ``(L,)`` biases.

    Raises:
        ValueError: with a sentence that names the offending row for an empty set, more than
            ``MAX_LABELS`` rows, wrong shapes, non-finite or huge values, a row with ``w = 0`` (no
            boundary) or duplicate names. Missing names become letters.
    """
    w = np.array(weights, dtype=np.float64, copy=True)
    b = np.array(biases, dtype=np.float64, copy=True).reshape(-1)
    if w.size == 0 or b.size == 0:
        raise InvalidInput("The boundary table is empty: add at least one row with w1, w2 and b.")
    if w.ndim != 2 or w.shape[1] != 2:
        raise InvalidInput(f"The weights must have two columns (w1, w2), one row per label; got shape {w.shape}.")
    if len(b) != len(w):
        raise InvalidInput(f"There are {len(w)} weight rows but {len(b)} biases; give one b per row.")
    if len(w) > MAX_LABELS:
        raise InvalidInput(f"At most {MAX_LABELS} boundaries are supported; the table has {len(w)}.")
    given = list(names) if names is not None else [None] * len(w)
    if len(given) != len(w):
        raise InvalidInput(f"There are {len(w)} boundaries but {len(given)} names.")
    clean = [(str(n).strip() if n is not None else "") or _letter(i) for i, n in enumerate(given)]
    for i, (name, wi, bi) in enumerate(zip(clean, w, b), start=1):
        for col, v in (("w1", wi[0]), ("w2", wi[1]), ("b", bi)):
            if not math.isfinite(v):
                raise InvalidInput(f"{_row_label(i, name)} has {col} = {v}, which is not a finite number.")
            if abs(v) > MAX_ABS_VALUE:
                raise InvalidInput(f"{_row_label(i, name)} has {col} = {v:g}; keep |values| below {MAX_ABS_VALUE:g}.")
        if wi[0] == 0 and wi[1] == 0:
            raise InvalidInput(
                f"{_row_label(i, name)} has w1 = w2 = 0, so its logit is the same everywhere and it has no "
                "decision boundary: give it at least one non-zero weight."
            )
    seen: set[str] = set()
    for name in clean:
        if name in seen:
            raise InvalidInput(f"Label names must be distinct, and {name!r} appears more than once.")
        seen.add(name)
    w.setflags(write=False)
    b.setflags(write=False)
    return Boundaries(w, b, tuple(clean))


def _lines(normals, offsets, signs, names, sharpness: float = SHARPNESS) -> Boundaries:
    """Boundaries ``sign * k * (n . x - c) = z`` for the lines ``n . x = c``, with ``k = sharpness / ||n||_1``."""
    n = np.asarray(normals, np.float64)
    k = sharpness / np.abs(n).sum(1)
    s = np.asarray(signs, np.float64)
    weights = np.round((s * k)[:, None] * n, 3)  # 3 decimals: readable in the page's table
    biases = np.round(-s * k * np.asarray(offsets, np.float64), 3)
    return make_boundaries(weights, biases, names)


def _fig18() -> Boundaries:
    # Two families at +-45 degrees around the start (0.5, 0.5), as in the paper's figure: the two
    # near lines u + v = 1.104, 1.164 (L-inf distances 0.052 and 0.082 from the start) and the three
    # far, parallel lines v - u = 0.204, 0.264, 0.324 (distances 0.102, 0.132, 0.162). The offsets are
    # the figure's (divided by 50) nudged by 0.004 so that no point of the sign-step lattice lands
    # exactly on a line. The near pair starts absent (flip up), the far three start present (flip
    # down); ||w||_1 = 50, so one sign step of 0.02 moves a logit by at most 1.
    return make_boundaries(
        weights=[(25, 25), (25, 25), (25, -25), (25, -25), (25, -25)],
        biases=[-27.6, -29.1, 5.1, 6.6, 8.1],
        names=["a", "b", "c", "d", "e"],
    )


def _aligned() -> Boundaries:
    # Five boundaries whose normals all lean the same way (30-60 degrees), at increasing
    # distances: the near and the far ones agree, so greedy and patient walk the same path.
    angles = np.deg2rad([45, 35, 55, 40, 50])
    normals = np.stack([np.cos(angles), np.sin(angles)], 1)
    start = np.asarray(DEFAULT_START)
    dist = np.array([0.052, 0.102, 0.152, 0.202, 0.252])  # L-inf distance from the start
    offsets = normals @ start + dist * np.abs(normals).sum(1)
    return _lines(normals, offsets, signs=[1, -1, 1, -1, 1], names=["a", "b", "c", "d", "e"])


#: preset name -> description (for people)
PRESETS: dict[str, str] = {
    "fig18": (
        "Fig. 18 of the paper: two boundaries near the start in one direction, three farther ones, "
        "parallel to each other, in another."
    ),
    "aligned": "Five boundaries whose normals point roughly the same way, at increasing distances.",
}
_PRESET_BUILDERS = {"fig18": _fig18, "aligned": _aligned}


def preset(name: str = "fig18") -> Boundaries:
    """The preset boundaries ``name`` (see ``PRESETS``); a ``ValueError`` naming the known ones otherwise."""
    if name not in _PRESET_BUILDERS:
        raise InvalidInput(f"Unknown preset {name!r}; known presets: {', '.join(PRESETS)}.")
    return _PRESET_BUILDERS[name]()


def random_boundaries(
    n_labels: int = 6,
    seed: int = 0,
    start: Sequence[float] = DEFAULT_START,
    max_distance: float = 0.3,
    sharpness: float = SHARPNESS,
) -> Boundaries:
    """``n_labels`` random lines around ``start``, reproducible from ``seed``.

    Each line has a uniformly random direction, passes at an L-inf distance drawn uniformly from
    ``[0.02, max_distance]`` of ``start`` and starts present or absent with probability 1/2; its
    logit changes by ``sharpness`` per unit of L-inf move along its normal (``||w||_1 = sharpness``).
    """
    if not 1 <= int(n_labels) <= MAX_LABELS:
        raise InvalidInput(f"The number of random boundaries must lie in 1..{MAX_LABELS}, not {n_labels}.")
    rng = np.random.default_rng(int(seed))
    n = int(n_labels)
    theta = rng.uniform(0, 2 * np.pi, n)
    normals = np.stack([np.cos(theta), np.sin(theta)], 1)
    dist = rng.uniform(0.02, max(float(max_distance), 0.02), n)
    signs = rng.choice([-1.0, 1.0], n)
    offsets = normals @ np.asarray(start, np.float64) + dist * np.abs(normals).sum(1)
    return _lines(normals, offsets, signs, [_letter(i) for i in range(n)], sharpness)


# ----------------------------------------------------------------------------------------------------------------------
# losses and gradients


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))  # stable for any z


def loss_mix(loss: str, p: float = 1.0, q: float = DEFAULT_Q) -> float:
    """The weight ``m`` of BCE in the loss: 1 for ``bce``, 0 for ``linear``, ``p * q`` for ``slam``."""
    if loss == "bce":
        return 1.0
    if loss == "linear":
        return 0.0
    if loss == "slam":
        if not (0.0 <= p <= 1.0 and 0.0 <= q <= 1.0):
            raise InvalidInput(f"SLAM's p and q must lie in [0, 1]; got p = {p}, q = {q}.")
        return float(p) * float(q)
    raise InvalidInput(f"Unknown loss {loss!r}; choose one of {', '.join(LOSSES)}.")


def loss_and_gradient(
    boundaries: Boundaries,
    points: np.ndarray,
    target: np.ndarray,
    mix: float | np.ndarray,
    label_weights: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The loss and its closed-form gradient with respect to the points.

    ``L = sum_i w_i * (m * BCE(y_i, t_i) + (1 - m) * |t_i - y_i|)`` with ``y = sigmoid(W x + b)``.

    Args:
        points: ``(B, 2)``.
        target: ``(L,)`` or ``(B, L)`` in [0, 1].
        mix: ``m``, scalar or ``(B,)`` (see :func:`loss_mix`).
        label_weights: optional ``(L,)`` or ``(B, L)`` per-label weights (equation 2's subset mask).

    Returns:
        ``(loss (B,), grad (B, 2))``.
    """
    x = np.asarray(points, np.float64)
    z = boundaries.logits(x)
    t = np.broadcast_to(np.asarray(target, np.float64), z.shape)
    m = np.asarray(mix, np.float64).reshape(-1, 1) if np.ndim(mix) else np.float64(mix)
    y, one_minus_y = _sigmoid(z), _sigmoid(-z)
    per_bce = np.logaddexp(0.0, z) - t * z  # -(t ln y + (1 - t) ln(1 - y))
    per_lin = (1 - t) * y + t * one_minus_y
    dz = m * (y - t) + (1 - m) * (1 - 2 * t) * y * one_minus_y
    per = m * per_bce + (1 - m) * per_lin
    if label_weights is not None:
        lw = np.broadcast_to(np.asarray(label_weights, np.float64), z.shape)
        per, dz = per * lw, dz * lw
    return per.sum(-1), dz @ boundaries.weights


def n_steps(eps: float, alpha: float) -> int:
    """The paper's step count for a budget: ``max(1, floor(eps / alpha + 1e-9))``."""
    return max(1, math.floor(eps / alpha + _EPS_STEP_SLACK))


# ----------------------------------------------------------------------------------------------------------------------
# the walk


@dataclasses.dataclass(frozen=True)
class Trajectory:
    """One walk: ``steps + 1`` points (the start first) and what is flipped at each."""

    loss: str
    eps: float
    steps: int
    points: np.ndarray  # (steps + 1, 2)
    flipped: np.ndarray  # (steps + 1, L) bool
    p: float  # SLAM's p (1 for BCE / 0 for linear are not used; nan there)

    @property
    def flips(self) -> np.ndarray:
        """``(steps + 1,)`` number of flipped labels after each step (the start: 0)."""
        return self.flipped.sum(-1)

    @property
    def final_flips(self) -> int:
        return int(self.flips[-1])


@dataclasses.dataclass(frozen=True, eq=False)
class Simulation:
    """Walks for every (loss, eps box) row, run side by side.

    Rows are ordered loss-major: ``for loss in losses: for eps in boxes``. ``points`` and
    ``flipped`` are padded after a row's last step with its final state.

    Attributes:
        boundaries, start (``(2,)``), clean (``(L,)`` bool clean prediction), target (``1 - clean``).
        losses, eps, steps, mix, p: per row, ``(R,)``; ``p`` is SLAM's p (nan for other losses).
        points: ``(R, n_max + 1, 2)``; flipped: ``(R, n_max + 1, L)`` bool.
        alpha, momentum, q: the step settings.
    """

    boundaries: Boundaries
    start: np.ndarray
    clean: np.ndarray
    target: np.ndarray
    losses: tuple[str, ...]
    eps: np.ndarray
    steps: np.ndarray
    mix: np.ndarray
    p: np.ndarray
    points: np.ndarray
    flipped: np.ndarray
    alpha: float
    momentum: float
    q: float

    @property
    def flips(self) -> np.ndarray:
        """``(R, n_max + 1)`` flipped labels after each step."""
        return self.flipped.sum(-1)

    @property
    def final_flips(self) -> np.ndarray:
        """``(R,)`` flipped labels at the end of each row's walk."""
        return self.flips[np.arange(len(self.steps)), self.steps]

    @property
    def boxes(self) -> tuple[float, ...]:
        """The distinct eps values, in row order."""
        return tuple(dict.fromkeys(float(e) for e in self.eps))

    def row(self, loss: str, eps: float) -> int:
        hits = [i for i, (lo, e) in enumerate(zip(self.losses, self.eps)) if lo == loss and math.isclose(e, eps)]
        if not hits:
            raise KeyError(f"no row for loss {loss!r} at eps {eps}")
        return hits[0]

    def trajectory(self, loss: str, eps: float) -> Trajectory:
        """The walk of ``loss`` in the box ``eps``, cut at its own step count."""
        i = self.row(loss, eps)
        n = int(self.steps[i])
        return Trajectory(
            loss,
            float(self.eps[i]),
            n,
            self.points[i, : n + 1].copy(),
            self.flipped[i, : n + 1].copy(),
            float(self.p[i]),
        )


def _walk(
    boundaries: Boundaries,
    start: np.ndarray,
    eps: np.ndarray,
    steps: np.ndarray,
    mix: np.ndarray,
    alpha: float,
    momentum: float,
    label_weights: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray]:
    """All rows' walks at once: ``(points (R, n_max + 1, 2), flipped (R, n_max + 1, L))``."""
    r = len(eps)
    n_max = int(steps.max()) if r else 0
    clean = boundaries.predict(start)
    target = 1.0 - clean
    lo = np.maximum(start - eps[:, None], 0.0)
    hi = np.minimum(start + eps[:, None], 1.0)
    x = np.broadcast_to(start, (r, 2)).copy()
    g = np.zeros((r, 2))
    points = np.empty((r, n_max + 1, 2))
    points[:, 0] = x
    for k in range(n_max):
        _, grad = loss_and_gradient(boundaries, x, target, mix, label_weights)
        l1 = np.abs(grad).sum(-1, keepdims=True)
        g = momentum * g + np.divide(grad, l1, out=np.zeros_like(grad), where=l1 > 0)
        moved = np.clip(x - alpha * np.sign(g), lo, hi)
        active = (k < steps)[:, None]
        x = np.where(active, moved, x)
        points[:, k + 1] = x
    flipped = boundaries.predict(points) != clean  # per label; count_flips(...) sums them (equation 3)
    return points, flipped


def _check_settings(start, eps, alpha: float, steps: int | None, momentum: float, q: float) -> tuple:
    s = np.asarray(start, np.float64).reshape(-1)
    if s.shape != (2,) or not np.isfinite(s).all() or (s < 0).any() or (s > 1).any():
        raise InvalidInput(f"The start point must be two numbers in [0, 1]; got {tuple(np.ravel(start))}.")
    e = np.atleast_1d(np.asarray(eps, np.float64))
    if e.ndim != 1 or len(e) == 0:
        raise InvalidInput("Give at least one eps value.")
    if not np.isfinite(e).all() or (e < 0).any():
        raise InvalidInput(f"Every eps must be a finite number >= 0; got {e.tolist()}.")
    if not (math.isfinite(alpha) and alpha > 0):
        raise InvalidInput(f"The step size alpha must be a positive number, not {alpha}.")
    if steps is not None and not (0 <= int(steps) <= MAX_STEPS):
        raise InvalidInput(f"The number of steps must lie in 0..{MAX_STEPS}, not {steps}.")
    if steps is None and (e / alpha).max() > MAX_STEPS:
        raise InvalidInput(
            f"eps / alpha = {(e / alpha).max():.0f} steps is more than {MAX_STEPS}: raise alpha or lower eps."
        )
    if not (math.isfinite(momentum) and 0.0 <= momentum <= 1.0):
        raise InvalidInput(f"The momentum must lie in [0, 1], not {momentum}.")
    if not 0.0 <= q <= 1.0:
        raise InvalidInput(f"SLAM's q must lie in [0, 1], not {q}.")
    return s, e


def simulate(
    boundaries: Boundaries,
    start: Sequence[float] = DEFAULT_START,
    eps: float | Sequence[float] | np.ndarray = DEFAULT_BOXES,
    losses: Sequence[str] = (GREEDY, PATIENT),
    *,
    alpha: float = DEFAULT_ALPHA,
    steps: int | None = None,
    momentum: float = DEFAULT_MOMENTUM,
    p: float | None = None,
    q: float = DEFAULT_Q,
    label_weights: Sequence[float] | None = None,
) -> Simulation:
    """Run the attack for every loss in every eps box (one row each, all at once).

    Args:
        boundaries: the labels' decision boundaries.
        start: the clean 2-pixel image, in ``[0, 1]^2``.
        eps: one budget or several (the L-inf boxes).
        losses: names from ``LOSSES``.
        alpha: the sign step.
        steps: ``None`` for the paper's ``n = eps / alpha`` per box (the box then never binds), or a
            fixed count for every row (the walk may then slide along the box's edge).
        momentum: MI-FGSM's ``mu`` (1 in the paper; 0 gives plain sign steps as in Fig. 18's script).
        p: SLAM's expected flip ratio; ``None`` computes it per box as equation 7 does from a profile,
            with the toy's own profile ``E(eps)`` = the larger of the greedy and patient flips in that
            box (same steps), so ``p = E(eps) / L``.
        q: SLAM's maximum share of BCE.
        label_weights: optional ``(L,)`` per-label weights (target a subset, equation 2).
    """
    start_arr, eps_arr = _check_settings(start, eps, float(alpha), steps, float(momentum), float(q))
    losses = tuple(losses)
    if not losses:
        raise InvalidInput("Choose at least one loss.")
    for loss in losses:
        loss_mix(loss)  # raises for an unknown name
    if p is not None and not 0.0 <= float(p) <= 1.0:
        raise InvalidInput(f"SLAM's p must lie in [0, 1], not {p}.")
    lw = None
    if label_weights is not None:
        lw = np.asarray(label_weights, np.float64)
        if lw.shape != (boundaries.num_labels,) or not np.isfinite(lw).all():
            raise InvalidInput(f"label_weights must be {boundaries.num_labels} finite numbers.")

    def steps_for(e: np.ndarray) -> np.ndarray:
        if steps is not None:
            return np.full(len(e), int(steps), dtype=np.int64)
        return np.array([n_steps(float(v), float(alpha)) for v in e], dtype=np.int64)

    row_losses = tuple(loss for loss, _ in itertools.product(losses, eps_arr))
    row_eps = np.array([e for _, e in itertools.product(losses, eps_arr)], np.float64)
    row_steps = steps_for(row_eps)
    row_p = np.full(len(row_eps), np.nan)
    if "slam" in losses:
        if p is None:
            probe_eps = np.concatenate([eps_arr, eps_arr])
            probe_mix = np.repeat([0.0, 1.0], len(eps_arr))
            _, fl = _walk(boundaries, start_arr, probe_eps, steps_for(probe_eps), probe_mix, alpha, momentum, lw)
            final = fl[np.arange(len(probe_eps)), steps_for(probe_eps)].sum(-1).reshape(2, -1)
            p_box = final.max(0) / boundaries.num_labels
        else:
            p_box = np.full(len(eps_arr), float(p))
        slam_rows = np.array([loss == "slam" for loss in row_losses])
        row_p[slam_rows] = np.tile(p_box, losses.count("slam"))
    row_mix = np.array(
        [loss_mix(loss, 0.0 if math.isnan(pp) else pp, q) for loss, pp in zip(row_losses, row_p)], np.float64
    )
    points, flipped = _walk(boundaries, start_arr, row_eps, row_steps, row_mix, float(alpha), float(momentum), lw)
    clean = boundaries.predict(start_arr)
    start_arr.setflags(write=False)
    return Simulation(
        boundaries=boundaries,
        start=start_arr,
        clean=clean,
        target=1.0 - clean,
        losses=row_losses,
        eps=row_eps,
        steps=row_steps,
        mix=row_mix,
        p=row_p,
        points=points,
        flipped=flipped,
        alpha=float(alpha),
        momentum=float(momentum),
        q=float(q),
    )


@dataclasses.dataclass(frozen=True)
class FlipCurve:
    """Final flips against the budget, one curve per loss: ``flips[j, k]`` for ``losses[j]`` at ``eps[k]``."""

    eps: np.ndarray
    losses: tuple[str, ...]
    flips: np.ndarray
    num_labels: int

    def of(self, loss: str) -> np.ndarray:
        return self.flips[self.losses.index(loss)]


def eps_grid(alpha: float = DEFAULT_ALPHA, boxes: Sequence[float] = DEFAULT_BOXES, max_points: int = 120) -> np.ndarray:
    """Budgets for a flips-vs-eps curve: multiples of ``alpha`` up to ``max(0.5, 1.5 * max(boxes))``
    (at most 1), thinned to about ``max_points``, plus the boxes themselves; sorted and distinct."""
    upper = min(1.0, max(0.5, 1.5 * max(boxes, default=0.0)))
    k_max = max(1, math.ceil(upper / alpha - _EPS_STEP_SLACK))
    ks = np.unique(np.linspace(1, k_max, min(k_max, max_points)).round().astype(np.int64))
    grid = np.concatenate([ks * alpha, np.asarray(boxes, np.float64)])
    grid = np.unique(np.round(grid[grid <= 1.0 + 1e-12], 12))
    return grid


def flips_vs_eps(
    boundaries: Boundaries,
    start: Sequence[float] = DEFAULT_START,
    eps: Sequence[float] | np.ndarray | None = None,
    losses: Sequence[str] = (GREEDY, PATIENT),
    **settings,
) -> FlipCurve:
    """Final flips of each loss for every budget in ``eps`` (default :func:`eps_grid`), all at once.

    ``settings`` are :func:`simulate`'s keyword arguments (alpha, steps, momentum, p, q, label_weights).
    With the default ``steps=None`` each budget gets ``eps / alpha`` steps, as in the paper's sweeps.
    """
    grid = eps_grid(settings.get("alpha", DEFAULT_ALPHA)) if eps is None else np.asarray(eps, np.float64)
    sim = simulate(boundaries, start, grid, losses, **settings)
    return FlipCurve(
        eps=grid.copy(),
        losses=tuple(losses),
        flips=sim.final_flips.reshape(len(tuple(losses)), len(grid)),
        num_labels=boundaries.num_labels,
    )
