"""The enrollment bundle: everything a gateway needs from the province, signed by its CA.

``edge-provision sign`` writes one per gateway; ``edge-provision apply`` on the gateway refuses
it unless the signature verifies, the certificate chains to the CA in the bundle, and (checked
by apply, which holds the key) the certificate is for the local key. JSON, UTF-8::

    {"format": "station-edge-enrollment/1", "gateway_id": "gw-…", "province": "…",
     "station": "…", "broker": "mqtts://host:8883", "issued_at": "2026-12-01T12:00:00+00:00",
     "certificate": PEM, "ca_chain": [PEM, …], "hub_keys": {"sealing": PEM, "signing": PEM},
     "model_signing_key": PEM,
     "signature": {"alg": "ecdsa-p256-sha256", "value": base64 DER}}

The signature is the CA key's ECDSA over the canonical JSON of every other member (keys sorted,
no whitespace, ASCII). The CA in the bundle is the trust anchor only once the technician has
compared its fingerprint with the one the hub administrator gave (``apply --ca-fingerprint``):
without that, the signature proves the bundle was not altered after signing, not who signed it.
Pure: bytes in, records out.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from provisioning.address import broker_problem
from provisioning.errors import ProvisioningError
from provisioning.pki import CertifiedKey, HubPublicKeys, common_name, verify_issued_by

__all__ = [
    "BUNDLE_FORMAT",
    "SIGNATURE_ALG",
    "Bundle",
    "BundleError",
    "fingerprint",
    "make_bundle",
    "parse_bundle",
]

BUNDLE_FORMAT = "station-edge-enrollment/1"
SIGNATURE_ALG = "ecdsa-p256-sha256"
MAX_BUNDLE = 256 * 1024
_MEMBERS = (
    "format",
    "gateway_id",
    "province",
    "station",
    "broker",
    "issued_at",
    "certificate",
    "ca_chain",
    "hub_keys",
    "model_signing_key",
)


# what cryptography raises for damaged PEM/DER (InvalidVersion and UnsupportedAlgorithm are no ValueError)
_DAMAGED = (ValueError, TypeError, UnicodeEncodeError, UnsupportedAlgorithm, x509.InvalidVersion)


class BundleError(ProvisioningError):
    """The bundle cannot be used: ``bad_json``, ``bad_format``, ``bad_signature``,
    ``not_issued_by_ca``, ``cn_mismatch``, ``bad_pem``, ``wrong_key_type``, ``too_large``."""


@dataclass(frozen=True, slots=True)
class Bundle:
    gateway_id: str
    province: str
    station: str
    broker: str
    issued_at: datetime
    certificate: x509.Certificate
    ca_chain: tuple[x509.Certificate, ...]
    hub_keys: HubPublicKeys
    model_signing_key: ed25519.Ed25519PublicKey

    @property
    def ca(self) -> x509.Certificate:
        """The CA that issued the certificate and signed the bundle (the first of the chain)."""
        return self.ca_chain[0]

    def ca_pem(self) -> bytes:
        return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in self.ca_chain)

    def cert_pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    def model_key_pem(self) -> bytes:
        return self.model_signing_key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )


def fingerprint(cert: x509.Certificate) -> str:
    """SHA-256 of the DER certificate, as ``AB:CD:…`` (what ``openssl x509 -fingerprint -sha256`` prints)."""
    digest = hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest().upper()
    return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))


def _canonical(doc: dict[str, Any]) -> bytes:
    body = {k: v for k, v in doc.items() if k != "signature"}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode("ascii")


def make_bundle(
    *,
    ca: CertifiedKey,
    certificate: x509.Certificate,
    province: str,
    station: str,
    broker: str,
    hub_keys: HubPublicKeys,
    model_signing_key: ed25519.Ed25519PublicKey,
    issued_at: datetime,
    extra_chain: Sequence[x509.Certificate] = (),
) -> bytes:
    """The signed bundle's bytes (JSON, newline-terminated)."""
    problem = broker_problem(broker)
    if problem is not None:  # before anything is signed
        raise ValueError(f"broker {problem}")
    doc: dict[str, Any] = {
        "format": BUNDLE_FORMAT,
        "gateway_id": common_name(certificate),
        "province": province,
        "station": station,
        "broker": broker,
        "issued_at": issued_at.isoformat(),
        "certificate": certificate.public_bytes(serialization.Encoding.PEM).decode("ascii"),
        "ca_chain": [c.public_bytes(serialization.Encoding.PEM).decode("ascii") for c in (ca.cert, *extra_chain)],
        "hub_keys": hub_keys.to_pem(),
        "model_signing_key": model_signing_key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ).decode("ascii"),
    }
    signature = ca.key.sign(_canonical(doc), ec.ECDSA(hashes.SHA256()))
    doc["signature"] = {"alg": SIGNATURE_ALG, "value": base64.b64encode(signature).decode("ascii")}
    return json.dumps(doc, indent=2, sort_keys=True).encode("ascii") + b"\n"


def _string(doc: dict[str, Any], name: str) -> str:
    value = doc.get(name)
    if not isinstance(value, str) or not value:
        raise BundleError("bad_format", f"member {name!r} must be a non-empty string")
    return value


def _cert(pem: object, what: str) -> x509.Certificate:
    if not isinstance(pem, str):
        raise BundleError("bad_format", f"{what} must be a PEM string")
    try:
        return x509.load_pem_x509_certificate(pem.encode("ascii"))
    except _DAMAGED:
        raise BundleError("bad_pem", f"{what} is not a PEM certificate") from None


def parse_bundle(data: bytes) -> Bundle:
    """Parse and verify a bundle: format, the CA's signature over it, the certificate issued by
    that CA for the gateway the bundle names. Raises :class:`BundleError` saying which."""
    if len(data) > MAX_BUNDLE:
        raise BundleError("too_large", f"{len(data)} bytes (at most {MAX_BUNDLE})")
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        raise BundleError("bad_json", "not a JSON document") from None
    if not isinstance(doc, dict):
        raise BundleError("bad_json", "not a JSON object")
    if doc.get("format") != BUNDLE_FORMAT:
        raise BundleError("bad_format", f"format must be {BUNDLE_FORMAT!r}")
    missing = [m for m in _MEMBERS if m not in doc]
    unknown = sorted(set(doc) - {*_MEMBERS, "signature"})
    if missing or unknown:
        raise BundleError("bad_format", f"missing {missing}, unknown {unknown}")
    chain_pem = doc["ca_chain"]
    if not isinstance(chain_pem, list) or not chain_pem:
        raise BundleError("bad_format", "ca_chain must be a non-empty list")
    chain = tuple(_cert(p, f"ca_chain[{i}]") for i, p in enumerate(chain_pem))
    try:
        ca_key = chain[0].public_key()
    except _DAMAGED:
        raise BundleError("bad_pem", "ca_chain[0] has an unreadable key") from None
    if not isinstance(ca_key, ec.EllipticCurvePublicKey):
        raise BundleError("wrong_key_type", "the CA key is not an EC key")
    sig = doc.get("signature")
    if not isinstance(sig, dict) or sig.get("alg") != SIGNATURE_ALG or not isinstance(sig.get("value"), str):
        raise BundleError("bad_signature", "the bundle is not signed")
    try:
        ca_key.verify(base64.b64decode(sig["value"], validate=True), _canonical(doc), ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, ValueError):
        raise BundleError("bad_signature", "the signature does not verify: the bundle was altered") from None
    cert = _cert(doc["certificate"], "certificate")
    try:
        cert.public_key()  # parsed here, so that callers may rely on it
    except _DAMAGED:
        raise BundleError("bad_pem", "the certificate has an unreadable key") from None
    if not verify_issued_by(cert, chain[0]):
        raise BundleError("not_issued_by_ca", "the certificate was not issued by the bundle's CA")
    gateway_id = _string(doc, "gateway_id")
    if common_name(cert) != gateway_id:
        raise BundleError("cn_mismatch", "the certificate's CN is not the bundle's gateway_id")
    broker = _string(doc, "broker")
    problem = broker_problem(broker)
    if problem is not None:
        raise BundleError("bad_format", f"broker {problem}")
    try:
        issued_at = datetime.fromisoformat(_string(doc, "issued_at"))
    except ValueError:
        raise BundleError("bad_format", "issued_at is not an ISO 8601 time") from None
    hub = doc["hub_keys"]
    if not isinstance(hub, dict):
        raise BundleError("bad_format", "hub_keys must be an object")
    try:
        hub_keys = HubPublicKeys.from_pem(hub)
        model_key = serialization.load_pem_public_key(str(doc["model_signing_key"]).encode("ascii"))
    except ProvisioningError as exc:
        raise BundleError(exc.reason, exc.detail) from None
    except _DAMAGED:
        raise BundleError("bad_pem", "model_signing_key is not a PEM public key") from None
    if not isinstance(model_key, ed25519.Ed25519PublicKey):
        raise BundleError("wrong_key_type", "model_signing_key must be Ed25519")
    return Bundle(
        gateway_id=gateway_id,
        province=_string(doc, "province"),
        station=_string(doc, "station"),
        broker=broker,
        issued_at=issued_at,
        certificate=cert,
        ca_chain=chain,
        hub_keys=hub_keys,
        model_signing_key=model_key,
    )
