"""The demo's private province: a throwaway CA, a Mosquitto broker with TLS and the ACLs of
DESIGN §5 on a free loopback port, and one ``edge-hub serve`` worker, all under
``<state-dir>/demo-hub/`` (the hub's store in ``<state-dir>/hub/``). Only when a ``mosquitto``
binary is on PATH (or in /usr/sbin); otherwise the demo runs offline and says so.

The hub runs as its own process (``python -m hub.cli``): the gateway never imports the hub.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from provisioning.broker import acl_text, mosquitto_conf
from provisioning.pki import CertifiedKey, HubKeys, create_ca, issue, load_certified_key, new_hub_keys

HUB_USER = "hub-demo"
# The throwaway certificates are backdated and long-lived, so that the demo still connects when the
# gateway's clock is off (a Pi that booted without NTP, or a test that moves the calendar): OpenSSL
# in the broker judges them by the system clock, the hub by its own.
DEMO_CERT_BACKDATE = timedelta(days=400)
DEMO_CERT_DAYS = 4000


def find_mosquitto() -> str | None:
    found = shutil.which("mosquitto")
    if found:
        return found
    return "/usr/sbin/mosquitto" if os.access("/usr/sbin/mosquitto", os.X_OK) else None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True, slots=True)
class DemoCredentials:
    ca: Path
    gateway_cert: Path
    gateway_key: Path
    hub_public: Path  # HubPublicKeys JSON for the gateway's [sync].hub_keys


class DemoHub:
    """Start with :meth:`start`, stop with :meth:`stop` (also as a context manager)."""

    def __init__(self, state_dir: Path, gateway_id: str, *, now: datetime, mosquitto: str) -> None:
        self.root = state_dir / "demo-hub"
        self.store_dir = state_dir / "hub"
        self.gateway_id = gateway_id
        self.now = now
        self.mosquitto = mosquitto
        self.port = 0
        self._broker: subprocess.Popen[bytes] | None = None
        self._hub: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mqtts://127.0.0.1:{self.port}"

    def _identity(self, ca: CertifiedKey, name: str, server: bool = False) -> tuple[Path, Path]:
        key, cert = self.root / "pki" / f"{name}.key", self.root / "pki" / f"{name}.crt"
        if not (key.exists() and cert.exists()):
            made = issue(
                ca,
                name,
                now=self.now - DEMO_CERT_BACKDATE,
                days=DEMO_CERT_DAYS,
                server_names=("localhost", "127.0.0.1") if server else (),
            )
            made.write(key, cert)
        return key, cert

    def credentials(self) -> DemoCredentials:
        """The throwaway PKI, made once and reused with the state dir."""
        pki = self.root / "pki"
        pki.mkdir(parents=True, exist_ok=True)
        ca_key, ca_cert = pki / "ca.key", pki / "ca.crt"
        if ca_key.exists() and ca_cert.exists():
            ca = load_certified_key(ca_key, ca_cert)
        else:
            ca = create_ca("station-edge demo CA", now=self.now - DEMO_CERT_BACKDATE, days=DEMO_CERT_DAYS + 30)
            ca.write(ca_key, ca_cert)
        self._identity(ca, "broker", server=True)
        self._identity(ca, HUB_USER)
        gw_key, gw_cert = self._identity(ca, self.gateway_id)
        keys_dir = pki / "hub-keys"
        if not keys_dir.exists():
            new_hub_keys().write(keys_dir)
        hub_public = pki / "hub-public.json"
        if not hub_public.exists():
            HubKeys.load(keys_dir).public().write(hub_public)
        return DemoCredentials(ca=ca_cert, gateway_cert=gw_cert, gateway_key=gw_key, hub_public=hub_public)

    def start(self, timeout: float = 15.0) -> DemoHub:
        self.credentials()
        pki = self.root / "pki"
        self.port = _free_port()
        broker_dir = self.root / "broker"
        broker_dir.mkdir(parents=True, exist_ok=True)
        acl = self.root / "acl"
        acl.write_text(acl_text([HUB_USER]))
        conf = self.root / "mosquitto.conf"
        conf.write_text(
            mosquitto_conf(
                port=self.port,
                cafile=pki / "ca.crt",
                certfile=pki / "broker.crt",
                keyfile=pki / "broker.key",
                aclfile=acl,
                persistence_dir=broker_dir,
                # started as root, Mosquitto would drop to its own user and could not read our 0600 keys
                run_as_user=pwd.getpwuid(os.geteuid()).pw_name if os.geteuid() == 0 else None,
            )
        )
        log = open(self.root / "mosquitto.log", "ab")  # noqa: SIM115 - the broker keeps it open
        self._broker = subprocess.Popen([self.mosquitto, "-c", str(conf)], stdout=log, stderr=log)
        log.close()
        deadline = time.monotonic() + timeout
        while not self._accepting():
            if self._broker.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the demo broker did not start; see {self.root / 'mosquitto.log'}")
            time.sleep(0.05)
        hub_log = open(self.root / "hub.log", "ab")  # noqa: SIM115
        self._hub = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "hub.cli",
                "serve",
                "--store",
                str(self.store_dir),
                "--broker",
                self.url,
                "--ca",
                str(pki / "ca.crt"),
                "--cert",
                str(pki / f"{HUB_USER}.crt"),
                "--key",
                str(pki / f"{HUB_USER}.key"),
                "--hub-keys",
                str(pki / "hub-keys"),
            ],
            stdout=hub_log,
            stderr=hub_log,
        )
        hub_log.close()
        return self

    def _accepting(self) -> bool:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
            return True
        return False

    def stop(self) -> None:
        for proc in (self._hub, self._broker):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        self._hub = self._broker = None

    def __enter__(self) -> DemoHub:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
