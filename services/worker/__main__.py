"""`python -m services.worker --scheduler HOST:PORT --engine sim|torch|vllm --model ...`"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import socket
import sys

from ecoserve.engine.factory import ENGINES, EngineSpec, make_engine
from ecoserve.env import apply_env
from services.worker.server import Worker, WorkerIdentity


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m services.worker", description=__doc__)
    ap.add_argument("--scheduler", required=True, help="HOST:PORT of the scheduler")
    ap.add_argument("--name", default=f"{socket.gethostname()}-{os.getpid()}", help="stable worker name")
    ap.add_argument("--engine", choices=ENGINES, default="torch")
    ap.add_argument("--model", required=True, help="torch, vllm: checkpoint directory; sim: cost-model name")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--gpu", default="a100-40gb", help="sim: the GPU it stands in for")
    ap.add_argument("--block-size", type=_positive, help="tokens per KV block [default: 16; vllm on CPU: 32, "
                                                         "as vLLM's CPU attention needs a multiple of 32]")
    ap.add_argument("--kv-cache-mb", type=float, help="KV memory budget (default: the engine's share of free memory)")
    ap.add_argument("--num-blocks", type=int, help="KV blocks, overriding the memory budget")
    ap.add_argument("--time-scale", type=float, default=1.0, help="sim: scale the cost model's iteration time")
    ap.add_argument("--threads", type=_positive, help="torch: CPU threads per operation [default: torch's, one per "
                                                     "core; workers sharing the cores should split them; vllm binds "
                                                     "its model runner's threads itself, VLLM_CPU_OMP_THREADS_BIND]")
    apply_env(ap)
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s worker {args.name} %(levelname)s %(message)s")
    if args.threads and args.engine == "torch":
        import torch

        torch.set_num_threads(args.threads)
    spec = EngineSpec(kind=args.engine, model=args.model, device=args.device, gpu=args.gpu, block_size=args.block_size,
                      kv_cache_mb=args.kv_cache_mb, num_blocks=args.num_blocks, time_scale=args.time_scale)
    engine = make_engine(spec)
    logging.getLogger("ecoserve.worker").info("%s engine, %d KV blocks of %d tokens", args.engine,
                                              engine.num_blocks, engine.block_size)
    asyncio.run(_run(Worker(args.scheduler, engine, WorkerIdentity(args.name, args.engine, args.model))))
    # Stopped cleanly, nothing left to write: skip the interpreter's teardown, which takes 0.3-0.7 s
    # with torch loaded (more with several workers on few cores) and would only delay a shutdown.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def _positive(raw: str) -> int:
    value = int(raw)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not a positive number")
    return value


async def _run(worker: Worker) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, worker.stop)
    await worker.run()


if __name__ == "__main__":
    main()
