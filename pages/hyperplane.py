"""Hyperplane simulation: the paper's appendices G and H (Fig. 18) on a 2-pixel image, interactively."""

import streamlit as st

from mlvis.app import hyperplane_page
from mlvis.app.page import in_frame

in_frame()  # a cold link straight to this page still gets the sidebar

st.title("Hyperplane simulation")
st.markdown(
    """
Appendix G of the paper argues that a classifier's decision space is close to linear, so the
boundary where a label's confidence crosses 0.5 is a **hyperplane**, and a maximum-flip attack
becomes a geometric game: cross as many hyperplanes as possible without leaving the L∞ box of
the budget ε. Appendix H plays that game on a **2-pixel image** (its Fig. 18), and so does this
page. Each grey line is one label's decision boundary, logit = w₁·x₁ + w₂·x₂ + b = 0 (↑: the
label starts absent and must be flipped up; ↓: it starts present). The walk starts at the red
dot and takes sign steps of ±α per pixel, as MI-FGSM does. By equation 4 its direction is a sum
of the boundaries' normals, each weighted by the loss's derivative at that label's confidence.
The **linear** loss is *greedy*: its derivative peaks at the threshold, so the nearest boundaries
steer. **BCE** is *patient*: every label not yet flipped pulls about equally, so the walk follows
the sum of their normals. On the Fig. 18 preset the greedy walk flips more in the small box and
the patient one in the large box, which is why SLAM (section V-A) blends the two according to
the budget.
"""
)

controls = hyperplane_page.hyperplane_controls()
run = hyperplane_page.run_or_last(controls)

st.subheader("Flips in each box")
hyperplane_page.flips_view(run.simulation)
verdict = hyperplane_page.verdict_sentence(run.simulation)
if verdict:
    st.markdown(verdict)

hyperplane_page.figures_view(run)

with st.expander("How the walk is computed"):
    st.markdown(hyperplane_page.HOW_THE_WALK_IS_COMPUTED)
