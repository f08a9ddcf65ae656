"""Clinical metrics against values computed by hand."""

import math

import numpy as np
import pytest

from chestx.metrics import (
    binary_metrics,
    choose_threshold,
    expected_calibration_error,
    paired_bootstrap,
    specificity_at,
)

Y = [0, 0, 0, 1, 1, 1, 1, 1]
P = [0.1, 0.4, 0.7, 0.3, 0.6, 0.8, 0.9, 0.95]


def test_confusion_and_rates_at_threshold():
    m = binary_metrics(Y, P, threshold=0.5)
    # predicted positive: 0.7 (fp), 0.6, 0.8, 0.9, 0.95 (tp); 0.3 is a false negative
    assert m["confusion_matrix"] == [[2, 1], [1, 4]]
    assert m["accuracy"] == pytest.approx(6 / 8)
    assert m["sensitivity"] == pytest.approx(4 / 5)
    assert m["specificity"] == pytest.approx(2 / 3)
    assert m["precision"] == pytest.approx(4 / 5)
    assert m["npv"] == pytest.approx(2 / 3)
    assert m["f1"] == pytest.approx(2 * 4 / (2 * 4 + 1 + 1))
    assert (m["n"], m["n_normal"], m["n_pneumonia"]) == (8, 3, 5)


def test_roc_auc_counts_ordered_pairs():
    # 15 (pos, neg) pairs; the misordered ones: 0.3 < 0.4, 0.3 < 0.7, 0.6 < 0.7
    assert binary_metrics(Y, P)["roc_auc"] == pytest.approx(12 / 15)


def test_brier_and_ece():
    m = binary_metrics([0, 1], [0.2, 0.6])
    assert m["brier"] == pytest.approx((0.04 + 0.16) / 2)
    # two bins of one case each: |0 - 0.2| and |1 - 0.6|, each weighted 1/2
    assert expected_calibration_error([0, 1], [0.2, 0.6]) == pytest.approx(0.3)


def test_threshold_is_inclusive():
    assert binary_metrics([1], [0.5], threshold=0.5)["confusion_matrix"] == [[0, 0], [0, 1]]


def test_single_class_gives_nan_auc_not_crash():
    m = binary_metrics([1, 1], [0.2, 0.9])
    assert math.isnan(m["roc_auc"]) and math.isnan(m["specificity"])


def test_shape_mismatch_is_refused():
    with pytest.raises(ValueError):
        binary_metrics([0, 1, 1], [0.3, 0.4])


def test_threshold_rule_keeps_sensitivity_and_maximises_specificity():
    y = np.array(Y)
    t = choose_threshold(y, P, min_sensitivity=0.8)  # must flag 4 of 5 positives: cut at 0.6
    m = binary_metrics(y, P, t)
    assert m["sensitivity"] >= 0.8
    assert 0.4 < t <= 0.6  # halfway between 0.6 and the next lower score (0.4)
    assert t == pytest.approx(0.5)
    full = choose_threshold(y, P, min_sensitivity=1.0)
    assert binary_metrics(y, P, full)["sensitivity"] == 1.0
    assert full < 0.3


@pytest.mark.parametrize("bad", [95, 1.5, 0, -0.1])
def test_threshold_rule_refuses_an_impossible_sensitivity(bad):
    with pytest.raises(ValueError, match="at most 1"):
        choose_threshold(np.array(Y), P, min_sensitivity=bad)


def roc_auc(y, p):
    return binary_metrics(y, p)["roc_auc"]


def test_specificity_at_a_sensitivity():
    # 4 of 5 positives flagged: threshold 0.5, so 0.1 and 0.4 stay normal and 0.7 is flagged
    assert specificity_at(Y, P, 0.8) == pytest.approx(2 / 3)
    assert specificity_at(Y, P, 1.0) == pytest.approx(1 / 3)  # down to 0.3: only 0.1 is kept


def test_paired_bootstrap_sees_a_real_difference_and_not_a_tie():
    rng = np.random.default_rng(1)
    y = np.repeat([0, 1], 100)
    good = np.clip(y * 0.6 + rng.normal(0.2, 0.15, y.size), 0, 1)  # ranks well
    noise = rng.uniform(size=y.size)  # ranks at chance
    diff, lo, hi = paired_bootstrap(y, good, noise, roc_auc, resamples=300)
    assert diff == pytest.approx(roc_auc(y, good) - roc_auc(y, noise))
    assert 0.3 < lo <= diff <= hi  # far from 0: a difference 200 X-rays can see
    # the same scores: every resample's difference is 0, so is the interval
    assert paired_bootstrap(y, good, good, roc_auc, resamples=50) == (0.0, 0.0, 0.0)
    # a monotone transform ranks alike, so AUC cannot tell them apart, resample by resample
    assert paired_bootstrap(y, good, good**3, roc_auc, resamples=50) == (0.0, 0.0, 0.0)
    # same seed, same interval
    assert paired_bootstrap(y, good, noise, roc_auc, resamples=50, seed=3) == paired_bootstrap(
        y, good, noise, roc_auc, resamples=50, seed=3
    )


def test_paired_bootstrap_refuses_what_it_cannot_compare():
    with pytest.raises(ValueError, match="same length"):
        paired_bootstrap([0, 1], [0.1, 0.9], [0.2], roc_auc)
    with pytest.raises(ValueError, match="one class only"):
        paired_bootstrap([1, 1, 1], [0.1, 0.5, 0.9], [0.2, 0.3, 0.4], roc_auc, resamples=20)
