"""The KV ledger kept in Redis, so that a restarted scheduler can reload what each worker held.

Decisions stay in process: `RedisLedger` is a `KVLedger` (same methods, errors and invariants; a
refused operation changes nothing) that remembers which accounts each operation touched. `stage`
adds one Lua call to a caller's pipeline that writes those accounts and the totals atomically, so a
scheduler mirrors a whole iteration (the policy's allocations and writes, the releases of finished
requests) in one round trip, together with its other per-iteration updates. Redis therefore holds
the ledger as of the last flush.

Layout, per worker namespace `{prefix}:ledger:{<worker>}` (the braces keep a namespace in one
Redis Cluster slot):

* `...:meta`  hash: capacity, block_size, free, written, epoch, and the prefix cache's hits,
  queries, evictions and LRU stamp counter
* `...:acct`  hash: request id -> "own held lent loans shared": its loans as lender
  ("borrower:blocks,..."), the hashes of its shared cached prefix ("h1,h2,..."), "-" for none
* `...:cache` hash: block hash -> "refs stamp": the worker's prefix index; an unreferenced block's
  stamp orders the LRU list (oldest first). A worker that goes for good takes it with it (`delete`).

`epoch` fences writers: `create` and `load` bump it, and a flush from a ledger object holding an
older epoch is refused as a whole (error `STALE`), so a scheduler that lost its worker cannot
overwrite the state its successor took over. A namespace that is gone altogether (Redis restarted
without the data) is refused with `LOST`, so the owner knows to write its state back.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import redis

from ecoserve.core.kv_ledger import Account, KVLedger, LedgerError

_APPLY = """
local epoch = redis.call('HGET', KEYS[1], 'epoch')
if not epoch then
  return redis.error_reply('LOST ledger ' .. KEYS[1] .. ' is gone (Redis lost its data)')
elseif epoch ~= ARGV[1] then
  return redis.error_reply('STALE ledger ' .. KEYS[1] .. ' was taken over (epoch ' .. ARGV[1] .. ')')
end
if ARGV[4] == '1' then redis.call('DEL', KEYS[2], KEYS[3]) end
redis.call('HSET', KEYS[1], 'free', ARGV[2], 'written', ARGV[3], 'hits', ARGV[6], 'queries', ARGV[7],
           'evictions', ARGV[8], 'stamp', ARGV[9])
local accounts = 10 + 2 * tonumber(ARGV[5])
for i = 10, #ARGV, 2 do
  local key = KEYS[2]
  if i >= accounts then key = KEYS[3] end
  if ARGV[i + 1] == '' then redis.call('HDEL', key, ARGV[i])
  else redis.call('HSET', key, ARGV[i], ARGV[i + 1]) end
end
return 1
"""


def ledger_keys(worker: str, prefix: str = "ecoserve") -> tuple[str, str, str]:
    """(meta key, account key, prefix-cache key) of a worker's ledger."""
    ns = f"{prefix}:ledger:{{{worker}}}"
    return f"{ns}:meta", f"{ns}:acct", f"{ns}:cache"


class RedisLedger(KVLedger):
    """A KVLedger mirrored to Redis on `flush` (or `stage` into a caller's pipeline)."""

    def __init__(self, client: redis.Redis, worker: str, capacity: int, block_size: int, epoch: int,
                 prefix: str = "ecoserve") -> None:
        super().__init__(capacity, block_size)
        self.client = client
        self.worker = worker
        self.epoch = epoch
        self.meta_key, self.acct_key, self.cache_key = ledger_keys(worker, prefix)
        self._dirty: set[int] = set()
        self._resync = False  # a failed flush: next one rewrites every account
        self.prefix.track = True
        self._stamp = 0  # last LRU stamp given to an unreferenced cached block

    # --- lifecycle -----------------------------------------------------------------------------

    @classmethod
    def create(cls, client: redis.Redis, worker: str, capacity: int, block_size: int = 16,
               prefix: str = "ecoserve") -> RedisLedger:
        """A fresh, empty ledger for `worker`, replacing whatever its namespace held."""
        KVLedger(capacity, block_size)  # validates the arguments before Redis is touched
        meta, acct, cache = ledger_keys(worker, prefix)
        pipe = client.pipeline(transaction=True)
        pipe.delete(acct, cache)
        pipe.hset(meta, mapping={"capacity": capacity, "block_size": block_size, "free": capacity, "written": 0,
                                 "hits": 0, "queries": 0, "evictions": 0, "stamp": 0})
        pipe.hincrby(meta, "epoch", 1)
        epoch = int(pipe.execute()[-1])
        return cls(client, worker, capacity, block_size, epoch, prefix)

    @classmethod
    def load(cls, client: redis.Redis, worker: str, prefix: str = "ecoserve") -> RedisLedger:
        """Reload a worker's ledger (scheduler restart) and take it over; LedgerError if absent or broken."""
        meta_key, acct_key, cache_key = ledger_keys(worker, prefix)
        pipe = client.pipeline(transaction=True)
        pipe.hincrby(meta_key, "epoch", 1)
        pipe.hgetall(meta_key)
        pipe.hgetall(acct_key)
        pipe.hgetall(cache_key)
        epoch, meta, accounts, cache = pipe.execute()
        if b"capacity" not in meta:
            client.delete(meta_key)  # undo the epoch bump on a namespace that never existed
            raise LedgerError(f"no ledger for worker {worker!r} in Redis")
        led = cls(client, worker, int(meta[b"capacity"]), int(meta[b"block_size"]), int(epoch), prefix)
        _fill(led, meta, accounts, cache)
        led._stamp = int(meta.get(b"stamp", 0))
        led.prefix.take_changes()
        return led

    @staticmethod
    def read(client: redis.Redis, worker: str, prefix: str = "ecoserve") -> KVLedger:
        """A read-only in-memory copy of what Redis holds for `worker` (inspection and tests)."""
        meta_key, acct_key, cache_key = ledger_keys(worker, prefix)
        meta, accounts, cache = client.hgetall(meta_key), client.hgetall(acct_key), client.hgetall(cache_key)
        if b"capacity" not in meta:
            raise LedgerError(f"no ledger for worker {worker!r} in Redis")
        led = KVLedger(int(meta[b"capacity"]), int(meta[b"block_size"]))
        _fill(led, meta, accounts, cache)
        return led

    def delete(self) -> None:
        """Drop the namespace, prefix index included (the worker is gone for good)."""
        self.client.delete(self.meta_key, self.acct_key, self.cache_key)

    # --- mirroring -----------------------------------------------------------------------------

    def stage(self, pipe: Any) -> None:
        """Queue the changes since the last stage on `pipe` (a redis or redis.asyncio pipeline)."""
        rids = list(self._accounts) if self._resync else sorted(self._dirty)
        cache = self.prefix
        hashes = list(cache.refs) if self._resync else sorted(cache.take_changes())
        if self._resync:
            cache.take_changes()
        entries = self._cache_entries(hashes)
        args: list[Any] = [self.epoch, self._free, self._written, "1" if self._resync else "0", len(rids),
                           cache.hits, cache.queries, cache.evictions, self._stamp]
        for rid in rids:
            acct = self._accounts.get(rid)
            args += [rid, _encode(acct, self._loans.get(rid, {})) if acct else ""]
        for h in hashes:
            args += [h, entries.get(h, "")]
        pipe.eval(_APPLY, 3, self.meta_key, self.acct_key, self.cache_key, *args)
        self._dirty.clear()
        self._resync = False

    def _cache_entries(self, hashes: list[int]) -> dict[int, str]:
        """"refs stamp" of each changed block still cached. Unreferenced ones changed since the last
        stage are the newest in the LRU list, so new stamps in LRU order keep its order in Redis."""
        cache = self.prefix
        wanted = {h for h in hashes if cache.refs.get(h) == 0}
        newest: list[int] = []
        for h in reversed(cache.lru):
            if len(newest) == len(wanted):
                break
            if h in wanted:
                newest.append(h)
        stamps: dict[int, int] = {}
        for h in reversed(newest):
            self._stamp += 1
            stamps[h] = self._stamp
        return {h: f"{cache.refs[h]} {stamps.get(h, 0)}" for h in hashes if h in cache.refs}

    def flush(self) -> None:
        """Mirror every change since the last flush in one atomic round trip."""
        pipe = self.client.pipeline(transaction=True)
        self.stage(pipe)
        try:
            pipe.execute()
        except redis.ResponseError as exc:
            self.flush_failed()
            raise LedgerError(str(exc)) from exc

    def flush_failed(self) -> None:
        """A staged flush did not reach Redis: the next one rewrites the whole namespace."""
        self._resync = True

    # --- operations: KVLedger's, recording what they touched -----------------------------------

    def allocate(self, rid: int, blocks: int) -> bool:
        ok = super().allocate(rid, blocks)
        if ok:
            self._dirty.add(rid)
        return ok

    def write(self, rid: int, tokens: int) -> None:
        super().write(rid, tokens)
        self._dirty.add(rid)

    def lend(self, lender: int, borrower: int, blocks: int) -> None:
        super().lend(lender, borrower, blocks)
        self._dirty.update((lender, borrower))

    def migrate(self, borrower: int) -> bool:
        lenders = list(self.account(borrower).borrowed)
        moved = super().migrate(borrower)
        if moved and lenders:
            self._dirty.update((borrower, *lenders))
        return moved

    def release(self, rid: int) -> int:
        touched = {rid, *self.account(rid).borrowed, *self.loans_of(rid)}
        freed = super().release(rid)
        self._dirty.update(touched)
        return freed

    def match(self, rid: int, hashes: Sequence[int]) -> int:
        hit = super().match(rid, hashes)
        if hit:
            self._dirty.add(rid)
        return hit

    def commit(self, rid: int, hashes: Sequence[int], full_blocks: int) -> None:
        before = len(self.account(rid).shared)
        super().commit(rid, hashes, full_blocks)
        if len(self.account(rid).shared) != before:
            self._dirty.add(rid)


def _encode(acct: Account, loans: dict[int, int]) -> str:
    lent = ",".join(f"{b}:{n}" for b, n in sorted(loans.items())) or "-"
    shared = ",".join(map(str, acct.shared)) or "-"
    return f"{acct.own} {acct.held} {acct.lent} {lent} {shared}"


def _fill(led: KVLedger, meta: dict[bytes, bytes], accounts: dict[bytes, bytes], cache: dict[bytes, bytes]) -> None:
    """Rebuild a ledger's state from its Redis hashes, then check every invariant."""
    led._free = int(meta[b"free"])
    led._written = int(meta[b"written"])
    led._accounts = {int(rid): Account() for rid in accounts}
    led._loans = {}
    for rid_b, value in accounts.items():
        rid = int(rid_b)
        own, held, lent, loans, shared = value.decode().split(" ")
        acct = led._accounts[rid]
        acct.own, acct.held, acct.lent = int(own), int(held), int(lent)
        acct.shared = [] if shared == "-" else [int(h) for h in shared.split(",")]
        for pair in [] if loans == "-" else loans.split(","):
            borrower, blocks = (int(x) for x in pair.split(":"))
            if borrower not in led._accounts:
                raise LedgerError(f"loan {rid}->{borrower} to a request without an account")
            led._loans.setdefault(rid, {})[borrower] = blocks
            led._accounts[borrower].borrowed[rid] = blocks
    prefix = led.prefix
    entries = {int(h): tuple(int(x) for x in v.decode().split(" ")) for h, v in cache.items()}
    prefix.refs = {h: refs for h, (refs, _) in entries.items()}
    prefix.lru = OrderedDict((h, None) for h, _ in sorted(
        ((h, stamp) for h, (refs, stamp) in entries.items() if refs == 0), key=lambda e: e[1]))
    prefix.hits, prefix.queries = int(meta.get(b"hits", 0)), int(meta.get(b"queries", 0))
    prefix.evictions = int(meta.get(b"evictions", 0))
    led.check()
