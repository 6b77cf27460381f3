"""edge_agent.sync.renewal, the gateway side: what reply it accepts (a forged one, one for another
request, key or CA is refused), which certificate it prefers at connect, and where it keeps them."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from hypothesis import given
from hypothesis import strategies as st

from edge_agent.sync.renewal import (
    CertStore,
    RenewalFailed,
    RenewalState,
    best_certificate,
    make_request,
    renewal_due,
    verify_reply,
)
from provisioning.issuing import issue_renewal
from provisioning.pki import CertifiedKey
from tests.provisioning.renewal_support import NOW, RenewalProvince, make_renewal_province
from tests.provisioning.support import PROVINCE
from wire.renewal import RenewalReply, encode_reply
from wire.topics import topic


@pytest.fixture
def province(tmp_path: Path) -> RenewalProvince:
    return make_renewal_province(tmp_path)


def issued_reply(province: RenewalProvince, gw: CertifiedKey, request_id: str) -> bytes:
    out = province.authority().handle(
        topic(PROVINCE, "gw-a", "renew/req"), make_request(gw, "gw-a", now=NOW, request_id=request_id)[1]
    )
    assert out.status == "issued" and out.reply is not None
    return out.reply


def verify(
    province: RenewalProvince, gw: CertifiedKey, payload: bytes, request_id: str = "r1"
) -> list[x509.Certificate]:
    return verify_reply(
        payload,
        hub_signing=province.hub_keys.public().signing,
        cas=[province.ca.ca.cert],  # the gateway trusts the provincial CA only (its bundle)
        gateway=gw,
        gateway_id="gw-a",
        request_id=request_id,
        now=NOW,
    )


def test_a_genuine_reply_gives_a_chain_to_the_gateways_ca(province: RenewalProvince) -> None:
    gw, _, _ = province.gateway("gw-a")
    chain = verify(province, gw, issued_reply(province, gw, "r1"))
    assert chain[1] == province.issuing.cert and chain[0].public_key() == gw.cert.public_key()


def reason(province: RenewalProvince, gw: CertifiedKey, payload: bytes, request_id: str = "r1") -> str:
    with pytest.raises(RenewalFailed) as info:
        verify(province, gw, payload, request_id)
    return info.value.reason


def _reply(chain: bytes, key: ed25519.Ed25519PrivateKey, **kw: str) -> bytes:
    fields = {"gateway_id": "gw-a", "request_id": "r1", "status": "issued", "reason": "", **kw}
    return encode_reply(RenewalReply(chain_pem=chain, issued_at=NOW, **fields), key)  # type: ignore[arg-type]


def _pem(*certs: x509.Certificate) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


def test_forged_and_mismatched_replies_are_refused(province: RenewalProvince, tmp_path: Path) -> None:
    gw, _, _ = province.gateway("gw-a")
    genuine = issued_reply(province, gw, "r1")
    chain = verify(province, gw, genuine)
    hub = province.hub_keys.signing
    # signed by someone else than the hub (a well-formed reply with a good chain)
    assert reason(province, gw, _reply(_pem(*chain), ed25519.Ed25519PrivateKey.generate())) == "bad_signature"
    # a flipped byte
    assert reason(province, gw, genuine[:10] + bytes([genuine[10] ^ 1]) + genuine[11:]) == "bad_signature"
    assert reason(province, gw, genuine, request_id="r2") == "not_our_request"
    assert reason(province, gw, _reply(b"", hub, status="refused", reason="revoked")) == "refused_revoked"
    # a certificate for another key, issued by the real issuing CA
    other = ec.generate_private_key(ec.SECP256R1())
    wrong_key = issue_renewal(province.issuing, "gw-a", other.public_key(), now=NOW)
    assert reason(province, gw, _reply(_pem(wrong_key, province.issuing.cert), hub)) == "key_mismatch"
    wrong_cn = issue_renewal(province.issuing, "gw-b", gw.key.public_key(), now=NOW)
    assert reason(province, gw, _reply(_pem(wrong_cn, province.issuing.cert), hub)) == "cert_cn_mismatch"
    # from another province's issuing CA
    foreign = make_renewal_province(tmp_path / "other").issuing
    alien = issue_renewal(foreign, "gw-a", gw.key.public_key(), now=NOW)
    assert reason(province, gw, _reply(_pem(alien, foreign.cert), hub)) == "cert_untrusted"
    assert reason(province, gw, _reply(_pem(alien, province.issuing.cert), hub)) == "chain_broken"
    # not newer than the current certificate
    short = issue_renewal(province.issuing, "gw-a", gw.key.public_key(), now=NOW - timedelta(days=85))
    assert reason(province, gw, _reply(_pem(short, province.issuing.cert), hub)) == "not_newer"
    assert reason(province, gw, _reply(b"junk", hub)) == "chain_malformed"


def test_due_within_the_window_only() -> None:
    assert renewal_due(NOW + timedelta(days=29), NOW, 30)
    assert renewal_due(NOW - timedelta(days=1), NOW, 30)
    assert not renewal_due(NOW + timedelta(days=31), NOW, 30)
    assert not renewal_due(NOW, NOW, 0)  # 0 turns renewal off


@given(st.integers(min_value=0, max_value=400), st.integers(min_value=0, max_value=365))
def test_due_is_monotonic_in_time(days_left: int, window: int) -> None:
    due = renewal_due(NOW + timedelta(days=days_left), NOW, window)
    assert due == (window > 0 and days_left <= window)


def test_the_newest_valid_certificate_is_preferred(province: RenewalProvince, tmp_path: Path) -> None:
    gw, key_path, cert_path = province.gateway("gw-a", days=10)
    ca = province.ca_file()
    state = tmp_path / "state"
    assert best_certificate(cert_path, key_path, ca, state, "gw-a", NOW) == cert_path  # nothing renewed yet
    store = CertStore(state)
    chain = verify(province, gw, issued_reply(province, gw, "r1"))
    renewed = store.write(chain)
    assert renewed.parent == state / "certs" and oct(renewed.stat().st_mode & 0o777) == "0o644"
    assert best_certificate(cert_path, key_path, ca, state, "gw-a", NOW) == renewed
    # a renewed certificate that is not valid yet (or any more) is passed over
    assert best_certificate(cert_path, key_path, ca, state, "gw-a", NOW - timedelta(days=2)) == cert_path
    assert best_certificate(cert_path, key_path, ca, state, "gw-a", NOW + timedelta(days=200)) == cert_path
    # one for another key in the state dir (planted) is never chosen
    other = ec.generate_private_key(ec.SECP256R1())
    planted = issue_renewal(province.issuing, "gw-a", other.public_key(), now=NOW, days=200)
    (state / "certs" / "gateway-ffff.cert.pem").write_bytes(_pem(planted, province.issuing.cert))
    assert best_certificate(cert_path, key_path, ca, state, "gw-a", NOW) == renewed


def test_the_store_keeps_the_newest_few(province: RenewalProvince, tmp_path: Path) -> None:
    gw, _, _ = province.gateway("gw-a")
    store = CertStore(tmp_path / "state")
    paths = []
    for i in range(5):
        cert = issue_renewal(province.issuing, "gw-a", gw.key.public_key(), now=NOW + timedelta(seconds=i))
        paths.append(store.write([cert, province.issuing.cert]))
    assert store.paths()[-1] == paths[-1] and len(store.paths()) == 3


def test_renewal_state_survives_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "renewal.json"
    state = RenewalState(
        last_attempt_at=NOW.isoformat(), last_result="refused", last_reason="refused_revoked", attempts=2
    )
    state.save(path)
    assert RenewalState.load(path) == state
    path.write_text("{broken")
    assert RenewalState.load(path) == RenewalState()
