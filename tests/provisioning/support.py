"""A province made with ``provisioning.ca`` (the code behind ``edge-provision ca init``, ``sign``,
``revoke`` and ``broker-config``) and a real Mosquitto started on exactly the files
``broker-config`` wrote. Certificates are issued at the kernel's clock (tests/fixtures/pki.py
says why), so the broker's OpenSSL agrees with them under CI's shifted calendar too.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from types import SimpleNamespace, TracebackType

from provisioning.ca import BrokerFiles, broker_config, init_ca, sign_csr
from provisioning.enroll import enroll
from provisioning.pki import load_certified_key
from tests.fixtures.mosquitto import find_mosquitto, free_port
from tests.fixtures.pki import Identity

PROVINCE = "p01"
STATION = "Tram Y te xa Minh Tan"


@dataclass
class Province:
    root: Path
    ca_dir: Path
    now: datetime
    port: int

    @property
    def broker_url(self) -> str:
        return f"mqtts://127.0.0.1:{self.port}"

    def gateway(
        self, gateway_id: str, *, now: datetime | None = None, days: int = 825, ca_dir: Path | None = None
    ) -> Identity:
        """enroll + sign: a key made like on the gateway, the certificate from the CA's ``sign``."""
        home = self.root / "gateways" / f"{gateway_id}-{uuid.uuid4().hex[:8]}"
        done = enroll(
            province=PROVINCE,
            station=STATION,
            key_path=home / "gateway.key.pem",
            csr_path=home / "gateway.csr.pem",
            gateway_id=gateway_id,
        )
        _, bundle = sign_csr(
            ca_dir or self.ca_dir,
            done.csr_pem,
            province=PROVINCE,
            station=STATION,
            now=now or self.now,
            days=days,
            broker=self.broker_url,
            replace_key=True,
        )
        (home / "bundle.json").write_bytes(bundle)
        from provisioning.bundle import parse_bundle

        (home / "gateway.cert.pem").write_bytes(parse_bundle(bundle).cert_pem())
        (home / "ca.pem").write_bytes(parse_bundle(bundle).ca_pem())
        certified = load_certified_key(home / "gateway.key.pem", home / "gateway.cert.pem")
        return Identity(
            name=gateway_id, certified=certified, key_path=home / "gateway.key.pem", cert_path=home / "gateway.cert.pem"
        )

    def broker_files(self, hub_users: tuple[str, ...] = ("hub-1",)) -> BrokerFiles:
        return broker_config(
            self.ca_dir,
            self.root / "broker",
            hosts=("127.0.0.1", "localhost"),
            hub_users=hub_users,
            now=self.now,
            port=self.port,
            bind="127.0.0.1",
            run_as_user="root" if os.geteuid() == 0 else None,
        )


def make_province(root: Path, now: datetime, *, province: str = PROVINCE) -> Province:
    ca_dir = root / "ca"
    port = free_port()
    init_ca(
        ca_dir,
        province=province,
        broker=f"mqtts://127.0.0.1:{port}",
        name="test province CA",
        now=now - timedelta(days=60),
    )
    return Province(root=root, ca_dir=ca_dir, now=now, port=port)


class GeneratedBroker:
    """Mosquitto on ``broker-config``'s ``mosquitto.conf``; duck-types what MqttClient needs
    from MosquittoBroker (``port`` and ``pki.ca_path``)."""

    def __init__(self, files: BrokerFiles, port: int) -> None:
        exe = find_mosquitto()
        if exe is None:
            raise RuntimeError("mosquitto not found (apt-get install mosquitto)")
        self.exe, self.files, self.port = exe, files, port
        self.pki = SimpleNamespace(ca_path=files.ca)
        self.log_path = files.conf.parent / "mosquitto.log"
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> GeneratedBroker:
        import socket

        deadline = time.monotonic() + 10
        with open(self.log_path, "ab") as log:
            self._proc = subprocess.Popen([self.exe, "-c", str(self.files.conf)], stdout=log, stderr=log)
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(self.log_path.read_text()[-2000:])
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.02)
        raise RuntimeError("mosquitto did not start")

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=10)

    def restart(self) -> GeneratedBroker:
        self.stop()
        return self.start()

    def __enter__(self) -> GeneratedBroker:
        return self.start()

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()


def hub_identity(files: BrokerFiles, user: str = "hub-1") -> Identity:
    key, cert = files.hub_identities[user]
    return Identity(name=user, certified=load_certified_key(key, cert), key_path=key, cert_path=cert)
