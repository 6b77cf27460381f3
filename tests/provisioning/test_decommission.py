"""``edge-provision decommission`` on a real encrypted buffer: refused while readings are pending
(or while the agent runs), and once done the gateway key and the keystore are gone, so what
was sealed cannot be opened again."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

from device_drivers.records import Reading, Vital
from edge_agent.config import StoreConfig
from edge_agent.errors import EXIT_OK, EXIT_OPERATOR, EXIT_USAGE
from edge_agent.provision_cli import main
from edge_agent.store import BufferStore
from provisioning.decommission import count_pending
from provisioning.enroll import enroll

T0 = datetime(2031, 5, 1, 8, 0, tzinfo=UTC)


def reading(seq: int) -> Reading:
    return Reading(
        uid=f"gw-1:{seq}", seq=seq, vital=Vital.SPO2, value=97.0, unit="%", measured_at=T0, received_at=T0,
        device_id="oxi-1", source_format="masimo-ascii", clock_from_device=False, patient_id=None,
        flags=frozenset(), extra=(),
    )  # fmt: skip


@pytest.fixture
def gateway(tmp_path: Path) -> Path:
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    enroll(province="p01", station="s", key_path=tmp_path / "gw.key", csr_path=tmp_path / "gw.csr", gateway_id="gw-1")
    for name in ("ca.pem", "gw.cert", "hub.json"):
        (tmp_path / name).write_text("")
    config = tmp_path / "agent.toml"
    config.write_text(
        f'version = 1\n[gateway]\nid = "gw-1"\nprovince = "p01"\nstate_dir = "{state}"\n'
        f'[sync]\nbroker = "mqtts://h"\nca = "ca.pem"\ncert = "gw.cert"\nkey = "gw.key"\nhub_keys = "hub.json"\n'
    )
    store = BufferStore.open(
        state / "buffer.sqlite3", gateway_id="gw-1", keystore_path=state / "keystore.json",
        config=StoreConfig(group_commit_ms=5),
    )  # fmt: skip
    try:
        store.submit([reading(i) for i in range(1, 6)]).result(timeout=10)
        store.mark_synced(["gw-1:1", "gw-1:2"])
    finally:
        store.close()
    return config


def test_refused_while_data_is_pending_then_forced(gateway: Path, capsys: pytest.CaptureFixture[str]) -> None:
    state = gateway.parent / "state"
    assert count_pending(state / "buffer.sqlite3").readings == 3
    code = main(["decommission", "--config", str(gateway), "--yes"])
    err = capsys.readouterr().err
    assert code == EXIT_OPERATOR and "3 readings" in err and "--force" in err
    assert (gateway.parent / "gw.key").exists() and (state / "keystore.json").exists()

    assert main(["decommission", "--config", str(gateway), "--yes", "--force"]) == EXIT_OK
    out = capsys.readouterr().out
    assert "lost (--force): 3 readings" in out
    assert not (gateway.parent / "gw.key").exists() and not (state / "keystore.json").exists()
    assert not (state / "buffer.sqlite3").exists()


def test_nothing_pending_and_the_agent_running(gateway: Path, capsys: pytest.CaptureFixture[str]) -> None:
    state = gateway.parent / "state"
    store = BufferStore.open(
        state / "buffer.sqlite3", gateway_id="gw-1", keystore_path=state / "keystore.json",
        config=StoreConfig(group_commit_ms=5),
    )  # fmt: skip
    try:
        store.mark_synced([f"gw-1:{i}" for i in range(3, 6)])
    finally:
        store.close()
    (state / "agent.pid").write_text(f"{os.getpid()}\n")  # a live process: "the agent is running"
    assert main(["decommission", "--config", str(gateway), "--yes", "--force"]) == EXIT_OPERATOR
    assert "running" in capsys.readouterr().err
    (state / "agent.pid").unlink()
    assert main(["decommission", "--config", str(gateway)]) == EXIT_USAGE  # no tty, no --yes: not confirmed
    assert main(["decommission", "--config", str(gateway), "--yes"]) == EXIT_OK
    assert "destroyed" in capsys.readouterr().out
    # the buffer cannot come back: a new agent would find sealed data without its keys, or nothing
    assert not (state / "keystore.json").exists()


def test_acked_ranges_not_yet_folded_are_not_pending(gateway: Path) -> None:
    """After a crash the hub's acks may still be only seq ranges in ``acked`` (store v6, folded into
    ``readings.synced`` at the next open): they are not pending, and nothing else is hidden."""
    import sqlite3

    db = gateway.parent / "state" / "buffer.sqlite3"
    with sqlite3.connect(db) as con:  # the state a crash leaves: ranges held, rows not folded
        con.execute("UPDATE readings SET synced = 0")
        con.execute("DELETE FROM acked")
        con.execute("INSERT INTO acked (lo, hi) VALUES (1, 2), (4, 4)")
    con.close()
    assert count_pending(db).readings == 2  # seqs 3 and 5
