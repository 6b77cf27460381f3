"""status.json is written only when it changed (issue 14), on a real file, with a pinned clock."""

from __future__ import annotations

import json
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
