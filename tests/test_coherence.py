"""Semantic detectability: co-occurrence rules and how predicted sets break them, on constructed worlds."""

from __future__ import annotations

import numpy as np
import pytest

import mlvis
from mlvis.analysis.coherence import CooccurrenceRules
from mlvis.data import scene_statistics

LABELS = ("toothbrush", "sink", "giraffe", "surfboard", "cup")


def constructed(n=1000):
    """toothbrush -> sink always; giraffe and surfboard frequent but never together; cup independent."""
    rng = np.random.default_rng(0)
    y = np.zeros((n, 5), np.int64)
    y[:, 0] = rng.random(n) < 0.2
    y[:, 1] = y[:, 0] | (rng.random(n) < 0.3)
    outdoor = rng.random(n) < 0.5
    y[:, 2] = outdoor & (rng.random(n) < 0.6)
    y[:, 3] = ~outdoor & (rng.random(n) < 0.6)
    y[:, 4] = rng.random(n) < 0.4
    return y


@pytest.fixture(scope="module")
def rules():
    return CooccurrenceRules.from_labels(constructed(), LABELS)


def test_rules_found_in_the_counts(rules):
    assert rules.implications[0, 1] and rules.implications.sum() == 1  # toothbrush -> sink only
    assert rules.exclusions[2, 3] and rules.exclusions[3, 2] and rules.exclusions.sum() == 2
    assert rules.log_lift[2, 3] < -3 and abs(rules.log_lift[0, 4]) < 0.3


def test_sets_are_checked_against_each_rule(rules):
    sets = np.array(
        [
            [1, 1, 0, 0, 0],  # coherent
            [1, 0, 0, 0, 0],  # toothbrush without sink
            [0, 0, 1, 1, 0],  # giraffe with surfboard
            [1, 0, 1, 1, 1],  # both
            [0, 0, 0, 0, 0],  # empty: nothing to break
        ]
    )
    chk = rules.check(sets)
    np.testing.assert_array_equal(chk.violations, [0, 1, 1, 2, 0])
    np.testing.assert_array_equal(chk.flagged, [False, True, True, True, False])
    assert chk.describe(1) == ["“toothbrush” comes with “sink” in the training data, which is missing."]
    assert chk.describe(2) == ["“giraffe” and “surfboard” never appear together in the training data."]
    np.testing.assert_array_equal(chk.involved()[3], [True, True, True, True, False])
    assert chk.coherence[2] < -3 < chk.coherence[0] and chk.coherence[4] == 0


def test_flips_that_break_rules_are_implausible(rules):
    clean = np.array([[1, 1, 1, 0, 0], [0, 0, 1, 0, 1], [1, 0, 0, 0, 0]])
    adv = np.array(
        [
            [1, 0, 1, 0, 1],  # sink flipped down under a toothbrush (implausible), cup up (fine)
            [0, 0, 1, 1, 1],  # surfboard flipped up beside a giraffe (implausible)
            [1, 0, 0, 0, 1],  # the clean set already broke toothbrush -> sink: nothing new
        ]
    )
    d = rules.compare(clean, adv)
    np.testing.assert_array_equal(d.newly_flagged, [True, True, False])
    np.testing.assert_array_equal(d.implausible[0], [False, True, False, False, False])
    np.testing.assert_array_equal(d.implausible[1], [False, False, False, True, False])
    assert not d.implausible[2].any() and d.flipped[2, 4]
    s = d.summary()
    assert (s["flips"], s["implausible flips"], s["newly flagged"]) == (4, 2, 2)


def test_support_thresholds_keep_rare_labels_out():
    y = np.zeros((200, 3), np.int64)
    y[:3, 0] = 1  # rare label: 3 images, always with label 1
    y[:3, 1] = 1
    y[100:, 2] = 1
    r = CooccurrenceRules.from_labels(y, ("rare", "b", "c"))
    assert not r.implications[0, 1]  # 3 < min_support
    assert not r.exclusions[0, 2]  # expected 1.5 images together < 5
    assert CooccurrenceRules.from_labels(y, ("rare", "b", "c"), min_support=3).implications[0, 1]


def test_the_demo_world_keeps_its_own_rules():
    """True label sets of held-out scenes come from the same world: its exclusions (scene contexts) hold."""
    rules = CooccurrenceRules.from_statistics(scene_statistics("train", 5_000))
    assert rules.exclusions.sum() > 50
    truth = mlvis.data.world(0).label_matrix("test", range(2000))
    assert rules.check(truth).flagged.mean() <= 0.01


@pytest.mark.parametrize(
    "call",
    [
        lambda r: r.check(np.zeros((2, 4))),
        lambda r: r.check(np.full((1, 5), 0.7)),
        lambda r: CooccurrenceRules.from_labels(np.full((3, 5), 2), LABELS),
        lambda r: CooccurrenceRules(LABELS, 10, np.ones(5), np.full((5, 5), 3.0)),
        lambda r: CooccurrenceRules.from_labels(constructed(), LABELS, implication=0.3),
        lambda r: r.compare(np.zeros((2, 5)), np.zeros((3, 5))),
    ],
)
def test_bad_input_is_a_sentence(rules, call):
    with pytest.raises(ValueError, match=r"\.$"):
        call(rules)
