"""Online calibration per served model, from the completion log.

Each served model gets its own Scale (calibration.py), refitted on its most recent completions in
time order, all of them: no split of the log starves it. It starts from the trained model's scale
and moves as completions come in. Before a completion updates the scale it is scored against what
the current scale predicted (prequential), which is what drift detection watches: the share of
replies longer than the reservation over the last `drift_window` completions against 1 - q, and
their mean log error against zero. A drift drops the older records, so the new regime takes over
at once, and is counted: the service retrains on it.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from dataclasses import dataclass

import numpy as np

from ecoserve.predictor.calibration import Scale


@dataclass(frozen=True, slots=True)
class OnlineConfig:
    window: int = 2000  # newest completions per served model that a scale is fitted on
    refit_every: int = 20  # completions between refits
    drift_window: int = 200  # completions the drift test looks at
    drift_z: float = 4.0  # standard errors from the target that count as a drift


@dataclass(frozen=True, slots=True)
class CalibrationStatus:
    served_model: str
    completions: int  # observed since the model was swapped in
    window: int  # in the scale's fit now
    recent_under_prediction: float  # share over the drift window (NaN: none yet)
    recent_mean_log_error: float
    drifts: int


@dataclass
class _Track:
    """One served model's recent completions and the prequential errors on them."""

    scale: Scale
    scores: deque[float]  # the fit window
    tokens: deque[int]
    exceeded: deque[bool]  # the drift window
    log_error: deque[float]
    seen: int = 0
    since_refit: int = 0
    drifts: int = 0


class OnlineCalibrator:
    """Per-served-model scales; `scale_for` is safe to call while another thread observes."""

    def __init__(self, prior: Scale, config: OnlineConfig = OnlineConfig()) -> None:
        self.prior = prior
        self.config = config
        self._tracks: dict[str, _Track] = {}
        self._lock = threading.Lock()  # observers only; readers take a scale reference

    def scale_for(self, served_model: str) -> Scale:
        track = self._tracks.get(served_model)
        return track.scale if track is not None else self.prior

    def observe(self, served_model: str, scores: np.ndarray, tokens: np.ndarray) -> None:
        """Completions of one served model, oldest first, with the ranking head's scores."""
        c = self.config
        with self._lock:
            track = self._tracks.get(served_model)
            if track is None:
                track = _Track(self.prior, deque(maxlen=c.window), deque(maxlen=c.window),
                               deque(maxlen=c.drift_window), deque(maxlen=c.drift_window))
                self._tracks[served_model] = track
            for s, n in zip(np.asarray(scores, dtype=float).tolist(), np.asarray(tokens).tolist()):
                point, upper = track.scale.apply(np.array([s]))
                track.exceeded.append(n > upper[0])
                track.log_error.append(math.log1p(n) - math.log1p(point[0]))
                track.scores.append(s)
                track.tokens.append(int(n))
                track.seen += 1
                track.since_refit += 1
                if self._drifted(track):
                    track.drifts += 1
                    keep = c.drift_window
                    for q in (track.scores, track.tokens):
                        for _ in range(len(q) - keep):
                            q.popleft()
                    track.exceeded.clear()
                    track.log_error.clear()
                    track.since_refit = c.refit_every  # refit now
                if track.since_refit >= c.refit_every:
                    self._refit(track)

    def _refit(self, track: _Track) -> None:
        track.scale = Scale.fit(np.array(track.scores), np.array(track.tokens), self.prior.quantile, self.prior)
        track.since_refit = 0

    def _drifted(self, track: _Track) -> bool:
        w = len(track.exceeded)
        if w < self.config.drift_window:
            return False
        p = 1.0 - self.prior.quantile
        z_exceed = (sum(track.exceeded) - w * p) / math.sqrt(w * p * (1 - p))
        err = np.asarray(track.log_error)
        sd = float(err.std())
        z_bias = float(err.mean()) / (sd / math.sqrt(w)) if sd > 0 else 0.0
        return max(abs(z_exceed), abs(z_bias)) > self.config.drift_z

    def status(self) -> list[CalibrationStatus]:
        with self._lock:
            return [
                CalibrationStatus(
                    name, t.seen, len(t.scores),
                    float(np.mean(t.exceeded)) if t.exceeded else math.nan,
                    float(np.mean(t.log_error)) if t.log_error else math.nan,
                    t.drifts,
                )
                for name, t in sorted(self._tracks.items())
            ]

    def drifts(self) -> int:
        with self._lock:
            return sum(t.drifts for t in self._tracks.values())
