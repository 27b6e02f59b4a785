"""Measured misprediction, for the simulator's `noisy` predictor.

Held-out pairs (point/actual, upper/actual) of the real predictor, resampled jointly: a request
whose point is too low tends to have a reservation that is too low as well, and independent
noise on the two would hide exactly the overruns the scheduler must handle. The simulator makes
point = max(1, round(true_len * point_factor)), upper = max(point, round(true_len * upper_factor)).
"""

from __future__ import annotations

import importlib.resources
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

MAX_PAIRS = 2000


def default_error_model_path() -> Path:
    return Path(str(importlib.resources.files("ecoserve.predictor") / "data" / "error_model.json"))


@dataclass(frozen=True, eq=False)
class ErrorModel:
    point_factors: np.ndarray  # float64, point / actual
    upper_factors: np.ndarray  # float64, upper / actual, same length
    quantile: float  # the reservation quantile the predictor was configured with
    source: str  # which model, on which held-out data

    def __post_init__(self) -> None:
        if len(self.point_factors) == 0 or len(self.point_factors) != len(self.upper_factors):
            raise ValueError("an error model needs equal, non-empty arrays of factors")

    @classmethod
    def from_predictions(
        cls, point: np.ndarray, upper: np.ndarray, actual: np.ndarray, quantile: float,
        source: str, seed: int = 0, max_pairs: int = MAX_PAIRS,
    ) -> ErrorModel:
        """Factors of held-out predictions, subsampled (seeded) to at most max_pairs."""
        actual = np.asarray(actual, dtype=float)
        idx = np.arange(len(actual))
        if len(idx) > max_pairs:
            idx = np.sort(np.random.default_rng(seed).choice(idx, max_pairs, replace=False))
        return cls(
            point_factors=np.asarray(point, dtype=float)[idx] / actual[idx],
            upper_factors=np.asarray(upper, dtype=float)[idx] / actual[idx],
            quantile=float(quantile),
            source=f"{source}; {len(idx)} of {len(actual)} held-out pairs",
        )

    def sample(self, rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
        """n (point_factor, upper_factor) pairs drawn with replacement, each pair kept together."""
        idx = rng.integers(0, len(self.point_factors), size=n)
        return self.point_factors[idx], self.upper_factors[idx]

    def under_prediction_rate(self) -> float:
        """Share of requests whose reservation is shorter than the response (upper_factor < 1)."""
        return float(np.mean(self.upper_factors < 1.0))

    def to_json(self) -> str:
        return json.dumps(
            {
                "quantile": self.quantile,
                "source": self.source,
                "point_factors": [round(float(x), 5) for x in self.point_factors],
                "upper_factors": [round(float(x), 5) for x in self.upper_factors],
            }
        )

    @classmethod
    def from_json(cls, text: str) -> ErrorModel:
        d = json.loads(text)
        return cls(
            point_factors=np.asarray(d["point_factors"], dtype=float),
            upper_factors=np.asarray(d["upper_factors"], dtype=float),
            quantile=float(d["quantile"]),
            source=str(d["source"]),
        )

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.to_json() + "\n")

    @classmethod
    def load(cls, path: str | Path) -> ErrorModel:
        return cls.from_json(Path(path).read_text())

    @classmethod
    def load_default(cls) -> ErrorModel:
        """The error model measured for the shipped predictor on its held-out test split."""
        return cls.load(default_error_model_path())
