"""The dynamic batcher: concurrent requests become one model call.

A batch handler is a plain function from a list of items to a list of results of the same
length (as Ray Serve's ``@serve.batch``). Items wait at most ``max_wait_ms`` for company
(only while there is some: after a batch of a single item, the next runs at once, so a lone
client sending one image at a time pays no wait), and a batch holds items of at most
``max_batch`` in total ``size`` (1 each by default; an upscale request's size is its tile
count), or one item when that alone is bigger. The handler runs in a worker thread, off the
event loop, one batch at a time per executor. A full queue refuses new work at once
(:class:`Overloaded`, answered 503) instead of queueing without bound; a caller that stops
waiting (timeout, disconnect) leaves its item skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class Overloaded(Exception):
    """The queue is full."""


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
        size: Callable[[T], int] | None = None,
    ) -> None:
        self.handler = handler
        self.executor = executor
        self.max_batch = max_batch
        self.max_wait = max_wait_ms / 1000
        self.capacity = capacity
        self.on_batch = on_batch
        self.size = size or (lambda item: 1)
        self._queue: asyncio.Queue[tuple[T, asyncio.Future[R]]] = asyncio.Queue()
        self._worker: asyncio.Task | None = None
        self._held: tuple[T, asyncio.Future[R]] | None = None  # the item that did not fit
        self._had_company = False  # did the last batch hold more than one item?

    @property
    def depth(self) -> int:
        return self._queue.qsize() + (self._held is not None)

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
        return (await self.submit_many([item]))[0]

    async def submit_many(self, items: list[T]) -> list[R]:
        """Results for several items, queued all or none (:class:`Overloaded`)."""
        if self.depth + len(items) > self.capacity:
            raise Overloaded
        loop = asyncio.get_running_loop()
        futures: list[asyncio.Future[R]] = []
        for item in items:
            futures.append(loop.create_future())
            self._queue.put_nowait((item, futures[-1]))
        try:
            return list(await asyncio.gather(*futures))
        except asyncio.CancelledError:
            for future in futures:  # the caller gave up: the worker skips what is left
                future.cancel()
            raise

    async def _next_batch(self) -> list[tuple[T, asyncio.Future[R]]]:
        first = self._held or await self._queue.get()
        self._held = None
        batch, total = [first], self.size(first[0])
        deadline = time.monotonic() + (self.max_wait if self._had_company else 0)
        while total < self.max_batch:
            if self._queue.empty():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    entry = await asyncio.wait_for(self._queue.get(), remaining)
                except TimeoutError:
                    break
            else:
                entry = self._queue.get_nowait()
            if total + self.size(entry[0]) > self.max_batch:
                self._held = entry  # first in the next batch
                break
            batch.append(entry)
            total += self.size(entry[0])
        self._had_company = len(batch) > 1
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
            if self.on_batch:
                self.on_batch(sum(self.size(item) for item in items), time.perf_counter() - began)
            for (_, future), result in zip(batch, results, strict=True):
                if not future.done():
                    future.set_result(result)
