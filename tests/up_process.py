"""Start `ecoserve up` as a real process and wait for its `ready` line; stop it with everything it
started (shared by process tests)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

ECOSERVE = str(Path(sys.executable).parent / "ecoserve")


def start_up(*args: str, timeout: float = 90) -> tuple[subprocess.Popen[str], str]:
    """`ecoserve up ARGS`, once every service is healthy: the process and its ready line."""
    proc = subprocess.Popen([ECOSERVE, "up", *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + timeout
    line = ""
    output = []
    while "ready" not in line:
        if time.monotonic() > deadline or proc.poll() is not None:
            stop_up(proc)
            raise AssertionError(f"up did not get ready: {''.join(output)!r}")
        line = proc.stdout.readline()  # type: ignore[union-attr]
        output.append(line)
    return proc, line


def stop_up(proc: subprocess.Popen[str], timeout: float = 15) -> None:
    """SIGTERM, so that `up` stops the services it started (a SIGKILL would leave them running);
    SIGKILL only if it does not return in time."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
