"""edge_agent/memory.py: what is alive at start is frozen, cyclic garbage made afterwards is
collected by the minute's job, and a stop gives the frozen objects back to the collector."""

from __future__ import annotations

import asyncio
import gc
import weakref

from edge_agent.memory import GarbagePart


class _Node:
    def __init__(self) -> None:
        self.me = self  # a cycle: reference counting alone never frees it


def test_start_freezes_the_collector_job_frees_cycles_and_stop_unfreezes() -> None:
    part = GarbagePart(interval_s=60.0)

    async def scenario() -> None:
        await part.start()
        try:
            assert part.frozen > 1000 and gc.get_freeze_count() > 1000  # the imports at least
            node = _Node()
            gone = weakref.ref(node)
            del node
            assert gone() is not None  # garbage, still in memory
            (job,) = part.jobs()
            assert job.id == "gc_collect" and job.interval_s == 60.0
            await job.run()
            assert gone() is None and part.collections == 1 and part.collected >= 1
        finally:
            await part.stop()
        assert gc.get_freeze_count() == 0

    gc.disable()  # no automatic collection may free the cycle first
    try:
        asyncio.run(scenario())
    finally:
        gc.enable()
