"""wire.envelope: sealed to the hub, signed by the gateway, checked against the CA list at the
injected ``now``. Every altered byte, every wrong key or certificate is refused with a typed
error; arbitrary bytes raise nothing but WireError."""

from __future__ import annotations

import base64
import contextlib
import json
import struct
import zlib
from datetime import timedelta

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from hypothesis import given, settings
from hypothesis import strategies as st

from provisioning.pki import CertifiedKey, issue
from tests.wire.keys import KEYS, NOW
from wire.envelope import (
    MAX_ENVELOPE,
    BadSeal,
    BadSignature,
    CertificateRejected,
    Malformed,
    Opened,
    UnsupportedVersion,
    WireError,
    hub_key_id,
    open_batch,
    open_envelope,
    seal,
    seal_batch,
)
from wire.messages import AlertBatch, AlertRecord, ReadingBatch, encode_readings

PLAIN = zlib.compress(b'{"v":1,"type":"readings","readings":[]}')
PREFIX = struct.Struct(">2sBHHI")


def sealed(
    plaintext: bytes = PLAIN,
    *,
    gateway: CertifiedKey = KEYS.gw1,
    gateway_id: str = "gw-0001",
    lane: str = "readings",
    batch_id: str = "b-1",
    hub: object = None,
) -> bytes:
    return seal(
        plaintext,
        lane=lane,
        gateway_id=gateway_id,
        batch_id=batch_id,
        hub_sealing_public=(KEYS.hub if hub is None else hub).sealing.public_key(),  # type: ignore[attr-defined]
        gateway=gateway,
    )


def opened(data: bytes, *, now: object = NOW, hub: object = None) -> Opened:
    return open_envelope(
        data,
        hub_sealing_private=(KEYS.hub if hub is None else hub).sealing,  # type: ignore[attr-defined]
        ca_certs=[KEYS.ca.cert],
        now=now,  # type: ignore[arg-type]
    )


def regions(data: bytes) -> dict[str, tuple[int, int]]:
    _, _, h, c, n = PREFIX.unpack_from(data)
    p = PREFIX.size
    return {
        "prefix": (0, p),
        "header": (p, p + h),
        "cert": (p + h, p + h + c),
        "ciphertext": (p + h + c, p + h + c + n),
        "signature": (len(data) - 64, len(data)),
    }


def split(data: bytes) -> tuple[bytes, bytes, bytes]:
    r = regions(data)
    return data[slice(*r["header"])], data[slice(*r["cert"])], data[slice(*r["ciphertext"])]


def resign(
    header: bytes, cert_pem: bytes, ciphertext: bytes, key: ec.EllipticCurvePrivateKey, version: int = 1
) -> bytes:
    """An envelope assembled by hand and signed with ``key``: what a gateway that signs garbage,
    or an attacker with some key, could send."""
    body = PREFIX.pack(b"SE", version, len(header), len(cert_pem), len(ciphertext)) + header + cert_pem + ciphertext
    r, s = decode_dss_signature(key.sign(body, ec.ECDSA(hashes.SHA256())))
    return body + r.to_bytes(32, "big") + s.to_bytes(32, "big")


def edit_header(data: bytes, **changes: object) -> bytes:
    header, cert, ct = split(data)
    doc = {**json.loads(header), **changes}
    return resign(json.dumps(doc, separators=(",", ":")).encode(), cert, ct, KEYS.gw1.key)


# -- the good path ----------------------------------------------------------------------------


@settings(max_examples=50, deadline=None)
@given(
    st.binary(max_size=4096),
    st.sampled_from(["readings", "alerts"]),
    st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9._:-]{0,60}\Z"),
)
def test_round_trip(plaintext: bytes, lane: str, batch_id: str) -> None:
    out = opened(sealed(plaintext, lane=lane, batch_id=batch_id))
    assert out == Opened(gateway_id="gw-0001", lane=lane, batch_id=batch_id, plaintext=plaintext)


def test_each_envelope_has_a_fresh_key_and_nonce() -> None:
    a, b = sealed(), sealed()
    ha, hb = json.loads(split(a)[0]), json.loads(split(b)[0])
    assert ha["epk"] != hb["epk"] and ha["nonce"] != hb["nonce"]
    assert ha["kid"] == hub_key_id(KEYS.hub.sealing.public_key())
    assert PLAIN not in a  # sealed, not merely signed


def test_batches_seal_and_open_by_lane() -> None:
    readings = ReadingBatch("b-7", "gw-0001", NOW, ())
    alerts = AlertBatch("b-8", "gw-0001", NOW, (AlertRecord("a-1", 2, {"level": "high"}),))
    pub, priv = KEYS.hub.sealing.public_key(), KEYS.hub.sealing
    for batch in (readings, alerts):
        env, got = open_batch(
            seal_batch(batch, hub_sealing_public=pub, gateway=KEYS.gw1),
            hub_sealing_private=priv,
            ca_certs=[KEYS.ca.cert],
            now=NOW,
        )
        assert got == batch and env.batch_id == batch.batch_id


def test_batch_ids_must_agree_between_envelope_and_payload() -> None:
    plaintext = encode_readings(ReadingBatch("b-other", "gw-0001", NOW, ()))
    with pytest.raises(Malformed) as err:
        open_batch(
            sealed(plaintext, batch_id="b-1"), hub_sealing_private=KEYS.hub.sealing, ca_certs=[KEYS.ca.cert], now=NOW
        )
    assert err.value.reason == "batch_mismatch"


def test_certificate_is_checked_at_the_injected_now() -> None:
    data = sealed()
    opened(data, now=NOW + timedelta(days=800))  # issued for 825 days
    with pytest.raises(CertificateRejected) as err:
        opened(data, now=NOW + timedelta(days=826))
    assert err.value.reason == "cert_expired"
    with pytest.raises(CertificateRejected) as err:
        opened(data, now=NOW - timedelta(hours=2))  # valid from NOW - 1 h
    assert err.value.reason == "cert_not_yet_valid"
    with pytest.raises(ValueError):
        opened(data, now=NOW.replace(tzinfo=None))


# -- tampering --------------------------------------------------------------------------------

ALLOWED = {
    "prefix": (Malformed, UnsupportedVersion),
    "header": (BadSignature,),
    "cert": (CertificateRejected, BadSignature),
    "ciphertext": (BadSignature,),
    "signature": (BadSignature,),
}


def test_every_altered_byte_is_refused_by_region() -> None:
    data = sealed(b"a small payload")
    for region, (start, end) in regions(data).items():
        for i in range(start, end):
            for flip in (0x01, 0x80):
                bad = bytearray(data)
                bad[i] ^= flip
                with pytest.raises(ALLOWED[region]):
                    opened(bytes(bad))


def test_truncated_or_extended_envelopes_are_malformed() -> None:
    data = sealed()
    for n in range(len(data)):
        with pytest.raises(Malformed):
            opened(data[:n])
    with pytest.raises(Malformed):
        opened(data + b"\0")


def test_gateway_signed_garbage_fails_the_seal() -> None:
    header, cert, ct = split(sealed())
    bad = bytearray(ct)
    bad[0] ^= 1
    with pytest.raises(BadSeal) as err:
        opened(resign(header, cert, bytes(bad), KEYS.gw1.key))
    assert err.value.reason == "bad_seal"
    # the header is the AEAD's associated data: a re-signed header with another batch id
    with pytest.raises(BadSeal):
        opened(edit_header(sealed(), batch_id="b-2"))


def test_sealed_to_another_hub_key() -> None:
    data = sealed(hub=KEYS.other_hub)
    with pytest.raises(BadSeal) as err:
        opened(data)
    assert err.value.reason == "wrong_hub_key"
    # claiming this hub's key id does not help: the tag does not verify
    with pytest.raises(BadSeal) as err:
        opened(edit_header(data, kid=hub_key_id(KEYS.hub.sealing.public_key())))
    assert err.value.reason == "bad_seal"


def test_low_order_ephemeral_key_fails_the_seal() -> None:
    with pytest.raises(BadSeal):
        opened(edit_header(sealed(), epk=base64.urlsafe_b64encode(bytes(32)).rstrip(b"=").decode()))


# -- keys and certificates --------------------------------------------------------------------


def test_forged_by_another_key_with_the_gateways_certificate() -> None:
    header, cert, ct = split(sealed())
    with pytest.raises(BadSignature):
        opened(resign(header, cert, ct, KEYS.gw2.key))


def test_certificate_from_another_ca() -> None:
    with pytest.raises(CertificateRejected) as err:
        opened(sealed(gateway=KEYS.foreign))
    assert err.value.reason == "cert_untrusted"


def test_same_name_as_the_ca_is_not_enough() -> None:
    from provisioning.pki import create_ca

    impostor_ca = create_ca("wire test CA", now=NOW)  # same subject, other key
    gw = issue(impostor_ca, "gw-0001", now=NOW)
    with pytest.raises(CertificateRejected) as err:
        opened(sealed(gateway=gw))
    assert err.value.reason == "cert_untrusted"


def test_expired_certificate() -> None:
    with pytest.raises(CertificateRejected) as err:
        opened(sealed(gateway=KEYS.expired))
    assert err.value.reason == "cert_expired"


def test_header_gateway_must_be_the_certificate_cn() -> None:
    with pytest.raises(CertificateRejected) as err:
        opened(sealed(gateway=KEYS.gw1, gateway_id="gw-0002"))
    assert err.value.reason == "cert_cn_mismatch"


def test_server_certificates_cannot_sign_envelopes() -> None:
    with pytest.raises(CertificateRejected) as err:
        opened(sealed(gateway=KEYS.broker))
    assert err.value.reason == "cert_wrong_usage"


def test_the_ca_itself_cannot_sign_envelopes() -> None:
    with pytest.raises(CertificateRejected):
        opened(sealed(gateway=KEYS.ca, gateway_id="wire test CA".replace(" ", "-")))


# -- sizes and versions -----------------------------------------------------------------------


def test_oversize_is_refused_before_parsing() -> None:
    with pytest.raises(Malformed) as err:
        opened(b"SE\x01" + b"\0" * MAX_ENVELOPE)
    assert err.value.reason == "too_large"
    with pytest.raises(Malformed):
        sealed(b"\0" * MAX_ENVELOPE)


def test_unknown_versions() -> None:
    header, cert, ct = split(sealed())
    with pytest.raises(UnsupportedVersion):
        opened(resign(header, cert, ct, KEYS.gw1.key, version=2))
    with pytest.raises(UnsupportedVersion):
        opened(edit_header(sealed(), v=2))


@pytest.mark.parametrize(
    "change",
    [{"lane": "other"}, {"gateway_id": "gw 1"}, {"batch_id": None}, {"kid": 5}, {"nonce": "!!"}, {"epk": "AAAA"}],
)
def test_bad_header_fields_are_malformed(change: dict[str, object]) -> None:
    with pytest.raises(Malformed):
        opened(edit_header(sealed(), **change))


def test_seal_refuses_bad_arguments() -> None:
    with pytest.raises(Malformed):
        sealed(lane="status")
    with pytest.raises(Malformed):
        sealed(batch_id="a/b")


# -- arbitrary bytes --------------------------------------------------------------------------


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=3000))
def test_arbitrary_bytes_raise_only_wire_error(data: bytes) -> None:
    with contextlib.suppress(WireError):
        opened(data)


GOOD = sealed(b"payload")


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, len(GOOD) - 1), st.integers(0, 255)), min_size=1, max_size=6))
def test_mutated_envelopes_raise_only_wire_error(edits: list[tuple[int, int]]) -> None:
    bad = bytearray(GOOD)
    for i, b in edits:
        bad[i] = b
    if bytes(bad) == GOOD:
        return
    with pytest.raises(WireError):
        opened(bytes(bad))


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=0, max_size=300), st.binary(max_size=300))
def test_framed_garbage_raises_only_wire_error(header: bytes, cert: bytes) -> None:
    """Valid framing, signed by the gateway, around garbage header and certificate bytes."""
    with contextlib.suppress(WireError):
        opened(resign(header, cert or KEYS.gw1.cert_pem(), b"\0" * 20, KEYS.gw1.key))
