"""Unit tests of the gateway's text handling and of ECOSERVE_* configuration."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
from tokenizers import Tokenizer

from ecoserve.completion_log import LoggedCompletion
from ecoserve.engine.torch.config import LlamaConfig
from ecoserve.engine.torch.loader import byte_tokenizer
from ecoserve.env import apply_env
from services.gateway.chat import ChatTemplate
from services.gateway.errors import ErrorKind, GatewayError
from services.gateway.text import Detokenizer, ModelFiles, StopStrings


@pytest.fixture(scope="module")
def byte_tok() -> Tokenizer:
    return byte_tokenizer(LlamaConfig.tiny())


@pytest.mark.parametrize("text", ["plain ascii", "héllo wörld", "日本語のテキスト", "emoji 🎉🚀 end", "a\nb\tc"])
def test_detokenizer_streams_exactly_the_text_and_never_half_a_character(byte_tok: Tokenizer, text: str) -> None:
    ids = byte_tok.encode(text, add_special_tokens=False).ids
    assert len(ids) == len(text.encode())  # byte-level: multi-byte characters span several tokens
    detok = Detokenizer(byte_tok)
    deltas = [detok.push(t) for t in ids]
    assert "".join(deltas) + detok.flush() == text
    assert not any("\ufffd" in d for d in deltas)


def test_detokenizer_flushes_an_incomplete_character_at_the_end(byte_tok: Tokenizer) -> None:
    detok = Detokenizer(byte_tok)
    assert detok.push(ord("a")) == "a"
    assert detok.push(0xE6) == ""  # first byte of a three-byte character
    assert detok.flush() == "\ufffd"


def test_detokenizer_skips_special_tokens(byte_tok: Tokenizer) -> None:
    detok = Detokenizer(byte_tok)
    out = [detok.push(t) for t in (ord("o"), 256, ord("k"), 257)]
    assert "".join(out) + detok.flush() == "ok"


def test_stop_strings_cut_at_the_first_and_hold_back_possible_starts() -> None:
    stops = StopStrings(("END", "\n\n"))
    assert stops.feed("abc") == ("a", False)  # the last len("END") - 1 characters are held back
    assert stops.feed("E") == ("b", False)
    assert stops.feed("N") == ("c", False)
    assert stops.feed("Dtail") == ("", True)
    other = StopStrings(("xyz",))
    assert other.feed("12x") == ("1", False)
    assert other.feed("y!") == ("2x", False)  # holding is by length, not by match
    assert other.flush() == "y!"
    earliest = StopStrings(("b", "a"))
    assert earliest.feed("cab") == ("c", True)
    assert StopStrings(()).feed("all of it") == ("all of it", False)


def test_chat_template_from_tokenizer_config_and_its_errors(tmp_path: Path, byte_tok: Tokenizer) -> None:
    byte_tok.save(str(tmp_path / "tokenizer.json"))
    (tmp_path / "config.json").write_text(json.dumps({"max_position_embeddings": 128, "vocab_size": 512}))
    template = ("{{ bos_token }}{% for m in messages %}{% if m.role == 'tool' %}{{ raise_exception('no tools') }}"
                "{% endif %}[{{ m.role }}] {{ m.content }}{{ eos_token }}{% endfor %}"
                "{% if add_generation_prompt %}[assistant] {% endif %}")
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({
        "chat_template": template, "bos_token": "<s>", "eos_token": {"content": "</s>"}}))
    files = ModelFiles.load(tmp_path)
    assert files.max_model_len == 128 and files.vocab_size == 512
    chat = ChatTemplate.for_model(files)
    assert chat.render([{"role": "user", "content": "hi"}]) == "<s>[user] hi</s>[assistant] "
    with pytest.raises(GatewayError) as info:
        chat.render([{"role": "tool", "content": "x"}])
    assert info.value.kind is ErrorKind.INVALID and "no tools" in info.value.message
    (tmp_path / "chat_template.jinja").write_text("{{ messages | length }} messages")
    assert ChatTemplate.for_model(ModelFiles.load(tmp_path)).render([{"role": "u", "content": ""}]) == "1 messages"


def test_chat_template_sandbox_refuses_unsafe_templates(tmp_path: Path, byte_tok: Tokenizer) -> None:
    chat = ChatTemplate("{{ messages.__class__.__mro__ }}")
    with pytest.raises(GatewayError):
        chat.render([{"role": "user", "content": "x"}])


def test_env_sets_defaults_command_line_wins_and_bad_values_fail() -> None:
    def parser() -> argparse.ArgumentParser:
        ap = argparse.ArgumentParser()
        ap.add_argument("--redis-url", required=True)
        ap.add_argument("--http-port", type=int, default=8000)
        ap.add_argument("--api-key", action="append", default=[])
        ap.add_argument("--verbose", action="store_true")
        ap.add_argument("--engine", choices=["torch", "sim"], default="torch")
        return ap

    ap = parser()
    apply_env(ap, {"ECOSERVE_REDIS_URL": "redis://r", "ECOSERVE_HTTP_PORT": "9000", "ECOSERVE_API_KEY": "a, b",
                   "ECOSERVE_VERBOSE": "yes", "ECOSERVE_ENGINE": "sim"})
    args = ap.parse_args([])
    assert (args.redis_url, args.http_port, args.api_key, args.verbose, args.engine) == ("redis://r", 9000,
                                                                                         ["a", "b"], True, "sim")
    assert ap.parse_args(["--http-port", "1"]).http_port == 1
    assert "ECOSERVE_HTTP_PORT" in ap.format_help()
    for bad in ({"ECOSERVE_HTTP_PORT": "x"}, {"ECOSERVE_ENGINE": "vllm"}, {"ECOSERVE_VERBOSE": "maybe"}):
        with pytest.raises(SystemExit):
            apply_env(parser(), bad)


def test_completion_log_entries_round_trip_and_refuse_foreign_ones() -> None:
    entry = LoggedCompletion("a prompt", 3, 64, 17, "stop", 12, 30, "r2")
    raw = {k.encode(): str(v).encode() for k, v in entry.to_fields().items()}
    assert LoggedCompletion.from_fields(raw) == entry
    with pytest.raises(ValueError):
        LoggedCompletion.from_fields({b"prompt": b"x"})
