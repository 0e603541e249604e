"""Fig. 13 (SLAM's derivative for several p·q) and Fig. 19 (BCE with its limits): the curves' data."""

import numpy as np
import pytest

from mlvis.analysis.loss_curves import bce_curves, slam_curves, slam_peak_confidence
from mlvis.viz.loss_curves import loss_curves_figure


def sig(x):
    return 1 / (1 + np.exp(-x))


def test_bce_curves_match_equations_17_and_18():
    c = bce_curves(logit_range=(-30, 30), points=601)
    x = c.logits
    t0, t1 = c.targets.index(0), c.targets.index(1)
    np.testing.assert_allclose(c.loss[t0], np.log1p(np.exp(x)), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(c.loss[t1], np.log1p(np.exp(-x)), rtol=1e-12, atol=1e-12)
    # the limits: the loss meets its piecewise-linear asymptote at both ends
    assert abs(c.loss[t0][-1] - x[-1]) < 1e-12 and c.loss[t0][0] < 1e-12
    assert abs(c.loss[t1][0] + x[0]) < 1e-12 and c.loss[t1][-1] < 1e-12
    np.testing.assert_allclose(c.asymptote[t0], np.maximum(x, 0))
    # "the derivative goes from 1 if t = 0 or -1 if t = 1 to 0" as the loss decreases
    np.testing.assert_allclose(c.dlogit[t0], sig(x), atol=1e-12)
    np.testing.assert_allclose(c.dlogit[t1], sig(x) - 1, atol=1e-12)
    assert c.dlogit[t0][-1] > 0.999 and c.dlogit[t0][0] < 1e-12
    assert c.dlogit[t1][0] < -0.999 and abs(c.dlogit[t1][-1]) < 1e-12


def test_slam_derivative_is_the_mix_of_bce_and_linear():
    shares = (0.0, 0.3, 0.5, 1.0)
    c = slam_curves(shares, target=0)
    y = sig(c.logits)
    for i, w in enumerate(shares):
        np.testing.assert_allclose(c.dlogit[i], w * y + (1 - w) * y * (1 - y), atol=1e-12)
        np.testing.assert_allclose(c.loss[i], w * np.log1p(np.exp(c.logits)) + (1 - w) * y, atol=1e-12)
    # share 1 is BCE, share 0 the linear loss
    np.testing.assert_allclose(c.loss[3], bce_curves((0,)).loss[0], atol=1e-12)
    # d/dy by the chain rule: linear's is 1 everywhere
    np.testing.assert_allclose(c.dconf[0], 1.0, atol=1e-9)


def test_slam_target_one_is_the_reflection():
    c0, c1 = slam_curves((0.2, 0.7), target=0), slam_curves((0.2, 0.7), target=1)
    np.testing.assert_allclose(c1.loss, c0.loss[:, ::-1], atol=1e-12)
    np.testing.assert_allclose(c1.dlogit, -c0.dlogit[:, ::-1], atol=1e-12)


@pytest.mark.parametrize("w", [0.0, 0.1, 0.25, 0.4, 0.45])
def test_peak_below_one_half_matches_the_closed_form(w):
    c = slam_curves((w,), logit_range=(-12, 12), points=24_001)
    peak_y = sig(c.logits[np.argmax(c.dlogit[0])])
    assert peak_y == pytest.approx(slam_peak_confidence(w), abs=2e-3)
    assert c.peak_confidence[0] == pytest.approx(1 / (2 * (1 - w)))
    # beyond the peak the derivative falls: distant labels are de-prioritised
    assert c.dlogit[0][-1] < c.dlogit[0].max() - 1e-3


@pytest.mark.parametrize("w", [0.5, 0.6, 1.0])
def test_from_one_half_on_the_derivative_never_falls(w):
    c = slam_curves((w,), logit_range=(-12, 12), points=2001)
    assert np.all(np.diff(c.dlogit[0]) >= -1e-15)
    assert slam_peak_confidence(w) == 1.0 and slam_peak_confidence(w, target=1) == 0.0


@pytest.mark.parametrize(
    "call",
    [
        lambda: slam_curves((1.5,)),
        lambda: slam_curves((float("nan"),)),
        lambda: slam_curves(()),
        lambda: slam_curves((0.2,), target=2),
        lambda: bce_curves((True,)),
        lambda: bce_curves(logit_range=(3, -3)),
        lambda: bce_curves(points=2),
        lambda: bce_curves(points=2.5),
    ],
)
def test_bad_arguments_are_sentences(call):
    with pytest.raises(ValueError, match=r"\.$"):
        call()


def test_figure_shows_the_curves_data():
    c = slam_curves((0.25, 0.75))
    fig = loss_curves_figure(c)
    kinds = [(t.meta["kind"], t.meta["name"]) for t in fig.data]
    assert kinds.count(("loss", "p·q = 0.25")) == 1 and kinds.count(("derivative", "p·q = 0.75")) == 1
    deriv = next(t for t in fig.data if t.meta == {"kind": "derivative", "name": "p·q = 0.25"})
    np.testing.assert_allclose(deriv.y, c.dlogit[0])
    peaks = [t for t in fig.data if t.meta["kind"] == "peak"]
    assert [p.meta["name"] for p in peaks] == ["p·q = 0.25"]  # 0.75 has no interior peak
    assert peaks[0].x[0] == pytest.approx(np.log(c.peak_confidence[0] / (1 - c.peak_confidence[0])))
    conf = loss_curves_figure(bce_curves(), axis="confidence")
    assert any(t.meta["kind"] == "asymptote" for t in conf.data)
    assert conf.layout.xaxis2.title.text.startswith("confidence")
    with pytest.raises(ValueError, match="x axis"):
        loss_curves_figure(c, axis="eps")


def test_export_dict_round_trips_the_arrays():
    d = bce_curves().to_dict()
    assert [cv["name"] for cv in d["curves"]] == ["t = 0", "t = 1"]
    assert len(d["curves"][0]["loss"]) == len(d["logits"]) and d["curves"][1]["asymptote"] is not None
    assert slam_curves((0.5,)).to_dict()["curves"][0]["asymptote"] is None
