import numpy as np
import pytest

from mlvis.metrics import average_precision, count_flips, mean_average_precision


def test_average_precision_hand_computed():
    # ranking: pos, neg, pos, neg -> precisions at positives 1/1 and 2/3
    assert average_precision([0.9, 0.8, 0.7, 0.1], [1, 0, 1, 0]) == pytest.approx((1 + 2 / 3) / 2)
    assert average_precision([0.1, 0.2, 0.3], [0, 0, 1]) == 1.0
    assert np.isnan(average_precision([0.1, 0.2], [0, 0]))


def test_map_skips_labels_without_positives():
    scores = np.array([[0.9, 0.1], [0.2, 0.3]])
    targets = np.array([[1, 0], [0, 0]])
    m, aps = mean_average_precision(scores, targets)
    assert m == 1.0 and np.isnan(aps[1])


def test_count_flips_is_equation_3():
    clean = np.array([[1, 0, 1, 0]], bool)
    adv = np.array([[0, 0, 1, 1]], bool)
    assert count_flips(clean, adv).tolist() == [2]
