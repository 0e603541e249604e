"""Confidence histograms: where each attack leaves the labels' confidences (appendix A, Figs. 10 and 11)."""

import streamlit as st

from mlvis import recipe as rc
from mlvis.app import histograms_page, jobs, state
from mlvis.app.page import page_model
from mlvis.viz import confidence_histograms, histogram_counts

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

with st.container(border=True):
    methods = st.pills(
        "Methods",
        rc.lab_methods(),
        selection_mode="multi",
        default=list(histograms_page.HIST_DEFAULT_METHODS),
        format_func=rc.method_title,
        key=histograms_page.HIST_METHODS,
        bind="query-params",
        help="Each method attacks the same scenes (one batched job); Fig. 10 is BCE, Fig. 11 a subset and linear.",
    )
    c1, c2, c3, c4 = st.columns([1, 1, 2, 1])
    eps = c1.number_input(
        "Budget ε",
        min_value=0.0005,
        max_value=0.5,
        value=0.01,
        step=0.001,
        format="%.4f",
        key=histograms_page.HIST_EPS,
        bind="query-params",
        help="The L∞ budget (the paper's Fig. 11 uses 0.004 on ASL MS-COCO; the demo models are more robust).",
    )
    images = c2.number_input(
        "Scenes",
        min_value=1,
        max_value=100,
        value=6,
        step=1,
        key=histograms_page.HIST_N,
        bind="query-params",
        help="Demo test scenes of the sidebar's seed block (the paper uses 100).",
    )
    direction = c3.radio(
        "Labels counted",
        list(histograms_page.DIRECTIONS),
        format_func=histograms_page.DIRECTIONS.get,
        horizontal=True,
        key=histograms_page.HIST_DIRECTION,
        bind="query-params",
        help="Flip up: the labels absent on the clean scene (the paper's figures); flip down: the present ones.",
    )
    log_y = c4.toggle(
        "Log counts",
        value=False,
        key="hist.log",
        bind="query-params",
        help="A logarithmic count axis shows the few labels near the threshold beside the many near 0.",
    )

if not methods:
    st.error("Choose at least one attack method.")
    st.stop()
settings = histograms_page.HistogramSettings(tuple(methods), float(eps), int(images), state.seed())
outcome = jobs.run_section(
    histograms_page.HIST_SECTION,
    (name, settings),
    lambda progress: histograms_page.compute_histograms(name, settings, progress),
    histograms_page.histogram_cost(name, settings),
    label="Attacking",
    model_name=name,
    help="Attack the scenes with every chosen method (one job).",
)
jobs.show_status(outcome, "The histograms below")
results = outcome.result
if results is None:
    st.stop()

first = results[0]
afters = {r.name: r.adv_probs[0] for r in results}
st.plotly_chart(
    confidence_histograms(first.clean_probs, afters, first.clean_pred, first.threshold, direction, log_y=log_y),
    key="hist.fig",
    config={"displayModeBar": False},
)
rows = []
for r in results:
    h = histogram_counts(r.adv_probs[0], r.clean_pred, r.threshold, direction)
    rows.append(
        {
            "method": r.name,
            "labels counted": h["total"],
            "past the threshold": h["flipped"],
            "in the threshold band": h["near"],
            "mean flips per scene (all labels)": float(r.flips[0].mean()),
        }
    )
st.dataframe(rows, hide_index=True, key="hist.table")
st.caption(
    f"{first.num_images} scenes × {len(first.labels)} labels, ε = {first.eps[0]:.4g}. 'Past the threshold' counts the "
    "chosen labels that ended on the other side of the threshold; the last column counts every flip (up and down)."
)
