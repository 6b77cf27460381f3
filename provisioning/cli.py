"""``edge-provision``: the province's CA and broker (hub administrator) and a gateway's identity
(field technician). Details: docs/provisioning.md.

The console script is ``edge_agent.provision_cli:main``: it hands :func:`run` the wall clock and
the agent's side (its config loader, model verification, pid file; provisioning.gateway), since
provisioning itself imports nothing of ours and never reads the clock (DESIGN §2).

Exit codes (edge_agent/errors.py): 0 ok; 1 an I/O failure worth retrying; 2 usage (bad
arguments, a bad id); 78 an operator must act (a refused bundle, a key readable by others, a
failed check, pending data on decommission). Failures print one line, ``edge-provision: …;
fix: …``, on stderr.
"""

from __future__ import annotations

import argparse
import os
import pwd
import sys
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path

from provisioning.errors import EXIT_FAILURE, EXIT_OK, EXIT_OPERATOR, EXIT_USAGE, ProvisioningError, Refused
from provisioning.gateway import ConfigProblem, GatewaySide

DEFAULT_CONFIG = Path("/etc/station-edge/agent.toml")
DEFAULT_CA_DIR = Path("/var/lib/station-edge-ca")
USAGE_REASONS = frozenset({"bad_id", "bad_station", "bad_broker", "bad_hub_user", "no_hosts", "naive_time"})


class _Context:
    """The clock and the agent's side, for the verbs (set by :func:`run`)."""

    clock: Callable[[], datetime]
    gateway: GatewaySide


CTX = _Context()


def _now() -> datetime:
    return CTX.clock()


def _fail(message: str, code: int = EXIT_OPERATOR) -> int:
    print(f"edge-provision: {' '.join(message.split())}", file=sys.stderr)
    return code


# -- hub administrator ------------------------------------------------------------------------


def cmd_ca_init(args: argparse.Namespace) -> int:
    from provisioning.bundle import fingerprint
    from provisioning.ca import init_ca

    ca = init_ca(
        args.dir,
        province=args.province,
        broker=args.broker,
        name=args.name or f"{args.province} CA",
        now=_now(),
        days=args.days,
    )
    print(f"CA for province {ca.province} in {ca.root}")
    print(f"  CA fingerprint (SHA-256): {fingerprint(ca.ca.cert)}")
    print(f"  hub keys: {ca.hub_keys_dir}  model-signing key: {ca.model_key_path} (keep offline)")
    print("  give the fingerprint to the technicians: `edge-provision apply --ca-fingerprint` checks it")
    return EXIT_OK


def cmd_sign(args: argparse.Namespace) -> int:
    from provisioning._files import PUBLIC_MODE, write_atomic
    from provisioning.ca import open_ca, sign_csr

    data = sys.stdin.buffer.read() if str(args.csr) == "-" else args.csr.read_bytes()
    record, bundle = sign_csr(
        args.ca_dir,
        data,
        province=args.province,
        station=args.station,
        now=_now(),
        days=args.days,
        broker=args.broker,
        replace_key=args.replace,
    )
    out = args.out or Path(f"{record.gateway_id}.bundle.json")
    write_atomic(out, bundle, mode=PUBLIC_MODE)
    from provisioning.bundle import fingerprint

    print(f"issued {record.gateway_id} serial {record.serial:x} valid until {record.not_after:%Y-%m-%d}")
    print(f"  bundle: {out}  (carry it to the gateway: edge-provision apply {out.name})")
    print(f"  CA fingerprint: {fingerprint(open_ca(args.ca_dir).ca.cert)}")
    return EXIT_OK


def cmd_revoke(args: argparse.Namespace) -> int:
    from provisioning.ca import read_renewal_ledger, revoke

    renewals = () if args.renewals is None else read_renewal_ledger(args.renewals)
    done = revoke(args.ca_dir, args.gateway, now=_now(), renewals=renewals)
    for c in done:
        print(f"revoked {c.gateway_id} serial {c.serial:x}")
    if not done:
        print(f"{args.gateway}: nothing left to revoke")
    print(f"CRL updated: {args.ca_dir / 'crl.pem'}; copy it to the broker (broker-config) and restart Mosquitto")
    return EXIT_OK


def cmd_crl(args: argparse.Namespace) -> int:
    from provisioning.ca import write_crl

    path = write_crl(args.ca_dir, now=_now(), days=args.days)
    print(f"CRL reissued: {path}")
    return EXIT_OK


def cmd_broker_config(args: argparse.Namespace) -> int:
    from provisioning.ca import broker_config

    files = broker_config(
        args.ca_dir,
        args.out,
        hosts=tuple(args.host),
        hub_users=tuple(args.hub_user or ["hub-1"]),
        now=_now(),
        port=args.port,
        bind=args.bind,
        persistence_dir=args.persistence,
        run_as_user=args.run_as,
    )
    print(f"mosquitto config: {files.conf}")
    print(f"  ACL {files.acl}, CA {files.ca}, CRL {files.crl}, server certificate {files.cert}")
    for user, (key, cert) in files.hub_identities.items():
        print(f"  hub worker {user}: --cert {cert} --key {key}")
    print(f"  run: mosquitto -c {files.conf}  (the key files must be readable by the mosquitto user)")
    return EXIT_OK


# -- technician on the gateway ----------------------------------------------------------------


def _owner(name: str | None) -> tuple[int, int] | None:
    """Whom the key belongs to: ``--owner``, else the service user when run as root and it exists."""
    if name is None:
        if os.geteuid() != 0:
            return None
        name = "station-edge"
        try:
            pw = pwd.getpwnam(name)
        except KeyError:
            return None
        return pw.pw_uid, pw.pw_gid
    try:
        pw = pwd.getpwnam(name)
    except KeyError:
        raise ProvisioningError("bad_id", f"--owner {name!r}: no such user") from None
    return pw.pw_uid, pw.pw_gid


def cmd_enroll(args: argparse.Namespace) -> int:
    from provisioning.enroll import csr_qr, enroll

    done = enroll(
        province=args.province,
        station=args.station,
        key_path=args.key,
        csr_path=args.csr,
        gateway_id=args.gateway_id,
        owner=_owner(args.owner),
        new_key=args.new_key,
    )
    print(f"gateway {done.gateway_id}: key {'created' if done.key_created else 'kept'} at {done.key_path} (0600)")
    print(f"CSR written to {done.csr_path}; carry it to the hub administrator (file, or the QR code below):")
    if not args.no_qr:
        print(csr_qr(done.csr_pem), end="")
    print(done.csr_pem.decode("ascii"), end="")
    return EXIT_OK


def cmd_apply(args: argparse.Namespace) -> int:
    from provisioning.apply import apply_bundle

    try:
        data = args.bundle.read_bytes()
    except OSError as exc:
        return _fail(f"cannot read {args.bundle}: {exc.strerror}", EXIT_USAGE)
    done = apply_bundle(
        data,
        config_path=args.config,
        key_path=args.key,
        now=_now(),
        load_config=CTX.gateway.load_config,
        ca_fingerprint=args.ca_fingerprint,
    )
    print(f"applied: gateway {done.gateway_id}, province {done.province}; config {done.config_path}")
    print(f"  certificate valid until {done.not_after:%Y-%m-%d}; credentials in {done.directory}")
    print(f"  CA fingerprint {done.ca_fingerprint}")
    if args.ca_fingerprint is None:
        print("  compare it with the one the hub administrator gave (or pass --ca-fingerprint next time)")
    print(f"next: edge-provision check --config {done.config_path} --skip service")
    return EXIT_OK


def cmd_check(args: argparse.Namespace) -> int:
    from provisioning.check import CHECKS, gather, report_json, run_checks

    unknown = sorted(set(args.skip) - set(CHECKS))
    if unknown:
        return _fail(f"--skip: unknown item(s) {', '.join(unknown)} (items: {', '.join(CHECKS)})", EXIT_USAGE)
    probe = gather(args.config, now=_now(), gateway=CTX.gateway, skip=frozenset(args.skip), timeout=args.timeout)
    items = run_checks(probe)
    if args.json:
        print(report_json(items, probe))
    else:
        for item in items:
            print(item.line())
    failed = [i.name for i in items if i.status == "fail"]
    if failed and not args.json:
        print(f"{len(failed)} failed: {', '.join(failed)}", file=sys.stderr)
    return EXIT_OPERATOR if failed else EXIT_OK


def cmd_decommission(args: argparse.Namespace) -> int:
    from provisioning.decommission import decommission

    try:
        cfg = CTX.gateway.load_config(args.config)
    except ConfigProblem as exc:
        return _fail(f"cannot decommission: {exc}; fix: give the gateway's --config", EXIT_USAGE)
    state = cfg.state_dir
    if not args.yes:
        if not sys.stdin.isatty():
            return _fail("decommission destroys this gateway's keys for good; pass --yes to confirm", EXIT_USAGE)
        answer = input(f"Destroy the keys of gateway {cfg.gateway_id}? Type its id to confirm: ")
        if answer.strip() != cfg.gateway_id:
            return _fail("not confirmed; nothing was changed", EXIT_USAGE)
    done = decommission(
        key_path=cfg.sync.key if cfg.sync else state / "no-gateway-key",
        keystore=cfg.keystore,
        db=cfg.db_path,
        pid_alive=CTX.gateway.agent_running(state),
        force=args.force,
    )
    for path in done.destroyed:
        print(f"destroyed {path}")
    for path in done.removed:
        print(f"removed {path}")
    if done.pending_lost.any:
        print(f"lost (--force): {done.pending_lost.readings} readings, {done.pending_lost.alerts} alerts unsynced")
    print(f"gateway {cfg.gateway_id} decommissioned; on the hub: edge-provision revoke {cfg.gateway_id}")
    return EXIT_OK


# -- parser -----------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edge-provision",
        description="The province's CA and broker (hub administrator); a gateway's identity (technician). "
        "Details: docs/provisioning.md.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    ca = sub.add_parser("ca", help="the provincial CA (ca init)")
    ca_sub = ca.add_subparsers(dest="ca_command", metavar="ACTION")
    init = ca_sub.add_parser("init", help="create the CA, the hub keys and the model-signing key")
    init.add_argument("--dir", type=Path, default=DEFAULT_CA_DIR, help=f"CA directory (default {DEFAULT_CA_DIR})")
    init.add_argument("--province", required=True, help="province id (topic level se/v1/{province}/)")
    init.add_argument("--broker", required=True, help="mqtts://host[:port] the gateways connect to")
    init.add_argument("--name", help="the CA certificate's CN (default '<province> CA')")
    init.add_argument("--days", type=int, default=3650, help="CA validity (default 3650)")
    init.set_defaults(func=cmd_ca_init)

    def ca_dir(p: argparse.ArgumentParser) -> None:
        p.add_argument("--ca-dir", type=Path, default=DEFAULT_CA_DIR, help=f"CA directory (default {DEFAULT_CA_DIR})")

    sign = sub.add_parser("sign", help="issue a gateway certificate for a CSR and write its enrollment bundle")
    sign.add_argument("csr", type=Path, metavar="CSR", help="the gateway's CSR (PEM, DER or base64; - for stdin)")
    ca_dir(sign)
    sign.add_argument("--province", required=True)
    sign.add_argument("--station", required=True, help="station name, as given to enroll")
    sign.add_argument("--out", type=Path, help="bundle file (default <gateway>.bundle.json)")
    sign.add_argument("--days", type=int, default=825, help="certificate validity (default 825)")
    sign.add_argument("--broker", help="broker address in the bundle (default: the CA's)")
    sign.add_argument("--replace", action="store_true", help="the gateway has a new key: revoke its old certificates")
    sign.set_defaults(func=cmd_sign)

    rev = sub.add_parser("revoke", help="revoke a gateway's certificates and update the CRL")
    rev.add_argument("gateway", metavar="GATEWAY")
    ca_dir(rev)
    rev.add_argument(
        "--renewals",
        type=Path,
        metavar="LEDGER",
        help="the hub's renewal ledger (edge-hub serve --renewal-ledger): revoke the renewed certificates too",
    )
    rev.set_defaults(func=cmd_revoke)

    crl = sub.add_parser("crl", help="reissue the CRL (before it expires: the broker then refuses everyone)")
    ca_dir(crl)
    crl.add_argument("--days", type=int, help="CRL validity (default 30)")
    crl.set_defaults(func=cmd_crl)

    bc = sub.add_parser("broker-config", help="write the Mosquitto config, ACL, CRL and broker/hub certificates")
    ca_dir(bc)
    bc.add_argument("--out", type=Path, required=True, help="directory for the broker's files")
    bc.add_argument("--host", action="append", required=True, help="DNS name or IP the gateways use (repeat)")
    bc.add_argument("--port", type=int, default=8883)
    bc.add_argument("--bind", default="0.0.0.0", help="listen address (default 0.0.0.0)")
    bc.add_argument("--hub-user", action="append", help="hub worker identity hub-<name> (repeat; default hub-1)")
    bc.add_argument("--persistence", type=Path, help="Mosquitto persistence directory")
    bc.add_argument("--run-as", help="user Mosquitto switches to when started as root")
    bc.set_defaults(func=cmd_broker_config)

    en = sub.add_parser("enroll", help="on the gateway: create its key and a CSR (also shown as a QR code)")
    en.add_argument("--province", required=True)
    en.add_argument("--station", required=True, help="station name (one line, at most 64 characters)")
    en.add_argument("--gateway-id", help="gateway id (default gw-<12 hex of the key's hash>)")
    en.add_argument("--key", type=Path, default=Path("/etc/station-edge/gateway.key.pem"))
    en.add_argument("--csr", type=Path, default=Path("/etc/station-edge/gateway.csr.pem"))
    en.add_argument("--owner", help="user owning the key (default: station-edge when run as root)")
    en.add_argument("--new-key", action="store_true", help="replace an existing key (the old certificate is useless)")
    en.add_argument("--no-qr", action="store_true", help="do not print the QR code")
    en.set_defaults(func=cmd_enroll)

    ap = sub.add_parser("apply", help="on the gateway: verify the enrollment bundle and install it")
    ap.add_argument("bundle", type=Path, metavar="BUNDLE")
    ap.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help=f"agent config (default {DEFAULT_CONFIG})")
    ap.add_argument("--key", type=Path, default=Path("/etc/station-edge/gateway.key.pem"))
    ap.add_argument("--ca-fingerprint", help="SHA-256 fingerprint of the province CA, as the administrator gave it")
    ap.set_defaults(func=cmd_apply)

    ck = sub.add_parser("check", help="preflight: one line per item with a fix; exit 78 on any failure")
    ck.add_argument("--config", type=Path, default=DEFAULT_CONFIG)
    ck.add_argument("--json", action="store_true", help="one JSON object: ok, items[]")
    ck.add_argument("--skip", action="append", default=[], help="skip an item (repeat), e.g. --skip service")
    ck.add_argument("--timeout", type=float, default=5.0, help="broker connect timeout, seconds")
    ck.set_defaults(func=cmd_check)

    dc = sub.add_parser("decommission", help="destroy the gateway's key and data keys (buffer unreadable)")
    dc.add_argument("--config", type=Path, default=DEFAULT_CONFIG)
    dc.add_argument("--force", action="store_true", help="even with readings or alerts not yet synced")
    dc.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    dc.set_defaults(func=cmd_decommission)
    return parser


def run(argv: Sequence[str] | None, *, clock: Callable[[], datetime], gateway: GatewaySide) -> int:
    """The whole command line; ``clock`` gives the time (UTC), ``gateway`` the agent's side."""
    CTX.clock, CTX.gateway = clock, gateway
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return EXIT_USAGE
    try:
        code: int = func(args)
        return code
    except Refused as exc:
        return _fail(f"{args.command} refused: {exc}")
    except ProvisioningError as exc:
        code = EXIT_USAGE if exc.reason in USAGE_REASONS else EXIT_OPERATOR
        return _fail(f"{args.command} failed: {exc}", code)
    except OSError as exc:
        return _fail(f"{args.command} failed: {exc.filename or ''}: {exc.strerror or exc}", EXIT_FAILURE)
    except ValueError as exc:
        return _fail(f"{args.command}: {exc}", EXIT_USAGE)
