"""The completion log: one Redis stream entry per finished request, what the predictor learns from.

The gateway appends an entry when a request ends with "stop" or "length" (the number of tokens the
request really generated, which is what a KV reservation has to cover); the predictor service reads
the stream to retrain and to measure the served model's live error. The stream is capped at
`maxlen` entries (approximately, as Redis trims whole nodes). Entries hold the prompt text that the
model saw, because the predictor's features are computed from text.
"""

from __future__ import annotations

import json
from dataclasses import MISSING, asdict, dataclass, fields

import redis.asyncio as aredis


def stream_key(prefix: str = "ecoserve") -> str:
    return f"{prefix}:completions"


@dataclass(frozen=True, slots=True)
class LoggedCompletion:
    prompt: str
    prompt_tokens: int
    max_tokens: int
    response_tokens: int  # tokens the request generated
    finish_reason: str
    point: int = 0  # the prediction it was served with; 0: none
    upper: int = 0
    model_version: str = ""  # predictor model that made the prediction
    messages: str = ""  # a chat request's messages, encode_messages(); "": the prompt was plain text
    served_model: str = ""  # the model that answered: the predictor calibrates per served model

    def to_fields(self) -> dict[str, str | int]:
        return asdict(self)

    @classmethod
    def from_fields(cls, raw: dict[bytes, bytes]) -> LoggedCompletion:
        """Parse a stream entry; ValueError if it is not a completion."""
        values: dict[str, object] = {}
        for f in fields(cls):
            data = raw.get(f.name.encode())
            if data is None:
                if f.default is not MISSING:  # has a default: optional in the entry
                    continue
                raise ValueError(f"completion entry lacks {f.name!r}")
            text = data.decode("utf-8")
            values[f.name] = int(text) if f.type == "int" else text
        return cls(**values)  # type: ignore[arg-type]


def encode_messages(messages: tuple[tuple[str, str], ...]) -> str:
    """(role, content) pairs as the log keeps them: JSON, "" for none."""
    return json.dumps([list(m) for m in messages], ensure_ascii=False) if messages else ""


def decode_messages(text: str) -> tuple[tuple[str, str], ...]:
    return tuple((str(r), str(c)) for r, c in json.loads(text)) if text else ()


class CompletionLog:
    """Append and read the stream; one client shared by a process's tasks."""

    def __init__(self, client: aredis.Redis, prefix: str = "ecoserve", maxlen: int = 100_000) -> None:
        self.client = client
        self.key = stream_key(prefix)
        self.maxlen = maxlen

    async def append(self, completion: LoggedCompletion) -> None:
        await self.client.xadd(self.key, completion.to_fields(), maxlen=self.maxlen, approximate=True)

    async def tail(self, count: int) -> tuple[str, list[LoggedCompletion]]:
        """The newest `count` entries, oldest first, and the id to read on from ("0-0" when empty)."""
        rows = await self.client.xrevrange(self.key, count=count)
        last = rows[0][0].decode() if rows else "0-0"
        return last, _parse(reversed(rows))

    async def read_after(self, last_id: str, block_ms: int, count: int = 10_000) -> tuple[str, list[LoggedCompletion]]:
        """Entries after `last_id`, waiting up to `block_ms` for the first; returns the new last id."""
        reply = await self.client.xread({self.key: last_id}, count=count, block=block_ms)
        if not reply:
            return last_id, []
        rows = reply[0][1]
        return rows[-1][0].decode(), _parse(rows)


def _parse(rows) -> list[LoggedCompletion]:  # noqa: ANN001 - redis reply rows
    out = []
    for _, raw in rows:
        try:
            out.append(LoggedCompletion.from_fields(raw))
        except (ValueError, UnicodeDecodeError):
            continue  # a foreign or damaged entry: skip it, never stop reading the log
    return out
