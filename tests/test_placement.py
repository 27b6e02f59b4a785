"""Placement across workers: the routers users run in front of vLLM replicas, and EcoServe's late
binding from the cell's view of every worker's ledger."""

from __future__ import annotations

from dataclasses import replace

import pytest

from ecoserve.core.cost_model import CostModel
from ecoserve.core.kv_ledger import KVLedger
from ecoserve.core.placement import make_placement
from ecoserve.core.policies import make_policy
from ecoserve.core.request import Prediction, Request
from ecoserve.core.scheduler import WorkerScheduler
from ecoserve.sim.cluster import ClusterConfig
from ecoserve.sim.simulator import Simulator
from ecoserve.workload import load_workload
from ecoserve.workload.prefix import conversation_hashes

COST = CostModel.load("llama-3-8b", "a100-40gb")


def workers(n: int, policy: str = "vllm", blocks: int = 1000) -> list[WorkerScheduler]:
    return [WorkerScheduler(make_policy(policy, COST), KVLedger(blocks, 16), i) for i in range(n)]


def request(rid: int, prompt: int = 320, conv: int | None = None) -> Request:
    hashes = conversation_hashes(rid if conv is None else conv, prompt)
    return Request(rid, 0.0, prompt, 1000, Prediction(50, 100, 0), output_len=50, block_hashes=hashes)


def cache(worker: WorkerScheduler, req: Request) -> None:
    """Leave `req`'s prompt blocks cached on `worker`, as after serving it."""
    ledger = worker.ledger
    blocks = len(req.block_hashes)
    ledger.allocate(-req.id, blocks)
    ledger.write(-req.id, blocks * 16)
    ledger.commit(-req.id, req.block_hashes, blocks)
    ledger.release(-req.id)


def test_round_robin_and_least_loaded() -> None:
    ws = workers(3)
    rr = make_placement("round-robin")
    assert [rr.arrive(request(i), ws, 0.0) for i in range(4)] == [0, 1, 2, 0]
    ws[0].waiting.append(request(10))  # 4 x 1 waiting
    for i in range(3):
        ws[1].running.append(request(20 + i))  # 3 running
    assert make_placement("least-loaded").arrive(request(5), ws, 0.0) == 2
    ws[2].running.extend(request(30 + i) for i in range(5))
    assert make_placement("least-loaded").arrive(request(6), ws, 0.0) == 1  # 3 < 4 < 5


def test_llm_d_follows_the_prefixes_it_routed() -> None:
    ws = workers(4)
    picker = make_placement("llm-d", seed=1)
    first = picker.arrive(request(1, conv=7), ws, 0.0)
    # Its approximate index remembers where conversation 7 went: the next turn follows it.
    assert picker.arrive(request(2, prompt=640, conv=7), ws, 0.0) == first
    ws[first].waiting.extend(request(100 + i) for i in range(20))  # a long queue there now
    others = {picker.arrive(request(50 + i), ws, 0.0) for i in range(12)}
    assert first not in others  # no shared prefix: the queue and KV scorers steer away


def test_dynamo_weighs_cached_prefill_against_active_blocks() -> None:
    ws = workers(2)
    turn = request(1, prompt=1600, conv=3)
    cache(ws[1], turn)
    router = make_placement("dynamo")
    assert router.arrive(request(2, prompt=1600, conv=3), ws, 0.0) == 1  # 100 blocks saved
    ws[1].ledger.allocate(99, 150)  # but 150 active blocks on it outweigh them
    assert router.arrive(request(3, prompt=1600, conv=3), ws, 0.0) == 0


def test_ecoserve_holds_requests_until_a_worker_is_free_and_prefers_cached_prefixes() -> None:
    ws = workers(2, "ecoserve")
    placement = make_placement("ecoserve", COST)
    assert placement.late_binding and placement.arrive(request(1), ws, 0.0) is None
    turn = request(5, prompt=3200, conv=9)
    cache(ws[1], turn)
    cached, other = request(6, prompt=3300, conv=9), request(7)
    held = [cached, other]
    # Worker 0 is free, but worker 1 has 200 of request 6's blocks: 6 waits for worker 1, and
    # worker 0 takes request 7, which would start no sooner anywhere.
    assert placement.assign(held, ws, 0, 0.0) == [other]
    assert [r.id for r in held] == [6]
    assert [r.id for r in placement.assign(held, ws, 1, 0.0)] == [6] and held == []


def test_a_request_a_busy_worker_could_not_start_moves_to_a_free_one() -> None:
    ws = workers(2, "ecoserve")
    placement = make_placement("ecoserve", COST)
    ws[0].running.append(request(40))
    stuck = request(41)
    ws[0].add_request(stuck)
    pending: list[Request] = []
    taken = placement.assign(pending, ws, 1, 0.0)
    assert taken == [stuck] and not ws[0].waiting and 41 not in ws[0].requests


@pytest.mark.parametrize("router", ["ecoserve", "round-robin", "least-loaded", "llm-d", "dynamo", "least-kv"])
def test_every_router_serves_every_request_and_keeps_the_ledgers_sound(router: str) -> None:
    specs = load_workload("multi-turn", num_requests=200, rate=8.0, seed=2)
    policy = "ecoserve" if router == "ecoserve" else "vllm"
    sim = Simulator(ClusterConfig(model="llama-3-8b", num_workers=4, router=router, policy=policy))
    result = sim.run(specs, "oracle")
    assert len(result.records) + result.refused == 200
    for worker in sim.workers:
        worker.sched.ledger.check()
        assert not worker.sched.requests
    assert result.prefix_queries > 0


def test_prefix_aware_placement_finds_the_history_round_robin_misses() -> None:
    specs = load_workload("multi-turn", num_requests=400, rate=8.0, seed=4)
    cluster = ClusterConfig(model="llama-3-8b", num_workers=4)
    rates = {}
    for policy, router in (("ecoserve", "ecoserve"), ("vllm", "round-robin")):
        result = Simulator(replace(cluster, policy=policy, router=router)).run(specs, "oracle")
        rates[router] = result.prefix_hits / result.prefix_queries
    assert rates["ecoserve"] > rates["round-robin"] + 0.3
