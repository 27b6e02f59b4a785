"""Sends requests at their arrival times within a time bound, and keeps every attempt.

The dispatcher sleeps until each request's arrival and starts it as its own task (as vLLM's
benchmark does), so a slow server never delays later sends. At --max-duration the requests
still streaming are cancelled and counted as failed; those not yet sent are counted apart.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence

from ecoserve.bench.attempt import Attempt
from ecoserve.workload import RequestSpec

Send = Callable[[Attempt], Awaitable[None]]


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _notify(on_done: Callable[[Attempt], None], a: Attempt) -> Callable[[asyncio.Task[None]], None]:
    return lambda _: on_done(a)


async def replay(
    specs: Sequence[RequestSpec],
    send: Send,
    *,
    max_duration: float,
    max_concurrency: int | None = None,
    on_done: Callable[[Attempt], None] | None = None,
) -> list[Attempt]:
    """Every spec's Attempt, in spec order: completed, failed with its error, or never sent."""
    attempts = [Attempt(i, s) for i, s in enumerate(specs)]
    gate = asyncio.Semaphore(max_concurrency) if max_concurrency else None
    stop_note = f"stopped at --max-duration ({max_duration:g} s)"

    async def run_one(a: Attempt) -> None:
        try:
            if gate is None:
                await send(a)
            else:
                async with gate:
                    await send(a)
        except Exception as exc:  # any client error is this request's failure, not the run's
            a.error = _describe(exc)
        if a.sent is not None and a.error is None and (a.finish is None or not a.token_times):
            a.error = "stream ended without a token"

    start = time.perf_counter()
    deadline = start + max_duration
    tasks: dict[asyncio.Task[None], Attempt] = {}
    for a in attempts:
        a.scheduled = start + a.spec.arrival
        if a.scheduled >= deadline:
            break
        await asyncio.sleep(max(a.scheduled - time.perf_counter(), 0.0))
        task = asyncio.create_task(run_one(a))
        if on_done is not None:
            task.add_done_callback(_notify(on_done, a))
        tasks[task] = a
    if tasks:
        _, pending = await asyncio.wait(tasks, timeout=max(deadline - time.perf_counter(), 0.0))
        for task in pending:
            tasks[task].error = stop_note
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
    return attempts
