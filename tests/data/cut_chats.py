"""Cut the chat test data in this folder from the team's shared originals (not run by the tests).

    .venv/bin/python tests/data/cut_chats.py [SHARED_DATA]    # default: ../shared/data beside the repo

AlpacaEval: every model's answers to the first INSTRUCTIONS instructions (in the order the first
model's file lists them); MT-bench: every model's answers to the first QUESTIONS question ids.
Lines are kept whole and in file order, as they were. Writes gzip files (mtime 0, reproducible)
and prints each one's size and records and the sha256 of its original; NOTICE.md records it.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SHARED = Path(sys.argv[1]) if len(sys.argv) > 1 else HERE.parents[2] / "shared" / "data"
INSTRUCTIONS = 40
QUESTIONS = 20


def _cut(name: str, keep) -> None:  # noqa: ANN001 - a predicate on the parsed lines seen so far
    src = SHARED / "prompts" / name
    raw = src.read_bytes()
    lines = gzip.decompress(raw).decode("utf-8").split("\n")
    kept = [line for line in lines if line.strip() and keep(json.loads(line))]
    out = HERE / "prompts" / name
    out.write_bytes(gzip.compress(("\n".join(kept) + "\n").encode("utf-8"), compresslevel=9, mtime=0))
    print(f"{name}: {len(kept)} of {sum(1 for x in lines if x.strip())} lines, {out.stat().st_size} bytes, "
          f"original sha256 {hashlib.sha256(raw).hexdigest()}")


def main() -> None:
    first: list[str] = []

    def alpaca_eval(rec: dict) -> bool:
        if len(first) < INSTRUCTIONS and rec["instruction"] not in first:
            first.append(rec["instruction"])
        return rec["instruction"] in first

    _cut("alpaca_eval_outputs.jsonl.gz", alpaca_eval)
    ids: list[int] = []

    def mt_bench(rec: dict) -> bool:
        if len(ids) < QUESTIONS and rec["question_id"] not in ids:
            ids.append(rec["question_id"])
        return rec["question_id"] in ids

    _cut("mt_bench_answers.jsonl.gz", mt_bench)


if __name__ == "__main__":
    main()
