"""Signed remote commands at the hub (docs/hub.md, "Remote commands"; wire format: wire.commands).

:func:`issue` allocates the command's sequence number in the store's ledger (the database picks
``max(seq) + 1`` for the gateway under a unique constraint, so several hub processes never hand
out the same one), records it as ``sent`` and returns the signed payload and its topic.
:class:`ResultRecorder` is what ``edge-hub serve`` workers run on ``cmd/result`` messages: the
envelope must open (the gateway's certificate chains to a trusted CA, its CN is the topic's
gateway, its signature holds, the seal is the hub's), the result must answer a command of the
ledger for that gateway and sequence number; then the result is recorded once (a redelivery
changes nothing, counted as a duplicate). Every refusal is counted by reason and logged without
payload content. :meth:`ResultRecorder.process` also returns the hub's ack for the result (the
batches' ``wire.messages.Ack``, lane ``results``, batch id = cmd_id), which the worker signs and
publishes on the gateway's ``ack`` topic after the commit: the gateway keeps a result in its
outbox, and re-publishes it, until that ack arrives (docs/protocol.md §4.5 "Delivery").

A command still ``sent`` once its ``expires_at`` has passed is *shown* as ``expired``
(:meth:`CommandRecord.state_at`, with the caller's ``now``: ``edge-hub fleet``, the fleet page,
``edge-hub cmd --wait``); the ledger row itself stays ``sent``, so a late real result (a gateway
that took the command in time and whose answer waited in its outbox) is still recorded and wins.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ed25519, x25519

from wire import topics as wire_topics
from wire.commands import KINDS, Command, check_args, encode_command, open_result
from wire.errors import WireError
from wire.messages import Ack

if TYPE_CHECKING:
    from hub.store import HubStore

log = logging.getLogger(__name__)

__all__ = [
    "COMMAND_STATES",
    "DEFAULT_EXPIRES_IN_S",
    "RESULT_ACK_LANE",
    "CommandRecord",
    "Issued",
    "ResultOutcome",
    "ResultRecorder",
    "issue",
]

COMMAND_STATES = ("sent", "applied", "rolled_back", "refused", "failed", "expired")
DEFAULT_EXPIRES_IN_S = 3600.0
MAX_EXPIRES_IN_S = 30 * 86400.0


@dataclass(frozen=True, slots=True)
class CommandRecord:
    """One row of the command ledger: what was sent, and the gateway's answer when it came."""

    cmd_id: str
    gateway_id: str
    province: str | None
    kind: str  # "set-config" | "push-model" | "diagnostics" | "rotate-keys"
    seq: int
    issued_at: datetime
    expires_at: datetime
    state: str  # "sent" | "applied" | "rolled_back" | "refused" | "failed" | "expired"
    detail: str | None
    result_at: datetime | None

    def state_at(self, now: datetime) -> str:
        """The state to show at ``now``: ``expired`` for a command never answered and past its
        expiry (the gateway refuses it from then on), else the ledger's state."""
        return "expired" if self.state == "sent" and now >= self.expires_at else self.state

    def as_dict(self, now: datetime | None = None) -> dict[str, object]:
        """JSON; with ``now`` the state is :meth:`state_at` (the ledger's otherwise)."""
        return {
            "cmd_id": self.cmd_id,
            "gateway_id": self.gateway_id,
            "province": self.province,
            "kind": self.kind,
            "seq": self.seq,
            "issued_at": self.issued_at.isoformat(),
            "expires_at": self.expires_at.isoformat(),
            "state": self.state if now is None else self.state_at(now),
            "detail": self.detail,
            "result_at": None if self.result_at is None else self.result_at.isoformat(),
        }


def ledger_args(kind: str, args: Mapping[str, object]) -> dict[str, object]:
    """What the ledger keeps of a command's arguments: all of them but a model's bytes."""
    if kind == "push-model":
        model = args.get("model")
        return {"manifest_bytes": len(str(args.get("manifest", ""))), "model_b64_chars": len(str(model or ""))}
    return dict(args)


@dataclass(frozen=True, slots=True)
class Issued:
    record: CommandRecord
    topic: str
    payload: bytes


def issue(
    store: HubStore,
    signing_key: ed25519.Ed25519PrivateKey,
    *,
    gateway_id: str,
    province: str,
    kind: str,
    args: Mapping[str, object],
    now: datetime,
    expires_in_s: float = DEFAULT_EXPIRES_IN_S,
) -> Issued:
    """Allocate, record (state ``sent``) and sign one command. Raises
    :class:`~wire.errors.WireError` for arguments the wire cannot carry (nothing is recorded
    then) and :class:`hub.errors.StoreError` when the ledger cannot be written."""
    if kind not in KINDS:
        raise ValueError(f"unknown command kind {kind!r}")
    if not 0 < expires_in_s <= MAX_EXPIRES_IN_S:
        raise ValueError(f"expires in must be in (0, {MAX_EXPIRES_IN_S:g}] seconds")
    wire_args = check_args(kind, args)
    topic = wire_topics.topic(province, gateway_id, "cmd")
    cmd_id = str(uuid.uuid4())
    expires_at = now + timedelta(seconds=expires_in_s)
    probe = Command(cmd_id, gateway_id, 1, now, expires_at, kind, wire_args)
    encode_command(probe, signing_key)  # size and fields checked before the ledger moves
    seq = store.allocate_command(
        cmd_id=cmd_id,
        gateway_id=gateway_id,
        province=province,
        kind=kind,
        args=ledger_args(kind, wire_args),
        issued_at=now,
        expires_at=expires_at,
    )
    cmd = Command(cmd_id, gateway_id, seq, now, expires_at, kind, wire_args)
    record = CommandRecord(cmd_id, gateway_id, province, kind, seq, now, expires_at, "sent", None, None)
    log.info("event=command_issued gateway=%s kind=%s seq=%d cmd_id=%s", gateway_id, kind, seq, cmd_id)
    return Issued(record, topic, encode_command(cmd, signing_key))


RESULT_ACK_LANE = "results"


@dataclass(frozen=True, slots=True)
class ResultOutcome:
    """What became of one ``cmd/result`` message: ``status`` as :meth:`ResultRecorder.handle`;
    ``ack`` (with ``ack_topic``) what the worker signs and publishes, or None for silence."""

    status: str
    ack: Ack | None = None
    ack_topic: str | None = None


class ResultRecorder:
    """Verify and record ``cmd/result`` messages (module doc); thread-safe."""

    def __init__(
        self,
        store: HubStore,
        *,
        hub_sealing_private: x25519.X25519PrivateKey,
        ca_certs: Sequence[x509.Certificate],
        clock: Callable[[], datetime],
    ) -> None:
        self.store = store
        self.sealing = hub_sealing_private
        self.ca_certs = list(ca_certs)
        self.clock = clock
        self.recorded_total = 0
        self.duplicate_total = 0
        self.rejected_total: Counter[str] = Counter()
        self._lock = threading.Lock()

    def handle(self, topic: str, payload: bytes) -> str:
        """``recorded``, ``duplicate`` or the reason it was refused. A store failure raises
        :class:`hub.errors.StoreError` (the caller retries the message)."""
        return self.process(topic, payload).status

    def process(self, topic: str, payload: bytes) -> ResultOutcome:
        """As :meth:`handle`, with the :class:`~wire.messages.Ack` to publish on the gateway's
        ``ack`` topic (lane ``results``, batch id = cmd_id): ``ok`` once the result is recorded
        (or was already), ``rejected`` for a result of a gateway we could authenticate that
        answers no command of the ledger; None when the envelope does not open (nobody to
        answer). The gateway removes the result from its outbox only on this ack."""
        try:
            ref = wire_topics.parse_topic(topic)
        except WireError:
            return ResultOutcome(self._reject("bad_topic", "?"))
        if ref.leaf != "cmd/result":
            return ResultOutcome(self._reject("bad_topic", ref.gateway_id))
        try:
            opened, result = open_result(
                payload, hub_sealing_private=self.sealing, ca_certs=self.ca_certs, now=self.clock()
            )
        except WireError as exc:
            return ResultOutcome(self._reject(exc.reason, ref.gateway_id))
        if opened.gateway_id != ref.gateway_id:
            return ResultOutcome(self._reject("gateway_mismatch", ref.gateway_id))
        ack_topic = wire_topics.topic(ref.province, opened.gateway_id, "ack")
        known = self.store.command(result.cmd_id)
        if known is None or known.gateway_id != result.gateway_id:
            return self._refuse("unknown_command", opened.gateway_id, opened.batch_id, ack_topic)
        if result.seq not in (0, known.seq) or result.kind not in ("", known.kind):
            return self._refuse("result_mismatch", opened.gateway_id, opened.batch_id, ack_topic)
        new = self.store.record_command_result(
            cmd_id=result.cmd_id,
            gateway_id=result.gateway_id,
            state=result.state,
            detail=result.detail,
            data=result.data,
            result_at=self.clock(),
        )
        with self._lock:
            if new:
                self.recorded_total += 1
            else:
                self.duplicate_total += 1
        log.info(
            "event=command_result gateway=%s kind=%s seq=%d state=%s new=%s",
            result.gateway_id,
            known.kind,
            known.seq,
            result.state,
            new,
        )
        ack = Ack(
            batch_id=opened.batch_id,
            gateway_id=opened.gateway_id,
            lane=RESULT_ACK_LANE,
            status="ok",
            stored=1 if new else 0,
            duplicates=0 if new else 1,
            acked_at=self.clock(),
        )
        return ResultOutcome("recorded" if new else "duplicate", ack, ack_topic)

    def _refuse(self, reason: str, gateway: str, batch_id: str, ack_topic: str) -> ResultOutcome:
        """An authenticated result the ledger cannot take: refused, and told so (the gateway
        drops it instead of re-sending it for ever)."""
        ack = Ack(batch_id, gateway, RESULT_ACK_LANE, "rejected", reason=reason, acked_at=self.clock())
        return ResultOutcome(self._reject(reason, gateway), ack, ack_topic)

    def _reject(self, reason: str, gateway: str) -> str:
        with self._lock:
            self.rejected_total[reason] += 1
        log.warning("event=command_result_rejected gateway=%s reason=%s", gateway, reason)
        return reason

    def metrics(self) -> dict[str, object]:
        with self._lock:
            return {
                "hub_command_results_total": self.recorded_total,
                "hub_command_results_duplicate_total": self.duplicate_total,
                "hub_command_results_rejected": dict(self.rejected_total),
            }
