"""Property tests for the bundle parser and the config renderer: any byte-level damage to a
signed bundle is refused with :class:`BundleError` (never another exception, never accepted
unless the bytes still mean the same JSON), and any station name or path survives rendering."""

from __future__ import annotations

import json
import tomllib
from datetime import UTC, datetime

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from hypothesis import given, settings
from hypothesis import strategies as st

from provisioning.bundle import BundleError, make_bundle, parse_bundle
from provisioning.pki import create_ca, issue_for_key, new_hub_keys
from provisioning.render import Managed, render_config

NOW = datetime(2031, 6, 1, tzinfo=UTC)
CA = create_ca("ca", now=NOW)
CERT = issue_for_key(CA, "gw-1", ec.generate_private_key(ec.SECP256R1()).public_key(), now=NOW)
BUNDLE = make_bundle(
    ca=CA,
    certificate=CERT,
    province="p01",
    station="s",
    broker="mqtts://h:8883",
    hub_keys=new_hub_keys().public(),
    model_signing_key=ed25519.Ed25519PrivateKey.generate().public_key(),
    issued_at=NOW,
)
DOC = json.loads(BUNDLE)


@settings(max_examples=150, deadline=None)
@given(st.integers(0, len(BUNDLE) - 1), st.integers(0, 255))
def test_a_changed_byte_is_refused_or_harmless(pos: int, value: int) -> None:
    damaged = bytearray(BUNDLE)
    damaged[pos] = value
    try:
        parse_bundle(bytes(damaged))
    except BundleError:
        return
    assert json.loads(bytes(damaged)) == DOC  # only whitespace-like changes may pass


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(sorted(set(DOC) - {"signature"})), st.text(max_size=30))
def test_a_changed_member_is_refused(member: str, value: str) -> None:
    doc = {**DOC, member: value}
    try:
        parse_bundle(json.dumps(doc).encode())
    except BundleError:
        return
    assert doc == DOC


line = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=40)


@given(station=line, path=line)
def test_rendered_config_round_trips(station: str, path: str) -> None:
    managed = Managed("gw-1", "p01", station, "mqtts://h", path, path, path, path, (path,), "note")
    doc = tomllib.loads(render_config("[store]\nquota_mb = 5\n", managed))
    assert doc["gateway"]["station_name"] == station and doc["sync"]["ca"] == path
    assert doc["scoring"]["trusted_keys"] == [path] and doc["store"] == {"quota_mb": 5}


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=600), st.integers(0, 2000), st.integers(0, 255))
def test_parse_csr_refuses_garbage_with_its_own_error(data: bytes, pos: int, value: int) -> None:
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.x509.oid import NameOID

    from provisioning.ca import parse_csr
    from provisioning.errors import ProvisioningError

    key = ec.generate_private_key(ec.SECP256R1())
    der = bytearray(
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "gw-1")]))
        .sign(key, hashes.SHA256())
        .public_bytes(serialization.Encoding.DER)
    )
    der[pos % len(der)] = value
    for candidate in (data, bytes(der)):
        try:
            parse_csr(candidate)
        except ProvisioningError as exc:
            assert exc.reason == "bad_csr"
