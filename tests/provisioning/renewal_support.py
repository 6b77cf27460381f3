"""A province for renewal tests at a pinned time: the CA directory ``ca init`` makes (with its
issuing CA), gateways enrolled and signed like in the field, and a :class:`RenewalAuthority`."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509

from hub.renewal import RenewalAuthority
from provisioning.ca import CaDir, init_ca, open_ca, sign_csr
from provisioning.enroll import enroll
from provisioning.issuing import ISSUING_DIR, load_issuing
from provisioning.pki import CertifiedKey, HubKeys, load_certified_key
from tests.provisioning.support import PROVINCE, STATION

NOW = datetime(2026, 6, 1, 8, 0, tzinfo=UTC)


@dataclass
class RenewalProvince:
    root: Path
    ca_dir: Path
    now: datetime

    @property
    def ca(self) -> CaDir:
        return open_ca(self.ca_dir)

    @property
    def issuing(self) -> CertifiedKey:
        return load_issuing(self.ca_dir / ISSUING_DIR)

    @property
    def hub_keys(self) -> HubKeys:
        return HubKeys.load(self.ca_dir / "hub-keys")

    @property
    def trusted(self) -> list[x509.Certificate]:
        return [self.ca.ca.cert, self.issuing.cert]

    def ca_file(self) -> Path:
        """What a gateway has as ``sync.ca``: the provincial CA only (from its bundle)."""
        path = self.root / "gateway-ca.pem"
        path.write_bytes(self.ca.ca.cert_pem())
        return path

    def gateway(
        self, gateway_id: str, *, days: int = 10, now: datetime | None = None
    ) -> tuple[CertifiedKey, Path, Path]:
        """A gateway enrolled and signed (``days`` of life): (certified key, key path, cert path)."""
        home = self.root / "gateways" / f"{gateway_id}-{uuid.uuid4().hex[:6]}"
        done = enroll(
            province=PROVINCE,
            station=STATION,
            key_path=home / "gateway.key.pem",
            csr_path=home / "gateway.csr.pem",
            gateway_id=gateway_id,
        )
        _, bundle = sign_csr(
            self.ca_dir, done.csr_pem, province=PROVINCE, station=STATION, now=now or self.now, days=days,
            replace_key=True,
        )  # fmt: skip
        from provisioning.bundle import parse_bundle

        cert_path = home / "gateway.cert.pem"
        cert_path.write_bytes(parse_bundle(bundle).cert_pem())
        return load_certified_key(home / "gateway.key.pem", cert_path), home / "gateway.key.pem", cert_path

    def authority(self, *, clock_at: datetime | None = None, crl: Path | None = None) -> RenewalAuthority:
        at = clock_at or self.now
        return RenewalAuthority(
            self.issuing,
            self.hub_keys.signing,
            self.trusted,
            lambda: at,
            crl=crl if crl is not None else self.ca_dir / "crl.pem",
            ledger=self.root / "hub" / "renewals.jsonl",
        )


def make_renewal_province(root: Path, now: datetime = NOW) -> RenewalProvince:
    ca_dir = root / "ca"
    init_ca(ca_dir, province=PROVINCE, broker="mqtts://127.0.0.1:8883", name="renewal test CA", now=now)
    return RenewalProvince(root=root, ca_dir=ca_dir, now=now)
