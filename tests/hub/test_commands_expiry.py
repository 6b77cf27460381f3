"""A command the gateway never answered shows as ``expired`` once past its expiry, derived at read
time with the caller's ``now`` (``edge-hub fleet``, the fleet page, ``edge-hub cmd --wait``);
the ledger keeps ``sent``, so a late real result is still recorded and wins. A result delivered
twice (a gateway's outbox republishing after a lost PUBACK) is recorded once and counted."""

from __future__ import annotations

from datetime import timedelta

from hub.cmd_cli import wait_timeout_message
from hub.commands import CommandRecord, ResultRecorder, issue
from hub.fleet import fleet_records, render_table
from hub.store import GatewayRecord, HubStore
from hub.web.server import catalogs
from hub.web.view import PageData, api_json, fragments
from tests.wire.keys import KEYS, NOW
from wire.commands import CommandResult, seal_result

GW = "gw-0001"
TOPIC = "se/v1/p01/gw-0001/cmd/result"
MIN = timedelta(minutes=1)


def sent(expires_in: timedelta = 10 * MIN) -> CommandRecord:
    return CommandRecord("c-1", GW, "p01", "diagnostics", 3, NOW, NOW + expires_in, "sent", None, None)


def test_state_at_the_expiry_boundary() -> None:
    c = sent()
    assert [c.state_at(NOW + d) for d in (timedelta(0), 10 * MIN - timedelta(microseconds=1))] == ["sent", "sent"]
    assert c.state_at(NOW + 10 * MIN) == "expired" == c.state_at(NOW + 1000 * MIN)
    assert c.as_dict()["state"] == "sent" and c.as_dict(NOW + 11 * MIN)["state"] == "expired"
    answered = CommandRecord("c-2", GW, "p01", "diagnostics", 4, NOW, NOW + MIN, "failed", "x", NOW + 2 * MIN)
    assert answered.state_at(NOW + 100 * MIN) == "failed"  # an answer is never overridden


def test_fleet_cli_shows_expired_at_its_now() -> None:
    g = GatewayRecord(GW, "p01", True, NOW, {"v": 1, "type": "status", "online": True, "sent_at": NOW.isoformat()})
    for now, shown in ((NOW + MIN, "sent"), (NOW + 11 * MIN, "expired")):
        records = fleet_records([g], now, commands={GW: sent()})
        assert records[0].last_command is not None and records[0].last_command["state"] == shown
        assert render_table(records, now).splitlines()[1].split()[-1] == f"diagnostics#3:{shown}"


def test_fleet_page_shows_expired_at_its_now() -> None:
    cats = catalogs()
    c = sent()
    g = GatewayRecord(GW, "p01", True, NOW, {"v": 1, "type": "status", "online": True, "sent_at": NOW.isoformat()})
    for now, cls, text in ((NOW + MIN, "cmd-sent", "sent, no answer yet"), (NOW + 11 * MIN, "cmd-expired", "expired")):
        records = fleet_records([g], now, commands={GW: c})
        page = PageData(now, None, ("p01",), records, [], [], (c,), {GW: c})
        parts = fragments(page, cats["en"], NOW.tzinfo)  # type: ignore[arg-type]
        assert f'<span class="{cls}">{text}</span>' in parts["commands"]
        assert f'<span class="{cls}">diagnostics: {text}</span>' in parts["fleet"]
        doc = api_json(page, "UTC")
        assert doc["commands"][0]["state"] == doc["gateways"][0]["last_command"]["state"] == cls[4:]


def test_wait_timeout_message() -> None:
    c = sent()
    assert "stays valid until" in wait_timeout_message(c, 30, NOW + MIN)
    message = wait_timeout_message(c, 30, NOW + 11 * MIN)
    assert message.startswith(f"no result from {GW} within 30 s") and "expired at" in message
    assert "(state expired)" in message


def test_a_late_result_wins_and_a_repeat_is_counted_once(store: HubStore) -> None:
    issued = issue(
        store,
        KEYS.hub.signing,
        gateway_id=GW,
        province="p01",
        kind="diagnostics",
        args={"log_lines": 0},
        now=NOW,
        expires_in_s=60,
    )
    late = NOW + 5 * MIN
    row = store.command(issued.record.cmd_id)
    assert row is not None and row.state == "sent" and row.state_at(late) == "expired"  # not written
    rec = ResultRecorder(store, hub_sealing_private=KEYS.hub.sealing, ca_certs=[KEYS.ca.cert], clock=lambda: late)
    result = CommandResult(issued.record.cmd_id, GW, issued.record.seq, "diagnostics", "applied", "ok", NOW, {})
    payload = seal_result(result, hub_sealing_public=KEYS.hub.sealing.public_key(), gateway=KEYS.gw1)
    assert rec.handle(TOPIC, payload) == "recorded"
    assert [rec.handle(TOPIC, payload) for _ in range(2)] == ["duplicate", "duplicate"]  # the same bytes again
    done = store.command(issued.record.cmd_id)
    assert done is not None and (done.state, done.result_at, done.state_at(late)) == ("applied", late, "applied")
    m = rec.metrics()
    assert (m["hub_command_results_total"], m["hub_command_results_duplicate_total"]) == (1, 2)
    assert m["hub_command_results_rejected"] == {}
