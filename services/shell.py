"""What every service's `python -m` entry point shares: gRPC servers that never share a port, one
clear line when a service cannot start, the launch token's health name, run until SIGINT or SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import grpc

from ecoserve.launch import LAUNCH_TOKEN_ENV, launch_health_name, port_taken

# gRPC turns SO_REUSEPORT on by default: a second server on a taken port would then bind it too and
# share the connections with the first. Every service binds its port alone or fails.
GRPC_OPTIONS: tuple[tuple[str, Any], ...] = (("grpc.so_reuseport", 0),)


class StartupError(Exception):
    """The service cannot start (a taken port, ...): reported as one line, exit status 1."""


def grpc_server(options: Sequence[tuple[str, Any]] = ()) -> grpc.aio.Server:
    return grpc.aio.server(options=[*GRPC_OPTIONS, *options])


def split_address(address: str) -> tuple[str, int]:
    """"HOST:PORT" (or "[V6]:PORT") -> (host, port)."""
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)


def check_port(address: str, what: str) -> None:
    """Raise StartupError naming the port if it cannot be listened on; called before anything is
    loaded, so a taken port fails the service at once."""
    host, port = split_address(address)
    why = port_taken(host, port)
    if why is not None:
        raise StartupError(f"cannot listen on {address} ({what}): {why}")


async def listen(server: grpc.aio.Server, address: str, what: str) -> int:
    """Bind `server` to `address` (checked first, so a taken port is one line, not gRPC's error log)."""
    try:
        check_port(address, what)
        bound = server.add_insecure_port(address)
    except RuntimeError:  # taken between the check and the bind
        bound = 0
    except StartupError:
        await server.stop(None)
        raise
    if bound == 0:
        await server.stop(None)
        raise StartupError(f"cannot listen on {address} ({what})")
    return bound


def health_names(*services: str) -> tuple[str, ...]:
    """The names a service's health status is set under: overall, its services, and the launch token's
    (set by `ecoserve up` / LocalCell, so they know the process that answers is theirs)."""
    token = os.environ.get(LAUNCH_TOKEN_ENV)
    return ("", *services, *((launch_health_name(token),) if token else ()))


async def serve_until_signalled(serve: Callable[[asyncio.Event], Awaitable[None]]) -> None:
    """Run `serve(stop)`; SIGINT or SIGTERM sets `stop`, so the service drains and returns."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await serve(stop)


def run_service(prog: str, serve: Callable[[asyncio.Event], Awaitable[None]]) -> None:
    """The body of a service's main(): serve until signalled; a StartupError is one line on stderr."""
    try:
        asyncio.run(serve_until_signalled(serve))
    except StartupError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        sys.exit(1)
