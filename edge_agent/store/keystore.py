"""The keystore file: data keys by id, the patient-index key, rotation and destruction.

A JSON file readable only by the service user (mode 0600, checked on every load). Keys have
integer ids so they can rotate: new records use the current key; older keys stay until every
row sealed with them is gone, then :meth:`Keystore.destroy` removes their bytes from the file,
which shreds whatever ciphertext might survive elsewhere (free pages, SD card blocks) for good.
Every change is written to a temporary file, fsynced and renamed over the old one.
"""

from __future__ import annotations

import base64
import json
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from edge_agent.store.envelope import KEY_LEN, new_key
from edge_agent.store.errors import KeystoreError

KEYSTORE_FORMAT = 1
_FIELDS = ("format", "index_key", "current", "keys")
_Bad = Callable[[str], KeystoreError]


def _one_line(text: str, limit: int = 120) -> str:
    return " ".join(text.split())[:limit]


def _kind(value: object) -> str:
    """What a JSON value is, for an error message (never the value itself: it may be key material)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _short(value: object) -> str:
    """A small non-secret value (a format number) for an error message."""
    return (
        _one_line(repr(value), 40) if isinstance(value, (int, float)) and not isinstance(value, bool) else _kind(value)
    )


def _key_id(kid: object, where: str, bad: _Bad) -> int:
    if not (isinstance(kid, str) and kid.isascii() and kid.isdigit() and len(kid) <= 9):
        raise bad(f"{where} has a key id that is not a number ({_one_line(repr(kid), 24)})")
    return int(kid)


def _key_bytes(value: object, where: str, bad: _Bad) -> bytes:
    if not isinstance(value, str):
        raise bad(f"{where} is {_kind(value)}, not base64 text")
    try:
        key = base64.b64decode(value.encode("ascii"), validate=True)
    except (ValueError, UnicodeError):
        raise bad(f"{where} is not valid base64") from None
    if len(key) != KEY_LEN:
        raise bad(f"{where} has {len(key)} bytes, expected {KEY_LEN}")
    return key


def _time(value: object, where: str, bad: _Bad) -> datetime:
    if not isinstance(value, str):
        raise bad(f"{where} is {_kind(value)}, not an ISO 8601 time")
    try:
        t = datetime.fromisoformat(value)
    except ValueError:
        raise bad(f"{where} is not an ISO 8601 time") from None
    if t.tzinfo is None or t.utcoffset() is None:
        raise bad(f"{where} has no UTC offset")
    return t


@dataclass(slots=True)
class _KeyEntry:
    key: bytes
    created: datetime


@dataclass(slots=True)
class Keystore:
    path: Path
    index_key: bytes
    current_id: int
    keys: dict[int, _KeyEntry] = field(default_factory=dict)
    destroyed: dict[int, datetime] = field(default_factory=dict)

    # --- loading ---------------------------------------------------------------------------

    @classmethod
    def open(cls, path: Path, *, now: datetime) -> Keystore:
        """Load the keystore, or create it (mode 0600) when the file does not exist; ``now`` (from the
        store's injected clock) stamps a newly created first key."""
        try:
            st = path.stat()
        except FileNotFoundError:
            ks = cls(path=path, index_key=new_key(), current_id=1, keys={1: _KeyEntry(new_key(), now)})
            ks._write(create=True)
            return ks
        except OSError as exc:
            raise KeystoreError(str(path), f"cannot stat keystore: {exc.strerror}") from exc
        if not stat.S_ISREG(st.st_mode):
            raise KeystoreError(str(path), "keystore is not a regular file")
        if st.st_mode & 0o077:
            raise KeystoreError(
                str(path),
                f"keystore mode is {stat.S_IMODE(st.st_mode):04o}; "
                "it must not be readable by group or others (chmod 600)",
            )
        if st.st_uid != os.geteuid():
            raise KeystoreError(
                str(path), f"keystore is owned by uid {st.st_uid}, not by the service user (uid {os.geteuid()})"
            )
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise KeystoreError(str(path), f"cannot read keystore: {exc.strerror}") from exc
        except ValueError as exc:  # not JSON, or not UTF-8
            raise KeystoreError(str(path), f"keystore is malformed: not JSON ({_one_line(str(exc))})") from exc
        except RecursionError as exc:
            raise KeystoreError(str(path), "keystore is malformed: not JSON (nested too deeply)") from exc
        return cls._parse(path, data)

    @classmethod
    def _parse(cls, path: Path, data: object) -> Keystore:
        """A keystore from its decoded JSON; anything but the documented object raises
        KeystoreError with one line naming the file and what is wrong (key bytes never quoted)."""

        def bad(what: str) -> KeystoreError:
            return KeystoreError(str(path), f"keystore is malformed: {what}")

        if not isinstance(data, dict):
            raise bad(f"the file holds {_kind(data)}, not an object with {', '.join(_FIELDS)}")
        missing = [k for k in _FIELDS if k not in data]
        if missing:
            raise bad(f"{', '.join(missing)} missing")
        fmt = data["format"]
        if type(fmt) is not int or fmt != KEYSTORE_FORMAT:
            raise bad(f"format is {_short(fmt)}, this agent reads format {KEYSTORE_FORMAT}")
        index_key = _key_bytes(data["index_key"], "index_key", bad)
        current = data["current"]
        if type(current) is not int:
            raise bad(f"current is {_kind(current)}, not a key id")
        raw_keys = data["keys"]
        if not isinstance(raw_keys, dict):
            raise bad(f"keys is {_kind(raw_keys)}, not an object")
        keys: dict[int, _KeyEntry] = {}
        for kid, entry in raw_keys.items():
            k = _key_id(kid, "keys", bad)
            if k in keys:
                raise bad(f"key {k} appears twice")
            if not isinstance(entry, dict):
                raise bad(f"keys.{k} is {_kind(entry)}, not an object with key and created")
            keys[k] = _KeyEntry(
                _key_bytes(entry.get("key"), f"keys.{k}.key", bad),
                _time(entry.get("created"), f"keys.{k}.created", bad),
            )
        raw_destroyed = data.get("destroyed", {})
        if not isinstance(raw_destroyed, dict):
            raise bad(f"destroyed is {_kind(raw_destroyed)}, not an object")
        destroyed: dict[int, datetime] = {}
        for kid, when in raw_destroyed.items():
            k = _key_id(kid, "destroyed", bad)
            destroyed[k] = _time(when, f"destroyed.{k}", bad)
        if current not in keys:
            raise bad(f"current key {current} is not among the keys")
        return cls(path=path, index_key=index_key, current_id=current, keys=keys, destroyed=destroyed)

    # --- changes ---------------------------------------------------------------------------

    @property
    def current_key_created(self) -> datetime:
        return self.keys[self.current_id].created

    def key_bytes(self) -> dict[int, bytes]:
        return {kid: e.key for kid, e in self.keys.items()}

    def rotate(self, now: datetime) -> int:
        """Add a new data key and make it current; returns its id.

        The file is written (and fsynced) before the key becomes current in memory, so no record
        is ever sealed with a key that a crash could lose.
        """
        new_id = max([*self.keys, *self.destroyed]) + 1
        keys = dict(self.keys)
        keys[new_id] = _KeyEntry(new_key(), now)
        self._write(keys=keys, current=new_id)
        self.keys, self.current_id = keys, new_id
        return new_id

    def destroy(self, key_ids: list[int], now: datetime) -> list[int]:
        """Remove old (non-current) keys' bytes for good; returns the ids destroyed."""
        gone = [k for k in key_ids if k in self.keys and k != self.current_id]
        if not gone:
            return []
        keys = {k: e for k, e in self.keys.items() if k not in gone}
        destroyed = dict(self.destroyed) | {k: now for k in gone}
        self._write(keys=keys, destroyed=destroyed)
        self.keys, self.destroyed = keys, destroyed
        return gone

    def _write(
        self,
        *,
        create: bool = False,
        keys: dict[int, _KeyEntry] | None = None,
        current: int | None = None,
        destroyed: dict[int, datetime] | None = None,
    ) -> None:
        keys = self.keys if keys is None else keys
        destroyed = self.destroyed if destroyed is None else destroyed
        doc = {
            "format": KEYSTORE_FORMAT,
            "index_key": base64.b64encode(self.index_key).decode(),
            "current": self.current_id if current is None else current,
            "keys": {
                str(k): {"key": base64.b64encode(e.key).decode(), "created": e.created.isoformat()}
                for k, e in sorted(keys.items())
            },
            "destroyed": {str(k): t.isoformat() for k, t in sorted(destroyed.items())},
        }
        data = json.dumps(doc, indent=1).encode("utf-8")
        tmp = self.path.with_name(self.path.name + ".tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                os.fchmod(fd, 0o600)
                os.write(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)
            if create and self.path.exists():
                raise KeystoreError(str(self.path), "keystore appeared while creating it")
            os.replace(tmp, self.path)
            dfd = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
        except OSError as exc:
            raise KeystoreError(str(self.path), f"cannot write keystore: {exc.strerror}") from exc
