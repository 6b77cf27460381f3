"""SyncPart in the agent: the sync never stops the station. Refused or missing credentials show
as ``auth_refused`` in status (and ``edge-agent status``) while readings keep being buffered; a
clean stop after a run with a hub leaves nothing pending (the final sync)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import io
import json
import time
from collections.abc import Callable
from pathlib import Path

from edge_agent.agent import Agent, RunSummary
from edge_agent.cli import main as cli_main
from edge_agent.config import DeviceConfig, load_config
from edge_agent.store import BufferStore
from edge_agent.sync.component import STATES, SyncPart
from tests.edge_agent.sync.conftest import running_sync
from tests.edge_agent.sync.support import GW, agent_config, async_wait_until, make_readings, responding, sync_config
from tests.fixtures.mosquitto import MosquittoBroker
from tests.fixtures.pki import Identity, Pki

SIM = DeviceConfig(id="oxi-1", format="masimo-ascii", transport="simulated", speed=20.0)


def run_agent(agent: Agent, until: Callable[[Agent], bool], timeout: float = 30.0) -> tuple[RunSummary, bool]:
    met = False

    async def main() -> RunSummary:
        nonlocal met
        stop = asyncio.Event()

        async def watch() -> None:
            nonlocal met
            end = time.monotonic() + timeout
            while time.monotonic() < end and not met:
                await asyncio.sleep(0.1)
                with contextlib.suppress(RuntimeError):  # a part not started yet
                    met = until(agent)
            stop.set()

        watcher = asyncio.get_running_loop().create_task(watch())
        summary = await agent.run(stop)
        await watcher
        return summary

    return asyncio.run(main()), met


def status_json(state: Path) -> dict:  # type: ignore[type-arg]
    try:
        return json.loads((state / "status.json").read_text())  # type: ignore[no-any-return]
    except (FileNotFoundError, ValueError):
        return {}


def write_config(tmp_path: Path, pki: Pki, broker: MosquittoBroker, identity: Identity) -> Path:
    """A TOML config whose [sync] paths are relative to the config file."""
    etc = tmp_path / "etc"
    etc.mkdir()
    for name, src in (("ca.pem", pki.ca_path), ("gw.pem", identity.cert_path), ("hub.json", pki.hub_public_path)):
        (etc / name).write_bytes(src.read_bytes())
    (etc / "gw.key").write_bytes(identity.key_path.read_bytes())
    (etc / "gw.key").chmod(0o600)
    path = etc / "agent.toml"
    path.write_text(
        f"""version = 1
[gateway]
id = "{GW}"
province = "p1"
state_dir = "../state"
[scheduler]
status_interval_s = 1
[sync]
broker = "mqtts://127.0.0.1:{broker.port}"
ca = "ca.pem"
cert = "gw.pem"
key = "gw.key"
hub_keys = "hub.json"
batch_max_age_s = 0.5
[[devices]]
id = "oxi-1"
format = "masimo-ascii"
transport = "simulated"
speed = 20.0
"""
    )
    return path


def cli_status(config: Path) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert cli_main(["status", "--config", str(config)]) == 0
    return out.getvalue()


def test_expired_certificate_is_auth_refused_and_the_agent_keeps_buffering(
    tmp_path: Path, pki: Pki, broker: MosquittoBroker
) -> None:
    config = load_config(write_config(tmp_path, pki, broker, pki.expired_gateway(GW)))
    assert config.sync is not None and config.sync.cert == tmp_path / "etc" / "gw.pem"
    agent = Agent(config)
    printed: list[str] = []

    def refused_and_buffering(a: Agent) -> bool:
        sync = status_json(config.state_dir).get("sync", {})
        if sync.get("state") == "auth_refused" and a.pipeline.counters.stored >= 20:
            printed.append(cli_status(config.source))  # type: ignore[arg-type]
            return True
        return False

    summary, met = run_agent(agent, refused_and_buffering)
    assert met, status_json(config.state_dir).get("sync")
    assert summary.synced == 0 and summary.readings_stored >= 20
    assert summary.pending == summary.readings_stored  # everything buffered, nothing lost
    text = printed[0]
    assert "sync: auth_refused since" in text and "SYNC REFUSED" in text and "certificate_expired" in text
    assert "backlog" in text


def test_a_run_with_a_hub_ends_with_nothing_pending(tmp_path: Path, pki: Pki, broker: MosquittoBroker) -> None:
    path = write_config(tmp_path, pki, broker, pki.gateway(GW))
    config = load_config(path)
    agent = Agent(config)
    seen: list[str] = []

    def synced_some(a: Agent) -> bool:
        if a.synced >= 20 and status_json(config.state_dir).get("sync", {}).get("last_ack_at"):
            seen.append(cli_status(path))
            return True
        return False

    with responding(pki, broker) as hub:
        summary, met = run_agent(agent, synced_some)
        assert met
        assert summary.pending == 0 and summary.synced == summary.readings_stored > 0  # the final sync
        assert hub.stored_count() == summary.readings_stored
    line = next(x for x in seen[0].splitlines() if x.startswith("sync:"))
    assert line.startswith("sync: connected since") and "last ack" in line and "batches in flight" in line
    assert "never" not in line.split("last ack")[1].split(";")[0]
    final = status_json(config.state_dir)["sync"]
    assert final["synced"] == summary.synced and final["configured"] is True


def test_without_sync_the_gateway_runs_offline(tmp_path: Path) -> None:
    config = agent_config(tmp_path / "state", None, (SIM,))
    agent = Agent(config)
    assert agent.sync is None
    summary, met = run_agent(agent, lambda a: a.pipeline.counters.stored >= 5)
    assert met and summary.synced == 0 and summary.pending == summary.readings_stored
    sync = status_json(config.state_dir)["sync"]
    assert sync["configured"] is False and sync["state"] == "offline"


def test_missing_files_are_auth_refused_naming_the_key_then_picked_up_without_restart(
    tmp_path: Path, pki: Pki, broker: MosquittoBroker, store: BufferStore
) -> None:
    gw = pki.gateway(GW)
    late = tmp_path / "late"
    late.mkdir()
    sync = dataclasses.replace(sync_config(pki, broker), cert=late / "gw.pem")
    config = agent_config(tmp_path / "state", sync)
    store.submit(make_readings(1, 30)).result(10)

    async def main() -> None:
        with responding(pki, broker):
            async with running_sync(config, store) as part:
                report = part.report()["sync"]
                assert isinstance(report, dict)
                assert report["state"] == "auth_refused" and "sync.cert" in str(report["last_error"])
                assert store.stats().pending == 30
                (late / "gw.pem").write_bytes(gw.cert_path.read_bytes())  # the technician installs it
                assert await async_wait_until(lambda: store.stats().pending == 0, 20), part.report()
                assert part.state == "connected"

    asyncio.run(main())


def test_a_certificate_for_another_gateway_is_refused_before_connecting(
    tmp_path: Path, pki: Pki, broker: MosquittoBroker, store: BufferStore
) -> None:
    config = agent_config(tmp_path / "state", sync_config(pki, broker, pki.gateway("gw-0002")))

    async def main() -> None:
        async with running_sync(config, store) as part:
            assert part.state == "auth_refused" and part.link is None
            report = part.report()["sync"]
            assert isinstance(report, dict)
            assert "certificate_cn_mismatch" in str(report["last_error"]) and "gw-0002" in str(report["last_error"])

    asyncio.run(main())


def test_report_has_the_documented_keys(tmp_path: Path, pki: Pki, broker: MosquittoBroker, store: BufferStore) -> None:
    config = agent_config(tmp_path / "state", sync_config(pki, broker))

    async def main() -> None:
        async with running_sync(config, store) as part:
            assert isinstance(part, SyncPart)
            assert await async_wait_until(lambda: part.state == "connected", 10)
            report = part.report()["sync"]
            assert isinstance(report, dict)
            for key in (
                "state",
                "since",
                "last_ack_at",
                "batches_in_flight",
                "synced",
                "rejected_batches",
                "last_error",
            ):
                assert key in report
            assert report["state"] in STATES and report["last_error"] is None

    asyncio.run(main())
