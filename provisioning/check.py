"""``edge-provision check``: the technician's preflight, one line per item with a fix hint.

Two halves: :func:`gather` does all the I/O once and returns a :class:`Probe` of plain facts
(files' modes, the parsed certificate, the TLS handshake's outcome, the kernel's clock state, …);
each ``check_*`` function is pure over a probe and returns one :class:`Item`. Tests build probes
directly for every failure an item must report, and run :func:`gather` against real files and a
real broker.

Statuses: ``ok``; ``warn`` (worth knowing, not a failure: a certificate expiring within 30 days,
a clock state this machine cannot tell); ``fail``; ``skip`` (does not apply: no BLE device
configured, or ``--skip``). Any ``fail`` makes the command exit 78.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import os
import shutil
import socket
import ssl
import stat
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography import x509

from provisioning.address import host_port
from provisioning.bundle import fingerprint
from provisioning.enroll import load_private_key
from provisioning.errors import ProvisioningError
from provisioning.gateway import ConfigProblem, GatewaySide, ModelFacts
from provisioning.pki import verify_issued_by

__all__ = [
    "CHECKS",
    "FileFacts",
    "Item",
    "ModelFacts",
    "Probe",
    "TlsResult",
    "gather",
    "run_checks",
]

EXPIRY_WARN_DAYS = 30
DISK_MIN_FREE = 64 * 1024 * 1024
DISK_MIN_FRACTION = 0.05
SERVICE = "station-edge.service"


@dataclass(frozen=True, slots=True)
class Item:
    name: str
    status: str  # ok | warn | fail | skip
    detail: str
    fix: str = ""

    def line(self) -> str:
        mark = {"ok": "ok  ", "warn": "WARN", "fail": "FAIL", "skip": "skip"}[self.status]
        text = f"{mark} {self.name:<12} {self.detail}"
        return f"{text}; fix: {self.fix}" if self.fix and self.status in ("fail", "warn") else text

    def to_json(self) -> dict[str, str]:
        return {"name": self.name, "status": self.status, "detail": self.detail, "fix": self.fix}


@dataclass(frozen=True, slots=True)
class FileFacts:
    path: Path
    mode: int | None  # st_mode; None: missing or unreadable
    error: str = ""


@dataclass(frozen=True, slots=True)
class TlsResult:
    ok: bool
    reason: str = ""  # unreachable | revoked | expired | unknown_ca | refused | server_untrusted | error
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Probe:
    now: datetime
    config_path: Path
    config_error: str = ""  # "" when the config loads
    enrolled: bool = False  # the config has [sync]: a production gateway
    gateway_id: str = ""
    key: FileFacts | None = None
    key_matches_cert: bool | None = None
    cert: x509.Certificate | None = None
    cert_error: str = ""
    ca: tuple[x509.Certificate, ...] = ()
    tls: TlsResult | None = None
    broker: str = ""
    clock_synced: bool | None = None  # None: cannot tell
    serial_ports: tuple[tuple[str, str, bool], ...] = ()  # (device id, port, present)
    ble_devices: int = 0
    ble_adapters: tuple[str, ...] = ()
    disk_path: Path | None = None
    disk_free: int | None = None
    disk_total: int | None = None
    quota_bytes: int = 0
    models: tuple[ModelFacts, ...] = ()
    models_error: str = ""
    trusted_key_ids: tuple[str, ...] = ()
    dev_key_id: str = ""
    allow_dev_key: bool = False
    service: str = "unknown"  # active | inactive | failed | activating | unknown | running-no-systemd
    skipped: frozenset[str] = field(default_factory=frozenset)


# -- the items (pure) -------------------------------------------------------------------------


def check_config(p: Probe) -> Item:
    if p.config_error:
        return Item("config", "fail", p.config_error, f"edit {p.config_path} (the message names the key)")
    what = f"{p.config_path} loads" + (f" (gateway {p.gateway_id})" if p.gateway_id else "")
    if not p.enrolled:
        return Item("config", "fail", what + " but has no [sync]: not enrolled", "edge-provision enroll, then apply")
    return Item("config", "ok", what)


def check_key(p: Probe) -> Item:
    if p.key is None:
        return Item("key", "skip", "no [sync] key configured")
    if p.key.mode is None:
        return Item("key", "fail", f"{p.key.path}: {p.key.error or 'missing'}", "edge-provision enroll")
    if not stat.S_ISREG(p.key.mode):
        return Item("key", "fail", f"{p.key.path} is not a regular file", "edge-provision enroll --new-key")
    if p.key.mode & 0o077:
        return Item(
            "key",
            "fail",
            f"{p.key.path} is readable or writable by others (mode {stat.S_IMODE(p.key.mode):04o})",
            f"chmod 600 {p.key.path}; if it may have been copied, enroll --new-key and revoke the old certificate",
        )
    if p.key_matches_cert is False:
        return Item(
            "key", "fail", "the certificate is not for this key", "apply the bundle signed from this gateway's CSR"
        )
    return Item("key", "ok", f"{p.key.path} mode {stat.S_IMODE(p.key.mode):04o}")


def check_certificate(p: Probe) -> Item:
    if not p.enrolled:
        return Item("certificate", "skip", "not enrolled")
    if p.cert is None:
        return Item("certificate", "fail", p.cert_error or "no certificate", "apply the enrollment bundle again")
    cert = p.cert
    if p.ca and not any(verify_issued_by(cert, ca) for ca in p.ca):
        return Item("certificate", "fail", "not issued by the configured CA", "apply the enrollment bundle again")
    if p.now < cert.not_valid_before_utc:
        return Item(
            "certificate",
            "fail",
            f"not valid until {cert.not_valid_before_utc:%Y-%m-%d %H:%M}Z: this gateway's clock is behind",
            "set the clock (timedatectl set-ntp true, or timedatectl set-time)",
        )
    days = (cert.not_valid_after_utc - p.now).total_seconds() / 86400
    if days <= 0:
        return Item(
            "certificate",
            "fail",
            f"expired {cert.not_valid_after_utc:%Y-%m-%d}: the broker refuses it",
            "edge-provision enroll, have the CSR signed, apply the new bundle",
        )
    detail = f"valid until {cert.not_valid_after_utc:%Y-%m-%d} ({int(days)} days)"
    if days < EXPIRY_WARN_DAYS:
        return Item("certificate", "warn", detail, "renew: have the CSR signed again and apply the new bundle")
    return Item("certificate", "ok", detail)


_TLS_FIX = {
    "unreachable": "check the network and the [sync].broker address; the agent buffers meanwhile",
    "revoked": "the certificate was revoked by the hub: ask the hub administrator, enroll --new-key if replaced",
    "expired": "the broker says the certificate expired: have the CSR signed again and apply the new bundle",
    "unknown_ca": "the broker does not trust this gateway's CA: apply a bundle from this province's CA",
    "refused": "the broker refused this certificate: ask the hub administrator (revoked? wrong CA?)",
    "server_untrusted": "the broker's certificate is not from the configured CA, or its name does not match",
    "error": "see the message",
}


def check_broker(p: Probe) -> Item:
    if not p.enrolled or p.tls is None:
        return Item("broker", "skip", "not enrolled")
    if p.tls.ok:
        return Item("broker", "ok", f"{p.broker}: TLS handshake with the client certificate accepted")
    return Item(
        "broker", "fail", f"{p.broker}: {p.tls.reason}: {p.tls.detail}", _TLS_FIX.get(p.tls.reason, _TLS_FIX["error"])
    )


def check_clock(p: Probe) -> Item:
    if p.clock_synced is None:
        return Item("clock", "warn", "cannot tell whether the clock is synchronised", "timedatectl status; enable NTP")
    if not p.clock_synced:
        return Item(
            "clock",
            "fail",
            "the kernel says the clock is not synchronised: readings get the clock_unsynced flag",
            "timedatectl set-ntp true (systemd-timesyncd), and let the gateway reach an NTP server",
        )
    return Item("clock", "ok", "synchronised")


def check_serial(p: Probe) -> Item:
    if not p.serial_ports:
        return Item("serial", "skip", "no serial device configured")
    missing = [f"{dev} ({port})" for dev, port, present in p.serial_ports if not present]
    if missing:
        return Item(
            "serial",
            "fail",
            "not present: " + ", ".join(missing),
            "plug the device in (check the cable), or fix devices[].port (ls /dev/serial/by-id/)",
        )
    return Item("serial", "ok", f"{len(p.serial_ports)} present")


def check_ble(p: Probe) -> Item:
    if not p.ble_devices:
        return Item("ble", "skip", "no BLE device configured")
    if not p.ble_adapters:
        return Item(
            "ble",
            "fail",
            f"{p.ble_devices} BLE device(s) configured but no Bluetooth adapter",
            "rfkill unblock bluetooth; systemctl start bluetooth; check the USB dongle",
        )
    return Item("ble", "ok", "adapter " + ", ".join(p.ble_adapters))


def check_disk(p: Probe) -> Item:
    if p.disk_free is None or p.disk_total is None:
        return Item("disk", "fail", f"cannot stat the state dir {p.disk_path}", "create it: systemd-tmpfiles --create")
    free_mb = p.disk_free / 2**20
    if p.disk_free < DISK_MIN_FREE or p.disk_free < DISK_MIN_FRACTION * p.disk_total:
        return Item(
            "disk",
            "fail",
            f"{free_mb:.0f} MiB free on {p.disk_path}",
            "free space (journalctl --vacuum-size=50M, apt-get clean) or use a larger card",
        )
    if p.disk_free < p.quota_bytes:
        return Item(
            "disk",
            "warn",
            f"{free_mb:.0f} MiB free, less than store.quota_mb",
            "lower store.quota_mb or free space: the buffer downsamples when the disk fills",
        )
    return Item("disk", "ok", f"{free_mb:.0f} MiB free on {p.disk_path}")


def check_models(p: Probe) -> Item:
    if p.models_error:
        return Item("models", "fail", p.models_error, "fix scoring.trusted_keys / models_dir")
    if not p.models:
        return Item("models", "fail", "no model manifests found", "reinstall the package, or fix models_dir")
    trusted = set(p.trusted_key_ids) | ({p.dev_key_id} if p.allow_dev_key else set())
    bad = [f"{m.name}: {m.error}" for m in p.models if m.error]
    untrusted = [m.name for m in p.models if not m.error and m.key_id not in trusted]
    if bad:
        return Item("models", "fail", "; ".join(bad), "reinstall the models (they were altered or damaged)")
    if untrusted:
        by_dev = all(m.key_id == p.dev_key_id for m in p.models if m.name in untrusted)
        return Item(
            "models",
            "fail",
            ("signed by the development key, not trusted here: " if by_dev else "signed by an untrusted key: ")
            + ", ".join(untrusted),
            "install the models the province signed (models/build.py --key <ca-dir>/model-signing.key.pem) "
            "and point models_dir at them",
        )
    return Item("models", "ok", f"{len(p.models)} verified")


def check_model_trust(p: Probe) -> Item:
    if not p.enrolled:
        return Item("model-trust", "skip", "not enrolled (development gateway)")
    if p.allow_dev_key or p.dev_key_id in p.trusted_key_ids:
        how = "scoring.allow_dev_key = true" if p.allow_dev_key else "scoring.trusted_keys lists the development key"
        return Item(
            "model-trust",
            "fail",
            f"production gateway still trusts the development model-signing key ({how}); its private half is public",
            "set scoring.allow_dev_key = false and trust only the province's key (edge-provision apply does both)",
        )
    if not p.trusted_key_ids:
        return Item("model-trust", "fail", "no model-signing key trusted", "edge-provision apply the bundle again")
    return Item("model-trust", "ok", "trusts " + ", ".join(p.trusted_key_ids))


def check_service(p: Probe) -> Item:
    if p.service == "active":
        return Item("service", "ok", f"{SERVICE} active")
    if p.service == "running-no-systemd":
        return Item("service", "ok", "the agent is running (not under systemd)")
    if p.service == "unknown":
        return Item("service", "fail", "the agent is not running and systemd is not available", "edge-agent run")
    return Item(
        "service",
        "fail",
        f"{SERVICE} is {p.service}",
        f"systemctl enable --now {SERVICE}; journalctl -u {SERVICE} says why it stopped",
    )


CHECKS: dict[str, Callable[[Probe], Item]] = {
    "config": check_config,
    "key": check_key,
    "certificate": check_certificate,
    "broker": check_broker,
    "clock": check_clock,
    "serial": check_serial,
    "ble": check_ble,
    "disk": check_disk,
    "models": check_models,
    "model-trust": check_model_trust,
    "service": check_service,
}


def run_checks(p: Probe) -> list[Item]:
    return [Item(name, "skip", "skipped (--skip)") if name in p.skipped else fn(p) for name, fn in CHECKS.items()]


# -- gathering the facts (I/O) ----------------------------------------------------------------


def tls_probe(host: str, port: int, *, ca: Path, cert: Path, key: Path, timeout: float = 5.0) -> TlsResult:
    """A TLS handshake with the gateway's certificate, then a short wait for the broker's verdict.

    No MQTT CONNECT is sent: the broker uses the certificate's CN as the client id, so a CONNECT
    would take over (and, with clean start, wipe) the running agent's session. A broker that
    rejects the client certificate sends a TLS alert (during the handshake with TLS 1.2, right
    after it with TLS 1.3); one that accepts it waits for CONNECT, so silence means accepted.
    """
    try:
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(ca))
        ctx.load_cert_chain(str(cert), str(key))
    except (OSError, ssl.SSLError) as exc:
        return TlsResult(False, "error", f"cannot load the TLS files: {exc}")
    try:
        raw = socket.create_connection((host, port), timeout=timeout)
    except OSError as exc:
        return TlsResult(False, "unreachable", exc.strerror or type(exc).__name__)
    try:
        with ctx.wrap_socket(raw, server_hostname=host) as tls:
            tls.settimeout(min(timeout, 1.0))
            try:
                data = tls.recv(1)
            except TimeoutError:
                return TlsResult(True)
            except ConnectionResetError:
                return TlsResult(False, "refused", "the broker reset the connection after the handshake")
            if not data:
                return TlsResult(False, "refused", "the broker closed the connection after the handshake")
            return TlsResult(True)
    except ssl.SSLCertVerificationError as exc:
        return TlsResult(False, "server_untrusted", exc.verify_message or str(exc))
    except ssl.SSLError as exc:
        return _tls_alert(exc)
    except OSError as exc:
        return TlsResult(False, "unreachable", exc.strerror or type(exc).__name__)


def _tls_alert(exc: ssl.SSLError) -> TlsResult:
    text = f"{exc.reason or ''} {exc}".lower()
    for needle, reason in (("revoked", "revoked"), ("expired", "expired"), ("unknown ca", "unknown_ca")):
        if needle in text:
            return TlsResult(False, reason, f"TLS alert: {exc.reason or exc}")
    return TlsResult(False, "refused", f"TLS alert: {exc.reason or exc}")


def kernel_clock_synced() -> bool | None:
    """The kernel's NTP state from adjtimex(2): TIME_ERROR (5) means unsynchronised. None when
    it cannot be read (not Linux)."""
    path = ctypes.util.find_library("c")
    if path is None:
        return None
    try:
        libc = ctypes.CDLL(path, use_errno=True)
        buf = ctypes.create_string_buffer(1024)  # struct timex, modes = 0: read only
        state = libc.adjtimex(buf)
    except (OSError, AttributeError):
        return None
    if state < 0:
        return None
    return bool(state != 5)


def service_state(
    state_dir: Path, agent_running: Callable[[Path], bool], run: Callable[[Sequence[str]], str] | None = None
) -> str:
    """``systemctl is-active`` when systemd runs this machine, else whether the agent's pid file
    names a live process."""
    if Path("/run/systemd/system").is_dir() and shutil.which("systemctl"):
        runner = run or (
            lambda argv: subprocess.run(list(argv), capture_output=True, text=True, timeout=10).stdout.strip()
        )
        return runner(["systemctl", "is-active", SERVICE]) or "unknown"
    return "running-no-systemd" if agent_running(state_dir) else "unknown"


def _file_facts(path: Path) -> FileFacts:
    try:
        return FileFacts(path, path.stat().st_mode)
    except FileNotFoundError:
        return FileFacts(path, None, "missing")
    except OSError as exc:
        return FileFacts(path, None, exc.strerror or type(exc).__name__)


def _serial_present(port: str) -> bool:
    if port.startswith("usb:"):
        from serial.tools import list_ports

        parts = port.split(":")[1:]
        for info in list_ports.comports():
            ids = [f"{info.vid or 0:04x}", f"{info.pid or 0:04x}", info.serial_number or ""]
            if [p.lower() for p in parts] == [i.lower() for i in ids[: len(parts)]]:
                return True
        return False
    if "://" in port:  # a pyserial URL (socket://, spy://): nothing local to look for
        return True
    return Path(port).exists()


def gather(
    config_path: Path,
    *,
    now: datetime,
    gateway: GatewaySide,
    skip: frozenset[str] = frozenset(),
    timeout: float = 5.0,
    clock_synced: Callable[[], bool | None] = kernel_clock_synced,
) -> Probe:
    """Every fact the items judge, gathered once. ``gateway`` is the agent's side (its config
    loader, its model verification, its pid file)."""
    try:
        cfg = gateway.load_config(config_path)
    except ConfigProblem as exc:
        return Probe(now=now, config_path=config_path, config_error=str(exc), clock_synced=clock_synced(), skipped=skip)
    facts: dict[str, Any] = {"gateway_id": cfg.gateway_id}
    sync = cfg.sync
    if sync is not None:
        facts["enrolled"] = True
        facts["key"] = _file_facts(sync.key)
        facts["broker"] = sync.broker
        chain: list[x509.Certificate] = []
        try:
            chain = x509.load_pem_x509_certificates(sync.cert.read_bytes())
            cert = chain[0]
            facts["cert"] = cert
        except (OSError, ValueError) as exc:
            cert = None
            facts["cert_error"] = f"{sync.cert}: {getattr(exc, 'strerror', None) or type(exc).__name__}"
        try:
            cas = tuple(x509.load_pem_x509_certificates(sync.ca.read_bytes()))
        except (OSError, ValueError):
            cas = ()
        # a renewed certificate comes with the hub's issuing CA, itself issued by the configured CA
        facts["ca"] = cas + tuple(c for c in chain[1:] if any(verify_issued_by(c, ca) for ca in cas))
        if cert is not None and facts["key"].mode is not None and not facts["key"].mode & 0o077:
            try:
                numbers = load_private_key(sync.key).public_key().public_numbers()
                facts["key_matches_cert"] = numbers == getattr(cert.public_key(), "public_numbers", lambda: None)()
            except (ProvisioningError, ValueError):
                facts["key_matches_cert"] = False
        if "broker" not in skip:
            host, port = host_port(sync.broker)
            facts["tls"] = tls_probe(host, port, ca=sync.ca, cert=sync.cert, key=sync.key, timeout=timeout)
    facts["serial_ports"] = tuple((dev, port, _serial_present(port)) for dev, port in cfg.serial_ports)
    facts["ble_devices"] = cfg.ble_devices
    bt = Path("/sys/class/bluetooth")
    facts["ble_adapters"] = tuple(sorted(p.name for p in bt.iterdir())) if bt.is_dir() else ()
    facts["disk_path"] = cfg.state_dir
    try:
        st = os.statvfs(cfg.state_dir)
        facts["disk_free"], facts["disk_total"] = st.f_bavail * st.f_frsize, st.f_blocks * st.f_frsize
    except OSError:
        pass
    facts["quota_bytes"] = cfg.quota_bytes
    report = gateway.models(cfg)
    facts["models"] = report.models
    facts["models_error"] = report.error
    facts["trusted_key_ids"] = report.trusted_key_ids
    facts["dev_key_id"] = report.dev_key_id
    facts["allow_dev_key"] = cfg.allow_dev_key
    if "service" not in skip:
        facts["service"] = service_state(cfg.state_dir, gateway.agent_running)
    if "clock" not in skip:
        facts["clock_synced"] = clock_synced()
    return Probe(now=now, config_path=config_path, skipped=skip, **facts)


def report_json(items: Sequence[Item], probe: Probe) -> str:
    doc = {
        "ok": not any(i.status == "fail" for i in items),
        "items": [i.to_json() for i in items],
        "ca_fingerprint": [fingerprint(c) for c in probe.ca],
    }
    return json.dumps(doc, ensure_ascii=False)
