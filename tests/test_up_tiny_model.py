"""The tiny model `ecoserve up` serves: in a per-user cache (not the machine-wide temp folder), under
a stamp of everything it is made from, rebuilt when the stamp changes, safe to build concurrently."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

from ecoserve import serve_cli
from ecoserve.serve_cli import TINY_MODEL_NAME, cache_root, tiny_model, tiny_model_stamp


def test_the_cache_is_per_user_and_not_the_temp_folder(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.delenv("ECOSERVE_CACHE_DIR", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_root() == tmp_path / "home" / ".cache" / "ecoserve"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_root() == tmp_path / "xdg" / "ecoserve"
    monkeypatch.setenv("ECOSERVE_CACHE_DIR", str(tmp_path / "mine"))
    assert cache_root() == tmp_path / "mine"
    assert not str(cache_root()).startswith(str(Path(tempfile.gettempdir()) / "ecoserve-tiny"))


def test_the_model_lives_under_its_stamp_and_serves_under_its_name(tmp_path: Path) -> None:
    model = tiny_model(tmp_path)
    assert model == tmp_path / "tiny-llama" / tiny_model_stamp() / TINY_MODEL_NAME
    assert {p.name for p in model.iterdir()} == {"config.json", "model.safetensors", "tokenizer.json"}
    assert json.loads((model / "config.json").read_text())["max_position_embeddings"] == 4096
    assert (model.parent / "STAMP").read_text().strip() == tiny_model_stamp()
    assert tiny_model(tmp_path) == model  # found, not built again
    assert [p.name for p in (tmp_path / "tiny-llama").iterdir()] == [tiny_model_stamp()]  # no staging left


def test_a_new_stamp_builds_a_new_model(monkeypatch, tmp_path: Path) -> None:
    first = tiny_model(tmp_path)
    monkeypatch.setattr(serve_cli, "tiny_model_stamp", lambda: "0123456789abcdef")
    second = tiny_model(tmp_path)
    assert second != first and second.parent.name == "0123456789abcdef" and (second / "config.json").exists()


def test_the_stamp_follows_the_generator_sources(monkeypatch, tmp_path: Path) -> None:
    stamp = tiny_model_stamp()
    assert stamp == tiny_model_stamp() and len(stamp) == 16
    fake = tmp_path / "engine"
    (fake / "torch").mkdir(parents=True)
    for name in serve_cli._TINY_MODEL_SOURCES:
        (fake / "torch" / name).write_text("# another generator\n")
    from ecoserve import engine

    monkeypatch.setattr(engine, "__file__", str(fake / "__init__.py"))
    assert tiny_model_stamp() != stamp


def test_concurrent_builds_agree(tmp_path: Path) -> None:
    """Three processes build it at once (as three `ecoserve up` on a cold cache): one copy, complete."""
    code = "import sys; from ecoserve.serve_cli import tiny_model; print(tiny_model(__import__('pathlib').Path(sys.argv[1])))"
    procs = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True)
             for _ in range(3)]
    paths = {proc.communicate(timeout=120)[0].strip() for proc in procs}
    assert all(proc.returncode == 0 for proc in procs)
    assert paths == {str(tmp_path / "tiny-llama" / tiny_model_stamp() / TINY_MODEL_NAME)}
    assert [p.name for p in (tmp_path / "tiny-llama").iterdir()] == [tiny_model_stamp()]
    model = Path(paths.pop())
    assert {p.name for p in model.iterdir()} == {"config.json", "model.safetensors", "tokenizer.json"}


def test_an_incomplete_copy_is_replaced(tmp_path: Path) -> None:
    final = tmp_path / "tiny-llama" / tiny_model_stamp()
    (final / TINY_MODEL_NAME).mkdir(parents=True)
    (final / TINY_MODEL_NAME / "config.json").write_text("{}")
    model = tiny_model(tmp_path)
    assert (model.parent / "STAMP").exists() and (model / "model.safetensors").exists()
