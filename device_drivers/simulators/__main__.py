"""Run one device simulator in the foreground: ``python -m device_drivers.simulators FORMAT``."""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import tempfile
import threading
from pathlib import Path

from device_drivers.simulators import FRAME_SOURCES, SCENARIOS, create_simulator


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m device_drivers.simulators",
        description="Simulate a serial vital-sign device on a pseudo-terminal. Point the agent "
        "(or `edge-agent decode`, or a terminal program) at the printed port path.",
    )
    ap.add_argument("format", choices=sorted(FRAME_SOURCES), help="device format to speak")
    ap.add_argument("--scenario", choices=SCENARIOS, default="normal", help="patient script (default: normal)")
    ap.add_argument("--link", type=Path, help="stable symlink to create for the port (default: a temp path)")
    ap.add_argument("--speed", type=float, default=1.0, help="time compression; 2 = twice the real pace")
    args = ap.parse_args(argv)
    link = args.link or Path(tempfile.mkdtemp(prefix="sim-")) / "tty"
    sim = create_simulator(args.format, link=link, scenario=args.scenario, speed=args.speed).start()
    print(f"{args.format} ({args.scenario}) on {link} -> {sim.slave_path}; Ctrl-C to stop", flush=True)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    with contextlib.suppress(KeyboardInterrupt):
        done.wait()
    sim.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
