"""KV ledger invariants under random operation sequences, and the loan rules one by one."""

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from ecoserve.core.kv_ledger import KVLedger, LedgerError

RIDS = st.integers(0, 7)


class LedgerMachine(RuleBasedStateMachine):
    """Drives the ledger with arbitrary calls; a refused call must change nothing."""

    def __init__(self) -> None:
        super().__init__()
        self.ledger = KVLedger(capacity=64, block_size=4)

    def _snapshot(self) -> tuple:
        led = self.ledger
        return (led.free, led.written, {r: (a.own, a.held, a.lent, dict(a.borrowed)) for r, a in led._accounts.items()})

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


LedgerMachine.TestCase.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
TestLedgerInvariants = LedgerMachine.TestCase


def test_lender_cannot_write_into_lent_blocks() -> None:
    led = KVLedger(capacity=10, block_size=16)
    assert led.allocate(1, 6)
    led.write(1, 32)  # 2 blocks written, 4 unwritten
    led.lend(1, 2, 3)
    led.write(2, 48)  # the borrower fills the three lent blocks
    led.write(1, 48)  # the lender may still use its third block
    with pytest.raises(LedgerError):
        led.write(1, 49)  # a fourth block is lent out
    led.check()


def test_lender_release_gives_its_lent_blocks_to_the_borrower() -> None:
    led = KVLedger(capacity=10, block_size=16)
    led.allocate(1, 6)
    led.write(1, 16)
    led.lend(1, 2, 4)
    led.write(2, 60)
    assert led.release(1) == 2  # 6 own, 4 of them now the borrower's
    acct = led.account(2)
    assert (acct.own, acct.borrowed_total, acct.held) == (4, 0, 4)
    assert led.free == 6
    led.check()


def test_migrate_moves_a_borrower_to_free_blocks() -> None:
    led = KVLedger(capacity=10, block_size=16)
    led.allocate(1, 6)
    led.lend(1, 2, 4)
    assert not led.lenders() == []
    assert led.migrate(2)
    assert led.account(1).lent == 0 and led.account(2).own == 4 and led.free == 0
    assert led.lenders() == []
    assert not led.migrate(3) or led.account(3).borrowed_total == 0
    led.check()


def test_refusals() -> None:
    led = KVLedger(capacity=4, block_size=16)
    assert not led.allocate(1, 5)
    assert led.allocate(1, 4)
    with pytest.raises(LedgerError):
        led.write(1, 65)
    led.write(1, 64)
    with pytest.raises(LedgerError):
        led.lend(1, 2, 1)  # nothing unwritten to lend
    with pytest.raises(ValueError):
        KVLedger(capacity=0)
