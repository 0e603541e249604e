"""Profiles: a model's expected flips E(eps) (section V-C, appendix L, Fig. 20) and what measuring it costs."""

import streamlit as st

from mlvis.app import cache, profiles_page
from mlvis.app.page import page_model

st.title("Profiles")
st.markdown(
    """
SLAM and CLASS need to know how many labels a budget can buy. Section V-C measures it once per model with
two **probe attacks** that run without a budget: MI-FGSM with BCE and with the linear loss, counting the
mean flips every *i* steps until the count stops rising (a 10-step gain below 1 % of the first one, three
times in a row here, since with few images one flat interval is noise). The larger of the two curves at
each budget is the **profile** E(ε); a least-squares polynomial (degree 4) through it gives E at any ε,
and **ε_max** is where the flips converge. SLAM's p = E(ε)/C (equation 7) and CLASS's subset length
⌊1.66 E(ε)⌋ come from it, and the paper's evaluation grid is 5 ... 100 % of ε_max. Appendix L draws the
profiles (Fig. 20) and counts what they cost (equation 19): ε_max/α · ((1 + 1/i) forward + backward)
passes per image and probe. Under **L2** (appendix B) the probes are the L2 attack (normalised gradient
steps of the length of one L∞ sign step, no sign) and ε is an L2 radius: L2 attacks read that profile.
Either can be measured on your own images (a real model's photos), and is then cached for the weights.
"""
)

name, model = page_model()

norm = profiles_page.norm_control(model)
shipped = cache.artifact(name, cache.PROFILE_KINDS[norm])
computed = profiles_page.measure_section(name, shipped, model, norm).result
if computed is not None and computed.norm != norm:  # the last profile measured here was of the other norm
    computed = None
profile = profiles_page.profile_shown(name, computed, shipped, norm)

profiles_page.summary_view(profile)
left, right = st.columns([3, 2])
with left:
    profiles_page.grid_view(profile)
with right:
    profiles_page.cost_view(name, profile)

profiles_page.compare_view(name, profile)
