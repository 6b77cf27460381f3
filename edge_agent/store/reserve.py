"""An emergency reserve: a file of a few hundred KiB the store owns next to its database.

When the filesystem fills up, the store deletes it so that the writes that free space (recording
the hub's acknowledgements, purging synced rows) can still commit; it is put back once the
filesystem has room again. It only helps when other things filled the disk, and costs that
much disk space for good.
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path

from edge_agent.store.connection import PRIVATE_MODE, restrict_mode

log = logging.getLogger(__name__)


class EmergencyReserve:
    def __init__(self, path: Path, size: int) -> None:
        self.path = path
        self.size = size

    def ensure(self) -> bool:
        """Create the reserve when it is missing and the filesystem has room; True when it exists."""
        if self.size <= 0:
            return False
        if self.path.exists():
            restrict_mode(self.path)
            return True
        try:
            st = os.statvfs(self.path.parent)
            if st.f_bavail * st.f_frsize < 4 * self.size:
                return False
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, PRIVATE_MODE)
            try:
                os.fchmod(fd, PRIVATE_MODE)
                try:
                    os.posix_fallocate(fd, 0, self.size)
                except OSError:
                    os.write(fd, b"\0" * self.size)  # tmpfs and some filesystems lack fallocate
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            with contextlib.suppress(OSError):
                self.path.unlink(missing_ok=True)
            log.warning("event=store_reserve_not_created error=%s", exc.strerror)
            return False
        return True

    def release(self) -> bool:
        """Delete the reserve; True when that freed space."""
        try:
            self.path.unlink()
        except FileNotFoundError:
            return False
        except OSError:
            return False
        log.warning("event=store_reserve_released bytes=%d", self.size)
        return True
