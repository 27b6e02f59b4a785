"""`python -m services.predictor --port 50053 [--redis-url redis://...] [--predictor-model PATH]`"""

from __future__ import annotations

import argparse
import logging

from ecoserve.env import apply_env, port
from services.predictor.learner import LearnerConfig
from services.predictor.server import PredictorConfig, serve
from services.shell import run_service


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m services.predictor", description=__doc__)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=port, default=50053)
    ap.add_argument("--metrics-port", type=port, default=0, help="Prometheus /metrics port (0: none)")
    ap.add_argument("--predictor-model", help="RL model file [default: the model shipped in the package]")
    ap.add_argument("--tokenizer", help="tokenizer spec overriding the model's (same fingerprint required)")
    ap.add_argument("--redis-url", help="Redis with the completion log; without it there is no retraining")
    ap.add_argument("--redis-prefix", default="ecoserve")
    ap.add_argument("--retrain-interval", type=float, default=0.0, help="seconds between scheduled retrains (0: off)")
    ap.add_argument("--retrain-min-new", type=int, default=200, help="new completions a scheduled retrain waits for")
    ap.add_argument("--train-window", type=int, default=20_000, help="newest completions kept to train on")
    ap.add_argument("--save-model", help="also write each retrained model to this file")
    apply_env(ap)
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s predictor %(levelname)s %(message)s")
    learner = LearnerConfig(prefix=args.redis_prefix, window=args.train_window,
                            retrain_interval_s=args.retrain_interval, min_new=args.retrain_min_new,
                            save_path=args.save_model)
    config = PredictorConfig(model=args.predictor_model, tokenizer=args.tokenizer, redis_url=args.redis_url,
                             learner=learner, metrics_host=args.host, metrics_port=args.metrics_port)
    run_service(ap.prog, lambda stop: serve(config, f"{args.host}:{args.port}", stop))


if __name__ == "__main__":
    main()
