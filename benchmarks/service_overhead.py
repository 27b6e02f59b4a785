"""Per-iteration overhead of the live path: policy, BatchPlan over gRPC, result, Redis pipeline.

A sim worker with --time-scale 0 computes nothing, so the time per iteration is the control plane
alone. Run: .venv/bin/python benchmarks/service_overhead.py [--requests 1 32] [--tokens 400]
"""

from __future__ import annotations

import argparse
import time
from concurrent.futures import ThreadPoolExecutor

from ecoserve.client import EcoServeClient
from ecoserve.launch import LocalCell, WorkerArgs
from ecoserve.ledger import EmbeddedRedis
from ecoserve.ledger.embedded import free_port


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, nargs="+", default=[1, 32])
    ap.add_argument("--tokens", type=int, default=400)
    args = ap.parse_args()
    redis = EmbeddedRedis.start()
    cell = LocalCell(redis.url, free_port())
    try:
        cell.start_scheduler()
        cell.start_worker("w0", WorkerArgs("sim", "llama-2-7b", ("--time-scale", "0")))
        cell.wait_ready(1)
        with EcoServeClient(cell.address) as client:
            for n in args.requests:
                before = client.stats().workers[0].iterations
                started = time.perf_counter()
                with ThreadPoolExecutor(n) as pool:
                    list(pool.map(lambda _: client.generate([1] * 32, args.tokens), range(n)))
                elapsed = time.perf_counter() - started
                iterations = client.stats().workers[0].iterations - before
                print(f"{n:3d} concurrent x {args.tokens} tokens: {iterations} iterations, "
                      f"{1e3 * elapsed / iterations:.2f} ms per iteration")
    finally:
        cell.stop()
        redis.stop()


if __name__ == "__main__":
    main()
