"""The row table: every trajectory a job runs, how the rows are chunked, and what they cost.

A *row* is one trajectory of the MI-FGSM loop. A :data:`~mlvis.attacks.methods.SHARED` plan gives one row
per image, run to the largest eps, with a snapshot after ``n_k`` steps for every budget ``eps_k`` (with a
fixed alpha the projection never binds before step ``n_k``, so the attack at a smaller eps is exactly the
prefix of the one at a larger eps); a :data:`~mlvis.attacks.methods.PER_EPS` plan gives one row per
(eps, image). :func:`trajectories` is that rule, and both the engine (:class:`RowTable`) and the dry-run
cost (:func:`image_steps`) use it, so an estimate counts exactly the steps the engine runs.

Rows carry their own eps, step length, step count, loss, weights and loss parameters; :func:`chunks` sorts
them by step count (the active rows at step ``k`` are then a prefix) and cuts them where the running
memory estimate passes the budget.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch

from mlvis.attacks.budget import NORMS
from mlvis.attacks.geometry import n_steps
from mlvis.attacks.losses import get_loss
from mlvis.attacks.methods import PER_EPS, RUNNER, LoopPlan, MethodContext, get_method
from mlvis.attacks.norms import get_norm
from mlvis.errors import InvalidInput


def step_counts(eps: np.ndarray, step: float) -> np.ndarray:
    """``n_k = max(1, floor(eps_k / step + 1e-9))`` for every budget (``int64``, ``(K,)``)."""
    return np.array([n_steps(float(e), step) for e in eps], np.int64)


def trajectories(dependent: bool, eps: np.ndarray, n_k: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(eps, steps)`` of the rows ONE image contributes: one row to the largest eps when the plan is
    eps-independent, else one row per budget."""
    if dependent:
        return np.asarray(eps, np.float64), np.asarray(n_k, np.int64)
    return np.full(1, np.max(eps)), np.full(1, np.max(n_k))


def image_steps(
    specs: Sequence[Any], eps: Sequence[float] | np.ndarray, num_images: int, *, alpha: float, norm: str, dims: int
) -> tuple[int, list[str]]:
    """Dry run: the image-steps (one forward + backward of one image) the engine's loop will run for
    ``specs`` at budgets ``eps`` on ``num_images`` images, and the methods it cannot count (own runners).

    ``specs`` are ``AttackSpec`` s (or anything with ``method`` and ``options``); a spec's ``alpha`` /
    ``norm`` options override the job's, as in the engine."""
    eps_arr = np.atleast_1d(np.asarray(eps, np.float64))
    total, unknown = 0, []
    for spec in specs:
        info = get_method(spec.method)
        opts = dict(spec.options)
        kind = info.kind_for(opts)
        if kind == RUNNER:
            unknown.append(spec.method)
            continue
        s_norm = get_norm(opts.get("norm", norm))
        step = s_norm.step_length(float(opts.get("alpha", alpha)), int(dims))
        _, n = trajectories(kind == PER_EPS, eps_arr, step_counts(eps_arr, step))
        total += int(n.sum()) * int(num_images)
    return total, unknown


class RowTable:
    """Host-side description of every loop row plus per-row device tensors (target, weights, params)."""

    def __init__(self, n_img: int, num_labels: int, k: int, dev: torch.device, dtype: torch.dtype):
        self.n_img, self.num_labels, self.k, self.dev, self.dtype = n_img, num_labels, k, dev, dtype
        self.cols: dict[str, list[np.ndarray]] = {c: [] for c in ("spec", "img", "eps", "n", "step", "loss", "norm")}
        self.snaps: dict[str, list[np.ndarray]] = {c: [] for c in ("row", "step", "eps", "spec", "k", "img")}
        self.targets: list[torch.Tensor] = []
        self.weights: list[torch.Tensor] = []
        self.params: list[dict[str, np.ndarray]] = []
        self.losses: list[str] = []
        self.num_rows = 0
        self.col: dict[str, np.ndarray] = {}
        self.snap: dict[str, np.ndarray] = {}
        self.param: dict[str, np.ndarray] = {}

    def add(
        self,
        s: int,
        plan: LoopPlan,
        ctx: MethodContext,
        alpha: float,
        norm: str,
        dims: int,
        steps: int | None = None,
    ) -> None:
        """Add spec ``s``'s rows. ``steps`` fixes every row's step count (the profile probe's unbounded
        rows, whose eps is infinite) instead of deriving it from eps."""
        n, c, k = self.n_img, self.num_labels, self.k
        info = get_loss(plan.loss)
        weights = _plan_array(plan.weights, "weights", ((c,), (n, c), (k, n, c)), self.dev, self.dtype)
        target = _plan_array(plan.target, "target", ((n, c), (k, n, c)), self.dev, self.dtype)
        if target is not None and ((target < 0) | (target > 1)).any():
            raise InvalidInput("A plan's target must lie in [0, 1].")
        unknown = sorted(set(plan.params) - set(info.params))
        if unknown:
            takes = ", ".join(info.params) or "none"
            raise InvalidInput(f"Loss {plan.loss!r} takes the parameter(s) {takes}, not {unknown}.")
        defaults = dict(info.defaults)
        params = {}
        for name in info.params:
            if name not in plan.params and name not in defaults:
                raise InvalidInput(f"Loss {plan.loss!r} needs the parameter {name!r}.")
            v = np.asarray(plan.params.get(name, defaults.get(name)), np.float64)
            if v.ndim > 2 or (v.ndim == 1 and v.shape != (n,)) or (v.ndim == 2 and v.shape != (k, n)):
                raise InvalidInput(f"Loss parameter {name!r} must be a scalar, (N,) or (K, N); got shape {v.shape}.")
            params[name] = v
        dependent = (
            (weights is not None and weights.dim() == 3)
            or (target is not None and target.dim() == 3)
            or any(v.ndim == 2 for v in params.values())
        )
        step = get_norm(norm).step_length(alpha, dims)
        eps = ctx.eps
        n_k = step_counts(eps, step) if steps is None else np.full(len(eps), int(steps), np.int64)
        per_eps, per_n = trajectories(dependent, eps, n_k)
        img: np.ndarray
        if dependent:
            rows = k * n
            img = np.tile(np.arange(n), k)
            row_eps, row_n = np.repeat(per_eps, n), np.repeat(per_n, n)
            w = _expand(weights, (k, n, c), self.dev, self.dtype).reshape(rows, c)
            t = _expand(target if target is not None else ctx.target, (k, n, c), self.dev, self.dtype).reshape(rows, c)
            prm = {m: np.broadcast_to(v if v.ndim != 1 else v[None], (k, n)).reshape(rows) for m, v in params.items()}
            snap_row = self.num_rows + np.arange(rows)
            snap_step, snap_eps = row_n, row_eps
            snap_k, snap_img = np.repeat(np.arange(k), n), img
        else:
            rows = n
            img = np.arange(n)
            row_eps, row_n = np.repeat(per_eps, n), np.repeat(per_n, n)
            w = _expand(weights, (n, c), self.dev, self.dtype)
            t = _expand(target if target is not None else ctx.target, (n, c), self.dev, self.dtype)
            prm = {m: np.broadcast_to(v, (n,)).copy() for m, v in params.items()}
            snap_row = self.num_rows + np.tile(np.arange(n), k)
            snap_step, snap_eps = np.repeat(n_k, n), np.repeat(eps, n)
            snap_k, snap_img = np.repeat(np.arange(k), n), np.tile(np.arange(n), k)
        if plan.loss not in self.losses:
            self.losses.append(plan.loss)
        arr: Any
        for col, arr in (
            ("spec", np.full(rows, s)),
            ("img", img),
            ("eps", row_eps),
            ("n", row_n),
            ("step", np.full(rows, step)),
            ("loss", np.full(rows, self.losses.index(plan.loss))),
            ("norm", np.full(rows, NORMS.index(norm))),
        ):
            self.cols[col].append(np.asarray(arr))
        for col, arr in (
            ("row", snap_row),
            ("step", snap_step),
            ("eps", snap_eps),
            ("spec", np.full(len(snap_row), s)),
            ("k", snap_k),
            ("img", snap_img),
        ):
            self.snaps[col].append(np.asarray(arr))
        self.targets.append(t)
        self.weights.append(w)
        self.params.append({f"{plan.loss}.{m}": v for m, v in prm.items()})
        self.num_rows += rows

    def finish(self) -> None:
        self.col = {c: np.concatenate(v) for c, v in self.cols.items()}
        self.snap = {c: np.concatenate(v) for c, v in self.snaps.items()}
        self.target = torch.cat(self.targets)
        self.weight = torch.cat(self.weights)
        names = sorted({m for p in self.params for m in p})
        self.param = {}
        for m in names:  # rows of other losses get 0 (they are masked out of this loss)
            self.param[m] = np.concatenate([p.get(m, np.zeros(len(t))) for p, t in zip(self.params, self.targets)])
        self.snap_order = np.argsort(self.snap["row"], kind="stable")
        self.snap_start = np.searchsorted(self.snap["row"][self.snap_order], np.arange(self.num_rows + 1))

    @property
    def total_steps(self) -> int:
        """Image-steps of every row (the progress total)."""
        return int(self.col["n"].sum())

    def snapshot_ids(self, rows: np.ndarray) -> np.ndarray:
        """Indices of the snapshots that belong to ``rows``."""
        starts, ends = self.snap_start[rows], self.snap_start[rows + 1]
        lens = ends - starts
        if not lens.sum():
            return np.zeros(0, np.int64)
        offs = np.repeat(starts - np.concatenate([[0], np.cumsum(lens)[:-1]]), lens)
        return np.asarray(self.snap_order[np.arange(lens.sum()) + offs])

    def chunks(self, img_bytes: int, act_bytes: int, budget: int, max_batch: int) -> Iterator[tuple[str, np.ndarray]]:
        """``(norm, rows)`` chunks: per norm, rows sorted by step count (descending, stable), cut where the
        running memory estimate passes ``budget`` and every ``max_batch`` rows."""
        col = self.col
        snaps_per_row = np.bincount(self.snap["row"], minlength=self.num_rows)
        for norm_id, norm in enumerate(NORMS):
            rows = np.flatnonzero(col["norm"] == norm_id)
            if not len(rows):
                continue
            rows = rows[np.argsort(-col["n"][rows], kind="stable")]
            per_row = 10 * img_bytes + act_bytes + snaps_per_row[rows] * 2 * img_bytes
            cuts = np.flatnonzero(np.diff(np.cumsum(per_row) // budget)) + 1
            for part in np.split(rows, cuts):
                for a in range(0, len(part), max_batch):  # host bookkeeping over chunks, not images
                    yield norm, part[a : a + max_batch]


def _plan_array(
    v: Any, what: str, shapes: tuple[tuple[int, ...], ...], dev: torch.device, dtype: torch.dtype
) -> torch.Tensor | None:
    if v is None:
        return None
    t = torch.as_tensor(v.detach() if isinstance(v, torch.Tensor) else np.asarray(v, np.float64)).to(dev, dtype)
    if tuple(t.shape) not in shapes:
        allowed = " or ".join(str(s) for s in shapes)
        raise InvalidInput(f"{what} must have shape {allowed} (C labels, N images, K budgets), not {tuple(t.shape)}.")
    if not torch.isfinite(t).all():
        raise InvalidInput(f"{what} must be finite.")
    return t


def _expand(v: torch.Tensor | None, shape: tuple[int, ...], dev: torch.device, dtype: torch.dtype) -> torch.Tensor:
    if v is None:
        return torch.ones(shape, device=dev, dtype=dtype)
    return v.expand(shape).contiguous() if v.dim() <= len(shape) else v
