"""MQTT topics of the sync link (DESIGN §5): ``se/v1/{province}/{gateway_id}/{leaf}``.

| leaf         | direction       | QoS | retained | payload                                   |
|--------------|-----------------|-----|----------|-------------------------------------------|
| `up`         | gateway → hub   | 1   | no       | sealed envelope of a reading batch        |
| `alert`      | gateway → hub   | 1   | no       | sealed envelope of an alert batch         |
| `status`     | gateway → hub   | 1   | yes      | heartbeat JSON (the last will: offline)   |
| `ack`        | hub → gateway   | 1   | no       | signed ack                                |
| `cmd`        | hub → gateway   | 1   | no       | signed command (wire.commands)            |
| `cmd/result` | gateway → hub   | 1   | no       | sealed, signed command result             |
| `renew/req`  | gateway → hub   | 1   | no       | signed certificate renewal request        |
| `renew/cert` | hub → gateway   | 1   | no       | signed renewal reply (wire.renewal)       |
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from wire.errors import Malformed

__all__ = [
    "HUB_SHARE_GROUP",
    "LEAVES",
    "QOS",
    "RETAIN",
    "ROOT",
    "TopicRef",
    "gateway_subscriptions",
    "hub_renewal_subscription",
    "hub_result_subscription",
    "hub_status_subscription",
    "hub_subscriptions",
    "parse_topic",
    "topic",
]

ROOT = "se/v1"
LEAVES = ("up", "alert", "status", "ack", "cmd", "cmd/result", "renew/req", "renew/cert")
QOS: dict[str, int] = dict.fromkeys(LEAVES, 1)
RETAIN: dict[str, bool] = {leaf: leaf == "status" for leaf in LEAVES}
HUB_SHARE_GROUP = "hub"
MAX_TOPIC = 256

# one topic level: no "/", no wildcards, no "$", nothing a shell or a log would mangle
_SEGMENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def _segment(kind: str, value: str) -> str:
    if not isinstance(value, str) or not _SEGMENT.fullmatch(value):
        raise Malformed("bad_topic", f"{kind} must match {_SEGMENT.pattern}")
    return value


def topic(province: str, gateway_id: str, leaf: str) -> str:
    """``se/v1/{province}/{gateway_id}/{leaf}``; :class:`~wire.errors.Malformed` for a bad part."""
    if leaf not in LEAVES:
        raise Malformed("bad_topic", f"unknown leaf (one of {', '.join(LEAVES)})")
    return f"{ROOT}/{_segment('province', province)}/{_segment('gateway_id', gateway_id)}/{leaf}"


@dataclass(frozen=True, slots=True)
class TopicRef:
    province: str
    gateway_id: str
    leaf: str


def parse_topic(topic: str) -> TopicRef:
    """The parts of a sync topic; :class:`~wire.errors.Malformed` (``bad_topic``) otherwise."""
    if not isinstance(topic, str) or len(topic) > MAX_TOPIC:
        raise Malformed("bad_topic", "not a string of at most 256 characters")
    parts = topic.split("/")
    if len(parts) < 5 or "/".join(parts[:2]) != ROOT:
        raise Malformed("bad_topic", f"not under {ROOT}/<province>/<gateway_id>/")
    leaf = "/".join(parts[4:])
    if leaf not in LEAVES:
        raise Malformed("bad_topic", "unknown leaf")
    return TopicRef(province=_segment("province", parts[2]), gateway_id=_segment("gateway_id", parts[3]), leaf=leaf)


def hub_subscriptions(group: str = HUB_SHARE_GROUP) -> list[str]:
    """The shared subscriptions every ingest worker makes: each message goes to one worker.

    ``status`` is subscribed unshared (:func:`hub_status_subscription`): every worker sees every
    gateway's state. Mosquitto never checks a subscription against the ACL, so a gateway that
    knows the group name can join it and make the broker discard the messages it would be given
    (it cannot read them); a deployment may pass its own, undisclosed ``group``.
    """
    _segment("group", group)
    return [f"$share/{group}/{ROOT}/+/+/up", f"$share/{group}/{ROOT}/+/+/alert"]


def hub_renewal_subscription(group: str = HUB_SHARE_GROUP) -> str:
    """Renewal requests, shared like the uplink: each request goes to one worker."""
    _segment("group", group)
    return f"$share/{group}/{ROOT}/+/+/renew/req"


def hub_result_subscription(group: str = HUB_SHARE_GROUP) -> str:
    """Command results, shared like the uplink: each result is recorded by one worker."""
    _segment("group", group)
    return f"$share/{group}/{ROOT}/+/+/cmd/result"


def hub_status_subscription() -> str:
    return f"{ROOT}/+/+/status"


def gateway_subscriptions(province: str, gateway_id: str) -> list[str]:
    """What a gateway subscribes to: its acks and its commands."""
    return [topic(province, gateway_id, "ack"), topic(province, gateway_id, "cmd")]
