"""The small files the agent keeps beside its buffer: the state dir itself, ``agent.pid`` and
``status.json``. All are private to the service (0600, whatever the umask) and survive a full disk
as well as they can: ``status.json`` is the one place a technician learns that the disk is full,
so it must still be rewritten when nothing else can be.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

from edge_agent.errors import StateDirError

log = logging.getLogger(__name__)

PRIVATE_FILE_MODE = 0o600
STATE_DIR_MODE = 0o700
# status.json is padded to whole blocks with this much slack, so that when the disk is full it can
# be overwritten in place (no new blocks needed) even when the new snapshot is a little longer.
STATUS_SLACK_BYTES = 1024
_BLOCK = 4096
# A snapshot equal to the last one written (its ``written_at`` aside) is not written again (an SD
# card wears by writes), unless the last write is this old: ``written_at`` stays a sign of life.
STATUS_REFRESH_S = 600.0


def prepare_state_dir(path: Path) -> None:
    """Create the state dir (0700) if needed and prove it is a writable directory.

    Raises :class:`StateDirError` (an operator must act) for a path that is a file, a read-only
    filesystem, or a directory this user cannot write. A full disk is not an error here: the
    agent runs on and reports it.
    """
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise StateDirError(
            f"state dir {path} exists and is not a directory", "point gateway.state_dir at a directory"
        ) from None
    except NotADirectoryError:
        raise StateDirError(
            f"state dir {path}: a parent is not a directory", "point gateway.state_dir at a directory"
        ) from None
    except OSError as exc:
        raise StateDirError(f"cannot create state dir {path}: {exc.strerror}", _writable_fix(path, exc.errno)) from None
    if not path.is_dir():
        raise StateDirError(f"state dir {path} is not a directory", "point gateway.state_dir at a directory")
    with contextlib.suppress(OSError):
        os.chmod(path, STATE_DIR_MODE)
    probe = path / ".write-probe"
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_FILE_MODE)
        os.close(fd)
        probe.unlink()
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            log.warning("event=state_dir_full path=%s", path)
            return
        raise StateDirError(
            f"state dir {path} is not writable: {exc.strerror}", _writable_fix(path, exc.errno)
        ) from None


def _writable_fix(path: Path, err: int | None) -> str:
    if err == errno.EROFS:
        return f"{path} is on a read-only filesystem; set gateway.state_dir to a writable place (/var/lib/station-edge)"
    return (
        f"make {path} writable by the service user (systemd: StateDirectory=station-edge), or change gateway.state_dir"
    )


def write_private(path: Path, data: bytes) -> None:
    """Atomically replace ``path`` with ``data``, mode 0600 whatever the umask (tmp, fsync, rename)."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_FILE_MODE)
        try:
            os.fchmod(fd, PRIVATE_FILE_MODE)
            _write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except OSError:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def _write_all(fd: int, data: bytes, offset: int | None = None) -> None:
    view = memoryview(data)
    pos = 0
    while pos < len(view):
        n = os.write(fd, view[pos:]) if offset is None else os.pwrite(fd, view[pos:], offset + pos)
        pos += n


class PidFile:
    """``agent.pid``: written once the agent is up, removed when it stops (also after a failed start)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def write(self) -> None:
        write_private(self.path, f"{os.getpid()}\n".encode())

    def remove(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


class PidFileError(Exception):
    """``agent.pid`` exists but does not hold a process id."""


def read_pid(path: Path) -> int | None:
    """The pid in ``path``; None when there is no pid file. Raises :class:`PidFileError` when the
    file is empty or garbled (a crash while writing, or someone else's file)."""
    try:
        text = path.read_text(encoding="ascii", errors="replace").strip()
    except FileNotFoundError:
        return None
    if not text.isdigit() or int(text) <= 0:
        raise PidFileError(f"{path} does not hold a process id ({'empty' if not text else 'garbled'})")
    return int(text)


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class StatusFile:
    """``status.json``, read by ``edge-agent status`` and the technician.

    The file is padded to whole blocks with slack. A snapshot that needs as many blocks as the
    file has is written over it in place, without an fsync (issue 14): no new file, no new
    blocks, no directory or inode-bitmap update, and the kernel writes the page back once however
    often it was rewritten meanwhile. A replace (temporary file, fsync, rename) would dirty about
    five filesystem blocks each time, the most an SD card pays for in this agent. Otherwise
    (first write, a snapshot that needs more or fewer blocks) the file is replaced atomically, and
    when that fails for lack of space a snapshot that fits is still written in place, so the
    report that the disk is full gets out. The cost: a reader can see a half-written file for an
    instant (``edge-agent status`` retries and then says so), and after a power cut the file may
    hold an older or torn snapshot until the agent's next write (it writes one at start).
    Counted: :attr:`in_place_writes` and :attr:`replaced`.

    Only on change (issue 14): a snapshot that differs from the last one written only in
    ``written_at`` is skipped (counted in :attr:`unchanged_skips`), unless ``refresh_s`` passed.
    """

    def __init__(
        self, path: Path, *, refresh_s: float = STATUS_REFRESH_S, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.path = path
        self.in_place_writes = 0
        self.replaced = 0
        self.failures = 0
        self.unchanged_skips = 0
        self.refresh_s = refresh_s
        self._clock = clock
        self._last: tuple[str, float] | None = None  # (the last snapshot written sans written_at, when)

    @staticmethod
    def encode(doc: dict[str, object]) -> bytes:
        # Compact (``edge-agent status --json`` pretty-prints it): half the blocks of an indented one.
        body = json.dumps(doc, separators=(",", ":"), default=str).encode("utf-8") + b"\n"
        size = -(-(len(body) + STATUS_SLACK_BYTES) // _BLOCK) * _BLOCK
        return body + b" " * (size - len(body))

    def write(self, doc: dict[str, object]) -> bool:
        """Write the snapshot (skipped when unchanged, see the class docstring); False (logged,
        counted) when even the in-place fallback failed."""
        key = json.dumps({k: v for k, v in doc.items() if k != "written_at"}, separators=(",", ":"), default=str)
        now = self._clock()
        if self._last is not None and self._last[0] == key and now - self._last[1] < self.refresh_s:
            self.unchanged_skips += 1
            return True
        ok = self._write(doc)
        self._last = (key, now) if ok else None
        return ok

    def _write(self, doc: dict[str, object]) -> bool:
        data = self.encode(doc)
        try:
            if self._same_size_overwrite(data):
                self.in_place_writes += 1
                return True
            write_private(self.path, data)
            self.replaced += 1
            return True
        except OSError as exc:
            if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
                self.failures += 1
                log.warning("event=status_write_failed error=%r", exc.strerror)
                return False
        try:
            self._overwrite_in_place(data)
            self.in_place_writes += 1
            return True
        except OSError as exc:
            self.failures += 1
            log.warning("event=status_write_failed mode=in_place error=%r", exc.strerror)
            return False

    def _same_size_overwrite(self, data: bytes) -> bool:
        """Write ``data`` over the file when it is exactly as long (no fsync); False when there
        is no such file or it has another size (then the caller replaces it)."""
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            return False
        try:
            st = os.fstat(fd)
            if st.st_size != len(data) or st.st_nlink != 1 or st.st_mode & 0o077:
                return False  # another size, or a file that is not (any more) ours alone: replace it
            _write_all(fd, data, offset=0)
            return True
        finally:
            os.close(fd)

    def _overwrite_in_place(self, data: bytes) -> None:
        fd = os.open(self.path, os.O_WRONLY)
        try:
            have = os.fstat(fd).st_size
            body = data.rstrip(b" ")
            if len(body) > have:
                raise OSError(errno.ENOSPC, "status snapshot outgrew its blocks on a full disk")
            _write_all(fd, body + b" " * (have - len(body)), offset=0)
            os.fsync(fd)
        finally:
            os.close(fd)


def read_status(path: Path) -> dict[str, object]:
    """Parse ``status.json``; raises FileNotFoundError, OSError or ValueError (garbled)."""
    data = json.loads(path.read_bytes().decode("utf-8"))
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    return data
