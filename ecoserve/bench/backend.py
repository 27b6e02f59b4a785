"""What the runner needs of a protocol client: send one request and fill in its Attempt."""

from __future__ import annotations

from typing import Protocol

from ecoserve.bench.attempt import Attempt

IGNORE_EOS_MODES = ("auto", "on", "off")


class Backend(Protocol):
    """An opened client of one server; `model` and `ignore_eos` are what the requests carry."""

    model: str
    ignore_eos: bool

    async def send(self, attempt: Attempt) -> None:
        """Send `attempt.spec`, set `sent` just before, record its tokens and `finish`, or `error`.

        Exceptions may escape: the runner records them as the attempt's error.
        """
        ...
