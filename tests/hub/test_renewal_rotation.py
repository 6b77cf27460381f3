"""hub.renewal, key rotation: a renewal request for a *new* key is issued only under a pending
``rotate-keys`` command of the hub's own ledger (a real SQLite HubStore), once; every other case
is refused ``key_mismatch`` as before; the superseded serial goes to the renewal ledger and is
never renewed again, also after a restart."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from edge_agent.sync.renewal import make_request, verify_reply
from hub.commands import issue
from hub.errors import StoreError
from hub.renewal import RenewalAuthority, rotation_problem
from hub.store import HubStore, open_store
from provisioning.ca import read_renewal_ledger, revoke
from provisioning.pki import CertifiedKey
from tests.provisioning.renewal_support import NOW, RenewalProvince, make_renewal_province
from tests.provisioning.support import PROVINCE
from wire.renewal import RenewalRequest, decode_reply, encode_request
from wire.topics import topic

REQ = topic(PROVINCE, "gw-a", "renew/req")


@pytest.fixture
def province(tmp_path: Path) -> RenewalProvince:
    return make_renewal_province(tmp_path)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[HubStore]:
    s = open_store(tmp_path / "hubstore")
    yield s
    s.close()


def command(
    province: RenewalProvince, store: HubStore, kind: str = "rotate-keys", gw: str = "gw-a", **kw: object
) -> str:
    args: dict[str, object] = {"log_lines": 0} if kind == "diagnostics" else {}
    issued = issue(
        store,
        province.hub_keys.signing,
        gateway_id=gw,
        province=PROVINCE,
        kind=kind,
        args=args,
        now=NOW,
        expires_in_s=float(kw.get("expires_in_s", 600.0)),  # type: ignore[arg-type]
    )
    return issued.record.cmd_id


def authority(province: RenewalProvince, store: HubStore | None, at: timedelta = timedelta()) -> RenewalAuthority:
    auth = province.authority(clock_at=NOW + at)
    auth.commands = None if store is None else store.command
    return auth


def rotate(
    province: RenewalProvince, auth: RenewalAuthority, gw: CertifiedKey, cmd_id: str | None, at: timedelta = timedelta()
) -> tuple[str, str, ec.EllipticCurvePrivateKey, bytes, str]:
    """A rotation request for a fresh key: (status, reason, new key, reply, request id)."""
    new = ec.generate_private_key(ec.SECP256R1())
    req, payload = make_request(gw, "gw-a", now=NOW + at, new_key=new, cmd_id=cmd_id)
    out = auth.handle(REQ, payload)
    assert out.reply is not None
    reply = decode_reply(out.reply, province.hub_keys.public().signing)
    return reply.status, reply.reason, new, out.reply, req.request_id


def test_a_pending_rotate_keys_command_allows_one_key_change(province: RenewalProvince, store: HubStore) -> None:
    gw, _, _ = province.gateway("gw-a", days=400)
    cmd_id = command(province, store)
    auth = authority(province, store)
    status, reason, new, reply, request_id = rotate(province, auth, gw, cmd_id)
    assert (status, reason) == ("issued", "")
    # the gateway accepts it for the new key (not newer than a 400-day certificate: a rotation need not be)
    chain = verify_reply(
        reply,
        hub_signing=province.hub_keys.public().signing,
        cas=[province.ca.ca.cert],
        gateway=gw,
        gateway_id="gw-a",
        request_id=request_id,
        now=NOW,
        new_key=new,
    )
    assert chain[0].public_key() == new.public_key() and auth.rotated_total == 1
    # the ledger: the new certificate, then the old serial superseded (revoked_at set)
    lines = [json.loads(x) for x in (province.root / "hub" / "renewals.jsonl").read_text().splitlines()]
    assert [int(x["serial"], 16) for x in lines] == [chain[0].serial_number, gw.cert.serial_number]
    assert lines[1]["superseded_by"] == format(chain[0].serial_number, "x") and lines[1]["revoked_at"]
    entries = read_renewal_ledger(province.root / "hub" / "renewals.jsonl")  # provisioning still reads it
    assert entries[1].revoked_at == NOW and entries[0].revoked_at is None
    assert lines[1]["cmd_id"] == cmd_id
    # the same command cannot rotate again, even from the new certificate with its key, nor at a
    # restarted hub (the ledger remembers the command too)
    rotated = CertifiedKey(key=new, cert=chain[0])
    assert rotate(province, auth, rotated, cmd_id)[:2] == ("refused", "key_mismatch")
    assert rotate(province, authority(province, store), rotated, cmd_id)[:2] == ("refused", "key_mismatch")
    # the superseded certificate is never renewed again (same key, no rotation) ...
    assert _renew_same_key(auth, gw) == "superseded"
    # ... by a restarted hub either (read back from the ledger)
    assert _renew_same_key(authority(province, store), gw) == "superseded"
    # while the new one renews as usual
    assert _renew_same_key(auth, rotated) == ""
    # a gateway whose reply was lost still holds the old certificate: a new command lets it rotate
    assert rotate(province, auth, gw, command(province, store))[:2] == ("issued", "")
    # the offline CA can revoke everything the gateway ever had, the superseded serial included
    done = revoke(province.ca_dir, "gw-a", now=NOW, renewals=entries)
    assert gw.cert.serial_number in {c.serial for c in done}


def _renew_same_key(auth: RenewalAuthority, gw: CertifiedKey) -> str:
    out = auth.handle(REQ, make_request(gw, "gw-a", now=NOW)[1])
    assert out.reply is not None
    return out.reason


def test_a_new_key_without_a_usable_command_is_key_mismatch(province: RenewalProvince, store: HubStore) -> None:
    gw, _, _ = province.gateway("gw-a", days=400)
    auth = authority(province, store)
    assert rotate(province, auth, gw, None)[:2] == ("refused", "key_mismatch")  # a plain renewal, new key
    assert rotate(province, auth, gw, "no-such-command")[:2] == ("refused", "key_mismatch")
    diag = command(province, store, "diagnostics")
    assert rotate(province, auth, gw, diag)[:2] == ("refused", "key_mismatch")  # not a rotate-keys command
    theirs = command(province, store, gw="gw-b")
    assert rotate(province, auth, gw, theirs)[:2] == ("refused", "key_mismatch")  # another gateway's
    # expired at the hub's clock (the request itself is current)
    short = command(province, store, expires_in_s=60.0)
    later = timedelta(minutes=2)
    assert rotate(province, authority(province, store, later), gw, short, later)[:2] == ("refused", "key_mismatch")
    # already answered by the gateway
    answered = command(province, store)
    assert store.record_command_result(
        cmd_id=answered, gateway_id="gw-a", state="applied", detail="", data={}, result_at=NOW
    )
    assert rotate(province, auth, gw, answered)[:2] == ("refused", "key_mismatch")
    # no ledger at all (serve without a store lookup), and a ledger that fails
    pending = command(province, store)
    assert rotate(province, authority(province, None), gw, pending)[:2] == ("refused", "key_mismatch")
    failing = authority(province, store)

    def broken(cmd_id: str) -> None:
        raise StoreError("database is locked")

    failing.commands = broken
    assert rotate(province, failing, gw, pending)[:2] == ("refused", "key_mismatch")
    assert auth.rejected == {"key_mismatch": 5} and auth.rotated_total == 0  # the others ran on their own
    # and the pending command still works once
    assert rotate(province, auth, gw, pending)[:2] == ("issued", "")


def test_the_new_key_must_be_on_the_same_curve_and_prove_possession(province: RenewalProvince, store: HubStore) -> None:
    gw, _, _ = province.gateway("gw-a", days=400)
    auth = authority(province, store)
    cmd_id = command(province, store)
    other_curve = ec.generate_private_key(ec.SECP384R1())
    req, _ = make_request(gw, "gw-a", now=NOW, new_key=other_curve, cmd_id=cmd_id)
    assert auth.handle(REQ, encode_request(req, gw.key)).reason == "key_mismatch"
    # a CSR whose signature does not verify (not made by the key it names)
    req, _ = make_request(gw, "gw-a", now=NOW, new_key=ec.generate_private_key(ec.SECP256R1()), cmd_id=cmd_id)
    der = bytearray(x509.load_pem_x509_csr(req.csr_pem).public_bytes(serialization.Encoding.DER))
    der[-3] ^= 0x01  # inside the signature
    bad_csr = x509.load_der_x509_csr(bytes(der)).public_bytes(serialization.Encoding.PEM)
    forged = RenewalRequest(**{**{f: getattr(req, f) for f in req.__dataclass_fields__}, "csr_pem": bad_csr})
    assert auth.handle(REQ, encode_request(forged, gw.key)).reason == "csr_invalid"
    # the request must still be signed by the current key: signed by the new one it is refused
    new = ec.generate_private_key(ec.SECP256R1())
    req, _ = make_request(gw, "gw-a", now=NOW, new_key=new, cmd_id=cmd_id)
    assert auth.handle(REQ, encode_request(req, new)).reason == "bad_signature"
    assert auth.rotated_total == 0
    assert rotate(province, auth, gw, cmd_id)[:2] == ("issued", "")


def test_rotation_problem_names_each_case(province: RenewalProvince, store: HubStore) -> None:
    cmd_id = command(province, store)
    record = store.command(cmd_id)
    assert rotation_problem(record, gateway_id="gw-a", now=NOW) is None
    assert rotation_problem(None, gateway_id="gw-a", now=NOW) == "no such command in the ledger"
    assert "this gateway" in (rotation_problem(record, gateway_id="gw-b", now=NOW) or "")
    assert rotation_problem(record, gateway_id="gw-a", now=NOW + timedelta(hours=1)) == "the command has expired"


def test_the_cmd_tool_sends_both_rotations_unless_told_otherwise(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from hub.cli import build_parser, main
    from hub.cmd_cli import _args_of

    common = ["--store", str(tmp_path), "--broker", "mqtts://127.0.0.1:1", "--ca", "c", "--cert", "c", "--key", "k"]
    common += ["--hub-keys", str(tmp_path)]

    def args(*flags: str) -> object:
        return _args_of(build_parser().parse_args(["cmd", "gw-a", "rotate-keys", *flags, *common]))

    assert args() == {"identity": True, "data": True}
    assert args("--no-data") == {"identity": True, "data": False}
    assert args("--no-identity", "--data") == {"identity": False, "data": True}
    assert main(["cmd", "gw-a", "rotate-keys", "--no-identity", "--no-data", *common]) == 2
    assert "nothing to rotate" in capsys.readouterr().err
