"""Central planning's cost per step on the vllm engine: plans over gRPC against vLLM's own loop, on CPU.

The same requests (prompts of varied length, greedy, all queued before the first step) are served
twice by vLLM on the tiny CPU model, each in a process of its own:

A. vLLM's own loop: `LLM.generate` as vLLM runs it on CPU (engine core and model runner in child
   processes, threads bound by vLLM), vLLM's Scheduler deciding;
B. EcoServe: the scheduler service (policy `vllm`: V1's rules at the same budgets, 2048 tokens and
   256 sequences) plans every step and sends it over gRPC to a worker whose VllmEngine executes it;
   the worker runs in the measuring process, as `python -m services.worker` runs it.

Per-step time is the gap between consecutive steps (A: the engine core's timestamps on its outputs;
B: the worker's step starts), everything one turn of the loop costs. Steps are paired by position
where both sampled for as many requests (the same batch, as the simulator shows the `vllm` policy
plans V1's batches); the overhead is B's per-step time less A's over those pairs. B's time outside
its engine step (gRPC, the scheduler's policy and bookkeeping, the worker's own handling) is shown
too, measured directly:

    .venv/bin/python benchmarks/vllm_plan_overhead.py [--requests 32] [--max-tokens 64]
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import click
import grpc
import numpy as np

VLLM_BUDGET = {"max_num_batched_tokens": 2048, "max_num_seqs": 256}  # vllm_defaults on the scheduler's A100
KV_BYTES = 64 << 20
BLOCK_SIZE = 32

Record = tuple[float, int]  # (when the step started or ended, requests it sampled a token for)


def jobs(n: int, max_tokens: int) -> list[tuple[list[int], int]]:
    return [([(7 * i + 3 * j) % 256 for j in range(8 + (i * 37) % 300)], max_tokens) for i in range(n)]


def own_loop(model: str, work: list[tuple[list[int], int]]) -> list[Record]:
    """A: `LLM.generate` as vLLM runs it on CPU (engine core and model runner in their own processes,
    threads bound by vLLM); per step, when its outputs were made (the core's own clock) and how
    many requests got a token."""
    from ecoserve.engine.vllm.runtime import load_vllm

    load_vllm()
    from vllm import LLM, SamplingParams
    from vllm.inputs import TokensPrompt

    llm = LLM(model=model, dtype="float32", enforce_eager=True, skip_tokenizer_init=True, seed=0,
              kv_cache_memory_bytes=KV_BYTES, block_size=BLOCK_SIZE, enable_prefix_caching=False, **VLLM_BUDGET)
    records: list[Record] = []
    client = llm.llm_engine.engine_core
    get_output = client.get_output

    def recorded():  # type: ignore[no-untyped-def]
        outputs = get_output()
        if outputs.outputs:
            records.append((outputs.timestamp, len(outputs.outputs)))
        return outputs

    client.get_output = recorded
    llm.generate([TokensPrompt(prompt_token_ids=p) for p, _ in work],
                 [SamplingParams(temperature=0.0, max_tokens=n) for _, n in work], use_tqdm=False)
    return records


def central(model: str, work: list[tuple[list[int], int]]) -> tuple[list[Record], list[float], dict[str, float]]:
    """B: the scheduler service plans, a VllmEngine worker in this process executes; per step
    (start, batch), the seconds of the engine's step, and the scheduler's own timings."""
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
        records.append((started, sum(it.sample for it in items)))
        durations.append(time.perf_counter() - started)
        return result

    engine.step = timed  # type: ignore[method-assign]
    redis = EmbeddedRedis.start()
    cell = LocalCell(redis.url, free_port(), "vllm")
    try:
        cell.start_scheduler()
        cell.wait_serving(cell.address)

        async def submit_then_serve() -> scheduler_pb2.IterationTimings:
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
                stats = await stub.Stats(scheduler_pb2.StatsRequest())  # before the worker leaves
                worker.stop()
                await serving
                return stats.workers[0].timings

        t = asyncio.run(submit_then_serve())
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


def side(which: str, model: str, work: list[tuple[list[int], int]]) -> dict:
    """Run one side in a fresh interpreter (vLLM keeps process-wide state, and its engine core must be
    started from a main module): its records as JSON-able lists."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "side.json"
        subprocess.run([sys.executable, __file__, "--side", which, "--model", model, "--work", json.dumps(work),
                        "--side-out", str(out)], check=True, timeout=900, stdout=subprocess.DEVNULL)
        return json.loads(out.read_text())


@click.command()
@click.option("--requests", "num_requests", type=int, default=32, show_default=True)
@click.option("--max-tokens", type=int, default=64, show_default=True)
@click.option("--side", "which", type=click.Choice(["own", "central"]), hidden=True)
@click.option("--model", hidden=True)
@click.option("--work", hidden=True)
@click.option("--side-out", hidden=True)
def main(num_requests: int, max_tokens: int, which: str | None, model: str | None, work: str | None,
         side_out: str | None) -> None:
    """Print per-step time p50/p99 of both loops, the steps they share and the overhead."""
    if which:
        jobs_ = [(p, n) for p, n in json.loads(work or "[]")]
        if which == "own":
            result = {"records": own_loop(str(model), jobs_)}
        else:
            records, steps, timings = central(str(model), jobs_)
            result = {"records": records, "steps": steps, "timings": timings}
        Path(str(side_out)).write_text(json.dumps(result))
        return
    from ecoserve.engine.vllm.tiny import save_tiny_vllm_model

    load = os.getloadavg()[0]
    todo = jobs(num_requests, max_tokens)
    with tempfile.TemporaryDirectory() as tmp:
        tiny = str(save_tiny_vllm_model(Path(tmp) / "tiny"))
        own = [tuple(r) for r in side("own", tiny, todo)["records"]]
        b = side("central", tiny, todo)
    ours, our_step, timings = [tuple(r) for r in b["records"]], b["steps"], b["timings"]
    own_gaps, our_gaps = gaps(own), gaps(ours)
    outside = [gap - step for gap, step in zip(our_gaps, our_step)]
    same = [i for i in range(min(len(own_gaps), len(our_gaps))) if own[i + 1][1] == ours[i + 1][1]]
    paired = [our_gaps[i] - own_gaps[i] for i in same]
    print(f"{num_requests} requests x {max_tokens} tokens, tiny Llama on CPU, {os.cpu_count()} CPUs, "
          f"load average {load:.1f} at the start")
    print(f"steps that sampled: vLLM's loop {len(own)}, EcoServe {len(ours)}; paired (as many requests sampled "
          f"at the same step): {len(same)} of {min(len(own_gaps), len(our_gaps))}")
    print(f"{'':34} {'p50 ms':>8} {'p99 ms':>8}")
    print(f"{'vLLM loop, per step':34} {ms(own_gaps, 50):>8} {ms(own_gaps, 99):>8}")
    print(f"{'EcoServe, per step':34} {ms(our_gaps, 50):>8} {ms(our_gaps, 99):>8}")
    print(f"{'  in VllmEngine.step':34} {ms(our_step, 50):>8} {ms(our_step, 99):>8}")
    print(f"{'  outside it (planning, gRPC)':34} {ms(outside, 50):>8} {ms(outside, 99):>8}")
    print(f"{'EcoServe - vLLM, paired steps':34} {ms(paired, 50):>8} {ms(paired, 99):>8}")
    print(f"scheduler: policy {1e3 * timings['policy_s']:.2f} ms/step, plan round trip p50 "
          f"{1e3 * timings['round_trip_p50_s']:.2f} ms, p99 {1e3 * timings['round_trip_p99_s']:.2f} ms "
          f"over {timings['iterations']:.0f} iterations")


if __name__ == "__main__":
    main()
