"""Dynamic batching: requests wait in a bounded queue; one forward runs a batch as soon as it holds max_batch_size
items or its oldest has waited max_wait_ms, off the event loop, and every request gets exactly its own row back."""
from __future__ import annotations

import asyncio
from collections import deque
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any, Callable, Sequence


class QueueFull(RuntimeError):
    """The queue already holds max_queue requests: the caller should answer 503 and ask the client to retry."""


class ShuttingDown(RuntimeError):
    """The server is stopping and takes no new work."""


@dataclass
class _Waiting:
    item: Any
    future: asyncio.Future
    arrival: float


class DynamicBatcher:
    """Collects items from many concurrent requests into batches for one `forward(items) -> rows` call each.

    `forward` runs in `executor` (one thread: batches run one after another, and code that hooks the model, such as
    Grad-CAM, shares that thread). `on_batch(size)` and `on_depth(queued)` feed the metrics.
    """

    def __init__(self, forward: Callable[[list[Any]], Sequence[Any]], executor: Executor, max_batch_size: int,
                 max_wait_ms: float, max_queue: int, on_batch: Callable[[int], None] = lambda size: None,
                 on_depth: Callable[[int], None] = lambda queued: None) -> None:
        self.forward, self.executor = forward, executor
        self.max_batch_size, self.max_wait, self.max_queue = max_batch_size, max_wait_ms / 1000, max_queue
        self.on_batch, self.on_depth = on_batch, on_depth
        self._pending: deque[_Waiting] = deque()
        self._changed = asyncio.Event()
        self._draining = self._closed = False

    @property
    def depth(self) -> int:
        """Requests waiting for a batch (not those in the batch running now)."""
        return sum(not waiting.future.done() for waiting in self._pending)

    async def submit(self, items: Sequence[Any], timeout: float) -> list[Any]:
        """The rows for items, in order, each from the batch it joined. Raises QueueFull when they do not fit in the
        queue (nothing is queued then), TimeoutError when they are not all answered within timeout seconds (those
        still queued are dropped), ShuttingDown after close()."""
        if self._closed:
            raise ShuttingDown("the server is shutting down")
        if len(self._pending) + len(items) > self.max_queue:
            raise QueueFull(f"the queue is full ({len(self._pending)} of {self.max_queue} requests waiting)")
        loop = asyncio.get_running_loop()
        waiting = [_Waiting(item, loop.create_future(), loop.time()) for item in items]
        self._pending.extend(waiting)
        self._wake()
        futures = [w.future for w in waiting]
        try:
            done, _ = await asyncio.wait(futures, timeout=timeout)
            if len(done) < len(futures):
                raise TimeoutError(f"no answer within {timeout:g} s")
            return [future.result() for future in futures]
        finally:
            for future in futures:
                if not future.done():
                    future.cancel()  # the batcher skips it
                elif not future.cancelled():
                    future.exception()  # a batch's shared error counts as seen once, not once per future
            self._wake()

    def drain(self) -> None:
        """Stop waiting for fuller batches: run what is queued now (SIGTERM). New items still run, at once."""
        self._draining = True
        self._wake()

    def close(self) -> None:
        """Take no new items; run() returns once the queue is empty."""
        self._draining = self._closed = True
        self._wake()

    async def run(self) -> None:
        """Forms and runs batches until close() and an empty queue."""
        loop = asyncio.get_running_loop()
        try:
            while batch := await self._next_batch():
                self.on_batch(len(batch))
                try:
                    rows = await loop.run_in_executor(self.executor, self.forward, [w.item for w in batch])
                except Exception as error:  # every request of the batch learns why
                    for waiting in batch:
                        if not waiting.future.done():
                            waiting.future.set_exception(error)
                    continue
                for waiting, row in zip(batch, rows, strict=True):
                    if not waiting.future.done():
                        waiting.future.set_result(row)
        finally:
            self._closed = True
            for waiting in self._pending:
                if not waiting.future.done():
                    waiting.future.set_exception(ShuttingDown("the server stopped before this request ran"))

    async def _next_batch(self) -> list[_Waiting]:
        """The next batch: when max_batch_size items wait, or the oldest has waited max_wait; [] once closed and
        empty."""
        loop = asyncio.get_running_loop()
        while True:
            self._pending = deque(w for w in self._pending if not w.future.done())  # timed out: no work for them
            self.on_depth(len(self._pending))
            timeout = None
            if self._pending:
                waited = loop.time() - self._pending[0].arrival
                if len(self._pending) >= self.max_batch_size or waited >= self.max_wait or self._draining:
                    count = min(len(self._pending), self.max_batch_size)
                    batch = [self._pending.popleft() for _ in range(count)]
                    self.on_depth(len(self._pending))
                    return batch
                timeout = self.max_wait - waited
            elif self._closed:
                return []
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), timeout)
            except asyncio.TimeoutError:
                pass

    def _wake(self) -> None:
        self._changed.set()
