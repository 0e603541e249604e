"""Budget sweep: the paper's evaluation (Tables IV-VI), Fig. 7, Fig. 8 and the q sweep (Table IX)."""

import streamlit as st

from mlvis.app import sweep_page
from mlvis.app.page import page_model

st.title("Budget sweep")
st.markdown(
    """
Section VI evaluates every method at budgets that are fractions of the model's ε_max (5 ... 100 %, from
its profile, section VI-C) and reports the mean ± std of the flips per image (Tables IV-VI). A method's
number is **bold** where it is the best of its column and a paired t-test against the BCE baseline says the
difference is significant (p < 0.05); `*` marks a subset method whose subset was every label on every
image, i.e. the baseline itself. The other tabs repeat the experiments behind the methods: **Fig. 7**
(flipping more labels by targeting fewer: the best number of targets is about 1/0.6 of the flips, the
1.66 of CLASS), **Fig. 8** (the linear loss wins at small ε, BCE at large ε, the reason for SLAM), and
**Table IX** (SLAM's q; 0.5 is best in the paper). Everything here runs as one batched job per table.
With the norm set to **L2**, the table is appendix B's ablation (**Table VIII**): the attacks take L2 steps
inside an L2 ball, and the budgets are fractions of the ε_max of the model's *L2* profile.
"""
)

name, model = page_model()
c = len(model.labels)
norm = sweep_page.norm_control()
eps_max = sweep_page.profile_or_stop(name, norm).eps_max
settings = sweep_page.sweep_controls(eps_max, norm, sweep_page.model_dims(model))

table_tab, targets_tab, bl_tab, q_tab, norms_tab = st.tabs(
    [
        "Table VIII (L2)" if norm == "l2" else "Tables IV-VI",
        "Flips vs targets (Fig. 7)",
        "BCE vs linear (Fig. 8)",
        "q sweep (Table IX)",
        "L∞ vs L2 (Fig. 12)",
    ]
)

with table_tab:
    table = sweep_page.run_table(name, settings, eps_max)
    if table is not None:
        sweep_page.table_view(table, c)

with targets_tab:
    st.markdown(
        "Attack only the *k* labels whose confidences are closest to the threshold, for every *k*: too many "
        "targets spread the budget thin, too few leave flips on the table."
    )
    targets = sweep_page.targets_controls(settings, c)
    if targets is not None and (result := sweep_page.run_targets(name, targets)) is not None:
        sweep_page.targets_view(result, targets)

with bl_tab:
    st.markdown("BCE and the linear loss on the same images over a range of budgets (one job).")
    bl = sweep_page.bce_linear_controls(settings)
    if bl is not None and (result := sweep_page.run_bce_linear(name, bl)) is not None:
        sweep_page.bce_linear_view(result, bl)

with q_tab:
    st.markdown("SLAM with several q (the largest share of BCE in its loss) on the budgets above, against BCE.")
    q_max = eps_max if norm == "linf" else sweep_page.linf_eps_max(name)
    qset = sweep_page.q_sweep_controls(settings)
    if q_max is None:
        st.info(f"Table IX is an L∞ experiment, and {name} has no L∞ profile yet (measure it on the Profiles page).")
    elif qset is not None and (result := sweep_page.run_q_sweep(name, qset, q_max)) is not None:
        sweep_page.q_sweep_view(result, qset)

with norms_tab:
    st.markdown(
        "Appendix B's visual comparison (Fig. 12): the same attack on the same images inside the L∞ cube and inside "
        "the L2 ball of the same volume. The L2 attack may flip a few more labels, but it concentrates its change "
        "on fewer pixels, where it shows."
    )
    ns = sweep_page.norms_controls(settings, sweep_page.model_dims(model))
    if (result := sweep_page.run_norms(name, ns)) is not None:
        sweep_page.norms_view(result, ns)
