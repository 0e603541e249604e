"""Label landscape: correlation matrices, attackability and Table II (section IV-A/B, Figs. 4-5, eq. 9)."""

import streamlit as st

from mlvis.app import cache, jobs, landscape_page
from mlvis.app.page import needs_demo_labels, page_model
from mlvis.viz import attackability_figure, matrix_heatmap

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

up, down = cache.artifact(name, "up"), cache.artifact(name, "down")
missing = [d for d, m in (("flip-up", up), ("flip-down", down)) if m is None]
with st.expander(
    f"{name} has no {' and no '.join(missing)} matrix yet: measure both here"
    if missing
    else "Measure the matrices here",
    expanded=bool(missing),
):
    settings = landscape_page.landscape_controls()
    c = len(model.labels)
    steps = landscape_page.landscape_steps(c, settings)
    per_matrix = steps // 2
    st.caption(
        f"Equation 9 for these settings: {c} labels × {settings.images} images × "
        f"{per_matrix // max(c * settings.images, 1)} steps = {per_matrix:,} forward + {per_matrix:,} backward "
        f"passes per matrix, both matrices {steps:,} image-steps."
    )
    outcome = jobs.run_section(
        landscape_page.LAND_SECTION,
        (name, settings),
        lambda progress: landscape_page.compute_landscape(name, settings, progress),
        jobs.estimate(name, steps, "landscape"),
        label="Attacking every label alone",
        model_name=name,
        run_label="Measure",
        auto=False,
        help="Measure the flip-up and flip-down matrices with these settings (one batched job each).",
    )
    if outcome.error:
        st.error(outcome.error)
    if outcome.stopped:
        st.info("Stopped. Press Measure to start again.")
if outcome.result is not None and outcome.current:
    up, down = outcome.result
    st.caption(f"Showing the matrices measured on this page ({up.images} images, ε = {up.eps:g}).")
if up is None and down is None:
    st.info(f"Measure the matrices above (or run `mlvis correlations --model {name}`).")
    st.stop()

labels = list(model.labels)
demo = needs_demo_labels(model)
stats = None
if demo:
    n_scenes = st.select_slider(
        "Training scenes counted for the co-occurrence",
        [1_000, 2_000, 5_000, 10_000, 20_000],
        value=2_000,
        key=landscape_page.LAND_SCENES,
        bind="query-params",
        help="Label frequencies and co-occurrences are counted over this many training scenes of the demo world "
        "(about a second per thousand on this machine; the findings report uses 20,000).",
    )
    stats = landscape_page.scene_statistics(int(n_scenes))
shown = [cm for cm in (up, down) if cm is not None]
st.header("Correlation matrices beside the dataset's co-occurrence")
cols = st.columns(2)
for col, cm in zip(cols, shown):
    col.plotly_chart(
        matrix_heatmap(
            cm.matrix,
            cm.labels,
            f"flip-{cm.direction} (ε = {cm.eps:g}, {cm.images} images)",
            f"correlations_{cm.direction}",
            colorbar="Δ confidence",
        ),
        key=f"land.fig.{cm.direction}",
        config={"displayModeBar": False},
    )
if demo:
    left, right = st.columns(2)
    with left:
        measure = st.radio(
            "Co-occurrence measure",
            list(landscape_page.MEASURES),
            format_func=landscape_page.MEASURES.get,
            horizontal=True,
            key=landscape_page.LAND_MEASURE,
            bind="query-params",
            help="How to count labels that appear together in the training scenes: lift (> 1: more often than "
            "chance), the conditional frequency of the column given the row, or raw counts.",
        )
        st.plotly_chart(
            matrix_heatmap(
                stats[measure],
                stats["labels"],
                f"Training scenes: {landscape_page.MEASURES[measure]} over {stats['n']:,} scenes",
                f"cooccurrence_{measure}",
                diverging=False,
            ),
            key="land.fig.cooc",
            config={"displayModeBar": False},
        )
    with right:
        if up is not None and down is not None:
            st.markdown(
                "**Do the matrices follow the co-occurrence?** Pearson's r over the off-diagonal entries "
                "(observation 3); a positive r means labels that appear together also move together."
            )
            st.dataframe(
                landscape_page.agreement_frame(up, down, stats),
                hide_index=True,
                key="land.agreement",
                column_config={
                    k: st.column_config.NumberColumn(format="%.3g")
                    for k in ("flip-up r", "flip-up p-value", "flip-down r", "flip-down p-value")
                },
            )
else:
    st.caption(f"{name} does not use the demo world's labels, so the dataset's co-occurrence is not shown.")

st.header("Attackability")
nan = [float("nan")] * len(labels)
st.plotly_chart(
    attackability_figure(
        labels,
        up.attackability if up is not None else nan,
        down.attackability if down is not None else nan,
        up.confidence if up is not None else None,
        down.confidence if down is not None else None,
    ),
    key="land.fig.attackability",
    config={"displayModeBar": False},
)
st.caption(
    "Bars: the share of images on which attacking the label alone (at the matrix's ε) flipped it, among the "
    "images where it could flip that way (absent for flip-up, present for flip-down). Diamonds: the label's mean "
    "clean confidence on those images. In the paper's Fig. 4 the two show a similar structure."
)

if up is not None and down is not None and demo:
    st.subheader("Table II: what attackability goes with")
    st.dataframe(
        landscape_page.table_ii_frame(up, down, stats["frequencies"]),
        hide_index=True,
        key="land.table_ii",
        column_config={
            "flip up p-value": st.column_config.NumberColumn(format="%.3g"),
            "flip down p-value": st.column_config.NumberColumn(format="%.3g"),
        },
    )
    st.caption(
        "Pearson's r between each label's attackability and its mean confidence, and between its occurrence "
        "frequency in the training scenes and its confidence; * marks an insignificant r (p > 0.05), as in the paper."
    )

st.subheader("What the matrices cost")
rows = []
for cm in shown:
    cost = cm.cost or {}
    eq9 = cost.get("equation_9", {})
    rows.append(
        {
            "matrix": f"flip-{cm.direction}",
            "images": cm.images,
            "ε": cm.eps,
            "forward (as run)": cost.get("forward"),
            "backward (as run)": cost.get("backward"),
            "equation 9 forward": eq9.get("forward"),
            "equation 9 backward": eq9.get("backward"),
        }
    )
st.dataframe(rows, hide_index=True, key="land.cost")
st.caption(
    "As run: every (label, image) row's clean forward, one forward + backward per step, and the final and 8-bit "
    "evaluation forwards; equation 9 counts only the steps."
)
