"""``edge-hub web`` and ``edge-hub web-user``: the implementations (hub/cli.py registers the
options and dispatches here)."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import logging
import signal
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from hub.errors import EXIT_OK, EXIT_OPERATOR, EXIT_USAGE, OperatorActionRequired
from hub.fleet import Thresholds

if TYPE_CHECKING:
    from hub.web.server import FleetWeb

log = logging.getLogger("hub.web")

DEFAULT_ACCOUNTS = Path("/etc/station-edge-hub/web-operators")
DEFAULT_LISTEN = "127.0.0.1:8090"
DEFAULT_TIMEZONE = "Asia/Ho_Chi_Minh"


def _usage(message: str) -> int:
    print(f"edge-hub: {message}", file=sys.stderr)
    return EXIT_USAGE


def run_web(args: argparse.Namespace, thresholds: Thresholds) -> int:
    from hub.metrics import parse_listen
    from hub.store import open_store
    from hub.web.server import FleetWeb, WebSettings

    try:
        host, port = parse_listen(args.listen)
    except ValueError:
        return _usage(f"--listen {args.listen!r}: give PORT or HOST:PORT")
    try:
        ZoneInfo(args.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        return _usage(f"--timezone {args.timezone!r}: not an IANA timezone (e.g. Asia/Ho_Chi_Minh)")
    if not (args.refresh > 0 and args.sample_every > 0 and args.session_ttl > 0):
        return _usage("--refresh, --sample-every and --session-ttl must be > 0")
    if not args.retention_days * 86400 > args.sample_every:
        return _usage("--retention-days must be longer than --sample-every")
    settings = WebSettings(
        accounts=args.accounts,
        thresholds=thresholds,
        timezone=args.timezone,
        session_ttl_s=args.session_ttl,
        refresh_s=args.refresh,
        sample_every_s=args.sample_every,
        retention_s=args.retention_days * 86400.0,
    )
    if not args.accounts.exists():
        log.warning(
            "event=fleet_web_no_accounts path=%s fix=%r", args.accounts, "edge-hub web-user NAME --password-stdin"
        )
    store = open_store(args.store, create=False)
    try:
        fleet = FleetWeb(store, settings, lambda: datetime.now(UTC))
        asyncio.run(_serve(fleet, host, port))
    finally:
        store.close()
    return EXIT_OK


async def _serve(fleet: FleetWeb, host: str, port: int) -> None:
    from webui import httpd as web

    runner = web.AppRunner(fleet.app)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        raise OperatorActionRequired(f"cannot listen on {host}:{port}: {exc}", "check --listen") from exc
    log.info("event=fleet_web_listening host=%s port=%d store=%s", host, port, fleet.store.location)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        log.info("event=fleet_web_stopping logins=%d failed_logins=%d", fleet.logins, fleet.failed_logins)
        await runner.cleanup()


def run_web_user(args: argparse.Namespace) -> int:
    from hub.web.accounts import AccountError, AccountsFileError, check_name, set_password

    try:
        check_name(args.name)
    except AccountError as exc:
        return _usage(str(exc))
    if args.password_stdin:
        line = sys.stdin.readline()
        password = line[:-1] if line.endswith("\n") else line
        password = password.removesuffix("\r")
    elif sys.stdin.isatty():
        password = getpass.getpass("password: ")
        if getpass.getpass("again: ") != password:
            return _usage("the two passwords differ")
    else:
        return _usage("no terminal: give the password on stdin with --password-stdin")
    try:
        new = set_password(args.accounts, args.name, password)
    except AccountError as exc:
        return _usage(str(exc))
    except AccountsFileError as exc:
        print(f"edge-hub: {exc}", file=sys.stderr)
        return EXIT_OPERATOR
    print(f"operator {args.name} {'added' if new else 'password changed'} in {args.accounts}")
    return EXIT_OK


WEB_HELP = """\
Serve the fleet web page for operators: the fleet table by urgency (as `edge-hub fleet`), the
summary line, a province filter, the hub's alerts (a gateway silent longer than --stale-after,
a backlog older than --backlog-age, a certificate within --cert-days of expiry, each with since
when), a plot of gateways online and readings pending over the last 24 hours, and the recent
remote commands with their results; live, without reloads. Vietnamese first, English on a
switch; times in --timezone. Operators log in with the accounts of --accounts (edge-hub
web-user). JSON for scripts: GET /api/fleet and /api/alerts (after login). Run one per province
whatever the number of `serve` workers; every web process also samples the fleet every
--sample-every seconds into the store (several are harmless) for the plot.
"""

WEB_USER_HELP = """\
Add an operator of the fleet page, or set a new password (an scrypt hash in the --accounts file,
mode 0600, written atomically; the running page uses it at the next login). With
--password-stdin the password is the first line of stdin (for scripts); otherwise it is asked
twice on the terminal. At least 10 characters.
"""


def register_parser(sub: Any) -> None:
    """``edge-hub web`` and ``edge-hub web-user`` on the hub's sub-parsers (hub/cli.py)."""
    from hub.cli import add_threshold_options

    web = sub.add_parser(
        "web",
        help="serve the fleet web page for operators (table, alerts, history plot, commands)",
        description=WEB_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    web.add_argument("--store", required=True, metavar="DIR|URL", help="hub state directory or postgresql:// URL")
    web.add_argument(
        "--listen",
        default=DEFAULT_LISTEN,
        metavar="[HOST:]PORT",
        help=f"where to serve the page (HOST 127.0.0.1 when left out; default {DEFAULT_LISTEN})",
    )
    web.add_argument(
        "--accounts",
        type=Path,
        default=DEFAULT_ACCOUNTS,
        metavar="FILE",
        help=f"operator accounts written by edge-hub web-user (default {DEFAULT_ACCOUNTS})",
    )
    web.add_argument(
        "--timezone",
        default=DEFAULT_TIMEZONE,
        metavar="TZ",
        help=f"IANA timezone every time on the page is shown in (default {DEFAULT_TIMEZONE})",
    )
    web.add_argument("--refresh", type=float, default=10.0, metavar="S", help="the page refreshes every S seconds (10)")
    web.add_argument(
        "--sample-every",
        type=float,
        default=60.0,
        metavar="S",
        help="sample the fleet for the plot every S seconds (60)",
    )
    web.add_argument("--retention-days", type=float, default=14.0, metavar="D", help="keep fleet samples D days (14)")
    web.add_argument(
        "--session-ttl", type=float, default=28800.0, metavar="S", help="a login lasts S seconds (28800: 8 h)"
    )
    add_threshold_options(web)

    user = sub.add_parser(
        "web-user",
        help="add an operator of the fleet page or set a password",
        description=WEB_USER_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    user.add_argument("name", metavar="NAME", help="the operator's login name")
    user.add_argument(
        "--password-stdin", action="store_true", help="read the password from the first line of stdin (for scripts)"
    )
    user.add_argument(
        "--accounts",
        type=Path,
        default=DEFAULT_ACCOUNTS,
        metavar="FILE",
        help=f"the accounts file (default {DEFAULT_ACCOUNTS})",
    )


def run(args: argparse.Namespace) -> int:
    """Dispatch ``web`` / ``web-user`` (from hub/cli.py)."""
    if args.command == "web-user":
        return run_web_user(args)
    from hub.cli import thresholds_of

    try:
        thresholds = thresholds_of(args)
    except ValueError as exc:
        return _usage(str(exc))
    return run_web(args, thresholds)
