"""The scheduler's request store against a real Redis: one Lua call per iteration, reload after a restart."""

from __future__ import annotations

import asyncio

import redis
import redis.asyncio as aredis
from redis_server import redis_url, unique_name  # noqa: F401 (fixture)

from ecoserve.proto import common_pb2, scheduler_pb2
from services.scheduler.live import Limits, from_submit
from services.scheduler.store import RequestStore


def test_stage_appends_tokens_and_finishes_and_load_reads_them_back(redis_url: str) -> None:  # noqa: F811
    async def scenario() -> None:
        client = aredis.Redis.from_url(redis_url)
        store = RequestStore(client, Limits(), prefix=unique_name("store"), finished_ttl_s=60)
        submit = scheduler_pb2.SubmitRequest(prompt_token_ids=[1, 2, 3], params=common_pb2.SamplingParams(max_tokens=8))
        ids = [await store.next_id() for _ in range(3)]
        for rid in ids:
            await store.accept(from_submit(rid, submit, Limits()))
        a, b, c = ids
        for tokens, finishes in [({a: [5, 6], b: [7]}, []), ({a: [8], c: [9]}, [(a, "length"), (b, "abort")])]:
            pipe = client.pipeline(transaction=True)
            store.stage(pipe, tokens, finishes)
            await pipe.execute()
        done, cancelled = await store.load(a), await store.load(b)
        assert (done.output, done.stored, done.finish_reason, done.closed) == ([5, 6, 8], 3, "length", True)
        assert (cancelled.output, cancelled.finish_reason) == ([7], "abort")
        assert 0 < await client.ttl(f"{store.prefix}:req:{a}") <= 60 and 0 < await client.ttl(f"{store.prefix}:out:{b}")
        [live] = await store.load_unfinished()
        assert (live.id, live.output, live.stored, live.core.generated, live.closed) == (c, [9], 1, 1, False)
        await client.aclose()

    asyncio.run(scenario())


def test_concurrent_ids_are_unique_and_only_a_reset_counter_is_lost(redis_url: str) -> None:  # noqa: F811
    async def scenario() -> None:
        client = aredis.Redis.from_url(redis_url, max_connections=16)
        store = RequestStore(client, Limits(), prefix=unique_name("ids"))
        for _ in range(20):  # replies of concurrent INCRs come back in any order
            ids = await asyncio.gather(*(store.next_id() for _ in range(16)))
            assert len(set(ids)) == 16
        await client.set(f"{store.prefix}:next_id", 3)  # Redis lost its data
        try:
            await store.next_id()
        except redis.ResponseError as err:
            assert "LOST" in str(err)
        else:
            raise AssertionError("a counter that went back was not noticed")
        await client.aclose()

    asyncio.run(scenario())
