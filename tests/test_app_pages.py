"""AppTest of the Hyperplane simulation and Models pages: real interactions, checked against the library.

Every expected number is computed here with ``mlvis.analysis.hyperplane`` or read from the model
cards, never copied from the page. Bound widgets take their URL value by the option's *label*
(``?hp.source=Random``), which is what Streamlit writes into the address bar.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from apptools import chart_specs, metrics, plotly_array
from streamlit.testing.v1 import AppTest

import mlvis
from mlvis.analysis import hyperplane as hp
from mlvis.app import cache
from mlvis.app import hyperplane_page as hpage

APP = Path(__file__).resolve().parents[1] / "app.py"
HYPERPLANE = "pages/hyperplane.py"
MODELS = "pages/models.py"


pytestmark = pytest.mark.usefixtures("fresh_caches")  # every test starts with empty Streamlit caches


def open_page(page: str, query: dict | None = None) -> AppTest:
    """The app opened directly on ``page`` (as a link would), with ``query`` in the URL."""
    at = AppTest.from_file(str(APP), default_timeout=120)
    for key, value in (query or {}).items():
        at.query_params[key] = value
    at.switch_page(page)
    return at.run()


def traces(fig: dict, kind: str) -> list[dict]:
    return [t for t in fig["data"] if (t.get("meta") or {}).get("kind") == kind]


def assert_page_shows(at: AppTest, sim: hp.Simulation, curve: hp.FlipCurve) -> None:
    """The metrics, the walks in the plane, the flips per step and the curve are the library's."""
    assert not at.exception
    plane, steps, curve_fig = chart_specs(at)
    shown = {(t["meta"]["loss"], t["meta"]["eps"]): t for t in traces(plane, "walk")}
    expected = {(loss, float(e)) for loss, e in zip(sim.losses, sim.eps)}
    assert set(shown) == expected
    m = metrics(at)
    for loss, eps in expected:
        tr = sim.trajectory(loss, eps)
        trace = shown[loss, eps]
        np.testing.assert_allclose(np.c_[plotly_array(trace["x"]), plotly_array(trace["y"])], tr.points, atol=1e-12)
        assert trace["meta"]["final_flips"] == tr.final_flips
        assert m[f"{hp.LOSS_TITLES[loss]}, ε = {eps:g}"] == f"{tr.final_flips} / {sim.boundaries.num_labels}"
    assert len(traces(plane, "boundary")) == len(sim.boxes) * sim.boundaries.num_labels
    for t in traces(steps, "flips"):
        np.testing.assert_array_equal(plotly_array(t["y"]), sim.trajectory(t["meta"]["loss"], t["meta"]["eps"]).flips)
    for t in traces(curve_fig, "curve"):
        np.testing.assert_array_equal(plotly_array(t["y"]), curve.of(t["meta"]["loss"]))
        np.testing.assert_allclose(plotly_array(t["x"]), curve.eps)


def library_run(boundaries, boxes=hp.DEFAULT_BOXES, losses=(hp.GREEDY, hp.PATIENT), **settings):
    settings = {"alpha": hp.DEFAULT_ALPHA, **settings}
    sim = hp.simulate(boundaries, settings.pop("start", hp.DEFAULT_START), boxes, losses, **settings)
    grid = hp.eps_grid(settings["alpha"], boxes)
    curve = hp.flips_vs_eps(boundaries, sim.start, grid, losses, **settings)
    return sim, curve


# ----------------------------------------------------------------------------------------------------------------------
# Hyperplane simulation


def test_hyperplane_page_opens_on_fig18_and_shows_the_papers_point():
    at = AppTest.from_file(str(APP), default_timeout=120).run()
    at.switch_page(HYPERPLANE).run()
    assert not at.exception and not at.error
    assert at.title[0].value == "Hyperplane simulation"
    text = " ".join(m.value for m in at.markdown)
    assert "Appendix G" in text and "Appendix H" in text and "Fig. 18" in text
    assert at.radio(key=hpage.HP_SOURCE).value == "fig18"
    assert at.slider(key=hpage.HP_EPS).value == hp.DEFAULT_BOXES
    sim, curve = library_run(hp.preset("fig18"))
    assert_page_shows(at, sim, curve)
    m = metrics(at)
    assert m["linear (greedy), ε = 0.1"] == "2 / 5" and m["BCE (patient), ε = 0.1"] == "0 / 5"
    assert m["linear (greedy), ε = 0.3"] == "2 / 5" and m["BCE (patient), ε = 0.3"] == "5 / 5"
    assert "as in the paper's Fig. 18: greedy wins the small box, patient the large one" in text
    # every control explains itself
    for w in (*at.radio, *at.slider, *at.number_input, *at.button_group, *at.checkbox):
        assert w.help, f"{w.label} has no tooltip"


def test_hyperplane_page_follows_its_controls():
    at = AppTest.from_file(str(APP), default_timeout=120).run()
    at.switch_page(HYPERPLANE).run()
    at.slider(key=hpage.HP_EPS).set_value((0.06, 0.4))
    at.button_group(key=hpage.HP_LOSSES).set_value(["linear", "bce", "slam"])
    at.slider(key=hpage.HP_MOMENTUM).set_value(0.0)
    at.number_input(key=hpage.HP_X1).set_value(0.45)
    at.run()
    assert not at.exception and not at.error
    sim, curve = library_run(
        hp.preset("fig18"), (0.06, 0.4), ("linear", "bce", "slam"), momentum=0.0, start=(0.45, 0.5)
    )
    assert_page_shows(at, sim, curve)
    # SLAM's p by hand, then a fixed step count
    at.checkbox(key=hpage.HP_P_AUTO).uncheck().run()  # p's slider is disabled while p comes from the profile
    at.slider(key=hpage.HP_P).set_value(0.8)
    at.number_input(key=hpage.HP_STEPS).set_value(40)
    at.run()
    assert not at.exception and not at.error
    sim, curve = library_run(
        hp.preset("fig18"), (0.06, 0.4), ("linear", "bce", "slam"), momentum=0.0, start=(0.45, 0.5), p=0.8, steps=40
    )
    assert sim.steps.tolist() == [40] * 6
    assert_page_shows(at, sim, curve)
    assert "40 steps each" in chart_specs(at)[2]["layout"]["title"]["text"]


def test_random_boundaries_from_a_seed():
    at = AppTest.from_file(str(APP), default_timeout=120).run()
    at.switch_page(HYPERPLANE).run()
    at.radio(key=hpage.HP_SOURCE).set_value("random").run()
    at.number_input(key=hpage.HP_SEED).set_value(7)
    at.number_input(key=hpage.HP_COUNT).set_value(4)
    at.run()
    assert not at.exception and not at.error
    assert_page_shows(at, *library_run(hp.random_boundaries(4, 7)))
    # the table shows the drawn boundaries
    table = at.dataframe[0].value
    np.testing.assert_allclose(table[["w1", "w2"]].to_numpy(), hp.random_boundaries(4, 7).weights)


def test_editing_the_table_changes_the_walks_and_a_bad_edit_gives_a_sentence():
    at = AppTest.from_file(str(APP), default_timeout=120).run()
    at.switch_page(HYPERPLANE).run()
    at.radio(key=hpage.HP_SOURCE).set_value("custom").run()
    assert not at.exception and not at.error
    editor = at.data_editor(key=hpage.HP_TABLE)
    assert list(editor.value.columns) == ["label", "w1", "w2", "b"]
    assert [tuple(r) for r in editor.value.itertuples(index=False)] == list(hp.preset("fig18").rows())

    # a real edit: move boundary c and add a sixth label
    at.session_state[hpage.HP_TABLE] = {
        "edited_rows": {2: {"b": 4.1}},
        "added_rows": [{"label": "f", "w1": -40.0, "w2": 10.0, "b": 12.0}],
        "deleted_rows": [],
    }
    at.run()
    assert not at.exception and not at.error
    rows = [*hp.preset("fig18").rows()]
    rows[2] = ("c", 25.0, -25.0, 4.1)
    rows.append(("f", -40.0, 10.0, 12.0))
    edited = hp.Boundaries.from_rows(rows)
    assert_page_shows(at, *library_run(edited))
    assert at.query_params[hpage.HP_LINES] == hpage.format_rows(edited.rows())  # the link keeps the table

    # a bad edit: w1 = w2 = 0 -> one clear sentence, no traceback, the last good figures stay
    at.session_state[hpage.HP_TABLE] = {
        "edited_rows": {0: {"w1": 0.0, "w2": 0.0}},
        "added_rows": [],
        "deleted_rows": [],
    }
    at.run()
    assert not at.exception
    assert [e.value for e in at.error] == [
        "Row 1 (label 'a') has w1 = w2 = 0, so its logit is the same everywhere and it has no decision boundary: "
        "give it at least one non-zero weight."
    ]
    assert "last configuration that ran" in " ".join(c.value for c in at.caption)
    assert len(chart_specs(at)) == 3
    # an emptied cell
    at.session_state[hpage.HP_TABLE] = {"edited_rows": {1: {"b": None}}, "added_rows": [], "deleted_rows": []}
    at.run()
    assert not at.exception
    assert [e.value for e in at.error] == [
        "Row 2 (label 'b') has no value in b: every row needs numbers for w1, w2 and b."
    ]


def test_a_link_opens_its_configuration():
    rows = (("p", 30.0, 5.0, -17.0), ("q", -10.0, 40.0, -12.5))
    query = {
        hpage.HP_SOURCE: "Custom table",
        hpage.HP_LINES: hpage.format_rows(rows),
        hpage.HP_EPS: ["0.05", "0.25"],
        hpage.HP_ALPHA: "0.01",
        hpage.HP_LOSSES: ["linear (greedy)", "SLAM"],
    }
    at = open_page(HYPERPLANE, query)
    assert not at.exception and not at.error
    assert at.radio(key=hpage.HP_SOURCE).value == "custom"
    assert at.slider(key=hpage.HP_EPS).value == (0.05, 0.25)
    assert at.button_group(key=hpage.HP_LOSSES).value == ["linear", "slam"]
    assert_page_shows(at, *library_run(hp.Boundaries.from_rows(rows), (0.05, 0.25), ("linear", "slam"), alpha=0.01))


def test_a_link_with_a_bad_table_explains_itself():
    at = open_page(HYPERPLANE, {hpage.HP_SOURCE: "Custom table", hpage.HP_LINES: "a:1,1,-1;b:0,0,2"})
    assert not at.exception
    assert [e.value for e in at.error] == [
        "Row 2 (label 'b') has w1 = w2 = 0, so its logit is the same everywhere and it has no decision boundary: "
        "give it at least one non-zero weight."
    ]
    assert not at.get("plotly_chart")  # nothing ran yet in this session, so there is nothing to show

    at = open_page(HYPERPLANE, {hpage.HP_SOURCE: "Custom table", hpage.HP_LINES: "not a table"})
    assert not at.exception and not at.error
    assert "could not be read" in at.warning[0].value
    assert_page_shows(at, *library_run(hp.preset("fig18")))


def test_invalid_url_values_fall_back_to_defaults():
    at = open_page(HYPERPLANE, {hpage.HP_SOURCE: "nonsense", hpage.HP_EPS: "abc", hpage.HP_ALPHA: "-3"})
    assert not at.exception and not at.error
    assert at.radio(key=hpage.HP_SOURCE).value == "fig18"
    assert_page_shows(at, *library_run(hp.preset("fig18")))


def test_no_loss_chosen_says_so():
    at = AppTest.from_file(str(APP), default_timeout=120).run()
    at.switch_page(HYPERPLANE).run()
    at.button_group(key=hpage.HP_LOSSES).set_value([]).run()
    assert not at.exception
    assert [e.value for e in at.error] == ["Choose at least one loss."]


# ----------------------------------------------------------------------------------------------------------------------
# Models


def test_models_page_shows_every_card_and_the_device():
    at = AppTest.from_file(str(APP), default_timeout=120).run()
    at.switch_page(MODELS).run()
    assert not at.exception and not at.error
    assert at.title[0].value == "Models"
    assert metrics(at)["Device in use"] == cache.device_label()
    names = mlvis.list_models()
    table = at.dataframe[0].value.set_index("field")
    assert table.columns.tolist() == names  # one column per registered model
    for i, name in enumerate(names):
        spec = mlvis.create_model(name, device="cpu").spec
        card, col = spec.card, table[name]
        assert col["labels"] == str(spec.num_labels)
        assert col["input size"] == "×".join(map(str, spec.input_size))
        assert col["mean (R, G, B)"] == ", ".join(f"{v:.3f}" for v in spec.mean)
        assert col["std (R, G, B)"] == ", ".join(f"{v:.3f}" for v in spec.std)
        assert float(col["threshold"]) == spec.threshold
        assert col["test mAP"] == f"{card['test_mAP']:.4f}"
        assert col["parameters"] == f"{card['parameters'] / 1e6:.2f} M"
        assert col["training time"] == f"{card['training_time_s'] / 60:.1f} min"
        assert col["epochs"] == str(card["training"]["epochs"])
        assert col["training images"] == str(card["training"]["train_images"])
        assert col["weights"] == spec.source
        labels = at.dataframe[1 + i].value  # the card's label table
        assert labels["label"].tolist() == list(spec.labels)
        np.testing.assert_allclose(labels["test AP"].to_numpy(), card["test_AP_per_label"])
    assert [s.value for s in at.subheader] == names
    page_text = " ".join(m.value for m in at.markdown)
    assert "ASL" in page_text and "Query2Label" in page_text and "mlvis add-model --family asl-tresnet-l" in page_text
    for word in ("TODO", "coming soon", "placeholder", "lorem"):
        assert word.lower() not in page_text.lower()
    # each card's training configuration, as JSON
    shown = [json.loads(j.proto.body) for j in at.json]
    assert [s["training"] for s in shown] == [mlvis.create_model(n, device="cpu").spec.card["training"] for n in names]
