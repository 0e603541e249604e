"""Two protocols: the attacks "as the paper says" (mlvis's default) and "as the authors ran it".

The paper's text, mlvis and the authors' public code (erwinvanthiel/CLASS-SLAM) differ in a handful of
places. mlvis's default follows the paper's text where it is clear and correct (and projects every step);
a user reproducing the published numbers needs the code's choices, all of them at once.
``protocol="authors"`` turns every one of them on together:

==================  ===================================================  ===============================================
item                ``"paper"`` (mlvis's default)                        ``"authors"`` (the authors' code)
==================  ===================================================  ===============================================
MI-FGSM clip        [0, 1] after every step (a projection every step)    [0, 1] once, after the loop (Algorithm 2, the
                                                                         code): the model sees unclipped images in it
profile             E = max(BCE, linear) curves; converged at the first  E = the BCE curve alone; converged at the end
convergence         of 3 intervals in a row each below 1 % of the first  of the first interval below 1 % of the first
                    gain                                                 gain
equation 7          p = 1 for eps > eps_max                              p = 1 for eps >= eps_max
CLASS length        min(C, floor(1.66 E))                                min(C, int(1.66 int(E)))
CLASS's Z           normalised by its largest magnitude (pseudo-code)    not normalised (code)
correlations        min-max over the off-diagonal, diagonal 0            min-max over the whole matrix (diagonal kept)
ML-CW preset        ``fast``                                             ``authors``: L-inf distance, 1 binary-search
                                                                         round, lambda 1e5, 1,000 Adam steps (Table VII)
==================  ===================================================  ===============================================

Every function that a difference touches takes ``protocol`` (``"paper"`` or ``"authors"``); ``"paper"`` is
bit-identical to mlvis without the option. See docs/decisions.md ("Two protocols and the correlation budget").
"""

from __future__ import annotations

import dataclasses

from mlvis.errors import InvalidInput

PROTOCOLS = ("paper", "authors")
PROTOCOL_TITLES = {"paper": "as the paper says", "authors": "as the authors ran it"}


@dataclasses.dataclass(frozen=True)
class Protocol:
    """The choices of one protocol (see the module docstring's table).

    Attributes:
        name: ``"paper"`` or ``"authors"``.
        clip_once: MI-FGSM keeps ``x0 + delta`` in [0, 1] only once, after the loop.
        profile_rule: ``"max-patience"`` (E = max of both curves, 3 flat intervals in a row) or
            ``"bce-first"`` (E = the BCE curve, the end of the first flat interval).
        eq7_inclusive: equation 7 gives p = 1 at eps = eps_max too (``>=``).
        class_length: ``"floor"`` (floor(1.66 E)) or ``"int-int"`` (int(1.66 int(E))).
        normalise_z: CLASS's Z is divided by its largest magnitude.
        correlation_scope: ``"off-diagonal"`` or ``"global"`` min-max normalisation of the matrices.
        ml_cw_preset: ML-CW's preset when none is given.
    """

    name: str
    clip_once: bool
    profile_rule: str
    eq7_inclusive: bool
    class_length: str
    normalise_z: bool
    correlation_scope: str
    ml_cw_preset: str


_PROTOCOLS = {
    "paper": Protocol("paper", False, "max-patience", False, "floor", True, "off-diagonal", "fast"),
    "authors": Protocol("authors", True, "bce-first", True, "int-int", False, "global", "authors"),
}


def check_protocol(protocol: object) -> str:
    """``protocol`` itself when it is ``"paper"`` or ``"authors"``; a sentence otherwise."""
    if not isinstance(protocol, str) or protocol not in PROTOCOLS:
        raise InvalidInput(f"Unknown protocol {protocol!r}; known protocols: {', '.join(PROTOCOLS)}.")
    return protocol


def get_protocol(protocol: str | Protocol = "paper") -> Protocol:
    """The :class:`Protocol` named ``protocol`` (or ``protocol`` itself)."""
    if isinstance(protocol, Protocol):
        return protocol
    return _PROTOCOLS[check_protocol(protocol)]
