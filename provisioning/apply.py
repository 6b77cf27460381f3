"""``edge-provision apply BUNDLE`` on the gateway: check the enrollment bundle and install it.

Refused (exit 78, one line with a fix) when: the bundle's signature does not verify (altered),
its certificate is not for this gateway's key, the key file is readable by others, the
certificate is expired or not yet valid by this gateway's clock, the CA is not the one the
technician was told (``--ca-fingerprint``) or not the one already installed, or the resulting
config would not load.

Installing is atomic: the certificate, the CA, the hub's public keys and the model-signing key go
into a new directory ``<config dir>/enrollment/<serial>/`` (each file written, fsynced and the
directory fsynced), then the config that names them is renamed over the old one. A crash before
that rename leaves the old config and the files it names untouched; after it, the new one is
complete. Older enrollment directories are removed last.
"""

from __future__ import annotations

import contextlib
import grp
import os
import shutil
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from cryptography import x509

from provisioning._files import PUBLIC_MODE, write_atomic
from provisioning.bundle import Bundle, BundleError, fingerprint, parse_bundle
from provisioning.enroll import load_private_key
from provisioning.errors import ProvisioningError, Refused
from provisioning.gateway import ConfigProblem, GatewayConfig
from provisioning.pki import CLOCK_SKEW
from provisioning.render import Managed, render_config

__all__ = ["CONFIG_MODE", "Applied", "apply_bundle", "normalise_fingerprint"]

CONFIG_MODE = 0o640
SERVICE_GROUP = "station-edge"
ENROLLMENT_DIR = "enrollment"


@dataclass(frozen=True, slots=True)
class Applied:
    gateway_id: str
    province: str
    config_path: Path
    directory: Path
    ca_fingerprint: str
    not_after: datetime


def normalise_fingerprint(text: str) -> str:
    hexdigits = "".join(ch for ch in text.upper() if ch in "0123456789ABCDEF")
    return ":".join(hexdigits[i : i + 2] for i in range(0, len(hexdigits), 2))


def _bundle(data: bytes) -> Bundle:
    try:
        return parse_bundle(data)
    except BundleError as exc:
        fixes = {
            "bad_signature": "the bundle was altered or damaged: ask the hub administrator for a fresh one",
            "not_issued_by_ca": "the bundle was altered: ask the hub administrator for a fresh one",
            "cn_mismatch": "the bundle was altered: ask the hub administrator for a fresh one",
        }
        raise Refused(
            exc.reason,
            f"the bundle cannot be used: {exc.detail}",
            fixes.get(exc.reason, "use the .bundle.json file that `edge-provision sign` wrote"),
        ) from None


def _installed_ca(config_path: Path) -> x509.Certificate | None:
    """The CA the current config trusts, if any (a re-apply or renewal must come from it)."""
    try:
        doc = tomllib.loads(config_path.read_text())
        ca = Path(str(doc["sync"]["ca"]))
        ca = ca if ca.is_absolute() else config_path.parent / ca
        return x509.load_pem_x509_certificates(ca.read_bytes())[0]
    except (OSError, KeyError, TypeError, ValueError, IndexError):
        return None


def check_bundle(
    bundle: Bundle,
    *,
    key_public_numbers: object,
    now: datetime,
    ca_fingerprint: str | None,
    installed_ca: x509.Certificate | None,
) -> None:
    """Every refusal that needs no file system. Raises :class:`Refused`."""
    cert_key = bundle.certificate.public_key()
    numbers = getattr(cert_key, "public_numbers", None)
    if numbers is None or numbers() != key_public_numbers:
        raise Refused(
            "other_key",
            f"the bundle is for another key (gateway {bundle.gateway_id}), not this gateway's",
            "apply the bundle signed from this gateway's own CSR (edge-provision enroll prints it again)",
        )
    got = fingerprint(bundle.ca)
    if ca_fingerprint is not None and normalise_fingerprint(ca_fingerprint) != got:
        raise Refused(
            "ca_fingerprint",
            f"the bundle's CA has fingerprint {got}, not the one given",
            "check the fingerprint with the hub administrator; do not apply a bundle from an unknown CA",
        )
    if installed_ca is not None and installed_ca != bundle.ca and ca_fingerprint is None:
        raise Refused(
            "other_ca",
            f"the bundle comes from another CA ({got}) than the one installed",
            "if the province changed its CA, confirm its fingerprint and pass --ca-fingerprint",
        )
    cert = bundle.certificate
    if now < cert.not_valid_before_utc - CLOCK_SKEW:
        raise Refused(
            "clock",
            f"the certificate is valid from {cert.not_valid_before_utc.isoformat()}, after this gateway's clock "
            f"({now.isoformat()})",
            "set the clock (timedatectl set-time, or let NTP sync) and apply again",
        )
    if now >= cert.not_valid_after_utc:
        raise Refused(
            "expired",
            f"the certificate expired at {cert.not_valid_after_utc.isoformat()}",
            "ask the hub administrator to sign the CSR again",
        )


def _service_gid() -> int | None:
    if os.geteuid() != 0:
        return None
    try:
        return grp.getgrnam(SERVICE_GROUP).gr_gid
    except KeyError:
        return None


def apply_bundle(
    data: bytes,
    *,
    config_path: Path,
    key_path: Path,
    now: datetime,
    load_config: Callable[[Path], GatewayConfig],
    ca_fingerprint: str | None = None,
) -> Applied:
    """Verify and install; raises :class:`Refused` (operator must act) or ``OSError``.

    ``load_config`` is the agent's own loader (``GatewaySide.load_config``): the new config is
    installed only once it loads."""
    bundle = _bundle(data)
    try:
        key = load_private_key(key_path)
    except ProvisioningError as exc:
        fix = "run edge-provision enroll on this gateway first" if exc.reason == "not_found" else "see the message"
        if exc.reason == "key_permissions":
            fix = f"chmod 600 {key_path} (and make sure nobody copied it)"
        raise Refused(exc.reason, exc.detail.split("; fix:")[0], fix) from None
    config_path = config_path.absolute()
    check_bundle(
        bundle,
        key_public_numbers=key.public_key().public_numbers(),
        now=now,
        ca_fingerprint=ca_fingerprint,
        installed_ca=_installed_ca(config_path),
    )
    try:
        existing = config_path.read_text(encoding="utf-8") if config_path.exists() else ""
        tomllib.loads(existing)
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise Refused(
            "config_unreadable",
            f"{config_path} cannot be read as TOML ({type(exc).__name__})",
            "fix or move the file away, then apply again",
        ) from None

    conf_dir = config_path.parent
    gen = conf_dir / ENROLLMENT_DIR / format(bundle.certificate.serial_number, "x")
    gen.mkdir(parents=True, exist_ok=True)
    gen.chmod(0o755)
    files = {
        "ca": gen / "ca.pem",
        "cert": gen / "gateway.cert.pem",
        "hub_keys": gen / "hub-public.json",
        "model": gen / "model-signing.pub.pem",
    }
    write_atomic(files["ca"], bundle.ca_pem(), mode=PUBLIC_MODE)
    write_atomic(files["cert"], bundle.cert_pem(), mode=PUBLIC_MODE)
    bundle.hub_keys.write(files["hub_keys"])
    write_atomic(files["model"], bundle.model_key_pem(), mode=PUBLIC_MODE)
    managed = Managed(
        gateway_id=bundle.gateway_id,
        province=bundle.province,
        station=bundle.station,
        broker=bundle.broker,
        ca=str(files["ca"]),
        cert=str(files["cert"]),
        key=str(key_path.absolute()),
        hub_keys=str(files["hub_keys"]),
        trusted_keys=(str(files["model"]),),
        note=(
            f"[gateway], [sync] and the model trust in [scoring] are set by edge-provision apply "
            f"(certificate {bundle.certificate.serial_number:x}, CA {fingerprint(bundle.ca)[:23]}…)"
        ),
    )
    text = render_config(existing, managed)
    tmp = conf_dir / f".{config_path.name}.apply-{os.getpid()}"
    write_atomic(tmp, text.encode("utf-8"), mode=CONFIG_MODE)
    try:
        _validate(tmp, bundle, load_config)
        gid = _service_gid()
        if gid is not None:
            os.chown(tmp, 0, gid)
        os.replace(tmp, config_path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    fd = os.open(conf_dir, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    for old in (conf_dir / ENROLLMENT_DIR).iterdir():
        if old != gen and old.is_dir():
            shutil.rmtree(old, ignore_errors=True)
    return Applied(
        gateway_id=bundle.gateway_id,
        province=bundle.province,
        config_path=config_path,
        directory=gen,
        ca_fingerprint=fingerprint(bundle.ca),
        not_after=bundle.certificate.not_valid_after_utc,
    )


def _validate(path: Path, bundle: Bundle, load_config: Callable[[Path], GatewayConfig]) -> None:
    try:
        cfg = load_config(path)
    except ConfigProblem as exc:
        raise Refused(
            "config_invalid",
            f"the config with the enrollment applied does not load: {exc}",
            "fix that key in the existing config, then apply again",
        ) from None
    if cfg.sync is None or cfg.gateway_id != bundle.gateway_id:
        raise Refused("config_invalid", "the rendered config lost the enrollment", "report this as a bug")
