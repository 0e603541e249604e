"""mlvis dashboard: the frame every page runs in.

Run with ``streamlit run app.py``. This script sets the page config, draws the shared sidebar
(model, seed, device; state in ``mlvis.app.state``, mirrored in the URL), lists the pages with
``st.navigation`` and runs the chosen one. Pages read the sidebar's choice through
``mlvis.app.state.model_name()`` / ``seed()``.
"""

from pathlib import Path

import streamlit as st

import mlvis
from mlvis.app import cache, widgets
from mlvis.app.page import skip_link

# the icon is a local file (served by the app itself): a material or emoji icon would be fetched from a font host
st.set_page_config(
    page_title="mlvis", page_icon=str(Path(__file__).parent / "mlvis" / "app" / "icon.png"), layout="wide"
)

models = mlvis.list_models()
if not models:
    st.error("No models are registered, so there is nothing to show. Check the installation of mlvis.")
    st.stop()

pages = [
    st.Page("pages/home.py", title="Home", icon=":material/home:", default=True),
    st.Page("pages/attack_lab.py", title="Attack Lab", icon=":material/science:"),
    st.Page("pages/histograms.py", title="Confidence histograms", icon=":material/bar_chart:"),
    st.Page("pages/landscape.py", title="Label landscape", icon=":material/grid_on:"),
    st.Page("pages/profiles.py", title="Profiles", icon=":material/show_chart:"),
    st.Page("pages/sweep.py", title="Budget sweep", icon=":material/table_chart:"),
    st.Page("pages/hyperplane.py", title="Hyperplane simulation", icon=":material/timeline:"),
    st.Page("pages/figures.py", title="Paper figures", icon=":material/photo_library:"),
    st.Page("pages/models.py", title="Models", icon=":material/model_training:"),
    st.Page("pages/runs.py", title="Runs", icon=":material/folder_open:"),
]
page = st.navigation(pages)  # first, so the sidebar knows which page this run shows
widgets.sidebar(models, device=cache.device_label(), page=page.url_path)
skip_link()  # the first Tab stop: "Skip to Run", on every page that has a Run button
page.run()
