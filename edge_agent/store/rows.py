"""Reading and alert rows, pure logic: the SQL column lists, sealing readings into row tuples,
opening rows back, the alerts' additional data. No I/O (nonces are drawn by the caller)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from cryptography.exceptions import InvalidTag

from device_drivers.records import Reading
from edge_agent.store import codec
from edge_agent.store.envelope import NONCE_LEN, TAG_LEN, Cipher, Sealer, aad, reading_aad
from edge_agent.store.errors import DecryptError, TamperError

READING_COLS = "seq, measured_us, received_delta_us, vital, device_id, pidx, key_id, cipher, payload"
INSERT_READING = f"INSERT INTO readings ({READING_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
INSERT_READING_OR_IGNORE = INSERT_READING.replace("INSERT", "INSERT OR IGNORE", 1)
# columns as selected: blobs cast, so a row whose storage class was changed still reads (then fails to open)
SELECT_READING = (
    "r.seq, r.measured_us, r.received_delta_us, r.vital, CAST(r.device_id AS TEXT), CAST(r.pidx AS BLOB), "
    "r.key_id, r.cipher, CAST(r.payload AS BLOB)"
)
ALERT_COLS = "alert_id, rev, updated_us, is_open, key_id, cipher, CAST(payload AS BLOB)"

Row = tuple[Any, ...]
Encrypt = Callable[[bytes, bytes, bytes | None], bytes]


def seal_readings(
    readings: Sequence[Reading],
    *,
    gateway_id: str,
    key_id: int,
    cipher: Cipher,
    encrypt: Encrypt,
    pidx: Callable[[str], bytes],
    nonces: bytes,
) -> list[Row]:
    """Seal ``readings`` into ``readings`` row tuples (column order of INSERT_READING); ``nonces``
    holds NONCE_LEN fresh random bytes per reading. The additional data binds each payload to its
    seq, the gateway and every clear column."""
    if len(nonces) != NONCE_LEN * len(readings):
        raise ValueError("one nonce per reading")
    c = int(cipher)
    to_us = codec.to_us
    plaintext = codec.reading_plaintext
    vcodes = codec.VITAL_CODES
    out: list[Row] = []
    append = out.append
    for n, r in enumerate(readings):
        seq = r.seq
        m_at = r.measured_at
        mus = to_us(m_at)
        r_at = r.received_at
        rus = mus if r_at is m_at else to_us(r_at)  # the same object when the device sent no clock
        vital = vcodes[r.vital]
        pid = r.patient_id
        p = None if pid is None else pidx(pid)
        nonce = nonces[n * NONCE_LEN : (n + 1) * NONCE_LEN]
        ad = reading_aad(gateway_id, seq, vital, mus, rus, r.device_id, p, key_id, c)
        append(
            (
                seq,
                mus,
                rus - mus,
                vital,
                r.device_id,
                p,
                key_id,
                c,
                nonce + encrypt(nonce, plaintext(r, gateway_id), ad),
            )
        )
    return out


def open_reading(row: Sequence[Any], sealer: Sealer, gateway_id: str) -> Reading:
    """Open one row selected with SELECT_READING. Raises DecryptError/TamperError (or ValueError,
    KeyError, TypeError for a payload that decrypts but does not decode)."""
    seq, mus, delta, vital, device_id, pidx, key_id, cipher, payload = row
    rus = mus + delta
    try:
        aead = sealer.aead(key_id, Cipher(cipher))
    except KeyError:
        raise DecryptError("readings", str(seq), f"unknown or destroyed key {key_id}") from None
    except ValueError:
        raise DecryptError("readings", str(seq), f"unknown cipher {cipher}") from None
    if len(payload) < NONCE_LEN + TAG_LEN:
        raise TamperError("readings", str(seq), "payload truncated")
    try:
        plain = aead.decrypt(
            payload[:NONCE_LEN],
            payload[NONCE_LEN:],
            reading_aad(gateway_id, seq, vital, mus, rus, device_id, pidx, key_id, cipher),
        )
    except InvalidTag:
        raise TamperError("readings", str(seq), "authentication failed") from None
    return codec.reading_from_row(seq, mus, rus, vital, device_id, plain, gateway_id)


def alert_aad(
    gateway_id: str, alert_id: str, rev: int, updated_us: int, is_open: int, key_id: int, cipher: int
) -> bytes:
    return aad("alerts", gateway_id, alert_id, (rev, updated_us, is_open, key_id, cipher))


def open_alert(row: Sequence[Any], sealer: Sealer, gateway_id: str) -> dict[str, object]:
    """Open one row selected with ALERT_COLS. Raises DecryptError/TamperError or ValueError."""
    alert_id, rev, updated_us, is_open, key_id, cipher, payload = row
    if not sealer.has_key(key_id):
        raise DecryptError("alerts", alert_id, f"unknown or destroyed key {key_id}")
    plain = sealer.open(
        key_id,
        Cipher(cipher),
        payload,
        alert_aad(gateway_id, alert_id, rev, updated_us, is_open, key_id, cipher),
        table="alerts",
        row=alert_id,
    )
    return codec.alert_from_plaintext(plain)


def seq_of(uid: str, gateway_id: str) -> int | None:
    """The seq of one of this gateway's uids (``"{gateway_id}:{seq}"``), else None."""
    gw, _, seq = uid.rpartition(":")
    if gw != gateway_id or not seq.isdigit():
        return None
    return int(seq)


def alert_columns(payload: dict[str, object], updated_at: datetime) -> tuple[bytes, int, int]:
    """An alert's sealed plaintext, its ``is_open`` flag (state is not 'cleared') and ``updated_us``."""
    is_open = 0 if payload.get("state") in ("cleared",) else 1
    return codec.alert_plaintext(payload), is_open, codec.to_us(updated_at)
