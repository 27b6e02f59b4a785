"""`ecoserve up` with its defaults (torch engine, tiny model, embedded Redis) and `ecoserve generate`;
a second `up` on the same ports; a quick SIGTERM."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import openai
import pytest
from up_process import ECOSERVE, start_up, stop_up

from ecoserve.ledger.embedded import free_port


@pytest.fixture
def cell(tmp_path: Path):
    port, http_port = free_port(), free_port()
    args = ("--workers", "2", "--port", str(port), "--http-port", str(http_port), "--grpc-port", str(free_port()),
            "--predictor-port", str(free_port()))
    proc, line = start_up(*args, "--log-dir", str(tmp_path))
    try:
        assert f"127.0.0.1:{port}" in line and "redis://" in line and f"http://127.0.0.1:{http_port}/v1" in line
        yield proc, port, http_port, args, tmp_path
    finally:
        stop_up(proc)


def _descendants(pid: int) -> set[int]:
    """Live (non-zombie) descendants of `pid`, from /proc."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z":
            parents[int(stat.parent.name)] = int(fields[1])
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="counts processes through /proc")
def test_up_serves_generate_and_shuts_down_cleanly(cell) -> None:
    proc, port, http_port, args, log_dir = cell
    children = _descendants(proc.pid)
    assert len(children) >= 6  # redis, predictor, scheduler, two workers, gateway
    # The two CPU workers split the cores instead of each taking one thread per core.
    workers = [_cmdline(pid) for pid in children if "services.worker" in _cmdline(pid)]
    threads = max(1, len(os.sched_getaffinity(0)) // 2)
    assert len(workers) == 2 and all(f"--threads {threads}" in cmd for cmd in workers), workers
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{http_port}/v1", api_key="none", max_retries=0)
    reply = client.completions.create(model="ecoserve-tiny-llama", prompt="Hi", max_tokens=5,
                                      extra_body={"ignore_eos": True})
    assert reply.usage.completion_tokens == 5
    out = subprocess.run([ECOSERVE, "generate", "--scheduler", f"127.0.0.1:{port}", "--prompt", "Hello, EcoServe",
                          "--max-tokens", "12", "--temperature", "0"], check=False, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    last = out.stdout.strip().splitlines()[-1]
    match = re.fullmatch(r".*\[(\d+) tokens generated, finish reason: (stop|length)\]", last)
    assert match, out.stdout
    assert int(match.group(1)) == 12 or match.group(2) == "stop"
    bad = subprocess.run([ECOSERVE, "generate", "--scheduler", f"127.0.0.1:{port}", "--prompt", "x",
                          "--max-tokens", "100000"], check=False, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 1 and "INVALID_ARGUMENT" in bad.stderr  # past the scheduler's limit

    # The predictor answered the first request in time (it warms up before it reports SERVING) and
    # nothing complained on the way: no predictor DEADLINE_EXCEEDED, no other warning.
    fallbacks = re.findall(r"^ecoserve:predictor_fallbacks_total\{.*\} (\S+)$", _metrics(http_port), re.MULTILINE)
    assert not fallbacks or float(fallbacks[0]) == 0, fallbacks
    logs = {path.name: path.read_text() for path in log_dir.glob("*.log")}
    assert not {name: text for name, text in logs.items() if "WARNING" in text or "Traceback" in text}, logs

    # A second `up` on the same ports is refused at once, in one line naming the ports, never "ready".
    again = subprocess.run([ECOSERVE, "up", *args], check=False, capture_output=True, text=True, timeout=30)
    assert again.returncode == 1 and "ready" not in again.stdout, again
    assert again.stderr.count("\n") == 1 and f"{port} (--port)" in again.stderr, again.stderr

    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0
    assert time.monotonic() - started < 5, "SIGTERM waited out a grace period"
    assert not [pid for pid in children if Path(f"/proc/{pid}").exists() and _alive(pid)], "children left running"


def _metrics(http_port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/metrics", timeout=10) as reply:
        return reply.read().decode()


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
