"""Home: what mlvis does, the chosen model's card and a gallery of sample test scenes."""

import streamlit as st

import mlvis
from mlvis.app import home_page, state
from mlvis.app.page import page_model

st.title("mlvis: label-flip attacks on a budget")
st.markdown(
    f"""
A multi-label classifier names every object it sees in an image. **mlvis** asks how many of
those answers an attacker can flip (present labels made absent, absent ones made present)
when the perturbation must stay within a small **budget** ε, the most any pixel may change.
It implements the paper *Champagne Taste on a Beer Budget: Better Budget Utilisation in
Multi-label Adversarial Attacks* (E. van Thiel, TU Delft): the MI-FGSM baseline that pushes
every label at once with binary cross-entropy, **SLAM** (Smart Loss-function for Attacks on
Multi-label models), which blends cross-entropy with a linear loss according to how many flips
the budget can buy, and **CLASS** (Classification Landscape Attentive Subset Selection), which
spends the budget on a subset of labels chosen for how easy they are to flip and how they
move together.

Everything runs offline on the **demo world**: procedurally generated 64×64
scenes (kitchens, streets, gardens, offices, beaches and nights) holding coloured and textured
shapes from {len(mlvis.data.LABELS)} labels, and two small models trained on it, one in the role of
ASL (asymmetric loss) and one in the role of Query2Label (label queries). Pick a model and a seed
in the sidebar; the link in the address bar keeps both, so a view can be shared.
"""
)

name, model = page_model()
home_page.model_card_view(name, model)
home_page.gallery_view(name, model, state.seed())
