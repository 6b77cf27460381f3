"""The uplink against a real Mosquitto (TLS, ACL) and a minimal in-test hub: exactly-once by uid,
re-sends across reconnects and restarts under the same batch ids, forged and rejected acks."""

from __future__ import annotations

import asyncio
from pathlib import Path

from edge_agent.store import BufferStore
from tests.edge_agent.sync.conftest import running_sync
from tests.edge_agent.sync.support import (
    GW,
    agent_config,
    async_wait_until,
    make_readings,
    responding,
    sync_config,
)
from tests.fixtures.mosquitto import MosquittoBroker
from tests.fixtures.pki import Pki


def test_readings_reach_the_hub_once_and_leave_pending_after_the_ack(
    tmp_path: Path, pki: Pki, broker: MosquittoBroker, store: BufferStore
) -> None:
    readings = make_readings(1, 230)
    store.submit(readings).result(10)
    config = agent_config(tmp_path / "state", sync_config(pki, broker, batch_max=50))

    async def main() -> None:
        with responding(pki, broker) as hub:
            async with running_sync(config, store) as part:
                # the store's count leaves pending on the writer thread, just before the uplink counts
                # the ack it returned: wait for both
                assert await async_wait_until(lambda: store.stats().pending == 0 and part.synced == 230, 20), (
                    part.synced,
                    part.report(),
                )
                report = part.report()["sync"]
                assert isinstance(report, dict)
                assert report["state"] == "connected" and report["batches_in_flight"] == 0
                assert report["last_ack_at"] is not None and report["rejected_batches"] == 0
            assert hub.stored_count() == 230
            assert set(hub.arrivals.values()) == {1}  # each reading sent once: no re-send without cause
            assert len(hub.batches()) == 5 and all(len(hub.batch_uids[b]) <= 50 for b in hub.batches())

    asyncio.run(main())


def test_broker_killed_mid_sync_and_restarted_later_loses_nothing(
    tmp_path: Path, pki: Pki, broker: MosquittoBroker, store: BufferStore
) -> None:
    store.submit(make_readings(1, 3000)).result(10)
    config = agent_config(tmp_path / "state", sync_config(pki, broker, batch_max=25, in_flight=2))

    async def main() -> None:
        with responding(pki, broker) as hub:
            async with running_sync(config, store) as part:
                assert await async_wait_until(lambda: hub.stored_count() >= 300, 20)
                broker.kill()  # batches in flight, acks in flight: SIGKILL, nothing saved beyond disk
                assert await async_wait_until(lambda: part.state != "connected", 10)
                # "minutes of readings later": the station keeps measuring while the link is down
                store.submit(make_readings(3001, 1000)).result(10)
                await asyncio.sleep(1.0)
                assert part.state in ("offline", "connecting")
                broker.start()
                # pending drops on the store's writer thread just before the uplink counts the ack
                assert await async_wait_until(lambda: store.stats().pending == 0 and part.synced == 4000, 60), (
                    part.synced,
                    part.report(),
                )
                assert part.report()["sync"]["connection"] >= 2  # type: ignore[index]
            expected = {f"{GW}:{i}" for i in range(1, 4001)}
            assert set(hub.stored) == expected  # zero lost, and (stored by uid) zero duplicated
            assert hub.stored_count() == 4000
            assert part.synced == 4000  # each left the pending state once, on its hub ack
            assert part.uplink is not None and part.uplink.counters.peak_in_flight <= 2

    asyncio.run(main())


def test_restart_with_batches_leased_but_unacked_resends_them_with_the_same_ids(
    tmp_path: Path, pki: Pki, broker: MosquittoBroker
) -> None:
    from tests.fixtures import real_store

    state = tmp_path / "state"
    config = agent_config(state, sync_config(pki, broker, batch_max=20, in_flight=3))

    async def first_run() -> list[str]:
        with real_store(state, gateway_id=GW) as store:
            store.submit(make_readings(1, 200)).result(10)
            with responding(pki, broker, mode="silent") as hub:  # receives, never acks
                async with running_sync(config, store, ack_timeout_s=3600.0) as part:
                    assert await async_wait_until(lambda: len(hub.batches()) >= 3, 20)
                    await asyncio.sleep(0.3)
                    assert part.report()["sync"]["batches_in_flight"] == 3  # type: ignore[index]
                sent = hub.batches()
                assert store.stats().pending == 200  # nothing acked: nothing leaves pending
                return sent

    async def second_run() -> tuple[list[str], dict[str, tuple[str, ...]], int]:
        with real_store(state, gateway_id=GW) as store, responding(pki, broker) as hub:
            async with running_sync(config, store) as part:
                assert await async_wait_until(lambda: store.stats().pending == 0, 30), part.report()
                resent = part.uplink.counters.resent_batches if part.uplink else 0
            return hub.batches(), hub.batch_uids, resent

    first = asyncio.run(first_run())
    assert len(first) == 3
    second, uids, resent = asyncio.run(second_run())
    assert second[:3] == first  # re-sent first, with the same batch ids (and the same readings)
    assert [uid for b in first for uid in uids[b]] == [f"{GW}:{i}" for i in range(1, 61)]
    assert resent >= 3
    assert len(set(second)) == len(second) == 10  # 200 readings / 20 per batch, no id twice


def test_a_forged_ack_marks_nothing(tmp_path: Path, pki: Pki, broker: MosquittoBroker, store: BufferStore) -> None:
    from wire.messages import Ack, encode_ack

    store.submit(make_readings(1, 100)).result(10)
    config = agent_config(tmp_path / "state", sync_config(pki, broker, batch_max=25))

    async def main() -> None:
        with responding(pki, broker, mode="forge") as hub:  # acks signed with some other key
            async with running_sync(config, store) as part:
                assert part.uplink is not None
                assert await async_wait_until(lambda: part.uplink.counters.ignored_acks >= 4, 20)  # type: ignore[union-attr]
                # and garbage, and a genuinely signed ack naming another gateway
                hub.publish_ack("p1", GW, b"not an ack at all")
                other = Ack(batch_id=hub.batches()[0], gateway_id="gw-0002", lane="readings", status="ok")
                hub.publish_ack("p1", GW, encode_ack(other, hub.keys.signing))
                assert await async_wait_until(lambda: part.uplink.counters.ignored_acks >= 6, 10)  # type: ignore[union-attr]
                counters = part.uplink.counters
                assert store.stats().pending == 100 and part.synced == 0
                assert counters.ignored_by_reason["bad_signature"] >= 4
                assert counters.ignored_by_reason["other_gateway"] == 1
                assert sum(counters.ignored_by_reason.values()) == counters.ignored_acks
                assert counters.batches_acked == 0

    asyncio.run(main())


def test_a_rejected_batch_stays_pending_is_counted_and_does_not_spin(
    tmp_path: Path, pki: Pki, broker: MosquittoBroker, store: BufferStore
) -> None:
    store.submit(make_readings(1, 300)).result(10)
    config = agent_config(tmp_path / "state", sync_config(pki, broker, batch_max=10, in_flight=4))

    async def main() -> None:
        with responding(pki, broker, mode="reject") as hub:
            async with running_sync(config, store) as part:
                assert await async_wait_until(lambda: len(hub.batches()) >= 4, 20)
                await asyncio.sleep(2.0)
                sent = len(hub.batches())
                # the buffer keeps rejected batches leased (8 at most): no new batch after that,
                # and no re-send of a rejected one before its lease times out
                assert sent <= 8, sent
                report = part.report()["sync"]
                assert isinstance(report, dict)
                assert report["rejected_batches"] == sent
                assert report["state"] == "connected"
                assert store.stats().pending == 300 and part.synced == 0
                assert part.uplink is not None and "test says no" in part.uplink.counters.last_rejection

    asyncio.run(main())


def test_alerts_go_out_ahead_of_the_backlog(
    tmp_path: Path, pki: Pki, broker: MosquittoBroker, store: BufferStore
) -> None:
    from datetime import UTC, datetime

    store.submit(make_readings(1, 1000)).result(10)
    for i in range(3):
        store.save_alert(
            f"alert-{i}", {"alert_id": f"alert-{i}", "level": "high", "state": "open"}, updated_at=datetime.now(UTC)
        )
    config = agent_config(tmp_path / "state", sync_config(pki, broker, batch_max=50))

    async def main() -> None:
        with responding(pki, broker) as hub:
            async with running_sync(config, store) as part:
                assert await async_wait_until(
                    lambda: store.stats().pending == 0 and store.stats().pending_alerts == 0, 20
                ), part.report()
                assert part.uplink is not None and part.uplink.counters.alerts_synced == 3
            assert hub.order[0] == "alerts"
            assert set(hub.alerts) == {(f"alert-{i}", 1) for i in range(3)}

    asyncio.run(main())


def test_clock_jumps_never_reorder_or_drop_readings(
    tmp_path: Path, pki: Pki, broker: MosquittoBroker, store: BufferStore
) -> None:
    from datetime import UTC, datetime, timedelta

    now = datetime.now(UTC)
    # a Pi without a clock battery: boots years behind, NTP steps it forward, then a step back
    store.submit(make_readings(1, 40, at=now - timedelta(days=900))).result(10)
    store.submit(make_readings(41, 40, at=now + timedelta(days=1))).result(10)
    store.submit(make_readings(81, 40, at=now - timedelta(hours=3))).result(10)
    config = agent_config(tmp_path / "state", sync_config(pki, broker, batch_max=15, batch_max_age_s=5))

    async def main() -> None:
        with responding(pki, broker) as hub:
            async with running_sync(config, store) as part:
                assert await async_wait_until(lambda: store.stats().pending == 0, 20), part.report()
            sent = [uid for batch in hub.batches() for uid in hub.batch_uids[batch]]
            assert sent == [f"{GW}:{i}" for i in range(1, 121)]  # seq order, all of them, once

    asyncio.run(main())
