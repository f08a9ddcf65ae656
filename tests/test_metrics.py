"""Clinical metrics against values computed by hand."""

import math

import numpy as np
import pytest

from chestx.metrics import (
    binary_metrics,
    choose_threshold,
    delong_interval,
    expected_calibration_error,
    paired_bootstrap,
    specificity_at,
    target_chance,
    wilson_interval,
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


@pytest.mark.parametrize(
    "k, n, expected",
    # Newcombe (1998), Stat Med 17:857, table I, method 3 (Wilson score, no continuity correction)
    [(81, 263, (0.2553, 0.3662)), (15, 148, (0.0624, 0.1605)), (0, 20, (0.0, 0.1611)),
     (1, 29, (0.0061, 0.1718))],
)  # fmt: skip
def test_wilson_interval_matches_the_published_values(k, n, expected):
    assert wilson_interval(k, n) == pytest.approx(expected, abs=5e-5)


def test_wilson_interval_edges():
    low, high = wilson_interval(116, 116)
    assert high == 1.0 and 0.96 < low < 0.97  # all passed still leaves room below
    assert all(math.isnan(v) for v in wilson_interval(0, 0))  # nothing measured
    with pytest.raises(ValueError, match="between 0 and 5"):
        wilson_interval(6, 5)


def _delong_by_definition(y, p):
    """DeLong et al. (1988) written out with the full positive x normal kernel matrix."""
    pos, neg = p[y == 1], p[y == 0]
    psi = (pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])
    v10, v01 = psi.mean(axis=1), psi.mean(axis=0)
    auc = psi.mean()
    se = math.sqrt(v10.var(ddof=1) / len(pos) + v01.var(ddof=1) / len(neg))
    return auc, max(0.0, auc - 1.959964 * se), min(1.0, auc + 1.959964 * se)


def test_delong_interval_matches_the_kernel_definition_and_the_bootstrap():
    rng = np.random.default_rng(7)
    y = np.repeat([0, 1], [116, 197])
    p = np.round(np.clip(y * 0.35 + rng.normal(0.35, 0.2, y.size), 0, 1), 2)  # with ties
    auc, low, high = _delong_by_definition(y, p)
    assert delong_interval(y, p) == pytest.approx((low, high), abs=1e-9)
    assert roc_auc(y, p) == pytest.approx(auc) and low < auc < high
    # DeLong's standard error is the bootstrap's, within its resampling noise
    boot = []
    for _ in range(1000):
        i = rng.integers(0, y.size, y.size)
        boot.append(roc_auc(y[i], p[i]))
    assert (high - low) / 2 / 1.959964 == pytest.approx(np.std(boot), rel=0.15)


def test_delong_interval_edges():
    assert delong_interval([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9]) == [1.0, 1.0]  # no variance
    assert all(math.isnan(v) for v in delong_interval([1, 1], [0.2, 0.9]))  # one class


def test_binary_metrics_carry_their_intervals():
    m = binary_metrics(Y, P, threshold=0.5)  # confusion [[2, 1], [1, 4]]
    assert m["sensitivity_ci"] == wilson_interval(4, 5)
    assert m["specificity_ci"] == wilson_interval(2, 3)
    assert m["accuracy_ci"] == wilson_interval(6, 8)
    assert m["roc_auc_ci"] == delong_interval(Y, P)
    for key in ("sensitivity", "specificity", "accuracy", "roc_auc"):
        low, high = m[f"{key}_ci"]
        assert 0 <= low <= m[key] <= high <= 1


def test_target_chance_counts_the_resamples_that_pass():
    y = np.repeat([0, 1], [100, 100])
    p = np.r_[np.linspace(0.0, 0.4, 100), np.linspace(0.6, 1.0, 100)]  # separated at 0.5
    kw = dict(min_sensitivity=0.95, min_specificity=0.87, n_pneumonia=193, n_normal=118)
    clean = target_chance(y, p, 0.5, **kw)
    assert clean["sensitivity"] == clean["specificity"] == 1.0
    assert clean["p_sensitivity"] == clean["p_specificity"] == clean["p_both"] == 1.0
    # at 0.3, a quarter of the normals are flagged: specificity 0.75 never reaches 0.87
    assert target_chance(y, p, 0.3, **kw)["p_specificity"] == 0.0
    # just above the target, a good share of the resamples still fall short of it
    edge = target_chance(y, p, p[87] + 1e-9, **kw)  # 88 of 100 normals kept
    assert edge["specificity"] == pytest.approx(0.88) and 0.4 < edge["p_specificity"] < 0.8
    assert edge["p_both"] == pytest.approx(edge["p_specificity"])  # sensitivity always passes
    assert target_chance(y, p, 0.45, **kw, seed=3) == target_chance(y, p, 0.45, **kw, seed=3)
    with pytest.raises(ValueError, match="both classes"):
        target_chance([1, 1], [0.2, 0.9], 0.5, **kw)
