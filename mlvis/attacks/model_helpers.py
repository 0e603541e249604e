"""What the attack code and the analyses need to know about a model and its inputs (public helpers).

- :func:`check_images`: a validated ``(N, 3, H, W)`` float tensor in [0, 1] (one clear sentence otherwise);
- :func:`model_device`, :func:`work_dtype`, :func:`memory_format`, :func:`threshold`: the device, the
  floating dtype and the memory layout of the model's parameters, and its decision threshold;
- :func:`forward_no_grad`: logits of a batch without autograd, in slices;
- :func:`activation_bytes`, :func:`default_memory_budget`: what the chunking of a job is sized by.
"""

from __future__ import annotations

import contextlib
import weakref
from typing import Any

import numpy as np
import torch

from mlvis.errors import InvalidInput

CPU_MEMORY_BUDGET = 2 * 1024**3
CPU_MAX_BATCH = 128  # CPU throughput per image is flat from ~50 to ~128 rows and worse beyond (cache)


def check_images(images: Any) -> torch.Tensor:
    """``images`` as a detached float tensor ``(N, 3, H, W)`` with values in [0, 1] (a ``(3, H, W)`` image gets N = 1).

    Raises:
        ValueError: with one sentence saying what is wrong (type, shape, dtype, range).
    """
    if isinstance(images, np.ndarray):
        images = torch.from_numpy(images)
    if not isinstance(images, torch.Tensor):
        raise InvalidInput(f"images must be a torch tensor or numpy array, not {type(images).__name__}.")
    x = images.detach()
    if x.dim() == 3:
        x = x.unsqueeze(0)
    if x.dim() != 4 or x.shape[1] != 3 or x.shape[0] == 0:
        shape = tuple(images.shape)
        raise InvalidInput(f"images must have shape (N, 3, H, W) with N >= 1 (or one (3, H, W)), not {shape}.")
    if not x.is_floating_point():
        raise InvalidInput(f"images must be floating point in [0, 1], not {x.dtype} (divide 8-bit images by 255).")
    if not torch.isfinite(x).all() or x.min() < 0 or x.max() > 1:
        raise InvalidInput("images must have finite values in [0, 1] (RGB, NCHW).")
    return x


def model_device(model: torch.nn.Module) -> torch.device:
    """The device of the model (its ``device`` attribute, else its first parameter or buffer; CPU if none)."""
    dev = getattr(model, "device", None)
    if isinstance(dev, torch.device):
        return dev
    for t in list(model.parameters()) + list(model.buffers()):
        return t.device
    return torch.device("cpu")


def same_device(a: torch.device, b: torch.device) -> bool:
    """Whether two devices are the same (``cuda`` and ``cuda:<current>`` are)."""
    if a.type != b.type:
        return False
    if a.type == "cuda":
        ia = a.index if a.index is not None else torch.cuda.current_device()
        ib = b.index if b.index is not None else torch.cuda.current_device()
        return ia == ib
    return True


def work_dtype(model: torch.nn.Module) -> torch.dtype:
    """The dtype attacks work in: the model's first float32/float64 parameter's, else float32."""
    for p in model.parameters():
        if p.is_floating_point() and p.dtype in (torch.float32, torch.float64):
            return p.dtype
    return torch.float32


def memory_format(model: torch.nn.Module) -> torch.memory_format:
    """``channels_last`` when the model's first 2-D convolution weight is stored so, else contiguous."""
    for p in model.parameters():
        if p.dim() == 4 and p.shape[1] > 1 and p.shape[2] * p.shape[3] > 1:
            if p.is_contiguous(memory_format=torch.channels_last) and not p.is_contiguous():
                return torch.channels_last
            return torch.contiguous_format
    return torch.contiguous_format


def threshold(model: torch.nn.Module) -> float:
    """The model's decision threshold (``model.threshold``, else ``model.spec.threshold``, else 0.5)."""
    thr: Any = getattr(model, "threshold", None)
    if thr is None:
        thr = getattr(getattr(model, "spec", None), "threshold", 0.5)
    return float(thr)


def forward_no_grad(model: torch.nn.Module, x: torch.Tensor, batch: int) -> torch.Tensor:
    """float32 logits of ``x`` in slices of ``batch`` rows, without autograd."""
    with torch.no_grad():
        outs = [model(x[a : a + batch]).float() for a in range(0, x.shape[0], batch)]
    return torch.cat(outs)


_ACT_CACHE: weakref.WeakKeyDictionary[torch.nn.Module, dict[tuple[Any, ...], int]] = weakref.WeakKeyDictionary()


def activation_bytes(model: torch.nn.Module, x: torch.Tensor, autocast: bool) -> int:
    """Bytes autograd saves per image in one forward (saved-tensor hooks on batches of 1 and 2), cached."""
    key = (tuple(x.shape[1:]), x.dtype, x.device.type, autocast)
    cache = _ACT_CACHE.setdefault(model, {})
    if key not in cache:
        sizes = []
        amp = torch.autocast(x.device.type, dtype=torch.bfloat16) if autocast else contextlib.nullcontext()
        for b in (1, 2):
            total = [0]

            def pack(t: torch.Tensor, total: list[int] = total) -> torch.Tensor:
                total[0] += t.numel() * t.element_size()
                return t

            xx = x[:1].expand(b, *x.shape[1:]).clone().requires_grad_(True)
            with torch.enable_grad(), torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), amp:
                model(xx)
            sizes.append(total[0])
        cache[key] = int(1.5 * max(sizes[1] - sizes[0], x[0].numel() * x.element_size()))
    return cache[key]


def default_memory_budget(dev: torch.device) -> int:
    """Bytes one chunk of a job may use: 60 % of the free GPU memory, 2 GiB on the CPU."""
    if dev.type == "cuda":
        free, _total = torch.cuda.mem_get_info(dev)
        return int(0.6 * free)
    return CPU_MEMORY_BUDGET
