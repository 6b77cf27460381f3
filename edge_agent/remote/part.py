"""RemotePart: the gateway's side of signed remote commands, one agent component on the sync link.

It subscribes (through :class:`~edge_agent.sync.component.SyncPart`) to the gateway's own
``se/v1/{province}/{gateway_id}/cmd`` topic and handles one command at a time:

1. ``wire.commands.decode_command`` verifies the hub's Ed25519 signature (the ``signing`` key of
   ``sync.hub_keys``). A forged or garbled command is logged and counted under
   ``remote.refused`` in ``status.json``, and nothing is answered: nothing in it can be trusted,
   not even its id.
2. :func:`~edge_agent.remote.guard.check_command`: another gateway's command, a replay (``seq``
   not above the last applied one, persisted in ``<state_dir>/remote/state.json``), an expired
   one or one from the future at the agent's injected clock are refused, counted and answered
   (``refused`` / ``expired``).
3. The command is applied (``set-config``: edge_agent.remote.overlay; ``push-model``: the scorer's
   model registry, which validates the signed manifest against ``scoring.trusted_keys`` and keeps
   the model in use when the new one fails to load; ``diagnostics``:
   edge_agent.remote.diagnostics; ``rotate-keys``: edge_agent.remote.rotate), the last seq is
   persisted, and the result, sealed to the hub and signed with the gateway's key, is written to
   the durable outbox (edge_agent.remote.outbox, ``<state_dir>/remote/outbox/``) and published on
   ``.../cmd/result``; its file is removed only once the hub's signed ack for it arrives on the
   gateway's ``ack`` topic (the batches' ``Ack``, lane ``results``, batch id = cmd_id, verified
   by the uplink exactly as a batch's ack; the sync part routes it here). The broker's PUBACK is
   not enough: a result the broker took can still miss the hub (docs/protocol.md §4.5
   "Delivery"). Whatever is pending is published, oldest first, whenever the link is up (after
   every reconnect, and at start), and a result published without an ack within the sync's
   ``ack_timeout_s`` is published again; the hub records a result once and acks every copy, so
   a result outlives a long outage, a lost message and a restart. An ack naming no pending
   result is counted and otherwise ignored; a ``rejected`` ack (the hub's ledger has no such
   command) drops the result, counted and logged.

``set-config`` is honest about what it changes: the validated overlay is written, the result
``applied`` ("restart to apply") is published, the commands already queued behind it are
answered (each waits up to ``result_timeout_s`` for the hub's ack, then stays in the outbox for
the next start), and the agent then stops cleanly and exits 1 so
that systemd (``Restart=on-failure``) starts it again on the new configuration a few seconds
later; the buffer, the sync and the dashboard come back as after any restart. Nothing is
hot-applied. A failed command never stops the agent.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, Protocol

from edge_agent.config import AgentConfig
from edge_agent.remote.diagnostics import LogRing, build_bundle
from edge_agent.remote.guard import Refused, RemoteState, check_command
from edge_agent.remote.outbox import OUTBOX_DIR, Pending, ResultOutbox
from edge_agent.remote.overlay import apply_change
from edge_agent.remote.rotate import Rotator
from edge_agent.store import BufferStore
from edge_agent.sync.component import SyncPart
from edge_agent.sync.mqtt import LinkEvent, LinkState, Message, SyncError
from wire.commands import Command, CommandResult, decode_command, seal_result
from wire.errors import WireError
from wire.messages import Ack
from wire.topics import topic

log = logging.getLogger(__name__)

__all__ = ["QUEUE_SIZE", "RemotePart"]

QUEUE_SIZE = 8
# a pushed model refused for these never got near the runtime ("refused"); any other rejection
# is a model that was tried and failed (load, inputs, outputs, self-tests): "rolled_back"
UNTRUSTED_MODEL = frozenset({"unsigned", "unknown_key", "bad_signature", "hash_mismatch", "format"})
RESULT_TIMEOUT_S = 60.0  # how long handle() waits for a result's hub ack (it then stays in the outbox)
RESULT_RETRY_S = 1.0  # after a failed publish of a pending result


class ModelPusher(Protocol):
    def push_model(self, manifest_bytes: bytes, model_bytes: bytes) -> Any: ...


class RemotePart:
    """Start after the sync part; see the module doc. ``report()`` gives ``status.json``'s ``remote``."""

    name = "remote"

    def __init__(
        self,
        config: AgentConfig,
        sync: SyncPart,
        *,
        status: Callable[[], Mapping[str, Any]],
        scorer: Callable[[], object],
        clock: Callable[[], datetime],
        restart: Callable[[str], None],
        result_timeout_s: float = RESULT_TIMEOUT_S,
        retry_s: float = RESULT_RETRY_S,
        store: Callable[[], BufferStore] | None = None,
        outbox: ResultOutbox | None = None,
    ) -> None:
        self.config = config
        self.sync = sync
        self.status = status
        self.scorer = scorer
        self.clock = clock
        self.restart = restart
        self.result_timeout_s = result_timeout_s
        self.retry_s = retry_s
        gw = config.gateway
        self.cmd_topic = topic(gw.province, gw.id, "cmd")
        self.result_topic = topic(gw.province, gw.id, "cmd/result")
        self.state = RemoteState(config.state_dir / "remote" / "state.json")
        self.outbox = outbox or ResultOutbox(config.state_dir / "remote" / OUTBOX_DIR)
        self.logs = LogRing()
        self.dropped = 0
        self.published = 0
        self.publish_failures = 0  # results that could not be sealed (never queued)
        self.publish_retries = 0
        self.delayed = 0  # results not acknowledged within result_timeout_s (left in the outbox)
        self.republished = 0  # published again: no hub ack within the sync's ack_timeout_s
        self.hub_acked = 0  # results the hub acked "ok" (recorded or duplicate): removed
        self.hub_rejected = 0  # results the hub acked "rejected": dropped
        self.stale_acks = 0  # verified acks naming no pending result (harmless)
        self._wake = asyncio.Event()
        self._acked: dict[int, asyncio.Future[None]] = {}
        self._awaiting: dict[int, float] = {}  # published (PUBACK): loop time to publish it again
        self._forgetting: set[int] = set()  # acked, being removed from the outbox
        self._removals: set[asyncio.Task[None]] = set()
        self._listening: object | None = None  # the link whose reconnects we follow
        self._sender: asyncio.Task[None] | None = None
        self._queue: asyncio.Queue[Message] = asyncio.Queue(maxsize=QUEUE_SIZE)
        self._task: asyncio.Task[None] | None = None
        self._restart_pending = False
        self._restarting = False
        sync.add_handler(self.cmd_topic, self.offer)
        sync.on_result_ack(self.on_ack)
        self.rotator = Rotator(sync, store=store)

    # -- lifecycle -------------------------------------------------------------------------------
    async def start(self) -> None:
        logging.getLogger().addHandler(self.logs)
        loop = asyncio.get_running_loop()
        self.state = await loop.run_in_executor(None, RemoteState.load, self.config.state_dir)
        await loop.run_in_executor(None, self.outbox.load)  # a previous run's results go out first
        self._task = loop.create_task(self._run(), name="remote-commands")
        self._ensure_sender()

    async def stop(self) -> None:
        logging.getLogger().removeHandler(self.logs)
        for task in (self._task, self._sender):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        self._task = self._sender = None
        if self._removals:  # an acked result being removed: finish (a file left is sent again)
            await asyncio.gather(*self._removals, return_exceptions=True)

    @property
    def ack_timeout_s(self) -> float:
        """How long a published result waits for the hub's ack before it is published again
        (the sync's ``ack_timeout_s``, as a batch)."""
        return self.sync.ack_timeout_s

    def offer(self, message: Message) -> bool:
        """Take a message of our ``cmd`` topic (handled in order, on the loop); False otherwise."""
        if message.topic != self.cmd_topic:
            return False
        try:
            self._queue.put_nowait(message)
        except asyncio.QueueFull:
            self.dropped += 1
            self.state.refuse("queue_full")
            log.warning("event=command_dropped reason=queue_full")
        return True

    async def _run(self) -> None:
        while True:
            message = await self._queue.get()
            try:
                await self.handle(message.payload)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a command must never take the agent down
                log.exception("event=command_failed error=%r", exc)
            # commands that came right behind a config change are answered before the restart
            if self._restart_pending and self._queue.empty() and not self._restarting:
                self._restarting = True
                log.warning("event=agent_restart_requested reason=config_changed")
                self.restart("config_changed")

    # -- one command -----------------------------------------------------------------------------
    async def handle(self, payload: bytes) -> CommandResult | None:
        """Verify, guard, apply, persist, answer (module doc); the result, None when forged."""
        uplink = self.sync.uplink
        if uplink is None:  # cannot happen while the link delivers; be safe
            self.state.refuse("not_ready")
            return None
        try:
            cmd = decode_command(payload, uplink.hub.signing)
        except WireError as exc:
            self.state.refuse(exc.reason)
            log.warning("event=command_refused reason=%s detail=%r", exc.reason, exc.detail[:200])
            return None
        loop = asyncio.get_running_loop()
        now = self.clock()
        try:
            check_command(cmd, gateway_id=self.config.gateway.id, last_seq=self.state.last_seq, now=now)
        except Refused as exc:
            self.state.refuse(exc.reason)
            log.warning(
                "event=command_refused reason=%s kind=%s seq=%d cmd_id=%s", exc.reason, cmd.kind, cmd.seq, cmd.cmd_id
            )
            result = self._result(cmd, exc.state, exc.reason)
            if exc.reason == "replayed" and any(e.cmd_id == cmd.cmd_id for e in self.outbox.pending()):
                # a redelivery of a command whose own result still waits: that result answers it
                log.info("event=command_result_skipped reason=answer_pending cmd_id=%s", cmd.cmd_id)
                return result
            await self._publish(result)
            return result
        log.info("event=command_received kind=%s seq=%d cmd_id=%s", cmd.kind, cmd.seq, cmd.cmd_id)
        state, detail, data, restart = await self._apply(cmd)
        result = self._result(cmd, state, detail, data)
        try:
            await loop.run_in_executor(None, self.state.record, cmd, state, self.clock(), True)
        except OSError as exc:
            log.error("event=remote_state_unwritable error=%s", exc.strerror)
        log.info("event=command_done kind=%s seq=%d state=%s detail=%r", cmd.kind, cmd.seq, state, detail[:200])
        await self._publish(result)
        if restart:
            self._restart_pending = True  # once the queue is empty (_run)
        return result

    def _result(self, cmd: Command, state: str, detail: str, data: Mapping[str, object] | None = None) -> CommandResult:
        return CommandResult(
            cmd_id=cmd.cmd_id,
            gateway_id=self.config.gateway.id,
            seq=cmd.seq,
            kind=cmd.kind,
            state=state,
            detail=detail[:500],
            at=self.clock(),
            data=data or {},
        )

    async def _apply(self, cmd: Command) -> tuple[str, str, dict[str, object], bool]:
        """(state, detail, data, restart) of one accepted command."""
        loop = asyncio.get_running_loop()
        try:
            if cmd.kind == "set-config":
                outcome = await loop.run_in_executor(
                    None, apply_change, self.config.source, self.config.state_dir, cmd.config_values
                )
                return (
                    outcome.state,
                    outcome.detail,
                    {"changed": list(outcome.changed)},
                    outcome.state == "applied",
                )
            if cmd.kind == "push-model":
                return await loop.run_in_executor(None, self._push_model, cmd)
            if cmd.kind == "diagnostics":
                return await loop.run_in_executor(None, self._diagnostics, cmd, self.status())
            if cmd.kind == "rotate-keys":
                return await self.rotator.apply(cmd)
        except Exception as exc:
            log.exception("event=command_apply_failed kind=%s", cmd.kind)
            return "failed", f"{type(exc).__name__}", {}, False
        return "refused", "unknown_kind", {}, False

    def _push_model(self, cmd: Command) -> tuple[str, str, dict[str, object], bool]:
        from edge_agent.scoring.errors import ModelRejected

        pusher = _pusher(self.scorer())
        if pusher is None:
            return "refused", "no model registry (scoring unavailable)", {}, False
        manifest, model = cmd.model()
        try:
            loaded = pusher.push_model(manifest, model)
        except ModelRejected as exc:
            # nothing was swapped in: the model in use stays (the registry's own rollback)
            state = "refused" if exc.reason in UNTRUSTED_MODEL else "rolled_back"
            return state, f"model rejected: {exc.reason}", {"reason": exc.reason}, False
        summary = loaded.summary() if hasattr(loaded, "summary") else {}
        return "applied", "model in use", {"model": {k: summary.get(k) for k in ("id", "version", "role")}}, False

    def _diagnostics(self, cmd: Command, status: Mapping[str, Any]) -> tuple[str, str, dict[str, object], bool]:
        preflight: list[dict[str, str]] = []
        if self.config.source is not None:
            try:
                from edge_agent.provision_cli import AgentGateway
                from provisioning.check import gather, run_checks

                probe = gather(
                    self.config.source,
                    now=self.clock(),
                    gateway=AgentGateway(self.clock),
                    skip=frozenset({"broker", "service"}),
                )
                preflight = [item.to_json() for item in run_checks(probe)]
            except Exception as exc:  # a diagnostics bundle without preflight is still useful
                preflight = [{"name": "preflight", "status": "fail", "detail": type(exc).__name__, "fix": ""}]
        lines = cmd.args.get("log_lines", 0)
        bundle = build_bundle(
            status, now=self.clock(), preflight=preflight, logs=self.logs.tail(lines if isinstance(lines, int) else 0)
        )
        return "applied", "diagnostics bundle", bundle, False

    async def _publish(self, result: CommandResult) -> None:
        """Seal, keep in the outbox, and wait (at most ``result_timeout_s``) for the hub's ack."""
        uplink = self.sync.uplink
        if uplink is None:
            self.publish_failures += 1
            return
        try:
            payload = seal_result(result, hub_sealing_public=uplink.hub.sealing, gateway=uplink.gateway)
        except WireError as exc:
            self.publish_failures += 1
            log.error("event=command_result_unencodable reason=%s", exc.reason)
            return
        loop = asyncio.get_running_loop()
        entry = await loop.run_in_executor(None, self.outbox.add, result.cmd_id, payload)
        acked = self._acked.setdefault(entry.number, loop.create_future())
        if not self.outbox.contains(entry):  # the sender was quicker: already taken by the broker
            acked.set_result(None)
        self._ensure_sender()
        self._wake.set()
        done, _ = await asyncio.wait({acked}, timeout=self.result_timeout_s)
        if not done:
            self._acked.pop(entry.number, None)
            self.delayed += 1
            log.warning(
                "event=command_result_pending cmd_id=%s state=%s depth=%d action=kept_in_outbox",
                result.cmd_id,
                result.state,
                self.outbox.depth,
            )

    def _ensure_sender(self) -> None:
        if self._sender is None or self._sender.done():
            self._sender = asyncio.get_running_loop().create_task(self._send_pending(), name="remote-results")

    async def _send_pending(self) -> None:
        """Publish the outbox, oldest first, whenever the link is up; publish a result again when
        its hub ack has not come within ``ack_timeout_s`` (module doc)."""
        loop = asyncio.get_running_loop()
        while True:
            self._wake.clear()
            entries = [e for e in self.outbox.pending() if e.number not in self._forgetting]
            numbers = {e.number for e in entries}
            self._awaiting = {n: t for n, t in self._awaiting.items() if n in numbers}
            now = loop.time()
            due = [e for e in entries if self._awaiting.get(e.number, now) <= now]
            if not due:
                waits = [t - now for t in self._awaiting.values()]
                try:
                    async with asyncio.timeout(min(waits) if waits else None):
                        await self._wake.wait()
                except TimeoutError:
                    pass
                continue
            try:
                await self._send_one(due[0], loop)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # never lose the sender: the result stays, retried later
                log.exception("event=command_result_send_failed error=%r", exc)
                await asyncio.sleep(self.retry_s)

    async def _send_one(self, entry: Pending, loop: asyncio.AbstractEventLoop) -> None:
        link = self.sync.link
        if link is None:  # no link material yet: the sync part retries it
            await asyncio.sleep(self.retry_s)
            return
        if link is not self._listening:
            self._listening = link
            link.add_listener(self._on_link)
        await link.wait_connected()
        again = entry.number in self._awaiting
        try:
            await link.publish(self.result_topic, entry.payload, qos=1)
        except SyncError as exc:
            self.publish_retries += 1
            log.warning("event=command_result_retry reason=%s depth=%d", exc.reason, self.outbox.depth)
            await asyncio.sleep(self.retry_s)
            return
        self._awaiting[entry.number] = loop.time() + self.ack_timeout_s  # until the hub's ack
        self.published += 1
        if again:
            self.republished += 1
            log.warning(
                "event=command_result_republished reason=no_hub_ack cmd_id=%s timeout_s=%g",
                entry.cmd_id,
                self.ack_timeout_s,
            )
        else:
            log.info("event=command_result_published cmd_id=%s depth=%d", entry.cmd_id, self.outbox.depth)

    def _on_link(self, event: LinkEvent) -> None:
        if event.state is LinkState.CONNECTED and self._awaiting:
            # a new connection: what still waits for its ack goes out again now (as batches do)
            self._awaiting = dict.fromkeys(self._awaiting, 0.0)
            self._wake.set()

    # -- the hub's acks --------------------------------------------------------------------------
    def on_ack(self, ack: Ack) -> None:
        """A verified hub ack of lane ``results`` (the uplink checked signature and gateway):
        forget the results it names; one naming nothing pending is counted and ignored."""
        entries = [e for e in self.outbox.pending() if e.cmd_id == ack.batch_id and e.number not in self._forgetting]
        if not entries:
            self.stale_acks += 1
            log.info("event=command_result_ack_stale cmd_id=%s", ack.batch_id)
            return
        if ack.status == "ok":
            self.hub_acked += 1
            log.info("event=command_result_acked cmd_id=%s duplicate=%s", ack.batch_id, ack.duplicates > 0)
        else:
            self.hub_rejected += 1
            log.error(
                "event=command_result_dropped reason=hub_rejected cmd_id=%s detail=%s", ack.batch_id, ack.reason[:80]
            )
        self._forgetting.update(e.number for e in entries)
        task = asyncio.get_running_loop().create_task(self._forget(entries), name="remote-result-acked")
        self._removals.add(task)
        task.add_done_callback(self._removals.discard)

    async def _forget(self, entries: list[Pending]) -> None:
        loop = asyncio.get_running_loop()
        try:
            for entry in entries:
                await loop.run_in_executor(None, self.outbox.remove, entry)
                self._awaiting.pop(entry.number, None)
                acked = self._acked.pop(entry.number, None)
                if acked is not None and not acked.done():
                    acked.set_result(None)
        finally:
            self._forgetting.difference_update(e.number for e in entries)
            self._wake.set()

    # -- status ----------------------------------------------------------------------------------
    def report(self) -> Mapping[str, object]:
        return {
            "remote": {
                **self.state.as_dict(),
                "dropped": self.dropped,
                "results_published": self.published,
                "result_failures": self.publish_failures,
                "result_retries": self.publish_retries,
                "results_delayed": self.delayed,
                "results_republished": self.republished,
                "results_acked": self.hub_acked,
                "results_rejected": self.hub_rejected,
                "result_acks_stale": self.stale_acks,
                "outbox": self.outbox.as_dict(),
            }
        }


def _pusher(scorer: object) -> ModelPusher | None:
    """The object with ``push_model`` (the model scorer, also behind the SpO2 safety net)."""
    for candidate in (scorer, getattr(scorer, "scorer", None)):
        if candidate is not None and callable(getattr(candidate, "push_model", None)):
            return candidate  # type: ignore[return-value]
    return None
