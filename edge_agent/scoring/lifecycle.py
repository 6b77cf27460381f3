"""The alert lifecycle: raised once, escalated when the level rises, re-notified while
unacknowledged, cleared when resolved.

The scorer turns every assessment into a :class:`Finding` (a level, or ``None`` when the
condition is absent) for one ``(subject, kind)``; the book compares it with the open alert of that
key and returns the event to show, if any. Rules:

* no open alert and a level → **raised**;
* open and a higher level than it ever had → **escalated** (needs a new acknowledgement);
* open and the same or a lower level → no event (score and inputs updated quietly; the alert
  keeps its peak level, so a score wobbling across a threshold does not re-alert);
* open and the condition absent → **cleared**, but only when every parameter that caused the
  alert has been measured again: a parameter that simply stopped arriving is not "resolved";
* open, unacknowledged, and not told for ``renotify_s`` → **renotified** (``tick``);
* ``clear_subject`` closes the alerts of a subject (the scorer: one that has sent nothing for a
  long time); it costs the number of that subject's alerts, so clearing is linear overall.
"""

from __future__ import annotations

import json
import uuid
import zlib
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import datetime

from edge_agent.alerts import Ack, Alert, AlertLevel, AlertState
from edge_agent.scoring import labels as L
from edge_agent.scoring.errors import AlertNotFound

_KEEP_CLOSED = 500  # cleared alerts kept in memory, so a late acknowledgement still lands


def _pack(alert: Alert) -> bytes:
    """A cleared alert as the book keeps it: its JSON, deflated (issue 14: about 510 B instead of
    about 1.05 KB as objects, the bilingual message most of it, measured with tracemalloc). The
    500 kept fill over hours (the demo clears about 4 a minute), so as objects they grew the
    agent's RSS for two hours, by about 0.5 MiB; packed, by about 0.25 MiB."""
    return zlib.compress(json.dumps(alert.to_json(), ensure_ascii=False, separators=(",", ":")).encode())


def _unpack(packed: bytes) -> Alert:
    return Alert.from_json(json.loads(zlib.decompress(packed)))


@dataclass(frozen=True, slots=True)
class Finding:
    subject: str
    kind: str
    level: AlertLevel | None  # None: the condition is absent in this assessment
    known: frozenset[str]  # parameters that had a value in this assessment
    causes: tuple[str, ...] = ()  # parameters that contributed to the level
    message: str = ""
    score: float | None = None
    partial: bool = False
    missing: tuple[str, ...] = ()
    inputs: tuple[tuple[str, float, str], ...] = ()
    model: str = ""


class AlertBook:
    def __init__(self, *, renotify_s: float, new_id: Callable[[], str] = lambda: uuid.uuid4().hex) -> None:
        self.renotify_s = renotify_s
        self._new_id = new_id
        self._open: dict[tuple[str, str], Alert] = {}
        self._kinds: dict[str, set[str]] = {}  # subject -> kinds open (clear_subject in O(its alerts))
        self._closed: OrderedDict[str, bytes] = OrderedDict()  # alert id -> _pack(cleared alert)

    # -- queries --------------------------------------------------------------------------------
    def open_alerts(self) -> list[Alert]:
        return list(self._open.values())

    def get(self, alert_id: str) -> Alert:
        for a in self._open.values():
            if a.alert_id == alert_id:
                return a
        packed = self._closed.get(alert_id)
        if packed is not None:
            return _unpack(packed)
        raise AlertNotFound(alert_id)

    def restore(self, alerts: Iterable[Alert]) -> None:
        """Re-adopt open alerts saved before a restart (they are not raised again)."""
        for a in alerts:
            if a.is_open:
                self._put(a)

    # -- transitions ----------------------------------------------------------------------------
    def assess(self, f: Finding, now: datetime) -> Alert | None:
        key = (f.subject, f.kind)
        cur = self._open.get(key)
        if cur is None:
            if f.level is None:
                return None
            alert = Alert(
                alert_id=self._new_id(),
                subject=f.subject,
                kind=f.kind,
                level=f.level,
                state=AlertState.RAISED,
                message=f.message,
                raised_at=now,
                score=f.score,
                partial=f.partial,
                inputs=f.inputs,
                model=f.model,
                updated_at=now,
                notified_at=now,
                missing=f.missing,
                causes=f.causes,
            )
            self._put(alert)
            return alert
        if f.level is None:
            if set(cur.causes) <= f.known:
                return self._close(cur, now, "resolved", f)
            return None  # the parameters that caused it are not measured now: not resolved
        causes = tuple(dict.fromkeys((*cur.causes, *f.causes)))
        updated = replace(
            cur,
            score=f.score,
            partial=f.partial,
            inputs=f.inputs,
            missing=f.missing,
            model=f.model,
            causes=causes,
            message=f.message,
            updated_at=now,
        )
        if f.level.rank > cur.level.rank:
            updated = replace(
                updated,
                level=f.level,
                state=AlertState.ESCALATED,
                notified_at=now,
                acknowledged=False,
            )
            self._open[key] = updated
            return updated
        self._open[key] = updated
        return None

    def renotify_due(self, now: datetime) -> list[Alert]:
        out = []
        for key, a in list(self._open.items()):
            last = a.notified_at or a.raised_at
            if not a.acknowledged and (now - last).total_seconds() >= self.renotify_s:
                updated = replace(a, state=AlertState.RENOTIFIED, notified_at=now, updated_at=now)
                self._open[key] = updated
                out.append(updated)
        return out

    def clear_subject(self, subject: str, now: datetime, reason: str) -> list[Alert]:
        kinds = sorted(self._kinds.get(subject, ()))
        return [self._close(self._open[(subject, k)], now, reason, None) for k in kinds]

    def open_kinds(self, subject: str) -> frozenset[str]:
        return frozenset(self._kinds.get(subject, ()))

    def clear_kind(self, subject: str, kind: str, now: datetime, reason: str) -> Alert | None:
        cur = self._open.get((subject, kind))
        return None if cur is None else self._close(cur, now, reason, None)

    def _put(self, alert: Alert) -> None:
        self._open[(alert.subject, alert.kind)] = alert
        self._kinds.setdefault(alert.subject, set()).add(alert.kind)

    def acknowledge(self, alert_id: str, who: str, now: datetime) -> Alert:
        if not who.strip():
            raise ValueError("acknowledge: 'who' must name the person")
        a = self.get(alert_id)
        acks = (*a.acks, Ack(who.strip(), now))
        if a.is_open:
            updated = replace(a, state=AlertState.ACKNOWLEDGED, acknowledged=True, acks=acks, updated_at=now)
            self._open[(a.subject, a.kind)] = updated
        else:
            updated = replace(a, acknowledged=True, acks=acks, updated_at=now)
            self._closed[alert_id] = _pack(updated)
        return updated

    def _close(self, cur: Alert, now: datetime, reason: str, f: Finding | None) -> Alert:
        closed = replace(
            cur,
            state=AlertState.CLEARED,
            cleared_at=now,
            clear_reason=reason,
            updated_at=now,
            score=cur.score if f is None else f.score,
            inputs=cur.inputs if f is None else f.inputs,
            message=L.cleared_text(reason, f.message, now=True)
            if f is not None and f.message
            else L.cleared_text(reason, cur.message, now=False),
        )
        del self._open[(cur.subject, cur.kind)]
        kinds = self._kinds.get(cur.subject)
        if kinds is not None:
            kinds.discard(cur.kind)
            if not kinds:
                del self._kinds[cur.subject]
        self._closed[closed.alert_id] = _pack(closed)
        while len(self._closed) > _KEEP_CLOSED:
            self._closed.popitem(last=False)
        return closed
