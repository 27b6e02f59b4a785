"""The whole stack as real processes for the gateway tests: Redis, predictor, scheduler, one torch
worker with the tiny model, gateway; on free ports, stopped afterwards."""

from __future__ import annotations

import atexit
import http.client
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from ecoserve.launch import LocalCell, WorkerArgs
from ecoserve.ledger import EmbeddedRedis
from ecoserve.ledger.embedded import free_port
from ecoserve.serve_cli import tiny_model

API_KEY = "test-key"


@dataclass(frozen=True, slots=True)
class Stack:
    cell: LocalCell
    redis: EmbeddedRedis
    model: Path
    http_port: int
    grpc_port: int

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}/v1"

    @property
    def grpc_address(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def post(self, path: str, body: bytes, headers: dict[str, str] | None = None) -> tuple[int, dict, dict]:
        """(status, headers, JSON body) of a raw POST, for bodies no client library would send."""
        conn = http.client.HTTPConnection("127.0.0.1", self.http_port, timeout=30)
        try:
            conn.request("POST", path, body=body, headers={"Authorization": f"Bearer {API_KEY}",
                                                           "Content-Type": "application/json", **(headers or {})})
            resp = conn.getresponse()
            data = resp.read()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, json.loads(data) if data else {}
        finally:
            conn.close()

    def get(self, path: str) -> tuple[int, str]:
        conn = http.client.HTTPConnection("127.0.0.1", self.http_port, timeout=30)
        try:
            conn.request("GET", path, headers={"Authorization": f"Bearer {API_KEY}"})
            resp = conn.getresponse()
            return resp.status, resp.read().decode()
        finally:
            conn.close()


def start_stack(log_dir: Path, gateway_args: tuple[str, ...] = (), scheduler_args: tuple[str, ...] = ()) -> Iterator[Stack]:
    redis = EmbeddedRedis.start()
    model = tiny_model()
    cell = LocalCell(redis.url, free_port(), scheduler_args=scheduler_args, log_dir=str(log_dir))
    http_port, grpc_port, predictor_port = free_port(), free_port(), free_port()
    try:
        cell.start_service("predictor", ["--port", str(predictor_port), "--redis-url", redis.url])
        cell.start_scheduler()
        cell.start_worker("w0", WorkerArgs("torch", str(model), ("--kv-cache-mb", "16")))
        cell.start_service("gateway", [
            "--model", str(model), "--scheduler", cell.address, "--predictor", f"127.0.0.1:{predictor_port}",
            "--redis-url", redis.url, "--http-port", str(http_port), "--grpc-port", str(grpc_port),
            "--api-key", API_KEY, *gateway_args])
        cell.wait_ready(1, timeout=120)
        cell.wait_serving(f"127.0.0.1:{predictor_port}", timeout=120)
        cell.wait_serving(f"127.0.0.1:{grpc_port}", timeout=60)
        yield Stack(cell, redis, model, http_port, grpc_port)
    finally:
        cell.stop()
        redis.stop()


_shared: list[Stack] = []


def _shared_stack(log_dir: Path) -> Stack:
    """One stack for every gateway test module (a fixture imported into two modules would be two),
    started on first use and stopped when the interpreter exits, as redis_server does."""
    if not _shared:
        log_dir.mkdir(parents=True, exist_ok=True)
        running = start_stack(log_dir, (
            "--max-queue", "2", "--max-prompt-tokens", "512", "--max-tokens", "3000", "--max-body-bytes", "65536",
            "--slo-class", "interactive=0.5:0.05",
            "--predictor-timeout", "10"))  # a loaded CI machine must not turn predictions into fallbacks
        _shared.append(next(running))
        atexit.register(running.close)  # runs start_stack's cleanup
    return _shared[0]


@pytest.fixture
def stack(tmp_path_factory: pytest.TempPathFactory) -> Stack:
    return _shared_stack(tmp_path_factory.getbasetemp() / "gateway-stack")
