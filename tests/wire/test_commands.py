"""wire.commands: round trips, signatures bound to the hub key and their context, tampering,
sealed results, bounds, and nothing but WireError out of the decoders whatever the bytes."""

from __future__ import annotations

import base64
from datetime import timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.wire.keys import KEYS, NOW
from wire.commands import (
    COMMAND_CONTEXT,
    KINDS,
    MAX_MODEL,
    Command,
    CommandResult,
    check_args,
    decode_command,
    decode_result,
    encode_command,
    encode_result,
    model_args,
    open_result,
    seal_result,
)
from wire.envelope import open_batch, seal
from wire.errors import BadSignature, Malformed, UnsupportedVersion, WireError
from wire.messages import Ack, decode_ack, encode_ack

HUB = KEYS.hub.signing
ids = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,40}", fullmatch=True)
scalars = st.one_of(
    st.booleans(),
    st.integers(min_value=-(2**53), max_value=2**53),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=40),
)
config_keys = st.from_regex(r"[a-z][a-z0-9_]{0,10}\.[a-z][a-z0-9_]{0,10}", fullmatch=True)
args_of = {
    "set-config": st.dictionaries(config_keys, scalars, min_size=1, max_size=8).map(lambda v: {"values": v}),
    "push-model": st.tuples(st.text(max_size=200), st.binary(max_size=300)).map(
        lambda t: model_args(t[0].encode("utf-8"), t[1])
    ),
    "diagnostics": st.integers(min_value=0, max_value=500).map(lambda n: {"log_lines": n}),
    "rotate-keys": st.tuples(st.booleans(), st.booleans()).filter(any).map(lambda t: {"identity": t[0], "data": t[1]}),
}
commands = st.sampled_from(sorted(args_of)).flatmap(
    lambda kind: st.builds(
        Command,
        cmd_id=ids,
        gateway_id=ids,
        seq=st.integers(min_value=1, max_value=2**62),
        issued_at=st.just(NOW),
        expires_at=st.integers(min_value=1, max_value=10**6).map(lambda s: NOW + timedelta(seconds=s)),
        kind=st.just(kind),
        args=args_of[kind],
    )
)


def command(**kw: object) -> Command:
    base: dict[str, object] = {
        "cmd_id": "0d6c5e56-6f0c-4d47-9b39-1c2f8b0e7a11",
        "gateway_id": "gw-0001",
        "seq": 7,
        "issued_at": NOW,
        "expires_at": NOW + timedelta(hours=1),
        "kind": "set-config",
        "args": {"values": {"sync.heartbeat_s": 30}},
    }
    return Command(**{**base, **kw})  # type: ignore[arg-type]


@settings(max_examples=60, deadline=None)
@given(commands)
def test_command_round_trip(cmd: Command) -> None:
    decoded = decode_command(encode_command(cmd, HUB), HUB.public_key())
    assert decoded == cmd


def test_push_model_carries_the_bytes() -> None:
    cmd = command(kind="push-model", args=model_args(b'{"id": "x"}', b"\x00onnx\xff"))
    assert decode_command(encode_command(cmd, HUB), HUB.public_key()).model() == (b'{"id": "x"}', b"\x00onnx\xff")


@settings(max_examples=60, deadline=None)
@given(commands, st.data())
def test_any_tampered_byte_is_refused(cmd: Command, data: st.DataObject) -> None:
    raw = bytearray(encode_command(cmd, HUB))
    i = data.draw(st.integers(min_value=0, max_value=len(raw) - 1))
    raw[i] ^= data.draw(st.integers(min_value=1, max_value=255))
    with pytest.raises(WireError):
        decode_command(bytes(raw), HUB.public_key())


def test_forged_and_cross_context_signatures() -> None:
    cmd = command()
    other = KEYS.other_hub.signing
    with pytest.raises(BadSignature):
        decode_command(encode_command(cmd, other), HUB.public_key())
    # an ack's signature never verifies as a command's, nor the other way round
    ack = encode_ack(Ack("b-1", "gw-0001", "readings", "ok"), HUB)
    with pytest.raises(BadSignature):
        decode_command(ack, HUB.public_key())
    with pytest.raises(BadSignature):
        decode_ack(encode_command(cmd, HUB), HUB.public_key())
    body = encode_command(cmd, HUB)[:-64]
    assert HUB.public_key().verify(encode_command(cmd, HUB)[-64:], COMMAND_CONTEXT + body) is None


def test_signed_but_wrong_version_or_type() -> None:
    body = encode_command(command(), HUB)[:-64]
    for old, new, exc in (
        (b'"v":1', b'"v":2', UnsupportedVersion),
        (b'"type":"command"', b'"type":"commandx"', Malformed),
        (b'"kind":"set-config"', b'"kind":"reboot"', Malformed),
    ):
        changed = body.replace(old, new)
        assert changed != body
        with pytest.raises(exc):
            decode_command(changed + HUB.sign(COMMAND_CONTEXT + changed), HUB.public_key())


@pytest.mark.parametrize(
    ("kind", "args"),
    [
        ("set-config", {}),
        ("set-config", {"values": {}}),
        ("set-config", {"values": {"nodot": 1}}),
        ("set-config", {"values": {"sync.heartbeat_s": [1]}}),
        ("set-config", {"values": {"sync.heartbeat_s": float("nan")}}),
        ("set-config", {"values": {f"a.k{i}": i for i in range(33)}}),
        ("set-config", {"values": {"a.b": 1}, "extra": 1}),
        ("push-model", {"manifest": "{}"}),
        ("push-model", {"manifest": "{}", "model": "not base64!"}),
        ("diagnostics", {"log_lines": 501}),
        ("diagnostics", {"log_lines": True}),
        ("rotate-keys", {"identity": False, "data": False}),
        ("rotate-keys", {"identity": 1}),
        ("rotate-keys", {"data": "yes"}),
        ("rotate-keys", {"identity": True, "keys": True}),
        ("reboot", {}),
    ],
)
def test_bad_args_are_refused(kind: str, args: dict[str, object]) -> None:
    with pytest.raises(Malformed):
        check_args(kind, args)


def test_rotate_keys_rotates_both_unless_told_otherwise() -> None:
    assert check_args("rotate-keys", {}) == {"identity": True, "data": True}
    assert check_args("rotate-keys", {"data": False}) == {"identity": True, "data": False}
    cmd = decode_command(encode_command(command(kind="rotate-keys", args={"identity": False}), HUB), HUB.public_key())
    assert cmd.args == {"identity": False, "data": True} and cmd.rotations == (False, True)


def test_bounds() -> None:
    with pytest.raises(Malformed, match="too_large"):
        model_args(b"{}", b"\x00" * (MAX_MODEL + 1))
    with pytest.raises(Malformed):
        encode_command(command(seq=0), HUB)
    with pytest.raises(Malformed):
        encode_command(command(issued_at=NOW.replace(tzinfo=None)), HUB)
    big = base64.b64encode(b"\x00" * (MAX_MODEL + 3)).decode()
    with pytest.raises(Malformed, match="too_large"):
        check_args("push-model", {"manifest": "{}", "model": big})


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=400))
def test_garbage_only_raises_wire_errors(data: bytes) -> None:
    with pytest.raises(WireError):
        decode_command(data, HUB.public_key())
    with pytest.raises(WireError):
        decode_result(data)


# -- results ------------------------------------------------------------------------------------

results = st.builds(
    CommandResult,
    cmd_id=ids,
    gateway_id=st.just("gw-0001"),
    seq=st.integers(min_value=0, max_value=2**62),
    kind=st.sampled_from(["", *KINDS]),
    state=st.sampled_from(["applied", "rolled_back", "refused", "failed", "expired"]),
    detail=st.text(max_size=100),
    at=st.just(NOW),
    data=st.dictionaries(st.text(max_size=10), st.one_of(scalars, st.lists(scalars, max_size=3)), max_size=5),
)


@settings(max_examples=40, deadline=None)
@given(results)
def test_result_round_trip_sealed(result: CommandResult) -> None:
    assert decode_result(encode_result(result)) == result
    sealed = seal_result(result, hub_sealing_public=KEYS.hub.sealing.public_key(), gateway=KEYS.gw1)
    opened, back = open_result(sealed, hub_sealing_private=KEYS.hub.sealing, ca_certs=[KEYS.ca.cert], now=NOW)
    assert back == result and opened.gateway_id == "gw-0001" and opened.lane == "results"


def result(**kw: object) -> CommandResult:
    base: dict[str, object] = {
        "cmd_id": "c-1",
        "gateway_id": "gw-0001",
        "seq": 3,
        "kind": "diagnostics",
        "state": "applied",
        "detail": "diagnostics bundle",
        "at": NOW,
        "data": {"logs": ["event=x"]},
    }
    return CommandResult(**{**base, **kw})  # type: ignore[arg-type]


def test_result_checks() -> None:
    pub = KEYS.hub.sealing.public_key()
    opened = {"hub_sealing_private": KEYS.hub.sealing, "ca_certs": [KEYS.ca.cert], "now": NOW}
    # signed by another gateway's certificate while naming gw-0001
    with pytest.raises(WireError):
        open_result(seal_result(result(), hub_sealing_public=pub, gateway=KEYS.gw2), **opened)  # type: ignore[arg-type]
    # from a certificate of another CA
    with pytest.raises(WireError):
        open_result(seal_result(result(), hub_sealing_public=pub, gateway=KEYS.foreign), **opened)  # type: ignore[arg-type]
    # a result envelope is never a batch, a batch envelope never a result
    sealed = seal_result(result(), hub_sealing_public=pub, gateway=KEYS.gw1)
    assert b"diagnostics bundle" not in sealed and b"event=x" not in sealed  # sealed: the broker sees nothing
    with pytest.raises(Malformed, match="wrong_lane"):
        open_batch(sealed, **opened)  # type: ignore[arg-type]
    other = seal(
        encode_result(result()),
        lane="alerts",
        gateway_id="gw-0001",
        batch_id="c-1",
        hub_sealing_public=pub,
        gateway=KEYS.gw1,
    )
    with pytest.raises(Malformed, match="wrong_lane"):
        open_result(other, **opened)  # type: ignore[arg-type]
    # the envelope's batch id must be the result's command id
    mismatched = seal(
        encode_result(result()),
        lane="results",
        gateway_id="gw-0001",
        batch_id="c-2",
        hub_sealing_public=pub,
        gateway=KEYS.gw1,
    )
    with pytest.raises(Malformed, match="result_mismatch"):
        open_result(mismatched, **opened)  # type: ignore[arg-type]
    for bad in (
        result(state="done"),
        result(detail="x" * 513),
        result(data={"x": float("inf")}),
        result(kind="reboot"),
    ):
        with pytest.raises(Malformed):
            encode_result(bad)


def test_protocol_doc_examples() -> None:
    import json
    import re
    from pathlib import Path

    doc = (Path(__file__).parents[2] / "docs" / "protocol.md").read_text()
    bodies = [json.loads(m) for m in re.findall(r"^(\{\"v\":1,\"type\":\"command\".*?\})<64 bytes", doc, re.M)]
    assert {b["kind"] for b in bodies} == {"set-config", "push-model", "diagnostics", "rotate-keys"}
    for b in bodies:
        assert set(b) == {"v", "type", "cmd_id", "gateway_id", "seq", "issued_at", "expires_at", "kind", "args"}
        if b["kind"] != "push-model":  # its example is cut short
            check_args(str(b["kind"]), b["args"])
    results = [json.loads(m) for m in re.findall(r"^(\{\"v\":1,\"type\":\"command_result\".*\})$", doc, re.M)]
    assert {r["kind"] for r in results} == {"set-config", "diagnostics", "rotate-keys"}
    for r in results:
        decode_result(json.dumps(r).encode())
