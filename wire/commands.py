"""Signed remote commands and their results (docs/protocol.md, "Commands"). Pure, no I/O.

* Command, hub → gateway on ``se/v1/{province}/{gateway_id}/cmd``: compact JSON
  ``{"v":1,"type":"command","cmd_id","gateway_id","seq","issued_at","expires_at","kind","args"}``
  followed by the hub's Ed25519 signature (64 bytes) over ``COMMAND_CONTEXT + json``, by the key
  acks and renewal replies are signed with (a context of its own, so no signature of one kind
  ever verifies as another). ``seq`` is per gateway and strictly increasing (the hub's ledger
  allocates it); the gateway refuses a ``seq`` not above the last one it applied.
* Result, gateway → hub on ``.../cmd/result``: compact JSON
  ``{"v":1,"type":"command_result","cmd_id","gateway_id","seq","kind","state","detail","at","data"}``
  sealed to the hub and signed by the gateway in the uplink envelope (``wire.envelope``, lane
  ``results``, batch id = ``cmd_id``): the broker sees neither the diagnostics bundle nor
  anything else of it, and cannot forge or alter it.

Kinds and their ``args``:

=============  =========================================================================
``set-config``  ``{"values": {"section.key": scalar, ...}}`` (1..32 entries)
``push-model``  ``{"manifest": <manifest JSON text>, "model": <base64 of the .onnx>}``
``diagnostics`` ``{"log_lines": n}`` (0..500: how many recent log lines to include)
``rotate-keys`` ``{"identity": bool, "data": bool}`` (at least one true: a new TLS/signing key
                through a renewal request naming this command, and/or a new buffer data key)
=============  =========================================================================

A gateway whose agent predates a kind refuses the command as ``unknown_kind`` (logged, counted,
unanswered), so new kinds stay format v1.

Every decoder raises :class:`~wire.errors.WireError` subclasses only.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ed25519, x25519

from wire.envelope import GatewaySigner, Opened, open_envelope, seal
from wire.errors import BadSignature, Malformed, WireError
from wire.messages import FORMAT_VERSION, _check_type, _dumps, _int, _iso, _loads, _str, _time

__all__ = [
    "COMMAND_CONTEXT",
    "KINDS",
    "MAX_COMMAND",
    "MAX_LOG_LINES",
    "MAX_MANIFEST",
    "MAX_MODEL",
    "MAX_RESULT",
    "RESULT_LANE",
    "RESULT_STATES",
    "Command",
    "CommandResult",
    "decode_command",
    "decode_result",
    "encode_command",
    "encode_result",
    "open_result",
    "seal_result",
]

COMMAND_CONTEXT: Final = b"station-edge/v1/command\x00"
KINDS: Final = ("set-config", "push-model", "diagnostics", "rotate-keys")
RESULT_STATES: Final = ("applied", "rolled_back", "refused", "failed", "expired")
RESULT_LANE: Final = "results"
MAX_MODEL: Final = 1024 * 1024  # an .onnx file (the shipped ones are ~15 KiB)
MAX_MANIFEST: Final = 64 * 1024
MAX_COMMAND: Final = 2 * 1024 * 1024  # base64 model + manifest + the rest
MAX_RESULT: Final = 512 * 1024  # a diagnostics bundle included
MAX_DETAIL: Final = 512
MAX_CONFIG_VALUES: Final = 32
MAX_LOG_LINES: Final = 500
MAX_DATA_STRING: Final = 64 * 1024
_SIG_LEN = 64
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")
_CONFIG_KEY = re.compile(r"[a-z][a-z0-9_]{0,63}(\.[a-z][a-z0-9_]{0,63}){1,3}")
_MAX_DEPTH = 6


@dataclass(frozen=True, slots=True)
class Command:
    cmd_id: str
    gateway_id: str
    seq: int
    issued_at: datetime
    expires_at: datetime
    kind: str
    args: Mapping[str, object] = field(default_factory=dict)

    @property
    def config_values(self) -> dict[str, str | int | float | bool]:
        """``set-config``: the dotted keys and their new values."""
        values = self.args.get("values", {})
        assert isinstance(values, dict)
        return dict(values)

    def model(self) -> tuple[bytes, bytes]:
        """``push-model``: (manifest bytes, model bytes)."""
        manifest, model = self.args["manifest"], self.args["model"]
        assert isinstance(manifest, str) and isinstance(model, str)
        return manifest.encode("utf-8"), base64.b64decode(model, validate=True)

    @property
    def rotations(self) -> tuple[bool, bool]:
        """``rotate-keys``: (identity key, data key)."""
        return self.args.get("identity") is True, self.args.get("data") is True


@dataclass(frozen=True, slots=True)
class CommandResult:
    cmd_id: str
    gateway_id: str
    seq: int  # 0 when the command could not be read far enough to know it
    kind: str  # "" likewise
    state: str
    detail: str
    at: datetime
    data: Mapping[str, object] = field(default_factory=dict)


# -- arguments --------------------------------------------------------------------------------


def _scalar(value: object) -> bool:
    if isinstance(value, bool):
        return True
    if isinstance(value, int):
        return -(2**53) <= value <= 2**53
    if isinstance(value, float):
        return value == value and value not in (float("inf"), float("-inf"))
    return isinstance(value, str) and len(value) <= 256


def check_args(kind: str, args: object) -> dict[str, object]:
    """``args`` of ``kind`` as the wire carries them (module doc), or :class:`Malformed`."""
    if kind not in KINDS:
        raise Malformed("unknown_kind", f"kind must be one of {', '.join(KINDS)}")
    if not isinstance(args, Mapping):
        raise Malformed("malformed", "args: not an object")
    if kind == "set-config":
        values = args.get("values")
        if set(args) != {"values"} or not isinstance(values, Mapping) or not 1 <= len(values) <= MAX_CONFIG_VALUES:
            raise Malformed("malformed", f"set-config: values must hold 1..{MAX_CONFIG_VALUES} keys")
        for key, value in values.items():
            if not isinstance(key, str) or not _CONFIG_KEY.fullmatch(key):
                raise Malformed("malformed", "set-config: a key is not section.key")
            if not _scalar(value):
                raise Malformed("malformed", "set-config: a value is not a number, boolean or short string")
        return {"values": dict(values)}
    if kind == "push-model":
        manifest, model = args.get("manifest"), args.get("model")
        if set(args) != {"manifest", "model"} or not isinstance(manifest, str) or not isinstance(model, str):
            raise Malformed("malformed", "push-model: manifest and model must be strings")
        if len(manifest.encode("utf-8")) > MAX_MANIFEST:
            raise Malformed("too_large", f"manifest > {MAX_MANIFEST} bytes")
        if len(model) > (MAX_MODEL + 2) // 3 * 4:
            raise Malformed("too_large", f"model > {MAX_MODEL} bytes")
        try:
            base64.b64decode(model, validate=True)
        except (binascii.Error, ValueError):
            raise Malformed("malformed", "push-model: model is not base64") from None
        return {"manifest": manifest, "model": model}
    if kind == "diagnostics":
        lines = args.get("log_lines", 0)
        if not set(args) <= {"log_lines"} or type(lines) is not int or not 0 <= lines <= MAX_LOG_LINES:
            raise Malformed("malformed", f"diagnostics: log_lines must be 0..{MAX_LOG_LINES}")
        return {"log_lines": lines}
    if kind == "rotate-keys":
        identity, data = args.get("identity", True), args.get("data", True)
        if not set(args) <= {"identity", "data"} or type(identity) is not bool or type(data) is not bool:
            raise Malformed("malformed", "rotate-keys: identity and data must be booleans")
        if not (identity or data):
            raise Malformed("malformed", "rotate-keys: nothing to rotate")
        return {"identity": identity, "data": data}
    raise AssertionError(kind)  # every kind is handled above


def model_args(manifest: bytes, model: bytes) -> dict[str, object]:
    """``push-model`` args from the manifest file's bytes and the model file's bytes."""
    if len(model) > MAX_MODEL:
        raise Malformed("too_large", f"model {len(model)} > {MAX_MODEL} bytes")
    try:
        text = manifest.decode("utf-8")
    except UnicodeDecodeError:
        raise Malformed("malformed", "manifest is not UTF-8") from None
    return check_args("push-model", {"manifest": text, "model": base64.b64encode(model).decode("ascii")})


# -- command ----------------------------------------------------------------------------------


def _check_ids(*values: str) -> None:
    for value in values:
        if not isinstance(value, str) or not _ID.fullmatch(value):
            raise Malformed("malformed", "cmd_id and gateway_id must be ids")


def encode_command(cmd: Command, signing_key: ed25519.Ed25519PrivateKey) -> bytes:
    """The signed command (module doc); :class:`Malformed` for a field out of bounds."""
    _check_ids(cmd.cmd_id, cmd.gateway_id)
    if type(cmd.seq) is not int or not 1 <= cmd.seq < 2**63:
        raise Malformed("malformed", "seq must be a positive integer")
    body = _dumps(
        {
            "v": FORMAT_VERSION,
            "type": "command",
            "cmd_id": cmd.cmd_id,
            "gateway_id": cmd.gateway_id,
            "seq": cmd.seq,
            "issued_at": _iso(cmd.issued_at, "issued_at"),
            "expires_at": _iso(cmd.expires_at, "expires_at"),
            "kind": cmd.kind,
            "args": check_args(cmd.kind, cmd.args),
        }
    )
    if len(body) + _SIG_LEN > MAX_COMMAND:
        raise Malformed("too_large", f"command {len(body) + _SIG_LEN} > {MAX_COMMAND} bytes")
    return body + signing_key.sign(COMMAND_CONTEXT + body)


def decode_command(data: bytes, hub_signing_public: ed25519.Ed25519PublicKey) -> Command:
    """Verify the hub's signature first (:class:`~wire.errors.BadSignature`), then parse.

    Whether the command is for this gateway, current and new is the gateway's to decide."""
    try:
        if not isinstance(data, bytes | bytearray | memoryview):
            raise Malformed("malformed", "not bytes")
        raw = bytes(data)
        if len(raw) > MAX_COMMAND:
            raise Malformed("too_large", f"{len(raw)} > {MAX_COMMAND} bytes")
        if len(raw) <= _SIG_LEN:
            raise Malformed("truncated", "shorter than a signature")
        body, signature = raw[:-_SIG_LEN], raw[-_SIG_LEN:]
        try:
            hub_signing_public.verify(signature, COMMAND_CONTEXT + body)
        except InvalidSignature:
            raise BadSignature("bad_signature", "command not signed by the hub") from None
        doc = _loads(body, MAX_COMMAND)
        _check_type(doc, "command")
        kind = _str(doc, "kind")
        return Command(
            cmd_id=_str(doc, "cmd_id", pattern=_ID),
            gateway_id=_str(doc, "gateway_id", pattern=_ID),
            seq=_int(doc, "seq", low=1),
            issued_at=_time(doc.get("issued_at"), "issued_at"),
            expires_at=_time(doc.get("expires_at"), "expires_at"),
            kind=kind,
            args=check_args(kind, doc.get("args")),
        )
    except WireError:
        raise
    except Exception as exc:  # whatever the bytes, only WireError leaves
        raise Malformed("malformed", type(exc).__name__) from None


# -- result -----------------------------------------------------------------------------------


def _check_data(value: object, depth: int = 0) -> None:
    """Kind-specific data: JSON objects, arrays, strings, finite numbers, booleans, null."""
    if depth > _MAX_DEPTH:
        raise Malformed("malformed", "data nested too deep")
    if value is None or isinstance(value, bool | int):
        return
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise Malformed("malformed", "data: not a finite number")
        return
    if isinstance(value, str):
        if len(value) > MAX_DATA_STRING:
            raise Malformed("too_large", "data: a string is too long")
        return
    if isinstance(value, Mapping):
        for k, v in value.items():
            if not isinstance(k, str) or len(k) > 128:
                raise Malformed("malformed", "data: a key is not a short string")
            _check_data(v, depth + 1)
        return
    if isinstance(value, list | tuple):
        for v in value:
            _check_data(v, depth + 1)
        return
    raise Malformed("malformed", f"data: {type(value).__name__} is not JSON")


def encode_result(result: CommandResult) -> bytes:
    """The result's plaintext (module doc); :func:`seal_result` seals and signs it."""
    _check_ids(result.cmd_id, result.gateway_id)
    if result.state not in RESULT_STATES:
        raise Malformed("malformed", f"state must be one of {', '.join(RESULT_STATES)}")
    if result.kind not in ("", *KINDS) or type(result.seq) is not int or not 0 <= result.seq < 2**63:
        raise Malformed("malformed", "kind or seq")
    if len(result.detail) > MAX_DETAIL:
        raise Malformed("malformed", f"detail longer than {MAX_DETAIL} characters")
    _check_data(dict(result.data))
    body = _dumps(
        {
            "v": FORMAT_VERSION,
            "type": "command_result",
            "cmd_id": result.cmd_id,
            "gateway_id": result.gateway_id,
            "seq": result.seq,
            "kind": result.kind,
            "state": result.state,
            "detail": result.detail,
            "at": _iso(result.at, "at"),
            "data": dict(result.data),
        }
    )
    if len(body) > MAX_RESULT:
        raise Malformed("too_large", f"result {len(body)} > {MAX_RESULT} bytes")
    return body


def decode_result(data: bytes) -> CommandResult:
    try:
        doc = _loads(data, MAX_RESULT)
        _check_type(doc, "command_result")
        state, kind, payload = doc.get("state"), doc.get("kind"), doc.get("data")
        if state not in RESULT_STATES or kind not in ("", *KINDS):
            raise Malformed("malformed", "state or kind")
        if not isinstance(payload, dict):
            raise Malformed("malformed", "data: not an object")
        _check_data(payload)
        return CommandResult(
            cmd_id=_str(doc, "cmd_id", pattern=_ID),
            gateway_id=_str(doc, "gateway_id", pattern=_ID),
            seq=_int(doc, "seq"),
            kind=str(kind),
            state=str(state),
            detail=_str(doc, "detail", limit=MAX_DETAIL),
            at=_time(doc.get("at"), "at"),
            data=payload,
        )
    except WireError:
        raise
    except Exception as exc:
        raise Malformed("malformed", type(exc).__name__) from None


def seal_result(result: CommandResult, *, hub_sealing_public: x25519.X25519PublicKey, gateway: GatewaySigner) -> bytes:
    """The result sealed to the hub and signed by the gateway (``wire.envelope``, lane ``results``)."""
    return seal(
        encode_result(result),
        lane=RESULT_LANE,
        gateway_id=result.gateway_id,
        batch_id=result.cmd_id,
        hub_sealing_public=hub_sealing_public,
        gateway=gateway,
    )


def open_result(
    data: bytes,
    *,
    hub_sealing_private: x25519.X25519PrivateKey,
    ca_certs: Sequence[x509.Certificate],
    now: datetime,
) -> tuple[Opened, CommandResult]:
    """Open the envelope (every check of :func:`wire.envelope.open_envelope`), then decode; the
    result must name the envelope's gateway and command (``result_mismatch`` otherwise)."""
    opened = open_envelope(data, hub_sealing_private=hub_sealing_private, ca_certs=ca_certs, now=now)
    if opened.lane != RESULT_LANE:
        raise Malformed("wrong_lane", "not a command result envelope")
    result = decode_result(opened.plaintext)
    if result.gateway_id != opened.gateway_id or result.cmd_id != opened.batch_id:
        raise Malformed("result_mismatch", "ids differ between envelope and result")
    return opened, result
