"""ASL's TResNet-M/L/XL checkpoints (Alibaba-MIIL/ASL) on timm's ``tresnet_*`` (MODELS.md §1).

The official files hold ``{'model': state_dict, 'num_classes', 'idx_to_class'}``; ASL's own training
script writes a bare state dict, and the paper's authors' third-party files ``{'state_dict': ...}``. All
three load here: ``module.`` is stripped, the variant and the number of classes are read from the shapes
and checked against the family, the keys are renamed onto timm's layout and every InPlace-ABN weight is
folded into a batch-norm weight as ``|w| + 1e-5`` (``timm.models.tresnet.checkpoint_filter_fn``), and the
result loads with ``strict=True``. Inputs are RGB in [0, 1], stretched to S×S (bilinear), not normalised.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

from mlvis.errors import ModelLoadError
from mlvis.models.labels import resolve_labels
from mlvis.models.loading import CheckpointError, check_fits_memory, read_checkpoint, state_dict_from, tensor_bytes
from mlvis.models.spec import ModelSpec
from mlvis.models.wrapper import MultiLabelModel

#: variant -> (stem width P, blocks in layer3, default input side)
VARIANTS = {"m": (64, 11, 224), "l": (76, 18, 448), "xl": (83, 24, 448)}
_STEM_KEYS = ("body.conv1.0.weight", "body.conv1.conv.weight")
_TITLE = {"m": "TResNet-M", "l": "TResNet-L", "xl": "TResNet-XL"}


def detect_variant(sd: dict[str, torch.Tensor], name: str) -> str:
    """``"m"``, ``"l"`` or ``"xl"`` from the stem width and the depth of layer 3 (MODELS.md §4, step 3)."""
    stem = next((sd[k] for k in _STEM_KEYS if k in sd), None)
    if stem is None or stem.dim() != 4 or stem.shape[1] != 48:
        raise CheckpointError(
            f"{name} is not an ASL TResNet checkpoint: it has no stem convolution 'body.conv1.0.weight' of 48 inputs."
        )
    blocks = {int(m.group(1)) for k in sd if (m := re.match(r"body\.layer3\.(\d+)\.", k))}
    for variant, (width, depth, _) in VARIANTS.items():
        if stem.shape[0] == width and len(blocks) == depth:
            return variant
    raise CheckpointError(
        f"{name} has a TResNet stem of width {stem.shape[0]} and {len(blocks)} blocks in layer 3, which is none of "
        "TResNet-M (64, 11), -L (76, 18) or -XL (83, 24)."
    )


def size_from_name(name: str) -> int | None:
    """The input side an official file name states (``MS_COCO_TRresNet_L_448_86.6.pth`` -> 448)."""
    m = re.search(r"(?i)t?r?resnet_?(?:m|l|xl)_(\d{3,4})(?:[_.]|$)", name)
    return int(m.group(1)) if m else None


def num_classes(sd: dict[str, torch.Tensor], name: str) -> int:
    if "head.fc.FC.weight" in sd:
        raise CheckpointError(
            f"{name} has the OpenImages bottleneck head (head.fc.FC), which mlvis does not load; use a COCO, "
            "VOC or NUS-WIDE checkpoint."
        )
    w = sd.get("head.fc.weight")
    if w is None or w.dim() != 2:
        raise CheckpointError(f"{name} has no classifier 'head.fc.weight'; it is not an ASL TResNet checkpoint.")
    return int(w.shape[0])


def idx_to_class(obj) -> tuple[str, ...] | None:
    """The official label order: ``obj['idx_to_class']`` sorted by integer key, when present."""
    table = obj.get("idx_to_class") if isinstance(obj, dict) else None
    if not isinstance(table, dict) or not table:
        return None
    try:
        return tuple(str(table[k]) for k in sorted(table, key=lambda k: int(k)))
    except (TypeError, ValueError):
        return tuple(str(v) for v in table.values())


def build_asl(
    variant: str,
    checkpoint: str | Path | None = None,
    *,
    name: str | None = None,
    labels=None,
    input_size=None,
    threshold: float = 0.5,
    device: torch.device | None = None,
    progress=None,
    **card,
) -> MultiLabelModel:
    """An ASL TResNet of ``variant`` (``m``, ``l``, ``xl``) with the weights of ``checkpoint``.

    Args:
        variant: the family's variant; the checkpoint must have its shapes.
        checkpoint: the ``.pth`` file (official, bare, or ``{'state_dict': ...}``).
        name: the registry name to give the model (default ``asl-tresnet-<variant>``).
        labels: label names, a table name (``"coco"``, ``"voc"``, ``"nus-wide"``) or a labels file;
            default the checkpoint's ``idx_to_class``, else the table of its number of classes.
        input_size: the side S (or ``(S, S)``); default from the file name, else 224 (M) / 448 (L, XL).
        threshold: decision threshold on sigmoid confidences (0.5, as the paper's attacks use).
        device: where the model will run (for the memory check).
        progress: ``progress(fraction, sentence)`` while loading.
        **card: more card fields (``source``, ``description``, ``resize``, ``interpolation``, ``card``).
    """
    import timm
    from timm.models.tresnet import checkpoint_filter_fn

    family = f"asl-tresnet-{variant}"
    if variant not in VARIANTS:
        raise ModelLoadError(f"Unknown TResNet variant {variant!r}; use m, l or xl.")
    if checkpoint is None:
        raise CheckpointError(f"{family} needs a checkpoint file: create_model({family!r}, checkpoint=PATH).")
    path = Path(checkpoint)
    report = progress or (lambda *_: None)
    report(0.05, f"Reading {path.name} ...")
    obj = read_checkpoint(path)
    sd = state_dict_from(obj, path.name)
    found = detect_variant(sd, path.name)
    if found != variant:
        raise CheckpointError(
            f"{path.name} is a {_TITLE[found]} checkpoint, not {_TITLE[variant]}; load it as asl-tresnet-{found}."
        )
    n = num_classes(sd, path.name)
    label_names, label_note = resolve_labels(labels, n, from_checkpoint=idx_to_class(obj), what=path.name)
    side = _side(input_size, size_from_name(path.name) or VARIANTS[variant][2], family)
    check_fits_memory(tensor_bytes(sd), device or torch.device("cpu"), f"{_TITLE[variant]} ({path.name})")
    report(0.3, f"Building {_TITLE[variant]} with {n} classes ...")
    net = timm.create_model(f"tresnet_{variant}", pretrained=False, num_classes=n)
    report(0.6, "Loading the weights (strict) ...")
    filtered = dict(checkpoint_filter_fn(sd, net))
    check_shapes(filtered, net.state_dict(), path.name, _TITLE[variant])
    net.load_state_dict(filtered, strict=True)
    notes = card.pop("notes", ())
    spec = ModelSpec(
        name=name or family,
        labels=label_names,
        input_size=(side, side),
        threshold=float(threshold),
        source=card.pop("source", str(path)),
        description=card.pop("description", f"ASL {_TITLE[variant]}, {n} classes, {side}×{side} ({label_note})."),
        resize=card.pop("resize", "stretch"),
        interpolation=card.pop("interpolation", "bilinear"),
        family=family,
        world="photos",
        notes=tuple(notes),
        card={
            "parameters": sum(p.numel() for p in net.parameters()),
            "labels_from": label_note,
            **card.pop("card", {}),
        },
    )
    if card:
        raise ModelLoadError(f"{family} does not take the option(s) {', '.join(sorted(card))}.")
    report(0.9, "Ready.")
    return MultiLabelModel(net, spec)


def _side(input_size, default: int, family: str) -> int:
    if input_size is None:
        return int(default)
    if isinstance(input_size, int):
        h = w = input_size
    else:
        h, w = (int(v) for v in input_size)
    if h != w or h % 32 or h < 32:
        raise ModelLoadError(f"{family} takes a square input whose side is a multiple of 32, not {h}×{w}.")
    return h


def check_shapes(got: dict[str, torch.Tensor], want: dict[str, torch.Tensor], name: str, what: str) -> None:
    """One sentence naming the first mismatches when ``got`` does not fit ``want`` key for key, shape for
    shape (``num_batches_tracked`` may be missing: batch norm fills it)."""
    want = {k: v for k, v in want.items()}
    missing = [k for k in want if k not in got and not k.endswith("num_batches_tracked")]
    extra = [k for k in got if k not in want]
    wrong = [k for k in got if k in want and tuple(got[k].shape) != tuple(want[k].shape)]
    if not (missing or extra or wrong):
        return
    parts = []
    if wrong:
        k = wrong[0]
        parts.append(f"{len(wrong)} shape(s) differ (e.g. {k}: {tuple(got[k].shape)} vs {tuple(want[k].shape)})")
    if missing:
        parts.append(f"{len(missing)} key(s) are missing (e.g. {missing[0]})")
    if extra:
        parts.append(f"{len(extra)} key(s) are unexpected (e.g. {extra[0]})")
    raise CheckpointError(f"{name} does not fit {what}: " + "; ".join(parts) + ".")
