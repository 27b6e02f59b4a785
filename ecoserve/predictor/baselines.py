"""The two baselines every evaluation is reported beside, fitted on the model's training split.

- global: the training mean as the point (and the median, the best constant for MAE), the
  training q-quantile as the reservation.
- prompt length: least squares of log(1 + RL) on log(1 + prompt tokens); the reservation adds
  the q-quantile of the training residuals.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class Baselines:
    mean: float
    median: float
    quantile_value: float
    len_intercept: float
    len_slope: float
    len_upper_offset: float

    @staticmethod
    def fit(prompt_tokens: np.ndarray, tokens: np.ndarray, quantile: float) -> Baselines:
        x = np.log1p(prompt_tokens.astype(float))
        y = np.log1p(tokens.astype(float))
        slope, intercept = np.polyfit(x, y, 1) if np.ptp(x) > 0 else (0.0, float(np.mean(y)))
        resid = y - (intercept + slope * x)
        return Baselines(
            mean=float(np.mean(tokens)),
            median=float(np.median(tokens)),
            quantile_value=float(np.quantile(tokens, quantile)),
            len_intercept=float(intercept),
            len_slope=float(slope),
            len_upper_offset=float(np.quantile(resid, quantile)),
        )

    def by_prompt_len(self, prompt_tokens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(point, upper) of the prompt-length regression."""
        log_point = self.len_intercept + self.len_slope * np.log1p(prompt_tokens.astype(float))
        return np.expm1(log_point), np.expm1(log_point + self.len_upper_offset)

    def to_dict(self) -> dict:
        return asdict(self)

    @staticmethod
    def from_dict(d: dict) -> Baselines:
        return Baselines(**{k: float(d[k]) for k in Baselines.__dataclass_fields__})
