"""A trained response-length model: chat features -> ranking score -> (point, upper) in tokens.

One file (gzipped JSON) holds everything a prediction needs and what an evaluation must know:
the ranking head (an XGBoost booster, UBJSON) and the text prior it reads, the scale head that
turns its score into tokens and a calibrated reservation (calibration.py), the tokenizer's
identity, the baselines fitted on the same training split, and fingerprints of the conversations
the model was trained or calibrated on (so evaluations can drop them).
"""

from __future__ import annotations

import base64
import gzip
import json
import math
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import xgboost as xgb

from ecoserve.predictor.baselines import Baselines
from ecoserve.predictor.calibration import Scale
from ecoserve.predictor.chat import Chat, Request, as_chat, render
from ecoserve.predictor.chat_features import ChatFeatureExtractor
from ecoserve.predictor.errors import PredictorError
from ecoserve.predictor.features import FeatureConfig
from ecoserve.predictor.forest import Forest
from ecoserve.predictor.text_prior import TextPrior
from ecoserve.predictor.tokenizer import TokenCounter, load_tokenizer

FORMAT = "ecoserve-rl-predictor"
FOREST_MAX_ROWS = 64  # up to this many requests, trees are walked with numpy (forest.py)
VERSION = 2


def _booster_bytes(b: xgb.Booster) -> str:
    return base64.b64encode(bytes(b.save_raw(raw_format="ubj"))).decode()


def _booster_from(text: str, nthread: int) -> xgb.Booster:
    b = xgb.Booster(params={"nthread": nthread})
    b.load_model(bytearray(base64.b64decode(text)))
    return b


COUNT_SAMPLE_CHARS = 512


def count_prompt_tokens(counter: TokenCounter, chats: list[Chat]) -> list[int]:
    """Prompt tokens when the caller has not counted them: the first COUNT_SAMPLE_CHARS of the last
    user turn are tokenized and the count scaled to the whole chat's characters, so that neither a
    long turn nor a long history costs more than a short prompt (exact up to that length)."""
    samples = [next((m.content for m in reversed(c) if m.role == "user"), "")[:COUNT_SAMPLE_CHARS] for c in chats]
    counts = counter.count_batch(samples)
    total = [sum(len(m.content) for m in c) for c in chats]
    return [n if t <= len(p) else max(1, round(n * t / max(len(p), 1))) for n, p, t in zip(counts, samples, total)]


def exact_prompt_tokens(counter: TokenCounter, chats: list[Chat]) -> list[int]:
    """Tokens of the whole chat as plain text: what training counts (a gateway passes its own)."""
    return counter.count_batch([render(c) for c in chats])


@dataclass(frozen=True)
class RLModel:
    counter: TokenCounter
    features: FeatureConfig
    prior: TextPrior
    booster: xgb.Booster  # the ranking head: a score per request, higher = longer
    scale: Scale  # the scale head fitted on the calibration records
    baselines: Baselines
    seen: np.ndarray  # sorted uint32 prompt_key of every train/validation conversation
    info: dict = field(default_factory=dict)  # provenance and training figures, for reports

    @property
    def quantile(self) -> float:
        return self.scale.quantile

    def matrix(self, chats: list[Chat], max_tokens: list[int | None], prompt_tokens: list[int]) -> np.ndarray:
        f = ChatFeatureExtractor(self.features).extract(chats, prompt_tokens, max_tokens)
        return np.hstack([f.dense, self.prior.score(f.ngrams).astype(np.float32)[:, None]])

    def scores(
        self, requests: Sequence[Request], max_tokens: list[int | None] | None = None,
        prompt_tokens: Sequence[int | None] | None = None,
    ) -> np.ndarray:
        """The ranking head's score per request (a prompt or a chat), float64; higher = longer.
        A request without a prompt token count (None) is counted by count_prompt_tokens."""
        chats = [as_chat(r) for r in requests]
        n = len(chats)
        if n == 0:
            return np.zeros(0)
        mt = max_tokens if max_tokens is not None else [None] * n
        pt = list(prompt_tokens) if prompt_tokens is not None else [None] * n
        if len(mt) != n or len(pt) != n:
            raise ValueError("max_tokens and prompt_tokens must have one entry per request")
        missing = [i for i, t in enumerate(pt) if t is None]
        for i, t in zip(missing, count_prompt_tokens(self.counter, [chats[i] for i in missing]) if missing else ()):
            pt[i] = t
        x = self.matrix(chats, mt, pt)
        if n <= FOREST_MAX_ROWS:
            return self._forest.predict(x)[:, 0].astype(np.float64)
        return self.booster.inplace_predict(x).astype(np.float64)

    def tokens(
        self, scores: np.ndarray, max_tokens: list[int | None], scale: Scale | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(point, upper) in tokens, int64; upper >= point >= 1, both <= max_tokens."""
        point, upper = (scale or self.scale).apply(scores)
        cap = np.array([m if m is not None and m > 0 else np.inf for m in max_tokens], dtype=float)
        return np.minimum(point, cap).astype(np.int64), np.minimum(upper, cap).astype(np.int64)

    def predict_tokens(
        self,
        requests: Sequence[Request],
        max_tokens: list[int | None] | None = None,
        prompt_tokens: Sequence[int | None] | None = None,
        scale: Scale | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """(point, upper) in tokens for prompts or chats, with the model's scale or `scale`."""
        mt = max_tokens if max_tokens is not None else [None] * len(requests)
        return self.tokens(self.scores(requests, mt, prompt_tokens), mt, scale)

    @cached_property
    def _forest(self) -> Forest:
        return Forest.from_boosters([self.booster])

    def set_nthread(self, nthread: int) -> None:
        self.booster.set_param({"nthread": nthread})

    def to_dict(self) -> dict:
        return {
            "format": FORMAT,
            "version": VERSION,
            "tokenizer": {"spec": self.counter.spec, "fingerprint": self.counter.fingerprint},
            "features": {
                "word_buckets": self.features.word_buckets,
                "bigram_buckets": self.features.bigram_buckets,
                "lead_buckets": self.features.lead_buckets,
            },
            "prior": self.prior.to_dict(),
            "booster": _booster_bytes(self.booster),
            "scale": self.scale.to_dict(),
            "baselines": self.baselines.to_dict(),
            "seen_prompts": base64.b64encode(self.seen.astype("<u4").tobytes()).decode(),
            "info": self.info,
        }

    def save(self, path: str | Path) -> None:
        """Write atomically (temp file + rename): a reader never sees half a model."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; a model file is meant to be read by others
        try:
            with os.fdopen(fd, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as f:
                f.write(json.dumps(self.to_dict(), separators=(",", ":")).encode())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    @staticmethod
    def from_dict(d: dict, tokenizer: str | None = None, nthread: int = 1) -> RLModel:
        if d.get("format") != FORMAT:
            raise PredictorError(f"not an EcoServe RL predictor model (format={d.get('format')!r})")
        if d.get("version") != VERSION:
            raise PredictorError(f"model format version {d.get('version')} is not {VERSION}")
        tok = d["tokenizer"]
        counter = load_tokenizer(tokenizer or tok["spec"])
        if counter.fingerprint != tok["fingerprint"]:
            raise PredictorError(
                f"tokenizer {counter.spec} (fingerprint {counter.fingerprint}) is not the one the "
                f"model was trained with ({tok['spec']}, fingerprint {tok['fingerprint']})"
            )
        scale = Scale.from_dict(d["scale"])
        if not 0.0 < scale.quantile < 1.0 or not all(map(math.isfinite, (scale.intercept, scale.slope, scale.offset))):
            raise PredictorError(f"model has an invalid scale: {d['scale']}")
        return RLModel(
            counter=counter,
            features=FeatureConfig(**{k: int(v) for k, v in d["features"].items()}),
            prior=TextPrior.from_dict(d["prior"]),
            booster=_booster_from(d["booster"], nthread),
            scale=scale,
            baselines=Baselines.from_dict(d["baselines"]),
            seen=np.frombuffer(base64.b64decode(d["seen_prompts"]), dtype="<u4").astype(np.uint32),
            info=dict(d.get("info", {})),
        )

    @staticmethod
    def load(path: str | Path, tokenizer: str | None = None, nthread: int = 1) -> RLModel:
        """Load a model file; every way it can be unusable becomes a PredictorError saying why."""
        path = Path(path)
        if not path.is_file():
            raise PredictorError(f"model file not found: {path}")
        try:
            with gzip.open(path, "rt", encoding="utf-8") as f:
                d = json.load(f)
        except (OSError, EOFError, ValueError, UnicodeDecodeError) as e:
            raise PredictorError(f"model file {path} is corrupt or not a model: {e}") from e
        if not isinstance(d, dict):
            raise PredictorError(f"model file {path} is not a model (top level is not an object)")
        try:
            return RLModel.from_dict(d, tokenizer=tokenizer, nthread=nthread)
        except PredictorError as e:
            raise PredictorError(f"{path}: {e}") from e
        except (KeyError, TypeError, ValueError, xgb.core.XGBoostError) as e:
            raise PredictorError(f"model file {path} is corrupt or incomplete: {e!r}") from e
