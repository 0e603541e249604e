"""CLASS subset selection (paper section V-B, Algorithm 3): a look-ahead tree over labels.

Pure numpy; one image at a time (the attack calls it per image before its loop).

Given, for one image,
  * ``ease`` P: per-label closeness of the confidence to the attack target
    (``t * y + (1 - t) * (1 - y)``), normalised by its maximum;
  * ``icm``: the instance correlation matrix (C x C);
the selector grows a label set from the easiest label. Each iteration builds a tree ``depth``
levels deep in which every node keeps the ``branches`` best-scoring labels not yet in its set,
score ``S = gamma * Z + (1 - gamma) * P`` with ``Z`` the row + column sums of the ICM over the
node's set (normalised by its largest magnitude); the leaf with the highest objective
``O = gamma * sum(icm[set, set]) + (1 - gamma) * sum(P[set])`` wins, and the first label on its
path joins the set. Ties go to the first leaf in breadth-first order, as in the paper.

Unlike the paper's code, it never fails when every score or objective is <= 0 (the best value
starts at -inf, not 0), and the tree is evaluated one level at a time as arrays instead of one
node at a time.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from mlvis.attacks.methods import PER_EPS, SHARED, LoopPlan, MethodContext, Option, check_profile, register_method
from mlvis.attacks.protocol import get_protocol
from mlvis.errors import InvalidInput


def target_ease(probs: np.ndarray, target: np.ndarray) -> np.ndarray:
    """P of equation 8: closeness of each confidence to its target, normalised by the maximum."""
    probs, target = np.asarray(probs, np.float64), np.asarray(target, np.float64)
    p = target * probs + (1 - target) * (1 - probs)
    m = p.max(axis=-1, keepdims=True)
    out: np.ndarray = np.divide(p, m, out=np.zeros_like(p), where=m > 0)
    return out


def subset_length(expected_flips: float, num_labels: int, factor: float = 1.66, rule: str = "floor") -> int:
    """Section V-B's heuristic: target 1/0.6 ~ 1.66 times the expected number of flips (>= 1).

    ``rule="floor"``: min(C, floor(1.66 E)) (the paper); ``"int-int"``: min(C, int(1.66 int(E))), E truncated
    before the product as the authors' code does (``protocol="authors"``: 3 instead of 4 for E = 2.6).
    """
    e = max(float(expected_flips), 0.0)
    if rule == "int-int":
        return int(min(num_labels, max(1, int(factor * int(min(e, num_labels))))))
    if rule != "floor":
        raise InvalidInput(f"The subset length rule must be 'floor' or 'int-int', not {rule!r}.")
    return int(min(num_labels, max(1, np.floor(factor * e))))


def select_subset(
    ease: np.ndarray,
    icm: np.ndarray,
    length: int,
    gamma: float = 0.5,
    branches: int = 4,
    depth: int = 4,
    trace: list | None = None,
    normalise_z: bool = True,
) -> np.ndarray:
    """The ordered label subset Algorithm 3 chooses for one image.

    Args:
        ease: (C,) P, the normalised closeness of each label to its target.
        icm: (C, C) instance correlation matrix.
        length: subset length (clipped to [1, C]).
        gamma: weight of correlation against ease (0 = ease only, 1 = correlation only).
        branches, depth: the look-ahead tree's width and depth (the paper uses 4 and 4).
        trace: when a list is given, one dict per iteration is appended to it (Fig. 9): the set at the root
            (``"root"``), per tree level the nodes' ``"parent"`` (index into the level above; -1 for the
            root), ``"label"`` added and its ``"score"`` S at the parent, the leaves' ``"objective"`` O, and
            the label the iteration adds (``"chosen"``, from leaf ``"best_leaf"``). It changes nothing else.
        normalise_z: divide Z by its largest magnitude per node (the pseudo-code); ``False`` uses the raw sums
            as the authors' code does (``protocol="authors"``).

    Returns:
        int array of ``length`` distinct label indices, in the order they were added.
    """
    ease = np.asarray(ease, np.float64)
    icm = np.asarray(icm, np.float64)
    C = ease.shape[0]
    if icm.shape != (C, C):
        raise InvalidInput(f"icm must be ({C}, {C}) to match ease, not {icm.shape}")
    if not 0.0 <= gamma <= 1.0:
        raise InvalidInput(f"gamma must be in [0, 1], not {gamma}")
    if branches < 1 or depth < 1:
        raise InvalidInput("branches and depth must be at least 1")
    length = int(np.clip(length, 1, C))
    pair = icm + icm.T  # Z contribution of one member: its column (to the set) + its row (from it)

    chosen = [int(np.argmax(ease))]  # root: the easiest label (first on ties)
    while len(chosen) < length:
        levels = min(depth, length - len(chosen))
        # every node of the current level: its member mask, Z vector, path (first added label)
        members = np.zeros((1, C), bool)
        members[0, chosen] = True
        z = pair[chosen].sum(0, keepdims=True)
        first = np.full(1, -1)
        record: dict[str, Any] | None = {"root": list(chosen), "levels": []} if trace is not None else None
        for level in range(levels):
            if normalise_z:
                scale = np.abs(z).max(axis=1, keepdims=True)
                zn = np.divide(z, scale, out=np.zeros_like(z), where=scale > 0)
            else:
                zn = z
            score = np.where(members, -np.inf, gamma * zn + (1 - gamma) * ease)
            k = min(branches, C - int(members[0].sum()))
            # top-k per node, best first; stable so that ties keep label order
            top = np.argsort(-score, axis=1, kind="stable")[:, :k]
            n_nodes = members.shape[0]
            parent = np.repeat(np.arange(n_nodes), k)
            added = top.reshape(-1)
            if record is not None:
                record["levels"].append(
                    {"parent": parent.copy(), "label": added.copy(), "score": score[parent, added].copy()}
                )
            members = members[parent].copy()
            members[np.arange(len(added)), added] = True
            z = z[parent] + pair[added]
            first = added if level == 0 else first[parent]
        mf = members.astype(np.float64)
        sub_icm = np.einsum("ni,ij,nj->n", mf, icm, mf)
        objective = gamma * sub_icm + (1 - gamma) * (mf @ ease)
        best = int(np.argmax(objective))  # argmax: first of equal leaves
        chosen.append(int(first[best]))
        if record is not None and trace is not None:
            record.update(objective=objective.copy(), best_leaf=best, chosen=chosen[-1])
            trace.append(record)
    return np.array(chosen, dtype=np.int64)


# ------------------------------------------------------------------------- the targeting methods


def normalise_correlations(matrix: np.ndarray, scope: str = "off-diagonal") -> np.ndarray:
    """Min-max normalise a correlation matrix over its off-diagonal entries; the diagonal becomes 0.

    The diagonal is the attacked label's own response (the attack itself, not a correlation): it is
    an order of magnitude larger than any off-diagonal entry and would squash them all near 0.
    ``scope="global"`` normalises over every entry and keeps the diagonal, as the authors' code does
    (``protocol="authors"``).
    """
    m = np.asarray(matrix, np.float64)
    if scope == "global":
        lo, hi = m.min(), m.max()
        glob: np.ndarray = np.divide(m - lo, hi - lo, out=np.zeros_like(m), where=np.full(m.shape, hi > lo))
        return glob
    if scope != "off-diagonal":
        raise InvalidInput(f"The normalisation scope must be 'off-diagonal' or 'global', not {scope!r}.")
    off = ~np.eye(m.shape[0], dtype=bool)
    lo, hi = m[off].min(), m[off].max()
    out: np.ndarray = np.divide(m - lo, hi - lo, out=np.zeros_like(m), where=off & (hi > lo))
    np.fill_diagonal(out, 0.0)
    return out


def instance_correlation(up: np.ndarray, down: np.ndarray, target: np.ndarray) -> np.ndarray:
    """The ICM of section V-B: row i from the (normalised) flip-up matrix where label i's target is 1,
    from the flip-down matrix where it is 0. ``target`` may be (C,) or batched (..., C)."""
    t = np.asarray(target, bool)[..., :, None]
    out: np.ndarray = np.where(t, np.asarray(up, np.float64), np.asarray(down, np.float64))
    return out


def _matrices(correlations: Any, scope: str = "off-diagonal") -> tuple[np.ndarray, np.ndarray]:
    """(up, down), both min-max normalised (over ``scope``, see :func:`normalise_correlations`), from a
    CorrelationMatrix, a pair of them, or arrays.

    With the flip-up matrix alone, flip-down is approximated by ``1 - up`` (section IV-B: the two
    are negatives of each other, so their min-max normalisations are complements); its diagonal is 0
    unless ``scope="global"`` (the authors' code keeps it).
    """

    def raw(c: Any) -> np.ndarray:
        try:
            m = np.asarray(getattr(c, "matrix", c), np.float64)
        except (TypeError, ValueError):
            raise InvalidInput(f"A correlation matrix must be a square array of numbers, not {c!r}.") from None
        if m.ndim != 2 or m.shape[0] != m.shape[1] or m.shape[0] < 2:
            raise InvalidInput(f"A correlation matrix must be square (C x C, C >= 2), not of shape {m.shape}.")
        if not np.isfinite(m).all():
            raise InvalidInput("A correlation matrix must hold finite numbers; this one has NaN or infinite entries.")
        return m

    if isinstance(correlations, tuple | list):
        if len(correlations) != 2:
            raise InvalidInput("correlations must be one flip-up matrix or a (flip-up, flip-down) pair.")
        up, down = (normalise_correlations(raw(c), scope) for c in correlations)
    else:
        if getattr(correlations, "direction", "up") != "up":
            raise InvalidInput("A single correlation matrix for CLASS must be the flip-up one.")
        up = normalise_correlations(raw(correlations), scope)
        down = 1.0 - up
        if scope != "global":
            np.fill_diagonal(down, 0.0)
    if up.ndim != 2 or up.shape != down.shape or up.shape[0] != up.shape[1]:
        raise InvalidInput(f"correlation matrices must be square and alike, not {up.shape} and {down.shape}.")
    return up, down


def correlation_pair(correlations: Any, scope: str = "off-diagonal") -> tuple[np.ndarray, np.ndarray]:
    """The (flip-up, flip-down) matrices CLASS uses, min-max normalised (see ``_matrices``)."""
    return _matrices(correlations, scope)


def profile_lengths(
    profile: Any, eps: np.ndarray, num_labels: int, factor: float = 1.66, rule: str = "floor"
) -> np.ndarray:
    """Section V-B's subset length per budget, min(C, floor(factor * E(eps))) (``rule``: see
    :func:`subset_length`), with E read at the budgets ``eps`` (K,), in the profile's norm."""
    check_profile(profile, num_labels, "expected_flips")
    e = np.atleast_1d(np.asarray(profile.expected_flips(np.asarray(eps, np.float64)), np.float64))
    return np.array([subset_length(v, num_labels, factor, rule) for v in e], np.int64)


def _lengths_from_profile(profile: Any, eps: np.ndarray, num_labels: int) -> dict[str, np.ndarray]:
    return {"length": profile_lengths(profile, eps, num_labels)}


def _lengths(ctx: MethodContext, profile: Any, length: Any, factor: float) -> np.ndarray:
    """Subset length per eps: given, or section V-B's min(C, floor(factor * E(eps)))."""
    c = ctx.num_labels
    if length is not None:
        ln = np.broadcast_to(np.asarray(length, np.int64), ctx.eps.shape)
        if (ln < 1).any() or (ln > c).any():
            raise InvalidInput(f"length must be between 1 and the number of labels ({c}).")
        return ln.copy()
    if profile is None:
        raise InvalidInput("Give a profile (to size the subset from E(eps)) or an explicit length.")
    return profile_lengths(profile, ctx.profile_eps(profile), c, factor, get_protocol(ctx.protocol).class_length)


def _ctx_numpy(ctx: MethodContext) -> tuple[np.ndarray, np.ndarray]:
    return ctx.clean_probs.double().cpu().numpy(), ctx.target.double().cpu().numpy()


def class_masks(
    probs: np.ndarray,
    target: np.ndarray,
    lengths: np.ndarray,
    up: np.ndarray,
    down: np.ndarray,
    gamma: float = 0.5,
    branches: int = 4,
    depth: int = 4,
    normalise_z: bool = True,
) -> np.ndarray:
    """(K, N, C) 0/1 masks: CLASS's subset for every (eps, image); subsets depend on eps only via length.

    An image's subsets for each distinct length are computed once; length C needs no search.
    """
    n, c = probs.shape
    ease = target_ease(probs, target)
    icm = instance_correlation(up, down, target)
    masks = np.zeros((len(lengths), n, c))
    for ln in np.unique(lengths):
        ks = np.flatnonzero(lengths == ln)
        if ln >= c:
            masks[ks] = 1.0
            continue
        for i in range(n):  # the tree search is per image by nature (pure numpy, a few ms)
            chosen = select_subset(ease[i], icm[i], int(ln), gamma, branches, depth, normalise_z=normalise_z)
            masks[ks[:, None], i, chosen[None, :]] = 1.0
    return masks


CLASS_GAMMA = Option(
    "gamma", float, 0.0, 1.0, 0.5, step=0.05, label="CLASS's γ", symbol="γ", key="gamma",
    help="How CLASS picks its subset (equation 8): 0 = the labels closest to flipping, 1 = the labels whose "
    "flips help each other most (label correlations).",
)  # fmt: skip


@register_method(
    "class",
    title="CLASS",
    order=40,
    description="CLASS: BCE on a subset chosen by ease and label correlations (Alg. 3)",
    needs=("profile", "correlations"),
    kind=PER_EPS,
    exposed=(CLASS_GAMMA,),
    subset=True,
    from_profile=_lengths_from_profile,
    profile_gives=("length",),
)
def _class(
    ctx: MethodContext,
    *,
    correlations: Any,
    profile: Any = None,
    gamma: float = 0.5,
    branches: int = 4,
    depth: int = 4,
    length: Any = None,
    factor: float = 1.66,
) -> LoopPlan:
    """CLASS (section V-B): per (eps, image), a subset of min(C, floor(1.66 E(eps))) labels grown by the
    look-ahead selector from the easiest label, attacked with BCE weighted by the subset mask.

    ``correlations``: the flip-up CorrelationMatrix (flip-down approximated by 1 - up) or a
    (flip-up, flip-down) pair; ``profile``: the model's FlipProfile (or give ``length``).
    """
    gamma = float(gamma)
    if not 0 <= gamma <= 1:
        raise InvalidInput(f"gamma must lie in [0, 1], not {gamma}.")
    if int(branches) < 1 or int(depth) < 1:
        raise InvalidInput("branches and depth must be at least 1.")
    proto = get_protocol(ctx.protocol)
    up, down = _matrices(correlations, proto.correlation_scope)
    if up.shape[0] != ctx.num_labels:
        c = up.shape[0]
        raise InvalidInput(f"The correlation matrices are {c} x {c}; the model has {ctx.num_labels} labels.")
    lengths = _lengths(ctx, profile, length, factor)
    probs, target = _ctx_numpy(ctx)
    masks = class_masks(probs, target, lengths, up, down, gamma, int(branches), int(depth), proto.normalise_z)
    return LoopPlan("bce", weights=masks)


@register_method(
    "random",
    title="Random subset",
    order=50,
    description="BCE on a uniformly drawn label subset of CLASS's length (the control)",
    needs=("profile",),
    kind=PER_EPS,
    subset=True,
    from_profile=_lengths_from_profile,
    profile_gives=("length",),
)
def _random(ctx: MethodContext, *, profile: Any = None, length: Any = None, factor: float = 1.66) -> LoopPlan:
    """The random-subset control of section VI: the same subset length as CLASS, labels drawn uniformly.

    Each (eps, image) draw is seeded by the job's seed, the image's bytes and the eps value, so an
    image gets the same subset whatever batch or eps list it is attacked in (like every other method).
    """
    lengths = _lengths(ctx, profile, length, factor)
    k, n, c = len(ctx.eps), ctx.num_images, ctx.num_labels
    seed = int(ctx.generator.initial_seed())
    images = ctx.images.detach().cpu().float().numpy()
    weights = np.zeros((k, n, c))
    for i in range(n):  # one hash per image: cheap host work, never inside the attack loop
        digest = hashlib.blake2b(images[i].tobytes(), digest_size=8).digest()
        for j in range(k):
            key = [seed, int.from_bytes(digest, "little"), int(np.float64(ctx.eps[j]).view(np.int64))]
            order = np.random.default_rng(key).permutation(c)
            weights[j, i, order[: lengths[j]]] = 1.0
    return LoopPlan("bce", weights=weights)


def _closest_kind(options: Mapping[str, Any]) -> str:
    return SHARED if np.ndim(options.get("k", 1)) == 0 else PER_EPS


@register_method(
    "closest",
    description="BCE on the k labels whose confidences are closest to the threshold",
    kind=_closest_kind,
    hidden=True,
)
def _closest(ctx: MethodContext, *, k: Any) -> LoopPlan:
    """Fig. 7's targeting: the ``k`` labels closest to flipping (confidence nearest the threshold).
    ``k`` is an int or one per eps ``(K,)`` (an eps-dependent plan)."""
    c = ctx.num_labels
    ks = np.asarray(k, np.int64)
    if ks.ndim > 1 or (ks.ndim == 1 and ks.shape != ctx.eps.shape) or (ks < 1).any() or (ks > c).any():
        raise InvalidInput(f"k must be an int in [1, {c}] or one per eps.")
    dist = (ctx.clean_probs.double() - ctx.threshold).abs().cpu().numpy()
    rank = dist.argsort(-1, kind="stable").argsort(-1)
    if ks.ndim == 0:
        return LoopPlan("bce", weights=(rank < int(ks)).astype(np.float64))
    return LoopPlan("bce", weights=(rank[None] < ks[:, None, None]).astype(np.float64))


@register_method(
    "single-label", description="BCE on one label per image, pushed up or down (Algorithm 1's probe)", hidden=True
)
def _single_label(ctx: MethodContext, *, labels: Any, direction: str = "up") -> LoopPlan:
    """Attack one label per image alone: weight one-hot on ``labels[i]``, target 1 (``"up"``) or 0
    (``"down"``) whatever the clean prediction, as Algorithm 1 does to measure correlations."""
    n, c = ctx.num_images, ctx.num_labels
    lab = np.asarray(labels.cpu() if isinstance(labels, torch.Tensor) else labels)
    lab = np.broadcast_to(lab, (n,)) if lab.ndim == 0 else lab
    if lab.shape != (n,) or not np.issubdtype(lab.dtype, np.integer) or (lab < 0).any() or (lab >= c).any():
        raise InvalidInput(f"labels must be one label index in [0, {c}) per image.")
    if direction not in ("up", "down"):
        raise InvalidInput(f"direction must be 'up' or 'down', not {direction!r}.")
    onehot = np.zeros((n, c))
    onehot[np.arange(n), lab] = 1.0
    return LoopPlan("bce", weights=onehot, target=onehot if direction == "up" else np.zeros((n, c)))
