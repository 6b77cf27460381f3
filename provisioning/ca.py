"""The provincial CA directory the hub administrator keeps (``edge-provision ca init``, ``sign``,
``revoke``, ``crl``, ``broker-config``).

Layout of a CA directory (keep it offline and backed up; the private keys are 0600)::

    ca.json                 province, broker address, CA name
    ca.key.pem  ca.cert.pem the CA (P-256, self-signed, path length 1)
    issuing/                the hub's online issuing CA (provisioning.issuing): signed by the CA,
                            path length 0; copy it to the hub workers for certificate renewal
    hub-keys/               the hub workers' sealing (X25519) and ack-signing (Ed25519) keys
    model-signing.key.pem   the model-signing key (Ed25519): signs models and commands; offline
    model-signing.pub.pem   what production gateways trust (``scoring.trusted_keys``)
    registry.json           every certificate issued: gateway, serial, key hash, revoked or not
                            (renewals the hub issued join it at ``revoke --renewals``)
    crl.pem                 the revocation lists the broker reads (the CA's, then the issuing CA's)
    issued/<gateway>.cert.pem  the latest certificate per gateway

The model-signing key is kept apart from the hub's ack-signing key: every hub worker holds the
ack key online; a stolen worker must not be able to push a model that every gateway would run.

Times come from the caller's ``now``; the CLI passes the wall clock.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import NameOID

from provisioning._files import PRIVATE_MODE, PUBLIC_MODE, write_atomic
from provisioning.address import broker_problem
from provisioning.broker import mosquitto_conf
from provisioning.bundle import fingerprint, make_bundle
from provisioning.crl import build_crl, crl_problem, load_crl
from provisioning.errors import ProvisioningError
from provisioning.issuing import ISSUING_CERT, ISSUING_DIR, create_issuing_ca, load_issuing, write_issuing
from provisioning.pki import (
    CertifiedKey,
    HubKeys,
    common_name,
    create_ca,
    issue,
    issue_for_key,
    load_certified_key,
    new_hub_keys,
)

__all__ = [
    "GATEWAY_CERT_DAYS",
    "ID_PATTERN",
    "BrokerFiles",
    "CaDir",
    "IssuedCert",
    "broker_config",
    "init_ca",
    "key_sha256",
    "open_ca",
    "parse_csr",
    "read_renewal_ledger",
    "revoke",
    "sign_csr",
    "write_crl",
]

GATEWAY_CERT_DAYS = 825
# a gateway id or province: a config id (edge_agent.config) that is also one MQTT topic level
ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
REGISTRY_FORMAT = 1


def check_id(kind: str, value: str) -> str:
    if not ID_PATTERN.fullmatch(value):
        raise ProvisioningError("bad_id", f"{kind} {value!r}: 1-64 of A-Z a-z 0-9 - _, starting with a letter or digit")
    return value


def check_station(value: str) -> str:
    if not value or len(value) > 64 or not value.isprintable():
        raise ProvisioningError("bad_station", "station: 1-64 printable characters on one line")
    return value


def key_sha256(public_key: ec.EllipticCurvePublicKey) -> str:
    """Hex SHA-256 of the DER SubjectPublicKeyInfo: names a key without showing it."""
    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()


@dataclass(frozen=True, slots=True)
class IssuedCert:
    gateway_id: str
    serial: int
    province: str
    station: str
    not_after: datetime
    key_sha256: str
    revoked_at: datetime | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "gateway_id": self.gateway_id,
            "serial": format(self.serial, "x"),
            "province": self.province,
            "station": self.station,
            "not_after": self.not_after.isoformat(),
            "key_sha256": self.key_sha256,
            "revoked_at": None if self.revoked_at is None else self.revoked_at.isoformat(),
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> IssuedCert:
        revoked = d.get("revoked_at")
        return cls(
            gateway_id=str(d["gateway_id"]),
            serial=int(str(d["serial"]), 16),
            province=str(d["province"]),
            station=str(d["station"]),
            not_after=datetime.fromisoformat(str(d["not_after"])),
            key_sha256=str(d["key_sha256"]),
            revoked_at=None if revoked is None else datetime.fromisoformat(str(revoked)),
        )


@dataclass(frozen=True, slots=True)
class CaDir:
    """A loaded CA directory."""

    root: Path
    ca: CertifiedKey
    province: str
    broker: str
    issued: tuple[IssuedCert, ...]

    @property
    def hub_keys_dir(self) -> Path:
        return self.root / "hub-keys"

    @property
    def model_key_path(self) -> Path:
        return self.root / "model-signing.key.pem"

    @property
    def model_pub_path(self) -> Path:
        return self.root / "model-signing.pub.pem"

    @property
    def crl_path(self) -> Path:
        return self.root / "crl.pem"

    @property
    def ca_cert_path(self) -> Path:
        return self.root / "ca.cert.pem"

    def model_signing_key(self) -> ed25519.Ed25519PublicKey:
        key = serialization.load_pem_public_key(self.model_pub_path.read_bytes())
        if not isinstance(key, ed25519.Ed25519PublicKey):
            raise ProvisioningError("wrong_key_type", f"{self.model_pub_path}: not Ed25519")
        return key

    def revoked_serials(self) -> list[int]:
        return [c.serial for c in self.issued if c.revoked_at is not None]


def _write_registry(root: Path, issued: tuple[IssuedCert, ...]) -> None:
    doc = {"format": REGISTRY_FORMAT, "certificates": [c.to_json() for c in issued]}
    write_atomic(root / "registry.json", json.dumps(doc, indent=2).encode() + b"\n", mode=PRIVATE_MODE)


def init_ca(root: Path, *, province: str, broker: str, name: str, now: datetime, days: int = 3650) -> CaDir:
    """Create a CA directory; refuses an existing one (a second CA would orphan every gateway)."""
    check_id("province", province)
    problem = broker_problem(broker)
    if problem is not None:
        raise ProvisioningError("bad_broker", f"--broker {problem}")
    if (root / "ca.key.pem").exists() or (root / "ca.json").exists():
        raise ProvisioningError("exists", f"{root} already holds a CA")
    root.mkdir(parents=True, exist_ok=True)
    root.chmod(0o700)
    ca = create_ca(name, now=now, days=days, path_length=1)
    ca.write(root / "ca.key.pem", root / "ca.cert.pem")
    write_issuing(root / ISSUING_DIR, create_issuing_ca(ca, now=now))
    new_hub_keys().write(root / "hub-keys")
    model = ed25519.Ed25519PrivateKey.generate()
    write_atomic(
        root / "model-signing.key.pem",
        model.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ),
        mode=PRIVATE_MODE,
    )
    write_atomic(
        root / "model-signing.pub.pem",
        model.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo),
        mode=PUBLIC_MODE,
    )
    settings = {"province": province, "broker": broker, "name": name}
    write_atomic(root / "ca.json", json.dumps(settings, indent=2).encode() + b"\n", mode=PUBLIC_MODE)
    _write_registry(root, ())
    write_crl(root, now=now)
    return open_ca(root)


def open_ca(root: Path) -> CaDir:
    try:
        settings = json.loads((root / "ca.json").read_bytes())
        registry = json.loads((root / "registry.json").read_bytes())
    except FileNotFoundError as exc:
        raise ProvisioningError("not_found", f"{exc.filename}: not a CA directory (edge-provision ca init)") from None
    except (OSError, ValueError) as exc:
        raise ProvisioningError("bad_json", f"{root}: {type(exc).__name__}") from None
    ca = load_certified_key(root / "ca.key.pem", root / "ca.cert.pem")
    try:
        issued = tuple(IssuedCert.from_json(d) for d in registry["certificates"])
        return CaDir(
            root=root, ca=ca, province=str(settings["province"]), broker=str(settings["broker"]), issued=issued
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ProvisioningError("bad_json", f"{root}: registry or settings: {type(exc).__name__}") from None


_PEM_BODY = re.compile(
    rb"-----BEGIN (?:NEW )?CERTIFICATE REQUEST-----(.*?)-----END (?:NEW )?CERTIFICATE REQUEST-----", re.S
)


def parse_csr(data: bytes) -> x509.CertificateSigningRequest:
    """A CSR as PEM, DER, or the bare base64 of the DER (what a phone's QR reader may hand over)."""
    data = data.strip()
    match = _PEM_BODY.search(data)
    try:
        if match:
            der = base64.b64decode(b"".join(match.group(1).split()), validate=True)
        elif data[:1] == b"\x30":
            der = data
        else:
            der = base64.b64decode(b"".join(data.split()), validate=True)
        csr = x509.load_der_x509_csr(der)
        valid = csr.is_signature_valid
        csr.public_key()
    except (ValueError, TypeError, binascii.Error, UnsupportedAlgorithm, x509.InvalidVersion):
        raise ProvisioningError("bad_csr", "not a certificate signing request (PEM, DER or base64)") from None
    if not valid:
        raise ProvisioningError("bad_csr", "the request's signature does not verify (damaged in transit?)")
    return csr


def _attr(name: x509.Name, oid: x509.ObjectIdentifier) -> str | None:
    attrs = name.get_attributes_for_oid(oid)
    if not attrs:
        return None
    value = attrs[0].value
    return value if isinstance(value, str) else value.decode("utf-8", "replace")


def sign_csr(
    root: Path,
    csr_data: bytes,
    *,
    province: str,
    station: str,
    now: datetime,
    days: int = GATEWAY_CERT_DAYS,
    broker: str | None = None,
    replace_key: bool = False,
) -> tuple[IssuedCert, bytes]:
    """Issue the gateway's certificate for the CSR's key and return it with the signed bundle.

    The CSR's CN is the gateway id; its province (ST) and station (OU), which ``enroll`` puts
    there, must be the ones given here (a typo on either side is caught before anything is
    issued). A gateway that already has a current certificate for another key is refused
    unless ``replace_key`` (a replaced SD card): the old certificates are then revoked.
    """
    ca_dir = open_ca(root)
    check_id("province", province)
    check_station(station)
    if province != ca_dir.province:
        raise ProvisioningError("wrong_province", f"this CA is province {ca_dir.province!r}, not {province!r}")
    csr = parse_csr(csr_data)
    gateway_id = check_id("gateway id (CSR CN)", _attr(csr.subject, NameOID.COMMON_NAME) or "")
    for oid, given, what in (
        (NameOID.STATE_OR_PROVINCE_NAME, province, "province"),
        (NameOID.ORGANIZATIONAL_UNIT_NAME, station, "station"),
    ):
        in_csr = _attr(csr.subject, oid)
        if in_csr is not None and in_csr != given:
            raise ProvisioningError("csr_mismatch", f"the request says {what} {in_csr!r}, not {given!r}")
    public = csr.public_key()
    if not isinstance(public, ec.EllipticCurvePublicKey):
        raise ProvisioningError("wrong_key_type", "certificates are issued for P-256 keys only")
    digest = key_sha256(public)
    others = [
        c
        for c in ca_dir.issued
        if c.gateway_id == gateway_id and c.revoked_at is None and c.key_sha256 != digest and c.not_after > now
    ]
    if others and not replace_key:
        raise ProvisioningError(
            "other_key",
            f"{gateway_id} already has a current certificate for another key (serial {others[0].serial:x}); "
            "pass --replace to revoke it and issue for the new key",
        )
    cert = issue_for_key(ca_dir.ca, gateway_id, public, now=now, days=days)
    record = IssuedCert(
        gateway_id=gateway_id,
        serial=cert.serial_number,
        province=province,
        station=station,
        not_after=cert.not_valid_after_utc,
        key_sha256=digest,
    )
    issued = (*(replace(c, revoked_at=now) if c in others else c for c in ca_dir.issued), record)
    bundle = make_bundle(
        ca=ca_dir.ca,
        certificate=cert,
        province=province,
        station=station,
        broker=broker or ca_dir.broker,
        hub_keys=HubKeys.load(ca_dir.hub_keys_dir).public(),
        model_signing_key=ca_dir.model_signing_key(),
        issued_at=now,
    )
    write_atomic(
        root / "issued" / f"{gateway_id}.cert.pem", cert.public_bytes(serialization.Encoding.PEM), mode=PUBLIC_MODE
    )
    _write_registry(root, issued)
    if others:
        write_crl(root, now=now)
    return record, bundle


def revoke(root: Path, gateway_id: str, *, now: datetime, renewals: tuple[IssuedCert, ...] = ()) -> list[IssuedCert]:
    """Revoke every unrevoked certificate of ``gateway_id`` and reissue the CRL; returns them.

    ``renewals`` are the certificates the hub's issuing CA renewed (its ledger,
    :func:`read_renewal_ledger`): they join the registry first, so they are revoked too."""
    if renewals:
        ca_dir = open_ca(root)
        known = {c.serial for c in ca_dir.issued}
        _write_registry(root, (*ca_dir.issued, *(c for c in renewals if c.serial not in known)))
    ca_dir = open_ca(root)
    targets = [c for c in ca_dir.issued if c.gateway_id == gateway_id and c.revoked_at is None]
    if not any(c.gateway_id == gateway_id for c in ca_dir.issued):
        raise ProvisioningError("unknown_gateway", f"this CA never issued a certificate for {gateway_id!r}")
    issued = tuple(replace(c, revoked_at=now) if c in targets else c for c in ca_dir.issued)
    _write_registry(root, issued)
    write_crl(root, now=now)
    return [replace(c, revoked_at=now) for c in targets]


def read_renewal_ledger(path: Path) -> tuple[IssuedCert, ...]:
    """The hub's renewal ledger (JSON lines of :class:`IssuedCert`, hub.renewal writes it)."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
        return tuple(IssuedCert.from_json(json.loads(line)) for line in lines if line.strip())
    except OSError as exc:
        raise ProvisioningError("unreadable", f"{path}: {exc.strerror}") from None
    except (KeyError, TypeError, ValueError) as exc:
        raise ProvisioningError("bad_json", f"{path}: {type(exc).__name__}") from None


def _issuing(root: Path) -> CertifiedKey | None:
    if not (root / ISSUING_DIR / ISSUING_CERT).exists():
        return None  # a CA directory from before renewal existed
    return load_issuing(root / ISSUING_DIR)


def write_crl(root: Path, *, now: datetime, days: int | None = None) -> Path:
    """(Re)issue ``crl.pem`` from the registry: the CA's CRL, then the issuing CA's (the same
    revoked serials: OpenSSL looks for the CRL of a certificate's own issuer); the broker must
    reload it (SIGHUP or restart)."""
    ca_dir = open_ca(root)
    serials = ca_dir.revoked_serials()
    pem = b""
    for signer in (ca_dir.ca, _issuing(root)):
        if signer is not None:
            pem += build_crl(signer, serials, now=now, **({} if days is None else {"days": days}))
    write_atomic(ca_dir.crl_path, pem, mode=PUBLIC_MODE)
    return ca_dir.crl_path


@dataclass(frozen=True, slots=True)
class BrokerFiles:
    conf: Path
    acl: Path
    ca: Path
    crl: Path
    cert: Path
    key: Path
    hub_identities: dict[str, tuple[Path, Path]]  # hub user -> (key, cert)


def _needs_server_cert(
    cert_path: Path, key_path: Path, names: tuple[str, ...], ca: CertifiedKey, now: datetime
) -> bool:
    try:
        current = load_certified_key(key_path, cert_path)
    except ProvisioningError:
        return True
    try:
        san = current.cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return True
    have = {str(v) for v in san.get_values_for_type(x509.DNSName)} | {
        str(v) for v in san.get_values_for_type(x509.IPAddress)
    }
    return (
        have != set(names)
        or current.cert.issuer != ca.cert.subject
        or current.cert.not_valid_after_utc - now < timedelta(days=30)
    )


def broker_config(
    root: Path,
    out: Path,
    *,
    hosts: tuple[str, ...],
    hub_users: tuple[str, ...],
    now: datetime,
    port: int = 8883,
    bind: str = "0.0.0.0",
    persistence_dir: Path | None = None,
    run_as_user: str | None = None,
) -> BrokerFiles:
    """Everything Mosquitto needs in ``out``: config, ACL, CA, CRL (reissued first when it has
    expired or expires within a week), the broker's server
    certificate for ``hosts`` (issued again when the names change or it nears expiry), and a
    client certificate per hub worker (CN = the hub user; issued when missing)."""
    from provisioning.broker import acl_text  # local: broker.py is imported by tests without ca

    if not hosts:
        raise ProvisioningError("no_hosts", "name at least one --host the gateways reach the broker at")
    for user in hub_users:
        if not re.fullmatch(r"hub-[A-Za-z0-9._-]{1,60}", user):
            raise ProvisioningError("bad_hub_user", f"{user!r}: hub users are named hub-<name>")
    ca_dir = open_ca(root)
    out = out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    files = BrokerFiles(
        conf=out / "mosquitto.conf",
        acl=out / "acl",
        ca=out / "ca.pem",
        crl=out / "crl.pem",
        cert=out / "broker.cert.pem",
        key=out / "broker.key.pem",
        hub_identities={u: (out / "hub" / f"{u}.key.pem", out / "hub" / f"{u}.cert.pem") for u in hub_users},
    )
    issuing = _issuing(root)  # the broker and the hub also trust what the issuing CA renews
    write_atomic(files.ca, ca_dir.ca.cert_pem() + (b"" if issuing is None else issuing.cert_pem()), mode=PUBLIC_MODE)
    try:
        stale = crl_problem(load_crl(ca_dir.crl_path.read_bytes(), ca_dir.ca.cert), now=now) is not None
    except (OSError, ProvisioningError):
        stale = True
    if stale:  # an expired CRL makes Mosquitto refuse every client: reissue it first
        write_crl(root, now=now)
    write_atomic(files.crl, ca_dir.crl_path.read_bytes(), mode=PUBLIC_MODE)
    if _needs_server_cert(files.cert, files.key, hosts, ca_dir.ca, now):
        issue(ca_dir.ca, "broker", now=now, server_names=hosts).write(files.key, files.cert)
    for user, (key, cert) in files.hub_identities.items():
        try:
            current = load_certified_key(key, cert)
            fresh = current.cert.issuer == ca_dir.ca.cert.subject and common_name(current.cert) == user
        except ProvisioningError:
            fresh = False
        if not fresh:
            issue(ca_dir.ca, user, now=now).write(key, cert)
    write_atomic(files.acl, acl_text(hub_users).encode(), mode=PUBLIC_MODE)
    conf = mosquitto_conf(
        port=port,
        cafile=files.ca,
        certfile=files.cert,
        keyfile=files.key,
        aclfile=files.acl,
        persistence_dir=persistence_dir,
        crlfile=files.crl,
        bind=bind,
        run_as_user=run_as_user,
    )
    write_atomic(files.conf, conf.encode(), mode=PUBLIC_MODE)
    return files


def ca_fingerprint(root: Path) -> str:
    return fingerprint(open_ca(root).ca.cert)
