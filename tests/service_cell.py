"""A local cell (scheduler + workers as real processes) per test, on a free port and its own Redis DB."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator

import pytest
from redis_server import _server

from ecoserve.launch import LocalCell, WorkerArgs
from ecoserve.ledger.embedded import free_port

_dbs = itertools.count(1)  # db 0 belongs to the ledger tests

SIM = WorkerArgs(engine="sim", model="llama-2-7b")


@pytest.fixture
def make_cell(tmp_path) -> Iterator[Callable[..., LocalCell]]:
    cells: list[LocalCell] = []

    def make(workers: dict[str, WorkerArgs], policy: str = "ecoserve", scheduler_args: tuple[str, ...] = ()) -> LocalCell:
        db = next(_dbs)
        assert db < 16, "out of Redis databases"
        cell = LocalCell(f"redis://127.0.0.1:{_server().port}/{db}", free_port(), policy, scheduler_args,
                         log_dir=str(tmp_path))
        cells.append(cell)
        cell.start_scheduler()
        for name, args in workers.items():
            cell.start_worker(name, args)
        cell.wait_ready(len(workers))
        return cell

    yield make
    for cell in cells:
        cell.stop()
