"""Attack replay (issue 13 section 2) and Fig. 17 (issue 12 section 4): the recorder on the engine's step hook,
the replay figures, the confidence space and `mlvis trajectory`."""

from __future__ import annotations

import json

import numpy as np
import pytest

import mlvis
from mlvis.analysis.trajectory import (
    MethodTrace,
    Recording,
    TrajectoryRecorder,
    pick_labels,
    record,
)
from mlvis.attacks import run_job
from mlvis.attacks.plan import evaluation_specs
from mlvis.metrics import flip_count
from mlvis.viz.confidence_space import confidence_space_figure
from mlvis.viz.replay import confidence_step_figure, label_order, race_figure

EPS = 0.01  # 25 steps of 1/2560
METHODS = ["bce", "slam", "class"]


@pytest.fixture(scope="module")
def model():
    return mlvis.create_model("demo-asl", device="cpu")


@pytest.fixture(scope="module")
def scenes():
    x, _ = mlvis.data.demo_batch(3)
    return x


@pytest.fixture(scope="module")
def specs(model):
    return evaluation_specs(METHODS, mlvis.profile(model), mlvis.correlations(model, direction="up"))


@pytest.fixture(scope="module")
def recorded(model, scenes, specs):
    """One recorded job, the same job without the hook, and the recording."""
    rec = TrajectoryRecorder(every=1)
    with_hook = run_job(model, scenes, specs, EPS, hook=rec)
    without = run_job(model, scenes, specs, EPS)
    return with_hook, without, rec.recording(with_hook)


def test_recording_changes_no_result(recorded):
    with_hook, without, _ = recorded
    for a, b in zip(with_hook, without):
        for field in ("adv", "adv_8bit", "adv_probs", "adv_probs_8bit", "flips", "flips_8bit", "steps", "linf"):
            assert np.array_equal(getattr(a, field), getattr(b, field)), field


def test_final_step_is_the_attack_result_bit_for_bit(recorded):
    _, without, r = recorded
    assert r.names == tuple(res.name for res in without)
    for t, res in zip(r.traces, without):
        assert t.steps[0] == 0 and t.final_step == int(res.steps[0].max()) == 25
        assert np.array_equal(t.probs[-1], res.adv_probs[0])
        assert np.array_equal(t.flips[-1], res.flips[0])
        assert np.array_equal(t.probs[0], res.clean_probs) and not t.flips[0].any()
        assert np.array_equal(t.images[-1], np.round(res.adv[0] * 255).astype(np.uint8))
        assert np.array_equal(t.images[0], np.round(res.clean * 255).astype(np.uint8))


def test_flips_so_far_follow_equation_3(recorded):
    _, _, r = recorded
    for t in r.traces:
        assert t.probs.shape == (26, 3, 24) and np.isfinite(t.probs).all()
        assert np.array_equal(t.flips, flip_count(t.probs, r.clean_pred, r.threshold))
    assert any(t.flips[-1].sum() > 0 for t in r.traces)  # something moved: the trajectories are not flat


def test_intermediate_steps_are_the_loops_own_logits(model, scenes):
    """With a step that is a power of two the eps-projection never moves a snapshot, so the engine reuses the
    loop's logits for a snapshot at step 10: the recorded step 10 holds those very logits (their sigmoid may
    differ in the last bit only: torch's vectorised sigmoid rounds by an element's place in the tensor)."""
    a = 2.0**-10
    rec = TrajectoryRecorder(every=1)
    res = run_job(model, scenes, ["bce", "linear"], 24 * a, alpha=a, hook=rec)
    r = rec.recording(res)
    ref = run_job(model, scenes, ["bce", "linear"], [10 * a, 24 * a], alpha=a)
    for t, rr in zip(r.traces, ref):
        np.testing.assert_array_max_ulp(t.probs[10], rr.adv_probs[0], maxulp=1)
        assert np.abs(t.probs[11] - rr.adv_probs[0]).max() > 1e-4  # the next step is far away
        assert np.array_equal(t.images[t.image_steps.tolist().index(10)], np.round(rr.adv[0] * 255).astype(np.uint8))
        assert not np.array_equal(t.probs[10], t.probs[-1])


def test_recording_adds_no_model_call(model, scenes, specs):
    """The records are the run's own: the same forward passes over the same number of images."""
    calls: list[int] = []
    handle = model.register_forward_hook(lambda mod, inp, out: calls.append(inp[0].shape[0]))
    try:
        run_job(model, scenes, specs, EPS)
        plain = list(calls)
        calls.clear()
        rec = TrajectoryRecorder(every=1)
        rec.recording(run_job(model, scenes, specs, EPS, hook=rec))
        assert calls == plain
    finally:
        handle.remove()


def test_every_records_a_subset_of_the_same_values(model, scenes, specs, recorded):
    _, _, full = recorded
    rec = TrajectoryRecorder(every=7)
    sparse = rec.recording(run_job(model, scenes, specs, EPS, hook=rec))
    for t, f in zip(sparse.traces, full.traces):
        assert t.steps.tolist() == [0, 7, 14, 21, 25]
        assert np.array_equal(t.probs, f.probs[t.steps])
        assert np.array_equal(t.flips_at(20), f.flips[14])  # held at the last recorded step


def test_images_are_memory_bounded(model, scenes, specs):
    per_step = 3 * 3 * 64 * 64  # three images of 3 x 64 x 64 bytes
    budget = 3 * 8 * per_step  # room for 8 kept steps per method
    rec = TrajectoryRecorder(every=1, image_budget=budget)
    r = rec.recording(run_job(model, scenes, specs, EPS, hook=rec))
    kept = sum(t.images.nbytes for t in r.traces)
    assert kept <= budget and r.image_every > 1
    for t in r.traces:
        assert t.image_steps[0] == 0 and t.image_steps[-1] == 25
        assert all(s % r.image_every == 0 for s in t.image_steps[:-1])
        assert t.probs.shape[0] == 26  # the confidences stay at every step
    rec = TrajectoryRecorder(every=1, image_budget=0)
    r = rec.recording(run_job(model, scenes, specs, EPS, hook=rec))
    assert r.image_every == 0 and all(t.images is None and t.image_at(3) is None for t in r.traces)


def test_runner_methods_are_named_not_replayable(model, scenes):
    r = record(model, scenes[:1], ["bce", ("ml-deepfool", {"max_iter": 2})], EPS)
    assert r.names == ("BCE",)
    ((name, why),) = r.not_replayable
    assert name.startswith("ML-DeepFool") and "not replayable" in why and why.endswith(".")


def test_bad_inputs_are_sentences(model, scenes):
    with pytest.raises(ValueError, match="one budget"):
        record(model, scenes[:1], ["bce"], [0.004, 0.008])
    with pytest.raises(ValueError, match="every must be"):
        TrajectoryRecorder(every=0)
    with pytest.raises(ValueError, match="hook must be a StepHook"):
        run_job(model, scenes[:1], ["bce"], EPS, hook=print)
    with pytest.raises(ValueError, match="did not watch"):
        TrajectoryRecorder().recording(run_job(model, scenes[:1], ["bce"], EPS))
    with pytest.raises(ValueError, match="not an mlvis trajectory"):
        Recording.from_dict({"format": "something else"})


def test_json_round_trip(recorded, tmp_path):
    _, _, r = recorded
    back = Recording.load(r.save(tmp_path / "rec.json"))
    assert back.names == r.names and back.labels == r.labels and back.eps == r.eps
    for a, b in zip(back.traces, r.traces):
        assert np.array_equal(a.probs, b.probs) and np.array_equal(a.flips, b.flips) and a.images is None
    doc = r.to_dict()
    doc["methods"][0]["probs"] = doc["methods"][0]["probs"][:-1]  # one step short
    with pytest.raises(ValueError, match="damaged or incomplete"):
        Recording.from_dict(doc)
    with pytest.raises(ValueError, match="damaged or incomplete"):
        Recording.from_dict({**r.to_dict(), "labels": None})
    full = Recording.from_dict(json.loads(r.to_json(images=True)))
    assert np.array_equal(full.clean, r.clean)
    assert all(np.array_equal(a.images, b.images) for a, b in zip(full.traces, r.traces))


# ------------------------------------------------------------------------------------ constructed cases


def constructed(finals: list[list[float]], clean: list[float], threshold: float = 0.5) -> Recording:
    """A recording of one image with one trace per row of ``finals`` (two steps: clean, final)."""
    c = np.asarray(clean, np.float32)[None]
    traces = []
    for i, f in enumerate(finals):
        probs = np.stack([c, np.asarray(f, np.float32)[None]])
        flips = flip_count(probs, c >= threshold, threshold)
        traces.append(MethodTrace(f"m{i}", f"m{i}", np.array([0, 4]), probs, flips, np.zeros(0, np.int64), None))
    return Recording("toy", tuple("abcde"), threshold, 0.01, "linf", 1, 0, np.zeros((1, 3, 1, 1), np.uint8), c,
                     tuple(traces))  # fmt: skip


def test_pick_labels_by_the_stated_rule():
    clean = [0.9, 0.1, 0.2, 0.3, 0.45]
    finals = [
        [0.4, 0.6, 0.25, 0.31, 0.55],  # flips a, b, e
        [0.6, 0.7, 0.21, 0.32, 0.49],  # flips b only
    ]
    r = constructed(finals, clean)
    # b: 2 methods; a and e: 1 each, a moved 0.4 on average towards its target, e 0.045
    assert pick_labels(r) == (1, 0, 4)
    assert pick_labels(constructed([clean], clean)) == (0, 1, 2)  # nothing moved: label order
    with pytest.raises(ValueError, match="needs 6 labels; this model has 5"):
        pick_labels(r, count=6)


# ------------------------------------------------------------------------------------ figures


def test_race_figure_is_the_recording(recorded):
    _, _, r = recorded
    fig = race_figure(r, image=1, step=12)
    lines = [d for d in fig.data if d.name in r.names]
    assert [d.name for d in lines] == list(r.names)
    for d, t in zip(lines, r.traces):
        assert list(d.x) == t.steps.tolist() and list(d.y) == t.flips[:, 1].tolist()
    assert fig.layout.xaxis.title.text and fig.layout.yaxis.title.text
    assert any(s.x0 == 12 for s in fig.layout.shapes)  # the current step is marked
    mean = race_figure(r)
    assert np.allclose(mean.data[0].y, r.traces[0].flips.mean(1))


def test_confidence_step_figure_is_the_recording(recorded):
    _, _, r = recorded
    fig = confidence_step_figure(r, step=17, image=0)
    order = label_order(r, 0)
    assert [d.name for d in fig.data] == ["clean", *r.names]
    assert list(fig.data[0].x) == [r.labels[i] for i in order]
    assert np.allclose(fig.data[0].y, r.clean_probs[0, order])
    for d, t in zip(fig.data[1:], r.traces):
        assert list(d.x) == [r.labels[i] for i in order]
        assert np.allclose(d.y, t.probs[17, 0, order])
        crossed = (t.probs[17, 0, order] >= r.threshold) != r.clean_pred[0, order]
        assert [s == "x" for s in d.marker.symbol] == crossed.tolist()  # a crossed label is marked
    assert any(s.y0 == r.threshold for s in fig.layout.shapes)  # the threshold line
    assert fig.layout.xaxis.title.text and fig.layout.yaxis.title.text


def test_confidence_space_is_the_recording(recorded):
    _, _, r = recorded
    labels = pick_labels(r, 0)
    fig = confidence_space_figure(r, image=0)
    paths = [d for d in fig.data if d.type == "scatter3d" and d.name in r.names]
    assert len(paths) == len(r.traces)
    for d, t in zip(paths, r.traces):
        p = t.probs[:, 0][:, list(labels)]
        assert np.allclose(d.x, p[:, 0]) and np.allclose(d.y, p[:, 1]) and np.allclose(d.z, p[:, 2])
    scene = fig.layout.scene
    assert [scene.xaxis.title.text, scene.yaxis.title.text, scene.zaxis.title.text] == [
        f"p({r.labels[i]})" for i in labels
    ]
    planes = [d for d in fig.data if d.type == "surface"]
    assert len(planes) == 3  # the three threshold planes
    target = [d for d in fig.data if d.name == "target corner"][0]
    assert [target.x[0], target.y[0], target.z[0]] == [float(not r.clean_pred[0, i]) for i in labels]


def test_cli_trajectory_writes_json_and_html(tmp_path, capsys):
    from mlvis.cli import main

    out = tmp_path / "rec.json"
    assert main(["trajectory", "--model", "demo-asl", "--scene", "2", "--eps", "0.005",
                 "--methods", "bce,slam", "--out", str(out)]) == 0  # fmt: skip
    r = Recording.load(out)
    assert r.names == ("BCE", "SLAM(q=0.5)") and r.eps == 0.005 and r.num_images == 1
    model = mlvis.create_model("demo-asl", device="cpu")
    x, _ = mlvis.data.demo_batch(3)
    ref = record(model, x[2:3], ["bce", "slam"], 0.005)
    assert all(np.array_equal(a.probs, b.probs) for a, b in zip(r.traces, ref.traces))
    html = tmp_path / "fig17.html"
    assert main(["trajectory", "--model", "demo-asl", "--scene", "2", "--eps", "0.005",
                 "--methods", "bce", "--out", str(html)]) == 0  # fmt: skip
    text = html.read_text()
    assert "scatter3d" in text and "plotly" in text.lower()
    assert main(["trajectory", "--model", "demo-asl", "--eps", "0.005", "--out", str(tmp_path / "x.txt")]) == 2
    assert "json or .html" in capsys.readouterr().err


def test_a_lab_recipe_records_through_run_recipe(model):
    """The Lab's wiring: its recipe's one job with the recorder as hook gives the same results, replayable."""
    from mlvis import recipe as rc
    from mlvis.analysis.trajectory import TrajectoryRecorder

    recipe = rc.Recipe("demo-asl", ("bce", "slam", "class"), 0.006, rc.ImageSource(start=4, count=2))
    x = rc.demo_images(recipe.images, (64, 64))
    plain = rc.run_recipe(recipe, model, x)
    recorder = TrajectoryRecorder(every=1)
    results = rc.run_recipe(recipe, model, x, hook=recorder)
    r = recorder.recording(results)
    assert r.names == ("BCE", "SLAM", "CLASS") == tuple(res.name for res in plain)
    for t, res in zip(r.traces, plain):
        assert np.array_equal(t.probs[-1], res.adv_probs[0]) and np.array_equal(t.flips[-1], res.flips[0])


def test_cli_trajectory_on_an_image_file(tmp_path, capsys):
    from PIL import Image

    from mlvis.cli import main

    x, _ = mlvis.data.demo_batch(3)
    folder = tmp_path / "pics"
    folder.mkdir()
    for i in (1, 2):  # b.png is the second file: --scene 1
        arr = (x[i].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        Image.fromarray(arr).save(folder / f"{'ab'[i - 1]}.png")
    out = tmp_path / "rec.json"
    args = ["trajectory", "--model", "demo-asl", "--image-dir", str(folder), "--scene", "1", "--eps", "0.004"]
    fig = tmp_path / "fig17.html"
    assert main([*args, "--methods", "bce", "--out", str(out), "--keep-images", "--figure", str(fig)]) == 0
    assert "scatter3d" in fig.read_text()
    r = Recording.load(out)
    ref = record(mlvis.create_model("demo-asl", device="cpu"), x[2:3], ["bce"], 0.004)
    assert np.array_equal(r.traces[0].probs, ref.traces[0].probs) and r.traces[0].images is not None
    assert "image 1 of" in capsys.readouterr().out
    assert main([*args[:6], "5", *args[7:], "--out", str(out)]) == 2
    assert "holds 2 image(s)" in capsys.readouterr().err
