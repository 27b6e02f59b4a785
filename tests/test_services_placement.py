"""The live scheduler runs the simulator's placement and overload control: real processes, sim
workers. Late binding spreads requests over the workers; a request that can no longer meet its
TTFT ends at once with a retryable "refused", and every other request is served."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import redis
from service_cell import make_cell  # noqa: F401 (fixture)

from ecoserve.client import Completion, EcoServeClient
from ecoserve.engine.sim import sim_token
from ecoserve.launch import WorkerArgs
from ecoserve.ledger.redis_ledger import ledger_keys

SIM = WorkerArgs(engine="sim", model="llama-2-7b")
SLOW = WorkerArgs(engine="sim", model="llama-2-7b", extra=("--time-scale", "5"))


def _run(address: str, jobs: list[list[int]], max_tokens: int, **kwargs: object) -> list[Completion]:
    with EcoServeClient(address) as client, ThreadPoolExecutor(len(jobs)) as pool:
        futures = [pool.submit(client.generate, p, max_tokens, **kwargs) for p in jobs]
        return [f.result(timeout=120) for f in futures]


def test_late_binding_serves_every_request_on_both_workers(make_cell) -> None:  # noqa: F811
    cell = make_cell({"w0": SIM, "w1": SIM}, policy="ecoserve")
    jobs = [[(3 * i + j) % 250 for j in range(20 + i % 30)] for i in range(40)]
    done = _run(cell.address, jobs, 12, ignore_eos=True)
    for prompt, result in zip(jobs, done, strict=True):
        assert result.finish_reason == "length"
        assert result.tokens == [sim_token(result.request_id, len(prompt) + i) for i in range(12)]
    with EcoServeClient(cell.address) as client:
        stats = client.stats()
    assert stats.finished == 40 and stats.pending == 0
    assert all(w.iterations > 0 for w in stats.workers), "late binding used both workers"


def test_a_request_that_cannot_be_on_time_is_refused_at_once_and_the_rest_served(make_cell) -> None:  # noqa: F811
    cell = make_cell({"w0": SLOW}, policy="ecoserve", scheduler_args=("--overload", "shed"))
    jobs = [[(i + j) % 250 for j in range(400)] for i in range(40)]  # each about 0.2 s of prefill here
    done = _run(cell.address, jobs, 4, ignore_eos=True, slo=(1.0, 0.5))
    refused = [d for d in done if d.finish_reason.startswith("refused")]
    served = [d for d in done if d.finish_reason == "length"]
    assert len(refused) + len(served) == 40  # every request ended, none hung
    assert refused and served
    assert all(not d.tokens for d in refused) and all(len(d.tokens) == 4 for d in served)
    with EcoServeClient(cell.address) as client:
        assert client.stats().unfinished == 0


def test_the_prefix_index_is_in_redis_and_goes_with_its_worker(make_cell) -> None:  # noqa: F811
    cell = make_cell({"w0": SIM, "w1": SIM}, policy="ecoserve")
    prompt = [(7 * j) % 250 for j in range(80)]  # 5 blocks of 16; the second run can reuse 4
    with EcoServeClient(cell.address) as client:
        first = client.generate(prompt, 4, ignore_eos=True)
        second = client.generate(prompt, 4, ignore_eos=True)
        workers = {w.name: w for w in client.stats().workers}
    assert first.tokens == [sim_token(first.request_id, 80 + i) for i in range(4)]
    assert second.tokens == [sim_token(second.request_id, 80 + i) for i in range(4)]
    hit = [w for w in workers.values() if w.prefix_hit_blocks]
    assert len(hit) == 1 and hit[0].prefix_hit_blocks == 4, workers  # placed where its prefix was
    assert hit[0].cached_blocks >= 5 and hit[0].prefix_query_blocks == 8

    r = redis.Redis.from_url(cell.redis_url)
    name = hit[0].name
    _, _, cache_key = ledger_keys(name)
    assert r.hlen(cache_key) == hit[0].cached_blocks  # the index the placement reads, mirrored
    cell.kill(name)
    deadline = time.monotonic() + 30
    with EcoServeClient(cell.address) as client:
        while name in {w.name for w in client.stats().workers} and time.monotonic() < deadline:
            time.sleep(0.1)
        assert [w.name for w in client.stats().workers] == [n for n in ("w0", "w1") if n != name]
        again = client.generate(prompt, 4, ignore_eos=True)  # served on the other, from scratch
        (left,) = client.stats().workers
    assert again.finish_reason == "length" and left.prefix_hit_blocks == 0
    assert not r.exists(*ledger_keys(name))  # the gone worker's blocks left the index
