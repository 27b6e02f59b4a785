"""Simulator and placement speed with many workers: `--duration` seconds of multi-turn traffic at
`--per-worker` requests/s for each of `--workers` workers, one process (one core):

    .venv/bin/python benchmarks/cluster_speed.py [--workers 32] [--router ecoserve] [--duration 3600]

Prints wall and CPU seconds of the simulation (generating the workload is timed apart), the
speedup over real time, and the wall time of each placement decision (p50, p99, max): an arrival
for a router that binds at once, a free worker taking requests for late binding.
"""

from __future__ import annotations

import time

import click
import numpy as np

from ecoserve.core.placement import ROUTER_NAMES
from ecoserve.sim.cluster import ClusterConfig
from ecoserve.sim.simulator import Simulator
from ecoserve.workload import load_workload


@click.command()
@click.option("--workers", type=int, default=32, show_default=True)
@click.option("--router", type=click.Choice(ROUTER_NAMES), default="ecoserve", show_default=True)
@click.option("--policy", default=None, help="[default: ecoserve with its placement, vllm with a router]")
@click.option("--per-worker", type=float, default=4.0, show_default=True, help="requests/s per worker")
@click.option("--duration", type=float, default=3600.0, show_default=True, help="seconds of traffic")
@click.option("--workload", default="multi-turn", show_default=True)
@click.option("--model", default="llama-3-8b", show_default=True)
def main(workers: int, router: str, policy: str | None, per_worker: float, duration: float, workload: str,
         model: str) -> None:
    """Print how fast a cluster of many workers simulates, and how long placement takes."""
    policy = policy or ("ecoserve" if router == "ecoserve" else "vllm")
    rate = per_worker * workers
    n = int(rate * duration)
    t0 = time.perf_counter()
    specs = load_workload(workload, num_requests=n, rate=rate, seed=0)
    made = time.perf_counter() - t0
    cluster = ClusterConfig(model=model, num_workers=workers, router=router, policy=policy)
    wall0, cpu0 = time.perf_counter(), time.process_time()
    result = Simulator(cluster).run(specs, "oracle")
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    decisions = result.placement_seconds * 1e6
    summary = result.summary(policy, rate)
    print(f"cluster           {workers} x {model}, {policy} + {router}, {workload} at {rate:g} req/s")
    print(f"requests          {n} ({made:.1f} s to generate), {summary.completed} completed, {summary.refused} refused")
    print(f"simulated seconds {result.sim_seconds:.0f}")
    print(f"wall seconds      {wall:.1f}; CPU seconds {cpu:.1f}; {result.sim_seconds / wall:.1f}x real time")
    if len(decisions):
        p50, p99 = np.percentile(decisions, [50, 99])
        print(f"placement         {len(decisions)} decisions: p50 {p50:.0f} us, p99 {p99:.0f} us, max {decisions.max():.0f} us")
    print(f"SLO attainment    {summary.slo_attainment:.3f}; prefix hit rate {summary.prefix_hit_rate:.3f}")


if __name__ == "__main__":
    main()
