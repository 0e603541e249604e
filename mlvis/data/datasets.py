"""Real datasets in their official folder layouts, read lazily and matched to a model by label name.

Four kinds, each a local folder (nothing is downloaded)::

    coco     COCO 2014: annotations/instances_val2014.json (or instances_val2014.json) + val2014/
    voc      PASCAL VOC2007: JPEGImages/, Annotations/*.xml, ImageSets/Main/<split>.txt
             (the folder itself, or VOC2007/, VOCdevkit/VOC2007/ or VOCtest|VOCtrainval/VOCdevkit/VOC2007 in it);
             a VOC-layout folder with classes of its own lists them in labels.txt (one a line) beside
             JPEGImages/, and an image may be JPEGImages/<id>.png where no <id>.jpg exists (lossless)
    nuswide  NUS-WIDE as ASL provides it: nus_wid_data.csv (filename, label, split_name) + the images
    folder   any folder of PNG / JPEG / WebP images, with an optional labels.csv

Usage::

    ds = open_dataset("coco", "/data/coco2014")              # the paper's evaluation split (val2014)
    ds = open_dataset("folder:/data/my-photos")              # the CLI's KIND:PATH form
    ds = ds.align(model.labels).sample(100, seed=0)          # labels by name; 100 seeded images
    x = ds.load_for(model, range(10))                        # (10, 3, H, W) through the model card's resize rule
    stats = ds.statistics()                                  # label frequencies and co-occurrence (Fig. 5a)

A :class:`Dataset` holds only names, relative file paths and the ``(N, C)`` multi-hot ground truth;
images are read from disk when asked for, a batch at a time. Every file it reads lies inside the
dataset folder (no ``..``, no link that leads outside), and the dataset folder itself must lie inside
the configured data root when one is set (the ``root`` argument or ``$MLVIS_DATA_ROOT``).

Every problem is a :class:`DatasetError` (a ``ValueError``) whose message is one sentence.
"""

from __future__ import annotations

import ast
import contextlib
import csv
import dataclasses
import hashlib
import inspect
import io
import json
import os
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from mlvis.data.images import EXTENSIONS, MAX_BYTES, load_image
from mlvis.data.stats import SceneStatistics
from mlvis.errors import DataError

KINDS = ("coco", "voc", "nuswide", "folder")
#: the split each kind is evaluated on by default: the paper's "test/validation dataset" (section VI-C)
PAPER_SPLITS = {"coco": "val2014", "voc": "test", "nuswide": "val", "folder": "all"}
#: the paper's number of evaluation images per model and dataset (section VI-C, Algorithm 1's n)
PAPER_SAMPLE = 100
VOC_LABELS = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)  # fmt: skip
LABELS_CSV = "labels.csv"
VOC_CLASSES = "labels.txt"  # a VOC-layout folder's own class list (without it: VOC2007's 20 classes)
NUSWIDE_CSV = "nus_wid_data.csv"
DATA_ROOT_ENV = "MLVIS_DATA_ROOT"
_MAX_XML_BYTES = 1 << 20
_IMAGE_SUFFIXES = tuple(f".{e}" for e in EXTENSIONS)


class DatasetError(DataError):
    """A dataset folder that cannot be used; the message is a sentence for people."""


# ------------------------------------------------------------------------------------ the dataset


@dataclasses.dataclass(frozen=True, eq=False)
class Dataset:
    """Images of one split of a dataset folder, with their ground truth.

    Attributes:
        kind: ``"coco"``, ``"voc"``, ``"nuswide"`` or ``"folder"``.
        root: the resolved dataset folder; every file lies inside it.
        split: the split read (``"val2014"``, ``"test"``, ``"val"``, ``"all"`` ...).
        labels: label names, in the order of ``truth``'s columns (the dataset's own order until
            :meth:`align` puts them in a model's order).
        ids: one id per image (COCO image id, VOC image id, file path for the others).
        files: each image's path relative to ``root`` (POSIX form).
        truth: ``(N, C)`` uint8 multi-hot ground truth, or ``None`` for an unlabelled folder.
        selection: how these images were chosen from the split (JSON-serialisable; goes in manifests).
        open_labels: ``True`` when the label list is only the names seen in the annotations (NUS-WIDE's
            CSV, a labels CSV in long form): a model label that never occurs is then absent from every
            image rather than a mismatch.
    """

    kind: str
    root: Path
    split: str
    labels: tuple[str, ...]
    ids: tuple[str, ...]
    files: tuple[str, ...]
    truth: np.ndarray | None
    selection: tuple[tuple[tuple[str, Any], ...], ...] = ()
    open_labels: bool = False

    def __len__(self) -> int:
        return len(self.ids)

    def __repr__(self) -> str:
        return f"Dataset({self.kind}:{self.root} split={self.split!r}, {len(self)} images, {len(self.labels)} labels)"

    @property
    def num_labels(self) -> int:
        return len(self.labels)

    @property
    def has_truth(self) -> bool:
        return self.truth is not None

    # -- choosing images -------------------------------------------------------------------------
    def subset(self, indices: Iterable[int], note: Mapping[str, Any] | None = None) -> Dataset:
        """The images at ``indices`` (in that order)."""
        idx = np.asarray(list(indices), dtype=np.int64)
        if idx.size and (idx.min() < 0 or idx.max() >= len(self)):
            raise DatasetError(f"image indices must lie in 0..{len(self) - 1} for this {len(self)}-image dataset.")
        sel = self.selection + (tuple((note or {"indices": len(idx)}).items()),)
        return dataclasses.replace(
            self,
            ids=tuple(self.ids[i] for i in idx),
            files=tuple(self.files[i] for i in idx),
            truth=None if self.truth is None else self.truth[idx],
            selection=sel,
        )

    def sample(self, n: int | None = PAPER_SAMPLE, seed: int = 0) -> Dataset:
        """``n`` images drawn without replacement, the same on every machine for the same ``seed``.

        The images are ranked by a keyed hash of ``(seed, id)`` (BLAKE2b) and the ``n`` first are
        kept, in that order. The draw depends only on the ids, so it is the same whatever order the
        files were listed in, whatever the platform or numpy version; ``sample(n)`` is the prefix of
        ``sample(m)`` for ``m > n``; and adding images to a folder never reorders the old ones among
        themselves. ``n=None`` (or ``n >= len``) keeps every image, shuffled by the same rule.
        """
        if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
            raise DatasetError(f"the sampling seed must be a non-negative integer, not {seed!r}.")
        if n is not None and (not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 1):
            raise DatasetError(f"the number of images to sample must be a positive integer, not {n!r}.")
        keys = [_rank_key(int(seed), i) for i in self.ids]
        order = sorted(range(len(self)), key=lambda j: (keys[j], self.ids[j]))
        take = order if n is None else order[: int(n)]
        return self.subset(take, {"sample": None if n is None else int(n), "seed": int(seed)})

    def align(self, model_labels: Sequence[str], aliases: Mapping[str, str] | None = None) -> Dataset:
        """The same images with ``truth``'s columns in the model's label order, matched **by name**.

        Names match when they are equal after lower-casing and removing spaces, underscores and
        hyphens ("dining table" = "diningtable" = "Dining_Table"). ``aliases`` maps a dataset name to
        the model's name for other spellings (``{"tvmonitor": "tv"}``).

        Raises:
            DatasetError: some labels have no partner; the sentence names them on both sides.
        """
        model_labels = tuple(str(m) for m in model_labels)
        if self.truth is None:  # an unlabelled folder takes the model's labels as they are
            return dataclasses.replace(self, labels=model_labels)
        alias = {_norm(k): _norm(v) for k, v in (aliases or {}).items()}
        by_name: dict[str, int] = {}
        for i, name in enumerate(self.labels):
            key = alias.get(_norm(name), _norm(name))
            if key in by_name:
                raise DatasetError(
                    f"The dataset's labels {self.labels[by_name[key]]!r} and {name!r} have the same name once "
                    "case, spaces and underscores are ignored, so they cannot be matched to a model's labels."
                )
            by_name[key] = i
        wanted = [_norm(m) for m in model_labels]
        if len(set(wanted)) != len(wanted):
            raise DatasetError(
                "The model has two labels with the same name once case, spaces and underscores are ignored."
            )
        missing = [] if self.open_labels else [m for m, k in zip(model_labels, wanted) if k not in by_name]
        extra = [d for d in self.labels if alias.get(_norm(d), _norm(d)) not in set(wanted)]
        if missing or extra:
            parts = []
            if missing:
                parts.append(f"the model's {_names(missing)} {'is' if len(missing) == 1 else 'are'} not in the dataset")
            if extra:
                parts.append(f"the dataset's {_names(extra)} {'is' if len(extra) == 1 else 'are'} not in the model")
            raise DatasetError(
                f"The {self.kind} dataset's labels do not match the model's: {' and '.join(parts)} (labels are "
                "matched by name, ignoring case, spaces and underscores; pass aliases for other spellings)."
            )
        truth = np.zeros((len(self), len(model_labels)), np.uint8)
        for j, k in enumerate(wanted):
            if k in by_name:
                truth[:, j] = self.truth[:, by_name[k]]
        return dataclasses.replace(self, labels=model_labels, truth=truth, open_labels=False)

    # -- reading images --------------------------------------------------------------------------
    def path(self, i: int) -> Path:
        """The absolute path of image ``i`` (checked to lie inside the dataset folder)."""
        return _inside(self.root, self.files[i])

    def read_bytes(self, i: int) -> bytes:
        path = self.path(i)
        try:
            size = path.stat().st_size
            if size > MAX_BYTES:
                raise DatasetError(
                    f"{self.files[i]}: the file is {size / 2**20:.1f} MB; the limit is {MAX_BYTES >> 20} MB."
                )
            return path.read_bytes()
        except FileNotFoundError:
            raise DatasetError(f"{self.files[i]} is missing from the dataset folder {self.root}.") from None
        except OSError as exc:
            raise DatasetError(f"{self.files[i]} could not be read ({exc.strerror or exc}).") from None

    def load(
        self, indices: Iterable[int] | None = None, *, size: Sequence[int], fit: str = "crop", **options
    ) -> np.ndarray:
        """Images ``indices`` (default: all) as float32 ``(n, 3, H, W)`` in [0, 1] at ``size = (H, W)``.

        Each file goes through :func:`mlvis.data.images.load_image` (format and size checks, RGB
        conversion, ``fit`` = ``"crop"`` or ``"stretch"``); ``options`` are passed on to it.
        """
        idx = range(len(self)) if indices is None else list(indices)
        h, w = (int(v) for v in size)
        out = np.empty((len(idx), 3, h, w), np.float32)
        for j, i in enumerate(idx):
            out[j] = load_image(self.read_bytes(i), (h, w), name=self.files[i], fit=fit, **options).array
        return out

    def load_for(self, model_or_spec: Any, indices: Iterable[int] | None = None) -> np.ndarray:
        """Images through a model card's preprocessing (input size and resize rule, see :func:`preprocessing`)."""
        return self.load(indices, **preprocessing(model_or_spec))

    def batches(self, batch_size: int, model_or_spec: Any) -> Iterator[tuple[range, np.ndarray]]:
        """``(indices, images)`` for consecutive batches of at most ``batch_size`` images."""
        if batch_size < 1:
            raise DatasetError(f"the batch size must be a positive integer, not {batch_size!r}.")
        prep = preprocessing(model_or_spec)
        for start in range(0, len(self), batch_size):
            r = range(start, min(start + batch_size, len(self)))
            yield r, self.load(r, **prep)

    # -- statistics and identity -----------------------------------------------------------------
    def statistics(self) -> SceneStatistics:
        """Label counts and pairwise co-occurrence of these images (Fig. 5(a); Observation 1's frequencies).

        The same fields as the scene world's :class:`~mlvis.data.stats.SceneStatistics`, so every
        figure and analysis built for the demo world takes it unchanged.
        """
        if self.truth is None:
            raise DatasetError(f"The {self.kind} folder {self.root} has no labels, so it has no label statistics.")
        y = self.truth.astype(np.int64)
        co = y.T @ y
        return SceneStatistics(self.labels, self.split, len(self), np.diag(co).copy(), co)

    def describe(self) -> dict[str, Any]:
        """A JSON description for a run manifest: kind, folder, split, labels, selection and a fingerprint."""
        return {
            "kind": self.kind,
            "root": str(self.root),
            "split": self.split,
            "images": len(self),
            "labels": list(self.labels),
            "selection": [dict(s) for s in self.selection],
            "fingerprint": self.fingerprint,
        }

    @property
    def fingerprint(self) -> str:
        """A hash of the images' ids, files, labels and ground truth (not of the folder's location)."""
        h = hashlib.sha256(f"{self.kind}\0{self.split}\0".encode())
        for part in (self.ids, self.files, self.labels):
            h.update(("\0".join(part) + "\1").encode())
        if self.truth is not None:
            h.update(np.ascontiguousarray(self.truth, np.uint8).tobytes())
        return h.hexdigest()[:16]


# ------------------------------------------------------------------------------------- opening


def parse_data_spec(spec: str) -> tuple[str, str]:
    """Split the CLI's ``KIND:PATH`` (``coco:/data/coco2014``) into ``(kind, path)``."""
    kind, sep, path = str(spec).partition(":")
    kind = kind.strip().lower()
    if not sep or kind not in KINDS or not path:
        raise DatasetError(
            f"--data takes KIND:PATH with KIND one of {', '.join(KINDS)} (for example coco:/data/coco), not {spec!r}."
        )
    return kind, path


def open_dataset(
    kind: str,
    path: str | os.PathLike | None = None,
    *,
    split: str | None = None,
    root: str | os.PathLike | None = None,
    labels_csv: str | None = None,
    keep_unannotated: bool = False,
) -> Dataset:
    """Open a dataset folder in its official layout.

    Args:
        kind: ``"coco"``, ``"voc"``, ``"nuswide"`` or ``"folder"``, or ``"KIND:PATH"`` with ``path`` omitted.
        path: the dataset folder; relative to ``root`` when a data root is configured.
        split: which split (default: the paper's evaluation split, :data:`PAPER_SPLITS`): COCO
            ``val2014`` / ``train2014``; VOC ``test`` / ``trainval`` / ``train`` / ``val``; NUS-WIDE
            ``val`` / ``train``; folder ``all``.
        root: the data root every dataset folder must lie in (default ``$MLVIS_DATA_ROOT``; without
            one, the folder named by ``path`` is its own root).
        labels_csv: for ``folder``: the labels file inside the folder (default ``labels.csv`` when present).
        keep_unannotated: COCO only: keep the images without any annotation (ASL's loader, which the
            paper's code uses, leaves them out: 367 of val2014's 40,504 images).
    """
    if path is None:
        kind, path = parse_data_spec(kind)
    kind = str(kind).strip().lower()
    if kind not in KINDS:
        raise DatasetError(f"The dataset kind must be one of {', '.join(KINDS)}, not {kind!r}.")
    folder = resolve_folder(path, root)
    split = PAPER_SPLITS[kind] if split is None else str(split)
    if kind == "coco":
        return _open_coco(folder, split, keep_unannotated)
    if kind == "voc":
        return _open_voc(folder, split)
    if kind == "nuswide":
        return _open_nuswide(folder, split)
    return _open_folder(folder, split, labels_csv)


def resolve_folder(path: str | os.PathLike, root: str | os.PathLike | None = None) -> Path:
    """The dataset folder ``path`` resolved, refused when it leaves the configured data root."""
    base = root if root is not None else os.environ.get(DATA_ROOT_ENV) or None
    if not isinstance(path, (str, os.PathLike)):
        raise DatasetError(f"A data set's folder must be a path, not {path!r}.")
    p = Path(path).expanduser()
    if base is not None:
        base_real = Path(base).expanduser().resolve()
        if not p.is_absolute():
            if ".." in p.parts:
                raise DatasetError(f"The dataset path {str(path)!r} must not contain '..'.")
            p = base_real / p
        real = p.resolve()
        if not _within(real, base_real):
            raise DatasetError(f"The dataset folder {str(path)!r} lies outside the data root {base_real}.")
    else:
        real = p.resolve()
    if not real.is_dir():
        raise DatasetError(f"The dataset folder {str(path)!r} does not exist or is not a folder.")
    return real


def preprocessing(model_or_spec: Any) -> dict[str, Any]:
    """The :meth:`Dataset.load` arguments a model card asks for: ``size``, ``fit`` (and ``interpolation``).

    ``spec.resize`` ("crop", the default, or "stretch"; "squash"/"resize" mean stretch, "centre-crop"
    means crop) maps to ``load_image``'s ``fit``. ``spec.interpolation`` is passed on when
    ``load_image`` takes it (cards from before resize rules existed have neither field).
    """
    spec = getattr(model_or_spec, "spec", model_or_spec)
    size = tuple(int(v) for v in spec.input_size)
    resize = str(getattr(spec, "resize", None) or "crop").lower()
    fits = {"crop": "crop", "center-crop": "crop", "centre-crop": "crop", "center_crop": "crop",
            "stretch": "stretch", "squash": "stretch", "resize": "stretch"}  # fmt: skip
    if resize not in fits:
        raise DatasetError(f"The model card's resize rule {resize!r} is not one of crop or stretch.")
    out: dict[str, Any] = {"size": size, "fit": fits[resize]}
    interpolation = getattr(spec, "interpolation", None)
    if interpolation is not None and "interpolation" in inspect.signature(load_image).parameters:
        out["interpolation"] = interpolation
    return out


# ----------------------------------------------------------------------------------- the readers


def _open_coco(folder: Path, split: str, keep_unannotated: bool) -> Dataset:
    name = f"instances_{split}.json"
    ann = _first_file(folder, [f"annotations/{name}", name])
    if ann is None:
        raise DatasetError(f"The COCO folder {folder} has no annotations/{name} (nor {name}) for split {split!r}.")
    img_dir = _first_dir(folder, [split, f"images/{split}"])
    if img_dir is None:
        raise DatasetError(f"The COCO folder {folder} has no {split}/ (nor images/{split}/) image folder.")
    labels, ids, names, truth = _coco_index(folder, ann, keep_unannotated)
    files = [f"{img_dir}/{_relname(n, ann)}" for n in names]
    _check_present(folder, files, "COCO")
    return Dataset("coco", folder, split, labels, ids, tuple(files), truth)


def _coco_index(folder: Path, ann: str, keep_unannotated: bool) -> tuple[tuple[str, ...], tuple, tuple, np.ndarray]:
    """``(labels, ids, file names, truth)`` of a COCO annotation file, cached by the file's size and mtime.

    Parsing val2014's 160 MB of JSON takes seconds and a gigabyte or two; the compact index (an npz
    without pickles, under ``mlvis.store.cache_dir()/datasets``) takes milliseconds.
    """
    from mlvis.store import atomic_write, cache_dir

    path = _inside(folder, ann)
    st = path.stat()
    key = hashlib.sha256(f"coco-index-1\0{path.resolve()}\0{st.st_size}\0{st.st_mtime_ns}\0{keep_unannotated}".encode())
    cached = cache_dir() / "datasets" / f"coco-{key.hexdigest()[:24]}.npz"
    with contextlib.suppress(Exception):  # an unreadable cache is rebuilt
        with np.load(cached, allow_pickle=False) as z:
            return tuple(z["labels"].tolist()), tuple(z["ids"].tolist()), tuple(z["names"].tolist()), z["truth"]
    try:
        with open(path, "rb") as f:
            data = json.load(f)
        cats = sorted(data["categories"], key=lambda c: int(c["id"]))
        images = data["images"]
        anns = data.get("annotations", [])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DatasetError(f"{ann} is not a COCO annotation file that can be read ({exc}).") from None
    col = {int(c["id"]): j for j, c in enumerate(cats)}
    row = {int(im["id"]): j for j, im in enumerate(images)}
    truth = np.zeros((len(images), len(cats)), np.uint8)
    annotated = np.zeros(len(images), bool)
    try:
        for a in anns:
            r = row[int(a["image_id"])]
            truth[r, col[int(a["category_id"])]] = 1
            annotated[r] = True
    except KeyError as exc:
        raise DatasetError(f"{ann} has an annotation whose image or category {exc} is not listed in it.") from None
    order = sorted(
        (j for j in range(len(images)) if keep_unannotated or annotated[j]), key=lambda j: int(images[j]["id"])
    )
    labels = tuple(str(c["name"]) for c in cats)
    ids = tuple(str(images[j]["id"]) for j in order)
    names = tuple(str(images[j]["file_name"]) for j in order)
    truth = truth[order]
    buf = io.BytesIO()
    np.savez(buf, labels=np.array(labels, dtype=str), ids=np.array(ids, dtype=str), names=np.array(names, dtype=str),
             truth=truth)  # fmt: skip
    with contextlib.suppress(OSError):  # a read-only cache only costs the next open its parse
        atomic_write(cached, _writer(buf.getvalue()))
    return labels, ids, names, truth


def _open_voc(folder: Path, split: str) -> Dataset:
    sub = "VOCtest" if split == "test" else "VOCtrainval"
    base = _first_dir(folder, [".", "VOC2007", "VOCdevkit/VOC2007", f"{sub}/VOCdevkit/VOC2007"], need="JPEGImages")
    if base is None:
        raise DatasetError(
            f"The VOC folder {folder} has no JPEGImages/ (nor VOC2007/ or VOCdevkit/VOC2007/ holding one)."
        )
    prefix = "" if base == "." else f"{base}/"
    split_file = _first_file(folder, [f"{prefix}ImageSets/Main/{split}.txt"])
    if split_file is None:
        raise DatasetError(f"The VOC folder {folder} has no {prefix}ImageSets/Main/{split}.txt for split {split!r}.")
    ids = [line.split()[0] for line in _read_text(folder, split_file).splitlines() if line.strip()]
    classes_file = _first_file(folder, [f"{prefix}{VOC_CLASSES}"])
    labels: tuple[str, ...] = VOC_LABELS
    if classes_file is not None:
        labels = tuple(line.strip() for line in _read_text(folder, classes_file).splitlines() if line.strip())
        if not labels or len(set(labels)) != len(labels):
            raise DatasetError(f"{classes_file} must list distinct class names, one a line.")
    classes = f"the {len(labels)} classes of {classes_file}" if classes_file else "one of VOC2007's 20 classes"
    col = {n: j for j, n in enumerate(labels)}
    truth = np.zeros((len(ids), len(labels)), np.uint8)
    for i, image_id in enumerate(ids):
        rel = f"{prefix}Annotations/{_safe_id(image_id, split_file)}.xml"
        text = _read_text(folder, rel, limit=_MAX_XML_BYTES)
        try:
            objects = ET.fromstring(text).findall("object")
        except ET.ParseError as exc:
            raise DatasetError(f"{rel} is not a VOC annotation that can be read ({exc}).") from None
        for obj in objects:
            name = (obj.findtext("name") or "").strip()
            if name not in col:
                raise DatasetError(f"{rel} names the object class {name!r}, which is not {classes}.")
            if (obj.findtext("difficult") or "0").strip() != "1":  # difficult-only classes count as absent
                truth[i, col[name]] = 1
    listing = _listing(folder, f"{prefix}JPEGImages", {})
    files = [f"{prefix}JPEGImages/{i}.{'png' if f'{i}.jpg' not in listing and f'{i}.png' in listing else 'jpg'}"
             for i in ids]  # fmt: skip
    _check_present(folder, files, "VOC")
    return Dataset("voc", folder, split, labels, tuple(ids), tuple(files), truth)


def _open_nuswide(folder: Path, split: str) -> Dataset:
    if _first_file(folder, [NUSWIDE_CSV]) is None:
        raise DatasetError(
            f"The NUS-WIDE folder {folder} has no {NUSWIDE_CSV} (ASL's list of images, labels and splits)."
        )
    rows = _csv_rows(folder, NUSWIDE_CSV)
    header = [h.strip().lower() for h in rows[0]] if rows else []
    if {"filename", "label", "split_name"} <= set(header):
        fi, li, si = header.index("filename"), header.index("label"), header.index("split_name")
        rows = rows[1:]
    else:  # ASL's column order without a header
        fi, li, si = 0, 1, 2
    entries = []
    for n, r in enumerate(rows, start=2):
        if not r:
            continue
        if len(r) <= max(fi, li, si):
            raise DatasetError(f"{NUSWIDE_CSV} line {n} has {len(r)} columns; it needs filename, label and split_name.")
        entries.append((r[fi].strip(), _label_list(r[li], f"{NUSWIDE_CSV} line {n}"), r[si].strip()))
    labels = tuple(sorted({lab for _, labs, _ in entries for lab in labs}))  # ASL's order: sorted names
    splits = sorted({s for _, _, s in entries})
    chosen = [e for e in entries if split == "all" or e[2] == split]
    if not chosen:
        raise DatasetError(
            f"{NUSWIDE_CSV} has no images in split {split!r}; its splits are {', '.join(splits) or 'none'}."
        )
    col = {n: j for j, n in enumerate(labels)}
    chosen.sort(key=lambda e: e[0])
    truth = np.zeros((len(chosen), len(labels)), np.uint8)
    for i, (_, labs, _) in enumerate(chosen):
        truth[i, [col[lab] for lab in labs]] = 1
    names = [_relname(e[0], NUSWIDE_CSV) for e in chosen]
    files = _locate(folder, names, ["", "images/"], "NUS-WIDE")
    return Dataset("nuswide", folder, split, labels, tuple(names), tuple(files), truth, open_labels=True)


def _open_folder(folder: Path, split: str, labels_csv: str | None) -> Dataset:
    if split != "all":
        raise DatasetError(f"An image folder has no splits; leave the split out (or use 'all'), not {split!r}.")
    csv_name = labels_csv if labels_csv is not None else (LABELS_CSV if (folder / LABELS_CSV).is_file() else None)
    if csv_name is None:
        files = _list_images(folder)
        if not files:
            raise DatasetError(f"The folder {folder} holds no PNG, JPEG or WebP images.")
        return Dataset("folder", folder, "all", (), tuple(files), tuple(files), None)
    if _first_file(folder, [csv_name]) is None:
        raise DatasetError(f"The labels file {csv_name} is not in the folder {folder}.")
    rows = [r for r in _csv_rows(folder, csv_name) if any(c.strip() for c in r)]
    if len(rows) < 2:
        raise DatasetError(f"{csv_name} needs a header row and at least one image row.")
    header = [h.strip() for h in rows[0]]
    keys = [h.lower() for h in header]
    name_col = next((keys.index(k) for k in ("image", "filename", "file", "path", "name") if k in keys), 0)
    images: list[str] = []
    if "labels" in keys:  # long form: image, "label one;label two"
        li = keys.index("labels")
        lists = []
        for n, r in enumerate(rows[1:], start=2):
            images.append(_relname(r[name_col].strip(), csv_name))
            lists.append(_label_list(r[li] if li < len(r) else "", f"{csv_name} line {n}", seps=";|"))
        labels = tuple(sorted({lab for labs in lists for lab in labs}))
        col = {n: j for j, n in enumerate(labels)}
        truth = np.zeros((len(images), len(labels)), np.uint8)
        for i, labs in enumerate(lists):
            truth[i, [col[lab] for lab in labs]] = 1
    else:  # wide form: image, label_1, ..., label_C with 0/1 cells
        label_cols = [j for j in range(len(header)) if j != name_col]
        labels = tuple(header[j] for j in label_cols)
        if not labels or any(not lab for lab in labels):
            raise DatasetError(
                f"{csv_name} needs a labels column or one named column per label after the image column."
            )
        truth = np.zeros((len(rows) - 1, len(labels)), np.uint8)
        for i, r in enumerate(rows[1:]):
            images.append(_relname(r[name_col].strip(), csv_name))
            if len(r) != len(header):
                raise DatasetError(f"{csv_name} line {i + 2} has {len(r)} columns; the header has {len(header)}.")
            for c, j in enumerate(label_cols):
                cell = r[j].strip().lower()
                if cell in ("1", "1.0", "true", "yes"):
                    truth[i, c] = 1
                elif cell not in ("0", "0.0", "-1", "false", "no", ""):
                    raise DatasetError(f"{csv_name} line {i + 2}: the cell {r[j]!r} for {labels[c]!r} is not 0 or 1.")
    if len(set(images)) != len(images):
        dup = next(x for x in images if images.count(x) > 1)
        raise DatasetError(f"{csv_name} lists the image {dup!r} twice.")
    order = sorted(range(len(images)), key=lambda j: images[j])
    _check_present(folder, [images[j] for j in order], "image")
    kept = tuple(images[j] for j in order)
    return Dataset("folder", folder, "all", labels, kept, kept, truth[order], open_labels="labels" in keys)


# ------------------------------------------------------------------------------------- helpers


def _writer(data: bytes) -> Callable[[str], None]:
    """A ``write(tmp_path)`` for :func:`mlvis.store.atomic_write` that writes ``data``."""

    def write(tmp: str) -> None:
        Path(tmp).write_bytes(data)

    return write


def _norm(name: str) -> str:
    return re.sub(r"[\s_\-]+", "", str(name).strip().lower())


def _names(names: Sequence[str], limit: int = 8) -> str:
    shown = ", ".join(repr(n) for n in names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def _rank_key(seed: int, image_id: str) -> bytes:
    return hashlib.blake2b(image_id.encode(), digest_size=16, key=seed.to_bytes(8, "little")).digest()


def _within(path: Path, base: Path) -> bool:
    return path == base or base in path.parents


def _inside(root: Path, rel: str) -> Path:
    """``root / rel`` for a relative path that stays inside ``root`` once links are followed."""
    p = PurePosixPath(str(rel).replace("\\", "/"))
    if p.is_absolute() or ".." in p.parts or not p.parts:
        raise DatasetError(f"The path {str(rel)!r} leaves the dataset folder (absolute or with '..').")
    full = root.joinpath(*p.parts)
    if not _within(full.resolve(), root):
        raise DatasetError(f"{rel} is a link that leads outside the dataset folder {root}.")
    return full


def _relname(name: str, where: str) -> str:
    """A file name from an annotation file, refused when it could leave the folder."""
    p = PurePosixPath(str(name).replace("\\", "/"))
    if not str(name).strip() or p.is_absolute() or ".." in p.parts:
        raise DatasetError(f"{where} names the image {name!r}, a path that leaves the dataset folder.")
    return p.as_posix()


def _safe_id(image_id: str, where: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9_.\-]+", image_id) or image_id in (".", ".."):
        raise DatasetError(f"{where} lists the image id {image_id!r}, which is not a plain file name.")
    return image_id


def _first_file(folder: Path, candidates: Sequence[str]) -> str | None:
    for rel in candidates:
        if _inside(folder, rel).is_file():
            return rel
    return None


def _first_dir(folder: Path, candidates: Sequence[str], need: str | None = None) -> str | None:
    for rel in candidates:
        d = folder if rel == "." else _inside(folder, rel)
        if d.is_dir() and (need is None or (d / need).is_dir()):
            return rel
    return None


def _read_text(folder: Path, rel: str, limit: int = 64 << 20) -> str:
    path = _inside(folder, rel)
    try:
        if path.stat().st_size > limit:
            raise DatasetError(f"{rel} is larger than {limit >> 20} MB, too large for this kind of file.")
        return path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise DatasetError(f"{rel} is missing from the dataset folder {folder}.") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{rel} could not be read as text ({exc}).") from None


def _csv_rows(folder: Path, rel: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(_read_text(folder, rel, limit=512 << 20))))


def _label_list(cell: str, where: str, seps: str = ",") -> list[str]:
    """Label names from a cell: ``['clouds', 'sky']`` (ASL's form) or ``a;b`` / ``a|b``."""
    text = cell.strip()
    if text.startswith("["):
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            value = [t.strip(" '\"") for t in text.strip("[]").split(",")]
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
            raise DatasetError(f"{where}: the labels {cell!r} are not a list of names.")
        names = [v.strip() for v in value]
    else:
        names = [t.strip() for t in re.split("[" + re.escape(seps) + "]", text)]
    return sorted({n for n in names if n})


def _list_images(folder: Path) -> list[str]:
    """Every image file under ``folder`` (recursively, sorted), skipping hidden entries and outside links."""
    out = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for fn in filenames:
            if fn.startswith(".") or not fn.lower().endswith(_IMAGE_SUFFIXES):
                continue
            full = Path(dirpath) / fn
            if _within(full.resolve(), folder):
                out.append(full.relative_to(folder).as_posix())
    return sorted(out)


def _listing(folder: Path, rel_dir: str, cache: dict[str, set[str]]) -> set[str]:
    if rel_dir not in cache:
        d = folder if not rel_dir else _inside(folder, rel_dir)
        try:
            cache[rel_dir] = {e.name for e in os.scandir(d) if not e.is_dir()}
        except OSError:
            cache[rel_dir] = set()
    return cache[rel_dir]


def _check_present(folder: Path, files: Sequence[str], what: str) -> None:
    """Refuse a dataset whose annotation lists images that are not in the folder (one listing per directory)."""
    cache: dict[str, set[str]] = {}
    missing = []
    for f in files:
        head, _, name = f.rpartition("/")
        if name not in _listing(folder, head, cache):
            missing.append(f)
    if missing:
        raise DatasetError(
            f"{len(missing)} of the {len(files)} images the {what} annotations list are missing from {folder} "
            f"(the first: {missing[0]})."
        )
    for f in files:  # links that lead outside the folder
        _inside(folder, f)


def _locate(folder: Path, names: Sequence[str], prefixes: Sequence[str], what: str) -> list[str]:
    """Each name under the first prefix that holds it (ASL's CSV names images with or without images/)."""
    cache: dict[str, set[str]] = {}
    out = []
    for n in names:
        for pre in prefixes:
            rel = pre + n
            head, _, base = rel.rpartition("/")
            if base in _listing(folder, head, cache):
                out.append(rel)
                break
        else:
            raise DatasetError(
                f"The {what} image {n} is missing from {folder} (looked in {', '.join(p or './' for p in prefixes)})."
            )
    for rel in out:
        _inside(folder, rel)
    return out


# ------------------------------------------------------------------- demo scenes as a dataset folder

SCENE_LAYOUTS = ("folder", "coco", "voc", "nuswide")
SCENE_FORMATS = ("png", "jpeg")
_COCO_SPLIT = {"train": "train2014", "val": "val2014", "test": "val2014"}
_NUS_SPLIT = {"train": "train", "val": "val", "test": "val"}
_VOC_SPLIT = {"train": "trainval", "val": "val", "test": "test"}
JPEG_QUALITY = 95  # write-scenes --format jpeg: 4:4:4 chroma, so only the DCT's rounding is lost


def write_scene_dataset(
    path: str | os.PathLike,
    layout: str = "folder",
    n: int = 100,
    split: str = "test",
    seed: int = 0,
    size: int = 64,
    image_format: str = "png",
) -> Path:
    """Write ``mlvis.data.demo_batch(n, split, seed, size)``'s scenes as a dataset folder, losslessly.

    The images are 8-bit RGB PNGs of exactly the scene world's pixels, so opening the folder with
    :func:`open_dataset` and loading the images gives ``demo_batch``'s tensors bit for bit, and the
    real-dataset code path can be run on the demo models.

    Layouts: ``"folder"`` (``images/*.png`` + a wide ``labels.csv`` in the world's label order),
    ``"coco"`` (``annotations/instances_val2014.json`` + ``val2014/``, or ``train2014`` for the train
    split; one box per visible object), ``"voc"`` (VOC2007's ``JPEGImages/``, ``Annotations/<id>.xml``
    with one object and box per visible object, ``ImageSets/Main/<split>.txt`` for split ``test``,
    ``val`` or ``trainval`` (the train scenes), and ``labels.txt`` naming the world's 24 classes, which
    are not VOC's) and ``"nuswide"`` (``nus_wid_data.csv`` + ``images/``; split ``val``, or ``train``).
    A file ``mlvis-scenes.json`` records what was written. Files are written atomically; the folder
    must be new or empty.

    ``image_format="png"`` (the default) keeps every layout lossless, VOC's included: its images are
    ``JPEGImages/<id>.png``, which the VOC reader takes where no ``<id>.jpg`` exists. ``"jpeg"`` writes
    real JPEG files (``.jpg``, quality 95, no chroma subsampling), as the official datasets hold them,
    to exercise the JPEG path; they are then not bit-identical to the scenes.

    Returns:
        The folder, resolved.
    """
    from PIL import Image

    from mlvis.data import BLOCK, LABELS, world
    from mlvis.store import atomic_write, atomic_write_text

    if layout not in SCENE_LAYOUTS:
        raise DatasetError(f"The scene dataset layout must be one of {', '.join(SCENE_LAYOUTS)}, not {layout!r}.")
    out = Path(path).expanduser()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise DatasetError(f"{out} already exists and is not an empty folder; pick a new folder for the scenes.")
    if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or not 1 <= n <= BLOCK:
        raise DatasetError(f"The number of scenes must be an integer between 1 and {BLOCK}, not {n!r}.")
    if not isinstance(seed, (int, np.integer)) or not 0 <= seed < 1000:
        raise DatasetError(f"The scene seed must be an integer between 0 and 999, not {seed!r}.")
    if split not in _COCO_SPLIT:
        raise DatasetError(f"The scene split must be one of {', '.join(_COCO_SPLIT)}, not {split!r}.")
    if image_format not in SCENE_FORMATS:
        raise DatasetError(f"The scene image format must be one of {', '.join(SCENE_FORMATS)}, not {image_format!r}.")
    ext = "png" if image_format == "png" else "jpg"
    first = int(seed) * BLOCK  # the scenes demo_batch(n, split, seed, size) draws
    pixels, truth_u8 = world(0, size).batch_uint8(split, range(first, first + int(n)))
    names = [f"{split}_{first + i:09d}.{ext}" for i in range(n)]

    def png(arr: np.ndarray) -> bytes:
        buf = io.BytesIO()
        if image_format == "png":
            Image.fromarray(arr, "RGB").save(buf, format="PNG")
        else:
            Image.fromarray(arr, "RGB").save(buf, format="JPEG", quality=JPEG_QUALITY, subsampling=0)
        return buf.getvalue()

    def boxes(i: int) -> list[tuple[int, int, int, int, int]]:
        """``(label, x0, y0, x1, y1)`` of every visible object of scene ``i`` (clipped to the image)."""
        out = []
        for obj in world(0, size).describe(split, first + i)["objects"]:
            if truth_u8[i, obj["label"]]:
                x0, y0 = max(obj["x"], 0), max(obj["y"], 0)
                out.append((obj["label"], x0, y0, min(obj["x"] + obj["size"], size), min(obj["y"] + obj["size"], size)))
        return out

    def put(rel: str, data: bytes) -> None:
        atomic_write(out / rel, _writer(data))

    if layout == "folder":
        files = [f"images/{nm}" for nm in names]
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["image", *LABELS])
        for f, row in zip(files, truth_u8):
            w.writerow([f, *row.tolist()])
        atomic_write_text(out / LABELS_CSV, buf.getvalue())
    elif layout == "coco":
        coco_split = _COCO_SPLIT[split]
        files = [f"{coco_split}/COCO_{coco_split}_{first + i + 1:012d}.{ext}" for i in range(n)]
        anns: list[dict[str, Any]] = []
        for i in range(n):
            for label, x0, y0, x1, y1 in boxes(i):
                anns.append({
                    "id": len(anns) + 1, "image_id": first + i + 1, "category_id": label + 1,
                    "bbox": [x0, y0, x1 - x0, y1 - y0], "area": float((x1 - x0) * (y1 - y0)), "iscrowd": 0,
                })  # fmt: skip
        doc = {
            "info": {"description": f"mlvis demo scenes, split {split}, seed {seed}", "version": "1.0"},
            "images": [
                {"id": first + i + 1, "file_name": f.rpartition("/")[2], "width": size, "height": size}
                for i, f in enumerate(files)
            ],
            "annotations": anns,
            "categories": [{"id": j + 1, "name": nm, "supercategory": "scene"} for j, nm in enumerate(LABELS)],
        }
        atomic_write_text(out / "annotations" / f"instances_{coco_split}.json", json.dumps(doc))
    elif layout == "voc":
        ids = [f"{first + i:06d}" for i in range(n)]
        files = [f"JPEGImages/{i}.{ext}" for i in ids]
        for i, image_id in enumerate(ids):
            atomic_write_text(out / "Annotations" / f"{image_id}.xml", _voc_annotation(
                files[i].rpartition("/")[2], size, [(LABELS[lab], x0, y0, x1, y1) for lab, x0, y0, x1, y1 in boxes(i)]
            ))  # fmt: skip
        atomic_write_text(out / "ImageSets" / "Main" / f"{_VOC_SPLIT[split]}.txt", "".join(f"{i}\n" for i in ids))
        atomic_write_text(out / VOC_CLASSES, "".join(f"{nm}\n" for nm in LABELS))
    else:
        files = [f"images/{nm}" for nm in names]
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["filename", "label", "split_name"])
        for f, row in zip(files, truth_u8):
            w.writerow([f, repr([LABELS[j] for j in np.flatnonzero(row)]), _NUS_SPLIT[split]])
        atomic_write_text(out / NUSWIDE_CSV, buf.getvalue())
    for f, arr in zip(files, pixels):
        put(f, png(arr))
    meta = {"layout": layout, "n": n, "split": split, "seed": seed, "size": size, "world_seed": 0,
            "image_format": image_format, "files": files}  # fmt: skip
    atomic_write_text(out / "mlvis-scenes.json", json.dumps(meta, indent=1))
    return out.resolve()


def _voc_annotation(filename: str, size: int, objects: Sequence[tuple[str, int, int, int, int]]) -> str:
    """A VOC2007 annotation XML: the image's file name and size, one ``object`` with its box per object
    (VOC's boxes are 1-based and inclusive)."""
    root = ET.Element("annotation")
    ET.SubElement(root, "folder").text = "VOC2007"
    ET.SubElement(root, "filename").text = filename
    src = ET.SubElement(root, "source")
    ET.SubElement(src, "database").text = "mlvis demo scenes"
    sz = ET.SubElement(root, "size")
    for tag, v in (("width", size), ("height", size), ("depth", 3)):
        ET.SubElement(sz, tag).text = str(v)
    ET.SubElement(root, "segmented").text = "0"
    for name, x0, y0, x1, y1 in objects:
        obj = ET.SubElement(root, "object")
        ET.SubElement(obj, "name").text = name
        ET.SubElement(obj, "pose").text = "Unspecified"
        ET.SubElement(obj, "truncated").text = "0"
        ET.SubElement(obj, "difficult").text = "0"
        box = ET.SubElement(obj, "bndbox")
        for tag, v in (("xmin", x0 + 1), ("ymin", y0 + 1), ("xmax", x1), ("ymax", y1)):
            ET.SubElement(box, tag).text = str(v)
    ET.indent(root)
    return ET.tostring(root, encoding="unicode") + "\n"
