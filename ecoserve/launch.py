"""Local processes of a cell: the scheduler and N workers (plus, for `ecoserve up`, the predictor and
the gateway), for `ecoserve up` and the service tests.

Each service runs as its own `python -m services.<name>` process, as it would in a deployment; this
module only starts them, waits for them to be healthy and stops them.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from ecoserve.proto import scheduler_pb2, scheduler_pb2_grpc


@dataclass(frozen=True, slots=True)
class WorkerArgs:
    engine: str = "sim"
    model: str = "llama-2-7b"
    extra: tuple[str, ...] = ()  # more `python -m services.worker` flags (--num-blocks, --time-scale, ...)


@dataclass(slots=True)
class LocalCell:
    redis_url: str
    port: int
    policy: str = "ecoserve"
    scheduler_args: tuple[str, ...] = ()
    log_dir: str | None = None  # None: inherit this process's stdout/stderr
    scheduler: subprocess.Popen[bytes] | None = None
    workers: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    services: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)  # predictor, gateway

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _spawn(self, name: str, args: list[str]) -> subprocess.Popen[bytes]:
        out = open(os.path.join(self.log_dir, f"{name}.log"), "ab") if self.log_dir else None  # noqa: SIM115
        try:
            return subprocess.Popen([sys.executable, "-m", *args], stdout=out, stderr=subprocess.STDOUT if out else None)
        finally:
            if out is not None:
                out.close()

    def start_scheduler(self) -> None:
        self.scheduler = self._spawn("scheduler", [
            "services.scheduler", "--port", str(self.port), "--redis-url", self.redis_url,
            "--policy", self.policy, *self.scheduler_args])

    def start_worker(self, name: str, worker: WorkerArgs) -> None:
        self.workers[name] = self._spawn(name, [
            "services.worker", "--scheduler", self.address, "--name", name, "--engine", worker.engine,
            "--model", worker.model, *worker.extra])

    def start_service(self, name: str, args: list[str], module: str | None = None) -> None:
        """Another service of the stack, `python -m services.<module or name> ARGS` (predictor, gateway)."""
        self.services[name] = self._spawn(name, [f"services.{module or name}", *args])

    def wait_serving(self, address: str, timeout: float = 60.0) -> None:
        """Until the gRPC health check at `address` says SERVING."""
        deadline = time.monotonic() + timeout
        with grpc.insecure_channel(address) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            while True:
                self.check_alive()
                try:
                    if health.Check(health_pb2.HealthCheckRequest(service=""), timeout=1).status == \
                            health_pb2.HealthCheckResponse.SERVING:
                        return
                except grpc.RpcError:
                    pass
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{address} not serving after {timeout}s")
                time.sleep(0.05)

    def wait_ready(self, num_workers: int, timeout: float = 60.0) -> None:
        """Until the scheduler's health check says SERVING and `num_workers` workers are connected."""
        deadline = time.monotonic() + timeout
        with grpc.insecure_channel(self.address) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            stub = scheduler_pb2_grpc.SchedulerStub(channel)
            while True:
                self.check_alive()
                try:
                    status = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=1).status
                    if status == health_pb2.HealthCheckResponse.SERVING:
                        if len(stub.Stats(scheduler_pb2.StatsRequest(), timeout=1).workers) >= num_workers:
                            return
                except grpc.RpcError:
                    pass
                if time.monotonic() > deadline:
                    raise TimeoutError(f"cell not ready after {timeout}s")
                time.sleep(0.05)

    def check_alive(self) -> None:
        """Raise RuntimeError if a service process has exited."""
        for name, proc in [("scheduler", self.scheduler), *self.workers.items(), *self.services.items()]:
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"{name} exited with status {proc.returncode}")

    def kill(self, name: str) -> None:
        """SIGKILL one process ('scheduler' or a worker name): a crash, not a shutdown."""
        proc = self.scheduler if name == "scheduler" else self.workers.pop(name)
        assert proc is not None
        proc.kill()
        proc.wait()

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM everything (gateway and predictor, then workers, then the scheduler), then SIGKILL what
        is still running."""
        procs = [*self.services.values(), *self.workers.values(), *([self.scheduler] if self.scheduler else [])]
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for proc in procs:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.workers.clear()
        self.services.clear()
        self.scheduler = None
