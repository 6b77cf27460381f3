"""Certificate renewal at the hub (docs/provisioning.md, "Certificate renewal").

A gateway publishes a signed :class:`wire.renewal.RenewalRequest` on its own ``renew/req`` topic
(the broker's TLS client certificate + ACL guarantee that the topic's gateway id is who sent
it). :func:`check_request` (pure) accepts it only when, at the injected ``now``:

* the topic's gateway id == the request's == the current certificate's CN == the CSR's CN;
* the current certificate was issued by a trusted CA (the provincial CA or the issuing CA), is
  valid now, is a client certificate, its serial is the request's and is not revoked;
* the request's signature (checked by ``wire.renewal.decode_request``) is by that certificate's
  key and the CSR is valid and for the very same key (the key never leaves the gateway);
* the request is current (``issued_at`` not in the future, ``expires_at`` not past, its life at
  most ``MAX_REQUEST_LIFE``) and its id not seen before (:class:`ReplayGuard`).

Key rotation (remote command ``rotate-keys``): a request naming a ``cmd_id`` may carry a CSR for
a *new* key (the CSR's own signature proves possession of it; the request is still signed by the
current key). :class:`RenewalAuthority` allows that only when the hub's command ledger
(``HubStore.command``) holds a ``rotate-keys`` command of that id for this gateway, still ``sent``
and unexpired, not used for a rotation before (:func:`rotation_problem`); otherwise the request is
refused ``key_mismatch`` exactly as a renewal for another key always was. After a rotation the old
serial is *superseded*: the ledger gets a line for it with ``revoked_at``, ``superseded_by`` and
the command's ``cmd_id``,
and the authority refuses to renew it again (``superseded``; also after a restart, read back
from the ledger); it may still rotate under a *new* ``rotate-keys`` command, since a gateway
whose reply was lost keeps using it.

:class:`RenewalAuthority` adds the state: the replay guard, the revoked serials (from the CRL
file, reloaded when it changes), issuing with the issuing CA, the signed reply, counters by
reason, a log line per decision and the renewal ledger (JSON lines, for ``edge-provision revoke
--renewals``). Every refusal gets a signed ``refused`` reply with its reason.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from provisioning.errors import ProvisioningError
from provisioning.issuing import RENEWED_DAYS, issue_renewal
from provisioning.pki import CertifiedKey
from wire import topics as wire_topics
from wire.errors import WireError
from wire.renewal import RenewalReply, RenewalRequest, decode_request, encode_reply

if TYPE_CHECKING:
    from hub.commands import CommandRecord

log = logging.getLogger(__name__)

__all__ = [
    "MAX_REQUEST_LIFE",
    "RenewalAuthority",
    "RenewalOutcome",
    "RenewalRejected",
    "ReplayGuard",
    "check_request",
    "load_revoked",
    "rotation_problem",
]

MAX_REQUEST_LIFE = timedelta(minutes=15)
CLOCK_SKEW = timedelta(minutes=5)
_CRL_PEM = re.compile(rb"-----BEGIN X509 CRL-----.*?-----END X509 CRL-----", re.S)


class RenewalRejected(Exception):
    """A renewal request refused; ``reason`` is a fixed code (counted, logged, in the reply)."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


def _cn(name: x509.Name) -> str | None:
    attrs = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    if len(attrs) != 1 or not isinstance(attrs[0].value, str):
        return None
    return attrs[0].value


def _same_key(a: object, b: object) -> bool:
    return (
        isinstance(a, ec.EllipticCurvePublicKey)
        and isinstance(b, ec.EllipticCurvePublicKey)
        and a.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        == b.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )


def _issuer(cert: x509.Certificate, trusted: Sequence[x509.Certificate]) -> x509.Certificate | None:
    for ca in trusted:
        if cert.issuer != ca.subject:
            continue
        try:
            cert.verify_directly_issued_by(ca)
        except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
            continue
        return ca
    return None


def rotation_problem(record: CommandRecord | None, *, gateway_id: str, now: datetime) -> str | None:
    """Why ledger entry ``record`` does not allow a key rotation for ``gateway_id`` at ``now``
    (a short detail for the log), else None. Pure."""
    if record is None:
        return "no such command in the ledger"
    if record.kind != "rotate-keys" or record.gateway_id != gateway_id:
        return "not a rotate-keys command for this gateway"
    if record.state != "sent":
        return f"the command is already {record.state}"
    if record.expires_at <= now:
        return "the command has expired"
    return None


def check_request(
    req: RenewalRequest,
    *,
    topic_gateway: str,
    trusted: Sequence[x509.Certificate],
    revoked: frozenset[int],
    now: datetime,
    rotation: bool = False,
) -> ec.EllipticCurvePublicKey:
    """The key to certify, or :class:`RenewalRejected` (module doc lists the checks). Pure.
    ``rotation``: the ledger allows this request's key change (:func:`rotation_problem`)."""
    if req.gateway_id != topic_gateway:
        raise RenewalRejected("gateway_mismatch", "the request names another gateway than its topic")
    if req.issued_at > now + CLOCK_SKEW:
        raise RenewalRejected("request_from_future")
    if req.expires_at <= now:
        raise RenewalRejected("request_expired")
    if req.expires_at - req.issued_at > MAX_REQUEST_LIFE:
        raise RenewalRejected("request_too_long", f"more than {MAX_REQUEST_LIFE}")
    current = x509.load_pem_x509_certificate(req.cert_pem)  # decode_request parsed it already
    if _cn(current.subject) != topic_gateway:
        raise RenewalRejected("cert_cn_mismatch", "the current certificate is another gateway's")
    issuer = _issuer(current, trusted)
    if issuer is None:
        raise RenewalRejected("cert_untrusted", "the current certificate is not from a trusted CA")
    for which in (current, issuer):
        if now < which.not_valid_before_utc:
            raise RenewalRejected("cert_not_yet_valid")
        if now > which.not_valid_after_utc:
            raise RenewalRejected("cert_expired")
    try:
        usages = current.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        if ExtendedKeyUsageOID.CLIENT_AUTH not in usages:
            raise RenewalRejected("cert_wrong_usage")
    except x509.ExtensionNotFound:
        pass
    if current.serial_number != req.serial:
        raise RenewalRejected("serial_mismatch", "the serial is not the current certificate's")
    if current.serial_number in revoked:
        raise RenewalRejected("revoked", "the current certificate is revoked")
    try:
        csr = x509.load_pem_x509_csr(req.csr_pem)
        csr_ok = csr.is_signature_valid
        csr_key = csr.public_key()
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise RenewalRejected("csr_invalid") from None
    if not csr_ok:
        raise RenewalRejected("csr_invalid", "the CSR's signature does not verify")
    if _cn(csr.subject) != topic_gateway:
        raise RenewalRejected("csr_cn_mismatch", "the CSR is for another gateway")
    if not _same_key(csr_key, current.public_key()) and not (rotation and req.cmd_id is not None):
        raise RenewalRejected("key_mismatch", "the CSR is for another key than the current certificate's")
    if (
        not isinstance(csr_key, ec.EllipticCurvePublicKey)
        or not isinstance(public := current.public_key(), ec.EllipticCurvePublicKey)
        or csr_key.curve.name != public.curve.name
    ):
        raise RenewalRejected("key_mismatch", "the new key is not on the current key's curve")
    assert isinstance(csr_key, ec.EllipticCurvePublicKey)
    return csr_key


@dataclass(slots=True)
class ReplayGuard:
    """Request ids seen, each kept until its request expires (a replay after that is refused as
    expired). Bounded: the oldest are dropped first beyond ``limit``."""

    limit: int = 100_000
    _seen: dict[tuple[str, str], datetime] = field(default_factory=dict)

    def admit(self, gateway_id: str, request_id: str, expires_at: datetime, now: datetime) -> bool:
        for k in [k for k, until in self._seen.items() if until <= now]:
            del self._seen[k]
        key = (gateway_id, request_id)
        if key in self._seen:
            return False
        while len(self._seen) >= self.limit:
            del self._seen[next(iter(self._seen))]
        self._seen[key] = expires_at
        return True


# -- I/O --------------------------------------------------------------------------------------


def load_revoked(pem: bytes, trusted: Sequence[x509.Certificate]) -> frozenset[int]:
    """Revoked serials of every CRL in ``pem`` signed by a trusted CA (others are ignored)."""
    serials: set[int] = set()
    for block in _CRL_PEM.findall(pem):
        try:
            crl = x509.load_pem_x509_crl(block)
        except ValueError:
            continue
        for ca in trusted:
            public = ca.public_key()
            if (
                crl.issuer == ca.subject
                and isinstance(public, ec.EllipticCurvePublicKey)
                and crl.is_signature_valid(public)
            ):
                serials.update(r.serial_number for r in crl)
                break
    return frozenset(serials)


@dataclass(frozen=True, slots=True)
class RenewalOutcome:
    reply_topic: str | None
    reply: bytes | None
    status: str  # issued | refused | dropped (no topic to answer on)
    reason: str


class RenewalAuthority:
    """The hub side of renewal; thread-safe (one lock): see the module doc."""

    def __init__(
        self,
        issuing: CertifiedKey,
        signing_key: ed25519.Ed25519PrivateKey,
        trusted: Sequence[x509.Certificate],
        clock: Callable[[], datetime],
        *,
        crl: Path | None = None,
        ledger: Path | None = None,
        days: int = RENEWED_DAYS,
        commands: Callable[[str], CommandRecord | None] | None = None,
    ) -> None:
        self.issuing = issuing
        self._signing = signing_key
        self.trusted = [*trusted, *([] if any(c == issuing.cert for c in trusted) else [issuing.cert])]
        self.clock = clock
        self.crl = crl
        self.ledger = ledger
        self.days = days
        self.replay = ReplayGuard()
        self.issued_total = 0
        self.rejected: dict[str, int] = {}
        self._revoked: frozenset[int] = frozenset()
        self._crl_stamp: tuple[int, int] | None = None
        self._lock = threading.Lock()
        self.commands = commands  # the command ledger's lookup (HubStore.command): key rotations
        self.rotated_total = 0
        self._superseded: set[int] = set()
        self._rotations_used: set[str] = set()  # rotate-keys ids a certificate was issued for
        self._read_rotations()

    def _read_rotations(self) -> None:
        """Serials a key rotation superseded and the commands used, from the ledger (so a
        restart forgets neither)."""
        if self.ledger is None:
            return
        try:
            lines = self.ledger.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return
        except OSError as exc:
            log.error("event=renewal_ledger_unreadable path=%s error=%s", self.ledger, exc.strerror)
            return
        for line in lines:
            try:
                doc = json.loads(line)
                if isinstance(doc, dict) and doc.get("superseded_by"):
                    self._superseded.add(int(str(doc["serial"]), 16))
                    if isinstance(doc.get("cmd_id"), str):
                        self._rotations_used.add(doc["cmd_id"])
            except (ValueError, KeyError):
                continue

    def _rotation(self, gateway_id: str, cmd_id: str, now: datetime) -> str | None:
        """Why the ledger does not allow a key rotation under ``cmd_id``, else None."""
        if cmd_id in self._rotations_used:
            return "this command was already used for a rotation"
        if self.commands is None:
            return "no command ledger (edge-hub serve --store)"
        try:
            record = self.commands(cmd_id)
        except Exception as exc:  # a store failure: no rotation now; the gateway reports failed
            log.error("event=rotation_ledger_failed gateway=%s error=%r", gateway_id, str(exc)[:200])
            return "the command ledger is unavailable"
        return rotation_problem(record, gateway_id=gateway_id, now=now)

    def revoked(self) -> frozenset[int]:
        """The CRL file's revoked serials, re-read when its size or mtime changed."""
        if self.crl is None:
            return frozenset()
        try:
            st = self.crl.stat()
            stamp = (st.st_mtime_ns, st.st_size)
            if stamp != self._crl_stamp:
                self._revoked = load_revoked(self.crl.read_bytes(), self.trusted)
                self._crl_stamp = stamp
        except OSError as exc:  # keep the last list; say so
            log.error("event=renewal_crl_unreadable path=%s error=%s", self.crl, exc.strerror)
        return self._revoked

    def handle(self, topic: str, payload: bytes) -> RenewalOutcome:
        with self._lock:
            return self._handle(topic, payload)

    def _handle(self, topic: str, payload: bytes) -> RenewalOutcome:
        now = self.clock()
        try:
            ref = wire_topics.parse_topic(topic)
        except WireError:
            return self._count(None, None, "", "bad_topic", "dropped")
        if ref.leaf != "renew/req":
            return self._count(None, None, "", "bad_topic", "dropped")
        reply_topic = wire_topics.topic(ref.province, ref.gateway_id, "renew/cert")
        request_id = "unknown"
        try:
            try:
                req = decode_request(payload)
            except WireError as exc:
                raise RenewalRejected(exc.reason, exc.detail) from None
            request_id = req.request_id
            rotation = False
            if req.cmd_id is not None:
                problem = self._rotation(ref.gateway_id, req.cmd_id, now)
                rotation = problem is None
                if problem is not None:
                    log.warning("event=rotation_not_allowed gateway=%s detail=%r", ref.gateway_id, problem)
            key = check_request(
                req,
                topic_gateway=ref.gateway_id,
                trusted=self.trusted,
                revoked=self.revoked(),
                now=now,
                rotation=rotation,
            )
            old = x509.load_pem_x509_certificate(req.cert_pem)
            rotated = rotation and not _same_key(key, old.public_key())
            # a superseded certificate is never renewed; it may still rotate under a new command
            # (the gateway may never have received the reply that superseded it)
            if req.serial in self._superseded and not rotated:
                raise RenewalRejected("superseded", "a key rotation replaced this certificate")
            if not self.replay.admit(ref.gateway_id, req.request_id, req.expires_at, now):
                raise RenewalRejected("replayed", "this request id was seen before")
            try:
                cert = issue_renewal(self.issuing, ref.gateway_id, key, now=now, days=self.days)
            except ProvisioningError as exc:
                raise RenewalRejected("issuing_unavailable", str(exc)) from None
        except RenewalRejected as exc:
            log.warning(
                "event=renewal_refused gateway=%s reason=%s detail=%r", ref.gateway_id, exc.reason, exc.detail[:200]
            )
            reply = self._reply(ref.gateway_id, request_id, "refused", exc.reason, b"", now)
            return self._count(reply_topic, reply, ref.gateway_id, exc.reason, "refused")
        chain = cert.public_bytes(serialization.Encoding.PEM) + self.issuing.cert_pem()
        self._record(ref.province, cert, key)
        if rotated:
            assert req.cmd_id is not None
            self._rotations_used.add(req.cmd_id)
            self._superseded.add(old.serial_number)
            self._record(ref.province, old, None, superseded_by=cert, at=now, cmd_id=req.cmd_id)
            self.rotated_total += 1
            log.info(
                "event=key_rotated gateway=%s old_serial=%x new_serial=%x cmd_id=%s",
                ref.gateway_id,
                old.serial_number,
                cert.serial_number,
                req.cmd_id,
            )
        self.issued_total += 1
        log.info(
            "event=renewal_issued gateway=%s serial=%x not_after=%s",
            ref.gateway_id,
            cert.serial_number,
            cert.not_valid_after_utc.isoformat(),
        )
        reply = self._reply(ref.gateway_id, req.request_id, "issued", "", chain, now)
        return RenewalOutcome(reply_topic, reply, "issued", "")

    def _count(
        self, reply_topic: str | None, reply: bytes | None, gateway: str, reason: str, status: str
    ) -> RenewalOutcome:
        self.rejected[reason] = self.rejected.get(reason, 0) + 1
        if status == "dropped":
            log.warning("event=renewal_dropped reason=%s", reason)
        return RenewalOutcome(reply_topic, reply, status, reason)

    def _reply(self, gateway: str, request_id: str, status: str, reason: str, chain: bytes, now: datetime) -> bytes:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}", request_id):
            request_id = "unknown"
        reason = reason if re.fullmatch(r"[a-z0-9_]{0,64}", reason) else "malformed"
        return encode_reply(
            RenewalReply(
                gateway_id=gateway, request_id=request_id, status=status, reason=reason, chain_pem=chain, issued_at=now
            ),
            self._signing,
        )

    def _record(
        self,
        province: str,
        cert: x509.Certificate,
        key: ec.EllipticCurvePublicKey | None,
        *,
        superseded_by: x509.Certificate | None = None,
        at: datetime | None = None,
        cmd_id: str | None = None,
    ) -> None:
        """One ledger line: a certificate issued, or (``superseded_by``) one a key rotation
        replaced, with ``revoked_at`` so ``edge-provision revoke --renewals`` revokes it."""
        if self.ledger is None:
            return
        from provisioning.ca import IssuedCert, key_sha256

        public = cert.public_key() if key is None else key
        assert isinstance(public, ec.EllipticCurvePublicKey)  # check_request accepted only EC keys
        entry = IssuedCert(
            gateway_id=_cn(cert.subject) or "",
            serial=cert.serial_number,
            province=province,
            station="",
            not_after=cert.not_valid_after_utc,
            key_sha256=key_sha256(public),
            revoked_at=at if superseded_by is not None else None,
        )
        doc = entry.to_json()
        if superseded_by is not None:
            doc["superseded_by"] = format(superseded_by.serial_number, "x")
            doc["cmd_id"] = cmd_id
        try:
            self.ledger.parent.mkdir(parents=True, exist_ok=True)
            with open(self.ledger, "a", encoding="utf-8") as f:
                f.write(json.dumps(doc, sort_keys=True) + "\n")
                f.flush()
        except OSError as exc:
            log.error("event=renewal_ledger_failed path=%s error=%s", self.ledger, exc.strerror)

    def metrics(self) -> dict[str, object]:
        with self._lock:
            return {
                "hub_renewals_issued_total": self.issued_total,
                "hub_renewals_refused": dict(self.rejected),
                "hub_key_rotations_total": self.rotated_total,
            }
