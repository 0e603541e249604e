"""Confidence histograms: where each attack leaves the labels' confidences (appendix A, Figs. 10 and 11)."""

import streamlit as st

from mlvis.app import histograms_page
from mlvis.app.page import page_model

st.title("Confidence histograms")
st.markdown(
    """
Appendix A looks at the attack from the labels' side. Before an attack almost every label that is absent
sits near confidence 0 (Fig. 10a). MI-FGSM with BCE pushes **all** of them up at once, and with a small
budget many end in the bins just short of the threshold, 0.3-0.5: budget spent, nothing flipped (Fig. 10b).
Attacking a **subset** of labels or using the **linear** loss leaves more labels where they were and carries
more of the chosen ones past the threshold (Fig. 11). The histograms below count the confidences of the
chosen labels over a batch of scenes, before the attack and after each method, with the flip region shaded
green and the threshold band (the 0.2 just short of the threshold) orange.
"""
)

name, model = page_model()
settings, view = histograms_page.histogram_controls()  # what the attack depends on, and how it is drawn
results = histograms_page.run_histograms(name, settings)
if results is None:
    st.stop()
histograms_page.histograms_view(results, view)
