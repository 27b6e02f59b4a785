"""`python -m services.scheduler --port 50052 --redis-url redis://...`"""

from __future__ import annotations

import argparse
import logging

from ecoserve.core.hardware import GPUS, MODELS
from ecoserve.core.placement import ROUTER_NAMES
from ecoserve.env import apply_env, port
from ecoserve.launch import LIVE_POLICY_NAMES
from services.scheduler.server import SchedulerConfig, serve
from services.shell import run_service


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m services.scheduler", description=__doc__)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=port, default=50052)
    ap.add_argument("--redis-url", required=True)
    ap.add_argument("--policy", default="ecoserve", choices=LIVE_POLICY_NAMES)
    ap.add_argument("--cost-model", default="llama-2-7b", choices=sorted(MODELS),
                    help="model whose cost model prices iterations")
    ap.add_argument("--gpu", default="a100-40gb", choices=sorted(GPUS))
    ap.add_argument("--overload", choices=("shed", "yield", "none"), default="yield",
                    help="ecoserve policies: a request that can no longer meet its TTFT waits behind on-time "
                         "ones (yield), is refused with a retryable error (shed, the simulator's default), "
                         "or keeps its place (none)")
    ap.add_argument("--router", choices=ROUTER_NAMES, default=None,
                    help="placement across workers [default: ecoserve's for ecoserve policies, else round-robin]")
    ap.add_argument("--max-queue", type=int, default=100_000)
    ap.add_argument("--result-timeout", type=float, default=60.0, help="seconds a worker may take per iteration")
    apply_env(ap)
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s scheduler %(levelname)s %(message)s")
    config = SchedulerConfig(redis_url=args.redis_url, policy=args.policy, cost_model=args.cost_model, gpu=args.gpu,
                             max_queue=args.max_queue, result_timeout_s=args.result_timeout, router=args.router,
                             overload=args.overload)
    run_service(ap.prog, lambda stop: serve(config, f"{args.host}:{args.port}", stop))


if __name__ == "__main__":
    main()
