"""`vllm-real`, vLLM's own V1 Scheduler deciding each simulated step: without prefix caching it makes
exactly the `vllm` model's plans, preemptions included, on a KV-tight trace; with vLLM's prefix
caching (its default) a resumed request recomputes less, which the model does not reproduce
(docs/engine.md); and `ecoserve simulate` runs it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

from ecoserve.core.plan import BatchPlan
from ecoserve.core.policies import PolicyOptions
from ecoserve.sim.cluster import ClusterConfig
from ecoserve.sim.simulator import SimResult, Simulator
from ecoserve.workload import load_workload

SPECS = load_workload("azure-conv", num_requests=150, rate=6.0, seed=1)
TIGHT = ClusterConfig(kv_blocks=900)  # ~14k tokens: KV is the bottleneck, requests are preempted


def run(policy: str, prefix_caching: bool) -> tuple[SimResult, list[BatchPlan]]:
    """A simulation with every worker's plans recorded."""
    sim = Simulator(replace(TIGHT, policy=policy, options=PolicyOptions(prefix_caching=prefix_caching)), seed=0)
    plans: list[BatchPlan] = []
    for worker in sim.workers:
        schedule = worker.sched.schedule

        def recorded(now: float, schedule=schedule) -> BatchPlan:  # type: ignore[no-untyped-def]
            plans.append(schedule(now))
            return plans[-1]

        worker.sched.schedule = recorded  # type: ignore[method-assign]
    return sim.run(SPECS, "oracle"), plans


def signature(plan: BatchPlan) -> tuple:
    return tuple((r.id, n) for r, n in plan.items), tuple(r.id for r in plan.preempted), plan.shape()


def test_without_prefix_caching_vllms_scheduler_plans_every_step_as_the_vllm_model() -> None:
    model, model_plans = run("vllm", prefix_caching=False)
    real, real_plans = run("vllm-real", prefix_caching=False)
    assert real.stats.preemptions == model.stats.preemptions > 0
    assert len(real_plans) == len(model_plans) > 1000
    assert [signature(p) for p in real_plans] == [signature(p) for p in model_plans]
    assert sorted(r.finish for r in real.records) == sorted(r.finish for r in model.records)


def test_vllms_prefix_caching_lets_a_resumed_request_start_on_its_own_blocks() -> None:
    cached, cached_plans = run("vllm-real", prefix_caching=True)
    plain, plain_plans = run("vllm-real", prefix_caching=False)
    assert cached.stats.preemptions > 0
    assert sum(p.prefill_tokens for p in cached_plans) < sum(p.prefill_tokens for p in plain_plans)
    assert len(cached.records) == len(plain.records) == len(SPECS) - cached.rejected


def test_simulate_runs_vllm_real_beside_vllm(tmp_path: Path) -> None:
    out = tmp_path / "run"
    done = subprocess.run([sys.executable, "-m", "ecoserve", "simulate", "--policy", "vllm-real", "--policy", "vllm",
                           "--rate", "4", "--num-requests", "60", "--predictor", "oracle", "--token-budget", "1024",
                           "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "does not apply" not in done.stderr, "--token-budget acts on vllm-real too"
    rows = json.loads((out / "summary.json").read_text())["results"]
    assert [r["policy"] for r in rows] == ["vllm-real", "vllm"]
    assert rows[0]["completed"] == rows[1]["completed"] > 0
