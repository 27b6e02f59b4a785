"""`python -m ecoserve.healthcheck grpc HOST:PORT | http URL | worker`: exit 0 when healthy.

For container health checks, where no grpc_health_probe or curl is installed. `worker` asks the
scheduler (ECOSERVE_SCHEDULER) whether a worker of this container is connected: the one named
ECOSERVE_NAME, else one whose name starts with this host's name (the worker's default name).
"""

from __future__ import annotations

import os
import socket
import sys
import urllib.error
import urllib.request

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from ecoserve.proto import scheduler_pb2, scheduler_pb2_grpc

TIMEOUT_S = 3.0


def grpc_serving(address: str) -> bool:
    with grpc.insecure_channel(address) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=TIMEOUT_S)
        except grpc.RpcError:
            return False
    return reply.status == health_pb2.HealthCheckResponse.SERVING


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as reply:  # noqa: S310 - a local probe URL
            return 200 <= reply.status < 300
    except (urllib.error.URLError, OSError):
        return False


def worker_connected(scheduler: str, name: str | None) -> bool:
    with grpc.insecure_channel(scheduler) as channel:
        try:
            stats = scheduler_pb2_grpc.SchedulerStub(channel).Stats(scheduler_pb2.StatsRequest(), timeout=TIMEOUT_S)
        except grpc.RpcError:
            return False
    host = socket.gethostname()
    return any(w.name == name if name else w.name.startswith(host) for w in stats.workers)


def main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[0] == "grpc":
        return 0 if grpc_serving(argv[1]) else 1
    if len(argv) == 2 and argv[0] == "http":
        return 0 if http_ok(argv[1]) else 1
    if argv == ["worker"]:
        return 0 if worker_connected(os.environ.get("ECOSERVE_SCHEDULER", "127.0.0.1:50052"),
                                     os.environ.get("ECOSERVE_NAME")) else 1
    print(__doc__.splitlines()[0], file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
