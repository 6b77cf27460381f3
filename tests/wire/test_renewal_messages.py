"""wire.renewal: round trips, signatures bound to their context, and nothing but WireError out of
the decoders whatever the bytes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from hypothesis import given, settings
from hypothesis import strategies as st

from provisioning.pki import create_ca, issue
from wire.errors import BadSignature, WireError
from wire.messages import Ack, encode_ack
from wire.renewal import RenewalReply, RenewalRequest, decode_reply, decode_request, encode_reply, encode_request

NOW = datetime(2026, 6, 1, tzinfo=UTC)
CA = create_ca("wire test CA", now=NOW)
GW = issue(CA, "gw-1", now=NOW)
HUB = ed25519.Ed25519PrivateKey.generate()
ids = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,40}", fullmatch=True)


def request(**kw: object) -> RenewalRequest:
    base: dict[str, object] = {
        "gateway_id": "gw-1",
        "request_id": "r-1",
        "serial": GW.cert.serial_number,
        "issued_at": NOW,
        "expires_at": NOW + timedelta(minutes=10),
        "csr_pem": b"-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n",
        "cert_pem": GW.cert_pem(),
    }
    return RenewalRequest(**{**base, **kw})  # type: ignore[arg-type]


@given(ids, ids, st.integers(min_value=1, max_value=2**159))
def test_request_round_trip(gateway_id: str, request_id: str, serial: int) -> None:
    req = request(gateway_id=gateway_id, request_id=request_id, serial=serial)
    assert decode_request(encode_request(req, GW.key)) == req


@given(ids, st.sampled_from(["issued", "refused"]), st.from_regex(r"[a-z0-9_]{0,64}", fullmatch=True))
def test_reply_round_trip(request_id: str, status: str, reason: str) -> None:
    reply = RenewalReply("gw-1", request_id, status, reason, GW.cert_pem(), NOW)
    assert decode_reply(encode_reply(reply, HUB), HUB.public_key()) == reply


def test_signatures_are_checked_and_never_cross_contexts() -> None:
    other = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(BadSignature):
        decode_request(encode_request(request(), other))  # not the key of the certificate inside
    reply = encode_reply(RenewalReply("gw-1", "r-1", "issued", "", b"", NOW), HUB)
    with pytest.raises(BadSignature):
        decode_reply(reply, ed25519.Ed25519PrivateKey.generate().public_key())
    ack = encode_ack(Ack(batch_id="b-1", gateway_id="gw-1", lane="readings", status="ok"), HUB)
    with pytest.raises(WireError):  # an ack, signed by the very same hub key, is not a reply
        decode_reply(ack, HUB.public_key())


@settings(max_examples=200)
@given(st.binary(max_size=2048))
def test_garbage_raises_only_wire_errors(data: bytes) -> None:
    for decode in (decode_request, lambda d: decode_reply(d, HUB.public_key())):
        with pytest.raises(WireError):
            decode(data)


@settings(max_examples=200)
@given(st.data())
def test_a_mutated_message_never_verifies(data: st.DataObject) -> None:
    for good, decode in (
        (encode_request(request(), GW.key), decode_request),
        (
            encode_reply(RenewalReply("gw-1", "r-1", "issued", "", b"", NOW), HUB),
            lambda d: decode_reply(d, HUB.public_key()),
        ),
    ):
        i = data.draw(st.integers(min_value=0, max_value=len(good) - 1))
        flip = data.draw(st.integers(min_value=1, max_value=255))
        with pytest.raises(WireError):
            decode(good[:i] + bytes([good[i] ^ flip]) + good[i + 1 :])


@given(ids, st.one_of(st.none(), ids))
def test_request_round_trip_with_and_without_a_rotation(request_id: str, cmd_id: str | None) -> None:
    req = request(request_id=request_id, cmd_id=cmd_id)
    assert decode_request(encode_request(req, GW.key)) == req


def test_a_request_without_cmd_id_is_byte_for_byte_the_old_format() -> None:
    import json

    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

    from wire.renewal import REQUEST_CONTEXT

    req = request()
    encoded = encode_request(req, GW.key)
    body = encoded[:-64]
    legacy = json.dumps(
        {
            "v": 1,
            "type": "renew_request",
            "gateway_id": "gw-1",
            "request_id": "r-1",
            "serial": format(req.serial, "x"),
            "issued_at": NOW.isoformat(),
            "expires_at": (NOW + timedelta(minutes=10)).isoformat(),
            "csr": req.csr_pem.decode(),
            "cert": req.cert_pem.decode(),
        },
        separators=(",", ":"),
        sort_keys=True,
    ).encode()
    assert body == legacy  # an old hub reads it as before
    r, s = decode_dss_signature(GW.key.sign(REQUEST_CONTEXT + legacy, ec.ECDSA(hashes.SHA256())))
    old = decode_request(legacy + r.to_bytes(32, "big") + s.to_bytes(32, "big"))  # an old gateway's request
    assert old == req and old.cmd_id is None
    rotating = encode_request(request(cmd_id="c-1"), GW.key)
    assert b'"cmd_id":"c-1"' in rotating and decode_request(rotating).cmd_id == "c-1"


@pytest.mark.parametrize("cmd_id", ["", "-x", "a b", "x" * 129])
def test_a_bad_cmd_id_is_refused(cmd_id: str) -> None:
    import json

    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

    from wire.errors import Malformed
    from wire.renewal import REQUEST_CONTEXT

    with pytest.raises(Malformed):
        encode_request(request(cmd_id=cmd_id), GW.key)
    doc = json.loads(encode_request(request(), GW.key)[:-64])
    body = json.dumps({**doc, "cmd_id": cmd_id}, separators=(",", ":"), sort_keys=True).encode()
    r, s = decode_dss_signature(GW.key.sign(REQUEST_CONTEXT + body, ec.ECDSA(hashes.SHA256())))
    with pytest.raises(Malformed):
        decode_request(body + r.to_bytes(32, "big") + s.to_bytes(32, "big"))
