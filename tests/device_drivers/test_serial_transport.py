"""The serial transport against a simulator on a real pseudo-terminal: read, unplug, replug."""

from __future__ import annotations

import os
import threading
import time

import pytest

from device_drivers.base import TransportError
from device_drivers.masimo_ascii import MasimoAsciiParser
from device_drivers.registry import SerialSettings, get_format
from device_drivers.serial_transport import SerialLink, resolve_port
from device_drivers.simulators import PtySimulator

SETTINGS = get_format("masimo-ascii").serial or SerialSettings()


def read_for(link: SerialLink, seconds: float) -> bytes:
    data = b""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        data += link.read(4096)
    return data


def test_reads_lines_from_the_pty(masimo_sim: PtySimulator) -> None:
    link = SerialLink(str(masimo_sim.link), SETTINGS)
    try:
        out = MasimoAsciiParser().feed(read_for(link, 0.5))
    finally:
        link.close()
    assert len(out) >= 3  # 20x pace: ~10 lines of 3 readings in 0.5 s


def test_unplug_raises_and_replug_reopens_the_same_path(masimo_sim: PtySimulator) -> None:
    link = SerialLink(str(masimo_sim.link), SETTINGS)
    assert read_for(link, 0.2)
    masimo_sim.unplug()
    with pytest.raises(TransportError, match="device lost"):
        read_for(link, 1.0)
    link.close()
    with pytest.raises(TransportError, match="cannot open"):
        SerialLink(str(masimo_sim.link), SETTINGS)
    masimo_sim.replug()
    link = SerialLink(str(masimo_sim.link), SETTINGS)
    try:
        assert MasimoAsciiParser().feed(read_for(link, 0.5))
    finally:
        link.close()


def test_pyserial_urls_pass_through() -> None:
    link = SerialLink("loop://", SETTINGS)
    try:
        link.write(b"05/14/25 09:12:03 SPO2=096% BPM=081\r\n")
        assert MasimoAsciiParser().feed(read_for(link, 0.2))[0].value == 96.0
    finally:
        link.close()


@pytest.mark.parametrize("spec", ["usb:0403", "usb:zz:6001", "usb:0403:6001:a:b"])
def test_bad_usb_specs_are_clear_errors(spec: str) -> None:
    with pytest.raises(TransportError, match="USB port spec"):
        resolve_port(spec)


def test_absent_usb_device_is_a_clear_error() -> None:
    with pytest.raises(TransportError, match="no USB serial device 0403:6001"):
        resolve_port("usb:0403:6001")


def test_a_stream_is_read_in_chunks_with_one_wake_up_each_and_a_lone_byte_is_not_late() -> None:
    """Issue 14: while bytes keep coming the link sleeps a chunk and reads; when a chunk finds
    nothing it waits in select again, so a byte after a pause is at most one chunk late."""
    master, slave = os.openpty()
    link = SerialLink(os.ttyname(slave), SETTINGS, chunk_s=0.1)
    stop = threading.Event()

    def device() -> None:
        while not stop.is_set():
            os.write(master, b"x")
            time.sleep(0.01)

    t = threading.Thread(target=device, daemon=True)
    try:
        t.start()
        assert link.read(4096)  # the first chunk (select, then the chunk)
        sizes = [len(link.read(4096)) for _ in range(8)]
        assert link._streaming and all(n >= 4 for n in sizes), sizes  # ~10 bytes per 100 ms chunk
        stop.set()
        t.join()
        tail = [link.read(4096) for _ in range(3)]  # the stream's tail, then nothing
        assert tail[-1] == b"" and not link._streaming  # back to waiting in select, which timed out
        threading.Timer(0.2, os.write, (master, b"y")).start()
        t0 = time.monotonic()
        assert link.read(4096) == b"y"
        assert time.monotonic() - t0 < 0.2 + 0.1 + 0.15  # when it came, plus at most one chunk
    finally:
        stop.set()
        link.close()
        os.close(master)
        os.close(slave)
