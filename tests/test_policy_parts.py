"""The parts the EcoServe policy composes: the length forecast and KV admission by forecast, the
queue order with its overload rule, and priorities; and the vllm-sjf baseline's order."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from ecoserve.core.cost_model import CostModel
from ecoserve.core.kv_ledger import KVLedger
from ecoserve.core.policies import make_policy
from ecoserve.core.policies.forecast import HORIZONS, KvForecast, LengthForecast
from ecoserve.core.policies.ordering import QueueOrder
from ecoserve.core.request import Phase, Prediction, Request, Slo
from ecoserve.core.scheduler import WorkerScheduler
from ecoserve.sim.cluster import ClusterConfig
from ecoserve.sim.simulator import Simulator
from ecoserve.workload import load_workload

COST = CostModel.load("llama-3-8b", "a100-40gb")


def request(rid: int, prompt: int, point: int, arrival: float = 0.0, generated: int = 0, **kw) -> Request:  # type: ignore[no-untyped-def]
    req = Request(rid, arrival, prompt, max_tokens=4000, prediction=Prediction(point, 2 * point, 0),
                  output_len=point, **kw)
    req.generated = req.num_computed = generated
    if generated:
        req.num_computed = prompt + generated
    return req


def at(h: float) -> int:
    return int(np.flatnonzero(HORIZONS == h)[0])


def test_exact_lengths_run_exactly_their_prediction() -> None:
    alive = LengthForecast.exact().running(np.array([10.0]), np.array([3.0]), np.array([0.0, 6.0, 7.0, 50.0]))
    assert alive.tolist() == [[1.0, 1.0, 0.0, 0.0]]


def test_measured_errors_spread_the_remaining_length_and_condition_on_progress() -> None:
    lengths = LengthForecast(np.array([0.5, 1.0, 2.0]))
    h = np.array([0.0, 49.0, 50.0, 99.0, 100.0, 199.0, 200.0])
    assert lengths.running(np.array([100.0]), np.array([0.0]), h)[0] == pytest.approx(
        [1, 1, 2 / 3, 2 / 3, 1 / 3, 1 / 3, 0]
    )
    # 120 tokens in, only the longest outcome (200) is left: sure to run 79 more, not 80.
    assert lengths.running(np.array([100.0]), np.array([120.0]), np.array([79.0, 80.0]))[0].tolist() == [1, 0]
    # Past every measured outcome: it runs on for a quarter of its prediction.
    assert lengths.running(np.array([100.0]), np.array([250.0]), np.array([24.0, 25.0]))[0].tolist() == [1, 0]
    with pytest.raises(ValueError, match="positive"):
        LengthForecast(np.array([0.0, 1.0]))


def test_forecast_admits_what_fits_at_every_horizon() -> None:
    # 1600 tokens of KV. Each interval is bounded by who is alive at its start, at its end size:
    # up to step 208 the holder reaches 1208 tokens (1216 in blocks), a 300-token newcomer 508.
    holder = request(1, 1000, 200)
    forecast = KvForecast.of([holder], LengthForecast.exact(), 100, 16, 0.05, lambda r: r.prediction.point)
    assert not forecast.admits(request(2, 300, 200))  # 1216 + 512 > 1600
    small = request(3, 100, 200)
    assert forecast.admits(small)  # 1216 + 320 fits
    forecast.add(small)
    assert not forecast.admits(request(4, 100, 200))  # 1536 + 320: not once both are counted
    assert forecast.admits(request(5, 20, 30))  # short enough to be gone before the peak


def test_an_uncertain_length_needs_room_for_its_likely_overrun() -> None:
    wide = LengthForecast(np.array([0.5, 1.0, 1.0, 1.0, 3.0]))
    holders = [request(i, 200, 100) for i in range(4)]  # each runs 50, 100 (x3) or 300 tokens
    strict = KvForecast.of(holders, wide, 100, 16, 0.01, lambda r: r.prediction.point)
    loose = KvForecast.of(holders, wide, 100, 16, 0.5, lambda r: r.prediction.point)
    cand = request(9, 200, 100)
    assert loose.admits(cand) and not strict.admits(cand)


def test_work_order_puts_light_requests_first_and_priority_and_progress_before_all() -> None:
    order = QueueOrder("work", COST, 0.09, lambda r: r.prediction.point)
    cap = 10_000
    short_prompt, long_prompt = request(1, 200, 50), request(2, 4000, 50)
    short_out, long_out = request(3, 500, 20), request(4, 500, 800)
    assert order.key(short_prompt, cap) < order.key(long_prompt, cap)
    assert order.key(short_out, cap) < order.key(long_out, cap)
    urgent = request(5, 4000, 800, priority=1)
    assert order.key(urgent, cap) < order.key(short_prompt, cap)  # larger priority first
    resumed = request(6, 4000, 800, generated=10)
    assert order.key(resumed, cap) < order.key(urgent, cap)  # a preempted request resumes first
    fcfs = QueueOrder("fcfs", COST, 0.09, lambda r: r.prediction.point, priority=False)
    assert fcfs.key(request(7, 9, 9, arrival=1.0), cap) > fcfs.key(request(8, 4000, 900, arrival=0.5), cap)


def test_a_prompt_that_cannot_meet_its_ttft_is_late_and_shed_or_yields() -> None:
    order = QueueOrder("work", COST, 0.09, lambda r: r.prediction.point)
    slo = Slo(ttft=2.0, tpot=0.1)
    on_time = request(1, 500, 50, arrival=9.0, slo=slo)
    late_short = request(2, 500, 30, arrival=0.0, slo=slo)
    late_long = request(3, 500, 900, arrival=1.0, slo=slo)
    assert not order.late(on_time, 10.0) and order.late(late_short, 10.0)
    waiting = [late_short, on_time, late_long]
    assert order.split(waiting, 10.0, "shed", 80) == ([on_time], [late_short, late_long])
    # Yield: late ones after every on-time one, by E2E deadline (0 + 2 + 2.9 before 1 + 2 + 89.9).
    assert order.split(waiting, 10.0, "yield", 80) == ([on_time, late_short, late_long], [])
    assert order.split(waiting, 10.0, "none", 80) == (waiting, [])


def test_shedding_refuses_only_late_prompts_and_every_request_is_accounted_for() -> None:
    specs = load_workload("azure-conv", num_requests=300, rate=20.0)  # about 3x what one A100 serves
    results = {}
    for policy in ("ecoserve", "vllm"):
        sim = Simulator(ClusterConfig(model="llama-3-8b", policy=policy))
        results[policy] = sim.run(specs, "oracle").summary(policy, 20.0)
    eco, vllm = results["ecoserve"], results["vllm"]
    assert eco.refused > 0 and vllm.refused == 0
    assert eco.completed + eco.refused == eco.num_requests == 300
    # Turning away what can no longer be on time keeps the rest on time: goodput holds.
    assert eco.slo_attainment > 2 * vllm.slo_attainment


def test_vllm_sjf_admits_the_shortest_predicted_first() -> None:
    for name, first in (("vllm", 1), ("vllm-sjf", 3)):
        sched = WorkerScheduler(make_policy(name, COST), KVLedger(40, block_size=16))
        for rid, point in ((1, 500), (2, 300), (3, 10)):
            sched.add_request(request(rid, 400, point))  # 25 blocks each: one fits at a time
        plan = sched.schedule(0.0)
        assert [r.id for r, _ in plan.items] == [first], name


def test_ecoserve_admits_a_higher_priority_request_first() -> None:
    sched = WorkerScheduler(make_policy("ecoserve", COST), KVLedger(40, block_size=16))
    sched.add_request(request(1, 400, 10))
    sched.add_request(request(2, 400, 900, priority=5))
    plan = sched.schedule(0.0)
    assert [r.id for r, _ in plan.items] == [2]
    assert sched.requests[1].phase is Phase.WAITING_PT


def test_forecast_admission_preempts_far_less_than_kv_on_demand() -> None:
    specs = load_workload("azure-conv", num_requests=300, rate=1.6)
    cluster = ClusterConfig(model="llama-3-8b", kv_blocks=625)  # about 10k tokens: KV binds
    pre = {}
    for policy in ("ecoserve", "ecoserve-no-reservation"):
        sim = Simulator(replace(cluster, policy=policy))
        pre[policy] = sim.run(specs, "oracle").stats.preemptions
    assert pre["ecoserve-no-reservation"] > 10 * max(pre["ecoserve"], 1)
