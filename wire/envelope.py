"""The uplink envelope: sealed to the hub, signed by the gateway (DESIGN §6; docs/protocol.md).

The broker and anyone between see an opaque blob; they cannot read it (sealed with a key only
the hub holds) nor alter or forge it unnoticed (signed by the key of the gateway's certificate,
which travels inside and is checked against the CA list).

Sealing: a fresh X25519 key pair per envelope; ECDH with the hub's X25519 public key; HKDF-SHA256
(salt = ephemeral public || hub public, info = ``SEAL_INFO``) gives a 32-byte key for
ChaCha20-Poly1305 with a random 12-byte nonce and the header as associated data.

Signing: ECDSA P-256 with SHA-256 by the gateway's certificate key over every byte before the
signature (the fixed prefix, the header, the certificate and the ciphertext), fixed 64-byte r||s.

Byte layout (big-endian integers)::

    offset  size  field
    0       2     magic b"SE"
    2       1     format version (1)
    3       2     H: header length          (<= MAX_HEADER)
    5       2     C: certificate length     (<= MAX_CERT)
    7       4     N: ciphertext length      (>= 16, the Poly1305 tag)
    11      H     header: compact JSON {"v","lane","gateway_id","batch_id","epk","nonce","kid"}
    11+H    C     the gateway's certificate, PEM
    11+H+C  N     ciphertext (ChaCha20-Poly1305, tag included)
    end-64  64    signature r||s (ECDSA P-256, SHA-256)

Checks in :func:`open_envelope`, each failure its own typed error: total size, framing, version,
certificate parse, signature, header fields, certificate CN == header gateway id, certificate
issued by one of the CAs, valid at ``now`` (both it and its CA), usable for client
authentication, sealed to this hub key, and the AEAD tag.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import re
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Protocol

from cryptography import x509
from cryptography.exceptions import InvalidSignature, InvalidTag, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, x25519
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.utils import CryptographyDeprecationWarning
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from wire.errors import BadSeal, BadSignature, CertificateRejected, Malformed, UnsupportedVersion, WireError
from wire.messages import (
    FORMAT_VERSION,
    LANES,
    AlertBatch,
    ReadingBatch,
    decode_alerts,
    decode_readings,
    encode_alerts,
    encode_readings,
)

__all__ = [
    "MAGIC",
    "MAX_ENVELOPE",
    "SEAL_INFO",
    "BadSeal",
    "BadSignature",
    "CertificateRejected",
    "GatewaySigner",
    "Malformed",
    "Opened",
    "UnsupportedVersion",
    "WireError",
    "hub_key_id",
    "open_batch",
    "open_envelope",
    "seal",
    "seal_batch",
]

MAGIC: Final = b"SE"
MAX_ENVELOPE: Final = 4 * 1024 * 1024  # refused before any parsing
MAX_HEADER: Final = 2048
MAX_CERT: Final = 8192
SEAL_INFO: Final = b"station-edge/v1/seal"
_PREFIX = struct.Struct(">2sBHHI")  # magic, version, H, C, N
_SIG_LEN = 64
_TAG_LEN = 16
_NONCE_LEN = 12
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")
_KID_LEN = 16  # hex characters
# what an envelope may carry: the batch lanes, and command results (wire.commands)
ENVELOPE_LANES = (*LANES, "results")


class GatewaySigner(Protocol):
    """What :func:`seal` signs with: ``provisioning.pki.CertifiedKey`` is one."""

    @property
    def key(self) -> ec.EllipticCurvePrivateKey: ...

    def cert_pem(self) -> bytes: ...


@dataclass(frozen=True, slots=True)
class Opened:
    """An envelope that passed every check. The caller still checks that the topic's gateway is
    ``gateway_id`` (the broker's ACL already ties the topic to the connection's certificate)."""

    gateway_id: str
    lane: str
    batch_id: str
    plaintext: bytes


def hub_key_id(hub_sealing_public: x25519.X25519PublicKey) -> str:
    """16 hex characters naming a hub sealing key (first 8 bytes of SHA-256 of its raw bytes):
    the header says which hub key an envelope was sealed to, so a hub that rotated its key tells
    "sealed to another key" (``wrong_hub_key``) from corruption (``bad_seal``)."""
    raw = hub_sealing_public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:_KID_LEN]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(value: object, size: int, name: str) -> bytes:
    if not isinstance(value, str) or len(value) > 2 * size + 4:
        raise Malformed("bad_header", f"{name}: not base64")
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (binascii.Error, ValueError):
        raise Malformed("bad_header", f"{name}: not base64") from None
    if len(raw) != size:
        raise Malformed("bad_header", f"{name}: {len(raw)} bytes, expected {size}")
    return raw


def _derive_key(shared: bytes, epk: bytes, hub_pub: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=epk + hub_pub, info=SEAL_INFO).derive(shared)


def seal(
    plaintext: bytes,
    *,
    lane: str,
    gateway_id: str,
    batch_id: str,
    hub_sealing_public: x25519.X25519PublicKey,
    gateway: GatewaySigner,
) -> bytes:
    """Seal ``plaintext`` to the hub and sign it with the gateway's key (layout: module doc)."""
    if lane not in ENVELOPE_LANES:
        raise Malformed("bad_header", f"lane must be one of {ENVELOPE_LANES}")
    if not _ID.fullmatch(gateway_id) or not _ID.fullmatch(batch_id):
        raise Malformed("bad_header", "gateway_id and batch_id must be ids")
    cert_pem = gateway.cert_pem()
    ephemeral = x25519.X25519PrivateKey.generate()
    epk = ephemeral.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    hub_pub = hub_sealing_public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    nonce = os.urandom(_NONCE_LEN)
    header = json.dumps(
        {
            "v": FORMAT_VERSION,
            "lane": lane,
            "gateway_id": gateway_id,
            "batch_id": batch_id,
            "epk": _b64(epk),
            "nonce": _b64(nonce),
            "kid": hub_key_id(hub_sealing_public),
        },
        separators=(",", ":"),
    ).encode("ascii")
    key = _derive_key(ephemeral.exchange(hub_sealing_public), epk, hub_pub)
    ciphertext = ChaCha20Poly1305(key).encrypt(nonce, bytes(plaintext), header)
    if len(cert_pem) > MAX_CERT:
        raise Malformed("too_large", "certificate")
    signed = _PREFIX.pack(MAGIC, FORMAT_VERSION, len(header), len(cert_pem), len(ciphertext)) + (
        header + cert_pem + ciphertext
    )
    if len(signed) + _SIG_LEN > MAX_ENVELOPE:
        raise Malformed("too_large", f"envelope {len(signed) + _SIG_LEN} > {MAX_ENVELOPE} bytes")
    r, s = decode_dss_signature(gateway.key.sign(signed, ec.ECDSA(hashes.SHA256())))
    return signed + r.to_bytes(32, "big") + s.to_bytes(32, "big")


def open_envelope(
    data: bytes,
    *,
    hub_sealing_private: x25519.X25519PrivateKey,
    ca_certs: Sequence[x509.Certificate],
    now: datetime,
) -> Opened:
    """Verify and decrypt an envelope; any failure is a :class:`~wire.errors.WireError` subclass
    with a ``reason`` code (module doc lists the checks). A naive ``now`` is the caller's bug:
    ValueError."""
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be timezone-aware")
    try:
        return _open(data, hub_sealing_private, ca_certs, now)
    except WireError:
        raise
    except Exception as exc:  # whatever the bytes, only WireError leaves this function
        raise Malformed("malformed", type(exc).__name__) from None


def _open(
    data: bytes, hub_sealing_private: x25519.X25519PrivateKey, ca_certs: Sequence[x509.Certificate], now: datetime
) -> Opened:
    if not isinstance(data, bytes | bytearray | memoryview):
        raise Malformed("malformed", "not bytes")
    if len(data) > MAX_ENVELOPE:
        raise Malformed("too_large", f"{len(data)} > {MAX_ENVELOPE} bytes")
    data = bytes(data)
    if len(data) < _PREFIX.size + _SIG_LEN:
        raise Malformed("truncated", "shorter than the fixed fields")
    magic, version, h_len, c_len, n_len = _PREFIX.unpack_from(data)
    if magic != MAGIC:
        raise Malformed("bad_magic")
    if version != FORMAT_VERSION:
        raise UnsupportedVersion("unsupported_version", f"envelope version {version}")
    if h_len > MAX_HEADER or c_len > MAX_CERT or n_len < _TAG_LEN:
        raise Malformed("bad_length", "a length field is out of bounds")
    if _PREFIX.size + h_len + c_len + n_len + _SIG_LEN != len(data):
        raise Malformed("bad_length", "lengths do not add up to the envelope size")
    h_end = _PREFIX.size + h_len
    c_end = h_end + c_len
    header_bytes, cert_bytes = data[_PREFIX.size : h_end], data[h_end:c_end]
    ciphertext, signature = data[c_end:-_SIG_LEN], data[-_SIG_LEN:]

    cert = _load_cert(cert_bytes)
    _verify_signature(cert, data[:-_SIG_LEN], signature)

    header = _header(header_bytes)
    gateway_id = header["gateway_id"]
    _check_cert(cert, gateway_id, ca_certs, now)

    hub_pub = hub_sealing_private.public_key()
    if header["kid"] != hub_key_id(hub_pub):
        raise BadSeal("wrong_hub_key", "sealed to another hub key")
    epk = _unb64(header["epk"], 32, "epk")
    nonce = _unb64(header["nonce"], _NONCE_LEN, "nonce")
    hub_raw = hub_pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    try:
        shared = hub_sealing_private.exchange(x25519.X25519PublicKey.from_public_bytes(epk))
    except ValueError:  # a low-order point gives the all-zero secret, which the library refuses
        raise BadSeal("bad_seal", "ephemeral key unusable") from None
    try:
        plaintext = ChaCha20Poly1305(_derive_key(shared, epk, hub_raw)).decrypt(nonce, ciphertext, header_bytes)
    except InvalidTag:
        raise BadSeal("bad_seal", "ciphertext not authentic for this hub key") from None
    return Opened(gateway_id=gateway_id, lane=header["lane"], batch_id=header["batch_id"], plaintext=plaintext)


def _load_cert(cert_bytes: bytes) -> x509.Certificate:
    try:
        cert = x509.load_pem_x509_certificate(cert_bytes)
        public = cert.public_key()
    except (ValueError, TypeError, UnsupportedAlgorithm, x509.InvalidVersion, CryptographyDeprecationWarning):
        # the warning (e.g. a serial number <= 0) only arrives as an exception where warnings are
        # errors (the tests); elsewhere it is printed once and the signature check refuses the bytes
        raise CertificateRejected("cert_malformed") from None
    if not isinstance(public, ec.EllipticCurvePublicKey) or not isinstance(public.curve, ec.SECP256R1):
        raise CertificateRejected("cert_malformed", "not a P-256 key")
    return cert


def _verify_signature(cert: x509.Certificate, signed: bytes, signature: bytes) -> None:
    public = cert.public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey)
    r, s = int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
    if r <= 0 or s <= 0:
        raise BadSignature("bad_signature", "zero r or s")
    try:
        public.verify(encode_dss_signature(r, s), signed, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        raise BadSignature("bad_signature", "not signed by the certificate's key") from None


def _header(header_bytes: bytes) -> dict[str, Any]:
    try:
        header = json.loads(header_bytes.decode("ascii"))
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise Malformed("bad_header", "not JSON") from None
    if not isinstance(header, dict):
        raise Malformed("bad_header", "not an object")
    v = header.get("v")
    if type(v) is not int:
        raise Malformed("bad_header", "v missing")
    if v != FORMAT_VERSION:
        raise UnsupportedVersion("unsupported_version", f"header v={v}")
    if header.get("lane") not in ENVELOPE_LANES:
        raise Malformed("bad_header", "lane")
    for key in ("gateway_id", "batch_id"):
        value = header.get(key)
        if not isinstance(value, str) or not _ID.fullmatch(value):
            raise Malformed("bad_header", f"{key}: not an id")
    kid = header.get("kid")
    if not isinstance(kid, str) or len(kid) != _KID_LEN:
        raise Malformed("bad_header", "kid")
    return header


def _utc_window(cert: x509.Certificate) -> tuple[datetime, datetime]:
    return cert.not_valid_before_utc, cert.not_valid_after_utc


def _check_cert(cert: x509.Certificate, gateway_id: str, ca_certs: Sequence[x509.Certificate], now: datetime) -> None:
    try:
        cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    except ValueError:
        raise CertificateRejected("cert_malformed", "subject") from None
    if len(cns) != 1 or cns[0].value != gateway_id:
        raise CertificateRejected("cert_cn_mismatch", "certificate CN is not the header's gateway id")
    issuer = next((ca for ca in ca_certs if _issued_by(cert, ca)), None)
    if issuer is None:
        raise CertificateRejected("cert_untrusted", "not issued by a trusted CA")
    for which in (cert, issuer):
        not_before, not_after = _utc_window(which)
        if now < not_before:
            raise CertificateRejected("cert_not_yet_valid")
        if now > not_after:
            raise CertificateRejected("cert_expired")
    try:
        extensions = cert.extensions
        constraints = extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        constraints = None
    except (ValueError, UnsupportedAlgorithm):
        raise CertificateRejected("cert_malformed", "extensions") from None
    if constraints is not None and constraints.ca:
        raise CertificateRejected("cert_wrong_usage", "a CA certificate")
    try:
        usages = extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return
    if ExtendedKeyUsageOID.CLIENT_AUTH not in usages:
        raise CertificateRejected("cert_wrong_usage", "not a client certificate")


def _issued_by(cert: x509.Certificate, ca: x509.Certificate) -> bool:
    if cert.issuer != ca.subject:
        return False
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
        return False
    return True


# -- batches: encode + seal, open + decode ----------------------------------------------------


def seal_batch(
    batch: ReadingBatch | AlertBatch, *, hub_sealing_public: x25519.X25519PublicKey, gateway: GatewaySigner
) -> bytes:
    """Encode a batch (:mod:`wire.messages`) and seal it in its lane."""
    if isinstance(batch, ReadingBatch):
        lane, plaintext = "readings", encode_readings(batch)
    else:
        lane, plaintext = "alerts", encode_alerts(batch)
    return seal(
        plaintext,
        lane=lane,
        gateway_id=batch.gateway_id,
        batch_id=batch.batch_id,
        hub_sealing_public=hub_sealing_public,
        gateway=gateway,
    )


def open_batch(
    data: bytes,
    *,
    hub_sealing_private: x25519.X25519PrivateKey,
    ca_certs: Sequence[x509.Certificate],
    now: datetime,
) -> tuple[Opened, ReadingBatch | AlertBatch]:
    """:func:`open_envelope`, then decode by lane; the batch must name the envelope's gateway and
    batch id (``batch_mismatch`` otherwise: a signed envelope carrying some other batch)."""
    opened = open_envelope(data, hub_sealing_private=hub_sealing_private, ca_certs=ca_certs, now=now)
    if opened.lane not in LANES:
        raise Malformed("wrong_lane", "not a batch envelope")
    batch: ReadingBatch | AlertBatch = (
        decode_readings(opened.plaintext) if opened.lane == "readings" else decode_alerts(opened.plaintext)
    )
    if batch.gateway_id != opened.gateway_id or batch.batch_id != opened.batch_id:
        raise Malformed("batch_mismatch", "batch ids differ between envelope and payload")
    return opened, batch
