"""Label-name tables of the datasets the paper's models were trained on, in their output order.

From MODELS.md §1.10 / §2.7: MS-COCO 2014 in increasing category-id order (the 80 used ids), PASCAL VOC
2007 in its standard alphabetical order, NUS-WIDE's 81 concepts in alphabetical order (the order ASL's
loader builds from ``nus_wid_data.csv``; an official checkpoint's own ``idx_to_class`` wins over it).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from mlvis.errors import ModelLoadError

COCO80 = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "traffic light",
    "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep", "cow",
    "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella", "handbag", "tie", "suitcase", "frisbee",
    "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove", "skateboard", "surfboard",
    "tennis racket", "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple",
    "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch",
    "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard",
    "cell phone", "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors",
    "teddy bear", "hair drier", "toothbrush",
)  # fmt: skip

VOC20 = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow", "diningtable",
    "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)  # fmt: skip

NUSWIDE81 = (
    "airport", "animal", "beach", "bear", "birds", "boats", "book", "bridge", "buildings", "cars", "castle",
    "cat", "cityscape", "clouds", "computer", "coral", "cow", "dancing", "dog", "earthquake", "elk", "fire",
    "fish", "flags", "flowers", "food", "fox", "frost", "garden", "glacier", "grass", "harbor", "horses",
    "house", "lake", "leaf", "map", "military", "moon", "mountain", "nighttime", "ocean", "person", "plane",
    "plants", "police", "protest", "railroad", "rainbow", "reflection", "road", "rocks", "running", "sand",
    "sign", "sky", "snow", "soccer", "sports", "statue", "street", "sun", "sunset", "surf", "swimmers",
    "tattoo", "temple", "tiger", "tower", "town", "toy", "train", "tree", "valley", "vehicle", "water",
    "waterfall", "wedding", "whales", "window", "zebra",
)  # fmt: skip

#: the fallback label order by number of classes (when a checkpoint names none)
BY_COUNT = {80: ("MS-COCO", COCO80), 20: ("PASCAL VOC", VOC20), 81: ("NUS-WIDE", NUSWIDE81)}
TABLES = {"coco": COCO80, "voc": VOC20, "nus-wide": NUSWIDE81}


class LabelsError(ModelLoadError):
    """Labels that cannot be used; the message is one sentence."""


def read_labels_file(path: str | Path) -> tuple[str, ...]:
    """Labels from a text file (one per line, blank lines ignored) or a JSON list of strings."""
    from mlvis.models.loading import read_text

    path = Path(path)
    try:
        text = read_text(path)  # in a card's folder: without following links
    except (OSError, UnicodeDecodeError) as exc:
        raise LabelsError(f"The labels file {path.name} cannot be read ({exc}).") from None
    return parse_labels(text, path.name)


def parse_labels(text: str, name: str = "labels") -> tuple[str, ...]:
    """Labels from the text of a labels file: a JSON list of strings, or one label per line."""
    stripped = text.strip()
    if stripped.startswith("["):
        try:
            data = json.loads(stripped)
        except ValueError:
            raise LabelsError(f"{name} starts like a JSON list but is not valid JSON.") from None
        if not all(isinstance(v, str) for v in data):
            raise LabelsError(f"{name} must be a JSON list of strings.")
        labels = tuple(v.strip() for v in data)
    else:
        labels = tuple(line.strip() for line in text.splitlines() if line.strip())
    return check_labels(labels, name)


def check_labels(labels: Sequence[str], name: str = "labels") -> tuple[str, ...]:
    labels = tuple(str(v) for v in labels)
    if not labels:
        raise LabelsError(f"{name} holds no labels.")
    if any(not v.strip() for v in labels):
        raise LabelsError(f"{name} has an empty label.")
    dupes = sorted({v for v in labels if labels.count(v) > 1})
    if dupes:
        raise LabelsError(f"{name} names {dupes[0]!r} more than once; every label must be unique.")
    return labels


def load_labels(labels) -> tuple[str, ...]:
    """Label names from a list, a table name (``"coco"``, ``"voc"``, ``"nus-wide"``) or a labels file."""
    if isinstance(labels, str) and labels.lower() in TABLES:
        return TABLES[labels.lower()]
    if isinstance(labels, (str, Path)):
        return read_labels_file(labels)
    return check_labels(labels)


def resolve_labels(labels, count: int, *, from_checkpoint: Sequence[str] | None = None, what: str = "the model"):
    """The label names of a head with ``count`` outputs: ``labels`` (a list, a table name such as
    ``"coco"``, or a labels file path), else ``from_checkpoint``, else the table of that size.

    Returns ``(labels, note)``; ``note`` says where they came from. Raises :class:`LabelsError` when the
    count differs from the head's or when nothing names them.
    """
    if labels is not None:
        if isinstance(labels, str) and labels.lower() in TABLES:
            out, note = TABLES[labels.lower()], f"labels: the {labels} table"
        elif isinstance(labels, (str, Path)):
            out, note = read_labels_file(labels), f"labels from {Path(labels).name}"
        else:
            out, note = check_labels(labels), "labels given"
    elif from_checkpoint:
        out, note = check_labels(from_checkpoint, "the checkpoint's idx_to_class"), "labels from the checkpoint"
    elif count in BY_COUNT:
        dataset, out = BY_COUNT[count]
        note = f"labels: the {dataset} order ({count} classes), as the checkpoint names none"
    else:
        raise LabelsError(f"{what} has {count} outputs and no label names; give a labels file with {count} lines.")
    if len(out) != count:
        raise LabelsError(f"{len(out)} labels were given but {what} has {count} outputs; they must match.")
    return tuple(out), note
