"""Response-length predictions for simulated requests: oracle, noisy (measured errors) or none."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import numpy as np

from ecoserve.core.policies.forecast import LengthForecast
from ecoserve.core.request import Prediction
from ecoserve.core.rl_buckets import rl_bucket

if TYPE_CHECKING:
    from ecoserve.predictor.error_model import ErrorModel

PredictorMode = Literal["oracle", "noisy", "none"]
PREDICTOR_MODES: tuple[str, ...] = ("oracle", "noisy", "none")


def make_predictions(
    output_lens: np.ndarray,
    mode: PredictorMode,
    rng: np.random.Generator,
    error_model: ErrorModel | None = None,
    none_quantile: float = 0.9,
) -> list[Prediction]:
    """One prediction per true length.

    noisy: the predictor's held-out (point/actual, upper/actual) pairs, resampled jointly, so the
    simulated misprediction has the real predictor's spread and calibration.
    none: no per-request information; everyone gets the workload's mean and upper quantile.
    """
    lens = np.asarray(output_lens, dtype=np.int64)
    if mode == "oracle":
        return [Prediction(int(n), int(n), rl_bucket(n)) for n in lens]
    if mode == "none":
        point = max(1, int(round(float(lens.mean()))))
        upper = max(point, int(np.quantile(lens, none_quantile)))
        return [Prediction(point, upper, rl_bucket(point))] * len(lens)
    if mode == "noisy":
        if error_model is None:
            from ecoserve.predictor.error_model import ErrorModel  # the shipped measurements

            error_model = ErrorModel.load_default()
        point_f, upper_f = error_model.sample(rng, len(lens))
        points = np.maximum(1, np.rint(lens * point_f)).astype(np.int64)
        uppers = np.maximum(points, np.rint(lens * upper_f)).astype(np.int64)
        return [Prediction(int(p), int(u), rl_bucket(p)) for p, u in zip(points, uppers)]
    raise ValueError(f"unknown predictor mode {mode!r}; choose from {', '.join(PREDICTOR_MODES)}")


def length_forecast(
    output_lens: np.ndarray, mode: PredictorMode, error_model: ErrorModel | None = None
) -> LengthForecast:
    """What a scheduler knows of its predictor's errors in each mode: none (oracle), the measured
    actual/predicted ratios (noisy: the same measurements the noise is drawn from), or the
    workload's lengths over their mean (none: everyone is predicted the mean)."""
    if mode == "oracle":
        return LengthForecast.exact()
    if mode == "none":
        lens = np.asarray(output_lens, dtype=np.float64)
        return LengthForecast(lens / max(1.0, round(float(lens.mean()))))
    if error_model is None:
        from ecoserve.predictor.error_model import ErrorModel

        error_model = ErrorModel.load_default()
    return LengthForecast(1.0 / error_model.point_factors)
