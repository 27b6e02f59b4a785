"""One request, from either API, checked and tokenized: every bad input becomes a clear 400."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from ecoserve.core.request import Slo
from services.gateway.chat import ChatTemplate
from services.gateway.config import GatewayConfig
from services.gateway.errors import invalid
from services.gateway.text import ModelFiles

INT32_MAX = 2**31 - 1
UINT64_MAX = 2**64 - 1


@dataclass(frozen=True, slots=True)
class GenerateInput:
    """What a client asked for, API-neutral; exactly one of prompt, prompt_token_ids, messages."""

    model: str = ""
    prompt: str | None = None
    prompt_token_ids: list[int] | None = None
    messages: list[dict[str, str]] | None = None
    max_tokens: int | None = None
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    seed: int | None = None
    stop: tuple[str, ...] = ()
    stop_token_ids: tuple[int, ...] = ()
    ignore_eos: bool = False
    priority: int = 0
    slo_class: str = ""
    ttft_slo_s: float | None = None
    tpot_slo_s: float | None = None


@dataclass(frozen=True, slots=True)
class Generation:
    """A request ready for the scheduler."""

    prompt_text: str  # what the completion log keeps, and the predictor reads when there is no chat
    prompt_ids: list[int]
    max_tokens: int
    temperature: float
    top_p: float
    top_k: int
    seed: int | None
    stop: tuple[str, ...]
    stop_token_ids: tuple[int, ...]
    ignore_eos: bool
    priority: int
    slo_class: str
    slo: Slo = field(default_factory=Slo)
    messages: tuple[tuple[str, str], ...] = ()  # (role, content) of a chat request: what the predictor reads


class Preparer:
    def __init__(self, config: GatewayConfig, files: ModelFiles, chat: ChatTemplate) -> None:
        self.config = config
        self.files = files
        self.chat = chat
        self.model_name = config.served_model_name or files.directory.name

    def prepare(self, inp: GenerateInput) -> Generation:
        if inp.model and inp.model != self.model_name:
            raise invalid(f"model {inp.model!r} is not served here; this gateway serves {self.model_name!r}")
        text, ids = self._prompt(inp)
        limits = self.config.limits
        context = self.files.max_model_len
        max_prompt = min(limits.max_prompt_tokens, context - 1)
        if len(ids) > max_prompt:
            raise invalid(f"prompt has {len(ids)} tokens; the limit is {max_prompt}")
        room = context - len(ids)
        if inp.max_tokens is None:
            max_tokens = min(limits.default_max_tokens, limits.max_tokens, room)
        else:
            max_tokens = inp.max_tokens
            if not 1 <= max_tokens <= limits.max_tokens:
                raise invalid(f"max_tokens must be in [1, {limits.max_tokens}], got {max_tokens}")
            if max_tokens > room:
                raise invalid(f"prompt ({len(ids)} tokens) plus max_tokens ({max_tokens}) exceeds the model's "
                              f"context length of {context} tokens")
        messages = tuple((m["role"], m.get("content") or "") for m in inp.messages) if inp.messages else ()
        return Generation(
            prompt_text=text, prompt_ids=ids, max_tokens=max_tokens, messages=messages, **self._sampling(inp),
            stop=self._stops(inp.stop), stop_token_ids=self._token_ids(inp.stop_token_ids, "stop_token_ids"),
            ignore_eos=inp.ignore_eos, priority=self._priority(inp.priority), **self._slo(inp))

    def _prompt(self, inp: GenerateInput) -> tuple[str, list[int]]:
        given = [x for x in (inp.prompt, inp.prompt_token_ids, inp.messages) if x]
        if len(given) != 1:
            raise invalid("give exactly one non-empty input: prompt, prompt token ids, or messages")
        if inp.messages:
            for i, m in enumerate(inp.messages):
                if not m.get("role"):
                    raise invalid(f"messages[{i}]: role is missing")
            text = self.chat.render(inp.messages)
            return text, self.files.encode(text, add_special_tokens=False)
        if inp.prompt_token_ids:
            ids = self._token_ids(inp.prompt_token_ids, "prompt token ids")
            return self.files.tokenizer.decode(list(ids)), list(ids)
        assert inp.prompt is not None
        ids = self.files.encode(inp.prompt)
        if not ids:
            raise invalid("prompt tokenizes to no tokens")
        return inp.prompt, ids

    def _token_ids(self, ids: list[int] | tuple[int, ...], what: str) -> tuple[int, ...]:
        bad = [t for t in ids if not 0 <= t < self.files.vocab_size]
        if bad:
            raise invalid(f"{what}: {bad[0]} is not a token id (vocabulary of {self.files.vocab_size})")
        return tuple(ids)

    @staticmethod
    def _sampling(inp: GenerateInput) -> dict:
        if not (math.isfinite(inp.temperature) and 0 <= inp.temperature <= 100):
            raise invalid(f"temperature must be in [0, 100], got {inp.temperature}")
        if not (math.isfinite(inp.top_p) and 0 < inp.top_p <= 1):
            raise invalid(f"top_p must be in (0, 1], got {inp.top_p}")
        top_k = 0 if inp.top_k == -1 else inp.top_k  # -1 means off, as in vLLM
        if not 0 <= top_k <= INT32_MAX:
            raise invalid(f"top_k must be >= 0 (0 or -1: off), got {inp.top_k}")
        if inp.seed is not None and not 0 <= inp.seed <= UINT64_MAX:
            raise invalid(f"seed must be in [0, 2^64), got {inp.seed}")
        return {"temperature": inp.temperature, "top_p": inp.top_p, "top_k": top_k, "seed": inp.seed}

    def _stops(self, stops: tuple[str, ...]) -> tuple[str, ...]:
        if len(stops) > self.config.limits.max_stop:
            raise invalid(f"at most {self.config.limits.max_stop} stop strings, got {len(stops)}")
        if any(not s for s in stops):
            raise invalid("stop strings must not be empty")
        return stops

    @staticmethod
    def _priority(priority: int) -> int:
        if not -INT32_MAX <= priority <= INT32_MAX:
            raise invalid(f"priority must fit in 32 bits, got {priority}")
        return priority

    def _slo(self, inp: GenerateInput) -> dict:
        name = inp.slo_class or self.config.default_slo_class
        base = self.config.slo_classes.get(name)
        if base is None:
            raise invalid(f"unknown slo_class {name!r}; known: {', '.join(sorted(self.config.slo_classes))}")
        for what, value in (("ttft_slo", inp.ttft_slo_s), ("tpot_slo", inp.tpot_slo_s)):
            if value is not None and not (math.isfinite(value) and value > 0):
                raise invalid(f"{what} must be a number of seconds > 0, got {value}")
        return {"slo_class": name, "slo": Slo(inp.ttft_slo_s or base.ttft, inp.tpot_slo_s or base.tpot)}
