"""Certificate revocation: the list of revoked serials a CA keeps, and the CRL the broker reads.

Mosquitto (OpenSSL) refuses every client once the CRL's ``next_update`` has passed, so a CRL is
reissued well before that (``edge-provision crl``, from a daily timer): :func:`crl_problem`
says when one is stale. Pure.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from cryptography import x509

from provisioning.errors import ProvisioningError
from provisioning.pki import CertifiedKey, revocation_list

__all__ = ["CRL_DAYS", "CRL_REISSUE_BEFORE", "build_crl", "crl_problem", "is_revoked", "load_crl"]

CRL_DAYS = 30
CRL_REISSUE_BEFORE = timedelta(days=7)


def build_crl(ca: CertifiedKey, serials: Iterable[int], *, now: datetime, days: int = CRL_DAYS) -> bytes:
    """A PEM CRL signed by ``ca`` listing ``serials`` (sorted, de-duplicated), valid ``days``."""
    return revocation_list(ca, sorted(set(serials)), now=now, days=days)


def load_crl(pem: bytes, ca: x509.Certificate) -> x509.CertificateRevocationList:
    """Parse a PEM CRL and check that ``ca`` signed it."""
    try:
        crl = x509.load_pem_x509_crl(pem)
    except ValueError:
        raise ProvisioningError("bad_pem", "not a PEM CRL") from None
    public = ca.public_key()
    if crl.issuer != ca.subject or not crl.is_signature_valid(public):  # type: ignore[arg-type]
        raise ProvisioningError("bad_signature", "the CRL is not signed by this CA")
    return crl


def is_revoked(crl: x509.CertificateRevocationList, cert: x509.Certificate) -> bool:
    return crl.get_revoked_certificate_by_serial_number(cert.serial_number) is not None


def crl_problem(crl: x509.CertificateRevocationList, *, now: datetime) -> str | None:
    """What is wrong with the CRL at ``now`` (expired, or due for reissue), else None."""
    nxt = crl.next_update_utc
    if nxt is None:
        return "the CRL has no next update time"
    if now >= nxt:
        return f"the CRL expired at {nxt.isoformat()}: the broker refuses every client"
    if nxt - now < CRL_REISSUE_BEFORE:
        return f"the CRL expires at {nxt.isoformat()}: reissue it (edge-provision crl)"
    return None
