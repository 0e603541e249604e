"""Multi-label attack losses on logits, registered by name.

Every loss takes ``logits`` ``(N, C)``, targets ``t`` ``(N, C)`` in [0, 1] and optional per-label weights
``w`` (``(C,)`` or ``(N, C)``; default all ones) and returns one loss per sample, ``(N,)``, summed over
labels. The attack *minimises* the loss (it pulls every confidence towards its target).

- ``bce`` (equation 2): ``sum_i w_i * -(t_i ln y_i + (1 - t_i) ln(1 - y_i))`` with ``y = sigmoid(z)``,
  computed as BCE-with-logits so extreme logits give neither ``inf`` nor ``nan``.
- ``linear`` (equation 5, sign typo corrected as in DESIGN.md): ``sum_i w_i * ((1 - t_i) y_i + t_i (1 - y_i))``,
  i.e. ``|t - y|`` for binary targets; ``1 - y`` is computed as ``sigmoid(-z)`` to keep its precision.
- ``slam`` (equation 6): ``p*q * bce + (1 - p*q) * linear`` with ``p`` the expected flip ratio and
  ``q`` (default 0.5) the maximum share of BCE; ``p`` and ``q`` are scalars or one value per sample.

Register another loss with :func:`register_loss`; :func:`list_losses` names them for UIs and the CLI.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import torch
import torch.nn.functional as F

from mlvis.errors import InvalidInput

LossFn = Callable[..., torch.Tensor]


@dataclasses.dataclass(frozen=True)
class LossInfo:
    """A registered loss: its function, the names of its per-sample parameters and their defaults."""

    name: str
    fn: LossFn
    params: tuple[str, ...] = ()
    defaults: tuple[tuple[str, float], ...] = ()
    description: str = ""


_LOSSES: dict[str, LossInfo] = {}


def register_loss(
    name: str, *, params: tuple[str, ...] = (), defaults: dict[str, float] | None = None
) -> Callable[[LossFn], LossFn]:
    """Register ``fn(logits, target, weights=None, **params) -> (N,)`` under ``name``.

    ``params`` are the loss's per-sample parameters (SLAM's ``p`` and ``q``); the engine hands each as a
    tensor ``(N,)``. A later registration under the same name replaces the earlier one.
    """

    def deco(fn: LossFn) -> LossFn:
        doc = (fn.__doc__ or "").strip().split("\n")[0]
        _LOSSES[name] = LossInfo(name, fn, tuple(params), tuple(sorted((defaults or {}).items())), doc)
        return fn

    return deco


def list_losses() -> list[str]:
    """Registered loss names, sorted."""
    return sorted(_LOSSES)


def get_loss(name: str) -> LossInfo:
    """The registered loss ``name``; a ``ValueError`` naming the known ones otherwise."""
    if name not in _LOSSES:
        raise InvalidInput(f"Unknown loss {name!r}; known losses: {', '.join(list_losses())}.")
    return _LOSSES[name]


def _weights(weights: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor | None:
    if weights is None:
        return None
    w = torch.as_tensor(weights, dtype=like.dtype, device=like.device)
    if w.shape != like.shape[-1:] and w.shape != like.shape:
        raise InvalidInput(f"weights must have shape (C,) or (N, C) = {tuple(like.shape)}, not {tuple(w.shape)}.")
    return w


def _per_sample(v: float | torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A scalar or (N,) parameter as a (N, 1) column that broadcasts over labels."""
    t = torch.as_tensor(v, dtype=like.dtype, device=like.device)
    if t.dim() == 0:
        return t
    if t.shape != like.shape[:1]:
        raise InvalidInput(f"a per-sample loss parameter must be a scalar or have shape (N,) = ({like.shape[0]},).")
    return t.unsqueeze(-1)


def _reduce(per_label: torch.Tensor, w: torch.Tensor | None) -> torch.Tensor:
    return (per_label if w is None else per_label * w).sum(-1)


@register_loss("bce")
def bce(logits: torch.Tensor, target: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """Binary cross-entropy (equation 2), per sample, from logits."""
    t = target.to(logits.dtype)
    per_label = F.binary_cross_entropy_with_logits(logits, t, reduction="none")
    return _reduce(per_label, _weights(weights, logits))


@register_loss("linear")
def linear(logits: torch.Tensor, target: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """Linear loss |t - y| (equation 5 with its sign typo corrected), per sample, from logits."""
    t = target.to(logits.dtype)
    per_label = (1 - t) * torch.sigmoid(logits) + t * torch.sigmoid(-logits)
    return _reduce(per_label, _weights(weights, logits))


@register_loss("slam", params=("p", "q"), defaults={"q": 0.5})
def slam(
    logits: torch.Tensor,
    target: torch.Tensor,
    weights: torch.Tensor | None = None,
    p: float | torch.Tensor = 1.0,
    q: float | torch.Tensor = 0.5,
) -> torch.Tensor:
    """SLAM (equation 6): p*q * BCE + (1 - p*q) * linear, per sample, from logits."""
    t = target.to(logits.dtype)
    mix = _per_sample(p, logits) * _per_sample(q, logits)
    per_bce = F.binary_cross_entropy_with_logits(logits, t, reduction="none")
    per_lin = (1 - t) * torch.sigmoid(logits) + t * torch.sigmoid(-logits)
    per_label = mix * per_bce + (1 - mix) * per_lin
    return _reduce(per_label, _weights(weights, logits))
