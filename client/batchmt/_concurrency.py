"""What the asynchronous and the synchronous client do differently at run time, as pairs: ``async_x`` is called in
the async source (async_client.py, async_batches.py) and scripts/unasync.py turns the call into ``x`` in the
generated sync files."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

__all__ = ["async_gather_bounded", "gather_bounded", "async_run_blocking", "run_blocking"]

T = TypeVar("T")


async def async_gather_bounded(calls: Sequence[Callable[[], Awaitable[T]]], limit: int) -> list[T]:
    """Run ``calls`` concurrently, at most ``limit`` at a time; their results in call order. If one fails, the
    others are cancelled and its error is raised."""
    if len(calls) == 1:
        return [await calls[0]()]
    semaphore = asyncio.Semaphore(limit)

    async def bounded(call: Callable[[], Awaitable[T]]) -> T:
        async with semaphore:
            return await call()

    tasks = [asyncio.ensure_future(bounded(call)) for call in calls]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


def gather_bounded(calls: Sequence[Callable[[], T]], limit: int) -> list[T]:
    """The synchronous client's counterpart: one call after the other (its ``max_concurrency`` is 1); the first
    error stops the rest."""
    return [call() for call in calls]


async def async_run_blocking(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Blocking file work (reading, writing a batch file) off the event loop."""
    return await asyncio.to_thread(fn, *args, **kwargs)


def run_blocking(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """The synchronous client's counterpart: just the call."""
    return fn(*args, **kwargs)
