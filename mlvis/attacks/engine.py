"""The attack engine's public API: :func:`attack` and :func:`run_job`, with the validation of their inputs.

A job turns every spec into rows of one table (:mod:`mlvis.attacks.rows`: the planning, chunking and cost
of the trajectories), runs them through the one MI-FGSM loop (:mod:`mlvis.attacks.loop`), lets the methods
with their own optimisers run theirs (:class:`~mlvis.attacks.methods.RunOutput`), and evaluates everything
the same way (probabilities, flips by equation 3, 8-bit rounding, norms) into one
:class:`~mlvis.attacks.result.AttackResult` per spec. The model helpers live in
:mod:`mlvis.attacks.model_helpers`, the norms in :mod:`mlvis.attacks.norms`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from mlvis.attacks.budget import NORMS, Budget, EpsLike, check_norm
from mlvis.attacks.geometry import DEFAULT_ALPHA
from mlvis.attacks.loop import StepHook, run_table, store_runner
from mlvis.attacks.methods import RUNNER, LoopPlan, MethodContext, RunOutput, get_method
from mlvis.attacks.model_helpers import (
    CPU_MAX_BATCH,
    check_images,
    default_memory_budget,
    forward_no_grad,
    memory_format,
    model_device,
    same_device,
    threshold,
    work_dtype,
)
from mlvis.attacks.protocol import get_protocol
from mlvis.attacks.result import AttackResult
from mlvis.attacks.rows import RowTable
from mlvis.attacks.rows import image_steps as dry_run_steps
from mlvis.errors import InvalidInput, check_device, check_flag, check_number, check_work
from mlvis.errors import max_image_steps as max_image_steps_cap
from mlvis.metrics import flip_count

__all__ = ["NORMS", "AttackSpec", "attack", "run_job"]

MAX_EPS = 1e6  # far above any budget (an L-inf eps is at most 1, an L2 radius at most sqrt(pixels)); bounds the counts
MIN_ALPHA = 1e-12  # with MAX_EPS, every step count fits an int64 (the cap then answers with a sentence)
_SPEC_COMMON = ("alpha", "norm")  # options any spec may set, overriding the job's
_JOB_OPTIONS = (
    "seed", "device", "progress", "autocast", "memory_budget", "max_batch", "max_image_steps", "hook", "protocol",
)  # fmt: skip


@dataclasses.dataclass(frozen=True)
class AttackSpec:
    """One method of a job with its options (``alpha`` and ``norm`` may override the job's).

    ``name`` labels the result (default: the method name), e.g. to run SLAM with two ``q`` values.
    """

    method: str
    options: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    name: str | None = None


def attack(
    model: torch.nn.Module, images: Any, method: str, eps: EpsLike | Budget, **options: Any
) -> AttackResult:
    """Attack ``images`` with ``method`` at budget ``eps`` (a float, or a list: results get a leading K axis).

    Args:
        model: a ``MultiLabelModel`` (or any eval-mode module mapping images in [0, 1] to logits ``(N, C)``;
            ``threshold`` / ``labels`` attributes are used when present).
        images: float ``(N, 3, H, W)`` (or one ``(3, H, W)``) tensor or array in [0, 1]; never modified.
        method: a registered method (:func:`mlvis.attacks.list_attacks`): ``"bce"``, ``"linear"``, ``"slam"``, ...
        eps: the budget(s) in the attack's norm, in [0, 1] pixel units (under L2 a radius), or a
            :class:`~mlvis.attacks.budget.Budget` (which also says where a profile is read, its L-inf equivalent).
        **options: ``alpha`` (step, default 1/2560), ``norm`` (``"linf"`` | ``"l2"``), ``seed`` (default 0),
            ``device`` (must be the model's), ``progress`` (``progress(done, total)`` in image-steps, called
            once per loop step), ``autocast`` (bf16 autocast of the gradient forward/backward; clean and
            final evaluations stay in full precision), ``memory_budget`` (bytes per chunk; default 60 % of
            free GPU memory, 2 GiB on the CPU), ``max_batch`` (rows per chunk; default 128 on the CPU, no cap
            on a GPU), ``max_image_steps`` (the cap on work, default ``MLVIS_MAX_IMAGE_STEPS`` or 10^7;
            a job over it is refused with :class:`~mlvis.errors.WorkTooLarge` before anything runs), ``hook``
            (a :class:`~mlvis.attacks.loop.StepHook` watching the loop, see :func:`run_job`), ``protocol``
            (``"paper"``, the default, or ``"authors"``: the authors' code's choices, see
            :mod:`mlvis.attacks.protocol`), and the method's own options (``weights``; SLAM's ``p`` and ``q``).

    Returns:
        An :class:`AttackResult` of CPU numpy arrays.

    Example:
        >>> model = mlvis.create_model("demo-asl")
        >>> x, _ = mlvis.data.demo_batch(4)
        >>> res = mlvis.attack(model, x, "bce", [0.004, 0.008])
        >>> res.flips.shape
        (2, 4)
    """
    job = {k: options.pop(k) for k in list(options) if k in _JOB_OPTIONS}
    return run_job(model, images, [AttackSpec(method, options)], eps, **job)[0]


def run_job(
    model: torch.nn.Module,
    images: Any,
    specs: Sequence[AttackSpec | str | tuple[str, Mapping[str, Any]]],
    eps: EpsLike | Budget,
    *,
    alpha: float = DEFAULT_ALPHA,
    norm: str | None = None,
    seed: int = 0,
    device: str | torch.device | None = None,
    progress: Callable[[int, int], None] | None = None,
    autocast: bool = False,
    memory_budget: int | None = None,
    max_batch: int | None = None,
    max_image_steps: int | None = None,
    hook: StepHook | None = None,
    protocol: str = "paper",
) -> list[AttackResult]:
    """Run several methods x an eps list on the same images as ONE batched job; one result per spec.

    Every spec's rows (see the module docstring) go into one table, sorted by step count and chunked to
    ``memory_budget``, so e.g. BCE, linear and SLAM (p per eps) x 7 budgets x 100 images share every model
    call. Each spec gets a generator seeded with ``seed``, so a spec's result equals its separate run.

    ``eps`` are budgets in ``norm`` (default L-inf; a :class:`~mlvis.attacks.budget.Budget` brings its own
    norm). Methods that read the flip profile (SLAM's ``p``, CLASS's subset length) read it at the budgets'
    L-inf equivalents (``MethodContext.linf``): ``eps`` itself under L-inf, the width of the cube with the
    L2 ball's volume under L2 (appendix C).

    ``hook`` (a :class:`~mlvis.attacks.loop.StepHook`) watches the MI-FGSM loop (logits, and images when
    it asks, at the steps it wants; e.g. :class:`mlvis.analysis.trajectory.TrajectoryRecorder`); it changes
    no result. Methods with their own optimisers are not seen by it.

    Every argument is checked before any work; a job whose dry-run cost (:func:`mlvis.attacks.plan.image_steps`)
    is over ``max_image_steps`` (default :func:`mlvis.errors.max_image_steps`) raises
    :class:`~mlvis.errors.WorkTooLarge`, naming the cap and how to raise it, before anything is allocated.

    ``protocol="authors"`` runs MI-FGSM with the box clip once after the loop and lets the methods read the
    profile and the correlations the authors' way (:mod:`mlvis.attacks.protocol`); ``"paper"`` is the default.

    Example:
        >>> res_bce, res_slam = run_job(model, x, ["bce", AttackSpec("slam", {"p": [0.1, 0.3], "q": 0.5})],
        ...                             eps=[0.004, 0.008])
    """
    dev = model_device(model)
    if device is not None and not same_device(check_device(device), dev):
        raise InvalidInput(f"The model lives on {dev}, not {device}; create it there (create_model(..., device=...)).")
    if model.training:
        raise InvalidInput("The model is in training mode; attacks need an eval-mode model (call model.eval() once).")
    if isinstance(eps, Budget):
        if norm is not None and norm != eps.norm:
            raise InvalidInput(f"The budget is in {eps.norm}, not {norm}; give one norm.")
        norm, job_budget = eps.norm, eps
        eps = list(eps.eps)
    else:
        job_budget = None
    norm = check_norm(norm if norm is not None else "linf")
    alpha = _check_alpha(alpha)
    dtype = work_dtype(model)
    x = check_input_size(model, check_images(images)).to(dev, dtype)
    eps_arr = _check_eps(eps)
    dims = int(x[0].numel())
    spec_list = [_as_spec(s) for s in specs]
    if not spec_list:
        raise InvalidInput("A job needs at least one attack spec.")
    budget = _check_whole("memory_budget", memory_budget, 1, 2**62) if memory_budget is not None else None
    budget = budget if budget is not None else default_memory_budget(dev)
    if budget <= 0:
        raise InvalidInput(f"memory_budget must be a positive number of bytes, not {memory_budget!r}.")
    if max_batch is None:
        max_batch = CPU_MAX_BATCH if dev.type == "cpu" else 2**62
    max_batch = _check_whole("max_batch", max_batch, 1, 2**62)
    if max_batch < 1:
        raise InvalidInput(f"max_batch must be a positive number of rows, not {max_batch!r}.")
    seed = _check_whole("seed", seed, 0, 2**63 - 1)
    if not isinstance(autocast, (bool, np.bool_)):
        raise InvalidInput(f"autocast must be True or False, not {autocast!r}.")
    if progress is not None and not callable(progress):
        raise InvalidInput(f"progress must be a function progress(done, total), not {progress!r}.")
    if hook is not None and not isinstance(hook, StepHook):
        raise InvalidInput(f"hook must be a StepHook (mlvis.attacks.loop), not {hook!r}.")
    cap = max_image_steps_cap(max_image_steps)
    proto = get_protocol(protocol)
    known = len(getattr(model, "labels", None) or ()) or None
    _check_work(spec_list, eps_arr, int(x.shape[0]), alpha, norm, dims, cap, known, proto.name)

    thr = threshold(model)
    n_img = x.shape[0]
    eval_batch = max(1, budget // (64 * x[0].numel() * x.element_size()))
    # The clean forward doubles as the loop's first gradient forward when the first chunk will be exactly these
    # images in this order and layout (one MI-FGSM spec, the common single-method job): it keeps its graph, and
    # iteration 0 differentiates it instead of running the same forward again (the same bits either way).
    first = _first_forward(model, x, spec_list, eval_batch, bool(autocast))
    clean_logits = forward_no_grad(model, x, eval_batch) if first is None else first[1].detach().float()
    if clean_logits.dim() != 2 or clean_logits.shape[0] != n_img:
        raise InvalidInput(f"The model must return logits of shape (N, C); it returned {tuple(clean_logits.shape)}.")
    num_labels = clean_logits.shape[1]
    if known is None:  # a model that does not list its labels: its runners are counted now
        check_work(runner_steps_per_image(spec_list, num_labels, proto.name) * n_img, cap)
    labels = tuple(getattr(model, "labels", None) or (str(i) for i in range(num_labels)))
    clean_probs = torch.sigmoid(clean_logits)
    clean_pred = clean_probs >= thr
    target = (~clean_pred).to(dtype)

    # ---- each spec becomes rows of the loop table (or runs its own runner)
    table = RowTable(n_img, num_labels, len(eps_arr), dev, dtype)
    runner_outputs: dict[int, RunOutput] = {}
    targets: dict[int, np.ndarray] = {}
    spec_meta: list[tuple[AttackSpec, Any, dict[str, Any], float, str]] = []
    for s, spec in enumerate(spec_list):
        info = get_method(spec.method)
        opts = dict(spec.options)
        s_alpha = _check_alpha(opts.pop("alpha", alpha))
        s_norm = check_norm(opts.pop("norm", norm))
        linf = job_budget.linf_array if job_budget is not None and s_norm == norm else None
        if linf is None:
            linf = Budget.of(eps_arr.tolist(), s_norm, dims).linf_array
        ctx = MethodContext(
            model=model, images=x, clean_logits=clean_logits, clean_probs=clean_probs, clean_pred=clean_pred,
            target=target, eps=eps_arr.copy(), alpha=s_alpha, norm=s_norm, threshold=thr, labels=labels,
            generator=torch.Generator().manual_seed(int(seed)), device=dev, autocast=bool(autocast),
            memory_budget=budget, progress=progress, eps_linf=linf, protocol=proto.name,
        )  # fmt: skip
        out = info.fn(ctx, **opts)
        if isinstance(out, LoopPlan):
            table.add(s, out, ctx, s_alpha, s_norm, dims)
            if out.weights is not None:  # the label weights (CLASS's subsets) belong to the result
                w = out.weights
                w = w.detach().cpu().double().numpy() if isinstance(w, torch.Tensor) else np.asarray(w, np.float64)
                targets[s] = np.broadcast_to(w, (len(eps_arr), n_img, num_labels)).copy()
        elif isinstance(out, RunOutput):
            runner_outputs[s] = out
        else:
            raise TypeError(f"method {spec.method!r} returned {type(out).__name__}, not a LoopPlan or RunOutput.")
        spec_meta.append((spec, info, opts, s_alpha, s_norm))

    # ---- outputs, filled by the loop and the runners
    shape = tuple(x.shape[1:])
    k_n = (len(eps_arr), n_img)
    outs: list[dict[str, np.ndarray]] = [
        {
            "adv": np.zeros(k_n + shape, np.float32),
            "q8": np.zeros(k_n + shape, np.uint8),
            "adv_probs": np.zeros(k_n + (num_labels,), np.float32),
            "adv_probs_8bit": np.zeros(k_n + (num_labels,), np.float32),
            "steps": np.zeros(k_n, np.int64),
        }
        for _ in spec_list
    ]
    if table.num_rows:
        run_table(
            model, x, table, outs, budget, int(max_batch), bool(autocast), progress, hook,
            first=first, clip_once=proto.clip_once,
        )  # fmt: skip
    first = None  # the clean graph, if the loop did not take it
    for s, out in runner_outputs.items():
        store_runner(model, x, out, outs[s], eps_arr, spec_meta[s][4], eval_batch)

    # ---- results
    clean_np = np.array(x.detach().float().cpu().numpy(), copy=True)
    clean_probs_np = clean_probs.float().cpu().numpy()
    clean_pred_np = clean_probs_np >= thr
    results = []
    for s, (spec, info, opts, s_alpha, s_norm) in enumerate(spec_meta):
        o = outs[s]
        diff = [o["adv"][k].astype(np.float64) - clean_np for k in range(len(eps_arr))]
        linf = np.stack([np.abs(d).reshape(n_img, -1).max(1) for d in diff])
        l2 = np.stack([np.sqrt((d.reshape(n_img, -1) ** 2).sum(1)) for d in diff])
        config = _jsonable(
            {
                "method": spec.method,
                "name": spec.name or spec.method,
                "options": {**{k: v for k, v in info.defaults.items() if v is not None}, **opts},
                "eps": eps_arr,
                "alpha": s_alpha,
                "norm": s_norm,
                "seed": int(seed),
                "autocast": bool(autocast),
                "model": getattr(getattr(model, "spec", None), "name", type(model).__name__),
                "threshold": thr,
                "num_images": n_img,
                "image_shape": list(shape),
                "engine": "mlvis.attacks MI-FGSM v1",
                **({"protocol": proto.name} if proto.name != "paper" else {}),
            }
        )
        results.append(
            AttackResult(
                method=spec.method,
                name=spec.name or spec.method,
                norm=s_norm,
                labels=labels,
                threshold=thr,
                eps=eps_arr.copy(),
                clean=clean_np,
                adv=o["adv"],
                adv_8bit=o["q8"],
                clean_probs=clean_probs_np,
                adv_probs=o["adv_probs"],
                adv_probs_8bit=o["adv_probs_8bit"],
                flips=flip_count(o["adv_probs"], clean_pred_np, thr).astype(np.int64),
                flips_8bit=flip_count(o["adv_probs_8bit"], clean_pred_np, thr).astype(np.int64),
                linf=linf,
                l2=l2,
                steps=o["steps"],
                config=config,
                targets=targets.get(s),
            )
        )
    return results



def _first_forward(
    model: torch.nn.Module, x: torch.Tensor, specs: Sequence[AttackSpec], eval_batch: int, autocast: bool
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """``(input, logits with their graph)`` of one gradient forward of ``x``, when iteration 0 of the loop can
    reuse it (see :func:`mlvis.attacks.loop.run_table`): a single MI-FGSM spec (its rows are the images in order),
    every image in one evaluation batch, no autocast (the loop's forward would be bf16), ``x`` already in the
    loop's memory layout. ``None`` otherwise, and the clean pass runs without autograd as before."""
    if len(specs) != 1 or autocast or x.shape[0] > eval_batch:
        return None
    if not x.is_contiguous(memory_format=memory_format(model)):
        return None
    if get_method(specs[0].method).kind_for(dict(specs[0].options)) == RUNNER:
        return None
    xa = x.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        logits = model(xa)
    return xa, logits


# ------------------------------------------------------------------------------------ validation


def _check_eps(eps: Any) -> np.ndarray:
    if isinstance(eps, (bool, str, bytes)) or (
        isinstance(eps, (list, tuple)) and any(isinstance(e, (bool, str, bytes)) for e in eps)
    ):
        raise InvalidInput(f"eps must be a number or a list of numbers, not {eps!r}.")
    if isinstance(eps, torch.Tensor):
        eps = eps.detach().cpu().numpy()
    try:
        arr = np.atleast_1d(np.asarray(eps, dtype=np.float64))
    except (TypeError, ValueError):
        raise InvalidInput(f"eps must be a number or a list of numbers, not {eps!r}.") from None
    if arr.ndim != 1 or arr.size == 0:
        raise InvalidInput(f"eps must be a number or a non-empty flat list of numbers, not {eps!r}.")
    if not np.isfinite(arr).all() or (arr < 0).any() or (arr > MAX_EPS).any():
        raise InvalidInput(f"eps must be finite, >= 0 and at most {MAX_EPS:g}, not {eps!r}.")
    return arr


def check_input_size(model: Any, x: torch.Tensor) -> torch.Tensor:
    """``x`` when its images have the size ``model.spec.input_size`` (a model without a spec takes any size).

    A model with a spec was trained (and its profile measured) at that size; other sizes fail deep in the
    network or, worse, are attacked silently at a size the model never saw (a 1x1 image). Resize first with
    ``mlvis.data.preprocess`` / the model card's rule."""
    size = getattr(getattr(model, "spec", None), "input_size", None)
    if size is None:
        return x
    h, w = (int(v) for v in size)
    if tuple(x.shape[2:]) != (h, w):
        name = getattr(model.spec, "name", "this model")
        raise InvalidInput(
            f"{name} takes {h}×{w} images (height × width), not {x.shape[2]}×{x.shape[3]}; resize them first "
            f"(mlvis.data.images.load_images does it by the model card's rule)."
        )
    return x


def check_option(info: Any, key: str, value: Any) -> None:
    """Check one method option by the registry: an exposed option by its range (:meth:`Option.check`), any
    other by the type of its default (a whole number for an int, a finite number or array of them for a float,
    True/False for a bool), so NaN, "no" or 2.5 for a count are sentences instead of silently wrong runs."""
    where = f"{info.name}'s {key}"
    exposed = {o.name: o for o in info.exposed}
    if key in exposed and np.ndim(value) == 0:
        exposed[key].check(value, info.name)
        return
    default = info.defaults.get(key)
    if isinstance(default, bool):
        check_flag(where, value)
    elif isinstance(default, int):
        check_number(where, value, 0, 10**9, whole=True)
    elif isinstance(default, float) or key in exposed:
        if isinstance(value, (str, bytes, bool)) or value is None:
            raise InvalidInput(f"{where} must be a number, not {value!r}.")
        if isinstance(value, torch.Tensor):
            value = value.detach().cpu().numpy()
        try:
            arr = np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError):
            raise InvalidInput(f"{where} must be a number or an array of numbers, not {value!r}.") from None
        if not np.isfinite(arr).all():
            raise InvalidInput(f"{where} must be finite, not {value!r}.")


def _check_whole(name: str, value: Any, lo: int, hi: int) -> int:
    """``value`` as an int in [lo, hi]; 2.5, NaN, True or "3" are sentences, not truncated or accepted."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise InvalidInput(f"{name} must be a whole number, not {value!r}.")
    if not (math.isfinite(value) and value == int(value) and lo <= value <= hi):
        raise InvalidInput(f"{name} must be a whole number in [{lo}, {hi}], not {value!r}.")
    return int(value)


def runner_steps_per_image(specs: Sequence[AttackSpec], num_labels: int, protocol: str) -> int:
    """The most image-steps one image takes in the job's runner methods (their ``work`` rules, see
    :func:`mlvis.attacks.methods.register_method`); the loop's are the dry run's."""
    total = 0
    for spec in specs:
        info = get_method(spec.method)
        if info.work is not None and info.kind_for(spec.options) == RUNNER:
            opts = {k: v for k, v in spec.options.items() if k not in _SPEC_COMMON}
            total += int(info.work({**info.defaults, **opts}, int(num_labels), protocol))
    return total


def _check_work(
    specs: Sequence[AttackSpec],
    eps: np.ndarray,
    n_img: int,
    alpha: float,
    norm: str,
    dims: int,
    cap: int,
    num_labels: int | None = None,
    protocol: str = "paper",
) -> None:
    """Check every spec's options (known, required, valid by the registry) and refuse a job whose loop would run
    more than ``cap`` image-steps (counted by the dry run, no allocation), with its runner methods' most steps
    when the number of labels is known beforehand."""
    for spec in specs:
        info = get_method(spec.method)
        opts = dict(spec.options)
        if "alpha" in opts:
            _check_alpha(opts["alpha"])
        if "norm" in opts:
            check_norm(opts["norm"])
        unknown = sorted(set(opts) - set(info.options) - set(_SPEC_COMMON))
        if unknown:
            accepted = ", ".join(info.options + _SPEC_COMMON) or "none"
            raise InvalidInput(
                f"Unknown option(s) {', '.join(unknown)} for method {spec.method!r}; it accepts: {accepted}."
            )
        missing = [o for o in info.required if o not in opts]
        if missing:
            raise InvalidInput(f"Method {spec.method!r} needs the option(s) {', '.join(missing)}.")
        for key, value in opts.items():
            if key not in _SPEC_COMMON:
                check_option(info, key, value)  # before any work, and before a runner's work rule reads them
    steps, _ = dry_run_steps(specs, eps, n_img, alpha=alpha, norm=norm, dims=dims)
    runners = runner_steps_per_image(specs, num_labels, protocol) * n_img if num_labels else 0
    check_work(steps + runners, cap)


def _check_alpha(alpha: Any) -> float:
    if isinstance(alpha, (bool, str, bytes)):
        raise InvalidInput(f"alpha must be a positive number, not {alpha!r}.")
    try:
        a = float(alpha)
    except (TypeError, ValueError):
        raise InvalidInput(f"alpha must be a positive number, not {alpha!r}.") from None
    if not (math.isfinite(a) and MIN_ALPHA <= a <= MAX_EPS):
        raise InvalidInput(f"alpha must be a finite number in [{MIN_ALPHA:g}, {MAX_EPS:g}], not {alpha!r}.")
    return a


def _as_spec(s: Any) -> AttackSpec:
    if isinstance(s, AttackSpec):
        return s
    if isinstance(s, str):
        return AttackSpec(s)
    if isinstance(s, tuple) and len(s) == 2 and isinstance(s[0], str) and isinstance(s[1], Mapping):
        return AttackSpec(s[0], dict(s[1]))
    raise InvalidInput(f"An attack spec must be an AttackSpec, a method name or (name, options), not {s!r}.")


def _jsonable(v: Any) -> Any:
    if isinstance(v, Mapping):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, torch.Tensor):
        return v.detach().cpu().tolist()
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, np.generic):
        return v.item()
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    if callable(getattr(v, "to_dict", None)):  # FlipProfile, CorrelationMatrix: the config stays rerunnable
        return _jsonable(v.to_dict())
    return repr(v)
