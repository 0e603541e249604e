"""Flip profiles (paper section V-C, appendix L): the expected number of flips E(eps) of a model.

The probe attacks (unbounded MI-FGSM with BCE and with the linear loss, mean flips over the
probe images recorded every ``interval`` steps) produce two curves; this module turns them into
a :class:`FlipProfile`: the convergence point eps_max, the pointwise maximum of the two curves
(a lower bound on what is achievable), and a least-squares polynomial through it.

Convergence rule (the paper: "a derivative less than 1 % of the derivative in the origin"): the
gain of an interval is the increase of the mean flips over it; the curve has converged at the
first interval that starts a run of ``patience`` consecutive intervals whose gains are all below
``rel`` times the first interval's gain. A single flat interval is not enough: with 100 probe
images the mean moves in steps of 0.01, so one flat block is noise (appendix L says the paper
itself needed a larger interval for one model for this reason).

Under ``protocol="authors"`` (:mod:`mlvis.attacks.protocol`) the profile is the authors' code's: E is the BCE
curve alone, converged at the end of the first interval whose gain is below ``rel`` times the first gain
(:func:`authors_convergence_index`), and the probes clip to [0, 1] once (their flips are read on the clipped
images). :func:`for_protocol` refits a measured profile under the other rule from its stored curves.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from mlvis.errors import InvalidInput, check_flag, check_number


def convergence_index(flips: np.ndarray, rel: float = 0.01, patience: int = 3) -> int | None:
    """Index into ``flips`` (measured at steps 0, i, 2i, ...) where the curve has converged.

    ``flips[0]`` is the value before the attack (0 by definition of a flip). The reference gain is
    the first positive one: a robust model may flip nothing in the first intervals, and a curve that
    has not started rising has not converged. Returns ``None`` while the curve is still rising.
    """
    flips = np.asarray(flips, np.float64)
    if flips.ndim != 1 or len(flips) < 2:
        raise InvalidInput("need a 1-D curve with at least two points")
    gains = np.diff(flips)
    rising = np.flatnonzero(gains > 0)
    if not len(rising):
        return None
    start = int(rising[0])
    flat = gains < rel * gains[start]
    for k in range(start + 1, len(flat) - patience + 1):
        if flat[k : k + patience].all():
            return k
    return None


def authors_convergence_index(flips: np.ndarray, rel: float = 0.01) -> int | None:
    """The authors' code's convergence point: the index of the point that ends the first interval (after the
    first rising one) whose gain is below ``rel`` times the first positive gain; ``None`` while still rising.

    The code divides by the very first gain (and never stops when it is 0); the first positive gain is used
    here, as :func:`convergence_index` does."""
    k = convergence_index(flips, rel, patience=1)
    return None if k is None else k + 1


def _converged_at(
    fb: np.ndarray, fl: np.ndarray, rel: float, patience: int, rule: str
) -> tuple[np.ndarray, int | None]:
    """E's points and their convergence index under the protocol's ``rule`` (see the module docstring)."""
    if rule == "bce-first":
        return fb, authors_convergence_index(fb, rel)
    points = np.maximum(fb, fl)
    return points, convergence_index(points, rel, patience)


_PER_IMAGE = ("per_image_bce", "per_image_linear")
PROFILE_NORMS = ("linf", "l2")


def profile_norm(profile: Any) -> str:
    """The norm ``profile`` was measured in (``"linf"`` for objects that do not say, as old profiles)."""
    return str(getattr(profile, "norm", "linf"))


def check_profile_norm(profile: Any, norm: str) -> None:
    """A :class:`~mlvis.errors.ProfileMismatch` unless ``profile`` was measured in the attack's ``norm``
    (see :func:`mlvis.attacks.budget.check_profile_norm`)."""
    from mlvis.attacks.budget import check_profile_norm as check

    check(profile, norm)


FRACTIONS = (0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0)
"""Section VI-C's evaluation grid as fractions of eps_max: the one definition (the evaluation, the CLI, the
Profiles and Budget sweep pages read it)."""


@dataclasses.dataclass(frozen=True)
class FlipProfile:
    """E(eps) for one model, with the measurements it was fitted to.

    Attributes:
        model: model name; ``labels``: number of labels C.
        eps: (M,) budgets of the measured points (steps x alpha).
        flips_bce, flips_linear: (M,) mean flips of the two probe attacks at those budgets.
        coefficients: polynomial coefficients, lowest power first, of E in eps.
        degree: the polynomial's degree (4 by default, 3 selectable).
        eps_max: the budget where the flips converge.
        cost: measured forward and backward passes of the probes (equation 19), per image.
        settings: what the probe used (alpha, interval, images, rule), to reproduce it.
        per_image_bce, per_image_linear: (M, N) flips of each probe image at each measured budget
            (kept by :func:`profile`; they are exactly BCE and linear at those budgets, Fig. 8).
        norm: the norm of the probe attacks, ``"linf"`` or ``"l2"``; ``eps`` and ``eps_max`` are budgets
            in it (L-inf half-widths, or L2 radii). An attack reads only the profile of its own norm
            (:func:`check_profile_norm`). Documents written before profiles knew their norm are L-inf.
    """

    model: str
    labels: int
    eps: np.ndarray
    flips_bce: np.ndarray
    flips_linear: np.ndarray
    coefficients: np.ndarray
    degree: int
    eps_max: float
    cost: dict = dataclasses.field(default_factory=dict)
    settings: dict = dataclasses.field(default_factory=dict)
    per_image_bce: np.ndarray | None = None
    per_image_linear: np.ndarray | None = None
    norm: str = "linf"

    def __post_init__(self) -> None:
        if self.norm not in PROFILE_NORMS:
            raise InvalidInput(f"A flip profile's norm is linf or l2, not {self.norm!r}.")

    @property
    def points(self) -> np.ndarray:
        """E's measured points: the larger of the two probe curves (a lower-bound estimate); the BCE curve
        alone for a profile fitted under ``protocol="authors"``."""
        if self.settings.get("protocol") == "authors":
            return np.asarray(self.flips_bce, np.float64)
        return np.maximum(self.flips_bce, self.flips_linear)

    def expected_flips(self, eps) -> np.ndarray | float:
        """E(eps), clipped to [0, C]; eps beyond eps_max is held at E(eps_max)."""
        e = np.clip(np.asarray(eps, np.float64), 0.0, self.eps_max)
        value = np.clip(np.polynomial.polynomial.polyval(e, self.coefficients), 0.0, self.labels)
        value = np.where(np.asarray(eps) <= 0, 0.0, value)
        return float(value) if np.ndim(value) == 0 else value

    def flip_ratio(self, eps) -> np.ndarray | float:
        """p of equation 7: 1 beyond eps_max, 0 at eps <= 0, else E(eps) / C."""
        eps_arr = np.asarray(eps, np.float64)
        p = np.asarray(self.expected_flips(eps_arr)) / self.labels
        p = np.where(eps_arr > self.eps_max, 1.0, np.where(eps_arr <= 0, 0.0, p))
        return float(p) if np.ndim(p) == 0 else p

    def grid(self, fractions=FRACTIONS) -> np.ndarray:
        """The evaluation budgets: fractions of eps_max (section VI-C)."""
        return np.asarray(fractions, np.float64) * self.eps_max

    # -- persistence ------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        for k in ("eps", "flips_bce", "flips_linear", "coefficients", "per_image_bce", "per_image_linear"):
            d[k] = None if d[k] is None else np.asarray(d[k]).tolist()
        if d["norm"] == "linf":  # an L-inf profile is written exactly as before profiles knew their norm
            del d["norm"]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> FlipProfile:
        try:
            arrays = {k: np.asarray(d[k], np.float64) for k in ("eps", "flips_bce", "flips_linear", "coefficients")}
            profile = cls(
                model=str(d["model"]),
                labels=int(d["labels"]),
                degree=int(d["degree"]),
                eps_max=float(d["eps_max"]),
                cost=dict(d.get("cost", {})),
                settings=dict(d.get("settings", {})),
                **arrays,
                per_image_bce=None if d.get("per_image_bce") is None else np.asarray(d["per_image_bce"], np.int64),
                per_image_linear=(
                    None if d.get("per_image_linear") is None else np.asarray(d["per_image_linear"], np.int64)
                ),
                norm=str(d.get("norm", "linf")),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise InvalidInput(f"not a flip profile: {e}") from None
        if not (profile.labels > 0 and math.isfinite(profile.eps_max) and profile.eps_max > 0):
            raise InvalidInput("not a flip profile: labels and eps_max must be positive")
        return profile

    def save(self, path: str | Path) -> None:
        from mlvis.store import atomic_write_text

        atomic_write_text(Path(path), json.dumps(self.to_dict(), indent=1) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> FlipProfile:
        return cls.from_dict(json.loads(Path(path).read_text()))


def fit_profile(
    eps: np.ndarray,
    flips_bce: np.ndarray,
    flips_linear: np.ndarray,
    labels: int,
    degree: int = 4,
    model: str = "",
    rel: float = 0.01,
    patience: int = 3,
    cost: dict | None = None,
    settings: dict | None = None,
    protocol: str = "paper",
    norm: str = "linf",
) -> FlipProfile:
    """Fit E(eps) to the two probe curves measured at ``eps`` (first point eps = 0).

    eps_max is where the pointwise maximum of the curves converges (see the module docstring);
    a curve that never converges takes its last budget. The polynomial is fitted by least
    squares to the points up to eps_max. ``protocol="authors"``: the BCE curve alone and the authors'
    rule (:func:`authors_convergence_index`).
    """
    from mlvis.attacks.protocol import get_protocol

    proto = get_protocol(protocol)
    eps = np.asarray(eps, np.float64)
    fb, fl = np.asarray(flips_bce, np.float64), np.asarray(flips_linear, np.float64)
    if not (eps.shape == fb.shape == fl.shape) or eps.ndim != 1:
        raise InvalidInput("eps, flips_bce and flips_linear must be 1-D and of equal length")
    if degree not in (3, 4):
        raise InvalidInput(f"degree must be 3 or 4, not {degree}")
    if len(eps) < degree + 1:
        raise InvalidInput(f"a degree-{degree} fit needs at least {degree + 1} points, got {len(eps)}")
    points, k = _converged_at(fb, fl, rel, patience, proto.profile_rule)
    last = len(eps) - 1 if k is None else max(k, degree)
    eps_max = float(eps[last])
    coefficients = np.polynomial.polynomial.polyfit(eps[: last + 1], points[: last + 1], degree)
    return FlipProfile(
        model=model,
        labels=int(labels),
        eps=eps,
        flips_bce=fb,
        flips_linear=fl,
        coefficients=coefficients,
        degree=degree,
        eps_max=eps_max,
        cost=dict(cost or {}),
        settings={
            "rel": rel, "patience": patience, "converged": k is not None, **(settings or {}),
            **({"protocol": proto.name} if proto.name != "paper" else {}),
        },  # fmt: skip
        norm=norm,
    )


def for_protocol(profile: FlipProfile, protocol: str = "paper") -> FlipProfile:
    """``profile`` read under ``protocol``'s convergence rule: itself when it was fitted under it, else refitted
    from its measured curves (the same probes, the other rule; its per-image flips and cost are kept)."""
    from mlvis.attacks.protocol import check_protocol

    if profile.settings.get("protocol", "paper") == check_protocol(protocol):
        return profile
    st = {k: v for k, v in profile.settings.items() if k not in ("rel", "patience", "converged", "protocol")}
    refit = fit_profile(profile.eps, profile.flips_bce, profile.flips_linear, profile.labels, profile.degree,
                        profile.model, rel=float(profile.settings.get("rel", 0.01)),
                        patience=int(profile.settings.get("patience", 3)), cost=profile.cost, settings=st,
                        protocol=protocol, norm=profile_norm(profile))  # fmt: skip
    return dataclasses.replace(refit, per_image_bce=profile.per_image_bce, per_image_linear=profile.per_image_linear)


# ------------------------------------------------------------------------------------ the probe


def probe(
    model,
    images,
    *,
    alpha: float | None = None,
    interval: int = 10,
    max_eps: float = 0.5,
    rel: float = 0.01,
    patience: int = 3,
    min_points: int = 6,
    max_batch: int | None = None,
    progress=None,
    protocol: str = "paper",
    autocast: bool = False,
    norm: str = "linf",
) -> dict:
    """The probe attacks of section V-C: unbounded MI-FGSM with BCE and with the linear loss.

    Both run side by side as 2N rows of the engine's own loop (:func:`mlvis.attacks.loop.run_lockstep`:
    per-sample L1-normalised gradient, momentum 1, sign step of ``alpha``, clip to [0, 1]); no eps-ball,
    so the image after ``k`` steps is exactly the attack at eps = k * alpha (DESIGN.md's prefix rule).
    The mean flips of each curve are recorded every ``interval`` steps by a step hook, read from the
    logits that the step's gradient forward computes anyway, and the probe stops as soon as the larger
    curve has converged (:func:`convergence_index`, with at least ``min_points`` points including eps = 0,
    enough for a degree-4 fit) or at ``max_eps``.

    ``protocol="authors"``: the probes clip to [0, 1] once (flips read on the clipped images) and stop when
    the BCE curve converges by the authors' rule (see the module docstring).

    ``autocast``: bf16 autocast of the probes' gradient passes (their flips are read from those passes).

    ``norm="l2"`` probes with the L2 attack (appendix B): steps of ``l2_step(alpha, dims)``, the L2 length
    of one sign step of ``alpha``, without an eps-ball, so the image after ``k`` steps is the L2 attack at
    radius ``k * l2_step``; ``eps`` and ``max_eps`` are then L2 radii.

    Returns a dict: ``eps`` (M,), ``flips_bce`` / ``flips_linear`` (M,) means, ``per_image_bce`` /
    ``per_image_linear`` (M, N), ``steps`` run, ``converged`` and the measured ``cost``.
    """
    import torch

    from mlvis.attacks.geometry import DEFAULT_ALPHA
    from mlvis.attacks.loop import StepHook, run_lockstep
    from mlvis.attacks.model_helpers import CPU_MAX_BATCH, check_images, model_device, work_dtype
    from mlvis.attacks.norms import get_norm
    from mlvis.attacks.protocol import get_protocol
    from mlvis.metrics import flip_count

    proto = get_protocol(protocol)
    alpha = DEFAULT_ALPHA if alpha is None else alpha
    check_number("min_points", min_points, 2, 10**6, whole=True)
    if max_batch is not None:
        check_number("max_batch", max_batch, 1, 2**62, whole=True)
    from mlvis.attacks.engine import check_input_size

    x_checked = check_input_size(model, check_images(images))
    dims = int(x_checked[0].numel())
    check_profile_settings(alpha=alpha, interval=interval, max_eps=max_eps, rel=rel, patience=patience,
                           images=int(x_checked.shape[0]), norm=norm, dims=dims)  # fmt: skip
    alpha, interval = float(alpha), int(interval)
    step = get_norm(norm).step_length(alpha, dims)  # alpha itself under L-inf
    max_steps = int(math.floor(float(max_eps) / step + 1e-9))
    if max_steps < interval * (patience + 1):
        raise InvalidInput(f"max_eps {max_eps} allows too few steps for the convergence rule; raise it.")
    x = x_checked.to(model_device(model), work_dtype(model))
    n = x.shape[0]
    batch = int(max_batch) if max_batch else (CPU_MAX_BATCH if x.device.type == "cpu" else n)
    rows = probe_rows(model, x, alpha, max_steps, batch, norm)
    clean_pred, thr = rows.clean_pred, rows.threshold

    records: list[torch.Tensor] = []  # (2, N) flips at steps interval, 2 * interval, ...
    flips_now = torch.zeros((2, n), device=x.device, dtype=torch.int64)
    state = {"converged": False, "recorded": False}

    def record(k: int, rows: np.ndarray, logits: torch.Tensor) -> None:
        probe_id, img = divmod(int(rows[0]), n)
        sl = slice(img, img + len(rows))
        flips_now[probe_id, sl] = flip_count(torch.sigmoid(logits), clean_pred[sl], thr)
        state["recorded"] = True

    def stop(k: int) -> bool:
        if state["recorded"]:
            state["recorded"] = False
            records.append(flips_now.clone())
            if probe_converged(torch.stack(records), rel, patience, min_points, proto.profile_rule):
                state["converged"] = True
                return True
        if progress is not None and k < max_steps:
            progress(k + 1, max_steps)
        return False

    fmt = torch.contiguous_format  # the layout the shipped profiles were measured in
    steps_run = run_lockstep(model, x, rows.table, rows.parts, StepHook(interval, record, stop), norm=norm, fmt=fmt,
                             autocast=check_flag("autocast", autocast), clip_once=proto.clip_once)  # fmt: skip
    per = torch.stack(records).cpu().numpy()  # (M, 2, N)
    return probe_output(per, int(steps_run), bool(state["converged"]), step, interval, max_steps, rows.labels)


@dataclasses.dataclass
class ProbeRows:
    """The probe's rows for :func:`mlvis.attacks.loop.run_lockstep` or its :class:`~mlvis.attacks.loop.Chunk`s.

    ``parts``: row indices cut in pieces of ``batch`` images (BCE rows ``0..N-1``, linear ``N..2N-1``); each
    piece is one batch of every model call, so the probe of images ``[a, a + batch)`` computes the same bits
    on its own (a run directory's chunk) as inside a probe of more images with that batch.
    """

    table: Any
    parts: list
    clean_pred: Any
    threshold: float
    labels: int


def probe_rows(model, x, alpha: float, max_steps: int, batch: int, norm: str = "linf") -> ProbeRows:
    """The two probes as 2N unbounded rows of the engine's loop (eps = inf: only the [0, 1] box binds), each
    run to ``max_steps`` in ``norm``; the clean predictions from forwards of ``batch`` images."""
    import torch

    from mlvis.attacks.methods import LoopPlan, MethodContext, get_method
    from mlvis.attacks.model_helpers import threshold
    from mlvis.attacks.rows import RowTable

    n, dev, dtype = x.shape[0], x.device, x.dtype
    thr = threshold(model)
    with torch.no_grad():
        clean_logits = torch.cat([model(x[a : a + batch]).float() for a in range(0, n, batch)])
    clean_probs = torch.sigmoid(clean_logits)
    clean_pred = clean_probs >= thr
    c = clean_pred.shape[1]
    ctx = MethodContext(
        model=model, images=x, clean_logits=clean_logits, clean_probs=clean_probs, clean_pred=clean_pred,
        target=(~clean_pred).to(dtype), eps=np.array([np.inf]), alpha=alpha, norm=norm, threshold=thr,
        labels=tuple(str(i) for i in range(c)), generator=torch.Generator(), device=dev,
    )  # fmt: skip
    table = RowTable(n, c, 1, dev, dtype)
    for s, loss in enumerate(("bce", "linear")):
        plan = get_method(loss).fn(ctx)
        assert isinstance(plan, LoopPlan)
        table.add(s, plan, ctx, alpha, norm, int(x[0].numel()), steps=max_steps)
    parts = [np.arange(s * n + a, s * n + min(n, a + batch)) for s in (0, 1) for a in range(0, n, batch)]
    return ProbeRows(table, parts, clean_pred, float(thr), int(c))


def probe_converged(records, rel: float, patience: int, min_points: int, rule: str = "max-patience") -> bool:
    """The probe's stopping rule on its records so far (``(m, 2, N)`` flips at the first m intervals): E's
    curve, with eps = 0 in front, has converged under the protocol's ``rule`` (:func:`_converged_at`: the
    larger mean curve by :func:`convergence_index`, or the authors' BCE curve)."""
    means = records.float().mean(2).cpu().numpy()  # one host sync per interval
    fb, fl = np.concatenate([[0.0], means[:, 0]]), np.concatenate([[0.0], means[:, 1]])
    return len(fb) >= min_points and _converged_at(fb, fl, rel, patience, rule)[1] is not None


def probe_output(
    per: np.ndarray, steps_run: int, converged: bool, step: float, interval: int, max_steps: int, labels: int
) -> dict:
    """:func:`probe`'s dict from its records ``per (M, 2, N)`` (flips of both probes at each measured step);
    ``step``: the length of one probe step in the probe's norm (alpha under L-inf)."""
    n = per.shape[2]
    m = per.shape[0]
    eps = np.concatenate([[0.0], step * interval * np.arange(1, m + 1)])
    if not converged and (max_steps % interval):
        eps[-1] = step * max_steps
    zeros = np.zeros((1, n))
    return {
        "eps": eps,
        "flips_bce": np.concatenate([[0.0], per[:, 0].mean(1)]),
        "flips_linear": np.concatenate([[0.0], per[:, 1].mean(1)]),
        "per_image_bce": np.concatenate([zeros, per[:, 0]]),
        "per_image_linear": np.concatenate([zeros, per[:, 1]]),
        "steps": int(steps_run),
        "labels": int(labels),
        "converged": converged,
        # image-passes per image, both probes: clean fp, one fp + bp per step and probe (the flips
        # are read from those forwards), one last fp when the probe ran to max_eps
        "cost": {
            "forward": 1 + 2 * steps_run + (0 if converged else 2),
            "backward": 2 * steps_run,
            "images": n,
        },
    }


def probe_image_steps(images: int, max_eps: float, alpha: float, norm: str = "linf", dims: int | None = None) -> int:
    """The most image-steps :func:`probe` takes: two probes x images x floor(max_eps / step) (it stops
    earlier when the curves converge); the step is ``alpha``, or under L2 ``l2_step(alpha, dims)``."""
    from mlvis.attacks.geometry import n_steps

    return 2 * int(images) * n_steps(float(max_eps), probe_step(float(alpha), norm, dims))


def expected_probe_steps(
    profile: FlipProfile,
    images: int,
    *,
    max_eps: float,
    interval: int = 10,
    alpha: float | None = None,
    dims: int | None = None,
    rel: float = 0.01,
    patience: int = 3,
    min_points: int = 6,
    protocol: str = "paper",
    draws: int = 256,
) -> float | None:
    """The steps :func:`probe` is expected to run on ``images`` new images of the model ``profile`` was measured
    on, read off that profile's per-image flips; ``None`` when it has none (a profile written without them).

    The probes stop where the mean flips of their images converge (:func:`probe_converged`), which depends on
    how many images there are (with few, one flat interval of the mean is likelier: it moves in steps of
    1 / images) and on the interval (the reference gain is one interval's, the patience counts intervals).
    So this replays the stopping rule on ``draws`` random sets of ``images`` of the profile's probe images
    (without replacement; all of them, once, when it has no more), their flips recorded every ``interval``
    steps of ``alpha`` (in the profile's norm) up to ``max_eps``, and returns the mean of the steps where the
    rule stops. Between the profile's own measured budgets each image's flips are held at the last measured
    value (exact when ``interval`` is a multiple of the profile's, as for the same interval), and beyond its
    last budget too (a converged profile's curves are flat there). The same rule as the probe's, with the
    probe's defaults: ``rel``, ``patience``, ``min_points`` and the ``protocol``'s rule."""
    from mlvis.attacks.geometry import DEFAULT_ALPHA
    from mlvis.attacks.protocol import get_protocol

    if profile.per_image_bce is None or profile.per_image_linear is None:
        return None
    check_number("images", images, 1, 10**9, whole=True)
    check_number("interval", interval, 1, 10**6, whole=True)
    check_number("draws", draws, 1, 10**6, whole=True)
    alpha = DEFAULT_ALPHA if alpha is None else float(alpha)
    step = probe_step(alpha, profile_norm(profile), dims)
    max_steps = int(math.floor(float(max_eps) / step + 1e-9))
    records = max_steps // int(interval)
    grid = step * int(interval) * np.arange(records + 1)  # eps = 0 in front, as the rule reads the curve
    known = np.asarray(profile.eps, np.float64)
    at = np.clip(np.searchsorted(known, grid + 1e-9 * step, side="right") - 1, 0, len(known) - 1)
    held_bce = np.asarray(profile.per_image_bce, np.float64)[at]  # (records + 1, N)
    held_linear = np.asarray(profile.per_image_linear, np.float64)[at]
    n = held_bce.shape[1]
    rng = np.random.default_rng(0)
    picks = [np.arange(n)] if images >= n else [rng.choice(n, int(images), replace=False) for _ in range(draws)]
    bce_first = get_protocol(protocol).profile_rule == "bce-first"
    runs = []
    for idx in picks:
        fb, fl = held_bce[:, idx].mean(1), held_linear[:, idx].mean(1)
        # the probe stops after m records once the curve of m records (eps = 0 in front) converges:
        # at the index k the rule finds plus its patience (the authors' rule: one interval)
        k = convergence_index(fb, rel, 1) if bce_first else convergence_index(np.maximum(fb, fl), rel, patience)
        m = None if k is None else max(k + (1 if bce_first else patience), min_points - 1)
        runs.append(max_steps if m is None or m > records else m * int(interval))
    return float(np.mean(runs))


def probe_step(alpha: float, norm: str = "linf", dims: int | None = None) -> float:
    """The length of one probe step: ``alpha`` under L-inf, the L2 length of a sign step of ``alpha``
    (``alpha * sqrt(dims)``, the engine's L2 step) under L2."""
    from mlvis.attacks.geometry import l2_step

    if norm == "linf":
        return float(alpha)
    if dims is None:
        raise InvalidInput("An L2 probe needs the number of values per image (dims) for its step length.")
    return l2_step(float(alpha), int(dims))


def default_max_eps(norm: str = "linf", dims: int | None = None, alpha: float | None = None) -> float:
    """Where the probes stop at the latest by default: 0.5 under L-inf (1,280 steps of 1/2560), and the
    same number of steps under L2 (``1280 * l2_step(alpha, dims)``: 55.4 for 64 x 64 x 3)."""
    from mlvis.attacks.geometry import DEFAULT_ALPHA

    a = DEFAULT_ALPHA if alpha is None else float(alpha)
    base = float(PROFILE_DEFAULTS["max_eps"])
    if norm == "linf":
        return base
    return round(base / a) * probe_step(a, "l2", dims)


def equation_19(eps_max: float, alpha: float, interval: int) -> dict:
    """The paper's profiling cost (appendix L, eq. 19) in passes per image and probe:
    eps_max / alpha * ((1 + 1/i) fp + bp); ``alpha`` is the step length (:func:`probe_step` under L2)."""
    n = eps_max / alpha
    return {"forward": n * (1 + 1 / interval), "backward": n}



def check_profile_settings(
    *,
    alpha: float,
    interval: Any,
    max_eps: Any,
    rel: Any,
    patience: Any,
    degree: Any = 4,
    images: int = 0,
    norm: Any = "linf",
    dims: int | None = None,
) -> None:
    """Every setting of :func:`profile` / :func:`probe` checked before any work, and the probes' most
    image-steps against the cap (:func:`mlvis.errors.max_image_steps`). Under L2 ``max_eps`` is a radius,
    at most the diagonal of the [0, 1] cube (``sqrt(dims)``)."""
    from mlvis.attacks.budget import check_norm
    from mlvis.errors import check_work, max_image_steps

    check_norm(norm)
    check_number("alpha", alpha, 0, 1, above=True)
    check_number("interval", interval, 1, 10**6, whole=True)
    top = 1 if norm == "linf" else (math.sqrt(dims) if dims else 1e9)
    check_number("max_eps", max_eps, 0, top, above=True)
    check_number("rel", rel, 0, 1, above=True)
    check_number("patience", patience, 1, 10**6, whole=True)
    if degree not in (3, 4) or isinstance(degree, bool):
        raise InvalidInput(f"The profile polynomial's degree must be 3 or 4, not {degree!r}.")
    if images:
        steps = probe_image_steps(images, float(max_eps), float(alpha), norm, dims)
        check_work(steps, max_image_steps(), "This profile")


PROFILE_DEFAULTS = {"interval": 10, "max_eps": 0.5, "rel": 0.01, "patience": 3, "degree": 4}


def profile(
    model,
    images=None,
    *,
    degree: int = 4,
    alpha: float | None = None,
    interval: int = 10,
    max_eps: float | None = None,
    rel: float = 0.01,
    patience: int = 3,
    cache: bool = True,
    progress=None,
    protocol: str = "paper",
    max_batch: int | None = None,
    autocast: bool = False,
    norm: str = "linf",
) -> FlipProfile:
    """The flip profile E(eps) of ``model`` (section V-C) in ``norm``.

    With ``images``: run the two probes (:func:`probe`), fit the polynomial (:func:`fit_profile`) and
    cache the result, keyed by the weights' fingerprint and the settings. Without: return the
    shipped or cached profile of these weights in ``norm``, or say clearly that there is none.

    ``norm="l2"`` probes with the L2 attack (appendix B; see :func:`probe`): its eps and eps_max are L2
    radii, and it is the profile L2 attacks read (SLAM's p, CLASS's subset length, the L2 evaluation
    grid of Table VIII). ``max_eps`` defaults to :func:`default_max_eps` (0.5 under L-inf).

    ``protocol="authors"`` measures and fits it as the authors' code does (see the module docstring); without
    images the shipped profile is refitted from its curves under that rule (:func:`for_protocol`).

    Example:
        >>> model = mlvis.create_model("demo-asl")
        >>> prof = mlvis.profile(model)                      # the shipped one
        >>> prof.eps_max, prof.expected_flips(0.01)
        >>> mlvis.profile(model, norm="l2").eps_max          # the shipped L2 profile (an L2 radius)
    """
    from mlvis.analysis import artifacts
    from mlvis.attacks.budget import check_norm
    from mlvis.attacks.geometry import DEFAULT_ALPHA
    from mlvis.attacks.protocol import check_protocol

    check_protocol(protocol)
    norm = check_norm(norm)
    alpha = DEFAULT_ALPHA if alpha is None else alpha
    check_profile_settings(alpha=alpha, interval=interval, max_eps=1.0 if max_eps is None else max_eps, rel=rel,
                           patience=patience, degree=degree, norm=norm)  # fmt: skip
    alpha = float(alpha)
    name = getattr(getattr(model, "spec", None), "name", type(model).__name__)
    if images is None:
        doc = artifacts.find("profile", model, norm=norm)
        if doc is None:
            flag = "" if norm == "linf" else f" --norm {norm}"
            arg = "" if norm == "linf" else f", norm={norm!r}"
            raise InvalidInput(
                f"No {'L2 ' if norm == 'l2' else ''}profile of {name!r} is shipped or cached for these weights. "
                f"Compute one with mlvis.profile(model, images{arg}) or `mlvis profile --model {name}{flag}`."
            )
        return for_protocol(FlipProfile.from_dict(doc["profile"]), protocol)
    dims = None
    if norm == "l2":
        from mlvis.attacks.model_helpers import check_images

        dims = int(check_images(images)[0].numel())
    if max_eps is None:
        max_eps = default_max_eps(norm, dims, alpha)
    cache = bool(cache) and artifacts.cache_writable("profile")  # said before the probe, not after it
    p = probe(model, images, alpha=alpha, interval=interval, max_eps=max_eps, rel=rel, patience=patience,
              progress=progress, max_batch=max_batch, autocast=autocast, norm=norm, protocol=protocol)  # fmt: skip
    return fitted_profile(p, model, degree, alpha, interval, max_eps, rel, patience, images if cache else None,
                          autocast=bool(autocast), norm=norm, dims=dims, protocol=protocol)  # fmt: skip


def fitted_profile(p: dict, model, degree: int, alpha: float, interval: int, max_eps: float, rel: float,
                   patience: int, cache_images=None, autocast: bool = False, norm: str = "linf",
                   dims: int | None = None, protocol: str = "paper") -> FlipProfile:  # fmt: skip
    """The :class:`FlipProfile` of a probe's dict ``p`` (:func:`probe`); cached when ``cache_images`` are given
    (the images the probe ran on, whose hash keys the cache). A probe run under bf16 autocast says so in its
    settings and cache key (``"autocast": true``; a full-precision one's are unchanged); so does an L2 probe
    (``"norm": "l2"``; ``dims``, the values per image, gives its step) and a probe of ``protocol="authors"``
    (``"protocol": "authors"``, fitted under its rule)."""
    from mlvis.analysis import artifacts

    name = getattr(getattr(model, "spec", None), "name", type(model).__name__)
    labels = p["labels"]
    n = int(p["per_image_bce"].shape[1])
    settings: dict[str, Any] = {"alpha": alpha, "interval": int(interval), "max_eps": float(max_eps), "images": n}
    if norm != "linf":  # L-inf settings (and so the L-inf cache keys) stay what they were
        settings["norm"] = norm
    if autocast:
        settings["autocast"] = True
    fitted = fit_profile(p["eps"], p["flips_bce"], p["flips_linear"], labels=labels, degree=degree, model=name,
                         rel=rel, patience=patience, settings=settings, protocol=protocol, norm=norm)  # fmt: skip
    cost = {
        "measured": p["cost"],
        "equation_19": equation_19(fitted.eps_max, probe_step(alpha, norm, dims), interval),
        "steps": p["steps"],
    }
    fitted = dataclasses.replace(
        fitted,
        cost=cost,
        per_image_bce=p["per_image_bce"].astype(np.int64),
        per_image_linear=p["per_image_linear"].astype(np.int64),
    )
    if cache_images is not None:
        key = {**settings, "degree": degree, "rel": rel, "patience": patience,
               "images_sha": images_sha(cache_images)}  # fmt: skip
        key |= {"protocol": protocol} if protocol != "paper" else {}
        artifacts.save("profile", model, key, {"profile": fitted.to_dict()})
    return fitted


def images_sha(images) -> str:
    import hashlib

    import torch

    t = images.detach().cpu() if isinstance(images, torch.Tensor) else torch.as_tensor(np.asarray(images))
    return hashlib.sha256(t.float().contiguous().numpy().tobytes()).hexdigest()[:12]
