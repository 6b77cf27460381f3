"""The whole path with real processes: the administrator's CA and ``broker-config``, a gateway's
``enroll`` -> ``sign`` -> ``apply`` (models signed with the province's key, the development key
no longer trusted), a real Mosquitto on the generated files, ``edge-hub serve`` with the hub
identity ``broker-config`` issued, and ``edge-agent run`` on the config ``apply`` wrote: readings
reach the hub and are acknowledged, ``check`` passes against the live broker; then the gateway is
revoked, and both ``edge-agent status`` and ``check`` say so."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from edge_agent.errors import EXIT_OK, EXIT_OPERATOR
from edge_agent.provision_cli import main
from hub.store import open_store
from models import signing
from provisioning.ca import revoke
from provisioning.enroll import enroll
from tests.fixtures.mosquitto import find_mosquitto
from tests.fixtures.pki import kernel_now
from tests.provisioning.support import PROVINCE, STATION, GeneratedBroker, make_province
from tests.provisioning.test_check import _province_models

pytestmark = pytest.mark.skipif(find_mosquitto() is None, reason="mosquitto not installed (apt-get install mosquitto)")
ROOT = Path(__file__).parents[2]
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}


def wait_for(pred: Callable[[], bool], timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def status(state: Path) -> dict:  # type: ignore[type-arg]
    try:
        return json.loads((state / "status.json").read_text())  # type: ignore[no-any-return]
    except (OSError, ValueError):
        return {}


def stop(proc: subprocess.Popen[bytes]) -> str:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        _, err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate(timeout=10)
    return (err or b"").decode(errors="replace")


@pytest.mark.timeout(360)
def test_enrolled_gateway_syncs_then_is_revoked(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    province = make_province(tmp_path, kernel_now(tmp_path))
    files = province.broker_files()
    etc, state = tmp_path / "etc", tmp_path / "state"
    # the administrator signs the shipped models with the province's key; the gateway gets them
    models = tmp_path / "models"
    _province_models(Path(signing.__file__).parent / "built", models, province.ca_dir / "model-signing.key.pem")
    etc.mkdir()
    config = etc / "agent.toml"
    config.write_text(
        f'version = 1\nmodels_dir = "{models}"\n[gateway]\nid = "placeholder"\nprovince = "{PROVINCE}"\n'
        f'state_dir = "{state}"\n[scheduler]\nstatus_interval_s = 1\n'
        '[[devices]]\nid = "oxi-1"\nformat = "masimo-ascii"\ntransport = "simulated"\nspeed = 20.0\n'
        "[sync]\nbatch_max = 20\nbatch_max_age_s = 0.2\nheartbeat_s = 5\n"
    )
    done = enroll(province=PROVINCE, station=STATION, key_path=etc / "gateway.key.pem", csr_path=etc / "gw.csr")
    (tmp_path / "gw.csr").write_bytes(done.csr_pem)
    from provisioning.ca import sign_csr

    _, bundle = sign_csr(province.ca_dir, done.csr_pem, province=PROVINCE, station=STATION, now=province.now)
    (tmp_path / "gw.bundle.json").write_bytes(bundle)
    assert (
        main(
            ["apply", str(tmp_path / "gw.bundle.json"), "--config", str(config), "--key", str(etc / "gateway.key.pem")]
        )
        == EXIT_OK
    )
    capsys.readouterr()

    hub_key, hub_cert = files.hub_identities["hub-1"]
    hub_argv = [
        sys.executable, "-m", "hub.cli", "serve", "--store", str(tmp_path / "hub"), "--broker", province.broker_url,
        "--ca", str(files.ca), "--cert", str(hub_cert), "--key", str(hub_key),
        "--hub-keys", str(province.ca_dir / "hub-keys"),
    ]  # fmt: skip
    broker = GeneratedBroker(files, province.port)
    hub_log = tmp_path / "hub.log"
    with broker:
        with open(hub_log, "ab") as log:
            hub = subprocess.Popen(hub_argv, stdout=log, stderr=log, env=ENV, cwd=ROOT)
        agent = subprocess.Popen(
            [sys.executable, "-m", "edge_agent.cli", "run", "--log-level", "WARNING", "--config", str(config)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=ENV, cwd=ROOT,
        )  # fmt: skip
        try:

            def hub_holds() -> int:
                try:
                    with open_store(tmp_path / "hub") as s:
                        return s.count_readings(done.gateway_id)
                except Exception:
                    return 0

            wait_for(lambda: hub_holds() >= 20, 60, f"readings at the hub (log: {hub_log})")
            wait_for(lambda: status(state).get("sync", {}).get("synced", 0) >= 20, 30, "acks at the gateway")
            s = status(state)
            assert s["sync"]["state"] == "connected" and s["scoring"]["available"] is True
            assert s["scoring"]["dev_key_trusted"] is False
            assert main(["check", "--config", str(config), "--json", "--skip", "clock", "--timeout", "2"]) == EXIT_OK
            items = {i["name"]: i["status"] for i in json.loads(capsys.readouterr().out)["items"]}
            assert items["broker"] == items["models"] == items["model-trust"] == items["service"] == "ok", items

            # the administrator revokes the gateway; the broker restarts with the new CRL
            revoke(province.ca_dir, done.gateway_id, now=province.now)
            province.broker_files()
            broker.restart()
            # the agent reconnects with full-jitter backoff (1 s doubling, capped at 300 s): after the
            # failed attempts while the broker restarts, the next one may be a minute or more away
            wait_for(lambda: status(state).get("sync", {}).get("state") == "auth_refused", 240, "auth_refused")
            code = main(["check", "--config", str(config), "--skip", "clock", "--skip", "service", "--timeout", "2"])
            out = capsys.readouterr().out
            assert code == EXIT_OPERATOR
            broker_line = next(line for line in out.splitlines() if line.split()[1] == "broker")
            assert broker_line.startswith("FAIL") and "revoked" in broker_line
            shown = subprocess.run(
                [sys.executable, "-m", "edge_agent.cli", "status", "--config", str(config)],
                capture_output=True, text=True, env=ENV, cwd=ROOT, timeout=60,
            )  # fmt: skip
            assert "auth_refused" in shown.stdout + shown.stderr
        finally:
            err = stop(agent)
            stop(hub)
        assert agent.returncode == 0, err[-3000:]
