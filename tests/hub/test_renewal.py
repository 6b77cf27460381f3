"""hub.renewal: what the hub renews and what it refuses (each refusal counted, logged, answered
with a signed ``refused`` reply), at a pinned time, on a CA made by ``ca init``."""

from __future__ import annotations

import logging
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from edge_agent.sync.renewal import make_request
from hub.renewal import RenewalAuthority, ReplayGuard
from provisioning.ca import read_renewal_ledger, revoke
from provisioning.pki import CertifiedKey
from tests.provisioning.renewal_support import NOW, RenewalProvince, make_renewal_province
from tests.provisioning.support import PROVINCE
from wire.renewal import RenewalRequest, decode_reply, encode_request
from wire.topics import topic


@pytest.fixture
def province(tmp_path: Path) -> RenewalProvince:
    return make_renewal_province(tmp_path)


def req_topic(gw: str) -> str:
    return topic(PROVINCE, gw, "renew/req")


def answer(province: RenewalProvince, auth: RenewalAuthority, gw: str, payload: bytes) -> tuple[str, str]:
    out = auth.handle(req_topic(gw), payload)
    assert out.reply is not None and out.reply_topic == topic(PROVINCE, gw, "renew/cert")
    reply = decode_reply(out.reply, province.hub_keys.public().signing)
    assert reply.gateway_id == gw
    return reply.status, reply.reason


def test_a_current_gateway_is_renewed_for_the_same_key_by_the_issuing_ca(province: RenewalProvince) -> None:
    gw, _, _ = province.gateway("gw-a", days=10)
    auth = province.authority()
    req, payload = make_request(gw, "gw-a", now=NOW)
    out = auth.handle(req_topic("gw-a"), payload)
    assert out.status == "issued" and out.reply is not None
    reply = decode_reply(out.reply, province.hub_keys.public().signing)
    assert (reply.status, reply.request_id) == ("issued", req.request_id)
    leaf, issuing = x509.load_pem_x509_certificates(reply.chain_pem)
    assert issuing == province.issuing.cert
    leaf.verify_directly_issued_by(issuing)
    issuing.verify_directly_issued_by(province.ca.ca.cert)
    assert leaf.public_key() == gw.cert.public_key()
    assert leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "gw-a"
    assert leaf.not_valid_after_utc > gw.cert.not_valid_after_utc
    assert auth.issued_total == 1 and auth.rejected == {}
    # the ledger lets the offline CA revoke the renewed certificate later
    (entry,) = read_renewal_ledger(province.root / "hub" / "renewals.jsonl")
    assert (entry.gateway_id, entry.serial) == ("gw-a", leaf.serial_number)
    (revoked,) = [c for c in revoke(province.ca_dir, "gw-a", now=NOW, renewals=(entry,)) if c.serial == entry.serial]
    assert revoked.revoked_at == NOW
    auth2 = province.authority()
    assert leaf.serial_number in auth2.revoked()


def _request(gw: CertifiedKey, **changes: object) -> RenewalRequest:
    req, _ = make_request(gw, "gw-a", now=NOW)
    return RenewalRequest(**{**{f: getattr(req, f) for f in req.__dataclass_fields__}, **changes})  # type: ignore[arg-type]


def _csr(key: ec.EllipticCurvePrivateKey, cn: str) -> bytes:
    return (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
        .sign(key, hashes.SHA256())
        .public_bytes(serialization.Encoding.PEM)
    )


def test_every_refusal_is_counted_logged_and_answered(
    province: RenewalProvince, caplog: pytest.LogCaptureFixture
) -> None:
    a, _, _ = province.gateway("gw-a")
    b, _, _ = province.gateway("gw-b")
    auth = province.authority()
    other_key = ec.generate_private_key(ec.SECP256R1())
    cases = {
        # B asks on its own topic for a certificate in A's name, with B's current certificate
        "gateway_mismatch": (
            "gw-b",
            encode_request(_request(b, gateway_id="gw-a", serial=b.cert.serial_number), b.key),
        ),
        # B's certificate presented on A's topic (the ACL already stops this at the broker)
        "cert_cn_mismatch": ("gw-a", make_request(b, "gw-a", now=NOW)[1]),
        "csr_cn_mismatch": ("gw-a", encode_request(_request(a, csr_pem=_csr(a.key, "gw-b")), a.key)),
        "key_mismatch": ("gw-a", encode_request(_request(a, csr_pem=_csr(other_key, "gw-a")), a.key)),
        "bad_signature": ("gw-a", encode_request(_request(a), other_key)),
        "serial_mismatch": ("gw-a", encode_request(_request(a, serial=a.cert.serial_number + 1), a.key)),
        "request_expired": (
            "gw-a",
            encode_request(
                _request(a, issued_at=NOW - timedelta(minutes=11), expires_at=NOW - timedelta(minutes=1)), a.key
            ),
        ),
        "request_from_future": (
            "gw-a",
            encode_request(
                _request(a, issued_at=NOW + timedelta(hours=1), expires_at=NOW + timedelta(hours=1, minutes=5)), a.key
            ),
        ),
        "request_too_long": ("gw-a", encode_request(_request(a, expires_at=NOW + timedelta(days=1)), a.key)),
        "malformed": ("gw-a", b"{not json" + bytes(64)),
    }
    caplog.set_level(logging.WARNING, logger="hub.renewal")
    for reason, (gw, payload) in cases.items():
        assert answer(province, auth, gw, payload) == ("refused", reason), reason
    assert auth.rejected == dict.fromkeys(cases, 1)
    assert auth.issued_total == 0
    logged = [r.getMessage() for r in caplog.records if "event=renewal_refused" in r.getMessage()]
    assert len(logged) == len(cases) and all("reason=" in line for line in logged)


def test_a_replayed_request_is_refused(province: RenewalProvince) -> None:
    a, _, _ = province.gateway("gw-a")
    auth = province.authority()
    _, payload = make_request(a, "gw-a", now=NOW)
    assert answer(province, auth, "gw-a", payload)[0] == "issued"
    assert answer(province, auth, "gw-a", payload) == ("refused", "replayed")
    assert auth.rejected == {"replayed": 1}


def test_revoked_expired_and_foreign_certificates_are_not_renewed(province: RenewalProvince, tmp_path: Path) -> None:
    a, _, _ = province.gateway("gw-a")
    revoke(province.ca_dir, "gw-a", now=NOW)
    auth = province.authority()
    assert answer(province, auth, "gw-a", make_request(a, "gw-a", now=NOW)[1]) == ("refused", "revoked")
    old, _, _ = province.gateway("gw-old", days=1, now=NOW - timedelta(days=3))
    assert answer(province, auth, "gw-old", make_request(old, "gw-old", now=NOW)[1]) == ("refused", "cert_expired")
    other = make_renewal_province(tmp_path / "other")
    foreign, _, _ = other.gateway("gw-f")
    assert answer(province, auth, "gw-f", make_request(foreign, "gw-f", now=NOW)[1]) == ("refused", "cert_untrusted")
    assert auth.rejected == {"revoked": 1, "cert_expired": 1, "cert_untrusted": 1}


def test_a_renewed_certificate_renews_again(province: RenewalProvince) -> None:
    a, _, _ = province.gateway("gw-a")
    auth = province.authority()
    out = auth.handle(req_topic("gw-a"), make_request(a, "gw-a", now=NOW)[1])
    assert out.reply is not None
    leaf = x509.load_pem_x509_certificates(decode_reply(out.reply, province.hub_keys.public().signing).chain_pem)[0]
    later = NOW + timedelta(days=70)
    again = province.authority(clock_at=later)
    renewed = CertifiedKey(key=a.key, cert=leaf)
    assert answer(province, again, "gw-a", make_request(renewed, "gw-a", now=later)[1])[0] == "issued"


def test_wrong_topics_are_dropped_without_a_reply(province: RenewalProvince) -> None:
    auth = province.authority()
    for bad in ("se/v1/p01/gw-a/up", "nonsense", "se/v1/p01/+/renew/req"):
        out = auth.handle(bad, b"x" * 100)
        assert (out.status, out.reply) == ("dropped", None)
    assert auth.rejected == {"bad_topic": 3}


def test_replay_guard_forgets_expired_ids_and_stays_bounded() -> None:
    guard = ReplayGuard(limit=3)
    assert guard.admit("g", "r1", NOW + timedelta(minutes=1), NOW)
    assert not guard.admit("g", "r1", NOW + timedelta(minutes=1), NOW)
    assert guard.admit("h", "r1", NOW + timedelta(minutes=1), NOW)  # per gateway
    assert guard.admit("g", "r1", NOW + timedelta(minutes=9), NOW + timedelta(minutes=2))  # the old one expired
    for i in range(10):
        guard.admit("g", f"x{i}", NOW + timedelta(hours=1), NOW)
    assert len(guard._seen) <= 3


def test_revoke_with_the_ledger_on_the_command_line(
    province: RenewalProvince, capsys: pytest.CaptureFixture[str]
) -> None:
    from edge_agent.errors import EXIT_OK
    from edge_agent.provision_cli import main
    from hub.renewal import load_revoked

    a, _, _ = province.gateway("gw-a")
    out = province.authority().handle(req_topic("gw-a"), make_request(a, "gw-a", now=NOW)[1])
    assert out.status == "issued" and out.reply is not None
    leaf = x509.load_pem_x509_certificates(decode_reply(out.reply, province.hub_keys.public().signing).chain_pem)[0]
    ledger = province.root / "hub" / "renewals.jsonl"
    argv = ["revoke", "gw-a", "--ca-dir", str(province.ca_dir), "--renewals", str(ledger)]
    assert main(argv) == EXIT_OK
    assert f"serial {leaf.serial_number:x}" in capsys.readouterr().out
    revoked = load_revoked((province.ca_dir / "crl.pem").read_bytes(), province.trusted)
    assert {leaf.serial_number, a.cert.serial_number} <= revoked
