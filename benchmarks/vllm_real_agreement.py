"""`vllm` (our model of vLLM V1's scheduler) against `vllm-real` (vLLM's own Scheduler) on one trace.

Both run in the same simulator, priced by the same cost model, on the same requests. Every step's
plan is recorded (tokens scheduled per request, requests preempted) and the two runs are compared
step by step, then by their metrics:

    .venv/bin/python benchmarks/vllm_real_agreement.py [--rate 2 --rate 3 --rate 4] [--num-requests 1000]
        [--kv-blocks N] [--prefix-caching/--no-prefix-caching]

`--prefix-caching` (vLLM V1's default) lets vLLM reuse a preempted request's own cached blocks when
it resumes; the `vllm` model reuses cached blocks only through a trace's hash ids, which azure-conv
has none of. `--no-prefix-caching` turns it off on both sides. `--with-proposed-fixes` runs the
model with the two changes that would close the gap, not made in the library (docs/engine.md):
requests without hash ids get hashes of their own distinct tokens, and a released request's cached
blocks become evictable tail first, as vLLM frees them, so its head outlives its tail.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Iterator

import click
import numpy as np

from ecoserve.core import kv_ledger
from ecoserve.core.policies import PolicyOptions
from ecoserve.core.prefix_cache import block_hashes
from ecoserve.engine.vllm.runtime import load_vllm
from ecoserve.metrics import RunSummary
from ecoserve.sim.cluster import ClusterConfig
from ecoserve.sim.experiment import Experiment
from ecoserve.sim.simulator import Simulator
from ecoserve.sim.vllm_real import vllm_real_policy

METRICS = ("ttft_p50", "ttft_p99", "tpot_p50", "tpot_p99", "e2e_p50", "e2e_p99")
Step = tuple[tuple[tuple[int, int], ...], tuple[int, ...]]  # ((request, tokens), ...), preempted


@dataclass
class Run:
    summary: RunSummary
    steps: list[Step] = field(default_factory=list)
    wall_s: float = 0.0


def run(exp: Experiment, rate: float, real: bool) -> Run:
    """One simulation, every step's plan recorded; `real` swaps vLLM's own scheduler in."""
    specs = exp.specs(rate)
    sim = Simulator(replace(exp.cluster, policy="vllm"), exp.seed)
    steps: list[Step] = []
    for worker in sim.workers:
        if real:
            worker.sched.policy = vllm_real_policy(sim.cost, exp.cluster.options)
        plan_of = worker.sched.schedule

        def recorded(now: float, plan_of=plan_of):  # type: ignore[no-untyped-def]
            plan = plan_of(now)
            steps.append((tuple((r.id, n) for r, n in plan.items), tuple(r.id for r in plan.preempted)))
            return plan

        worker.sched.schedule = recorded  # type: ignore[method-assign]
    started = time.perf_counter()
    result = sim.run(specs, exp.predictor, overlong=exp.overlong)
    name = "vllm-real" if real else "vllm"
    return Run(result.summary(name, rate), steps, time.perf_counter() - started)


@contextmanager
def proposed_model_fixes() -> Iterator[None]:
    """The model as it would be with both fixes, for the runs inside the block."""
    make_requests, release = Simulator.make_requests, kv_ledger.KVLedger.release

    def hashed(self, specs, predictor="noisy", overlong="reject"):  # type: ignore[no-untyped-def]
        requests, rejected, truncated = make_requests(self, specs, predictor, overlong)
        bs = self.config.block_size
        for req in requests:
            if not req.block_hashes:  # vllm-real's synthetic ids are drawn the same way
                tokens = np.random.default_rng(req.id).integers(0, 32000, req.prompt_len + req.target_len)
                req.block_hashes = tuple(block_hashes(tokens.tolist(), bs))
        return requests, rejected, truncated

    def tail_first(self, rid):  # type: ignore[no-untyped-def]
        account = self._accounts.get(rid)
        if account is not None:
            account.shared.reverse()
        return release(self, rid)

    Simulator.make_requests, kv_ledger.KVLedger.release = hashed, tail_first  # type: ignore[method-assign]
    try:
        yield
    finally:
        Simulator.make_requests, kv_ledger.KVLedger.release = make_requests, release  # type: ignore[method-assign]


def agreement(a: list[Step], b: list[Step]) -> tuple[int, float, float]:
    """(index of the first step that differs, -1 if none; share of steps alike at the same index;
    share of (step, request) token counts alike at the same index)."""
    first = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), -1)
    if first < 0 and len(a) != len(b):
        first = min(len(a), len(b))
    pairs = alike = 0
    for x, y in zip(a, b):
        dx, dy = dict(x[0]), dict(y[0])
        for rid in dx.keys() | dy.keys():
            pairs += 1
            alike += dx.get(rid) == dy.get(rid)
    same_steps = sum(x == y for x, y in zip(a, b)) / max(len(a), len(b), 1)
    return first, same_steps, alike / max(pairs, 1)


def delta(a: float, b: float) -> str:
    return f"{100 * (b - a) / a:+.1f}%" if a else ("0" if b == a else "inf")


@click.command()
@click.option("--workload", default="azure-conv", show_default=True)
@click.option("--model", default="llama-2-7b", show_default=True)
@click.option("--gpu", default="a100-40gb", show_default=True)
@click.option("--num-requests", type=int, default=1000, show_default=True)
@click.option("--rate", "rates", type=float, multiple=True, default=(2.0, 3.0, 4.0), show_default=True)
@click.option("--kv-blocks", type=int, default=None, help="each worker's KV capacity (default: the GPU's)")
@click.option("--prefix-caching/--no-prefix-caching", default=True, show_default=True)
@click.option("--with-proposed-fixes", is_flag=True, help="run the model with the two fixes the docstring names")
def main(workload: str, model: str, gpu: str, num_requests: int, rates: tuple[float, ...], kv_blocks: int | None,
         prefix_caching: bool, with_proposed_fixes: bool) -> None:
    """Print, per rate, the step agreement and the metric deltas of vllm-real over vllm."""
    load_vllm()  # once, outside the timed runs
    options = PolicyOptions(prefix_caching=prefix_caching)
    cluster = ClusterConfig(model=model, gpu=gpu, kv_blocks=kv_blocks, options=options)
    exp = Experiment(workload, num_requests, predictor="oracle", cluster=cluster)
    fixes = ", model with the proposed fixes" if with_proposed_fixes else ""
    print(f"{workload}, {num_requests} requests, {model} on {gpu}, KV blocks {kv_blocks or 'the GPU default'}, "
          f"prefix caching {'on' if prefix_caching else 'off'}{fixes}")
    print(f"{'rate':>5} {'steps':>13} {'1st diff':>8} {'steps =':>7} {'tokens =':>8} {'preempt':>11} "
          + " ".join(f"{m:>9}" for m in METRICS) + f" {'wall s':>11}")
    for rate in rates:
        if with_proposed_fixes:
            with proposed_model_fixes():
                model_run = run(exp, rate, real=False)
        else:
            model_run = run(exp, rate, real=False)
        real_run = run(exp, rate, real=True)
        first, same_steps, same_tokens = agreement(model_run.steps, real_run.steps)
        a, b = model_run.summary, real_run.summary
        print(f"{rate:5g} {len(model_run.steps):>6}/{len(real_run.steps):<6} {first:>8} {100 * same_steps:6.1f}% "
              f"{100 * same_tokens:7.1f}% {a.preemptions:>5}/{b.preemptions:<5} "
              + " ".join(f"{delta(getattr(a, m), getattr(b, m)):>9}" for m in METRICS)
              + f" {model_run.wall_s:5.1f}/{real_run.wall_s:<5.1f}")


if __name__ == "__main__":
    main()
