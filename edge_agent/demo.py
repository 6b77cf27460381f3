"""``edge-agent demo``: the whole appliance on embedded defaults (DESIGN §4).

No hardware and no configuration: a simulated station (devices on real pseudo-terminals), a private
broker and hub on loopback when mosquitto is installed (edge_agent.demo_hub), a fresh
temporary state dir unless ``--state-dir`` names one (reused as it is, like a gateway after a
restart), live lines per reading and alert, and a summary whose last line is one JSON object.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import shutil
import sys
import tempfile
from pathlib import Path

from device_drivers.records import utcnow
from device_drivers.registry import FORMATS
from edge_agent.agent import Agent, install_signal_handlers
from edge_agent.config import AgentConfig, DashboardConfig, DeviceConfig, GatewayConfig, SchedulerConfig, SyncConfig
from edge_agent.console import ConsoleView
from edge_agent.dashboard.auth import hash_pin, write_pin_hash
from edge_agent.dashboard.part import VisitPreset
from edge_agent.demo_hub import DemoHub, find_mosquitto
from edge_agent.errors import EXIT_FAILURE, EXIT_OPERATOR, OperatorActionRequired
from edge_agent.events import EventHub
from edge_agent.scoring.demo_people import DEMO_PEOPLE, demo_devices

# The demo station: which simulated device plays which scenario. Entries whose format has no
# parser in this build are skipped, so the demo always runs.
DEMO_DEVICES: tuple[DeviceConfig, ...] = (
    DeviceConfig(id="oximeter-1", format="masimo-ascii", transport="simulated", scenario="desaturation"),
    DeviceConfig(id="oximeter-2", format="nonin-format2", transport="simulated", scenario="tachycardia"),
    DeviceConfig(id="monitor-1", format="hl7v2", transport="simulated", scenario="fever"),
    DeviceConfig(id="bp-cuff", format="ble-blood-pressure", transport="ble", address="replay:bp_cuff.json", speed=4.0),
    DeviceConfig(
        id="thermometer", format="ble-temperature", transport="ble", address="replay:thermometer.json", speed=4.0
    ),
    DeviceConfig(id="scale", format="ble-weight", transport="ble", address="replay:scale.json", speed=4.0),
    *demo_devices(),  # a child's and a pregnant woman's monitors (PEWS + WHO IMCI; pregnancy BP)
)

# The simulated patients: a visit each, opened at start (station codes, never real identifiers).
# Entered values make some scores complete; the others show as partial with what is missing.
DEMO_VISITS: tuple[VisitPreset, ...] = (
    VisitPreset(
        "local",
        "DEMO-001",
        ("oximeter-1", "bp-cuff", "thermometer"),
        observations={"resp_rate": 18, "consciousness": "A", "on_oxygen": False},
    ),
    VisitPreset("local", "DEMO-002", ("oximeter-2",)),
    VisitPreset("local", "DEMO-003", ("monitor-1",), observations={"consciousness": "A", "on_oxygen": False}),
    *(
        VisitPreset(
            "local",
            p.code,
            (p.device.id,),
            age_band=p.context.age_band,
            pregnant=p.context.pregnant,
            observations=p.observations,
        )
        for p in DEMO_PEOPLE
    ),
)

DEMO_GATEWAY = "demo-gw-01"
# At a clean end the demo waits this long at most for the hub to acknowledge what is pending.
DEMO_FINAL_SYNC_S = 30.0


def demo_config(
    state_dir: Path, sync: SyncConfig | None = None, dashboard: DashboardConfig | None = None
) -> AgentConfig:
    return AgentConfig(
        version=1,
        gateway=GatewayConfig(id=DEMO_GATEWAY, province="demo", state_dir=state_dir, station_name="Demo station"),
        devices=tuple(d for d in DEMO_DEVICES if d.format in FORMATS),
        scheduler=SchedulerConfig(status_interval_s=5.0, retention_interval_s=600.0),
        sync=sync,
        dashboard=dashboard,
    )


def _start_hub(state_dir: Path) -> tuple[DemoHub | None, SyncConfig | None, str]:
    """A private broker and hub when mosquitto is installed; else offline, and the reason."""
    mosquitto = find_mosquitto()
    if mosquitto is None:
        return None, None, "offline — no `mosquitto` on PATH (apt-get install mosquitto); readings stay pending"
    hub = DemoHub(state_dir, DEMO_GATEWAY, now=utcnow(), mosquitto=mosquitto)
    try:
        hub.start()
    except (OSError, RuntimeError) as exc:
        return None, None, f"offline — the private broker did not start ({exc}); readings stay pending"
    creds = hub.credentials()
    sync = SyncConfig(
        broker=hub.url,
        ca=creds.ca,
        cert=creds.gateway_cert,
        key=creds.gateway_key,
        hub_keys=creds.hub_public,
        batch_max=100,
        batch_max_age_s=1.0,
        heartbeat_s=10.0,
    )
    return hub, sync, f"private broker {hub.url} (TLS) and hub worker; hub store {hub.store_dir}"


def run_demo(*, seconds: float | None, state_dir: Path | None, port: int) -> int:
    fresh = state_dir is None
    sd = Path(tempfile.mkdtemp(prefix="station-edge-demo-")) if state_dir is None else state_dir
    hub, sync, hub_line = _start_hub(sd)
    pin = f"{secrets.randbelow(10**6):06d}"  # a fresh demo PIN each run, printed below
    dashboard = DashboardConfig(port=port, pin_file=sd / "dashboard-pin")
    write_pin_hash(sd / "dashboard-pin", hash_pin(pin))
    config = demo_config(sd, sync, dashboard)
    events = EventHub()
    events.subscribe(ConsoleView(tz=config.gateway.tz))
    agent = Agent(config, events=events, final_sync_s=DEMO_FINAL_SYNC_S)
    if agent.dashboard is not None:
        devices = {d.id for d in config.devices}
        agent.dashboard.presets = [v for v in DEMO_VISITS if any(d in devices for d in v.device_ids)]
    print("station-edge demo — trạm y tế mô phỏng / simulated health station", flush=True)
    print(f"  state dir : {sd}{' (fresh, removed at exit)' if fresh else ' (reused)'}")
    print(f"  devices   : {', '.join(f'{d.id} ({d.format}, {d.scenario})' for d in config.devices)}")
    print(f"  hub       : {hub_line}")
    print(f"  dashboard : http://127.0.0.1:{port}/  PIN {pin}  (any name; a visit per simulated patient)")
    if fresh:
        print(f"  status    : {sd / 'status.json'} while the demo runs (removed at exit; keep it with --state-dir DIR)")
    else:
        print(f"  status    : {sd / 'status.json'} (kept after exit)")
    print(f"  stop      : {'after ' + str(seconds) + ' s' if seconds else 'Ctrl-C'}", flush=True)

    async def main() -> dict[str, int]:
        stop = asyncio.Event()
        install_signal_handlers(stop)
        if seconds is not None:
            asyncio.get_running_loop().call_later(seconds, stop.set)
        summary = await agent.run(stop)
        return summary.as_dict()

    try:
        summary = asyncio.run(main())
    except OperatorActionRequired as exc:
        print(f"edge-agent demo: cannot start: {exc}", file=sys.stderr)
        return EXIT_OPERATOR
    except Exception as exc:
        print(f"edge-agent demo: failed: {exc!r}", file=sys.stderr)
        return EXIT_FAILURE
    finally:
        if hub is not None:
            hub.stop()
        if fresh:
            shutil.rmtree(sd, ignore_errors=True)
    print("--- tóm tắt / summary ---")
    print(
        f"readings stored: {summary['readings_stored']}, alerts: {summary['alerts']}, "
        f"synced: {summary['synced']}, pending: {summary['pending']}, dropped: {summary['dropped']}"
    )
    print(json.dumps(summary), flush=True)
    return 0
