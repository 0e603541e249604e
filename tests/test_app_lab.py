"""AppTests and unit tests of the Attack Lab's session-3 work: the related attacks unbounded by default (through the
registry's kind), progress that only moves forward across phases, the upload limit said on the page, and a page
switch after a shared link keeping its model and seed.

Expected numbers come from the library (``mlvis.attack``, ``mlvis.attacks.run_job``), never typed in.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import streamlit as st
import tomllib
import torch
from apptools import lab_run, open_lab
from model_files import timm_card
from streamlit.testing.v1 import AppTest

import mlvis
from mlvis import recipe as rc
from mlvis.app import jobs, lab, lab_views, state
from mlvis.attacks import AttackSpec, register_method, run_job
from mlvis.attacks.methods import RUNNER, RunOutput
from mlvis.data import images as uploads
from mlvis.models import cards

ROOT = Path(__file__).resolve().parents[1]
MODEL = "demo-asl"

pytestmark = pytest.mark.usefixtures("fresh_caches")


def scene(run: lab.LabRun) -> np.ndarray:
    model = mlvis.create_model(MODEL, device="cpu")
    return rc.demo_images(run.recipe.images, model.spec.input_size)


# ------------------------------------------------------------------------------------------- related attacks


def _test_runner(ctx) -> RunOutput:
    """Like the related attacks, it finds its perturbation without a budget and caps it to each eps afterwards."""
    delta = (ctx.images + 0.25).clamp(0, 1) - ctx.images  # a large change, so a cap shows
    eps = torch.as_tensor(ctx.eps, dtype=delta.dtype).view(-1, 1, 1, 1, 1)
    adv = ctx.images + torch.minimum(torch.maximum(delta.unsqueeze(0), -eps), eps)
    return RunOutput(adv, np.ones((len(ctx.eps), ctx.num_images), dtype=np.int64))


@pytest.fixture(scope="module", autouse=True)
def _test_runner_registered():
    """Registered while this module runs (conftest's ``_registries_restored`` removes it after), never at import:
    a method registered at collection would join every other module's parametrisation over the registry."""
    about = "a runner from outside the package: the clean image + 0.25"
    register_method("test-runner", kind=RUNNER, description=about)(_test_runner)


def test_own_optimisers_are_read_from_the_registry_not_from_names():
    assert lab.own_optimiser("ml-cw") and lab.own_optimiser("ml-deepfool") and lab.own_optimiser("mla-lp")
    assert lab.own_optimiser("test-runner")  # registered above, from outside the package
    assert not any(lab.own_optimiser(m) for m in ("bce", "linear", "slam", "class", "random"))
    assert lab.progress_phases(["bce", "slam"]) == 1
    assert lab.progress_phases(["bce", "ml-cw", "mla-lp"]) == 3
    assert lab.progress_phases(["ml-deepfool"]) == 1


def test_a_recipe_keeps_its_unbounded_methods_and_old_recipes_stay_byte_identical():
    old = rc.Recipe(MODEL, ("bce", "ml-deepfool"), 0.02)
    assert "unbounded" not in old.to_dict()
    new = rc.Recipe(MODEL, ("bce", "ml-deepfool"), 0.02, unbounded=("ml-deepfool",))
    assert rc.Recipe.from_json(new.to_json()) == new and new.to_dict()["unbounded"] == ["ml-deepfool"]
    with pytest.raises(ValueError, match="among its methods"):
        rc.Recipe(MODEL, ("bce",), 0.02, unbounded=("ml-cw",))


def test_the_related_attacks_run_unbounded_by_default_and_say_what_they_reached():
    at = open_lab({lab.LAB_METHODS: ["BCE", "test-runner"]})
    assert not at.exception, at.exception
    assert at.toggle(key=lab.LAB_UNBOUNDED).value is True
    captions = " ".join(c.value for c in at.caption)
    assert "test-runner is built to run without a budget: here it runs without one and is read at" in captions
    at.button(key="lab.run").click().run()
    run = lab_run(at)
    assert run.recipe.unbounded == ("test-runner",)
    x = scene(run)
    model = mlvis.create_model(MODEL, device="cpu")
    free = mlvis.attack(model, x, "test-runner", 1.0)  # the library's unbounded run
    np.testing.assert_array_equal(run.results[1].adv, free.adv)
    np.testing.assert_array_equal(run.results[0].adv, mlvis.attack(model, x, "bce", run.recipe.eps).adv)
    assert float(run.results[1].linf[0].max()) > run.recipe.eps  # it went past the budget, as it may
    assert lab.file_stem(run, "test-runner", 0) == f"{MODEL}_test-runner_unbounded_img0"
    assert lab.file_stem(run, "BCE", 0) == f"{MODEL}_BCE_eps{run.recipe.eps:g}_img0"
    frame = lab.results_frame(run)
    assert frame.groupby("method")["unbounded"].all().to_dict() == {"BCE": False, "test-runner": True}
    line = next(m.value for m in at.markdown if m.value.startswith("**test-runner** ran without a budget"))
    assert f"reached L∞ {free.linf[0].mean():.5f}" in line and f"L2 {free.l2[0].mean():.4f}" in line
    # bounded stays available: the same method clipped to ε afterwards
    at.toggle(key=lab.LAB_UNBOUNDED).set_value(False).run()
    at.button(key="lab.run").click().run()
    run = lab_run(at)
    assert run.recipe.unbounded == () and float(run.results[1].linf[0].max()) <= run.recipe.eps + 1e-7
    np.testing.assert_array_equal(run.results[1].adv, mlvis.attack(model, x, "test-runner", run.recipe.eps).adv)
    assert "here it is clipped to ε after it finishes" in " ".join(c.value for c in at.caption)
    link = open_lab({lab.LAB_METHODS: ["BCE", "test-runner"], lab.LAB_UNBOUNDED: "false"})  # a shared link keeps it
    assert link.toggle(key=lab.LAB_UNBOUNDED).value is False


def test_ml_deepfool_runs_in_the_lab_as_published():
    at = open_lab({lab.LAB_METHODS: ["BCE", "ML-DeepFool"]})
    at.button(key="lab.run").click().run()
    assert not at.exception, at.exception
    run = lab_run(at)
    assert run.recipe.unbounded == ("ml-deepfool",)
    model = mlvis.create_model(MODEL, device="cpu")
    want = mlvis.attack(model, scene(run), "ml-deepfool", 1.0)  # the related module's "attack as published"
    got = run.results[1]
    np.testing.assert_array_equal(got.adv, want.adv)
    np.testing.assert_array_equal(got.flips, want.flips)
    assert any(m.value.startswith(f"**ML-DeepFool** ran without a budget and reached L∞ {want.linf[0].mean():.5f}")
               for m in at.markdown)  # fmt: skip


def test_the_unbounded_switch_is_off_while_no_related_attack_is_chosen():
    at = open_lab({lab.LAB_METHODS: ["BCE"]})
    assert at.toggle(key=lab.LAB_UNBOUNDED).proto.disabled
    assert lab_run(at).recipe.unbounded == ()


# ------------------------------------------------------------------------------------------- progress


def test_progress_only_moves_forward_across_phases():
    shown: list[float] = []
    rep = jobs.ProgressReporter({}, "stop", "Attacking", phases=3)
    for done, total in [(91, 100), (100, 100), (17, 20), (20, 20), (3, 10), (10, 10)]:  # 91 % -> 85 % -> 30 %
        rep(done, total)
        shown.append(rep.fraction)
    assert shown == sorted(shown) and shown[-1] == 1.0
    assert shown[0] == pytest.approx(0.91 / 3) and shown[3] == pytest.approx(2 / 3)
    one = jobs.ProgressReporter({}, "stop", "Attacking")  # a phase nobody announced: the bar waits, never goes back
    for done, total in [(91, 100), (17, 20), (3, 10)]:
        one(done, total)
    assert one.fraction == pytest.approx(0.91)


def test_a_run_with_a_related_attack_reports_a_forward_only_bar():
    model = mlvis.create_model(MODEL, device="cpu")
    x, _ = mlvis.data.demo_batch(1)
    methods = ["ml-deepfool", "bce"]
    raw: list[tuple[int, int]] = []
    shown: list[float] = []
    rep = jobs.ProgressReporter({}, "stop", "Attacking", phases=lab.progress_phases(methods))

    def progress(done, total):
        raw.append((done, total))
        rep(done, total)
        shown.append(rep.fraction)

    run_job(model, x, [AttackSpec("ml-deepfool", {"max_iter": 3}), "bce"], 0.01, progress=progress)
    fractions = [d / t for d, t in raw]
    assert fractions != sorted(fractions)  # the engine's own counts go back when the loop starts
    assert shown == sorted(shown) and shown[-1] == 1.0


# ------------------------------------------------------------------------------------------- uploads


def test_the_upload_limit_is_a_visible_sentence_and_an_over_size_file_gets_one():
    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert config["server"]["maxUploadSize"] == uploads.MAX_BYTES // 2**20  # the server and the loader agree
    at = open_lab({lab.LAB_SOURCE: "Upload images"})
    limit = lab.upload_limit_mb()
    assert limit == min(uploads.MAX_BYTES // 2**20, int(st.get_option("server.maxUploadSize")))
    sentence = next(c.value for c in at.caption if "MB" in c.value and "refuses" in c.value)
    assert f"at most {limit} MB" in sentence
    big = b"\x89PNG\r\n\x1a\n" + bytes(27 * 2**20)  # 27 MB: what reaches the Lab when a server allows more
    at.file_uploader(key=lab.LAB_UPLOAD).set_value(("holiday.png", big, "image/png")).run()
    assert not at.exception
    assert any("holiday.png: the file is 27.0 MB; the limit is 20 MB." in e.value for e in at.error)


# ------------------------------------------------------------------------------------------- page switch


@pytest.fixture
def card_folder(tmp_path, monkeypatch):
    path = tmp_path / "models"
    timm_card(path, name="tiny-photos")
    monkeypatch.setenv(cards.ENV, str(path))
    yield path
    monkeypatch.delenv(cards.ENV)
    cards.sync(force=True)


def sidebar_app():
    """The app's frame as far as the sidebar goes, on the page named in Session State (``test.page``). AppTest's
    ``switch_page`` runs the page's file without ``app.py`` around it, so the frame's page switch is driven here."""
    import streamlit as st

    import mlvis
    from mlvis.app import widgets

    choice = widgets.sidebar(mlvis.list_models(), device="CPU", page=st.session_state.get("test.page", ""))
    st.session_state["test.choice"] = choice


def test_a_page_switch_after_a_shared_link_keeps_its_model_and_seed(card_folder):
    at = AppTest.from_function(sidebar_app, default_timeout=120)
    at.query_params[state.MODEL] = "tiny-photos"
    at.query_params[state.SEED] = "3"
    at.run()
    assert at.session_state["test.choice"] == widgets_choice("tiny-photos", 3)
    # What Chromium sends when the sidebar's "Attack Lab" is clicked after opening a link: the new page without the
    # link's query string, and the sidebar widgets at their defaults (seen in the browser: /attack_lab then ran on
    # demo-asl with seed 0).
    at.query_params.clear()
    at.sidebar.selectbox(key=state.MODEL).set_value(state.default_model(mlvis.list_models()))
    at.sidebar.number_input(key=state.SEED).set_value(state.DEFAULT_SEED)
    at.session_state["test.page"] = "attack_lab"
    at.run()
    assert not at.exception
    assert at.session_state["test.choice"] == widgets_choice("tiny-photos", 3)
    assert at.sidebar.selectbox(key=state.MODEL).value == "tiny-photos"
    # on the page itself, choosing the default model is a choice like any other, and it survives the next switch
    at.sidebar.selectbox(key=state.MODEL).set_value(MODEL).run()
    assert at.session_state["test.choice"] == widgets_choice(MODEL, 3)
    at.session_state["test.page"] = ""
    at.run()
    assert at.session_state["test.choice"] == widgets_choice(MODEL, 3)


def widgets_choice(model: str, seed: int):
    from mlvis.app.widgets import SidebarChoice

    return SidebarChoice(model=model, seed=seed)


def test_the_model_picker_lists_the_default_model_first():
    models = mlvis.list_models()
    options = state.picker_options(models)
    assert options[0] == state.default_model(models) and sorted(options) == sorted(models)
    assert state.picker_options(["a-card", "demo-asl", "demo-q2l"]) == ["demo-asl", "a-card", "demo-q2l"]


def test_the_views_state_the_unbounded_reach_in_levels():
    model = mlvis.create_model(MODEL, device="cpu")
    x, _ = mlvis.data.demo_batch(1)
    recipe = rc.Recipe(MODEL, ("bce", "test-runner"), 0.01, unbounded=("test-runner",))
    results = rc.run_recipe(recipe, model, x.numpy(), artifacts=rc.Artifacts(MODEL))
    run = lab.LabRun(recipe, tuple(results), ("scene 0",))
    assert [r.name for r in run.unbounded] == ["test-runner"]
    r = run.unbounded[0]
    linf = float(r.linf[0].mean())
    assert f"{linf * 255:.2f} 8-bit levels" in lab_views.unbounded_sentence(run, r)
    assert torch.equal(torch.from_numpy(results[0].adv), torch.from_numpy(mlvis.attack(model, x, "bce", 0.01).adv))


# --------------------------------------------------------------------------------------------------- replay


def test_the_lab_replays_its_own_run_and_its_last_step_is_the_result():
    """The Lab records its run with the engine's step hook: the replay's last step is each method's result, the
    race ends at each method's flips, and a related attack is named as not replayable."""
    import json

    at = open_lab({lab.LAB_METHODS: ["BCE", "SLAM", "CLASS", "test-runner"]})
    assert not at.exception, at.exception
    if not at.session_state[f"{lab.SECTION}._results"]:
        at.button(key="lab.run").click().run()
    run = lab_run(at)
    rec = run.replay
    assert rec is not None
    assert [t.name for t in rec.traces] == ["BCE", "SLAM", "CLASS"]
    assert [name for name, _ in rec.not_replayable] == ["test-runner"]
    for t, r in zip(rec.traces, run.results):
        np.testing.assert_array_equal(t.probs[-1], r.adv_probs[0])  # the last step is the result itself
        np.testing.assert_array_equal(t.probs[0], r.clean_probs)
        assert t.flips[-1].tolist() == r.flips[0].tolist()
    # the recording is the run's own: recording changed nothing (the same job without a hook gives the same images)
    x = scene(run)
    model = mlvis.create_model(MODEL, device="cpu")
    plain = lab.run_lab(model, run.recipe, x, run.names, record=False)
    for a, b in zip(plain.results, run.results):
        np.testing.assert_array_equal(a.adv, b.adv)
    slider = at.slider(key="replay.step")
    assert slider.max == rec.max_step and slider.value == rec.max_step
    race = {}
    for el in at.get("plotly_chart"):
        spec = json.loads(el.proto.spec)
        for d in spec["data"]:
            if d.get("meta", {}).get("kind") == "race":
                race[d["meta"]["method"]] = d
    assert set(race) == {"BCE", "SLAM", "CLASS"}
    step = rec.max_step // 2
    slider.set_value(step).run()
    assert not at.exception, at.exception
    shown = {}
    for el in at.get("plotly_chart"):
        spec = json.loads(el.proto.spec)
        for d in [] if spec.get("frames") else spec["data"]:  # the step's chart, not the animation's first frame
            if d.get("meta", {}).get("kind") == "confidence":
                shown[d["meta"]["method"]] = d["y"]
    for t in rec.traces:  # the confidences drawn at the slider's step are that step's recorded ones
        assert sorted(shown[t.name]) == pytest.approx(sorted(t.probs_at(step)[0].tolist()))
    assert not np.array_equal(rec.traces[0].probs_at(step), rec.traces[0].probs[-1])
    assert "test-runner is not replayable" in " ".join(c.value for c in at.caption)
