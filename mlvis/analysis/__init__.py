"""Analyses of models and attacks (no Streamlit, no plotting)."""

from mlvis.analysis.correlation_matrices import CorrelationMatrix, correlations
from mlvis.analysis.evaluation import (
    EvaluationTable,
    NormComparison,
    TransferResult,
    bce_vs_linear,
    evaluate,
    flips_vs_targets,
    gamma_search,
    linf_vs_l2,
    q_sweep,
    transfer,
)
from mlvis.analysis.landscape import Correlation, cooccurrence_agreement, pearson, table_ii
from mlvis.analysis.observations import AbsentConfidence, absent_confidence_correlation
from mlvis.analysis.profiles import FlipProfile, fit_profile, probe, profile
from mlvis.analysis.related import RelatedComparison, compare_related

__all__ = [
    "AbsentConfidence",
    "Correlation",
    "CorrelationMatrix",
    "EvaluationTable",
    "FlipProfile",
    "NormComparison",
    "RelatedComparison",
    "TransferResult",
    "absent_confidence_correlation",
    "bce_vs_linear",
    "compare_related",
    "cooccurrence_agreement",
    "correlations",
    "evaluate",
    "fit_profile",
    "flips_vs_targets",
    "gamma_search",
    "linf_vs_l2",
    "pearson",
    "probe",
    "profile",
    "q_sweep",
    "table_ii",
    "transfer",
]
