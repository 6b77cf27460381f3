"""Keys and certificates for the sync link (DESIGN §5): a CA, certificates for gateways, hub
workers and the broker, and the hub's own keys for sealing and signing.

Everything here is pure ``cryptography`` plus atomic file writes. Times always come from the
caller's ``now`` (never the wall clock): a certificate is valid from ``now - 1 h`` (clock skew
between the machine that issues it and the one that checks it) to ``now + days``.

Common names: a gateway's certificate has CN = its gateway id (``gw-0001``), which the broker
uses as the MQTT username (``use_identity_as_username``) and the hub compares with the gateway id
in every envelope; a hub worker's is ``hub-<name>``; the broker's is ``broker`` with the DNS
names and IP literals it is reached at as subject alternative names.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, x25519
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from provisioning._files import PRIVATE_MODE, PUBLIC_MODE, write_atomic
from provisioning.errors import ProvisioningError

__all__ = [
    "CA_KEY_USAGE",
    "CLOCK_SKEW",
    "HUB_PUBLIC_FILE",
    "HUB_SEALING_FILE",
    "HUB_SIGNING_FILE",
    "CertifiedKey",
    "HubKeys",
    "HubPublicKeys",
    "ProvisioningError",
    "common_name",
    "create_ca",
    "issue",
    "issue_for_key",
    "load_ca_certs",
    "load_certified_key",
    "new_hub_keys",
    "revocation_list",
    "verify_issued_by",
]

CLOCK_SKEW = timedelta(hours=1)  # not_valid_before = now - CLOCK_SKEW

# File names inside a hub keys directory (HubKeys.write / HubKeys.load).
HUB_SEALING_FILE = "sealing.key.pem"  # X25519 private key, PKCS#8, 0600
HUB_SIGNING_FILE = "signing.key.pem"  # Ed25519 private key, PKCS#8, 0600
HUB_PUBLIC_FILE = "hub-public.json"  # HubPublicKeys JSON, what gateways are given, 0644

_CURVE = ec.SECP256R1()


# A certificate authority's key usage: signs certificates and CRLs, nothing else.
CA_KEY_USAGE = x509.KeyUsage(
    digital_signature=False,
    content_commitment=False,
    key_encipherment=False,
    data_encipherment=False,
    key_agreement=False,
    key_cert_sign=True,
    crl_sign=True,
    encipher_only=False,
    decipher_only=False,
)


@dataclass(frozen=True, slots=True)
class CertifiedKey:
    """A private key (P-256) and the certificate issued for it."""

    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate

    def key_pem(self) -> bytes:
        """The private key as unencrypted PKCS#8 PEM (what Mosquitto and paho read)."""
        return self.key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )

    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    @property
    def common_name(self) -> str:
        return common_name(self.cert)

    def write(self, key_path: Path, cert_path: Path) -> None:
        """Write the key (0600) and the certificate (0644), each atomically."""
        write_atomic(key_path, self.key_pem(), mode=PRIVATE_MODE)
        write_atomic(cert_path, self.cert_pem(), mode=PUBLIC_MODE)


def common_name(cert: x509.Certificate) -> str:
    """The subject's CN, or "" when it has none."""
    attrs = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if not attrs:
        return ""
    value = attrs[0].value
    return value if isinstance(value, str) else value.decode("utf-8", "replace")


def _name(cn: str) -> x509.Name:
    if not cn or len(cn) > 64:
        raise ProvisioningError("bad_common_name", f"length {len(cn)} (1..64)")
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def create_ca(common_name: str, *, now: datetime, days: int = 3650, path_length: int = 0) -> CertifiedKey:
    """A new self-signed P-256 CA; path length 0 (the default) lets it sign end-entity
    certificates only, 1 also one level of issuing CA (provisioning.issuing)."""
    _check_now(now)
    key = ec.generate_private_key(_CURVE)
    name = _name(common_name)
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(now + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
        .add_extension(
            CA_KEY_USAGE,
            critical=True,
        )
        .add_extension(ski, critical=False)
        .sign(key, hashes.SHA256())
    )
    return CertifiedKey(key=key, cert=cert)


def issue(
    ca: CertifiedKey,
    common_name: str,
    *,
    now: datetime,
    days: int = 825,
    server_names: Sequence[str] = (),
) -> CertifiedKey:
    """A new P-256 key and its certificate signed by ``ca``.

    With ``server_names`` (DNS names or IP literals) the certificate is a TLS server's: they go
    into the subject alternative names and the extended key usage is serverAuth. Without, it is a
    client's (clientAuth): a gateway or a hub worker.
    """
    key = ec.generate_private_key(_CURVE)
    cert = issue_for_key(ca, common_name, key.public_key(), now=now, days=days, server_names=server_names)
    return CertifiedKey(key=key, cert=cert)


def issue_for_key(
    ca: CertifiedKey,
    common_name: str,
    public_key: ec.EllipticCurvePublicKey,
    *,
    now: datetime,
    days: int = 825,
    server_names: Sequence[str] = (),
) -> x509.Certificate:
    """A certificate for a key the caller already holds (a gateway that made its own key sends
    only the public half). Same rules as :func:`issue`."""
    _check_now(now)
    if not isinstance(public_key, ec.EllipticCurvePublicKey) or not isinstance(public_key.curve, ec.SECP256R1):
        raise ProvisioningError("wrong_key_type", "certificates are issued for P-256 keys only")
    if days <= 0:
        raise ProvisioningError("bad_validity", f"days={days}")
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(ca.cert.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(now + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH if server_names else ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()),
            critical=False,
        )
    )
    if server_names:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([_general_name(n) for n in server_names]), critical=False
        )
    return builder.sign(ca.key, hashes.SHA256())


def _general_name(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


def _check_now(now: datetime) -> None:
    if now.tzinfo is None or now.utcoffset() is None:
        raise ProvisioningError("naive_time", "now must be timezone-aware")


def revocation_list(ca: CertifiedKey, serials: Iterable[int], *, now: datetime, days: int = 30) -> bytes:
    """A CRL (PEM) signed by ``ca`` revoking ``serials``, for the broker's ``crlfile``."""
    _check_now(now)
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca.cert.subject)
        .last_update(now - CLOCK_SKEW)
        .next_update(now + timedelta(days=days))
    )
    for serial in serials:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(now - CLOCK_SKEW).build()
        )
    return builder.sign(ca.key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


# -- the hub's keys ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HubPublicKeys:
    """What every gateway is given: the key it seals uplink payloads to, the key acks are signed with."""

    sealing: x25519.X25519PublicKey
    signing: ed25519.Ed25519PublicKey

    def to_pem(self) -> dict[str, str]:
        return {
            "sealing": _public_pem(self.sealing),
            "signing": _public_pem(self.signing),
        }

    @classmethod
    def from_pem(cls, d: Mapping[str, str]) -> HubPublicKeys:
        try:
            sealing = serialization.load_pem_public_key(str(d["sealing"]).encode("ascii"))
            signing = serialization.load_pem_public_key(str(d["signing"]).encode("ascii"))
        except (KeyError, TypeError, ValueError, UnicodeEncodeError, UnsupportedAlgorithm) as exc:
            raise ProvisioningError("bad_pem", f"hub public keys: {type(exc).__name__}") from None
        if not isinstance(sealing, x25519.X25519PublicKey):
            raise ProvisioningError("wrong_key_type", "hub sealing key must be X25519")
        if not isinstance(signing, ed25519.Ed25519PublicKey):
            raise ProvisioningError("wrong_key_type", "hub signing key must be Ed25519")
        return cls(sealing=sealing, signing=signing)

    def write(self, path: Path) -> None:
        """JSON ``{"sealing": PEM, "signing": PEM}``, 0644, atomically."""
        data = json.dumps(self.to_pem(), indent=2, sort_keys=True).encode() + b"\n"
        write_atomic(path, data, mode=PUBLIC_MODE)

    @classmethod
    def load(cls, path: Path) -> HubPublicKeys:
        try:
            doc = json.loads(path.read_bytes())
        except FileNotFoundError:
            raise ProvisioningError("not_found", str(path)) from None
        except (OSError, ValueError) as exc:
            raise ProvisioningError("bad_json", f"{path}: {type(exc).__name__}") from None
        if not isinstance(doc, dict):
            raise ProvisioningError("bad_json", f"{path}: not an object")
        return cls.from_pem(doc)


@dataclass(frozen=True, slots=True)
class HubKeys:
    """The hub's private keys: gateways seal to ``sealing``; the hub signs acks (and later
    commands and models) with ``signing``. Every hub worker holds the same pair."""

    sealing: x25519.X25519PrivateKey
    signing: ed25519.Ed25519PrivateKey

    def public(self) -> HubPublicKeys:
        return HubPublicKeys(sealing=self.sealing.public_key(), signing=self.signing.public_key())

    def write(self, directory: Path) -> None:
        """``sealing.key.pem`` and ``signing.key.pem`` (0600) and ``hub-public.json`` (0644)."""
        directory.mkdir(parents=True, exist_ok=True)
        write_atomic(directory / HUB_SEALING_FILE, _private_pem(self.sealing), mode=PRIVATE_MODE)
        write_atomic(directory / HUB_SIGNING_FILE, _private_pem(self.signing), mode=PRIVATE_MODE)
        self.public().write(directory / HUB_PUBLIC_FILE)

    @classmethod
    def load(cls, directory: Path) -> HubKeys:
        sealing = _load_private(directory / HUB_SEALING_FILE)
        signing = _load_private(directory / HUB_SIGNING_FILE)
        if not isinstance(sealing, x25519.X25519PrivateKey):
            raise ProvisioningError("wrong_key_type", f"{directory / HUB_SEALING_FILE}: not X25519")
        if not isinstance(signing, ed25519.Ed25519PrivateKey):
            raise ProvisioningError("wrong_key_type", f"{directory / HUB_SIGNING_FILE}: not Ed25519")
        return cls(sealing=sealing, signing=signing)


def new_hub_keys() -> HubKeys:
    return HubKeys(sealing=x25519.X25519PrivateKey.generate(), signing=ed25519.Ed25519PrivateKey.generate())


def _private_pem(key: x25519.X25519PrivateKey | ed25519.Ed25519PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _public_pem(key: x25519.X25519PublicKey | ed25519.Ed25519PublicKey) -> str:
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode("ascii")


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise ProvisioningError("not_found", str(path)) from None
    except OSError as exc:
        raise ProvisioningError("unreadable", f"{path}: {exc.strerror}") from None


def _load_private(path: Path) -> object:
    try:
        return serialization.load_pem_private_key(_read(path), password=None)
    except (ValueError, TypeError) as exc:
        raise ProvisioningError("bad_pem", f"{path}: {type(exc).__name__}") from None


# -- loading ----------------------------------------------------------------------------------


def load_certified_key(key_path: Path, cert_path: Path) -> CertifiedKey:
    """Load a P-256 key and its certificate, and check that they belong together."""
    key = _load_private(key_path)
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise ProvisioningError("wrong_key_type", f"{key_path}: not a P-256 key")
    try:
        cert = x509.load_pem_x509_certificate(_read(cert_path))
    except ValueError as exc:
        raise ProvisioningError("bad_pem", f"{cert_path}: {type(exc).__name__}") from None
    cert_key = cert.public_key()
    if not isinstance(cert_key, ec.EllipticCurvePublicKey) or cert_key.public_numbers() != (
        key.public_key().public_numbers()
    ):
        raise ProvisioningError("key_mismatch", f"{cert_path} is not the certificate of {key_path}")
    return CertifiedKey(key=key, cert=cert)


def load_ca_certs(path: Path) -> list[x509.Certificate]:
    """Every certificate in a PEM bundle (the CA list the hub checks gateway certificates with)."""
    try:
        certs = x509.load_pem_x509_certificates(_read(path))
    except ValueError as exc:
        raise ProvisioningError("bad_pem", f"{path}: {type(exc).__name__}") from None
    return certs


def verify_issued_by(cert: x509.Certificate, ca: x509.Certificate) -> bool:
    """True when ``cert`` names ``ca`` as issuer and carries its valid signature (no time check)."""
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True
