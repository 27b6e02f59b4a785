"""Text in and out: the model directory's tokenizer, streaming detokenization, stop strings."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from tokenizers import Tokenizer


@dataclass(frozen=True, slots=True)
class ModelFiles:
    """What the gateway reads from a model directory."""

    directory: Path
    tokenizer: Tokenizer
    max_model_len: int  # prompt + generated tokens the model can attend over
    vocab_size: int
    tokenizer_config: dict

    @classmethod
    def load(cls, model_dir: str | Path) -> ModelFiles:
        directory = Path(model_dir)
        path = directory / "tokenizer.json"
        if not path.is_file():
            raise FileNotFoundError(f"{directory}: no tokenizer.json (the gateway tokenizes with the model's)")
        tokenizer = Tokenizer.from_file(str(path))
        config = _json(directory / "config.json")
        max_len = int(config.get("max_position_embeddings") or 1 << 20)
        vocab = int(config.get("vocab_size") or tokenizer.get_vocab_size(with_added_tokens=True))
        return cls(directory, tokenizer, max_len, vocab, _json(directory / "tokenizer_config.json"))

    def encode(self, text: str, *, add_special_tokens: bool = True) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=add_special_tokens).ids

    def special_token(self, name: str) -> str:
        """bos_token / eos_token as tokenizer_config.json names them ('' when it does not)."""
        value = self.tokenizer_config.get(name) or ""
        return value.get("content", "") if isinstance(value, dict) else str(value)


def _json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


class Detokenizer:
    """Turns a token stream into text deltas, holding back incomplete characters.

    Decodes a short window (the previous delta's tokens plus the new ones) rather than the whole
    output, so each token costs the same however long the answer gets.
    """

    def __init__(self, tokenizer: Tokenizer) -> None:
        self.tokenizer = tokenizer
        self.ids: list[int] = []
        self._prefix = 0  # window start
        self._read = 0  # tokens already turned into text

    def push(self, token_id: int) -> str:
        self.ids.append(token_id)
        return self._advance(final=False)

    def flush(self) -> str:
        """At the end: whatever was held back, incomplete characters included (as U+FFFD)."""
        return self._advance(final=True)

    def _advance(self, final: bool) -> str:
        decode = self.tokenizer.decode
        before = decode(self.ids[self._prefix:self._read], skip_special_tokens=True)
        text = decode(self.ids[self._prefix:], skip_special_tokens=True)
        if len(text) <= len(before) or (text.endswith("\ufffd") and not final):
            return ""
        self._prefix, self._read = self._read, len(self.ids)
        return text[len(before):]


class StopStrings:
    """Cuts the output at the first stop string; holds back text that may begin one."""

    def __init__(self, stops: tuple[str, ...]) -> None:
        self.stops = stops
        self._hold = max((len(s) for s in stops), default=1) - 1
        self._pending = ""

    def feed(self, text: str) -> tuple[str, bool]:
        """(text safe to emit, whether a stop string was hit: nothing more may be emitted)."""
        self._pending += text
        hits = [i for i in (self._pending.find(s) for s in self.stops) if i >= 0]
        if hits:
            out, self._pending = self._pending[:min(hits)], ""
            return out, True
        cut = max(0, len(self._pending) - self._hold)
        out, self._pending = self._pending[:cut], self._pending[cut:]
        return out, False

    def flush(self) -> str:
        out, self._pending = self._pending, ""
        return out
