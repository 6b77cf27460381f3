"""A long outage drained with bounded memory: 20,000 buffered readings reach the hub (run in a
child process, so the measurement is the gateway's alone) with at most ``in_flight`` batches
unacknowledged. Prints peak RSS growth and readings/s (reported, never asserted on: tests do not
time things)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

from edge_agent.store import BufferStore
from tests.edge_agent.sync.conftest import running_sync
from tests.edge_agent.sync.support import (
    HubFiles,
    RssSampler,
    agent_config,
    async_wait_until,
    make_readings,
    responder_process,
    sync_config,
)
from tests.fixtures.mosquitto import MosquittoBroker
from tests.fixtures.pki import Pki

N = 20_000
MiB = 1024 * 1024


def test_twenty_thousand_readings_drain_with_bounded_in_flight_and_memory(
    tmp_path: Path,
    pki: Pki,
    broker: MosquittoBroker,
    store: BufferStore,
    record_property: Callable[[str, object], None],
) -> None:
    for start in range(1, N + 1, 2000):
        store.submit(make_readings(start, 2000)).result(30)
    assert store.stats().pending == N
    config = agent_config(tmp_path / "state", sync_config(pki, broker, batch_max=500, in_flight=4, batch_max_age_s=5))
    peak_window = 0

    async def main() -> tuple[float, int]:
        nonlocal peak_window
        with responder_process(HubFiles.of(pki, broker)) as hub_stored:
            with RssSampler() as rss:
                t0 = time.monotonic()
                async with running_sync(config, store) as part:
                    assert part.uplink is not None

                    def done() -> bool:
                        nonlocal peak_window
                        peak_window = max(peak_window, store.stats().batches_in_flight)
                        # the uplink counts an ack once store.ack has returned to the loop, a
                        # moment after the store's pending count fell: wait for both
                        assert part.uplink is not None
                        return store.stats().pending == 0 and part.uplink.counters.synced >= N

                    assert await async_wait_until(done, 120, step=0.01), part.report()
                    elapsed = time.monotonic() - t0
                    counters = part.uplink.counters
                    assert counters.synced == N
                    assert counters.peak_in_flight <= 4
                    assert part.link is not None and part.link.counters.dropped_messages == 0
            assert await async_wait_until(lambda: hub_stored() == N, 10)
            return elapsed, rss.peak - rss.baseline

    elapsed, growth = asyncio.run(main())
    rate = N / elapsed
    record_property("drain_readings_per_s", round(rate))
    record_property("drain_peak_rss_growth_mib", round(growth / MiB, 1))
    print(f"\ndrain: {N} readings in {elapsed:.2f} s = {rate:.0f} readings/s; peak RSS growth {growth / MiB:.1f} MiB")
    assert peak_window <= 4  # the buffer's own count of leased batches never passed in_flight
    # 4 batches of 500 readings are well under a MiB each; the bound is loose on purpose
    # (allocator slack, SQLite page cache), but a backlog held in memory would be far above it.
    assert growth < 64 * MiB, f"RSS grew by {growth / MiB:.1f} MiB"
