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
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from edge_agent.store.envelope import KEY_LEN, new_key
from edge_agent.store.errors import KeystoreError

KEYSTORE_FORMAT = 1


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
            return cls._parse(path, data)
        except OSError as exc:
            raise KeystoreError(str(path), f"cannot read keystore: {exc.strerror}") from exc
        except (ValueError, KeyError, TypeError) as exc:
            raise KeystoreError(str(path), f"keystore is malformed: {exc}") from exc

    @classmethod
    def _parse(cls, path: Path, data: dict[str, object]) -> Keystore:
        if data.get("format") != KEYSTORE_FORMAT:
            raise ValueError(f"unsupported keystore format {data.get('format')!r}")
        keys: dict[int, _KeyEntry] = {}
        for kid, entry in dict(data["keys"]).items():  # type: ignore[call-overload]
            key = base64.b64decode(entry["key"], validate=True)
            if len(key) != KEY_LEN:
                raise ValueError(f"key {kid} has {len(key)} bytes, expected {KEY_LEN}")
            keys[int(kid)] = _KeyEntry(key, datetime.fromisoformat(entry["created"]))
        destroyed = {int(k): datetime.fromisoformat(v) for k, v in dict(data.get("destroyed", {})).items()}  # type: ignore[call-overload]
        index_key = base64.b64decode(str(data["index_key"]), validate=True)
        current = int(data["current"])  # type: ignore[call-overload]
        if current not in keys:
            raise ValueError(f"current key {current} is missing")
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
            self.path.parent.mkdir(parents=True, exist_ok=True)
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
