"""Shared test helpers that are not pytest fixtures: real stores, real filesystems of a given size
or mode."""

from __future__ import annotations

import contextlib
import subprocess
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path

from edge_agent.config import StoreConfig
from edge_agent.store import BufferStore


@contextlib.contextmanager
def real_store(
    directory: Path, *, gateway_id: str, clock: Callable[[], datetime] | None = None
) -> Iterator[BufferStore]:
    """A real encrypted buffer (SQLite file and keystore) in ``directory``, closed afterwards."""
    store = BufferStore.open(
        directory / "buffer.sqlite3",
        gateway_id=gateway_id,
        keystore_path=directory / "keystore.json",
        config=StoreConfig(),
        clock=clock,
    )
    try:
        yield store
    finally:
        store.close()


@contextlib.contextmanager
def small_tmpfs(base: Path, size_kb: int, *, read_only: bool = False) -> Iterator[Path | None]:
    """A real tmpfs of ``size_kb`` mounted under ``base`` (read-only if asked), unmounted after;
    None when this process may not mount (the caller then skips or uses another limit)."""
    base.mkdir(parents=True, exist_ok=True)
    mnt = base / f"fs-{uuid.uuid4().hex[:8]}"
    mnt.mkdir()
    opts = f"size={size_kb}k,mode=0700" + (",ro" if read_only else "")
    try:
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(mnt)], capture_output=True)
    except OSError:
        yield None
        return
    if done.returncode != 0:
        yield None
        return
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def fill_filesystem(directory: Path, name: str = "ballast") -> Path:
    """Write zeros into ``directory/name`` until the filesystem says ENOSPC; returns the file."""
    path = directory / name
    block = b"\0" * 65536
    with open(path, "wb", buffering=0) as f:
        try:
            while True:
                f.write(block)
        except OSError:
            pass
        for size in (4096, 512, 1):  # the last partial blocks
            try:
                while True:
                    f.write(b"\0" * size)
            except OSError:
                continue
    return path
