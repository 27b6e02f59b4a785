"""KV ledger invariants under random operation sequences, and the loan rules one by one.

Every test runs against both ledgers: the in-memory KVLedger and the RedisLedger, whose Redis copy
is also reloaded and compared with the in-process state after every operation.
"""

from collections.abc import Callable

import pytest
import redis
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test
from redis_server import redis_client, redis_url, unique_name  # noqa: F401 (fixtures)

from ecoserve.core.kv_ledger import KVLedger, LedgerError
from ecoserve.core.prefix_cache import block_hashes
from ecoserve.ledger import RedisLedger, ledger_keys

RIDS = st.integers(0, 7)
MakeLedger = Callable[..., KVLedger]


def _state(led: KVLedger) -> tuple:
    cache = led.prefix
    accounts = {r: (a.own, a.held, a.lent, dict(a.borrowed), list(a.shared)) for r, a in led._accounts.items()}
    return (led.free, led.written, accounts, dict(cache.refs), list(cache.lru), cache.hits, cache.queries,
            cache.evictions)


# Four documents of ten blocks each: requests on the same document share its leading blocks.
CHAINS = [block_hashes([doc] * 40, 4) for doc in range(4)]


def _memory_factory(capacity: int, block_size: int = 16) -> KVLedger:
    return KVLedger(capacity=capacity, block_size=block_size)


class _MirroredRedisLedger(RedisLedger):
    """Flushes after every operation and checks that Redis holds exactly the in-process state."""

    def verify(self) -> None:
        self.flush()
        copy = RedisLedger.read(self.client, self.worker)
        assert (copy.capacity, copy.block_size) == (self.capacity, self.block_size)
        assert _state(copy) == _state(self)


@pytest.fixture(params=["memory", "redis"])
def make_ledger(request: pytest.FixtureRequest) -> MakeLedger:
    if request.param == "memory":
        return _memory_factory
    client = request.getfixturevalue("redis_client")

    def factory(capacity: int, block_size: int = 16) -> KVLedger:
        led = RedisLedger.create(client, unique_name("ledger-test"), capacity, block_size)
        return _MirroredRedisLedger(client, led.worker, capacity, block_size, led.epoch)

    return factory


def _verify(led: KVLedger) -> None:
    if isinstance(led, _MirroredRedisLedger):
        led.verify()


class LedgerMachine(RuleBasedStateMachine):
    """Drives the ledger with arbitrary calls; a refused call must change nothing."""

    def __init__(self, make_ledger: MakeLedger) -> None:
        super().__init__()
        self.ledger = make_ledger(capacity=64, block_size=4)

    def _snapshot(self) -> tuple:
        return _state(self.ledger)

    def _refusable(self, op) -> None:
        before = self._snapshot()
        try:
            op()
        except LedgerError:
            assert self._snapshot() == before

    @rule(rid=RIDS, blocks=st.integers(0, 40))
    def allocate(self, rid: int, blocks: int) -> None:
        free = self.ledger.free
        ok = self.ledger.allocate(rid, blocks)
        assert ok == (blocks <= free)
        assert self.ledger.free == (free - blocks if ok else free)

    @rule(rid=RIDS, tokens=st.integers(0, 200))
    def write(self, rid: int, tokens: int) -> None:
        room = self.ledger.room(rid)
        self._refusable(lambda: self.ledger.write(rid, tokens))
        assert self.ledger.held(rid) <= max(room, 0) or not self.ledger.has(rid)

    @rule(rid=RIDS, doc=st.integers(0, 3), blocks=st.integers(0, 10))
    def match(self, rid: int, doc: int, blocks: int) -> None:
        expect = self.ledger.cached_prefix(CHAINS[doc][:blocks])
        before = self.ledger.used
        acct = self.ledger.account(rid)
        fresh = not (acct.own or acct.shared or acct.borrowed)
        try:
            hit = self.ledger.match(rid, CHAINS[doc][:blocks])
        except LedgerError:
            assert not fresh
            return
        assert hit == expect and self.ledger.held(rid) >= hit
        assert self.ledger.used >= before  # matched blocks in use now, none taken from the free ones

    @rule(rid=RIDS, doc=st.integers(0, 3), full=st.integers(0, 12))
    def commit(self, rid: int, doc: int, full: int) -> None:
        room, written = self.ledger.room(rid), self.ledger.written
        self.ledger.commit(rid, CHAINS[doc], full)
        assert self.ledger.room(rid) <= room and self.ledger.written <= written

    @rule(writes=st.lists(st.tuples(RIDS, st.integers(0, 200)), max_size=4))
    def write_batch(self, writes: list[tuple[int, int]]) -> None:
        def ok(rid: int, tokens: int) -> bool:
            need = -(-tokens // self.ledger.block_size)
            return len(self.ledger.account(rid).shared) <= need <= self.ledger.room(rid)

        fits = all(ok(rid, tokens) for rid, tokens in writes)
        before = self._snapshot()
        try:
            self.ledger.write_batch(writes)
        except LedgerError:
            assert not fits and self._snapshot() == before
        else:
            assert fits
            for rid, tokens in dict(writes).items():
                assert self.ledger.held(rid) == -(-tokens // self.ledger.block_size)

    @rule(lender=RIDS, borrower=RIDS, blocks=st.integers(1, 20))
    def lend(self, lender: int, borrower: int, blocks: int) -> None:
        self._refusable(lambda: self.ledger.lend(lender, borrower, blocks))

    @rule(rid=RIDS)
    def migrate(self, rid: int) -> None:
        free = self.ledger.free
        borrowed = self.ledger.account(rid).borrowed_total
        moved = self.ledger.migrate(rid)
        assert moved == (borrowed <= free)
        if moved:
            assert self.ledger.account(rid).borrowed_total == 0

    @rule(rid=RIDS)
    def release(self, rid: int) -> None:
        used = self.ledger.used
        freed = self.ledger.release(rid)
        assert self.ledger.used == used - freed
        assert not self.ledger.has(rid)

    @invariant()
    def invariants_hold(self) -> None:
        self.ledger.check()
        assert 0 <= self.ledger.used <= self.ledger.capacity
        _verify(self.ledger)


def test_ledger_invariants(make_ledger: MakeLedger) -> None:
    run_state_machine_as_test(
        lambda: LedgerMachine(make_ledger),
        settings=settings(max_examples=150, stateful_step_count=40, deadline=None),
    )


def test_lender_cannot_write_into_lent_blocks(make_ledger: MakeLedger) -> None:
    led = make_ledger(capacity=10, block_size=16)
    assert led.allocate(1, 6)
    led.write(1, 32)  # 2 blocks written, 4 unwritten
    led.lend(1, 2, 3)
    led.write(2, 48)  # the borrower fills the three lent blocks
    led.write(1, 48)  # the lender may still use its third block
    with pytest.raises(LedgerError):
        led.write(1, 49)  # a fourth block is lent out
    led.check()
    _verify(led)


def test_lender_release_gives_its_lent_blocks_to_the_borrower(make_ledger: MakeLedger) -> None:
    led = make_ledger(capacity=10, block_size=16)
    led.allocate(1, 6)
    led.write(1, 16)
    led.lend(1, 2, 4)
    led.write(2, 60)
    assert led.release(1) == 2  # 6 own, 4 of them now the borrower's
    acct = led.account(2)
    assert (acct.own, acct.borrowed_total, acct.held) == (4, 0, 4)
    assert led.free == 6
    led.check()
    _verify(led)


def test_migrate_moves_a_borrower_to_free_blocks(make_ledger: MakeLedger) -> None:
    led = make_ledger(capacity=10, block_size=16)
    led.allocate(1, 6)
    led.lend(1, 2, 4)
    assert not led.lenders() == []
    assert led.migrate(2)
    assert led.account(1).lent == 0 and led.account(2).own == 4 and led.free == 0
    assert led.lenders() == []
    assert not led.migrate(3) or led.account(3).borrowed_total == 0
    led.check()
    _verify(led)


def test_refusals(make_ledger: MakeLedger) -> None:
    led = make_ledger(capacity=4, block_size=16)
    assert not led.allocate(1, 5)
    assert led.allocate(1, 4)
    with pytest.raises(LedgerError):
        led.write(1, 65)
    led.write(1, 64)
    with pytest.raises(LedgerError):
        led.lend(1, 2, 1)  # nothing unwritten to lend
    with pytest.raises(LedgerError):
        led.write_batch([(1, 16), (2, 16)])  # request 2 has no room: the batch is refused whole
    assert led.held(1) == 4
    _verify(led)
    with pytest.raises(ValueError):
        make_ledger(capacity=0)


# --- Redis only: reload, fencing, round trips --------------------------------------------------


def test_reload_restores_every_account_and_takes_over(redis_client: redis.Redis) -> None:
    name = unique_name("reload")
    led = RedisLedger.create(redis_client, name, capacity=20, block_size=16)
    led.allocate(1, 8)
    led.write(1, 40)
    led.lend(1, 2, 3)
    led.write_batch([(2, 30), (1, 48)])
    led.allocate(3, 2)
    led.flush()
    reloaded = RedisLedger.load(redis_client, name)
    assert _state(reloaded) == _state(led)
    assert reloaded.epoch == led.epoch + 1
    reloaded.release(1)
    reloaded.flush()
    with pytest.raises(LedgerError, match="taken over"):
        led.allocate(4, 1)
        led.flush()  # the old owner is fenced off: nothing it stages lands
    assert _state(RedisLedger.read(redis_client, name)) == _state(reloaded)


def test_a_flush_into_a_namespace_redis_lost_says_so(redis_client: redis.Redis) -> None:
    led = RedisLedger.create(redis_client, unique_name("lost"), capacity=20, block_size=16)
    led.allocate(1, 2)
    redis_client.delete(led.meta_key, led.acct_key, led.cache_key)  # as after a restart without persistence
    with pytest.raises(LedgerError, match="LOST"):
        led.flush()
    assert redis_client.exists(led.meta_key, led.acct_key, led.cache_key) == 0


def test_load_of_an_unknown_worker_fails_cleanly(redis_client: redis.Redis) -> None:
    name = unique_name("absent")
    with pytest.raises(LedgerError, match="no ledger"):
        RedisLedger.load(redis_client, name)
    assert redis_client.keys(f"*{name}*") == []


def test_one_flush_is_one_round_trip(redis_client: redis.Redis) -> None:
    """A batch of writes for many requests reaches Redis in a single MULTI/EXEC."""
    led = RedisLedger.create(redis_client, unique_name("trip"), capacity=1000, block_size=16)
    for rid in range(100):
        led.allocate(rid, 5)
    led.write_batch([(rid, 70) for rid in range(100)])
    sent: list[int] = []
    real = redis_client.connection_pool.get_connection
    calls_before = redis_client.info("commandstats").get("cmdstat_eval", {}).get("calls", 0)

    def counting(*args, **kwargs):
        sent.append(1)
        return real(*args, **kwargs)

    redis_client.connection_pool.get_connection = counting
    try:
        led.flush()
    finally:
        redis_client.connection_pool.get_connection = real
    assert len(sent) == 1
    assert redis_client.info("commandstats")["cmdstat_eval"]["calls"] == calls_before + 1
    assert RedisLedger.read(redis_client, led.worker).held(99) == 5


# --- prefix caching ----------------------------------------------------------------------------


def test_prefix_blocks_are_shared_kept_after_use_and_evicted_oldest_first(make_ledger: MakeLedger) -> None:
    led = make_ledger(capacity=10, block_size=4)
    a, b = CHAINS[0], CHAINS[1]
    assert led.match(1, a[:3]) == 0  # nothing cached yet: a miss
    led.allocate(1, 3)
    led.write(1, 12)
    led.commit(1, a, 3)  # its three written blocks join the cache
    assert (led.account(1).own, led.account(1).shared, led.used) == (0, a[:3], 3)
    assert led.match(2, a[:5]) == 3  # a second request starts on them: shared, not copied
    led.allocate(2, 2)
    led.write(2, 20)
    assert led.used == 5 and led.written == 5
    led.release(1)
    assert led.prefix.refs[a[0]] == 1 and led.used == 5  # still used by request 2
    led.release(2)
    assert led.used == 0 and led.free == 10 and led.prefix.evictable == 3  # kept, counted as free
    led.allocate(3, 2)
    led.write(3, 8)
    led.commit(3, b, 2)
    led.release(3)
    assert list(led.prefix.lru) == [*a[:3], *b[:2]]
    assert led.allocate(4, 7)  # 5 truly free, 2 taken from the oldest cached blocks
    assert led.prefix.evictions == 2 and list(led.prefix.lru) == [a[2], *b[:2]]
    assert led.cached_prefix(a) == 0  # the prefix's head is gone, so none of it matches
    led.check()
    _verify(led)


def test_a_block_computed_twice_is_shared_and_its_copy_freed(make_ledger: MakeLedger) -> None:
    led = make_ledger(capacity=10, block_size=4)
    doc = CHAINS[2]
    for rid in (1, 2):  # both prefill the same prompt before either is cached
        led.allocate(rid, 2)
        led.write(rid, 8)
    led.commit(1, doc, 2)
    led.commit(2, doc, 2)
    assert led.prefix.refs[doc[0]] == 2 and led.used == 2 and led.account(2).own == 0
    with pytest.raises(LedgerError, match="shared prefix"):
        led.write(2, 4)  # a request never gives back part of its shared prefix
    led.check()
    _verify(led)


def test_reload_restores_the_prefix_index_in_lru_order(redis_client: redis.Redis) -> None:
    name = unique_name("prefix")
    led = RedisLedger.create(redis_client, name, capacity=20, block_size=4)
    for rid, doc in ((1, 0), (2, 1), (3, 3)):
        led.allocate(rid, 2)
        led.write(rid, 8)
        led.commit(rid, CHAINS[doc], 2)
    led.release(2)
    led.release(1)
    led.match(4, CHAINS[3][:2])
    led.flush()
    reloaded = RedisLedger.load(redis_client, name)
    assert _state(reloaded) == _state(led)
    assert list(reloaded.prefix.lru) == [*CHAINS[1][:2], *CHAINS[0][:2]]
    reloaded.release(3)
    reloaded.release(4)
    reloaded.flush()
    assert list(RedisLedger.read(redis_client, name).prefix.lru)[-2:] == CHAINS[3][:2]
    reloaded.delete()
    assert redis_client.exists(*ledger_keys(name)) == 0  # the worker's prefix index goes with it
