"""`python -m services.scheduler --port 50052 --redis-url redis://...`"""

from __future__ import annotations

import argparse
import asyncio
import logging

from ecoserve.env import apply_env
from services.scheduler.server import SchedulerConfig, serve
from services.shell import serve_until_signalled


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m services.scheduler", description=__doc__)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=50052)
    ap.add_argument("--redis-url", required=True)
    ap.add_argument("--policy", default="ecoserve")
    ap.add_argument("--cost-model", default="llama-2-7b", help="model whose cost model prices iterations")
    ap.add_argument("--gpu", default="a100-40gb")
    ap.add_argument("--max-queue", type=int, default=100_000)
    ap.add_argument("--result-timeout", type=float, default=60.0, help="seconds a worker may take per iteration")
    apply_env(ap)
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s scheduler %(levelname)s %(message)s")
    config = SchedulerConfig(redis_url=args.redis_url, policy=args.policy, cost_model=args.cost_model, gpu=args.gpu,
                             max_queue=args.max_queue, result_timeout_s=args.result_timeout)
    asyncio.run(serve_until_signalled(lambda stop: serve(config, f"{args.host}:{args.port}", stop)))



if __name__ == "__main__":
    main()
