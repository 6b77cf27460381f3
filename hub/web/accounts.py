"""Operator accounts of the fleet page: one file, mode 0600, one line per operator
``NAME:scrypt$...`` (webui.auth's hash). Written atomically by ``edge-hub web-user``, read by
``edge-hub web`` at each login (a changed password counts at once, no restart).
"""

from __future__ import annotations

import re
from pathlib import Path

from webui.auth import hash_secret, is_secret_line, verify_secret, write_private_text

__all__ = [
    "MAX_PASSWORD_LEN",
    "MIN_PASSWORD_LEN",
    "AccountError",
    "AccountsFileError",
    "check_name",
    "check_password",
    "read_accounts",
    "set_password",
    "verify",
]

MIN_PASSWORD_LEN = 10
MAX_PASSWORD_LEN = 128
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")
# scrypt of a fixed word: a login with an unknown name takes as long as one with a known name
_DUMMY = "scrypt$14$8$AAAAAAAAAAAAAAAAAAAAAA==$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="


class AccountError(ValueError):
    """A name or password that cannot be set (the message says why)."""


class AccountsFileError(Exception):
    """The accounts file is unreadable or malformed (an operator must fix it)."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


def check_name(name: str) -> str:
    if not NAME_RE.fullmatch(name):
        raise AccountError(
            "an operator name is 1..64 letters, digits, '.', '_', '@' or '-', starting with a letter or digit"
        )
    return name


def check_password(password: str) -> str:
    if len(password) < MIN_PASSWORD_LEN:
        raise AccountError(f"the password must have at least {MIN_PASSWORD_LEN} characters")
    if len(password) > MAX_PASSWORD_LEN:
        raise AccountError(f"the password must have at most {MAX_PASSWORD_LEN} characters")
    if not password.isprintable():
        raise AccountError("the password must not contain control characters")
    return password


def parse_accounts(text: str, path: Path) -> dict[str, str]:
    """Pure: name -> hash line of an accounts file's text (blank lines and ``#`` comments skipped)."""
    out: dict[str, str] = {}
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, secret = line.partition(":")
        if not sep or not NAME_RE.fullmatch(name) or not is_secret_line(secret):
            raise AccountsFileError(path, f"line {n}: not NAME:scrypt$... (write it with edge-hub web-user)")
        out[name] = secret
    return out


def read_accounts(path: Path) -> dict[str, str]:
    """The accounts of ``path`` (none when the file does not exist yet)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as exc:
        raise AccountsFileError(path, f"cannot read the accounts file: {exc}") from exc
    return parse_accounts(text, path)


def set_password(path: Path, name: str, password: str) -> bool:
    """Add ``name`` or change its password (atomically, 0600); True when the name was new."""
    check_name(name)
    check_password(password)
    accounts = read_accounts(path)
    new = name not in accounts
    accounts[name] = hash_secret(password)
    body = "".join(f"{n}:{h}\n" for n, h in sorted(accounts.items()))
    try:
        write_private_text(path, "# station-edge hub operators (edge-hub web-user); NAME:scrypt hash\n" + body)
    except OSError as exc:
        raise AccountsFileError(path, f"cannot write the accounts file: {exc}") from exc
    return new


def verify(accounts: dict[str, str], name: str, password: str) -> bool:
    """Whether ``password`` is ``name``'s; an unknown name costs one scrypt too (no timing hint)."""
    line = accounts.get(name)
    ok = verify_secret(password, line if line is not None else _DUMMY, max_len=MAX_PASSWORD_LEN)
    return ok and line is not None
