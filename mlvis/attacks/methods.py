"""The method registry: how an attack method plugs into the one engine.

A method is a function ``fn(ctx, **options)`` registered with :func:`register_method`. Its keyword
parameters are the options it accepts (the engine rejects any other, naming the accepted ones). It
gets a :class:`MethodContext` (the images, clean logits/probabilities/predictions, the maximum-flip
target, the eps list, alpha, norm, a seeded generator, ...) and returns either

- a :class:`LoopPlan`: settings for the shared MI-FGSM loop (loss name, per-label weights, per-sample
  loss parameters, optionally the target). Each array may have a leading eps axis ``K``:
  ``weights`` ``(C,)``, ``(N, C)`` or ``(K, N, C)``; each parameter a scalar, ``(N,)`` or ``(K, N)``;
  ``target`` ``(N, C)`` or ``(K, N, C)``. A plan without any ``K`` axis is *eps-independent*: each image
  runs one trajectory to the largest eps with snapshots at every step count (DESIGN.md's prefix rule).
  A plan with one is *eps-dependent*: each (eps, image) pair is its own row in the batch, with its own
  eps and step count. CLASS, for instance, computes per-(eps, image) label masks from
  ``ctx.clean_probs`` and ``ctx.eps`` and returns ``weights`` of shape ``(K, N, C)``; SLAM with ``p`` per
  eps returns ``params={"p": (K, N)}``.
- a :class:`RunOutput`: the adversarial images ``(K, N, 3, H, W)`` and step counts ``(K, N)`` from the
  method's own runner (ML-CW, ML-DeepFool and MLA-LP are not MI-FGSM); the engine evaluates them
  exactly like loop output (probabilities, flips, 8-bit rounding, norms, PSNR, SSIM).

Example:
    >>> @register_method("bce-top3", description="BCE on the three least confident labels")
    ... def bce_top3(ctx, *, k=3):
    ...     closeness = (ctx.clean_probs - ctx.threshold).abs()
    ...     idx = closeness.topk(k, dim=1, largest=False).indices
    ...     return LoopPlan("bce", weights=torch.zeros_like(closeness).scatter_(1, idx, 1.0))
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch

ArrayLike = Any  # float | sequence | np.ndarray | torch.Tensor


@dataclasses.dataclass(frozen=True)
class MethodContext:
    """What a method sees. Tensors live on ``device``; ``eps`` is a host numpy array ``(K,)``."""

    model: torch.nn.Module
    images: torch.Tensor  # (N, 3, H, W) in [0, 1]
    clean_logits: torch.Tensor  # (N, C)
    clean_probs: torch.Tensor  # (N, C)
    clean_pred: torch.Tensor  # (N, C) bool
    target: torch.Tensor  # (N, C) float, 1 - clean_pred
    eps: np.ndarray  # (K,)
    alpha: float
    norm: str
    threshold: float
    labels: tuple[str, ...]
    generator: torch.Generator  # CPU generator seeded with the job's seed (the same for every spec)
    device: torch.device
    autocast: bool = False
    memory_budget: int = 2**31
    progress: Callable[[int, int], None] | None = None

    @property
    def num_images(self) -> int:
        return int(self.images.shape[0])

    @property
    def num_labels(self) -> int:
        return int(self.clean_logits.shape[1])


@dataclasses.dataclass
class LoopPlan:
    """Settings for the shared MI-FGSM loop (see the module docstring for the accepted shapes)."""

    loss: str = "bce"
    weights: ArrayLike | None = None
    params: Mapping[str, ArrayLike] = dataclasses.field(default_factory=dict)
    target: ArrayLike | None = None


@dataclasses.dataclass
class RunOutput:
    """A method's own runner's result: ``adv (K, N, 3, H, W)`` in [0, 1] and ``steps (K, N)``."""

    adv: torch.Tensor
    steps: np.ndarray


@dataclasses.dataclass(frozen=True)
class MethodInfo:
    name: str
    fn: Callable[..., LoopPlan | RunOutput]
    options: tuple[str, ...]
    required: tuple[str, ...]
    description: str
    defaults: Mapping[str, Any] = dataclasses.field(default_factory=dict)


_METHODS: dict[str, MethodInfo] = {}


def register_method(name: str, *, description: str | None = None):
    """Register ``fn(ctx, **options) -> LoopPlan | RunOutput`` as attack method ``name``.

    The options are ``fn``'s parameters after ``ctx``; those without a default are required. A later
    registration under the same name replaces the earlier one (the plugging issue owns its name).
    """

    def deco(fn: Callable[..., LoopPlan | RunOutput]):
        params = list(inspect.signature(fn).parameters.values())[1:]
        if any(p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL) for p in params):
            raise TypeError("a method must list its options explicitly (no *args / **kwargs).")
        required = tuple(p.name for p in params if p.default is p.empty)
        desc = description if description is not None else (fn.__doc__ or "").strip().split("\n")[0]
        defaults = {p.name: p.default for p in params if p.default is not p.empty}
        _METHODS[name] = MethodInfo(name, fn, tuple(p.name for p in params), required, desc, defaults)
        return fn

    return deco


def list_attacks() -> list[str]:
    """Registered attack method names, sorted."""
    return sorted(_METHODS)


def get_method(name: str) -> MethodInfo:
    """The registered method ``name``; a ``ValueError`` naming the known ones otherwise."""
    if name not in _METHODS:
        raise ValueError(f"Unknown attack method {name!r}; known methods: {', '.join(list_attacks())}.")
    return _METHODS[name]


def method_description(name: str) -> str:
    return get_method(name).description


# ------------------------------------------------------------------------------------ built-ins


@register_method("bce", description="MI-FGSM with binary cross-entropy on all labels (the paper's baseline)")
def _bce(ctx: MethodContext, *, weights: ArrayLike | None = None) -> LoopPlan:
    return LoopPlan("bce", weights=weights)


@register_method("linear", description="MI-FGSM with the linear loss |t - y| (greedy, section IV-D)")
def _linear(ctx: MethodContext, *, weights: ArrayLike | None = None) -> LoopPlan:
    return LoopPlan("linear", weights=weights)


@register_method("slam", description="MI-FGSM with SLAM: p*q * BCE + (1 - p*q) * linear (equation 6)")
def _slam(
    ctx: MethodContext,
    *,
    p: ArrayLike | None = None,
    q: float = 0.5,
    profile: Any = None,
    weights: ArrayLike | None = None,
) -> LoopPlan:
    """SLAM with ``p`` from the model's ``profile`` (equation 7, per eps) or given directly.

    ``p`` is the expected flip ratio E(eps) / C: a scalar, one value per eps ``(K,)`` or per (eps, image)
    ``(K, N)``; ``q`` is the maximum share of BCE. A scalar ``p`` keeps SLAM eps-independent (one
    trajectory for the whole eps list); ``profile`` (a ``FlipProfile``) gives ``p = profile.flip_ratio(eps)``.
    """
    k = len(ctx.eps)
    if (p is None) == (profile is None):
        raise ValueError("slam needs exactly one of p (the expected flip ratio) or profile (a FlipProfile).")
    if profile is not None:
        if not hasattr(profile, "flip_ratio"):
            raise ValueError("slam's profile must be a FlipProfile (see mlvis.profile).")
        if getattr(profile, "labels", ctx.num_labels) != ctx.num_labels:
            raise ValueError(f"The profile is for a model with {profile.labels} labels, not {ctx.num_labels}.")
        p = np.atleast_1d(np.asarray(profile.flip_ratio(ctx.eps), np.float64))
    p_arr = np.asarray(p.detach().cpu() if isinstance(p, torch.Tensor) else p, dtype=np.float64)
    q_val = float(q)
    if not np.isfinite(p_arr).all() or (p_arr < 0).any() or (p_arr > 1).any():
        raise ValueError("slam's p must lie in [0, 1] (it is the expected flip ratio E(eps) / C).")
    if not (np.isfinite(q_val) and 0 <= q_val <= 1):
        raise ValueError(f"slam's q must lie in [0, 1], not {q!r}.")
    if p_arr.ndim == 1:
        if p_arr.shape != (k,):
            raise ValueError(f"slam's p must be a scalar, one value per eps ({k},) or (K, N); got {p_arr.shape}.")
        p_arr = np.repeat(p_arr[:, None], ctx.num_images, axis=1)
    elif p_arr.ndim == 2 and p_arr.shape != (k, ctx.num_images):
        raise ValueError(f"slam's p of shape {p_arr.shape} is not (K, N) = ({k}, {ctx.num_images}).")
    elif p_arr.ndim > 2:
        raise ValueError(f"slam's p must be a scalar, (K,) or (K, N); got shape {p_arr.shape}.")
    return LoopPlan("slam", weights=weights, params={"p": p_arr, "q": q_val})
