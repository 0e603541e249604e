"""Attack Lab: attack sample scenes or uploaded images with several methods side by side, look, download.

The story of the page: the lecture switch, what the methods are, the controls (they give the recipe),
the run (a Run button, progress, kept results), then what the run shows, part by part
(``mlvis.app.lab_views``), and in lecture mode a narrated step above it all (``mlvis.app.lecture``).
"""

import streamlit as st

import mlvis
from mlvis.app import lab, lab_views, lecture
from mlvis.app.page import page_model

st.title("Attack Lab")
lecturing = lecture.lecture_switch()
lab_views.intro(lecture=lecturing)
name, model = page_model()
talk = st.container(border=True) if lecturing else None  # the narrated step, above the controls

controls = lab.lab_controls(name, model, mlvis.list_models())
lab_views.controls_messages(controls)  # stops here when nothing can run yet
if talk is not None:
    with talk:
        step = lecture.step_titles(controls.recipe.methods)[lecture.step_control(controls.recipe.methods)]
lab_views.default_view_note(name, controls)

outcome = lab.run_section(controls, name, model)
run = lab_views.outcome_view(outcome)  # stops here when nothing has run

with lab_views.results_holder(outcome):
    shown = lab_views.summary_view(run, outcome)
    lab_views.model_sees_view(run, shown)
    factor = lab_views.images_view(run, shown)
    if talk is not None:
        with talk:
            lecture.lecture_view(run, shown, step, factor)
    lab_views.replay_view(run)
    lab_views.budget_map_view(run, shown)
    lab_views.audit_view(run, shown, factor, model)
    lab_views.confidence_view(run, shown)
    lab_views.transfer_view(run)
    lab_views.downloads_view(run, shown, factor)
