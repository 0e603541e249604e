"""Paper figures: Fig. 9 (CLASS's look-ahead tree), Fig. 13 (SLAM's derivative), Fig. 17 (the confidence
space), Fig. 19 (BCE's limits) and Fig. 21 (adversarial examples at the Table IV budgets), each redrawn from the
library on the sidebar's model."""

import streamlit as st

from mlvis.app import cache, figures_page
from mlvis.app.page import page_model
from mlvis.app.replay_view import confidence_space_section

st.title("Paper figures")
st.markdown(
    """
Five figures of the paper, redrawn live from the same code the attacks run: change the settings and watch what
the paper describes. Fig. 9, Fig. 17 and Fig. 21 attack one image of the sidebar's model; Fig. 13 and Fig. 19 are the
losses themselves and hold for every model.
"""
)

name, model = page_model()
profile = cache.artifact(name, "profile")

st.subheader("The image")
picture = figures_page.image_controls(model)

# ------------------------------------------------------------------------------------------------------- Fig. 9
st.header("Fig. 9 · CLASS's look-ahead tree (Algorithm 3)")
st.markdown(
    """
CLASS attacks a **subset** of labels of length ⌊1.66·E(ε)⌋. It starts from the easiest label (the one whose
confidence is closest to its target, the ease **P**) and adds one label per iteration. Each iteration grows a
tree from the set so far: every node gets **b** children, the labels with the best score
**S = γ·Z + (1 − γ)·P** (Z: how strongly the label correlates with the set, in the image's instance
correlation matrix), for **d** levels. The leaf whose set has the largest objective
**O = γ·ΣICM + (1 − γ)·ΣP** wins, and the first label on its path joins the set (the paper's example adds
label 30 to [0]). **What to look for:** with γ = 0 the tree follows the confidences alone, so the best path is
simply the next-easiest labels; raise γ and correlated labels overtake easier ones. The subset shown is
exactly the one the CLASS attack attacks at this budget.
"""
)
if picture is not None:
    tree_settings = figures_page.tree_controls(model, profile)
    if tree_settings.length == 0 and profile is None:
        st.info(f"{name} has no flip profile to size the subset: give a subset length.")
    else:
        correlations = figures_page.correlations_or_measure(name, model)
        if correlations is not None:
            try:
                tree = figures_page.compute_tree(model, picture, tree_settings, profile, correlations)
            except ValueError as e:
                st.error(str(e))
            else:
                figures_page.tree_view(tree)

# ------------------------------------------------------------------------------------------------------ Fig. 13
st.header("Fig. 13 · SLAM's derivative for different p·q (appendix D)")
st.markdown(
    """
SLAM mixes the two losses, **L = p·q·BCE + (1 − p·q)·linear** (equation 6); p = E(ε)/C grows with the budget.
How strongly the attack pulls on a label is the derivative of the loss with respect to its logit. For the
linear loss it peaks at the threshold and vanishes far from it: labels near their hyperplane come first (greedy,
right for small budgets). BCE's keeps rising with the distance: far labels get the most (right for large
budgets). **What to look for:** for t = 0 the peak sits at confidence 1/(2(1 − p·q)) while p·q < 0.5 and
reaches the edge at p·q = 0.5, after which distant labels are no longer de-prioritised: that is why q = 0.5
caps BCE's share (appendix D, Table IX).
"""
)
figures_page.slam_view(figures_page.slam_controls(model, profile))

# ------------------------------------------------------------------------------------------------------ Fig. 17
st.header("Fig. 17 · The confidence space of three labels (appendix G)")
st.markdown(
    """
Every label's confidence is one axis of a space with one dimension per label; the planes at the threshold 0.5
cut it into regions, one per predicted label set. An attack moves the image's point through this space, one
MI-FGSM step at a time, and a label flips when the path crosses its plane. Three labels can be drawn: the
attack's recorded steps are the path, the clean prediction is where it starts. **What to look for:** which method's path
reaches the planes at this budget, and in which order it crosses them; the default labels are those the
methods flipped, so the paths that flip them end on the far side of their planes.
"""
)
if picture is not None:
    space_settings = figures_page.space_controls(name)
    if space_settings is not None:
        outcome = figures_page.space_section(name, picture, space_settings)
        if outcome.result is not None:
            confidence_space_section(outcome.result, key="figs.space")

# ------------------------------------------------------------------------------------------------------ Fig. 19
st.header("Fig. 19 · BCE and its limits (appendix K)")
st.markdown(
    """
On the logit x (the threshold 0.5 is x = 0), BCE is ln(1 + e^−x) for t = 1 and ln(1 + e^x) for t = 0. Each
tends to 0 on its target's side and to a straight line, |x|, on the other (equations 17 and 18, dashed).
**What to look for:** the derivative goes from ±1 to 0 as the loss falls, so BCE pulls hardest on the labels
furthest from their target: the reason plain MI-FGSM wastes a small budget on hopeless labels.
"""
)
figures_page.bce_view(figures_page.bce_controls())

# ------------------------------------------------------------------------------------------------------ Fig. 21
st.header("Fig. 21 · Adversarial examples at the Table IV budgets (appendix M)")
st.markdown(
    """
The paper shows SLAM's adversarial examples of one image at Table IV's budgets: even the largest is hard to
see. Here every method of Tables IV-VI attacks the chosen image at the same budgets, section VI-C's grid of
5 ... 100 % of the model's ε_max (the paper's Q2L MS-COCO columns 0.006 ... 0.121 are that grid for its
ε_max). Each tile is the 8-bit image (what a saved PNG holds) with its flips and the labels that flipped
(+ up, − down); the frame marks the most flips of each row, and * a subset method that targeted every label
(the paper's mark: the cell equals BCE's). **What to look for:** at the small budgets the targeted methods
flip labels where BCE flips none; at the large ones the methods meet; switch to *perturbation* to compare how
much each one changed, with one amplification for all.
"""
)
if picture is not None:
    gallery_settings = figures_page.gallery_controls(name, profile)
    if gallery_settings is not None:
        outcome = figures_page.gallery_section(name, picture, gallery_settings)
        if outcome.result is not None:
            shown = picture.name if outcome.current else "the last run's image"
            figures_page.gallery_view(outcome.result, gallery_settings, shown)
