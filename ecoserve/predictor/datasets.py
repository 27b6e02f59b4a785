"""Prompt/response data sets: read them by format, count response tokens, split them by seed.

Formats, recognised per record (JSON list or JSONL, gzipped or not):
- Alpaca: {instruction, input, output}; prompt = instruction + "\\n" + input.
- Dolly: {instruction, [context], response}; prompt = instruction (+ "\\n" + context).
- ShareGPT: {conversations: [{from, value}, ...]}; first human turn, the next gpt turn if any.
- Generic / completion log: {prompt, response | response_tokens, [max_tokens]}.
The Dolly copy in shared/data is cut at a token budget: its records with responses of 450 chars
or more are dropped (file names containing "truncated"), since their lengths are not real.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ecoserve.predictor.errors import PredictorError
from ecoserve.predictor.tokenizer import TokenCounter

DOLLY_TRUNCATED_CHARS = 450

# Short names for the files in shared/data/prompts.
KNOWN_SETS: dict[str, str] = {
    "alpaca": "alpaca_5000.json.gz",
    "alpaca_gpt4": "alpaca_gpt4_en_demo.json.gz",
    "dolly": "dolly15k_first6400_truncated.jsonl.gz",
    "sharegpt_v3": "sharegpt_v3_filtered_1000_first_prompts.json.gz",
    "sharegpt_sg90k": "sharegpt_sg90k_2978_first_prompts.json.gz",
}
# The sets with responses: what the default model trains and is evaluated on.
DEFAULT_TRAIN_SETS: tuple[str, ...] = ("alpaca", "alpaca_gpt4", "dolly")


@dataclass(frozen=True, slots=True)
class Sample:
    """One prompt with what is known of its response (text, or only a token count, or nothing)."""

    prompt: str
    source: str
    response: str | None = None
    response_tokens: int | None = None
    max_tokens: int | None = None


@dataclass(frozen=True)
class LabeledSet:
    """Prompts with their response length in tokens of one tokenizer: the training/eval unit."""

    prompts: list[str]
    tokens: np.ndarray  # int64, response length in tokens
    max_tokens: list[int | None]
    sources: list[str]

    def __len__(self) -> int:
        return len(self.prompts)

    def take(self, idx: Sequence[int] | np.ndarray) -> LabeledSet:
        idx = np.asarray(idx, dtype=np.int64)
        return LabeledSet(
            prompts=[self.prompts[i] for i in idx],
            tokens=self.tokens[idx],
            max_tokens=[self.max_tokens[i] for i in idx],
            sources=[self.sources[i] for i in idx],
        )

    @staticmethod
    def concat(parts: Sequence[LabeledSet]) -> LabeledSet:
        return LabeledSet(
            prompts=[p for s in parts for p in s.prompts],
            tokens=np.concatenate([s.tokens for s in parts]) if parts else np.zeros(0, np.int64),
            max_tokens=[m for s in parts for m in s.max_tokens],
            sources=[x for s in parts for x in s.sources],
        )


def default_data_dir() -> Path:
    """shared/data beside the repository (or $ECOSERVE_DATA_DIR); used by dev commands only."""
    env = os.environ.get("ECOSERVE_DATA_DIR")
    return Path(env) if env else Path(__file__).resolve().parents[3] / "shared" / "data"


def resolve_data(name_or_path: str) -> Path:
    """A known set's short name (see KNOWN_SETS) or a path."""
    if name_or_path in KNOWN_SETS:
        path = default_data_dir() / "prompts" / KNOWN_SETS[name_or_path]
    else:
        path = Path(name_or_path)
    if not path.is_file():
        raise PredictorError(f"data file not found: {path}")
    return path


def _read_records(path: Path) -> list[dict]:
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", encoding="utf-8") as f:
            text = f.read()
        stripped = text.lstrip()
        if stripped.startswith("["):
            records = json.loads(text)
        else:
            records = [json.loads(line) for line in text.splitlines() if line.strip()]
    except (OSError, ValueError, UnicodeDecodeError) as e:
        raise PredictorError(f"cannot read {path}: {e}") from e
    if not all(isinstance(r, dict) for r in records):
        raise PredictorError(f"{path}: expected JSON objects, one per record")
    return records


def _sharegpt(rec: dict, source: str) -> Sample | None:
    turns = rec.get("conversations") or []
    for i, turn in enumerate(turns):
        if turn.get("from") == "human":
            nxt = turns[i + 1] if i + 1 < len(turns) else None
            response = nxt.get("value") if nxt and nxt.get("from") == "gpt" else None
            return Sample(prompt=turn.get("value", ""), source=source, response=response)
    return None


def _record_to_sample(rec: dict, source: str) -> Sample | None:
    if "conversations" in rec:
        return _sharegpt(rec, source)
    if "prompt" in rec:
        tokens = rec.get("response_tokens")
        return Sample(
            prompt=rec["prompt"],
            source=source,
            response=rec.get("response"),
            response_tokens=int(tokens) if tokens is not None else None,
            max_tokens=rec.get("max_tokens"),
        )
    if "instruction" in rec:
        extra = rec.get("input") or rec.get("context") or ""
        prompt = rec["instruction"] + ("\n" + extra if extra else "")
        return Sample(prompt=prompt, source=source, response=rec.get("output", rec.get("response")))
    raise PredictorError(
        f"{source}: record with keys {sorted(rec)} is none of the known formats "
        "(alpaca, dolly, sharegpt, or prompt + response/response_tokens)"
    )


def load_samples(name_or_path: str) -> list[Sample]:
    """Every usable record of one file, in file order."""
    path = resolve_data(name_or_path)
    source = next((k for k, v in KNOWN_SETS.items() if v == path.name), path.name)
    samples = [s for r in _read_records(path) if (s := _record_to_sample(r, source)) is not None]
    if "truncated" in path.name:
        samples = [
            s for s in samples if s.response is None or len(s.response) < DOLLY_TRUNCATED_CHARS
        ]
    return [s for s in samples if s.prompt.strip()]


def label(samples: Iterable[Sample], counter: TokenCounter) -> LabeledSet:
    """Keep the samples whose response length is known and at least one token, in the
    counter's tokens (an empty response says nothing about how long answers are)."""
    kept = [s for s in samples if s.response is not None or s.response_tokens is not None]
    texts = [s.response for s in kept if s.response_tokens is None]
    counts = iter(counter.count_batch(texts)) if texts else iter(())
    tokens = [s.response_tokens if s.response_tokens is not None else next(counts) for s in kept]
    keep = [i for i, t in enumerate(tokens) if t >= 1]
    return LabeledSet(
        prompts=[kept[i].prompt for i in keep],
        tokens=np.asarray([tokens[i] for i in keep], dtype=np.int64),
        max_tokens=[kept[i].max_tokens for i in keep],
        sources=[kept[i].source for i in keep],
    )


def load_labeled(names_or_paths: Sequence[str], counter: TokenCounter) -> LabeledSet:
    """Labeled union of several files; an error if none of them has responses."""
    parts = [label(load_samples(p), counter) for p in names_or_paths]
    data = LabeledSet.concat(parts)
    if len(data) == 0:
        raise PredictorError(
            f"no records with a response or response_tokens in {list(names_or_paths)} "
            "(the ShareGPT first-prompt files hold prompts only)"
        )
    return data


SPLITS = ("train", "val", "test")


def split_indices(
    prompts: Sequence[str], seed: int, fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
) -> dict[str, np.ndarray]:
    """Seeded train/val/test split by a hash of the prompt text.

    Hashing the prompt (not the row) keeps a prompt that appears in several sets (Alpaca and
    Alpaca-GPT4 share instructions) on one side of the split, so the test set is truly unseen.
    """
    cut1, cut2 = fractions[0], fractions[0] + fractions[1]
    u = np.empty(len(prompts))
    for i, p in enumerate(prompts):
        h = hashlib.blake2b(f"{seed}\0{p.strip().lower()}".encode(), digest_size=8).digest()
        u[i] = int.from_bytes(h, "little") / 2.0**64
    return {
        "train": np.flatnonzero(u < cut1),
        "val": np.flatnonzero((u >= cut1) & (u < cut2)),
        "test": np.flatnonzero(u >= cut2),
    }


def prompt_key(prompt: str) -> int:
    """32-bit fingerprint of a prompt, to remember which prompts a model has seen."""
    h = hashlib.blake2b(prompt.strip().lower().encode(), digest_size=4).digest()
    return int.from_bytes(h, "little")
