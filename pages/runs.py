"""Runs: the run directories a CLI sweep (``mlvis evaluate --out``) writes, their progress and tables."""

import pandas as pd
import streamlit as st

from mlvis.app import runs_page
from mlvis.app.page import in_frame

in_frame()  # a cold link straight to this page still gets the sidebar

st.title("Runs")
folder = runs_page.runs_dir()
st.caption(
    f"Run directories in {folder.resolve()} (set MLVIS_RUNS_DIR to look elsewhere). Start one with "
    "`mlvis evaluate --data KIND:PATH --out RUN_DIR`; a stopped run continues with the same command."
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
    status = runs_page.status(name, folder)
except ValueError as exc:
    st.error(str(exc))
    st.stop()
st.progress(status.fraction, text=f"{status.done} of {status.total} chunks ({status.num_items} images)")
if status.error:
    st.error(f"The last start failed: {status.error}")
if not status.finished:
    st.info("This run is not finished; its table appears once every chunk is written.")
    if st.button("Refresh", key="runs_refresh"):
        st.rerun()
elif status.manifest.get("kind") == "evaluate":
    try:
        table = runs_page.table(name, folder)
    except ValueError as exc:
        st.error(str(exc))
    else:
        st.subheader(f"{table.model}: flips per method and budget ({table.flips.shape[-1]} images)")
        st.markdown(table.to_markdown())
        st.caption("Bold: the column's best mean where it differs from BCE (paired t-test, p < 0.05); * = BCE.")
        st.download_button("table.csv", table.to_frame().to_csv(index=False), f"{name}-table.csv", key="runs_csv")
else:
    st.info(f"A finished {status.manifest.get('kind')!r} run; the page shows tables of evaluate runs.")
