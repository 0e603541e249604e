"""Profiles: a model's expected flips E(eps) (section V-C, appendix L, Fig. 20) and what measuring it costs."""

import streamlit as st

import mlvis
from mlvis.app import cache, jobs, studies
from mlvis.app.page import page_model
from mlvis.viz import profile_figure, profiles_figure

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
passes per image and probe.
"""
)

name, model = page_model()

shipped = cache.artifact(name, "profile")
with st.expander(
    "Measure the profile here" if shipped is not None else f"{name} has no profile yet: measure it here",
    expanded=shipped is None,
):
    st.caption(
        "The probes run on the first demo test scenes of the sidebar's seed block. The result is cached for "
        "these weights, so the other pages (SLAM, CLASS, the sweeps) use it too when no profile is shipped."
    )
    settings = studies.profile_controls()
    outcome = jobs.run_section(
        studies.PROF_SECTION,
        (name, settings),
        lambda progress: studies.compute_profile(name, settings, progress),
        studies.profile_cost(name, settings),
        label="Probing",
        run_label="Measure",
        auto=False,
        help="Run the two probe attacks (the estimate is an upper bound: they stop at convergence).",
    )
    if outcome.error:
        st.error(outcome.error)
    if outcome.stopped:
        st.info("Stopped. Press Measure to start again.")

computed = outcome.result
if computed is not None and shipped is not None:
    which = st.radio(
        "Profile shown",
        ["computed", "shipped"],
        format_func={"computed": "measured on this page", "shipped": "shipped with the model"}.get,
        horizontal=True,
        key="prof.which",
        help="The profile you measured above, or the one that ships with the model (used by the other pages).",
    )
    profile = computed if which == "computed" else shipped
else:
    profile = computed if computed is not None else shipped
if profile is None:
    st.info(f"{name} has no shipped profile. Measure one above (or run `mlvis profile --model {name}`).")
    st.stop()

s = profile.settings
st.header(f"{profile.model}: E(ε)")
m1, m2, m3, m4, m5 = st.columns(5)
m1.metric("ε_max", f"{profile.eps_max:.4f}", help="Where the flips converge (the end of the probe).")
m2.metric(
    "E(ε_max)",
    f"{profile.expected_flips(profile.eps_max):.2f} / {profile.labels}",
    help="The fitted flips at ε_max: most labels the model lets an attacker flip, on average.",
)
m3.metric("Probe images", f"{s.get('images', 'n/a')}", help="Scenes the probes ran on.")
m4.metric("Interval i", f"{s.get('interval', 'n/a')}", help="Steps between two counts of the flips.")
m5.metric(
    "Converged",
    "yes" if s.get("converged") else "no",
    help="No means the probe stopped at its largest ε before the flips converged; raise it.",
)
st.plotly_chart(profile_figure(profile), key="prof.fig.profile", config={"displayModeBar": False})
st.caption(
    "Blue and orange: the mean flips of the BCE and linear probes; red: E's measured points (the larger of the "
    "two); green: the fitted polynomial, held at E(ε_max) beyond ε_max; diamonds: the evaluation grid. "
    + studies.probe_lead_sentence(profile)
)

left, right = st.columns([3, 2])
with left:
    st.subheader("The evaluation grid")
    st.dataframe(
        studies.grid_frame(profile),
        hide_index=True,
        key="prof.grid",
        column_config={
            "ε": st.column_config.NumberColumn(format="%.5f"),
            "E(ε)": st.column_config.NumberColumn(format="%.2f", help="Expected flips at this budget."),
            "p = E/C": st.column_config.NumberColumn(format="%.3f", help="SLAM's p (equation 7)."),
        },
    )
    eps = st.number_input(
        "Look up ε",
        min_value=0.0,
        max_value=1.0,
        value=0.01,
        step=0.001,
        format="%.4f",
        key=studies.PROF_EPS,
        bind="query-params",
        help="Any budget: E(ε), SLAM's p and CLASS's subset length from this profile.",
    )
    e = float(profile.expected_flips(eps))
    st.markdown(
        f"At ε = {eps:.4g}: **E = {e:.2f}** flips, **p = {float(profile.flip_ratio(eps)):.3f}**, CLASS targets "
        f"**{studies.subset_length(e, profile.labels)}** label{'s' * (studies.subset_length(e, profile.labels) != 1)}."
    )
with right:
    st.subheader("What it costs (equation 19)")
    frame, note = studies.cost_frame(profile, jobs.step_seconds(name))
    st.dataframe(frame, hide_index=True, key="prof.cost")
    st.caption(
        "Measured: the forward and backward passes each probe image went through, both probes together (the "
        "flips are read from the forwards the next step needs anyway). Equation 19 counts ε_max/α · (1 + 1/i) "
        "forwards and ε_max/α backwards per probe." + (f" {note}" if note else "")
    )

others = [m for m in mlvis.list_models() if m != name]
compare = st.checkbox(
    "Compare with the other models' profiles",
    value=False,
    key=studies.PROF_COMPARE,
    bind="query-params",
    help="Overlay every model's p = E(ε)/C that has a profile (shipped or cached).",
)
if compare:
    shown = [profile] + [p for p in (cache.artifact(m, "profile") for m in others) if p is not None]
    if len(shown) == 1:
        st.info("No other model has a profile yet.")
    st.plotly_chart(profiles_figure(shown), key="prof.fig.compare", config={"displayModeBar": False})
