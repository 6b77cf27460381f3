"""One start/stop contract for the agent's parts (DESIGN §7).

A component starts on the event loop, may contribute periodic jobs (run on the loop by the
scheduler) and a section of ``status.json``, and stops. :class:`Lifecycle` starts components in
order and stops them in reverse; when one fails to start, those already started are stopped (so
no pid file is left behind and the store is closed) and the original error is raised, never an
error of the clean-up. A new part (sync, dashboard) plugs in by being added to the list.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Job:
    """A periodic coroutine: the scheduler awaits it on the event loop every ``interval_s``.
    Blocking work inside it must hand off explicitly (``loop.run_in_executor``)."""

    id: str
    interval_s: float
    run: Callable[[], Awaitable[None]]


@runtime_checkable
class Component(Protocol):
    name: str

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


@runtime_checkable
class HasJobs(Protocol):
    def jobs(self) -> Sequence[Job]: ...


@runtime_checkable
class Reports(Protocol):
    def report(self) -> Mapping[str, object]:
        """Top-level keys this component contributes to ``status.json``."""
        ...


class Lifecycle:
    def __init__(self, components: Sequence[Component]) -> None:
        self.components = tuple(components)
        self.started: list[Component] = []
        self._reporting: list[Component] = []  # started at some point: their last figures stay in status

    async def start(self) -> None:
        for component in self.components:
            try:
                await component.start()
            except BaseException:
                log.error("event=component_start_failed component=%s", component.name)
                await self.stop()
                raise
            self.started.append(component)
            self._reporting.append(component)
            log.debug("event=component_started component=%s", component.name)

    async def stop(self) -> None:
        """Stop started components in reverse order; a failing stop is logged and the rest still stop."""
        while self.started:
            component = self.started.pop()
            try:
                await component.stop()
            except Exception as exc:
                log.error("event=component_stop_failed component=%s error=%r", component.name, exc)

    def jobs(self) -> list[Job]:
        return [job for c in self.components if isinstance(c, HasJobs) for job in c.jobs()]

    def report(self) -> dict[str, object]:
        out: dict[str, object] = {}
        for component in self._reporting:
            if isinstance(component, Reports):
                out.update(component.report())
        return out
