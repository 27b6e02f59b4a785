"""Loaders for the prompt sets (their cut in tests/data) and generic JSONL, token labels, seeded splits."""

import json

import numpy as np
import pytest

from ecoserve.predictor.datasets import (
    DOLLY_TRUNCATED_CHARS,
    load_labeled,
    load_samples,
    split_indices,
)
from ecoserve.predictor.errors import PredictorError
from ecoserve.predictor.tokenizer import load_tokenizer


def test_alpaca_prompt_joins_instruction_and_input(data_dir):
    samples = load_samples(str(data_dir / "prompts" / "alpaca_5000.json.gz"))
    assert len(samples) == 2200  # tests/data keeps the first 2200 of the 5000 records
    first = samples[0]
    assert first.prompt.startswith("Are the two sentences below grammatically correct?")
    assert "\nSentence 1:" in first.prompt and first.response == "No"


def test_truncated_dolly_responses_are_dropped():
    samples = load_samples("dolly")
    # tests/data keeps the first 300 records; 77 of them have responses of 450 chars or more
    assert len(samples) == 223
    assert max(len(s.response) for s in samples) < DOLLY_TRUNCATED_CHARS


def test_sharegpt_first_prompts_have_no_responses():
    samples = load_samples("sharegpt_v3")
    assert len(samples) == 60 and all(s.response is None for s in samples)  # first 60 of 1000
    with pytest.raises(PredictorError, match="prompts only"):
        load_labeled(["sharegpt_v3"], load_tokenizer())


def test_generic_jsonl_with_text_or_counts(tmp_path):
    path = tmp_path / "log.jsonl"
    rows = [
        {"prompt": "Say hi.", "response": "hello world"},
        {"prompt": "Count to three.", "response_tokens": 7, "max_tokens": 16},
        {"prompt": "Nothing came back.", "response": ""},
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows))
    data = load_labeled([str(path)], load_tokenizer())
    assert data.prompts == ["Say hi.", "Count to three."]  # the empty response is dropped
    assert data.tokens.tolist() == [2, 7]
    assert data.max_tokens == [None, 16]


def test_unknown_record_format_and_missing_file_are_clear_errors(tmp_path):
    path = tmp_path / "odd.jsonl"
    path.write_text(json.dumps({"text": "x"}))
    with pytest.raises(PredictorError, match="none of the known formats"):
        load_samples(str(path))
    with pytest.raises(PredictorError, match="not found"):
        load_samples(str(tmp_path / "absent.jsonl"))


def test_split_is_seeded_disjoint_and_keeps_duplicate_prompts_together():
    prompts = [f"prompt {i}" for i in range(2000)] + ["prompt 7"]
    a, b = split_indices(prompts, 0), split_indices(prompts, 0)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert sum(len(v) for v in a.values()) == len(prompts)
    assert not set(a["train"]) & set(a["test"])
    assert 0.75 < len(a["train"]) / len(prompts) < 0.85
    side = {k for k, v in a.items() if 7 in v or 2000 in v}
    assert len(side) == 1
    assert not np.array_equal(split_indices(prompts, 1)["test"], a["test"])
