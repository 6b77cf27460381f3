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

    fleet = sub.add_parser("fleet", help="list the gateways the hub has heard from (the fleet registry)")
    fleet.add_argument("--store", required=True, metavar="DIR|URL", help="hub state directory or postgresql:// URL")
    fleet.add_argument("--json", action="store_true", help="one JSON object per gateway")
    return parser


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
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        log.info("event=signal signal=%s", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        ingestor = Ingestor(store, hub_keys, ca_certs)
        worker = HubWorker(settings, ingestor, renewal=renewal)
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
        store.close()
    if args.json:
        extra = {} if renewal is None else renewal.metrics()
        print(json.dumps({"worker": worker_id, **ingestor.metrics.to_json(), **worker.metrics.to_json(), **extra}))
    return EXIT_OK


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
    from hub.store import open_store

    with open_store(args.store, create=False) as store:
        gateways = store.gateways()
    for g in gateways:
        if args.json:
            doc = {
                "gateway_id": g.gateway_id,
                "province": g.province,
                "online": g.online,
                "last_seen": g.last_seen.isoformat(),
                "status": g.status,
            }
            print(json.dumps(doc, ensure_ascii=False))
        else:
            state = "online" if g.online else "offline"
            print(f"{g.gateway_id}\t{g.province or '-'}\t{state}\tlast seen {g.last_seen.isoformat()}")
    if not gateways and not args.json:
        print("no gateway has reported yet", file=sys.stderr)
    return EXIT_OK


if __name__ == "__main__":  # python -m hub.cli (the demo starts the hub this way)
    sys.exit(main())
