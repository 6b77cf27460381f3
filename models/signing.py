"""Ed25519 signatures over model manifests.

The signed bytes are the manifest's canonical JSON without its ``signature`` member (keys
sorted, no whitespace, ASCII, no NaN). The manifest carries the model file's sha256, so the
signature covers the model too.

Keys: in production the provincial hub signs models with its model-signing key and gateways
trust only that public key. The models shipped in ``models/built/`` are signed with a
**development key**, derived deterministically from the public seed phrase below so anyone can
rebuild and re-sign them: it protects nothing and must never be trusted on a production gateway
(set ``scoring.trusted_keys`` and ``scoring.allow_dev_key = false``). Its public key is committed
as ``models/keys/dev-model-signing.pub.pem``.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

ALGORITHM = "ed25519"

# DEVELOPMENT ONLY. Public on purpose: the shipped models must be rebuildable by anyone.
DEV_SEED_PHRASE = b"station-edge DEVELOPMENT model-signing key v1 -- NOT FOR PRODUCTION USE"
DEV_PUBLIC_KEY_FILE = Path(__file__).resolve().parent / "keys" / "dev-model-signing.pub.pem"
# The same public key as raw bytes, so a gateway needs neither the seed nor the PEM file
# (tests check that the three agree).
DEV_PUBLIC_KEY_HEX = "fceb9b7f1339b88acab51a6fd24920b4fd98289e6a4e0ae18cea3e7b5b508aea"


def dev_public_key() -> Ed25519PublicKey:
    """The development public key (DEVELOPMENT ONLY: its private half is public)."""
    return Ed25519PublicKey.from_public_bytes(bytes.fromhex(DEV_PUBLIC_KEY_HEX))


def dev_private_key() -> Ed25519PrivateKey:
    """The development signing key (DEVELOPMENT ONLY), rebuilt from its public seed phrase."""
    return Ed25519PrivateKey.from_private_bytes(hashlib.sha256(DEV_SEED_PHRASE).digest())


def public_raw(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id(key: Ed25519PublicKey) -> str:
    """First 16 hex digits of the sha256 of the raw public key."""
    return hashlib.sha256(public_raw(key)).hexdigest()[:16]


def public_pem(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def load_public_key(path: Path) -> Ed25519PublicKey:
    key = serialization.load_pem_public_key(path.read_bytes())
    if not isinstance(key, Ed25519PublicKey):
        raise TypeError(f"{path.name}: not an Ed25519 public key")
    return key


def load_private_key(path: Path) -> Ed25519PrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise TypeError(f"{path.name}: not an Ed25519 private key")
    return key


def canonical_bytes(manifest: Mapping[str, Any]) -> bytes:
    body = {k: v for k, v in manifest.items() if k != "signature"}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode()


def sign(manifest: Mapping[str, Any], key: Ed25519PrivateKey) -> dict[str, Any]:
    """A copy of ``manifest`` with its ``signature`` member set."""
    out = dict(manifest)
    out["signature"] = {
        "alg": ALGORITHM,
        "key_id": key_id(key.public_key()),
        "value": base64.b64encode(key.sign(canonical_bytes(manifest))).decode(),
    }
    return out


class SignatureError(Exception):
    """The manifest is unsigned, signed by an unknown key, or the signature does not verify."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason  # unsigned | unknown_key | bad_signature


def verify(manifest: Mapping[str, Any], trusted: Mapping[str, Ed25519PublicKey]) -> str:
    """Check the signature against ``trusted`` (key id → key); returns the key id that signed."""
    sig = manifest.get("signature")
    if not isinstance(sig, dict) or sig.get("alg") != ALGORITHM:
        raise SignatureError("unsigned", "manifest has no ed25519 signature")
    kid = sig.get("key_id")
    if not isinstance(kid, str) or kid not in trusted:
        raise SignatureError("unknown_key", f"signed by untrusted key {kid!r}")
    try:
        raw = base64.b64decode(str(sig.get("value", "")), validate=True)
        trusted[kid].verify(raw, canonical_bytes(manifest))
    except (InvalidSignature, ValueError) as exc:
        raise SignatureError("bad_signature", "signature does not verify") from exc
    return kid
