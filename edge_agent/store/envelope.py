"""The crypto envelope, pure logic: AEAD seal/open, additional data, the patient index hash.

A sealed payload is ``nonce (12 bytes) || ciphertext || tag (16 bytes)``. The cipher is chosen
per record and recorded next to it (:class:`Cipher`), so AES-256-GCM and ChaCha20-Poly1305
records read back side by side. The additional data binds a payload to its table, its row id,
the gateway id, the key id, the cipher and every clear column of the row: moving a payload to
another row, replaying it elsewhere, editing a clear column or truncating it fails to open.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import os
from collections.abc import Iterable
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305

from edge_agent.store.errors import TamperError

NONCE_LEN = 12
TAG_LEN = 16
KEY_LEN = 32
PATIENT_INDEX_LEN = 8  # bytes of HMAC-SHA256 kept; queries re-check the decrypted patient id


class Cipher(enum.IntEnum):
    """Stored per record (column ``cipher``); values are part of the on-disk format."""

    AES_256_GCM = 1
    CHACHA20_POLY1305 = 2

    @property
    def label(self) -> str:
        return _LABELS[self]


_LABELS = {Cipher.AES_256_GCM: "AES-256-GCM", Cipher.CHACHA20_POLY1305: "ChaCha20-Poly1305"}


def cpu_has_aes(cpuinfo: str | None = None) -> bool:
    """True when the CPU advertises AES instructions (x86 ``flags: ... aes``, ARM ``Features: ... aes``)."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(encoding="ascii", errors="replace")
        except OSError:
            return False
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() in ("flags", "features") and "aes" in value.split():
            return True
    return False


def choose_cipher(force: Cipher | str | None = None, cpuinfo: str | None = None) -> Cipher:
    """AES-256-GCM where the CPU has AES instructions, else ChaCha20-Poly1305; ``force`` overrides."""
    if force is not None:
        if isinstance(force, Cipher):
            return force
        by_name = {c.label.lower(): c for c in Cipher} | {"aes": Cipher.AES_256_GCM, "chacha": Cipher.CHACHA20_POLY1305}
        try:
            return by_name[force.lower()]
        except KeyError:
            raise ValueError(f"unknown cipher {force!r}; use one of {', '.join(c.label for c in Cipher)}") from None
    return Cipher.AES_256_GCM if cpu_has_aes(cpuinfo) else Cipher.CHACHA20_POLY1305


def new_key() -> bytes:
    return os.urandom(KEY_LEN)


class Sealer:
    """AEAD objects per (key id, cipher), built once; ``seal``/``open`` are the only crypto calls."""

    def __init__(self) -> None:
        self._keys: dict[int, bytes] = {}
        self._aeads: dict[tuple[int, Cipher], AESGCM | ChaCha20Poly1305] = {}

    def set_keys(self, keys: dict[int, bytes]) -> None:
        self._keys = dict(keys)
        self._aeads = {k: v for k, v in self._aeads.items() if k[0] in self._keys}

    def has_key(self, key_id: int) -> bool:
        return key_id in self._keys

    def _aead(self, key_id: int, cipher: Cipher) -> AESGCM | ChaCha20Poly1305:
        aead = self._aeads.get((key_id, cipher))
        if aead is None:
            key = self._keys[key_id]  # KeyError: caller reports "unknown key"
            aead = AESGCM(key) if cipher is Cipher.AES_256_GCM else ChaCha20Poly1305(key)
            self._aeads[(key_id, cipher)] = aead
        return aead

    def seal(self, key_id: int, cipher: Cipher, plaintext: bytes, aad: bytes, nonce: bytes | None = None) -> bytes:
        """Seal with a fresh random nonce (``nonce`` lets a batch draw its random nonces in one call)."""
        if nonce is None:
            nonce = os.urandom(NONCE_LEN)
        elif len(nonce) != NONCE_LEN:
            raise ValueError("nonce must be 12 bytes")
        sealed: bytes = self._aead(key_id, cipher).encrypt(nonce, plaintext, aad)
        return nonce + sealed

    def aead(self, key_id: int, cipher: Cipher) -> AESGCM | ChaCha20Poly1305:
        return self._aead(key_id, cipher)

    def open(self, key_id: int, cipher: Cipher, sealed: bytes, aad: bytes, *, table: str, row: str) -> bytes:
        """Decrypt or raise :class:`TamperError` (KeyError for an unknown key id is the caller's)."""
        if len(sealed) < NONCE_LEN + TAG_LEN:
            raise TamperError(table, row, "payload truncated")
        try:
            plain: bytes = self._aead(key_id, cipher).decrypt(sealed[:NONCE_LEN], sealed[NONCE_LEN:], aad)
            return plain
        except InvalidTag:
            raise TamperError(table, row, "authentication failed") from None


def aad(table: str, gateway_id: str, row_id: str | int, fields: Iterable[object]) -> bytes:
    """Additional data: table, gateway, row id and the clear columns, unambiguously joined."""
    parts = [
        table,
        gateway_id,
        str(row_id),
        *("" if f is None else (f.hex() if isinstance(f, bytes) else str(f)) for f in fields),
    ]
    return "\x1f".join(parts).encode("utf-8")


def reading_aad(
    gateway_id: str,
    seq: int,
    vital: int,
    measured_us: int,
    received_us: int,
    device_id: str,
    pidx: bytes | None,
    key_id: int,
    cipher: int,
) -> bytes:
    """``aad("readings", gateway_id, seq, (vital, measured_us, received_us, device_id, pidx, key_id, cipher))``,
    written out for the hot path (a test checks both give the same bytes)."""
    p = pidx.hex() if pidx is not None else ""
    return (
        f"readings\x1f{gateway_id}\x1f{seq}\x1f{vital}\x1f{measured_us}\x1f{received_us}"
        f"\x1f{device_id}\x1f{p}\x1f{key_id}\x1f{cipher}"
    ).encode()


def patient_index(index_key: bytes, patient_id: str) -> bytes:
    """Keyed hash of a patient id (HMAC-SHA256, truncated): lets queries find a patient's rows
    without the id ever being stored in clear; without the key it cannot be reversed by guessing ids."""
    return hmac.new(index_key, patient_id.encode("utf-8"), hashlib.sha256).digest()[:PATIENT_INDEX_LEN]


KEY_CHECK_PLAINTEXT = b"station-edge key check v1"
