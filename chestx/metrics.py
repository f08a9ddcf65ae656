"""Clinical metrics at an explicit decision threshold, and the rule that picks that threshold.

Pure NumPy/SciPy/scikit-learn, no TensorFlow: label 1 is PNEUMONIA (positive), 0 is NORMAL.
Sensitivity, specificity and accuracy come with Wilson score intervals and ROC AUC with DeLong's,
95 % each, as diagnostic-accuracy reports give them (STARD 2015): 116 normal X-rays measure a
specificity to within about ±6 points, and a figure without its interval hides that.
"""

from __future__ import annotations

import numpy as np
from scipy import stats
from sklearn import metrics as skm

Z95 = float(stats.norm.ppf(0.975))  # 1.96: two-sided 95 %


def confusion(y_true, y_pred) -> list[list[int]]:
    """``[[tn, fp], [fn, tp]]`` as plain ints."""
    cm = skm.confusion_matrix(np.asarray(y_true), np.asarray(y_pred), labels=[0, 1])
    return cm.astype(int).tolist()


def expected_calibration_error(y_true, prob, n_bins: int = 10) -> float:
    """Mean |accuracy - confidence| over equal-width probability bins, weighted by bin size."""
    y_true = np.asarray(y_true, float)
    prob = np.asarray(prob, float)
    bins = np.minimum((prob * n_bins).astype(int), n_bins - 1)
    ece = 0.0
    for b in range(n_bins):
        mask = bins == b
        if mask.any():
            ece += mask.mean() * abs(y_true[mask].mean() - prob[mask].mean())
    return float(ece)


def _ratio(num: int, den: int) -> float:
    return float(num / den) if den else float("nan")


def wilson_interval(successes: int, total: int, z: float = Z95) -> list[float]:
    """The Wilson score interval of a proportion (95 % by default): unlike the normal
    approximation it stays inside [0, 1] and keeps its coverage at 0/n and n/n, so 116 of 116
    normals passed reads as "at least 96.8 %", not "exactly 100 %"."""
    if total <= 0:
        return [float("nan"), float("nan")]
    if not 0 <= successes <= total:
        raise ValueError(f"successes must be between 0 and {total}, not {successes}")
    p = successes / total
    centre = (p + z * z / (2 * total)) / (1 + z * z / total)
    half = z * np.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / (1 + z * z / total)
    return [float(max(0.0, centre - half)), float(min(1.0, centre + half))]


def delong_interval(y_true, prob, z: float = Z95) -> list[float]:
    """ROC AUC's 95 % interval by DeLong et al. (1988): the AUC's variance from each case's
    placement value (the share of the other class it outranks, ties counting half), computed from
    mid-ranks (Sun & Xu 2014) and clipped to [0, 1]. NaN without both classes."""
    y_true = np.asarray(y_true).astype(int)
    prob = np.asarray(prob, float)
    pos, neg = prob[y_true == 1], prob[y_true == 0]
    m, n = len(pos), len(neg)
    if m == 0 or n == 0:
        return [float("nan"), float("nan")]
    ranks = stats.rankdata(np.concatenate([pos, neg]))  # mid-ranks: ties count half
    v_pos = (ranks[:m] - stats.rankdata(pos)) / n  # each positive: share of normals below it
    v_neg = 1 - (ranks[m:] - stats.rankdata(neg)) / m  # each normal: share of positives above it
    auc = float(v_pos.mean())
    var = (v_pos.var(ddof=1) / m if m > 1 else 0.0) + (v_neg.var(ddof=1) / n if n > 1 else 0.0)
    half = z * float(np.sqrt(var))
    return [max(0.0, auc - half), min(1.0, auc + half)]


def binary_metrics(y_true, prob, threshold: float = 0.5) -> dict:
    """Everything a clinician asks of a screening test, at ``threshold``.

    A probability equal to the threshold counts as PNEUMONIA. ``*_ci`` keys hold the 95 %
    intervals: Wilson for accuracy, sensitivity and specificity, DeLong for ROC AUC.
    """
    y_true = np.asarray(y_true).astype(int)
    prob = np.asarray(prob, float)
    if y_true.shape != prob.shape or y_true.ndim != 1:
        raise ValueError("y_true and prob must be 1-D and the same length")
    y_pred = (prob >= threshold).astype(int)
    (tn, fp), (fn, tp) = confusion(y_true, y_pred)
    both = len(np.unique(y_true)) == 2
    sensitivity = _ratio(tp, tp + fn)
    precision = _ratio(tp, tp + fp)
    return {
        "n": int(len(y_true)),
        "n_normal": int((y_true == 0).sum()),
        "n_pneumonia": int((y_true == 1).sum()),
        "threshold": float(threshold),
        "accuracy": _ratio(tp + tn, len(y_true)),
        "accuracy_ci": wilson_interval(tp + tn, len(y_true)),
        "precision": precision,
        "sensitivity": sensitivity,
        "sensitivity_ci": wilson_interval(tp, tp + fn),
        "specificity": _ratio(tn, tn + fp),
        "specificity_ci": wilson_interval(tn, tn + fp),
        "npv": _ratio(tn, tn + fn),
        "f1": _ratio(2 * tp, 2 * tp + fp + fn),
        "roc_auc": float(skm.roc_auc_score(y_true, prob)) if both else float("nan"),
        "roc_auc_ci": delong_interval(y_true, prob),
        "pr_auc": float(skm.average_precision_score(y_true, prob)) if both else float("nan"),
        "brier": float(np.mean((prob - y_true) ** 2)),
        "ece": expected_calibration_error(y_true, prob),
        "confusion_matrix": [[tn, fp], [fn, tp]],
    }


def choose_threshold(y_true, prob, min_sensitivity: float = 0.95) -> float:
    """The screening rule: the highest threshold whose sensitivity is still ``min_sensitivity``.

    Among thresholds that keep at least that share of pneumonia cases flagged, the highest one
    flags the fewest normal X-rays (best specificity). It is placed half-way between the
    deciding probability and the next lower one, so it does not sit exactly on a training case.
    """
    if not 0 < min_sensitivity <= 1:
        raise ValueError(f"min_sensitivity must be above 0 and at most 1, not {min_sensitivity}")
    y_true = np.asarray(y_true).astype(int)
    prob = np.asarray(prob, float)
    pos = np.sort(prob[y_true == 1])[::-1]
    if len(pos) == 0:
        return 0.5
    k = int(np.ceil(min_sensitivity * len(pos)))  # must flag the k highest-scored positives
    k = min(max(k, 1), len(pos))
    cut = pos[k - 1]
    below = prob[prob < cut]
    lower = below.max() if below.size else 0.0
    return float((cut + lower) / 2)


def specificity_at(y_true, prob, min_sensitivity: float = 0.95) -> float:
    """The specificity at the threshold ``choose_threshold`` picks for ``min_sensitivity``: how
    many normal X-rays a screening operating point keeps, whatever the model's calibration."""
    normal = np.asarray(prob, float)[np.asarray(y_true).astype(int) == 0]
    threshold = choose_threshold(y_true, prob, min_sensitivity)
    return _ratio(int((normal < threshold).sum()), normal.size)  # as binary_metrics counts it


def paired_bootstrap(
    y_true, prob, prob_ref, statistic, *, resamples: int = 1000, seed: int = 0
) -> tuple[float, float, float]:
    """``statistic(y, prob) - statistic(y, prob_ref)`` on these X-rays and its 95 % percentile
    interval: the X-rays are resampled with replacement and both models scored on the same
    resample each time, so what the two share (which X-rays are hard) cancels. Resamples with one
    class only are left out. A difference whose interval holds 0 is one this data cannot see."""
    y_true = np.asarray(y_true).astype(int)
    prob, prob_ref = np.asarray(prob, float), np.asarray(prob_ref, float)
    if not y_true.shape == prob.shape == prob_ref.shape or y_true.ndim != 1:
        raise ValueError("y_true, prob and prob_ref must be 1-D and the same length")
    rng = np.random.default_rng(seed)
    diffs = []
    for _ in range(resamples):
        i = rng.integers(0, len(y_true), len(y_true))
        if y_true[i].min() != y_true[i].max():
            diffs.append(statistic(y_true[i], prob[i]) - statistic(y_true[i], prob_ref[i]))
    if not diffs:
        raise ValueError("every resample holds one class only; both classes are needed")
    lo, hi = np.percentile(diffs, [2.5, 97.5])
    return float(statistic(y_true, prob) - statistic(y_true, prob_ref)), float(lo), float(hi)


def target_chance(
    y_true,
    prob,
    threshold: float,
    *,
    min_sensitivity: float,
    min_specificity: float,
    n_pneumonia: int,
    n_normal: int,
    resamples: int = 2000,
    seed: int = 0,
) -> dict:
    """How often a new sample of ``n_pneumonia`` + ``n_normal`` X-rays drawn like these would
    meet both targets at ``threshold``: each class is resampled with replacement to its size
    (a stratified bootstrap) and scored. The chance a test set of that size passes, if it
    resembled these X-rays; it is optimistic where the threshold was chosen on them."""
    y_true = np.asarray(y_true).astype(int)
    prob = np.asarray(prob, float)
    pos, neg = prob[y_true == 1], prob[y_true == 0]
    if not (pos.size and neg.size):
        raise ValueError("both classes are needed")
    rng = np.random.default_rng(seed)
    sens = (rng.choice(pos, (resamples, n_pneumonia)) >= threshold).mean(axis=1)
    spec = (rng.choice(neg, (resamples, n_normal)) < threshold).mean(axis=1)
    # a hair of slack so 0.87 of 116 is not lost to floating point
    ok_sens, ok_spec = sens >= min_sensitivity - 1e-12, spec >= min_specificity - 1e-12
    return {
        "threshold": float(threshold),
        "sensitivity": _ratio(int((pos >= threshold).sum()), pos.size),
        "specificity": _ratio(int((neg < threshold).sum()), neg.size),
        "p_sensitivity": float(ok_sens.mean()),
        "p_specificity": float(ok_spec.mean()),
        "p_both": float((ok_sens & ok_spec).mean()),
    }
