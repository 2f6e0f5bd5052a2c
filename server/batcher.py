"""The dynamic batcher: concurrent requests become one model call.

A batch handler is a plain function from a list of items to a list of results of the same
length (as Ray Serve's ``@serve.batch``). Items wait at most ``max_wait_ms`` for company,
and a batch holds at most ``max_batch`` items. The handler runs in a worker thread, off the
event loop, one batch at a time per executor. A full queue refuses new work at once
(:class:`Overloaded`, answered 503) instead of queueing without bound; a caller that stops
waiting (timeout, disconnect) leaves its item to be skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class Overloaded(Exception):
    """The queue is full."""


@dataclass
class BatchStats:
    batches: int = 0
    items: int = 0
    largest: int = 0


class DynamicBatcher(Generic[T, R]):
    def __init__(
        self,
        handler: Callable[[list[T]], list[R]],
        executor: Executor,
        *,
        max_batch: int = 256,
        max_wait_ms: float = 2.0,
        capacity: int = 4096,
        on_batch: Callable[[int, float], None] | None = None,
    ) -> None:
        self.handler = handler
        self.executor = executor
        self.max_batch = max_batch
        self.max_wait = max_wait_ms / 1000
        self.capacity = capacity
        self.on_batch = on_batch
        self.stats = BatchStats()
        self._queue: asyncio.Queue[tuple[T, asyncio.Future[R]]] = asyncio.Queue()
        self._worker: asyncio.Task | None = None

    @property
    def depth(self) -> int:
        return self._queue.qsize()

    def start(self) -> None:
        if self._worker is None:
            self._worker = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
            self._worker = None

    async def submit(self, item: T) -> R:
        """The handler's result for ``item``; raises :class:`Overloaded` when the queue is full."""
        if self._queue.qsize() >= self.capacity:
            raise Overloaded
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((item, future))
        return await future

    async def _next_batch(self) -> list[tuple[T, asyncio.Future[R]]]:
        batch = [await self._queue.get()]
        deadline = time.monotonic() + self.max_wait
        while len(batch) < self.max_batch:
            if not self._queue.empty():
                batch.append(self._queue.get_nowait())
                continue
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                batch.append(await asyncio.wait_for(self._queue.get(), remaining))
            except TimeoutError:
                break
        # Callers that gave up (timeout, disconnect) cost nothing more.
        return [(item, future) for item, future in batch if not future.done()]

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._next_batch()
            if not batch:
                continue
            items = [item for item, _ in batch]
            began = time.perf_counter()
            try:
                results = await loop.run_in_executor(self.executor, self.handler, items)
            except Exception as e:  # the handler failed: every caller in the batch hears it
                for _, future in batch:
                    if not future.done():
                        future.set_exception(e)
                continue
            self.stats.batches += 1
            self.stats.items += len(items)
            self.stats.largest = max(self.stats.largest, len(items))
            if self.on_batch:
                self.on_batch(len(items), time.perf_counter() - began)
            for (_, future), result in zip(batch, results, strict=True):
                if not future.done():
                    future.set_result(result)
