"""Requests in Redis: what a restarted scheduler needs so that no accepted request is lost.

Keys (prefix `ecoserve`):
* `{p}:next_id`   counter of request ids (ids stay unique across restarts)
* `{p}:live`      set of unfinished request ids
* `{p}:req:<id>`  hash: submit (the SubmitRequest as received), arrival, finish_reason
* `{p}:out:<id>`  list of generated token ids, in order

Generated tokens are appended in the scheduler's one pipeline per iteration, before any client sees
them, so a client that resumes from the tokens it has never sees a token change. Finished requests
expire after `finished_ttl_s`.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import redis
import redis.asyncio as aredis

from ecoserve.proto import scheduler_pb2
from services.scheduler.live import Limits, LiveRequest, from_submit

# KEYS: a ledger's meta key ('' for no fence), the live set, the output list of each request with
# new tokens, then (hash, output list) of each finished request. ARGV: the ledger's epoch, ttl, how
# many requests have tokens, per such request its token count and tokens, then per finished
# request its id and finish reason.
_STAGE = """
if KEYS[1] ~= '' and redis.call('HGET', KEYS[1], 'epoch') ~= ARGV[1] then
  return redis.error_reply('STALE ledger ' .. KEYS[1] .. ': tokens not written')
end
local ttl, k, a = ARGV[2], tonumber(ARGV[3]), 4
for i = 1, k do
  local n = tonumber(ARGV[a])
  redis.call('RPUSH', KEYS[2 + i], unpack(ARGV, a + 1, a + n))
  a = a + n + 1
end
for j = k + 3, #KEYS, 2 do
  redis.call('HSET', KEYS[j], 'finish_reason', ARGV[a + 1])
  redis.call('SREM', KEYS[2], ARGV[a])
  redis.call('EXPIRE', KEYS[j], ttl)
  redis.call('EXPIRE', KEYS[j + 1], ttl)
  a = a + 2
end
return 1
"""
_AT_LEAST = """
if tonumber(redis.call('GET', KEYS[1]) or '0') < tonumber(ARGV[1]) then redis.call('SET', KEYS[1], ARGV[1]) end
return 1
"""


class RequestStore:
    def __init__(self, client: aredis.Redis, limits: Limits, prefix: str = "ecoserve",
                 finished_ttl_s: int = 3600) -> None:
        self.client = client
        self.limits = limits
        self.prefix = prefix
        self.finished_ttl_s = finished_ttl_s
        self.last_id = 0  # the highest request id handed out or loaded

    def _req(self, rid: int) -> str:
        return f"{self.prefix}:req:{rid}"

    def _out(self, rid: int) -> str:
        return f"{self.prefix}:out:{rid}"

    async def next_id(self) -> int:
        """A fresh request id; ResponseError `LOST` if the counter went back (Redis lost its data).

        Concurrent calls may see their replies in either order, so an id is compared with the
        highest one confirmed before its INCR was sent: Redis runs commands one at a time, so a
        later INCR returns more than that unless the counter was reset.
        """
        floor = self.last_id
        rid = int(await self.client.incr(f"{self.prefix}:next_id"))
        if rid <= floor:
            raise redis.ResponseError(f"LOST id counter {self.prefix}:next_id is back at {rid}")
        self.last_id = max(self.last_id, rid)
        return rid

    async def accept(self, req: LiveRequest) -> None:
        """Persist a new request before it is acknowledged."""
        pipe = self.client.pipeline(transaction=True)
        pipe.hset(self._req(req.id), mapping={"submit": req.submit, "arrival": repr(req.core.arrival)})
        pipe.sadd(f"{self.prefix}:live", req.id)
        await pipe.execute()

    async def rewrite(self, live: Collection[LiveRequest]) -> None:
        """Make Redis hold exactly the scheduler's unfinished requests, with their stored tokens.

        After Redis lost data (restarted empty, or from an older snapshot): every unfinished
        request again, the live set without requests finished meanwhile, and an id counter past
        every id this store has seen, so no id is handed out twice.
        """
        pipe = self.client.pipeline(transaction=True)
        pipe.delete(f"{self.prefix}:live")
        for req in live:
            pipe.delete(self._req(req.id), self._out(req.id))
            pipe.hset(self._req(req.id), mapping={"submit": req.submit, "arrival": repr(req.core.arrival)})
            if req.stored:
                pipe.rpush(self._out(req.id), *req.output[:req.stored])
        if live:
            pipe.sadd(f"{self.prefix}:live", *(req.id for req in live))
        pipe.eval(_AT_LEAST, 1, f"{self.prefix}:next_id", self.last_id)
        await pipe.execute()

    def stage(self, pipe: Any, tokens: dict[int, list[int]], finishes: list[tuple[int, str]],
              fence: tuple[str, int] | None = None) -> None:
        """Queue one Lua call on `pipe` that appends new tokens and records finishes.

        One command instead of one per request and four per finish: the client packs and parses
        one reply per iteration, which is most of the scheduler's Redis cost at large batches.
        `fence` (a worker ledger's meta key and epoch) makes the call write nothing unless that
        ledger is still this scheduler's, like the ledger's own flush in the same transaction.
        """
        if not tokens and not finishes:
            return
        meta, epoch = fence or ("", 0)
        keys = [meta, f"{self.prefix}:live", *(self._out(rid) for rid in tokens)]
        args: list[Any] = [epoch, self.finished_ttl_s, len(tokens)]
        for toks in tokens.values():
            args += [len(toks), *toks]
        for rid, reason in finishes:
            keys += [self._req(rid), self._out(rid)]
            args += [rid, reason]
        pipe.eval(_STAGE, len(keys), *keys, *args)

    async def load_unfinished(self) -> list[LiveRequest]:
        """Every request accepted and not finished, with the tokens it has so far, oldest first."""
        ids = sorted(int(x) for x in await self.client.smembers(f"{self.prefix}:live"))
        loaded = [await self.load(rid) for rid in ids]
        return [r for r in loaded if r is not None]

    async def load(self, rid: int) -> LiveRequest | None:
        pipe = self.client.pipeline(transaction=False)
        pipe.hgetall(self._req(rid))
        pipe.lrange(self._out(rid), 0, -1)
        fields, out = await pipe.execute()
        if b"submit" not in fields:
            return None
        req = from_submit(rid, scheduler_pb2.SubmitRequest.FromString(fields[b"submit"]), self.limits)
        self.last_id = max(self.last_id, rid)
        req.core.arrival = float(fields[b"arrival"])
        req.output = [int(t) for t in out]
        req.stored = req.core.generated = len(req.output)
        if b"finish_reason" in fields:
            req.finish_reason = fields[b"finish_reason"].decode()
            req.closed = True
        return req
