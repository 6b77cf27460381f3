"""Pure parts of the store: envelope, codec, space policy, keystore file, writer queue."""

from __future__ import annotations

import dataclasses
import json
import os
import threading
import zlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from device_drivers.records import Quality, Reading, Vital
from edge_agent.store import Cipher, KeystoreError, TamperError, choose_cipher, codec, cpu_has_aes, policy
from edge_agent.store.alert_zdict import ALERT_ZDICT_1, ALERT_ZDICT_1_ID
from edge_agent.store.envelope import Sealer, aad, patient_index, reading_aad
from edge_agent.store.keystore import Keystore
from edge_agent.store.writer import GroupCommitWriter

from .conftest import GW, T0, make_reading, spot

# --- envelope -----------------------------------------------------------------------------------


def test_cpu_detection_x86_and_arm() -> None:
    assert cpu_has_aes("processor : 0\nflags : fpu sse2 aes avx2\n")
    assert cpu_has_aes("Features : fp asimd evtstrm aes pmull sha1 sha2 crc32\n")  # Cortex-A53/A76 with crypto ext.
    assert not cpu_has_aes("Features : fp asimd evtstrm crc32 cpuid\n")  # Raspberry Pi 4 (Cortex-A72, no crypto ext.)
    assert not cpu_has_aes("flags : fpu sse2 aesni-not-a-flag\n")
    assert choose_cipher(cpuinfo="Features : fp asimd crc32\n") is Cipher.CHACHA20_POLY1305
    assert choose_cipher(cpuinfo="flags : aes\n") is Cipher.AES_256_GCM
    assert choose_cipher("chacha") is Cipher.CHACHA20_POLY1305
    with pytest.raises(ValueError):
        choose_cipher("rot13")


@pytest.mark.parametrize("cipher", list(Cipher))
def test_seal_open_and_every_kind_of_tamper(cipher: Cipher) -> None:
    s = Sealer()
    s.set_keys({1: os.urandom(32), 2: os.urandom(32)})
    ad = aad("readings", GW, 7, (1, 2))
    sealed = s.seal(1, cipher, b"hello", ad)
    assert s.open(1, cipher, sealed, ad, table="t", row="7") == b"hello"
    assert s.seal(1, cipher, b"hello", ad) != sealed  # random nonce
    for bad_ad in (aad("readings", GW, 8, (1, 2)), aad("readings", "gw-x", 7, (1, 2)), aad("alerts", GW, 7, (1, 2))):
        with pytest.raises(TamperError):
            s.open(1, cipher, sealed, bad_ad, table="t", row="7")
    with pytest.raises(TamperError):
        s.open(2, cipher, sealed, ad, table="t", row="7")  # wrong key
    flipped = bytearray(sealed)
    flipped[15] ^= 0x80
    for bad in (bytes(flipped), sealed[:-1], sealed[:10]):
        with pytest.raises(TamperError):
            s.open(1, cipher, bad, ad, table="t", row="7")


def test_fast_reading_aad_equals_generic() -> None:
    pidx = b"\x01\x02"
    assert reading_aad(GW, 5, 2, 10, 11, "dev", pidx, 3, 1) == aad("readings", GW, 5, (2, 10, 11, "dev", pidx, 3, 1))
    assert reading_aad(GW, 5, 2, 10, 11, "dev", None, 3, 1) == aad("readings", GW, 5, (2, 10, 11, "dev", None, 3, 1))


def test_patient_index_is_keyed() -> None:
    k1, k2 = os.urandom(32), os.urandom(32)
    assert patient_index(k1, "P1") == patient_index(k1, "P1")
    assert patient_index(k1, "P1") != patient_index(k2, "P1")
    assert patient_index(k1, "P1") != patient_index(k1, "P2")
    assert b"P1" not in patient_index(k1, "P1")


# --- codec --------------------------------------------------------------------------------------

_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)
_scalar = st.one_of(st.integers(-(2**53), 2**53), st.booleans(), _text, st.floats(allow_nan=False))
_times = st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC))


@given(
    seq=st.integers(1, 2**62),
    vital=st.sampled_from(list(Vital)),
    value=st.floats(allow_nan=False),
    measured=_times,
    received=_times,
    device=_text,
    pid=st.one_of(st.none(), _text),
    flags=st.frozensets(st.sampled_from(list(Quality))),
    extra=st.lists(st.tuples(_text, _scalar), max_size=3).map(tuple),
    clock=st.booleans(),
    uid_override=st.booleans(),
)
def test_codec_round_trip(
    seq: int,
    vital: Vital,
    value: float,
    measured: datetime,
    received: datetime,
    device: str,
    pid: str | None,
    flags: frozenset[Quality],
    extra: tuple[tuple[str, object], ...],
    clock: bool,
    uid_override: bool,
) -> None:
    r = Reading(
        uid=f"other:{seq}" if uid_override else f"{GW}:{seq}",
        seq=seq,
        vital=vital,
        value=value,
        unit="x",
        measured_at=measured,
        received_at=received,
        device_id=device,
        source_format="fmt",
        clock_from_device=clock,
        patient_id=pid,
        flags=flags,
        extra=extra,  # type: ignore[arg-type]
    )
    clear, plain = codec.reading_to_parts(r, GW)
    back = codec.reading_from_parts(clear, plain, GW)
    assert back == r
    assert back.measured_at.utcoffset() == timedelta(0)


@given(
    seq=st.integers(1, 10**6),
    fmt=_text,
    flags=st.frozensets(st.sampled_from(list(Quality))),
    uid=st.sampled_from(["{gw}:{seq}", "{gw}2:{seq}", "{gw}:{seq}0", "x{gw}:{seq}", "{seq}"]),
    pid=st.one_of(st.none(), _text),
)
def test_the_fast_plaintext_decodes_like_the_generic_body(
    seq: int, fmt: str, flags: frozenset[Quality], uid: str, pid: str | None
) -> None:
    """The hot path (cached format and flag texts, issue 14) means what the generic encoder writes."""
    base = make_reading(seq, source_format=fmt, patient_id=pid)
    r = dataclasses.replace(base, flags=flags, uid=uid.format(gw=GW, seq=seq))
    clear, fast = codec.reading_to_parts(r, GW)
    generic = codec._dumps(codec._body(r, GW)).encode()
    cols = (clear.seq, clear.measured_us, clear.received_us, clear.vital, clear.device_id)
    assert codec.reading_from_row(*cols, fast, GW) == r == codec.reading_from_row(*cols, generic, GW)
    assert ("id" in json.loads(codec.payload_json(fast))) == (r.uid != f"{GW}:{seq}")
    assert codec.reading_plaintext(r, GW) == fast  # the second time from the caches: the same bytes


@given(st.text(max_size=300))
def test_tokenising_is_undone_exactly(text: str) -> None:
    """Any text without control characters (compact JSON never writes them raw) comes back."""
    text = "".join(c for c in text if c >= " ")
    assert codec.payload_json(codec.tokenize('{"v":' + text).encode()) == '{"v":' + text


def test_payloads_are_tokenised_and_older_plain_json_rows_still_open() -> None:
    """Issue 14: the demo's readings as the station stores them, about 60 % smaller."""
    r = dataclasses.replace(
        make_reading(7, patient_id="local:DEMO-001"),
        flags=frozenset({Quality.CLOCK_UNSYNCED}),
        extra=(("device_time", "05/14/25 09:00:00"), ("exc", 2048), ("alarm", 0), ("sn", "0000012345")),
    )
    clear, plain = codec.reading_to_parts(r, GW)
    legacy = codec._dumps(codec._body(r, GW)).encode()  # a row written before the tokens
    assert plain[:1] == b"\x01" and legacy[:1] == b"{"
    assert len(legacy) >= 145 and len(plain) <= 64, (len(legacy), len(plain))
    assert codec.reading_from_parts(clear, plain, GW) == r == codec.reading_from_parts(clear, legacy, GW)
    assert json.loads(codec.payload_json(plain))["x"] == json.loads(legacy)["x"]
    assert len(codec.PAYLOAD_TOKENS) <= 31 and codec.PAYLOAD_TOKENS[0] == '{"v":'  # file format


def test_alert_payloads_are_compressed_and_older_json_rows_still_open() -> None:
    msg = "NEWS2 3 (nguy cơ thấp–trung bình); 3 điểm: SpO2 / NEWS2 3 (low-medium risk); 3 points: SpO2"
    payload: dict[str, object] = {"alert_id": "a" * 32, "message": msg, "inputs": {"spo2": 90, "hr": 83} | {}}
    payload["causes"] = [{"code": f"c{i}", "points": i, "text": msg} for i in range(4)]
    plain = codec.alert_plaintext(payload)
    legacy = codec._dumps(payload).encode()
    assert plain[:1] == b"x" and len(plain) < len(legacy) / 2
    assert codec.alert_from_plaintext(plain) == payload == codec.alert_from_plaintext(legacy)
    for bad in (plain[:-3], b"x" + b"\0" * 20, zlib.compress(b"[1]")):
        with pytest.raises(ValueError):
            codec.alert_from_plaintext(bad)


# an alert record as the demo's PEWS scorer wrote it (2026-12-01), 1,322 B of JSON
DEMO_ALERT: dict[str, object] = {
    "alert_id": "25295e7f907a4048854ae7e387a2bc5f", "subject": "local:DEMO-CHILD", "kind": "pews",
    "level": "low", "state": "raised",
    "message": "PEWS ≥ 1, chưa đủ: nhịp thở, SpO2, nhịp tim, huyết áp tâm thu (tối thiểu mức thấp); mức độ suy hô "
    "hấp nhẹ, lưu lượng oxy 0 lít/phút, thời gian đổ đầy mao mạch 2 giây, ý thức A; báo điều dưỡng phụ trách; đánh "
    "giá lại trong 60 phút; PEWS chưa được thẩm định ngoài bệnh viện: dùng để quyết định chuyển tuyến / PEWS at "
    "least 1, missing: respiration rate, SpO2, heart rate, systolic BP (at least low); respiratory distress mild, "
    "oxygen flow 0 L/min, capillary refill time 2 s, consciousness A; inform the nurse in charge; reassess within "
    "60 minutes; PEWS is not validated before hospital: use it to guide referral",
    "raised_at": "2026-12-01T21:58:04.339637+00:00", "score": 1.0, "partial": True,
    "inputs": [["resp_distress", 1.0, "manual"], ["o2_flow", 0.0, "manual"], ["cap_refill", 2.0, "manual"]],
    "model": "pews@1.0.0", "updated_at": "2026-12-01T21:58:04.339637+00:00",
    "notified_at": "2026-12-01T21:58:04.339637+00:00", "acknowledged": False, "acks": [],
    "missing": ["resp_rate", "spo2", "heart_rate", "bp_systolic"], "causes": ["resp_distress"],
    "cleared_at": None, "clear_reason": "", "open": True,
}  # fmt: skip


def test_alert_payloads_use_the_frozen_preset_dictionary() -> None:
    plain = codec.alert_plaintext(DEMO_ALERT)
    before = zlib.compress(codec._dumps(DEMO_ALERT).encode(), 9)  # a row written before the dictionary
    # one 512 B page with the row's other columns, where plain zlib needed an overflow page
    assert len(plain) <= 330 < 700 <= len(before), (len(plain), len(before))
    assert plain[1] & 0x20 and int.from_bytes(plain[2:6], "big") == ALERT_ZDICT_1_ID
    assert codec.alert_from_plaintext(plain) == DEMO_ALERT == codec.alert_from_plaintext(before)
    assert ALERT_ZDICT_1_ID == 0x92AFC371 and len(ALERT_ZDICT_1) == 4925  # file format: never edited
    other = zlib.compressobj(9, zlib.DEFLATED, 15, 9, zlib.Z_DEFAULT_STRATEGY, b"another dictionary")
    unknown = other.compress(b"{}") + other.flush()
    with pytest.raises(ValueError, match="unknown preset dictionary"):
        codec.alert_from_plaintext(unknown)
    with pytest.raises(ValueError):
        codec.alert_from_plaintext(plain[:1] + bytes([plain[1] ^ 0x20]) + plain[2:])  # header says no dict


def test_codec_keeps_identifiers_out_of_clear_columns() -> None:
    clear, plain = codec.reading_to_parts(make_reading(3, patient_id="SECRET"), GW)
    assert "SECRET" not in repr(clear) and b"SECRET" in plain


def test_vital_codes_are_stable_and_complete() -> None:
    assert set(codec.VITAL_CODES) == set(Vital)
    assert codec.VITAL_CODES[Vital.HEART_RATE] == 1 and codec.VITAL_CODES[Vital.PERFUSION_INDEX] == 10
    assert codec.from_us(codec.to_us(T0)) == T0
    assert codec.to_us(datetime(1970, 1, 1, 0, 0, 1)) == 1_000_000  # naive = UTC


# --- policy ---------------------------------------------------------------------------------------


def test_levels() -> None:
    p = policy.SpacePolicy(quota_bytes=1000, reserve_bytes=400)
    assert p.level(100, None) is policy.Level.NORMAL
    assert p.level(900, None) is policy.Level.PRESSURE
    assert p.level(1000, None) is policy.Level.FULL
    assert p.level(1050, None) is policy.Level.CRITICAL
    assert p.level(100, 399) is policy.Level.PRESSURE
    assert p.level(100, 99) is policy.Level.FULL


def test_plan_downsamples_streams_keeps_spot_checks() -> None:
    batch = [make_reading(i, at=T0 + timedelta(seconds=i)) for i in range(1, 181)] + [spot(500)]
    last: dict[tuple[str, str], int] = {}
    plan = policy.plan_batch(batch, policy.Level.PRESSURE, last, downsample_s=60)
    kept = [batch[i] for i in plan.keep]
    assert [r.seq for r in kept] == [1, 61, 121, 500]
    assert plan.reason == "downsampled" and len(plan.drop) == 177
    plan = policy.plan_batch(batch, policy.Level.FULL, {}, downsample_s=60)
    assert [batch[i].seq for i in plan.keep] == [500]
    plan = policy.plan_batch(batch, policy.Level.CRITICAL, {}, downsample_s=60)
    assert plan.keep == () and plan.reason == "quota"
    assert policy.plan_batch(batch, policy.Level.NORMAL, {}, 60).drop == ()


# --- keystore -----------------------------------------------------------------------------------


def test_keystore_create_rotate_destroy_persist(tmp_path: Path) -> None:
    p = tmp_path / "ks.json"
    t0 = datetime(2031, 5, 6, 7, 8, 9, tzinfo=UTC)
    ks = Keystore.open(p, now=t0)
    assert p.stat().st_mode & 0o777 == 0o600 and ks.current_id == 1
    assert ks.current_key_created == t0  # stamped by the caller's clock, never the wall clock
    k1 = ks.keys[1].key
    t1 = t0 + timedelta(days=1)
    assert ks.rotate(t1) == 2 and ks.destroy([2], t1) == []  # the current key cannot be destroyed
    assert ks.destroy([1], t1) == [1]
    again = Keystore.open(p, now=t1)
    assert again.keys[2].created == t1 and again.destroyed[1] == t1
    assert set(again.keys) == {2} and 1 in again.destroyed and again.index_key == ks.index_key
    assert k1.hex() not in p.read_text() and p.stat().st_mode & 0o777 == 0o600


def test_keystore_malformed(tmp_path: Path) -> None:
    p = tmp_path / "ks.json"
    fd = os.open(p, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, b"{not json")
    os.close(fd)
    with pytest.raises(KeystoreError, match="malformed"):
        Keystore.open(p, now=datetime(2030, 1, 1, tzinfo=UTC))


# --- writer queue --------------------------------------------------------------------------------


def test_writer_orders_commands_after_earlier_readings() -> None:
    seen: list[object] = []
    gate = threading.Event()

    def commit(batch: list[Reading]) -> list[bool]:
        gate.wait(5)
        seen.append(tuple(r.seq for r in batch))
        return [r.seq % 2 == 1 for r in batch]

    w = GroupCommitWriter(commit, window_s=10.0, max_batch=100)
    w.start()
    f1 = w.submit([make_reading(1), make_reading(2)])
    f2 = w.submit([make_reading(3)])
    gate.set()

    def cmd() -> int:
        seen.append("cmd")
        return 42

    assert w.call(cmd) == 42  # cuts the 10 s window short
    assert seen == [(1, 2, 3), "cmd"]
    assert f1.result().stored == (f"{GW}:1",) and f1.result().dropped == (f"{GW}:2",)
    assert f2.result().stored == (f"{GW}:3",)
    w.stop(5)


def test_writer_survives_a_failing_batch() -> None:
    calls = []

    def commit(batch: list[Reading]) -> list[bool]:
        calls.append(len(batch))
        if len(calls) == 1:
            raise RuntimeError("boom")
        return [True] * len(batch)

    w = GroupCommitWriter(commit, window_s=0.0)
    w.start()
    with pytest.raises(Exception, match="boom"):
        w.submit([make_reading(1)]).result(5)
    assert w.submit([make_reading(2)]).result(5).stored == (f"{GW}:2",)
    w.stop(5)
    assert calls == [1, 1]
