"""Runs: the run directories a CLI sweep (``mlvis evaluate / profile / correlations / compare-related``) writes,
their progress (refreshed by itself while a run is running) and their tables and figures."""

import pandas as pd
import streamlit as st

from mlvis.app import runs_page
from mlvis.app.page import in_frame

in_frame()  # a cold link straight to this page still gets the sidebar

st.title("Runs")
folder = runs_page.runs_dir()
st.caption(
    f"Run directories in {folder.resolve()} (set MLVIS_RUNS_DIR to look elsewhere). Start one with "
    "`mlvis evaluate --data KIND:PATH --out RUN_DIR` (or `mlvis profile / correlations / compare-related --run "
    "RUN_DIR`); a stopped run continues with the same command."
)
rows = runs_page.list_runs(folder)
if not rows:
    st.info("No run directories here yet.")
    st.stop()
st.dataframe(
    pd.DataFrame(
        {
            "run": [r.name for r in rows],
            "command": [r.kind for r in rows],
            "model": [r.model for r in rows],
            "images": [r.images for r in rows],
            "chunks": [f"{r.done}/{r.total}" for r in rows],
            "state": [r.state for r in rows],
        }
    ),
    hide_index=True,
)
name = st.selectbox("Open a run", [r.name for r in rows], key="runs_open")
try:
    opened = runs_page.status(name, folder)
except ValueError as exc:
    st.error(str(exc))
    st.stop()


def show_run(was_finished: bool) -> None:
    """The opened run's progress and results; while it runs, re-read every REFRESH_S seconds (a fragment)."""
    status = runs_page.status(name, folder)
    if status.finished and not was_finished:
        st.rerun()  # it just finished: redraw the page without the refresh
    stage = f", {status.stage}" if status.stage else ""
    st.progress(status.fraction, text=f"{status.done} of {status.total} chunks ({status.num_items} images{stage})")
    if status.error:
        st.error(f"The last start failed: {status.error}")
    kind = status.manifest.get("kind")
    if not status.finished:
        st.info(
            f"This run is not finished; this view re-reads its folder every {runs_page.REFRESH_S:g} s. Below: "
            "the results of its finished chunks so far."
            if kind != "profile"
            else f"This profile run is not finished; this view re-reads its folder every {runs_page.REFRESH_S:g} s. "
            "A profile exists once its probe has stopped."
        )
        if kind == "profile":
            return
    try:
        res = runs_page.result(name, folder, partial=not status.finished)
    except ValueError as exc:
        st.info(str(exc))
        return
    text = runs_page.caption(res, status.num_items)
    if kind == "evaluate":
        st.subheader(f"{res.model}: flips per method and budget ({text})")
        st.markdown(res.to_markdown())
        st.caption("Bold: the column's best mean where it differs from BCE (paired t-test, p < 0.05); * = BCE.")
        st.download_button("table.csv", res.to_frame().to_csv(index=False), f"{name}-table.csv", key="runs_csv")
    elif kind == "compare-related":
        st.subheader(f"{res.model}: Table VII ({text})")
        st.markdown(res.to_markdown())
    elif kind == "profile":
        conv = "converged" if res.settings.get("converged") else "not converged"
        st.subheader(f"{res.model}: flip profile ({text})")
        st.markdown(f"eps_max **{res.eps_max:.4g}** ({conv}), E(eps_max) {res.expected_flips(res.eps_max):.2f} of "
                    f"{res.labels} labels")  # fmt: skip
    else:
        st.subheader(f"{next(iter(res.values())).model}: correlation matrices ({text})")
    st.plotly_chart(runs_page.figure(res, text), key="runs_figure")


st.fragment(run_every=None if opened.finished else runs_page.REFRESH_S)(show_run)(opened.finished)
