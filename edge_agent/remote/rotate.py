"""``rotate-keys`` on the gateway: a new identity key and/or a new buffer data key, on demand.

* Identity (``identity: true``): :meth:`edge_agent.sync.renewal.Renewer.rotate` makes a new key on
  the current key's curve (P-256, as provisioning), keeps it 0600 in ``<state_dir>/keys/``, asks
  the hub on ``renew/req`` for a certificate for it (the CSR signed by the new key, the request
  by the current one, naming this command's id), verifies the reply for the new key, writes key
  and chain atomically and switches the link and the uplink to them
  (:meth:`edge_agent.sync.component.SyncPart.use_identity`: a clean reconnect). The hub issues it
  only for a pending ``rotate-keys`` command of that id in its ledger (hub.renewal). Any failure
  (no reply, refused, unusable chain, disk) leaves the current key in use and no new key behind.
* Data (``data: true``): the buffer starts a new data key now
  (:meth:`edge_agent.store.BufferStore.rotate_data_key`, on the writer thread); rows already
  sealed keep theirs until retention destroys it.

Result: ``applied`` with ``{"serial", "old_serial"}`` (hex, identity) and ``{"data_key_id"}``
(data); ``failed`` with the reason(s) in the detail and whatever did succeed in the data.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path

from edge_agent.store import BufferStore, KeystoreError, StoreError
from edge_agent.sync.component import SyncPart
from edge_agent.sync.mqtt import Message
from edge_agent.sync.renewal import REPLY_TIMEOUT_S, RenewalFailed, Renewer
from provisioning.pki import CertifiedKey
from wire.commands import Command
from wire.topics import topic

log = logging.getLogger(__name__)

__all__ = ["Rotator"]


class Rotator:
    """Applies ``rotate-keys`` commands for one agent (module doc). Construct before the sync
    part starts: without periodic renewal (``sync.renew_before_days = 0``) it subscribes the
    reply topic itself."""

    def __init__(
        self,
        sync: SyncPart,
        *,
        store: Callable[[], BufferStore] | None,
        reply_timeout_s: float = REPLY_TIMEOUT_S,
    ) -> None:
        self.sync = sync
        self.store = store
        self.reply_timeout_s = reply_timeout_s
        self._own: Renewer | None = None
        gw = sync.config.gateway
        self.reply_topic = topic(gw.province, gw.id, "renew/cert")
        if sync.sync.renew_before_days <= 0:  # else the sync's renewer takes the replies
            sync.add_handler(self.reply_topic, self._offer)

    def _offer(self, message: Message) -> bool:
        return self._own is not None and self._own.offer(message)

    def renewer(self) -> Renewer | None:
        """The sync's renewer, or one of our own on the same link (renewal switched off)."""
        sync = self.sync
        if sync.renewer is not None:
            return sync.renewer
        link, uplink = sync.link, sync.uplink
        if link is None or uplink is None:
            return None
        if self._own is None or self._own.link is not link:
            gw = sync.config.gateway
            self._own = Renewer(
                link=link,
                province=gw.province,
                gateway_id=gw.id,
                before_days=0,
                ca_path=sync.sync.ca,
                hub_signing=uplink.hub.signing,
                state_dir=sync.config.state_dir,
                current=lambda: uplink.gateway,
                renewed=lambda gateway, path: sync.use_identity(gateway, path, None),
                clock=sync.clock,
                reply_timeout_s=self.reply_timeout_s,
            )
        return self._own

    async def apply(self, cmd: Command) -> tuple[str, str, dict[str, object], bool]:
        """(state, detail, data, restart) of one accepted ``rotate-keys`` command."""
        identity, data_key = cmd.rotations
        data: dict[str, object] = {}
        problems: list[str] = []
        if data_key:
            try:
                data["data_key_id"] = await self._rotate_data()
            except (StoreError, OSError, RuntimeError) as exc:
                reason = (
                    "keystore_unwritable"
                    if isinstance(exc, KeystoreError)
                    else str(exc)
                    if isinstance(exc, RuntimeError)
                    else type(exc).__name__
                )
                log.error("event=data_key_rotation_failed reason=%s error=%r", reason, str(exc)[:200])
                problems.append(f"data: {reason}")
        if identity:
            renewer = self.renewer()
            if renewer is None:
                problems.append("identity: sync_not_ready")
            else:
                try:
                    old, new = await renewer.rotate(cmd.cmd_id, self._switch)
                except RenewalFailed as exc:
                    problems.append(f"identity: {exc.reason}")
                else:
                    data["serial"] = format(new.cert.serial_number, "x")
                    data["old_serial"] = format(old.cert.serial_number, "x")
        if problems:
            return "failed", "; ".join(problems), data, False
        done = [*(["identity key"] if identity else []), *(["data key"] if data_key else [])]
        return "applied", " and ".join(done) + " rotated", data, False

    async def _rotate_data(self) -> int:
        if self.store is None:
            raise RuntimeError("no_buffer")
        store = self.store()
        return await asyncio.get_running_loop().run_in_executor(None, store.rotate_data_key)

    def _switch(self, new: CertifiedKey, cert_path: Path, key_path: Path) -> None:
        self.sync.use_identity(new, cert_path, key_path)
