"""The hub's online issuing CA: renews gateway certificates without the provincial CA's key.

The provincial CA (``ca.key.pem``) stays offline. ``ca init`` also makes an *issuing* CA, signed
by it: P-256, path length 0 (it can sign end-entity certificates only), ``ISSUING_DAYS`` of
life. Its key is copied to the hub workers (like ``hub-keys/``); a stolen worker can then issue
gateway certificates until the issuing CA expires or is replaced, but cannot make another CA,
sign models (a separate offline key) or touch the root. The broker and the hub trust both
certificates (``broker-config`` writes them into ``ca.pem``), and the CRL file carries one CRL
per CA, because OpenSSL wants the CRL of the certificate's own issuer.

A renewed certificate is for the same key and CN, lasts ``RENEWED_DAYS`` (never past the
issuing CA's own expiry). Pure, apart from :func:`write_issuing` / :func:`load_issuing`.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from provisioning.errors import ProvisioningError
from provisioning.pki import CA_KEY_USAGE, CLOCK_SKEW, CertifiedKey, issue_for_key, load_certified_key

__all__ = [
    "ISSUING_CERT",
    "ISSUING_DAYS",
    "ISSUING_DIR",
    "ISSUING_KEY",
    "RENEWED_DAYS",
    "create_issuing_ca",
    "issue_renewal",
    "load_issuing",
    "write_issuing",
]

ISSUING_DIR = "issuing"
ISSUING_KEY = "issuing.key.pem"
ISSUING_CERT = "issuing.cert.pem"
ISSUING_DAYS = 400
RENEWED_DAYS = 90


def create_issuing_ca(root: CertifiedKey, *, now: datetime, days: int = ISSUING_DAYS) -> CertifiedKey:
    """An intermediate CA signed by ``root`` (path length 0), valid at most until the root is."""
    if now.tzinfo is None or now.utcoffset() is None:
        raise ProvisioningError("naive_time", "now must be timezone-aware")
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, f"{_root_name(root)} issuing {now:%Y%m%d}"[:64])])
    not_after = min(now + timedelta(days=days), root.cert.not_valid_after_utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(root.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            CA_KEY_USAGE,
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(root.key.public_key()), critical=False)
        .sign(root.key, hashes.SHA256())
    )
    return CertifiedKey(key=key, cert=cert)


def _root_name(root: CertifiedKey) -> str:
    return root.common_name[:40]


def write_issuing(directory: Path, issuing: CertifiedKey) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    issuing.write(directory / ISSUING_KEY, directory / ISSUING_CERT)


def load_issuing(directory: Path) -> CertifiedKey:
    """The issuing CA in ``directory`` (``issuing.key.pem`` + ``issuing.cert.pem``)."""
    issuing = load_certified_key(directory / ISSUING_KEY, directory / ISSUING_CERT)
    try:
        bc = issuing.cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        bc = None
    if bc is None or not bc.ca:
        raise ProvisioningError("not_a_ca", f"{directory / ISSUING_CERT} is not a CA certificate")
    return issuing


def issue_renewal(
    issuing: CertifiedKey,
    gateway_id: str,
    public_key: ec.EllipticCurvePublicKey,
    *,
    now: datetime,
    days: int = RENEWED_DAYS,
) -> x509.Certificate:
    """A client certificate for ``gateway_id``'s existing key, never outliving the issuing CA."""
    left = issuing.cert.not_valid_after_utc - now
    whole_days = min(days, left.days)
    if whole_days < 1:
        raise ProvisioningError("issuing_ca_expiring", "the issuing CA expires within a day: replace it")
    return issue_for_key(issuing, gateway_id, public_key, now=now, days=whole_days)
