"""Start `ecoserve up` as a real process and wait for its `ready` line (shared by process tests)."""

from __future__ import annotations

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
    while "ready" not in line:
        if time.monotonic() > deadline or proc.poll() is not None:
            proc.kill()
            proc.wait()
            raise AssertionError(f"up did not get ready: {line!r}")
        line = proc.stdout.readline()
    return proc, line
