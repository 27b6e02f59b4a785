"""`ecoserve up` (the whole stack: embedded Redis, predictor, scheduler, N workers, gateway) and
`ecoserve generate`.

Every option is checked when the command line is parsed (bad values exit with status 2 at once),
and `up` checks every port before it starts anything (a taken port: one line, status 1).
"""

from __future__ import annotations

import codecs
import hashlib
import importlib.util
import json
import os
import re
import shutil
import signal
import sys
import tempfile
import threading
from importlib import metadata
from pathlib import Path
from urllib.parse import urlsplit

import click

from ecoserve.core.placement import ROUTER_NAMES
from ecoserve.launch import LIVE_POLICY_NAMES, Interrupted, LocalCell, WorkerArgs, port_taken

ENGINES = ("torch", "sim", "vllm")  # ecoserve.engine.factory.ENGINES, without importing the engines
MODEL_ENGINES = ("torch", "vllm")  # engines that run a checkpoint
PORT = click.IntRange(1, 65535)
TINY_MODEL_SEED = 0
TINY_MODEL_NAME = "ecoserve-tiny-llama"  # the model name the gateway serves it under
# What the tiny model's bytes depend on: its config (config.py), the parameter layout (model.py) and
# the generator (loader.py), besides torch's random stream and the tokenizers library.
_TINY_MODEL_SOURCES = ("config.py", "model.py", "loader.py")


def cache_root() -> Path:
    """Per-user cache: $ECOSERVE_CACHE_DIR, else $XDG_CACHE_HOME/ecoserve, else ~/.cache/ecoserve."""
    if os.environ.get("ECOSERVE_CACHE_DIR"):
        return Path(os.environ["ECOSERVE_CACHE_DIR"])
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "ecoserve"


def tiny_model_stamp(extra_sources: tuple[str, ...] = ()) -> str:
    """A hash of everything the tiny model is made from; a change of any of it builds a new one.
    `extra_sources`: more files under ecoserve/engine that shape it (the vllm variant's)."""
    from ecoserve import engine

    digest = hashlib.sha256()
    engine_dir = Path(engine.__file__).parent
    for name in _TINY_MODEL_SOURCES:
        digest.update(name.encode() + b"\0" + (engine_dir / "torch" / name).read_bytes())
    for name in extra_sources:
        digest.update(name.encode() + b"\0" + (engine_dir / name).read_bytes())
    versions = {pkg: _version(pkg) for pkg in ("torch", "tokenizers", "safetensors")}
    digest.update(json.dumps({"seed": TINY_MODEL_SEED, "versions": versions}, sort_keys=True).encode())
    return digest.hexdigest()[:16]


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return ""


def tiny_model(cache: Path | None = None) -> Path:
    """The torch engine's tiny random Llama (byte-level tokenizer), built once per stamp.

    It is `<cache>/tiny-llama/<stamp>/ecoserve-tiny-llama` (the directory's name is the name the
    gateway serves); `cache` defaults to `cache_root()`, per user. It is built in a staging
    directory and renamed into place, so a concurrent `up` either finds it complete or builds its
    own copy, and the first rename wins.
    """
    return _cached_model((cache or cache_root()) / "tiny-llama", tiny_model_stamp(), "torch")


def tiny_vllm_model(cache: Path | None = None) -> Path:
    """The vllm engine's tiny model, as `tiny_model` but with head_dim 64 (vLLM's CPU attention
    refuses the torch tiny model's 16), under `<cache>/tiny-llama-vllm/<stamp>/`."""
    return _cached_model((cache or cache_root()) / "tiny-llama-vllm", tiny_model_stamp(("vllm/tiny.py",)), "vllm")


def _cached_model(parent: Path, stamp: str, engine: str) -> Path:
    """`engine`'s tiny model in `parent/stamp`, built there unless it is there complete."""
    final = parent / stamp
    model = final / TINY_MODEL_NAME
    if (final / "STAMP").exists():
        return model
    from ecoserve.engine.torch import LlamaConfig, save_random_model
    from ecoserve.engine.vllm.tiny import TINY_VLLM

    config = TINY_VLLM if engine == "vllm" else LlamaConfig.tiny()
    parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{stamp}-", dir=parent))
    try:
        save_random_model(config, staging / TINY_MODEL_NAME, seed=TINY_MODEL_SEED)
        (staging / "STAMP").write_text(stamp + "\n")
        os.chmod(staging, 0o755)  # mkdtemp makes it private; the model is no secret
        if final.exists() and not (final / "STAMP").exists():  # incomplete (not built here): replace it
            shutil.rmtree(final, ignore_errors=True)
        try:
            staging.rename(final)
        except OSError:  # another `up` put its copy there first
            if not (final / "STAMP").exists():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return model


def cpu_threads_per_worker(num_workers: int) -> int:
    """CPU workers split the cores this process may use. With torch's default (every worker one
    thread per core) two workers on two cores fight over them: each operation waits until all its
    threads got a core, and on a busy machine the demo's workers served at most 2.4 req/s instead of
    about 30 (README)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    return max(1, cores // num_workers)


# --- option checks -------------------------------------------------------------------------------

def _address(ctx: click.Context, param: click.Parameter, value: str) -> str:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise click.BadParameter(f"{value!r} is not HOST:PORT")
    return value


def _redis_url(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is not None and urlsplit(value).scheme not in ("redis", "rediss", "unix"):
        raise click.BadParameter(f"{value!r} is not a redis://, rediss:// or unix:// URL")
    return value


def _api_keys(ctx: click.Context, param: click.Parameter, value: tuple[str, ...]) -> tuple[str, ...]:
    for key in value:
        if not key or "," in key or any(c.isspace() for c in key):
            raise click.BadParameter("an API key must be non-empty, without commas or spaces")
    return value


def _device(ctx: click.Context, param: click.Parameter, value: str) -> str:
    if not re.fullmatch(r"cpu|mps|cuda(:\d+)?", value):
        raise click.BadParameter(f"{value!r}: use cpu, cuda, cuda:N or mps")
    return value


def _not_empty(ctx: click.Context, param: click.Parameter, value: str) -> str:
    if not value:
        raise click.BadParameter("must not be empty")
    return value


def _check_up(ctx: click.Context, engine: str, model: str | None, ports: dict[str, int]) -> None:
    """What no single option can check: the model for the engine, vLLM for vllm, --device with sim,
    distinct ports."""
    if engine in MODEL_ENGINES and model is not None and not (Path(model) / "config.json").is_file():
        raise click.BadParameter(f"{model!r} is not a model directory (no config.json)", ctx, param_hint="--model")
    if engine == "vllm" and importlib.util.find_spec("vllm") is None:
        raise click.BadParameter("vLLM is not installed: run scripts/bootstrap-vllm (CPU), or `pip install -e "
                                 "'.[vllm]'` on a GPU machine", ctx, param_hint="--engine")
    if engine == "sim" and model is not None:
        from ecoserve.core.cost_model import CostModel

        try:
            CostModel.load(model, "a100-40gb")
        except (ValueError, KeyError) as exc:
            raise click.BadParameter(str(exc), ctx, param_hint="--model") from None
    if engine == "sim" and ctx.get_parameter_source("device") is not click.core.ParameterSource.DEFAULT:
        raise click.BadParameter("only the torch and vllm engines run on a device", ctx, param_hint="--device")
    seen: dict[int, str] = {}
    for flag, number in ports.items():
        if number in seen:
            raise click.UsageError(f"{seen[number]} and {flag} are both {number}", ctx)
        seen[number] = flag


def _check_ports_free(ports: dict[str, int]) -> None:
    """Refuse to start, in one line, if any port is taken (by another stack, most likely)."""
    taken = [(flag, number, why) for flag, number in ports.items() if (why := port_taken("127.0.0.1", number))]
    if taken:
        what = ", ".join(f"{number} ({flag})" for flag, number, _ in taken)
        verb = "ports {} are" if len(taken) > 1 else "port {} is"
        raise click.ClickException(f"{verb.format(what)} taken on 127.0.0.1 ({taken[0][2]}): is another "
                                   f"`ecoserve up` running? Stop it or choose other ports")


@click.command()
@click.option("--engine", type=click.Choice(ENGINES), default="torch", show_default=True)
@click.option("--model", help="torch, vllm: checkpoint directory [default: a tiny random model]; "
                              "sim: cost-model name [default: llama-2-7b]")
@click.option("--workers", "-n", "num_workers", type=click.IntRange(1, 64), default=2, show_default=True)
@click.option("--port", type=PORT, default=50052, show_default=True, help="scheduler port")
@click.option("--http-port", type=PORT, default=8000, show_default=True, help="gateway's OpenAI-compatible HTTP API")
@click.option("--grpc-port", type=PORT, default=50051, show_default=True, help="gateway's gRPC API")
@click.option("--predictor-port", type=PORT, default=50053, show_default=True)
@click.option("--predictor/--no-predictor", "with_predictor", default=True, show_default=True,
              help="predict response lengths (else requests reserve max_tokens)")
@click.option("--api-key", "api_keys", multiple=True, callback=_api_keys,
              help="require this API key at the gateway (repeatable)")
@click.option("--redis-url", callback=_redis_url, help="use this Redis instead of starting an embedded one")
@click.option("--policy", type=click.Choice(LIVE_POLICY_NAMES), default="ecoserve", show_default=True)
@click.option("--router", type=click.Choice(ROUTER_NAMES), default=None,
              help="placement across workers [default: ecoserve's for ecoserve policies, else round-robin]")
@click.option("--overload", type=click.Choice(["shed", "yield", "none"]), default=None,
              help="ecoserve policies: a request that can no longer meet its TTFT waits behind on-time ones "
                   "(yield, the scheduler's default), is refused with a retryable 503 (shed), or neither (none)")
@click.option("--kv-cache-mb", type=click.FloatRange(min=0, min_open=True),
              help="KV memory budget per worker [default: 64 for the tiny model]")
@click.option("--device", default="cpu", show_default=True, callback=_device,
              help="torch engine device; vllm: the platform of the installed vLLM build (cpu or cuda)")
@click.option("--log-dir", type=click.Path(file_okay=False), help="write service logs here instead of the terminal")
@click.option("--cache-dir", type=click.Path(file_okay=False, path_type=Path), envvar="ECOSERVE_CACHE_DIR",
              help="where the tiny model is built [default: $XDG_CACHE_HOME/ecoserve or ~/.cache/ecoserve]")
@click.pass_context
def up(ctx: click.Context, engine: str, model: str | None, num_workers: int, port: int, http_port: int,
       grpc_port: int, predictor_port: int, with_predictor: bool, api_keys: tuple[str, ...], redis_url: str | None,
       policy: str, router: str | None, overload: str | None, kv_cache_mb: float | None, device: str,
       log_dir: str | None, cache_dir: Path | None) -> None:
    """Start the whole stack locally and run until Ctrl-C or SIGTERM."""
    ports = {"--port": port, "--http-port": http_port, "--grpc-port": grpc_port,
             **({"--predictor-port": predictor_port} if with_predictor else {})}
    _check_up(ctx, engine, model, ports)
    _check_ports_free(ports)
    from ecoserve.ledger import EmbeddedRedis

    if engine in MODEL_ENGINES and model is None:
        model = str(tiny_model(cache_dir) if engine == "torch" else tiny_vllm_model(cache_dir))
        kv_cache_mb = kv_cache_mb or 64
    model = model or "llama-2-7b"
    extra = ("--device", device) if engine in MODEL_ENGINES else ()
    if engine == "torch" and device == "cpu":  # vLLM binds its model runner's threads itself
        extra += ("--threads", str(cpu_threads_per_worker(num_workers)))
    if kv_cache_mb is not None:
        extra += ("--kv-cache-mb", str(kv_cache_mb))
    if log_dir:
        Path(log_dir).mkdir(parents=True, exist_ok=True)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    redis_server = None if redis_url else EmbeddedRedis.start()
    # sim workers stand in for `model`: the scheduler prices their iterations with the same cost model
    scheduler_args = ("--cost-model", model) if engine == "sim" else ()
    scheduler_args += ("--router", router) if router else ()
    scheduler_args += ("--overload", overload) if overload else ()
    cell = LocalCell(redis_url or redis_server.url, port, policy, scheduler_args,  # type: ignore[union-attr]
                     log_dir=log_dir, interrupted=stop.is_set)
    predictor = f"127.0.0.1:{predictor_port}"
    try:
        if with_predictor:
            cell.start_service("predictor", ["--port", str(predictor_port), "--redis-url", cell.redis_url,
                                             "--retrain-interval", "600"])
        cell.start_scheduler()
        for i in range(num_workers):
            cell.start_worker(f"worker-{i}", WorkerArgs(engine, model, extra))
        gateway = ["--model", model if engine in MODEL_ENGINES else str(tiny_model(cache_dir)), "--scheduler",
                   cell.address, "--redis-url", cell.redis_url, "--http-port", str(http_port),
                   "--grpc-port", str(grpc_port), *(["--predictor", predictor] if with_predictor else []),
                   *(["--served-model-name", model] if engine == "sim" else [])]
        if api_keys:  # through the environment, not the command line, which `ps` shows to everyone
            os.environ["ECOSERVE_API_KEY"] = ",".join(api_keys)
        cell.start_service("gateway", gateway)
        cell.wait_ready(num_workers, timeout=300 if engine == "vllm" else 120)  # vLLM takes 20-60 s to start
        if with_predictor:
            cell.wait_serving(predictor, timeout=120)
        cell.wait_serving(f"127.0.0.1:{grpc_port}", timeout=60)
        click.echo(f"ecoserve ready: http://127.0.0.1:{http_port}/v1 (OpenAI API), gateway gRPC 127.0.0.1:{grpc_port}, "
                   f"scheduler {cell.address}, predictor {predictor if with_predictor else 'off'}, "
                   f"redis {cell.redis_url}, {num_workers} {engine} workers ({model})", err=False)
        sys.stdout.flush()
        while not stop.wait(0.5):
            cell.check_alive()
    except Interrupted:
        pass  # a signal while starting: stop what started
    except (RuntimeError, TimeoutError) as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        cell.stop()
        if redis_server is not None:
            redis_server.stop()
        click.echo("ecoserve stopped", err=True)


@click.command()
@click.option("--scheduler", required=True, callback=_address, help="HOST:PORT")
@click.option("--prompt", required=True, callback=_not_empty)
@click.option("--max-tokens", type=click.IntRange(min=1), default=64, show_default=True)
@click.option("--temperature", type=click.FloatRange(min=0), default=1.0, show_default=True, help="0: greedy")
@click.option("--seed", type=click.IntRange(0, 2**64 - 1))
@click.option("--tokenizer", type=click.Path(exists=True), help="model directory or tokenizer.json "
                                                                "[default: UTF-8 bytes, the tiny model's]")
def generate(scheduler: str, prompt: str, max_tokens: int, temperature: float, seed: int | None,
             tokenizer: str | None) -> None:
    """Stream one completion; end with the token count and the finish reason."""
    import grpc

    from ecoserve.client import EcoServeClient

    encode, decode = _codec(tokenizer)
    tokens = 0
    reason = ""
    try:
        with EcoServeClient(scheduler) as client:
            for event in client.stream(encode(prompt), max_tokens, temperature=temperature, seed=seed):
                if event.has_token:
                    tokens += 1
                    click.echo(decode(event.token_id), nl=False)
                if event.finished:
                    reason = event.finish_reason
    except grpc.RpcError as exc:
        raise click.ClickException(f"{exc.code().name}: {exc.details()}") from None
    click.echo(f"\n[{tokens} tokens generated, finish reason: {reason}]")


def _codec(tokenizer: str | None):
    """(encode text -> ids, decode one id -> the text it adds) for streaming output."""
    if tokenizer is None:
        utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")
        return (lambda text: list(text.encode())), (lambda t: utf8.decode(bytes([t])) if t < 256 else "")
    from tokenizers import Tokenizer

    path = Path(tokenizer)
    tok = Tokenizer.from_file(str(path / "tokenizer.json" if path.is_dir() else path))
    ids: list[int] = []
    shown = [""]

    def decode(t: int) -> str:
        ids.append(t)
        text = tok.decode(ids)
        new = text[len(shown[0]):] if text.startswith(shown[0]) else ""
        shown[0] = text
        return new

    return (lambda text: tok.encode(text).ids), decode
