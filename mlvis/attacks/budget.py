"""The budget of an attack: its norm, its eps values in that norm, and their L-inf equivalents.

A flip profile (section V-C) knows the norm it was measured in. SLAM's ``p`` (equation 7) and the subset
length of CLASS and the random subset (section V-B) are read from the profile *of the attack's norm*, at
the attack's own budgets (:meth:`Budget.for_profile`): an L-inf profile at the L-inf eps, an L2 profile
at the L2 radius. A profile of the other norm is refused (:class:`~mlvis.errors.ProfileMismatch`).

Under L2 a budget also has an L-inf equivalent, the half-width of the cube with the ball's volume
(appendix C, :func:`~mlvis.attacks.geometry.equal_volume_l2_radius`): the Lab's eps control is that width
(:meth:`Budget.from_linf` gives the radius), and results report it; no profile is read there any more.

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


def check_profile_norm(profile: object, norm: str) -> None:
    """A :class:`~mlvis.errors.ProfileMismatch` sentence unless ``profile`` was measured in ``norm``.

    E(eps) in one norm says nothing exact about budgets in the other, so a mismatch is refused, never
    converted. A profile object that does not say its norm is an L-inf one (profiles before issue 12).
    """
    from mlvis.errors import ProfileMismatch

    have = str(getattr(profile, "norm", "linf"))
    if have != norm:
        want = NORM_TITLES.get(norm, norm)
        raise ProfileMismatch(
            f"This is an {NORM_TITLES.get(have, have)} flip profile, but the attack is {want}; give the model's "
            f"{want} profile (mlvis.profile(model, norm={norm!r}), computed by `mlvis profile --norm {norm}`)."
        )


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

    def for_profile(self, profile: object) -> np.ndarray:
        """The budgets ``(K,)`` at which ``profile`` is read: ``eps`` itself, once the profile is checked to
        be of this budget's norm (:func:`check_profile_norm`)."""
        check_profile_norm(profile, self.norm)
        return self.eps_array

    @property
    def eps_array(self) -> np.ndarray:
        return np.asarray(self.eps, np.float64)

    @property
    def linf_array(self) -> np.ndarray:
        return np.asarray(self.linf, np.float64)
