"""Semantic detectability: would a co-occurrence check flag an adversarial prediction as incoherent?

Related work (Melacci et al., "Domain knowledge alleviates adversarial attacks in multi-label classifiers")
detects attacks on multi-label models by checking the predicted label *set* against domain knowledge: rules
such as "a toothbrush implies a sink" or "a giraffe never meets a surfboard". A maximum-flip attack that
flips labels wherever it is cheapest may produce sets no real image has; an attack that follows the label
correlations (CLASS) may not. This module learns such rules from the training co-occurrence statistics and
scores predicted sets against them.

Rules (learned from counts over ``n`` training images, each needing support before it is trusted):

- **exclusion** ``{i, j}``: the two labels never appear together although independence predicts at least
  ``exclusion_expected`` images holding both (``n * P(i) * P(j)``);
- **implication** ``i -> j``: at least ``min_support`` images hold ``i`` and ``P(j | i) >= implication``.

A predicted set *violates* an exclusion when it holds both labels and an implication when it holds ``i``
but not ``j``. A prediction is **flagged** when it violates any rule. Beside the rules, the **coherence**
of a set is the mean pointwise log-lift of its pairs, ``log((n_ij + a) n / ((n_i + a)(n_j + a)))`` with
add-``a`` smoothing (``a = 0.5``): positive for labels that meet more often than by chance, strongly
negative for pairs that never meet; 0 for sets of fewer than two labels.

A flipped label is **implausible** when it takes part in a violation of the adversarial set that the clean
set did not have (flipped up into an exclusion or an unmet implication, or flipped down while a present
label implies it).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from mlvis.errors import InvalidInput

SMOOTHING = 0.5


@dataclasses.dataclass(frozen=True)
class CooccurrenceRules:
    """Exclusion and implication rules learned from label counts.

    Attributes:
        labels: label names ``(C,)``; ``n``: images counted.
        counts: ``(C,)`` images holding each label; ``cooccurrence``: ``(C, C)`` images holding both.
        min_support, implication, exclusion_expected: the rule thresholds (see the module docstring).
    """

    labels: tuple[str, ...]
    n: int
    counts: np.ndarray
    cooccurrence: np.ndarray
    min_support: int = 20
    implication: float = 0.95
    exclusion_expected: float = 5.0

    def __post_init__(self):
        c = len(self.labels)
        counts = np.asarray(self.counts, np.float64)
        co = np.asarray(self.cooccurrence, np.float64)
        if c < 2 or counts.shape != (c,) or co.shape != (c, c):
            raise InvalidInput(f"Co-occurrence statistics need C >= 2 labels, counts (C,) and a (C, C) matrix; got "
                             f"{c} labels, {counts.shape} and {co.shape}.")  # fmt: skip
        if not (np.isfinite(co).all() and np.isfinite(counts).all()) or (co < 0).any() or (counts < 0).any():
            raise InvalidInput("Co-occurrence counts must be finite and non-negative.")
        if not np.allclose(co, co.T) or (co > np.minimum.outer(counts, counts) + 1e-9).any():
            raise InvalidInput("A co-occurrence matrix must be symmetric and no pair can outnumber either label.")
        if isinstance(self.n, bool) or int(self.n) != self.n or self.n < max(1, counts.max()):
            raise InvalidInput(f"n must be a whole number of images at least as large as every count, not {self.n!r}.")
        if not 0.5 < float(self.implication) <= 1.0:
            raise InvalidInput(f"The implication threshold must lie in (0.5, 1], not {self.implication!r}.")
        if not (np.isfinite(self.exclusion_expected) and self.exclusion_expected > 0 and self.min_support >= 1):
            raise InvalidInput("exclusion_expected must be positive and min_support at least 1.")
        object.__setattr__(self, "counts", counts)
        object.__setattr__(self, "cooccurrence", co)

    @classmethod
    def from_labels(cls, y: np.ndarray, labels: Sequence[str], **thresholds) -> CooccurrenceRules:
        """Rules from a multi-hot ground-truth matrix ``(n, C)`` (a dataset's annotations)."""
        y = np.asarray(y)
        if y.ndim != 2 or y.shape[1] != len(labels) or y.shape[0] < 1:
            raise InvalidInput(f"Labels must be a multi-hot (n, {len(labels)}) matrix, not shape {y.shape}.")
        if not np.isin(y, (0, 1)).all():
            raise InvalidInput("Labels must be multi-hot (0 or 1).")
        yi = y.astype(np.int64)
        co = yi.T @ yi
        return cls(tuple(labels), int(y.shape[0]), np.diag(co).copy(), co, **thresholds)

    @classmethod
    def from_statistics(cls, stats, **thresholds) -> CooccurrenceRules:
        """Rules from exact statistics (``labels``, ``n``, ``counts``, ``cooccurrence``; e.g. the demo world's)."""
        return cls(tuple(stats.labels), int(stats.n), stats.counts, stats.cooccurrence, **thresholds)

    @property
    def num_labels(self) -> int:
        return len(self.labels)

    @property
    def exclusions(self) -> np.ndarray:
        """``(C, C)`` bool, symmetric: the pairs that never meet although they should by chance."""
        expected = np.outer(self.counts, self.counts) / self.n
        ex = (self.cooccurrence == 0) & (expected >= self.exclusion_expected)
        np.fill_diagonal(ex, False)
        return ex

    @property
    def implications(self) -> np.ndarray:
        """``(C, C)`` bool: ``[i, j]`` is the rule ``i -> j``."""
        cond = self.cooccurrence / np.maximum(self.counts[:, None], 1)
        imp = (self.counts[:, None] >= self.min_support) & (cond >= self.implication)
        np.fill_diagonal(imp, False)
        return imp

    @property
    def log_lift(self) -> np.ndarray:
        """Smoothed pointwise log-lift of every pair (diagonal 0)."""
        a = SMOOTHING
        ll = np.log((self.cooccurrence + a) * self.n / np.outer(self.counts + a, self.counts + a))
        np.fill_diagonal(ll, 0.0)
        return ll

    def check(self, pred: np.ndarray) -> SetCheck:
        """Score predicted sets ``(N, C)`` (bool or 0/1) against the rules."""
        p = _as_sets(pred, self.num_labels)
        ex, imp, ll = self.exclusions, self.implications, self.log_lift
        pf = p.astype(np.float64)
        exclusion = p[:, :, None] & p[:, None, :] & ex[None]  # (N, C, C), both present and excluded
        implication = p[:, :, None] & ~p[:, None, :] & imp[None]  # i present, j absent, i -> j
        pairs = np.einsum("ni,nj->n", pf, pf) - pf.sum(1)  # ordered pairs i != j
        score = np.divide(np.einsum("ni,ij,nj->n", pf, ll, pf), pairs, out=np.zeros(len(p)), where=pairs > 0)
        return SetCheck(self.labels, p, np.triu(exclusion), implication, score)

    def compare(self, clean_pred: np.ndarray, adv_pred: np.ndarray) -> Detectability:
        """Clean against adversarial predictions ``(N, C)``: which images a co-occurrence check would flag."""
        clean, adv = self.check(clean_pred), self.check(adv_pred)
        if clean.sets.shape != adv.sets.shape:
            shapes = f"{clean.sets.shape} vs {adv.sets.shape}"
            raise InvalidInput(f"Clean and adversarial predictions differ in shape: {shapes}.")
        return Detectability(clean, adv)


@dataclasses.dataclass(frozen=True)
class SetCheck:
    """Predicted sets checked against the rules.

    Attributes:
        sets: ``(N, C)`` bool; ``exclusion``: ``(N, C, C)`` violated exclusions (upper triangle);
        implication: ``(N, C, C)`` violated implications ``i -> j``; ``coherence``: ``(N,)`` mean log-lift.
    """

    labels: tuple[str, ...]
    sets: np.ndarray
    exclusion: np.ndarray
    implication: np.ndarray
    coherence: np.ndarray

    @property
    def violations(self) -> np.ndarray:
        """``(N,)`` number of violated rules per set."""
        return self.exclusion.sum((1, 2)) + self.implication.sum((1, 2))

    @property
    def flagged(self) -> np.ndarray:
        return self.violations > 0

    def involved(self) -> np.ndarray:
        """``(N, C)`` bool: labels that take part in a violation."""
        v = self.exclusion | self.implication
        return v.any(2) | v.any(1)

    def describe(self, i: int) -> list[str]:
        """One readable sentence per violated rule of set ``i``."""
        out = []
        for a, b in zip(*np.nonzero(self.exclusion[i]), strict=True):
            out.append(f"“{self.labels[a]}” and “{self.labels[b]}” never appear together in the training data.")
        for a, b in zip(*np.nonzero(self.implication[i]), strict=True):
            out.append(f"“{self.labels[a]}” comes with “{self.labels[b]}” in the training data, which is missing.")
        return out


@dataclasses.dataclass(frozen=True)
class Detectability:
    """A co-occurrence check of clean and adversarial predictions, per image and per flipped label."""

    clean: SetCheck
    adv: SetCheck

    @property
    def flipped(self) -> np.ndarray:
        """``(N, C)`` bool: the labels the attack flipped (equation 3)."""
        return self.clean.sets != self.adv.sets

    @property
    def newly_flagged(self) -> np.ndarray:
        """``(N,)``: images whose adversarial prediction breaks a rule the clean one kept."""
        return self.adv.flagged & (self._new_violations().sum((1, 2)) > 0)

    @property
    def implausible(self) -> np.ndarray:
        """``(N, C)`` bool: flipped labels that take part in a violation the clean set did not have."""
        v = self._new_violations()
        return self.flipped & (v.any(2) | v.any(1))

    def _new_violations(self) -> np.ndarray:
        return (self.adv.exclusion & ~self.clean.exclusion) | (self.adv.implication & ~self.clean.implication)

    def summary(self) -> dict:
        """Totals for a table row: images newly flagged, flips and implausible flips, coherence change."""
        flips = int(self.flipped.sum())
        bad = int(self.implausible.sum())
        return {
            "images": int(len(self.adv.sets)),
            "newly flagged": int(self.newly_flagged.sum()),
            "flips": flips,
            "implausible flips": bad,
            "implausible share": bad / flips if flips else 0.0,
            "coherence clean": float(self.clean.coherence.mean()),
            "coherence adversarial": float(self.adv.coherence.mean()),
        }


def _as_sets(pred, c: int) -> np.ndarray:
    p = np.asarray(pred)
    if p.ndim == 1:
        p = p[None]
    if p.ndim != 2 or p.shape[1] != c:
        raise InvalidInput(f"Predictions must be (N, {c}) label sets, not shape {np.shape(pred)}.")
    if p.dtype != bool:
        if not np.isin(p, (0, 1)).all():
            raise InvalidInput("Predictions must be bool or 0/1 label sets (threshold the confidences first).")
        p = p.astype(bool)
    return p
