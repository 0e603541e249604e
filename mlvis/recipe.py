"""The Attack Lab's configuration as a rerunnable *recipe* (JSON), shared by the page and ``mlvis attack``.

A library module (no Streamlit): the Lab, the histograms page and the CLI all run recipes through it, so a
config downloaded from the dashboard reruns to the same numbers with ``mlvis attack --config FILE``.

A recipe names the model, the images (demo scenes by split / seed / first index / count, or image
files by name, loaded with :mod:`mlvis.data.images`), the methods and the settings every method shares:
the budget ``eps``, the step ``alpha``, the norm, the methods' exposed options (SLAM's ``q`` and CLASS's
``gamma`` as top-level fields, any other registered method's under ``options``, keyed ``"<method>.<name>"``)
and the seed.

**The budget.** ``eps`` is always the L-inf budget the page shows. With ``norm = "l2"`` the attack's
budget is the radius of the L2 ball whose volume equals the L-inf cube of half-width ``eps`` (appendix C,
:func:`mlvis.attacks.equal_volume_l2_radius`), so one number compares the two norms. SLAM's ``p``
(equation 7) and the subset length of CLASS and the random subset (section V-B) come from the model's
flip profile at the L-inf ``eps`` (the profile was measured in L-inf; :class:`mlvis.attacks.Budget`), by
the methods' own registered rules; they are written into the resolved options as numbers, so the run does
not depend on the profile file any more. CLASS reads the model's shipped (or cached) flip-up and flip-down
correlation matrices.

**Unbounded methods.** ``unbounded`` names methods that run without a budget: methods with their own
optimiser (the related attacks, :mod:`mlvis.attacks.related`) are built that way and read at the budget they
reached. They run as a second job at the L-inf cap 1, which an image in [0, 1] never exceeds.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mlvis.attacks.budget import NORM_TITLES, Budget
from mlvis.attacks.geometry import DEFAULT_ALPHA
from mlvis.attacks.plan import (
    Artifacts,
    cost_note,
    lab_methods,
    method_description,
    method_title,
    resolve,
    unestimated,
)
from mlvis.attacks.plan import image_steps as plan_image_steps
from mlvis.errors import InvalidInput

__all__ = [
    "Artifacts",
    "ImageSource",
    "Recipe",
    "cost_note",
    "demo_images",
    "file_images",
    "lab_methods",
    "method_description",
    "method_title",
    "model_artifacts",
    "read_files_from",
    "resolve_specs",
    "run_recipe",
    "unestimated",
]

VERSION = "mlvis.attack-recipe/1"
SPLITS = ("train", "val", "test")
MAX_IMAGES = 16
MAX_EPS = 0.5


@dataclasses.dataclass(frozen=True)
class ImageSource:
    """Where a recipe's images come from.

    ``kind = "demo"``: scenes ``start .. start + count - 1`` of the demo world's ``split`` in block ``seed``
    (see ``mlvis.data.demo_batch``) at the model's input size. ``kind = "files"``: the named image files,
    in order, loaded and resized to the model's input size with ``fit`` (``mlvis.data.images``).
    """

    kind: str = "demo"
    split: str = "test"
    seed: int = 0
    start: int = 0
    count: int = 1
    files: tuple[str, ...] = ()
    fit: str = "crop"

    def to_dict(self) -> dict:
        if self.kind == "files":
            return {"source": "files", "files": list(self.files), "fit": self.fit}
        return {"source": "demo", "split": self.split, "seed": self.seed, "start": self.start, "count": self.count}

    @classmethod
    def from_dict(cls, d: Mapping) -> ImageSource:
        if not isinstance(d, Mapping):
            raise InvalidInput("The recipe's images must be an object with a source.")
        source = d.get("source")
        if source == "files":
            files = d.get("files")
            if not isinstance(files, list) or not files or not all(isinstance(f, str) and f for f in files):
                raise InvalidInput("The recipe's images.files must be a non-empty list of file names.")
            if len(files) > MAX_IMAGES:
                raise InvalidInput(f"A recipe may name at most {MAX_IMAGES} image files, not {len(files)}.")
            fit = d.get("fit", "crop")
            if fit not in ("crop", "stretch"):
                raise InvalidInput(f"The recipe's images.fit must be crop or stretch, not {fit!r}.")
            return cls(kind="files", files=tuple(files), fit=fit)
        if source == "demo":
            split = d.get("split", "test")
            if split not in SPLITS:
                raise InvalidInput(f"The recipe's images.split must be one of {', '.join(SPLITS)}, not {split!r}.")
            seed, start, count = (
                _int(d.get(k, v), f"images.{k}") for k, v in (("seed", 0), ("start", 0), ("count", 1))
            )
            if not 0 <= seed <= 999:
                raise InvalidInput(f"The recipe's images.seed must lie in 0..999, not {seed}.")
            if not 0 <= start <= 10_000:
                raise InvalidInput(f"The recipe's images.start must lie in 0..10000, not {start}.")
            if not 1 <= count <= MAX_IMAGES:
                raise InvalidInput(f"The recipe's images.count must lie in 1..{MAX_IMAGES}, not {count}.")
            return cls(kind="demo", split=split, seed=seed, start=start, count=count)
        raise InvalidInput(f"The recipe's images.source must be 'demo' or 'files', not {source!r}.")


MAX_RECIPE_CHARS = 1_000_000  # a recipe is a few hundred bytes; this bounds what a shared file may ask to parse


@dataclasses.dataclass(frozen=True)
class Recipe:
    """Everything one Attack Lab run needs, as plain hashable values (see the module docstring)."""

    model: str
    methods: tuple[str, ...]
    eps: float
    images: ImageSource = ImageSource()
    alpha: float = DEFAULT_ALPHA
    norm: str = "linf"
    q: float = 0.5
    gamma: float = 0.5
    seed: int = 0
    options: tuple[tuple[str, float], ...] = ()
    unbounded: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.methods:
            raise InvalidInput("Choose at least one attack method.")
        if len(set(self.methods)) != len(self.methods):
            raise InvalidInput("Each method may be chosen once.")
        if not (math.isfinite(self.eps) and 0 < self.eps <= MAX_EPS):
            raise InvalidInput(f"ε must be a number above 0 and at most {MAX_EPS}, not {self.eps!r}.")
        if not (math.isfinite(self.alpha) and 0 < self.alpha <= MAX_EPS):
            raise InvalidInput(f"α must be a number above 0 and at most {MAX_EPS}, not {self.alpha!r}.")
        if self.norm not in NORM_TITLES:
            raise InvalidInput(f"The norm must be linf or l2, not {self.norm!r}.")
        for name, v in (("q", self.q), ("γ", self.gamma)):
            if not (math.isfinite(v) and 0 <= v <= 1):
                raise InvalidInput(f"{name} must lie in [0, 1], not {v!r}.")
        for key, v in self.options:
            if not isinstance(key, str) or isinstance(v, bool) or not isinstance(v, (int, float)):
                raise InvalidInput(f"The recipe's options must map names to numbers, not {key!r}: {v!r}.")
        stray = [m for m in self.unbounded if m not in self.methods]
        if stray:
            raise InvalidInput(f"The recipe's unbounded methods must be among its methods, not {stray}.")

    @property
    def values(self) -> dict[str, float]:
        """Every exposed option's value by its recipe key: ``q``, ``gamma`` and the ``options``."""
        return {"q": self.q, "gamma": self.gamma, **dict(self.options)}

    @classmethod
    def with_values(cls, model: str, methods: Sequence[str], eps: float, values: Mapping[str, float], **kw: Any):
        """A recipe whose exposed options come from ``values`` (keyed like :attr:`values`)."""
        rest = {k: float(v) for k, v in values.items() if k not in ("q", "gamma")}
        return cls(model, tuple(methods), eps, q=float(values.get("q", 0.5)), gamma=float(values.get("gamma", 0.5)),
                   options=tuple(sorted(rest.items())), **kw)  # fmt: skip

    def budget_of(self, dims: int) -> Budget:
        """The budget as a :class:`~mlvis.attacks.Budget`: the L-inf ``eps`` and, under L2, its radius."""
        return Budget.from_linf(float(self.eps), self.norm, int(dims))

    def budget(self, dims: int) -> float:
        """The attack's budget in its norm: ``eps``, or the equal-volume L2 radius for ``dims`` values."""
        return self.budget_of(dims).eps[0]

    def steps(self, dims: int) -> int:
        """Iterations each method's loop takes (``n = floor(budget / step)``, at least 1)."""
        from mlvis.attacks.norms import get_norm
        from mlvis.attacks.rows import step_counts

        step = get_norm(self.norm).step_length(self.alpha, int(dims))
        return int(step_counts(np.array([self.budget(dims)]), step)[0])

    def image_steps(self, num_images: int, dims: int) -> int:
        """The dry run: image-steps the recipe's job takes (its own-optimiser methods count 0)."""
        from mlvis.attacks import AttackSpec, get_method
        from mlvis.attacks.plan import exposed_values

        specs = [AttackSpec(m, exposed_values(get_method(m), self.values)) for m in self.methods]
        return plan_image_steps(specs, self.budget_of(dims), int(num_images), alpha=self.alpha, dims=int(dims))

    def to_dict(self) -> dict:
        return {
            "recipe": VERSION,
            "model": self.model,
            "images": self.images.to_dict(),
            "methods": list(self.methods),
            "eps": self.eps,
            "alpha": self.alpha,
            "norm": self.norm,
            "q": self.q,
            "gamma": self.gamma,
            "seed": self.seed,
            **({"options": dict(self.options)} if self.options else {}),
            **({"unbounded": list(self.unbounded)} if self.unbounded else {}),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1)

    @classmethod
    def from_dict(cls, d: Mapping) -> Recipe:
        if not isinstance(d, Mapping):
            raise InvalidInput("A recipe must be a JSON object.")
        if d.get("recipe") != VERSION:
            raise InvalidInput(f"This is not an mlvis attack recipe (its 'recipe' field must be {VERSION!r}).")
        model = d.get("model")
        if not isinstance(model, str) or not model:
            raise InvalidInput("The recipe must name its model.")
        methods = d.get("methods")
        if not isinstance(methods, list) or not all(isinstance(m, str) for m in methods):
            raise InvalidInput("The recipe's methods must be a list of method names.")
        options = d.get("options", {})
        if not isinstance(options, Mapping):
            raise InvalidInput("The recipe's options must be an object of numbers.")
        unbounded = d.get("unbounded", [])
        if not isinstance(unbounded, list) or not all(isinstance(m, str) for m in unbounded):
            raise InvalidInput("The recipe's unbounded must be a list of method names.")
        return cls(
            model=model,
            methods=tuple(methods),
            eps=_float(d.get("eps"), "eps"),
            images=ImageSource.from_dict(d.get("images", {"source": "demo"})),
            alpha=_float(d.get("alpha", DEFAULT_ALPHA), "alpha"),
            norm=str(d.get("norm", "linf")),
            q=_float(d.get("q", 0.5), "q"),
            gamma=_float(d.get("gamma", 0.5), "gamma"),
            seed=_int(d.get("seed", 0), "seed"),
            options=tuple(sorted((str(k), _float(v, f"options.{k}")) for k, v in options.items())),
            unbounded=tuple(unbounded),
        )

    @classmethod
    def from_json(cls, text: str) -> Recipe:
        if len(text) > MAX_RECIPE_CHARS:
            raise InvalidInput(
                f"A recipe is at most {MAX_RECIPE_CHARS // 1000} kB of JSON; this one has {len(text)} characters."
            )
        try:
            d = json.loads(text)
        except RecursionError:
            raise InvalidInput("The recipe is nested too deeply to be a recipe.") from None
        except ValueError as exc:
            raise InvalidInput(f"The recipe is not valid JSON ({exc}).") from None
        return cls.from_dict(d)


def _float(v: Any, name: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise InvalidInput(f"The recipe's {name} must be a number, not {v!r}.")
    return float(v)


def _int(v: Any, name: str) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise InvalidInput(f"The recipe's {name} must be a whole number, not {v!r}.")
    return int(v)


# ------------------------------------------------------------------------------------------------ running


def model_artifacts(model, norm: str = "linf") -> Artifacts:
    """The shipped (or cached) profile in ``norm`` and flip-up / flip-down matrices of ``model`` (``None``
    where missing)."""
    import mlvis

    found: dict[str, Any] = {}
    for key, get in (
        ("profile", lambda: mlvis.profile(model, norm=norm)),
        ("up", lambda: mlvis.correlations(model, direction="up")),
        ("down", lambda: mlvis.correlations(model, direction="down")),
    ):
        try:
            found[key] = get()
        except ValueError:
            found[key] = None
    name = model.spec.name if hasattr(model, "spec") else type(model).__name__
    return Artifacts(name, **found, norm=norm)


def resolve_specs(recipe: Recipe, model, artifacts: Artifacts | None = None) -> list:
    """The recipe's methods as engine specs with every option resolved (:func:`mlvis.attacks.plan.resolve`).

    Raises ``ValueError`` with a sentence when a method needs an artifact the model does not have, or
    needs an option the Lab cannot give it.
    """
    arts = artifacts if artifacts is not None else model_artifacts(model, recipe.norm)
    dims = 3 * int(np.prod(getattr(getattr(model, "spec", None), "input_size", (1, 1))))
    return resolve(recipe.methods, recipe.budget_of(dims), arts, recipe.values, len(model.labels))


def demo_images(source: ImageSource, size: Sequence[int]) -> np.ndarray:
    """The demo scenes of ``source`` at ``size`` (H, W) as ``(N, 3, H, W)`` float32."""
    import mlvis

    h, w = (int(v) for v in size)
    if h != w:
        raise InvalidInput(f"The demo scenes are square; this model expects {h}×{w}: upload images instead.")
    x, _ = mlvis.data.demo_batch(source.start + source.count, split=source.split, seed=source.seed, size=h)
    return x[source.start :].numpy()


def file_images(
    source: ImageSource, size: Sequence[int], read: Callable[[str], bytes], interpolation: str = "lanczos"
) -> np.ndarray:
    """The image files of ``source``, each read with ``read(name)``, validated and resized (``interpolation``:
    the model card's filter, ``mlvis.models.preprocess_for(spec).interpolation``)."""
    from mlvis.data.images import load_image, to_batch

    return to_batch(
        [load_image(read(name), size, name=name, fit=source.fit, interpolation=interpolation) for name in source.files]
    )


UNBOUNDED = Budget.of([1.0], "linf")
"""The budget of the recipe's ``unbounded`` methods: an L-inf cap of 1 never binds on images in [0, 1]."""


def run_recipe(
    recipe: Recipe, model, images: np.ndarray, *, progress=None, artifacts: Artifacts | None = None, hook=None,
    autocast: bool = False,
):  # fmt: skip
    """Run every method of ``recipe`` on ``images`` as ONE engine job (its ``unbounded`` methods as a second
    one, at :data:`UNBOUNDED`); one ``AttackResult`` per method, in the recipe's order.

    ``hook``: the engine's step hook for the bounded job (e.g. the replay's
    ``mlvis.analysis.trajectory.TrajectoryRecorder``); the unbounded methods run their own optimisers.
    ``autocast``: the engine's bf16 autocast of the gradient passes."""
    from mlvis.attacks import run_job

    images = np.asarray(images, np.float32)
    arts = artifacts if artifacts is not None else model_artifacts(model, recipe.norm)
    results: dict[str, Any] = {}
    bounded = tuple(m for m in recipe.methods if m not in recipe.unbounded)
    for methods, budget in ((bounded, recipe.budget_of(int(np.prod(images.shape[1:])))), (recipe.unbounded, UNBOUNDED)):
        if methods:
            specs = resolve(methods, budget, arts, recipe.values, len(model.labels))
            step_hook = hook if methods is bounded else None
            job = run_job(model, images, specs, budget, alpha=recipe.alpha, seed=recipe.seed, progress=progress,
                          hook=step_hook, autocast=autocast)  # fmt: skip
            results.update(zip(methods, job))
    return [results[m] for m in recipe.methods]


def image_steps(recipe: Recipe, num_images: int, dims: int) -> int:
    """Image-steps (one forward + backward of one image) the recipe's job takes (:meth:`Recipe.image_steps`)."""
    return recipe.image_steps(num_images, dims)


def read_files_from(folder: str | Path) -> Callable[[str], bytes]:
    """``read(name)`` for image files named in a recipe, looked up in ``folder`` by their base name only
    (a name cannot reach outside the folder, nor can a symbolic link in it, not even one swapped in while
    the file is opened: ``mlvis.store.open_confined``)."""
    from mlvis.store import read_confined

    root = Path(folder)

    def read(name: str) -> bytes:
        try:
            return read_confined(root, Path(name).name)
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise FileNotFoundError(
                f"The recipe's image {name!r} is not in {root} (give its folder with --images)."
            ) from None

    return read
