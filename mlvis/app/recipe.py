"""The Attack Lab's configuration as a rerunnable *recipe* (JSON), shared by the page and ``mlvis attack``.

No Streamlit in here: the CLI imports this module (``mlvis.app``'s ``__init__`` imports nothing), so a
config downloaded from the dashboard reruns to the same numbers with ``mlvis attack --config FILE``.

A recipe names the model, the images (demo scenes by split / seed / first index / count, or image
files by name, loaded with :mod:`mlvis.data.images`), the methods and the settings every method shares:
the budget ``eps``, the step ``alpha``, the norm, SLAM's ``q``, CLASS's ``gamma`` and the seed.

**The budget.** ``eps`` is always the L-inf budget the page shows. With ``norm = "l2"`` the attack's
budget is the radius of the L2 ball whose volume equals the L-inf cube of half-width ``eps`` (appendix C,
:func:`mlvis.attacks.equal_volume_l2_radius`), so one number compares the two norms. SLAM's ``p``
(equation 7) and the subset length of CLASS and the random subset (section V-B) come from the model's
flip profile at the L-inf ``eps`` (the profile was measured in L-inf); they are written into the
resolved options as numbers, so the run does not depend on the profile file any more. CLASS reads the
model's shipped (or cached) flip-up and flip-down correlation matrices.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

VERSION = "mlvis.attack-recipe/1"
#: registered methods that are probes for analyses, not attacks a person picks in the Lab
HIDDEN_METHODS = ("single-label", "closest")
#: display names; a method not listed here shows its registry name
METHOD_TITLES = {
    "bce": "BCE",
    "linear": "Linear",
    "slam": "SLAM",
    "class": "CLASS",
    "random": "Random subset",
    "ml-cw": "ML-CW",
    "ml-deepfool": "ML-DeepFool",
    "mla-lp": "MLA-LP",
}
#: the order the Lab lists methods in (others follow, sorted)
METHOD_ORDER = tuple(METHOD_TITLES)
NORM_TITLES = {"linf": "L∞", "l2": "L2"}
SPLITS = ("train", "val", "test")
MAX_IMAGES = 16
MAX_EPS = 0.5


def lab_methods() -> list[str]:
    """The attack methods the Lab offers: every registered one except the analysis probes."""
    from mlvis.attacks import list_attacks

    names = [m for m in list_attacks() if m not in HIDDEN_METHODS]
    known = [m for m in METHOD_ORDER if m in names]
    return known + sorted(m for m in names if m not in known)


def method_title(method: str) -> str:
    return METHOD_TITLES.get(method, method)


def method_description(method: str) -> str:
    from mlvis.attacks import method_description as describe

    try:
        return describe(method)
    except ValueError:
        return ""


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
            raise ValueError("The recipe's images must be an object with a source.")
        source = d.get("source")
        if source == "files":
            files = d.get("files")
            if not isinstance(files, list) or not files or not all(isinstance(f, str) and f for f in files):
                raise ValueError("The recipe's images.files must be a non-empty list of file names.")
            if len(files) > MAX_IMAGES:
                raise ValueError(f"A recipe may name at most {MAX_IMAGES} image files, not {len(files)}.")
            fit = d.get("fit", "crop")
            if fit not in ("crop", "stretch"):
                raise ValueError(f"The recipe's images.fit must be crop or stretch, not {fit!r}.")
            return cls(kind="files", files=tuple(files), fit=fit)
        if source == "demo":
            split = d.get("split", "test")
            if split not in SPLITS:
                raise ValueError(f"The recipe's images.split must be one of {', '.join(SPLITS)}, not {split!r}.")
            seed, start, count = (
                _int(d.get(k, v), f"images.{k}") for k, v in (("seed", 0), ("start", 0), ("count", 1))
            )
            if not 0 <= seed <= 999:
                raise ValueError(f"The recipe's images.seed must lie in 0..999, not {seed}.")
            if not 0 <= start <= 10_000:
                raise ValueError(f"The recipe's images.start must lie in 0..10000, not {start}.")
            if not 1 <= count <= MAX_IMAGES:
                raise ValueError(f"The recipe's images.count must lie in 1..{MAX_IMAGES}, not {count}.")
            return cls(kind="demo", split=split, seed=seed, start=start, count=count)
        raise ValueError(f"The recipe's images.source must be 'demo' or 'files', not {source!r}.")


@dataclasses.dataclass(frozen=True)
class Recipe:
    """Everything one Attack Lab run needs, as plain hashable values (see the module docstring)."""

    model: str
    methods: tuple[str, ...]
    eps: float
    images: ImageSource = ImageSource()
    alpha: float = 1.0 / 2560.0
    norm: str = "linf"
    q: float = 0.5
    gamma: float = 0.5
    seed: int = 0

    def __post_init__(self):
        if not self.methods:
            raise ValueError("Choose at least one attack method.")
        if len(set(self.methods)) != len(self.methods):
            raise ValueError("Each method may be chosen once.")
        if not (math.isfinite(self.eps) and 0 < self.eps <= MAX_EPS):
            raise ValueError(f"ε must be a number above 0 and at most {MAX_EPS}, not {self.eps!r}.")
        if not (math.isfinite(self.alpha) and 0 < self.alpha <= MAX_EPS):
            raise ValueError(f"α must be a number above 0 and at most {MAX_EPS}, not {self.alpha!r}.")
        if self.norm not in NORM_TITLES:
            raise ValueError(f"The norm must be linf or l2, not {self.norm!r}.")
        for name, v in (("q", self.q), ("γ", self.gamma)):
            if not (math.isfinite(v) and 0 <= v <= 1):
                raise ValueError(f"{name} must lie in [0, 1], not {v!r}.")

    def budget(self, dims: int) -> float:
        """The attack's budget in its norm: ``eps``, or the equal-volume L2 radius for ``dims`` values."""
        if self.norm == "linf":
            return float(self.eps)
        from mlvis.attacks import equal_volume_l2_radius

        return float(equal_volume_l2_radius(float(self.eps), int(dims)))

    def steps(self, dims: int) -> int:
        """Iterations each method's loop takes (``n = floor(budget / step)``, at least 1)."""
        from mlvis.attacks import l2_step, n_steps

        step = self.alpha if self.norm == "linf" else l2_step(self.alpha, int(dims))
        return n_steps(self.budget(dims), step)

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
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1)

    @classmethod
    def from_dict(cls, d: Mapping) -> Recipe:
        if not isinstance(d, Mapping):
            raise ValueError("A recipe must be a JSON object.")
        if d.get("recipe") != VERSION:
            raise ValueError(f"This is not an mlvis attack recipe (its 'recipe' field must be {VERSION!r}).")
        model = d.get("model")
        if not isinstance(model, str) or not model:
            raise ValueError("The recipe must name its model.")
        methods = d.get("methods")
        if not isinstance(methods, list) or not all(isinstance(m, str) for m in methods):
            raise ValueError("The recipe's methods must be a list of method names.")
        return cls(
            model=model,
            methods=tuple(methods),
            eps=_float(d.get("eps"), "eps"),
            images=ImageSource.from_dict(d.get("images", {"source": "demo"})),
            alpha=_float(d.get("alpha", 1.0 / 2560.0), "alpha"),
            norm=str(d.get("norm", "linf")),
            q=_float(d.get("q", 0.5), "q"),
            gamma=_float(d.get("gamma", 0.5), "gamma"),
            seed=_int(d.get("seed", 0), "seed"),
        )

    @classmethod
    def from_json(cls, text: str) -> Recipe:
        try:
            d = json.loads(text)
        except ValueError as exc:
            raise ValueError(f"The recipe is not valid JSON ({exc}).") from None
        return cls.from_dict(d)


def _float(v: Any, name: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ValueError(f"The recipe's {name} must be a number, not {v!r}.")
    return float(v)


def _int(v: Any, name: str) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise ValueError(f"The recipe's {name} must be a whole number, not {v!r}.")
    return int(v)


# ------------------------------------------------------------------------------------------------ running


_ARTIFACT_NAMES = {
    "profile": "flip profile",
    "up": "flip-up correlation matrix",
    "down": "flip-down correlation matrix",
}


@dataclasses.dataclass(frozen=True)
class Artifacts:
    """The model's flip profile and correlation matrices (``None`` where missing)."""

    model: str = ""
    profile: Any = None
    up: Any = None
    down: Any = None

    def correlations(self):
        """What CLASS reads: the (flip-up, flip-down) pair, or the flip-up matrix alone (flip-down is then
        approximated by 1 - flip-up, section IV-B), or ``None``."""
        if self.up is None:
            return None
        return (self.up, self.down) if self.down is not None else self.up

    def problem(self, method: str) -> str | None:
        """Why ``method`` cannot run with these artifacts, as a sentence; ``None`` when it can."""
        needs = ["profile"] if method in ("slam", "class", "random") else []
        needs += ["up"] if method == "class" else []
        missing = [k for k in needs if getattr(self, k) is None]
        if not missing:
            return None
        what = " and no ".join(_ARTIFACT_NAMES[k] for k in missing)
        page = (
            "Profiles"
            if missing == ["profile"]
            else ("Label landscape" if "profile" not in missing else "Profiles and Label landscape")
        )
        cli = " / ".join(
            f"`mlvis {'profile' if k == 'profile' else 'correlations'} --model {self.model}`" for k in missing
        )
        return (
            f"{method_title(method)} cannot run: {self.model or 'this model'} has no {what} yet. "
            f"Compute it on the {page} page (or with {cli})."
        )


def model_artifacts(model) -> Artifacts:
    """The shipped (or cached) profile and flip-up / flip-down matrices of ``model`` (``None`` where missing)."""
    import mlvis

    found: dict[str, Any] = {}
    for key, get in (
        ("profile", lambda: mlvis.profile(model)),
        ("up", lambda: mlvis.correlations(model, direction="up")),
        ("down", lambda: mlvis.correlations(model, direction="down")),
    ):
        try:
            found[key] = get()
        except ValueError:
            found[key] = None
    name = model.spec.name if hasattr(model, "spec") else type(model).__name__
    return Artifacts(name, **found)


def resolve_specs(recipe: Recipe, model, artifacts: Artifacts | None = None) -> list:
    """The recipe's methods as engine specs with every option resolved (see the module docstring).

    Raises ``ValueError`` with a sentence when a method needs an artifact the model does not have, or
    needs an option the Lab cannot give it.
    """
    from mlvis.attacks import AttackSpec, get_method
    from mlvis.attacks.subsets import subset_length

    arts = artifacts if artifacts is not None else model_artifacts(model)
    c = len(model.labels)
    specs = []
    for method in recipe.methods:
        info = get_method(method)  # ValueError naming the known methods
        problem = arts.problem(method)
        if problem:
            raise ValueError(problem)
        opts: dict[str, Any] = {}
        if method == "slam":
            opts = {"q": recipe.q, "p": float(arts.profile.flip_ratio(recipe.eps))}
        elif method in ("class", "random"):
            opts = {"length": subset_length(float(arts.profile.expected_flips(recipe.eps)), c)}
            if method == "class":
                opts |= {"gamma": recipe.gamma, "correlations": arts.correlations()}
        else:  # bce, linear, and methods registered later: give what they accept
            offered = {"q": recipe.q, "gamma": recipe.gamma}
            if arts.profile is not None:
                offered["profile"] = arts.profile
            if arts.up is not None:
                offered["correlations"] = arts.correlations()
            opts = {k: v for k, v in offered.items() if k in info.options}
        missing = [o for o in info.required if o not in opts]
        if missing:
            raise ValueError(
                f"{method_title(method)} needs the option(s) {', '.join(missing)}, which the Lab cannot set."
            )
        specs.append(AttackSpec(method, opts, name=method_title(method)))
    return specs


def demo_images(source: ImageSource, size: Sequence[int]) -> np.ndarray:
    """The demo scenes of ``source`` at ``size`` (H, W) as ``(N, 3, H, W)`` float32."""
    import mlvis

    h, w = (int(v) for v in size)
    if h != w:
        raise ValueError(f"The demo scenes are square; this model expects {h}×{w}: upload images instead.")
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


def run_recipe(recipe: Recipe, model, images: np.ndarray, *, progress=None, artifacts: Artifacts | None = None):
    """Run every method of ``recipe`` on ``images`` as ONE engine job; one ``AttackResult`` per method."""
    from mlvis.attacks import run_job

    images = np.asarray(images, np.float32)
    specs = resolve_specs(recipe, model, artifacts)
    budget = recipe.budget(int(np.prod(images.shape[1:])))
    return run_job(
        model, images, specs, budget, alpha=recipe.alpha, norm=recipe.norm, seed=recipe.seed, progress=progress
    )


#: methods that run the engine's MI-FGSM loop, whose cost is images x steps; the others (ML-CW, ML-DeepFool,
#: MLA-LP, ...) run their own optimisers, often far longer
LOOP_METHODS = ("bce", "linear", "slam", "class", "random")


def unestimated(methods: Sequence[str]) -> list[str]:
    """The methods whose cost ``image_steps`` cannot estimate (their own optimisers)."""
    return [m for m in methods if m not in LOOP_METHODS]


def cost_note(methods: Sequence[str]) -> str:
    """A sentence for the cost caption when some methods are not estimated ('' otherwise)."""
    others = unestimated(methods)
    if not others:
        return ""
    names = ", ".join(method_title(m) for m in others)
    verb, own = ("runs", "its") if len(others) == 1 else ("run", "their")
    return f"{names} {verb} {own} own optimiser, not counted (often many seconds per image), so this waits for Run"


def image_steps(recipe: Recipe, num_images: int, dims: int) -> int:
    """Image-steps (one forward + backward of one image) the recipe's job takes: methods x images x steps."""
    return len(recipe.methods) * int(num_images) * recipe.steps(dims)


def read_files_from(folder: str | Path) -> Callable[[str], bytes]:
    """``read(name)`` for image files named in a recipe, looked up in ``folder`` by their base name only
    (a name cannot reach outside the folder, nor can a symbolic link in it: ``mlvis.store.confined``)."""
    from mlvis.store import confined

    root = Path(folder)

    def read(name: str) -> bytes:
        path = confined(root, Path(name).name)
        if not path.is_file():
            raise FileNotFoundError(f"The recipe's image {name!r} is not in {root} (give its folder with --images).")
        return path.read_bytes()

    return read
