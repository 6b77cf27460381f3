"""``edge-hub prune``: remove decommissioned gateways from the fleet registry.

A gateway is **decommissioned** when it has not been heard from for more than ``--offline-days``
days (offline, or stale: its last heartbeat older than that), or when the certificate its last
heartbeat named (``certificate.serial``) is on a CRL given with ``--crl`` (checked against the
CAs of ``--ca``, as the hub's renewal does: hub.renewal.load_revoked). A gateway that is online
now (a heartbeat within ``--stale-after`` seconds) is never removed, whatever the criteria: it is
listed as kept, for the operator to look at (a revoked certificate still connected means the
broker has not loaded the CRL).

Only the registry row goes (``HubStore.prune_gateways``, which also keeps a gateway whose
heartbeat arrived between the choice and the delete): readings, alerts and commands stay. A
pruned gateway that comes back reappears with its next heartbeat. The selection is pure
(:func:`select`); the command does the I/O.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography import x509

from hub.store import GatewayRecord

log = logging.getLogger(__name__)

__all__ = ["Decision", "revoked_serials", "run", "select"]

_CRL_PEM = re.compile(rb"-----BEGIN X509 CRL-----.*?-----END X509 CRL-----", re.S)
DEFAULT_STALE_AFTER_S = 300.0  # hub.fleet.Thresholds' default


@dataclass(frozen=True, slots=True)
class Decision:
    """One gateway that matched a criterion: ``prune`` or ``keep`` (it is online now)."""

    gateway_id: str
    province: str | None
    last_seen: datetime
    online: bool
    reasons: tuple[str, ...]  # offline_days, revoked
    action: str  # prune | keep

    def to_json(self, now: datetime) -> dict[str, object]:
        return {
            "gateway_id": self.gateway_id,
            "province": self.province,
            "last_seen": self.last_seen.isoformat(),
            "silent_s": round((now - self.last_seen).total_seconds(), 1),
            "online": self.online,
            "reasons": list(self.reasons),
            "action": self.action,
        }


def _serial(status: dict[str, object]) -> int | None:
    cert = status.get("certificate")
    if not isinstance(cert, dict):
        return None
    value = cert.get("serial")
    if not isinstance(value, str) or not 0 < len(value) <= 64:
        return None
    try:
        return int(value, 16)
    except ValueError:
        return None


def select(
    records: Sequence[GatewayRecord],
    now: datetime,
    *,
    offline_days: float | None = None,
    revoked: frozenset[int] | None = None,
    stale_after_s: float = DEFAULT_STALE_AFTER_S,
) -> list[Decision]:
    """The gateways that match ``offline_days`` (silent for longer) or ``revoked`` (the serial of
    their last heartbeat's certificate), either one; online ones are kept. Ordered by id."""
    out = []
    for rec in sorted(records, key=lambda r: r.gateway_id):
        silent = now - rec.last_seen
        reasons = []
        if offline_days is not None and silent > timedelta(days=offline_days):
            reasons.append("offline_days")
        serial = _serial(rec.status)
        if revoked is not None and serial is not None and serial in revoked:
            reasons.append("revoked")
        if not reasons:
            continue
        online_now = rec.online and silent.total_seconds() <= stale_after_s
        out.append(
            Decision(
                rec.gateway_id,
                rec.province,
                rec.last_seen,
                rec.online,
                tuple(reasons),
                "keep" if online_now else "prune",
            )
        )
    return out


def revoked_serials(pem: bytes, cas: Sequence[x509.Certificate]) -> frozenset[int]:
    """Revoked serials of the CRLs in ``pem`` signed by one of ``cas``; ValueError when none is
    (a CRL file from another CA, or not a CRL at all: pruning by it would prune nothing)."""
    from provisioning.crl import load_crl
    from provisioning.errors import ProvisioningError

    serials: set[int] = set()
    verified = 0
    for block in _CRL_PEM.findall(pem):
        for ca in cas:
            try:
                crl = load_crl(block, ca)
            except ProvisioningError:
                continue
            verified += 1
            serials.update(r.serial_number for r in crl)
            break
    if not verified:
        raise ValueError("no CRL in the file is signed by a CA of --ca")
    return frozenset(serials)


# -- the command line ----------------------------------------------------------------------------

PRUNE_HELP = """\
Remove decommissioned gateways from the fleet registry: silent for more than --offline-days
days, and/or whose last heartbeat names a certificate on the CRL given with --crl (with the CA
bundle --ca that signed it). A gateway online now is never removed (listed as kept). Readings,
alerts and commands are never deleted; a pruned gateway that comes back reappears with its
next heartbeat. --dry-run lists what would go without removing anything.
"""


def register_parser(sub: Any) -> None:
    """``edge-hub prune`` on the hub's sub-parsers (hub/cli.py)."""
    import argparse

    p = sub.add_parser(
        "prune",
        help="remove decommissioned gateways from the fleet registry (readings are kept)",
        description=PRUNE_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--store", required=True, metavar="DIR|URL", help="hub state directory or postgresql:// URL")
    p.add_argument("--offline-days", type=float, metavar="D", help="not heard from for more than D days")
    p.add_argument("--crl", type=Path, metavar="CRL.pem", help="revoked certificates (the broker's CRL file)")
    p.add_argument("--ca", type=Path, metavar="CA.pem", help="with --crl: the CA bundle the CRLs are signed by")
    p.add_argument("--province", metavar="P", help="only gateways of this province")
    p.add_argument(
        "--stale-after",
        type=float,
        default=DEFAULT_STALE_AFTER_S,
        metavar="S",
        help="a gateway with a heartbeat within S seconds is online and kept (300)",
    )
    p.add_argument("--dry-run", action="store_true", help="list what would be removed, remove nothing")
    p.add_argument("--json", action="store_true", help="one JSON object: pruned, kept, dry_run")


def run(args: Any) -> int:
    from hub.errors import EXIT_OK, EXIT_USAGE, OperatorActionRequired
    from hub.store import open_store
    from provisioning.errors import ProvisioningError
    from provisioning.pki import load_ca_certs

    def usage(message: str) -> int:
        print(f"edge-hub: {message}", file=sys.stderr)
        return EXIT_USAGE

    if args.offline_days is None and args.crl is None:
        return usage("prune: give --offline-days D and/or --crl CRL.pem")
    if args.offline_days is not None and not args.offline_days > 0:
        return usage("--offline-days must be > 0")
    if not args.stale_after > 0:
        return usage("--stale-after must be > 0")
    if (args.crl is None) != (args.ca is None):
        return usage("--crl and --ca go together")
    revoked = None
    if args.crl is not None:
        try:
            pem = args.crl.read_bytes()
            cas = load_ca_certs(args.ca)
            revoked = revoked_serials(pem, cas)
        except (OSError, ProvisioningError, ValueError) as exc:
            raise OperatorActionRequired(f"cannot use the CRL {args.crl}: {exc}", "check --crl and --ca") from exc
    with open_store(args.store, create=False) as store:
        now = datetime.now(UTC)
        decisions = select(
            store.gateways(province=args.province),
            now,
            offline_days=args.offline_days,
            revoked=revoked,
            stale_after_s=args.stale_after,
        )
        chosen = {d.gateway_id: d.last_seen for d in decisions if d.action == "prune"}
        removed = set(chosen) if args.dry_run else set(store.prune_gateways(chosen))
    pruned = [d for d in decisions if d.gateway_id in removed]
    kept = [d for d in decisions if d.gateway_id not in removed]
    for d in pruned:
        log.info(
            "event=%s gateway=%s reasons=%s",
            "fleet_prune_candidate" if args.dry_run else "fleet_pruned",
            d.gateway_id,
            ",".join(d.reasons),
        )
    if args.json:
        print(
            json.dumps(
                {
                    "dry_run": bool(args.dry_run),
                    "pruned": [d.to_json(now) for d in pruned],
                    "kept": [
                        {**d.to_json(now), "action": "keep", "why": "online" if d.action == "keep" else "heard_from"}
                        for d in kept
                    ],
                }
            )
        )
    else:
        verb = "would remove" if args.dry_run else "removed"
        for d in pruned:
            seen = f"{d.last_seen:%Y-%m-%d %H:%M}Z"
            print(f"{verb}  {d.gateway_id}  {d.province or '-'}  last seen {seen}  {','.join(d.reasons)}")
        for d in kept:
            why = "online now" if d.action == "keep" else "heard from since"
            print(f"kept  {d.gateway_id}  {d.province or '-'}  {why}  {','.join(d.reasons)}")
        print(f"{len(pruned)} gateways {verb} from the fleet registry, {len(kept)} kept; readings are kept")
    return EXIT_OK
