"""KV-cache block accounting for one worker: allocations, written blocks and loans.

The ledger counts blocks; it does not place them. A worker maps each request's blocks to physical
pages itself, and the ledger's invariants guarantee that those pages exist:

* physical: the blocks allocated to requests never exceed the capacity;
* room: a request never writes more blocks than it may use (its own, minus what it lent out, plus
  what it borrowed), so a lender never needs a block that is still lent out;
* conservation: free + allocated == capacity.

A loan is a slice of a lender's reserved-but-unwritten tail that a borrower writes into (KVC
pipelining). When the lender is released first, the slice becomes the borrower's own allocation.

Prefix caching (prefix_cache.py): a request's leading blocks may be cached blocks it shares with
others (`shared`, counted once in the cache, not in its `own`); a whole written block of its own
joins the cache under its hash (`commit`); cached blocks no request uses stay until a request
needs the room, and count as free. Conservation becomes raw free + allocated + cached == capacity.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from ecoserve.core.prefix_cache import PrefixCache


class LedgerError(RuntimeError):
    """An operation that would break a ledger invariant; the ledger is left unchanged."""


@dataclass(slots=True)
class Account:
    """One request's blocks on one worker."""

    own: int = 0  # allocated to it (counts against capacity)
    held: int = 0  # written with KV, its shared prefix included
    lent: int = 0  # of `own`, lent to borrowers
    borrowed: dict[int, int] = field(default_factory=dict)  # lender id -> blocks
    shared: list[int] = field(default_factory=list)  # hashes of its leading blocks, held by the cache

    @property
    def borrowed_total(self) -> int:
        return sum(self.borrowed.values())

    @property
    def room(self) -> int:
        """Blocks this request may write (its shared prefix counts as written room)."""
        return len(self.shared) + self.own - self.lent + self.borrowed_total

    @property
    def unwritten(self) -> int:
        return self.room - self.held


class KVLedger:
    """In-memory ledger. The Redis ledger implements the same methods."""

    def __init__(self, capacity: int, block_size: int = 16) -> None:
        if capacity <= 0 or block_size <= 0:
            raise ValueError("capacity and block_size must be positive")
        self.capacity = capacity
        self.block_size = block_size
        self._free = capacity  # neither allocated nor cached
        self._written = 0  # written blocks of the requests' own (cached ones are counted by the cache)
        self._accounts: dict[int, Account] = {}
        # lender id -> {borrower id: blocks}; the mirror of Account.borrowed.
        self._loans: dict[int, dict[int, int]] = {}
        self.prefix = PrefixCache()

    # --- queries ---------------------------------------------------------------------------

    @property
    def free(self) -> int:
        """Blocks a request can be given now: unallocated ones and cached ones no request uses."""
        return self._free + self.prefix.evictable

    @property
    def used(self) -> int:
        return self.capacity - self.free

    def account(self, rid: int) -> Account:
        return self._accounts.get(rid) or Account()

    def has(self, rid: int) -> bool:
        return rid in self._accounts

    def held(self, rid: int) -> int:
        acct = self._accounts.get(rid)
        return acct.held if acct else 0

    def room(self, rid: int) -> int:
        acct = self._accounts.get(rid)
        return acct.room if acct else 0

    def loans_of(self, lender: int) -> dict[int, int]:
        return dict(self._loans.get(lender, {}))

    def lenders(self) -> list[int]:
        return list(self._loans)

    @property
    def written(self) -> int:
        """Blocks holding KV for a running request (a shared block once; kept as running counts:
        it is read every iteration)."""
        return self._written + self.prefix.referenced

    def cached_prefix(self, hashes: Sequence[int]) -> int:
        """How many leading blocks of `hashes` this worker has cached (a look: nothing changes)."""
        return self.prefix.longest_prefix(hashes)

    # --- operations ------------------------------------------------------------------------

    def allocate(self, rid: int, blocks: int) -> bool:
        """Give `rid` `blocks` more blocks of its own; False (and no change) if they are not free."""
        if blocks < 0:
            raise LedgerError(f"negative allocation {blocks} for request {rid}")
        if not self._take(blocks):
            return False
        acct = self._accounts.setdefault(rid, Account())
        acct.own += blocks
        return True

    def _take(self, blocks: int) -> bool:
        """Remove `blocks` from the free ones, evicting unused cached blocks if need be."""
        if blocks > self.free:
            return False
        if blocks > self._free:
            self._free += self.prefix.evict(blocks - self._free)
        self._free -= blocks
        return True

    def match(self, rid: int, hashes: Sequence[int]) -> int:
        """Start `rid` (a request with no blocks yet) on its cached prefix: the longest leading run
        of `hashes` in the cache becomes its shared, written prefix. Returns the blocks matched."""
        acct = self._accounts.get(rid)
        if acct is not None and (acct.own or acct.shared or acct.borrowed):
            raise LedgerError(f"request {rid} already holds blocks; a prefix is matched before any")
        hit = self.prefix.longest_prefix(hashes)
        if hit:
            acct = self._accounts.setdefault(rid, Account())
            for h in hashes[:hit]:
                self.prefix.ref(h)
            acct.shared.extend(hashes[:hit])
            acct.held = max(acct.held, hit)
        return hit

    def commit(self, rid: int, hashes: Sequence[int], full_blocks: int) -> None:
        """Put `rid`'s whole written blocks (the first `full_blocks`, named by `hashes`) in the
        cache, in order after its shared prefix. A block already cached (computed twice at once)
        is shared instead and its copy freed. A request writing into borrowed KV adds nothing."""
        acct = self._accounts.get(rid)
        if acct is None or acct.borrowed:
            return
        upto = min(full_blocks, len(hashes), acct.held)
        for i in range(len(acct.shared), upto):
            if acct.own - acct.lent <= 0:
                break
            h = hashes[i]
            if h in self.prefix.refs:
                self.prefix.ref(h)
                self._free += 1
            else:
                self.prefix.add(h)
            acct.own -= 1
            self._written -= 1
            acct.shared.append(h)

    def write(self, rid: int, tokens: int) -> None:
        """Record that `rid` has KV for `tokens` tokens."""
        acct = self._accounts.get(rid)
        need = self._check_write(rid, tokens)
        if acct is None:
            acct = self._accounts.setdefault(rid, Account())
        self._written += need - acct.held
        acct.held = need

    def _check_write(self, rid: int, tokens: int) -> int:
        """The blocks `tokens` need, if `rid` may hold that many; LedgerError if not."""
        acct = self._accounts.get(rid)
        need = -(-tokens // self.block_size)
        room = acct.room if acct else 0
        if need > room:
            raise LedgerError(f"request {rid} needs {need} blocks but may write {room}")
        if acct is not None and need < len(acct.shared):
            raise LedgerError(f"request {rid} cannot hold less than its shared prefix ({len(acct.shared)} blocks)")
        return need

    def write_batch(self, writes: list[tuple[int, int]]) -> None:
        """Apply many `write`s at once, all or none: one iteration's KV in one step (and, for the
        Redis ledger, one round trip)."""
        for rid, tokens in writes:
            self._check_write(rid, tokens)
        for rid, tokens in writes:
            self.write(rid, tokens)

    def lend(self, lender: int, borrower: int, blocks: int) -> None:
        """Lend `blocks` of the lender's unwritten tail to the borrower."""
        if lender == borrower or blocks <= 0:
            raise LedgerError(f"bad loan {lender}->{borrower} of {blocks} blocks")
        la = self._accounts.get(lender)
        if la is None or la.unwritten < blocks or la.borrowed:
            raise LedgerError(f"request {lender} cannot lend {blocks} blocks")
        ba = self._accounts.setdefault(borrower, Account())
        if ba.lent:
            raise LedgerError(f"request {borrower} lends and cannot borrow")
        la.lent += blocks
        ba.borrowed[lender] = ba.borrowed.get(lender, 0) + blocks
        self._loans.setdefault(lender, {})[borrower] = ba.borrowed[lender]

    def migrate(self, borrower: int) -> bool:
        """Move a borrower onto free blocks of its own, ending its loans; False if too few are free."""
        ba = self._accounts.get(borrower)
        if ba is None or not ba.borrowed:
            return True
        need = ba.borrowed_total
        if not self._take(need):
            return False
        ba.own += need
        self._end_loans(borrower, ba)
        return True

    def release(self, rid: int) -> int:
        """Free everything `rid` has. Blocks it lent become their borrowers' own. Returns the blocks
        that became free: its own, and cached ones that no request uses now (kept, evictable)."""
        acct = self._accounts.pop(rid, None)
        if acct is None:
            return 0
        self._end_loans(rid, acct)
        self._written -= acct.held - len(acct.shared)
        evictable = self.prefix.evictable
        for h in acct.shared:
            self.prefix.unref(h)
        transferred = 0
        for borrower, blocks in self._loans.pop(rid, {}).items():
            ba = self._accounts[borrower]
            del ba.borrowed[rid]
            ba.own += blocks
            transferred += blocks
        freed = acct.own - transferred
        self._free += freed
        return freed + self.prefix.evictable - evictable

    def drop_cache(self) -> int:
        """Forget every cached block no request uses (a worker reset); how many were freed."""
        freed = self.prefix.evict(self.prefix.evictable)
        self._free += freed
        return freed

    def _end_loans(self, borrower: int, acct: Account) -> None:
        for lender, blocks in acct.borrowed.items():
            self._accounts[lender].lent -= blocks
            loans = self._loans[lender]
            del loans[borrower]
            if not loans:
                del self._loans[lender]
        acct.borrowed.clear()

    # --- invariants ------------------------------------------------------------------------

    def check(self) -> None:
        """Raise LedgerError if any invariant is broken."""
        own = sum(a.own for a in self._accounts.values())
        cached = len(self.prefix)
        if own + cached + self._free != self.capacity:
            raise LedgerError(
                f"blocks unaccounted: own {own} + cached {cached} + free {self._free} != {self.capacity}"
            )
        if sum(a.held - len(a.shared) for a in self._accounts.values()) != self._written:
            raise LedgerError("written-block count out of step with the accounts")
        if self._free < 0 or own > self.capacity:
            raise LedgerError(f"physical usage {own} above capacity {self.capacity}")
        users: dict[int, int] = {}
        for a in self._accounts.values():
            for h in a.shared:
                users[h] = users.get(h, 0) + 1
        if any(self.prefix.refs.get(h) != n for h, n in users.items()):
            raise LedgerError("a cached block's reference count disagrees with the requests using it")
        unused = {h for h, n in self.prefix.refs.items() if n == 0}
        if unused != set(self.prefix.lru) or any(n < 0 for n in self.prefix.refs.values()):
            raise LedgerError("the cache's LRU list is not exactly its unreferenced blocks")
        for rid, a in self._accounts.items():
            if a.held > a.room:
                raise LedgerError(f"request {rid} holds {a.held} blocks but may use {a.room}")
            lent = sum(self._loans.get(rid, {}).values())
            if lent != a.lent:
                raise LedgerError(f"request {rid} lent {a.lent} but loans say {lent}")
            for lender, blocks in a.borrowed.items():
                if self._loans.get(lender, {}).get(rid) != blocks:
                    raise LedgerError(f"loan {lender}->{rid} missing from the lender's side")
