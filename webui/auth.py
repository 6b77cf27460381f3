"""Secrets, sessions and the login limit, shared by the station dashboard and the hub's fleet
page. Pure logic with an injected clock; the only I/O is :func:`write_private_text`.

A secret (a station PIN, an operator's password) is kept as one line
``scrypt$<log2 n>$<r>$<p>$<salt b64>$<hash b64>``. scrypt with n = 2^14, r = 8 takes 16 MiB and
tens of milliseconds per try, which is what makes a stolen file slow to brute-force; the rate
limit is what makes the page slow to guess.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

SCRYPT_LOG2_N = 14
SCRYPT_R = 8
SCRYPT_P = 1
SALT_LEN = 16
HASH_LEN = 32
MAX_SECRET_LEN = 128


def _scrypt(secret: str, salt: bytes, log2_n: int, r: int, p: int) -> bytes:
    n = 1 << log2_n
    return hashlib.scrypt(secret.encode("utf-8"), salt=salt, n=n, r=r, p=p, maxmem=256 * r * n, dklen=HASH_LEN)


def hash_secret(secret: str, *, salt: bytes | None = None) -> str:
    """The stored line for ``secret`` (a fresh random salt unless one is given)."""
    salt = os.urandom(SALT_LEN) if salt is None else salt
    digest = _scrypt(secret, salt, SCRYPT_LOG2_N, SCRYPT_R, SCRYPT_P)
    b64 = base64.b64encode
    return f"scrypt${SCRYPT_LOG2_N}${SCRYPT_R}${SCRYPT_P}${b64(salt).decode()}${b64(digest).decode()}"


def verify_secret(secret: str, line: str, *, max_len: int = MAX_SECRET_LEN) -> bool:
    """Constant-time comparison of ``secret`` with a stored line; a malformed line never matches."""
    parts = line.strip().split("$")
    if len(parts) != 6 or parts[0] != "scrypt" or len(secret) > max_len:
        return False
    try:
        log2_n, r, p = int(parts[1]), int(parts[2]), int(parts[3])
        salt, want = base64.b64decode(parts[4], validate=True), base64.b64decode(parts[5], validate=True)
    except ValueError:
        return False
    if not (10 <= log2_n <= 20 and 1 <= r <= 16 and 1 <= p <= 4 and len(want) == HASH_LEN):
        return False
    return hmac.compare_digest(_scrypt(secret, salt, log2_n, r, p), want)


def is_secret_line(line: str) -> bool:
    return line.startswith("scrypt$") and line.count("$") == 5


def write_private_text(path: Path, text: str) -> None:
    """Write ``path`` (0600, atomically: a reader sees the old content or the new one)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, text.encode("utf-8"))
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


# -- sessions ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Session:
    token: str  # the cookie value (random, 256 bits)
    csrf: str  # sent back by the page in a header on every state-changing request
    who: str  # the name given at login
    created: datetime
    expires: datetime


class Sessions:
    """Sessions in memory (a restart logs everyone out): created at login, valid until
    ``ttl`` after it, then gone."""

    def __init__(self, ttl: timedelta, clock: Callable[[], datetime], max_sessions: int = 64) -> None:
        self.ttl = ttl
        self.clock = clock
        self.max_sessions = max_sessions
        self._by_token: dict[str, Session] = {}

    def create(self, who: str) -> Session:
        now = self.clock()
        self.prune()
        while len(self._by_token) >= self.max_sessions:  # the oldest goes first
            oldest = min(self._by_token.values(), key=lambda s: s.created)
            del self._by_token[oldest.token]
        session = Session(secrets.token_urlsafe(32), secrets.token_urlsafe(32), who, now, now + self.ttl)
        self._by_token[session.token] = session
        return session

    def get(self, token: str | None) -> Session | None:
        """The live session of a cookie value; None when unknown or expired (then forgotten)."""
        if not token:
            return None
        session = self._by_token.get(token)
        if session is None:
            return None
        if self.clock() >= session.expires:
            del self._by_token[token]
            return None
        return session

    def end(self, token: str | None) -> None:
        if token:
            self._by_token.pop(token, None)

    def prune(self) -> int:
        now = self.clock()
        dead = [t for t, s in self._by_token.items() if now >= s.expires]
        for t in dead:
            del self._by_token[t]
        return len(dead)

    def __len__(self) -> int:
        return len(self._by_token)


def same_token(given: str | None, expected: str) -> bool:
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())


# -- login rate limit -------------------------------------------------------------------------


@dataclass(slots=True)
class _Failures:
    times: list[datetime] = field(default_factory=list)
    locked_until: datetime | None = None


class LoginLimiter:
    """At most ``per_client`` failed logins per client address in ``window``, then that client
    waits ``lockout``; at most ``overall`` failures from all clients together in ``window``
    (a LAN full of guessers), then every login waits. A success clears the client's count."""

    def __init__(
        self,
        clock: Callable[[], datetime],
        *,
        per_client: int = 5,
        overall: int = 20,
        window: timedelta = timedelta(minutes=5),
        lockout: timedelta = timedelta(minutes=5),
    ) -> None:
        self.clock = clock
        self.per_client = per_client
        self.overall = overall
        self.window = window
        self.lockout = lockout
        self._clients: dict[str, _Failures] = {}
        self._all = _Failures()
        self.refused = 0

    def _trim(self, f: _Failures, now: datetime) -> None:
        f.times = [t for t in f.times if now - t < self.window]
        if f.locked_until is not None and now >= f.locked_until:
            f.locked_until = None

    def retry_after(self, client: str) -> float:
        """Seconds this client must wait before trying again (0: it may try now)."""
        now = self.clock()
        wait = 0.0
        for f in (self._clients.get(client), self._all):
            if f is None:
                continue
            self._trim(f, now)
            if f.locked_until is not None:
                wait = max(wait, (f.locked_until - now).total_seconds())
        if wait:
            self.refused += 1
        return wait

    def failed(self, client: str) -> None:
        now = self.clock()
        if len(self._clients) > 1024:  # bounded memory: forget quiet clients
            for key in [k for k, f in self._clients.items() if not f.times and f.locked_until is None]:
                del self._clients[key]
        for f, limit in ((self._clients.setdefault(client, _Failures()), self.per_client), (self._all, self.overall)):
            self._trim(f, now)
            f.times.append(now)
            if len(f.times) >= limit:
                f.locked_until = now + self.lockout
                f.times.clear()

    def succeeded(self, client: str) -> None:
        self._clients.pop(client, None)
