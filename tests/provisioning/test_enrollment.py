"""enroll -> sign -> apply through the ``edge-provision`` CLI (in process), and every refusal of
``apply``: a tampered bundle, a bundle for another key, a key readable by others, a CA other than
the one the technician was given or the one installed, an expired certificate. The installed
config is loaded by the agent's own loader."""

from __future__ import annotations

import json
import os
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge_agent.config import load_config
from edge_agent.errors import EXIT_OK, EXIT_OPERATOR, EXIT_USAGE
from edge_agent.provision_cli import AgentGateway
from models import signing
from provisioning.bundle import BundleError, fingerprint, parse_bundle
from provisioning.ca import init_ca, open_ca, sign_csr
from provisioning.cli import run as cli_run
from provisioning.enroll import csr_qr
from provisioning.render import Managed, render_config, toml_value

EXAMPLE = Path(__file__).parents[2] / "edge_agent" / "example-config.toml"
STATION = "Trạm Y tế xã Minh Tân"
NOW = datetime(2031, 7, 4, 12, 0, tzinfo=UTC)  # the CLI's clock here: far from today, never the wall clock


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli_run(list(argv), clock=lambda: NOW, gateway=AgentGateway())
    out, err = capsys.readouterr()
    return code, out, err


class Site:
    """A CA dir (hub administrator) and a gateway's /etc/station-edge, both in tmp_path."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.ca = tmp / "ca"
        self.etc = tmp / "etc"
        self.key = self.etc / "gateway.key.pem"
        self.csr = self.etc / "gateway.csr.pem"
        self.config = self.etc / "agent.toml"
        self.bundle = tmp / "gw.bundle.json"

    def enroll(self, capsys: pytest.CaptureFixture[str], *extra: str) -> str:
        code, out, err = run(
            capsys, "enroll", "--province", "ha-giang", "--station", STATION, "--key", str(self.key),
            "--csr", str(self.csr), *extra,
        )  # fmt: skip
        assert code == EXIT_OK, err
        return out

    def sign(self, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, str, str]:
        return run(
            capsys, "sign", str(self.csr), "--ca-dir", str(self.ca), "--province", "ha-giang", "--station", STATION,
            "--out", str(self.bundle), *extra,
        )  # fmt: skip

    def apply(self, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, str, str]:
        return run(capsys, "apply", str(self.bundle), "--config", str(self.config), "--key", str(self.key), *extra)


@pytest.fixture
def site(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Site:
    s = Site(tmp_path)
    code, out, err = run(
        capsys, "ca", "init", "--dir", str(s.ca), "--province", "ha-giang", "--broker", "mqtts://hub.example.vn"
    )
    assert code == EXIT_OK, err
    assert fingerprint(open_ca(s.ca).ca.cert) in out
    return s


def test_enroll_sign_apply(site: Site, capsys: pytest.CaptureFixture[str]) -> None:
    site.etc.mkdir()
    site.config.write_text(EXAMPLE.read_text())
    out = site.enroll(capsys)
    assert stat.S_IMODE(site.key.stat().st_mode) == 0o600
    assert "▄" in out or "█" in out  # the QR code
    assert "BEGIN CERTIFICATE REQUEST" in out
    code, out, err = site.sign(capsys)
    assert code == EXIT_OK, err
    fp = fingerprint(open_ca(site.ca).ca.cert)
    code, out, err = site.apply(capsys, "--ca-fingerprint", fp.replace(":", "").lower())
    assert code == EXIT_OK, err
    cfg = load_config(site.config)
    bundle = parse_bundle(site.bundle.read_bytes())
    assert cfg.gateway.id == bundle.gateway_id and cfg.gateway.id.startswith("gw-")
    assert (cfg.gateway.province, cfg.gateway.station_name) == ("ha-giang", STATION)
    assert cfg.sync is not None and cfg.sync.broker == "mqtts://hub.example.vn" and cfg.sync.key == site.key
    assert cfg.sync.cert.read_bytes() == bundle.cert_pem()
    # kept from the example: devices, store, the other scoring keys, the timezone
    assert [d.id for d in cfg.devices] == ["oximeter-1"] and cfg.scoring.renotify_s == 900
    assert cfg.gateway.timezone == "Asia/Ho_Chi_Minh"
    # production trust: only the province's model-signing key
    assert not cfg.scoring.allow_dev_key
    [trusted] = cfg.scoring.trusted_keys
    assert trusted.read_bytes() == (site.ca / "model-signing.pub.pem").read_bytes()
    assert signing.load_public_key(trusted)  # an Ed25519 key the scorer can use
    assert stat.S_IMODE(site.config.stat().st_mode) == 0o640
    assert not [p for p in site.etc.iterdir() if p.name.startswith(".")]  # no temp file left
    # applying a renewed bundle (same key) replaces the enrollment directory atomically
    first_dir = cfg.sync.cert.parent
    assert site.sign(capsys)[0] == EXIT_OK
    assert site.apply(capsys)[0] == EXIT_OK
    again = load_config(site.config)
    assert again.sync is not None and again.sync.cert.parent != first_dir and not first_dir.exists()
    assert [d.id for d in again.devices] == ["oximeter-1"]


def test_apply_without_a_config_writes_a_minimal_one(site: Site, capsys: pytest.CaptureFixture[str]) -> None:
    site.enroll(capsys, "--gateway-id", "gw-0042", "--no-qr")
    assert site.sign(capsys)[0] == EXIT_OK
    code, _, err = site.apply(capsys)
    assert code == EXIT_OK, err
    cfg = load_config(site.config)
    assert cfg.gateway.id == "gw-0042" and cfg.devices == ()


def test_tampered_bundle_is_refused(site: Site, capsys: pytest.CaptureFixture[str]) -> None:
    site.enroll(capsys, "--no-qr")
    assert site.sign(capsys)[0] == EXIT_OK
    original = site.bundle.read_bytes()
    for member, value in (("broker", "mqtts://evil.example"), ("station", "elsewhere"), ("province", "p2")):
        doc = json.loads(original)
        doc[member] = value
        site.bundle.write_text(json.dumps(doc))
        code, _, err = site.apply(capsys)
        assert code == EXIT_OPERATOR
        assert "altered" in err and "fix:" in err and len(err.strip().splitlines()) == 1
    doc = json.loads(original)
    doc["hub_keys"]["sealing"], doc["hub_keys"]["signing"] = doc["hub_keys"]["signing"], doc["hub_keys"]["sealing"]
    site.bundle.write_text(json.dumps(doc))
    assert site.apply(capsys)[0] == EXIT_OPERATOR
    site.bundle.write_bytes(original[:100])
    code, _, err = site.apply(capsys)
    assert code == EXIT_OPERATOR and "bundle cannot be used" in err
    assert not site.config.exists()  # nothing installed by any refused apply


def test_bundle_for_another_key_is_refused(site: Site, capsys: pytest.CaptureFixture[str]) -> None:
    site.enroll(capsys, "--no-qr")
    assert site.sign(capsys)[0] == EXIT_OK
    site.enroll(capsys, "--no-qr", "--new-key")  # the key changed after the CSR was signed
    code, _, err = site.apply(capsys)
    assert code == EXIT_OPERATOR and "another key" in err and "fix:" in err
    assert not site.config.exists()


def test_world_readable_key_is_refused(site: Site, capsys: pytest.CaptureFixture[str]) -> None:
    site.enroll(capsys, "--no-qr")
    assert site.sign(capsys)[0] == EXIT_OK
    for mode in (0o644, 0o640, 0o604):
        site.key.chmod(mode)
        code, _, err = site.apply(capsys)
        assert code == EXIT_OPERATOR and "readable or writable by others" in err and "chmod 600" in err
    site.key.chmod(0o600)
    assert site.apply(capsys)[0] == EXIT_OK
    # enroll reuses the key and refuses it too when it is readable by others
    site.key.chmod(0o644)
    code, _, err = run(capsys, "enroll", "--province", "ha-giang", "--station", "x", "--key", str(site.key))
    assert code == EXIT_OPERATOR and "chmod 600" in err


def test_wrong_or_changed_ca_is_refused(site: Site, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    site.enroll(capsys, "--no-qr")
    assert site.sign(capsys)[0] == EXIT_OK
    code, _, err = site.apply(capsys, "--ca-fingerprint", "AB:CD")
    assert code == EXIT_OPERATOR and "fingerprint" in err
    assert site.apply(capsys)[0] == EXIT_OK
    # a second CA (another province, or an impostor) signs the same CSR: refused over the installed one
    other = tmp_path / "other-ca"
    init_ca(other, province="ha-giang", broker="mqtts://x.example", name="impostor", now=NOW)
    _, bundle = sign_csr(other, site.csr.read_bytes(), province="ha-giang", station=STATION, now=NOW)
    site.bundle.write_bytes(bundle)
    code, _, err = site.apply(capsys)
    assert code == EXIT_OPERATOR and "another CA" in err
    code, _, err = site.apply(capsys, "--ca-fingerprint", fingerprint(open_ca(other).ca.cert))
    assert code == EXIT_OK, err


def test_expired_and_future_certificates_are_refused(site: Site, capsys: pytest.CaptureFixture[str]) -> None:
    site.enroll(capsys, "--no-qr")
    now = NOW
    for when, days, word in ((now - timedelta(days=10), 1, "expired"), (now + timedelta(days=5), 30, "clock")):
        _, bundle = sign_csr(site.ca, site.csr.read_bytes(), province="ha-giang", station=STATION, now=when, days=days)
        site.bundle.write_bytes(bundle)
        code, _, err = site.apply(capsys)
        assert code == EXIT_OPERATOR and word in err, err


def test_sign_checks_the_request(site: Site, capsys: pytest.CaptureFixture[str]) -> None:
    site.enroll(capsys, "--no-qr", "--gateway-id", "gw-0007")
    code, _, err = run(
        capsys, "sign", str(site.csr), "--ca-dir", str(site.ca), "--province", "ha-giang", "--station", "Other"
    )
    assert code == EXIT_OPERATOR and "station" in err
    code, _, err = run(capsys, "sign", str(site.csr), "--ca-dir", str(site.ca), "--province", "hn", "--station", "x")
    assert code == EXIT_OPERATOR and "province" in err
    site.csr.write_bytes(site.csr.read_bytes().replace(b"M", b"N", 1))
    code, _, err = site.sign(capsys)
    assert code == EXIT_OPERATOR and "request" in err
    # the same gateway id with a new key: refused unless --replace, which revokes the old one
    site.enroll(capsys, "--no-qr", "--gateway-id", "gw-0007")
    assert site.sign(capsys)[0] == EXIT_OK
    site.enroll(capsys, "--no-qr", "--gateway-id", "gw-0007", "--new-key")
    code, _, err = site.sign(capsys)
    assert code == EXIT_OPERATOR and "--replace" in err
    assert site.sign(capsys, "--replace")[0] == EXIT_OK
    assert len(open_ca(site.ca).revoked_serials()) == 1
    code, out, _ = run(capsys, "revoke", "gw-0007", "--ca-dir", str(site.ca))
    assert code == EXIT_OK and "revoked gw-0007" in out and len(open_ca(site.ca).revoked_serials()) == 2
    assert run(capsys, "revoke", "gw-nope", "--ca-dir", str(site.ca))[0] == EXIT_OPERATOR
    assert run(capsys, "crl", "--ca-dir", str(site.ca))[0] == EXIT_OK


def test_usage_errors(site: Site, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys)[0] == EXIT_USAGE
    assert run(capsys, "enroll", "--province", "a b", "--station", "s", "--key", str(site.key))[0] == EXIT_USAGE
    code, _, err = run(capsys, "ca", "init", "--dir", str(site.ca), "--province", "ha-giang", "--broker", "mqtts://h")
    assert code == EXIT_OPERATOR and "already holds a CA" in err
    assert run(capsys, "apply", str(site.tmp / "missing.json"))[0] == EXIT_USAGE


def test_csr_qr_fits_a_terminal(site: Site, capsys: pytest.CaptureFixture[str]) -> None:
    site.enroll(capsys, "--no-qr", "--gateway-id", "gw-" + "a" * 61)
    lines = csr_qr(site.csr.read_bytes()).splitlines()
    assert max(len(line) for line in lines) <= 80 and len(lines) <= 45
    # what a phone's QR reader hands over (the one-line base64) is what sign takes
    body = b"".join(x for x in site.csr.read_bytes().splitlines() if not x.startswith(b"-----"))
    (site.tmp / "from-phone.txt").write_bytes(body)
    code, _, err = run(
        capsys, "sign", str(site.tmp / "from-phone.txt"), "--ca-dir", str(site.ca), "--province", "ha-giang",
        "--station", STATION, "--out", str(site.bundle),
    )  # fmt: skip
    assert code == EXIT_OK, err


def test_bundle_parse_errors(site: Site, capsys: pytest.CaptureFixture[str]) -> None:
    site.enroll(capsys, "--no-qr")
    assert site.sign(capsys)[0] == EXIT_OK
    doc = json.loads(site.bundle.read_bytes())
    cases = {
        "bad_json": b"[]",
        "bad_format": json.dumps({**doc, "format": "v2"}).encode(),
        "bad_signature": json.dumps({k: v for k, v in doc.items() if k != "signature"}).encode(),
    }
    for reason, data in cases.items():
        with pytest.raises(BundleError) as err:
            parse_bundle(data)
        assert err.value.reason == reason


@given(st.one_of(st.text(max_size=40), st.booleans(), st.integers(-(2**40), 2**40), st.lists(st.text(max_size=8))))
def test_toml_value_round_trips(value: object) -> None:
    import tomllib

    assert tomllib.loads(f"v = {toml_value(value)}")["v"] == value


def test_render_keeps_unmanaged_tables_and_replaces_managed_ones() -> None:
    existing = (
        'version = 1\nmodels_dir = "/m"\n[gateway]\nid = "old"\nprovince = "x"\ntimezone = "Asia/Bangkok"\n'
        '[scoring]\nallow_dev_key = true\ntrusted_keys = [\n  "/a",\n]\nwindow_s = 600\n'
        '[[devices]]\nid = "d1"  # keep me\nformat = "masimo-ascii"\n[sync]\nbroker = "mqtts://old"\nbatch_max = 7\n'
    )
    managed = Managed("gw-1", "p", 'st "q"', "mqtts://new", "/ca", "/cert", "/key", "/hub", ("/model",), "note")
    import tomllib

    doc = tomllib.loads(render_config(existing, managed))
    assert doc["gateway"] == {"id": "gw-1", "province": "p", "timezone": "Asia/Bangkok", "station_name": 'st "q"'}
    assert doc["scoring"] == {"window_s": 600, "allow_dev_key": False, "trusted_keys": ["/model"]}
    assert doc["sync"]["broker"] == "mqtts://new" and doc["sync"]["batch_max"] == 7
    assert doc["devices"] == [{"id": "d1", "format": "masimo-ascii"}] and doc["models_dir"] == "/m"
    assert "# keep me" in render_config(existing, managed)
    assert os.linesep == "\n"


def test_broker_config_reissues_a_stale_crl(tmp_path: Path) -> None:
    """An expired CRL makes Mosquitto refuse every client: broker-config never hands one out."""
    from cryptography import x509

    from provisioning.ca import broker_config
    from provisioning.crl import crl_problem

    now = datetime(2031, 1, 1, tzinfo=UTC)
    init_ca(tmp_path / "ca", province="p01", broker="mqtts://h", name="ca", now=now - timedelta(days=60))
    files = broker_config(tmp_path / "ca", tmp_path / "out", hosts=("h",), hub_users=("hub-1",), now=now)
    crl = x509.load_pem_x509_crl(files.crl.read_bytes())
    assert crl_problem(crl, now=now) is None
    assert crl_problem(crl, now=now + timedelta(days=25)) is not None  # due for reissue within a week
    assert "expired" in str(crl_problem(crl, now=now + timedelta(days=31)))
