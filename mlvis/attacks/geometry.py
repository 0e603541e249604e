"""Budget geometry: step counts, the L2 step length, and appendix C's equal-volume L2 radius."""

from __future__ import annotations

import math

from mlvis.errors import InvalidInput

DEFAULT_ALPHA = 1.0 / 2560.0
"""Section VI-C's fixed step: a tenth of an 8-bit level."""


def n_steps(eps: float, step: float) -> int:
    """Iterations for budget ``eps`` at step length ``step``: ``max(1, floor(eps / step + 1e-9))``.

    The ``1e-9`` absorbs float error when ``eps`` is a multiple of ``step``; the ``max(1, ...)`` means a
    budget below one step still gets one step, which the projection then cuts to ``eps``.
    """
    return max(1, int(math.floor(eps / step + 1e-9)))


def l2_step(alpha: float, dims: int) -> float:
    """The L2 step length matching an L-inf sign step of size ``alpha`` in ``dims`` dimensions.

    A sign step moves every coordinate by ``alpha``, so its L2 length is ``alpha * sqrt(dims)``; the L2
    attack takes steps of that length (appendix B: "steps of the same L2 magnitude"), and
    ``n = floor(eps_l2 / (alpha * sqrt(dims)))`` of them.
    """
    return alpha * math.sqrt(dims)


def equal_volume_l2_radius(eps: float, dims: int) -> float:
    """Radius of the L2 ball whose volume equals the L-inf cube of half-width ``eps`` (appendix C), exactly.

    Solves ``pi^(d/2) / Gamma(d/2 + 1) * r^d = (2 eps)^d`` in log space:
    ``r = 2 eps * exp(lgamma(d/2 + 1) / d) / sqrt(pi)``. For 448 x 448 x 3 this gives ``375.52 * eps``;
    the paper's Stirling evaluation prints 375.73 (it rounds pi*e to 8.53); see :func:`stirling_l2_radius`.

    Example:
        >>> round(equal_volume_l2_radius(1.0, 2), 6)  # pi r^2 = 4
        1.128379
    """
    if not (isinstance(dims, int) and dims >= 1):
        raise InvalidInput(f"dims must be a positive integer, not {dims!r}.")
    if not (math.isfinite(eps) and eps >= 0):
        raise InvalidInput(f"eps must be a finite number >= 0, not {eps!r}.")
    return 2.0 * eps * math.exp(math.lgamma(dims / 2 + 1) / dims) / math.sqrt(math.pi)


def stirling_l2_radius(eps: float, dims: int) -> float:
    """The paper's appendix C formula ``r = sqrt(2 (pi N)^(1/N) N / (pi e)) * eps`` (Stirling's approximation)."""
    n = float(dims)
    return math.sqrt(2 * (math.pi * n) ** (1 / n) * n / (math.pi * math.e)) * eps


def linf_equivalent(radius: float, dims: int) -> float:
    """The L-inf half-width whose cube has the volume of the L2 ball of ``radius`` (the inverse of
    :func:`equal_volume_l2_radius`): what a flip profile, measured in L-inf, is read at for an L2 budget."""
    return float(radius) / equal_volume_l2_radius(1.0, dims)
