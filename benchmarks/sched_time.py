"""Scheduling decision time per iteration with a full batch of running requests.

Builds one WorkerScheduler per policy with a KV ledger far larger than the batch needs, drives it
with schedule()/update() until `--running` requests decode (short prompts, long outputs), queues
`--waiting` more prompts behind them (the batch is full at max_num_seqs, so they stay queued and
every decision looks at them), then times many schedule() + update() rounds. A full batch admits
nothing, so ecoserve's KV forecast (built only when a prompt could be admitted) is timed on its
own: built over the running batch, with the measured length errors, and asked about one prompt.

    .venv/bin/python benchmarks/sched_time.py [--running 256] [--waiting 256] [--rounds 2000]
"""

from __future__ import annotations

import time

import click
import numpy as np
from rich.console import Console
from rich.table import Table

from ecoserve.core.cost_model import CostModel
from ecoserve.core.kv_ledger import KVLedger
from ecoserve.core.policies import PolicyOptions, make_policy
from ecoserve.core.request import Phase, Prediction, Request, Slo
from ecoserve.core.rl_buckets import rl_bucket
from ecoserve.core.scheduler import WorkerScheduler

PROMPT_LEN = 64
OUTPUT_LEN = 100_000  # never reached while timing: every round is a full decode batch
PREDICTION = Prediction(point=2048, upper=4096, bucket=rl_bucket(2048))


# Queued prompts get a TTFT target far away, so that overload control keeps them queued (it would
# refuse prompts that can no longer be on time) and every round schedules against a full queue.
PATIENT = Slo(ttft=1e9, tpot=0.1)


def make_request(rid: int, now: float, slo: Slo = Slo()) -> Request:
    return Request(rid, now, PROMPT_LEN, max_tokens=OUTPUT_LEN, prediction=PREDICTION, slo=slo, output_len=OUTPUT_LEN)


def step(sched: WorkerScheduler, cost: CostModel, now: float) -> float:
    """One iteration: plan, advance the clock by the cost model's time for the plan, apply it."""
    plan = sched.schedule(now)
    now += cost.iteration_time(*plan.shape())
    sched.update(plan, now)
    return now


def fill(sched: WorkerScheduler, cost: CostModel, running: int, waiting: int) -> float:
    """Admit `running` requests until all decode, then queue `waiting` more; returns the clock."""
    now = 0.0
    for rid in range(running):
        sched.add_request(make_request(rid, now))
    for _ in range(10_000):
        if sum(r.phase is Phase.RUNNING for r in sched.running) == running:
            break
        now = step(sched, cost, now)
    else:
        raise RuntimeError(f"{sched.policy.name}: {len(sched.running)} of {running} requests running")
    for rid in range(running, running + waiting):
        sched.add_request(make_request(rid, now, PATIENT))
    return now


def time_rounds(
    policy: str, cost: CostModel, running: int, waiting: int, rounds: int
) -> tuple[np.ndarray, np.ndarray, WorkerScheduler]:
    """Microseconds of each schedule() and update(), and the scheduler as the rounds left it."""
    options = PolicyOptions(max_num_seqs=running)
    sched = WorkerScheduler(make_policy(policy, cost, options), KVLedger(capacity=1_000_000))
    now = fill(sched, cost, running, waiting)
    sched_us, update_us = np.empty(rounds), np.empty(rounds)
    for i in range(rounds):
        t0 = time.perf_counter()
        plan = sched.schedule(now)
        t1 = time.perf_counter()
        now += cost.iteration_time(*plan.shape())
        sched.update(plan, now)
        t2 = time.perf_counter()
        sched_us[i], update_us[i] = 1e6 * (t1 - t0), 1e6 * (t2 - t1)
    return sched_us, update_us, sched


@click.command()
@click.option("--policy", "policies", multiple=True, default=("ecoserve", "vllm", "vllm-sjf"), show_default=True)
@click.option("--model", default="llama-2-7b", show_default=True)
@click.option("--gpu", default="a100-80gb", show_default=True)
@click.option("--running", type=int, default=256, show_default=True, help="decoding requests in the batch")
@click.option("--waiting", type=int, default=256, show_default=True, help="prompts queued behind them")
@click.option("--rounds", type=int, default=2000, show_default=True)
def main(policies: tuple[str, ...], model: str, gpu: str, running: int, waiting: int, rounds: int) -> None:
    """Print p50/p99 microseconds of schedule() (and update()) per iteration."""
    cost = CostModel.load(model, gpu)
    table = Table(title=f"scheduling time per iteration: {running} running, {waiting} waiting, {rounds} rounds")
    for col in ("policy", "running", "waiting", "schedule p50 us", "schedule p99 us", "update p50 us", "update p99 us"):
        table.add_column(col, justify="right")
    for policy in policies:
        sched_us, update_us, sched = time_rounds(policy, cost, running, waiting, rounds)
        s50, s99 = np.percentile(sched_us, [50, 99])
        u50, u99 = np.percentile(update_us, [50, 99])
        queued = len(sched.waiting) + len(sched.gt_queue)
        row = [policy, str(len(sched.running)), str(queued)]
        table.add_row(*row, *(f"{v:.0f}" for v in (s50, s99, u50, u99)))
    Console().print(table)
    f50, f99 = np.percentile(time_forecast(sched_for_forecast(cost, running), rounds), [50, 99])
    Console().print(f"ecoserve KV forecast over {running} running requests: p50 {f50:.0f} us, p99 {f99:.0f} us "
                    "(added to schedule() in an iteration that can admit a prompt)")


def sched_for_forecast(cost: CostModel, running: int) -> WorkerScheduler:
    sched = WorkerScheduler(make_policy("ecoserve", cost, PolicyOptions(max_num_seqs=running)), KVLedger(1_000_000))
    fill(sched, cost, running, 0)
    return sched


def time_forecast(sched: WorkerScheduler, rounds: int) -> np.ndarray:
    from ecoserve.core.policies.forecast import KvForecast
    from ecoserve.sim.predictions import length_forecast

    lengths = length_forecast(np.ones(1), "noisy")
    policy = sched.policy
    probe = make_request(-1, 0.0)
    out = np.empty(rounds)
    for i in range(rounds):
        t0 = time.perf_counter()
        forecast = KvForecast.of(sched.running, lengths, sched.ledger.capacity, sched.ledger.block_size, 0.05,
                                 policy.point_of)  # type: ignore[attr-defined]
        forecast.admits(probe)
        out[i] = 1e6 * (time.perf_counter() - t0)
    return out


if __name__ == "__main__":
    main()
