"""The budget of an attack: its norm, its eps values in that norm, and their L-inf equivalents.

A flip profile (section V-C) is measured with L-inf attacks, so SLAM's ``p`` (equation 7) and the subset
length of CLASS and the random subset (section V-B) are read from it at an L-inf budget. Under L2 the
engine's eps is a radius; its L-inf equivalent is the half-width of the cube with the ball's volume
(appendix C, :func:`~mlvis.attacks.geometry.equal_volume_l2_radius`). A :class:`Budget` carries both, so
the library, the CLI and the Lab resolve the profile at the same number for the same settings.

Example:
    >>> b = Budget.from_linf([0.004], "l2", dims=3 * 64 * 64)   # the Lab's way: eps is the L-inf width
    >>> b.eps, b.linf                                           # (radius,), (0.004,)
    >>> Budget.of([0.5], "l2", dims=3 * 64 * 64).linf           # the library's way: eps is the radius
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from mlvis.attacks.geometry import equal_volume_l2_radius, linf_equivalent
from mlvis.errors import InvalidInput

NORMS = ("linf", "l2")
EpsLike = float | Sequence[float] | np.ndarray
"""Budgets as a number, a list or an array (in the attack's norm)."""
NORM_TITLES = {"linf": "L∞", "l2": "L2"}


def check_norm(norm: object) -> str:
    if norm not in NORMS:
        raise InvalidInput(f"Unknown norm {norm!r}; known norms: {', '.join(NORMS)}.")
    return str(norm)


@dataclasses.dataclass(frozen=True)
class Budget:
    """``eps`` ``(K,)`` in the attack's ``norm`` and ``linf`` ``(K,)``, the L-inf equivalents of the same budgets."""

    norm: str
    eps: tuple[float, ...]
    linf: tuple[float, ...]

    def __post_init__(self) -> None:
        check_norm(self.norm)
        if len(self.eps) != len(self.linf) or not self.eps:
            raise InvalidInput("A budget needs one L-inf equivalent per eps, and at least one eps.")

    @classmethod
    def of(cls, eps: float | Sequence[float], norm: str = "linf", dims: int | None = None) -> Budget:
        """Budgets given in ``norm`` (an L2 radius under ``"l2"``; then ``dims``, the values per image, is needed)."""
        values = tuple(float(e) for e in np.atleast_1d(np.asarray(eps, np.float64)))
        if check_norm(norm) == "linf":
            return cls("linf", values, values)
        if dims is None:
            raise InvalidInput("An L2 budget needs the number of values per image (dims) for its L-inf equivalent.")
        return cls("l2", values, tuple(linf_equivalent(e, int(dims)) for e in values))

    @classmethod
    def from_linf(cls, eps: float | Sequence[float], norm: str = "linf", dims: int | None = None) -> Budget:
        """Budgets given as L-inf half-widths; under ``"l2"`` the attack's radius is the equal-volume one."""
        values = tuple(float(e) for e in np.atleast_1d(np.asarray(eps, np.float64)))
        if check_norm(norm) == "linf":
            return cls("linf", values, values)
        if dims is None:
            raise InvalidInput("An L2 budget needs the number of values per image (dims) for its radius.")
        return cls("l2", tuple(equal_volume_l2_radius(e, int(dims)) for e in values), values)

    @property
    def eps_array(self) -> np.ndarray:
        return np.asarray(self.eps, np.float64)

    @property
    def linf_array(self) -> np.ndarray:
        return np.asarray(self.linf, np.float64)
