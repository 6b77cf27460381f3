"""status.json is written only when it changed (issue 14), on a real file, with a pinned clock."""

from __future__ import annotations

import json
import os
from pathlib import Path

from edge_agent.state_files import StatusFile


class Ticks:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_an_unchanged_snapshot_is_not_rewritten_until_the_refresh(tmp_path: Path) -> None:
    clock = Ticks()
    status = StatusFile(tmp_path / "status.json", refresh_s=600.0, clock=clock)
    assert status.write({"written_at": "t0", "stored": 1})
    inode = (tmp_path / "status.json").stat().st_ino
    clock.t = 30.0
    assert status.write({"written_at": "t1", "stored": 1})  # only written_at moved: skipped
    assert status.unchanged_skips == 1
    assert (tmp_path / "status.json").stat().st_ino == inode  # not replaced
    assert json.loads((tmp_path / "status.json").read_text())["written_at"] == "t0"
    clock.t = 60.0
    assert status.write({"written_at": "t2", "stored": 2})  # a change: written at once
    assert json.loads((tmp_path / "status.json").read_text()) == {"written_at": "t2", "stored": 2}
    clock.t = 660.0
    assert status.write({"written_at": "t3", "stored": 2})  # unchanged, but the refresh is due
    assert json.loads((tmp_path / "status.json").read_text())["written_at"] == "t3"
    assert status.unchanged_skips == 1


def test_the_snapshot_is_compact_and_padded_to_whole_blocks() -> None:
    data = StatusFile.encode({"a": [1, 2], "b": {"c": None}})
    assert data.startswith(b'{"a":[1,2],"b":{"c":null}}\n') and len(data) % 4096 == 0


def test_a_snapshot_of_the_same_size_is_written_in_place_and_a_longer_one_replaces_the_file(tmp_path: Path) -> None:
    path = tmp_path / "status.json"
    status = StatusFile(path)
    assert status.write({"written_at": "t0", "stored": 1})
    inode = path.stat().st_ino
    assert status.write({"written_at": "t1", "stored": 22})
    assert path.stat().st_ino == inode and (status.in_place_writes, status.replaced) == (1, 1)
    assert json.loads(path.read_text()) == {"written_at": "t1", "stored": 22}
    assert len(path.read_bytes()) == 4096  # shorter body, same blocks: padded over the old text
    big = {"written_at": "t2", "devices": ["x" * 100] * 60}  # needs two blocks: a new file
    assert status.write(big)
    assert path.stat().st_ino != inode and status.replaced == 2 and len(path.read_bytes()) == 8192
    assert json.loads(path.read_text()) == big
    assert status.write({"written_at": "t3", "stored": 3})  # back to one block: replaced, not padded
    assert len(path.read_bytes()) == 4096 and status.replaced == 3
    assert (path.stat().st_mode & 0o777) == 0o600 and not path.with_name("status.json.tmp").exists()


def test_a_status_file_someone_else_opened_up_is_replaced_not_written_into(tmp_path: Path) -> None:
    path = tmp_path / "status.json"
    status = StatusFile(path)
    assert status.write({"written_at": "t0", "n": 1})
    path.chmod(0o644)
    other = tmp_path / "hardlink.json"
    os.link(path, other)
    assert status.write({"written_at": "t1", "n": 2})
    assert status.in_place_writes == 0 and status.replaced == 2
    assert json.loads(other.read_text())["n"] == 1  # the other name still holds the old text
    assert (path.stat().st_mode & 0o777) == 0o600 and json.loads(path.read_text())["n"] == 2
