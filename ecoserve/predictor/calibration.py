"""The scale head: the ranking head's score -> response length in tokens, and the reservation.

The ranking head only orders requests; how many tokens a score means depends on the model that
answers (the same instructions get 90 tokens from one model and 470 from another). A Scale is a
line in log space, log(1 + RL) = intercept + slope * score, plus split-conformal offsets for the
upper quantile per RL bucket of the point (misprediction is not the same for short and long
answers). The slope is kept positive, so the point keeps the ranking head's order: ordering by
point is ordering by score.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from ecoserve.core.rl_buckets import BUCKET_EDGES, NUM_BUCKETS
from ecoserve.predictor.errors import PredictorError

MIN_BUCKET = 40  # fewer calibration records in a bucket: it uses the offset of all of them
MIN_SLOPE_RECORDS = 100  # fewer records: only the intercept is refitted, the slope is kept
MIN_SLOPE = 0.05


def conformal_offset(scores: np.ndarray, q: float) -> float:
    """Split-conformal quantile: the ceil((n + 1) q)-th smallest score."""
    n = len(scores)
    k = min(n, math.ceil((n + 1) * q))
    return float(np.sort(scores)[k - 1])


def buckets_of(tokens: np.ndarray) -> np.ndarray:
    return np.searchsorted(np.asarray(BUCKET_EDGES), tokens, side="right")  # == rl_bucket, vectorised


@dataclass(frozen=True)
class Scale:
    intercept: float
    slope: float
    offset: float  # log-space upper offset over all calibration records
    bucket_offsets: tuple[float, ...]  # per RL bucket of the point; NaN: too few records, use offset
    quantile: float
    n: int  # records it was fitted on

    @staticmethod
    def fit(scores: np.ndarray, tokens: np.ndarray, quantile: float, prior: Scale | None = None) -> Scale:
        """Least squares of log(1 + RL) on the score; with few records (or a slope that would turn
        the order round) the prior's slope is kept and only the intercept moves."""
        if not 0.0 < quantile < 1.0:
            raise PredictorError(f"quantile must be in (0, 1), not {quantile}")
        s = np.asarray(scores, dtype=float)
        y = np.log1p(np.asarray(tokens, dtype=float))
        if len(s) == 0:
            raise PredictorError("a scale needs at least one calibration record")
        slope = prior.slope if prior is not None else 1.0
        if len(s) >= MIN_SLOPE_RECORDS and np.ptp(s) > 0:
            fitted = float(np.cov(s, y, bias=True)[0, 1] / np.var(s))
            if fitted >= MIN_SLOPE or prior is None:
                slope = max(fitted, MIN_SLOPE)
        intercept = float(np.mean(y - slope * s))
        resid = y - (intercept + slope * s)
        offset = conformal_offset(resid, quantile)
        point_bucket = buckets_of(np.maximum(np.rint(np.expm1(intercept + slope * s)), 1))
        per_bucket = tuple(
            conformal_offset(resid[m], quantile) if (m := point_bucket == b).sum() >= MIN_BUCKET else math.nan
            for b in range(NUM_BUCKETS)
        )
        return Scale(intercept, slope, offset, per_bucket, float(quantile), int(len(s)))

    def apply(self, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(point, upper) in tokens, float; upper >= point."""
        log_point = self.intercept + self.slope * np.asarray(scores, dtype=float)
        point = np.maximum(np.rint(np.expm1(log_point)), 1.0)
        offsets = np.asarray(self.bucket_offsets)[buckets_of(point)]
        offsets = np.where(np.isnan(offsets), self.offset, offsets)
        upper = np.maximum(np.ceil(np.expm1(log_point + offsets)), point)
        return point, upper

    def to_dict(self) -> dict:
        d = asdict(self)
        d["bucket_offsets"] = [None if math.isnan(x) else x for x in self.bucket_offsets]
        return d

    @staticmethod
    def from_dict(d: dict) -> Scale:
        offsets = tuple(math.nan if x is None else float(x) for x in d["bucket_offsets"])
        if len(offsets) != NUM_BUCKETS:
            raise ValueError(f"scale has {len(offsets)} bucket offsets, expected {NUM_BUCKETS}")
        return Scale(float(d["intercept"]), float(d["slope"]), float(d["offset"]), offsets,
                     float(d["quantile"]), int(d["n"]))
