"""Cut the test data in this folder from the team's shared originals (not run by the tests).

    .venv/bin/python tests/data/cut.py [SHARED_DATA]    # default: ../shared/data beside the repo

Writes gzip files (mtime 0, so the bytes are reproducible) and prints each one's size and the
sha256 of each original it was cut from; NOTICE.md records what this prints.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SHARED = Path(sys.argv[1]) if len(sys.argv) > 1 else HERE.parents[2] / "shared" / "data"

# --- prompt sets: the first records of each file, same file name ----------------------------------
PROMPTS = {  # file name (as ecoserve.predictor.datasets.KNOWN_SETS) -> records kept
    "alpaca_5000.json.gz": 2200,
    "dolly15k_first6400_truncated.jsonl.gz": 300,
    "sharegpt_v3_filtered_1000_first_prompts.json.gz": 60,
}

# --- Vidur profiles: the rows and columns benchmarks/fit_cost_model.py's fit() reads ---------------
LIN_OPS = (
    "attn_pre_proj", "attn_post_proj", "attn_rope", "mlp_up_proj", "mlp_act", "mlp_down_proj",
    "input_layernorm", "post_attention_layernorm", "add",
)
MLP_COLS = ("num_tokens", "num_tensor_parallel_workers", *(f"time_stats.{op}.median" for op in LIN_OPS))
ATTN_COLS = (
    "batch_size", "prefill_chunk_size", "kv_cache_size", "is_prefill",
    "time_stats.attn_decode.median", "time_stats.attn_prefill.median",
)
AR_COLS = ("num_workers", "devices_per_node", "size", "time_stats.all_reduce.median")
CPU_COLS = (
    "model_name", "batch_size", "tensor_parallel_degree", "schedule_median", "sampler_e2e_median",
    "prepare_inputs_e2e_median", "process_model_outputs_median", "ray_comm_time_mean",
)
CPU_KEEP = {("meta-llama/Llama-2-7b-hf", "1"), ("meta-llama/Llama-2-70b-hf", "4")}
TPS = {"1", "2", "4", "8"}


def _mlp(r: dict) -> bool:
    return r["num_tensor_parallel_workers"] in TPS


def _ar(r: dict) -> bool:
    return r["num_workers"] == r["devices_per_node"] and r["num_workers"] in TPS - {"1"}


def _cpu(r: dict) -> bool:
    return (r["model_name"], r["tensor_parallel_degree"]) in CPU_KEEP


PROFILES = {  # path under gpu_profiles/vidur -> (columns kept, rows kept)
    **{
        f"compute/{gpu}/meta-llama/{model}/mlp.csv.gz": (MLP_COLS, _mlp)
        for gpu, model in (
            ("a100", "Llama-2-7b-hf"), ("a100", "Meta-Llama-3-8B"), ("a100", "Llama-2-70b-hf"),
            ("h100", "Llama-2-7b-hf"), ("h100", "Llama-2-70b-hf"),
        )
    },
    "compute/a100/meta-llama/Llama-2-7b-hf/attention_sampled.csv": (ATTN_COLS, None),
    "compute/a100/meta-llama/Llama-2-70b-hf/attention_tp2_legacy.csv.gz": (ATTN_COLS, None),
    "network/a100_dgx/all_reduce.csv.gz": (AR_COLS, _ar),
    "network/h100_dgx/all_reduce.csv.gz": (AR_COLS, _ar),
    "cpu_overhead/a100/cpu_overheads_legacy.csv.gz": (CPU_COLS, _cpu),
}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def read_text(path: Path) -> str:
    data = path.read_bytes()
    return (gzip.decompress(data) if path.suffix == ".gz" else data).decode("utf-8")


def write_gz(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(text.encode("utf-8"), compresslevel=9, mtime=0))
    print(f"{path.stat().st_size:>8} {path.relative_to(HERE)}")


def cut_prompts() -> None:
    for name, keep in PROMPTS.items():
        src = SHARED / "prompts" / name
        text = read_text(src)
        print(f"         from {name}, sha256 {sha256(src)}")
        if text.lstrip().startswith("["):
            records = json.loads(text)
            out = json.dumps(records[:keep], ensure_ascii=False) + "\n"
        else:
            out = "".join(line + "\n" for line in text.splitlines()[:keep])
        write_gz(HERE / "prompts" / name, out)


def cut_profiles() -> None:
    for rel, (cols, keep) in PROFILES.items():
        src = SHARED / "gpu_profiles" / "vidur" / rel
        rows = list(csv.DictReader(io.StringIO(read_text(src), newline="")))
        out = io.StringIO(newline="")
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(cols)
        kept = [r for r in rows if keep is None or keep(r)]
        writer.writerows([r[c] for c in cols] for r in kept)
        print(f"         from {rel}, {len(kept)} of {len(rows)} rows, sha256 {sha256(src)}")
        dest = rel if rel.endswith(".gz") else rel + ".gz"
        write_gz(HERE / "gpu_profiles" / "vidur" / dest, out.getvalue())


if __name__ == "__main__":
    cut_prompts()
    cut_profiles()
