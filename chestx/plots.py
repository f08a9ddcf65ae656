"""Evaluation plots (matplotlib, no display needed): confusion matrix, ROC, PR, calibration."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def write_plots(y_true, prob, threshold: float, out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.calibration import calibration_curve
    from sklearn.metrics import auc, precision_recall_curve, roc_curve

    from chestx.metrics import confusion

    out.mkdir(parents=True, exist_ok=True)
    y_true = np.asarray(y_true).astype(int)
    prob = np.asarray(prob, float)
    written = []

    def save(fig, name):
        path = out / name
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)

    cm = np.array(confusion(y_true, (prob >= threshold).astype(int)))
    fig, ax = plt.subplots(figsize=(4.2, 3.8))
    ax.imshow(cm, cmap="Blues")
    for (i, j), v in np.ndenumerate(cm):
        ax.text(
            j,
            i,
            str(v),
            ha="center",
            va="center",
            color="white" if v > cm.max() / 2 else "black",
            fontsize=14,
        )
    ax.set_xticks([0, 1], ["NORMAL", "PNEUMONIA"])
    ax.set_yticks([0, 1], ["NORMAL", "PNEUMONIA"])
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"Confusion matrix (threshold {threshold:.3f})")
    save(fig, "confusion_matrix.png")

    fpr, tpr, thr = roc_curve(y_true, prob)
    fig, ax = plt.subplots(figsize=(4.2, 4))
    ax.plot(fpr, tpr, label=f"ROC AUC {auc(fpr, tpr):.3f}")
    ax.plot([0, 1], [0, 1], ls=":", c="grey")
    op = prob >= threshold
    sens = op[y_true == 1].mean() if (y_true == 1).any() else np.nan
    fpr_op = op[y_true == 0].mean() if (y_true == 0).any() else np.nan
    ax.scatter([fpr_op], [sens], c="red", zorder=3, label="operating point")
    ax.set_xlabel("1 - specificity")
    ax.set_ylabel("sensitivity")
    ax.legend(loc="lower right")
    ax.set_title("ROC")
    save(fig, "roc.png")

    precision, recall, _ = precision_recall_curve(y_true, prob)
    fig, ax = plt.subplots(figsize=(4.2, 4))
    ax.plot(recall, precision, label=f"PR AUC {auc(recall, precision):.3f}")
    ax.set_xlabel("recall (sensitivity)")
    ax.set_ylabel("precision")
    ax.legend(loc="lower left")
    ax.set_title("Precision-recall")
    save(fig, "precision_recall.png")

    frac, mean_pred = calibration_curve(y_true, prob, n_bins=10, strategy="uniform")
    fig, ax = plt.subplots(figsize=(4.2, 4))
    ax.plot(mean_pred, frac, marker="o", label="model")
    ax.plot([0, 1], [0, 1], ls=":", c="grey", label="perfect")
    ax.set_xlabel("predicted P(pneumonia)")
    ax.set_ylabel("observed fraction pneumonia")
    ax.legend(loc="upper left")
    ax.set_title("Calibration")
    save(fig, "calibration.png")
    return written
