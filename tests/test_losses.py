"""Loss values on hand-computed cases, extreme logits, SLAM's end points, weights and the registry."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from attack_models import LinearMultiLabel, grid_images

from mlvis.attacks import bce, get_loss, linear, list_losses, slam

Z = torch.tensor([[0.0, 2.0, -1.0], [3.0, -0.5, 0.25]], dtype=torch.float64)
T = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]], dtype=torch.float64)


def sig(v: float) -> float:
    return 1 / (1 + math.exp(-v))


def hand_bce(z, t, w=None):
    out = []
    for i in range(len(z)):
        s = 0.0
        for j in range(len(z[i])):
            y = sig(z[i][j])
            s += (w[j] if w is not None else 1.0) * -(t[i][j] * math.log(y) + (1 - t[i][j]) * math.log(1 - y))
        out.append(s)
    return out


def hand_linear(z, t, w=None):
    return [
        sum((w[j] if w is not None else 1.0) * abs(t[i][j] - sig(z[i][j])) for j in range(len(z[i])))
        for i in range(len(z))
    ]


def test_values_equal_hand_computed():
    z, t = Z.tolist(), T.tolist()
    np.testing.assert_allclose(bce(Z, T).numpy(), hand_bce(z, t), rtol=1e-12)
    np.testing.assert_allclose(linear(Z, T).numpy(), hand_linear(z, t), rtol=1e-12)
    w = [0.5, 2.0, 1.0]
    np.testing.assert_allclose(bce(Z, T, torch.tensor(w)).numpy(), hand_bce(z, t, w), rtol=1e-12)
    np.testing.assert_allclose(linear(Z, T, torch.tensor(w)).numpy(), hand_linear(z, t, w), rtol=1e-12)
    mix = 0.3 * 0.5
    expect = [mix * b + (1 - mix) * lin for b, lin in zip(hand_bce(z, t), hand_linear(z, t))]
    np.testing.assert_allclose(slam(Z, T, p=0.3, q=0.5).numpy(), expect, rtol=1e-12)


def test_linear_is_the_corrected_equation_5():
    """(1 - t) y + t (1 - y): minimising it pulls y towards t (eq. 5 as printed, t (y - 1), would push away)."""
    z = torch.tensor([[0.3]], dtype=torch.float64, requires_grad=True)
    (g_up,) = torch.autograd.grad(linear(z, torch.ones(1, 1, dtype=torch.float64)).sum(), z)
    (g_down,) = torch.autograd.grad(linear(z, torch.zeros(1, 1, dtype=torch.float64)).sum(), z)
    assert g_up.item() < 0 < g_down.item()  # descent raises y for t = 1, lowers it for t = 0
    t = torch.tensor([[0.25]], dtype=torch.float64)
    y = torch.sigmoid(z.detach())
    np.testing.assert_allclose(linear(z.detach(), t).numpy(), ((1 - t) * y + t * (1 - y)).sum(-1).numpy())


@pytest.mark.parametrize("name", ["bce", "linear", "slam"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_extreme_logits_are_finite(name, dtype):
    z = torch.tensor([[1e4, -1e4, 100.0, -100.0, 0.0]], dtype=dtype, requires_grad=True)
    t = torch.tensor([[1.0, 1.0, 0.0, 0.0, 1.0]], dtype=dtype)
    kw = {"p": 0.5, "q": 0.5} if name == "slam" else {}
    val = get_loss(name).fn(z, t, **kw)
    (g,) = torch.autograd.grad(val.sum(), z)
    assert torch.isfinite(val).all() and torch.isfinite(g).all()
    if name == "bce":  # t = 1 at z = -1e4 costs 1e4 (the linear regime of appendix K); t = 0 at z = 100 costs 100
        assert val.item() == pytest.approx(1e4 + 100 + math.log(2), rel=1e-6)
        assert g[0, 1].item() == pytest.approx(-1.0) and g[0, 0].item() == pytest.approx(0.0, abs=1e-30)


def test_slam_end_points_are_exactly_bce_and_linear():
    z = torch.randn(4, 7, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * 5
    t = (torch.rand(4, 7, generator=torch.Generator().manual_seed(1)) > 0.5).double()
    assert torch.equal(slam(z, t, p=1.0, q=1.0), bce(z, t))
    assert torch.equal(slam(z, t, p=0.0, q=0.5), linear(z, t))
    assert torch.equal(slam(z, t, p=0.7, q=0.0), linear(z, t))


def test_per_sample_slam_parameters_match_scalar_rows():
    z, t = Z, T
    p = torch.tensor([0.2, 0.9], dtype=torch.float64)
    rows = slam(z, t, p=p, q=0.5)
    for i in range(2):
        assert rows[i].item() == pytest.approx(slam(z[i : i + 1], t[i : i + 1], p=p[i].item(), q=0.5).item(), rel=1e-14)


@pytest.mark.parametrize("name", ["bce", "linear", "slam"])
def test_zero_weight_removes_a_label(name):
    z = Z.clone().requires_grad_(True)
    w = torch.tensor([1.0, 0.0, 1.0], dtype=torch.float64)
    kw = {"p": 0.4} if name == "slam" else {}
    fn = get_loss(name).fn
    val = fn(z, T, w, **kw)
    (g,) = torch.autograd.grad(val.sum(), z)
    assert (g[:, 1] == 0).all()
    keep = [0, 2]
    np.testing.assert_allclose(val.detach().numpy(), fn(Z[:, keep], T[:, keep], **kw).numpy(), rtol=1e-14)
    w_rows = torch.tensor([[1.0, 1.0, 1.0], [0.0, 0.0, 0.0]], dtype=torch.float64)
    assert fn(Z, T, w_rows, **kw)[1].item() == 0.0


def test_loss_of_the_analytic_linear_model():
    model = LinearMultiLabel()
    x = grid_images(3, 8, seed=2)
    z = model(x)
    zz = (x.flatten(1).numpy() @ model.weight.numpy().T + model.bias.numpy()).tolist()
    t = (torch.sigmoid(z) < 0.5).double()
    np.testing.assert_allclose(bce(z, t).numpy(), hand_bce(zz, t.tolist()), rtol=1e-10)
    np.testing.assert_allclose(linear(z, t).numpy(), hand_linear(zz, t.tolist()), rtol=1e-10)


def test_registry_and_errors():
    assert {"bce", "linear", "slam"} <= set(list_losses())
    assert get_loss("slam").params == ("p", "q") and dict(get_loss("slam").defaults) == {"q": 0.5}
    with pytest.raises(ValueError, match="known losses: bce, linear, slam"):
        get_loss("hinge")
    with pytest.raises(ValueError, match="weights must have shape"):
        bce(Z, T, torch.ones(4))
    with pytest.raises(ValueError, match="per-sample"):
        slam(Z, T, p=torch.ones(3))
