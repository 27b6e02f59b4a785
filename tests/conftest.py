"""Shared test fixtures: where the team's real data lives."""

from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    assert SHARED_DATA.is_dir(), f"tests read the real workloads from {SHARED_DATA}"
    return SHARED_DATA
