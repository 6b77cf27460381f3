"""The component contract: start in order, stop in reverse, a failed start stops what had started
and raises the original error; jobs run on the event loop through the real apscheduler."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence

import pytest

from edge_agent.component import Job, Lifecycle
from edge_agent.parts import SchedulerPart


class Part:
    def __init__(self, name: str, log: list[str], *, fail_start: bool = False, fail_stop: bool = False) -> None:
        self.name = name
        self.log = log
        self.fail_start = fail_start
        self.fail_stop = fail_stop

    async def start(self) -> None:
        if self.fail_start:
            raise ValueError(f"{self.name} cannot start")
        self.log.append(f"start {self.name}")

    async def stop(self) -> None:
        self.log.append(f"stop {self.name}")
        if self.fail_stop:
            raise RuntimeError(f"{self.name} cannot stop")

    def report(self) -> dict[str, object]:
        return {self.name: "ok"}


def test_start_in_order_stop_in_reverse_and_report_started_parts() -> None:
    log: list[str] = []
    lc = Lifecycle([Part("a", log), Part("b", log), Part("c", log)])
    asyncio.run(lc.start())
    assert lc.report() == {"a": "ok", "b": "ok", "c": "ok"}
    asyncio.run(lc.stop())
    assert log == ["start a", "start b", "start c", "stop c", "stop b", "stop a"]
    assert lc.report() == {"a": "ok", "b": "ok", "c": "ok"}  # last figures stay for the final status
    assert Lifecycle([Part("x", log)]).report() == {}  # never started: nothing to report


def test_failed_start_stops_the_started_ones_and_raises_the_original_error() -> None:
    log: list[str] = []
    lc = Lifecycle([Part("a", log), Part("b", log, fail_stop=True), Part("c", log, fail_start=True), Part("d", log)])
    with pytest.raises(ValueError, match="c cannot start"):  # not b's RuntimeError from its stop
        asyncio.run(lc.start())
    assert log == ["start a", "start b", "stop b", "stop a"]


class Ticker:
    name = "ticker"

    def __init__(self) -> None:
        self.threads: list[int] = []
        self.done = asyncio.Event()

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def _tick(self) -> None:
        self.threads.append(threading.get_ident())
        if len(self.threads) >= 2:
            self.done.set()

    def jobs(self) -> Sequence[Job]:
        return [Job("tick", 0.05, self._tick)]


def test_jobs_run_on_the_event_loop_thread() -> None:
    ticker = Ticker()
    lc: Lifecycle

    async def main() -> int:
        nonlocal lc
        lc = Lifecycle([ticker, SchedulerPart(lambda: lc)])
        await lc.start()
        await asyncio.wait_for(ticker.done.wait(), timeout=10)
        await lc.stop()
        return threading.get_ident()

    loop_thread = asyncio.run(main())
    assert set(ticker.threads) == {loop_thread}


def test_scheduler_stop_without_start_is_quiet() -> None:
    asyncio.run(SchedulerPart(lambda: Lifecycle([])).stop())
