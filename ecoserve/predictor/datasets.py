"""Prompt/response data sets: read them by format, count response tokens, split them by seed.

Formats, recognised per record (JSON list or JSONL, gzipped or not). A record with a chat gives
one sample per assistant reply: the messages before it are its request.
- Alpaca / AlpacaEval: {instruction, input, output, [generator]}; prompt = instruction + "\\n" + input.
- Dolly: {instruction, [context], response}; prompt = instruction (+ "\\n" + context).
- MT-bench answers: {turns: [user, ...], answers: [reply, ...], model}.
- ShareGPT: {conversations: [{from, value}, ...]}; every gpt reply (first human turn alone, with no
  response, when there is none).
- Chat: {messages | conversation: [{role, content}, ...], [model]}; every assistant reply, or, when
  the chat ends with a user turn, that request with response / response_tokens.
- Chatbot Arena: {conversation_a, model_a, conversation_b, model_b}: both sides.
- Generic / completion log: {prompt, response | response_tokens, [max_tokens], [model]}.
The Dolly copy in shared/data is cut at a token budget: its records with responses of 450 chars
or more are dropped (file names containing "truncated"), since their lengths are not real.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ecoserve.predictor.chat import Chat, Message, conversation_key, normalise_role, render
from ecoserve.predictor.chat import prompt_key as prompt_key  # re-exported: callers import it here
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
    "alpaca_eval": "alpaca_eval_outputs.jsonl.gz",
    "mt_bench": "mt_bench_answers.jsonl.gz",
}
# Instructions with one answering model each, short answers (means 56, 143 and 37 tokens).
INSTRUCTION_SETS: tuple[str, ...] = ("alpaca", "alpaca_gpt4", "dolly")
# Chats answered by many models at chat lengths: AlpacaEval's 12 models, MT-bench's 3 (two turns).
CHAT_SETS: tuple[str, ...] = ("alpaca_eval", "mt_bench")
# What the default model trains on: every set with responses. The ranking head learns from all of
# them; the scale head is fitted on the others than the instruction sets (calibration_sets()).
DEFAULT_TRAIN_SETS: tuple[str, ...] = INSTRUCTION_SETS + CHAT_SETS


@dataclass(frozen=True, slots=True)
class Sample:
    """One request with what is known of its response (text, or only a token count, or nothing)."""

    prompt: str  # the request as plain text (render(chat))
    source: str
    response: str | None = None
    response_tokens: int | None = None
    max_tokens: int | None = None
    chat: Chat = ()  # the messages; () means one user message, the prompt
    generator: str = ""  # the model that answered, when the data says

    @property
    def messages(self) -> Chat:
        return self.chat or (Message("user", self.prompt),)


@dataclass(frozen=True)
class LabeledSet:
    """Requests with their response length in tokens of one tokenizer: the training/eval unit."""

    prompts: list[str]
    tokens: np.ndarray  # int64, response length in tokens
    max_tokens: list[int | None]
    sources: list[str]
    chats: list[Chat]
    generators: list[str]

    def __len__(self) -> int:
        return len(self.prompts)

    def take(self, idx: Sequence[int] | np.ndarray) -> LabeledSet:
        idx = np.asarray(idx, dtype=np.int64)
        return LabeledSet(
            prompts=[self.prompts[i] for i in idx],
            tokens=self.tokens[idx],
            max_tokens=[self.max_tokens[i] for i in idx],
            sources=[self.sources[i] for i in idx],
            chats=[self.chats[i] for i in idx],
            generators=[self.generators[i] for i in idx],
        )

    @property
    def groups(self) -> list[str]:
        """Who answered: the generator where known, else the source (one set, one answering model)."""
        return [g or s for g, s in zip(self.generators, self.sources)]

    @staticmethod
    def concat(parts: Sequence[LabeledSet]) -> LabeledSet:
        return LabeledSet(
            prompts=[p for s in parts for p in s.prompts],
            tokens=np.concatenate([s.tokens for s in parts]) if parts else np.zeros(0, np.int64),
            max_tokens=[m for s in parts for m in s.max_tokens],
            sources=[x for s in parts for x in s.sources],
            chats=[c for s in parts for c in s.chats],
            generators=[g for s in parts for g in s.generators],
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


def source_name(name_or_path: str) -> str:
    """What a file's records are labelled with: the known set's short name, else the file name."""
    name = Path(name_or_path).name
    return name_or_path if name_or_path in KNOWN_SETS else next((k for k, v in KNOWN_SETS.items() if v == name), name)


def _jsonl(text: str, path: Path) -> list:
    """One JSON value per line. Lines end at "\\n" only: str.splitlines() would also break at
    U+2028 and other separators that are legal inside JSON strings."""
    records = []
    for number, line in enumerate(text.split("\n"), start=1):
        if line.strip():
            try:
                records.append(json.loads(line))
            except ValueError as e:
                raise PredictorError(f"cannot read {path}: line {number}: {e}") from e
    return records


def _read_records(path: Path) -> list[dict]:
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", encoding="utf-8", newline="") as f:
            text = f.read()
        records = json.loads(text) if text.lstrip().startswith("[") else _jsonl(text, path)
    except (OSError, ValueError, UnicodeDecodeError, EOFError) as e:
        raise PredictorError(f"cannot read {path}: {e}") from e
    if not all(isinstance(r, dict) for r in records):
        raise PredictorError(f"{path}: expected JSON objects, one per record")
    return records


def _replies(turns: Sequence[Message], source: str, generator: str) -> Iterator[Sample]:
    """One sample per assistant reply that follows a user turn: the turns before it, the reply."""
    for i, m in enumerate(turns):
        if m.role == "assistant" and i > 0 and turns[i - 1].role == "user":
            chat = tuple(turns[:i])
            yield Sample(render(chat), source, response=m.content, chat=chat, generator=generator)


def _chat_sample(turns: list[Message], rec: dict, source: str, generator: str) -> list[Sample]:
    """A chat's replies; a chat that ends with a user turn is one request (a completion log's)."""
    if turns and turns[-1].role == "user":
        tokens = rec.get("response_tokens")
        chat = tuple(turns)
        return [Sample(render(chat), source, rec.get("response"), int(tokens) if tokens is not None else None,
                       rec.get("max_tokens"), chat, generator)]
    return list(_replies(turns, source, generator))


def _messages(raw: list, role_key: str, content_key: str) -> list[Message]:
    out = []
    for m in raw or []:
        role = normalise_role(str(m.get(role_key, "")))
        if role is not None:
            content = m.get(content_key) or ""
            out.append(Message(role, content if isinstance(content, str) else json.dumps(content)))
    return out


def _sharegpt(rec: dict, source: str) -> list[Sample]:
    turns = _messages(rec.get("conversations"), "from", "value")
    samples = list(_replies(turns, source, str(rec.get("model", ""))))
    if samples:
        return samples
    first = next((m for m in turns if m.role == "user"), None)  # a first-prompt file: no replies
    return [Sample(first.content, source)] if first is not None else []


def _record_to_samples(rec: dict, source: str) -> list[Sample]:
    generator = str(rec.get("generator") or rec.get("model") or "")
    if "conversations" in rec:
        return _sharegpt(rec, source)
    if "conversation_a" in rec:  # Chatbot Arena: two models answer the same user turns
        return [s for side in "ab" for s in _chat_sample(
            _messages(rec.get(f"conversation_{side}"), "role", "content"), rec, source, str(rec.get(f"model_{side}", "")))]
    for key in ("messages", "conversation"):
        if isinstance(rec.get(key), list):
            return _chat_sample(_messages(rec[key], "role", "content"), rec, source, generator)
    if "turns" in rec and "answers" in rec:  # MT-bench: user turns and the model's answers, alternating
        turns = [Message(r, t) for u, a in zip(rec["turns"], rec["answers"]) for r, t in (("user", u), ("assistant", a))]
        return list(_replies(turns, source, generator))
    if "prompt" in rec:
        tokens = rec.get("response_tokens")
        return [Sample(rec["prompt"], source, rec.get("response"), int(tokens) if tokens is not None else None,
                       rec.get("max_tokens"), generator=generator)]
    if "instruction" in rec:
        extra = rec.get("input") or rec.get("context") or ""
        prompt = rec["instruction"] + ("\n" + extra if extra else "")
        return [Sample(prompt, source, rec.get("output", rec.get("response")), generator=generator)]
    raise PredictorError(
        f"{source}: record with keys {sorted(rec)} is none of the known formats "
        "(alpaca, dolly, sharegpt, mt-bench, chat messages, or prompt + response/response_tokens)"
    )


def load_samples(name_or_path: str) -> list[Sample]:
    """Every usable record of one file, in file order."""
    path = resolve_data(name_or_path)
    source = source_name(name_or_path)
    samples = [s for r in _read_records(path) for s in _record_to_samples(r, source)]
    if "truncated" in path.name:
        samples = [
            s for s in samples if s.response is None or len(s.response) < DOLLY_TRUNCATED_CHARS
        ]
    return [s for s in samples if s.messages[-1].content.strip()]


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
        chats=[kept[i].messages for i in keep],
        generators=[kept[i].generator for i in keep],
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


def choose_sets(data: Sequence[str], add_data: Sequence[str]) -> tuple[list[str], str]:
    """The sets to train on and a sentence saying so: --data replaces the defaults, --add-data adds
    to them (both may be given: the --data sets plus the --add-data sets)."""
    base = list(data) if data else list(DEFAULT_TRAIN_SETS)
    sets = base + [d for d in add_data if d not in base]
    defaults = " ".join(DEFAULT_TRAIN_SETS)
    if data:
        how = f"--data replaces the default sets ({defaults})"
    else:
        how = f"the default sets ({defaults})"
    if add_data:
        how += f", plus --add-data {' '.join(add_data)}"
    return sets, f"training on {' '.join(sets)}: {how}"


def calibration_sets(sets: Sequence[str]) -> tuple[str, ...]:
    """The sets whose records fit the scale head: all but the instruction sets, whose short
    single-model answers are not the length of chat traffic; all of them if that is all there is."""
    return tuple(source_name(s) for s in sets if source_name(s) not in INSTRUCTION_SETS)


SPLITS = ("train", "val", "test")


def unit_interval(keys: Sequence[str], seed: int) -> np.ndarray:
    """A seeded hash of each key to [0, 1): the one coin every split is cut from."""
    u = np.empty(len(keys))
    for i, k in enumerate(keys):
        h = hashlib.blake2b(f"{seed}\0{k}".encode(), digest_size=8).digest()
        u[i] = int.from_bytes(h, "little") / 2.0**64
    return u


def split_indices(
    prompts: Sequence[str | Chat], seed: int, fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
) -> dict[str, np.ndarray]:
    """Seeded train/val/test split by a hash of the conversation (its first user turn).

    Hashing the conversation (not the row) keeps a prompt that appears in several sets (Alpaca and
    Alpaca-GPT4 share instructions, AlpacaEval has twelve models' answers to each) and every turn
    of one conversation on one side of the split, so the test set is truly unseen.
    """
    cut1, cut2 = fractions[0], fractions[0] + fractions[1]
    keys = [p.strip().lower() if isinstance(p, str) else conversation_key(p) for p in prompts]
    u = unit_interval(keys, seed)
    return {
        "train": np.flatnonzero(u < cut1),
        "val": np.flatnonzero((u >= cut1) & (u < cut2)),
        "test": np.flatnonzero(u >= cut2),
    }
