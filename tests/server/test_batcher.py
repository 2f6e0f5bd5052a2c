"""The dynamic batcher's wait for company, on the real batcher and a real thread pool."""

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor

from latentwire.server.batcher import DynamicBatcher

WAIT_S = 0.5


async def _timed(coroutine) -> tuple[object, float]:
    began = time.monotonic()
    result = await coroutine
    return result, time.monotonic() - began


def test_only_a_batch_after_company_waits_for_more():
    async def scenario():
        with ThreadPoolExecutor(1) as executor:
            sizes: list[int] = []
            batcher = DynamicBatcher(
                lambda items: [x * 10 for x in items],
                executor,
                max_wait_ms=WAIT_S * 1000,
                on_batch=lambda n, seconds: sizes.append(n),
            )
            batcher.start()
            alone, alone_s = await _timed(batcher.submit(1))  # no company before: no wait
            pair, _ = await _timed(batcher.submit_many([2, 3]))  # queued together: one batch
            after_pair, after_pair_s = await _timed(batcher.submit(4))  # waits for more
            again, again_s = await _timed(batcher.submit(5))  # the last batch was alone
            await batcher.stop()
            return sizes, (alone, pair, after_pair, again), (alone_s, after_pair_s, again_s)

    sizes, results, (alone_s, after_pair_s, again_s) = asyncio.run(scenario())
    assert results == (10, [20, 30], 40, 50)
    assert sizes == [1, 2, 1, 1]
    assert alone_s < WAIT_S / 2 and again_s < WAIT_S / 2
    assert after_pair_s >= WAIT_S * 0.9
