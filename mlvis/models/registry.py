"""A timm-style model registry: ``@register_model`` factories, ``list_models``, ``create_model``.

Three kinds of names:

- **registered models** (``list_models()``): the embedded demo models, every model card in the models
  folder (``MLVIS_MODELS_DIR``, default ``./models``; see ``mlvis.models.cards``), and factories that
  installed packages add through the ``mlvis.models`` entry-point group;
- **families** (``list_families()``), which need a checkpoint: ``asl-tresnet-m/-l/-xl``,
  ``q2l-r101-448``, ``torchscript``;
- **architectures** ``timm:<arch>`` and ``torchvision:<arch>``, which need a checkpoint too.
"""

from __future__ import annotations

import fnmatch
import inspect
import warnings
from collections.abc import Callable
from pathlib import Path

import torch

from mlvis.errors import InvalidInput, check_device
from mlvis.models.wrapper import MultiLabelModel

_entrypoints: dict[str, Callable[..., MultiLabelModel]] = {}
_descriptions: dict[str, str] = {}
_sources: dict[str, str] = {}


def register_model(
    fn: Callable[..., MultiLabelModel] | None = None, *, name: str | None = None, source: str = "built in"
):
    """Register a factory under ``name`` (default: the function name with ``_`` -> ``-``).

    The factory takes keyword options and returns a ``MultiLabelModel`` on the CPU; the registry
    moves it to the device, puts it in eval mode and freezes its parameters. A factory that accepts
    ``device`` is told the target device (for its memory check).
    """

    def deco(f: Callable[..., MultiLabelModel]) -> Callable[..., MultiLabelModel]:
        key = name or f.__name__.replace("_", "-")
        if key in _entrypoints and _entrypoints[key] is not f:
            warnings.warn(f"model {key!r} was registered twice; the later factory wins", stacklevel=2)
        _entrypoints[key] = f
        _descriptions[key] = (f.__doc__ or "").strip().split("\n")[0]
        _sources[key] = source
        return f

    return deco(fn) if fn is not None else deco


def unregister_model(name: str) -> None:
    """Forget a registered model (a card that was removed from the models folder)."""
    _entrypoints.pop(name, None)
    _descriptions.pop(name, None)
    _sources.pop(name, None)


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


def registered_source(name: str) -> str | None:
    """Who registered ``name`` (``None`` when nobody did), without loading the built-in models first:
    for the card loader, which runs while the registry fills."""
    return _sources.get(name)


def model_source(name: str) -> str:
    """Where a registered model comes from: ``built in``, a card file, or an entry point."""
    _ensure_builtin()
    return _sources.get(name, "")


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def set_deterministic(on: bool = True) -> None:
    """Bit-reproducible kernels where PyTorch has them (cuDNN deterministic, no benchmark autotuning).

    On the CPU every forward of an eval model is already deterministic; on CUDA this trades speed for it.
    """
    import os

    if on:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.backends.cudnn.deterministic = bool(on)
    torch.backends.cudnn.benchmark = not on
    torch.use_deterministic_algorithms(bool(on), warn_only=True)


def _family_builders() -> dict[str, Callable[..., MultiLabelModel]]:
    from functools import partial

    from mlvis.models.asl import build_asl
    from mlvis.models.generic import build_torchscript
    from mlvis.models.q2l import build_q2l

    return {
        "asl-tresnet-m": partial(build_asl, "m"),
        "asl-tresnet-l": partial(build_asl, "l"),
        "asl-tresnet-xl": partial(build_asl, "xl"),
        "q2l-r101-448": build_q2l,
        "torchscript": build_torchscript,
    }


FAMILIES = {
    "asl-tresnet-m": "ASL TResNet-M (Alibaba-MIIL/ASL checkpoints, e.g. MS_COCO_TRresNet_M_224_81.8.pth)",
    "asl-tresnet-l": "ASL TResNet-L (MS-COCO 448, NUS-WIDE 448, and the paper's authors' state_dict files)",
    "asl-tresnet-xl": "ASL TResNet-XL (MS-COCO 640, PASCAL VOC 448)",
    "q2l-r101-448": "Query2Label ResNet-101 at 448 (SlongLiu/query2labels checkpoint.pkl + config_new.json)",
    "torchscript": "a scripted or traced module file (torch.jit.save)",
}
ARCHITECTURE_PREFIXES = ("timm:", "torchvision:")


def list_families() -> list[str]:
    """Families that build a model from a checkpoint (``create_model(family, checkpoint=PATH)``)."""
    return list(FAMILIES)


def builder_for(name: str) -> Callable[..., MultiLabelModel] | None:
    """The builder of a family or ``timm:`` / ``torchvision:`` architecture, ``None`` for other names."""
    if name in FAMILIES:
        return _family_builders()[name]
    for prefix in ARCHITECTURE_PREFIXES:
        if name.startswith(prefix) and len(name) > len(prefix):
            from functools import partial

            from mlvis.models.generic import build_architecture

            return partial(build_architecture, prefix[:-1], name[len(prefix) :])
    return None


def create_model(
    name: str,
    device: str | torch.device | None = None,
    checkpoint: str | Path | None = None,
    **kwargs,
) -> MultiLabelModel:
    """Build a model, in eval mode with frozen parameters, on ``device``.

    ``name`` is a registered model (a demo model, a card in the models folder, a plugin), a family
    (``asl-tresnet-l``, ``q2l-r101-448``, ``torchscript``) or an architecture (``timm:resnet50``,
    ``torchvision:resnet18``); families and architectures need ``checkpoint``. Other keywords are the
    factory's options (for families: ``labels``, ``input_size``, ``threshold``, ``mean``, ``std``, ...;
    ``progress(fraction, sentence)`` is called while a large checkpoint loads).
    ``device`` defaults to CUDA when available, else the CPU.

    Example:
        >>> model = create_model("demo-asl")
        >>> model.spec.labels[:2]
        ('red disc', 'blue square')
        >>> asl = create_model("asl-tresnet-l", checkpoint="models/MS_COCO_TRresNet_L_448_86.6.pth")
    """
    _ensure_builtin()
    if not isinstance(name, str) or not name:
        raise InvalidInput(f"A model name must be a non-empty string, not {name!r}.")
    dev = check_device(device) if device is not None else default_device()
    if checkpoint is not None:
        kwargs["checkpoint"] = checkpoint
    factory = _entrypoints.get(name)
    if factory is None:
        factory = builder_for(name)
        if factory is None:
            known = ", ".join(sorted(_entrypoints)) or "none"
            raise InvalidInput(
                f"Unknown model {name!r}. Registered models: {known}; families (with a checkpoint): "
                f"{', '.join(FAMILIES)}, timm:<arch>, torchvision:<arch>."
            )
        kwargs["device"] = dev
    elif _accepts(factory, "device"):
        kwargs["device"] = dev
    elif "checkpoint" in kwargs and not _accepts(factory, "checkpoint"):
        raise InvalidInput(f"{name} loads its own weights; it takes no checkpoint.")
    if "progress" in kwargs and not _accepts(factory, "progress"):
        kwargs.pop("progress")  # a factory without progress reports (the demo models load in a blink)
    model = factory(**kwargs)
    model.eval().requires_grad_(False)
    return model.to(dev)


def _accepts(fn: Callable, arg: str) -> bool:
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    return arg in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


def _ensure_builtin() -> None:
    # the built-in factories register themselves on import; cards and plugins are synced on every call
    import mlvis.models.demo  # noqa: F401
    from mlvis.models import cards

    cards.sync()
