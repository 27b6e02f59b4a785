"""run_bench: open a client of the chosen protocol, check it with one request, replay the specs."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass

from ecoserve.bench.attempt import Attempt
from ecoserve.bench.backend import Backend
from ecoserve.bench.runner import replay
from ecoserve.workload import RequestSpec

PROTOCOLS = ("http", "grpc")
DEFAULT_ADDRESS = {"http": "http://127.0.0.1:8000", "grpc": "127.0.0.1:50051"}


@dataclass(frozen=True, slots=True)
class BenchTarget:
    """Where to send and how: `address` is a base URL (http) or host:port (grpc); `model` None
    asks the server (http: the first of /v1/models; grpc: the gateway's served model)."""

    protocol: str = "http"
    address: str = DEFAULT_ADDRESS["http"]
    model: str | None = None
    api_key: str | None = None
    endpoint: str = "completions"
    ignore_eos: str = "auto"


@dataclass(frozen=True, slots=True)
class BenchRun:
    """The attempts, what the requests carried, and how long the replay took (s)."""

    attempts: list[Attempt]
    model: str
    ignore_eos: bool
    wall_s: float


def _open(
    target: BenchTarget, max_concurrency: int | None, probe_timeout: float
) -> AbstractAsyncContextManager[Backend]:
    if target.protocol == "grpc":
        from ecoserve.bench.grpc_gateway import grpc_backend

        return grpc_backend(target.address, target.model, target.api_key, target.endpoint, target.ignore_eos,
                            probe_timeout)
    from ecoserve.bench.openai_http import http_backend

    return http_backend(target.address, target.model, target.api_key, target.endpoint, target.ignore_eos,
                        max_concurrency, probe_timeout)


async def run_bench(
    specs: Sequence[RequestSpec],
    target: BenchTarget,
    *,
    max_duration: float,
    max_concurrency: int | None = None,
    probe_timeout: float = 60.0,
    on_done: Callable[[Attempt], None] | None = None,
) -> BenchRun:
    """Replay `specs` against `target`; raises BenchError if the probe request fails."""
    if target.protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {PROTOCOLS}, got {target.protocol!r}")
    async with _open(target, max_concurrency, probe_timeout) as backend:
        start = time.perf_counter()
        attempts = await replay(specs, backend.send, max_duration=max_duration,
                                max_concurrency=max_concurrency, on_done=on_done)
        return BenchRun(attempts, backend.model, backend.ignore_eos, time.perf_counter() - start)
