"""``check`` judges the certificate the agent connects with: after a renewal, the renewed one in
the state dir (issued by the hub's issuing CA, itself issued by the configured CA)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from edge_agent.errors import EXIT_OK
from edge_agent.provision_cli import AgentGateway, main
from edge_agent.sync.renewal import CertStore, make_request, verify_reply
from provisioning import check as ck
from provisioning.enroll import enroll
from tests.provisioning.renewal_support import make_renewal_province
from tests.provisioning.support import PROVINCE, STATION
from wire.topics import topic


def test_check_uses_the_renewed_certificate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    NOW = datetime.now(UTC)
    province = make_renewal_province(tmp_path, NOW)
    etc, state = tmp_path / "etc", tmp_path / "state"
    state.mkdir()
    done = enroll(province=PROVINCE, station=STATION, key_path=etc / "gw.key", csr_path=etc / "gw.csr")
    from provisioning.ca import sign_csr

    _, bundle = sign_csr(province.ca_dir, done.csr_pem, province=PROVINCE, station=STATION, now=NOW, days=10)
    (tmp_path / "b.json").write_bytes(bundle)
    config = etc / "agent.toml"
    config.write_text(f'version = 1\n[gateway]\nid = "x"\nprovince = "{PROVINCE}"\nstate_dir = "{state}"\n')
    assert main(["apply", str(tmp_path / "b.json"), "--config", str(config), "--key", str(etc / "gw.key")]) == EXIT_OK
    capsys.readouterr()

    def cert_item(at: object) -> ck.Item:
        probe = ck.gather(
            config, now=at, gateway=AgentGateway(lambda: at), skip=frozenset({"service", "broker"}),  # type: ignore[arg-type]
            clock_synced=lambda: True,
        )  # fmt: skip
        return next(i for i in ck.run_checks(probe) if i.name == "certificate")

    assert cert_item(NOW).status == "warn"  # 10 days left
    assert cert_item(NOW + timedelta(days=11)).status == "fail"

    # the renewal the agent would have done
    from provisioning.bundle import parse_bundle
    from provisioning.pki import load_certified_key

    cert_path = tmp_path / "current.cert.pem"
    cert_path.write_bytes(parse_bundle(bundle).cert_pem())
    gw = load_certified_key(etc / "gw.key", cert_path)
    req, payload = make_request(gw, done.gateway_id, now=NOW)
    out = province.authority().handle(topic(PROVINCE, done.gateway_id, "renew/req"), payload)
    assert out.reply is not None
    chain = verify_reply(
        out.reply, hub_signing=province.hub_keys.public().signing, cas=[province.ca.ca.cert], gateway=gw,
        gateway_id=done.gateway_id, request_id=req.request_id, now=NOW,
    )  # fmt: skip
    CertStore(state).write(chain)
    item = cert_item(NOW + timedelta(days=11))
    assert item.status == "ok", item
    assert cert_item(NOW).status == "ok"
