"""Serial transport over pyserial: opens a port by stable path, USB VID:PID or pyserial URL.

Port strings (STYLE.md, pyserial ``serial_for_url``):

* ``/dev/serial/by-id/usb-FTDI_...`` or any device path (a stable by-id path survives replugging
  into another USB socket; ``/dev/ttyUSB0`` does not);
* ``usb:0403:6001`` (VID:PID, optionally ``usb:0403:6001:SERIALNO``): the first matching port;
* a pyserial URL: ``socket://host:port``, ``rfc2217://...``, ``loop://``, ``spy:///dev/ttyUSB0``
  (hex dump of the traffic to stderr, for a technician debugging a cable).

The transport only moves bytes: reconnecting, backoff and the "silent" state belong to the
agent's device session.

Reads come in chunks (issue 14): after the first byte, ``read`` waits ``chunk_s`` (250 ms) and
takes everything that arrived meanwhile, so a device sending 75 frames a second costs the agent
four thread and loop wake-ups a second, not 75. A local port (a file descriptor) is read with
``select`` and ``os.read`` directly, a few system calls per chunk; while bytes keep coming it
sleeps ``chunk_s`` and reads what arrived, one wake-up per chunk instead of two (the ``select``
and the sleep); when a chunk finds nothing it waits in ``select`` again. pyserial URLs go through
pyserial. The chunk is at most ``chunk_s`` late, well
inside one scoring cycle; the parsers give the same readings whatever the chunking.
"""

from __future__ import annotations

import contextlib
import os
import select
import time

import serial
import serial.tools.list_ports

from device_drivers.base import TransportError
from device_drivers.registry import SerialSettings

READ_TIMEOUT_S = 0.5
CHUNK_S = 0.25  # bytes collected after the first one, per read (100-250 ms: issue 14)


def resolve_port(port: str) -> str:
    """Turn ``usb:VID:PID[:SERIAL]`` into a device path; other strings pass through."""
    if not port.startswith("usb:"):
        return port
    parts = port.split(":")[1:]
    if len(parts) not in (2, 3):
        raise TransportError(f"bad USB port spec {port!r}; expected usb:VID:PID or usb:VID:PID:SERIAL")
    try:
        vid, pid = int(parts[0], 16), int(parts[1], 16)
    except ValueError:
        raise TransportError(f"bad USB port spec {port!r}; VID and PID are hex") from None
    serial_no = parts[2] if len(parts) == 3 else None
    for info in sorted(serial.tools.list_ports.comports(), key=lambda p: p.device):
        if info.vid == vid and info.pid == pid and (serial_no is None or info.serial_number == serial_no):
            return str(info.device)
    raise TransportError(f"no USB serial device {parts[0]}:{parts[1]} is plugged in")


class SerialLink:
    """An open port. ``read`` returns ``chunk_s`` after the first byte arrives with everything
    received by then (or ``b""`` after the timeout) and raises :class:`TransportError` when the
    device is gone."""

    def __init__(
        self, port: str, settings: SerialSettings, *, baudrate: int | None = None, chunk_s: float = CHUNK_S
    ) -> None:
        self.port = port
        self.chunk_s = chunk_s
        path = resolve_port(port)
        try:
            self._serial = serial.serial_for_url(
                path,
                baudrate=baudrate or settings.baudrate,
                bytesize=settings.bytesize,
                parity=settings.parity,
                stopbits=settings.stopbits,
                xonxoff=settings.xonxoff,
                timeout=READ_TIMEOUT_S,
                exclusive=True if "://" not in path else None,
            )
        except (serial.SerialException, OSError, ValueError) as exc:
            raise TransportError(f"cannot open {port}: {exc}") from exc
        fileno = getattr(self._serial, "fileno", None)
        self._fd: int | None = None
        if "://" not in path and fileno is not None:
            with contextlib.suppress(Exception):
                self._fd = int(fileno())  # pyserial opens it O_NONBLOCK
        self._streaming = False  # the last local read returned bytes: collect the next by sleeping

    def read(self, size: int = 4096) -> bytes:
        if self._fd is not None:
            return self._read_fd(self._fd, size)
        try:
            first = bytes(self._serial.read(1))
        except (serial.SerialException, OSError) as exc:
            raise TransportError(f"{self.port}: device lost ({exc})") from exc
        if not first:
            return b""
        if self.chunk_s > 0:
            time.sleep(self.chunk_s)  # one wake-up per chunk, not per frame (module docstring)
        try:
            waiting = int(self._serial.in_waiting)
            return first + (bytes(self._serial.read(min(waiting, size - 1))) if waiting else b"")
        except (serial.SerialException, OSError):
            return first  # lost while collecting: these bytes still count, the next read reports the loss

    def _read_fd(self, fd: int, size: int) -> bytes:
        """The same as pyserial's read for a local port, without its per-byte-arrival loop."""
        try:
            ready: list[int] = []
            if self._streaming:  # bytes keep coming: one wake-up per chunk (module docstring)
                time.sleep(self.chunk_s)
                ready, _, _ = select.select([fd], [], [], 0)
            if not ready:
                self._streaming = False
                ready, _, _ = select.select([fd], [], [], READ_TIMEOUT_S)
                if not ready:
                    return b""
                if self.chunk_s > 0:
                    time.sleep(self.chunk_s)  # one wake-up per chunk, not per frame (module docstring)
            data = os.read(fd, size)
        except BlockingIOError:
            return b""
        except OSError as exc:  # EIO: a pty's other side or a USB adapter is gone
            raise TransportError(f"{self.port}: device lost ({exc})") from exc
        except ValueError as exc:  # closed meanwhile
            raise TransportError(f"{self.port}: port closed ({exc})") from exc
        if not data:  # readable but nothing to read: hung up (pyserial says the same)
            raise TransportError(f"{self.port}: device lost (readable but returned no data)")
        self._streaming = self.chunk_s > 0
        return data

    def write(self, data: bytes) -> int:
        try:
            return int(self._serial.write(data) or 0)
        except (serial.SerialException, OSError) as exc:
            raise TransportError(f"{self.port}: write failed ({exc})") from exc

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._serial.close()
