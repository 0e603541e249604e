"""The related-work attacks of the paper's section III-A and appendix J: ML-CW, ML-DeepFool and MLA-LP.

All three target every label (t = 1 - clean prediction, like the rest of mlvis) and are *unbounded*:
their perturbation budget is an outcome, reported per image as ``result.linf`` and ``result.l2``.
They plug into the engine as :class:`~mlvis.attacks.methods.RunOutput` methods::

    res = mlvis.attack(model, x, "ml-cw", 1.0)                       # eps 1.0 (L-inf) never binds
    res = mlvis.attack(model, x, "ml-deepfool", 1.0)
    res = mlvis.attack(model, x, "mla-lp", 1.0, basis=16)            # LP over a 16 x 16 grid per channel
    res.flips[0], res.linf[0], res.l2[0]                              # (N,) each

**eps is a cap, not a budget.** Each attack runs once per image, whatever the eps list; the result at
``eps[k]`` is that perturbation projected onto the ``eps[k]`` ball of the job's ``norm`` (L-inf: clipped;
L2: scaled down), so ``res.adv`` keeps the engine's ``(K, N, 3, H, W)`` shape and its guarantee
``||adv - clean|| <= eps``, and the 8-bit images are rounded inside the same ball. ``eps=1`` with
``norm="linf"`` (the default) never binds, because images live in [0, 1]: that is the attack as published.
A smaller cap answers "what is left of ML-CW's perturbation when it is clipped to my budget".

**ML-CW** (Song et al. 2018): Adam on ``w`` with ``x' = (tanh(w) + 1) / 2`` (the tanh box), minimising
``D(x' - x) + lambda * sum_i max(0, -(2 t_i - 1) * (F_i(x') - tau))``: the hinge is zero once label i is on
the target side of the threshold (appendix J's equation 13 prints the sign reversed, which would push
labels away from the target). ``D`` is the squared L2 distance as in the original (``distance="l2"``) or
the L-inf distance of the paper's variant (``distance="linf"``), per image. Lambda starts at 1e5 (the
original code's ``initial_const``) and is searched per image for ``binary_steps`` rounds: x10 after a round
without success while no success is known, else the C&W bisection between the largest failing and the
smallest succeeding lambda (which is /2 after the first success). Each round runs at most ``max_iter``
Adam steps (lr 0.01) and, as C&W's code does, stops an image early when its loss fell by less than
0.01 % over a tenth of the steps. The best iterate over everything has the least Hamming distance to
the target, then the smallest distance. ``preset="original"`` is Song et al.'s budget (10 rounds x 1,000
steps); ``preset="fast"`` (the library and dashboard default) is 5 rounds x 100 steps at lr 0.02; explicit
options override the preset.

**ML-DeepFool**: from ``x_k``, linearise the confidences with the full Jacobian ``J = dF/dx`` (all C rows,
from one forward and one vmapped backward per chunk of images), take the min-L2-norm solution of
``J_V r = tau - F_V(x_k)`` over the labels V not yet on the target side (pseudo-inverse of the C x C Gram
matrix, float64), step ``x_{k+1} = clip(x_k + (1 + overshoot) r, 0, 1)`` with DeepFool's overshoot 0.02,
for up to ``max_iter`` = 20 iterations; keep the iterate with the least Hamming distance, then the
smallest L2 norm. On a model whose confidences are linear in x, one step solves it.

**MLA-LP** (Zhou et al. 2020): per iteration, linearise each label's BCE loss (against the target) at
``x_k`` and solve the minimal-L-inf *total* perturbation ``u`` (from the clean image) for which every
linearised loss reaches the loss of a confidence at a target level: ``min ||u||_inf`` s.t.
``g_i . (u - u_k) <= l_i(level) - l_i(x_k)`` for every label and ``x + u`` in [0, 1]. The level starts at the
threshold (0.5) and, per image, moves 0.05 further past it (towards 0.9 for target 1, 0.1 for target 0,
stopping at 0.1 / 0.9) whenever an iteration does not reduce the Hamming distance. Up to ``max_iter`` = 10
iterations; the best iterate has the least Hamming distance, then the smallest L-inf. The LP is solved
with ``scipy.optimize.linprog`` (HiGHS) by :func:`min_linf_solve`: Newton's method on the value of the
fixed-radius LP (only C rows), which reaches the same optimum as the textbook LP with 2d coupling rows
about 5x faster than HiGHS's interior point and 100x faster than its simplex at 3 x 64 x 64 (see
docs/decisions.md). ``basis=g`` restricts the perturbation to a g x g grid per channel upsampled by
nearest neighbour (the L-inf norm is then the grid's exactly); problems larger than ``max_lp_size``
Jacobian entries are refused with an estimate of their time and memory (:func:`mla_lp_cost`).
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch

from mlvis.attacks.methods import RUNNER, MethodContext, RunOutput, register_method
from mlvis.errors import InvalidInput

ML_CW_PRESETS: dict[str, dict[str, Any]] = {
    "original": {"binary_steps": 10, "max_iter": 1000, "lr": 0.01, "init_lambda": 1e5, "distance": "l2"},
    "fast": {"binary_steps": 5, "max_iter": 100, "lr": 0.02, "init_lambda": 1e5, "distance": "l2"},
    "authors": {"binary_steps": 1, "max_iter": 1000, "lr": 0.01, "init_lambda": 1e5, "distance": "linf"},
}
"""ML-CW budgets: ``original`` is Song et al.'s (10 binary-search rounds x 1,000 Adam steps, squared L2),
``fast`` serves the dashboard (5 x 100, larger step), ``authors`` is ML-CW as the paper's authors ran it for
Table VII (one round of 1,000 steps at lambda 1e5 with the L-inf distance; the default under
``protocol="authors"``)."""

DEEPFOOL_OVERSHOOT = 0.02
LP_LEVELS = (0.5, 0.1, 0.05)  # MLA-LP's confidence level: start, last, step (towards the target side)
LP_MAX_SIZE = 5_000_000  # default cap on C x (perturbation dimensions) for MLA-LP
_LP_SECONDS_PER_ENTRY = 1.1e-6  # one fixed-radius HiGHS solve, seconds per Jacobian entry (measured, demo size)
_LP_SOLVES = 6  # Newton solves per LP, typical (measured 5-7)
_LP_BYTES_PER_ENTRY = 48  # dense float64 copy + CSC (value + index) + HiGHS's row and column copies
_UPPER = 1e10  # "no success yet" marker of the lambda bisection (as in C&W's code)


# ------------------------------------------------------------------------------------ shared helpers


def _cap(adv: torch.Tensor, x0: torch.Tensor, eps: np.ndarray, norm: str) -> torch.Tensor:
    """``(K, N, ...)``: ``adv - x0`` projected onto each ``eps[k]`` ball (the box is kept: only shrinks)."""
    delta = (adv - x0).unsqueeze(0)
    e = torch.as_tensor(eps, device=adv.device, dtype=adv.dtype).view(-1, *([1] * adv.dim()))
    if norm == "linf":
        out = torch.minimum(torch.maximum(delta, -e), e)
    else:
        l2 = torch.linalg.vector_norm(delta.flatten(2), 2, dim=2).view(*delta.shape[:2], *([1] * (adv.dim() - 1)))
        out = delta * (e / l2.clamp_min(torch.finfo(adv.dtype).tiny)).clamp(max=1)
    return (x0.unsqueeze(0) + out).clamp_(0, 1)


def _image_chunks(
    n: int, per_image: int, ctx: MethodContext, rows_per_image: int = 1, cpu_rows: bool = True
) -> list[slice]:
    """Slices of images whose working memory fits ``ctx.memory_budget`` (and, for model batches, 128 rows on
    the CPU, where larger batches are slower per image)."""
    per = max(1, ctx.memory_budget // max(1, per_image))
    if cpu_rows and ctx.device.type == "cpu":
        per = min(per, max(1, 128 // rows_per_image))
    return [slice(a, min(n, a + per)) for a in range(0, n, per)]


def _act_bytes(ctx: MethodContext) -> int:
    from mlvis.attacks.model_helpers import activation_bytes

    return activation_bytes(ctx.model, ctx.images, False)


def _hamming(logits: torch.Tensor, target: torch.Tensor, threshold: float) -> torch.Tensor:
    """Labels not on the target side of the threshold, per row."""
    return ((torch.sigmoid(logits.float()) >= threshold) != (target > 0.5)).sum(1)


class _Progress:
    def __init__(self, fn: Callable[[int, int], None] | None, total: int):
        self.fn, self.total, self.done = fn, max(1, int(total)), 0

    def add(self, k: int) -> None:
        self.done = min(self.total, self.done + int(k))
        if self.fn is not None:
            self.fn(self.done, self.total)

    def finish(self) -> None:
        if self.fn is not None and self.done < self.total:
            self.done = self.total
            self.fn(self.done, self.total)


class _GridBasis:
    """Perturbations ``u = U v``: identity (``side=None``) or a ``side x side`` grid per channel, nearest upsampled.

    With nearest upsampling every pixel takes exactly one coefficient, so ``||U v||_inf = ||v||_inf``, the
    Jacobian in the basis is the sum of the pixel Jacobian over each cell, and the box ``x + U v in [0, 1]``
    is ``-min_cell(x) <= v <= 1 - max_cell(x)``. The cell map is PyTorch's nearest rule, ``floor(h * side / H)``.
    """

    def __init__(self, shape: tuple[int, int, int], side: int | None, device: torch.device):
        c, h, w = shape
        self.d = c * h * w
        self.side = side
        if side is None:
            self.m, self.cell = self.d, None
            return
        rows = torch.div(torch.arange(h, device=device) * side, h, rounding_mode="floor")
        cols = torch.div(torch.arange(w, device=device) * side, w, rounding_mode="floor")
        chan = torch.arange(c, device=device)
        self.cell = (chan.view(c, 1, 1) * side * side + rows.view(1, h, 1) * side + cols.view(1, 1, w)).reshape(-1)
        self.m = c * side * side

    def reduce(self, g: torch.Tensor) -> torch.Tensor:
        """``(..., d)`` pixel gradients -> ``(..., m)`` coefficient gradients."""
        if self.cell is None:
            return g
        out = g.new_zeros(*g.shape[:-1], self.m)
        return out.index_add_(-1, self.cell, g)

    def expand(self, v: torch.Tensor) -> torch.Tensor:
        """``(n, m)`` coefficients -> ``(n, d)`` pixels."""
        return v if self.cell is None else v.index_select(-1, self.cell)

    def room(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """How far each coefficient may go down and up, ``(n, m)`` each, keeping ``x + U v`` in [0, 1]."""
        x = x.flatten(1)
        if self.cell is None:
            return x, 1 - x
        idx = self.cell.expand_as(x)
        lo = x.new_full((x.shape[0], self.m), 1.0).scatter_reduce_(1, idx, x, "amin", include_self=True)
        hi = x.new_zeros((x.shape[0], self.m)).scatter_reduce_(1, idx, x, "amax", include_self=True)
        return lo, 1 - hi


_NO_VMAP: weakref.WeakSet = weakref.WeakSet()  # models whose backward has no vmap batching rule


def _logit_jacobian(ctx: MethodContext, x: torch.Tensor, basis: _GridBasis) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits ``(n, C)`` and their Jacobian ``(n, C, m)`` w.r.t. the basis coefficients at images ``x``.

    All C rows of a chunk of images come from one forward and one vmapped backward (``is_grads_batched``
    with the C unit vectors as grad outputs); a model whose backward cannot be vmapped falls back to one
    backward over C copies of each image (row c of copy c). No Python loop over labels or images.
    """
    n, c = x.shape[0], ctx.num_labels
    img_bytes = x[0].numel() * x.element_size()
    per_image = c * (_act_bytes(ctx) + 4 * img_bytes + basis.m * x.element_size())
    logits_out, jac_out = [], []
    for sl in _image_chunks(n, per_image, ctx, rows_per_image=c):
        nb = sl.stop - sl.start
        g = None
        if ctx.model not in _NO_VMAP:
            xa = x[sl].clone().requires_grad_(True)
            try:
                with torch.enable_grad():
                    out = ctx.model(xa)
                    eye = torch.eye(c, device=x.device, dtype=out.dtype).unsqueeze(1).expand(c, nb, c)
                    (g,) = torch.autograd.grad(out, xa, grad_outputs=eye, is_grads_batched=True)
                logits, g = out.detach(), g.transpose(0, 1)
            except RuntimeError:
                _NO_VMAP.add(ctx.model)
                g = None
        if g is None:
            xr = x[sl].repeat_interleave(c, 0).requires_grad_(True)
            with torch.enable_grad():
                out = ctx.model(xr).view(nb, c, c)
                (g,) = torch.autograd.grad(out.diagonal(0, 1, 2).sum(), xr)
            logits = out[:, 0].detach()
        logits_out.append(logits)
        jac_out.append(basis.reduce(g.reshape(nb, c, -1)))
    return torch.cat(logits_out), torch.cat(jac_out)


# ------------------------------------------------------------------------------------ ML-CW


def _ml_cw_work(options: Mapping[str, Any], num_labels: int, protocol: str) -> int:
    """ML-CW's most Adam steps per image (one forward + backward each): binary_steps x max_iter."""
    cfg, _ = _ml_cw_config(options.get("preset"), options.get("distance"), options, protocol)
    return _positive_int(cfg["binary_steps"], "binary_steps") * _positive_int(cfg["max_iter"], "max_iter")


def _ml_cw_config(
    preset: str | None, distance: str | None, overrides: Mapping[str, Any], protocol: str
) -> tuple[dict[str, Any], str]:
    """The preset's settings with the explicit options over them, and the distance (``preset=None``: the
    protocol's preset)."""
    if preset is None:
        from mlvis.attacks.protocol import get_protocol

        preset = get_protocol(protocol).ml_cw_preset
    if preset not in ML_CW_PRESETS:
        raise InvalidInput(f"Unknown ML-CW preset {preset!r}; known presets: {', '.join(ML_CW_PRESETS)}.")
    cfg = dict(ML_CW_PRESETS[preset])
    distance = cfg.pop("distance") if distance is None else distance
    if distance not in ("l2", "linf"):
        raise InvalidInput(f"ML-CW's distance must be 'l2' or 'linf', not {distance!r}.")
    for k in ("binary_steps", "max_iter", "lr", "init_lambda"):
        if overrides.get(k) is not None:
            cfg[k] = overrides[k]
    return cfg, distance


@register_method(
    "ml-cw",
    title="ML-CW",
    order=60,
    kind=RUNNER,
    work=_ml_cw_work,
    description="ML-CW (Song et al.): Adam on a tanh box, hinge to the target + distance",
)
def ml_cw(
    ctx: MethodContext,
    *,
    preset: str | None = None,
    distance: str | None = None,
    binary_steps: int | None = None,
    max_iter: int | None = None,
    lr: float | None = None,
    init_lambda: float | None = None,
    abort_early: bool = True,
) -> RunOutput:
    """ML-CW; ``preset`` ("fast" | "original" | "authors") sets the budget, the explicit options override it.

    ``preset=None`` is the protocol's (``"fast"``; ``"authors"`` under ``protocol="authors"``).
    ``distance``: ``"l2"`` (squared L2, the original) or ``"linf"`` (the paper's variant); ``None``: the
    preset's. ``steps`` in the result counts the Adam steps the image took over all binary-search rounds.
    """
    given = {"binary_steps": binary_steps, "max_iter": max_iter, "lr": lr, "init_lambda": init_lambda}
    cfg, distance = _ml_cw_config(preset, distance, given, ctx.protocol)
    rounds, iters = _positive_int(cfg["binary_steps"], "binary_steps"), _positive_int(cfg["max_iter"], "max_iter")
    lr_, lam0 = _positive_float(cfg["lr"], "lr"), _positive_float(cfg["init_lambda"], "init_lambda")

    x0 = ctx.images
    n = x0.shape[0]
    prog = _Progress(ctx.progress, rounds * iters * n)
    best = torch.empty_like(x0)
    steps = torch.zeros(n, dtype=torch.int64, device=x0.device)
    per_image = _act_bytes(ctx) + 12 * x0[0].numel() * x0.element_size()
    for sl in _image_chunks(n, per_image, ctx):
        best[sl], steps[sl] = _ml_cw_chunk(ctx, x0[sl], ctx.target[sl], rounds, iters, lr_, lam0, distance,
                                           bool(abort_early), prog)  # fmt: skip
    prog.finish()
    adv = _cap(best, x0, ctx.eps, ctx.norm)
    return RunOutput(adv, np.repeat(steps.cpu().numpy()[None], len(ctx.eps), 0))


def _ml_cw_chunk(
    ctx: MethodContext,
    x0: torch.Tensor,
    target: torch.Tensor,
    rounds: int,
    iters: int,
    lr: float,
    lam0: float,
    distance: str,
    abort_early: bool,
    prog: _Progress,
) -> tuple[torch.Tensor, torch.Tensor]:
    dev, dtype = x0.device, x0.dtype
    n = x0.shape[0]
    tau = ctx.threshold
    sign = 2 * target - 1  # +1: push the confidence up to the threshold, -1: down
    w0 = torch.atanh((2 * x0.double() - 1) * (1 - 1e-6)).to(dtype)
    lam = torch.full((n,), lam0, device=dev, dtype=torch.float64)
    lower = torch.zeros_like(lam)
    upper = torch.full_like(lam, _UPPER)
    best_adv = x0.clone()  # the clean image: Hamming distance C, distance 0
    best_hd = torch.full((n,), ctx.num_labels, device=dev, dtype=torch.int64)
    best_dist = torch.zeros(n, device=dev, dtype=torch.float64)
    steps = torch.zeros(n, dtype=torch.int64, device=dev)
    check = max(1, iters // 10)
    b1, b2 = 0.9, 0.999
    for _round in range(rounds):
        ids = torch.arange(n, device=dev)  # the images still optimising in this round
        w, m, v = w0.clone(), torch.zeros_like(w0), torch.zeros_like(w0)
        xa0, sg, lam_a = x0, sign, lam.to(dtype)
        success = torch.zeros(n, dtype=torch.bool, device=dev)
        prev = torch.full((n,), math.inf, device=dev, dtype=torch.float64)
        for it in range(iters):
            wg = w.detach().requires_grad_(True)
            with torch.enable_grad():
                xa = 0.5 * (torch.tanh(wg) + 1)
                logits = ctx.model(xa)
                conf = torch.sigmoid(logits)
                hinge = torch.relu(-sg * (conf - tau)).sum(1)
                diff = (xa - xa0).flatten(1)
                dist = diff.pow(2).sum(1) if distance == "l2" else diff.abs().amax(1)
                loss = dist + lam_a * hinge
                (g,) = torch.autograd.grad(loss.sum(), wg)
            with torch.no_grad():
                hd = ((conf >= tau) != (sg > 0)).sum(1)
                metric = (dist.sqrt() if distance == "l2" else dist).double()
                bh, bd = best_hd.index_select(0, ids), best_dist.index_select(0, ids)
                better = (hd < bh) | ((hd == bh) & (metric < bd))
                best_hd.index_copy_(0, ids, torch.where(better, hd, bh))
                best_dist.index_copy_(0, ids, torch.where(better, metric, bd))
                view = (-1,) + (1,) * (x0.dim() - 1)
                best_adv.index_copy_(0, ids, torch.where(better.view(view), xa.detach(), best_adv.index_select(0, ids)))
                success.index_copy_(0, ids, success.index_select(0, ids) | (hd == 0))
                # Adam (elementwise, so every image's trajectory is independent of its batch-mates)
                m.mul_(b1).add_(g, alpha=1 - b1)
                v.mul_(b2).addcmul_(g, g, value=1 - b2)
                k = it + 1
                denom = (v / (1 - b2**k)).sqrt_().add_(1e-8)
                w = w - (lr / (1 - b1**k)) * m / denom
            prog.add(len(ids))
            last = it == iters - 1
            if abort_early and it % check == 0 and not last:
                lossd = loss.detach().double()
                stop = lossd > 0.9999 * prev.index_select(0, ids)
                prev.index_copy_(0, ids, lossd)
                if bool(stop.any()):  # one host sync per tenth of the steps
                    steps.index_add_(0, ids[stop], torch.full_like(ids[stop], it + 1))
                    prog.add(int(stop.sum()) * (iters - it - 1))
                    keep = ~stop
                    ids = ids[keep]
                    if not len(ids):
                        break
                    w, m, v, xa0, sg, lam_a = (t[keep] for t in (w, m, v, xa0, sg, lam_a))
            if last:
                steps.index_add_(0, ids, torch.full_like(ids, iters))
        # the binary search on lambda, per image (C&W's rule; x10 / 2 until both bounds are known)
        upper = torch.where(success, torch.minimum(upper, lam), upper)
        lower = torch.where(success, lower, torch.maximum(lower, lam))
        known = upper < 1e9
        lam = torch.where(known, (lower + upper) / 2, lam * 10)
    return best_adv, steps


# ------------------------------------------------------------------------------------ ML-DeepFool


def _jacobian_work(options: Mapping[str, Any], num_labels: int, protocol: str) -> int:
    """ML-DeepFool's and MLA-LP's most passes per image: per step a Jacobian over the C labels (C
    backwards) and the forward that keeps the best iterate."""
    return _positive_int(options["max_iter"], "max_iter") * (int(num_labels) + 1)


@register_method(
    "ml-deepfool",
    title="ML-DeepFool",
    order=70,
    kind=RUNNER,
    work=_jacobian_work,
    description="ML-DeepFool (Song et al.): pseudo-inverse steps on the linearised labels",
)
def ml_deepfool(ctx: MethodContext, *, max_iter: int = 20, overshoot: float = DEEPFOOL_OVERSHOOT) -> RunOutput:
    """ML-DeepFool with up to ``max_iter`` linearisation steps; ``steps`` counts the steps an image took."""
    iters = _positive_int(max_iter, "max_iter")
    eta = float(overshoot)
    if not (math.isfinite(eta) and eta >= 0):
        raise InvalidInput(f"ML-DeepFool's overshoot must be a finite number >= 0, not {overshoot!r}.")
    x0 = ctx.images
    n, c = x0.shape[0], ctx.num_labels
    prog = _Progress(ctx.progress, iters * n)
    best = torch.empty_like(x0)
    steps = torch.zeros(n, dtype=torch.int64, device=x0.device)
    per_image = c * x0[0].numel() * 28  # the Jacobian (model dtype) and its float64 masked copy, the step
    for sl in _image_chunks(n, per_image, ctx, cpu_rows=False):
        best[sl], steps[sl] = _deepfool_chunk(ctx, x0[sl], ctx.target[sl] > 0.5, iters, eta, prog)
    prog.finish()
    adv = _cap(best, x0, ctx.eps, ctx.norm)
    return RunOutput(adv, np.repeat(steps.cpu().numpy()[None], len(ctx.eps), 0))


def _deepfool_chunk(
    ctx: MethodContext, x0: torch.Tensor, t: torch.Tensor, iters: int, eta: float, prog: _Progress
) -> tuple[torch.Tensor, torch.Tensor]:
    n, c = x0.shape[0], ctx.num_labels
    basis = _GridBasis((int(x0.shape[1]), int(x0.shape[2]), int(x0.shape[3])), None, x0.device)
    tau = ctx.threshold
    x = x0.clone()
    best, best_hd = x0.clone(), torch.full((n,), c, device=x0.device, dtype=torch.int64)
    best_l2 = torch.zeros(n, device=x0.device, dtype=torch.float64)
    steps = torch.zeros(n, dtype=torch.int64, device=x0.device)
    ids = torch.arange(n, device=x0.device)

    def keep_best(ids: torch.Tensor, xi: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        hd = _hamming(logits, t[ids].to(logits.dtype), tau)
        l2 = torch.linalg.vector_norm((xi - x0[ids]).flatten(1).double(), 2, dim=1)
        bh, bl = best_hd[ids], best_l2[ids]
        better = (hd < bh) | ((hd == bh) & (l2 < bl))
        best_hd[ids] = torch.where(better, hd, bh)
        best_l2[ids] = torch.where(better, l2, bl)
        best[ids] = torch.where(better.view(-1, *([1] * (x0.dim() - 1))), xi, best[ids])
        return hd

    for _it in range(iters):
        logits, jac = _logit_jacobian(ctx, x[ids], basis)
        hd = keep_best(ids, x[ids], logits)
        go = hd > 0
        prog.add(int(len(ids)))
        ids, logits, jac = ids[go], logits[go], jac[go]
        if not len(ids):
            break
        z = logits.double()
        conf = torch.sigmoid(z)
        slope = torch.exp(-z.abs()) / (1 + torch.exp(-z.abs())) ** 2  # sigma'(z), stable
        violated = (conf >= tau) != t[ids]
        jv = jac.double() * (slope * violated).unsqueeze(-1)  # (n, C, d): rows of violated labels only
        del jac
        rhs = (tau - conf) * violated
        gram = jv @ jv.transpose(1, 2)
        r = (jv.transpose(1, 2) @ (torch.linalg.pinv(gram, hermitian=True) @ rhs.unsqueeze(-1))).squeeze(-1)
        step = ((1 + eta) * r).to(x.dtype).view_as(x[ids])
        x[ids] = (x[ids] + step).clamp_(0, 1)
        steps[ids] += 1
    else:
        if len(ids):  # the last iterate has not been evaluated yet
            with torch.no_grad():
                keep_best(ids, x[ids], ctx.model(x[ids]).float())
    return best, steps


# ------------------------------------------------------------------------------------ MLA-LP


def mla_lp_cost(input_shape: tuple[int, int, int], num_labels: int, basis: int | None = None) -> dict[str, float]:
    """Rough size, memory and time of one MLA-LP iteration for one image (2 CPU cores, measured scale).

    Returns ``variables`` (perturbation coefficients), ``entries`` (C x variables, the dense LP matrix),
    ``memory_bytes`` (the LP's copies in numpy, scipy and HiGHS), ``seconds_per_lp`` (one LP, i.e. about six
    fixed-radius HiGHS solves) and ``jacobian_bytes`` (float32 pixel Jacobian of one image).

    Example:
        >>> cost = mla_lp_cost((3, 448, 448), 80)
        >>> round(cost["entries"] / 1e6, 1), round(cost["memory_bytes"] / 2**30, 1)
        (48.2, 2.2)
    """
    c, h, w = (int(s) for s in input_shape)
    m = c * h * w if basis is None else c * int(basis) ** 2
    entries = float(num_labels) * m
    return {
        "variables": float(m),
        "entries": entries,
        "memory_bytes": entries * _LP_BYTES_PER_ENTRY,
        "seconds_per_lp": _LP_SOLVES * _LP_SECONDS_PER_ENTRY * entries * max(1.0, (m / 12288) ** 0.2),
        "jacobian_bytes": 4.0 * num_labels * c * h * w,
    }


def min_linf_solve(g: np.ndarray, b: np.ndarray, down: np.ndarray, up: np.ndarray, *, tol: float = 1e-9,
                   max_solves: int = 60) -> tuple[np.ndarray | None, float, int]:  # fmt: skip
    """``min ||v||_inf`` subject to ``g v <= b`` and ``-down <= v <= up`` (``down, up >= 0``), with HiGHS.

    Newton's method on ``t(z) = min { max_i (g_i v - b_i) / ||g_i||_1 : |v| <= z, -down <= v <= up }``, a
    convex, non-increasing, piecewise-linear function of the radius z whose root is the optimum. Each
    ``t(z)`` is an LP with only C rows (HiGHS dual simplex, ``scipy.optimize.linprog``); its duals give the
    slope ``-sum_j |(g^T lambda)_j| [z < room_j]``, and Newton's steps approach the root from the left, so
    every iterate is a lower bound and the last one is exact up to ``tol``. Rows with a zero gradient are
    dropped (a linearisation cannot move them). Returns ``(v, z, solves)``, or ``(None, inf, solves)`` when
    no v in the box satisfies the constraints.

    Example (one constraint, closed form ``z = -b / ||g||_1``):
        >>> v, z, _ = min_linf_solve(np.array([[1.0, -2.0]]), np.array([-0.3]), np.ones(2), np.ones(2))
        >>> round(z, 9), v.round(9).tolist()
        (0.1, [-0.1, 0.1])
    """
    from scipy.optimize import linprog

    g = np.asarray(g, np.float64)
    b = np.asarray(b, np.float64)
    down, up = np.asarray(down, np.float64), np.asarray(up, np.float64)
    scale = np.abs(g).sum(1)
    rows = scale > 0
    g, b, scale = g[rows], b[rows], scale[rows]
    m = len(down)
    if not len(b) or (b >= 0).all():
        return np.zeros(m), 0.0, 0
    gn, bn = g / scale[:, None], b / scale
    a_ub = np.hstack([gn, -np.ones((len(bn), 1))])
    cost = np.zeros(m + 1)
    cost[-1] = 1.0
    z_top = float(max(down.max(), up.max()))
    z, solves, v = 0.0, 0, np.zeros(m)
    while solves < max_solves:
        bounds = np.empty((m + 1, 2))
        bounds[:m, 0], bounds[:m, 1] = -np.minimum(down, z), np.minimum(up, z)
        bounds[m] = (-np.inf, np.inf)
        res = linprog(cost, A_ub=a_ub, b_ub=bn, bounds=bounds, method="highs-ds", options={"presolve": False})
        solves += 1
        if res.status != 0:
            return None, math.inf, solves
        v, t = res.x[:m], float(res.fun)
        if t <= tol:
            return v, z, solves
        lam = np.maximum(-res.ineqlin.marginals, 0)
        gl = gn.T @ lam
        room = np.where(gl > 0, down, up)
        slope = float(np.abs(gl)[z < room].sum())
        if z >= z_top or slope <= 0:
            return None, math.inf, solves
        z_new = min(z_top, z + t / slope)
        if z_new <= z * (1 + 1e-12):  # no progress left in floating point: z is the optimum
            return v, z, solves
        z = z_new
    return v, z, solves


@register_method(
    "mla-lp",
    title="MLA-LP",
    order=80,
    kind=RUNNER,
    work=_jacobian_work,
    description="MLA-LP (Zhou et al.): minimal-L-inf linearised steps by linear programming",
)
def mla_lp(
    ctx: MethodContext, *, max_iter: int = 10, basis: int | None = None, max_lp_size: int = LP_MAX_SIZE
) -> RunOutput:
    """MLA-LP with up to ``max_iter`` LP steps; ``basis=g`` perturbs a g x g grid per channel (None: every pixel).

    ``max_lp_size`` caps C x (perturbation dimensions); larger problems raise a ``ValueError`` with an
    estimate of time and memory. ``steps`` counts the LPs an image's attack solved successfully.
    """
    iters = _positive_int(max_iter, "max_iter")
    x0 = ctx.images
    n, c = x0.shape[0], ctx.num_labels
    shape = (int(x0.shape[1]), int(x0.shape[2]), int(x0.shape[3]))
    if basis is not None:
        side = _positive_int(basis, "basis")
        if side > min(shape[1:]):
            raise InvalidInput(f"MLA-LP's basis must be a grid side between 1 and {min(shape[1:])}, not {basis!r}.")
    cost = mla_lp_cost(shape, c, basis)
    if cost["entries"] > int(max_lp_size):
        where = "full resolution" if basis is None else f"a {basis} x {basis} grid"
        raise InvalidInput(
            f"MLA-LP at {where} on {shape[0]}x{shape[1]}x{shape[2]} inputs with {c} labels is too large: its LP has "
            f"{cost['variables']:,.0f} variables and {cost['entries'] / 1e6:.1f} M matrix entries (limit "
            f"max_lp_size={int(max_lp_size):,}), about {cost['memory_bytes'] / 2**30:.1f} GiB of memory and roughly "
            f"{_duration(cost['seconds_per_lp'])} per image per iteration on 2 CPU cores; use a reduced basis "
            f"(e.g. basis=32) or raise max_lp_size."
        )
    grid = _GridBasis(shape, basis, x0.device)
    prog = _Progress(ctx.progress, iters * n)
    best = torch.empty_like(x0)
    steps = np.zeros(n, np.int64)
    per_image = c * (grid.m * 28 + x0[0].numel() * 4)  # Jacobian in the basis (device + float64 host copies)
    for sl in _image_chunks(n, per_image, ctx, cpu_rows=False):
        best[sl], steps[sl] = _mla_lp_chunk(ctx, x0[sl], ctx.target[sl], grid, iters, prog)
    prog.finish()
    adv = _cap(best, x0, ctx.eps, ctx.norm)
    return RunOutput(adv, np.repeat(steps[None], len(ctx.eps), 0))


def _mla_lp_chunk(
    ctx: MethodContext, x0: torch.Tensor, target: torch.Tensor, grid: _GridBasis, iters: int, prog: _Progress
) -> tuple[torch.Tensor, np.ndarray]:
    from scipy.special import expit

    n, c = x0.shape[0], ctx.num_labels
    shape = tuple(int(s) for s in x0.shape[1:])
    dev = x0.device
    down, up = grid.room(x0.double())
    down_np, up_np = down.cpu().numpy(), up.cpu().numpy()
    t_np = (target > 0.5).cpu().numpy()
    sign = (2 * target.double() - 1).cpu().numpy()
    tau = ctx.threshold
    v = np.zeros((n, grid.m))
    level = np.full(n, LP_LEVELS[0])
    prev_hd = np.full(n, c)
    best, best_hd = x0.clone(), np.full(n, c)
    best_linf = np.zeros(n)
    steps = np.zeros(n, np.int64)
    ids = np.arange(n)
    x = x0.clone()

    def keep_best(ids: np.ndarray, logits: torch.Tensor) -> np.ndarray:
        hd = _hamming(logits, target[torch.as_tensor(ids, device=dev)], tau).cpu().numpy()
        linf = np.abs(v[ids]).max(1)
        better = (hd < best_hd[ids]) | ((hd == best_hd[ids]) & (linf < best_linf[ids]))
        best_hd[ids] = np.where(better, hd, best_hd[ids])
        best_linf[ids] = np.where(better, linf, best_linf[ids])
        sel = torch.as_tensor(ids[better], device=dev)
        best[sel] = x[sel]
        out: np.ndarray = hd
        return out

    for it in range(iters):
        ids_t = torch.as_tensor(ids, device=dev)
        logits, jac = _logit_jacobian(ctx, x[ids_t], grid)
        hd = keep_best(ids, logits)
        if it:
            stalled = hd >= prev_hd[ids]
            level[ids] = np.where(stalled, np.maximum(LP_LEVELS[1], level[ids] - LP_LEVELS[2]), level[ids])
        prev_hd[ids] = hd
        prog.add(len(ids))
        go = hd > 0
        ids, logits, jac = ids[go], logits[go], jac[go]
        if not len(ids):
            break
        # BCE against the target and its gradient, from the logits (stable): l = softplus(-s z)
        z = logits.double().cpu().numpy()
        s = sign[ids]
        loss = np.logaddexp(0, -s * z)
        dl = -s * expit(-s * z)  # d l / d z = -s * sigmoid(-s z)
        # float32 gradients: an image's LP is the same whether it is attacked alone or with others
        grads = (jac.float().double().cpu().numpy()) * dl[..., None]
        margin = 0.5 - level[ids]
        conf_level = np.where(t_np[ids], tau + margin[:, None], tau - margin[:, None])
        conf_level = np.clip(conf_level, 1e-6, 1 - 1e-6)
        loss_level = np.where(t_np[ids], -np.log(conf_level), -np.log1p(-conf_level))
        keep = np.ones(len(ids), bool)
        for j, i in enumerate(ids):
            rhs = loss_level[j] - loss[j] + grads[j] @ v[i]
            sol, _z, _ = min_linf_solve(grads[j], rhs, down_np[i], up_np[i])
            if sol is None or np.array_equal(sol, v[i]):
                keep[j] = False  # infeasible (the original gives up on the image) or a fixed point
                continue
            v[i] = sol
            steps[i] += 1
        ids = ids[keep]
        if not len(ids):
            break
        ids_t = torch.as_tensor(ids, device=dev)
        vi = torch.as_tensor(v[ids], device=dev, dtype=torch.float64)
        x[ids_t] = (x0[ids_t].double() + grid.expand(vi).view(-1, *shape)).clamp_(0, 1).to(x.dtype)
    else:
        if len(ids):
            ids_t = torch.as_tensor(ids, device=dev)
            with torch.no_grad():
                keep_best(ids, ctx.model(x[ids_t]).float())
    return best, steps


# ------------------------------------------------------------------------------------ validation


def _positive_int(v: Any, what: str) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer, float)) or v != int(v) or int(v) < 1:
        raise InvalidInput(f"{what} must be a positive integer, not {v!r}.")
    return int(v)


def _positive_float(v: Any, what: str) -> float:
    try:
        f = float(v)
    except (TypeError, ValueError):
        raise InvalidInput(f"{what} must be a positive number, not {v!r}.") from None
    if not (math.isfinite(f) and f > 0):
        raise InvalidInput(f"{what} must be a positive finite number, not {v!r}.")
    return f


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
