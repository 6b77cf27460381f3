"""Keys and certificates for the wire tests, made once at import, in memory, at a fixed ``NOW``
(the wire layer never reads a clock: every check takes the ``now`` it is given). A plain module,
not fixtures, so hypothesis tests can use them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from provisioning.pki import CertifiedKey, HubKeys, create_ca, issue, new_hub_keys

NOW = datetime(2026, 3, 1, 8, 30, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Keys:
    ca: CertifiedKey
    other_ca: CertifiedKey
    gw1: CertifiedKey
    gw2: CertifiedKey
    expired: CertifiedKey  # gw-0001, expired before NOW
    foreign: CertifiedKey  # gw-0001 from other_ca
    broker: CertifiedKey  # a server certificate from the right CA
    hub: HubKeys
    other_hub: HubKeys


def make_keys() -> Keys:
    ca = create_ca("wire test CA", now=NOW)
    other = create_ca("other CA", now=NOW)
    return Keys(
        ca=ca,
        other_ca=other,
        gw1=issue(ca, "gw-0001", now=NOW),
        gw2=issue(ca, "gw-0002", now=NOW),
        expired=issue(ca, "gw-0001", now=NOW - timedelta(days=10), days=2),
        foreign=issue(other, "gw-0001", now=NOW),
        broker=issue(ca, "gw-0001", now=NOW, server_names=("localhost",)),
        hub=new_hub_keys(),
        other_hub=new_hub_keys(),
    )


KEYS = make_keys()
