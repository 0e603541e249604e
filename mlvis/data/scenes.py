"""A procedurally generated multi-label scene world, owned by the project.

Every scene is a small RGB image (64x64 by default) holding 1 to 6 labelled objects on a cluttered
background. A label is an object class defined by **shape, colour and texture** ("blue striped
square"), so some classes differ only by their texture or by a nearby hue, which keeps the task
from being trivial. Scenes are drawn from *contexts* (kitchen, street, ...) that make some labels
co-occur far more often than chance and others never meet, and label base rates follow a
Zipf-like law, so the world has the COCO-like statistics that the paper's observations rely on
(label imbalance, co-occurrence).

Determinism: a scene is a pure function of ``(world seed, split, index)``; the pixels come from
``numpy.random.default_rng([seed, split_base + index])``. The splits use disjoint index ranges
(train from 0, val from 10**9, test from 2 * 10**9).

Speed: the shape masks are drawn once (anti-aliased by 4x supersampling) and cached; a scene is
then a handful of small array blends (see ``benchmarks/data.py``).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from typing import Any

import numpy as np

from mlvis.errors import InvalidInput

SPLIT_BASE = {"train": 0, "val": 1_000_000_000, "test": 2_000_000_000}
BLOCK = 1_000_000  # scenes per ``seed`` block in :func:`demo_batch`

COLOURS: dict[str, tuple[float, float, float]] = {
    "red": (0.86, 0.10, 0.10),
    "orange": (0.96, 0.52, 0.08),
    "yellow": (0.95, 0.88, 0.12),
    "green": (0.12, 0.66, 0.18),
    "teal": (0.08, 0.70, 0.72),
    "blue": (0.14, 0.28, 0.90),
    "purple": (0.58, 0.20, 0.80),
    "pink": (0.96, 0.45, 0.72),
    "white": (0.95, 0.95, 0.95),
    "black": (0.08, 0.08, 0.08),
}


@dataclasses.dataclass(frozen=True)
class LabelDef:
    name: str
    shape: str
    colour: str
    texture: str  # solid | striped | checkered | dotted


def _label(name: str) -> LabelDef:
    words = name.split()
    colour, shape = words[0], words[-1]
    texture = words[1] if len(words) == 3 else "solid"
    return LabelDef(name, shape, colour, texture)


# Ordered from the most to the least frequent (the Zipf rank is the position in this list).
LABEL_DEFS: tuple[LabelDef, ...] = tuple(
    _label(n)
    for n in (
        "red disc",
        "blue square",
        "green triangle",
        "yellow star",
        "white cross",
        "orange disc",
        "blue striped square",
        "purple diamond",
        "teal bar",
        "red ring",
        "green striped triangle",
        "pink crescent",
        "blue checkered square",
        "purple dotted diamond",
        "teal striped bar",
        "orange triangle",
        "black cross",
        "yellow hexagon",
        "red square",
        "green disc",
        "purple ring",
        "white star",
        "pink dotted disc",
        "blue hexagon",
    )
)
LABELS: tuple[str, ...] = tuple(d.name for d in LABEL_DEFS)
NUM_LABELS = len(LABELS)

# Scene contexts: (name, probability, labels that appear there). The first three labels are
# "common" and appear in every context (the role COCO's "person" plays).
COMMON = ("red disc", "blue square", "green triangle")
CONTEXTS: tuple[tuple[str, float, tuple[str, ...]], ...] = (
    ("kitchen", 0.22, ("yellow star", "orange disc", "red ring", "pink dotted disc", "orange triangle")),
    ("street", 0.20, ("white cross", "blue striped square", "black cross", "red square", "teal bar")),
    ("garden", 0.18, ("green striped triangle", "green disc", "yellow hexagon", "pink crescent", "yellow star")),
    ("office", 0.16, ("purple diamond", "teal bar", "blue checkered square", "white star", "teal striped bar")),
    ("beach", 0.14, ("orange disc", "purple dotted diamond", "teal striped bar", "white cross", "blue hexagon")),
    ("night", 0.10, ("purple ring", "white star", "black cross", "pink crescent", "purple diamond")),
)
ZIPF_EXPONENT = 0.75
SHAPES = ("disc", "ring", "square", "triangle", "star", "cross", "diamond", "bar", "crescent", "hexagon")
DISTRACTOR_SHAPES = ("ellipse", "blob", "line", "arc")
SIZES = tuple(range(8, 23))  # object diameters in pixels (at 64x64)
ROTATIONS = 8
VISIBLE_FRACTION = 0.35  # an object counts as present when at least this much of it shows


def _grid(size: int, ss: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """Supersampled coordinates in [-1, 1] for a size x size patch."""
    n = size * ss
    c = (np.arange(n) + 0.5) / n * 2.0 - 1.0
    return np.meshgrid(c, c, indexing="ij")


def _inside(shape: str, y: np.ndarray, x: np.ndarray) -> np.ndarray:
    r = np.hypot(x, y)
    a = np.arctan2(y, x)
    if shape in ("disc",):
        return r <= 0.92
    if shape == "ring":
        return (r <= 0.92) & (r >= 0.55)
    if shape == "square":
        return (np.abs(x) <= 0.72) & (np.abs(y) <= 0.72)
    if shape == "triangle":
        return (y <= 0.6) & (y >= 1.8 * np.abs(x) - 1.0)
    if shape == "star":
        return r <= 0.5 + 0.42 * np.cos(5 * a) ** 2 * (np.cos(5 * a) > 0)
    if shape == "cross":
        return ((np.abs(x) <= 0.28) & (np.abs(y) <= 0.9)) | ((np.abs(y) <= 0.28) & (np.abs(x) <= 0.9))
    if shape == "diamond":
        return np.abs(x) + np.abs(y) <= 0.92
    if shape == "bar":
        return (np.abs(x) <= 0.95) & (np.abs(y) <= 0.32)
    if shape == "crescent":
        return (r <= 0.9) & (np.hypot(x - 0.38, y) >= 0.68)
    if shape == "hexagon":
        k = np.abs(x) * 0.866 + np.abs(y) * 0.5
        return (k <= 0.82) & (np.abs(y) <= 0.82)
    if shape == "ellipse":
        return (x / 0.95) ** 2 + (y / 0.45) ** 2 <= 1
    if shape == "blob":
        return r <= 0.7 + 0.2 * np.sin(3 * a) + 0.08 * np.cos(7 * a)
    if shape == "line":
        return np.abs(y) <= 0.09
    if shape == "arc":
        return (np.abs(r - 0.75) <= 0.1) & (y < 0.2)
    raise InvalidInput(f"Unknown shape {shape!r}.")


@functools.cache
def shape_masks(shape: str) -> tuple[tuple[np.ndarray, ...], ...]:
    """Anti-aliased float32 masks ``[size index][rotation]`` for one shape (drawn once)."""
    out = []
    for size in SIZES:
        y, x = _grid(size)
        per_rot = []
        for k in range(ROTATIONS):
            t = np.pi * 2 * k / ROTATIONS
            xr, yr = x * np.cos(t) + y * np.sin(t), -x * np.sin(t) + y * np.cos(t)
            m = _inside(shape, yr, xr).astype(np.float32)
            m = m.reshape(size, 4, size, 4).mean(axis=(1, 3))
            per_rot.append(np.ascontiguousarray(m))
        out.append(tuple(per_rot))
    return tuple(out)


@functools.cache
def _texture(texture: str, size: int, variant: int) -> np.ndarray:
    """A (size, size) pattern in {0, 1} (1 = the darker second tone); variant picks the phase."""
    yy, xx = np.mgrid[0:size, 0:size]
    if texture == "solid":
        return np.zeros((size, size), np.float32)
    if texture == "striped":
        direction = variant % 4
        v = (xx, yy, xx + yy, xx - yy)[direction] + variant // 4
        return ((v // 2) % 2).astype(np.float32)
    if texture == "checkered":
        return (((xx + variant) // 3 + (yy + variant // 2) // 3) % 2).astype(np.float32)
    if texture == "dotted":
        return (((xx + variant) % 4 == 1) & ((yy + variant // 2) % 4 == 1)).astype(np.float32)
    raise InvalidInput(f"Unknown texture {texture!r}.")


COMMON_WEIGHT = 0.5  # the common labels appear everywhere; damp them so they do not swamp the rest


def _label_frequencies() -> np.ndarray:
    w = 1.0 / np.arange(1, NUM_LABELS + 1) ** ZIPF_EXPONENT
    w[: len(COMMON)] *= COMMON_WEIGHT
    return w


@dataclasses.dataclass(frozen=True)
class SceneConfig:
    """Everything that defines the world. Changing any field changes every scene."""

    seed: int = 0
    size: int = 64
    max_objects: int = 6
    object_prob: float = 0.38  # number of objects = 1 + Binomial(max_objects - 1, object_prob)
    distractors: tuple[int, int] = (3, 8)
    noise: tuple[float, float] = (0.01, 0.06)
    colour_jitter: float = 0.07
    occluder_prob: float = 0.4


class SceneWorld:
    """Draws scenes. ``world.scene(split, index)`` -> ``(uint8 HxWx3, multi-hot labels)``."""

    def __init__(self, config: SceneConfig | None = None):
        self.config = config or SceneConfig()
        self.labels = LABELS
        self._label_index = {n: i for i, n in enumerate(LABELS)}
        freq = _label_frequencies()
        self._ctx_probs = np.array([c[1] for c in CONTEXTS], np.float64)
        self._ctx_probs /= self._ctx_probs.sum()
        self._ctx_members = []
        self._ctx_cdf = []
        for _, _, members in CONTEXTS:
            idx = np.array(sorted({self._label_index[n] for n in COMMON + members}))
            p = freq[idx] / freq[idx].sum()
            self._ctx_members.append(idx)
            self._ctx_cdf.append(np.cumsum(p))
        self._colours = np.array([COLOURS[d.colour] for d in LABEL_DEFS], np.float32)
        self._scale = self.config.size / 64.0
        for s in SHAPES + DISTRACTOR_SHAPES:
            shape_masks(s)
        # bilinear interpolation matrix from a 4x4 grid: the background's low-frequency colour field
        g = np.linspace(0, 3, self.config.size, dtype=np.float32)
        lo = np.clip(np.floor(g).astype(int), 0, 2)
        w = g - lo
        A = np.zeros((self.config.size, 4), np.float32)
        A[np.arange(self.config.size), lo] = 1 - w
        A[np.arange(self.config.size), lo + 1] = w
        self._interp = A

    # -- one scene ------------------------------------------------------------------------------
    def rng(self, split: str, index: int) -> np.random.Generator:
        if split not in SPLIT_BASE:
            raise InvalidInput(f"split must be one of {sorted(SPLIT_BASE)}, not {split!r}.")
        if not 0 <= index < 1_000_000_000:
            raise InvalidInput(f"scene index must be in [0, 10**9), not {index}.")
        return np.random.default_rng([self.config.seed, SPLIT_BASE[split] + int(index)])

    def scene(self, split: str, index: int) -> tuple[np.ndarray, np.ndarray]:
        img, labels, _ = self._draw(self.rng(split, index))
        return img, labels

    def describe(self, split: str, index: int) -> dict:
        """The scene's context and objects (for the gallery and for debugging)."""
        _, labels, meta = self._draw(self.rng(split, index))
        return {"context": meta["context"], "objects": meta["objects"], "labels": labels}

    def _paste(self, img, ids, obj_id, mask, colour, y, x, pattern=None, tone=None):
        h, w = mask.shape
        S = img.shape[0]
        y0, x0 = max(y, 0), max(x, 0)
        y1, x1 = min(y + h, S), min(x + w, S)
        if y1 <= y0 or x1 <= x0:
            return 0
        m = mask[y0 - y : y1 - y, x0 - x : x1 - x]
        region = img[y0:y1, x0:x1]
        if pattern is None:
            paint = colour
        else:
            p = pattern[y0 - y : y1 - y, x0 - x : x1 - x, None]
            paint = colour * (1 - p) + tone * p
        region += m[..., None] * (paint - region)
        if ids is not None:
            sel = m >= 0.5
            ids[y0:y1, x0:x1][sel] = obj_id
            return int(sel.sum())
        return 0

    def _draw(self, rng: np.random.Generator):
        cfg = self.config
        S = cfg.size
        sc = self._scale
        # background: low-frequency colour field, muted
        grid = rng.uniform(0.15, 0.75, size=(3, 4, 4)).astype(np.float32)
        grey = grid.mean(axis=0, keepdims=True)
        grid = grey + 0.45 * (grid - grey)
        img = np.ascontiguousarray((self._interp @ grid @ self._interp.T).transpose(1, 2, 0))
        ids = np.full((S, S), -1, np.int16)

        # clutter: unlabelled shapes in muted colours
        for _ in range(rng.integers(cfg.distractors[0], cfg.distractors[1] + 1)):
            shape = DISTRACTOR_SHAPES[rng.integers(len(DISTRACTOR_SHAPES))]
            si = int(rng.integers(len(SIZES)))
            mask = shape_masks(shape)[si][rng.integers(ROTATIONS)]
            base = rng.uniform(0.2, 0.8)
            col = np.clip(base + rng.normal(0, 0.08, 3), 0, 1).astype(np.float32)
            self._paste(img, None, 0, mask, col, *rng.integers(-4, S - 4, size=2))

        # labelled objects
        ctx = int(np.searchsorted(np.cumsum(self._ctx_probs), rng.random()))
        members, cdf = self._ctx_members[ctx], self._ctx_cdf[ctx]
        n = 1 + rng.binomial(cfg.max_objects - 1, cfg.object_prob)
        objects: list[dict[str, Any]] = []
        areas = []
        for k in range(n):
            lab = int(members[min(int(np.searchsorted(cdf, rng.random())), len(members) - 1)])
            d = LABEL_DEFS[lab]
            si = int(rng.integers(len(SIZES)))
            if sc != 1.0:
                si = int(np.clip(round(si * sc), 0, len(SIZES) - 1))
            mask = shape_masks(d.shape)[si][rng.integers(ROTATIONS)]
            size = mask.shape[0]
            col = self._colours[lab] * rng.uniform(1 - cfg.colour_jitter, 1 + cfg.colour_jitter)
            col = np.clip(col + rng.normal(0, cfg.colour_jitter / 2, 3), 0, 1).astype(np.float32)
            pattern = tone = None
            if d.texture != "solid":
                pattern = _texture(d.texture, size, int(rng.integers(8)))
                tone = (col * 0.3).astype(np.float32) if d.colour != "black" else np.full(3, 0.7, np.float32)
            # a few tries to keep a new object from hiding the earlier ones
            for _ in range(4):
                y, x = rng.integers(-size // 4, S - 3 * size // 4, size=2)
                window = ids[max(y, 0) : y + size, max(x, 0) : x + size]
                if (window >= 0).mean() < 0.4 if window.size else True:
                    break
            area = self._paste(img, ids, k, mask, col, y, x, pattern, tone)
            objects.append({"label": lab, "name": d.name, "y": int(y), "x": int(x), "size": int(size)})
            areas.append(area)

        # occluders over everything
        if rng.random() < cfg.occluder_prob:
            shape = ("line", "arc")[rng.integers(2)]
            mask = shape_masks(shape)[len(SIZES) - 1][rng.integers(ROTATIONS)]
            col = np.clip(rng.uniform(0.2, 0.8) + rng.normal(0, 0.08, 3), 0, 1).astype(np.float32)
            ys, xs = rng.integers(0, S - mask.shape[0], size=2)
            self._paste(img, ids, -1, mask, col, ys, xs)

        visible = np.bincount(ids[ids >= 0].ravel(), minlength=n)
        labels = np.zeros(NUM_LABELS, np.uint8)
        for k, o in enumerate(objects):
            o["visible"] = float(visible[k] / max(areas[k], 1))
            if areas[k] > 0 and visible[k] >= VISIBLE_FRACTION * areas[k] and visible[k] >= 6:
                labels[o["label"]] = 1
        if not labels.any():  # every object hidden: the last one drawn is the most visible
            best = int(np.argmax(visible))
            labels[objects[best]["label"]] = 1

        # global lighting and sensor noise
        img *= rng.uniform(0.85, 1.12)
        img += rng.uniform(-0.05, 0.05)
        img += rng.normal(0, rng.uniform(*cfg.noise), size=img.shape).astype(np.float32)
        out = (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)
        return out, labels, {"context": CONTEXTS[ctx][0], "objects": objects}

    # -- many scenes ----------------------------------------------------------------------------
    def batch_uint8(self, split: str, indices: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        """``(N, H, W, 3) uint8`` images and ``(N, C) uint8`` labels for the given scene indices."""
        imgs = np.empty((len(indices), self.config.size, self.config.size, 3), np.uint8)
        labs = np.empty((len(indices), NUM_LABELS), np.uint8)
        for j, i in enumerate(indices):
            imgs[j], labs[j] = self.scene(split, int(i))
        return imgs, labs

    def label_matrix(self, split: str, indices: Sequence[int]) -> np.ndarray:
        return self.batch_uint8(split, indices)[1]


@functools.lru_cache(maxsize=8)
def world(seed: int = 0, size: int = 64) -> SceneWorld:
    return SceneWorld(SceneConfig(seed=seed, size=size))


def to_tensor(images_uint8: np.ndarray):
    """``(N, H, W, 3) uint8`` -> float32 torch tensor ``(N, 3, H, W)`` in [0, 1]."""
    import torch

    return torch.from_numpy(images_uint8).permute(0, 3, 1, 2).float().div_(255.0).contiguous()
