"""The method registry: how an attack method plugs into the one engine.

A method is a function ``fn(ctx, **options)`` registered with :func:`register_method`. Its keyword
parameters are the options it accepts (the engine rejects any other, naming the accepted ones). It
gets a :class:`MethodContext` (the images, clean logits/probabilities/predictions, the maximum-flip
target, the eps list, alpha, norm, a seeded generator, ...) and returns either

- a :class:`LoopPlan`: settings for the shared MI-FGSM loop (loss name, per-label weights, per-sample
  loss parameters, optionally the target). Each array may have a leading eps axis ``K``:
  ``weights`` ``(C,)``, ``(N, C)`` or ``(K, N, C)``; each parameter a scalar, ``(N,)`` or ``(K, N)``;
  ``target`` ``(N, C)`` or ``(K, N, C)``. A plan without any ``K`` axis is *eps-independent*: each image
  runs one trajectory to the largest eps with snapshots at every step count (DESIGN.md's prefix rule).
  A plan with one is *eps-dependent*: each (eps, image) pair is its own row in the batch, with its own
  eps and step count. CLASS, for instance, computes per-(eps, image) label masks from
  ``ctx.clean_probs`` and ``ctx.eps`` and returns ``weights`` of shape ``(K, N, C)``; SLAM with ``p`` per
  eps returns ``params={"p": (K, N)}``.
- a :class:`RunOutput`: the adversarial images ``(K, N, 3, H, W)`` and step counts ``(K, N)`` from the
  method's own runner (ML-CW, ML-DeepFool and MLA-LP are not MI-FGSM); the engine evaluates them
  exactly like loop output (probabilities, flips, 8-bit rounding, norms, PSNR, SSIM).

Example:
    >>> @register_method("bce-top3", description="BCE on the three least confident labels")
    ... def bce_top3(ctx, *, k=3):
    ...     closeness = (ctx.clean_probs - ctx.threshold).abs()
    ...     idx = closeness.topk(k, dim=1, largest=False).indices
    ...     return LoopPlan("bce", weights=torch.zeros_like(closeness).scatter_(1, idx, 1.0))
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch

from mlvis.errors import InvalidInput

ArrayLike = Any  # float | sequence | np.ndarray | torch.Tensor


@dataclasses.dataclass(frozen=True)
class MethodContext:
    """What a method sees. Tensors live on ``device``; ``eps`` is a host numpy array ``(K,)``."""

    model: torch.nn.Module
    images: torch.Tensor  # (N, 3, H, W) in [0, 1]
    clean_logits: torch.Tensor  # (N, C)
    clean_probs: torch.Tensor  # (N, C)
    clean_pred: torch.Tensor  # (N, C) bool
    target: torch.Tensor  # (N, C) float, 1 - clean_pred
    eps: np.ndarray  # (K,)
    alpha: float
    norm: str
    threshold: float
    labels: tuple[str, ...]
    generator: torch.Generator  # CPU generator seeded with the job's seed (the same for every spec)
    device: torch.device
    autocast: bool = False
    memory_budget: int = 2**31
    progress: Callable[[int, int], None] | None = None
    eps_linf: np.ndarray | None = None  # (K,) the L-inf-equivalent budgets (appendix C, under L2)
    protocol: str = "paper"  # "paper" | "authors" (mlvis.attacks.protocol): how profiles and matrices are read

    @property
    def linf(self) -> np.ndarray:
        """The L-inf-equivalent budgets ``(K,)``: ``eps`` itself under L-inf (see :class:`mlvis.attacks.Budget`)."""
        return self.eps if self.eps_linf is None else self.eps_linf

    def profile_eps(self, profile: Any) -> np.ndarray:
        """The budgets ``(K,)`` at which a method reads ``profile``: ``eps`` itself, once the profile is
        checked to be of the attack's norm (an L-inf profile for an L2 attack is refused with a sentence)."""
        from mlvis.attacks.budget import check_profile_norm

        check_profile_norm(profile, self.norm)
        return self.eps

    @property
    def num_images(self) -> int:
        return int(self.images.shape[0])

    @property
    def num_labels(self) -> int:
        return int(self.clean_logits.shape[1])


@dataclasses.dataclass
class LoopPlan:
    """Settings for the shared MI-FGSM loop (see the module docstring for the accepted shapes)."""

    loss: str = "bce"
    weights: ArrayLike | None = None
    params: Mapping[str, ArrayLike] = dataclasses.field(default_factory=dict)
    target: ArrayLike | None = None


@dataclasses.dataclass
class RunOutput:
    """A method's own runner's result: ``adv (K, N, 3, H, W)`` in [0, 1] and ``steps (K, N)``."""

    adv: torch.Tensor
    steps: np.ndarray


SHARED = "shared"
"""Kind of a method whose plan has no eps axis: one trajectory per image to the largest eps, snapshots at
every budget's step count (DESIGN.md's prefix rule)."""
PER_EPS = "per-eps"
"""Kind of a method whose plan depends on eps: one row per (eps, image), each with its own step count."""
RUNNER = "runner"
"""Kind of a method with its own optimiser (a :class:`RunOutput`); the engine only evaluates its images."""
KINDS = (SHARED, PER_EPS, RUNNER)
NEEDS = ("profile", "correlations")


@dataclasses.dataclass(frozen=True)
class Option:
    """A numeric option a front end may expose (the Lab's sliders, the sweep, ``--methods name:opt=value``).

    Attributes:
        name: the method's keyword argument.
        type: ``float`` or ``int``.
        lo, hi: the accepted range (inclusive).
        default: the value when a front end does not set it.
        help: one or two sentences for the widget's tooltip and ``--help``.
        step: the widget's step (default: a twentieth of the range for floats, 1 for ints).
        label: the widget's label (default: the method's title and the name, e.g. "SLAM's q").
        symbol: the name in result titles, e.g. ``"γ"`` gives ``CLASS(γ=0.5)`` (``None``: not in the title).
        key: the setting's key in recipes and URLs (default ``"<method>.<name>"``; SLAM's q is just ``"q"``).
    """

    name: str
    type: type = float
    lo: float = 0.0
    hi: float = 1.0
    default: float = 0.0
    help: str = ""
    step: float | None = None
    label: str | None = None
    symbol: str | None = None
    key: str | None = None

    def check(self, value: Any, method: str = "") -> float | int:
        """``value`` as this option's type, or a ``ValueError`` with a sentence when it is out of range."""
        where = f"{method}'s {self.name}" if method else self.name
        if isinstance(value, (str, bytes, bool)) or value is None:
            raise InvalidInput(f"{where} must be a number, not {value!r}.")
        try:
            v = float(value)
        except (TypeError, ValueError):
            raise InvalidInput(f"{where} must be a number, not {value!r}.") from None
        if not (np.isfinite(v) and self.lo <= v <= self.hi):
            raise InvalidInput(f"{where} must lie in [{self.lo:g}, {self.hi:g}], not {value!r}.")
        if self.type is int:
            if v != int(v):
                raise InvalidInput(f"{where} must be a whole number, not {value!r}.")
            return int(v)
        return v


ProfileRule = Callable[[Any, np.ndarray, int], Mapping[str, np.ndarray]]
WorkRule = Callable[[Mapping[str, Any], int, str], int]
"""``work(options, num_labels, protocol) -> image-steps``: the most one image can take in a runner method
(``options``: the method's defaults with the spec's options over them)."""


@dataclasses.dataclass(frozen=True)
class MethodInfo:
    """Everything the code base knows about a registered method (see :func:`register_method`)."""

    name: str
    fn: Callable[..., LoopPlan | RunOutput]
    options: tuple[str, ...]
    required: tuple[str, ...]
    description: str
    defaults: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    title: str = ""
    needs: tuple[str, ...] = ()
    kind: str | Callable[[Mapping[str, Any]], str] = SHARED
    exposed: tuple[Option, ...] = ()
    hidden: bool = False
    subset: bool = False
    from_profile: ProfileRule | None = None
    profile_gives: tuple[str, ...] = ()
    order: int | None = None
    work: WorkRule | None = None

    def kind_for(self, options: Mapping[str, Any]) -> str:
        """The method's kind (:data:`SHARED`, :data:`PER_EPS` or :data:`RUNNER`) with these options."""
        return self.kind(options) if callable(self.kind) else self.kind

    @property
    def estimated(self) -> bool:
        """Whether a dry run counts its cost (loop methods: image-steps from the row table)."""
        return self.kind != RUNNER

    def option(self, name: str) -> Option:
        for o in self.exposed:
            if o.name == name:
                return o
        names = ", ".join(o.name for o in self.exposed) or "none"
        raise InvalidInput(f"{self.title} exposes no option {name!r}; it exposes: {names}.")

    def key(self, option: Option) -> str:
        """The recipe / URL key of one of its exposed options."""
        return option.key or f"{self.name}.{option.name}"

    def label(self, option: Option) -> str:
        return option.label or f"{self.title}'s {option.name}"

    def row_name(self, options: Mapping[str, Any]) -> str:
        """The result title: ``SLAM(q=0.5)``, ``CLASS(γ=0.5)``, ``BCE``, ``Random subset`` (the paper's rows)."""
        shown = [o for o in self.exposed if o.symbol]
        if not shown:
            return self.title
        cells = ", ".join(f"{o.symbol}={options.get(o.name, o.default):g}" for o in shown)
        return f"{self.title}({cells})"


_METHODS: dict[str, MethodInfo] = {}


def register_method(
    name: str,
    *,
    description: str | None = None,
    title: str | None = None,
    needs: tuple[str, ...] = (),
    kind: str | Callable[[Mapping[str, Any]], str] = SHARED,
    exposed: tuple[Option, ...] = (),
    hidden: bool = False,
    subset: bool = False,
    from_profile: ProfileRule | None = None,
    profile_gives: tuple[str, ...] = (),
    order: int | None = None,
    work: WorkRule | None = None,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register ``fn(ctx, **options) -> LoopPlan | RunOutput`` as attack method ``name``.

    The options are ``fn``'s parameters after ``ctx``; those without a default are required. A later
    registration under the same name replaces the earlier one (the plugging issue owns its name).

    Args:
        description: one line for tooltips and ``--help`` (default: the docstring's first line).
        title: the display name (default: ``name``).
        needs: the model artifacts it reads: ``"profile"`` (the flip profile), ``"correlations"``.
        kind: :data:`SHARED` (one trajectory over an eps list), :data:`PER_EPS` (one row per eps) or
            :data:`RUNNER` (its own optimiser, not counted by cost estimates), or a function of the
            options giving one of them (SLAM is shared with a scalar ``p``, per eps with a profile).
        exposed: the :class:`Option` s a front end may set (Lab sliders, sweep, ``--methods name:opt=value``).
        hidden: an analysis probe, not offered as an attack in the Lab.
        subset: it attacks a label subset (the paper's ``*`` when the subset is every label).
        from_profile: ``rule(profile, eps (K,), num_labels) -> {option: (K,) values}``, how the method
            reads the profile at the budgets, in the profile's norm (SLAM's ``p``, CLASS's ``length``); front
            ends that write numbers into a recipe use the same rule (after ``Budget.for_profile``).
        profile_gives: the options ``from_profile`` produces (given one of them, no profile is needed).
        order: where front ends list it (methods without an order follow, by name).
        work: for a :data:`RUNNER`, ``work(options, num_labels, protocol)``: the most image-steps (one forward
            + backward of one image; a Jacobian over C labels counts C) one image can take with these options,
            so the cap on work (:func:`mlvis.errors.check_work`) covers its own optimiser too. A runner
            without it counts no steps against the cap.

    Example:
        >>> @register_method("bce-top3", title="BCE top-3", exposed=(Option("k", int, 1, 24, 3),))
        ... def bce_top3(ctx, *, k=3): ...
    """
    if kind not in KINDS and not callable(kind):
        raise InvalidInput(f"kind must be one of {', '.join(KINDS)} or a function of the options, not {kind!r}.")
    bad = [n for n in needs if n not in NEEDS]
    if bad:
        raise InvalidInput(f"needs must name {' and '.join(NEEDS)}, not {bad}.")

    def deco(fn: Callable[..., Any]) -> Callable[..., Any]:
        params = list(inspect.signature(fn).parameters.values())[1:]
        if any(p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL) for p in params):
            raise TypeError("a method must list its options explicitly (no *args / **kwargs).")
        names = tuple(p.name for p in params)
        unknown = [o.name for o in exposed if o.name not in names]
        if unknown:
            raise TypeError(f"method {name!r} exposes option(s) {unknown} that it does not accept.")
        required = tuple(p.name for p in params if p.default is p.empty)
        desc = description if description is not None else (fn.__doc__ or "").strip().split("\n")[0]
        defaults = {p.name: p.default for p in params if p.default is not p.empty}
        _METHODS[name] = MethodInfo(
            name, fn, names, required, desc, defaults, title=title or name, needs=tuple(needs), kind=kind,
            exposed=tuple(exposed), hidden=hidden, subset=subset, from_profile=from_profile,
            profile_gives=tuple(profile_gives), order=order, work=work,
        )  # fmt: skip
        return fn

    return deco


def list_attacks() -> list[str]:
    """Registered attack method names, sorted."""
    return sorted(_METHODS)


def registered() -> list[MethodInfo]:
    """Every registered method: those with an ``order`` by it (the built-ins), then the others by name."""
    return sorted(_METHODS.values(), key=lambda i: (i.order is None, i.order or 0, i.name))


def get_method(name: str) -> MethodInfo:
    """The registered method ``name``; a ``ValueError`` naming the known ones otherwise."""
    if name not in _METHODS:
        raise InvalidInput(f"Unknown attack method {name!r}; known methods: {', '.join(list_attacks())}.")
    return _METHODS[name]


def method_description(name: str) -> str:
    return get_method(name).description


def profile_flip_ratio(profile: Any, eps: np.ndarray, num_labels: int, inclusive: bool = False) -> np.ndarray:
    """SLAM's ``p`` per budget (equation 7): the profile's E / C at the budgets ``(K,)``, in the profile's norm.

    Equation 7 sets p = 1 beyond eps_max (``eps > eps_max``, the paper); ``inclusive`` also at eps_max itself
    (``eps >= eps_max``, the authors' code, ``protocol="authors"``)."""
    check_profile(profile, num_labels, "flip_ratio")
    e = np.atleast_1d(np.asarray(eps, np.float64))
    p = np.atleast_1d(np.asarray(profile.flip_ratio(e), np.float64))
    return np.where(e >= profile.eps_max, 1.0, p) if inclusive else p


def check_profile(profile: Any, num_labels: int, needed: str) -> None:
    """A ``ValueError`` unless ``profile`` is a flip profile (has ``needed``) for ``num_labels`` labels."""
    if not hasattr(profile, needed):
        raise InvalidInput("profile must be a FlipProfile (see mlvis.profile).")
    if getattr(profile, "labels", num_labels) != num_labels:
        raise InvalidInput(f"The profile is for a model with {profile.labels} labels, not {num_labels}.")


# ------------------------------------------------------------------------------------ built-ins


@register_method(
    "bce", title="BCE", order=10, description="MI-FGSM with binary cross-entropy on all labels (the paper's baseline)"
)
def _bce(ctx: MethodContext, *, weights: ArrayLike | None = None) -> LoopPlan:
    return LoopPlan("bce", weights=weights)


@register_method(
    "linear", title="Linear", order=20, description="MI-FGSM with the linear loss |t - y| (greedy, section IV-D)"
)
def _linear(ctx: MethodContext, *, weights: ArrayLike | None = None) -> LoopPlan:
    return LoopPlan("linear", weights=weights)


def _slam_kind(options: Mapping[str, Any]) -> str:
    p = options.get("p")
    return SHARED if p is not None and options.get("profile") is None and np.ndim(p) == 0 else PER_EPS


def _slam_from_profile(profile: Any, eps: np.ndarray, num_labels: int) -> dict[str, np.ndarray]:
    return {"p": profile_flip_ratio(profile, eps, num_labels)}


SLAM_Q = Option(
    "q", float, 0.0, 1.0, 0.5, step=0.05, label="SLAM's q", symbol="q", key="q",
    help="The largest share of BCE in SLAM's loss p·q·BCE + (1 − p·q)·linear (equation 6; 0.5 in the paper).",
)  # fmt: skip


@register_method(
    "slam",
    title="SLAM",
    order=30,
    description="MI-FGSM with SLAM: p*q * BCE + (1 - p*q) * linear (equation 6)",
    needs=("profile",),
    kind=_slam_kind,
    exposed=(SLAM_Q,),
    from_profile=_slam_from_profile,
    profile_gives=("p",),
)
def _slam(
    ctx: MethodContext,
    *,
    p: ArrayLike | None = None,
    q: float = 0.5,
    profile: Any = None,
    weights: ArrayLike | None = None,
) -> LoopPlan:
    """SLAM with ``p`` from the model's ``profile`` (equation 7, per eps) or given directly.

    ``p`` is the expected flip ratio E(eps) / C: a scalar, one value per eps ``(K,)`` or per (eps, image)
    ``(K, N)``; ``q`` is the maximum share of BCE. A scalar ``p`` keeps SLAM eps-independent (one
    trajectory for the whole eps list); ``profile`` (a ``FlipProfile`` of the attack's norm) gives
    ``p = profile.flip_ratio(eps)`` at the attack's own budgets (an L2 profile at the L2 radius); a profile
    of the other norm is refused (:class:`~mlvis.errors.ProfileMismatch`).
    """
    k = len(ctx.eps)
    if (p is None) == (profile is None):
        raise InvalidInput("slam needs exactly one of p (the expected flip ratio) or profile (a FlipProfile).")
    if profile is not None:
        if not hasattr(profile, "flip_ratio"):
            raise InvalidInput("slam's profile must be a FlipProfile (see mlvis.profile).")
        from mlvis.attacks.protocol import get_protocol

        inclusive = get_protocol(ctx.protocol).eq7_inclusive
        p = profile_flip_ratio(profile, ctx.profile_eps(profile), ctx.num_labels, inclusive)
    p_arr = np.asarray(p.detach().cpu() if isinstance(p, torch.Tensor) else p, dtype=np.float64)
    q_val = float(q)
    if not np.isfinite(p_arr).all() or (p_arr < 0).any() or (p_arr > 1).any():
        raise InvalidInput("slam's p must lie in [0, 1] (it is the expected flip ratio E(eps) / C).")
    if not (np.isfinite(q_val) and 0 <= q_val <= 1):
        raise InvalidInput(f"slam's q must lie in [0, 1], not {q!r}.")
    if p_arr.ndim == 1:
        if p_arr.shape != (k,):
            raise InvalidInput(f"slam's p must be a scalar, one value per eps ({k},) or (K, N); got {p_arr.shape}.")
        p_arr = np.repeat(p_arr[:, None], ctx.num_images, axis=1)
    elif p_arr.ndim == 2 and p_arr.shape != (k, ctx.num_images):
        raise InvalidInput(f"slam's p of shape {p_arr.shape} is not (K, N) = ({k}, {ctx.num_images}).")
    elif p_arr.ndim > 2:
        raise InvalidInput(f"slam's p must be a scalar, (K,) or (K, N); got shape {p_arr.shape}.")
    return LoopPlan("slam", weights=weights, params={"p": p_arr, "q": q_val})
