"""Property tests over every registered attack (advertorch-style) plus exact checks on an analytic model."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from attack_models import LinearMultiLabel, TinyConvNet, grid_images
from hypothesis import given, settings
from hypothesis import strategies as st

import mlvis
from mlvis.attacks import (
    DEFAULT_ALPHA,
    AttackResult,
    AttackSpec,
    LoopPlan,
    RunOutput,
    equal_volume_l2_radius,
    list_attacks,
    load_npy,
    load_png16,
    quantize_8bit,
    run_job,
    save_npy,
    save_png16,
    stirling_l2_radius,
)
from mlvis.attacks import methods as methods_mod

ALPHA = DEFAULT_ALPHA
LINEAR, CONV = LinearMultiLabel(), TinyConvNet()
MODELS = {"linear": (LINEAR, 8), "conv": (CONV, 16)}
EPS = {"linf": [0.002, 0.006, 0.015], "l2": [0.1, 0.3, 0.6]}


def opts(method: str, model=CONV) -> dict:
    """Options a method needs to run at all (the attack list is data, as in foolbox's AttackTestTarget)."""
    c = len(model.labels)
    needs = {
        "slam": {"p": 0.4, "q": 0.5},
        "class": {"correlations": np.random.default_rng(0).normal(size=(c, c)), "length": 2, "gamma": 0.5},
        "random": {"length": 2},
        "closest": {"k": 2},
        "single-label": {"labels": 0},
    }
    return dict(needs.get(method, {}))


def run(model, x, method, eps, **kw):
    return mlvis.attack(model, x, method, eps, **opts(method, model), **kw)


# ------------------------------------------------------------------ properties of every attack


@pytest.mark.parametrize("norm", ["linf", "l2"])
@pytest.mark.parametrize("model_name", list(MODELS))
@pytest.mark.parametrize("method", list_attacks())
def test_output_in_box_and_ball_and_input_untouched(method, model_name, norm):
    model, side = MODELS[model_name]
    x = grid_images(4, side, seed=3)
    before = x.clone()
    res = run(model, x, method, EPS[norm], norm=norm)
    assert torch.equal(x, before)
    assert res.adv.shape == (3, 4, 3, side, side) and res.adv.dtype == np.float32
    assert res.adv.min() >= 0 and res.adv.max() <= 1
    diff = res.adv.astype(np.float64) - x.numpy()[None]
    eps = np.asarray(EPS[norm])[:, None]
    if norm == "linf":
        assert (np.abs(diff).reshape(3, 4, -1).max(-1) <= eps + 1e-6).all()
    else:
        assert (np.sqrt((diff.reshape(3, 4, -1) ** 2).sum(-1)) <= eps + 1e-6).all()
    own = (res.adv.astype(np.float64) - res.clean[None]).reshape(3, 4, -1)
    np.testing.assert_allclose(res.linf, np.abs(own).max(-1), rtol=1e-12)
    np.testing.assert_allclose(res.l2, np.sqrt((own**2).sum(-1)), rtol=1e-12)
    assert (res.flips >= 0).all() and (res.flips <= len(model.labels)).all()
    if method == "single-label":  # its target is label 0 pushed up, not the maximum-flip target
        assert (res.adv_probs[-1][:, 0] > res.clean_probs[:, 0]).mean() > 0.5
        return
    # the attack changes the confidences towards the target on average
    t = 1.0 - res.clean_pred
    gap_clean = np.abs(t - res.clean_probs).sum(-1)
    gap_adv = np.abs(t[None] - res.adv_probs).sum(-1)
    assert (gap_adv[-1] < gap_clean).mean() > 0.5


@pytest.mark.parametrize("method", list_attacks())
def test_numpy_input_untouched(method):
    x = grid_images(2, 8).numpy()
    before = x.copy()
    res = run(LINEAR, x, method, 0.01)
    assert np.array_equal(x, before)
    res.clean[:] = 0  # the result owns its arrays
    assert np.array_equal(x, before)


@pytest.mark.parametrize("norm", ["linf", "l2"])
@pytest.mark.parametrize("model_name", list(MODELS))
@pytest.mark.parametrize("method", list_attacks())
def test_batch_equals_each_image_alone(method, model_name, norm):
    model, side = MODELS[model_name]
    x = grid_images(5, side, seed=4)
    eps = EPS[norm][1:]
    batch = run(model, x, method, eps, norm=norm)
    for i in range(len(x)):
        alone = run(model, x[i : i + 1], method, eps, norm=norm)
        np.testing.assert_allclose(batch.adv[:, i], alone.adv[:, 0], rtol=0, atol=1e-6)
        np.testing.assert_array_equal(batch.flips[:, i], alone.flips[:, 0])
        np.testing.assert_array_equal(batch.steps[:, i], alone.steps[:, 0])


@pytest.mark.parametrize("norm", ["linf", "l2"])
@pytest.mark.parametrize("model_name", list(MODELS))
@pytest.mark.parametrize("method", list_attacks())
def test_eps_list_equals_separate_scalar_runs(method, model_name, norm):
    model, side = MODELS[model_name]
    x = grid_images(3, side, seed=5)
    eps = EPS[norm]
    many = run(model, x, method, eps, norm=norm)
    for k, e in enumerate(eps):
        one = run(model, x, method, e, norm=norm)
        assert one.adv.shape[0] == 1
        np.testing.assert_allclose(many.adv[k], one.adv[0], rtol=0, atol=1e-6)
        # smaller budgets reuse the loop's own logits: they must equal a fresh evaluation
        np.testing.assert_allclose(many.adv_probs[k], one.adv_probs[0], rtol=0, atol=1e-6)
        np.testing.assert_array_equal(many.flips[k], one.flips[0])
        np.testing.assert_array_equal(many.flips_8bit[k], one.flips_8bit[0])


@pytest.mark.parametrize("method", list_attacks())
def test_deterministic_for_a_seed(method):
    x = grid_images(3, 16, seed=6)
    a = run(CONV, x, method, [0.004, 0.01], seed=7)
    b = run(CONV, x, method, [0.004, 0.01], seed=7)
    np.testing.assert_array_equal(a.adv, b.adv)
    np.testing.assert_array_equal(a.adv_probs, b.adv_probs)
    assert a.config == b.config and a.config["seed"] == 7


def test_one_multi_method_job_equals_separate_runs():
    x = grid_images(4, 16, seed=8)
    eps = [0.003, 0.008, 0.012]
    specs = [AttackSpec(m, opts(m)) for m in list_attacks()]
    specs.append(AttackSpec("slam", {"p": [0.1, 0.5, 0.9], "q": 0.5}, name="slam-p-per-eps"))
    specs.append(AttackSpec("bce", {"norm": "l2", "alpha": 2 * ALPHA}, name="bce-l2"))
    joint = run_job(CONV, x, specs, [0.003, 0.008, 0.012])
    assert [r.name for r in joint] == [s.name or s.method for s in specs]
    for spec, res in zip(specs, joint):
        alone = mlvis.attack(CONV, x, spec.method, eps, **spec.options)
        np.testing.assert_allclose(res.adv, alone.adv, rtol=0, atol=1e-6)
        np.testing.assert_array_equal(res.flips, alone.flips)
        np.testing.assert_array_equal(res.steps, alone.steps)
        assert res.norm == spec.options.get("norm", "linf")


# ------------------------------------------------------------------ exact prefixes and step counts


def test_bce_eps_list_is_an_exact_prefix_of_one_trajectory():
    """DESIGN.md: with a fixed alpha the smaller-eps attack is exactly the prefix of the larger one."""
    x = grid_images(4, 8, seed=9)
    eps = [0.001, 1 / 256, 0.006, 0.0061, 0.02]  # 1/256 = 10 alpha exactly; 0.006 and 0.0061 share n
    many = mlvis.attack(LINEAR, x, "bce", eps)
    for k, e in enumerate(eps):
        one = mlvis.attack(LINEAR, x, "bce", e)
        np.testing.assert_array_equal(many.adv[k], one.adv[0])
        assert (many.steps[k] == max(1, math.floor(e / ALPHA + 1e-9))).all()


def test_step_counts_and_eps_below_alpha():
    x = grid_images(2, 8, seed=10, margin=2)
    res = mlvis.attack(LINEAR, x, "bce", [0.0, ALPHA / 4, ALPHA, 25 * ALPHA])
    np.testing.assert_array_equal(res.steps[:, 0], [1, 1, 1, 25])
    np.testing.assert_array_equal(res.adv[0], x.numpy().astype(np.float32))  # eps 0: nothing moves
    # eps below alpha: one step of size alpha, cut to eps by the projection
    np.testing.assert_allclose(np.abs(res.adv[1] - x.numpy()), ALPHA / 4, atol=1e-7)
    l2 = mlvis.attack(LINEAR, x, "bce", [0.5], norm="l2")
    assert l2.steps[0, 0] == math.floor(0.5 / (ALPHA * math.sqrt(192)) + 1e-9)


# ------------------------------------------------------------------ analytic linear model


def _hand_grad(model, x, loss, weights=None, mix=None):
    """d loss / d x for logits = W x + b, written out by hand."""
    w_mat, b = model.weight.numpy(), model.bias.numpy()
    flat = x.reshape(len(x), -1)
    z = flat @ w_mat.T + b
    y = 1 / (1 + np.exp(-z))
    t = (y < 0.5).astype(float)  # maximum-flip target: 1 - prediction
    dz_bce = y - t
    dz_lin = (1 - 2 * t) * y * (1 - y)
    dz = {"bce": dz_bce, "linear": dz_lin}.get(loss)
    if loss == "slam":
        dz = mix * dz_bce + (1 - mix) * dz_lin
    if weights is not None:
        dz = dz * weights
    return (dz @ w_mat).reshape(x.shape)


@pytest.mark.parametrize("loss", ["bce", "linear", "slam"])
def test_first_two_steps_equal_hand_computed(loss):
    x = grid_images(3, 8, seed=11, margin=3).numpy()  # margin: the box never binds in two steps
    kw = {"p": 0.6, "q": 0.5} if loss == "slam" else {}
    g1 = _hand_grad(LINEAR, x, loss, mix=0.3)
    x1 = x - ALPHA * np.sign(g1)
    one = mlvis.attack(LINEAR, torch.from_numpy(x), loss, ALPHA, **kw)
    np.testing.assert_allclose(one.adv[0], x1, atol=1e-7)
    # second step: momentum of per-sample L1-normalised gradients
    g2 = _hand_grad(LINEAR, x1, loss, mix=0.3)
    n1 = np.abs(g1).reshape(3, -1).sum(1)[:, None, None, None]
    n2 = np.abs(g2).reshape(3, -1).sum(1)[:, None, None, None]
    x2 = x1 - ALPHA * np.sign(g1 / n1 + g2 / n2)
    two = mlvis.attack(LINEAR, torch.from_numpy(x), loss, 2 * ALPHA, **kw)
    np.testing.assert_allclose(two.adv[0], x2, atol=1e-7)


def test_l2_first_step_equals_hand_computed():
    x = grid_images(2, 8, seed=12, margin=20).numpy()
    g = _hand_grad(LINEAR, x, "bce")
    step = ALPHA * math.sqrt(x[0].size)
    expect = x - step * g / np.sqrt((g.reshape(2, -1) ** 2).sum(1))[:, None, None, None]
    res = mlvis.attack(LINEAR, torch.from_numpy(x), "bce", step, norm="l2")
    np.testing.assert_allclose(res.adv[0], expect, atol=1e-7)
    assert np.allclose(res.l2[0], step, rtol=1e-5)


def test_label_weights_target_one_label():
    x = grid_images(2, 8, seed=13, margin=3).numpy()
    w = np.zeros(5)
    w[2] = 1.0
    res = mlvis.attack(LINEAR, torch.from_numpy(x), "bce", ALPHA, weights=w)
    g = _hand_grad(LINEAR, x, "bce", weights=w)
    np.testing.assert_allclose(res.adv[0], x - ALPHA * np.sign(g), atol=1e-7)
    # per-sample weights (N, C): image 1 gets no weight at all, so it does not move
    w2 = np.stack([w, np.zeros(5)])
    res2 = mlvis.attack(LINEAR, torch.from_numpy(x), "bce", 0.01, weights=w2)
    np.testing.assert_array_equal(res2.adv[0, 1], x[1].astype(np.float32))
    assert np.isfinite(res2.adv).all()


def test_zero_gradient_gives_no_nan():
    model = LinearMultiLabel()
    with torch.no_grad():
        model.weight.zero_()
    x = grid_images(2, 8)
    res = mlvis.attack(model, x, "bce", 0.01)
    assert np.isfinite(res.adv).all()
    np.testing.assert_array_equal(res.adv[0], x.numpy().astype(np.float32))


# ------------------------------------------------------------------ plug-in methods


def test_registered_methods_plug_into_the_same_job(monkeypatch):
    """An eps-dependent method (per-(eps, image) weights from clean probs) and a method with its own runner."""

    def closest_label(ctx, *, extra=0):
        k, n, c = len(ctx.eps), ctx.num_images, ctx.num_labels
        closeness = (ctx.clean_probs - ctx.threshold).abs()
        w = torch.zeros(k, n, c, dtype=torch.float64)
        for j, e in enumerate(ctx.eps):  # a bigger budget targets more labels
            m = min(c, 1 + int(e > 0.005) + extra)
            w[j].scatter_(1, closeness.topk(m, dim=1, largest=False).indices, 1.0)
        return LoopPlan("bce", weights=w)

    def noise(ctx):
        g = torch.rand((len(ctx.eps),) + tuple(ctx.images.shape), generator=ctx.generator, dtype=torch.float64)
        e = torch.as_tensor(ctx.eps).view(-1, 1, 1, 1, 1)
        adv = (ctx.images.unsqueeze(0) + (2 * g - 1) * e).clamp(0, 1)
        return RunOutput(adv, np.zeros((len(ctx.eps), ctx.num_images), np.int64))

    monkeypatch.setitem(methods_mod._METHODS, "closest", None)
    monkeypatch.setitem(methods_mod._METHODS, "noise", None)
    methods_mod.register_method("closest")(closest_label)
    methods_mod.register_method("noise")(noise)
    assert {"closest", "noise"} <= set(list_attacks())
    x = grid_images(3, 16, seed=14)
    eps = [0.003, 0.009]
    joint = run_job(CONV, x, ["closest", "bce", "noise"], eps, seed=3)
    alone = mlvis.attack(CONV, x, "closest", eps)
    np.testing.assert_allclose(joint[0].adv, alone.adv, atol=1e-6)
    assert (joint[0].steps == np.array([[7], [23]])).all()
    again = mlvis.attack(CONV, x, "noise", eps, seed=3)
    np.testing.assert_array_equal(joint[2].adv, again.adv)
    assert (np.abs(joint[2].adv - x.numpy()).max(axis=(2, 3, 4)) <= np.array(eps)[:, None] + 1e-6).all()
    with pytest.raises(ValueError, match="accepts: extra"):
        mlvis.attack(CONV, x, "closest", eps, bogus=1)


# ------------------------------------------------------------------ batching machinery


def test_chunking_to_a_tiny_memory_budget_changes_nothing():
    x = grid_images(5, 16, seed=15)
    specs = ["bce", AttackSpec("slam", {"p": [0.2, 0.7]})]
    big = run_job(CONV, x, specs, [0.004, 0.01])
    small = run_job(CONV, x, specs, [0.004, 0.01], memory_budget=1)
    for a, b in zip(big, small):
        np.testing.assert_allclose(a.adv, b.adv, atol=1e-6)
        np.testing.assert_array_equal(a.flips, b.flips)


def test_progress_is_monotone_and_complete():
    calls = []
    x = grid_images(3, 8)
    mlvis.attack(LINEAR, x, "slam", [0.002, 0.004], p=[0.1, 0.2], progress=lambda d, t: calls.append((d, t)))
    done = [d for d, _ in calls]
    assert done == sorted(done) and done[-1] == calls[-1][1] == 3 * (5 + 10)
    assert len(calls) == 10  # one call per loop step


def test_bf16_autocast_option_runs_and_keeps_the_ball():
    x = grid_images(2, 16, seed=16).float()
    model = TinyConvNet().float()
    res = mlvis.attack(model, x, "bce", [0.004, 0.01], autocast=True)
    assert res.config["autocast"] is True
    assert (res.linf <= np.array([[0.004], [0.01]]) + 1e-6).all()


# ------------------------------------------------------------------ 8-bit awareness and export


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_8bit_images_stay_in_the_ball_and_box(norm):
    x = grid_images(4, 16, seed=17)
    eps = EPS[norm]
    res = mlvis.attack(CONV, x, "linear", eps, norm=norm)
    q = res.adv_8bit.astype(np.float64) / 255
    diff = (q - x.numpy()[None]).reshape(len(eps), 4, -1)
    size = np.abs(diff).max(-1) if norm == "linf" else np.sqrt((diff**2).sum(-1))
    assert (size <= np.asarray(eps)[:, None] + 1e-6).all()
    assert res.adv_8bit.dtype == np.uint8
    assert (np.abs(q - res.adv) <= 1 / 255 + 1e-7).all()  # at most one level from the float image


@settings(max_examples=40, deadline=None)
@given(
    st.floats(0, 1, allow_nan=False),
    st.floats(-0.05, 0.05, allow_nan=False),
    st.floats(0, 0.05, allow_nan=False),
)
def test_8bit_rounding_rule_linf(clean, move, eps):
    c = np.full((1, 3, 2, 2), clean, np.float32)
    a = np.clip(c + np.clip(move, -eps, eps), 0, 1).astype(np.float32)
    q = quantize_8bit(a, c, eps).astype(np.float64) / 255
    assert q.min() >= 0 and q.max() <= 1
    levels_in_ball = np.ceil((max(clean - eps, 0)) * 255 - 1e-4) <= np.floor(min(clean + eps, 1) * 255 + 1e-4)
    if levels_in_ball:
        assert (np.abs(q - c) <= eps + 1e-6).all()
        assert (np.abs(q - a) <= 1 / 255 + 1e-6).all()
    else:  # no 8-bit level inside the ball: the clean pixel's own level, the least excursion
        assert (q == np.round(clean * 255) / 255).all()


def test_8bit_rounding_rounds_toward_clean_at_the_edge():
    clean = np.full((1, 3, 1, 1), 100 / 255)
    adv = clean + 1.6 / 255  # eps = 1.6 levels: nearest (102) leaves the ball, 101 stays inside
    assert (quantize_8bit(adv, clean, 1.6 / 255) == 101).all()
    assert (quantize_8bit(adv, clean, 2.0 / 255) == 102).all()
    q = quantize_8bit(adv, clean, 1.6 / 255 * math.sqrt(3) * 0.99, norm="l2")
    assert (q == 101).all()


def test_lossless_export_round_trips(tmp_path):
    from PIL import Image

    x = grid_images(2, 8, seed=18)
    res = mlvis.attack(LINEAR, x, "bce", [0.002, 0.01])
    png = save_png16(tmp_path / "a.png", res.adv[1, 0])
    back = load_png16(png)
    expect = (np.round(res.adv[1, 0].astype(np.float64) * 65535) / 65535).astype(np.float32)
    np.testing.assert_array_equal(back, expect)
    assert np.abs(back - res.adv[1, 0]).max() <= 0.5 / 65535 + 1e-7  # 1/131 of alpha at most
    with Image.open(png) as im:  # a real PNG that other readers open
        assert im.size == (8, 8)
    np.testing.assert_array_equal(load_npy(save_npy(tmp_path / "a.npy", res.adv[1, 0])), res.adv[1, 0])
    paths = res.export(tmp_path / "out", "npy")
    assert len(paths) == 4
    np.testing.assert_array_equal(load_npy(paths[3]), res.adv[1, 1])
    assert len(res.export(tmp_path / "png", "png16")) == 4
    saved = AttackResult.load(res.save(tmp_path / "r.npz"))
    np.testing.assert_array_equal(saved.adv, res.adv)
    assert saved.config == res.config and saved.labels == res.labels
    assert json.loads(res.to_json())["config"]["method"] == "bce"


# ------------------------------------------------------------------ appendix C


@pytest.mark.parametrize("d", [1, 2, 3, 10])
def test_equal_volume_radius_small_dims(d):
    eps = 0.37
    r = equal_volume_l2_radius(eps, d)
    ball = math.pi ** (d / 2) / math.gamma(d / 2 + 1) * r**d
    assert ball == pytest.approx((2 * eps) ** d, rel=1e-12)
    assert equal_volume_l2_radius(eps, 1) == pytest.approx(eps)


def test_equal_volume_radius_paper_case():
    d = 448 * 448 * 3
    exact = equal_volume_l2_radius(1.0, d)
    assert exact == pytest.approx(375.523, abs=1e-3)
    assert stirling_l2_radius(1.0, d) == pytest.approx(exact, rel=1e-9)  # Stirling is accurate here
    assert 375.73 - exact == pytest.approx(0.21, abs=0.01)  # the paper rounds pi * e to 8.53


# ------------------------------------------------------------------ results and errors


def test_result_table_and_config():
    x = grid_images(3, 8)
    res = mlvis.attack(LINEAR, x, "slam", [0.002, 0.004], p=[0.2, 0.4])
    df = res.to_frame()
    assert list(df.columns) == [
        "method", "eps", "image", "flips", "flips_8bit", "linf", "l2", "psnr", "ssim", "steps"
    ]  # fmt: skip
    assert len(df) == 6 and (df["method"] == "slam").all()
    json.dumps(res.config)
    assert res.config["options"] == {"p": [0.2, 0.4], "q": 0.5}
    assert res.index(0.004) == 1
    again = mlvis.attack(LINEAR, x, res.config["method"], res.config["eps"], **res.config["options"])
    np.testing.assert_array_equal(again.adv, res.adv)
    assert res.clean_pred.shape == (3, 5) and res.adv_pred.shape == (2, 3, 5)
    np.testing.assert_array_equal(res.flips, (res.adv_pred != res.clean_pred).sum(-1))


@pytest.mark.parametrize(
    ("images", "eps", "kw", "match"),
    [
        (grid_images(1, 8) * 2, 0.01, {}, r"\[0, 1\]"),
        (grid_images(1, 8)[:, :2], 0.01, {}, "shape"),
        (torch.zeros(2, 3, 8, 8, dtype=torch.uint8), 0.01, {}, "floating point"),
        (grid_images(1, 8), -0.1, {}, ">= 0"),
        (grid_images(1, 8), float("nan"), {}, "finite"),
        (grid_images(1, 8), [], {}, "non-empty"),
        (grid_images(1, 8), 0.01, {"method": "nope"}, "known methods: bce, .*linear, .*slam"),
        (grid_images(1, 8), 0.01, {"norm": "l3"}, "known norms: linf, l2"),
        (grid_images(1, 8), 0.01, {"weights": np.ones(4)}, r"weights must have shape"),
        (grid_images(1, 8), 0.01, {"alpha": 0}, "alpha"),
        (grid_images(1, 8), 0.01, {"method": "slam"}, "needs exactly one of p"),
        (grid_images(1, 8), 0.01, {"method": "slam", "p": 1.5}, r"\[0, 1\]"),
        (grid_images(1, 8), [0.01, 0.02], {"method": "slam", "p": [0.1, 0.2, 0.3]}, "one value per eps"),
        (grid_images(1, 8), 0.01, {"gamma": 1}, "accepts: weights"),
    ],
)
def test_clear_errors(images, eps, kw, match):
    kw = dict(kw)
    method = kw.pop("method", "bce")
    with pytest.raises(ValueError, match=match):
        mlvis.attack(LINEAR, images, method, eps, **kw)


def test_training_mode_model_is_refused():
    model = LinearMultiLabel().train()
    with pytest.raises(ValueError, match="training mode"):
        mlvis.attack(model, grid_images(1, 8), "bce", 0.01)


# ------------------------------------------------------------------ a real demo model


def test_demo_model_job_matches_separate_runs():
    model = mlvis.create_model("demo-asl", device="cpu")
    x, _ = mlvis.data.demo_batch(3, seed=1)
    eps = [0.002, 0.006]
    specs = ["bce", "linear", AttackSpec("slam", {"p": [0.2, 0.6]})]
    joint = run_job(model, x, specs, eps)
    for spec, res in zip(["bce", "linear", "slam"], joint):
        alone = mlvis.attack(model, x, spec, eps, **({"p": [0.2, 0.6]} if spec == "slam" else {}))
        np.testing.assert_allclose(res.adv, alone.adv, atol=2e-6)
        np.testing.assert_allclose(res.adv_probs, alone.adv_probs, atol=1e-5)
        ref = torch.sigmoid(model(torch.from_numpy(res.adv.reshape(-1, 3, 64, 64)))).numpy()
        np.testing.assert_allclose(res.adv_probs.reshape(ref.shape), ref, atol=1e-5)
        assert (res.linf <= np.array(eps)[:, None] + 1e-6).all()
        assert res.labels == model.labels and res.threshold == model.threshold
    assert not any(p.requires_grad for p in model.parameters()) and not model.training


def test_psnr_and_ssim_come_from_scikit_image():
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    x = grid_images(2, 16, seed=19)
    res = mlvis.attack(CONV, x, "bce", [0.0, 0.01])
    assert np.isinf(res.psnr[0]).all() and np.allclose(res.ssim[0], 1.0)
    a, c = res.adv[1, 1], res.clean[1]
    assert res.psnr[1, 1] == pytest.approx(peak_signal_noise_ratio(c, a, data_range=1.0))
    wang = {"gaussian_weights": True, "sigma": 1.5, "use_sample_covariance": False}
    assert res.ssim[1, 1] == pytest.approx(structural_similarity(c, a, data_range=1.0, channel_axis=0, **wang))
    assert 0 < res.ssim[1, 1] < 1


def test_the_clean_forward_is_iteration_zeros_forward_with_the_same_bits(monkeypatch):
    """A one-method job on images in the loop's memory layout runs steps + 2 model calls (iteration 0
    differentiates the clean forward; then the final and the 8-bit evaluation), one fewer than with a
    separate no-grad clean pass, and the results are the same bits."""
    from mlvis.attacks import engine

    model = mlvis.create_model("demo-asl")
    x, _ = mlvis.data.demo_batch(4)
    x = x.contiguous(memory_format=torch.channels_last)  # the layout of the demo model's loop
    mlvis.attack(model, x[:1], "bce", 1 / 2560)  # the one-off activation probe for this model and image size
    calls = []
    hook = model.register_forward_hook(lambda mod, inp, out: calls.append(inp[0].shape[0]))
    try:
        fast = mlvis.attack(model, x, "bce", 10 / 2560)
        assert len(calls) == 10 + 2
        calls.clear()
        monkeypatch.setattr(engine, "_first_forward", lambda *a: None)  # the former path: a no-grad clean pass
        slow = mlvis.attack(model, x, "bce", 10 / 2560)
        assert len(calls) == 10 + 3
    finally:
        hook.remove()
    for field in ("clean_probs", "adv", "adv_8bit", "adv_probs", "adv_probs_8bit", "flips", "flips_8bit", "steps"):
        assert np.array_equal(getattr(fast, field), getattr(slow, field)), field
