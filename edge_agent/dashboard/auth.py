"""Who may see the dashboard: the station PIN (an scrypt hash on disk), sessions that expire, a
CSRF token per session and a login rate limit. Pure logic with an injected clock; the only I/O is
reading and writing the PIN file (``read_pin_hash``/``write_pin_hash``).

The PIN file holds one line ``scrypt$<log2 n>$<r>$<p>$<salt b64>$<hash b64>``; it is written 0600
atomically. scrypt with n = 2^14, r = 8 takes 16 MiB and tens of milliseconds per try, which is
what makes a stolen file slow to brute-force; the rate limit is what makes the page slow to guess.
The hashing, the sessions and the limiter are shared with the hub's fleet page (webui.auth).
"""

from __future__ import annotations

from pathlib import Path

from webui.auth import (
    HASH_LEN,
    SALT_LEN,
    SCRYPT_LOG2_N,
    SCRYPT_P,
    SCRYPT_R,
    LoginLimiter,
    Session,
    Sessions,
    hash_secret,
    same_token,
    verify_secret,
    write_private_text,
)

__all__ = [
    "HASH_LEN",
    "MAX_PIN_LEN",
    "MIN_PIN_LEN",
    "SALT_LEN",
    "SCRYPT_LOG2_N",
    "SCRYPT_P",
    "SCRYPT_R",
    "LoginLimiter",
    "PinError",
    "PinFileError",
    "Session",
    "Sessions",
    "check_new_pin",
    "hash_pin",
    "read_pin_hash",
    "same_token",
    "verify_pin",
    "write_pin_hash",
]

MIN_PIN_LEN = 6
MAX_PIN_LEN = 128


class PinError(ValueError):
    """A PIN that cannot be set (too short, too long, control characters)."""


class PinFileError(Exception):
    """The PIN file is missing or unreadable (``reason`` says which)."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


def check_new_pin(pin: str) -> str:
    if len(pin) < MIN_PIN_LEN:
        raise PinError(f"the PIN must have at least {MIN_PIN_LEN} characters")
    if len(pin) > MAX_PIN_LEN:
        raise PinError(f"the PIN must have at most {MAX_PIN_LEN} characters")
    if not pin.isprintable():
        raise PinError("the PIN must not contain control characters")
    return pin


def hash_pin(pin: str, *, salt: bytes | None = None) -> str:
    """The PIN file line for ``pin`` (a fresh random salt unless one is given)."""
    return hash_secret(pin, salt=salt)


def verify_pin(pin: str, line: str) -> bool:
    """Constant-time comparison of ``pin`` with a PIN file line; a malformed line never matches."""
    return verify_secret(pin, line, max_len=MAX_PIN_LEN)


def write_pin_hash(path: Path, line: str) -> None:
    """Write the PIN file (0600, atomically: a reader sees the old line or the new one)."""
    write_private_text(path, line + "\n")


def read_pin_hash(path: Path) -> str:
    try:
        line = path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        raise PinFileError(path, "no PIN set (run `edge-agent set-pin --config ...`)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise PinFileError(path, f"cannot read the PIN file: {exc}") from exc
    if not line.startswith("scrypt$"):
        raise PinFileError(path, "not a PIN file written by `edge-agent set-pin`")
    return line
