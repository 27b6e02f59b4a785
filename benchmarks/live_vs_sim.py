"""The live system against the simulator: same trace, rate, policy, predictions and cost model.

The simulator charges an iteration only the cost model's compute time. A live cell whose `sim`
workers sleep for that same time adds everything the services do: the policy in a service, the
BatchPlan and its result over gRPC, the Redis pipeline, token delivery to client streams. The gap
between the two is what the control plane costs a deployment, and where the simulator's figures
stop being a forecast of the live system's.

The load generator is one asyncio gRPC client that submits each request at its trace time (oracle
predictions, max_tokens = the trace's output length, so both sides generate the same tokens) and
times every token as it arrives, with the definitions of `ecoserve.metrics` (vLLM's benchmark).
Run: .venv/bin/python benchmarks/live_vs_sim.py [--workload azure-conv] [--num-requests 300] [--rate 2]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from dataclasses import replace

import grpc
import numpy as np
from rich.console import Console
from rich.table import Table

from ecoserve.core.cost_model import CostModel
from ecoserve.core.rl_buckets import rl_bucket
from ecoserve.launch import LocalCell, WorkerArgs
from ecoserve.ledger import EmbeddedRedis
from ecoserve.ledger.embedded import free_port
from ecoserve.metrics import RequestRecord, RunSummary, summarize
from ecoserve.proto import common_pb2, scheduler_pb2, scheduler_pb2_grpc
from ecoserve.sim.cluster import ClusterConfig
from ecoserve.sim.experiment import Experiment
from ecoserve.workload import RequestSpec

console = Console(width=120)


async def _request(stub: scheduler_pb2_grpc.SchedulerStub, spec: RequestSpec, t0: float
                   ) -> tuple[RequestRecord, float]:
    """Submit at the trace time and time every token; returns the record and how late it was sent."""
    await asyncio.sleep(max(0.0, t0 + spec.arrival - time.perf_counter()))
    n = spec.output_len
    submit = scheduler_pb2.SubmitRequest(
        prompt_token_ids=[1] * spec.prompt_len, params=common_pb2.SamplingParams(max_tokens=n),
        prediction=common_pb2.Prediction(point=n, upper=n, bucket=rl_bucket(n)))
    sent = time.perf_counter()
    times = []
    async for event in stub.Submit(submit):
        if event.has_token:
            times.append(time.perf_counter() - t0)
        if event.finished and event.finish_reason != "length":
            raise RuntimeError(f"request {event.request_id} ended with {event.finish_reason!r}")
    record = RequestRecord(arrival=sent - t0, first_token=times[0], finish=times[-1], prompt_len=spec.prompt_len,
                           output_len=len(times), ttft_slo=2.0, tpot_slo=0.1, itl=np.diff(times))
    return record, sent - t0 - spec.arrival


async def replay(address: str, specs: list[RequestSpec]) -> tuple[list[RequestRecord], float]:
    """Every request at its arrival time; returns the records and the latest submission's lag (s)."""
    async with grpc.aio.insecure_channel(address) as channel:
        stub = scheduler_pb2_grpc.SchedulerStub(channel)
        t0 = time.perf_counter() + 0.5
        done = await asyncio.gather(*(_request(stub, s, t0) for s in specs))
    return [r for r, _ in done], max(lag for _, lag in done)


def run_live(exp: Experiment, specs: list[RequestSpec], blocks: int, policy: str
             ) -> tuple[list[RequestRecord], float, scheduler_pb2.StatsResponse]:
    redis = EmbeddedRedis.start()
    cluster = exp.cluster
    cell = LocalCell(redis.url, free_port(), policy, ("--cost-model", cluster.model, "--gpu", cluster.gpu),
                     log_dir=tempfile.mkdtemp(prefix="live-vs-sim-"))
    worker = WorkerArgs("sim", cluster.model, ("--gpu", cluster.gpu, "--num-blocks", str(blocks)))
    try:
        cell.start_scheduler()
        for i in range(cluster.num_workers):
            cell.start_worker(f"w{i}", worker)
        cell.wait_ready(cluster.num_workers)
        records, lag = asyncio.run(replay(cell.address, specs))
        with grpc.insecure_channel(cell.address) as channel:
            stats = scheduler_pb2_grpc.SchedulerStub(channel).Stats(scheduler_pb2.StatsRequest())
        return records, lag, stats
    finally:
        cell.stop()
        redis.stop()


def compare(live: RunSummary, sim: RunSummary) -> Table:
    table = Table(title=f"live vs simulated: {live.policy} at {live.rate:g} req/s, {live.completed} requests")
    for col in ("metric", "live", "sim", "live/sim"):
        table.add_column(col, justify="right")
    rows = [("throughput (req/s)", "throughput_rps", 1), ("output tokens/s", "output_token_throughput", 1),
            ("TTFT p50 (ms)", "ttft_p50", 1e3), ("TTFT p99 (ms)", "ttft_p99", 1e3),
            ("TPOT p50 (ms)", "tpot_p50", 1e3), ("TPOT p99 (ms)", "tpot_p99", 1e3), ("ITL p99 (ms)", "itl_p99", 1e3),
            ("E2E p50 (s)", "e2e_p50", 1), ("E2E p99 (s)", "e2e_p99", 1), ("SLO attainment (%)", "slo_attainment", 100)]
    for name, field, scale in rows:
        a, b = getattr(live, field), getattr(sim, field)
        table.add_row(name, f"{a * scale:.2f}", f"{b * scale:.2f}", f"{a / b:.3f}" if b else "-")
    return table


def overhead(stats: scheduler_pb2.StatsResponse, sim_iterations: int) -> Table:
    table = Table(title="live iterations: where the time went (scheduler's Stats timings)")
    for col in ("worker", "iterations (sim)", "wall/iter", "compute", "policy", "round trip mean p50/p99",
                "Redis flush p50/p99", "overhead share"):
        table.add_column(col, justify="right")
    for w in stats.workers:
        t = w.timings
        per = lambda s: f"{1e3 * s / t.iterations:.2f} ms"  # noqa: E731
        table.add_row(w.name, f"{t.iterations} ({sim_iterations})", per(t.wall_s), per(t.compute_s), per(t.policy_s),
                      f"{per(t.round_trip_s)} {1e3 * t.round_trip_p50_s:.2f}/{1e3 * t.round_trip_p99_s:.2f} ms",
                      f"{1e3 * t.persist_p50_s:.2f}/{1e3 * t.persist_p99_s:.2f} ms",
                      f"{100 * (1 - t.compute_s / t.wall_s):.1f}%")
    return table


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workload", default="azure-conv")
    ap.add_argument("--num-requests", type=int, default=300)
    ap.add_argument("--rate", type=float, default=2.0, help="requests/s")
    ap.add_argument("--policy", default="ecoserve")
    ap.add_argument("--model", default="llama-2-7b")
    ap.add_argument("--gpu", default="a100-40gb")
    ap.add_argument("--num-workers", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    cost = CostModel.load(args.model, args.gpu)
    cluster = ClusterConfig(model=args.model, gpu=args.gpu, num_workers=args.num_workers)
    blocks = cost.kv_capacity_blocks(cluster.block_size, cluster.mem_fraction)
    exp = Experiment(args.workload, args.num_requests, args.seed, predictor="oracle",
                     cluster=replace(cluster, kv_blocks=blocks))
    specs = [s for s in exp.specs(args.rate) if s.prompt_len + s.output_len <= cost.model.max_model_len]
    simulated = exp.run(args.policy, args.rate)
    sim = simulated.summary(args.policy, args.rate)
    console.print(f"simulated {sim.completed} requests ({simulated.rejected_overlong} rejected: over the context); running them live "
                  f"for about {specs[-1].arrival:.0f} s ...")
    load_before = os.getloadavg()[0]
    records, lag, stats = run_live(exp, specs, blocks, args.policy)
    live = summarize(records, args.policy, args.rate)
    console.print(compare(live, sim))
    console.print(overhead(stats, simulated.stats.iterations))
    console.print(f"load generator: latest submission {1e3 * lag:.1f} ms behind its trace time; "
                  f"host: {os.cpu_count()} CPUs, load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after")


if __name__ == "__main__":
    main()
