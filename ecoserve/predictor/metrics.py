"""Evaluation of a model on labeled data, always beside the two baselines.

Metrics, for the model and each baseline: MAE, median relative error, RL-bucket accuracy (exact
and within one bucket), Kendall's tau; for the reservation (upper): the under-prediction rate
(share of responses longer than it) and the mean reserved-but-unused tokens. Tau is given over
all records and within each answering model (a deployment orders one model's requests), and every
metric per answering model.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import kendalltau

from ecoserve.predictor.calibration import buckets_of
from ecoserve.predictor.datasets import LabeledSet, prompt_key
from ecoserve.predictor.model import RLModel, exact_prompt_tokens


def score(point: np.ndarray, upper: np.ndarray, actual: np.ndarray) -> dict[str, float]:
    """Metrics of one predictor (point and reservation) against actual lengths."""
    point, upper, actual = (np.asarray(a, dtype=float) for a in (point, upper, actual))
    pb, ab = buckets_of(point), buckets_of(actual)
    constant = np.ptp(point) == 0
    return {
        "mae": float(np.mean(np.abs(point - actual))),
        "median_relative_error": float(np.median(np.abs(point - actual) / actual)),
        "bucket_accuracy": float(np.mean(pb == ab)),
        "bucket_within_one": float(np.mean(np.abs(pb - ab) <= 1)),
        "kendall_tau": 0.0 if constant else float(kendalltau(point, actual).statistic),
        "under_prediction_rate": float(np.mean(actual > upper)),
        "mean_unused_reserved_tokens": float(np.mean(np.maximum(upper - actual, 0))),
        "mean_reserved_tokens": float(np.mean(upper)),
        "mean_overrun_tokens": float(np.mean(np.maximum(actual - upper, 0))),
    }


@dataclass(frozen=True)
class Evaluation:
    data: LabeledSet  # what was scored (unseen records only)
    point: np.ndarray
    upper: np.ndarray
    summary: dict  # eval.json


def unseen(model: RLModel, data: LabeledSet) -> tuple[LabeledSet, int]:
    """Drop records whose prompt the model trained or calibrated on; returns (rest, dropped)."""
    keys = np.array([prompt_key(c) for c in data.chats], dtype=np.uint32)
    keep = np.flatnonzero(~np.isin(keys, model.seen))
    return data.take(keep), len(data) - len(keep)


MIN_GROUP = 20  # fewer records of one answering model: left out of the within-model tau


def within_tau(point: np.ndarray, actual: np.ndarray, groups: list[str]) -> float:
    """Mean Kendall tau within each answering model with at least MIN_GROUP records (NaN: none)."""
    g = np.asarray(groups)
    taus = [
        score(point[m], point[m], actual[m])["kendall_tau"]
        for k in sorted(set(groups)) if (m := g == k).sum() >= MIN_GROUP
    ]
    return float(np.mean(taus)) if taus else float("nan")


def per_group(point: np.ndarray, upper: np.ndarray, actual: np.ndarray, labels: list[str]) -> dict[str, dict]:
    lab = np.asarray(labels)
    return {k: {"n": int(m.sum()), **score(point[m], upper[m], actual[m])}
            for k in sorted(set(labels)) if (m := lab == k).any()}


def evaluate(model: RLModel, data: LabeledSet, description: str) -> Evaluation:
    """Score the model beside the baselines on the records it never saw."""
    data, dropped = unseen(model, data)
    if len(data) == 0:
        raise ValueError("no unseen records to evaluate on (the model trained on all of them)")
    prompt_tokens = exact_prompt_tokens(model.counter, data.chats)
    point, upper = model.predict_tokens(data.chats, data.max_tokens, prompt_tokens)
    return summarize(model, data, point, upper, description, dropped)


def summarize(
    model: RLModel, data: LabeledSet, point: np.ndarray, upper: np.ndarray, description: str, dropped: int = 0
) -> Evaluation:
    """Metrics of predictions made for `data` (by the model, or through online calibration),
    beside the model's baselines and the constant at the data's own mean (hindsight)."""
    prompt_tokens = np.asarray(exact_prompt_tokens(model.counter, data.chats))
    actual = data.tokens
    b = model.baselines
    n = len(actual)
    mean_point = np.full(n, b.mean)
    global_upper = np.full(n, b.quantile_value)
    len_point, len_upper = b.by_prompt_len(prompt_tokens)
    ours = score(point, upper, actual)
    global_mean = score(mean_point, global_upper, actual)
    by_len = score(len_point, len_upper, actual)
    summary = {
        "data": description,
        "n": int(n),
        "n_dropped_seen": int(dropped),
        "quantile": model.quantile,
        **ours,
        "kendall_tau_within_model": within_tau(point, actual, data.groups),
        "baseline_prompt_len_tau_within_model": within_tau(len_point, actual, data.groups),
        "baseline_mean_mae": global_mean["mae"],
        "baseline_median_mae": float(np.mean(np.abs(b.median - actual))),
        "baseline_prompt_len_mae": by_len["mae"],
        "mae_reduction_vs_mean": 1.0 - ours["mae"] / global_mean["mae"],
        # The best constant with hindsight: what the data's own mean would give.
        "baseline_data_mean_mae": float(np.mean(np.abs(np.mean(actual) - actual))),
        "mae_reduction_vs_data_mean": 1.0 - ours["mae"] / float(np.mean(np.abs(np.mean(actual) - actual))),
        # The reservation's worth at equal risk: the constant that overruns as often as ours,
        # chosen with hindsight on this very data (which favours the baseline).
        "constant_unused_at_same_under_prediction": float(
            np.mean(np.maximum(np.quantile(actual, 1.0 - ours["under_prediction_rate"]) - actual, 0))
        ),
        "baselines": {"global": global_mean, "prompt_len": by_len},
        "per_source": per_group(point, upper, actual, data.sources),
        "per_model": per_group(point, upper, actual, data.groups),
        "actual_mean_tokens": float(np.mean(actual)),
        "model": {
            k: model.info.get(k) for k in ("data", "split_seed", "n_train", "n_calibration", "trees")
        },
    }
    return Evaluation(data=data, point=point, upper=upper, summary=summary)
