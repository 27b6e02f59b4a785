"""Server-sent events from a byte stream cut anywhere: network chunks do not follow event lines."""

from __future__ import annotations


class SseDecoder:
    """Feed bytes, get the `data:` payloads of the lines they complete (comments and other fields
    are skipped; OpenAI-style servers send one data line per event)."""

    def __init__(self) -> None:
        self._pending = b""

    def feed(self, chunk: bytes) -> list[str]:
        lines = (self._pending + chunk).split(b"\n")
        self._pending = lines.pop()
        payloads = []
        for raw in lines:
            line = raw.rstrip(b"\r").decode("utf-8")
            if line.startswith("data:"):
                payloads.append(line[5:].removeprefix(" "))
        return payloads

    def close(self) -> list[str]:
        """Payload of a last line the stream ended without a newline after."""
        rest, self._pending = self._pending, b""
        return self.feed(rest + b"\n") if rest.strip() else []
