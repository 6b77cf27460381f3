"""``edge-hub``: the provincial hub's command line (DESIGN §4).

Exit codes (hub/errors.py): 0 ok or a clean stop on SIGTERM/SIGINT; 1 a runtime failure worth
retrying (database or broker away); 2 a usage or input error; 78 an operator must act
(unreadable keys or certificates, unusable store, schema newer than this hub). The hub's systemd
unit lists 2 and 78 in ``RestartPreventExitStatus``.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from hub.errors import (
    EXIT_FAILURE,
    EXIT_OK,
    EXIT_OPERATOR,
    EXIT_USAGE,
    HubError,
    OperatorActionRequired,
    StoreError,
    StoreOperatorError,
)

if TYPE_CHECKING:
    from hub.fleet import Thresholds
    from hub.ingest import Ingestor
    from hub.metrics import MetricsServer
    from hub.mqtt_worker import HubWorker
    from hub.renewal import RenewalAuthority

log = logging.getLogger("hub")

DESCRIPTION = """\
The provincial hub of station-edge: receives the gateways' sealed, signed batches over MQTT 5,
stores every reading exactly once, acknowledges each batch, and exports FHIR R4.

A store is a hub state directory (SQLite inside: DIR/hub.sqlite3) or a postgresql:// URL. Run as
many `serve` workers as you like on one PostgreSQL store: they share the uplink through an MQTT 5
shared subscription and the database decides what is a duplicate.

examples:
  edge-hub serve --store /var/lib/station-edge-hub --broker mqtts://broker.example:8883 \\
      --ca /etc/station-edge-hub/ca.pem --cert /etc/station-edge-hub/hub-1.cert.pem \\
      --key /etc/station-edge-hub/hub-1.key.pem --hub-keys /etc/station-edge-hub/keys
  edge-hub export --fhir --store postgresql://hub@db/hub --since 2026-11-01T00:00:00Z > obs.ndjson
  edge-hub fleet --store /var/lib/station-edge-hub --json

exit codes: 0 ok (or a clean stop on SIGTERM); 1 runtime failure, worth retrying; 2 usage error;
78 an operator must act (unreadable keys/certificates, unusable store). See docs/hub.md.
"""

SERVE_HELP = """\
Run one ingest worker until SIGTERM or SIGINT. It subscribes $share/hub/se/v1/+/+/up and .../alert
(shared: workers split the load) and se/v1/+/+/status (the fleet registry), verifies, opens and
stores each batch, and only after the COMMIT publishes the signed Ack and acknowledges the MQTT
message. Rejected batches are counted and logged, never stored. Logs: one key=value line per event
on stderr.
"""

EXPORT_HELP = """\
Write stored readings to stdout as FHIR R4 Observations: vital signs (category vital-signs, LOINC,
UCUM), blood pressure as the 85354-9 panel, glucose as laboratory, the reading uid as identifier,
the patient as subject by identifier (CCCD / BHYT systems of the Vietnamese draft core IG, or the
station's local id). Readings without a patient are skipped and counted. Then the NEWS2 and PEWS
scores of the alerts the hub received (category survey, the alert's latest revision): a partial
score is a lower bound (valueQuantity.comparator ">=", status preliminary, the missing parameters
in a note). NDJSON by default; a transaction Bundle (conditional create on the identifier) with
--format bundle. --since also applies to the alerts' ingest time. A summary goes to stderr.
"""

FLEET_HELP = """\
The gateways the hub has heard from (their retained status heartbeats and last wills), most
urgent first: silent (offline, or stale: no heartbeat for 5 min), the longest first; data at
risk (readings pending for over an hour, or the store full), the oldest first; certificate
expiring within 14 days, the soonest first. A summary line follows the table. --json prints
a JSON list of records (see docs/hub.md for the fields).
"""
WATCH_DEFAULT_S = 5.0


def build_parser() -> argparse.ArgumentParser:
    from hub.fhir import BHYT_SYSTEM, CCCD_SYSTEM, DEFAULT_SYSTEM_BASE

    parser = argparse.ArgumentParser(
        prog="edge-hub", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"], help="default INFO"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    serve = sub.add_parser(
        "serve",
        help="run an ingest worker (MQTT 5 shared subscription -> store -> signed acks)",
        description=SERVE_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    serve.add_argument("--store", required=True, metavar="DIR|URL", help="hub state directory or postgresql:// URL")
    serve.add_argument(
        "--broker", required=True, metavar="mqtts://HOST:PORT", help="the broker (TLS only; port 8883 by default)"
    )
    serve.add_argument(
        "--ca", required=True, type=Path, metavar="CA.pem", help="CA bundle the broker's certificate is checked with"
    )
    serve.add_argument(
        "--cert", required=True, type=Path, metavar="C.pem", help="this worker's certificate (CN hub-<name>)"
    )
    serve.add_argument("--key", required=True, type=Path, metavar="K.pem", help="this worker's private key")
    serve.add_argument(
        "--hub-keys", required=True, type=Path, metavar="DIR", help="the hub's keys (sealing.key.pem, signing.key.pem)"
    )
    serve.add_argument(
        "--gateway-ca",
        type=Path,
        metavar="CA.pem",
        help="CA bundle gateway certificates inside envelopes are checked with (default: --ca)",
    )
    serve.add_argument(
        "--worker-id",
        metavar="ID",
        help="MQTT client id, which names the persistent session (default: the certificate's CN; a broker "
        "with use_identity_as_username keys sessions by CN, so give each worker its own certificate)",
    )
    serve.add_argument(
        "--session-expiry", type=int, default=3600, metavar="S", help="session expiry interval, s (3600)"
    )
    serve.add_argument(
        "--receive-maximum", type=int, default=32, metavar="N", help="unacknowledged messages the broker may send (32)"
    )
    serve.add_argument(
        "--share-group",
        default="hub",
        metavar="NAME",
        help="shared-subscription group (default hub); Mosquitto does not check subscriptions against its ACL, "
        "so a deployment may keep its own group name undisclosed",
    )
    serve.add_argument("--no-status", action="store_true", help="do not subscribe to status (no fleet registry here)")
    serve.add_argument(
        "--issuing",
        type=Path,
        metavar="DIR",
        help="the issuing CA (issuing.key.pem, issuing.cert.pem from ca init): also renew gateway certificates",
    )
    serve.add_argument(
        "--crl",
        type=Path,
        metavar="CRL.pem",
        help="with --issuing: revoked certificates are not renewed (re-read on change)",
    )
    serve.add_argument(
        "--renewal-ledger",
        type=Path,
        metavar="FILE",
        help="with --issuing: append every renewed certificate (JSON lines) for edge-provision revoke --renewals",
    )
    serve.add_argument(
        "--metrics",
        metavar="[HOST:]PORT",
        help="serve GET /metrics (Prometheus text format) on HOST:PORT (HOST 127.0.0.1 when left out); off by default",
    )
    serve.add_argument(
        "--renew-days", type=int, default=90, metavar="N", help="with --issuing: renewed certificates last N days (90)"
    )
    serve.add_argument("--json", action="store_true", help="print the final counters as one JSON object on exit")

    export = sub.add_parser(
        "export",
        help="write stored readings and NEWS2/PEWS scores as FHIR R4 Observations to stdout",
        description=EXPORT_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    export.add_argument("--fhir", action="store_true", required=True, help="FHIR R4 (the only export format)")
    export.add_argument("--store", required=True, metavar="DIR|URL", help="hub state directory or postgresql:// URL")
    export.add_argument(
        "--since",
        metavar="T",
        help="only readings (and alert revisions) the hub ingested at or after T (ISO 8601; no offset = UTC)",
    )
    export.add_argument("--format", choices=["ndjson", "bundle"], default="ndjson", help="ndjson (default) or bundle")
    export.add_argument(
        "--system-base",
        default=DEFAULT_SYSTEM_BASE,
        metavar="URI",
        help="base of this deployment's identifier systems (reading-uid, device, station, patient-id)",
    )
    export.add_argument(
        "--cccd-system", default=CCCD_SYSTEM, metavar="URI", help=f"CCCD identifier system ({CCCD_SYSTEM})"
    )
    export.add_argument(
        "--bhyt-system", default=BHYT_SYSTEM, metavar="URI", help=f"BHYT identifier system ({BHYT_SYSTEM})"
    )
    export.add_argument("--json", action="store_true", help="the summary on stderr as one JSON object")

    fleet = sub.add_parser(
        "fleet",
        help="the fleet registry, most urgent first (silent, data at risk, certificate expiring)",
        description=FLEET_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    fleet.add_argument("--store", required=True, metavar="DIR|URL", help="hub state directory or postgresql:// URL")
    fleet.add_argument("--province", metavar="P", help="only the gateways of this province (its topic segment)")
    fleet.add_argument("--json", action="store_true", help="a JSON list of gateway records (for scripts)")
    fleet.add_argument(
        "--watch",
        nargs="?",
        type=float,
        const=WATCH_DEFAULT_S,
        metavar="S",
        help=f"refresh every S seconds (default {WATCH_DEFAULT_S:g}) until Ctrl-C; with --json one list per line",
    )
    add_threshold_options(fleet)
    from hub import cmd_cli, prune, simulate

    cmd_cli.register_parser(sub)
    simulate.register_parser(sub)
    prune.register_parser(sub)
    from hub.web import cli as web_cli

    web_cli.register_parser(sub)
    return parser


def add_threshold_options(parser: argparse.ArgumentParser) -> None:
    """``--stale-after``, ``--backlog-age``, ``--cert-days`` (hub.fleet.Thresholds), for ``fleet`` and ``web``."""
    parser.add_argument(
        "--stale-after", type=float, default=300.0, metavar="S", help="online but silent over S seconds: stale (300)"
    )
    parser.add_argument(
        "--backlog-age",
        type=float,
        default=3600.0,
        metavar="S",
        help="readings pending over S seconds: data at risk (3600)",
    )
    parser.add_argument(
        "--cert-days",
        type=float,
        default=14.0,
        metavar="D",
        help="certificate with D days or fewer left: expiring (14)",
    )


def thresholds_of(args: argparse.Namespace) -> Thresholds:
    """The thresholds of :func:`add_threshold_options`; ValueError when out of range."""
    from hub.fleet import Thresholds

    if not (args.stale_after > 0 and args.backlog_age > 0 and args.cert_days >= 0):
        raise ValueError("--stale-after and --backlog-age must be > 0, --cert-days >= 0")
    return Thresholds(stale_after_s=args.stale_after, backlog_age_s=args.backlog_age, cert_days=args.cert_days)


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: 0 for --help, 2 for usage errors
        return int(exc.code or 0)
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    _setup_logging(args.log_level)
    try:
        if args.command == "serve":
            return _serve(args)
        if args.command == "export":
            return _export(args)
        if args.command == "fleet":
            return _fleet(args)
        if args.command == "cmd":
            return int(_subcommand("cmd_cli").run(args))
        if args.command in ("simulate", "prune"):
            return int(_subcommand(args.command).run(args))
        if args.command in ("web", "web-user"):
            return int(_subcommand("web.cli").run(args))
    except (OperatorActionRequired, StoreOperatorError) as exc:
        log.error("event=hub_failed action=operator_must_act exit=%d error=%r", EXIT_OPERATOR, str(exc))
        return EXIT_OPERATOR
    except (StoreError, HubError) as exc:
        log.error("event=hub_failed action=retry exit=%d error=%r", EXIT_FAILURE, str(exc))
        return EXIT_FAILURE
    except BrokenPipeError:
        return EXIT_FAILURE
    parser.print_help()
    return EXIT_USAGE


def _subcommand(name: str) -> Any:
    """The module that implements a subcommand (its ``run(args) -> int``)."""
    import importlib

    return importlib.import_module(f"hub.{name}")


def _usage(message: str) -> int:
    print(f"edge-hub: {message}", file=sys.stderr)
    return EXIT_USAGE


def _serve(args: argparse.Namespace) -> int:
    from hub.ingest import Ingestor
    from hub.mqtt_worker import HubWorker, WorkerSettings, parse_broker_url
    from hub.store import open_store
    from provisioning.errors import ProvisioningError
    from provisioning.pki import HubKeys, common_name, load_ca_certs, load_certified_key
    from wire.errors import WireError
    from wire.topics import hub_subscriptions

    try:
        host, port = parse_broker_url(args.broker)
    except ValueError as exc:
        return _usage(str(exc))
    metrics_at = None
    if args.metrics is not None:
        from hub.metrics import parse_listen

        try:
            metrics_at = parse_listen(args.metrics)
        except ValueError as exc:
            return _usage(str(exc))
    if args.session_expiry < 0 or not 1 <= args.receive_maximum <= 65535:
        return _usage("--session-expiry must be >= 0 and --receive-maximum 1..65535")
    try:
        hub_subscriptions(args.share_group)
    except WireError:
        return _usage(f"--share-group {args.share_group!r}: letters, digits, '.', '_', '-' (1..64)")
    try:
        hub_keys = HubKeys.load(args.hub_keys)
        ca_certs = load_ca_certs(args.gateway_ca or args.ca)
        identity = load_certified_key(args.key, args.cert)
    except ProvisioningError as exc:
        raise OperatorActionRequired(
            f"cannot load the hub's keys or certificates: {exc}", "check --hub-keys, --ca, --cert, --key"
        ) from exc
    if not ca_certs:
        raise OperatorActionRequired(f"no certificate in {args.gateway_ca or args.ca}", "give the CA bundle")
    renewal = None
    if args.issuing is not None:
        from hub.renewal import RenewalAuthority
        from provisioning.issuing import load_issuing

        if not 1 <= args.renew_days <= 825:
            return _usage("--renew-days must be 1..825")
        try:
            issuing = load_issuing(args.issuing)
        except ProvisioningError as exc:
            raise OperatorActionRequired(f"cannot load the issuing CA: {exc}", "check --issuing") from exc
        renewal = RenewalAuthority(
            issuing,
            hub_keys.signing,
            ca_certs,
            lambda: datetime.now(UTC),
            crl=args.crl,
            ledger=args.renewal_ledger,
            days=args.renew_days,
        )
    worker_id = args.worker_id or common_name(identity.cert)
    settings = WorkerSettings(
        host=host,
        port=port,
        ca=args.ca,
        cert=args.cert,
        key=args.key,
        client_id=worker_id,
        session_expiry_s=args.session_expiry,
        receive_maximum=args.receive_maximum,
        status=not args.no_status,
        share_group=args.share_group,
    )
    store = open_store(args.store)
    if renewal is not None:
        renewal.commands = store.command  # rotate-keys: the ledger allows a key change
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        log.info("event=signal signal=%s", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    metrics_server = None
    try:
        ingestor = Ingestor(store, hub_keys, ca_certs)
        from hub.commands import ResultRecorder

        results = ResultRecorder(
            store, hub_sealing_private=hub_keys.sealing, ca_certs=ca_certs, clock=lambda: datetime.now(UTC)
        )
        worker = HubWorker(settings, ingestor, renewal=renewal, results=results)
        if metrics_at is not None:
            metrics_server = _start_metrics(metrics_at, args.store, ingestor, worker, renewal)
        log.info(
            "event=worker_starting worker=%s store=%s backend=%s broker=%s:%d",
            worker_id,
            store.location,
            store.backend,
            host,
            port,
        )
        worker.run(stop)
    finally:
        if metrics_server is not None:
            metrics_server.close()
        store.close()
    if args.json:
        extra = {**({} if renewal is None else renewal.metrics()), **results.metrics()}
        print(json.dumps({"worker": worker_id, **ingestor.metrics.to_json(), **worker.metrics.to_json(), **extra}))
    return EXIT_OK


def _start_metrics(
    at: tuple[str, int], store_spec: str, ingestor: Ingestor, worker: HubWorker, renewal: RenewalAuthority | None
) -> MetricsServer:
    """/metrics on ``at``; the fleet gauges read the registry through a store of their own (a
    scrape never waits behind the ingest thread's transaction on the same connection)."""
    from hub.fleet import fleet_records
    from hub.metrics import HubCollector, MetricsServer
    from hub.store import open_store

    fleet_store = open_store(store_spec)
    collector = HubCollector(
        ingest=ingestor.metrics.samples,
        worker=worker.metrics.to_json,
        gauges=worker.gauges,
        fleet=lambda: fleet_records(fleet_store.gateways(), datetime.now(UTC)),
        renewal=None if renewal is None else renewal.metrics,
        lag=ingestor.metrics.lag_histograms,
    )
    try:
        server = MetricsServer(collector, *at)
    except OSError as exc:
        fleet_store.close()
        raise OperatorActionRequired(f"cannot serve /metrics on {at[0]}:{at[1]}: {exc}", "check --metrics") from exc
    log.info("event=metrics_listening host=%s port=%d", server.host, server.port)
    server.on_close = fleet_store.close
    return server


def _parse_since(text: str) -> datetime:
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def _export(args: argparse.Namespace) -> int:
    from itertools import chain

    from hub.fhir import (
        SCORE_KINDS,
        ExportStats,
        FhirSettings,
        observations,
        score_observations,
        write_bundle,
        write_ndjson,
    )
    from hub.store import open_store

    since = None
    if args.since:
        try:
            since = _parse_since(args.since)
        except ValueError:
            return _usage(f"--since {args.since!r}: not an ISO 8601 time (e.g. 2026-11-01T00:00:00Z)")
    settings = FhirSettings(cccd_system=args.cccd_system, bhyt_system=args.bhyt_system, system_base=args.system_base)
    stats = ExportStats()
    with open_store(args.store, create=False) as store:
        resources = chain(
            observations(store.iter_readings(since=since), settings, stats),
            score_observations(store.iter_alerts(since=since, kinds=SCORE_KINDS), settings, stats),
        )
        if args.format == "bundle":
            write_bundle(resources, sys.stdout, settings=settings, now=datetime.now(UTC))
        else:
            write_ndjson(resources, sys.stdout)
    sys.stdout.flush()
    summary = stats.to_json()
    if args.json:
        print(json.dumps(summary), file=sys.stderr)
    else:
        print(
            f"exported {stats.observations} observations ({stats.panels} blood-pressure panels) from "
            f"{stats.readings} readings; {stats.skipped_unassigned} readings without a patient skipped; "
            f"{stats.scores} NEWS2/PEWS scores ({stats.partial_scores} partial, as lower bounds) from "
            f"{stats.score_alerts} score alerts, {stats.scores_skipped_unassigned} without a patient skipped",
            file=sys.stderr,
        )
    return EXIT_OK


def _fleet(args: argparse.Namespace) -> int:
    import time

    from hub.fleet import fleet_json, fleet_records, render_table
    from hub.store import open_store

    if args.watch is not None and not args.watch > 0:
        return _usage("--watch S: S must be a positive number of seconds")
    try:
        thresholds = thresholds_of(args)
    except ValueError as exc:
        return _usage(str(exc))
    if args.watch is not None:
        signal.signal(signal.SIGTERM, _interrupt)
    with open_store(args.store, create=False) as store:
        try:
            while True:
                now = datetime.now(UTC)
                records = fleet_records(
                    store.gateways(province=args.province),
                    now,
                    thresholds=thresholds,
                    commands=store.last_commands(province=args.province),
                )
                if args.json:
                    print(fleet_json(records, compact=args.watch is not None), flush=True)
                else:
                    if args.watch is not None and sys.stdout.isatty():
                        print("\x1b[H\x1b[2J", end="")
                    print(render_table(records, now), flush=True)
                if args.watch is None:
                    return EXIT_OK
                time.sleep(args.watch)
        except KeyboardInterrupt:
            return EXIT_OK


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":  # python -m hub.cli (the demo starts the hub this way)
    sys.exit(main())
