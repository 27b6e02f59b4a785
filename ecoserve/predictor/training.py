"""Training: seeded splits, text prior out-of-fold, two boosters, conformal calibration.

The validation split is cut in two halves by prompt hash: one stops the boosting early, the other
calibrates the reservation (split conformal: the upper quantile is shifted in log space so that
a share q of calibration responses lie at or below it). The test split never enters fit().
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field

import numpy as np
import xgboost as xgb

from ecoserve.predictor.baselines import Baselines
from ecoserve.predictor.datasets import LabeledSet, prompt_key, split_indices
from ecoserve.predictor.errors import PredictorError
from ecoserve.predictor.features import FeatureConfig, FeatureExtractor
from ecoserve.predictor.model import RLModel
from ecoserve.predictor.text_prior import TextPrior
from ecoserve.predictor.tokenizer import TokenCounter

MIN_TRAIN = 50


@dataclass(frozen=True)
class TrainConfig:
    quantile: float = 0.9
    seed: int = 0
    features: FeatureConfig = field(default_factory=FeatureConfig)
    prior_damp: float = 4.0
    prior_folds: int = 5
    max_depth: int = 6
    eta: float = 0.05
    subsample: float = 0.8
    colsample_bytree: float = 0.5
    min_child_weight: float = 5.0
    max_rounds: int = 2000
    early_stopping: int = 50
    nthread: int = 0  # 0: every core

    def to_dict(self) -> dict:
        return asdict(self)


def _boost(
    params: dict, x: np.ndarray, y: np.ndarray, xv: np.ndarray, yv: np.ndarray, cfg: TrainConfig
) -> xgb.Booster:
    dtrain = xgb.QuantileDMatrix(x, y)
    dval = xgb.DMatrix(xv, yv)
    booster = xgb.train(
        params,
        dtrain,
        num_boost_round=cfg.max_rounds,
        evals=[(dval, "val")],
        early_stopping_rounds=cfg.early_stopping,
        verbose_eval=False,
    )
    return booster[: booster.best_iteration + 1]  # keep only the trees that helped


def conformal_offset(scores: np.ndarray, q: float) -> float:
    """Split-conformal quantile: the ceil((n + 1) q)-th smallest score."""
    n = len(scores)
    k = min(n, math.ceil((n + 1) * q))
    return float(np.sort(scores)[k - 1])


def fit(
    train: LabeledSet, val: LabeledSet, counter: TokenCounter, cfg: TrainConfig, info: dict
) -> RLModel:
    """Train on `train`; `val` stops boosting (one half) and calibrates the reservation (other)."""
    if not 0.0 < cfg.quantile < 1.0:
        raise PredictorError(f"quantile must be in (0, 1), not {cfg.quantile}")
    if len(train) < MIN_TRAIN or len(val) < 10:
        raise PredictorError(
            f"too little data to train: {len(train)} training and {len(val)} validation records "
            f"(need {MIN_TRAIN} and 10)"
        )
    halves = split_indices(val.prompts, cfg.seed + 1, (0.5, 0.5, 0.0))
    stop, calib = val.take(halves["train"]), val.take(halves["val"])
    if len(stop) == 0 or len(calib) == 0:
        stop, calib = val, val
    fe = FeatureExtractor(cfg.features)

    def prepare(s: LabeledSet) -> tuple[np.ndarray, list, np.ndarray]:
        pt = np.asarray(counter.count_batch(s.prompts))
        f = fe.extract(s.prompts, pt.tolist(), s.max_tokens)
        return f.dense, f.ngrams, pt

    y = np.log1p(train.tokens.astype(float))
    x, ngrams, train_pt = prepare(train)
    prior = TextPrior.fit(ngrams, y, cfg.prior_damp)
    oof = TextPrior.out_of_fold(ngrams, y, cfg.prior_damp, cfg.prior_folds, cfg.seed)
    x = np.hstack([x, oof.astype(np.float32)[:, None]])

    def with_prior(s: LabeledSet) -> np.ndarray:
        d, g, _ = prepare(s)
        return np.hstack([d, prior.score(g).astype(np.float32)[:, None]])

    xs, ys = with_prior(stop), np.log1p(stop.tokens.astype(float))
    common = {
        "tree_method": "hist",
        "max_depth": cfg.max_depth,
        "eta": cfg.eta,
        "subsample": cfg.subsample,
        "colsample_bytree": cfg.colsample_bytree,
        "min_child_weight": cfg.min_child_weight,
        "nthread": cfg.nthread or os.cpu_count() or 1,
        "seed": cfg.seed,
    }
    point = _boost({**common, "objective": "reg:squarederror"}, x, y, xs, ys, cfg)
    upper = _boost(
        {**common, "objective": "reg:quantileerror", "quantile_alpha": cfg.quantile},
        x, y, xs, ys, cfg,
    )
    xc = with_prior(calib)
    scores = np.log1p(calib.tokens.astype(float)) - upper.inplace_predict(xc)
    offset = conformal_offset(scores, cfg.quantile)
    seen = np.unique(np.array([prompt_key(p) for p in train.prompts + val.prompts], dtype=np.uint32))
    info = {
        **info,
        "config": cfg.to_dict(),
        "n_train": len(train),
        "n_stop": len(stop),
        "n_calibration": len(calib),
        "point_trees": point.num_boosted_rounds(),
        "upper_trees": upper.num_boosted_rounds(),
        "xgboost": xgb.__version__,
    }
    model = RLModel(
        counter=counter,
        features=cfg.features,
        prior=prior,
        point_booster=point,
        upper_booster=upper,
        quantile=cfg.quantile,
        upper_offset=offset,
        baselines=Baselines.fit(train_pt, train.tokens, cfg.quantile),
        seen=seen,
        info=info,
    )
    model.set_nthread(1)
    return model


def train_on(data: LabeledSet, counter: TokenCounter, cfg: TrainConfig, info: dict) -> RLModel:
    """Seeded 80/10/10 split of `data`; fit on train + val, leave test out."""
    split = split_indices(data.prompts, cfg.seed)
    info = {**info, "split_seed": cfg.seed, "n_test_held_out": int(len(split["test"]))}
    return fit(data.take(split["train"]), data.take(split["val"]), counter, cfg, info)
