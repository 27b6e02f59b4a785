"""Train on a small real slice, save, load, evaluate: library and CLI round trips.

"alpaca" is tests/data's cut of the set: its first 2200 records (tests/data/NOTICE.md).
"""

import json
import threading

import numpy as np
import pytest
from click.testing import CliRunner

from ecoserve.cli import main
from ecoserve.predictor import Completion, RLPredictor
from ecoserve.predictor.datasets import load_labeled, prompt_key
from ecoserve.predictor.features import FeatureConfig
from ecoserve.predictor.metrics import evaluate
from ecoserve.predictor.model import RLModel
from ecoserve.predictor.tokenizer import load_tokenizer
from ecoserve.predictor.training import TrainConfig, train_on

# Small enough for CI's two cores: fewer hash buckets and rounds, one thread (OpenMP threads
# spinning against each other on a busy two-core box are slower than one).
SMALL = TrainConfig(
    features=FeatureConfig(64, 64, 16), max_rounds=40, prior_folds=3, early_stopping=15, nthread=1
)
EVAL_KEYS = {
    "n", "kendall_tau", "mae", "baseline_mean_mae", "baseline_prompt_len_mae", "bucket_accuracy",
    "quantile", "under_prediction_rate", "mean_unused_reserved_tokens", "median_relative_error",
    "bucket_within_one",
}


@pytest.fixture(scope="module")
def alpaca():
    return load_labeled(["alpaca"], load_tokenizer())


@pytest.fixture(scope="module")
def small_model(alpaca):
    return train_on(alpaca.take(np.arange(1200)), load_tokenizer(), SMALL, {"data": ["alpaca[:1200]"]})


def test_small_model_beats_both_baselines_on_unseen_records(small_model, alpaca):
    ev = evaluate(small_model, alpaca.take(np.arange(1200, 2200)), "alpaca[1200:2200]")
    s = ev.summary
    assert s["n"] == 1000 - s["n_dropped_seen"] and s["n"] > 950
    assert s["kendall_tau"] > 0.3
    assert s["mae"] < s["baseline_prompt_len_mae"] < s["baseline_mean_mae"]
    assert 0.03 < s["under_prediction_rate"] < 0.2  # q = 0.9, calibrated on ~75 records
    assert (ev.upper >= ev.point).all() and (ev.point >= 1).all()


def test_training_records_are_dropped_from_evaluation(small_model, alpaca):
    keys = set(small_model.seen.tolist())
    seen = [i for i in range(1200) if prompt_key(alpaca.prompts[i]) in keys]
    assert 0.85 * 1200 < len(seen) < 0.95 * 1200  # train + validation, not the test tenth
    with pytest.raises(ValueError, match="no unseen records"):
        evaluate(small_model, alpaca.take(seen[:20]), "seen")


def test_save_load_round_trip_predicts_the_same(small_model, tmp_path, alpaca):
    path = tmp_path / "m.json.gz"
    small_model.save(path)
    loaded = RLModel.load(path)
    prompts = alpaca.prompts[2000:2100]
    for a, b in zip(small_model.predict_tokens(prompts), loaded.predict_tokens(prompts)):
        np.testing.assert_array_equal(a, b)


def test_cli_train_eval_predict_round_trip(tmp_path, alpaca):
    log = tmp_path / "completions.jsonl"
    log.write_text("\n".join(
        json.dumps({"prompt": p, "response_tokens": int(t)})
        for p, t in zip(alpaca.prompts[:800], alpaca.tokens[:800])
    ))
    model = tmp_path / "m.json.gz"
    runner = CliRunner()
    r = runner.invoke(main, [
        "predictor", "train", "--data", str(log), "--out", str(model), "--quantile", "0.8",
        "--max-rounds", "20", "--nthread", "1",
    ])
    assert r.exit_code == 0, r.output
    out = tmp_path / "eval"
    r = runner.invoke(main, ["predictor", "eval", "--model", str(model), "--out", str(out)])
    assert r.exit_code == 0, r.output
    summary = json.loads((out / "eval.json").read_text())
    assert EVAL_KEYS <= summary.keys() and summary["quantile"] == 0.8
    assert 50 < summary["n"] < 120  # the held-out 10% of the log
    assert {"report.md", "scatter.png", "ratios.png", "buckets.png", "error_model.json"} <= {
        p.name for p in out.iterdir()
    }
    args = ["predictor", "predict", "--model", str(model), "--max-tokens", "5", "Write a poem."]
    r = runner.invoke(main, args)
    assert r.exit_code == 0, r.output
    line = json.loads(r.output.strip().splitlines()[-1])
    assert 1 <= line["point"] <= line["upper"] <= 5


def test_retrain_swaps_while_predictions_run(small_model, alpaca):
    predictor = RLPredictor(small_model)
    prompts = alpaca.prompts[2100:2132]
    errors: list[BaseException] = []
    stop = threading.Event()

    def hammer() -> None:
        try:
            while not stop.wait(0.005):
                assert len(predictor.predict(prompts)) == len(prompts)
        except BaseException as e:  # noqa: BLE001 - surfaced by the assert below
            errors.append(e)

    t = threading.Thread(target=hammer)
    t.start()
    try:
        completions = [
            Completion(p, int(n) * 3) for p, n in zip(alpaca.prompts[:800], alpaca.tokens[:800])
        ]
        new = predictor.retrain(completions)
    finally:
        stop.set()
        t.join()
    assert not errors
    assert predictor.model is new and new is not small_model
    # the retrained model learned answers three times as long
    before = np.median(small_model.predict_tokens(prompts)[0])
    after = np.median([p.point for p in predictor.predict(prompts)])
    assert after > 2 * before
