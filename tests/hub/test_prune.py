"""Pruning decommissioned gateways from the fleet registry (``edge-hub prune``) on both engines:
silent for too long or revoked on a CRL, never an online one, never a reading; a pruned gateway
that comes back reappears; a heartbeat between the choice and the delete keeps the gateway."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from hub.cli import main
from hub.prune import revoked_serials, select
from hub.store import GatewayRecord, HubStore, open_store
from provisioning.crl import build_crl
from provisioning.pki import create_ca, issue
from tests.hub.helpers import T0, readings

DAY = timedelta(days=1)


def beat(at: datetime, *, online: bool = True, serial: int | None = None) -> dict[str, object]:
    doc: dict[str, object] = {"v": 1, "type": "status", "online": online, "sent_at": at.isoformat()}
    if serial is not None:
        doc["certificate"] = {"not_after": (at + 300 * DAY).isoformat(), "serial": format(serial, "x")}
    return doc


def seed(store: HubStore, now: datetime, *, revoked_serial: int = 0xABC) -> None:
    """gw-old: offline 40 days; gw-revoked: offline 2 days, revoked certificate; gw-live: online
    now, also revoked; gw-fresh: offline an hour. Readings for gw-old."""
    store.record_status("gw-old", beat(now - 40 * DAY), province="p01", now=now - 40 * DAY)
    store.record_status("gw-old", {"online": False}, province="p01", now=now - 40 * DAY)
    store.record_status("gw-revoked", beat(now - 2 * DAY, online=False, serial=revoked_serial), now=now - 2 * DAY)
    store.record_status("gw-live", beat(now, serial=revoked_serial), province="p02", now=now)
    store.record_status(
        "gw-fresh", beat(now - timedelta(hours=1), online=False, serial=0x1), now=now - timedelta(hours=1)
    )
    store.ingest("gw-old", "b1", readings("gw-old", range(1, 6)))


def test_prune_removes_only_the_rows_whose_last_seen_is_unchanged(store: HubStore) -> None:
    now = datetime.now(UTC)
    seed(store, now)
    rows = {g.gateway_id: g for g in store.gateways()}
    # gw-revoked is heard from after the choice: it stays
    store.record_status("gw-revoked", beat(now + timedelta(seconds=1)), now=now + timedelta(seconds=1))
    removed = store.prune_gateways({"gw-old": rows["gw-old"].last_seen, "gw-revoked": rows["gw-revoked"].last_seen})
    assert removed == ["gw-old"]
    assert sorted(g.gateway_id for g in store.gateways()) == ["gw-fresh", "gw-live", "gw-revoked"]
    assert store.count_readings("gw-old") == 5  # readings are never pruned
    assert store.prune_gateways({}) == [] and store.prune_gateways({"gw-none": now}) == []
    # it comes back: its next heartbeat (or the will) adds it again
    store.record_status("gw-old", beat(now), province="p01", now=now)
    back = {g.gateway_id: g for g in store.gateways()}["gw-old"]
    assert back.online and back.province == "p01" and back.since == now


def test_select_is_pure_and_keeps_online_gateways() -> None:
    now = T0
    recs = [
        GatewayRecord("gw-a", "p01", False, now - 40 * DAY, beat(now - 40 * DAY, serial=5)),
        GatewayRecord("gw-b", "p01", False, now - DAY, beat(now - DAY, serial=7)),
        GatewayRecord("gw-c", "p01", True, now - timedelta(seconds=30), beat(now, serial=7)),
        GatewayRecord("gw-d", "p01", True, now - 31 * DAY, beat(now - 31 * DAY, serial=9)),  # stale: not online now
        GatewayRecord("gw-e", None, False, now - DAY, {"certificate": {"serial": "zz"}}),  # malformed serial
        GatewayRecord("gw-f", None, False, now - DAY, {"certificate": "x"}),
    ]
    got = {d.gateway_id: (d.reasons, d.action) for d in select(recs, now, offline_days=30, revoked=frozenset({7}))}
    assert got == {
        "gw-a": (("offline_days",), "prune"),
        "gw-b": (("revoked",), "prune"),
        "gw-c": (("revoked",), "keep"),
        "gw-d": (("offline_days",), "prune"),
    }
    assert select(recs, now) == []  # no criterion, nothing
    assert [d.gateway_id for d in select(recs, now, offline_days=0.5)] == ["gw-a", "gw-b", "gw-d", "gw-e", "gw-f"]
    both = select([recs[0]], now, offline_days=30, revoked=frozenset({5}))
    assert both[0].reasons == ("offline_days", "revoked")
    assert both[0].to_json(now)["silent_s"] == 40 * 86400


def crl_files(tmp_path: Path, serials: list[int]) -> tuple[Path, Path]:
    now = datetime.now(UTC)
    ca = create_ca("prune test CA", now=now)
    ca_path, crl_path = tmp_path / "ca.pem", tmp_path / "crl.pem"
    ca_path.write_bytes(ca.cert_pem())
    crl_path.write_bytes(build_crl(ca, serials, now=now))
    return ca_path, crl_path


def run_json(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, object]]:
    code = main(argv)
    out = capsys.readouterr().out
    return code, json.loads(out) if out.strip() else {}


def test_cli_dry_run_then_prune_by_age_and_crl(
    store_spec: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    now = datetime.now(UTC)
    with open_store(store_spec) as store:
        seed(store, now, revoked_serial=0xABC)
    ca_path, crl_path = crl_files(tmp_path, [0xABC, 0xDEF])
    base = ["prune", "--store", store_spec, "--json"]
    code, doc = run_json(
        [*base, "--offline-days", "30", "--crl", str(crl_path), "--ca", str(ca_path), "--dry-run"], capsys
    )
    assert code == 0 and doc["dry_run"] is True
    assert [(d["gateway_id"], d["reasons"]) for d in doc["pruned"]] == [  # type: ignore[index, union-attr]
        ("gw-old", ["offline_days"]),
        ("gw-revoked", ["revoked"]),
    ]
    assert [(d["gateway_id"], d["why"]) for d in doc["kept"]] == [("gw-live", "online")]  # type: ignore[index, union-attr]
    with open_store(store_spec) as store:
        assert len(store.gateways()) == 4  # a dry run removes nothing
    code, doc = run_json([*base, "--offline-days", "30"], capsys)
    assert code == 0 and [d["gateway_id"] for d in doc["pruned"]] == ["gw-old"]  # type: ignore[index, union-attr]
    code, doc = run_json([*base, "--crl", str(crl_path), "--ca", str(ca_path)], capsys)
    assert code == 0 and [d["gateway_id"] for d in doc["pruned"]] == ["gw-revoked"]  # type: ignore[index, union-attr]
    with open_store(store_spec) as store:
        assert sorted(g.gateway_id for g in store.gateways()) == ["gw-fresh", "gw-live"]
        assert store.count_readings() == 5
    # the table form
    assert main(["prune", "--store", store_spec, "--offline-days", "0.01"]) == 0
    out = capsys.readouterr().out
    assert "removed  gw-fresh" in out and "kept  gw-live" not in out
    assert out.strip().splitlines()[-1].startswith("1 gateways removed from the fleet registry, 0 kept")


def test_cli_refusals(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = str(tmp_path / "hub")
    open_store(spec).close()
    ca_path, crl_path = crl_files(tmp_path, [1])
    other = tmp_path / "other"
    other.mkdir()
    other_ca, _ = crl_files(other, [1])
    assert main(["prune", "--store", spec]) == 2  # no criterion
    assert main(["prune", "--store", spec, "--offline-days", "0"]) == 2
    assert main(["prune", "--store", spec, "--crl", str(crl_path)]) == 2  # without --ca
    assert main(["prune", "--store", spec, "--offline-days", "1", "--stale-after", "-1"]) == 2
    assert main(["prune", "--store", spec, "--crl", str(crl_path), "--ca", str(other_ca)]) == 78  # another CA's CRL
    assert main(["prune", "--store", spec, "--crl", str(tmp_path / "none.pem"), "--ca", str(ca_path)]) == 78
    assert main(["prune", "--store", str(tmp_path / "nothing"), "--offline-days", "1"]) == 78  # no store
    assert "edge-hub:" in capsys.readouterr().err


def test_revoked_serials_reads_every_crl_signed_by_a_trusted_ca(tmp_path: Path) -> None:
    now = T0
    root, issuing = create_ca("root", now=now), create_ca("issuing", now=now)
    stranger = create_ca("stranger", now=now)
    pem = build_crl(root, [1, 2], now=now) + build_crl(issuing, [3], now=now) + build_crl(stranger, [4], now=now)
    assert revoked_serials(pem, [root.cert, issuing.cert]) == {1, 2, 3}
    assert revoked_serials(build_crl(root, [], now=now), [root.cert]) == frozenset()
    with pytest.raises(ValueError):
        revoked_serials(pem, [issue(root, "gw-x", now=now).cert])
    with pytest.raises(ValueError):
        revoked_serials(b"not a crl", [root.cert])
