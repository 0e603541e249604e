"""The attack engine: one batched MI-FGSM loop shared by every gradient attack.

The loop (Algorithm 2 with section VI-C's fixed step, as DESIGN.md fixes it), per row of the batch::

    n     = max(1, floor(eps / alpha + 1e-9))                       # alpha = 1/2560 by default
    g     = 0
    for k in 1..n:
        grad  = d loss(model(x0 + delta), t, w) / d x               # t = 1 - clean prediction
        g     = mu * g + grad / ||grad||_1     (per sample, mu = 1; an all-zero gradient adds 0)
        delta = delta - alpha * sign(g)                              # L2: alpha * sqrt(d) * g / ||g||_2
        delta = project onto the eps ball (clip; L2: rescale), then keep x0 + delta in [0, 1]

A *row* is one trajectory: an (image, method) pair for eps-independent settings (a single run to the
largest eps, with a snapshot after ``n_k`` steps for every budget ``eps_k``: with a fixed alpha the
projection never binds before step ``n_k``, so the attack at a smaller eps is exactly the prefix of the
one at a larger eps), or an (eps, image, method) triple when the method's settings depend on eps.
Rows carry their own eps, step length, step count, loss, weights and loss parameters; rows are sorted
by step count so the active batch at step ``k`` is a prefix (a row whose steps are done leaves it
without any copy), and they are cut into chunks that fit a memory budget. No Python loop over images,
no host synchronisation inside the step loop, no autograd outside it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import weakref
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from mlvis.attacks.export import quantize_8bit_torch
from mlvis.attacks.geometry import DEFAULT_ALPHA, l2_step, n_steps
from mlvis.attacks.losses import get_loss
from mlvis.attacks.methods import LoopPlan, MethodContext, RunOutput, get_method
from mlvis.attacks.result import AttackResult

NORMS = ("linf", "l2")
_SPEC_COMMON = ("alpha", "norm")  # options any spec may set, overriding the job's
_JOB_OPTIONS = ("seed", "device", "progress", "autocast", "memory_budget", "max_batch")
_CPU_BUDGET = 2 * 1024**3
_CPU_MAX_BATCH = 128  # CPU throughput per image is flat from ~50 to ~128 rows and worse beyond (cache)


@dataclasses.dataclass(frozen=True)
class AttackSpec:
    """One method of a job with its options (``alpha`` and ``norm`` may override the job's).

    ``name`` labels the result (default: the method name), e.g. to run SLAM with two ``q`` values.
    """

    method: str
    options: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    name: str | None = None


# ---------------------------------------------------------------------------------- public API


def attack(model: torch.nn.Module, images: Any, method: str, eps: float | Sequence[float], **options) -> AttackResult:
    """Attack ``images`` with ``method`` at budget ``eps`` (a float, or a list: results get a leading K axis).

    Args:
        model: a ``MultiLabelModel`` (or any eval-mode module mapping images in [0, 1] to logits ``(N, C)``;
            ``threshold`` / ``labels`` attributes are used when present).
        images: float ``(N, 3, H, W)`` (or one ``(3, H, W)``) tensor or array in [0, 1]; never modified.
        method: a registered method (:func:`mlvis.attacks.list_attacks`): ``"bce"``, ``"linear"``, ``"slam"``, ...
        eps: the budget(s) in the attack's norm, in [0, 1] pixel units.
        **options: ``alpha`` (step, default 1/2560), ``norm`` (``"linf"`` | ``"l2"``), ``seed`` (default 0),
            ``device`` (must be the model's), ``progress`` (``progress(done, total)`` in image-steps, called
            once per loop step), ``autocast`` (bf16 autocast of the gradient forward/backward; clean and
            final evaluations stay in full precision), ``memory_budget`` (bytes per chunk; default 60 % of
            free GPU memory, 2 GiB on the CPU), ``max_batch`` (rows per chunk; default 128 on the CPU, no cap
            on a GPU), and the
            method's own options (``weights``; SLAM's ``p`` and ``q``).

    Returns:
        An :class:`AttackResult` of CPU numpy arrays.

    Example:
        >>> model = mlvis.create_model("demo-asl")
        >>> x, _ = mlvis.data.demo_batch(4)
        >>> res = mlvis.attack(model, x, "bce", [0.004, 0.008])
        >>> res.flips.shape
        (2, 4)
    """
    job = {k: options.pop(k) for k in list(options) if k in _JOB_OPTIONS}
    return run_job(model, images, [AttackSpec(method, options)], eps, **job)[0]


def run_job(
    model: torch.nn.Module,
    images: Any,
    specs: Sequence[AttackSpec | str | tuple[str, Mapping[str, Any]]],
    eps: float | Sequence[float],
    *,
    alpha: float = DEFAULT_ALPHA,
    norm: str = "linf",
    seed: int = 0,
    device: str | torch.device | None = None,
    progress: Callable[[int, int], None] | None = None,
    autocast: bool = False,
    memory_budget: int | None = None,
    max_batch: int | None = None,
) -> list[AttackResult]:
    """Run several methods x an eps list on the same images as ONE batched job; one result per spec.

    Every spec's rows (see the module docstring) go into one table, sorted by step count and chunked to
    ``memory_budget``, so e.g. BCE, linear and SLAM (p per eps) x 7 budgets x 100 images share every model
    call. Each spec gets a generator seeded with ``seed``, so a spec's result equals its separate run.

    Example:
        >>> res_bce, res_slam = run_job(model, x, ["bce", AttackSpec("slam", {"p": [0.1, 0.3], "q": 0.5})],
        ...                             eps=[0.004, 0.008])
    """
    dev = _model_device(model)
    if device is not None and not _same_device(torch.device(device), dev):
        raise ValueError(f"The model lives on {dev}, not {device}; create it there (create_model(..., device=...)).")
    if model.training:
        raise ValueError("The model is in training mode; attacks need an eval-mode model (call model.eval() once).")
    norm = _check_norm(norm)
    alpha = _check_alpha(alpha)
    dtype = _work_dtype(model)
    x = _check_images(images).to(dev, dtype)
    eps_arr = _check_eps(eps)
    specs = [_as_spec(s) for s in specs]
    if not specs:
        raise ValueError("A job needs at least one attack spec.")
    budget = int(memory_budget) if memory_budget is not None else _default_budget(dev)
    if budget <= 0:
        raise ValueError(f"memory_budget must be a positive number of bytes, not {memory_budget!r}.")
    if max_batch is None:
        max_batch = _CPU_MAX_BATCH if dev.type == "cpu" else 2**62
    if int(max_batch) < 1:
        raise ValueError(f"max_batch must be a positive number of rows, not {max_batch!r}.")

    threshold = _threshold(model)
    n_img = x.shape[0]
    eval_batch = max(1, budget // (64 * x[0].numel() * x.element_size()))
    clean_logits = _forward_no_grad(model, x, eval_batch)
    if clean_logits.dim() != 2 or clean_logits.shape[0] != n_img:
        raise ValueError(f"The model must return logits of shape (N, C); it returned {tuple(clean_logits.shape)}.")
    num_labels = clean_logits.shape[1]
    labels = tuple(getattr(model, "labels", None) or (str(i) for i in range(num_labels)))
    clean_probs = torch.sigmoid(clean_logits)
    clean_pred = clean_probs >= threshold
    target = (~clean_pred).to(dtype)

    # ---- each spec becomes rows of the loop table (or runs its own runner)
    table = _RowTable(n_img, num_labels, len(eps_arr), dev, dtype)
    runner_outputs: dict[int, RunOutput] = {}
    targets: dict[int, np.ndarray] = {}
    spec_meta = []
    for s, spec in enumerate(specs):
        info = get_method(spec.method)
        opts = dict(spec.options)
        s_alpha = _check_alpha(opts.pop("alpha", alpha))
        s_norm = _check_norm(opts.pop("norm", norm))
        unknown = sorted(set(opts) - set(info.options))
        if unknown:
            accepted = ", ".join(info.options + _SPEC_COMMON) or "none"
            bad = ", ".join(unknown)
            raise ValueError(f"Unknown option(s) {bad} for method {spec.method!r}; it accepts: {accepted}.")
        missing = [o for o in info.required if o not in opts]
        if missing:
            raise ValueError(f"Method {spec.method!r} needs the option(s) {', '.join(missing)}.")
        ctx = MethodContext(
            model=model, images=x, clean_logits=clean_logits, clean_probs=clean_probs, clean_pred=clean_pred,
            target=target, eps=eps_arr.copy(), alpha=s_alpha, norm=s_norm, threshold=threshold, labels=labels,
            generator=torch.Generator().manual_seed(int(seed)), device=dev, autocast=bool(autocast),
            memory_budget=budget, progress=progress,
        )  # fmt: skip
        out = info.fn(ctx, **opts)
        if isinstance(out, LoopPlan):
            table.add(s, out, ctx, s_alpha, s_norm, x[0].numel())
            if out.weights is not None:  # the label weights (CLASS's subsets) belong to the result
                w = out.weights
                w = w.detach().cpu().double().numpy() if isinstance(w, torch.Tensor) else np.asarray(w, np.float64)
                targets[s] = np.broadcast_to(w, (len(eps_arr), n_img, num_labels)).copy()
        elif isinstance(out, RunOutput):
            runner_outputs[s] = out
        else:
            raise TypeError(f"method {spec.method!r} returned {type(out).__name__}, not a LoopPlan or RunOutput.")
        spec_meta.append((spec, info, opts, s_alpha, s_norm))

    # ---- outputs, filled by the loop and the runners
    shape = tuple(x.shape[1:])
    k_n = (len(eps_arr), n_img)
    outs = [
        {
            "adv": np.zeros(k_n + shape, np.float32),
            "q8": np.zeros(k_n + shape, np.uint8),
            "adv_probs": np.zeros(k_n + (num_labels,), np.float32),
            "adv_probs_8bit": np.zeros(k_n + (num_labels,), np.float32),
            "steps": np.zeros(k_n, np.int64),
        }
        for _ in specs
    ]
    if table.num_rows:
        _run_table(model, x, table, outs, budget, int(max_batch), bool(autocast), progress)
    for s, out in runner_outputs.items():
        _store_runner(model, x, out, outs[s], eps_arr, spec_meta[s][4], eval_batch)

    # ---- results
    clean_np = np.array(x.detach().float().cpu().numpy(), copy=True)
    clean_probs_np = clean_probs.float().cpu().numpy()
    clean_pred_np = clean_probs_np >= threshold
    results = []
    for s, (spec, info, opts, s_alpha, s_norm) in enumerate(spec_meta):
        o = outs[s]
        diff = [o["adv"][k].astype(np.float64) - clean_np for k in range(len(eps_arr))]
        linf = np.stack([np.abs(d).reshape(n_img, -1).max(1) for d in diff])
        l2 = np.stack([np.sqrt((d.reshape(n_img, -1) ** 2).sum(1)) for d in diff])
        config = _jsonable(
            {
                "method": spec.method,
                "name": spec.name or spec.method,
                "options": {**{k: v for k, v in info.defaults.items() if v is not None}, **opts},
                "eps": eps_arr,
                "alpha": s_alpha,
                "norm": s_norm,
                "seed": int(seed),
                "autocast": bool(autocast),
                "model": getattr(getattr(model, "spec", None), "name", type(model).__name__),
                "threshold": threshold,
                "num_images": n_img,
                "image_shape": list(shape),
                "engine": "mlvis.attacks MI-FGSM v1",
            }
        )
        results.append(
            AttackResult(
                method=spec.method,
                name=spec.name or spec.method,
                norm=s_norm,
                labels=labels,
                threshold=threshold,
                eps=eps_arr.copy(),
                clean=clean_np,
                adv=o["adv"],
                adv_8bit=o["q8"],
                clean_probs=clean_probs_np,
                adv_probs=o["adv_probs"],
                adv_probs_8bit=o["adv_probs_8bit"],
                flips=((o["adv_probs"] >= threshold) != clean_pred_np).sum(-1).astype(np.int64),
                flips_8bit=((o["adv_probs_8bit"] >= threshold) != clean_pred_np).sum(-1).astype(np.int64),
                linf=linf,
                l2=l2,
                steps=o["steps"],
                config=config,
                targets=targets.get(s),
            )
        )
    return results


# ------------------------------------------------------------------------------------ the rows


class _RowTable:
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

    def add(self, s: int, plan: LoopPlan, ctx: MethodContext, alpha: float, norm: str, dims: int) -> None:
        n, c, k = self.n_img, self.num_labels, self.k
        info = get_loss(plan.loss)
        weights = _plan_array(plan.weights, "weights", ((c,), (n, c), (k, n, c)), self.dev, self.dtype)
        target = _plan_array(plan.target, "target", ((n, c), (k, n, c)), self.dev, self.dtype)
        if target is not None and ((target < 0) | (target > 1)).any():
            raise ValueError("A plan's target must lie in [0, 1].")
        unknown = sorted(set(plan.params) - set(info.params))
        if unknown:
            takes = ", ".join(info.params) or "none"
            raise ValueError(f"Loss {plan.loss!r} takes the parameter(s) {takes}, not {unknown}.")
        defaults = dict(info.defaults)
        params = {}
        for name in info.params:
            if name not in plan.params and name not in defaults:
                raise ValueError(f"Loss {plan.loss!r} needs the parameter {name!r}.")
            v = np.asarray(plan.params.get(name, defaults.get(name)), np.float64)
            if v.ndim > 2 or (v.ndim == 1 and v.shape != (n,)) or (v.ndim == 2 and v.shape != (k, n)):
                raise ValueError(f"Loss parameter {name!r} must be a scalar, (N,) or (K, N); got shape {v.shape}.")
            params[name] = v
        dependent = (
            (weights is not None and weights.dim() == 3)
            or (target is not None and target.dim() == 3)
            or any(v.ndim == 2 for v in params.values())
        )
        step = alpha if norm == "linf" else l2_step(alpha, dims)
        n_k = np.array([n_steps(float(e), step) for e in ctx.eps], np.int64)
        eps = ctx.eps
        if dependent:
            rows = k * n
            img = np.tile(np.arange(n), k)
            row_eps, row_n = np.repeat(eps, n), np.repeat(n_k, n)
            w = _expand(weights, (k, n, c), self.dev, self.dtype).reshape(rows, c)
            t = _expand(target if target is not None else ctx.target, (k, n, c), self.dev, self.dtype).reshape(rows, c)
            prm = {m: np.broadcast_to(v if v.ndim != 1 else v[None], (k, n)).reshape(rows) for m, v in params.items()}
            snap_row = self.num_rows + np.arange(rows)
            snap_step, snap_eps = row_n, row_eps
            snap_k, snap_img = np.repeat(np.arange(k), n), img
        else:
            rows = n
            img = np.arange(n)
            row_eps, row_n = np.full(n, eps.max()), np.full(n, n_k.max())
            w = _expand(weights, (n, c), self.dev, self.dtype)
            t = _expand(target if target is not None else ctx.target, (n, c), self.dev, self.dtype)
            prm = {m: np.broadcast_to(v, (n,)).copy() for m, v in params.items()}
            snap_row = self.num_rows + np.tile(np.arange(n), k)
            snap_step, snap_eps = np.repeat(n_k, n), np.repeat(eps, n)
            snap_k, snap_img = np.repeat(np.arange(k), n), np.tile(np.arange(n), k)
        if plan.loss not in self.losses:
            self.losses.append(plan.loss)
        for col, v in (
            ("spec", np.full(rows, s)),
            ("img", img),
            ("eps", row_eps),
            ("n", row_n),
            ("step", np.full(rows, step)),
            ("loss", np.full(rows, self.losses.index(plan.loss))),
            ("norm", np.full(rows, NORMS.index(norm))),
        ):
            self.cols[col].append(np.asarray(v))
        for col, v in (
            ("row", snap_row),
            ("step", snap_step),
            ("eps", snap_eps),
            ("spec", np.full(len(snap_row), s)),
            ("k", snap_k),
            ("img", snap_img),
        ):
            self.snaps[col].append(np.asarray(v))
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


def _plan_array(v: Any, what: str, shapes: tuple, dev: torch.device, dtype: torch.dtype) -> torch.Tensor | None:
    if v is None:
        return None
    t = torch.as_tensor(v.detach() if isinstance(v, torch.Tensor) else np.asarray(v, np.float64)).to(dev, dtype)
    if tuple(t.shape) not in shapes:
        allowed = " or ".join(str(s) for s in shapes)
        raise ValueError(f"{what} must have shape {allowed} (C labels, N images, K budgets), not {tuple(t.shape)}.")
    if not torch.isfinite(t).all():
        raise ValueError(f"{what} must be finite.")
    return t


def _expand(v: torch.Tensor | None, shape: tuple, dev: torch.device, dtype: torch.dtype) -> torch.Tensor:
    if v is None:
        return torch.ones(shape, device=dev, dtype=dtype)
    return v.expand(shape).contiguous() if v.dim() <= len(shape) else v


# ------------------------------------------------------------------------------------ the loop


def _run_table(model, x, table: _RowTable, outs, budget: int, max_batch: int, autocast: bool, progress) -> None:
    table.finish()
    col, snap = table.col, table.snap
    img_bytes = x[0].numel() * x.element_size()
    act = _activation_bytes(model, x, autocast)
    snaps_per_row = np.bincount(snap["row"], minlength=table.num_rows)
    total_steps = int(col["n"].sum())
    done = [0]
    fmt = _memory_format(model)
    snap_order = np.argsort(snap["row"], kind="stable")
    snap_start = np.searchsorted(snap["row"][snap_order], np.arange(table.num_rows + 1))
    for norm_id, norm in enumerate(NORMS):
        rows = np.flatnonzero(col["norm"] == norm_id)
        if not len(rows):
            continue
        rows = rows[np.argsort(-col["n"][rows], kind="stable")]
        # chunk: rows sorted by step count, cut where the running memory estimate passes the budget
        per_row = 10 * img_bytes + act + snaps_per_row[rows] * 2 * img_bytes
        cuts = np.flatnonzero(np.diff(np.cumsum(per_row) // budget)) + 1
        for part in np.split(rows, cuts):
            for a in range(0, len(part), max_batch):  # host bookkeeping over chunks, not images
                _run_chunk(model, x, table, part[a : a + max_batch], norm, outs, snap_order, snap_start, autocast,
                           fmt, progress, done, total_steps)  # fmt: skip


def _run_chunk(model, x, table, rows, norm, outs, snap_order, snap_start, autocast, fmt, progress, done, total):
    dev, dtype = x.device, x.dtype
    col = table.col
    r = len(rows)
    rows_t = torch.as_tensor(rows, device=dev)
    x0 = x.index_select(0, torch.as_tensor(col["img"][rows], device=dev)).contiguous(memory_format=fmt)
    target = table.target.index_select(0, rows_t)
    weight = table.weight.index_select(0, rows_t)
    view = (r,) + (1,) * (x.dim() - 1)
    eps_v = torch.as_tensor(col["eps"][rows], device=dev, dtype=dtype).view(view)
    step_v = torch.as_tensor(col["step"][rows], device=dev, dtype=dtype).view(view)
    loss_ids = col["loss"][rows]
    used = sorted(set(loss_ids.tolist()))
    loss_terms = []
    for lid in used:
        name = table.losses[lid]
        info = get_loss(name)
        prm = {m: torch.as_tensor(table.param[f"{name}.{m}"][rows], device=dev, dtype=dtype) for m in info.params}
        mask = None if len(used) == 1 else torch.as_tensor(loss_ids == lid, device=dev, dtype=dtype)
        loss_terms.append((info.fn, prm, mask))
    n = col["n"][rows]
    n_max = int(n[0])
    active = [int(v) for v in np.searchsorted(-n, -np.arange(n_max), side="left")]  # rows with n > k (n sorted desc)

    # snapshots of this chunk, grouped by step count
    local = np.empty(table.num_rows, np.int64)
    local[rows] = np.arange(r)
    sel = _snap_ids(snap_order, snap_start, rows)
    snap = {c: v[sel] for c, v in table.snap.items()}
    s_count = len(sel)
    buf = torch.empty((s_count,) + tuple(x.shape[1:]), device=dev, dtype=dtype).contiguous(memory_format=fmt)
    by_step: dict[int, tuple] = {}
    capture: dict[int, tuple] = {}  # loop iteration -> (local rows, snapshot positions) whose logits it computes
    snap_local = local[snap["row"]]
    # a snapshot taken before its row's last step is the very image the loop feeds the model at the next
    # iteration (unless the snapshot's projection moved it): its logits come for free (not under autocast)
    reusable = (snap["step"] < n[snap_local]) & (not autocast)
    for st in np.unique(snap["step"]):
        pos = np.flatnonzero(snap["step"] == st)
        by_step[int(st)] = (
            torch.as_tensor(snap_local[pos], device=dev),
            torch.as_tensor(pos, device=dev),
            torch.as_tensor(snap["eps"][pos], device=dev, dtype=dtype).view((len(pos),) + view[1:]),
        )
        cp = pos[reusable[pos]]
        if len(cp):
            capture[int(st)] = (torch.as_tensor(snap_local[cp], device=dev), torch.as_tensor(cp, device=dev))
    cap_logits = torch.empty((s_count, table.num_labels), device=dev, dtype=torch.float32) if capture else None
    unchanged = torch.zeros(s_count, device=dev, dtype=torch.bool)

    lo_box = -x0
    hi_box = 1 - x0
    if norm == "linf":
        lo, hi = torch.maximum(lo_box, -eps_v), torch.minimum(hi_box, eps_v)
    else:
        lo, hi = lo_box, hi_box
    delta = torch.zeros_like(x0)
    g = torch.zeros_like(x0)
    tiny = torch.finfo(dtype).tiny
    dims = tuple(range(1, x.dim()))
    amp = torch.autocast(dev.type, dtype=torch.bfloat16) if autocast else contextlib.nullcontext()
    for k in range(n_max):
        m = active[k]
        d = delta[:m]
        xa = (x0[:m] + d).clamp_(0, 1).requires_grad_(True)
        with torch.enable_grad():
            with amp:
                logits = model(xa)
            logits = logits.float() if logits.dtype in (torch.float16, torch.bfloat16) else logits
            loss = None
            for fn, prm, mask in loss_terms:
                per = fn(logits, target[:m], weight[:m], **{p: v[:m] for p, v in prm.items()})
                term = (per if mask is None else per * mask[:m]).sum()
                loss = term if loss is None else loss + term
            (grad,) = torch.autograd.grad(loss, xa)
        if k in capture:
            lr, pos = capture[k]
            cap_logits.index_copy_(0, pos, logits.detach().float().index_select(0, lr))
        gm = g[:m]
        gm.addcdiv_(grad, torch.linalg.vector_norm(grad, 1, dim=dims, keepdim=True).clamp_min_(tiny))
        if norm == "linf":
            d.addcmul_(gm.sign(), step_v[:m], value=-1)
        else:
            gl2 = torch.linalg.vector_norm(gm, 2, dim=dims, keepdim=True).clamp_min_(tiny)
            d.addcmul_(gm, step_v[:m] / gl2, value=-1)
            dl2 = torch.linalg.vector_norm(d, 2, dim=dims, keepdim=True).clamp_min_(tiny)
            d.mul_((eps_v[:m] / dl2).clamp_(max=1))
        d.clamp_(lo[:m], hi[:m])
        if k + 1 in by_step:
            lr, pos, e = by_step[k + 1]
            cur = delta.index_select(0, lr)
            proj = _project(cur, e, lo_box.index_select(0, lr), hi_box.index_select(0, lr), norm)
            buf.index_copy_(0, pos, proj)
            unchanged.index_copy_(0, pos, (proj == cur).flatten(1).all(1))
        done[0] += m
        if progress is not None:
            progress(done[0], total)

    # evaluate the snapshots (no autograd) and hand them to the host; one host sync per chunk
    x0_snap_idx = torch.as_tensor(snap_local, device=dev)
    reuse = torch.as_tensor(reusable, device=dev) & unchanged
    eval_rows = max(1, r)
    for a in range(0, s_count, eval_rows):
        sl = slice(a, min(s_count, a + eval_rows))
        clean = x0.index_select(0, x0_snap_idx[sl])
        adv = (clean + buf[sl]).clamp_(0, 1)
        e = torch.as_tensor(snap["eps"][sl], device=dev, dtype=torch.float64)
        q8 = quantize_8bit_torch(adv, clean, e, norm)
        with torch.no_grad():
            need = torch.nonzero(~reuse[sl]).flatten()
            logits = cap_logits[sl].clone() if cap_logits is not None else adv.new_empty(len(adv), table.num_labels)
            if len(need):
                logits.index_copy_(0, need, model(adv.index_select(0, need)).float().to(logits.dtype))
            p_adv = torch.sigmoid(logits.float())
            p_q8 = torch.sigmoid(model((q8 / 255).to(dtype).contiguous(memory_format=fmt)).float())
        spec_ids, ks, imgs = snap["spec"][sl], snap["k"][sl], snap["img"][sl]
        adv_np, q8_np = adv.float().cpu().numpy(), q8.to(torch.uint8).cpu().numpy()
        pa_np, pq_np = p_adv.cpu().numpy(), p_q8.cpu().numpy()
        steps = snap["step"][sl]
        for s in np.unique(spec_ids):
            j = spec_ids == s
            o = outs[s]
            o["adv"][ks[j], imgs[j]] = adv_np[j]
            o["q8"][ks[j], imgs[j]] = q8_np[j]
            o["adv_probs"][ks[j], imgs[j]] = pa_np[j]
            o["adv_probs_8bit"][ks[j], imgs[j]] = pq_np[j]
            o["steps"][ks[j], imgs[j]] = steps[j]


def _snap_ids(snap_order: np.ndarray, snap_start: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Indices of the snapshots that belong to ``rows``."""
    starts, ends = snap_start[rows], snap_start[rows + 1]
    lens = ends - starts
    if not lens.sum():
        return np.zeros(0, np.int64)
    offs = np.repeat(starts - np.concatenate([[0], np.cumsum(lens)[:-1]]), lens)
    return snap_order[np.arange(lens.sum()) + offs]


def _project(d: torch.Tensor, eps: torch.Tensor, lo_box: torch.Tensor, hi_box: torch.Tensor, norm: str):
    """Project a perturbation onto the ``eps`` ball (per row) and keep ``clean + d`` in [0, 1]."""
    if norm == "linf":
        return d.clamp(torch.maximum(lo_box, -eps), torch.minimum(hi_box, eps))
    dims = tuple(range(1, d.dim()))
    dl2 = torch.linalg.vector_norm(d, 2, dim=dims, keepdim=True).clamp_min(torch.finfo(d.dtype).tiny)
    return (d * (eps / dl2).clamp(max=1)).clamp_(lo_box, hi_box)


def _store_runner(model, x, out: RunOutput, o: dict, eps: np.ndarray, norm: str, batch: int) -> None:
    k, n = len(eps), x.shape[0]
    adv = torch.as_tensor(out.adv)
    if tuple(adv.shape) != (k, n) + tuple(x.shape[1:]):
        raise ValueError(f"a runner must return adv of shape (K, N, 3, H, W) = {(k, n) + tuple(x.shape[1:])}.")
    steps = np.asarray(out.steps, np.int64)
    if steps.shape != (k, n):
        raise ValueError(f"a runner must return steps of shape (K, N) = {(k, n)}.")
    adv = adv.to(x.device, x.dtype).clamp(0, 1).reshape(k * n, *x.shape[1:])
    img = torch.arange(k * n, device=x.device) % n
    e_all = torch.as_tensor(np.repeat(eps, n), device=x.device)
    for a in range(0, k * n, batch):
        sl = slice(a, min(k * n, a + batch))
        clean = x.index_select(0, img[sl])
        q8 = quantize_8bit_torch(adv[sl], clean, e_all[sl], norm)
        with torch.no_grad():
            p_adv = torch.sigmoid(model(adv[sl]).float()).cpu().numpy()
            p_q8 = torch.sigmoid(model((q8 / 255).to(x.dtype)).float()).cpu().numpy()
        kk, ii = np.divmod(np.arange(sl.start, sl.stop), n)
        o["adv"][kk, ii] = adv[sl].float().cpu().numpy()
        o["q8"][kk, ii] = q8.to(torch.uint8).cpu().numpy()
        o["adv_probs"][kk, ii] = p_adv
        o["adv_probs_8bit"][kk, ii] = p_q8
    o["steps"][:] = steps


# ------------------------------------------------------------------------------------ helpers


def _forward_no_grad(model, x: torch.Tensor, batch: int) -> torch.Tensor:
    with torch.no_grad():
        outs = [model(x[a : a + batch]).float() for a in range(0, x.shape[0], batch)]
    return torch.cat(outs)


_ACT_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _activation_bytes(model, x: torch.Tensor, autocast: bool) -> int:
    """Bytes autograd saves per image in one forward (saved-tensor hooks on batches of 1 and 2), cached."""
    key = (tuple(x.shape[1:]), x.dtype, x.device.type, autocast)
    cache = _ACT_CACHE.setdefault(model, {})
    if key not in cache:
        sizes = []
        amp = torch.autocast(x.device.type, dtype=torch.bfloat16) if autocast else contextlib.nullcontext()
        for b in (1, 2):
            total = [0]

            def pack(t, total=total):
                total[0] += t.numel() * t.element_size()
                return t

            xx = x[:1].expand(b, *x.shape[1:]).clone().requires_grad_(True)
            with torch.enable_grad(), torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), amp:
                model(xx)
            sizes.append(total[0])
        cache[key] = int(1.5 * max(sizes[1] - sizes[0], x[0].numel() * x.element_size()))
    return cache[key]


def _default_budget(dev: torch.device) -> int:
    if dev.type == "cuda":
        free, _total = torch.cuda.mem_get_info(dev)
        return int(0.6 * free)
    return _CPU_BUDGET


def _model_device(model) -> torch.device:
    dev = getattr(model, "device", None)
    if isinstance(dev, torch.device):
        return dev
    for t in list(model.parameters()) + list(model.buffers()):
        return t.device
    return torch.device("cpu")


def _same_device(a: torch.device, b: torch.device) -> bool:
    if a.type != b.type:
        return False
    if a.type == "cuda":
        ia = a.index if a.index is not None else torch.cuda.current_device()
        ib = b.index if b.index is not None else torch.cuda.current_device()
        return ia == ib
    return True


def _work_dtype(model) -> torch.dtype:
    for p in model.parameters():
        if p.is_floating_point() and p.dtype in (torch.float32, torch.float64):
            return p.dtype
    return torch.float32


def _memory_format(model) -> torch.memory_format:
    for p in model.parameters():
        if p.dim() == 4 and p.shape[1] > 1 and p.shape[2] * p.shape[3] > 1:
            if p.is_contiguous(memory_format=torch.channels_last) and not p.is_contiguous():
                return torch.channels_last
            return torch.contiguous_format
    return torch.contiguous_format


def _threshold(model) -> float:
    thr = getattr(model, "threshold", None)
    if thr is None:
        thr = getattr(getattr(model, "spec", None), "threshold", 0.5)
    return float(thr)


def _check_images(images: Any) -> torch.Tensor:
    if isinstance(images, np.ndarray):
        images = torch.from_numpy(images)
    if not isinstance(images, torch.Tensor):
        raise ValueError(f"images must be a torch tensor or numpy array, not {type(images).__name__}.")
    x = images.detach()
    if x.dim() == 3:
        x = x.unsqueeze(0)
    if x.dim() != 4 or x.shape[1] != 3 or x.shape[0] == 0:
        shape = tuple(images.shape)
        raise ValueError(f"images must have shape (N, 3, H, W) with N >= 1 (or one (3, H, W)), not {shape}.")
    if not x.is_floating_point():
        raise ValueError(f"images must be floating point in [0, 1], not {x.dtype} (divide 8-bit images by 255).")
    if not torch.isfinite(x).all() or x.min() < 0 or x.max() > 1:
        raise ValueError("images must have finite values in [0, 1] (RGB, NCHW).")
    return x


def _check_eps(eps: Any) -> np.ndarray:
    if isinstance(eps, bool):
        raise ValueError(f"eps must be a number or a list of numbers, not {eps!r}.")
    if isinstance(eps, torch.Tensor):
        eps = eps.detach().cpu().numpy()
    try:
        arr = np.atleast_1d(np.asarray(eps, dtype=np.float64))
    except (TypeError, ValueError):
        raise ValueError(f"eps must be a number or a list of numbers, not {eps!r}.") from None
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"eps must be a number or a non-empty flat list of numbers, not {eps!r}.")
    if not np.isfinite(arr).all() or (arr < 0).any():
        raise ValueError(f"eps must be finite and >= 0, not {eps!r}.")
    return arr


def _check_norm(norm: Any) -> str:
    if norm not in NORMS:
        raise ValueError(f"Unknown norm {norm!r}; known norms: {', '.join(NORMS)}.")
    return norm


def _check_alpha(alpha: Any) -> float:
    try:
        a = float(alpha)
    except (TypeError, ValueError):
        raise ValueError(f"alpha must be a positive number, not {alpha!r}.") from None
    if not (math.isfinite(a) and a > 0):
        raise ValueError(f"alpha must be a positive finite number, not {alpha!r}.")
    return a


def _as_spec(s: Any) -> AttackSpec:
    if isinstance(s, AttackSpec):
        return s
    if isinstance(s, str):
        return AttackSpec(s)
    if isinstance(s, tuple) and len(s) == 2 and isinstance(s[0], str) and isinstance(s[1], Mapping):
        return AttackSpec(s[0], dict(s[1]))
    raise ValueError(f"An attack spec must be an AttackSpec, a method name or (name, options), not {s!r}.")


def _jsonable(v: Any) -> Any:
    if isinstance(v, Mapping):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, torch.Tensor):
        return v.detach().cpu().tolist()
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, np.generic):
        return v.item()
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    if callable(getattr(v, "to_dict", None)):  # FlipProfile, CorrelationMatrix: the config stays rerunnable
        return _jsonable(v.to_dict())
    return repr(v)
