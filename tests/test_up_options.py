"""Bad options of `ecoserve up`, `ecoserve generate` and the services are refused when parsed: exit 2
at once, naming the option, before anything starts; `ecoserve --help` shows whole summaries."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time

import pytest
from click.testing import CliRunner
from up_process import ECOSERVE, stop_up

from ecoserve import serve_cli
from ecoserve.cli import main, summary
from ecoserve.launch import LIVE_POLICY_NAMES
from ecoserve.ledger.embedded import free_port


def _run(*args: str, timeout: float = 20) -> tuple[int, str, float]:
    """(status, output, seconds); a process that outlives `timeout` (a stack that started after all)
    is stopped with SIGTERM, so that what it started stops too."""
    started = time.monotonic()
    proc = subprocess.Popen(list(args), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        output, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        stop_up(proc)
        output = proc.stdout.read()  # type: ignore[union-attr]
    return proc.returncode, output, time.monotonic() - started


@pytest.fixture
def never_start(monkeypatch) -> None:
    """Options that pass every check reach the port check: make it fail the test, not start a stack."""
    def started(ports: dict[str, int]) -> None:
        raise AssertionError(f"the options were accepted: {ports}")

    monkeypatch.setattr(serve_cli, "_check_ports_free", started)


def test_up_with_an_unknown_policy_exits_2_at_once() -> None:
    ports = [arg for flag in ("--port", "--http-port", "--grpc-port", "--predictor-port")
             for arg in (flag, str(free_port()))]
    status, output, took = _run(ECOSERVE, "up", "--policy", "foo", *ports)
    assert status == 2 and took < 5, (status, output, took)
    assert "Invalid value for '--policy': 'foo' is not one of 'ecoserve'" in output
    assert "Traceback" not in output and "ready" not in output


@pytest.mark.parametrize(("args", "named"), [
    (("--workers", "0"), "--workers"),
    (("--port", "0"), "--port"),
    (("--http-port", "70000"), "--http-port"),
    (("--grpc-port", "x"), "--grpc-port"),
    (("--kv-cache-mb", "0"), "--kv-cache-mb"),
    (("--device", "gpu"), "--device"),
    (("--engine", "sim", "--device", "cuda"), "--device"),
    (("--engine", "vllm", "--model", "/no/such/model"), "--model"),
    (("--engine", "sim", "--model", "gpt-9"), "--model"),
    (("--engine", "sim", "--model", "llama-2-70b"), "--model"),  # no cost model at tp=1
    (("--model", "/no/such/model"), "--model"),
    (("--redis-url", "http://127.0.0.1:6379"), "--redis-url"),
    (("--api-key", "a,b"), "--api-key"),
    (("--api-key", ""), "--api-key"),
    (("--port", "9001", "--http-port", "9001"), "--http-port"),
    (("--policy", "distserve"), "--policy"),  # a cluster layout of the simulator, not a live policy
])
def test_up_refuses_bad_options_when_parsing(args: tuple[str, ...], named: str, never_start: None) -> None:
    result = CliRunner().invoke(main, ["up", *args])
    assert result.exit_code == 2, result.output
    assert named in result.output and "Traceback" not in result.output


def test_up_accepts_every_live_policy_at_parse_time() -> None:
    from ecoserve.core.cost_model import CostModel
    from ecoserve.core.policies import make_policy

    cost = CostModel.load("llama-2-7b", "a100-40gb")
    for name in LIVE_POLICY_NAMES:  # what `up` offers, the scheduler can run
        assert make_policy(name, cost).name == name


@pytest.mark.parametrize(("args", "named"), [
    (("--scheduler", "nowhere", "--prompt", "x"), "--scheduler"),
    (("--scheduler", "127.0.0.1:99999", "--prompt", "x"), "--scheduler"),
    (("--scheduler", "127.0.0.1:1", "--prompt", ""), "--prompt"),
    (("--scheduler", "127.0.0.1:1", "--prompt", "x", "--max-tokens", "0"), "--max-tokens"),
    (("--scheduler", "127.0.0.1:1", "--prompt", "x", "--temperature", "-1"), "--temperature"),
    (("--scheduler", "127.0.0.1:1", "--prompt", "x", "--seed", "-1"), "--seed"),
])
def test_generate_refuses_bad_options_when_parsing(args: tuple[str, ...], named: str, monkeypatch) -> None:
    import ecoserve.client

    def connect(*_: object) -> None:
        raise AssertionError("the options were accepted")

    monkeypatch.setattr(ecoserve.client, "EcoServeClient", connect)
    result = CliRunner().invoke(main, ["generate", *args])
    assert result.exit_code == 2, result.output
    assert named in result.output


@pytest.mark.parametrize(("service", "args", "named"), [
    ("scheduler", ("--redis-url", "redis://127.0.0.1:1", "--policy", "foo"), "--policy"),
    ("scheduler", ("--redis-url", "redis://127.0.0.1:1", "--port", "65536"), "--port"),
    ("scheduler", ("--redis-url", "redis://127.0.0.1:1", "--cost-model", "gpt-9"), "--cost-model"),
    ("predictor", ("--port", "-1"), "--port"),
    ("gateway", ("--model", ".", "--http-port", "http"), "--http-port"),
    ("worker", ("--scheduler", "127.0.0.1:1", "--model", ".", "--threads", "0"), "--threads"),
])
def test_services_refuse_bad_options_when_parsing(service: str, args: tuple[str, ...], named: str) -> None:
    status, output, took = _run(sys.executable, "-m", f"services.{service}", *args)
    assert status == 2 and took < 10, (status, output, took)
    assert f"error: argument {named}" in output and "Traceback" not in output


def _squeeze(text: str) -> str:
    """Without whitespace: lines wrapped anywhere (even after a hyphen) compare equal."""
    return re.sub(r"\s+", "", text)


@pytest.mark.parametrize("group", [(), ("predictor",)])
def test_help_lists_each_subcommands_whole_summary(group: tuple[str, ...]) -> None:
    out = subprocess.run([ECOSERVE, *group, "--help"], check=False, capture_output=True, text=True, timeout=30,
                         env={**os.environ, "COLUMNS": "80"})
    assert out.returncode == 0, out.stderr
    listed = out.stdout.split("Commands:", 1)[1]
    command = main
    for name in group:
        command = command.commands[name]  # type: ignore[attr-defined]
    for name, sub in command.commands.items():  # type: ignore[attr-defined]
        whole = summary(sub)
        assert len(whole) > 20 and _squeeze(f"{name} {whole}") in _squeeze(listed), (name, whole, out.stdout)
    assert not re.search(r"\.\.\.(\s|$)", listed), out.stdout  # nothing cut short
