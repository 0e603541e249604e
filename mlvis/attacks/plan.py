"""From "these methods, these budgets, this profile" to engine specs, result titles and dry-run costs.

Every front end (the Lab, the sweep, the histograms, ``mlvis evaluate --methods``, the cost estimates, the
result titles and exports) goes through this module, which reads the method registry
(:func:`~mlvis.attacks.methods.register_method`) instead of naming methods:

- :func:`lab_methods`, :func:`method_title`, :func:`row_name`: what a person picks and what a result is called;
- :func:`evaluation_specs`: methods with the model's profile and correlation matrices filled in (evaluate);
- :func:`resolve`: a recipe's methods with every option resolved to numbers at one :class:`Budget` (the Lab);
- :func:`parse_method`: ``name``, ``name:value`` (its first exposed option) or ``name:opt=value[:opt=value]``;
- :func:`image_steps`, :func:`cost_note`: what a job will cost, counted on the engine's own row rule
  (:func:`mlvis.attacks.rows.image_steps`), and which methods it cannot count (their own optimisers).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from mlvis.attacks.budget import Budget, EpsLike
from mlvis.attacks.engine import AttackSpec, runner_steps_per_image
from mlvis.attacks.methods import MethodInfo, get_method, registered
from mlvis.attacks.rows import image_steps as _row_image_steps
from mlvis.errors import InvalidInput

__all__ = [
    "Artifacts",
    "as_spec",
    "cost_note",
    "evaluation_specs",
    "image_steps",
    "lab_methods",
    "method_title",
    "needs",
    "parse_method",
    "resolve",
    "row_name",
    "runner_image_steps",
    "unestimated",
]


def lab_methods() -> list[str]:
    """The attack methods a person picks from: every registered one except the analysis probes (built-ins in
    their registration order, then the others by name)."""
    return [i.name for i in registered() if not i.hidden]


def method_title(method: str) -> str:
    """The display name of ``method`` (``"SLAM"``, ``"Random subset"``); an unknown name shows as itself."""
    try:
        return get_method(method).title
    except ValueError:
        return method


def method_description(method: str) -> str:
    try:
        return get_method(method).description
    except ValueError:
        return ""


def needs(methods: Sequence[Any], what: str) -> bool:
    """Whether any of ``methods`` (names, ``(name, options)`` or specs) reads the model's ``what``
    (``"profile"`` or ``"correlations"``)."""
    return any(what in get_method(as_spec(m).method).needs for m in methods)


def as_spec(m: Any) -> AttackSpec:
    """A method given as a name, ``(name, options)`` or an :class:`AttackSpec`, as an :class:`AttackSpec`."""
    if isinstance(m, str):
        return AttackSpec(m)
    if isinstance(m, AttackSpec):
        return m
    if isinstance(m, tuple) and len(m) == 2:
        return AttackSpec(m[0], dict(m[1]))
    raise InvalidInput(f"A method must be a name, (name, options) or an AttackSpec, not {m!r}.")


def row_name(spec: AttackSpec) -> str:
    """``CLASS(γ=0.5)``, ``SLAM(q=0.5)``, ``Random subset``: the paper's row names (``spec.name`` when given)."""
    if spec.name:
        return spec.name
    try:
        info = get_method(spec.method)
    except ValueError:
        return spec.method
    return info.row_name(spec.options)


def evaluation_specs(methods: Sequence[Any], profile: Any, correlations: Any) -> list[AttackSpec]:
    """``methods`` as named engine specs with the model's ``profile`` and ``correlations`` filled in where
    the registry says a method reads them (and none of the options that replace them is given)."""
    out = []
    for m in methods:
        s = as_spec(m)
        info = get_method(s.method)
        opts = dict(s.options)
        if "profile" in info.needs and not any(k in opts for k in info.profile_gives):
            opts.setdefault("profile", profile)
        if "correlations" in info.needs:
            if correlations is None and "correlations" not in opts:
                raise InvalidInput(f"{info.title} needs the model's correlation matrices (mlvis.correlations).")
            opts.setdefault("correlations", correlations)
        out.append(AttackSpec(s.method, opts, row_name(AttackSpec(s.method, opts, s.name))))
    names = [s.name for s in out]
    if len(set(names)) != len(names):
        raise InvalidInput(f"Two methods share a name ({names}); give them distinct names with AttackSpec(name=...).")
    return out


# ------------------------------------------------------------------------------------------------ artifacts


_ARTIFACT_NAMES = {
    "profile": "flip profile",
    "up": "flip-up correlation matrix",
    "down": "flip-down correlation matrix",
}


@dataclasses.dataclass(frozen=True)
class Artifacts:
    """A model's flip profile (of the attack's ``norm``) and correlation matrices (``None`` where missing)."""

    model: str = ""
    profile: Any = None
    up: Any = None
    down: Any = None
    norm: str = "linf"

    def correlations(self) -> Any:
        """What CLASS reads: the (flip-up, flip-down) pair, or the flip-up matrix alone (flip-down is then
        approximated by 1 - flip-up, section IV-B), or ``None``."""
        if self.up is None:
            return None
        return (self.up, self.down) if self.down is not None else self.up

    def problem(self, method: str) -> str | None:
        """Why ``method`` cannot run with these artifacts, as a sentence; ``None`` when it can."""
        info = get_method(method)
        wanted = ["profile"] if "profile" in info.needs else []
        wanted += ["up"] if "correlations" in info.needs else []
        missing = [k for k in wanted if getattr(self, k) is None]
        if not missing:
            return None
        names = {**_ARTIFACT_NAMES, "profile": "L2 flip profile" if self.norm == "l2" else "flip profile"}
        what = " and no ".join(names[k] for k in missing)
        page = (
            "Profiles"
            if missing == ["profile"]
            else ("Label landscape" if "profile" not in missing else "Profiles and Label landscape")
        )
        flag = " --norm l2" if self.norm == "l2" else ""
        cli = " / ".join(
            f"`mlvis {'profile' if k == 'profile' else 'correlations'} --model {self.model}"
            f"{flag if k == 'profile' else ''}`"
            for k in missing
        )
        return (
            f"{info.title} cannot run: {self.model or 'this model'} has no {what} yet. "
            f"Compute it on the {page} page (or with {cli})."
        )


def exposed_values(info: MethodInfo, values: Mapping[str, Any]) -> dict[str, Any]:
    """The method's exposed options, each from ``values`` (keyed by the option's recipe key) or its default."""
    return {o.name: o.check(values.get(info.key(o), o.default), info.title) for o in info.exposed}


def resolve(
    methods: Sequence[str], budget: Budget, artifacts: Artifacts, values: Mapping[str, Any], num_labels: int
) -> list[AttackSpec]:
    """The methods as engine specs with every option resolved (what a recipe runs).

    Exposed options come from ``values`` (keyed by the options' recipe keys, e.g. ``"q"``, ``"gamma"``);
    options a method reads from the profile are written as numbers, computed by the method's own rule at the
    budget itself, from the profile of the budget's norm (so the run no longer depends on the profile file,
    and gives what the library gives for the same settings; a profile of the other norm is refused);
    correlation matrices are passed along.

    Raises:
        ValueError: with a sentence when a method needs an artifact the model does not have, or an option
            no front end can set.
    """
    specs = []
    for method in methods:
        info = get_method(method)  # ValueError naming the known methods
        problem = artifacts.problem(method)
        if problem:
            raise InvalidInput(problem)
        opts: dict[str, Any] = exposed_values(info, values)
        if info.from_profile is not None and artifacts.profile is not None:
            for k, v in info.from_profile(artifacts.profile, budget.for_profile(artifacts.profile), num_labels).items():
                arr = np.asarray(v)
                opts[k] = arr.item() if arr.size == 1 else arr
        elif "profile" in info.needs:
            opts["profile"] = artifacts.profile
        if "correlations" in info.needs:
            opts["correlations"] = artifacts.correlations()
        missing = [o for o in info.required if o not in opts]
        if missing:
            raise InvalidInput(f"{info.title} needs the option(s) {', '.join(missing)}, which the Lab cannot set.")
        specs.append(AttackSpec(method, opts, name=info.title))
    return specs


# ------------------------------------------------------------------------------------------------ the CLI


def parse_method(text: str) -> AttackSpec:
    """``bce``; ``slam:0.25`` (the first exposed option, here q); ``class:gamma=0.5``;
    ``ml-deepfool:max_iter=5:overshoot=0.05`` (any numeric option the method accepts)."""
    name, _, rest = text.strip().partition(":")
    info = get_method(name)
    if not rest:
        return AttackSpec(name)
    opts: dict[str, Any] = {}
    for part in rest.split(":"):
        key, eq, value = part.partition("=")
        if not eq:
            if not info.exposed:
                raise InvalidInput(
                    f"{name} has no option a bare value could set, in {text!r}; use {name}:OPTION=VALUE."
                )
            key, value = info.exposed[0].name, part
        key = key.strip()
        try:
            number = float(value)
        except ValueError:
            raise InvalidInput(f"In {text!r}, {value!r} is not a number.") from None
        exposed = {o.name: o for o in info.exposed}
        if key in exposed:
            opts[key] = exposed[key].check(number, name)
        elif key in info.options:
            opts[key] = int(number) if number.is_integer() and isinstance(info.defaults.get(key), int) else number
        else:
            raise InvalidInput(f"{name} has no option {key!r}; it accepts: {', '.join(info.options) or 'none'}.")
    return AttackSpec(name, opts)


def method_syntax() -> str:
    """``bce, linear, slam[:q], class[:gamma], random, ...``: the ``--methods`` syntax of every attack."""
    parts = []
    for name in lab_methods():
        info = get_method(name)
        parts.append(name + "".join(f"[:{o.name}]" for o in info.exposed[:1]))
    return ", ".join(parts) + " (or NAME:OPTION=VALUE)"


# ------------------------------------------------------------------------------------------------ costs


def unestimated(methods: Sequence[Any]) -> list[str]:
    """The methods whose cost a dry run cannot count (they run their own optimisers)."""
    names = [as_spec(m).method for m in methods]
    return [m for m in names if not get_method(m).estimated]


def cost_note(methods: Sequence[Any]) -> str:
    """A sentence for the cost caption when some methods are not estimated ('' otherwise)."""
    others = unestimated(methods)
    if not others:
        return ""
    names = ", ".join(method_title(m) for m in others)
    verb, own = ("runs", "its") if len(others) == 1 else ("run", "their")
    return f"{names} {verb} {own} own optimiser, not counted (often many seconds per image), so this waits for Run"


def image_steps(
    specs: Sequence[Any],
    eps: Budget | EpsLike,
    num_images: int,
    *,
    alpha: float,
    norm: str = "linf",
    dims: int,
) -> int:
    """Image-steps (one forward + backward of one image) the engine's loop runs for ``specs`` at ``eps``:
    the dry run of :func:`mlvis.attacks.run_job` (methods with their own optimisers count 0)."""
    if isinstance(eps, Budget):
        norm, eps = eps.norm, list(eps.eps)
    steps, _ = _row_image_steps([as_spec(s) for s in specs], np.atleast_1d(eps).tolist(), num_images,
                                alpha=alpha, norm=norm, dims=dims)  # fmt: skip
    return steps


def runner_image_steps(specs: Sequence[Any], num_labels: int, num_images: int, *, protocol: str = "paper") -> int:
    """The most image-steps the runner methods among ``specs`` (the related attacks, with their own optimisers)
    take on ``num_images`` images of a model with ``num_labels`` labels: their ``work`` rules (ML-CW's
    binary_steps x max_iter, a Jacobian's C backwards per ML-DeepFool or MLA-LP step). :func:`image_steps`
    counts the loop methods; the engine checks the sum of both against the cap before it runs a job."""
    return runner_steps_per_image([as_spec(s) for s in specs], int(num_labels), protocol) * int(num_images)
