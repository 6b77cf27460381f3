"""Certificate renewal by the gateway (docs/provisioning.md, "Certificate renewal").

When the certificate the link uses expires within ``sync.renew_before_days``, the renewal job
builds a CSR with the gateway's existing key (the key never leaves the device), wraps it in a
request signed with that key (request id, expiry, current serial: ``wire.renewal``), publishes
it on ``se/v1/{province}/{gateway_id}/renew/req`` and waits for the hub's signed reply on
``.../renew/cert``. The reply is accepted only when it is signed by the hub's key, answers this
request, and carries a chain that ends at this gateway's CA (``sync.ca``), for this gateway's
CN and this very key, valid now and newer than the current certificate. The chain is then
written atomically into ``<state_dir>/certs/`` (the config directory is read-only under the
systemd sandbox), and the link reconnects with it. At every start the newest valid certificate
for the key (the configured one or a renewed one) is used (:func:`best_certificate`).

Key rotation (remote command ``rotate-keys``, :meth:`Renewer.rotate`): a new key on the same curve
is kept 0600 in ``<state_dir>/keys/`` (pending until the hub answers), the CSR is for it (signed
by it) while the request, naming the command id, is signed by the current key; the reply is
verified as above but for the new key, the chain and the key are written, the link switches to
them, and :func:`best_identity` picks the newest valid (key, certificate) pair at every start. On
any failure the pending key is removed and the current key stays in use.

Pure: :func:`renewal_due`, :func:`make_request`, :func:`verify_reply`, :func:`choose`. I/O:
:class:`CertStore` and :func:`best_certificate`; async: :class:`Renewer`. The clock is injected.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import secrets
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import NameOID

from edge_agent.sync.mqtt import Message, MqttLink, SyncError
from provisioning._files import PRIVATE_MODE, PUBLIC_MODE, write_atomic
from provisioning.errors import ProvisioningError
from provisioning.pki import CertifiedKey, load_ca_certs, load_certified_key
from wire.errors import WireError
from wire.renewal import RenewalRequest, decode_reply, encode_request
from wire.topics import topic

log = logging.getLogger(__name__)

__all__ = [
    "CHECK_INTERVAL_S",
    "REPLY_TIMEOUT_S",
    "REQUEST_LIFE",
    "CertStore",
    "KeyStore",
    "RenewalFailed",
    "RenewalState",
    "Renewer",
    "best_certificate",
    "best_identity",
    "choose",
    "make_request",
    "renewal_due",
    "verify_reply",
]

CHECK_INTERVAL_S = 3600.0  # the scheduler job; the first check also runs right after connecting
REPLY_TIMEOUT_S = 60.0
REQUEST_LIFE = timedelta(minutes=10)
CLOCK_SKEW = timedelta(hours=1)  # issuers back-date not_valid_before by an hour (provisioning.pki)
KEEP_CERTS = 3


class RenewalFailed(Exception):
    """A renewal that did not happen; ``reason`` is a fixed code (status, logs)."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


# -- pure ---------------------------------------------------------------------------------------


def renewal_due(not_after: datetime, now: datetime, before_days: int) -> bool:
    return before_days > 0 and not_after - now <= timedelta(days=before_days)


def make_request(
    gateway: CertifiedKey,
    gateway_id: str,
    *,
    now: datetime,
    request_id: str | None = None,
    new_key: ec.EllipticCurvePrivateKey | None = None,
    cmd_id: str | None = None,
) -> tuple[RenewalRequest, bytes]:
    """A CSR for the existing key (or, rotating, for ``new_key``, which signs it: proof of
    possession) and the request around it, signed by the existing key."""
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, gateway_id)]))
        .sign(gateway.key if new_key is None else new_key, hashes.SHA256())
    )
    req = RenewalRequest(
        gateway_id=gateway_id,
        request_id=request_id or secrets.token_hex(12),
        serial=gateway.cert.serial_number,
        issued_at=now,
        expires_at=now + REQUEST_LIFE,
        csr_pem=csr.public_bytes(serialization.Encoding.PEM),
        cert_pem=gateway.cert_pem(),
        cmd_id=cmd_id,
    )
    return req, encode_request(req, gateway.key)


def _issued_by(cert: x509.Certificate, ca: x509.Certificate) -> bool:
    if cert.issuer != ca.subject:
        return False
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
        return False
    return True


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def _valid(cert: x509.Certificate, now: datetime) -> bool:
    return cert.not_valid_before_utc <= now + CLOCK_SKEW and now < cert.not_valid_after_utc


def _same_key(cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> bool:
    public = cert.public_key()
    return (
        isinstance(public, ec.EllipticCurvePublicKey) and public.public_numbers() == key.public_key().public_numbers()
    )


def chain_problem(
    chain: Sequence[x509.Certificate], *, cas: Sequence[x509.Certificate], key: ec.EllipticCurvePrivateKey,
    gateway_id: str, now: datetime,
) -> str | None:  # fmt: skip
    """Why ``chain`` (leaf first, then intermediates) is not a usable certificate for this
    gateway at ``now``, else None: every link issued by the next, the last by one of ``cas``."""
    if not chain:
        return "chain_empty"
    leaf = chain[0]
    cns = leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if len(cns) != 1 or cns[0].value != gateway_id:
        return "cert_cn_mismatch"
    if not _same_key(leaf, key):
        return "key_mismatch"
    if _is_ca(leaf):
        return "cert_wrong_usage"
    for cert, issuer in itertools.pairwise(chain):
        if not _is_ca(issuer) or not _issued_by(cert, issuer):
            return "chain_broken"
    top = chain[-1]
    anchor = next((ca for ca in cas if _issued_by(top, ca)), None)
    if anchor is None:
        return "cert_untrusted"
    if not all(_valid(c, now) for c in (*chain, anchor)):
        return "cert_not_valid_now"
    return None


def verify_reply(
    payload: bytes,
    *,
    hub_signing: ed25519.Ed25519PublicKey,
    cas: Sequence[x509.Certificate],
    gateway: CertifiedKey,
    gateway_id: str,
    request_id: str,
    now: datetime,
    new_key: ec.EllipticCurvePrivateKey | None = None,
) -> list[x509.Certificate]:
    """The new chain (leaf first) from a hub reply, or :class:`RenewalFailed`. Rotating
    (``new_key``), the chain must certify ``new_key`` and need not outlast the current one."""
    try:
        reply = decode_reply(payload, hub_signing)
    except WireError as exc:
        raise RenewalFailed(exc.reason, "the reply is not the hub's") from None
    if reply.gateway_id != gateway_id or reply.request_id != request_id:
        raise RenewalFailed("not_our_request")
    if reply.status != "issued":
        raise RenewalFailed(f"refused_{reply.reason or 'unspecified'}"[:64], "the hub refused the renewal")
    try:
        chain = x509.load_pem_x509_certificates(reply.chain_pem)
    except ValueError:
        raise RenewalFailed("chain_malformed") from None
    key = gateway.key if new_key is None else new_key
    problem = chain_problem(chain, cas=cas, key=key, gateway_id=gateway_id, now=now)
    if problem is not None:
        raise RenewalFailed(problem, "the renewed certificate is not usable")
    if new_key is None and chain[0].not_valid_after_utc <= gateway.cert.not_valid_after_utc:
        raise RenewalFailed("not_newer", "the renewed certificate expires no later than the current one")
    return chain


def choose(
    candidates: Sequence[tuple[Path, list[x509.Certificate]]],
    *,
    cas: Sequence[x509.Certificate],
    key: ec.EllipticCurvePrivateKey,
    gateway_id: str,
    now: datetime,
) -> Path | None:
    """The candidate with the latest expiry among those usable now (:func:`chain_problem`)."""
    usable = [
        (chain[0].not_valid_after_utc, path)
        for path, chain in candidates
        if chain_problem(chain, cas=cas, key=key, gateway_id=gateway_id, now=now) is None
    ]
    return max(usable)[1] if usable else None


# -- I/O ----------------------------------------------------------------------------------------


class CertStore:
    """Renewed certificate chains in ``<state_dir>/certs/gateway-<serial>.cert.pem`` (0644)."""

    def __init__(self, state_dir: Path) -> None:
        self.directory = state_dir / "certs"

    def write(self, chain: Sequence[x509.Certificate]) -> Path:
        path = self.directory / f"gateway-{chain[0].serial_number:x}.cert.pem"
        write_atomic(path, b"".join(c.public_bytes(serialization.Encoding.PEM) for c in chain), mode=PUBLIC_MODE)
        for old in self.paths()[:-KEEP_CERTS]:  # oldest first by mtime; the newest few stay
            if old != path:
                old.unlink(missing_ok=True)
        return path

    def paths(self) -> list[Path]:
        try:
            found = [p for p in self.directory.glob("gateway-*.cert.pem") if p.is_file()]
        except OSError:
            return []
        return sorted(found, key=lambda p: p.stat().st_mtime_ns)


def _read_chain(path: Path) -> list[x509.Certificate] | None:
    try:
        return x509.load_pem_x509_certificates(path.read_bytes())
    except (OSError, ValueError):
        return None


def best_certificate(
    configured: Path, key_path: Path, ca_path: Path, state_dir: Path, gateway_id: str, now: datetime
) -> Path:
    """The newest usable certificate for the key: a renewed one in the state dir when it is
    valid and later than the configured one, else ``configured`` (whose problems the caller
    reports as before)."""
    store = CertStore(state_dir)
    renewed = store.paths()
    if not renewed:
        return configured
    try:
        key = load_certified_key(key_path, configured).key
    except ProvisioningError:
        try:  # the configured certificate may be gone or expired-and-replaced: try the renewed ones
            key = load_certified_key(key_path, renewed[-1]).key
        except ProvisioningError:
            return configured
    try:
        cas = load_ca_certs(ca_path)
    except ProvisioningError:
        return configured
    candidates = [(p, chain) for p in (configured, *renewed) if (chain := _read_chain(p))]
    return choose(candidates, cas=cas, key=key, gateway_id=gateway_id, now=now) or configured


class KeyStore:
    """Rotated gateway keys in ``<state_dir>/keys/`` (0600, directory 0700): ``pending.key.pem``
    while the hub is asked, then ``gateway-<serial>.key.pem`` next to the certificate
    ``certs/gateway-<serial>.cert.pem``."""

    def __init__(self, state_dir: Path) -> None:
        self.directory = state_dir / "keys"
        self.pending = self.directory / "pending.key.pem"

    def write_pending(self, key: ec.EllipticCurvePrivateKey) -> Path:
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        write_atomic(self.pending, _key_pem(key), mode=PRIVATE_MODE)
        return self.pending

    def commit(self, key: ec.EllipticCurvePrivateKey, serial: int, certs: CertStore) -> Path:
        """The pending key under its certificate's serial; keys whose certificate is gone go too."""
        path = self.directory / f"gateway-{serial:x}.key.pem"
        write_atomic(path, _key_pem(key), mode=PRIVATE_MODE)
        self.pending.unlink(missing_ok=True)
        kept = {p.name.removesuffix(".cert.pem") for p in certs.paths()}
        for old in self.paths():
            if old != path and old.name.removesuffix(".key.pem") not in kept:
                old.unlink(missing_ok=True)
        return path

    def discard(self) -> None:
        self.pending.unlink(missing_ok=True)

    def paths(self) -> list[Path]:
        """Committed keys (a pending one is never used)."""
        try:
            return sorted(p for p in self.directory.glob("gateway-*.key.pem") if p.is_file())
        except OSError:
            return []


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def best_identity(
    configured_cert: Path, configured_key: Path, ca_path: Path, state_dir: Path, gateway_id: str, now: datetime
) -> tuple[Path, Path]:
    """(key, certificate) to connect with: for each key (the configured one and the rotated ones
    in ``<state_dir>/keys/``) its best certificate (:func:`best_certificate`'s rule), then the
    pair whose certificate was issued last (a rotated key on a tie). Without rotated keys: the configured key and
    :func:`best_certificate`; with nothing usable: the configured pair (the caller reports it)."""
    rotated = KeyStore(state_dir).paths()
    if not rotated:
        return configured_key, best_certificate(configured_cert, configured_key, ca_path, state_dir, gateway_id, now)
    try:
        cas = load_ca_certs(ca_path)
    except ProvisioningError:
        return configured_key, configured_cert
    chains = {p: chain for p in (configured_cert, *CertStore(state_dir).paths()) if (chain := _read_chain(p))}
    best: tuple[tuple[datetime, bool, datetime], Path, Path] | None = None
    for key_path in (configured_key, *rotated):
        try:
            key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        except (OSError, ValueError, TypeError, UnsupportedAlgorithm):
            continue
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            continue
        cert_path = choose(list(chains.items()), cas=cas, key=key, gateway_id=gateway_id, now=now)
        if cert_path is None:
            continue
        leaf = chains[cert_path][0]
        rank = (leaf.not_valid_before_utc, key_path != configured_key, leaf.not_valid_after_utc)  # a tie: rotated
        if best is None or rank > best[0]:
            best = (rank, key_path, cert_path)
    return (configured_key, configured_cert) if best is None else (best[1], best[2])


@dataclass(frozen=True, slots=True)
class RenewalState:
    """What status.json shows under ``sync.certificate.renewal`` (kept in ``renewal.json``)."""

    last_attempt_at: str | None = None
    last_result: str | None = None  # renewed | rotated | refused | failed
    last_reason: str | None = None
    renewed_at: str | None = None
    attempts: int = 0
    renewals: int = 0

    @classmethod
    def load(cls, path: Path) -> RenewalState:
        try:
            doc = json.loads(path.read_bytes())
            return cls(**{k: doc[k] for k in cls.__dataclass_fields__ if k in doc})
        except (OSError, ValueError, TypeError):
            return cls()

    def save(self, path: Path) -> None:
        write_atomic(path, json.dumps(asdict(self), sort_keys=True).encode() + b"\n", mode=PUBLIC_MODE)


class Renewer:
    """The renewal job (:meth:`run_once`) and the reply hook (:meth:`offer`). ``current``
    returns the certified key the link uses now; ``renewed`` is called with the new one and the
    path of its chain (the caller switches the link and the uplink over)."""

    def __init__(
        self,
        *,
        link: MqttLink,
        province: str,
        gateway_id: str,
        before_days: int,
        ca_path: Path,
        hub_signing: ed25519.Ed25519PublicKey,
        state_dir: Path,
        current: Callable[[], CertifiedKey],
        renewed: Callable[[CertifiedKey, Path], None],
        clock: Callable[[], datetime],
        reply_timeout_s: float = REPLY_TIMEOUT_S,
    ) -> None:
        self.link = link
        self.gateway_id = gateway_id
        self.before_days = before_days
        self.ca_path = ca_path
        self.hub_signing = hub_signing
        self.store = CertStore(state_dir)
        self.state_path = state_dir / "renewal.json"
        self.state = RenewalState.load(self.state_path)
        self.current = current
        self.renewed = renewed
        self.clock = clock
        self.reply_timeout_s = reply_timeout_s
        self.request_topic = topic(province, gateway_id, "renew/req")
        self.reply_topic = topic(province, gateway_id, "renew/cert")
        self._waiting: tuple[str, asyncio.Future[bytes]] | None = None
        self._lock = asyncio.Lock()

    def offer(self, message: Message) -> bool:
        """True when ``message`` is a renewal reply (consumed here), else False."""
        if message.topic != self.reply_topic:
            return False
        waiting = self._waiting
        if waiting is not None and not waiting[1].done():
            waiting[1].set_result(message.payload)
        else:
            log.warning("event=renewal_reply_unexpected")
        return True

    def due(self) -> bool:
        return renewal_due(self.current().cert.not_valid_after_utc, self.clock(), self.before_days)

    async def run_once(self) -> bool:
        """Renew when due and connected; True when a new certificate is in use."""
        if not self.due() or not self.link.connected:
            return False
        async with self._lock:
            if not self.due():
                return False
            try:
                path = await self._attempt()
            except RenewalFailed as exc:
                result = "refused" if exc.reason.startswith("refused_") else "failed"
                log.error("event=renewal_failed reason=%s detail=%r", exc.reason, exc.detail[:200])
                self._note(result, exc.reason)
                return False
            self._note("renewed", None, renewed=True)
            log.info("event=renewal_done path=%s", path)
            return True

    async def rotate(
        self, cmd_id: str, switch: Callable[[CertifiedKey, Path, Path], None]
    ) -> tuple[CertifiedKey, CertifiedKey]:
        """A key rotation for the ``rotate-keys`` command ``cmd_id`` (module doc): (old, new)
        certified keys once ``switch(new, cert_path, key_path)`` has moved the link over, or
        :class:`RenewalFailed` with the current key still in use and no new key left behind."""
        if not self.link.connected:
            raise RenewalFailed("not_connected", "the link to the broker is down")
        async with self._lock:
            loop = asyncio.get_running_loop()
            gateway = self.current()
            new_key = ec.generate_private_key(gateway.key.curve)  # provisioning's curve (P-256)
            keys = KeyStore(self.store.directory.parent)
            try:
                await loop.run_in_executor(None, keys.write_pending, new_key)
            except OSError as exc:
                raise RenewalFailed("key_unwritable", str(exc)) from None
            try:
                req, payload = make_request(gateway, self.gateway_id, now=self.clock(), new_key=new_key, cmd_id=cmd_id)
                answer = await self._exchange(req.request_id, payload)
                chain = self._verify(answer, gateway, req.request_id, new_key)
                try:
                    cert_path = await loop.run_in_executor(None, self.store.write, chain)
                    serial = chain[0].serial_number
                    key_path = await loop.run_in_executor(None, keys.commit, new_key, serial, self.store)
                except OSError as exc:
                    raise RenewalFailed("write_failed", str(exc)) from None
            except BaseException as exc:
                keys.discard()
                if isinstance(exc, RenewalFailed):
                    log.error("event=key_rotation_failed reason=%s detail=%r", exc.reason, exc.detail[:200])
                    self._note("refused" if exc.reason.startswith("refused_") else "failed", exc.reason)
                raise
            new = CertifiedKey(key=new_key, cert=chain[0])
            switch(new, cert_path, key_path)
            self._note("rotated", None, renewed=True)
            log.info(
                "event=key_rotation_done old_serial=%x new_serial=%x",
                gateway.cert.serial_number,
                new.cert.serial_number,
            )
            return gateway, new

    async def _exchange(self, request_id: str, payload: bytes) -> bytes:
        """Publish one request and wait for the reply to it."""
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._waiting = (request_id, future)
        try:
            try:
                await self.link.publish(self.request_topic, payload, qos=1)
            except SyncError as exc:
                raise RenewalFailed("publish_failed", exc.reason) from None
            try:
                async with asyncio.timeout(self.reply_timeout_s):
                    return await future
            except TimeoutError:
                raise RenewalFailed("no_reply", f"no reply within {self.reply_timeout_s:g} s") from None
        finally:
            self._waiting = None

    def _verify(
        self, answer: bytes, gateway: CertifiedKey, request_id: str, new_key: ec.EllipticCurvePrivateKey | None
    ) -> list[x509.Certificate]:
        try:
            cas = load_ca_certs(self.ca_path)
        except ProvisioningError as exc:
            raise RenewalFailed("ca_unreadable", str(exc)) from None
        return verify_reply(
            answer,
            hub_signing=self.hub_signing,
            cas=cas,
            gateway=gateway,
            gateway_id=self.gateway_id,
            request_id=request_id,
            now=self.clock(),
            new_key=new_key,
        )

    async def _attempt(self) -> Path:
        gateway = self.current()
        req, payload = make_request(gateway, self.gateway_id, now=self.clock())
        answer = await self._exchange(req.request_id, payload)
        chain = self._verify(answer, gateway, req.request_id, None)
        loop = asyncio.get_running_loop()
        try:
            path = await loop.run_in_executor(None, self.store.write, chain)
        except OSError as exc:
            raise RenewalFailed("write_failed", str(exc)) from None
        self.renewed(CertifiedKey(key=gateway.key, cert=chain[0]), path)
        return path

    def _note(self, result: str, reason: str | None, *, renewed: bool = False) -> None:
        at = self.clock().isoformat()
        self.state = replace(
            self.state,
            last_attempt_at=at,
            last_result=result,
            last_reason=reason,
            attempts=self.state.attempts + 1,
            renewals=self.state.renewals + (1 if renewed else 0),
            renewed_at=at if renewed else self.state.renewed_at,
        )
        try:
            self.state.save(self.state_path)
        except OSError as exc:
            log.warning("event=renewal_state_unwritable error=%s", exc.strerror)

    def as_dict(self) -> dict[str, object]:
        return {"before_days": self.before_days, **asdict(self.state)}
