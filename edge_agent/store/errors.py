"""Exceptions of the store package: one root, typed subclasses that say who must act.

``StoreError`` is the root. Subclasses that an operator must fix (a corrupt database, a
keystore with the wrong mode or the wrong keys) are apart from per-record failures
(``DecryptError``), which the store reports and skips rather than raising to callers.
"""

from __future__ import annotations


class StoreError(Exception):
    """Root of every error raised by ``edge_agent.store``."""


class StoreClosedError(StoreError):
    """The store was closed; no more submissions or queries."""


class StoreCorruptError(StoreError):
    """``PRAGMA integrity_check`` failed or SQLite reports a malformed database (operator must act)."""

    def __init__(self, path: str, problems: list[str]) -> None:
        super().__init__(f"{path}: integrity check failed: {'; '.join(problems[:5])}")
        self.path = path
        self.problems = problems


class SchemaError(StoreError):
    """The database schema is newer than this code, or a migration failed."""


class KeystoreError(StoreError):
    """The keystore is unreadable, has an unsafe mode, or does not match the database (operator must act)."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


class DecryptError(StoreError):
    """A record failed to decrypt (wrong key, unknown key, or authentication failure)."""

    def __init__(self, table: str, row: str, reason: str) -> None:
        super().__init__(f"{table} row {row}: {reason}")
        self.table = table
        self.row = row
        self.reason = reason


class TamperError(DecryptError):
    """Authentication failed: bytes flipped, a row swapped or replayed, a payload truncated."""


class StoreFullError(StoreError):
    """A synchronous write (an alert) could not be committed because the disk or quota is full."""
