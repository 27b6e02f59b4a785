"""vLLM workers behind the real scheduler service (processes, gRPC, Redis), on CPU with a tiny
random checkpoint: the greedy tokens streamed to clients are vLLM's own `LLM.generate` tokens, a
worker reports the KV capacity vLLM allotted and the scheduler's ledger uses it, and a killed vLLM
worker's requests are re-queued and recomputed on the other to the same tokens, as with the other
engines (tests/test_services_cluster.py).
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from service_cell import make_cell  # noqa: F401 (fixture)
from vllm_model import BLOCK_SIZE, reference_tokens, write_tiny_model

from ecoserve.client import Completion, EcoServeClient
from ecoserve.launch import LocalCell, WorkerArgs

KV_MB = 8
# K and V, 2 layers, 1 KV head of 64 float32 values per token: what vLLM allots from KV_MB, less its null block.
EXPECTED_BLOCKS = KV_MB * 2**20 // (2 * 2 * 1 * 64 * 4 * BLOCK_SIZE) - 1
SHORT = [([(11 * i + 3 * j) % 256 for j in range(4 + (i * 29) % 200)], 16) for i in range(12)]
LONG = [([(5 * i + j) % 256 for j in range(20 + 9 * i)], 60) for i in range(8)]


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_model(tmp_path_factory.mktemp("vllm-tiny"))


@pytest.fixture(scope="module")
def expected(model: Path) -> list[list[int]]:
    return reference_tokens(model, SHORT + LONG)


def _run_all(client: EcoServeClient, jobs: list[tuple[list[int], int]]) -> list[Completion]:
    with ThreadPoolExecutor(len(jobs)) as pool:
        futures = [pool.submit(client.generate, prompt, max_tokens, temperature=0.0) for prompt, max_tokens in jobs]
        return [f.result(timeout=300) for f in futures]


def test_vllm_workers_serve_llm_generate_tokens_and_a_killed_ones_requests_finish_on_the_other(
        make_cell, model: Path, expected: list[list[int]]) -> None:  # noqa: F811
    """One cell for both halves: each vLLM worker takes 20-40 s to start on 2 cores."""
    extra = ("--block-size", str(BLOCK_SIZE), "--kv-cache-mb", str(KV_MB))
    cell = make_cell({name: WorkerArgs(engine="vllm", model=str(model), extra=extra) for name in ("w0", "w1")})
    with EcoServeClient(cell.address) as client:
        done = _run_all(client, SHORT)
        stats = client.stats()
        assert [d.tokens for d in done] == expected[:len(SHORT)]
        assert {w.engine for w in stats.workers} == {"vllm"}
        assert [w.capacity_blocks for w in stats.workers] == [EXPECTED_BLOCKS] * 2, "the ledger is vLLM's cache"
        assert all(w.iterations > 0 for w in stats.workers), "the dispatcher used both workers"

        killer = threading.Thread(target=_kill_when_busy, args=(client, cell, "w0"))
        killer.start()
        done = _run_all(client, LONG)
        killer.join()
        stats = client.stats()
    assert [w.name for w in stats.workers] == ["w1"]
    assert [d.tokens for d in done] == expected[len(SHORT):], "recomputed on w1 to the same tokens"
    assert stats.unfinished == 0 and stats.workers[0].used_blocks == 0


def _kill_when_busy(client: EcoServeClient, cell: LocalCell, name: str) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        workers = {w.name: w for w in client.stats().workers}
        if name in workers and workers[name].iterations >= 10 and workers[name].running > 0:
            cell.kill(name)
            return
        time.sleep(0.01)
    raise AssertionError(f"{name} never got busy")
