"""The KV ledger kept in Redis, so that a restarted scheduler can reload what each worker held.

Decisions stay in process: `RedisLedger` is a `KVLedger` (same methods, errors and invariants; a
refused operation changes nothing) that remembers which accounts each operation touched. `stage`
adds one Lua call to a caller's pipeline that writes those accounts and the totals atomically, so a
scheduler mirrors a whole iteration (the policy's allocations and writes, the releases of finished
requests) in one round trip, together with its other per-iteration updates. Redis therefore holds
the ledger as of the last flush.

Layout, per worker namespace `{prefix}:ledger:{<worker>}` (the braces keep a namespace in one
Redis Cluster slot):

* `...:meta`  hash: capacity, block_size, free, written, epoch
* `...:acct`  hash: request id -> "own held lent b1:n1,b2:n2" (its loans as lender: borrower:blocks)

`epoch` fences writers: `create` and `load` bump it, and a flush from a ledger object holding an
older epoch is refused as a whole (error `STALE`), so a scheduler that lost its worker cannot
overwrite the state its successor took over. A namespace that is gone altogether (Redis restarted
without the data) is refused with `LOST`, so the owner knows to write its state back.
"""

from __future__ import annotations

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
if ARGV[4] == '1' then redis.call('DEL', KEYS[2]) end
redis.call('HSET', KEYS[1], 'free', ARGV[2], 'written', ARGV[3])
for i = 5, #ARGV, 2 do
  if ARGV[i + 1] == '' then redis.call('HDEL', KEYS[2], ARGV[i])
  else redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1]) end
end
return 1
"""


def ledger_keys(worker: str, prefix: str = "ecoserve") -> tuple[str, str]:
    """(meta key, account key) of a worker's ledger."""
    ns = f"{prefix}:ledger:{{{worker}}}"
    return f"{ns}:meta", f"{ns}:acct"


class RedisLedger(KVLedger):
    """A KVLedger mirrored to Redis on `flush` (or `stage` into a caller's pipeline)."""

    def __init__(self, client: redis.Redis, worker: str, capacity: int, block_size: int, epoch: int,
                 prefix: str = "ecoserve") -> None:
        super().__init__(capacity, block_size)
        self.client = client
        self.worker = worker
        self.epoch = epoch
        self.meta_key, self.acct_key = ledger_keys(worker, prefix)
        self._dirty: set[int] = set()
        self._resync = False  # a failed flush: next one rewrites every account

    # --- lifecycle -----------------------------------------------------------------------------

    @classmethod
    def create(cls, client: redis.Redis, worker: str, capacity: int, block_size: int = 16,
               prefix: str = "ecoserve") -> RedisLedger:
        """A fresh, empty ledger for `worker`, replacing whatever its namespace held."""
        KVLedger(capacity, block_size)  # validates the arguments before Redis is touched
        meta, acct = ledger_keys(worker, prefix)
        pipe = client.pipeline(transaction=True)
        pipe.delete(acct)
        pipe.hset(meta, mapping={"capacity": capacity, "block_size": block_size, "free": capacity, "written": 0})
        pipe.hincrby(meta, "epoch", 1)
        epoch = int(pipe.execute()[-1])
        return cls(client, worker, capacity, block_size, epoch, prefix)

    @classmethod
    def load(cls, client: redis.Redis, worker: str, prefix: str = "ecoserve") -> RedisLedger:
        """Reload a worker's ledger (scheduler restart) and take it over; LedgerError if absent or broken."""
        meta_key, acct_key = ledger_keys(worker, prefix)
        pipe = client.pipeline(transaction=True)
        pipe.hincrby(meta_key, "epoch", 1)
        pipe.hgetall(meta_key)
        pipe.hgetall(acct_key)
        epoch, meta, accounts = pipe.execute()
        if b"capacity" not in meta:
            client.delete(meta_key)  # undo the epoch bump on a namespace that never existed
            raise LedgerError(f"no ledger for worker {worker!r} in Redis")
        led = cls(client, worker, int(meta[b"capacity"]), int(meta[b"block_size"]), int(epoch), prefix)
        _fill(led, meta, accounts)
        return led

    @staticmethod
    def read(client: redis.Redis, worker: str, prefix: str = "ecoserve") -> KVLedger:
        """A read-only in-memory copy of what Redis holds for `worker` (inspection and tests)."""
        meta_key, acct_key = ledger_keys(worker, prefix)
        meta, accounts = client.hgetall(meta_key), client.hgetall(acct_key)
        if b"capacity" not in meta:
            raise LedgerError(f"no ledger for worker {worker!r} in Redis")
        led = KVLedger(int(meta[b"capacity"]), int(meta[b"block_size"]))
        _fill(led, meta, accounts)
        return led

    def delete(self) -> None:
        """Drop the namespace (the worker is gone for good)."""
        self.client.delete(self.meta_key, self.acct_key)

    # --- mirroring -----------------------------------------------------------------------------

    def stage(self, pipe: Any) -> None:
        """Queue the changes since the last stage on `pipe` (a redis or redis.asyncio pipeline)."""
        rids = list(self._accounts) if self._resync else sorted(self._dirty)
        args: list[Any] = [self.epoch, self.free, self.written, "1" if self._resync else "0"]
        for rid in rids:
            acct = self._accounts.get(rid)
            args += [rid, _encode(acct, self._loans.get(rid, {})) if acct else ""]
        pipe.eval(_APPLY, 2, self.meta_key, self.acct_key, *args)
        self._dirty.clear()
        self._resync = False

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


def _encode(acct: Account, loans: dict[int, int]) -> str:
    lent = ",".join(f"{b}:{n}" for b, n in sorted(loans.items()))
    return f"{acct.own} {acct.held} {acct.lent} {lent}".rstrip()


def _fill(led: KVLedger, meta: dict[bytes, bytes], accounts: dict[bytes, bytes]) -> None:
    """Rebuild a ledger's state from its Redis hashes, then check every invariant."""
    led.free = int(meta[b"free"])
    led._written = int(meta[b"written"])
    led._accounts = {int(rid): Account() for rid in accounts}
    led._loans = {}
    for rid_b, value in accounts.items():
        rid = int(rid_b)
        own, held, lent, *rest = value.decode().split(" ")
        acct = led._accounts[rid]
        acct.own, acct.held, acct.lent = int(own), int(held), int(lent)
        for pair in rest[0].split(",") if rest else ():
            borrower, blocks = (int(x) for x in pair.split(":"))
            if borrower not in led._accounts:
                raise LedgerError(f"loan {rid}->{borrower} to a request without an account")
            led._loans.setdefault(rid, {})[borrower] = blocks
            led._accounts[borrower].borrowed[rid] = blocks
    led.check()
