"""The retained status heartbeat: published on connect, on change and at a clean stop (online
false); an allow-list of the status snapshot, so nothing patient-related ever reaches it."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path

from edge_agent.events import DeviceStateChanged, EventHub
from edge_agent.store import BufferStore
from edge_agent.sync.heartbeat import change_signature, heartbeat_document
from tests.edge_agent.sync.conftest import running_sync
from tests.edge_agent.sync.support import GW, agent_config, make_readings, sync_config
from tests.fixtures.mosquitto import MosquittoBroker, MqttClient
from tests.fixtures.pki import Pki
from wire.messages import decode_heartbeat, encode_heartbeat

STATUS = f"se/v1/p1/{GW}/status"
SECRET = "P-SECRET-0042"


def full_status() -> dict[str, object]:
    """A status snapshot shaped like Agent.status(), with patient data where it must not leak from."""
    return {
        "version": "0.1.0",
        "gateway_id": GW,
        "province": "p1",
        "started_at": "2027-01-01T00:00:00+00:00",
        "backlog": {"pending": 12, "oldest_pending_age_s": 3.5, "dead_letter": 0, "patient_id": SECRET},
        "store": {
            "bytes_on_disk": 4096,
            "disk_full": False,
            "space_level": "normal",
            "dropped": {"spo2": 2},
            "dropped_by_reason": {"quota": {"spo2": 2}},
            "pending_alerts": 1,
            "quarantined": None,
        },
        "devices": [
            {
                "id": "oxi-1",
                "format": "masimo-ascii",
                "state": "streaming",
                "last_data_at": "2027-01-01T00:00:01+00:00",
                "measurements": 7,
                "patient_id": SECRET,
                "parser": {"last_reading": {"value": 97, "patient_id": SECRET}},
            }
        ],
        "pipeline": {"received": 9, "stored": 7, "dropped": 2, "stored_by_vital": {"spo2": 7}},
        "scoring": {
            "available": True,
            "open_alerts": 1,
            "models": [{"id": "news2", "version": "1.0", "sha256": "ab", "inputs": {"patient_id": SECRET}}],
            "alerts": [{"patient_id": SECRET, "inputs": {"spo2": 85}}],
        },
        "sync": {"state": "connected", "synced": 3, "batches_in_flight": 1, "peer": SECRET},
        "visits": [{"patient_id": SECRET}],
    }


def test_the_document_copies_named_fields_only() -> None:
    doc = heartbeat_document(
        full_status(),
        online=True,
        sent_at=datetime(2027, 1, 1, tzinfo=UTC),
        clock={"ntp": "unsynchronized", "offset_s": 0.0},
        certificate={"days_left": 820.5},
        disk={"free_bytes": 1, "total_bytes": 2},
    )
    payload = encode_heartbeat(doc)
    assert SECRET.encode() not in payload and b"inputs" not in payload and b"visits" not in payload
    back = decode_heartbeat(payload)
    assert back["v"] == 1 and back["type"] == "status" and back["online"] is True
    assert back["agent_version"] == "0.1.0"
    assert back["backlog"] == {"pending": 12, "oldest_pending_age_s": 3.5, "dead_letter": 0}
    assert back["devices"] == [
        {
            "id": "oxi-1",
            "format": "masimo-ascii",
            "state": "streaming",
            "last_data_at": "2027-01-01T00:00:01+00:00",
            "measurements": 7,
        }
    ]
    assert back["store"]["dropped"] == {"spo2": 2} and back["store"]["quarantined"] is False  # type: ignore[index]
    assert back["scoring"]["models"] == [{"id": "news2", "version": "1.0", "sha256": "ab"}]  # type: ignore[index]
    assert back["clock"]["ntp"] == "unsynchronized" and back["certificate"]["days_left"] == 820.5  # type: ignore[index]
    assert back["sync"] == {"state": "connected", "synced": 3, "batches_in_flight": 1}


def test_what_counts_as_a_change() -> None:
    status = full_status()
    base = heartbeat_document(status, online=True, sent_at=datetime.now(UTC))
    later = heartbeat_document(status | {"backlog": {"pending": 999}}, online=True, sent_at=datetime.now(UTC))
    assert change_signature(base) == change_signature(later)  # the backlog grows all the time: not a change
    devices = [dict(status["devices"][0], state="silent")]  # type: ignore[index]
    moved = heartbeat_document(status | {"devices": devices}, online=True, sent_at=datetime.now(UTC))
    assert change_signature(base) != change_signature(moved)


def test_heartbeat_on_connect_on_change_and_offline_at_stop(
    tmp_path: Path, pki: Pki, broker: MosquittoBroker, store: BufferStore
) -> None:
    store.submit(make_readings(1, 5)).result(10)
    config = agent_config(tmp_path / "state", sync_config(pki, broker, heartbeat_s=3600))
    events = EventHub()
    device_state = {"state": "streaming"}

    def status() -> dict[str, object]:
        return full_status() | {"devices": [{"id": "oxi-1", "state": device_state["state"], "patient_id": SECRET}]}

    async def main() -> None:
        with MqttClient(broker, pki.hub("hub-1")) as hub:
            hub.subscribe(STATUS)
            async with running_sync(config, store, events=events, status=status) as part:
                first = decode_heartbeat(bytes((await asyncio.to_thread(hub.expect, 10)).payload))
                assert first["online"] is True and first["gateway_id"] == GW
                assert first["backlog"]["pending"] == 12  # type: ignore[index]
                assert 0 < first["certificate"]["days_left"] <= 825  # type: ignore[index]
                # the serial, for the hub's edge-hub prune --crl
                assert int(first["certificate"]["serial"], 16) == pki.gateway(GW).cert.serial_number  # type: ignore[index]
                assert first["clock"]["ntp"] in ("synchronized", "unsynchronized", "unknown")  # type: ignore[index]
                assert SECRET not in json.dumps(first)
                # a device changes state: a heartbeat follows at once, not in an hour
                device_state["state"] = "silent"
                events.publish(DeviceStateChanged("oxi-1", "silent", "", datetime.now(UTC)))
                changed = decode_heartbeat(bytes((await asyncio.to_thread(hub.expect, 5)).payload))
                assert changed["devices"] == [{"id": "oxi-1", "state": "silent"}]
                # a poke without a change publishes nothing (heartbeat_s is an hour)
                events.publish(DeviceStateChanged("oxi-1", "silent", "", datetime.now(UTC)))
                assert await asyncio.to_thread(hub.received_within, 1.5) == []
                assert part.heartbeat is not None and part.heartbeat.published >= 2
            last = decode_heartbeat(bytes(hub.expect(5).payload))  # the last one, at the clean stop
            assert last["online"] is False and last["gateway_id"] == GW
        with MqttClient(broker, pki.hub("hub-2")) as later:
            later.subscribe(STATUS)
            retained = later.expect(5)
            assert retained.retain and decode_heartbeat(bytes(retained.payload))["online"] is False

    asyncio.run(main())
