"""The systemd notify protocol over a real AF_UNIX datagram socket."""

from __future__ import annotations

import socket
from pathlib import Path

from edge_agent.sdnotify import Notifier


def test_messages_reach_the_socket(tmp_path: Path) -> None:
    path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(str(path))
        server.settimeout(2)
        n = Notifier({"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "10000000"})
        assert n.enabled and n.watchdog_interval_s == 5.0
        assert n.ready("2 devices")
        assert server.recv(1024) == b"READY=1\nSTATUS=2 devices"
        assert n.watchdog()
        assert server.recv(1024) == b"WATCHDOG=1"
        assert n.stopping()
        assert server.recv(1024) == b"STOPPING=1"


def test_abstract_namespace_socket() -> None:
    name = f"station-edge-test-{id(object())}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind("\0" + name)
        server.settimeout(2)
        assert Notifier({"NOTIFY_SOCKET": "@" + name}).ready()
        assert server.recv(64) == b"READY=1"


def test_without_systemd_it_is_a_no_op() -> None:
    n = Notifier({})
    assert not n.enabled and n.watchdog_interval_s is None
    assert not n.ready() and not n.watchdog() and not n.stopping()


def test_unreachable_socket_does_not_raise(tmp_path: Path) -> None:
    assert not Notifier({"NOTIFY_SOCKET": str(tmp_path / "gone.sock")}).ready()
