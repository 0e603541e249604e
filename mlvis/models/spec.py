"""What a model is, apart from its weights: labels, input geometry, preprocessing, normalisation, threshold."""

from __future__ import annotations

import dataclasses
from typing import Any

from mlvis.errors import ModelLoadError

#: how an image is fitted to the model's input: ``crop`` (centred crop with the model's aspect ratio,
#: then resize) or ``stretch`` (the whole image resized to the input size, as ASL and Query2Label test)
RESIZES = ("crop", "stretch")
#: the resampling filter of that resize (Pillow's filters of the same names)
INTERPOLATIONS = ("lanczos", "bilinear", "bicubic", "nearest")
#: what a model was trained to see: the demo scene world, or photographs
WORLDS = ("demo", "photos")


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """The model card fields every part of mlvis relies on.

    Attributes:
        name: registry name (``demo-asl``).
        labels: label names in output order.
        input_size: ``(height, width)`` the model expects; images are resized to it.
        mean, std: per-channel normalisation applied *inside* the model to inputs in [0, 1].
        threshold: a label is predicted present when sigmoid(logit) >= threshold.
        source: where the weights come from (a file path or "embedded").
        description: one line for people.
        resize: how every image path fits an image to ``input_size`` (one of ``RESIZES``).
        interpolation: the resampling filter of that resize (one of ``INTERPOLATIONS``).
        family: the family or architecture that built it (``asl-tresnet-l``, ``timm:resnet50``, ...).
        world: what it was trained to see: ``"demo"`` (the demo scene world), ``"photos"``, or ``""``
            when unknown; pages say so plainly when an image does not fit.
        notes: sentences every page that shows the model must display (a setting that departs from the
            model's own evaluation, such as Query2Label without its normalisation).
        card: the full model card (training config, measured mAP, ...), for display.
    """

    name: str
    labels: tuple[str, ...]
    input_size: tuple[int, int]
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    threshold: float = 0.5
    source: str = ""
    description: str = ""
    resize: str = "crop"
    interpolation: str = "lanczos"
    family: str = ""
    world: str = ""
    notes: tuple[str, ...] = ()
    card: dict[str, Any] = dataclasses.field(default_factory=dict, compare=False, hash=False, repr=False)

    def __post_init__(self) -> None:
        if self.resize not in RESIZES:
            raise ModelLoadError(f"resize must be one of {', '.join(RESIZES)}, not {self.resize!r}.")
        if self.interpolation not in INTERPOLATIONS:
            allowed = ", ".join(INTERPOLATIONS)
            raise ModelLoadError(f"interpolation must be one of {allowed}, not {self.interpolation!r}.")

    @property
    def num_labels(self) -> int:
        return len(self.labels)


@dataclasses.dataclass(frozen=True)
class Preprocessing:
    """How every image path turns a file into the model's input (``mlvis.data.images.load_image``'s
    ``fit`` and ``interpolation``), as the model's card says."""

    size: tuple[int, int]
    fit: str
    interpolation: str

    def describe(self) -> str:
        h, w = self.size
        how = "stretched" if self.fit == "stretch" else "centre-cropped and resized"
        return f"{how} to {w}×{h} ({self.interpolation})"


def preprocess_for(spec: ModelSpec) -> Preprocessing:
    """The preprocessing ``spec`` names: its input size, resize rule and interpolation.

    Example:
        >>> p = preprocess_for(model.spec)
        >>> load_image(data, p.size, fit=p.fit, interpolation=p.interpolation)
    """
    return Preprocessing(tuple(int(v) for v in spec.input_size), spec.resize, spec.interpolation)  # type: ignore[arg-type]
