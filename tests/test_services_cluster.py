"""Real processes: a scheduler and two workers serving many requests, and losing one of them."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from service_cell import make_cell  # noqa: F401 (fixture)

from ecoserve.client import Completion, EcoServeClient
from ecoserve.engine.sim import sim_token
from ecoserve.launch import WorkerArgs


def _prompts(n: int) -> list[tuple[list[int], int]]:
    """(prompt, max_tokens) pairs of varied lengths."""
    return [([(7 * i + j) % 250 for j in range(5 + (i * 13) % 60)], 8 + (i * 7) % 33) for i in range(n)]


def _run_all(address: str, jobs: list[tuple[list[int], int]], **kwargs) -> list[Completion]:
    with EcoServeClient(address) as client, ThreadPoolExecutor(len(jobs)) as pool:
        futures = [pool.submit(client.generate, prompt, max_tokens, **kwargs) for prompt, max_tokens in jobs]
        return [f.result(timeout=120) for f in futures]


def _expect_sim_tokens(done: Completion, prompt_len: int, max_tokens: int) -> None:
    """The sim engine's tokens depend only on (request, position): any gap or repeat shows."""
    assert done.finish_reason == "length"
    assert done.tokens == [sim_token(done.request_id, prompt_len + i) for i in range(max_tokens)]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    from ecoserve.engine.torch import LlamaConfig, save_random_model

    return save_random_model(LlamaConfig.tiny(), tmp_path_factory.mktemp("tiny"))


def test_fifty_prompts_on_two_torch_workers_finish_with_their_lengths(make_cell, tiny_model: Path) -> None:
    torch_worker = WorkerArgs(engine="torch", model=str(tiny_model), extra=("--num-blocks", "256"))
    cell = make_cell({"w0": torch_worker, "w1": torch_worker})
    jobs = _prompts(50)
    done = _run_all(cell.address, jobs, temperature=0.0, ignore_eos=True)
    for (prompt, max_tokens), result in zip(jobs, done, strict=True):
        assert result.finish_reason == "length"
        assert len(result.tokens) == max_tokens
        assert all(0 <= t < 512 for t in result.tokens)
    assert len({r.request_id for r in done}) == 50
    with EcoServeClient(cell.address) as client:
        stats = client.stats()
    assert stats.finished == 50 and stats.unfinished == 0
    assert all(w.iterations > 0 for w in stats.workers), "the dispatcher used both workers"
    assert all(w.used_blocks == 0 for w in stats.workers), "every block came back"
    for w in stats.workers:  # the scheduler's per-iteration timings cover every iteration
        t = w.timings
        assert t.iterations == w.iterations and t.window == min(t.iterations, 4096)
        assert 0 < t.compute_s < t.wall_s and t.policy_s > 0 and t.persist_s > 0
        assert 0 < t.round_trip_p50_s <= t.round_trip_p99_s and 0 < t.persist_p50_s <= t.persist_p99_s


def test_greedy_torch_output_does_not_depend_on_the_batch(make_cell, tiny_model: Path) -> None:
    cell = make_cell({"w0": WorkerArgs(engine="torch", model=str(tiny_model), extra=("--num-blocks", "256"))})
    prompt = list(b"the same prompt, twice")
    alone = _run_all(cell.address, [(prompt, 12)], temperature=0.0, ignore_eos=True)[0]
    batch = _run_all(cell.address, [(prompt, 12)] + _prompts(8), temperature=0.0, ignore_eos=True)[0]
    assert alone.tokens == batch.tokens


def test_killed_worker_requests_finish_on_the_other(make_cell) -> None:
    # Slow decode (time-scale 3) so the kill lands mid-generation.
    slow = WorkerArgs(engine="sim", model="llama-2-7b", extra=("--time-scale", "3"))
    cell = make_cell({"w0": slow, "w1": slow})
    jobs = [(list(range(10 + i)), 60) for i in range(20)]
    with EcoServeClient(cell.address) as client:
        killer = threading.Thread(target=_kill_when_busy, args=(client, cell, "w0"))
        killer.start()
        done = _run_all(cell.address, jobs)
        killer.join()
        stats = client.stats()
    assert [w.name for w in stats.workers] == ["w1"]
    for (prompt, max_tokens), result in zip(jobs, done, strict=True):
        _expect_sim_tokens(result, len(prompt), max_tokens)
    assert stats.unfinished == 0 and stats.workers[0].used_blocks == 0


def _kill_when_busy(client: EcoServeClient, cell, name: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        workers = {w.name: w for w in client.stats().workers}
        if name in workers and workers[name].iterations >= 10 and workers[name].running > 0:
            cell.kill(name)
            return
        time.sleep(0.01)
    raise AssertionError(f"{name} never got busy")


def test_cancel_mid_generation_ends_the_stream_and_frees_its_kv(make_cell) -> None:
    cell = make_cell({"w0": WorkerArgs(engine="sim", model="llama-2-7b", extra=("--time-scale", "3"))})
    jobs = [(list(range(10 + i)), 30) for i in range(4)]
    with EcoServeClient(cell.address) as client, ThreadPoolExecutor(4) as pool:
        others = [pool.submit(client.generate, prompt, max_tokens) for prompt, max_tokens in jobs]
        events = client.stream(list(range(30)), 200)
        rid = next(events).request_id
        got, reason = [], None
        for event in events:
            if event.has_token:
                got.append(event.token_id)
                if len(got) == 5:
                    assert client.cancel(rid)
            if event.finished:
                reason = event.finish_reason
        assert reason == "abort" and 5 <= len(got) < 200
        assert got == [sim_token(rid, 30 + i) for i in range(len(got))]
        assert not client.cancel(rid), "already finished"
        for (prompt, max_tokens), future in zip(jobs, others, strict=True):
            _expect_sim_tokens(future.result(timeout=60), len(prompt), max_tokens)
        stats = client.stats()
    assert stats.unfinished == 0 and stats.workers[0].used_blocks == 0
