"""contec-cms50 legacy stream: protocols.md §2.3 examples, decimation, probe off, resync."""

from device_drivers import encoders as enc
from device_drivers.contec_cms50 import LOCK_FRAMES, PACKETS_PER_READING, ContecCms50Parser
from device_drivers.records import Vital


def test_protocols_examples() -> None:
    assert enc.contec_packet(72, 97, signal=4, pleth=0x3A, bar=5) == bytes.fromhex("84 3A 05 48 61")
    assert enc.contec_packet(150, 95, signal=4, beat=True, pleth=0x50, bar=6) == bytes.fromhex("C4 50 46 16 5F")
    out = ContecCms50Parser().feed(bytes.fromhex("84 3A 05 48 61"))
    assert {(m.vital, m.value) for m in out} == {(Vital.HEART_RATE, 72), (Vital.SPO2, 97)}
    out = ContecCms50Parser().feed(bytes.fromhex("C4 50 46 16 5F"))
    assert {(m.vital, m.value) for m in out} == {(Vital.HEART_RATE, 150), (Vital.SPO2, 95)}


def test_decimation_sixty_packets_per_reading() -> None:
    p = ContecCms50Parser()
    stream = b"".join(enc.contec_packet(60 + i // PACKETS_PER_READING, 97) for i in range(3 * PACKETS_PER_READING))
    out = p.feed(stream)
    assert [m.value for m in out if m.vital is Vital.HEART_RATE] == [60, 61, 62]


def test_finger_out_no_reading_counted_once_per_window() -> None:
    p = ContecCms50Parser()
    assert p.feed(enc.contec_packet(127, 127, finger_out=True) * PACKETS_PER_READING * 2) == []
    assert p.stats.rejected["probe_off"] == 4  # 2 vitals x 2 windows


def test_searching_and_probe_error_and_missing() -> None:
    p = ContecCms50Parser()
    assert p.feed(enc.contec_packet(72, 97, searching=True)) == []
    p = ContecCms50Parser()
    assert p.feed(enc.contec_packet(72, 97, probe_error=True)) == []
    assert p.stats.rejected["probe_error"] == 2
    p = ContecCms50Parser()
    assert [m.vital for m in p.feed(enc.contec_packet(255, 96))] == [Vital.SPO2]


def test_finger_inserted_mid_window() -> None:
    p = ContecCms50Parser()
    out = p.feed(enc.contec_packet(0, 0, finger_out=True) * 10 + enc.contec_packet(88, 94))
    assert {(m.vital, m.value) for m in out} == {(Vital.HEART_RATE, 88), (Vital.SPO2, 94)}


def test_resync_after_garbage() -> None:
    # After garbage the parser accepts packets only once LOCK_FRAMES follow each other (it
    # used to accept a single packet: this test fed one; by the lock-on rule it needs five).
    p = ContecCms50Parser()
    assert p.feed(b"\x01\x02\xff\xfe" + enc.contec_packet(72, 97) * (LOCK_FRAMES - 1)) == []
    out = p.feed(enc.contec_packet(72, 97))
    assert len(out) == 2 and p.stats.rejected["sync_lost"] == 1 and p.stats.bytes_discarded == 4
    assert p.stats.frames_ok == LOCK_FRAMES


def test_spo2_dropping_in_extra() -> None:
    (m, _) = ContecCms50Parser().feed(enc.contec_packet(72, 97, spo2_dropping=True))
    assert ("spo2_dropping", True) in m.extra
