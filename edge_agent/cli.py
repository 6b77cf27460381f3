"""``edge-agent``: the gateway's command line (DESIGN §4).

Exit codes (edge_agent.errors): 0 ok, 1 runtime failure worth retrying, 2 usage or input error
(bad arguments, bad config), 78 an operator must act (unusable state dir, bad keystore). systemd
restarts on 1 and not on 2 or 78 (``RestartPreventExitStatus=2 78``).
"""

from __future__ import annotations

import argparse
import asyncio
import binascii
import json
import logging
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from device_drivers.base import DriverError
from device_drivers.registry import FORMATS, create_parser
from edge_agent import __version__
from edge_agent.config import ConfigError, load_config
from edge_agent.errors import EXIT_FAILURE, EXIT_OK, EXIT_OPERATOR, EXIT_USAGE, OperatorActionRequired


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper()),
        format="%(asctime)s level=%(levelname)s logger=%(name)s %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("apscheduler").setLevel(max(logging.WARNING, logging.getLogger().level))


# -- decode -----------------------------------------------------------------------------------
def cmd_decode(args: argparse.Namespace) -> int:
    if args.list:
        for name in sorted(FORMATS):
            print(f"{name}\t{FORMATS[name].kind}\t{FORMATS[name].description}" if args.long else name)
        return EXIT_OK
    if not args.format:
        print("edge-agent decode: name a FORMAT (see `edge-agent decode --list`)", file=sys.stderr)
        return EXIT_USAGE
    try:
        parser = create_parser(args.format)
    except DriverError as exc:
        print(f"edge-agent decode: {exc}", file=sys.stderr)
        return EXIT_USAGE
    chunks: list[bytes] = []
    if args.hex:
        for text in args.hex:
            cleaned = text.replace(" ", "").replace(":", "").replace("-", "")
            try:
                chunks.append(binascii.unhexlify(cleaned))
            except (binascii.Error, ValueError):
                print(f"edge-agent decode: {text!r} is not hex (expected pairs of 0-9a-f)", file=sys.stderr)
                return EXIT_USAGE
    else:
        chunks.append(sys.stdin.buffer.read())
    count = 0
    for chunk in chunks:
        for m in parser.feed(chunk):
            print(json.dumps(m.to_json(), ensure_ascii=False), flush=True)
            count += 1
    rejected = dict(parser.stats.rejected)
    if count == 0:
        reason = parser.stats.last_error or "no complete reading in the input"
        detail = f" (rejected: {json.dumps(rejected)})" if rejected else ""
        print(f"edge-agent decode: {args.format}: nothing decoded: {reason}{detail}", file=sys.stderr)
        return EXIT_USAGE
    if rejected:
        print(f"edge-agent decode: {args.format}: also rejected {json.dumps(rejected)}", file=sys.stderr)
    return EXIT_OK


# -- run --------------------------------------------------------------------------------------
def cmd_run(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"edge-agent: config error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    _setup_logging(args.log_level)
    from edge_agent.agent import Agent, install_signal_handlers

    restart: list[str] = []

    async def main() -> None:
        stop = asyncio.Event()
        install_signal_handlers(stop)
        agent = Agent(config)
        await agent.run(stop)
        if agent.restart_reason is not None:
            restart.append(agent.restart_reason)

    logger = logging.getLogger("edge_agent")
    try:
        asyncio.run(main())
    except OperatorActionRequired as exc:
        # Restarting cannot help: one line saying what to fix, and an exit code systemd does not restart.
        logger.error("event=agent_failed action=operator_must_act exit=%d error=%r", EXIT_OPERATOR, str(exc))
        print(f"edge-agent: cannot start: {exc}", file=sys.stderr)
        return EXIT_OPERATOR
    except Exception as exc:
        logger.exception("event=agent_failed action=retry exit=%d error=%r", EXIT_FAILURE, exc)
        return EXIT_FAILURE
    if restart:  # e.g. a remote set-config: systemd (Restart=on-failure) starts us on the new config
        logger.warning("event=agent_restart reason=%s exit=%d", restart[0], EXIT_FAILURE)
        return EXIT_FAILURE
    return EXIT_OK


# -- status -----------------------------------------------------------------------------------
STATUS_READ_TRIES = 3  # status.json may be caught mid-rewrite when it is overwritten in place (disk full)


def _load_status(path: Path) -> dict[str, object]:
    from edge_agent.state_files import read_status

    for attempt in range(STATUS_READ_TRIES):
        try:
            return read_status(path)
        except (ValueError, UnicodeDecodeError):
            if attempt == STATUS_READ_TRIES - 1:
                raise
            time.sleep(0.2)
    raise AssertionError("unreachable")


def cmd_status(args: argparse.Namespace) -> int:
    from edge_agent.agent import PID_FILE, STATUS_FILE
    from edge_agent.state_files import PidFileError, process_alive, read_pid

    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"edge-agent: config error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    path = config.state_dir / STATUS_FILE
    try:
        status = _load_status(path)
    except FileNotFoundError:
        print(f"edge-agent status: no status yet in {config.state_dir} (has the agent run?)", file=sys.stderr)
        return EXIT_FAILURE
    except (ValueError, UnicodeDecodeError):
        print(
            f"edge-agent status: {path} is empty or garbled (the agent may be mid-write or the disk full); "
            "try again in a few seconds",
            file=sys.stderr,
        )
        return EXIT_FAILURE
    except OSError as exc:
        print(f"edge-agent status: cannot read {path}: {exc.strerror}", file=sys.stderr)
        return EXIT_FAILURE
    pid_problem = ""
    try:
        pid = read_pid(config.state_dir / PID_FILE)
    except PidFileError as exc:
        pid, pid_problem = None, str(exc)
    except OSError as exc:
        pid, pid_problem = None, f"cannot read pid file: {exc.strerror}"
    running = pid is not None and process_alive(pid)
    status["running"] = running
    if pid_problem:
        status["pid_file_problem"] = pid_problem
    age = _status_age(status.get("written_at"))
    status["age_s"] = age
    if args.json:
        print(json.dumps(status, indent=2))
        return EXIT_OK
    try:
        _print_status(status, running, age)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        print(f"edge-agent status: {path} is incomplete ({type(exc).__name__}: {exc}); see --json", file=sys.stderr)
        return EXIT_FAILURE
    if pid_problem:
        print(f"WARNING: {pid_problem}; remove it if no agent is running")
    return EXIT_OK


def _status_age(written_at: object) -> float | None:
    try:
        written = datetime.fromisoformat(str(written_at))
    except ValueError:
        return None
    if written.tzinfo is None:
        return None
    return round((datetime.now(UTC) - written).total_seconds(), 1)


def _print_status(status: dict[str, Any], running: bool, age: float | None) -> None:
    store = status.get("store", {})
    print(
        f"gateway {status['gateway_id']} ({status['province']})  agent {'running' if running else 'NOT running'}, "
        f"status written {'?' if age is None else age} s ago"
    )
    if store.get("disk_full"):
        print("DISK FULL: new readings are being dropped (counted below); free space on the state dir's filesystem")
    print(
        f"backlog: {status['backlog']['pending']} readings pending sync, oldest "
        f"{_age(status['backlog']['oldest_pending_age_s'])}"
    )
    if status["backlog"].get("dead_letter"):
        print(
            f"WARNING: {status['backlog']['dead_letter']} buffered readings failed to decrypt (tampered or "
            "damaged) and will not be sent; see docs/storage.md"
        )
    _print_sync(status.get("sync", {}))
    dash = status.get("dashboard")
    if dash:
        print(
            f"dashboard: {dash.get('url')} "
            + (
                f"{dash.get('clients', 0)} pages open, {dash.get('open_visits', 0)} open visits"
                if dash.get("listening")
                else f"NOT listening ({dash.get('error') or 'stopped'})"
            )
        )
    print(
        f"disk: {store.get('bytes_on_disk', 0) / 1e6:.1f} MB buffer"
        + ("  DISK FULL" if store.get("disk_full") else "")
        + (f"  dropped {store.get('dropped')}" if store.get("dropped") else "")
    )
    if store.get("quarantined"):
        print(
            f"WARNING: the buffer failed its integrity check and was moved to {store['quarantined']}; "
            "a fresh buffer is in use. Recover what you can from the old file, then remove it."
        )
    scoring = status.get("scoring", {})
    state = "available" if scoring.get("available") else f"UNAVAILABLE ({scoring.get('error') or 'unknown'})"
    print(
        f"scoring: {state}; safety net {scoring.get('safety_net', '-')}; open alerts {scoring.get('open_alerts', 0)}"
        + (" — DEVELOPMENT signing key trusted" if scoring.get("dev_key_trusted") else "")
    )
    for model in scoring.get("models", []):
        print(f"model {model['id']:<14} v{model['version']:<8} sha256 {model['sha256']}  {model['origin']}")
    for rejected in scoring.get("rejected", []):
        print(f"model REJECTED: {rejected}")
    for dev in status.get("devices", []):
        print(
            f"device {dev['id']:<14} {dev['format']:<20} {dev['state']:<12} {dev['measurements']} readings"
            + (f"  ({dev['detail']})" if dev.get("detail") else "")
        )


def _print_sync(sync: dict[str, Any]) -> None:
    """The sync section: state and since when, last ack, batches in flight (the backlog and its
    oldest age are on the line above)."""
    if not sync.get("configured"):
        print("sync: offline (no [sync] in the config; readings stay pending)")
        return
    state = sync.get("state", "?")
    print(
        f"sync: {state} since {_when(sync.get('since'))} to {sync.get('broker', '?')}; "
        f"last ack {_when(sync.get('last_ack_at'))}; {sync.get('batches_in_flight', 0)} batches in flight; "
        f"{sync.get('synced', 0)} readings synced this run"
    )
    for line in _certificate_lines(sync.get("certificate") or {}):
        print(line)
    if state == "auth_refused":
        print(
            f"SYNC REFUSED: {sync.get('last_error') or 'unknown reason'}; an operator must act (gateway "
            "certificate or key, hub keys, CA, or the broker's ACL; see docs/config.md [sync])"
        )
    elif state != "connected" and sync.get("last_error"):
        print(f"sync: last error: {sync['last_error']}")
    if sync.get("rejected_batches"):
        print(
            f"WARNING: the hub rejected {sync['rejected_batches']} batches; their readings stay pending "
            "(see the agent's log, event=sync_batch_rejected)"
        )


def _certificate_lines(cert: dict[str, Any]) -> list[str]:
    """``sync.certificate`` of status.json (expiry, days left, the renewal's last attempt and
    result) as status lines, with a warning when it has expired or is due and the last renewal
    failed. Nothing when the status has no certificate section."""
    if not cert:
        return []
    days = cert.get("days_left")
    days_text = "?" if days is None else f"{float(days):g}"
    lines = [f"certificate: expires {cert.get('not_after') or '?'} ({days_text} days left)"]
    ren = cert.get("renewal")
    if not isinstance(ren, dict):
        return lines
    before = ren.get("before_days")
    result = ren.get("last_result")
    reason = f" ({ren['last_reason']})" if ren.get("last_reason") else ""
    if before == 0:
        lines.append("certificate renewal: off (sync.renew_before_days = 0)")
    else:
        lines.append(
            f"certificate renewal: {before} days before expiry; last attempt {_when(ren.get('last_attempt_at'))}"
            + (f": {result}{reason}" if result else "")
            + f"; last renewed {_when(ren.get('renewed_at'))}; {ren.get('renewals', 0)} renewals in "
            f"{ren.get('attempts', 0)} attempts"
        )
    if days is not None and float(days) <= 0:
        lines.append(
            "CERTIFICATE EXPIRED: the hub will refuse this gateway; renew it by hand (docs/provisioning.md, "
            '"Certificate renewal")'
        )
    elif days is not None and before and float(days) <= float(before) and result in ("refused", "failed"):
        lines.append(
            f"WARNING: the certificate expires in {days_text} days and the last renewal {result}{reason}; "
            "see the agent's log (event=renewal_failed)"
        )
    return lines


def _when(iso: object) -> str:
    """An ISO time as 'TIME (N s ago)', or 'never'."""
    if not iso:
        return "never"
    try:
        then = datetime.fromisoformat(str(iso))
    except ValueError:
        return str(iso)
    if then.tzinfo is None:
        return str(iso)
    ago = (datetime.now(UTC) - then).total_seconds()
    return f"{then.isoformat(timespec='seconds')} ({_age(max(0.0, ago))} ago)"


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds:.0f} s"


# -- set-pin ----------------------------------------------------------------------------------
def cmd_set_pin(args: argparse.Namespace) -> int:
    """Store the dashboard PIN's scrypt hash (asked twice on a terminal; else one line of stdin)."""
    import getpass

    from edge_agent.dashboard.auth import PinError, check_new_pin, hash_pin, write_pin_hash

    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"edge-agent: config error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if sys.stdin.isatty():
        pin = getpass.getpass("New dashboard PIN (at least 6 characters): ")
        if getpass.getpass("Again: ") != pin:
            print("edge-agent set-pin: the two PINs differ; nothing changed", file=sys.stderr)
            return EXIT_USAGE
    else:
        pin = sys.stdin.readline().rstrip("\r\n")
    try:
        check_new_pin(pin)
    except PinError as exc:
        print(f"edge-agent set-pin: {exc}; nothing changed", file=sys.stderr)
        return EXIT_USAGE
    path = config.pin_path
    try:
        write_pin_hash(path, hash_pin(pin))
    except OSError as exc:
        print(f"edge-agent set-pin: cannot write {path}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_FAILURE
    print(f"dashboard PIN set ({path}); sessions already open stay valid until they expire")
    return EXIT_OK


# -- demo -------------------------------------------------------------------------------------
def cmd_demo(args: argparse.Namespace) -> int:
    from edge_agent.demo import run_demo

    if args.seconds is not None and not (0 < args.seconds < float("inf")):
        print(f"edge-agent demo: --seconds must be a positive number, got {args.seconds:g}", file=sys.stderr)
        return EXIT_USAGE
    _setup_logging("WARNING")
    return run_demo(seconds=args.seconds, state_dir=args.state_dir, port=args.port)


# -- parser -----------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="edge-agent",
        description="station-edge gateway agent: reads vital-sign devices, scores risk locally, "
        "buffers encrypted while offline and syncs to the provincial hub.",
        epilog="Start with `edge-agent demo` (no hardware, no config). "
        "Exit codes: 0 ok, 1 runtime failure (systemd retries), 2 usage or config error, "
        "78 an operator must act (state dir, keystore); systemd does not restart on 2 or 78.",
    )
    ap.add_argument("--version", action="version", version=f"edge-agent {__version__}")
    sub = ap.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser(
        "demo",
        help="run the whole appliance on simulated devices (no hardware)",
        description="Run the whole appliance on embedded defaults: simulated devices over real "
        "pseudo-terminals, a fresh state dir, live lines per reading and alert, and a JSON "
        "summary as the last line.",
    )
    p.add_argument("--seconds", type=float, default=None, help="stop cleanly after N seconds (default: until Ctrl-C)")
    p.add_argument(
        "--state-dir",
        type=Path,
        default=None,
        help="reuse this state dir as it is, like a gateway after a restart (default: a fresh temp dir)",
    )
    p.add_argument("--port", type=int, default=8080, help="dashboard port on 127.0.0.1 (default 8080)")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser(
        "run",
        help="run the daemon (systemd starts this)",
        description="Run the gateway daemon with a TOML config until SIGTERM/SIGINT.",
    )
    p.add_argument("--config", type=Path, required=True, help="path to the TOML config (see docs/config.md)")
    p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    p.set_defaults(func=cmd_run)

    p = sub.add_parser(
        "status",
        help="devices, backlog, last sync, models, disk use",
        description="Show the running agent's last status snapshot.",
    )
    p.add_argument("--config", type=Path, required=True, help="path to the TOML config")
    p.add_argument("--json", action="store_true", help="print one JSON object (for scripts)")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser(
        "set-pin",
        help="set the dashboard's station PIN (stored as an scrypt hash)",
        description="Set the PIN nurses type to open the dashboard. On a terminal it is asked twice; "
        "otherwise the first line of stdin is the PIN. Only its scrypt hash is stored, in "
        "[dashboard].pin_file (default <state_dir>/dashboard-pin, mode 0600).",
    )
    p.add_argument("--config", type=Path, required=True, help="path to the TOML config")
    p.set_defaults(func=cmd_set_pin)

    p = sub.add_parser(
        "decode",
        help="decode device bytes with a named parser",
        description="Parse bytes with a named format parser and print one JSON object per reading. "
        "Each HEX argument is one chunk (for BLE formats: one characteristic value). With no HEX, "
        "raw bytes are read from stdin.",
        epilog="Example: edge-agent decode ble-blood-pressure '00 78 00 50 00 5D 00'",
    )
    p.add_argument("format", nargs="?", help="format name (see --list)")
    p.add_argument("hex", nargs="*", help="hex bytes; spaces and colons allowed")
    p.add_argument("--list", action="store_true", help="print the format names")
    p.add_argument("--long", action="store_true", help="with --list: also the kind and a description")
    p.set_defaults(func=cmd_decode)
    return ap


def main(argv: list[str] | None = None) -> int:
    ap = build_parser()
    args = ap.parse_args(argv)
    if not getattr(args, "func", None):
        ap.print_help()
        return EXIT_USAGE
    try:
        result: int = args.func(args)
    except BrokenPipeError:
        # `edge-agent decode ... | head`: the reader left; that is not an error of ours. Point stdout
        # at /dev/null so the interpreter's final flush does not raise again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_OK
    return result


if __name__ == "__main__":
    sys.exit(main())
