"""Simulator speed: one hour of the Azure conversation trace at its own timing, on one core.

The whole trace (19,366 requests over 58 minutes, about 5.5 req/s) is replayed with its recorded
arrival times; requests longer than the model's context are left out, as in every simulation.
One A100-40GB serves about 4 req/s of it, so the default cluster has two workers (a single worker
would be overloaded and its queue would grow for the whole hour):

    .venv/bin/python benchmarks/sim_speed.py [--policy ecoserve] [--num-workers 2]
"""

from __future__ import annotations

import time
import click

from ecoserve.core.policies import POLICY_NAMES
from ecoserve.sim.cluster import ClusterConfig
from ecoserve.sim.experiment import Experiment
from ecoserve.sim.predictions import PREDICTOR_MODES
from ecoserve.sim.simulator import Simulator


@click.command()
@click.option("--policy", type=click.Choice(POLICY_NAMES), default="ecoserve", show_default=True)
@click.option("--workload", default="azure-conv", show_default=True)
@click.option("--model", default="llama-2-7b", show_default=True)
@click.option("--gpu", default="a100-40gb", show_default=True)
@click.option("--num-workers", type=int, default=2, show_default=True)
@click.option("--predictor", type=click.Choice(PREDICTOR_MODES), default="noisy", show_default=True)
def main(policy: str, workload: str, model: str, gpu: str, num_workers: int, predictor: str) -> None:
    """Print wall seconds, simulated seconds, speedup and requests of one whole-trace run.

    CPU seconds are printed too: on a core shared with other work, wall time exceeds them.
    """
    cluster = ClusterConfig(model=model, gpu=gpu, num_workers=num_workers, policy=policy)
    exp = Experiment(workload, num_requests=None, predictor=predictor, cluster=cluster)  # type: ignore[arg-type]
    wall0, cpu0 = time.perf_counter(), time.process_time()
    specs = exp.specs(rate=None)  # native timing
    result = Simulator(cluster, exp.seed).run(specs, exp.predictor)
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    summary = result.summary(policy, rate=len(specs) / specs[-1].arrival)
    print(f"policy            {policy} on {num_workers} x {gpu}, {model}, predictor {predictor}")
    print(f"requests          {len(specs)} in the trace, {len(result.records)} served, "
          f"{result.rejected_overlong} rejected (over the model's context)")
    print(f"simulated seconds {result.sim_seconds:.0f}")
    print(f"wall seconds      {wall:.1f} (event loop {result.wall_seconds:.1f}); CPU seconds {cpu:.1f}")
    print(f"speedup           {result.sim_seconds / wall:.0f}x real time")
    print(f"iterations        {result.stats.iterations}, {summary.sched_us_per_iter:.0f} us scheduling each")
    print(f"SLO attainment    {summary.slo_attainment:.3f}, preemptions {result.stats.preemptions}")


if __name__ == "__main__":
    main()
