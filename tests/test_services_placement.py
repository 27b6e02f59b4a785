"""The live scheduler runs the simulator's placement and overload control: real processes, sim
workers. Late binding spreads requests over the workers; a request that can no longer meet its
TTFT ends at once with a retryable "refused", and every other request is served."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from service_cell import make_cell  # noqa: F401 (fixture)

from ecoserve.client import Completion, EcoServeClient
from ecoserve.engine.sim import sim_token
from ecoserve.launch import WorkerArgs

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
