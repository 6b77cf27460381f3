"""Hub alerts to operators, pure: from the fleet records (hub/fleet.py) at ``now`` and the
fleet thresholds (:class:`hub.fleet.Thresholds`, the ``--stale-after``, ``--backlog-age`` and
``--cert-days`` of ``edge-hub fleet`` and ``edge-hub web``), the alerts an operator must see,
each with since when it holds. No I/O, no wall clock.

Three kinds, the same conditions as the Prometheus rules of ``docs/monitoring/hub-alerts.yml``
(evaluated on the same figures ``/metrics`` exposes, so a page and a Prometheus with the same
thresholds agree; the test suite checks it):

- ``gateway_silent`` (``StationEdgeGatewaySilent``): no heartbeat for longer than
  ``stale_after_s`` (``time() - last_seen > threshold``), whether the gateway said goodbye (a
  last will, a clean stop) or just went quiet; since ``last_seen + threshold``.
- ``backlog_old`` (``StationEdgeBacklogOld``): the oldest pending reading, projected to now,
  older than ``backlog_age_s``; since the moment it crossed the threshold.
- ``cert_expiring`` (``StationEdgeCertificateExpiring``): the gateway certificate's notAfter less
  than ``cert_days`` away (``critical`` once expired); since ``not_after - cert_days``.

Prometheus' ``for:`` (the condition must hold a while before it fires) is not modelled: the page
shows a condition as soon as it holds, with its "since", and an operator sees how long.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from hub.fleet import FleetRecord, Thresholds

__all__ = ["KINDS", "RULES", "FleetAlert", "alerts_json", "fleet_alerts", "gateway_alerts"]

DEFAULT_THRESHOLDS = Thresholds()
KINDS = ("gateway_silent", "backlog_old", "cert_expiring")
RULES = {  # kind -> the alert of docs/monitoring/hub-alerts.yml with the same condition
    "gateway_silent": "StationEdgeGatewaySilent",
    "backlog_old": "StationEdgeBacklogOld",
    "cert_expiring": "StationEdgeCertificateExpiring",
}


@dataclass(frozen=True, slots=True)
class FleetAlert:
    """One open condition of one gateway.

    ``value_s``: how long it has been silent / how old the backlog is / how long the certificate
    has left (negative: expired); ``threshold_s`` the threshold it is compared with."""

    kind: str
    gateway_id: str
    province: str | None
    severity: str  # "warning" | "critical"
    since: datetime
    value_s: float
    threshold_s: float

    @property
    def rule(self) -> str:
        return RULES[self.kind]

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "rule": self.rule,
            "gateway_id": self.gateway_id,
            "province": self.province,
            "severity": self.severity,
            "since": self.since.isoformat(),
            "value_s": round(self.value_s, 3),
            "threshold_s": self.threshold_s,
        }


def gateway_alerts(r: FleetRecord, now: datetime, thresholds: Thresholds = DEFAULT_THRESHOLDS) -> list[FleetAlert]:
    """The open alerts of one gateway at ``now``, in :data:`KINDS` order."""
    out: list[FleetAlert] = []
    silent = (now - r.last_seen).total_seconds()
    if silent > thresholds.stale_after_s:
        out.append(
            FleetAlert(
                "gateway_silent",
                r.gateway_id,
                r.province,
                "warning",
                r.last_seen + timedelta(seconds=thresholds.stale_after_s),
                silent,
                thresholds.stale_after_s,
            )
        )
    age = r.oldest_pending_age_s
    if age is not None and age > thresholds.backlog_age_s:
        out.append(
            FleetAlert(
                "backlog_old",
                r.gateway_id,
                r.province,
                "warning",
                now - timedelta(seconds=age - thresholds.backlog_age_s),
                age,
                thresholds.backlog_age_s,
            )
        )
    if r.cert_not_after is not None:
        left = (r.cert_not_after - now).total_seconds()
        window = thresholds.cert_days * 86400
        if left < window:
            out.append(
                FleetAlert(
                    "cert_expiring",
                    r.gateway_id,
                    r.province,
                    "critical" if left <= 0 else "warning",
                    r.cert_not_after - timedelta(seconds=window),
                    left,
                    window,
                )
            )
    return out


def _order(a: FleetAlert) -> tuple[int, int, datetime, str]:
    return (a.severity != "critical", KINDS.index(a.kind), a.since, a.gateway_id)


def fleet_alerts(
    records: Iterable[FleetRecord], now: datetime, thresholds: Thresholds = DEFAULT_THRESHOLDS
) -> list[FleetAlert]:
    """Every open alert of the fleet: critical first, then by kind (silent, backlog,
    certificate), the oldest first, then by gateway id (a total order)."""
    return sorted((a for r in records for a in gateway_alerts(r, now, thresholds)), key=_order)


def alerts_json(alerts: Sequence[FleetAlert]) -> str:
    return json.dumps([a.to_json() for a in alerts], ensure_ascii=False)
