"""A loss with a numeric parameter and its method, registered from outside the package (issue 9).

Importing this module is all a plugin does: the Lab, the sweep, ``mlvis evaluate --methods`` and the cost
estimates then know the method from the registry alone.
"""

from __future__ import annotations

import torch

from mlvis.attacks import LoopPlan, MethodContext, Option, register_loss, register_method

MARGIN = Option(
    "margin", float, 0.0, 5.0, 1.0, step=0.25, symbol="margin",
    help="How far past the threshold (in logits) each label is pushed.",
)  # fmt: skip


@register_loss("hinge", params=("margin",), defaults={"margin": 1.0})
def hinge(logits: torch.Tensor, target: torch.Tensor, weights=None, margin=1.0) -> torch.Tensor:
    """Hinge on the logits: max(0, margin - (2t - 1) z), summed over labels, per sample."""
    m = torch.as_tensor(margin, dtype=logits.dtype, device=logits.device)
    m = m.unsqueeze(-1) if m.dim() else m
    per_label = torch.relu(m - (2 * target.to(logits.dtype) - 1) * logits)
    return (per_label if weights is None else per_label * weights).sum(-1)


@register_method("hinge", title="Hinge", description="MI-FGSM with a hinge on the logits", exposed=(MARGIN,))
def hinge_method(ctx: MethodContext, *, margin: float = 1.0, weights=None) -> LoopPlan:
    return LoopPlan("hinge", weights=weights, params={"margin": float(margin)})
