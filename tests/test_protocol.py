"""The two protocols (issue 12 §2): each difference between "as the paper says" and "as the authors ran it"
shows where it should, and only there."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from attack_models import LinearMultiLabel, TinyConvNet, grid_images

import mlvis
from mlvis.analysis.profiles import FlipProfile, authors_convergence_index, fit_profile, for_protocol, probe
from mlvis.attacks.class_subset import (
    class_masks,
    correlation_pair,
    instance_correlation,
    normalise_correlations,
    select_subset,
    subset_length,
    target_ease,
)
from mlvis.attacks.methods import profile_flip_ratio
from mlvis.attacks.protocol import check_protocol, get_protocol

ALPHA = 1 / 256


def _profile(labels: int, eps_max: float = 0.04) -> FlipProfile:
    """A synthetic profile: BCE flat over its 4th interval, linear above it (both rules find a point)."""
    eps = np.arange(12) * 0.005
    fb = np.array([0, 0.2, 0.5, 0.8, 0.8, 1.1, 1.3, 1.3, 1.3, 1.3, 1.3, 1.3])
    fl = np.array([0, 0.3, 0.7, 1.0, 1.2, 1.5, 1.7, 1.8, 1.8, 1.8, 1.8, 1.8])
    return fit_profile(eps, np.minimum(fb, labels), np.minimum(fl, labels), labels=labels, model="toy")


def test_unknown_protocol_is_a_sentence():
    with pytest.raises(ValueError, match="Unknown protocol 'code'; known protocols: paper, authors"):
        check_protocol("code")
    m = LinearMultiLabel()
    with pytest.raises(ValueError, match="Unknown protocol"):
        mlvis.attack(m, grid_images(1, 8), "bce", 0.01, protocol="code")
    assert get_protocol("paper").clip_once is False and get_protocol("authors").clip_once is True


# ------------------------------------------------------------------------------------ clip once


def test_clip_once_changes_the_images_only_where_the_box_binds():
    model = TinyConvNet()
    eps = [0.03, 0.1]
    edge = grid_images(6, 16, seed=3)  # pixels at 0 and 255 everywhere: the box binds
    inner = grid_images(6, 16, seed=3, margin=40)  # 40 levels from the box: at eps 0.1 (25.5 levels) it never binds
    for x, binds in ((edge, True), (inner, False)):
        paper = mlvis.attack(model, x, "bce", eps, alpha=ALPHA)
        authors = mlvis.attack(model, x, "bce", eps, alpha=ALPHA, protocol="authors")
        assert (authors.adv >= 0).all() and (authors.adv <= 1).all()
        assert (authors.linf <= np.asarray(eps)[:, None] + 1e-12).all()
        if binds:
            assert not np.array_equal(paper.adv, authors.adv)
        else:
            np.testing.assert_array_equal(paper.adv, authors.adv)
            np.testing.assert_array_equal(paper.flips, authors.flips)
    assert authors.config["protocol"] == "authors" and "protocol" not in paper.config


def test_clip_once_is_the_unclipped_trajectory_put_into_the_box_at_the_end():
    """The authors' loop by hand: sign steps on x0 + delta without the box, one clamp after the loop."""
    model = TinyConvNet()
    x = grid_images(2, 16, seed=5)
    n = 12
    res = mlvis.attack(model, x, "bce", n * ALPHA, alpha=ALPHA, protocol="authors")
    clean_pred = torch.sigmoid(model(x)) >= 0.5
    target = (~clean_pred).double()
    xa, g = x.clone(), torch.zeros_like(x)
    for _ in range(n):
        xa.requires_grad_(True)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(model(xa), target, reduction="sum")
        (grad,) = torch.autograd.grad(loss, xa)
        g = g + grad / grad.abs().flatten(1).sum(1).view(-1, 1, 1, 1)
        xa = (xa.detach() - ALPHA * g.sign()).clamp(x - n * ALPHA, x + n * ALPHA)
    np.testing.assert_allclose(res.adv[0], xa.clamp(0, 1).numpy(), atol=1e-12)


def test_the_authors_probe_is_the_clip_once_attack_at_each_measured_budget():
    model = TinyConvNet()
    x = grid_images(4, 16, seed=2)
    p = probe(model, x, alpha=ALPHA, interval=2, max_eps=24 * ALPHA, patience=1, min_points=3, protocol="authors")
    eps = p["eps"][1:]
    bce = mlvis.attack(model, x, "bce", list(eps), alpha=ALPHA, protocol="authors")
    np.testing.assert_array_equal(p["per_image_bce"][1:], bce.flips)


# ------------------------------------------------------------------------------------ profile convergence


def test_convergence_rules_differ_and_the_authors_use_the_bce_curve_alone():
    prof = _profile(24)
    fb = prof.flips_bce
    # BCE's gains: 0.2, 0.3, 0.3, 0 (flat), ...: the authors stop at the end of the flat interval (index 4)
    assert authors_convergence_index(fb) == 4
    authors = for_protocol(prof, "authors")
    assert authors.eps_max == pytest.approx(0.02) and prof.eps_max == pytest.approx(0.035)
    np.testing.assert_array_equal(authors.points, fb)
    np.testing.assert_array_equal(prof.points, np.maximum(fb, prof.flips_linear))
    assert authors.settings["protocol"] == "authors" and "protocol" not in prof.settings
    back = for_protocol(authors, "paper")
    assert back.eps_max == prof.eps_max
    np.testing.assert_allclose(back.coefficients, prof.coefficients)
    assert for_protocol(prof, "paper") is prof


def test_the_shipped_demo_asl_profile_under_both_rules():
    model = mlvis.create_model("demo-asl")
    paper, authors = mlvis.profile(model), mlvis.profile(model, protocol="authors")
    assert paper.eps_max == pytest.approx(0.234375)
    assert authors.eps_max == pytest.approx(0.03515625)  # 90 steps of 1/2560: the end of the first flat interval
    np.testing.assert_array_equal(authors.flips_bce, paper.flips_bce)


# ------------------------------------------------------------------------------------ equation 7


def test_equation_7_at_eps_max_is_one_only_for_the_authors():
    prof = _profile(5)
    e = np.array([0.5 * prof.eps_max, prof.eps_max, 2 * prof.eps_max])
    paper = profile_flip_ratio(prof, e, 5)
    authors = profile_flip_ratio(prof, e, 5, inclusive=True)
    assert paper[1] == pytest.approx(prof.expected_flips(prof.eps_max) / 5) and paper[1] < 1
    assert authors[1] == 1.0
    assert paper[0] == authors[0] and paper[2] == authors[2] == 1.0


def test_slam_at_eps_max_reads_p_by_the_protocol():
    model = LinearMultiLabel()
    x = grid_images(3, 8, seed=1, margin=60)  # the box never binds: only p differs
    prof = _profile(5)
    at = [prof.eps_max]
    authors = mlvis.attack(model, x, "slam", at, profile=prof, alpha=ALPHA, protocol="authors")
    p_one = mlvis.attack(model, x, "slam", at, p=1.0, alpha=ALPHA)
    np.testing.assert_array_equal(authors.adv, p_one.adv)
    below = [0.5 * prof.eps_max]
    np.testing.assert_array_equal(
        mlvis.attack(model, x, "slam", below, profile=prof, alpha=ALPHA, protocol="authors").adv,
        mlvis.attack(model, x, "slam", below, profile=prof, alpha=ALPHA).adv,
    )


# ------------------------------------------------------------------------------------ CLASS


def test_subset_length_rules():
    assert subset_length(2.6, 24) == 4 and subset_length(2.6, 24, rule="int-int") == 3
    assert subset_length(3.0, 24) == subset_length(3.0, 24, rule="int-int") == 4
    assert subset_length(0.3, 24, rule="int-int") == 1  # at least one label, as the code's selector returns
    assert subset_length(40.0, 24, rule="int-int") == 24
    with pytest.raises(ValueError, match="'floor' or 'int-int'"):
        subset_length(2.0, 24, rule="round")


def test_global_normalisation_keeps_the_diagonal_and_rescales_the_rest():
    m = np.array([[0.9, 0.1, -0.1], [0.05, 0.8, 0.0], [0.2, -0.05, 0.7]])
    off = normalise_correlations(m)
    glob = normalise_correlations(m, "global")
    assert np.diag(off).tolist() == [0, 0, 0] and glob[0, 0] == 1.0 and glob[0, 2] == 0.0
    mask = ~np.eye(3, dtype=bool)
    assert off[mask].max() == 1.0 and glob[mask].max() < 1.0
    # the order of the off-diagonal entries is the same: min-max is monotone
    assert (np.argsort(off[mask]) == np.argsort(glob[mask])).all()
    up, down = correlation_pair(m, "global")
    np.testing.assert_allclose(down, 1 - glob)  # diagonal kept in the 1 - up approximation too
    assert np.diag(correlation_pair(m)[1]).tolist() == [0, 0, 0]


def test_z_normalisation_matters_only_when_correlations_count():
    rng = np.random.default_rng(4)
    c = 10
    icm = rng.normal(0, 1, (c, c))
    ease = rng.uniform(0.2, 1.0, c)
    differ = False
    for length in range(2, 7):
        for gamma in (0.3, 0.5, 0.7):
            a = select_subset(ease, icm, length, gamma)
            b = select_subset(ease, icm, length, gamma, normalise_z=False)
            differ |= not np.array_equal(a, b)
        np.testing.assert_array_equal(
            select_subset(ease, icm, length, 0.0), select_subset(ease, icm, length, 0.0, normalise_z=False)
        )
    assert differ


def test_class_in_the_engine_follows_the_protocol():
    model = LinearMultiLabel(num_labels=8, seed=3)
    x = grid_images(4, 8, seed=7, margin=60)
    rng = np.random.default_rng(0)
    up = rng.normal(0, 0.02, (8, 8))
    np.fill_diagonal(up, 0.3)
    prof = _profile(8)
    eps = [0.25 * prof.eps_max, prof.eps_max]
    for protocol in ("paper", "authors"):
        res = mlvis.attack(model, x, "class", eps, profile=prof, correlations=up, gamma=0.5, alpha=ALPHA,
                           protocol=protocol)  # fmt: skip
        proto = get_protocol(protocol)
        prof_p = for_protocol(prof, "paper")  # the engine reads the profile it is given, under either protocol
        lengths = np.array([subset_length(prof_p.expected_flips(e), 8, rule=proto.class_length) for e in eps])
        u, d = correlation_pair(up, proto.correlation_scope)
        probs = res.clean_probs.astype(np.float64)
        target = (probs < 0.5).astype(np.float64)
        want = class_masks(probs, target, lengths, u, d, 0.5, normalise_z=proto.normalise_z)
        np.testing.assert_array_equal(res.targets, want)
    assert instance_correlation(u, d, target).shape == (4, 8, 8) and target_ease(probs, target).shape == (4, 8)


# ------------------------------------------------------------------------------------ ML-CW, evaluate


def test_ml_cw_preset_follows_the_protocol():
    model = LinearMultiLabel()
    x = grid_images(2, 8, seed=2)
    kw = {"max_iter": 20}
    authors = mlvis.attack(model, x, "ml-cw", 1.0, protocol="authors", **kw)
    explicit = mlvis.attack(model, x, "ml-cw", 1.0, preset="authors", **kw)
    paper = mlvis.attack(model, x, "ml-cw", 1.0, **kw)
    fast = mlvis.attack(model, x, "ml-cw", 1.0, preset="fast", distance="l2", **kw)
    np.testing.assert_array_equal(authors.adv, explicit.adv)
    np.testing.assert_array_equal(paper.adv, fast.adv)
    assert (authors.steps <= 20).all()  # one binary-search round
    assert not np.array_equal(authors.adv, paper.adv)
    with pytest.raises(ValueError, match="Unknown ML-CW preset 'slow'; known presets: original, fast, authors"):
        mlvis.attack(model, x, "ml-cw", 1.0, preset="slow")


def test_evaluate_under_the_authors_protocol_uses_their_grid():
    model = LinearMultiLabel()
    x = grid_images(3, 8, seed=4)
    prof = _profile(5)
    fr = [0.5, 1.0]
    paper = mlvis.evaluate(model, x, ["bce", "slam"], fr, profile=prof)
    authors = mlvis.evaluate(model, x, ["bce", "slam"], fr, profile=prof, protocol="authors")
    np.testing.assert_allclose(paper.eps, np.array(fr) * prof.eps_max)
    np.testing.assert_allclose(authors.eps, np.array(fr) * for_protocol(prof, "authors").eps_max)
    assert authors.config["protocol"] == "authors" and "protocol" not in paper.config


def test_cli_takes_the_protocol():
    from mlvis.cli import build_parser

    parser = build_parser()
    for cmd in ("evaluate", "profile"):
        assert parser.parse_args([cmd, "--model", "demo-asl", "--protocol", "authors"]).protocol == "authors"
        assert parser.parse_args([cmd, "--model", "demo-asl"]).protocol == "paper"
    args = parser.parse_args(["compare-related", "--model", "demo-asl", "--preset", "authors"])
    assert args.preset == "authors" and args.distance is None
