"""Budget sweep: the paper's evaluation (Tables IV-VI), Fig. 7, Fig. 8 and the q sweep (Table IX)."""

import streamlit as st

from mlvis import recipe as rc
from mlvis.app import cache, jobs, state, studies
from mlvis.app.page import page_model
from mlvis.viz import bce_linear_figure, q_totals_figure, sweep_flips_figure, targets_figure

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
"""
)

name, model = page_model()
c = len(model.labels)
profile = cache.artifact(name, "profile")
if profile is None:
    st.error(
        f"{name} has no flip profile, so there is no ε_max to take fractions of. Measure one on the Profiles page "
        f"(or with `mlvis profile --model {name}`)."
    )
    st.stop()

with st.container(border=True):
    c1, c2, c3 = st.columns([1, 2, 2])
    images = c1.number_input(
        "Images",
        min_value=2,
        max_value=100,
        value=8,
        step=1,
        key=studies.SWEEP_N,
        bind="query-params",
        help="Demo test scenes of the sidebar's seed block (the paper uses 100; the cost grows with it). "
        "At least two, for the t-tests.",
    )
    fractions_text = c2.text_input(
        "Budgets: fractions of ε_max",
        value="0.05, 0.1, 0.2",
        key=studies.SWEEP_FRACTIONS,
        bind="query-params",
        help=f"Comma-separated fractions of ε_max = {profile.eps_max:.4g}; the paper's grid is "
        "0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1 (expensive here).",
    )
    exposed = studies.sweep_options()
    values = studies.option_sliders("sweep", exposed, [c3] * len(exposed))
    methods = st.pills(
        "Methods (BCE, the baseline, always runs)",
        rc.lab_methods(),
        selection_mode="multi",
        default=list(studies.SWEEP_DEFAULT_METHODS),
        format_func=rc.method_title,
        key=studies.SWEEP_METHODS,
        bind="query-params",
        help="Every method runs on the same images at every budget, in one batched job.",
    )
try:
    fractions = studies.parse_numbers(fractions_text, "the fractions", 0.0, 1.0)
except ValueError as exc:
    st.error(str(exc))
    st.stop()

table_tab, targets_tab, bl_tab, q_tab = st.tabs(
    ["Tables IV-VI", "Flips vs targets (Fig. 7)", "BCE vs linear (Fig. 8)", "q sweep (Table IX)"]
)

with table_tab:
    settings = studies.SweepSettings(tuple(methods or ()), tuple(values.items()), fractions, int(images), state.seed())
    outcome = jobs.run_section(
        "sweep.table",
        (name, settings),
        lambda progress: studies.compute_sweep(name, settings, progress),
        studies.sweep_cost(name, settings, profile.eps_max),
        label="Evaluating",
        model_name=name,
        help="Run every method at every budget on the images (one job).",
    )
    jobs.show_status(outcome, "The table and figure below")
    table = outcome.result
    if table is not None:
        eight_bit = st.toggle(
            "After 8-bit rounding",
            value=False,
            key=studies.SWEEP_EIGHT,
            bind="query-params",
            help="Count the flips of the images an 8-bit file would hold (no significance marks there).",
        )
        st.markdown(studies.evaluation_markdown(table, eight_bit))
        st.caption(
            f"{table.model}, {table.config.get('images')} images, mean ± std of the flips of {c} labels; bold: the "
            "column's best, significantly different from BCE (paired t-test, p < 0.05); *: the same as BCE."
        )
        flips = table.flips_8bit if eight_bit else table.flips
        st.plotly_chart(
            sweep_flips_figure(table.eps, flips.mean(-1), flips.std(-1), table.methods, c),
            key="sweep.fig.table",
            config={"displayModeBar": False},
        )
        d1, d2 = st.columns(2)
        d1.download_button(
            "Table (CSV)",
            table.to_frame().to_csv(index=False),
            file_name=f"{table.model}_evaluation.csv",
            mime="text/csv",
            key="sweep.dl.csv",
            on_click="ignore",
            help="Method x budget: mean, std, 8-bit mean, p-value against BCE, best, same-as-baseline.",
        )
        d2.download_button(
            "Table (JSON)",
            table.to_json(),
            file_name=f"{table.model}_evaluation.json",
            mime="application/json",
            key="sweep.dl.json",
            on_click="ignore",
            help="Everything above plus every image's flips.",
        )

with targets_tab:
    st.markdown(
        "Attack only the *k* labels whose confidences are closest to the threshold, for every *k*: too many "
        "targets spread the budget thin, too few leave flips on the table."
    )
    eps_text = st.text_input(
        "Budgets ε",
        value="0.01, 0.02",
        key=studies.SWEEP_TARGET_EPS,
        bind="query-params",
        help="Comma-separated L∞ budgets, one curve each.",
    )
    try:
        t_eps = studies.parse_numbers(eps_text, "the budgets", 0.0, 0.5, max_count=6)
    except ValueError as exc:
        st.error(str(exc))
    else:
        ts = studies.TargetsSettings(t_eps, int(images), state.seed(), c)
        out = jobs.run_section(
            "sweep.targets",
            (name, ts),
            lambda progress: studies.compute_targets(name, ts, progress),
            jobs.estimate(name, studies.targets_steps(ts), "sweep.targets"),
            label="Attacking with 1 ... C targets",
            model_name=name,
        )
        jobs.show_status(out, "The figure below")
        if out.result is not None:
            targets, mean, std = out.result
            fig = targets_figure(targets, mean, std, ts.eps)
            st.plotly_chart(fig, key="sweep.fig.targets", config={"displayModeBar": False})
            st.markdown(
                "  \n".join(
                    f"ε = {b['eps']:.4g}: best with **{b['targets']}** targets, {b['flips']:.2f} flips "
                    f"(flips / targets = {b['ratio']:.2f}; the paper finds about 0.6)"
                    for b in studies.best_targets(targets, mean, ts.eps)
                )
            )

with bl_tab:
    st.markdown("BCE and the linear loss on the same images over a range of budgets (one job).")
    bl_text = st.text_input(
        "Budgets ε",
        value="0.005, 0.01, 0.02, 0.04",
        key=studies.SWEEP_BL_EPS,
        bind="query-params",
        help="Comma-separated L∞ budgets.",
    )
    try:
        bl_eps = studies.parse_numbers(bl_text, "the budgets", 0.0, 0.5)
    except ValueError as exc:
        st.error(str(exc))
    else:
        bs = studies.BceLinearSettings(bl_eps, int(images), state.seed())
        out = jobs.run_section(
            "sweep.bl",
            (name, bs),
            lambda progress: studies.compute_bce_linear(name, bs, progress),
            jobs.estimate(name, studies.bce_linear_steps(bs), "sweep.bce_linear"),
            label="BCE and linear",
            model_name=name,
        )
        jobs.show_status(out, "The figure below")
        if out.result is not None:
            st.plotly_chart(bce_linear_figure(bs.eps, out.result), key="sweep.fig.bl", config={"displayModeBar": False})
            b, lin = out.result["bce"][0], out.result["linear"][0]
            lead = [
                f"{e:.4g}: {'linear' if lv > bv else ('BCE' if bv > lv else 'tie')}"
                for e, bv, lv in zip(bs.eps, b, lin)
            ]
            st.caption("Ahead at each ε: " + ", ".join(lead) + ".")

with q_tab:
    st.markdown("SLAM with several q (the largest share of BCE in its loss) on the budgets above, against BCE.")
    q_text = st.text_input(
        "q values",
        value="0.25, 0.5, 0.75, 1",
        key=studies.SWEEP_QS,
        bind="query-params",
        help="Comma-separated values in (0, 1].",
    )
    try:
        qs = studies.parse_numbers(q_text, "q", 0.0, 1.0, max_count=8)
    except ValueError as exc:
        st.error(str(exc))
    else:
        qset = studies.QSweepSettings(qs, fractions, int(images), state.seed())
        out = jobs.run_section(
            "sweep.q",
            (name, qset),
            lambda progress: studies.compute_q_sweep(name, qset, progress),
            jobs.estimate(name, studies.q_sweep_steps(qset, profile.eps_max), "sweep.q"),
            label="SLAM with each q",
            model_name=name,
        )
        jobs.show_status(out, "The table below")
        if out.result is not None:
            qt = out.result
            st.markdown(qt.to_markdown())
            totals = [float(v) for v in qt.total]
            st.plotly_chart(
                q_totals_figure(qset.qs, totals[1:], baseline=totals[0]),
                key="sweep.fig.q",
                config={"displayModeBar": False},
            )
