"""``edge-provision enroll`` on the gateway: the gateway's own key (made here, never copied off
the device) and a certificate signing request for the hub administrator.

The key is P-256, written 0600 (owned by the service user when run as root, so the agent can read
it under its unit and nobody else can). An existing key is reused, so enrolling twice gives the
same identity; ``new_key`` replaces it (a compromised or lost certificate). The CSR's subject
carries the gateway id (CN), the province (ST) and the station (OU); ``sign`` checks the last two
against what the administrator types. The gateway id, when not given, is derived from the key
(``gw-`` and 12 hex digits of its hash): unique without any coordination.
"""

from __future__ import annotations

import io
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from provisioning._files import PRIVATE_MODE, PUBLIC_MODE, write_atomic
from provisioning.ca import check_id, check_station, key_sha256
from provisioning.errors import ProvisioningError

__all__ = ["DEFAULT_CSR", "DEFAULT_KEY", "Enrollment", "csr_qr", "default_gateway_id", "enroll", "key_problem"]

DEFAULT_KEY = Path("/etc/station-edge/gateway.key.pem")
DEFAULT_CSR = Path("/etc/station-edge/gateway.csr.pem")
QR_BORDER = 2  # modules of quiet zone: the CSR's QR (version 14) then fits an 80-column terminal


@dataclass(frozen=True, slots=True)
class Enrollment:
    gateway_id: str
    key_path: Path
    csr_path: Path
    csr_pem: bytes
    key_created: bool


def default_gateway_id(public_key: ec.EllipticCurvePublicKey) -> str:
    return f"gw-{key_sha256(public_key)[:12]}"


def key_problem(st_mode: int) -> str | None:
    """What is wrong with a private key file's mode, or None. Pure (over ``os.stat``)."""
    if not stat.S_ISREG(st_mode):
        return "is not a regular file"
    if st_mode & 0o077:
        return f"is readable or writable by others (mode {stat.S_IMODE(st_mode):04o})"
    return None


def load_private_key(path: Path) -> ec.EllipticCurvePrivateKey:
    """The gateway's key, refused when others may read it."""
    try:
        st = path.lstat()
        data = path.read_bytes()
    except FileNotFoundError:
        raise ProvisioningError("not_found", f"{path}: no gateway key (edge-provision enroll)") from None
    except OSError as exc:
        raise ProvisioningError("unreadable", f"{path}: {exc.strerror}") from None
    problem = key_problem(st.st_mode)
    if problem is not None:
        raise ProvisioningError("key_permissions", f"{path} {problem}; fix: chmod 600 {path}")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError):
        raise ProvisioningError("bad_pem", f"{path}: not a PEM private key") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise ProvisioningError("wrong_key_type", f"{path}: not a P-256 key")
    return key


def enroll(
    *,
    province: str,
    station: str,
    key_path: Path = DEFAULT_KEY,
    csr_path: Path = DEFAULT_CSR,
    gateway_id: str | None = None,
    owner: tuple[int, int] | None = None,
    new_key: bool = False,
) -> Enrollment:
    """Make (or reuse) the key and write the CSR (0644). ``owner`` (uid, gid) is applied to the key."""
    check_id("province", province)
    check_station(station)
    created = new_key or not key_path.exists()
    if created:
        key = ec.generate_private_key(ec.SECP256R1())
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        write_atomic(key_path, pem, mode=PRIVATE_MODE)
    else:
        key = load_private_key(key_path)
    if owner is not None:
        os.chown(key_path, *owner)
    gw = check_id("gateway id", gateway_id or default_gateway_id(key.public_key()))
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(
            x509.Name(
                [
                    x509.NameAttribute(NameOID.COMMON_NAME, gw),
                    x509.NameAttribute(NameOID.STATE_OR_PROVINCE_NAME, province),
                    x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, station),
                ]
            )
        )
        .sign(key, hashes.SHA256())
    )
    csr_pem = csr.public_bytes(serialization.Encoding.PEM)
    write_atomic(csr_path, csr_pem, mode=PUBLIC_MODE)
    return Enrollment(gateway_id=gw, key_path=key_path, csr_path=csr_path, csr_pem=csr_pem, key_created=created)


def csr_qr(csr_pem: bytes) -> str:
    """The CSR as a QR code drawn with Unicode half blocks (two rows per line), for a phone camera.

    segno (pure Python, no dependencies) makes the symbol, error level L. The QR holds the base64
    of the DER request on one line (the PEM without its header lines: a smaller symbol, version
    13-14 for a P-256 CSR, at most 77 columns with a 2-module quiet zone), which
    ``edge-provision sign`` takes as it is, whatever the phone's reader hands over.
    """
    import segno

    body = b"".join(line for line in csr_pem.splitlines() if line and not line.startswith(b"-----"))
    qr = segno.make(body.decode("ascii"), error="l", micro=False)
    buf = io.StringIO()
    qr.terminal(out=buf, compact=True, border=QR_BORDER)
    return buf.getvalue()
