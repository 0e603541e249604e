"""The two threat models as small objects (the foolbox pattern): how a step moves, how the ball projects.

Each norm has

- ``step_length(alpha, dims)``: the length of one step (L-inf: ``alpha``; L2: ``alpha * sqrt(dims)``, the L2
  length of a sign step, appendix B);
- ``bounds(lo_box, hi_box, eps)``: the per-coordinate clamp applied after every step (L-inf: the eps-cube
  intersected with the [0, 1] box; L2: the box alone, the ball is enforced by ``step``);
- ``step(delta, g, step, eps, dims, tiny)``: one MI-FGSM step in place on ``delta`` from the momentum ``g``
  (L-inf: ``-step * sign(g)``; L2: ``-step * g / ||g||_2`` then rescale onto the eps-ball);
- ``project(delta, eps, lo_box, hi_box)``: onto the eps-ball and the box (a snapshot at a smaller eps).

Every operation is written exactly as the loop has always run it, so results stay bit-identical.
"""

from __future__ import annotations

import torch

from mlvis.attacks.budget import NORMS, check_norm
from mlvis.attacks.geometry import l2_step


class Linf:
    name = "linf"

    @staticmethod
    def step_length(alpha: float, dims: int) -> float:
        return alpha

    @staticmethod
    def bounds(lo_box: torch.Tensor, hi_box: torch.Tensor, eps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.maximum(lo_box, -eps), torch.minimum(hi_box, eps)

    @staticmethod
    def step(
        delta: torch.Tensor, g: torch.Tensor, step: torch.Tensor, eps: torch.Tensor, dims: tuple[int, ...], tiny: float
    ) -> None:
        delta.addcmul_(g.sign(), step, value=-1)

    @staticmethod
    def project(d: torch.Tensor, eps: torch.Tensor, lo_box: torch.Tensor, hi_box: torch.Tensor) -> torch.Tensor:
        return d.clamp(torch.maximum(lo_box, -eps), torch.minimum(hi_box, eps))


class L2:
    name = "l2"

    @staticmethod
    def step_length(alpha: float, dims: int) -> float:
        return l2_step(alpha, dims)

    @staticmethod
    def bounds(lo_box: torch.Tensor, hi_box: torch.Tensor, eps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return lo_box, hi_box

    @staticmethod
    def step(
        delta: torch.Tensor, g: torch.Tensor, step: torch.Tensor, eps: torch.Tensor, dims: tuple[int, ...], tiny: float
    ) -> None:
        gl2 = torch.linalg.vector_norm(g, 2, dim=dims, keepdim=True).clamp_min_(tiny)
        delta.addcmul_(g, step / gl2, value=-1)
        dl2 = torch.linalg.vector_norm(delta, 2, dim=dims, keepdim=True).clamp_min_(tiny)
        delta.mul_((eps / dl2).clamp_(max=1))

    @staticmethod
    def project(d: torch.Tensor, eps: torch.Tensor, lo_box: torch.Tensor, hi_box: torch.Tensor) -> torch.Tensor:
        dims = tuple(range(1, d.dim()))
        dl2 = torch.linalg.vector_norm(d, 2, dim=dims, keepdim=True).clamp_min(torch.finfo(d.dtype).tiny)
        out: torch.Tensor = (d * (eps / dl2).clamp(max=1)).clamp_(lo_box, hi_box)
        return out


Norm = type[Linf] | type[L2]
_BY_NAME: dict[str, Norm] = {"linf": Linf, "l2": L2}
assert tuple(_BY_NAME) == NORMS


def get_norm(name: str) -> Norm:
    """The norm object for ``"linf"`` or ``"l2"`` (a ``ValueError`` naming them otherwise)."""
    return _BY_NAME[check_norm(name)]
