"""What the scheduler does when Redis goes away: stop writing, wait for it, write its state back.

Redis holds no state the scheduler does not also hold in memory (requests, stored tokens; the
worker ledgers are recreated when workers reconnect). So a Redis that restarted empty, or from an
older snapshot, is repaired from memory: the unfinished requests with their stored tokens, the
live set, an id counter past every id handed out. Until then writes wait, no request is accepted
and no worker connects; a session whose write fails ends, and its requests are recomputed on the
workers that reconnect. After a blip (Redis kept its data) a session whose write merely waited
goes on where it was.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import AsyncIterator

import redis
import redis.asyncio as aredis

from services.scheduler.live import LiveRequest
from services.scheduler.store import RequestStore

log = logging.getLogger("ecoserve.scheduler")


def redis_lost(exc: redis.RedisError) -> bool:
    """Redis is unreachable, or answers without the data it had (a ledger namespace is gone).

    Any other error (a ledger taken over by another scheduler: STALE) ends one worker's session
    and nothing else.
    """
    # A pipeline's error reads "Command # n (...) of pipeline caused error: ('LOST ...',)".
    return isinstance(exc, (redis.ConnectionError, redis.TimeoutError)) or re.search(r"(^|\(')LOST ", str(exc)) is not None


class RedisGuard:
    """Every Redis write goes through `writing()`; the repair runs only when none is in flight."""

    def __init__(self, client: aredis.Redis, store: RequestStore, live: dict[int, LiveRequest],
                 max_backoff_s: float = 2.0) -> None:
        self.client = client
        self.store = store
        self.live = live
        self.max_backoff_s = max_backoff_s
        self.ready = asyncio.Event()  # Redis holds the scheduler's state: writes may go
        self.ready.set()
        self._active = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._recovery: asyncio.Task[None] | None = None

    @contextlib.asynccontextmanager
    async def writing(self) -> AsyncIterator[None]:
        """Wait while Redis is being repaired, then write; a failure that means Redis is gone
        starts the repair (and the error still reaches the caller)."""
        await self.ready.wait()
        self._active += 1
        self._idle.clear()
        try:
            yield
        except redis.RedisError as exc:
            if redis_lost(exc):
                self.failed(exc)
            raise
        finally:
            self._active -= 1
            if not self._active:
                self._idle.set()

    def failed(self, exc: redis.RedisError) -> None:
        """Stop writes and repair in the background (once, however many writers noticed)."""
        if self.ready.is_set():
            log.warning("Redis unavailable (%s): writes wait, worker sessions end", exc)
        self.ready.clear()
        if self._recovery is None or self._recovery.done():
            self._recovery = asyncio.create_task(self._recover())

    async def _recover(self) -> None:
        """Once no write is in flight: wait for Redis, write the unfinished requests back, resume.

        A write staged before the failure and sent after the repair (a session's iteration) lands
        after it, in order; one that raced it could have lost tokens Redis had just appended.
        """
        await self._idle.wait()
        backoff = 0.05
        while True:
            try:
                await self.client.connection_pool.disconnect()  # connections to the old server are dead
                await self.client.ping()
                await self.store.rewrite(list(self.live.values()))
                break
            except redis.RedisError:
                await asyncio.sleep(backoff)
                backoff = min(self.max_backoff_s, backoff * 2)
        self.ready.set()
        log.warning("Redis back: %d unfinished requests written back", len(self.live))
