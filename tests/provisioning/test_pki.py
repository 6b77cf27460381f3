"""provisioning.pki: CA, certificates, hub keys; files written atomically with the right modes;
times only from the injected ``now``."""

from __future__ import annotations

import ipaddress
import json
import stat
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID

from provisioning.pki import (
    HUB_PUBLIC_FILE,
    HUB_SEALING_FILE,
    HUB_SIGNING_FILE,
    HubKeys,
    HubPublicKeys,
    ProvisioningError,
    create_ca,
    issue,
    issue_for_key,
    load_ca_certs,
    load_certified_key,
    new_hub_keys,
    revocation_list,
    verify_issued_by,
)

NOW = datetime(2031, 7, 4, 12, 0, tzinfo=UTC)  # far from today: nothing may read the wall clock
CA = create_ca("test CA", now=NOW)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_ca_is_a_ca_valid_from_now_minus_an_hour() -> None:
    cert = CA.cert
    assert cert.not_valid_before_utc == NOW - timedelta(hours=1)
    assert cert.not_valid_after_utc == NOW + timedelta(days=3650)
    bc = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert bc.ca and bc.path_length == 0
    assert verify_issued_by(cert, cert) and CA.common_name == "test CA"


def test_client_certificate() -> None:
    gw = issue(CA, "gw-0001", now=NOW)
    cert = gw.cert
    assert gw.common_name == "gw-0001"
    assert cert.not_valid_after_utc == NOW + timedelta(days=825)
    assert list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [
        ExtendedKeyUsageOID.CLIENT_AUTH
    ]
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    with pytest.raises(x509.ExtensionNotFound):
        cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert verify_issued_by(cert, CA.cert) and not verify_issued_by(cert, create_ca("x", now=NOW).cert)
    assert isinstance(gw.key.curve, ec.SECP256R1)


def test_server_certificate_names() -> None:
    cert = issue(CA, "broker", now=NOW, server_names=("localhost", "127.0.0.1", "::1")).cert
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1")]
    assert list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [
        ExtendedKeyUsageOID.SERVER_AUTH
    ]


def test_openssl_agrees(tmp_path: Path) -> None:
    gw = issue(CA, "gw-0001", now=NOW)
    (tmp_path / "ca.pem").write_bytes(CA.cert_pem())
    (tmp_path / "gw.pem").write_bytes(gw.cert_pem())
    at = str(int(NOW.timestamp()))
    ok = subprocess.run(
        [
            "openssl",
            "verify",
            "-attime",
            at,
            "-purpose",
            "sslclient",
            "-CAfile",
            tmp_path / "ca.pem",
            tmp_path / "gw.pem",
        ],
        capture_output=True,
        text=True,
    )
    assert ok.returncode == 0, ok.stdout + ok.stderr


def test_issue_for_an_existing_key() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    cert = issue_for_key(CA, "gw-0009", key.public_key(), now=NOW, days=30)
    assert cert.public_key().public_numbers() == key.public_key().public_numbers()  # type: ignore[union-attr]
    with pytest.raises(ProvisioningError) as err:
        issue_for_key(CA, "gw-0009", ec.generate_private_key(ec.SECP384R1()).public_key(), now=NOW)
    assert err.value.reason == "wrong_key_type"
    with pytest.raises(ProvisioningError):
        issue(CA, "gw", now=NOW.replace(tzinfo=None))
    with pytest.raises(ProvisioningError):
        issue(CA, "", now=NOW)
    with pytest.raises(ProvisioningError):
        issue(CA, "gw", now=NOW, days=0)


def test_write_and_load_certified_key(tmp_path: Path) -> None:
    gw = issue(CA, "gw-0001", now=NOW)
    key_path, cert_path = tmp_path / "k" / "gw.key.pem", tmp_path / "k" / "gw.cert.pem"
    gw.write(key_path, cert_path)
    assert mode(key_path) == 0o600 and mode(cert_path) == 0o644
    assert sorted(p.name for p in key_path.parent.iterdir()) == ["gw.cert.pem", "gw.key.pem"]  # no temp files
    loaded = load_certified_key(key_path, cert_path)
    assert loaded.cert == gw.cert and loaded.key_pem() == gw.key_pem()


def test_load_certified_key_errors(tmp_path: Path) -> None:
    gw, other = issue(CA, "gw-0001", now=NOW), issue(CA, "gw-0002", now=NOW)
    gw.write(tmp_path / "a.key", tmp_path / "a.pem")
    other.write(tmp_path / "b.key", tmp_path / "b.pem")
    (tmp_path / "junk").write_bytes(b"junk")
    ed = ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    (tmp_path / "ed.key").write_bytes(ed)
    cases = {
        ("a.key", "b.pem"): "key_mismatch",
        ("missing", "a.pem"): "not_found",
        ("junk", "a.pem"): "bad_pem",
        ("a.key", "junk"): "bad_pem",
        ("ed.key", "a.pem"): "wrong_key_type",
    }
    for (k, c), reason in cases.items():
        with pytest.raises(ProvisioningError) as err:
            load_certified_key(tmp_path / k, tmp_path / c)
        assert err.value.reason == reason, (k, c)


def raw(key: object) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)  # type: ignore[attr-defined,no-any-return]


def test_hub_keys_write_and_load(tmp_path: Path) -> None:
    keys = new_hub_keys()
    keys.write(tmp_path / "hub")
    assert mode(tmp_path / "hub" / HUB_SEALING_FILE) == 0o600
    assert mode(tmp_path / "hub" / HUB_SIGNING_FILE) == 0o600
    assert mode(tmp_path / "hub" / HUB_PUBLIC_FILE) == 0o644
    loaded = HubKeys.load(tmp_path / "hub")
    assert raw(loaded.sealing.public_key()) == raw(keys.sealing.public_key())
    assert raw(loaded.signing.public_key()) == raw(keys.signing.public_key())
    public = HubPublicKeys.load(tmp_path / "hub" / HUB_PUBLIC_FILE)
    assert raw(public.sealing) == raw(keys.sealing.public_key())
    assert set(json.loads((tmp_path / "hub" / HUB_PUBLIC_FILE).read_text())) == {"sealing", "signing"}
    again = HubPublicKeys.from_pem(keys.public().to_pem())
    assert raw(again.signing) == raw(keys.signing.public_key())


def test_hub_keys_errors(tmp_path: Path) -> None:
    keys = new_hub_keys()
    pem = keys.public().to_pem()
    with pytest.raises(ProvisioningError) as err:
        HubPublicKeys.from_pem({"sealing": pem["signing"], "signing": pem["sealing"]})
    assert err.value.reason == "wrong_key_type"
    with pytest.raises(ProvisioningError):
        HubPublicKeys.from_pem({"sealing": pem["sealing"]})
    (tmp_path / "p.json").write_text("[]")
    with pytest.raises(ProvisioningError):
        HubPublicKeys.load(tmp_path / "p.json")
    with pytest.raises(ProvisioningError) as err:
        HubPublicKeys.load(tmp_path / "none.json")
    assert err.value.reason == "not_found"
    keys.write(tmp_path / "hub")
    (tmp_path / "hub" / HUB_SIGNING_FILE).write_bytes((tmp_path / "hub" / HUB_SEALING_FILE).read_bytes())
    with pytest.raises(ProvisioningError) as err:
        HubKeys.load(tmp_path / "hub")
    assert err.value.reason == "wrong_key_type"


def test_ca_bundle_and_crl(tmp_path: Path) -> None:
    other = create_ca("other", now=NOW)
    (tmp_path / "bundle.pem").write_bytes(CA.cert_pem() + other.cert_pem())
    assert load_ca_certs(tmp_path / "bundle.pem") == [CA.cert, other.cert]
    gw = issue(CA, "gw-0001", now=NOW)
    crl = x509.load_pem_x509_crl(revocation_list(CA, [gw.cert.serial_number], now=NOW))
    assert crl.is_signature_valid(CA.key.public_key())
    assert crl.get_revoked_certificate_by_serial_number(gw.cert.serial_number) is not None
    assert crl.next_update_utc == NOW + timedelta(days=30)
