"""``edge-hub cmd GATEWAY KIND ...``: send one signed remote command (hub.commands, wire.commands).

    edge-hub cmd gw-0001 set-config sync.heartbeat_s=30 scoring.news2_min_level=medium --store DIR \\
        --broker mqtts://broker:8883 --ca ca.pem --cert hub-ops.cert.pem --key hub-ops.key.pem \\
        --hub-keys keys/ --wait 60
    edge-hub cmd gw-0001 push-model news2.onnx --manifest news2.manifest.json ...
    edge-hub cmd gw-0001 diagnostics --out ./diag ...
    edge-hub cmd gw-0001 rotate-keys [--no-identity] [--no-data] ...

The command is allocated its sequence number in the store's ledger (state ``sent``), signed with
the hub's signing key, and published QoS 1 on ``se/v1/{province}/{gateway}/cmd`` (the province
comes from the fleet registry, or ``--province``). With ``--wait S`` the tool also listens on the
gateway's ``cmd/result`` itself (so it needs no ``serve`` worker running) and records the result
in the ledger exactly as the workers do; it then exits 0 only when the gateway applied it.

The broker forces the MQTT client id to the certificate's CN: give this tool a certificate of its
own (e.g. CN ``hub-ops``, a hub user in the broker's ACL), never a serving worker's, or it would
take over that worker's session.
"""

from __future__ import annotations

import argparse
import json
import logging
import queue
import sys
import time
import tomllib
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hub.errors import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, OperatorActionRequired

if TYPE_CHECKING:
    from hub.commands import CommandRecord

log = logging.getLogger("hub.cmd")

__all__ = ["parse_assignment", "register_parser", "run", "wait_timeout_message"]

CMD_HELP = """\
Send one signed command to a gateway and (with --wait) report its result: set-config KEY=VALUE...
(keys of the agent's TOML config, validated by the agent, which then restarts on the new
configuration), push-model MODEL.onnx --manifest M.json (a model with its signed manifest; the
gateway verifies the signature and keeps the model in use if the new one fails to load),
diagnostics (a bundle: status, preflight checks and recent log lines, no patient data; --out DIR
writes it to DIR), rotate-keys (a new gateway key, certified through the hub's renewal, which
accepts the key change only for this pending command, and a new buffer data key; --no-identity
or --no-data skips one). Every command has a sequence number from the store's ledger and an expiry.
Exit codes: 0 sent (with --wait: applied); 1 not applied, no result in time or broker trouble;
2 usage; 78 unreadable keys or store.
"""
CONNECT_TIMEOUT_S = 15.0


def parse_assignment(text: str) -> tuple[str, str | int | float | bool]:
    """``section.key=VALUE``: VALUE as a TOML value (``30``, ``2.5``, ``true``, ``"text"``), else
    the text itself (``medium``); ValueError without ``=``."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ValueError(f"{text!r}: expected section.key=VALUE")
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return key, raw
    if isinstance(value, bool | int | float | str):
        return key, value
    raise ValueError(f"{key}: only numbers, booleans and strings may be set")


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--store", required=True, metavar="DIR|URL", help="hub state directory or postgresql:// URL")
    parser.add_argument("--broker", required=True, metavar="mqtts://HOST:PORT", help="the broker (TLS only)")
    parser.add_argument("--ca", required=True, type=Path, metavar="CA.pem", help="CA bundle of the broker")
    parser.add_argument(
        "--cert", required=True, type=Path, metavar="C.pem", help="this tool's certificate (its own CN, a hub user)"
    )
    parser.add_argument("--key", required=True, type=Path, metavar="K.pem", help="its private key")
    parser.add_argument(
        "--hub-keys", required=True, type=Path, metavar="DIR", help="the hub's keys (signing.key.pem signs the command)"
    )
    parser.add_argument(
        "--gateway-ca", type=Path, metavar="CA.pem", help="CA bundle gateway certificates are checked with (--ca)"
    )
    parser.add_argument("--province", metavar="P", help="the gateway's province (default: from the fleet registry)")
    parser.add_argument(
        "--expires-in", type=float, default=3600.0, metavar="S", help="the gateway refuses it after S seconds (3600)"
    )
    parser.add_argument("--wait", type=float, metavar="S", help="wait up to S seconds for the gateway's result")
    parser.add_argument("--json", action="store_true", help="print the ledger record (and result data) as JSON")


def register_parser(sub: Any) -> None:
    cmd = sub.add_parser(
        "cmd",
        help="send a signed command to a gateway (set-config, push-model, diagnostics, rotate-keys)",
        description=CMD_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    cmd.add_argument("gateway", metavar="GATEWAY", help="the gateway id")
    kinds = cmd.add_subparsers(dest="kind", metavar="KIND", required=True)
    set_config = kinds.add_parser("set-config", help="set keys of the agent's configuration")
    set_config.add_argument("assignments", nargs="+", metavar="KEY=VALUE", help="e.g. sync.heartbeat_s=30")
    push = kinds.add_parser("push-model", help="push a model and its signed manifest")
    push.add_argument("model", type=Path, metavar="MODEL.onnx")
    push.add_argument("--manifest", required=True, type=Path, metavar="M.json", help="the model's signed manifest")
    diag = kinds.add_parser("diagnostics", help="ask for a diagnostics bundle")
    diag.add_argument("--out", type=Path, metavar="DIR", help="write the bundle to DIR/<gateway>-<cmd_id>.json")
    diag.add_argument("--log-lines", type=int, default=200, metavar="N", help="recent log lines to include (200)")
    rotate = kinds.add_parser("rotate-keys", help="rotate the gateway's identity key and/or its buffer data key")
    rotate.add_argument(
        "--identity",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="a new TLS/signing key with a certificate from the hub's renewal (default: yes; serve needs --issuing)",
    )
    rotate.add_argument(
        "--data",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="a new data key for the gateway's encrypted buffer (default: yes)",
    )
    for p in (set_config, push, diag, rotate):
        _common(p)


def _usage(message: str) -> int:
    print(f"edge-hub cmd: {message}", file=sys.stderr)
    return EXIT_USAGE


def _args_of(args: argparse.Namespace) -> dict[str, object] | str:
    """The command's wire args, or a usage message."""
    from wire.commands import MAX_LOG_LINES, model_args
    from wire.errors import WireError

    if args.kind == "set-config":
        values: dict[str, object] = {}
        for text in args.assignments:
            try:
                key, value = parse_assignment(text)
            except ValueError as exc:
                return str(exc)
            values[key] = value
        return {"values": values}
    if args.kind == "push-model":
        try:
            model, manifest = args.model.read_bytes(), args.manifest.read_bytes()
        except OSError as exc:
            return f"cannot read {exc.filename}: {exc.strerror}"
        try:
            json.loads(manifest)
        except ValueError as exc:
            return f"--manifest: not JSON ({exc})"
        try:
            return model_args(manifest, model)
        except WireError as exc:
            return f"cannot push this model: {exc}"
    if args.kind == "rotate-keys":
        if not (args.identity or args.data):
            return "rotate-keys: --no-identity and --no-data leave nothing to rotate"
        return {"identity": args.identity, "data": args.data}
    if not 0 <= args.log_lines <= MAX_LOG_LINES:
        return f"--log-lines must be 0..{MAX_LOG_LINES}"
    return {"log_lines": args.log_lines}


def run(args: argparse.Namespace) -> int:
    from hub.commands import ResultRecorder, issue
    from hub.mqtt_worker import parse_broker_url
    from hub.store import open_store
    from provisioning.errors import ProvisioningError
    from provisioning.pki import HubKeys, load_ca_certs
    from wire import topics as wire_topics
    from wire.errors import WireError

    try:
        host, port = parse_broker_url(args.broker)
    except ValueError as exc:
        return _usage(str(exc))
    if not 0 < args.expires_in <= 30 * 86400 or (args.wait is not None and not args.wait > 0):
        return _usage("--expires-in must be in (0, 2592000] and --wait > 0")
    wire_args = _args_of(args)
    if isinstance(wire_args, str):
        return _usage(wire_args)
    try:
        hub_keys = HubKeys.load(args.hub_keys)
        ca_certs = load_ca_certs(args.gateway_ca or args.ca)
    except ProvisioningError as exc:
        raise OperatorActionRequired(f"cannot load the hub's keys: {exc}", "check --hub-keys and --ca") from exc
    client = _Client(host, port, args.ca, args.cert, args.key)  # unreadable TLS files: 78 before anything
    with open_store(args.store, create=False) as store:
        province = args.province or next(
            (g.province for g in store.gateways() if g.gateway_id == args.gateway and g.province), None
        )
        if province is None:
            return _usage(f"gateway {args.gateway!r} is not in the fleet registry: give --province")
        try:
            wire_topics.topic(province, args.gateway, "cmd")
            issued = issue(
                store,
                hub_keys.signing,
                gateway_id=args.gateway,
                province=province,
                kind=args.kind,
                args=wire_args,
                now=datetime.now(UTC),
                expires_in_s=args.expires_in,
            )
        except WireError as exc:
            return _usage(f"cannot send this command: {exc}")
        recorder = ResultRecorder(
            store, hub_sealing_private=hub_keys.sealing, ca_certs=ca_certs, clock=lambda: datetime.now(UTC)
        )
        result_topic = wire_topics.topic(province, args.gateway, "cmd/result")
        try:
            client.connect([result_topic] if args.wait is not None else [])
            client.publish(issued.topic, issued.payload)
            log.info("event=command_sent gateway=%s kind=%s seq=%d", args.gateway, args.kind, issued.record.seq)
            record = issued.record
            if args.wait is not None:
                deadline = time.monotonic() + args.wait
                while record.state == "sent" and time.monotonic() < deadline:
                    message = client.next_message(min(0.5, max(0.0, deadline - time.monotonic())))
                    if message is not None:
                        recorder.handle(*message)
                    record = store.command(issued.record.cmd_id) or record
        except _BrokerError as exc:
            log.error("event=command_not_sent gateway=%s error=%r", args.gateway, str(exc))
            print(f"edge-hub cmd: {exc}", file=sys.stderr)
            return EXIT_FAILURE
        finally:
            client.close()
        data = store.command_data(record.cmd_id) if record.state != "sent" else None
    now = datetime.now(UTC)
    out: dict[str, Any] = record.as_dict(now)
    if data is not None:
        out["data"] = data
    if args.kind == "diagnostics" and args.out is not None and data is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        path = args.out / f"{args.gateway}-{record.cmd_id}.json"
        path.write_text(json.dumps(data, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
        out["bundle_path"] = str(path)
    if args.json:
        print(json.dumps(out, ensure_ascii=False))
    else:
        print(
            f"{record.gateway_id} {record.kind} seq={record.seq} cmd_id={record.cmd_id} state={record.state_at(now)}"
            + (f" detail={record.detail!r}" if record.detail else "")
            + (f" bundle={out['bundle_path']}" if "bundle_path" in out else "")
        )
    if args.wait is None:
        return EXIT_OK
    if record.state == "sent":
        print(f"edge-hub cmd: {wait_timeout_message(record, args.wait, now)}", file=sys.stderr)
    return EXIT_OK if record.state == "applied" else EXIT_FAILURE


def wait_timeout_message(record: CommandRecord, waited_s: float, now: datetime) -> str:
    """What ``--wait`` says when no result came: expired (the gateway will refuse it), or still
    valid (a result that comes later is recorded by the ``serve`` workers)."""
    head = f"no result from {record.gateway_id} within {waited_s:g} s"
    if record.state_at(now) == "expired":
        return f"{head}; the command expired at {record.expires_at.isoformat()} unanswered (state expired)"
    return (
        f"{head}; the command stays valid until {record.expires_at.isoformat()}: a later result is "
        "recorded by the serve workers (see edge-hub fleet)"
    )


class _BrokerError(Exception):
    pass


class _Client:
    """A one-shot MQTT 5 client (paho, TLS with this tool's certificate): connect, subscribe,
    publish QoS 1 and wait for the PUBACK, hand over received messages."""

    def __init__(self, host: str, port: int, ca: Path, cert: Path, key: Path) -> None:
        from hub.mqtt_worker import WorkerSettings, _tls_context

        self.host, self.port = host, port
        self._ctx = _tls_context(WorkerSettings(host=host, port=port, ca=ca, cert=cert, key=key, client_id="cmd"))
        self._messages: queue.Queue[tuple[str, bytes]] = queue.Queue()
        self._client: Any = None

    def connect(self, subscriptions: list[str]) -> None:
        import threading

        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

        ready = threading.Event()
        failure: list[str] = []
        c = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=MQTTProtocolVersion.MQTTv5)
        c.tls_set_context(self._ctx)

        def on_connect(client: Any, userdata: Any, flags: Any, rc: Any, props: Any) -> None:
            if rc.is_failure:
                failure.append(str(rc))
                ready.set()
            elif subscriptions:
                client.subscribe([(t, 1) for t in subscriptions])
            else:
                ready.set()

        def on_subscribe(client: Any, userdata: Any, mid: int, rcs: Any, props: Any) -> None:
            bad = [str(rc) for rc in rcs if rc.is_failure]
            if bad:
                failure.append("subscription refused: " + ", ".join(bad))
            ready.set()

        c.on_connect = on_connect
        c.on_subscribe = on_subscribe
        c.on_message = lambda client, userdata, msg: self._messages.put((msg.topic, bytes(msg.payload)))
        self._client = c
        try:
            c.connect(self.host, self.port, keepalive=30, clean_start=True)
        except OSError as exc:
            raise _BrokerError(f"cannot reach the broker {self.host}:{self.port}: {exc}") from None
        c.loop_start()
        if not ready.wait(CONNECT_TIMEOUT_S):
            raise _BrokerError("the broker did not answer in time")
        if failure:
            raise _BrokerError(f"the broker refused: {failure[0]}")

    def publish(self, topic: str, payload: bytes) -> None:
        info = self._client.publish(topic, payload, qos=1)
        try:
            info.wait_for_publish(CONNECT_TIMEOUT_S)
        except (RuntimeError, ValueError) as exc:
            raise _BrokerError(f"publish failed: {exc}") from None
        if not info.is_published():
            raise _BrokerError("no PUBACK from the broker in time")
        if info.rc != 0:
            raise _BrokerError(f"publish refused (rc {info.rc})")

    def next_message(self, timeout: float) -> tuple[str, bytes] | None:
        try:
            return self._messages.get(timeout=timeout)
        except queue.Empty:
            return None

    def close(self) -> None:
        if self._client is not None:
            self._client.disconnect()
            self._client.loop_stop()
            self._client = None
