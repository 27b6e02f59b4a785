"""`ecoserve up` with its defaults (torch engine, tiny model, embedded Redis) and `ecoserve generate`."""

from __future__ import annotations

import re
import signal
import subprocess
from pathlib import Path

import openai
import pytest
from up_process import ECOSERVE, start_up

from ecoserve.ledger.embedded import free_port


@pytest.fixture
def cell(tmp_path: Path):
    port, http_port = free_port(), free_port()
    proc, line = start_up("--workers", "2", "--port", str(port), "--log-dir", str(tmp_path),
                          "--http-port", str(http_port), "--grpc-port", str(free_port()),
                          "--predictor-port", str(free_port()))
    try:
        assert f"127.0.0.1:{port}" in line and "redis://" in line and f"http://127.0.0.1:{http_port}/v1" in line
        yield proc, port, http_port
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


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
    proc, port, http_port = cell
    children = _descendants(proc.pid)
    assert len(children) >= 6  # redis, predictor, scheduler, two workers, gateway
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{http_port}/v1", api_key="none", max_retries=0)
    reply = client.completions.create(model="ecoserve-tiny-llama", prompt="Hi", max_tokens=5,
                                      extra_body={"ignore_eos": True})
    assert reply.usage.completion_tokens == 5
    out = subprocess.run([ECOSERVE, "generate", "--scheduler", f"127.0.0.1:{port}", "--prompt", "Hello, EcoServe",
                          "--max-tokens", "12", "--temperature", "0"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    last = out.stdout.strip().splitlines()[-1]
    match = re.fullmatch(r".*\[(\d+) tokens generated, finish reason: (stop|length)\]", last)
    assert match, out.stdout
    assert int(match.group(1)) == 12 or match.group(2) == "stop"
    bad = subprocess.run([ECOSERVE, "generate", "--scheduler", f"127.0.0.1:{port}", "--prompt", "x",
                          "--max-tokens", "0"], capture_output=True, text=True, timeout=60)
    assert bad.returncode != 0 and "INVALID_ARGUMENT" in bad.stderr

    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0
    assert not [pid for pid in children if Path(f"/proc/{pid}").exists() and _alive(pid)], "children left running"


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
