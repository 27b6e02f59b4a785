"""`python -m services.gateway --model DIR --scheduler HOST:PORT [--predictor HOST:PORT]`"""

from __future__ import annotations

import argparse
import logging

from ecoserve.env import apply_env, port
from services.gateway.config import (
    DEFAULT_SLO_CLASSES,
    GatewayConfig,
    Limits,
    parse_slo_class,
)
from services.gateway.server import serve
from services.shell import run_service


def main() -> None:
    d = Limits()
    ap = argparse.ArgumentParser(prog="python -m services.gateway", description=__doc__)
    ap.add_argument("--model", required=True, help="model directory (tokenizer.json, config.json, chat template)")
    ap.add_argument("--served-model-name", default="", help="the name clients use [default: the directory's name]")
    ap.add_argument("--scheduler", default="127.0.0.1:50052", help="HOST:PORT of the scheduler")
    ap.add_argument("--predictor", help="HOST:PORT of the predictor [default: none, requests go unpredicted]")
    ap.add_argument("--redis-url", help="Redis for the completion log [default: no log]")
    ap.add_argument("--redis-prefix", default="ecoserve")
    ap.add_argument("--host", default="127.0.0.1", help="address both APIs listen on")
    ap.add_argument("--http-port", type=port, default=8000)
    ap.add_argument("--grpc-port", type=port, default=50051)
    ap.add_argument("--api-key", action="append", default=[], help="accepted API key (repeatable)")
    ap.add_argument("--max-prompt-tokens", type=int, default=d.max_prompt_tokens)
    ap.add_argument("--max-tokens", type=int, default=d.max_tokens, help="largest max_tokens a request may ask for")
    ap.add_argument("--default-max-tokens", type=int, default=d.default_max_tokens)
    ap.add_argument("--max-body-bytes", type=int, default=d.max_body_bytes)
    ap.add_argument("--max-queue", type=int, default=d.max_queue, help="requests in flight before 429")
    ap.add_argument("--slo-class", action="append", type=parse_slo_class, default=[],
                    help="NAME=TTFT:TPOT in seconds (repeatable; adds to or replaces the defaults "
                         + ", ".join(f"{k}={v.ttft}:{v.tpot}" for k, v in DEFAULT_SLO_CLASSES.items()) + ")")
    ap.add_argument("--default-slo-class", default="standard")
    ap.add_argument("--predictor-timeout", type=float, default=0.25, help="seconds to wait for a prediction")
    apply_env(ap)
    args = ap.parse_args()
    slo_classes = {**DEFAULT_SLO_CLASSES, **dict(args.slo_class)}
    if args.default_slo_class not in slo_classes:
        ap.error(f"--default-slo-class {args.default_slo_class!r} is not a class")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s gateway %(levelname)s %(message)s")
    limits = Limits(max_prompt_tokens=args.max_prompt_tokens, max_tokens=args.max_tokens,
                    default_max_tokens=args.default_max_tokens, max_body_bytes=args.max_body_bytes,
                    max_queue=args.max_queue)
    config = GatewayConfig(
        model_dir=args.model, scheduler=args.scheduler, served_model_name=args.served_model_name,
        predictor=args.predictor, redis_url=args.redis_url, redis_prefix=args.redis_prefix, host=args.host,
        http_port=args.http_port, grpc_port=args.grpc_port, api_keys=frozenset(args.api_key), limits=limits,
        slo_classes=slo_classes, default_slo_class=args.default_slo_class,
        predictor_timeout_s=args.predictor_timeout)
    run_service(ap.prog, lambda stop: serve(config, stop))


if __name__ == "__main__":
    main()
