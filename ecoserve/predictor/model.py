"""A trained response-length model: features -> (point, upper) in tokens, and its file format.

One file (gzipped JSON) holds everything a prediction needs and what an evaluation must know:
the two XGBoost boosters (point: squared error on log(1 + RL); upper: quantile loss at q) as
UBJSON, the text prior, the conformal offset that calibrates the upper quantile, the tokenizer's
identity, the baselines fitted on the same training split, and fingerprints of the prompts the
model was trained or calibrated on (so evaluations can drop them).
"""

from __future__ import annotations

import base64
import gzip
import json
import math
import os
import tempfile
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import xgboost as xgb

from ecoserve.predictor.baselines import Baselines
from ecoserve.predictor.errors import PredictorError
from ecoserve.predictor.features import FeatureConfig, FeatureExtractor
from ecoserve.predictor.forest import Forest
from ecoserve.predictor.text_prior import TextPrior
from ecoserve.predictor.tokenizer import TokenCounter, load_tokenizer

FORMAT = "ecoserve-rl-predictor"
FOREST_MAX_ROWS = 64  # up to this many prompts, trees are walked with numpy (forest.py)
VERSION = 1


def _booster_bytes(b: xgb.Booster) -> str:
    return base64.b64encode(bytes(b.save_raw(raw_format="ubj"))).decode()


def _booster_from(text: str, nthread: int) -> xgb.Booster:
    b = xgb.Booster(params={"nthread": nthread})
    b.load_model(bytearray(base64.b64decode(text)))
    return b


@dataclass(frozen=True)
class RLModel:
    counter: TokenCounter
    features: FeatureConfig
    prior: TextPrior
    point_booster: xgb.Booster
    upper_booster: xgb.Booster
    quantile: float
    upper_offset: float  # added to the upper booster's log output (conformal calibration)
    baselines: Baselines
    seen: np.ndarray  # sorted uint32 prompt_key of every train/validation prompt
    info: dict = field(default_factory=dict)  # provenance and training figures, for reports

    def matrix(
        self, prompts: list[str], max_tokens: list[int | None], prompt_tokens: list[int]
    ) -> np.ndarray:
        f = FeatureExtractor(self.features).extract(prompts, prompt_tokens, max_tokens)
        return np.hstack([f.dense, self.prior.score(f.ngrams).astype(np.float32)[:, None]])

    def predict_tokens(
        self,
        prompts: list[str],
        max_tokens: list[int | None] | None = None,
        prompt_tokens: list[int] | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """(point, upper) response lengths in tokens, int64; upper >= point >= 1, both <= max_tokens."""
        n = len(prompts)
        if n == 0:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        mt = max_tokens if max_tokens is not None else [None] * n
        pt = prompt_tokens if prompt_tokens is not None else self.counter.count_batch(prompts)
        if len(mt) != n or len(pt) != n:
            raise ValueError("max_tokens and prompt_tokens must have one entry per prompt")
        x = self.matrix(prompts, mt, pt)
        if n <= FOREST_MAX_ROWS:
            log_point, log_upper = self._forest.predict(x).T
        else:
            log_point = self.point_booster.inplace_predict(x)
            log_upper = self.upper_booster.inplace_predict(x)
        log_upper = log_upper + self.upper_offset
        point = np.maximum(np.rint(np.expm1(log_point)), 1).astype(np.int64)
        upper = np.maximum(np.ceil(np.expm1(log_upper)), point).astype(np.int64)
        cap = np.array([m if m is not None and m > 0 else np.iinfo(np.int64).max for m in mt])
        return np.minimum(point, cap), np.minimum(upper, cap)

    @cached_property
    def _forest(self) -> Forest:
        return Forest.from_boosters([self.point_booster, self.upper_booster])

    def set_nthread(self, nthread: int) -> None:
        for b in (self.point_booster, self.upper_booster):
            b.set_param({"nthread": nthread})

    def to_dict(self) -> dict:
        return {
            "format": FORMAT,
            "version": VERSION,
            "quantile": self.quantile,
            "upper_offset": self.upper_offset,
            "tokenizer": {"spec": self.counter.spec, "fingerprint": self.counter.fingerprint},
            "features": {
                "word_buckets": self.features.word_buckets,
                "bigram_buckets": self.features.bigram_buckets,
                "lead_buckets": self.features.lead_buckets,
            },
            "prior": self.prior.to_dict(),
            "boosters": {
                "point": _booster_bytes(self.point_booster),
                "upper": _booster_bytes(self.upper_booster),
            },
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
        q = float(d["quantile"])
        if not 0.0 < q < 1.0 or not math.isfinite(float(d["upper_offset"])):
            raise PredictorError(f"model has an invalid quantile {q} or offset {d['upper_offset']}")
        return RLModel(
            counter=counter,
            features=FeatureConfig(**{k: int(v) for k, v in d["features"].items()}),
            prior=TextPrior.from_dict(d["prior"]),
            point_booster=_booster_from(d["boosters"]["point"], nthread),
            upper_booster=_booster_from(d["boosters"]["upper"], nthread),
            quantile=q,
            upper_offset=float(d["upper_offset"]),
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
