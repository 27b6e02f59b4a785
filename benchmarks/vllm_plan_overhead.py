"""Central planning's cost per step on the vllm engine: plans over gRPC against vLLM's own loop, on CPU.

The same requests (prompts of varied length, greedy, all queued before the first step) are served
twice by vLLM on the tiny CPU model, each in a process of its own:

A. vLLM's own loop: `LLM.generate`, its engine core in process, vLLM's Scheduler deciding;
B. EcoServe: the scheduler service (policy `vllm`: V1's rules at the same budgets, 2048 tokens and
   256 sequences) plans every step and sends it over gRPC to a worker whose VllmEngine executes it;
   the worker runs in the measuring process, as `python -m services.worker` runs it.

Each step's start time and batch (tokens per request, in plan order) are recorded on both sides.
Per-step time is the gap between consecutive step starts: everything one turn of the loop costs.
The overhead is B's per-step time less A's, over the steps whose batches are the same:

    .venv/bin/python benchmarks/vllm_plan_overhead.py [--requests 32] [--max-tokens 64]
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import click
import grpc
import numpy as np

VLLM_BUDGET = {"max_num_batched_tokens": 2048, "max_num_seqs": 256}  # vllm_defaults on the scheduler's A100
KV_BYTES = 64 << 20
BLOCK_SIZE = 32

Record = tuple[float, tuple[int, ...]]  # (step start, tokens per request in order)


def jobs(n: int, max_tokens: int) -> list[tuple[list[int], int]]:
    return [([(7 * i + 3 * j) % 256 for j in range(8 + (i * 37) % 300)], max_tokens) for i in range(n)]


def own_loop(model: str, work: list[tuple[list[int], int]]) -> tuple[list[Record], list[float]]:
    """A: `LLM.generate`; per step (start, batch) and the seconds of EngineCore.step."""
    os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"  # the engine core in this process, to time it
    from ecoserve.engine.vllm.runtime import load_vllm

    load_vllm()
    from vllm import LLM, SamplingParams
    from vllm.inputs import TokensPrompt
    from vllm.v1.core.sched.scheduler import Scheduler
    from vllm.v1.engine.core import EngineCore

    records: list[Record] = []
    durations: list[float] = []
    batches: list[tuple[int, ...]] = []
    schedule, step = Scheduler.schedule, EngineCore.step

    def recorded(self, *args):  # type: ignore[no-untyped-def]
        out = schedule(self, *args)
        batches.append(tuple(out.num_scheduled_tokens.values()))
        return out

    def timed(self):  # type: ignore[no-untyped-def]
        started, seen = time.perf_counter(), len(batches)
        result = step(self)
        if len(batches) > seen and batches[-1]:
            records.append((started, batches[-1]))
            durations.append(time.perf_counter() - started)
        return result

    Scheduler.schedule, EngineCore.step = recorded, timed  # type: ignore[method-assign]
    llm = LLM(model=model, dtype="float32", enforce_eager=True, skip_tokenizer_init=True, seed=0,
              kv_cache_memory_bytes=KV_BYTES, block_size=BLOCK_SIZE, enable_prefix_caching=False, **VLLM_BUDGET)
    llm.generate([TokensPrompt(prompt_token_ids=p) for p, _ in work],
                 [SamplingParams(temperature=0.0, max_tokens=n) for _, n in work], use_tqdm=False)
    return records, durations


def central(model: str, work: list[tuple[list[int], int]]) -> tuple[list[Record], list[float], dict[str, float]]:
    """B: the scheduler service plans, a VllmEngine worker in this process executes; per step
    (start, batch), the seconds of the engine's step, and the scheduler's own timings."""
    from ecoserve.client import EcoServeClient
    from ecoserve.engine.vllm.config import VllmEngineConfig
    from ecoserve.engine.vllm.engine import VllmEngine
    from ecoserve.launch import LocalCell
    from ecoserve.ledger import EmbeddedRedis
    from ecoserve.ledger.embedded import free_port
    from ecoserve.proto import common_pb2, scheduler_pb2, scheduler_pb2_grpc
    from services.worker.server import Worker, WorkerIdentity

    engine = VllmEngine(VllmEngineConfig(model, block_size=BLOCK_SIZE, kv_cache_bytes=KV_BYTES,
                                         max_num_batched_tokens=VLLM_BUDGET["max_num_batched_tokens"]))
    records: list[Record] = []
    durations: list[float] = []
    execute = engine.step

    def timed(items):  # type: ignore[no-untyped-def]
        started = time.perf_counter()
        result = execute(items)
        records.append((started, tuple(len(it.token_ids) for it in items)))
        durations.append(time.perf_counter() - started)
        return result

    engine.step = timed  # type: ignore[method-assign]
    redis = EmbeddedRedis.start()
    cell = LocalCell(redis.url, free_port(), "vllm")
    try:
        cell.start_scheduler()
        cell.wait_serving(cell.address)

        async def submit_then_serve() -> None:
            async with grpc.aio.insecure_channel(cell.address) as channel:
                stub = scheduler_pb2_grpc.SchedulerStub(channel)
                calls = [stub.Submit(scheduler_pb2.SubmitRequest(
                    prompt_token_ids=p, params=common_pb2.SamplingParams(max_tokens=n, temperature=0.0)))
                    for p, n in work]  # queued in order before any worker is there, as in A

                async def drain(call) -> None:  # type: ignore[no-untyped-def]
                    async for _ in call:
                        pass

                while (await stub.Stats(scheduler_pb2.StatsRequest())).pending < len(work):
                    await asyncio.sleep(0.05)
                worker = Worker(cell.address, engine, WorkerIdentity("w0", "vllm", model))
                serving = asyncio.create_task(worker.run())
                await asyncio.gather(*(drain(c) for c in calls))
                worker.stop()
                await serving

        asyncio.run(submit_then_serve())
        with EcoServeClient(cell.address) as client:
            t = client.stats().workers[0].timings
        timings = {"policy_s": t.policy_s / t.iterations, "round_trip_p50_s": t.round_trip_p50_s,
                                        "round_trip_p99_s": t.round_trip_p99_s, "iterations": float(t.iterations)}
        return records, durations, timings
    finally:
        cell.stop()
        redis.stop()


def gaps(records: list[Record]) -> list[float]:
    return [b[0] - a[0] for a, b in zip(records, records[1:])]


def ms(values: list[float] | np.ndarray, q: float) -> str:
    return f"{1e3 * float(np.percentile(values, q)):.2f}" if len(values) else "-"


@click.command()
@click.option("--requests", "num_requests", type=int, default=32, show_default=True)
@click.option("--max-tokens", type=int, default=64, show_default=True)
def main(num_requests: int, max_tokens: int) -> None:
    """Print per-step time p50/p99 of both loops, the batches they share and the overhead."""
    from ecoserve.engine.vllm.tiny import save_tiny_vllm_model

    work = jobs(num_requests, max_tokens)
    spawn = multiprocessing.get_context("spawn")
    with tempfile.TemporaryDirectory() as tmp:
        model = str(save_tiny_vllm_model(Path(tmp) / "tiny"))
        with ProcessPoolExecutor(1, mp_context=spawn) as pool:
            own, own_step = pool.submit(own_loop, model, work).result()
        with ProcessPoolExecutor(1, mp_context=spawn) as pool:
            ours, our_step, timings = pool.submit(central, model, work).result()
    own_gaps, our_gaps = gaps(own), gaps(ours)
    same = [i for i in range(min(len(own_gaps), len(our_gaps))) if own[i][1] == ours[i][1]]
    paired = np.array([our_gaps[i] - own_gaps[i] for i in same])
    print(f"{num_requests} requests x {max_tokens} tokens, tiny Llama on CPU, host load {os.getloadavg()[0]:.1f}, "
          f"{threading.active_count()} threads")
    print(f"steps: vLLM's loop {len(own)}, EcoServe {len(ours)}; same batch at the same step: {len(same)} "
          f"({100 * len(same) / max(len(own), 1):.0f}%)")
    print(f"{'':28} {'p50 ms':>8} {'p99 ms':>8}")
    print(f"{'vLLM loop, per step':28} {ms(own_gaps, 50):>8} {ms(own_gaps, 99):>8}")
    print(f"{'  of which EngineCore.step':28} {ms(own_step, 50):>8} {ms(own_step, 99):>8}")
    print(f"{'EcoServe, per step':28} {ms(our_gaps, 50):>8} {ms(our_gaps, 99):>8}")
    print(f"{'  of which VllmEngine.step':28} {ms(our_step, 50):>8} {ms(our_step, 99):>8}")
    print(f"{'overhead, same batches':28} {ms(paired, 50):>8} {ms(paired, 99):>8}")
    if timings:
        print(f"scheduler: policy {1e3 * timings['policy_s']:.2f} ms/step, plan round trip p50 "
              f"{1e3 * timings['round_trip_p50_s']:.2f} ms, p99 {1e3 * timings['round_trip_p99_s']:.2f} ms "
              f"over {timings['iterations']:.0f} iterations")


if __name__ == "__main__":
    main()
