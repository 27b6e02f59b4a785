"""Shared test fixtures: the real data the tests read, shipped in tests/data (see its NOTICE.md).

The tests never read ../shared beside the checkout: a plain clone has no such folder. The
predictor's short set names ("alpaca", "dolly", "sharegpt_v3", ...) resolve under
$ECOSERVE_DATA_DIR, which is pointed at tests/data here, for this process and the services the
tests start, whatever it was set to outside.
"""

import os
from pathlib import Path

import pytest

TEST_DATA = Path(__file__).resolve().parent / "data"

os.environ["ECOSERVE_DATA_DIR"] = str(TEST_DATA)


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """tests/data: cut-down copies of the team's shared workloads and GPU profiles."""
    notice = TEST_DATA / "NOTICE.md"
    assert notice.is_file(), f"the test data is missing from {TEST_DATA}"
    text = notice.read_text()
    for path in TEST_DATA.rglob("*.gz"):  # each data file's source and license are in the NOTICE
        rel = path.relative_to(TEST_DATA).as_posix()
        assert rel.removeprefix("gpu_profiles/vidur/") in text, f"{rel} is not described in {notice}"
    return TEST_DATA
