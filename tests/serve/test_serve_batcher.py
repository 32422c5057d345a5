"""The dynamic batcher on a stand-in forward that records its batches: batch boundaries, row routing, the bounded
queue, timeouts, draining and errors, each without timing luck (waits are either 0 or far longer than the test)."""
import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from vitkit.serve import DynamicBatcher, QueueFull, ShuttingDown

FOREVER_MS = 600_000  # a batch that waits for this never runs by waiting within a test


class Recorder:
    """forward(items) -> 10 x each item, remembering every batch and the thread it ran on."""

    def __init__(self, fail_on: int | None = None):
        self.batches, self.threads, self.fail_on = [], set(), fail_on

    def __call__(self, items):
        self.batches.append(list(items))
        self.threads.add(threading.current_thread().name)
        if self.fail_on in items:
            raise RuntimeError(f"cannot run item {self.fail_on}")
        return [10 * item for item in items]


def run_with_batcher(test, forward=None, **settings):
    """Runs `await test(batcher, forward)` with a batcher whose run() loop is live, then closes it."""
    forward = forward or Recorder()
    settings = {"max_batch_size": 4, "max_wait_ms": FOREVER_MS, "max_queue": 64, **settings}

    async def main():
        with ThreadPoolExecutor(1, thread_name_prefix="forward") as executor:
            batcher = DynamicBatcher(forward, executor, **settings)
            loop_task = asyncio.create_task(batcher.run())
            try:
                return await asyncio.wait_for(test(batcher, forward), 20)
            finally:
                batcher.close()
                await asyncio.wait_for(loop_task, 20)

    return asyncio.run(main())


def test_a_full_batch_runs_at_once_in_one_forward_off_the_event_loop():
    async def test(batcher, forward):
        results = await asyncio.gather(*(batcher.submit([i], 30) for i in range(4)))
        assert results == [[0], [10], [20], [30]]
        assert forward.batches == [[0, 1, 2, 3]]
        assert forward.threads == {"forward_0"}  # not the event loop's thread
    run_with_batcher(test)


def test_a_partial_batch_runs_once_its_oldest_has_waited_max_wait():
    async def test(batcher, forward):
        start = time.monotonic()
        results = await asyncio.gather(*(batcher.submit([i], 30) for i in range(3)))
        assert time.monotonic() - start >= 0.1  # it waited for more, as told
        assert results == [[0], [10], [20]] and forward.batches == [[0, 1, 2]]
    run_with_batcher(test, max_batch_size=100, max_wait_ms=100)


def test_many_requests_are_cut_into_full_batches_and_each_gets_its_own_row():
    async def test(batcher, forward):
        results = await asyncio.gather(*(batcher.submit([i], 30) for i in range(10)))
        assert [row for rows in results for row in rows] == [10 * i for i in range(10)]
        assert forward.batches == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    run_with_batcher(test, max_wait_ms=50)


def test_several_items_of_one_request_come_back_in_order():
    async def test(batcher, forward):
        assert await batcher.submit([5, 6, 7], 30) == [50, 60, 70]
    run_with_batcher(test, max_batch_size=2, max_wait_ms=0)


def test_a_full_queue_refuses_at_once_and_keeps_what_it_holds():
    async def test(batcher, forward):
        waiting = [asyncio.create_task(batcher.submit([i], 30)) for i in range(3)]
        await asyncio.sleep(0)
        assert batcher.depth == 3
        with pytest.raises(QueueFull, match="3 of 3"):
            await batcher.submit([99], 30)
        with pytest.raises(QueueFull):
            await batcher.submit([98, 97], 30)
        assert batcher.depth == 3 and forward.batches == []
        batcher.drain()
        assert await asyncio.gather(*waiting) == [[0], [10], [20]]
        assert forward.batches == [[0, 1, 2]]
    run_with_batcher(test, max_batch_size=8, max_queue=3)


def test_a_request_past_its_timeout_fails_and_leaves_no_work_behind():
    async def test(batcher, forward):
        with pytest.raises(TimeoutError):
            await batcher.submit([1], 0.05)
        assert batcher.depth == 0
        assert await asyncio.gather(batcher.submit([2], 30), batcher.submit([3], 30)) == [[20], [30]]
        assert forward.batches == [[2, 3]]  # the timed-out item never ran
    run_with_batcher(test, max_batch_size=2)


def test_drain_runs_what_is_queued_now_and_close_refuses_new_work():
    async def test(batcher, forward):
        waiting = [asyncio.create_task(batcher.submit([i], 30)) for i in range(3)]
        await asyncio.sleep(0)
        batcher.drain()  # without it the batch would wait FOREVER_MS for a fourth item
        assert await asyncio.gather(*waiting) == [[0], [10], [20]]
        assert await batcher.submit([7], 30) == [70]  # still served while draining, at once
        batcher.close()
        with pytest.raises(ShuttingDown):
            await batcher.submit([8], 30)
    run_with_batcher(test)


def test_a_failing_forward_fails_its_batch_only():
    async def test(batcher, forward):
        outcomes = await asyncio.gather(batcher.submit([1], 30), batcher.submit([2], 30), return_exceptions=True)
        assert all(isinstance(o, RuntimeError) and "cannot run item 2" in str(o) for o in outcomes)
        assert await asyncio.gather(batcher.submit([3], 30), batcher.submit([4], 30)) == [[30], [40]]
    run_with_batcher(test, Recorder(fail_on=2), max_batch_size=2)
