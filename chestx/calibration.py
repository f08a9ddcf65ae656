"""The site calibration a card carries: one temperature ``T`` and an optional logit offset
``b``, ``p' = sigmoid(logit(p) / T + b)``, and their maximum-likelihood fit.

The transform every runtime applies (``chestx.predict.Predictor``, ``chestx ensemble``) lives
here, apart from the ``chestx calibrate`` stage that fits and writes it (``chestx.calibrate``),
so that predicting never imports the stage and the stage may use the predictor.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_EPS = 1e-7


def logit(prob) -> np.ndarray:
    p = np.clip(np.asarray(prob, np.float64), _EPS, 1 - _EPS)
    return np.log(p) - np.log1p(-p)


def apply_temperature(prob, temperature: float, bias: float = 0.0) -> np.ndarray:
    """``sigmoid(logit(p) / T + b)``: the calibrated probability (``T=1, b=0`` leave ``p``)."""
    prob = np.asarray(prob, np.float32)
    if temperature == 1.0 and bias == 0.0:
        return prob
    return (1.0 / (1.0 + np.exp(-(logit(prob) / temperature + bias)))).astype(np.float32)


@dataclass(frozen=True)
class Calibration:
    """The card's ``temperature`` and ``logit_bias``, as one transform of probabilities."""

    temperature: float = 1.0
    bias: float = 0.0

    @classmethod
    def from_card(cls, card: dict) -> Calibration:
        return cls(float(card.get("temperature", 1.0)), float(card.get("logit_bias", 0.0)))

    @property
    def identity(self) -> bool:
        return self.temperature == 1.0 and self.bias == 0.0

    def apply(self, prob) -> np.ndarray:
        return apply_temperature(prob, self.temperature, self.bias)

    def raw_threshold(self, threshold: float) -> float:
        """The threshold on the uncalibrated output that makes the same decisions."""
        if self.identity:
            return threshold
        z = self.temperature * (float(logit(threshold)) - self.bias)
        return float(1.0 / (1.0 + np.exp(-z)))


def fit_temperature(y_true, prob, *, bias: bool = False) -> tuple[float, float]:
    """``(T, b)`` minimising the binary cross-entropy of ``sigmoid(logit(p) / T + b)``; ``b`` is
    0 unless ``bias``."""
    from scipy.optimize import minimize

    y = np.asarray(y_true, np.float64)
    z = logit(prob)

    def nll(params) -> float:
        s = z / np.exp(params[0]) + (params[1] if bias else 0.0)
        # log(1 + e^-s) for y=1, log(1 + e^s) for y=0, computed stably
        return float(np.mean(np.logaddexp(0.0, -s) * y + np.logaddexp(0.0, s) * (1 - y)))

    res = minimize(
        nll, x0=np.zeros(2), method="L-BFGS-B", bounds=[(np.log(0.05), np.log(20.0)), (-10.0, 10.0)]
    )
    return float(np.exp(res.x[0])), float(res.x[1]) if bias else 0.0
