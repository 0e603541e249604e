"""The loop kernel: the one MI-FGSM loop of the code base (Algorithm 2 with section VI-C's fixed step).

Per row of a chunk (see :mod:`mlvis.attacks.rows`)::

    n     = max(1, floor(eps / alpha + 1e-9))                       # alpha = 1/2560 by default
    g     = 0
    for k in 1..n:
        grad  = d loss(model(x0 + delta), t, w) / d x               # t = 1 - clean prediction
        g     = mu * g + grad / ||grad||_1     (per sample, mu = 1; an all-zero gradient adds 0)
        delta = norm.step(delta, g)                                  # L-inf: -alpha * sign(g); L2: see norms
        delta = clamp to the eps-cube (L-inf) and keep x0 + delta in [0, 1]

With ``clip_once`` (``protocol="authors"``, :mod:`mlvis.attacks.protocol`) the [0, 1] box is left out of the
per-step clamp and of the model's input during the loop; every snapshot is put into the box once, at the end
(as the authors' code does: their Algorithm 2 clips after the loop).

:class:`Chunk` holds one chunk's state and runs one iteration per :meth:`Chunk.step`; the active rows at
step ``k`` are a prefix (rows are sorted by step count, a row whose steps are done leaves without a copy),
found by moving one pointer, so nothing is allocated per step and a job's bookkeeping does not grow with
its step count. :func:`run_table` runs the chunks one after the other (a job, optionally watched by a
:class:`StepHook`: the attack replay's recorder, :mod:`mlvis.analysis.trajectory`); :func:`run_lockstep`
runs them side by side with a :class:`StepHook` that sees the logits every ``every`` steps and may stop the
loop (the profile probe). No Python loop over images, no host synchronisation inside the step loop (a
hook adds its own), no autograd outside it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from mlvis.attacks.export import quantize_8bit_torch
from mlvis.attacks.losses import get_loss
from mlvis.attacks.methods import RunOutput
from mlvis.attacks.model_helpers import activation_bytes, memory_format
from mlvis.attacks.norms import get_norm
from mlvis.attacks.rows import RowTable
from mlvis.errors import InvalidInput

Progress = Callable[[int, int], None]


@dataclasses.dataclass
class StepHook:
    """Watch a lockstep run (:func:`run_lockstep`).

    Attributes:
        every: ``record`` sees the logits at the steps ``k = every, 2 * every, ...`` (and at the last step
            when ``final``); they are the logits of ``x0 + delta`` after ``k`` steps, which the gradient
            forward of iteration ``k`` computes anyway.
        record: ``record(k, rows, logits)`` per chunk: the table rows and their float32 logits ``(r, C)``.
        stop: ``stop(k)`` is asked after every step ``k`` (0-based; and with ``k = n`` after the final
            record); ``True`` ends the loop there.
        final: also record after the last step (one no-grad forward per chunk).
    """

    every: int
    record: Callable[[int, np.ndarray, torch.Tensor], None]
    stop: Callable[[int], bool] = lambda k: False
    final: bool = True

    def wants(self, k: int) -> bool:
        return k > 0 and k % self.every == 0

    # A job's hook (``run_job(..., hook=...)``, :func:`run_table`) also gets these; ``stop`` and ``final`` are
    # the lockstep run's only (a job runs every step, and its final state is its result).

    def begin(self, table: RowTable, image_shape: tuple[int, ...]) -> None:
        """Called once before a job's first step with its row table (``table.col``: each row's ``spec``,
        ``img``, ``eps`` and step count ``n``) and the shape of one image."""

    def wants_images(self, k: int) -> bool:
        """Whether :meth:`images` should see the images at step ``k`` (a step :meth:`wants`)."""
        return False

    def images(self, k: int, rows: np.ndarray, x: torch.Tensor) -> None:
        """The images ``x0 + delta`` after ``k`` steps, clamped to [0, 1]: exactly what the model sees at
        iteration ``k`` (whose logits :attr:`record` gets), for the table rows ``rows``."""


class Chunk:
    """One chunk of loop rows on the device: its inputs, targets, weights, loss terms, perturbation and
    momentum, and the snapshots it owes the results."""

    def __init__(
        self,
        model: torch.nn.Module,
        x: torch.Tensor,
        table: RowTable,
        rows: np.ndarray,
        norm: str,
        autocast: bool,
        fmt: torch.memory_format,
        clip_once: bool = False,
        first: tuple[torch.Tensor, torch.Tensor] | None = None,
    ):
        dev, dtype = x.device, x.dtype
        self.first = first  # (input, logits with graph) of iteration 0's forward, computed by the engine
        col = table.col
        r = len(rows)
        self.model, self.table, self.rows, self.autocast, self.fmt = model, table, rows, autocast, fmt
        self.clip_once = bool(clip_once)
        self.norm = get_norm(norm)
        rows_t = torch.as_tensor(rows, device=dev)
        self.x0 = x.index_select(0, torch.as_tensor(col["img"][rows], device=dev)).contiguous(memory_format=fmt)
        self.target = table.target.index_select(0, rows_t)
        self.weight = table.weight.index_select(0, rows_t)
        view = (r,) + (1,) * (x.dim() - 1)
        self.view = view
        self.eps_v = torch.as_tensor(col["eps"][rows], device=dev, dtype=dtype).view(view)
        self.step_v = torch.as_tensor(col["step"][rows], device=dev, dtype=dtype).view(view)
        loss_ids = col["loss"][rows]
        used = sorted(set(loss_ids.tolist()))
        self.loss_terms = []
        for lid in used:
            name = table.losses[lid]
            info = get_loss(name)
            prm = {m: torch.as_tensor(table.param[f"{name}.{m}"][rows], device=dev, dtype=dtype) for m in info.params}
            mask = None if len(used) == 1 else torch.as_tensor(loss_ids == lid, device=dev, dtype=dtype)
            self.loss_terms.append((info.fn, prm, mask))
        self.n = col["n"][rows]
        self.n_host = self.n.tolist()  # per row, not per step
        self.n_max = int(self.n[0]) if r else 0
        self.m = r  # active rows: those with n > k (a prefix, n sorted descending)

        # snapshots of this chunk, grouped by step count
        local = np.empty(table.num_rows, np.int64)
        local[rows] = np.arange(r)
        sel = table.snapshot_ids(rows)
        self.snap = snap = {c: v[sel] for c, v in table.snap.items()}
        self.s_count = s_count = len(sel)
        self.buf = torch.empty((s_count,) + tuple(x.shape[1:]), device=dev, dtype=dtype).contiguous(memory_format=fmt)
        self.by_step: dict[int, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}
        self.capture: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}  # iteration -> (rows, snapshot positions)
        self.snap_local = snap_local = local[snap["row"]]
        # a snapshot taken before its row's last step is the very image the loop feeds the model at the next
        # iteration (unless the snapshot's projection moved it): its logits come for free (not under autocast)
        self.reusable = reusable = (snap["step"] < self.n[snap_local]) & (not autocast)
        for st in np.unique(snap["step"]):
            pos = np.flatnonzero(snap["step"] == st)
            self.by_step[int(st)] = (
                torch.as_tensor(snap_local[pos], device=dev),
                torch.as_tensor(pos, device=dev),
                torch.as_tensor(snap["eps"][pos], device=dev, dtype=dtype).view((len(pos),) + view[1:]),
            )
            cp = pos[reusable[pos]]
            if len(cp):
                self.capture[int(st)] = (torch.as_tensor(snap_local[cp], device=dev), torch.as_tensor(cp, device=dev))
        self.cap_logits = (
            torch.empty((s_count, table.num_labels), device=dev, dtype=torch.float32) if self.capture else None
        )
        self.unchanged = torch.zeros(s_count, device=dev, dtype=torch.bool)

        self.lo_box = -self.x0
        self.hi_box = 1 - self.x0
        if self.clip_once:  # the ball only; the box once, when a snapshot is taken
            unbounded = torch.full_like(self.x0, math.inf)
            self.lo, self.hi = self.norm.bounds(-unbounded, unbounded, self.eps_v)
        else:
            self.lo, self.hi = self.norm.bounds(self.lo_box, self.hi_box, self.eps_v)
        self.delta = torch.zeros_like(self.x0)
        self.g = torch.zeros_like(self.x0)
        self.tiny = torch.finfo(dtype).tiny
        self.dims = tuple(range(1, x.dim()))
        self.amp: Any = torch.autocast(dev.type, dtype=torch.bfloat16) if autocast else contextlib.nullcontext()

    def active(self, k: int) -> int:
        """The rows still running at iteration ``k`` (``n > k``), by moving one pointer."""
        m = self.m
        while m and self.n_host[m - 1] <= k:
            m -= 1
        self.m = m
        return m

    def step(self, k: int) -> torch.Tensor:
        """Iteration ``k`` (0-based) on the active rows; returns their logits of ``x0 + delta`` before the step."""
        m = self.active(k)
        d = self.delta[:m]
        if k == 0 and self.first is not None:
            xa, logits = self.first  # the clean forward of exactly these rows: x0 + 0 = x0
            self.first = None
        else:
            xa = self.x0[:m] + d
            xa = (xa if self.clip_once else xa.clamp_(0, 1)).requires_grad_(True)
            with torch.enable_grad(), self.amp:
                logits = self.model(xa)
        with torch.enable_grad():
            logits = logits.float() if logits.dtype in (torch.float16, torch.bfloat16) else logits
            loss: torch.Tensor | None = None
            for fn, prm, mask in self.loss_terms:
                per = fn(logits, self.target[:m], self.weight[:m], **{p: v[:m] for p, v in prm.items()})
                term = (per if mask is None else per * mask[:m]).sum()
                loss = term if loss is None else loss + term
            assert loss is not None
            (grad,) = torch.autograd.grad(loss, xa)
        if k in self.capture and self.cap_logits is not None:
            lr, pos = self.capture[k]
            self.cap_logits.index_copy_(0, pos, logits.detach().float().index_select(0, lr))
        gm = self.g[:m]
        gm.addcdiv_(grad, torch.linalg.vector_norm(grad, 1, dim=self.dims, keepdim=True).clamp_min_(self.tiny))
        self.norm.step(d, gm, self.step_v[:m], self.eps_v[:m], self.dims, self.tiny)
        d.clamp_(self.lo[:m], self.hi[:m])
        if k + 1 in self.by_step:
            lr, pos, e = self.by_step[k + 1]
            cur = self.delta.index_select(0, lr)
            proj = self.norm.project(cur, e, self.lo_box.index_select(0, lr), self.hi_box.index_select(0, lr))
            self.buf.index_copy_(0, pos, proj)
            self.unchanged.index_copy_(0, pos, (proj == cur).flatten(1).all(1))
        out: torch.Tensor = logits
        return out

    def current_images(self, k: int) -> torch.Tensor:
        """The active rows' images ``x0 + delta`` at iteration ``k``, as :meth:`step` feeds them to the model."""
        m = self.active(k)
        xa = self.x0[:m] + self.delta[:m]
        return xa if self.clip_once else xa.clamp_(0, 1)

    def current_logits(self) -> torch.Tensor:
        """Logits of every row's current image ``x0 + delta`` (no autograd)."""
        with torch.no_grad():
            logits: torch.Tensor = self.model((self.x0 + self.delta).clamp_(0, 1)).float()
        return logits

    def finish(self, outs: Sequence[dict[str, np.ndarray]]) -> None:
        """Evaluate the snapshots (no autograd) and hand them to the host; one host sync per chunk."""
        dev, dtype, fmt, model = self.x0.device, self.x0.dtype, self.fmt, self.model
        snap, s_count = self.snap, self.s_count
        x0_snap_idx = torch.as_tensor(self.snap_local, device=dev)
        reuse = torch.as_tensor(self.reusable, device=dev) & self.unchanged
        eval_rows = max(1, len(self.rows))
        for a in range(0, s_count, eval_rows):
            sl = slice(a, min(s_count, a + eval_rows))
            clean = self.x0.index_select(0, x0_snap_idx[sl])
            adv = (clean + self.buf[sl]).clamp_(0, 1)
            e = torch.as_tensor(snap["eps"][sl], device=dev, dtype=torch.float64)
            q8 = quantize_8bit_torch(adv, clean, e, self.norm.name)
            with torch.no_grad():
                need = torch.nonzero(~reuse[sl]).flatten()
                cap = self.cap_logits
                logits = cap[sl].clone() if cap is not None else adv.new_empty(len(adv), self.table.num_labels)
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


def run_table(
    model: torch.nn.Module,
    x: torch.Tensor,
    table: RowTable,
    outs: Sequence[dict[str, np.ndarray]],
    budget: int,
    max_batch: int,
    autocast: bool,
    progress: Progress | None,
    hook: StepHook | None = None,
    first: tuple[torch.Tensor, torch.Tensor] | None = None,
    clip_once: bool = False,
) -> None:
    """Run every row of ``table`` (a job): chunk after chunk, each to its last step, then its snapshots.

    ``hook`` (optional) sees every chunk's logits (and images) at the steps it wants, and changes nothing.
    ``first``: the engine's clean forward of ``x`` with its graph; the first chunk's iteration 0 differentiates
    it instead of running the forward again, when that chunk's rows are exactly the images in order.
    ``clip_once``: see the module docstring."""
    table.finish()
    if hook is not None:
        hook.begin(table, tuple(x.shape[1:]))
    img_bytes = x[0].numel() * x.element_size()
    act = activation_bytes(model, x, autocast)
    total = table.total_steps
    done = 0
    fmt = memory_format(model)
    for norm, rows in table.chunks(img_bytes, act, budget, max_batch):
        mine = first is not None and len(rows) == x.shape[0]
        mine = mine and np.array_equal(table.col["img"][rows], np.arange(len(rows)))
        chunk = Chunk(model, x, table, rows, norm, autocast, fmt, clip_once, first if mine else None)
        first = None
        for k in range(chunk.n_max):
            watch = hook is not None and hook.wants(k)
            if watch and hook is not None and hook.wants_images(k):
                hook.images(k, chunk.rows[: chunk.active(k)], chunk.current_images(k).detach())
            logits = chunk.step(k)
            if watch and hook is not None:
                hook.record(k, chunk.rows[: chunk.m], logits.detach())
            done += chunk.m
            if progress is not None:
                progress(done, total)
        chunk.finish(outs)


def run_lockstep(
    model: torch.nn.Module,
    x: torch.Tensor,
    table: RowTable,
    parts: Sequence[np.ndarray],
    hook: StepHook,
    *,
    norm: str = "linf",
    fmt: torch.memory_format | None = None,
    autocast: bool = False,
    clip_once: bool = False,
) -> int:
    """Run the rows of ``table`` cut into ``parts`` side by side, one step of every part at a time, with
    ``hook`` watching; returns the number of steps taken (fewer than the rows' when the hook stops it).

    Every part must hold rows of equal step count. Used by the profile probe, whose stopping rule needs
    every row's flips at the same step. ``autocast``: bf16 autocast of the gradient passes (the hook sees
    their logits, cast to float32; the final record's forward stays in full precision). With ``clip_once``
    the hook sees the logits of the images put into [0, 1] (one extra forward per record, as the authors'
    probe measures), not of the loop's unclipped ones."""
    table.finish()
    fmt = fmt or memory_format(model)
    chunks = [Chunk(model, x, table, np.asarray(p), norm, autocast, fmt, clip_once) for p in parts]
    n_max = max(c.n_max for c in chunks)
    for k in range(n_max):
        for c in chunks:
            seen = c.current_logits() if clip_once and hook.wants(k) else None
            logits = c.step(k)
            if hook.wants(k):
                hook.record(k, c.rows, logits.detach() if seen is None else seen)
        if hook.stop(k):
            return k
    if hook.final:
        for c in chunks:
            hook.record(n_max, c.rows, c.current_logits())
        hook.stop(n_max)
    return n_max


def store_runner(
    model: torch.nn.Module,
    x: torch.Tensor,
    out: RunOutput,
    o: dict[str, np.ndarray],
    eps: np.ndarray,
    norm: str,
    batch: int,
) -> None:
    """Evaluate a runner's adversarial images exactly like loop output (probabilities, 8-bit rounding)."""
    k, n = len(eps), x.shape[0]
    adv = torch.as_tensor(out.adv)
    if tuple(adv.shape) != (k, n) + tuple(x.shape[1:]):
        raise InvalidInput(f"a runner must return adv of shape (K, N, 3, H, W) = {(k, n) + tuple(x.shape[1:])}.")
    steps = np.asarray(out.steps, np.int64)
    if steps.shape != (k, n):
        raise InvalidInput(f"a runner must return steps of shape (K, N) = {(k, n)}.")
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
