"""RLPredictor: the public face of the response-length model, safe to retrain while serving.

Predictions read the current model and its per-served-model calibration through one attribute,
so a swap is atomic: a call either runs entirely on the old model or entirely on the new one.
Retraining happens outside any lock that predictions take; only one retrain runs at a time.
"""

from __future__ import annotations

import importlib.resources
import threading
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ecoserve.core.request import Prediction
from ecoserve.core.rl_buckets import rl_bucket
from ecoserve.predictor.chat import Chat, Message, Request, as_chat
from ecoserve.predictor.datasets import LabeledSet, Sample, label
from ecoserve.predictor.model import RLModel
from ecoserve.predictor.online import OnlineCalibrator, OnlineConfig
from ecoserve.predictor.training import TrainConfig, train_on_log


def default_model_path() -> Path:
    return Path(str(importlib.resources.files("ecoserve.predictor") / "data" / "default_model.json.gz"))


@dataclass(frozen=True, slots=True)
class Completion:
    """A served request as the completion log records it: the request, how long the answer was,
    and which model answered (the calibration is kept per served model)."""

    prompt: str
    response_tokens: int
    max_tokens: int | None = None
    messages: tuple[Message, ...] = ()  # the chat, when the gateway passed it; else the prompt
    served_model: str = ""
    prompt_tokens: int | None = None

    @property
    def chat(self) -> Chat:
        return self.messages or as_chat(self.prompt)


@dataclass(frozen=True)
class _Served:
    """What one prediction reads: the model and its calibrations, swapped together."""

    model: RLModel
    calibrator: OnlineCalibrator


class RLPredictor:
    def __init__(self, model: RLModel, online: OnlineConfig = OnlineConfig()) -> None:
        self.online = online
        self._served = _Served(model, OnlineCalibrator(model.scale, online))
        self._retrain_lock = threading.Lock()

    @classmethod
    def load(
        cls, path: str | Path | None = None, *, tokenizer: str | None = None, nthread: int = 1
    ) -> RLPredictor:
        """Load a model file (None: the model shipped in the package). Raises PredictorError."""
        return cls(RLModel.load(path or default_model_path(), tokenizer=tokenizer, nthread=nthread))

    @property
    def model(self) -> RLModel:
        return self._served.model

    @property
    def calibrator(self) -> OnlineCalibrator:
        return self._served.calibrator

    @property
    def quantile(self) -> float:
        return self._served.model.quantile

    def predict(
        self,
        requests: Sequence[Request],
        max_tokens: list[int | None] | None = None,
        *,
        prompt_tokens: Sequence[int | None] | None = None,
        served_model: str | Sequence[str] = "",
    ) -> list[Prediction]:
        """One Prediction per request (a prompt string or a chat's messages); bucket is the point
        estimate's RL bucket. served_model (one for all, or one per request) picks the online
        calibration of the model that will answer.

        prompt_tokens: the requests' token counts when the caller has them (the gateway tokenizes
        anyway; None for one it has not); skips the predictor's own count of the last turn.
        """
        served = self._served
        n = len(requests)
        mt = max_tokens if max_tokens is not None else [None] * n
        scores = served.model.scores(requests, mt, prompt_tokens)
        names = [served_model] * n if isinstance(served_model, str) else list(served_model)
        if len(names) != n:
            raise ValueError("served_model must be one name or one per request")
        point, upper = np.zeros(n, np.int64), np.zeros(n, np.int64)
        for name in set(names):
            idx = [i for i, m in enumerate(names) if m == name]
            p, u = served.model.tokens(scores[idx], [mt[i] for i in idx], served.calibrator.scale_for(name))
            point[idx], upper[idx] = p, u
        return [
            Prediction(point=p, upper=u, bucket=rl_bucket(p))
            for p, u in zip(point.tolist(), upper.tolist())
        ]

    def predict_one(self, request: Request, max_tokens: int | None = None, served_model: str = "") -> Prediction:
        return self.predict([request], [max_tokens], served_model=served_model)[0]

    def observe(self, completions: Iterable[Completion]) -> None:
        """Calibrate on served completions, oldest first, per served model (the drift counters move)."""
        served = self._served
        by_model: dict[str, list[Completion]] = defaultdict(list)
        for c in completions:
            by_model[c.served_model].append(c)
        for name, items in by_model.items():
            scores = served.model.scores(
                [c.chat for c in items], [c.max_tokens for c in items], [c.prompt_tokens for c in items]
            )
            served.calibrator.observe(name, scores, np.array([c.response_tokens for c in items]))

    def swap(self, model: RLModel | RLPredictor, recent: Iterable[Completion] = ()) -> None:
        """Serve `model` from the next call on, calibrated on `recent` completions first; calls in
        flight finish on the model they started with."""
        new = model.model if isinstance(model, RLPredictor) else model
        staged = RLPredictor(new, self.online)
        staged.observe(recent)
        self._served = staged._served

    def retrain(
        self, completions: Iterable[Completion], *, seed: int = 0, swap: bool = True
    ) -> RLModel:
        """Train a model of the same configuration on observed completions (oldest first); swap it in.

        The newest 20% fit the scale head, the 10% before them stop boosting, the rest train; the
        online calibration then starts again from all of them. Returns the new model (its info has
        the figures); raises PredictorError when there are too few completions.
        """
        current = self._served.model
        items = list(completions)
        samples = [
            Sample(c.prompt, "completions", response_tokens=int(c.response_tokens), max_tokens=c.max_tokens,
                   chat=c.chat, generator=c.served_model)
            for c in items
        ]
        data: LabeledSet = label(samples, current.counter)
        recorded = TrainConfig.from_dict(current.info.get("config", {}))
        cfg = replace(recorded, seed=seed, features=current.features, quantile=current.quantile, calibration_sets=())
        info = {"data": ["completions"], "n_completions": len(data)}
        with self._retrain_lock:
            model = train_on_log(data, current.counter, cfg, info)
            if swap:
                self.swap(model, items)
        return model

    def save(self, path: str | Path) -> None:
        self._served.model.save(path)
