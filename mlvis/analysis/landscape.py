"""The label landscape's statistics (section IV, Table II, observation 3): Pearson correlations between a
model's correlation matrices and attackabilities (:mod:`mlvis.analysis.correlation_matrices`, Algorithm 1)
and the dataset's label frequencies and co-occurrences.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy import stats

from mlvis.analysis.correlation_matrices import CorrelationMatrix
from mlvis.errors import InvalidInput


@dataclasses.dataclass(frozen=True)
class Correlation:
    r: float
    p_value: float
    n: int

    @property
    def significant(self) -> bool:
        return self.p_value <= 0.05


def pearson(a, b) -> Correlation:
    """Pearson's r with its two-sided p-value over the pairs where both values are finite."""
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 3 or np.std(a[ok]) == 0 or np.std(b[ok]) == 0:
        return Correlation(float("nan"), float("nan"), int(ok.sum()))
    r, p = stats.pearsonr(a[ok], b[ok])
    return Correlation(float(r), float(p), int(ok.sum()))


def table_ii(up: CorrelationMatrix, down: CorrelationMatrix, frequencies) -> dict[str, dict[str, Correlation]]:
    """Table II's analogue: per direction, attackability vs confidence and frequency vs confidence."""
    out = {}
    for name, cm in (("flip up", up), ("flip down", down)):
        out[name] = {
            "attackability vs confidence": pearson(cm.attackability, cm.confidence),
            "occurrence frequency vs confidence": pearson(frequencies, cm.confidence),
        }
    return out


def cooccurrence_agreement(cm: CorrelationMatrix, cooccurrence) -> Correlation:
    """Observation 3 / F6: Pearson's r between the off-diagonal entries of the correlation matrix and
    the dataset's co-occurrence matrix (any measure: counts, conditional frequency, lift)."""
    c = cm.num_labels
    off = ~np.eye(c, dtype=bool)
    co = np.asarray(cooccurrence, np.float64)
    if co.shape != (c, c):
        raise InvalidInput(f"the co-occurrence matrix must be {c} x {c}, not {co.shape}.")
    return pearson(cm.matrix[off], co[off])
