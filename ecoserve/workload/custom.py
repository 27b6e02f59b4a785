"""User trace files: CSV or JSONL (optionally gzipped) with arrival, prompt_len, output_len, prompt,
and the prefix structure: hash_ids (one id per block of hash_block_size tokens, default 512 as in
Mooncake's traces; equal leading ids mean an equal prefix).

Extra columns or keys are ignored, so a richer log can be replayed as is.
"""

from __future__ import annotations

import csv
import gzip
import json
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from ecoserve.workload.prefix import expand_hash_ids
from ecoserve.workload.trace import Trace, make_trace

REQUIRED = ("prompt_len", "output_len")
DEFAULT_HASH_BLOCK = 512  # Mooncake's


def _open_text(path: Path) -> IO[str]:
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8", newline="")
    return path.open("r", encoding="utf-8", newline="")


def _format(path: Path) -> str:
    suffixes = [s.lower() for s in path.suffixes if s.lower() != ".gz"]
    if suffixes and suffixes[-1] in (".csv", ".jsonl"):
        return suffixes[-1]
    raise ValueError(f"{path}: trace files must end in .csv or .jsonl (optionally .gz)")


def _csv_rows(text: IO[str], source: str) -> Iterator[tuple[int, dict[str, Any]]]:
    reader = csv.DictReader(text)
    missing = [c for c in REQUIRED if c not in (reader.fieldnames or [])]
    if missing:
        raise ValueError(f"{source}: CSV header lacks column(s) {missing}")
    for row in reader:
        # An empty arrival or prompt cell means "absent", as a missing JSON key does.
        yield reader.line_num, {k: v for k, v in row.items() if v not in ("", None)}


def _jsonl_rows(text: IO[str], source: str) -> Iterator[tuple[int, dict[str, Any]]]:
    for line_num, line in enumerate(text, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise ValueError(f"{source}:{line_num}: invalid JSON: {err}") from None
        if not isinstance(row, dict):
            raise ValueError(f"{source}:{line_num}: expected a JSON object per line")
        yield line_num, {k: v for k, v in row.items() if v is not None}


def _int(value: Any, where: str, key: str) -> int:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: {key} must be a number, got {value!r}") from None
    if not number.is_integer():
        raise ValueError(f"{where}: {key} must be a whole number, got {value!r}")
    return int(number)


def _float(value: Any, where: str, key: str) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: {key} must be a number, got {value!r}") from None


def read_trace_file(path: str | Path) -> Trace:
    """Parse a custom trace; arrival and prompt must be given on every row or on none."""
    path = Path(path)
    kind = _format(path)
    source = str(path)
    prompt_len: list[int] = []
    output_len: list[int] = []
    arrival: list[float] = []
    prompt: list[str] = []
    hashes: list[tuple[int, ...]] = []
    with _open_text(path) as text:
        rows = _csv_rows(text, source) if kind == ".csv" else _jsonl_rows(text, source)
        for line_num, row in rows:
            where = f"{source}:{line_num}"
            for key in REQUIRED:
                if key not in row:
                    raise ValueError(f"{where}: missing {key}")
            prompt_len.append(_int(row["prompt_len"], where, "prompt_len"))
            output_len.append(_int(row["output_len"], where, "output_len"))
            if "arrival" in row:
                arrival.append(_float(row["arrival"], where, "arrival"))
            if "prompt" in row:
                prompt.append(str(row["prompt"]))
            if "hash_ids" in row:
                hashes.append(_hashes(row, prompt_len[-1], where))
    n = len(prompt_len)
    for name, column in (("arrival", arrival), ("prompt", prompt), ("hash_ids", hashes)):
        if column and len(column) != n:
            raise ValueError(f"{source}: {name} is given on {len(column)} of {n} rows; give it on all or none")
    return make_trace(
        source,
        prompt_len,
        output_len,
        arrival=arrival or None,
        prompt=prompt or None,
        block_hashes=hashes or None,
    )


def _hashes(row: dict[str, Any], prompt_len: int, where: str) -> tuple[int, ...]:
    """A row's hash_ids (a JSON list, or space-separated in CSV) as 16-token block hashes."""
    ids = row["hash_ids"]
    if isinstance(ids, str):
        ids = ids.split()
    if not isinstance(ids, list):
        raise ValueError(f"{where}: hash_ids must be a list of whole numbers")
    block = _int(row.get("hash_block_size", DEFAULT_HASH_BLOCK), where, "hash_block_size")
    try:
        return expand_hash_ids([_int(i, where, "hash_ids") for i in ids], block, prompt_len)
    except ValueError as err:
        raise ValueError(f"{where}: {err}") from None
