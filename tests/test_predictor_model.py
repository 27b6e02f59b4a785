"""The shipped model and error model: load, predict, and fail clearly on bad files."""

import gzip
import json

import numpy as np
import pytest

from ecoserve.core.request import Prediction
from ecoserve.core.rl_buckets import rl_bucket
from ecoserve.predictor import ErrorModel, PredictorError, RLPredictor
from ecoserve.predictor.chat import as_chat
from ecoserve.predictor.predictor import default_model_path


@pytest.fixture(scope="module")
def shipped() -> RLPredictor:
    return RLPredictor.load()


def test_shipped_model_is_small_and_predicts(shipped):
    assert default_model_path().stat().st_size < 2_000_000
    preds = shipped.predict(
        ["Answer yes or no: is water wet?", "Write a detailed 1000-word essay on climate change."]
    )
    assert all(isinstance(p, Prediction) for p in preds)
    for p in preds:
        assert 1 <= p.point <= p.upper and p.bucket == rl_bucket(p.point)
    short, long = preds
    assert long.point > 4 * short.point
    assert shipped.quantile == 0.9


def test_predict_one_and_max_tokens_cap(shipped):
    p = shipped.predict_one("Write a detailed 1000-word essay on climate change.", max_tokens=50)
    assert p.point <= p.upper <= 50
    assert shipped.predict([]) == []


def test_prompt_token_counts_from_the_caller_give_the_same_answer(shipped):
    prompts = ["Summarize the plot of Hamlet.", "Name a color."]
    counts = shipped.model.counter.count_batch(prompts)
    assert shipped.predict(prompts) == shipped.predict(prompts, prompt_tokens=counts)


def test_missing_model_file_is_a_clear_error(tmp_path):
    with pytest.raises(PredictorError, match="not found"):
        RLPredictor.load(tmp_path / "nope.json.gz")


@pytest.mark.parametrize(
    "content, message",
    [
        (b"this is not gzip", "corrupt"),
        (gzip.compress(b"{\"format\": "), "corrupt"),
        (gzip.compress(json.dumps({"format": "something else"}).encode()), "not an EcoServe"),
        (gzip.compress(json.dumps([1, 2]).encode()), "not a model"),
    ],
)
def test_corrupt_model_file_is_a_clear_error(tmp_path, content, message):
    path = tmp_path / "bad.json.gz"
    path.write_bytes(content)
    with pytest.raises(PredictorError, match=message):
        RLPredictor.load(path)


def test_damaged_booster_is_a_clear_error(tmp_path):
    d = json.loads(gzip.decompress(default_model_path().read_bytes()))
    d["booster"] = d["booster"][:1000]
    path = tmp_path / "damaged.json.gz"
    path.write_bytes(gzip.compress(json.dumps(d).encode()))
    with pytest.raises(PredictorError, match="corrupt or incomplete"):
        RLPredictor.load(path)


def test_a_different_tokenizer_is_refused(tmp_path):
    tok = tmp_path / "tokenizer.json"
    tok.write_text('{"version": "1.0", "model": {"type": "WordLevel", "vocab": {"a": 0}, "unk_token": "a"}}')
    with pytest.raises(PredictorError, match="not the one the model was trained with"):
        RLPredictor.load(tokenizer=str(tmp_path))


def test_shipped_error_model_is_measured_and_calibrated():
    em = ErrorModel.load_default()
    assert em.quantile == 0.9 and 1000 <= len(em.point_factors) <= 2000
    assert "held-out" in em.source
    assert 0.08 <= em.under_prediction_rate() <= 0.12  # what q = 0.9 promises, +- 2 points
    assert (em.upper_factors >= em.point_factors).all() and (em.point_factors > 0).all()


def test_error_model_samples_pairs_jointly_and_round_trips():
    em = ErrorModel.load_default()
    point, upper = em.sample(np.random.default_rng(1), 500)
    pairs = set(zip(em.point_factors.tolist(), em.upper_factors.tolist()))
    assert all(pair in pairs for pair in zip(point.tolist(), upper.tolist()))
    again = ErrorModel.from_json(em.to_json())
    np.testing.assert_array_equal(again.upper_factors, em.upper_factors)
    assert again.source == em.source


def test_numpy_forest_matches_xgboost_including_missing_values(shipped):
    model = shipped.model
    prompts = [f"List {i} reasons to learn {w}." for i in range(1, 40) for w in ("Rust", "Go")]
    chats = [as_chat(p) for p in prompts]
    x = model.matrix(chats, [None, 200] * 39, model.counter.count_batch(prompts))
    max_tokens_col = np.isnan(x[:, model.features.names.index("max_tokens")])
    assert max_tokens_col.any() and not max_tokens_col.all()  # both sides of a missing-value split
    ours = model._forest.predict(x)
    np.testing.assert_allclose(ours[:, 0], model.booster.inplace_predict(x), atol=1e-4)
    many = prompts * 2  # above FOREST_MAX_ROWS: XGBoost's own predictor
    assert shipped.predict(many)[: len(prompts)] == shipped.predict(prompts)
