"""Analyses of models and attacks (no Streamlit, no plotting)."""

from mlvis.analysis.observations import AbsentConfidence, absent_confidence_correlation

__all__ = ["AbsentConfidence", "absent_confidence_correlation"]
