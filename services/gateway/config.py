"""The gateway's settings: where the other services are, its limits, its SLO classes."""

from __future__ import annotations

from dataclasses import dataclass, field

from ecoserve.core.request import Slo


@dataclass(frozen=True, slots=True)
class Limits:
    max_prompt_tokens: int = 8192  # also bounded by the model's context length
    max_tokens: int = 4096  # largest max_tokens a request may ask for
    default_max_tokens: int = 256  # when a request names none (capped by what the context leaves)
    max_body_bytes: int = 1 << 20  # HTTP body and gRPC message size
    max_queue: int = 1024  # requests in flight through this gateway; beyond it: 429
    max_stop: int = 4  # stop strings per request
    retry_after_s: int = 1  # advice sent with 429 and 503


DEFAULT_SLO_CLASSES: dict[str, Slo] = {
    "interactive": Slo(ttft=0.5, tpot=0.05),
    "standard": Slo(ttft=2.0, tpot=0.1),
    "batch": Slo(ttft=30.0, tpot=1.0),
}


def parse_slo_class(spec: str) -> tuple[str, Slo]:
    """`NAME=TTFT:TPOT` (seconds), e.g. `interactive=0.5:0.05`; ValueError if malformed."""
    name, sep, targets = spec.partition("=")
    ttft, sep2, tpot = targets.partition(":")
    if not (sep and sep2 and name.strip()):
        raise ValueError(f"SLO class {spec!r} is not NAME=TTFT:TPOT")
    slo = Slo(float(ttft), float(tpot))
    if not (slo.ttft > 0 and slo.tpot > 0):
        raise ValueError(f"SLO class {spec!r}: targets must be > 0")
    return name.strip(), slo


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    model_dir: str  # tokenizer.json, config.json and the chat template come from here
    scheduler: str  # HOST:PORT
    served_model_name: str = ""  # empty: the model directory's name
    predictor: str | None = None  # HOST:PORT; None: requests go without a prediction
    redis_url: str | None = None  # for the completion log; None: no log
    redis_prefix: str = "ecoserve"
    host: str = "127.0.0.1"
    http_port: int = 8000
    grpc_port: int = 50051
    api_keys: frozenset[str] = frozenset()  # empty: no key needed
    limits: Limits = Limits()
    slo_classes: dict[str, Slo] = field(default_factory=lambda: dict(DEFAULT_SLO_CLASSES))
    default_slo_class: str = "standard"
    predictor_timeout_s: float = 0.25  # past it a request goes on without a prediction
