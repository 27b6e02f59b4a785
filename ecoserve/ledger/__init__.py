"""Ledger storage outside the pure core: the Redis-backed KV ledger and an embedded Redis server."""

from ecoserve.ledger.embedded import EmbeddedRedis
from ecoserve.ledger.redis_ledger import RedisLedger, ledger_keys

__all__ = ["EmbeddedRedis", "RedisLedger", "ledger_keys"]
