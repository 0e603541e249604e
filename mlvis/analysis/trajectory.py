"""Attack replay: a run's own trajectory, recorded on the engine's step hook (issue 13 section 2, Fig. 17).

:class:`TrajectoryRecorder` is a :class:`~mlvis.attacks.loop.StepHook` passed to the engine's public
:func:`~mlvis.attacks.run_job` (``hook=...``). While the one MI-FGSM loop runs, it keeps, per method and
per recorded step ``k`` (``0, every, 2 * every, ..., n``):

- every label's confidence: ``sigmoid`` of the logits the loop's gradient forward of iteration ``k``
  computes anyway (the logits of ``x0 + delta`` after ``k`` steps: the very values the engine reuses for
  a snapshot at that step), so recording adds no model call;
- the flips so far (equation 3, :func:`mlvis.metrics.flip_count`, against the clean prediction);
- optionally the adversarial images, rounded to 8 bits for display, every ``image_every`` recorded steps,
  where ``image_every`` is the smallest multiple of ``every`` that keeps them under ``image_budget`` bytes
  (64 MiB by default; the confidences are always kept at every recorded step).

Step 0 is the clean image (the result's clean confidences) and the last step ``n`` is the result itself
(its ``adv_probs`` and ``adv``), so the final recorded step equals the attack's result bit for bit and the
trajectory is the run's own, never a second attack. A recording follows one budget (the Lab's K = 1).
Methods with their own optimisers (ML-CW, ML-DeepFool, MLA-LP) do not run in the loop: they are listed in
:attr:`Recording.not_replayable` with a sentence. Under bf16 autocast the intermediate confidences are
those of the bf16 gradient forward (the end points stay full precision).

Example:
    >>> rec = TrajectoryRecorder(every=1)
    >>> results = mlvis.attacks.run_job(model, x, ["bce", "slam"], 0.01, hook=rec)
    >>> replay = rec.recording(results)
    >>> replay.trace("bce").flips[-1].tolist() == results[0].flips[0].tolist()
    True
"""

from __future__ import annotations

import base64
import dataclasses
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mlvis.attacks.loop import StepHook
from mlvis.attacks.rows import RowTable
from mlvis.errors import InvalidInput
from mlvis.metrics import flip_count

__all__ = [
    "IMAGE_BUDGET",
    "PICK_RULE",
    "MethodTrace",
    "Recording",
    "TrajectoryRecorder",
    "pick_labels",
    "record",
]

IMAGE_BUDGET = 64 * 2**20  # bytes of 8-bit images a recording keeps at most (all methods and images together)
FORMAT = "mlvis.trajectory v1"
PICK_RULE = (
    "the three labels flipped at the last step by the most methods, ties broken by how far the methods moved "
    "their confidence towards the target on average (then by label order)"
)


@dataclasses.dataclass(frozen=True, eq=False)
class MethodTrace:
    """One method's recorded trajectory.

    Attributes:
        name: the result's name (the row name, e.g. ``"SLAM(q=0.5)"``); method: the registered method.
        steps: ``(S,)`` the recorded steps, ``0`` (clean) ... ``n`` (the result).
        probs: ``(S, N, C)`` float32 confidences at those steps.
        flips: ``(S, N)`` flips so far (equation 3).
        image_steps: ``(T,)`` the steps whose images are kept (a subset of ``steps`` with 0 and ``n``).
        images: ``(T, N, 3, H, W)`` uint8 images at ``image_steps`` (8-bit display copies), or ``None``.
    """

    name: str
    method: str
    steps: np.ndarray
    probs: np.ndarray
    flips: np.ndarray
    image_steps: np.ndarray
    images: np.ndarray | None

    @property
    def final_step(self) -> int:
        return int(self.steps[-1])

    def index_at(self, step: int) -> int:
        """The index of the last recorded step at or before ``step`` (the final one past the end)."""
        return max(0, int(np.searchsorted(self.steps, int(step), side="right")) - 1)

    def probs_at(self, step: int) -> np.ndarray:
        """``(N, C)`` confidences after ``step`` steps (held at the last recorded step before it)."""
        return self.probs[self.index_at(step)]

    def flips_at(self, step: int) -> np.ndarray:
        """``(N,)`` flips after ``step`` steps."""
        return self.flips[self.index_at(step)]

    def image_at(self, step: int, image: int = 0) -> tuple[int, np.ndarray] | None:
        """``(step shown, (3, H, W) uint8)``: the kept image at or before ``step``; ``None`` without images."""
        if self.images is None:
            return None
        i = max(0, int(np.searchsorted(self.image_steps, int(step), side="right")) - 1)
        return int(self.image_steps[i]), self.images[i, image]


@dataclasses.dataclass(frozen=True, eq=False)
class Recording:
    """A run's recorded trajectories: one :class:`MethodTrace` per method the loop ran, on the same images.

    ``clean`` holds the clean images as 8-bit display copies ``(N, 3, H, W)``; ``clean_probs`` their
    confidences ``(N, C)``; ``eps`` / ``norm`` the budget; ``every`` the recording interval; ``image_every``
    the interval of the kept images (0: none kept); ``not_replayable`` ``(name, sentence)`` for each method
    that ran its own optimiser.
    """

    model: str
    labels: tuple[str, ...]
    threshold: float
    eps: float
    norm: str
    every: int
    image_every: int
    clean: np.ndarray
    clean_probs: np.ndarray
    traces: tuple[MethodTrace, ...]
    not_replayable: tuple[tuple[str, str], ...] = ()

    @property
    def clean_pred(self) -> np.ndarray:
        return self.clean_probs >= self.threshold

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.traces)

    @property
    def num_images(self) -> int:
        return int(self.clean_probs.shape[0])

    @property
    def max_step(self) -> int:
        """The longest trajectory's step count (0 with no replayable method)."""
        return max((t.final_step for t in self.traces), default=0)

    def trace(self, name: str) -> MethodTrace:
        """The trace named ``name`` (a result name, or a method when only one trace has it)."""
        for t in self.traces:
            if t.name == name:
                return t
        found = [t for t in self.traces if t.method == name]
        if len(found) == 1:
            return found[0]
        raise InvalidInput(
            f"No replayable method {name!r} in this recording; it has {', '.join(self.names) or 'none'}."
        )

    # ------------------------------------------------------------------------------------------ files

    def to_dict(self, images: bool = False) -> dict[str, Any]:
        """A JSON-able dict (confidences as float32 values written exactly); ``images=True`` adds the 8-bit
        images as base64 (about 4/3 of their bytes)."""

        def arr(a: np.ndarray) -> dict[str, Any]:
            return {"shape": list(a.shape), "base64": base64.b64encode(np.ascontiguousarray(a).tobytes()).decode()}

        doc: dict[str, Any] = {
            "format": FORMAT,
            "model": self.model,
            "labels": list(self.labels),
            "threshold": self.threshold,
            "eps": self.eps,
            "norm": self.norm,
            "every": self.every,
            "image_every": self.image_every if images else 0,
            "clean_probs": self.clean_probs.tolist(),
            "not_replayable": [list(p) for p in self.not_replayable],
            "methods": [
                {
                    "name": t.name,
                    "method": t.method,
                    "steps": t.steps.tolist(),
                    "flips": t.flips.tolist(),
                    "probs": t.probs.tolist(),
                    **(
                        {"image_steps": t.image_steps.tolist(), "images": arr(t.images)}
                        if images and t.images is not None
                        else {}
                    ),
                }
                for t in self.traces
            ],
        }
        if images:
            doc["clean"] = arr(self.clean)
        return doc

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> Recording:
        """The recording :meth:`to_dict` wrote (a recording written without images comes back without them)."""
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            raise InvalidInput(f"This is not an mlvis trajectory recording (expected format {FORMAT!r}).")
        try:
            probs0 = np.asarray(doc["clean_probs"], np.float32)

            def img(d: dict[str, Any]) -> np.ndarray:
                shape = tuple(int(v) for v in d["shape"])
                if len(shape) < 4 or any(v < 0 for v in shape):
                    raise InvalidInput("bad image shape")
                return np.frombuffer(base64.b64decode(d["base64"]), np.uint8).reshape(shape).copy()

            traces = []
            for m in doc["methods"]:
                has = "images" in m
                traces.append(
                    MethodTrace(
                        name=str(m["name"]),
                        method=str(m["method"]),
                        steps=np.asarray(m["steps"], np.int64),
                        probs=np.asarray(m["probs"], np.float32),
                        flips=np.asarray(m["flips"], np.int64),
                        image_steps=np.asarray(m["image_steps"] if has else [], np.int64),
                        images=img(m["images"]) if has else None,
                    )
                )
            n, c = probs0.shape if probs0.ndim == 2 else (-1, -1)
            if n < 1 or c != len(doc["labels"]):
                raise InvalidInput("clean_probs must be (images, labels)")
            for t in traces:
                s = len(t.steps)
                if s < 2 or t.steps[0] != 0 or (np.diff(t.steps) <= 0).any():
                    raise InvalidInput(f"{t.name}'s steps must rise from 0")
                if t.probs.shape != (s, n, c) or t.flips.shape != (s, n):
                    raise InvalidInput(f"{t.name}'s confidences and flips must be (steps, images[, labels])")
                if t.images is not None and t.images.shape[:2] != (len(t.image_steps), n):
                    raise InvalidInput(f"{t.name}'s images must be (image steps, images, 3, H, W)")
            clean = img(doc["clean"]) if "clean" in doc else np.zeros((n, 3, 0, 0), np.uint8)
            return cls(
                model=str(doc["model"]),
                labels=tuple(str(v) for v in doc["labels"]),
                threshold=float(doc["threshold"]),
                eps=float(doc["eps"]),
                norm=str(doc["norm"]),
                every=int(doc["every"]),
                image_every=int(doc["image_every"]),
                clean=clean,
                clean_probs=probs0,
                traces=tuple(traces),
                not_replayable=tuple((str(a), str(b)) for a, b in doc["not_replayable"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidInput(f"This trajectory recording is damaged or incomplete ({exc}).") from None

    def to_json(self, images: bool = False) -> str:
        return json.dumps(self.to_dict(images))

    def save(self, path: str | Path, images: bool = False) -> Path:
        """Write the recording as JSON, atomically."""
        from mlvis.store import atomic_write_text

        return atomic_write_text(path, self.to_json(images) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> Recording:
        return cls.from_dict(json.loads(Path(path).read_text()))


class TrajectoryRecorder(StepHook):
    """Record a job's trajectories: pass it as ``run_job(..., hook=recorder)``, then call
    :meth:`recording` with the job's results (see the module docstring for what is kept and how much).

    Args:
        every: record every ``every`` steps (and always step 0 and the last step).
        keep_images: keep the adversarial images too (8-bit display copies).
        image_budget: the most bytes of images to keep; the image interval grows to fit it.
    """

    def __init__(self, every: int = 1, *, keep_images: bool = True, image_budget: int = IMAGE_BUDGET):
        if isinstance(every, bool) or not isinstance(every, (int, np.integer)) or every < 1:
            raise InvalidInput(f"every must be a whole number of steps, at least 1, not {every!r}.")
        if isinstance(image_budget, bool) or not isinstance(image_budget, (int, np.integer)) or image_budget < 0:
            raise InvalidInput(f"image_budget must be a number of bytes, at least 0, not {image_budget!r}.")
        super().__init__(every=int(every), record=self._record, final=False)
        self.keep_images = bool(keep_images)
        self.image_budget = int(image_budget)
        self.image_every = 0
        self._began = False
        self._steps: dict[int, np.ndarray] = {}
        self._probs: dict[int, np.ndarray] = {}
        self._img_steps: dict[int, np.ndarray] = {}
        self._images: dict[int, np.ndarray] = {}
        self._row_spec = np.zeros(0, np.int64)
        self._row_img = np.zeros(0, np.int64)

    def begin(self, table: RowTable, image_shape: tuple[int, ...]) -> None:
        if table.k != 1:
            raise InvalidInput(f"A trajectory recording follows one budget; give one eps, not {table.k}.")
        col = table.col
        self._began = True
        self._row_spec, self._row_img = col["spec"].astype(np.int64), col["img"].astype(np.int64)
        n_img, c, e = table.n_img, table.num_labels, self.every
        self._steps, self._probs, self._img_steps, self._images = {}, {}, {}, {}
        finals: dict[int, int] = {}
        for s in np.unique(self._row_spec).tolist():
            n = int(col["n"][self._row_spec == s].max())
            finals[s] = n
            self._steps[s] = np.array([0, *range(e, n, e), n], np.int64)
            self._probs[s] = np.full((len(self._steps[s]), n_img, c), np.nan, np.float32)
        self.image_every = 0
        if self.keep_images and finals:
            per_step = n_img * math.prod(image_shape)
            n_max = max(finals.values())
            for mult in range(1, max(1, n_max // e) + 2):
                stride = e * mult
                kept = sum(2 + len(range(stride, n, stride)) for n in finals.values())
                if kept * per_step <= self.image_budget:
                    self.image_every = stride
                    break
            if self.image_every:
                for s, n in finals.items():
                    st = np.array([0, *range(self.image_every, n, self.image_every), n], np.int64)
                    self._img_steps[s] = st
                    self._images[s] = np.zeros((len(st), n_img, *image_shape), np.uint8)

    def wants_images(self, k: int) -> bool:
        return self.image_every > 0 and k % self.image_every == 0

    def images(self, k: int, rows: np.ndarray, x: torch.Tensor) -> None:
        q = x.float().mul(255).round_().clamp_(0, 255).to(torch.uint8).cpu().numpy()
        spec, img = self._row_spec[rows], self._row_img[rows]
        for s in np.unique(spec).tolist():
            j = spec == s
            i = int(np.searchsorted(self._img_steps[s], k))
            self._images[s][i, img[j]] = q[j]

    def _record(self, k: int, rows: np.ndarray, logits: torch.Tensor) -> None:
        probs = torch.sigmoid(logits.float()).cpu().numpy()
        spec, img = self._row_spec[rows], self._row_img[rows]
        for s in np.unique(spec).tolist():
            j = spec == s
            self._probs[s][k // self.every, img[j]] = probs[j]

    def recording(self, results: Sequence[Any]) -> Recording:
        """The recording of the job whose ``results`` (``run_job``'s list, one per spec) this hook watched."""
        if not results:
            raise InvalidInput("A recording needs the job's results (one per method).")
        first = results[0]
        if first.adv.shape[0] != 1:
            raise InvalidInput(f"A trajectory recording follows one budget; the results have {first.adv.shape[0]}.")
        if not self._began and any(_in_loop(res.method) for res in results):
            raise InvalidInput("This recorder did not watch the job of these results; pass it as hook=.")
        thr = float(first.threshold)
        clean_pred = first.clean_probs >= thr
        traces, skipped = [], []
        for s, res in enumerate(results):
            if s not in self._probs:
                skipped.append((res.name, not_replayable(res)))
                continue
            probs = self._probs[s].copy()
            probs[0] = res.clean_probs
            probs[-1] = res.adv_probs[0]
            if np.isnan(probs).any():
                raise InvalidInput("This recorder did not watch the job of these results; pass it as hook=.")
            img_steps = self._img_steps.get(s, np.zeros(0, np.int64))
            images = None
            if s in self._images:
                images = self._images[s].copy()
                images[0] = _to_8bit(res.clean)
                images[-1] = _to_8bit(res.adv[0])
            traces.append(
                MethodTrace(
                    name=res.name,
                    method=res.method,
                    steps=self._steps[s].copy(),
                    probs=probs,
                    flips=flip_count(probs, clean_pred, thr).astype(np.int64),
                    image_steps=img_steps.copy(),
                    images=images,
                )
            )
        return Recording(
            model=str(first.config.get("model", "")),
            labels=tuple(first.labels),
            threshold=thr,
            eps=float(first.eps[0]),
            norm=str(first.norm),
            every=self.every,
            image_every=self.image_every,
            clean=_to_8bit(first.clean),
            clean_probs=np.asarray(first.clean_probs, np.float32).copy(),
            traces=tuple(traces),
            not_replayable=tuple(skipped),
        )


def _in_loop(method: str) -> bool:
    from mlvis.attacks.methods import RUNNER, get_method

    return get_method(method).kind != RUNNER


def _to_8bit(x: np.ndarray) -> np.ndarray:
    return np.clip(np.round(np.asarray(x, np.float32) * 255), 0, 255).astype(np.uint8)


def not_replayable(res: Any) -> str:
    """The sentence that says why ``res`` (an ``AttackResult`` of a method with its own optimiser) has no replay."""
    return (
        f"{res.name} is not replayable: it runs its own optimiser, outside the MI-FGSM loop whose steps the "
        f"recording follows (its result is the attack's as usual)."
    )


def record(
    model: torch.nn.Module,
    images: Any,
    methods: Sequence[Any],
    eps: Any,
    *,
    every: int = 1,
    keep_images: bool = True,
    image_budget: int = IMAGE_BUDGET,
    profile: Any = None,
    correlations: Any = None,
    **job: Any,
) -> Recording:
    """Attack ``images`` with ``methods`` at one budget ``eps`` as one engine job and record it.

    Args:
        model: the model; images: ``(N, 3, H, W)`` in [0, 1].
        methods: names, ``(name, options)`` or ``AttackSpec`` s; SLAM and CLASS get the model's shipped
            (or cached) profile and correlation matrices unless ``profile`` / ``correlations`` are given.
        eps: one budget (a number, or a one-budget :class:`~mlvis.attacks.budget.Budget`).
        every, keep_images, image_budget: see :class:`TrajectoryRecorder`.
        **job: ``run_job``'s options (``alpha``, ``norm``, ``seed``, ``device``, ``progress``, ...).
    """
    from mlvis.attacks import run_job
    from mlvis.attacks.plan import evaluation_specs, needs

    if needs(methods, "profile") and profile is None:
        from mlvis.analysis.profiles import profile as shipped_profile

        profile = shipped_profile(model)
    if needs(methods, "correlations") and correlations is None:
        from mlvis.analysis.correlation_matrices import correlations as shipped

        up = shipped(model, direction="up")
        try:
            correlations = (up, shipped(model, direction="down"))
        except ValueError:
            correlations = up
    specs = evaluation_specs(methods, profile, correlations)
    recorder = TrajectoryRecorder(every, keep_images=keep_images, image_budget=image_budget)
    results = run_job(model, images, specs, eps, hook=recorder, **job)
    return recorder.recording(results)


def pick_labels(recording: Recording, image: int = 0, count: int = 3) -> tuple[int, ...]:
    """``count`` label indices for the confidence space (Fig. 17), by :data:`PICK_RULE`.

    The movement towards the target is ``(y_n - y_0)`` for a label predicted absent, ``(y_0 - y_n)`` for one
    predicted present, averaged over the methods."""
    c = len(recording.labels)
    if c < count:
        raise InvalidInput(f"The confidence space needs {count} labels; this model has {c}.")
    if not recording.traces:
        raise InvalidInput("No replayable method in this recording, so no trajectory to draw.")
    y0 = recording.clean_probs[image].astype(np.float64)
    sign = np.where(recording.clean_pred[image], -1.0, 1.0)
    finals = np.stack([t.probs[-1, image] for t in recording.traces]).astype(np.float64)
    flipped = ((finals >= recording.threshold) != recording.clean_pred[image]).sum(0)
    moved = ((finals - y0) * sign).mean(0)
    order = np.lexsort((np.arange(c), -moved, -flipped))
    return tuple(int(i) for i in order[:count])
