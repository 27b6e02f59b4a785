"""RLPredictor: the public face of the response-length model, safe to retrain while serving.

Predictions read the current model through one attribute, so a swap is atomic: a call either
runs entirely on the old model or entirely on the new one. Retraining happens outside any lock
that predictions take; only one retrain runs at a time.
"""

from __future__ import annotations

import importlib.resources
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from ecoserve.core.request import Prediction
from ecoserve.core.rl_buckets import rl_bucket
from ecoserve.predictor.datasets import LabeledSet, Sample, label
from ecoserve.predictor.model import RLModel
from ecoserve.predictor.training import TrainConfig, train_on


def default_model_path() -> Path:
    return Path(str(importlib.resources.files("ecoserve.predictor") / "data" / "default_model.json.gz"))


@dataclass(frozen=True, slots=True)
class Completion:
    """A served request as the completion log records it: its prompt and how long the answer was."""

    prompt: str
    response_tokens: int
    max_tokens: int | None = None


class RLPredictor:
    def __init__(self, model: RLModel) -> None:
        self._model = model
        self._retrain_lock = threading.Lock()

    @classmethod
    def load(
        cls, path: str | Path | None = None, *, tokenizer: str | None = None, nthread: int = 1
    ) -> RLPredictor:
        """Load a model file (None: the model shipped in the package). Raises PredictorError."""
        return cls(RLModel.load(path or default_model_path(), tokenizer=tokenizer, nthread=nthread))

    @property
    def model(self) -> RLModel:
        return self._model

    @property
    def quantile(self) -> float:
        return self._model.quantile

    def predict(
        self,
        prompts: list[str],
        max_tokens: list[int | None] | None = None,
        *,
        prompt_tokens: list[int] | None = None,
    ) -> list[Prediction]:
        """One Prediction per prompt; bucket is the point estimate's RL bucket.

        prompt_tokens: the prompts' token counts when the caller has them (the gateway tokenizes
        anyway); skips the predictor's own tokenization, the largest cost for long prompts.
        """
        point, upper = self._model.predict_tokens(prompts, max_tokens, prompt_tokens)
        return [
            Prediction(point=p, upper=u, bucket=rl_bucket(p))
            for p, u in zip(point.tolist(), upper.tolist())
        ]

    def predict_one(self, prompt: str, max_tokens: int | None = None) -> Prediction:
        return self.predict([prompt], [max_tokens])[0]

    def swap(self, model: RLModel | RLPredictor) -> None:
        """Serve `model` from the next call on; calls in flight finish on the model they started with."""
        self._model = model.model if isinstance(model, RLPredictor) else model

    def retrain(
        self, completions: Iterable[Completion], *, seed: int = 0, swap: bool = True
    ) -> RLModel:
        """Train a model of the same configuration on observed completions; swap it in.

        The completions are split 80/10/10 by prompt (seeded): 80% train, 10% stops boosting and
        calibrates the reservation, 10% is held out and never used. Returns the new model (its
        info has the figures); raises PredictorError when there are too few completions.
        """
        current = self._model
        samples = [
            Sample(c.prompt, "completions", response_tokens=int(c.response_tokens), max_tokens=c.max_tokens)
            for c in completions
        ]
        data: LabeledSet = label(samples, current.counter)
        recorded = current.info.get("config", {})
        cfg = TrainConfig(
            **{**recorded, "seed": seed, "features": current.features, "quantile": current.quantile}
        )
        info = {"data": ["completions"], "n_completions": len(data)}
        with self._retrain_lock:
            model = train_on(data, current.counter, cfg, info)
            if swap:
                self.swap(model)
        return model

    def save(self, path: str | Path) -> None:
        self._model.save(path)
