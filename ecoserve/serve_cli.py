"""`ecoserve up` (the whole stack: embedded Redis, predictor, scheduler, N workers, gateway) and
`ecoserve generate`."""

from __future__ import annotations

import codecs
import os
import signal
import sys
import tempfile
import threading
from pathlib import Path

import click

from ecoserve.launch import LocalCell, WorkerArgs

TINY_MODEL_DIR = Path(tempfile.gettempdir()) / "ecoserve-tiny-llama"


def tiny_model() -> Path:
    """The torch engine's tiny random Llama (byte-level tokenizer), built once per machine."""
    if not (TINY_MODEL_DIR / "config.json").exists():
        from ecoserve.engine.torch import LlamaConfig, save_random_model

        staging = Path(tempfile.mkdtemp(prefix="ecoserve-tiny-", dir=TINY_MODEL_DIR.parent))
        save_random_model(LlamaConfig.tiny(), staging)
        try:
            staging.rename(TINY_MODEL_DIR)
        except OSError:  # another `up` built it first
            pass
    return TINY_MODEL_DIR


@click.command()
@click.option("--engine", type=click.Choice(["torch", "sim"]), default="torch", show_default=True)
@click.option("--model", help="torch: checkpoint directory [default: a tiny random model]; "
                              "sim: cost-model name [default: llama-2-7b]")
@click.option("--workers", "-n", "num_workers", default=2, show_default=True)
@click.option("--port", default=50052, show_default=True, help="scheduler port")
@click.option("--http-port", default=8000, show_default=True, help="gateway's OpenAI-compatible HTTP API")
@click.option("--grpc-port", default=50051, show_default=True, help="gateway's gRPC API")
@click.option("--predictor-port", default=50053, show_default=True)
@click.option("--predictor/--no-predictor", "with_predictor", default=True, show_default=True,
              help="predict response lengths (else requests reserve max_tokens)")
@click.option("--api-key", "api_keys", multiple=True, help="require this API key at the gateway (repeatable)")
@click.option("--redis-url", help="use this Redis instead of starting an embedded one")
@click.option("--policy", default="ecoserve", show_default=True)
@click.option("--kv-cache-mb", type=float, help="KV memory budget per worker [default: 64 for the tiny model]")
@click.option("--device", default="cpu", show_default=True, help="torch engine device")
@click.option("--log-dir", type=click.Path(file_okay=False), help="write service logs here instead of the terminal")
def up(engine: str, model: str | None, num_workers: int, port: int, http_port: int, grpc_port: int,
       predictor_port: int, with_predictor: bool, api_keys: tuple[str, ...], redis_url: str | None, policy: str,
       kv_cache_mb: float | None, device: str, log_dir: str | None) -> None:
    """Start the whole stack locally and run until Ctrl-C or SIGTERM."""
    from ecoserve.ledger import EmbeddedRedis

    if engine == "torch" and model is None:
        model = str(tiny_model())
        kv_cache_mb = kv_cache_mb or 64
    model = model or "llama-2-7b"
    extra = ("--device", device) if engine == "torch" else ()
    if kv_cache_mb is not None:
        extra += ("--kv-cache-mb", str(kv_cache_mb))
    if log_dir:
        Path(log_dir).mkdir(parents=True, exist_ok=True)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    redis_server = None if redis_url else EmbeddedRedis.start()
    cell = LocalCell(redis_url or redis_server.url, port, policy, log_dir=log_dir)  # type: ignore[union-attr]
    predictor = f"127.0.0.1:{predictor_port}"
    try:
        if with_predictor:
            cell.start_service("predictor", ["--port", str(predictor_port), "--redis-url", cell.redis_url,
                                             "--retrain-interval", "600"])
        cell.start_scheduler()
        for i in range(num_workers):
            cell.start_worker(f"worker-{i}", WorkerArgs(engine, model, extra))
        gateway = ["--model", model if engine == "torch" else str(tiny_model()), "--scheduler", cell.address,
                   "--redis-url", cell.redis_url, "--http-port", str(http_port), "--grpc-port", str(grpc_port),
                   *(["--predictor", predictor] if with_predictor else []),
                   *(["--served-model-name", model] if engine == "sim" else [])]
        if api_keys:  # through the environment, not the command line, which `ps` shows to everyone
            os.environ["ECOSERVE_API_KEY"] = ",".join(api_keys)
        cell.start_service("gateway", gateway)
        cell.wait_ready(num_workers, timeout=120)
        if with_predictor:
            cell.wait_serving(predictor, timeout=120)
        cell.wait_serving(f"127.0.0.1:{grpc_port}", timeout=60)
        click.echo(f"ecoserve ready: http://127.0.0.1:{http_port}/v1 (OpenAI API), gateway gRPC 127.0.0.1:{grpc_port}, "
                   f"scheduler {cell.address}, predictor {predictor if with_predictor else 'off'}, "
                   f"redis {cell.redis_url}, {num_workers} {engine} workers ({model})", err=False)
        sys.stdout.flush()
        while not stop.wait(0.5):
            cell.check_alive()
    except (RuntimeError, TimeoutError) as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        cell.stop()
        if redis_server is not None:
            redis_server.stop()
        click.echo("ecoserve stopped", err=True)


@click.command()
@click.option("--scheduler", required=True, help="HOST:PORT")
@click.option("--prompt", required=True)
@click.option("--max-tokens", default=64, show_default=True)
@click.option("--temperature", default=1.0, show_default=True)
@click.option("--seed", type=int)
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
