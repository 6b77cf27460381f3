"""Certificate renewal messages (docs/provisioning.md, "Certificate renewal"). Pure.

* Request, gateway → hub on ``se/v1/{province}/{gateway_id}/renew/req``: compact JSON
  ``{"v","type":"renew_request","gateway_id","request_id","serial","issued_at","expires_at",
  "csr","cert"}`` (``serial``: hex serial of the current certificate; ``csr``: a PKCS#10 request
  for the same key, PEM; ``cert``: the current certificate, PEM), then a detached ECDSA P-256 /
  SHA-256 signature (64 bytes r||s) by the gateway's key over ``REQUEST_CONTEXT + json``. The
  signature binds the request id, the expiry and the serial to the key the current certificate
  certifies; the broker (TLS client certificate + ACL) ties the topic to the gateway.
  Optional ``"cmd_id"`` (a key rotation, remote command ``rotate-keys``): the CSR is then for a
  *new* key (signed by it: proof of possession) while the request stays signed by the current
  one; the hub accepts the key change only for a pending ``rotate-keys`` command of that id.
  Without the field the request is byte for byte what it was before.
* Reply, hub → gateway on ``.../renew/cert``: compact JSON ``{"v","type":"renew_reply",
  "gateway_id","request_id","status":"issued"|"refused","reason","chain","issued_at"}``
  (``chain``: the new certificate then the issuing CA's, PEM; empty when refused), then the
  hub's Ed25519 signature (64 bytes) over ``REPLY_CONTEXT + json`` with the key acks are signed
  with (a distinct context, so neither ever verifies as the other).

Every decoder raises :class:`~wire.errors.WireError` subclasses only.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature

from wire.errors import BadSignature, CertificateRejected, Malformed, UnsupportedVersion, WireError

__all__ = [
    "MAX_RENEWAL",
    "REPLY_CONTEXT",
    "REPLY_STATUSES",
    "REQUEST_CONTEXT",
    "RenewalReply",
    "RenewalRequest",
    "decode_reply",
    "decode_request",
    "encode_reply",
    "encode_request",
]

VERSION: Final = 1
MAX_RENEWAL: Final = 16 * 1024
REQUEST_CONTEXT: Final = b"station-edge/v1/renew-request\x00"
REPLY_CONTEXT: Final = b"station-edge/v1/renew-reply\x00"
REPLY_STATUSES: Final = ("issued", "refused")
_ECDSA_LEN = 64
_ED_LEN = 64
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")
_REASON = re.compile(r"[a-z0-9_]{0,64}")


@dataclass(frozen=True, slots=True)
class RenewalRequest:
    gateway_id: str
    request_id: str
    serial: int  # of the certificate the gateway holds now
    issued_at: datetime
    expires_at: datetime
    csr_pem: bytes
    cert_pem: bytes
    cmd_id: str | None = None  # a key rotation: the rotate-keys command's id


@dataclass(frozen=True, slots=True)
class RenewalReply:
    gateway_id: str
    request_id: str
    status: str
    reason: str
    chain_pem: bytes  # new certificate, then the issuing CA; b"" when refused
    issued_at: datetime


def _iso(t: datetime) -> str:
    if t.tzinfo is None or t.utcoffset() is None:
        raise Malformed("malformed", "naive time")
    return t.isoformat()


def _time(doc: dict[str, Any], key: str) -> datetime:
    value = doc.get(key)
    if not isinstance(value, str) or len(value) > 64:
        raise Malformed("malformed", f"{key}: not a time")
    try:
        t = datetime.fromisoformat(value)
    except ValueError:
        raise Malformed("malformed", f"{key}: not a time") from None
    if t.tzinfo is None:
        raise Malformed("malformed", f"{key}: no offset")
    return t


def _id(doc: dict[str, Any], key: str) -> str:
    value = doc.get(key)
    if not isinstance(value, str) or not _ID.fullmatch(value):
        raise Malformed("malformed", f"{key}: not an id")
    return value


def _pem(doc: dict[str, Any], key: str, *, empty: bool = False) -> bytes:
    value = doc.get(key)
    if not isinstance(value, str) or len(value) > MAX_RENEWAL or (not value and not empty) or not value.isascii():
        raise Malformed("malformed", f"{key}: not PEM text")
    return value.encode("ascii")


def _body(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, separators=(",", ":"), sort_keys=True).encode("ascii")


def _split(data: object, sig_len: int) -> tuple[bytes, bytes]:
    if not isinstance(data, bytes | bytearray | memoryview):
        raise Malformed("malformed", "not bytes")
    raw = bytes(data)
    if len(raw) > MAX_RENEWAL:
        raise Malformed("too_large", f"{len(raw)} > {MAX_RENEWAL} bytes")
    if len(raw) <= sig_len:
        raise Malformed("truncated")
    return raw[:-sig_len], raw[-sig_len:]


def _parse(body: bytes, kind: str) -> dict[str, Any]:
    try:
        doc = json.loads(body.decode("ascii"))
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise Malformed("malformed", "not JSON") from None
    if not isinstance(doc, dict):
        raise Malformed("malformed", "not an object")
    if doc.get("v") != VERSION:
        raise UnsupportedVersion("unsupported_version", f"v={doc.get('v')!r}")
    if doc.get("type") != kind:
        raise Malformed("wrong_type", f"not a {kind}")
    return doc


# -- request ----------------------------------------------------------------------------------


def encode_request(req: RenewalRequest, key: ec.EllipticCurvePrivateKey) -> bytes:
    """The signed request (module doc)."""
    for value in (req.gateway_id, req.request_id, *(() if req.cmd_id is None else (req.cmd_id,))):
        if not _ID.fullmatch(value):
            raise Malformed("malformed", "gateway_id, request_id and cmd_id must be ids")
    body = _body(
        {
            **({} if req.cmd_id is None else {"cmd_id": req.cmd_id}),
            "v": VERSION,
            "type": "renew_request",
            "gateway_id": req.gateway_id,
            "request_id": req.request_id,
            "serial": format(req.serial, "x"),
            "issued_at": _iso(req.issued_at),
            "expires_at": _iso(req.expires_at),
            "csr": req.csr_pem.decode("ascii"),
            "cert": req.cert_pem.decode("ascii"),
        }
    )
    r, s = decode_dss_signature(key.sign(REQUEST_CONTEXT + body, ec.ECDSA(hashes.SHA256())))
    out = body + r.to_bytes(32, "big") + s.to_bytes(32, "big")
    if len(out) > MAX_RENEWAL:
        raise Malformed("too_large", "renewal request")
    return out


def decode_request(data: bytes) -> RenewalRequest:
    """Parse the request and verify its signature with the key of the certificate inside it.

    Whether that certificate is trusted, current and the caller's is for the hub to decide
    (hub.renewal)."""
    try:
        return _decode_request(data)
    except WireError:
        raise
    except Exception as exc:  # whatever the bytes, only WireError leaves
        raise Malformed("malformed", type(exc).__name__) from None


def _decode_request(data: bytes) -> RenewalRequest:
    body, sig = _split(data, _ECDSA_LEN)
    doc = _parse(body, "renew_request")
    cert_pem = _pem(doc, "cert")
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
        public = cert.public_key()
    except (ValueError, TypeError):
        raise CertificateRejected("cert_malformed") from None
    if not isinstance(public, ec.EllipticCurvePublicKey):
        raise CertificateRejected("cert_malformed", "not an EC key")
    r, s = int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big")
    if r <= 0 or s <= 0:
        raise BadSignature("bad_signature", "zero r or s")
    try:
        public.verify(encode_dss_signature(r, s), REQUEST_CONTEXT + body, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        raise BadSignature("bad_signature", "request not signed by the certificate's key") from None
    serial = doc.get("serial")
    if not isinstance(serial, str) or not re.fullmatch(r"[0-9a-f]{1,40}", serial):
        raise Malformed("malformed", "serial")
    return RenewalRequest(
        gateway_id=_id(doc, "gateway_id"),
        request_id=_id(doc, "request_id"),
        serial=int(serial, 16),
        issued_at=_time(doc, "issued_at"),
        expires_at=_time(doc, "expires_at"),
        csr_pem=_pem(doc, "csr"),
        cert_pem=cert_pem,
        cmd_id=None if "cmd_id" not in doc else _id(doc, "cmd_id"),
    )


# -- reply ------------------------------------------------------------------------------------


def encode_reply(reply: RenewalReply, signing_key: ed25519.Ed25519PrivateKey) -> bytes:
    if reply.status not in REPLY_STATUSES or not _REASON.fullmatch(reply.reason):
        raise Malformed("malformed", "status or reason")
    for value in (reply.gateway_id, reply.request_id):
        if not _ID.fullmatch(value):
            raise Malformed("malformed", "gateway_id and request_id must be ids")
    body = _body(
        {
            "v": VERSION,
            "type": "renew_reply",
            "gateway_id": reply.gateway_id,
            "request_id": reply.request_id,
            "status": reply.status,
            "reason": reply.reason,
            "chain": reply.chain_pem.decode("ascii"),
            "issued_at": _iso(reply.issued_at),
        }
    )
    out = body + signing_key.sign(REPLY_CONTEXT + body)
    if len(out) > MAX_RENEWAL:
        raise Malformed("too_large", "renewal reply")
    return out


def decode_reply(data: bytes, hub_signing_public: ed25519.Ed25519PublicKey) -> RenewalReply:
    """Verify the hub's signature first (:class:`~wire.errors.BadSignature`), then parse."""
    try:
        body, sig = _split(data, _ED_LEN)
        try:
            hub_signing_public.verify(sig, REPLY_CONTEXT + body)
        except InvalidSignature:
            raise BadSignature("bad_signature", "reply not signed by the hub") from None
        doc = _parse(body, "renew_reply")
        status = doc.get("status")
        reason = doc.get("reason")
        if status not in REPLY_STATUSES or not isinstance(reason, str) or not _REASON.fullmatch(reason):
            raise Malformed("malformed", "status or reason")
        return RenewalReply(
            gateway_id=_id(doc, "gateway_id"),
            request_id=_id(doc, "request_id"),
            status=str(status),
            reason=reason,
            chain_pem=_pem(doc, "chain", empty=True),
            issued_at=_time(doc, "issued_at"),
        )
    except WireError:
        raise
    except Exception as exc:
        raise Malformed("malformed", type(exc).__name__) from None
