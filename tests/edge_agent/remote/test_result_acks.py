"""The gateway's side of the hub's result acks, without a broker: an ``ok`` ack removes every
pending copy of its result and wakes the command waiting for it, a ``rejected`` one drops the
result (counted and logged), one naming nothing pending is counted and harmless. (Signature and
gateway checks are the uplink's, exercised on a real broker in test_outbox_real.)"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

import pytest

from edge_agent.config import load_config
from edge_agent.events import EventHub
from edge_agent.remote.part import RemotePart
from edge_agent.sync.component import SyncPart
from tests.edge_agent.remote.support import GW, write_config
from tests.fixtures.pki import Pki, kernel_now
from wire.messages import Ack

AT = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)


def ack(cmd_id: str, status: str = "ok", reason: str = "") -> Ack:
    return Ack(cmd_id, GW, "results", status, stored=1 if status == "ok" else 0, reason=reason, acked_at=AT)


def test_acks_remove_reject_or_are_ignored(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    pki = Pki(tmp_path / "pki", now=kernel_now(tmp_path))
    config = load_config(write_config(tmp_path, pki, SimpleNamespace(url="mqtts://127.0.0.1:1")))  # type: ignore[arg-type]
    sync = SyncPart(config, lambda: None, EventHub(), dict, lambda: AT, ack_timeout_s=7.5)  # type: ignore[arg-type]
    remote = RemotePart(config, sync, status=dict, scorer=lambda: None, clock=lambda: AT, restart=lambda _: None)
    assert sync._result_ack == remote.on_ack and remote.ack_timeout_s == 7.5  # the sync's timeout
    outbox = tmp_path / "state" / "remote" / "outbox"

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        first = remote.outbox.add("c-1", b"sealed-1")
        remote.outbox.add("c-1", b"sealed-1 again")  # e.g. a replay's answer: same cmd_id
        remote.outbox.add("c-2", b"sealed-2")
        waiting = remote._acked.setdefault(first.number, loop.create_future())
        remote.on_ack(ack("c-9"))  # nothing pending by that id
        assert remote.stale_acks == 1 and remote.outbox.depth == 3
        remote.on_ack(ack("c-1"))
        remote.on_ack(ack("c-1"))  # a second copy's ack while the first is being removed: stale
        await asyncio.wait_for(waiting, 5)
        await asyncio.gather(*remote._removals)
        assert [e.cmd_id for e in remote.outbox.pending()] == ["c-2"] and remote.hub_acked == 1
        assert remote.stale_acks == 2
        with caplog.at_level(logging.ERROR):
            remote.on_ack(ack("c-2", "rejected", "unknown_command"))
            await asyncio.gather(*remote._removals)
        assert remote.outbox.depth == 0 and remote.hub_rejected == 1
        assert "reason=hub_rejected" in caplog.text and "unknown_command" in caplog.text

    asyncio.run(scenario())
    assert not list(outbox.glob("*.result"))
    report = remote.report()["remote"]
    assert (report["results_acked"], report["results_rejected"], report["result_acks_stale"]) == (1, 1, 2)  # type: ignore[index]
