"""Taken ports, as real processes: `ecoserve up` refuses them before it starts anything; each service
fails at once with one line, even when the holder allows port sharing (SO_REUSEPORT, gRPC's
default); and a cell counts only its own processes as ready."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from up_process import ECOSERVE

from ecoserve.launch import LocalCell, port_taken
from ecoserve.ledger import EmbeddedRedis
from ecoserve.ledger.embedded import free_port
from ecoserve.serve_cli import tiny_model


@pytest.fixture
def sharing_grpc_server() -> Iterator[int]:
    """A gRPC server with gRPC's default options (SO_REUSEPORT on) on a free port, as another stack's
    service would be: a second server with the same defaults would bind that port too."""
    port = free_port()
    loop = asyncio.new_event_loop()
    started, stopping = threading.Event(), asyncio.Event()

    async def run() -> None:
        server = grpc.aio.server()
        assert server.add_insecure_port(f"127.0.0.1:{port}") == port
        await server.start()
        started.set()
        await stopping.wait()
        await server.stop(None)

    thread = threading.Thread(target=loop.run_until_complete, args=(run(),), daemon=True)
    thread.start()
    assert started.wait(10)
    yield port
    loop.call_soon_threadsafe(stopping.set)
    thread.join(10)


@pytest.fixture
def listener() -> Iterator[int]:
    """A plain listening socket on a free port."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def test_port_taken_sees_listeners_but_not_free_ports(sharing_grpc_server: int, listener: int) -> None:
    assert port_taken("127.0.0.1", sharing_grpc_server) and port_taken("localhost", listener)
    assert port_taken("127.0.0.1", free_port()) is None and port_taken("127.0.0.1", 0) is None


def test_up_on_a_taken_port_says_so_in_one_line_without_starting(sharing_grpc_server: int, tmp_path: Path) -> None:
    started = time.monotonic()
    out = subprocess.run([ECOSERVE, "up", "--port", str(sharing_grpc_server), "--http-port", str(free_port()),
                          "--grpc-port", str(free_port()), "--predictor-port", str(free_port()),
                          "--log-dir", str(tmp_path)], check=False, capture_output=True, text=True, timeout=60)
    assert out.returncode == 1 and time.monotonic() - started < 10, out
    assert out.stdout == "" and out.stderr.count("\n") == 1, out
    assert f"port {sharing_grpc_server} (--port) is taken" in out.stderr
    assert not list(tmp_path.iterdir()), "a service was started"


def _service(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *args], check=False, capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("service", ["scheduler", "predictor", "gateway-grpc", "gateway-http", "predictor-metrics"])
def test_a_service_on_a_taken_port_fails_at_once_in_one_line(service: str, sharing_grpc_server: int) -> None:
    taken, free = str(sharing_grpc_server), str(free_port())
    args = {
        "scheduler": ("services.scheduler", "--port", taken, "--redis-url", "redis://127.0.0.1:1"),
        "predictor": ("services.predictor", "--port", taken),
        "predictor-metrics": ("services.predictor", "--port", free, "--metrics-port", taken),
        "gateway-grpc": ("services.gateway", "--model", str(tiny_model()), "--grpc-port", taken, "--http-port", free),
        "gateway-http": ("services.gateway", "--model", str(tiny_model()), "--grpc-port", free, "--http-port", taken),
    }[service]
    started = time.monotonic()
    out = _service(*args)
    assert out.returncode == 1 and time.monotonic() - started < 15, out
    assert out.stderr.count("\n") == 1, out.stderr  # one line: no traceback, no gRPC or uvicorn log
    assert f"error: cannot listen on 127.0.0.1:{taken}" in out.stderr and "Address already in use" in out.stderr


def test_a_cell_is_not_ready_on_another_cells_answers(tmp_path: Path) -> None:
    """Two cells on one scheduler port: the second one's scheduler cannot bind, and the first one's
    answers do not make the second one ready."""
    redis = EmbeddedRedis.start()
    port = free_port()
    first = LocalCell(redis.url, port, log_dir=str(tmp_path / "first"))
    second = LocalCell(redis.url, port, log_dir=str(tmp_path / "second"))
    for cell in (first, second):
        Path(cell.log_dir).mkdir()  # type: ignore[arg-type]
    try:
        first.start_scheduler()
        first.wait_ready(0)
        second.start_scheduler()
        with pytest.raises(RuntimeError, match=rf"scheduler exited with status 1: .*cannot listen on 127.0.0.1:{port}"):
            second.wait_ready(0, timeout=30)
    finally:
        second.stop()
        first.stop()
        redis.stop()
