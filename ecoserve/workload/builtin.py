"""The traces shipped inside the package (see data/NOTICE.md), read with importlib.resources."""

from __future__ import annotations

import csv
import functools
import gzip
import io
import json
from collections.abc import Callable
from importlib import resources

import numpy as np

from ecoserve.workload.prefix import expand_hash_ids
from ecoserve.workload.trace import Trace, make_trace


def _read_azure(name: str, text: io.TextIOBase) -> Trace:
    """Azure LLM inference trace: TIMESTAMP, ContextTokens, GeneratedTokens."""
    rows = list(csv.reader(text))
    if rows[0] != ["TIMESTAMP", "ContextTokens", "GeneratedTokens"]:
        raise ValueError(f"{name}: unexpected header {rows[0]}")
    body = rows[1:]
    # datetime64[ns] keeps the trace's 100 ns resolution and parses 19k stamps in a few ms.
    stamps = np.array([r[0] for r in body], dtype="datetime64[ns]")
    arrival = (stamps - stamps.min()) / np.timedelta64(1, "s")
    prompt_len = np.array([int(r[1]) for r in body], dtype=np.int64)
    output_len = np.array([int(r[2]) for r in body], dtype=np.int64)
    return make_trace(name, prompt_len, output_len, arrival=arrival)


def _read_lengths(name: str, text: io.TextIOBase) -> Trace:
    """Length set from sarathi-serve / vidur: num_prefill_tokens, num_decode_tokens, ..."""
    header = text.readline().strip().split(",")
    if header[:2] != ["num_prefill_tokens", "num_decode_tokens"]:
        raise ValueError(f"{name}: unexpected header {header}")
    table = np.loadtxt(text, delimiter=",", usecols=(0, 1), dtype=np.int64, ndmin=2)
    return make_trace(name, table[:, 0], table[:, 1])


def _read_mooncake(name: str, text: io.TextIOBase) -> Trace:
    """Mooncake's FAST'25 trace: JSONL of timestamp (ms), input_length, output_length and hash_ids,
    one id per 512-token prompt block."""
    rows = [json.loads(line) for line in text if line.strip()]
    prompt_len = [int(r["input_length"]) for r in rows]
    hashes = [expand_hash_ids(r["hash_ids"], MOONCAKE_BLOCK, p) for r, p in zip(rows, prompt_len)]
    return make_trace(
        name, prompt_len, [int(r["output_length"]) for r in rows],
        arrival=np.array([float(r["timestamp"]) for r in rows]) / 1e3, block_hashes=hashes,
    )


MOONCAKE_BLOCK = 512  # tokens per hash id in the Mooncake trace

_BUILTIN: dict[str, tuple[str, Callable[[str, io.TextIOBase], Trace]]] = {
    "azure-conv": ("azure_conv.csv.gz", _read_azure),
    "azure-code": ("azure_code.csv.gz", _read_azure),
    "sharegpt": ("sharegpt_8k_llama2_token_lengths.csv.gz", _read_lengths),
    "arxiv": ("arxiv_summarization_llama2_token_lengths.csv.gz", _read_lengths),
    "mooncake": ("mooncake_synthetic_trace.jsonl.gz", _read_mooncake),
}


def builtin_names() -> list[str]:
    return list(_BUILTIN)


@functools.cache
def builtin_trace(name: str) -> Trace:
    """Parse a shipped trace once per process; capacity searches load the same trace per rate."""
    filename, reader = _BUILTIN[name]
    resource = resources.files("ecoserve.workload") / "data" / filename
    with resource.open("rb") as raw, gzip.open(raw, "rt", newline="") as text:
        return reader(name, text)
