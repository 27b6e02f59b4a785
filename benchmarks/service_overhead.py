"""The control plane's own cost per iteration: policy, plan round trip, Redis pipeline.

A sim worker with --time-scale 0 computes nothing, so an iteration is control plane alone. The
scheduler measures each iteration (Stats `timings`): the plan's round trip is from sending the
BatchPlan to receiving its IterationResult, less the compute the worker reports; the Redis flush
is the one pipeline per iteration (ledger Lua call, tokens, finishes). Each row runs on a fresh
cell so its percentiles cover its own iterations only.
Run: .venv/bin/python benchmarks/service_overhead.py [--requests 1 32] [--tokens 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time

import grpc
from rich.console import Console
from rich.table import Table

from ecoserve.client import EcoServeClient
from ecoserve.launch import LocalCell, WorkerArgs
from ecoserve.ledger import EmbeddedRedis
from ecoserve.ledger.embedded import free_port
from ecoserve.proto import common_pb2, scheduler_pb2, scheduler_pb2_grpc


def measure(redis_url: str, concurrent: int, tokens: int) -> tuple[float, scheduler_pb2.IterationTimings]:
    """(client-side seconds per iteration, the scheduler's timings) for `concurrent` x `tokens`."""
    cell = LocalCell(redis_url, free_port())
    try:
        cell.start_scheduler()
        cell.start_worker("w0", WorkerArgs("sim", "llama-2-7b", ("--time-scale", "0")))
        cell.wait_ready(1)
        elapsed = asyncio.run(_generate(cell.address, concurrent, tokens))
        with EcoServeClient(cell.address) as client:
            timings = client.stats().workers[0].timings
        return elapsed / timings.iterations, timings
    finally:
        cell.stop()


async def _generate(address: str, concurrent: int, tokens: int) -> float:
    """Seconds for `concurrent` streams of `tokens` tokens each, from one asyncio client (one
    thread: little CPU taken from the services on the same cores)."""
    submit = scheduler_pb2.SubmitRequest(prompt_token_ids=[1] * 32, params=common_pb2.SamplingParams(max_tokens=tokens))

    async def one(stub: scheduler_pb2_grpc.SchedulerStub) -> None:
        async for _ in stub.Submit(submit):
            pass

    async with grpc.aio.insecure_channel(address) as channel:
        stub = scheduler_pb2_grpc.SchedulerStub(channel)
        started = time.perf_counter()
        await asyncio.gather(*(one(stub) for _ in range(concurrent)))
        return time.perf_counter() - started


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, nargs="+", default=[1, 32])
    ap.add_argument("--tokens", type=int, default=1000)
    args = ap.parse_args()
    redis = EmbeddedRedis.start()
    table = Table(title="control plane per iteration (sim worker, --time-scale 0)")
    for col in ["concurrent x tokens", "iterations", "client view", "policy", "round trip p50", "round trip p99",
                "Redis flush p50", "Redis flush p99"]:
        table.add_column(col, justify="right")
    try:
        for n in args.requests:
            per_iter, t = measure(redis.url, n, args.tokens)
            ms = lambda s: f"{1e3 * s:.2f} ms"  # noqa: E731
            table.add_row(f"{n} x {args.tokens}", str(t.iterations), ms(per_iter), ms(t.policy_s / t.iterations),
                          ms(t.round_trip_p50_s), ms(t.round_trip_p99_s), ms(t.persist_p50_s), ms(t.persist_p99_s))
    finally:
        redis.stop()
    console = Console(width=120)
    console.print(table)
    console.print(f"host: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} (client, scheduler, worker "
                    "and Redis share them)")


if __name__ == "__main__":
    main()
