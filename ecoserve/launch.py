"""Local processes of a cell: the scheduler and N workers (plus, for `ecoserve up`, the predictor and
the gateway), for `ecoserve up` and the service tests.

Each service runs as its own `python -m services.<name>` process, as it would in a deployment; this
module only starts them, waits for them to be healthy and stops them.

A health check counts only when the cell's own process answers it: every process of a cell gets the
cell's launch token (`ECOSERVE_LAUNCH_TOKEN`) and reports SERVING under `ecoserve.launch/<token>` as
well, so a probe that reaches another process on the same port (another stack) is not taken for ours.
"""

from __future__ import annotations

import errno
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from ecoserve.core.policies import POLICY_NAMES
from ecoserve.proto import scheduler_pb2, scheduler_pb2_grpc

# Policies a live scheduler runs per worker: all but DistServe, a cluster layout of the simulator
# (prefill and decode workers) that make_policy does not build.
LIVE_POLICY_NAMES: tuple[str, ...] = tuple(name for name in POLICY_NAMES if name != "distserve")
LAUNCH_TOKEN_ENV = "ECOSERVE_LAUNCH_TOKEN"


class Interrupted(Exception):
    """A wait ended by `LocalCell.interrupted` (a signal while the cell was starting)."""


def launch_health_name(token: str) -> str:
    """The health-service name under which the processes started with `token` report SERVING."""
    return f"ecoserve.launch/{token}"


def port_taken(host: str, port: int) -> str | None:
    """Why nothing of ours could listen on host:port now ("address already in use", ...), or None.

    Binds a plain socket (SO_REUSEADDR, as servers do, so a closed connection's TIME_WAIT does
    not count; never SO_REUSEPORT, so a listener that allows sharing still counts as taken).
    Port 0 (any free port) is never taken.
    """
    if port == 0:
        return None
    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        return f"cannot resolve {host!r}: {exc.strerror}"
    for family, kind, proto, _, address in infos:
        with socket.socket(family, kind, proto) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(address)
            except OSError as exc:
                if exc.errno == errno.EADDRNOTAVAIL and family == socket.AF_INET6:
                    continue  # no IPv6 on this host: the IPv4 address decides
                return exc.strerror or str(exc)
    return None


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
    token: str = field(default_factory=lambda: secrets.token_hex(8))  # this cell's launch token
    interrupted: Callable[[], bool] = lambda: False  # polled while waiting: True ends the wait (Ctrl-C)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _spawn(self, name: str, args: list[str]) -> subprocess.Popen[bytes]:
        out = open(os.path.join(self.log_dir, f"{name}.log"), "ab") if self.log_dir else None  # noqa: SIM115
        env = {**os.environ, LAUNCH_TOKEN_ENV: self.token}
        try:
            return subprocess.Popen([sys.executable, "-m", *args], stdout=out, stderr=subprocess.STDOUT if out else None,
                                    env=env)
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

    def _serving(self, health: health_pb2_grpc.HealthStub) -> bool:
        """This cell's process at the other end says SERVING (NOT_FOUND from anyone else's)."""
        try:
            reply = health.Check(health_pb2.HealthCheckRequest(service=launch_health_name(self.token)), timeout=1)
        except grpc.RpcError:
            return False
        return reply.status == health_pb2.HealthCheckResponse.SERVING

    def _waiting(self, deadline: float, what: str, timeout: float) -> None:
        """One turn of a wait: raise if a process died, the wait was interrupted or time is up."""
        self.check_alive()
        if self.interrupted():
            raise Interrupted("interrupted")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} after {timeout:g}s")
        time.sleep(0.05)

    def wait_serving(self, address: str, timeout: float = 60.0) -> None:
        """Until this cell's process at `address` says SERVING."""
        deadline = time.monotonic() + timeout
        with grpc.insecure_channel(address) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            while not self._serving(health):
                self._waiting(deadline, f"{address} not serving", timeout)

    def wait_ready(self, num_workers: int, timeout: float = 60.0) -> None:
        """Until this cell's scheduler says SERVING and `num_workers` workers are connected."""
        deadline = time.monotonic() + timeout
        with grpc.insecure_channel(self.address) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            stub = scheduler_pb2_grpc.SchedulerStub(channel)
            while True:
                if self._serving(health):
                    try:
                        if len(stub.Stats(scheduler_pb2.StatsRequest(), timeout=1).workers) >= num_workers:
                            return
                    except grpc.RpcError:
                        pass
                self._waiting(deadline, "cell not ready", timeout)

    def check_alive(self) -> None:
        """Raise RuntimeError if a service process has exited, with the last line of its log if it has one."""
        for name, proc in [("scheduler", self.scheduler), *self.workers.items(), *self.services.items()]:
            if proc is not None and proc.poll() is not None:
                last = self._last_log_line(name)
                raise RuntimeError(f"{name} exited with status {proc.returncode}" + (f": {last}" if last else ""))

    def _last_log_line(self, name: str) -> str:
        if not self.log_dir:
            return ""  # its output went to the terminal
        try:
            with open(os.path.join(self.log_dir, f"{name}.log"), "rb") as f:
                f.seek(max(0, f.seek(0, os.SEEK_END) - 4096))
                lines = f.read().decode(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return lines[-1].strip() if lines else ""

    def kill(self, name: str) -> None:
        """SIGKILL one process ('scheduler' or a worker name): a crash, not a shutdown."""
        proc = self.scheduler if name == "scheduler" else self.workers.pop(name)
        assert proc is not None
        proc.kill()
        proc.wait()

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM the gateway first and let it finish the requests it has in flight (the rest still
        serves them), then everything else; SIGKILL what is still running after `timeout`.

        Each service returns as soon as its own in-flight work is done (docs/services.md,
        "Shutdown"), so this takes well under a second when the cell is idle.
        """
        deadline = time.monotonic() + timeout
        front = [proc for name, proc in self.services.items() if name == "gateway"]
        rest = [proc for name, proc in self.services.items() if name != "gateway"]
        rest += [*self.workers.values(), *([self.scheduler] if self.scheduler else [])]
        for group in (front, rest):
            for proc in group:
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
            for proc in group:
                try:
                    proc.wait(max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        self.workers.clear()
        self.services.clear()
        self.scheduler = None
