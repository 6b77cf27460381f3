"""``edge-provision check``: every item's failures from crafted probes (the items are pure), and
``gather`` + the CLI over real files: an applied enrollment, the shipped models re-signed with
the province's key, a key made readable by others, a config still trusting the development key."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from edge_agent.errors import EXIT_OK, EXIT_OPERATOR, EXIT_USAGE
from edge_agent.provision_cli import AgentGateway, main
from models import signing
from provisioning import check as ck
from provisioning.ca import init_ca, sign_csr
from provisioning.check import FileFacts, ModelFacts, Probe, TlsResult, run_checks
from provisioning.enroll import enroll
from provisioning.pki import create_ca, issue

NOW = datetime(2031, 3, 1, 12, 0, tzinfo=UTC)  # far from today: the items take the probe's time only
CA = create_ca("ca", now=NOW - timedelta(days=100))
CERT = issue(CA, "gw-1", now=NOW - timedelta(days=10), days=365).cert
DEV = signing.key_id(signing.dev_public_key())
GOOD = Probe(
    now=NOW,
    config_path=Path("/etc/station-edge/agent.toml"),
    enrolled=True,
    gateway_id="gw-1",
    key=FileFacts(Path("/k"), 0o100600),
    key_matches_cert=True,
    cert=CERT,
    ca=(CA.cert,),
    tls=TlsResult(True),
    broker="mqtts://h:8883",
    clock_synced=True,
    serial_ports=(("oxi", "/dev/ttyUSB0", True),),
    ble_devices=1,
    ble_adapters=("hci0",),
    disk_path=Path("/var/lib/station-edge"),
    disk_free=2 * 2**30,
    disk_total=16 * 2**30,
    quota_bytes=512 * 2**20,
    models=(ModelFacts("news2.manifest.json", "prov"),),
    trusted_key_ids=("prov",),
    dev_key_id=DEV,
    service="active",
)


def status(p: Probe) -> dict[str, str]:
    return {i.name: i.status for i in run_checks(p)}


def test_a_good_gateway_passes_every_item() -> None:
    assert set(status(GOOD).values()) == {"ok"}
    assert all(i.line().startswith("ok ") for i in run_checks(GOOD))


FAILURES = {
    "config": [replace(GOOD, config_error="devices[0].format: unknown format 'x'"), replace(GOOD, enrolled=False)],
    "key": [
        replace(GOOD, key=FileFacts(Path("/k"), None, "missing")),
        replace(GOOD, key=FileFacts(Path("/k"), 0o100644)),
        replace(GOOD, key=FileFacts(Path("/k"), 0o100640)),
        replace(GOOD, key=FileFacts(Path("/k"), 0o040700)),
        replace(GOOD, key_matches_cert=False),
    ],
    "certificate": [
        replace(GOOD, cert=None, cert_error="missing"),
        replace(GOOD, now=NOW + timedelta(days=400)),
        replace(GOOD, now=NOW - timedelta(days=11)),  # clock behind the certificate
        replace(GOOD, ca=(create_ca("other", now=NOW).cert,)),
    ],
    "broker": [
        replace(GOOD, tls=TlsResult(False, reason, "x"))
        for reason in ("unreachable", "revoked", "expired", "unknown_ca", "refused", "server_untrusted")
    ],
    "clock": [replace(GOOD, clock_synced=False)],
    "serial": [replace(GOOD, serial_ports=(("oxi", "/dev/ttyUSB0", False), ("nonin", "usb:0403:6001", True)))],
    "ble": [replace(GOOD, ble_adapters=())],
    "disk": [
        replace(GOOD, disk_free=None, disk_total=None),
        replace(GOOD, disk_free=10 * 2**20),
        replace(GOOD, disk_free=2**30, disk_total=40 * 2**30),
    ],
    "models": [
        replace(GOOD, models=()),
        replace(GOOD, models=(ModelFacts("a", "prov", "signature does not verify"),)),
        replace(GOOD, models=(ModelFacts("a", DEV),)),
        replace(GOOD, models=(ModelFacts("a", "someone"),)),
        replace(GOOD, models_error="scoring.trusted_keys: /x: missing"),
    ],
    "model-trust": [
        replace(GOOD, allow_dev_key=True),
        replace(GOOD, trusted_key_ids=("prov", DEV)),
        replace(GOOD, trusted_key_ids=(), models=(ModelFacts("a", DEV),), allow_dev_key=False),
    ],
    "service": [replace(GOOD, service=s) for s in ("inactive", "failed", "unknown", "activating")],
}


@pytest.mark.parametrize(
    ("name", "probe"), [(n, p) for n, probes in FAILURES.items() for p in probes], ids=lambda x: getattr(x, "name", x)
)
def test_each_item_reports_its_failure(name: str, probe: Probe) -> None:
    items = {i.name: i for i in run_checks(probe)}
    assert items[name].status == "fail", items[name]
    assert items[name].fix and "fix:" in items[name].line()
    others = {n for n, i in items.items() if i.status == "fail"} - {name}
    assert others <= {"models", "model-trust"}, others  # only the trust pair may fail together


def test_warnings_and_skips() -> None:
    assert status(replace(GOOD, now=NOW + timedelta(days=340)))["certificate"] == "warn"
    assert status(replace(GOOD, clock_synced=None))["clock"] == "warn"
    assert status(replace(GOOD, disk_free=300 * 2**20, disk_total=4 * 2**30))["disk"] == "warn"
    unenrolled = status(replace(GOOD, enrolled=False, key=None, tls=None, serial_ports=(), ble_devices=0))
    for name in ("key", "certificate", "broker", "serial", "ble", "model-trust"):
        assert unenrolled[name] == "skip", name
    assert status(replace(GOOD, service="failed", skipped=frozenset({"service"})))["service"] == "skip"
    assert status(replace(GOOD, service="running-no-systemd"))["service"] == "ok"


def _province_models(src: Path, dst: Path, key_path: Path) -> None:
    dst.mkdir()
    key = signing.load_private_key(key_path)
    for manifest in src.glob("*.manifest.json"):
        raw = json.loads(manifest.read_bytes())
        shutil.copy(src / raw["model_file"], dst / raw["model_file"])
        (dst / manifest.name).write_text(json.dumps(signing.sign(raw, key)))


def test_gather_and_cli_on_an_enrolled_gateway(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    now = datetime.now(UTC)
    ca_dir, etc = tmp_path / "ca", tmp_path / "etc"
    init_ca(ca_dir, province="p01", broker="mqtts://127.0.0.1:1", name="ca", now=now)
    done = enroll(province="p01", station="s", key_path=etc / "gw.key", csr_path=etc / "gw.csr")
    _, bundle = sign_csr(ca_dir, done.csr_pem, province="p01", station="s", now=now)
    (tmp_path / "b.json").write_bytes(bundle)
    state = tmp_path / "state"
    state.mkdir()
    models = tmp_path / "models"
    _province_models(Path(signing.__file__).parent / "built", models, ca_dir / "model-signing.key.pem")
    config = etc / "agent.toml"
    config.write_text(
        f'version = 1\nmodels_dir = "{models}"\n[gateway]\nid = "x"\nprovince = "p01"\nstate_dir = "{state}"\n'
    )
    assert main(["apply", str(tmp_path / "b.json"), "--config", str(config), "--key", str(etc / "gw.key")]) == EXIT_OK
    capsys.readouterr()

    probe = ck.gather(
        config, now=now, gateway=AgentGateway(), skip=frozenset({"service"}), timeout=1, clock_synced=lambda: True
    )
    got = status(probe)
    assert got["broker"] == "fail" and probe.tls is not None and probe.tls.reason == "unreachable"
    assert {k: v for k, v in got.items() if k != "broker"} == {
        "config": "ok", "key": "ok", "certificate": "ok", "clock": "ok", "serial": "skip", "ble": "skip",
        "disk": "ok", "models": "ok", "model-trust": "ok", "service": "skip",
    }  # fmt: skip

    code = main(
        ["check", "--config", str(config), "--json", "--skip", "broker", "--skip", "service", "--skip", "clock"]
    )
    doc = json.loads(capsys.readouterr().out)
    assert code == EXIT_OK and doc["ok"] is True and len(doc["items"]) == len(ck.CHECKS)

    # the key made readable by others, and the development key trusted again: both reported
    (etc / "gw.key").chmod(0o644)
    config.write_text(config.read_text().replace("allow_dev_key = false", "allow_dev_key = true"))
    code = main(["check", "--config", str(config), "--skip", "broker", "--skip", "service", "--timeout", "1"])
    out, err = capsys.readouterr()
    lines = {line.split()[1]: line for line in out.splitlines()}
    assert code == EXIT_OPERATOR
    assert lines["key"].startswith("FAIL") and "chmod 600" in lines["key"]
    assert lines["model-trust"].startswith("FAIL") and "development" in lines["model-trust"]
    assert "failed: key" in err

    # the shipped (development-signed) models on a production gateway: models fails
    config.write_text(config.read_text().replace(f'models_dir = "{models}"\n', ""))
    probe = ck.gather(
        config, now=now, gateway=AgentGateway(), skip=frozenset({"service", "broker"}), clock_synced=lambda: True
    )
    assert status(replace(probe, allow_dev_key=False))["models"] == "fail"

    # an altered model file is damage, not just "untrusted"
    victim = next(models.glob("*.onnx"))
    victim.write_bytes(victim.read_bytes() + b"\0")
    config.write_text(f'models_dir = "{models}"\n' + config.read_text())
    probe = ck.gather(
        config, now=now, gateway=AgentGateway(), skip=frozenset({"service", "broker"}), clock_synced=lambda: True
    )
    assert any("sha256" in m.error for m in probe.models)


def test_cli_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--config", str(tmp_path / "none.toml"), "--skip", "nonsense"]) == EXIT_USAGE
    assert main(["check", "--config", str(tmp_path / "none.toml"), "--skip", "clock"]) == EXIT_OPERATOR
    assert "FAIL config" in capsys.readouterr().out
