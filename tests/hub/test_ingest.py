"""The ingest logic without MQTT: real envelopes sealed by test gateways (wire + the test PKI),
a real store. Good batches are stored once and acked ok; every bad one is rejected, counted by
reason, logged without content and never stored; a rejected Ack only goes to an authenticated
gateway."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from device_drivers.records import Reading, Vital
from hub.errors import StoreError
from hub.ingest import IngestMetrics, Ingestor
from hub.store import HubStore, IngestResult, open_store
from tests.fixtures.pki import Pki
from tests.hub.helpers import reading, readings, sealed_alerts, sealed_readings
from wire import messages
from wire.messages import AlertRecord
from wire.topics import topic

GW = "gw-0001"
UP = topic("p01", GW, "up")
SECRET_PATIENT = "079085009999"


@pytest.fixture
def ingestor(store: HubStore, pki: Pki) -> Ingestor:
    return Ingestor(store, pki.hub_keys, pki.ca_certs)


@pytest.fixture
def sqlite_ingestor(tmp_path: Path, pki: Pki) -> Iterator[Ingestor]:
    with open_store(tmp_path / "hub") as s:
        yield Ingestor(s, pki.hub_keys, pki.ca_certs)


def patient_readings(n: int, gateway_id: str = GW, start: int = 0) -> list[Reading]:
    return [reading(gateway_id, i, value=91.0 + i % 5, patient_id=SECRET_PATIENT) for i in range(start, start + n)]


def test_a_good_batch_is_stored_and_acked_ok(ingestor: Ingestor, pki: Pki) -> None:
    batch_id, data = sealed_readings(pki, GW, patient_readings(20))
    ack = ingestor.handle(UP, data)
    assert ack is not None
    assert (ack.batch_id, ack.gateway_id, ack.lane, ack.status) == (batch_id, GW, "readings", "ok")
    assert (ack.stored, ack.duplicates) == (20, 0)
    assert ingestor.store.count_readings() == 20
    # the Ack verifies with the hub's public signing key
    decoded = messages.decode_ack(ingestor.sign(ack), pki.hub_public.signing)
    assert decoded.batch_id == batch_id and decoded.stored == 20


def test_the_same_batch_twice_is_stored_once_and_acked_twice(ingestor: Ingestor, pki: Pki) -> None:
    _, data = sealed_readings(pki, GW, patient_readings(10))
    first, second = ingestor.handle(UP, data), ingestor.handle(UP, data)
    assert first is not None and second is not None
    assert (first.status, first.stored, first.duplicates) == ("ok", 10, 0)
    assert (second.status, second.stored, second.duplicates) == ("ok", 0, 10)
    assert ingestor.store.count_readings() == 10
    m = ingestor.metrics
    assert (m.readings_stored_total, m.readings_duplicate_total) == (10, 10)


def test_a_replayed_old_batch_under_a_new_id_is_all_duplicates(sqlite_ingestor: Ingestor, pki: Pki) -> None:
    rs = patient_readings(5)
    sqlite_ingestor.handle(UP, sealed_readings(pki, GW, rs)[1])
    ack = sqlite_ingestor.handle(UP, sealed_readings(pki, GW, rs)[1])
    assert ack is not None and (ack.status, ack.stored, ack.duplicates) == ("ok", 0, 5)


def _assert_rejected(ing: Ingestor, topic_: str, data: bytes, reason: str, *, authenticated: bool) -> None:
    before = ing.store.count_readings()
    outcome = ing.process(topic_, data)
    assert outcome.kind == "rejected" and outcome.reason == reason, outcome
    assert ing.metrics.rejected_total[reason] >= 1
    assert ing.store.count_readings() == before, "a rejected batch is never stored"
    if authenticated:
        assert outcome.ack is not None and outcome.ack.status == "rejected" and outcome.ack.reason == reason
        assert (outcome.ack.stored, outcome.ack.duplicates) == (0, 0)
    else:
        assert outcome.ack is None, "silence for an unauthenticated sender"


def test_forged_batch_from_an_untrusted_ca_is_rejected_silently(sqlite_ingestor: Ingestor, pki: Pki) -> None:
    _, data = sealed_readings(pki, GW, patient_readings(3), identity=pki.foreign_gateway(GW))
    _assert_rejected(sqlite_ingestor, UP, data, "cert_untrusted", authenticated=False)


def test_expired_gateway_certificate_is_rejected_silently(sqlite_ingestor: Ingestor, pki: Pki) -> None:
    _, data = sealed_readings(pki, GW, patient_readings(3), identity=pki.expired_gateway(GW))
    _assert_rejected(sqlite_ingestor, UP, data, "cert_expired", authenticated=False)


def test_tampered_ciphertext_is_rejected_silently(sqlite_ingestor: Ingestor, pki: Pki) -> None:
    _, data = sealed_readings(pki, GW, patient_readings(3))
    for where in (len(data) - 80, len(data) // 2):
        tampered = bytearray(data)
        tampered[where] ^= 0x01
        outcome = sqlite_ingestor.process(UP, bytes(tampered))
        assert outcome.kind == "rejected" and outcome.ack is None
    assert sqlite_ingestor.store.count_readings() == 0
    assert sum(sqlite_ingestor.metrics.rejected_total.values()) == 2


def test_another_gateways_topic_is_rejected_and_the_signer_told(sqlite_ingestor: Ingestor, pki: Pki) -> None:
    """gw-0002 signs its own batch but publishes it under gw-0001's topic."""
    _, data = sealed_readings(pki, "gw-0002", patient_readings(3, "gw-0002"))
    outcome = sqlite_ingestor.process(UP, data)
    _assert_rejected(sqlite_ingestor, UP, data, "topic_mismatch", authenticated=True)
    assert outcome.ack_topic == topic("p01", "gw-0002", "ack")  # to the signer, not the topic's owner
    assert outcome.ack is not None and outcome.ack.gateway_id == "gw-0002"


def test_readings_with_another_gateways_uids_are_rejected(sqlite_ingestor: Ingestor, pki: Pki) -> None:
    poison = [reading("gw-0002", 1)]  # would make gw-0002's real reading 1 look like a duplicate
    _, data = sealed_readings(pki, GW, poison)
    _assert_rejected(sqlite_ingestor, UP, data, "foreign_uid", authenticated=True)


def test_inner_batch_id_or_gateway_differing_from_the_envelope_is_rejected(sqlite_ingestor: Ingestor, pki: Pki) -> None:
    _, data = sealed_readings(pki, GW, patient_readings(2), batch_id="b-outer", inner_batch_id="b-inner")
    _assert_rejected(sqlite_ingestor, UP, data, "batch_id_mismatch", authenticated=True)
    _, data = sealed_readings(pki, GW, patient_readings(2), inner_gateway_id="gw-0002")
    _assert_rejected(sqlite_ingestor, UP, data, "gateway_mismatch", authenticated=True)


def test_lane_of_envelope_must_match_the_topic(sqlite_ingestor: Ingestor, pki: Pki) -> None:
    _, data = sealed_readings(pki, GW, patient_readings(2), lane="alerts")
    _assert_rejected(sqlite_ingestor, UP, data, "lane_mismatch", authenticated=True)


def test_sealed_to_another_hub_is_rejected(sqlite_ingestor: Ingestor, pki: Pki) -> None:
    from provisioning.pki import new_hub_keys

    _, data = sealed_readings(pki, GW, patient_readings(2), hub_public=new_hub_keys().public())
    outcome = sqlite_ingestor.process(UP, data)
    assert outcome.kind == "rejected" and outcome.reason in {"bad_seal", "wrong_hub_key"}
    assert sqlite_ingestor.store.count_readings() == 0


@pytest.mark.parametrize(
    ("topic_", "reason"),
    [
        ("se/v1/p01/gw-0001", "bad_topic"),
        ("other/v1/p01/gw-0001/up", "bad_topic"),
        ("se/v1/p01/gw 0001/up", "bad_topic"),
        ("se/v1/p01/gw-0001/ack", "unexpected_topic"),
    ],
)
def test_bad_topics_are_rejected(sqlite_ingestor: Ingestor, pki: Pki, topic_: str, reason: str) -> None:
    _, data = sealed_readings(pki, GW, patient_readings(1))
    _assert_rejected(sqlite_ingestor, topic_, data, reason, authenticated=False)


@pytest.mark.parametrize("payload", [b"", b"garbage", b"{}", b"\x00" * 5000, b"x" * (5 * 1024 * 1024)])
def test_garbage_is_rejected_without_an_ack(sqlite_ingestor: Ingestor, payload: bytes) -> None:
    outcome = sqlite_ingestor.process(UP, payload)
    assert outcome.kind == "rejected" and outcome.ack is None and outcome.reason


def test_rejections_are_logged_in_one_line_without_content(
    sqlite_ingestor: Ingestor, pki: Pki, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="hub")
    _, good = sealed_readings(pki, GW, patient_readings(2))
    _, foreign = sealed_readings(pki, GW, [reading("gw-0002", 1, patient_id=SECRET_PATIENT)])
    sqlite_ingestor.handle(UP, good)
    sqlite_ingestor.handle(UP, foreign)
    sqlite_ingestor.handle(UP, b"\x01garbage " + SECRET_PATIENT.encode())
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 3
    assert all("\n" not in line for line in lines)
    assert lines[0].startswith("event=batch_stored")
    assert "event=batch_rejected reason=foreign_uid" in lines[1] and "authenticated=yes" in lines[1]
    assert "authenticated=no" in lines[2]
    for line in lines:
        assert SECRET_PATIENT not in line and "91.0" not in line


def test_alert_lane_keeps_the_highest_revision(sqlite_ingestor: Ingestor, pki: Pki) -> None:
    alert_topic = topic("p01", GW, "alert")
    r1 = AlertRecord("al-1", 1, {"kind": "news2", "level": "medium", "state": "raised", "subject": SECRET_PATIENT})
    r2 = replace(r1, rev=2, payload={**r1.payload, "level": "high", "state": "escalated"})
    ack1 = sqlite_ingestor.handle(alert_topic, sealed_alerts(pki, GW, [r1])[1])
    ack2 = sqlite_ingestor.handle(alert_topic, sealed_alerts(pki, GW, [r2, r1])[1])
    ack3 = sqlite_ingestor.handle(alert_topic, sealed_alerts(pki, GW, [r1])[1])
    assert ack1 is not None and (ack1.lane, ack1.status, ack1.stored) == ("alerts", "ok", 1)
    assert ack2 is not None and (ack2.stored, ack2.duplicates) == (1, 1)
    assert ack3 is not None and (ack3.stored, ack3.duplicates) == (0, 1)
    [stored] = sqlite_ingestor.store.alerts()
    assert (stored.rev, stored.payload["level"]) == (2, "high")
    # an alert batch on the readings topic: lane mismatch
    _assert_rejected(sqlite_ingestor, UP, sealed_alerts(pki, GW, [r1])[1], "lane_mismatch", authenticated=True)


def test_status_heartbeats_and_the_last_will_feed_the_registry(sqlite_ingestor: Ingestor) -> None:
    status = topic("p01", GW, "status")
    beat = messages.encode_heartbeat({"online": True, "backlog": 12, "agent_version": "0.1.0"})
    assert sqlite_ingestor.process_status(status, beat).kind == "stored"
    [g] = sqlite_ingestor.store.gateways()
    assert (g.gateway_id, g.province, g.online, g.status["backlog"]) == (GW, "p01", True, 12)
    sqlite_ingestor.process_status(status, messages.OFFLINE_WILL)
    [g] = sqlite_ingestor.store.gateways()
    assert g.online is False
    assert sqlite_ingestor.process_status(status, b"").kind == "ignored"
    assert sqlite_ingestor.process_status(status, b"not json").kind == "rejected"
    assert sqlite_ingestor.process_status(topic("p01", GW, "up"), beat).reason == "unexpected_topic"
    assert sqlite_ingestor.metrics.status_total == 2
    assert sum(sqlite_ingestor.metrics.status_rejected_total.values()) == 2


class _FailingStore:
    """A store whose writes fail (the database is away)."""

    def __init__(self, inner: HubStore) -> None:
        self.inner = inner

    def ingest(self, *a: object, **kw: object) -> IngestResult:
        raise StoreError("database away")

    def count_readings(self) -> int:
        return self.inner.count_readings()


def test_a_store_failure_raises_and_is_not_a_rejection(tmp_path: Path, pki: Pki) -> None:
    with open_store(tmp_path / "hub") as s:
        ing = Ingestor(_FailingStore(s), pki.hub_keys, pki.ca_certs)  # type: ignore[arg-type]
        _, data = sealed_readings(pki, GW, patient_readings(2))
        with pytest.raises(StoreError):
            ing.handle(UP, data)
        assert ing.metrics.store_errors_total == 1
        assert not ing.metrics.rejected_total
        # the database is back: the same message (redelivered) is stored
        ok = Ingestor(s, pki.hub_keys, pki.ca_certs).handle(UP, data)
        assert ok is not None and ok.stored == 2


def test_metric_names_follow_prometheus_conventions(sqlite_ingestor: Ingestor, pki: Pki) -> None:
    sqlite_ingestor.handle(UP, sealed_readings(pki, GW, readings(GW, range(3)))[1])
    sqlite_ingestor.handle(UP, b"junk")
    samples = list(sqlite_ingestor.metrics.samples())
    assert all(name.startswith("hub_") and name.endswith("_total") for name, _, _ in samples)
    assert all(set(labels) <= {"lane", "outcome", "reason"} for _, labels, _ in samples)
    doc = sqlite_ingestor.metrics.to_json()
    assert doc["hub_readings_stored_total"] == 3
    assert isinstance(IngestMetrics().to_json(), dict)


def test_value_checks_all_vitals_round_trip(sqlite_ingestor: Ingestor, pki: Pki) -> None:
    rs = [reading(GW, i, vital=v, value=50.0) for i, v in enumerate(Vital)]
    ack = sqlite_ingestor.handle(UP, sealed_readings(pki, GW, rs)[1])
    assert ack is not None and ack.stored == len(rs)
    got = {s.reading.uid: s.reading for s in sqlite_ingestor.store.iter_readings()}
    assert {u: r.to_json() for u, r in got.items()} == {r.uid: r.to_json() for r in rs}
