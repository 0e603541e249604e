"""Any timm or torchvision architecture with a multi-label head of C outputs, and TorchScript files.

``timm:<arch>`` and ``torchvision:<arch>`` build the architecture with ``num_classes = C`` (C from the
labels, else from the checkpoint's classifier) and load a state dict (safetensors or a weights-only
``.pth``; ``model`` / ``state_dict`` containers and ``module.`` prefixes are accepted) with
``strict=True``. The input size, mean/std and interpolation default to the architecture's own (timm's
``pretrained_cfg``; ImageNet at 224 for torchvision). ``torchscript`` loads a scripted or traced module.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from mlvis.errors import ModelLoadError
from mlvis.models.labels import load_labels, resolve_labels
from mlvis.models.loading import (
    CheckpointError,
    check_fits_memory,
    is_torchscript,
    open_model_file,
    read_checkpoint,
    state_dict_from,
    tensor_bytes,
)
from mlvis.models.spec import ModelSpec
from mlvis.models.wrapper import MultiLabelModel

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_CLASSIFIER_SUFFIXES = (
    "fc.weight", "classifier.weight", "head.fc.weight", "head.weight", "classifier.1.weight", "classifier.3.weight",
    "classifier.6.weight", "heads.head.weight", "last_linear.weight",
)  # fmt: skip


def _classifier_outputs(sd: dict[str, torch.Tensor], key: str | None = None) -> int | None:
    if key and f"{key}.weight" in sd:
        return int(sd[f"{key}.weight"].shape[0])
    for suffix in _CLASSIFIER_SUFFIXES:
        if suffix in sd and sd[suffix].dim() >= 2:
            return int(sd[suffix].shape[0])
    return None


def _size(input_size, default) -> tuple[int, int]:
    if input_size is None:
        return tuple(int(v) for v in default)  # type: ignore[return-value]
    if isinstance(input_size, int):
        return (input_size, input_size)
    h, w = (int(v) for v in input_size)
    if h < 8 or w < 8:
        raise ModelLoadError(f"input_size must be at least 8×8, not {h}×{w}.")
    return (h, w)


def _spec(name, family, labels, size, mean, std, threshold, source, card, cfg_interp, extra) -> ModelSpec:
    return ModelSpec(
        name=name,
        labels=labels,
        input_size=size,
        mean=tuple(float(v) for v in mean),  # type: ignore[arg-type]
        std=tuple(float(v) for v in std),  # type: ignore[arg-type]
        threshold=float(threshold),
        source=card.pop("source", source),
        description=card.pop("description", f"{family}, {len(labels)} labels, {size[1]}×{size[0]}."),
        resize=card.pop("resize", "crop"),
        interpolation=card.pop("interpolation", cfg_interp),
        family=family,
        world=card.pop("world", "photos"),
        notes=tuple(card.pop("notes", ())),
        card={**extra, **card.pop("card", {})},
    )


def build_architecture(
    library: str,
    arch: str,
    checkpoint: str | Path | None = None,
    *,
    name: str | None = None,
    labels=None,
    input_size=None,
    mean=None,
    std=None,
    threshold: float = 0.5,
    device: torch.device | None = None,
    progress=None,
    **card,
) -> MultiLabelModel:
    """``timm:<arch>`` or ``torchvision:<arch>`` with a head of C outputs and the weights of ``checkpoint``.

    Args:
        library: ``"timm"`` or ``"torchvision"``.
        arch: the architecture name in that library (``resnet50``, ``mobilenetv3_small_050``, ...).
        checkpoint: a state dict file; ``None`` keeps random weights only when ``random_weights=True``
            is in the card (tests and benchmarks).
        labels: label names, a table name or a labels file; their count sets C. Default: C from the
            checkpoint's classifier and names ``label 0 .. label C-1``.
        input_size, mean, std: default the architecture's own.
        threshold: decision threshold on sigmoid confidences.
    """
    family = f"{library}:{arch}"
    report = progress or (lambda *_: None)
    random_weights = bool(card.pop("random_weights", False))
    sd = None
    path = Path(checkpoint) if checkpoint is not None else None
    if path is not None:
        report(0.05, f"Reading {path.name} ...")
        sd = state_dict_from(read_checkpoint(path), path.name)
    elif not random_weights:
        raise CheckpointError(f"{family} needs a checkpoint file: create_model({family!r}, checkpoint=PATH).")
    if library == "timm":
        import timm

        if not timm.is_model(arch):
            raise ModelLoadError(
                f"timm has no architecture {arch!r}; `timm.list_models('{arch[:4]}*')` lists similar ones."
            )
        pretrained = timm.get_pretrained_cfg(arch)
        cfg: dict[str, Any] = pretrained.to_dict() if pretrained is not None else {}
        default_size, interp = tuple(cfg.get("input_size", (3, 224, 224))[1:]), cfg.get("interpolation", "bicubic")
        default_mean, default_std = cfg.get("mean", IMAGENET_MEAN), cfg.get("std", IMAGENET_STD)
        classifier = cfg.get("classifier")
    elif library == "torchvision":
        import torchvision

        if arch not in torchvision.models.list_models(module=torchvision.models):
            raise ModelLoadError(f"torchvision has no classification architecture {arch!r}.")
        default_size, interp, default_mean, default_std, classifier = (
            (224, 224),
            "bilinear",
            IMAGENET_MEAN,
            IMAGENET_STD,
            None,
        )
    else:
        raise ModelLoadError(f"Unknown architecture library {library!r}; use timm:<arch> or torchvision:<arch>.")
    count = _classifier_outputs(sd, classifier) if sd is not None else None
    if count is None:
        if labels is None:
            raise CheckpointError(f"{family}: the number of outputs is unknown; give the labels.")
        count = len(load_labels(labels))
    if labels is None:
        label_names, note = tuple(f"label {i}" for i in range(count)), "no label names were given"
    else:
        label_names, note = resolve_labels(labels, count, what=path.name if path else family)
    if sd is not None:
        check_fits_memory(tensor_bytes(sd), device or torch.device("cpu"), f"{family} ({path.name})")  # type: ignore[union-attr]
    report(0.3, f"Building {family} with {count} outputs ...")
    if library == "timm":
        net = timm.create_model(arch, pretrained=False, num_classes=count)
    else:
        net = torchvision.models.get_model(arch, weights=None, num_classes=count)
    if sd is not None:
        report(0.6, "Loading the weights (strict) ...")
        from mlvis.models.asl import check_shapes

        check_shapes(sd, net.state_dict(), path.name, f"{family} with {count} outputs")  # type: ignore[union-attr]
        net.load_state_dict(sd, strict=True)
    size = _size(input_size, default_size)
    spec = _spec(
        name or family, family, label_names, size, default_mean if mean is None else mean,
        default_std if std is None else std, threshold, str(path) if path else "random weights", card, interp,
        {"parameters": sum(p.numel() for p in net.parameters()), "labels_from": note},
    )  # fmt: skip
    if card:
        raise ModelLoadError(f"{family} does not take the option(s) {', '.join(sorted(card))}.")
    report(0.9, "Ready.")
    return MultiLabelModel(net, spec)


def build_torchscript(
    checkpoint: str | Path | None = None,
    *,
    name: str | None = None,
    labels=None,
    input_size=None,
    mean=(0.0, 0.0, 0.0),
    std=(1.0, 1.0, 1.0),
    threshold: float = 0.5,
    device: torch.device | None = None,
    progress=None,
    **card,
) -> MultiLabelModel:
    """A scripted or traced module file (``torch.jit.save``): images -> logits ``(N, C)``.

    ``input_size`` is required (a TorchScript file does not record it); C is read from one forward pass
    of a blank image and checked against the labels. ``mean``/``std`` are applied by the wrapper (default
    none: the module is assumed to take [0, 1] pixels).
    """
    if checkpoint is None:
        raise CheckpointError("torchscript needs a checkpoint file: create_model('torchscript', checkpoint=PATH).")
    path = Path(checkpoint)
    try:
        opened = open_model_file(path)  # sniffed and loaded from this one opening
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        raise FileNotFoundError(f"There is no TorchScript file at {path}.") from None
    except OSError as exc:
        raise CheckpointError(f"{path.name} cannot be opened ({exc.strerror or exc}).") from None
    with opened as f:
        if not is_torchscript(f):
            raise CheckpointError(f"{path.name} is not a TorchScript archive (torch.jit.save writes one).")
        if input_size is None:
            raise ModelLoadError(
                f"{path.name}: a TorchScript model needs input_size=(H, W); the file does not record it."
            )
        size = _size(input_size, None)
        report = progress or (lambda *_: None)
        report(0.2, f"Reading {path.name} ...")
        try:
            net = torch.jit.load(f.path if f.path else f.start(), map_location="cpu")
        except (RuntimeError, ValueError) as exc:
            first = f.named(str(exc).splitlines()[0])
            raise CheckpointError(f"{path.name} could not be loaded as TorchScript ({first}).") from None
    net.eval()
    check_fits_memory(tensor_bytes(dict(net.state_dict())), device or torch.device("cpu"), f"TorchScript ({path.name})")
    with torch.no_grad():
        try:
            out = net(torch.zeros(1, 3, *size))
        except Exception as exc:  # a scripted module raises whatever its code raises
            raise CheckpointError(
                f"{path.name} failed on a 1×3×{size[0]}×{size[1]} input ({str(exc).splitlines()[0]})."
            ) from None
    if not isinstance(out, torch.Tensor) or out.dim() != 2:
        raise CheckpointError(
            f"{path.name} must return logits of shape (N, C), not {getattr(out, 'shape', type(out))}."
        )
    count = int(out.shape[1])
    if labels is None:
        label_names, note = tuple(f"label {i}" for i in range(count)), "no label names were given"
    else:
        label_names, note = resolve_labels(labels, count, what=path.name)
    params = sum(p.numel() for p in net.parameters())
    spec = _spec(name or "torchscript", "torchscript", label_names, size, mean, std, threshold, str(path), card,
                 "bilinear", {"parameters": params, "labels_from": note})  # fmt: skip
    if card:
        raise ModelLoadError(f"torchscript does not take the option(s) {', '.join(sorted(card))}.")
    report(0.9, "Ready.")
    return MultiLabelModel(net, spec)
