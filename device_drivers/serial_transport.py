"""Serial transport over pyserial: opens a port by stable path, USB VID:PID or pyserial URL.

Port strings (STYLE.md, pyserial ``serial_for_url``):

* ``/dev/serial/by-id/usb-FTDI_...`` or any device path (a stable by-id path survives replugging
  into another USB socket; ``/dev/ttyUSB0`` does not);
* ``usb:0403:6001`` (VID:PID, optionally ``usb:0403:6001:SERIALNO``): the first matching port;
* a pyserial URL: ``socket://host:port``, ``rfc2217://...``, ``loop://``, ``spy:///dev/ttyUSB0``
  (hex dump of the traffic to stderr, for a technician debugging a cable).

The transport only moves bytes: reconnecting, backoff and the "silent" state belong to the
agent's device session.
"""

from __future__ import annotations

import contextlib

import serial
import serial.tools.list_ports

from device_drivers.base import TransportError
from device_drivers.registry import SerialSettings

READ_TIMEOUT_S = 0.5


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
    """An open port. ``read`` returns as soon as bytes arrive (or ``b""`` after the timeout) and
    raises :class:`TransportError` when the device is gone."""

    def __init__(self, port: str, settings: SerialSettings, *, baudrate: int | None = None) -> None:
        self.port = port
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

    def read(self, size: int = 4096) -> bytes:
        try:
            first = bytes(self._serial.read(1))
            if not first:
                return b""
            waiting = int(self._serial.in_waiting)
            return first + (bytes(self._serial.read(min(waiting, size - 1))) if waiting else b"")
        except (serial.SerialException, OSError) as exc:
            raise TransportError(f"{self.port}: device lost ({exc})") from exc

    def write(self, data: bytes) -> int:
        try:
            return int(self._serial.write(data) or 0)
        except (serial.SerialException, OSError) as exc:
            raise TransportError(f"{self.port}: write failed ({exc})") from exc

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._serial.close()
