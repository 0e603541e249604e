"""AppTest of the Attack Lab's default view (issue 13): the stated rule, what the model sees, the one amplification
per row, and the budget widgets' single source of truth.

Expected numbers come from the library (``mlvis.attack``) or the shipped table through the rule, never typed in.
"""

from __future__ import annotations

import logging

import apptools
import numpy as np
import pytest
from apptools import lab_run, metrics
from streamlit.testing.v1 import AppTest

import mlvis
from mlvis import recipe as rc
from mlvis.app import default_view as dv
from mlvis.app import lab
from mlvis.viz.audit import common_factor

MODEL = "demo-asl"

pytestmark = pytest.mark.usefixtures("fresh_caches")


def open_lab(query: dict | None = None) -> AppTest:
    return apptools.open_lab(query, timeout=180)


def test_the_rule_picks_the_largest_lead_and_the_first_on_a_tie():
    assert dv.pick_scene({"class": [1, 3, 3, 0], "bce": [1, 0, 0, 0]}) == 1
    assert dv.pick_scene({"class": [0, 0], "bce": [2, 1]}) == 1  # a smaller deficit is the largest lead
    with pytest.raises(ValueError, match="as many"):
        dv.pick_scene({"class": [1], "bce": [1, 2]})
    for model, entry in dv.TABLE.items():
        k = entry["eps"].index(dv.RULE_EPS)
        flips = {m: dv.decode(rows[k]) for m, rows in entry["flips"].items()}
        assert all(len(f) == dv.SCENES for f in flips.values())
        view = dv.default_view(model)
        gaps = np.subtract(flips["class"], flips["bce"])
        assert view.scene == int(np.argmax(gaps)) and view.means["class"] == pytest.approx(np.mean(flips["class"]))
    assert dv.default_view("no-such-model") is None


def test_the_lab_opens_on_the_rules_scene_and_its_flips_match_a_fresh_attack():
    view = dv.default_view(MODEL)
    at = open_lab()
    assert not at.exception, at.exception
    assert view.sentence() in [i.value for i in at.info]
    assert at.number_input(key=lab.LAB_START).value == view.scene
    assert at.number_input(key=lab.LAB_EPS).value == view.eps
    run = lab_run(at)  # it ran by itself: the rule's scene at the rule's budget
    assert run.recipe.images.start == view.scene and run.recipe.eps == view.eps
    c = run.num_labels
    m = metrics(at)
    for r in run.results:
        assert m[f"{r.name}: flips"] == f"{view.flips[r.name.lower()]} / {c}"  # the shipped table is reproducible
    assert len({m[f"{r.name}: flips"] for r in run.results}) > 1  # the methods differ at the default


def test_what_the_model_sees_names_the_labels_in_one_order():
    at = open_lab()
    run = lab_run(at)
    order, states = lab.label_states(run, 0)
    r0 = run.results[0]
    clean = r0.clean_pred[0].astype(bool)
    assert [r0.clean_probs[0][j] for j in order] == sorted((r0.clean_probs[0][j] for j in order), reverse=True)
    for r in run.results:
        flipped = set(np.flatnonzero(r.adv_pred[0, 0] != r.clean_pred[0]).tolist())
        assert {j for j, s in zip(order, states[r.name]) if s in ("up", "down")} == flipped
        assert {j for j, s in zip(order, states[r.name]) if s == "up"} == {j for j in flipped if not clean[j]}
        assert set(np.flatnonzero(clean)) <= set(order)
        line = next(x.value for x in at.markdown if x.value.startswith(f"**{r.name}** ("))
        assert line.startswith(f"**{r.name}** ({len(flipped)} / {run.num_labels} flipped)")
        names = [r.labels[j] for j in order]
        positions = [line.index(f"{n}]") for n in names]
        assert positions == sorted(positions)  # the common order, whatever the method


def test_one_amplification_for_the_whole_row():
    at = open_lab()
    run = lab_run(at)
    factor = common_factor(run.results[0].clean[0], [r.adv[0, 0] for r in run.results])
    captions = [x.value for x in at.caption]
    assert any(f"amplified × {factor:g}, one factor for the whole row" in t for t in captions)


def test_the_budget_has_one_source_of_truth_and_no_duplicate_state_warning(caplog, monkeypatch):
    from streamlit.elements.lib import policies

    monkeypatch.setattr(policies, "_shown_default_value_warning", False)  # Streamlit warns once per process
    monkeypatch.setattr(policies._LOGGER, "propagate", True)
    at = open_lab({lab.LAB_METHODS: ["BCE"]})
    with caplog.at_level(logging.WARNING):
        for v in (0.0105, 0.011, 0.0115, 0.012):  # quick slider moves, one rerun each
            at.slider(key=lab.LAB_EPS_SLIDER).set_value(v).run()
            assert at.number_input(key=lab.LAB_EPS).value == pytest.approx(v)
        at.button(key="lab.eight_bit").click().run()
        at.slider(key=lab.LAB_EPS_SLIDER).set_value(0.015).run()
        at.number_input(key=lab.LAB_EPS).set_value(0.0125).run()
    assert not at.exception
    assert at.slider(key=lab.LAB_EPS_SLIDER).value == pytest.approx(0.0125)
    assert not any("Session State API" in r.getMessage() for r in caplog.records)
    at.button(key="lab.run").click().run()
    run = lab_run(at)
    assert run.recipe.eps == pytest.approx(at.number_input(key=lab.LAB_EPS).value) == pytest.approx(0.0125)
    model = mlvis.create_model(MODEL, device="cpu")
    images = rc.demo_images(run.recipe.images, model.spec.input_size)
    np.testing.assert_array_equal(run.results[0].adv, mlvis.attack(model, images, "bce", 0.0125).adv)


def test_the_exports_carry_every_setting_and_the_flipped_labels_names():
    import io as _io
    import json

    import pandas as pd

    at = open_lab()
    run = lab_run(at)
    frame = pd.read_csv(_io.BytesIO(lab.csv_bytes(run)), keep_default_na=False)
    for col, want in (("model", MODEL), ("seed", 0), ("norm", "linf"), ("eps_setting", run.recipe.eps),
                      ("alpha", run.recipe.alpha), ("q", run.recipe.q), ("gamma", run.recipe.gamma)):  # fmt: skip
        assert (frame[col] == want).all(), col
    doc = json.loads(lab.json_bytes(run))
    assert doc["settings"]["q"] == run.recipe.q and doc["settings"]["model"] == MODEL
    for r in run.results:
        flipped = [r.labels[j] for j in np.flatnonzero(r.adv_pred[0, 0] != r.clean_pred[0])]
        row = frame[frame["method"] == r.name].iloc[0]
        assert sorted(filter(None, row["flipped_labels"].split(";"))) == sorted(flipped)
        got = doc["flipped"][r.name][0]
        assert sorted(got["up"] + got["down"]) == sorted(flipped)
        assert all(not r.clean_pred[0][r.labels.index(n)] for n in got["up"])


def test_a_stale_result_is_collapsed_until_run(monkeypatch):
    from mlvis.app import jobs

    at = open_lab({lab.LAB_METHODS: ["BCE"]})
    assert all("last run" not in e.label for e in at.expander)
    monkeypatch.setattr(jobs, "AUTO_RUN_S", 0.0)  # nothing runs by itself now
    at.number_input(key=lab.LAB_EPS).set_value(0.0305).run()
    stale = [e for e in at.expander if "last run" in e.label]
    assert len(stale) == 1 and not stale[0].proto.expanded  # the old result, collapsed
    assert lab_run(at).recipe.eps == pytest.approx(lab.DEFAULT_EPS)
    at.button(key="lab.run").click().run()
    assert lab_run(at).recipe.eps == pytest.approx(0.0305)
    assert all("last run" not in e.label for e in at.expander)


def test_speed_estimates_are_kept_per_session():
    from mlvis.app import jobs

    first = open_lab({lab.LAB_METHODS: ["BCE"]})
    seen = first.session_state[jobs.OBSERVED]
    seen[(MODEL, "lab")] = 123.0  # an absurdly slow rate seen in this session only
    second = open_lab({lab.LAB_METHODS: ["BCE"]})
    assert (MODEL, "lab") not in second.session_state[jobs.OBSERVED] or (
        second.session_state[jobs.OBSERVED][(MODEL, "lab")] != 123.0
    )
    assert lab_run(second).recipe.eps == lab.DEFAULT_EPS  # the other session still ran its default by itself


# ------------------------------------------------------------------------------------------- lecture mode


def ran(at: AppTest) -> lab.LabRun:
    """The run shown; pressed Run first when a busy machine's estimate kept the defaults from running by themselves."""
    if not at.session_state[f"{lab.SECTION}._results"]:
        at.button(key="lab.run").click().run()
    return lab_run(at)


def narration(at: AppTest) -> str:
    """The narrated step's sentence (the lecture panel's large heading)."""
    return next(m.value for m in at.markdown if m.value.startswith("### "))[4:]


def names(labels) -> list[str]:
    return [f"*{n}*" for n in labels]


def test_lecture_mode_narrates_clean_then_each_method_from_the_runs_own_flips():
    from mlvis.app import lecture

    plain = open_lab()
    ran(plain)
    assert not any(e.label == "The methods and the paper's sections" for e in plain.expander)
    assert not any(m.value.startswith("### ") for m in plain.markdown)
    at = open_lab({lecture.LECTURE: "true"})
    assert not at.exception, at.exception
    assert any("font-size" in h.proto.body for h in at.get("html"))  # large type
    folded = next(e for e in at.expander if e.label == "The methods and the paper's sections")
    assert not folded.proto.expanded and "Algorithm 2" in folded.markdown[0].value  # the references, folded away
    run = ran(at)
    r0, c = run.results[0], run.num_labels
    steps = at.button_group(key=lecture.STEP)
    assert [getattr(o, "content", o) for o in steps.options] == ["Clean", "BCE", "SLAM", "CLASS"]
    present = [r0.labels[j] for j in np.argsort(-r0.clean_probs[0], kind="stable") if r0.clean_pred[0][j]]
    first = narration(at)
    assert f"sees {len(present)} of its {c} labels before the attack: " + ", ".join(names(present)) in first
    seen = [first]
    for k, r in enumerate(run.results):
        at.button(key=lecture.NEXT).click().run()
        assert at.button_group(key=lecture.STEP).value == k + 1
        text = narration(at)
        flipped = np.flatnonzero(r.adv_pred[0, 0] != r.clean_pred[0])
        assert text.startswith(f"{r.name} flipped {len(flipped)} of {c} label")
        assert all(n in text for n in names(r.labels[j] for j in flipped))
        assert f"within ε = {run.recipe.eps:g}" in text
        if k:
            diff = len(flipped) - int(r0.flips[0, 0])
            assert (f"{abs(diff)} {'more' if diff > 0 else 'fewer'} than BCE" if diff else "as many as BCE") in text
        seen.append(text)
    assert len(set(seen)) == len(seen)  # every step says something of its own
    assert at.button(key=lecture.NEXT).proto.disabled  # the sequence ends with the last method
    at.button(key=lecture.RESTART).click().run()
    assert at.button_group(key=lecture.STEP).value == 0 and narration(at) == first


def test_a_lecture_link_opens_at_its_step():
    from mlvis.app import lecture

    at = open_lab({lecture.LECTURE: "true", lecture.STEP: "SLAM"})
    assert not at.exception, at.exception
    assert at.toggle(key=lecture.LECTURE).value is True
    assert at.button_group(key=lecture.STEP).value == 2
    run = ran(at)
    assert narration(at) == lecture.method_sentence(run, 0, 1) and narration(at).startswith("SLAM flipped")
    at.button(key=lecture.NEXT).click().run()
    assert narration(at).startswith("CLASS flipped")
