"""Training: seeded splits, text prior out-of-fold, the ranking head, the scale head.

Offline (data sets): the validation split is cut in two halves by conversation hash: one stops the
boosting early, the other fits the scale head (calibration.py). The test split never enters fit().
From a completion log (time-ordered): the newest records calibrate, every one of them, and the
ones before them stop the boosting; nothing is held out, because the online calibration's
prequential errors on the next completions are the test.

The ranking head is a booster whose score orders requests: squared error on log(1 + RL)
("regression", the default: it ranked unseen chats better in 10 of the 12 splits measured,
docs/predictor.md) or XGBoost's pairwise objective with pairs only within one answering model
(`LabeledSet.groups`, "pairwise"). Either way how many tokens a score means is the scale head's job.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from typing import Literal

import numpy as np
import xgboost as xgb

from ecoserve.predictor.baselines import Baselines
from ecoserve.predictor.calibration import Scale
from ecoserve.predictor.chat_features import ChatFeatureExtractor
from ecoserve.predictor.datasets import LabeledSet, prompt_key, split_indices
from ecoserve.predictor.errors import PredictorError
from ecoserve.predictor.features import FeatureConfig
from ecoserve.predictor.model import RLModel, exact_prompt_tokens
from ecoserve.predictor.text_prior import TextPrior
from ecoserve.predictor.tokenizer import TokenCounter

MIN_TRAIN = 50
LABEL_STEPS = 8  # pairwise labels: log(1 + RL) in steps of 1/8 (XGBoost's ranking wants integers)

Head = Literal["pairwise", "regression"]


@dataclass(frozen=True)
class TrainConfig:
    quantile: float = 0.9
    seed: int = 0
    features: FeatureConfig = field(default_factory=FeatureConfig)
    head: Head = "regression"
    pairs_per_sample: int = 8
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
    # Sources whose records fit the scale head and the baselines (empty: all). The ranking head
    # learns from every set; the scale should be that of the traffic served, not of a mix.
    calibration_sets: tuple[str, ...] = ()

    def to_dict(self) -> dict:
        return asdict(self)

    @staticmethod
    def from_dict(d: dict) -> TrainConfig:
        d = dict(d)
        if isinstance(d.get("features"), dict):
            d["features"] = FeatureConfig(**d["features"])
        d["calibration_sets"] = tuple(d.get("calibration_sets", ()))
        return TrainConfig(**{k: v for k, v in d.items() if k in TrainConfig.__dataclass_fields__})


def _matrix(data: LabeledSet, prior: TextPrior, counter: TokenCounter, cfg: TrainConfig) -> np.ndarray:
    pt = exact_prompt_tokens(counter, data.chats)
    f = ChatFeatureExtractor(cfg.features).extract(data.chats, pt, data.max_tokens)
    return np.hstack([f.dense, prior.score(f.ngrams).astype(np.float32)[:, None]])


def centred_target(data: LabeledSet) -> np.ndarray:
    """log(1 + RL) less its answering model's mean: what the ranking head learns, so that sets
    answered at different lengths (Alpaca's 56 tokens, GPT-4's 470) pool their prompts without
    teaching the trees which set a prompt looks like."""
    y = np.log1p(data.tokens.astype(float))
    groups = np.asarray(data.groups)
    for g in set(data.groups):
        m = groups == g
        y[m] -= y[m].mean()
    return y


def _dmatrix(x: np.ndarray, data: LabeledSet, cfg: TrainConfig) -> xgb.DMatrix:
    y = np.log1p(data.tokens.astype(float))
    if cfg.head == "regression":
        return xgb.DMatrix(x, centred_target(data))
    names = sorted(set(data.groups))
    qid = np.array([names.index(g) for g in data.groups])
    order = np.argsort(qid, kind="stable")
    return xgb.DMatrix(x[order], np.rint(y[order] * LABEL_STEPS), qid=qid[order])


def _boost(x: np.ndarray, train: LabeledSet, xv: np.ndarray, stop: LabeledSet, cfg: TrainConfig) -> xgb.Booster:
    params = {
        "tree_method": "hist",
        "max_depth": cfg.max_depth,
        "eta": cfg.eta,
        "subsample": cfg.subsample,
        "colsample_bytree": cfg.colsample_bytree,
        "min_child_weight": cfg.min_child_weight,
        "nthread": cfg.nthread or os.cpu_count() or 1,
        "seed": cfg.seed,
    }
    if cfg.head == "regression":
        params["objective"] = "reg:squarederror"
    else:  # concordant pairs within each answering model; "auc" on qid data counts exactly those
        params.update(objective="rank:pairwise", eval_metric="auc", lambdarank_pair_method="mean",
                      lambdarank_num_pair_per_sample=cfg.pairs_per_sample)
    booster = xgb.train(
        params,
        _dmatrix(x, train, cfg),
        num_boost_round=cfg.max_rounds,
        evals=[(_dmatrix(xv, stop, cfg), "stop")],
        early_stopping_rounds=cfg.early_stopping,
        verbose_eval=False,
    )
    return booster[: booster.best_iteration + 1]  # keep only the trees that helped


def _calibration_records(data: LabeledSet, cfg: TrainConfig) -> LabeledSet:
    if not cfg.calibration_sets:
        return data
    kept = data.take(np.flatnonzero(np.isin(data.sources, cfg.calibration_sets)))
    if len(kept) < 5:
        raise PredictorError(f"only {len(kept)} records of {', '.join(cfg.calibration_sets)} to calibrate on")
    return kept


def fit(
    train: LabeledSet, stop: LabeledSet, calib: LabeledSet, counter: TokenCounter, cfg: TrainConfig, info: dict
) -> RLModel:
    """Train the ranking head on `train` (boosting stopped on `stop`), the scale head on `calib`."""
    if len(train) < MIN_TRAIN or len(stop) < 5 or len(calib) < 5:
        raise PredictorError(
            f"too little data to train: {len(train)} training, {len(stop)} early-stopping and {len(calib)} "
            f"calibration records (need {MIN_TRAIN}, 5 and 5)"
        )
    if not 0.0 < cfg.quantile < 1.0:
        raise PredictorError(f"quantile must be in (0, 1), not {cfg.quantile}")
    y = centred_target(train)
    pt = np.asarray(exact_prompt_tokens(counter, train.chats))
    f = ChatFeatureExtractor(cfg.features).extract(train.chats, pt.tolist(), train.max_tokens)
    prior = TextPrior.fit(f.ngrams, y, cfg.prior_damp)
    oof = TextPrior.out_of_fold(f.ngrams, y, cfg.prior_damp, cfg.prior_folds, cfg.seed)
    x = np.hstack([f.dense, oof.astype(np.float32)[:, None]])
    booster = _boost(x, train, _matrix(stop, prior, counter, cfg), stop, cfg)
    scaled, scaled_train = _calibration_records(calib, cfg), _calibration_records(train, cfg)
    scale = Scale.fit(booster.inplace_predict(_matrix(scaled, prior, counter, cfg)), scaled.tokens, cfg.quantile)
    booster.set_param({"nthread": 1})
    info = {
        **info,
        "config": cfg.to_dict(),
        "n_train": len(train),
        "n_stop": len(stop),
        "n_calibration": len(scaled),
        "trees": booster.num_boosted_rounds(),
        "xgboost": xgb.__version__,
    }
    seen = [prompt_key(c) for c in train.chats + stop.chats + calib.chats]
    return RLModel(
        counter=counter, features=cfg.features, prior=prior, booster=booster, scale=scale,
        baselines=Baselines.fit(np.asarray(exact_prompt_tokens(counter, scaled_train.chats)), scaled_train.tokens,
                                cfg.quantile),
        seen=np.unique(np.array(seen, dtype=np.uint32)), info=info,
    )


def train_on(data: LabeledSet, counter: TokenCounter, cfg: TrainConfig, info: dict) -> RLModel:
    """Seeded 80/10/10 split of `data` by conversation; fit on train + val, leave test out."""
    split = split_indices(data.chats, cfg.seed)
    val = data.take(split["val"])
    halves = split_indices(val.chats, cfg.seed + 1, (0.5, 0.5, 0.0))
    info = {**info, "split_seed": cfg.seed, "n_test_held_out": int(len(split["test"]))}
    return fit(data.take(split["train"]), val.take(halves["train"]), val.take(halves["val"]), counter, cfg, info)


def train_on_log(data: LabeledSet, counter: TokenCounter, cfg: TrainConfig, info: dict,
                 calibrate: float = 0.2, stop: float = 0.1) -> RLModel:
    """Completions oldest first: the newest `calibrate` share fits the scale, the `stop` share before
    it stops the boosting, the rest trains."""
    n = len(data)
    n_cal, n_stop = max(5, round(n * calibrate)), max(5, round(n * stop))
    idx = np.arange(n)
    parts = idx[: n - n_cal - n_stop], idx[n - n_cal - n_stop: n - n_cal], idx[n - n_cal:]
    info = {**info, "split": "time-ordered", "n_test_held_out": 0}
    return fit(*(data.take(p) for p in parts), counter, cfg, info)
