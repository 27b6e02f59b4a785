"""SIGTERM, as real processes: each service stops as soon as its work in flight is done, without
waiting out its grace period on long-lived streams, and without losing an accepted request; a
predictor reports SERVING only once its model is warm."""

from __future__ import annotations

import asyncio
import http.client
import json
import signal
import subprocess
import threading
import time
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from test_services_cluster import _expect_sim_tokens, _run_all
from up_process import ECOSERVE, start_up, stop_up

from ecoserve.client import EcoServeClient
from ecoserve.launch import LocalCell, WorkerArgs
from ecoserve.ledger import EmbeddedRedis
from ecoserve.ledger.embedded import free_port
from ecoserve.predictor import RLPredictor
from services.scheduler.server import SHUTDOWN_GRACE_S

SLOW_SIM = WorkerArgs(engine="sim", model="llama-2-7b", extra=("--time-scale", "3"))


def _sigterm(proc: subprocess.Popen, timeout: float = 30) -> tuple[int, float]:
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    return proc.wait(timeout), time.monotonic() - started


def test_scheduler_sigterm_ends_worker_sessions_and_streams_at_once_and_loses_nothing(tmp_path: Path) -> None:
    """Two workers connected and six requests streaming: the scheduler stores the iteration in flight,
    ends the sessions and the streams with UNAVAILABLE and exits well inside its grace period; the
    clients resume on the next scheduler, and every token arrives exactly once."""
    server = EmbeddedRedis.start()
    cell = LocalCell(server.url, free_port(), log_dir=str(tmp_path))
    try:
        cell.start_scheduler()
        for name in ("w0", "w1"):
            cell.start_worker(name, SLOW_SIM)
        cell.wait_ready(2)
        jobs = [(list(range(20 + i)), 60) for i in range(6)]
        done: list = []
        clients = threading.Thread(target=lambda: done.extend(_run_all(cell.address, jobs)))
        clients.start()
        with EcoServeClient(cell.address) as client:
            deadline = time.monotonic() + 30
            while sum(w.iterations for w in client.stats().workers) < 10:
                assert time.monotonic() < deadline
                time.sleep(0.01)
            assert client.stats().unfinished == len(jobs)
        assert cell.scheduler is not None
        rc, took = _sigterm(cell.scheduler)
        assert rc == 0 and took < SHUTDOWN_GRACE_S * 0.75, f"exit {rc} after {took:.2f}s"
        cell.start_scheduler()
        clients.join(120)
        assert len(done) == len(jobs)
        for (prompt, max_tokens), result in zip(jobs, done, strict=True):
            _expect_sim_tokens(result, len(prompt), max_tokens)
        log = (tmp_path / "scheduler.log").read_text()
        assert "the scheduler is shutting down" in log and "Traceback" not in log
    finally:
        cell.stop()
        server.stop()


def test_scheduler_waiting_for_redis_stops_on_sigterm(tmp_path: Path) -> None:
    cell = LocalCell("redis://127.0.0.1:1/0", free_port(), log_dir=str(tmp_path))
    try:
        cell.start_scheduler()
        deadline = time.monotonic() + 30
        while "waiting for Redis" not in (tmp_path / "scheduler.log").read_text():
            assert time.monotonic() < deadline and cell.scheduler.poll() is None  # type: ignore[union-attr]
            time.sleep(0.05)
        rc, took = _sigterm(cell.scheduler)  # type: ignore[arg-type]
        assert rc == 0 and took < 3, f"exit {rc} after {took:.2f}s"
    finally:
        cell.stop()


def test_up_sigterm_with_a_stream_in_flight_ends_it_cleanly_and_returns(tmp_path: Path) -> None:
    """The gateway lets the stream run while it drains, then ends it with an error event saying it
    shuts down (not a cut connection); the whole stack is gone within a few seconds."""
    http_port = free_port()
    up, _ = start_up("--engine", "sim", "--workers", "1", "--port", str(free_port()), "--http-port", str(http_port),
                     "--grpc-port", str(free_port()), "--predictor-port", str(free_port()),
                     "--log-dir", str(tmp_path))
    conn = http.client.HTTPConnection("127.0.0.1", http_port, timeout=30)
    try:
        conn.request("POST", "/v1/completions", json.dumps({
            "model": "llama-2-7b", "prompt": "Hello", "max_tokens": 4000, "stream": True, "ignore_eos": True}),
            {"content-type": "application/json"})
        reply = conn.getresponse()
        assert reply.status == 200
        assert reply.readline().startswith(b"data: {")  # tokens are flowing
        rc, took = _sigterm(up)
        events = [line for line in reply.read().decode().splitlines() if line.startswith("data: ")]
        assert rc == 0 and took < 6, f"exit {rc} after {took:.2f}s"
        assert events[-1] == "data: [DONE]" and "the gateway is shutting down; retry" in events[-2], events[-3:]
        logs = "".join(path.read_text() for path in tmp_path.glob("*.log"))
        assert "Traceback" not in logs, logs
    finally:
        conn.close()
        stop_up(up)


def test_up_sigterm_while_starting_stops_at_once(tmp_path: Path) -> None:
    """SIGTERM before the stack is ready (here it never gets ready: no Redis) stops it now, not after
    the 120 s start timeout."""
    up = subprocess.Popen([ECOSERVE, "up", "--engine", "sim", "--workers", "1", "--no-predictor",
                           "--redis-url", "redis://127.0.0.1:1/0", "--port", str(free_port()),
                           "--http-port", str(free_port()), "--grpc-port", str(free_port()),
                           "--log-dir", str(tmp_path)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 30
        while not (tmp_path / "scheduler.log").exists() or \
                "waiting for Redis" not in (tmp_path / "scheduler.log").read_text():
            assert time.monotonic() < deadline and up.poll() is None
            time.sleep(0.05)
        rc, took = _sigterm(up)
        assert rc == 0 and took < 5, f"exit {rc} after {took:.2f}s"
        assert "ready" not in up.stdout.read()  # type: ignore[union-attr]
    finally:
        stop_up(up)


def test_predictor_reports_serving_only_once_its_model_is_warm(monkeypatch) -> None:
    """The first prediction of a model builds its forest (0.1 s idle, more under load: past the
    gateway's 0.25 s predictor timeout); the service does it before it reports SERVING, and for every
    model it adopts."""
    from services.predictor import learner, server
    from services.predictor.server import PredictorConfig

    loaded: list[RLPredictor] = []

    class Recorded(RLPredictor):
        @classmethod
        def load(cls, *args, **kwargs) -> RLPredictor:
            loaded.append(RLPredictor.load(*args, **kwargs))
            return loaded[-1]

    monkeypatch.setattr(server, "RLPredictor", Recorded)
    address = f"127.0.0.1:{free_port()}"

    async def warm_when_serving() -> bool:
        stop = asyncio.Event()
        serving = asyncio.create_task(server.serve(PredictorConfig(), address, stop))
        async with grpc.aio.insecure_channel(address) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            while True:
                assert not serving.done()
                try:
                    reply = await health.Check(health_pb2.HealthCheckRequest(), timeout=1)
                    if reply.status == health_pb2.HealthCheckResponse.SERVING:
                        break
                except grpc.aio.AioRpcError:
                    pass
                await asyncio.sleep(0.02)
        warm = "_forest" in loaded[0].model.__dict__
        stop.set()
        await serving
        return warm

    assert asyncio.run(warm_when_serving())
    cold = RLPredictor.load()
    assert "_forest" not in cold.model.__dict__
    adopted = learner._load_bytes(learner._model_bytes(cold.model))  # what a replica adopts
    assert "_forest" in adopted.model.__dict__
