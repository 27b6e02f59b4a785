"""The vLLM tests' tiny checkpoint, and vLLM's own `LLM.generate` on it as the reference.

The checkpoint is `ecoserve.engine.vllm.tiny`'s: the torch engine's tiny random Llama with head_dim
64 (vLLM's CPU attention refuses 16), written by the project's writer. The reference runs in a
process of its own, as vLLM wants (its engine core is spawned), so no vLLM state is left in the
test process.

Run as a script: `python vllm_model.py MODEL_DIR JOBS_JSON OUT_JSON` writes the reference tokens to
OUT_JSON, where JOBS_JSON is a list of [prompt_token_ids, max_tokens] (vLLM logs to stdout).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

VOCAB = 512
BLOCK_SIZE = 32  # vLLM's CPU attention takes multiples of 32


def write_tiny_model(out_dir: Path) -> Path:
    from ecoserve.engine.vllm.tiny import save_tiny_vllm_model

    return save_tiny_vllm_model(out_dir)


def reference_tokens(model_dir: Path, jobs: list[tuple[list[int], int]]) -> list[list[int]]:
    """vLLM's greedy tokens for each (prompt, max_tokens), from `LLM.generate` in a child process."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "tokens.json"
        done = subprocess.run([sys.executable, __file__, str(model_dir), json.dumps(jobs), str(out)],
                              capture_output=True, text=True, timeout=600)
        if done.returncode:
            raise RuntimeError(f"LLM.generate failed ({done.returncode}): {done.stderr[-3000:]}")
        return json.loads(out.read_text())


def _generate(model_dir: str, jobs: list[tuple[list[int], int]]) -> list[list[int]]:
    from ecoserve.engine.vllm.runtime import load_vllm

    load_vllm()
    from vllm import LLM, SamplingParams
    from vllm.inputs import TokensPrompt

    llm = LLM(model=model_dir, dtype="float32", enforce_eager=True, skip_tokenizer_init=True, seed=0,
              kv_cache_memory_bytes=64 << 20, block_size=BLOCK_SIZE, enable_prefix_caching=False)
    outputs = llm.generate([TokensPrompt(prompt_token_ids=p) for p, _ in jobs],
                           [SamplingParams(temperature=0.0, max_tokens=n) for _, n in jobs], use_tqdm=False)
    return [list(o.outputs[0].token_ids) for o in outputs]


if __name__ == "__main__":
    Path(sys.argv[3]).write_text(json.dumps(_generate(sys.argv[1], json.loads(sys.argv[2]))))
