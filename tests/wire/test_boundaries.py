"""DESIGN §2: ``wire`` and ``provisioning`` import nothing of ours (wire may use
``device_drivers.records``); wire does no I/O; neither reads the wall clock."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
OURS = {"edge_agent", "hub", "device_drivers", "models", "provisioning", "wire"}
ALLOWED = {"wire": {"wire", "device_drivers.records"}, "provisioning": {"provisioning"}}
NO_IO = {"socket", "subprocess", "pathlib", "shutil", "threading", "asyncio", "paho", "sqlite3"}


def imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_imports(package: str) -> None:
    for path in sorted((ROOT / package).rglob("*.py")):
        for name in imports(path):
            if name.split(".")[0] in OURS:
                assert any(name == a or name.startswith(a + ".") for a in ALLOWED[package]), f"{path.name}: {name}"
            if package == "wire":
                assert name.split(".")[0] not in NO_IO, f"{path.name}: {name}"
        text = path.read_text()
        for clock in ("datetime.now(", "utcnow(", "time.time(", "date.today("):
            assert clock not in text, f"{path.name} reads the wall clock ({clock})"
