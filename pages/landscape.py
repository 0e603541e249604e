"""Label landscape: correlation matrices, attackability and Table II (section IV-A/B, Figs. 4-5, eq. 9)."""

import streamlit as st

from mlvis.app import landscape_page
from mlvis.app.page import page_model

st.title("Label landscape")
st.markdown(
    """
Not every label is equally easy to flip, and labels do not move alone. Section IV-A attacks each label
**alone** on many images and counts how often it flips: its **attackability** (Fig. 4), which Table II
correlates with the label's confidence and with how often it occurs in the training data. Section IV-B
(Algorithm 1) records, while one label is attacked, how much **every other** label's confidence moves:
row *i* of the **flip-up** matrix is the mean change of all confidences when label *i* is pushed up, and
the **flip-down** matrix the same when it is pushed down. Labels that often appear together in the
training scenes tend to move together (observation 3, Fig. 5), which is what CLASS exploits when it
picks labels whose flips help each other. Measuring a matrix costs (forward + backward) · ε/α · C · n
passes (appendix F, equation 9).
"""
)

name, model = page_model()
matrices = landscape_page.measure_section(name, model)  # measured here, or the stored ones
stats = landscape_page.statistics_controls(model)  # the demo world's training scenes (None for other labels)

landscape_page.matrices_view(name, matrices, stats)
landscape_page.attackability_view(list(model.labels), matrices)
landscape_page.table_ii_view(matrices, stats)
landscape_page.cost_view(matrices)
