"""``edge-agent demo``: the whole appliance on embedded defaults (DESIGN §4).

No hardware and no configuration: a simulated station (devices on real pseudo-terminals), a fresh
temporary state dir unless ``--state-dir`` names one (reused as it is, like a gateway after a
restart), live lines per reading and alert, and a summary whose last line is one JSON object.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import sys
import tempfile
from pathlib import Path

from device_drivers.registry import FORMATS
from edge_agent.agent import Agent, install_signal_handlers
from edge_agent.config import AgentConfig, DeviceConfig, GatewayConfig, SchedulerConfig
from edge_agent.console import ConsoleView
from edge_agent.errors import EXIT_FAILURE, EXIT_OPERATOR, OperatorActionRequired
from edge_agent.events import EventHub

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
)


def demo_config(state_dir: Path) -> AgentConfig:
    return AgentConfig(
        version=1,
        gateway=GatewayConfig(id="demo-gw-01", province="demo", state_dir=state_dir, station_name="Demo station"),
        devices=tuple(d for d in DEMO_DEVICES if d.format in FORMATS),
        scheduler=SchedulerConfig(status_interval_s=5.0, retention_interval_s=600.0),
    )


def run_demo(*, seconds: float | None, state_dir: Path | None, port: int) -> int:
    fresh = state_dir is None
    sd = Path(tempfile.mkdtemp(prefix="station-edge-demo-")) if state_dir is None else state_dir
    config = demo_config(sd)
    events = EventHub()
    events.subscribe(ConsoleView(tz=config.gateway.tz))
    agent = Agent(config, events=events)
    print("station-edge demo — trạm y tế mô phỏng / simulated health station", flush=True)
    print(f"  state dir : {sd}{' (fresh, removed at exit)' if fresh else ' (reused)'}")
    print(f"  devices   : {', '.join(f'{d.id} ({d.format}, {d.scenario})' for d in config.devices)}")
    print("  hub       : offline mode — the hub side is not part of this build yet; readings stay pending")
    print(f"  dashboard : not yet part of this build (will be http://127.0.0.1:{port}/)")
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
        if fresh:
            shutil.rmtree(sd, ignore_errors=True)
    print("--- tóm tắt / summary ---")
    print(
        f"readings stored: {summary['readings_stored']}, alerts: {summary['alerts']}, "
        f"synced: {summary['synced']}, pending: {summary['pending']}, dropped: {summary['dropped']}"
    )
    print(json.dumps(summary), flush=True)
    return 0
