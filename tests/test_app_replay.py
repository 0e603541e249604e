"""The replay section (mlvis.app.replay_view) in a tiny app script: the step slider moves every method in sync."""

from __future__ import annotations

import json

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

import mlvis
from mlvis.analysis.trajectory import pick_labels, record
from mlvis.viz.replay import label_order


def replay_app(recording):
    from mlvis.app.replay_view import replay_section

    replay_section(recording, key="t.replay")


@pytest.fixture(scope="module")
def recording():
    model = mlvis.create_model("demo-asl", device="cpu")
    x, _ = mlvis.data.demo_batch(2)
    return record(model, x, ["bce", "slam", "class"], 0.01)


def charts(at: AppTest) -> dict[str, dict]:
    """The plotly charts by their first trace's kind (race, clean, plane, ...)."""
    out = {}
    for el in at.get("plotly_chart"):
        spec = json.loads(el.proto.spec)
        kinds = [d.get("meta", {}).get("kind") for d in spec["data"]]
        name = "animation" if spec.get("frames") else "space" if "plane" in kinds else kinds[0]
        out[name] = spec
    return out


def run_app(recording) -> AppTest:
    at = AppTest.from_function(replay_app, args=(recording,), default_timeout=120)
    return at.run()


def test_slider_moves_every_method_in_sync(recording):
    at = run_app(recording)
    assert not at.exception
    slider = at.slider(key="t.replay.step")
    assert slider.value == recording.max_step == 25 and slider.max == 25
    slider.set_value(9).run()
    assert not at.exception
    shown = charts(at)
    order = label_order(recording, 0)
    conf = [d for d in shown["clean"]["data"] if d["meta"]["kind"] == "confidence"]
    assert [d["name"] for d in conf] == list(recording.names)
    for d, t in zip(conf, recording.traces):
        assert np.allclose(d["y"], t.probs[9, 0, order])
    race = shown["race"]
    assert [d["name"] for d in race["data"]] == list(recording.names)
    assert any(s.get("x0") == 9 for s in race["layout"]["shapes"])  # the current step is marked
    for t in recording.traces:
        flips = int(t.flips[9, 0])
        text = f"{t.name}: {flips} flip{'s' * (flips != 1)} at step 9"
        assert any(text in el.proto.imgs[0].caption for el in at.get("image")), text  # its image at that step


def test_second_image_and_the_animation(recording):
    at = run_app(recording)
    at.selectbox(key="t.replay.image").set_value(1).run()
    assert not at.exception
    shown = charts(at)
    race = shown["race"]
    for d, t in zip(race["data"], recording.traces):
        assert d["y"] == t.flips[:, 1].tolist()
    anim = shown["animation"]
    assert [f["name"] for f in anim["frames"]] == [str(s) for s in recording.traces[0].steps]
    assert [b["label"] for b in anim["layout"]["updatemenus"][0]["buttons"]] == ["▶ Play", "❚❚ Pause"]


def test_fig17_uses_the_rule_then_the_users_labels(recording):
    at = run_app(recording)
    picked = [recording.labels[i] for i in pick_labels(recording, 0)]
    pick = at.multiselect(key="t.replay.labels")
    assert pick.value == picked
    space = charts(at)["space"]
    assert space["layout"]["scene"]["xaxis"]["title"]["text"] == f"p({picked[0]})"
    others = [n for n in recording.labels if n not in picked][:3]
    pick.set_value(others).run()
    assert not at.exception
    space = charts(at)["space"]
    assert [space["layout"]["scene"][a]["title"]["text"] for a in ("xaxis", "yaxis", "zaxis")] == [
        f"p({n})" for n in others
    ]
    path = [d for d in space["data"] if d.get("meta", {}).get("kind") == "trajectory"][0]
    i = recording.labels.index(others[0])
    assert np.allclose(path["x"], recording.traces[0].probs[:, 0, i])
    pick.set_value(others[:2]).run()
    assert "Pick three labels" in " ".join(el.value for el in at.info)


def test_not_replayable_methods_are_said(recording):
    model = mlvis.create_model("demo-asl", device="cpu")
    x, _ = mlvis.data.demo_batch(1)
    only_runner = record(model, x, [("ml-deepfool", {"max_iter": 2})], 0.01)
    at = run_app(only_runner)
    assert not at.exception
    assert "No method of this run is replayable" in at.info[0].value
    assert any("not replayable" in c.value for c in at.caption)


def test_captions_name_the_flipped_labels_and_perturbations_share_one_factor(recording):
    from mlvis.app.replay_view import flipped_labels, perturbation_factor

    at = run_app(recording)
    last = recording.max_step
    captions = [el.proto.imgs[0].caption for el in at.get("image")]
    for t in recording.traces:
        crossed = (t.probs[-1, 0] >= recording.threshold) != recording.clean_pred[0]
        names = [recording.labels[i] for i in np.flatnonzero(crossed)]
        assert flipped_labels(recording, t.name, last) == names
        if names:
            assert any(c.startswith(f"{t.name}:") and f"({', '.join(names)})" in c for c in captions)
    toggle = at.toggle(key="t.replay.perturbation")
    factor = perturbation_factor(recording)
    assert f"× {factor:g}" in toggle.label and factor > 1
    first = [el.proto.imgs[0].url for el in at.get("image")]
    toggle.set_value(True).run()
    assert not at.exception
    second = [el.proto.imgs[0].url for el in at.get("image")]
    assert first[0] == second[0] and first[1:] != second[1:]  # the clean image stays, the others show deltas
