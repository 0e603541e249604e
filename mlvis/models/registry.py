"""A timm-style model registry: ``@register_model`` factories, ``list_models``, ``create_model``."""

from __future__ import annotations

import fnmatch
import warnings
from collections.abc import Callable

import torch

from mlvis.models.wrapper import MultiLabelModel

_entrypoints: dict[str, Callable[..., MultiLabelModel]] = {}
_descriptions: dict[str, str] = {}


def register_model(fn: Callable[..., MultiLabelModel] | None = None, *, name: str | None = None):
    """Register a factory under ``name`` (default: the function name with ``_`` -> ``-``).

    The factory takes keyword options and returns a ``MultiLabelModel`` on the CPU; the registry
    moves it to the device, puts it in eval mode and freezes its parameters.
    """

    def deco(f: Callable[..., MultiLabelModel]) -> Callable[..., MultiLabelModel]:
        key = name or f.__name__.replace("_", "-")
        if key in _entrypoints and _entrypoints[key] is not f:
            warnings.warn(f"model {key!r} was registered twice; the later factory wins", stacklevel=2)
        _entrypoints[key] = f
        _descriptions[key] = (f.__doc__ or "").strip().split("\n")[0]
        return f

    return deco(fn) if fn is not None else deco


def list_models(pattern: str = "*") -> list[str]:
    """Registered model names matching an fnmatch ``pattern`` (``"demo-*"``), sorted."""
    _ensure_builtin()
    return sorted(n for n in _entrypoints if fnmatch.fnmatch(n, pattern))


def is_model(name: str) -> bool:
    _ensure_builtin()
    return name in _entrypoints


def model_description(name: str) -> str:
    _ensure_builtin()
    return _descriptions.get(name, "")


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def create_model(name: str, device: str | torch.device | None = None, **kwargs) -> MultiLabelModel:
    """Build a registered model, in eval mode with frozen parameters, on ``device``.

    ``device`` defaults to CUDA when available, else the CPU.

    Example:
        >>> model = create_model("demo-asl")
        >>> model.spec.labels[:2]
        ('red disc', 'blue square')
    """
    _ensure_builtin()
    if name not in _entrypoints:
        known = ", ".join(sorted(_entrypoints)) or "none"
        raise ValueError(f"Unknown model {name!r}. Registered models: {known}.")
    model = _entrypoints[name](**kwargs)
    model.eval().requires_grad_(False)
    return model.to(torch.device(device) if device is not None else default_device())


def _ensure_builtin() -> None:
    # the built-in factories register themselves on import
    import mlvis.models.demo  # noqa: F401
