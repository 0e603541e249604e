"""One error hierarchy: every error mlvis raises on purpose is an :class:`MlvisError` with one sentence.

``MlvisError`` derives from ``ValueError``, so ``except ValueError`` keeps catching everything mlvis refuses.
Front ends catch ``MlvisError`` (the CLI prints the sentence and exits with 2; the app shows it).

- :class:`InvalidInput`: an argument or option a caller gave is of the wrong type or out of range;
  :class:`ProfileMismatch`, one of them: a flip profile of one norm given to an attack in the other;
- :class:`WorkTooLarge`: the work asked for is over the cap on image-steps (:func:`max_image_steps`);
- :class:`ModelLoadError`: a model, checkpoint, card or label list cannot be loaded;
- :class:`DataError`: an image, a batch or a data set cannot be read or used;
- :class:`StorageError`: a file or folder cannot be written where it is meant to go;
- :class:`RunError`: a recipe or a saved run cannot be used.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import math
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

__all__ = [
    "DEFAULT_MAX_IMAGE_STEPS",
    "DataError",
    "InvalidInput",
    "MlvisError",
    "ModelLoadError",
    "ProfileMismatch",
    "RecipeError",
    "StorageError",
    "WorkLedger",
    "WorkTooLarge",
    "check_run_work",
    "max_image_steps",
    "work_scope",
]

DEFAULT_MAX_IMAGE_STEPS = 10**7
"""The default cap on image-steps (one forward + backward of one image) per library call or CLI run: hours
of a ResNet-101 at 448 px on a large GPU, ten times what ``mlvis evaluate`` runs by default (100 images).
Raise it with ``MLVIS_MAX_IMAGE_STEPS``, the ``max_image_steps`` option of :func:`mlvis.attack` /
:func:`mlvis.attacks.run_job`, or ``mlvis COMMAND --max-work N``."""


class MlvisError(ValueError):
    """The base of every error mlvis raises on purpose; its message is one sentence for a person."""


class InvalidInput(MlvisError):
    """An argument or option is of the wrong type or out of its range."""


class ProfileMismatch(InvalidInput):
    """A flip profile measured in one norm was given to an attack in the other (L-inf profile, L2 attack)."""


class WorkTooLarge(MlvisError):
    """The work asked for is over the cap on image-steps; the message names the cap and how to raise it."""


class ModelLoadError(MlvisError):
    """A model, checkpoint, card or label list cannot be loaded."""


class DataError(MlvisError):
    """An image, a batch or a data set cannot be read or used."""


class StorageError(MlvisError):
    """A file or folder cannot be written (or read back) where it is meant to be."""


class RecipeError(MlvisError):
    """A recipe or a saved run cannot be used."""


def max_image_steps(value: object = None) -> int:
    """The cap on image-steps: ``value`` when given, else ``MLVIS_MAX_IMAGE_STEPS``, else the default.

    Raises:
        InvalidInput: when the value (or the variable) is not a positive whole number.
    """
    source = "max_image_steps"
    if value is None:
        env = os.environ.get("MLVIS_MAX_IMAGE_STEPS", "").strip()
        if not env:
            return DEFAULT_MAX_IMAGE_STEPS
        value, source = env, "MLVIS_MAX_IMAGE_STEPS"
    try:
        f = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise InvalidInput(f"{source} must be a positive whole number of image-steps, not {value!r}.") from None
    if isinstance(value, bool) or not (f >= 1 and f < 1e18 and f == int(f)):
        raise InvalidInput(f"{source} must be a positive whole number of image-steps, not {value!r}.")
    return int(f)


def _count(n: int) -> str:
    """An image-step count for a sentence: exact with thousands separators up to a billion, then 3 digits."""
    return f"{int(n):,}" if abs(n) < 10**9 else f"{n:.3g}"


def check_work(steps: int, cap: int, what: str = "This job") -> None:
    """Raise :class:`WorkTooLarge` when ``steps`` image-steps exceed ``cap``, naming both and how to raise it.

    Inside a :func:`work_scope` (a CLI run, an app job) the steps are also charged to the scope's
    :class:`WorkLedger`, so several calls together stay under the scope's cap as well."""
    if steps > cap:
        raise WorkTooLarge(
            f"{what} would run {_count(steps)} image-steps, over the cap of {_count(cap)}; make it smaller (fewer "
            f"images, smaller budgets, a larger step alpha or fewer iterations of a related attack) or raise the cap "
            f"on purpose (max_image_steps=..., MLVIS_MAX_IMAGE_STEPS=... or mlvis --max-work ...)."
        )
    ledger = _LEDGER.get()
    if ledger is not None:
        ledger.charge(steps)


# ------------------------------------------------------------------------ the cap per CLI run or app job


@dataclasses.dataclass
class WorkLedger:
    """The image-steps one CLI run or one app job has started so far, against its cap.

    Every library call checks its own work against the cap (:func:`check_work`); a ledger adds them up, so a
    run of many calls (``mlvis findings``, an app job that attacks then transfers) cannot run the cap
    once per call. ``how`` says how to raise the cap where the run was started (``--max-work N``)."""

    cap: int
    what: str = "This run"
    how: str = "MLVIS_MAX_IMAGE_STEPS=..."
    used: int = 0
    per: str = "run"

    def check(self, steps: int, detail: str = "") -> None:
        """Refuse, before any of it runs, work of ``steps`` image-steps that would take the run over its cap."""
        steps = int(steps)
        if self.used + steps <= self.cap:
            return
        done = f", after the {_count(self.used)} it has run already" if self.used else ""
        detail = f" ({detail})" if detail else ""
        raise WorkTooLarge(
            f"{self.what} would run {_count(self.used + steps)} image-steps in all{detail}{done}, over the cap of "
            f"{_count(self.cap)} per {self.per}; make it smaller (fewer images, methods, budgets or "
            f"iterations, or a larger step alpha) or raise the cap on purpose ({self.how})."
        )

    def charge(self, steps: int) -> None:
        """Check ``steps`` more image-steps (:meth:`check`) and count them as started."""
        self.check(steps)
        self.used += int(steps)


_LEDGER: contextvars.ContextVar[WorkLedger | None] = contextvars.ContextVar("mlvis_work_ledger", default=None)


@contextlib.contextmanager
def work_scope(
    cap: int | None = None, what: str = "This run", how: str = "MLVIS_MAX_IMAGE_STEPS=...", per: str = "run"
) -> Iterator[WorkLedger]:
    """A scope (one CLI run, one app job) whose library calls share one cap on image-steps.

    ``cap`` defaults to :func:`max_image_steps`. Scopes are per thread (a context variable), so two app
    sessions' jobs never share a ledger; a scope inside another charges only the inner one.

    Example:
        >>> with work_scope(10**6, "This mlvis findings run", "--max-work N"):
        ...     mlvis.attack(model, x, "bce", 0.01)  # charged; refused once the run's total would pass 10^6
    """
    ledger = WorkLedger(max_image_steps(cap), what, how, per=per)
    token = _LEDGER.set(ledger)
    try:
        yield ledger
    finally:
        _LEDGER.reset(token)


def check_run_work(steps: int, detail: str = "") -> None:
    """Refuse ``steps`` more image-steps the current :func:`work_scope` cannot take, before any of them run
    (a front end's whole-run count: every method x budget x image of ``mlvis evaluate``). Outside a scope
    it checks against :func:`max_image_steps`. Nothing is charged: the calls that run charge themselves."""
    ledger = _LEDGER.get()
    (ledger or WorkLedger(max_image_steps(), "This job")).check(steps, detail)


def check_number(
    name: str, value: object, lo: float, hi: float, *, whole: bool = False, above: bool = False
) -> float | int:
    """``value`` as a finite number in [lo, hi] (``above``: lo excluded; ``whole``: an int), else a sentence.

    Strings, booleans, NaN, infinities and 2.5 for a whole number are refused, never converted or truncated.
    """
    import numbers

    kind = "whole number" if whole else "number"
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or type(value).__name__ == "bool_":
        raise InvalidInput(f"{name} must be a {kind}, not {value!r}.")
    v = float(value)
    low = "above" if above else "at least"
    if not math.isfinite(v) or v < lo or (above and v == lo) or v > hi:
        raise InvalidInput(f"{name} must be a finite {kind} {low} {lo:g} and at most {hi:g}, not {value!r}.")
    if whole:
        if v != int(v):
            raise InvalidInput(f"{name} must be a whole number, not {value!r}.")
        return int(value)  # type: ignore[call-overload]
    return v


def check_flag(name: str, value: object) -> bool:
    """``value`` as a bool: only True and False (numpy's too); "no" or 1 are refused, never read as True."""
    if isinstance(value, bool) or type(value).__name__ == "bool_":
        return bool(value)
    raise InvalidInput(f"{name} must be True or False, not {value!r}.")


def check_device(device: object) -> torch.device:
    """``device`` as a ``torch.device`` this machine has, else an :class:`InvalidInput` sentence."""
    import torch

    if isinstance(device, torch.device):
        dev = device
    elif isinstance(device, str):
        try:
            dev = torch.device(device)
        except (RuntimeError, ValueError):
            raise InvalidInput(f"device {device!r} is not a device; use 'cpu', 'cuda' or 'cuda:N'.") from None
    else:
        raise InvalidInput(f"device must be a name such as 'cpu' or 'cuda', not {device!r}.")
    if dev.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise InvalidInput(f"device {device} asks for a GPU, but this machine has no usable CUDA GPU; use 'cpu'.")
        if dev.index is not None and dev.index >= count:
            raise InvalidInput(f"device {device}: this machine has {count} CUDA GPU(s), numbered from 0.")
    elif dev.type not in ("cpu", "mps"):
        raise InvalidInput(f"device {device!r} is not supported; use 'cpu' or 'cuda'.")
    return dev
