"""Station benchmark (issue 14): the whole agent, ``edge-agent run``, with simulated serial devices
on real pseudo-terminals, each simulator in its own process.

    .venv/bin/python benchmarks/bench_station.py [--quick] [--seconds S] [--device-seconds S]
        [--commit-ms MS] [--fsync-ms MS] [--status-s S] [--calm] [--no-sync] [--no-dashboard]
        [--skip-devices] [--skip-station] [--dir DIR] [--no-unit-env]

About seven minutes by default (nine agent runs of 20 s, the station run of 60 s, each with its
start-up and warm-up); ``--quick`` for a smoke run.

What it measures, always from ``/proc/<pid>`` of the agent process (never wall-clock percentages:
the machine may be shared, and CPU *time* is what a Raspberry Pi pays for):

1. **CPU per device**: one agent run per serial format with one device, the agent's CPU time
   (its threads' ``schedstat`` run time in ns; before issue 14's last step utime + stime from
   ``/proc/<pid>/stat``, whose 10 ms ticks are 0.05 % of a 20 s window) over the window, minus an
   idle agent's (no devices) measured in the same run, as % of one core. Baseline in the same run: a bare pyserial loop
   (``port.read(port.in_waiting or 1)``, discarding the bytes) reading a second instance of the
   same simulator. Goal: <= 0.3 % of one core per high-rate device (Nonin, Contec). The agent's
   default configuration (status snapshot every 30 s). Then the marginal cost of one more
   high-rate device at a station: four devices (one of each format), then without the Nonin,
   then without the Contec (the commit and the scoring pass each second are shared).
2. **Bytes written per stored reading** at the demo's load (its three serial devices: Masimo
   desaturation, Nonin tachycardia, HL7 fever; with a private broker and hub, as in the demo, when
   mosquitto is installed; status every 5 s, as the demo; the nurse's dashboard served, with no
   browser attached, unless ``--no-dashboard``; the agent's other defaults, sync's too): the
   agent's kernel ``write_bytes`` (``/proc/<pid>/io``) over the window divided by the readings
   committed in it (counted in the database). Goal: <= 800 B.
   The agent's log goes to a pipe (as to journald), so log lines cost no ``write_bytes``; their
   count is printed. Where the bytes go (``benchmarks/wal_frames.py``): the WAL frames the window
   appended, per reading and by what wrote them (readings, page 1, alerts, leases and acks, the
   deferred indexes). The kernel counts ``write_bytes`` when a 4 KiB page turns dirty, so the rest
   is pages dirtied again after they were written back: the WAL's last page after each fsync and
   ``status.json`` after each writeback, and the database's pages at a checkpoint (the ``-shm``
   wal-index is in the agent's memory: store/connection.py).
3. **RSS**: the agent's resident set (``VmRSS``), sampled every second in the station run and
   printed every ``--seconds / 10``; the peak (``VmHWM``) and the growth after warm-up; at the end,
   where it is (``/proc/<pid>/smaps``: heap, other anonymous memory, file-backed pages of the
   shared libraries, the largest of them, and the thread count).
   Goal: <= 100 MiB peak, flat after warm-up.

The state dir is on the disk that holds the repository (not tmpfs), so ``write_bytes`` is real.
The agent runs with the ``Environment=`` lines of ``systemd/station-edge.service`` (as systemd runs
it: ``MALLOC_ARENA_MAX=2``); ``--no-unit-env`` runs it without them.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import wal_frames  # noqa: E402  (benchmarks/wal_frames.py, beside this file)

from tests.fixtures.units import AGENT_UNIT, unit_environment  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")
HIGH_RATE = ("nonin-format2", "contec-cms50")
PER_DEVICE = ("nonin-format2", "contec-cms50", "masimo-ascii", "hl7v2")
# The demo's serial devices (edge_agent/demo.py DEMO_DEVICES), each simulator in its own process.
STATION = (
    ("oximeter-1", "masimo-ascii", "desaturation"),
    ("oximeter-2", "nonin-format2", "tachycardia"),
    ("monitor-1", "hl7v2", "fever"),
)
GATEWAY = "bench-gw-01"

BARE_LOOP = """
import sys, serial
port = serial.serial_for_url(sys.argv[1], baudrate=int(sys.argv[2]), timeout=0.5)
while True:
    port.read(port.in_waiting or 1)
"""


@dataclass(frozen=True, slots=True)
class Sample:
    t: float
    cpu_s: float
    write_bytes: int
    rss_kib: int
    hwm_kib: int


def cpu_time_s(pid: int) -> float:
    """The process's CPU time: the sum of its threads' time on a CPU from ``schedstat`` (in ns:
    the figures here are tenths of a percent, and ``utime + stime`` counts 10 ms ticks, 0.05 % of a
    20 s window), else ``utime + stime`` from ``/proc/<pid>/stat``. The agent's threads live as long
    as it does, so the threads' sum is the process's (a thread that ended would drop out of it)."""
    total = 0
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(FileNotFoundError), open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[0])
        return total / 1e9
    except (OSError, ValueError, IndexError):
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime (fields 14 and 15)


def sample(pid: int) -> Sample:
    cpu = cpu_time_s(pid)
    wb = 0
    with contextlib.suppress(OSError), open(f"/proc/{pid}/io") as f:
        for line in f:
            if line.startswith("write_bytes:"):
                wb = int(line.split()[1])
    rss = hwm = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
            elif line.startswith("VmHWM:"):
                hwm = int(line.split()[1])
    return Sample(time.monotonic(), cpu, wb, rss, hwm)


@dataclass(frozen=True, slots=True)
class RssBreakdown:
    """Where the resident set is, from ``/proc/<pid>/smaps`` (KiB): anonymous memory (the brk heap;
    all the other anonymous pages: malloc arenas, Python's object arenas, thread stacks, the
    libraries' relocated data) and file-backed pages (clean pages of the mapped files, mostly
    the shared libraries' code, counted in VmRSS too)."""

    heap_kib: int
    other_anon_kib: int
    file_kib: int
    files: tuple[tuple[str, int], ...]  # the files with the most resident pages (file name, KiB)
    threads: int


def rss_breakdown(pid: int, top: int = 6) -> RssBreakdown:
    heap = anon = 0
    files: collections.Counter[str] = collections.Counter()
    name = ""
    rss = 0
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            parts = line.split()
            if not parts[0].endswith(":"):  # a mapping's header: range perms offset dev inode [path]
                name = parts[5] if len(parts) > 5 else ""
            elif parts[0] == "Rss:":
                rss = int(parts[1])
            elif parts[0] == "Anonymous:":  # after Rss: in each mapping's entry
                kib = int(parts[1])
                if name == "[heap]":
                    heap += kib
                else:
                    anon += kib
                if name.startswith("/"):
                    files[name.rsplit("/", 1)[-1]] += rss - kib
    threads = len(os.listdir(f"/proc/{pid}/task"))
    return RssBreakdown(heap, anon, sum(files.values()), tuple(files.most_common(top)), threads)


def start_simulator(fmt: str, link: Path, scenario: str = "normal") -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "device_drivers.simulators", fmt, "--link", str(link), "--scenario", scenario],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 15
    while not link.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"simulator {fmt} did not start")
        time.sleep(0.05)
    return proc


def stop(proc: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def baudrate(fmt: str) -> int:
    from device_drivers.registry import get_format

    spec = get_format(fmt).serial
    assert spec is not None
    return spec.baudrate


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def toml_str(p: object) -> str:
    return json.dumps(str(p))


def write_config(
    d: Path,
    devices: list[tuple[str, str, Path]],
    sync: dict[str, object] | None,
    commit_ms: float | None = None,
    status_s: float | None = None,
    fsync_ms: float | None = None,
    dashboard_port: int | None = None,
) -> Path:
    lines = [
        "version = 1",
        "[gateway]",
        f'id = "{GATEWAY}"',
        'province = "bench"',
        f"state_dir = {toml_str(d / 'state')}",
    ]
    if status_s is not None:  # the demo writes status every 5 s; the agent's default is 30 s
        lines += ["[scheduler]", f"status_interval_s = {status_s}"]
    if dashboard_port is not None:  # the nurse's page, as at a station (no browser attached)
        lines += ["[dashboard]", 'host = "127.0.0.1"', f"port = {dashboard_port}"]
    if commit_ms is not None or fsync_ms is not None:
        lines.append("[store]")
    if commit_ms is not None:
        lines.append(f"group_commit_ms = {commit_ms}")
    if fsync_ms is not None:
        lines.append(f"fsync_window_ms = {fsync_ms}")
    if sync is not None:
        lines.append("[sync]")
        lines += [f"{k} = {toml_str(v) if isinstance(v, str | Path) else v}" for k, v in sync.items()]
    for dev_id, fmt, link in devices:
        lines += [
            "[[devices]]",
            f'id = "{dev_id}"',
            f'format = "{fmt}"',
            'transport = "serial"',
            f"port = {toml_str(link)}",
        ]
    d.mkdir(parents=True, exist_ok=True)
    cfg = d / "agent.toml"
    cfg.write_text("\n".join(lines) + "\n")
    return cfg


@dataclass(slots=True)
class AgentRun:
    proc: subprocess.Popen[bytes]
    db: Path
    lines: list[tuple[float, str]] = field(default_factory=list)
    ready: threading.Event = field(default_factory=threading.Event)

    def _pump(self) -> None:
        assert self.proc.stderr is not None
        for raw in self.proc.stderr:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            self.lines.append((time.monotonic(), line))
            if "event=agent_ready" in line:
                self.ready.set()


UNIT_ENV: dict[str, str] = {}  # set by main(): the unit's Environment= lines, unless --no-unit-env


def start_agent(d: Path, cfg: Path) -> AgentRun:
    exe = ROOT / ".venv" / "bin" / "edge-agent"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "edge_agent.cli"]
    env = {**os.environ, **UNIT_ENV}
    proc = subprocess.Popen([*cmd, "run", "--config", str(cfg)], cwd=ROOT, stderr=subprocess.PIPE, env=env)
    run = AgentRun(proc, d / "state" / "buffer.sqlite3")
    threading.Thread(target=run._pump, daemon=True).start()
    if not run.ready.wait(120):
        stop(proc)
        raise RuntimeError("the agent did not get ready:\n" + "\n".join(line for _, line in run.lines[-20:]))
    return run


def stored_readings(db: Path) -> int:
    """Readings committed in ``db`` now, counted in a copy of it and its WAL: the agent holds its
    buffer locked (SQLite's ``unix-excl`` VFS, store/connection.py), and a copy's torn last frame
    is simply not replayed."""
    if not db.exists():
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "copy.sqlite3"
        shutil.copyfile(db, copy)
        with contextlib.suppress(FileNotFoundError):
            shutil.copyfile(db.parent / (db.name + "-wal"), Path(tmp) / "copy.sqlite3-wal")
        conn = sqlite3.connect(copy)
        try:
            return int(conn.execute("SELECT count(*) FROM readings").fetchone()[0])
        finally:
            conn.close()


def cpu_rate(a: Sample, b: Sample) -> float:
    """% of one core over the window."""
    return 100.0 * (b.cpu_s - a.cpu_s) / (b.t - a.t)


def measure(
    d: Path,
    devices: list[tuple[str, str, Path]],
    seconds: float,
    *,
    warmup: float,
    sync: dict[str, object] | None = None,
    bare: tuple[Path, int] | None = None,
    commit_ms: float | None = None,
    status_s: float | None = None,
    fsync_ms: float | None = None,
    dashboard: bool = False,
) -> dict[str, object]:
    cfg = write_config(d, devices, sync, commit_ms, status_s, fsync_ms, free_port() if dashboard else None)
    run = start_agent(d, cfg)
    base: subprocess.Popen[bytes] | None = None
    try:
        if bare is not None:
            base = subprocess.Popen([sys.executable, "-c", BARE_LOOP, str(bare[0]), str(bare[1])], cwd=ROOT)
        time.sleep(warmup)
        s0 = sample(run.proc.pid)
        b0 = sample(base.pid) if base is not None else None
        n0 = stored_readings(run.db)
        wal0 = wal_frames.mark(run.db)
        line0 = len(run.lines)
        curve: list[Sample] = [s0]
        end = s0.t + seconds
        while (now := time.monotonic()) < end:
            time.sleep(min(1.0, end - now))
            curve.append(sample(run.proc.pid))
        s1 = curve[-1]
        b1 = sample(base.pid) if base is not None else None
        n1 = stored_readings(run.db)
        wal = wal_frames.window(run.db, wal0)
        window_lines = [line for _, line in run.lines[line0:]]
        breakdown = rss_breakdown(run.proc.pid)
    finally:
        if base is not None:
            stop(base)
        stop(run.proc, 60)
    readings = n1 - n0
    out: dict[str, object] = {
        "seconds": s1.t - s0.t,
        "cpu_pct": cpu_rate(s0, s1),
        "readings": readings,
        "readings_per_s": readings / (s1.t - s0.t),
        "write_bytes": s1.write_bytes - s0.write_bytes,
        "write_bytes_per_reading": (s1.write_bytes - s0.write_bytes) / readings if readings else float("nan"),
        "rss_start_mib": s0.rss_kib / 1024,
        "rss_end_mib": s1.rss_kib / 1024,
        "peak_rss_mib": max(s.hwm_kib for s in curve) / 1024,
        "log_lines": len(window_lines),
        "log_events": collections.Counter(
            m.group(1) for line in window_lines if (m := re.search(r"event=(\S+)", line))
        ),
        "curve": curve,
        "exit": run.proc.returncode,
        "breakdown": breakdown,
        "wal": wal,
    }
    if b0 is not None and b1 is not None:
        out["bare_cpu_pct"] = cpu_rate(b0, b1)
    return out


def sync_section(d: Path) -> tuple[object | None, dict[str, object] | None, str]:
    from edge_agent.demo_hub import DemoHub, find_mosquitto

    mosquitto = find_mosquitto()
    if mosquitto is None:
        return None, None, "no mosquitto: offline"
    hub = DemoHub(d, GATEWAY, now=datetime.now(UTC), mosquitto=mosquitto)
    try:
        hub.start()
    except (OSError, RuntimeError) as exc:
        return None, None, f"broker did not start ({exc}): offline"
    creds = hub.credentials()
    section: dict[str, object] = {
        "broker": hub.url,
        "ca": creds.ca,
        "cert": creds.gateway_cert,
        "key": creds.gateway_key,
        "hub_keys": creds.hub_public,
    }
    return hub, section, f"private broker {hub.url} + edge-hub serve (sync defaults)"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="short runs (a smoke test of the benchmark)")
    ap.add_argument("--seconds", type=float, default=60.0, help="station run (demo load) window")
    ap.add_argument("--device-seconds", type=float, default=20.0, help="window of each one-device run")
    ap.add_argument("--warmup", type=float, default=8.0, help="seconds after agent_ready before measuring")
    ap.add_argument("--no-sync", action="store_true", help="station run without the private broker and hub")
    ap.add_argument(
        "--no-dashboard", action="store_true", help="station run without the nurse's dashboard (default: with it)"
    )
    ap.add_argument("--commit-ms", type=float, default=None, help="store.group_commit_ms (default: the agent's)")
    ap.add_argument("--fsync-ms", type=float, default=None, help="store.fsync_window_ms (default: the agent's)")
    ap.add_argument("--skip-devices", action="store_true", help="only the station run")
    ap.add_argument("--skip-station", action="store_true", help="only the one-device runs")
    ap.add_argument("--status-s", type=float, default=5.0, help="station run: status_interval_s (the demo's: 5)")
    ap.add_argument("--calm", action="store_true", help="station run: every patient 'normal' (no alerts)")
    ap.add_argument("--dir", type=Path, default=None, help="where to put the files (default: next to the repo)")
    ap.add_argument("--no-unit-env", action="store_true", help="run the agent without the unit's Environment= lines")
    args = ap.parse_args()
    if not args.no_unit_env:
        UNIT_ENV.update(unit_environment())  # tests/fixtures/units.py: the tests start the agent so too
    if args.quick:
        args.seconds, args.device_seconds, args.warmup = 15.0, 8.0, 4.0
    base = args.dir or ROOT
    top = Path(tempfile.mkdtemp(prefix=".bench-station-", dir=base))
    sims: list[subprocess.Popen[bytes]] = []
    summary: dict[str, object] = {}
    try:
        print(f"station benchmark in {top}; agent CPU is CPU time (threads' schedstat), not wall-clock load")
        env_text = " ".join(f"{k}={v}" for k, v in UNIT_ENV.items()) or "none"
        print(f"agent environment from {AGENT_UNIT.name}: {env_text}")
        if not args.skip_devices:
            d = top / "idle"
            idle = measure(d, [], args.device_seconds, warmup=args.warmup)
            idle_cpu = float(idle["cpu_pct"])  # type: ignore[arg-type]
            print(
                f"\n1. CPU per device, {args.device_seconds:.0f} s windows "
                "(goal: <= 0.3 % of one core per high-rate device)"
            )
            print(f"   agent, no device: {idle_cpu:.3f} % of one core (subtracted below)")
            print(f"   {'format':<15} {'readings/s':>10} {'agent - idle':>13} {'bare pyserial':>14} {'ratio':>6}")
            for fmt in PER_DEVICE:
                d = top / fmt
                link, link2 = d / "sim" / "dev", d / "sim" / "bare"
                sims += [start_simulator(fmt, link), start_simulator(fmt, link2)]
                res = measure(
                    d, [("dev-1", fmt, link)], args.device_seconds, warmup=args.warmup, bare=(link2, baudrate(fmt))
                )
                for p in sims:
                    stop(p)
                sims.clear()
                net = float(res["cpu_pct"]) - idle_cpu  # type: ignore[arg-type]
                bare = float(res["bare_cpu_pct"])  # type: ignore[arg-type]
                print(
                    f"   {fmt:<15} {float(res['readings_per_s']):>10.2f} {net:>11.3f} % {bare:>12.3f} % "  # type: ignore[arg-type]
                    f"{net / bare if bare > 0 else float('inf'):>6.1f}"
                )
                summary[f"cpu_pct_{fmt}"] = round(net, 3)
                summary[f"bare_cpu_pct_{fmt}"] = round(bare, 3)
            summary["cpu_pct_idle_agent"] = round(idle_cpu, 3)

            # What one more high-rate device costs a station that already has devices (the commit
            # and the scoring pass each second are shared): all four formats, then without each.
            print("\n   marginal cost at a station (four devices, then without one of them; no sync):")
            full = set(PER_DEVICE)
            station_cpu: dict[str, float] = {}
            for leave_out in ("", *HIGH_RATE):
                fmts = [f for f in PER_DEVICE if f != leave_out]
                d = top / f"marginal-{leave_out or 'all'}"
                devs = []
                for i, fmt in enumerate(fmts):
                    link = d / "sim" / f"dev{i}"
                    sims.append(start_simulator(fmt, link))
                    devs.append((f"dev-{i}", fmt, link))
                res = measure(d, devs, args.device_seconds, warmup=args.warmup)
                for p in sims:
                    stop(p)
                sims.clear()
                station_cpu[leave_out] = float(res["cpu_pct"])  # type: ignore[arg-type]
            print(f"   {len(full)} devices: {station_cpu['']:.3f} % of one core")
            for fmt in HIGH_RATE:
                marginal = station_cpu[""] - station_cpu[fmt]
                print(f"   {fmt:<15} adds {marginal:.3f} % of one core")
                summary[f"marginal_cpu_pct_{fmt}"] = round(marginal, 3)

        if not args.skip_station:
            d = top / "station"
            devices = []
            for dev_id, fmt, scenario in STATION:
                link = d / "sim" / dev_id
                sims.append(start_simulator(fmt, link, "normal" if args.calm else scenario))
                devices.append((dev_id, fmt, link))
            hub, sync, hub_line = (None, None, "offline (--no-sync)") if args.no_sync else sync_section(d)
            try:
                st = measure(
                    d,
                    devices,
                    args.seconds,
                    warmup=args.warmup,
                    sync=sync,
                    commit_ms=args.commit_ms,
                    fsync_ms=args.fsync_ms,
                    status_s=args.status_s,
                    dashboard=not args.no_dashboard,
                )
            finally:
                if hub is not None:
                    hub.stop()  # type: ignore[attr-defined]
            print(
                f"\n2. demo load ({', '.join(f + ' ' + ('normal' if args.calm else s) for _, f, s in STATION)}), "
                f"{args.seconds:.0f} s, status every {args.status_s:g} s, "
                f"dashboard {'off' if args.no_dashboard else 'on'}; sync: {hub_line}"
            )
            print(
                f"   {st['readings']} readings stored ({float(st['readings_per_s']):.2f}/s); agent CPU "  # type: ignore[arg-type]
                f"{float(st['cpu_pct']):.3f} % of one core"  # type: ignore[arg-type]
            )
            print(
                f"   write_bytes {st['write_bytes']:,} B = "
                f"{float(st['write_bytes_per_reading']):,.0f} B per stored reading (goal: <= 800)"  # type: ignore[arg-type]
            )
            wal = st["wal"]
            assert isinstance(wal, wal_frames.WalWindow)
            n = max(1, int(st["readings"]))  # type: ignore[call-overload]
            wal_b = wal.frames * (wal.page_size + wal_frames.FRAME_HEADER)
            restarted = " (a checkpoint restarted the WAL: since then)" if wal.restarted else ""
            print(
                f"   of which WAL frames: {wal.frames} in {wal.commits} commits = {wal.frames / n:.2f} frames, "
                f"{wal_b / n:,.0f} B per reading{restarted}"
                "; the rest is pages dirtied again (the WAL's last page after each fsync, status.json)"
                " and checkpoints"
            )
            print(
                "   WAL frames by what wrote them: "
                + ", ".join(
                    f"{k} {100 * v / max(1, wal.frames):.0f} %"
                    for k, v in wal_frames.grouped(wal.by_btree).most_common()
                )
            )
            events = st["log_events"]
            assert isinstance(events, collections.Counter)
            print(f"   log lines in the window: {st['log_lines']} ({dict(events.most_common(6))})")
            curve = st["curve"]
            assert isinstance(curve, list)
            print("\n3. RSS of the agent (MiB), from warm-up on (goal: peak <= 100, flat)")
            step = max(1, len(curve) // 10)
            pts = curve[::step] + ([curve[-1]] if (len(curve) - 1) % step else [])
            print("   " + "  ".join(f"{s.t - curve[0].t:.0f}s:{s.rss_kib / 1024:.1f}" for s in pts))
            growth = (curve[-1].rss_kib - curve[0].rss_kib) / 1024
            minutes = (curve[-1].t - curve[0].t) / 60
            half = curve[len(curve) // 2]
            late = (curve[-1].rss_kib - half.rss_kib) / 1024 / max(1e-9, (curve[-1].t - half.t) / 60)
            print(
                f"   peak (VmHWM) {float(st['peak_rss_mib']):.1f} MiB; "  # type: ignore[arg-type]
                f"growth {growth:+.2f} MiB over {minutes:.1f} min; "
                f"second half {late:+.3f} MiB/min"
            )
            bd = st["breakdown"]
            assert isinstance(bd, RssBreakdown)
            print(
                f"   at the end: heap {bd.heap_kib / 1024:.1f}, other anonymous {bd.other_anon_kib / 1024:.1f}, "
                f"file-backed {bd.file_kib / 1024:.1f} MiB ({bd.threads} threads); largest files: "
                + ", ".join(f"{n} {k / 1024:.1f}" for n, k in bd.files)
            )
            summary.update(
                {
                    "station_readings_per_s": round(float(st["readings_per_s"]), 2),  # type: ignore[arg-type]
                    "station_cpu_pct": round(float(st["cpu_pct"]), 3),  # type: ignore[arg-type]
                    "write_bytes_per_reading": round(float(st["write_bytes_per_reading"])),  # type: ignore[arg-type]
                    "peak_rss_mib": round(float(st["peak_rss_mib"]), 1),  # type: ignore[arg-type]
                    "rss_growth_mib": round(growth, 2),
                    "rss_second_half_mib_per_min": round(late, 3),
                    "wal_frames_per_reading": round(wal.frames / n, 3),
                    "log_lines": st["log_lines"],
                    "sync": sync is not None,
                }
            )
        print("\n" + json.dumps(summary))
    finally:
        for p in sims:
            stop(p)
        shutil.rmtree(top, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
