"""Loading onnxruntime, and noticing when it cannot be loaded.

onnxruntime 1.21.0 dies with SIGILL while importing on the Raspberry Pi 4 (onnxruntime issues
#23957, #24112); a Python ``import`` cannot catch that. With ``probe=True`` the import is first
tried in a child process, so a crash there becomes a clear ``error`` in status ("scores
unavailable") while the agent, its store and its event alerts keep running.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
from dataclasses import dataclass
from types import ModuleType

_PROBE_TIMEOUT_S = 60.0


@dataclass(frozen=True, slots=True)
class RuntimeInfo:
    module: ModuleType | None
    version: str
    error: str

    @property
    def available(self) -> bool:
        return self.module is not None


_lock = threading.Lock()
_cache: dict[bool, RuntimeInfo] = {}


def _probe(code: str = "import onnxruntime") -> str:
    """'' if ``code`` (the import) survives in a child process, else why not."""
    try:
        proc = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            timeout=_PROBE_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"could not probe onnxruntime: {exc}"
    if proc.returncode == 0:
        return ""
    if proc.returncode < 0:
        try:
            name = signal.Signals(-proc.returncode).name
        except ValueError:
            name = f"signal {-proc.returncode}"
        hint = " (illegal instruction: this onnxruntime build does not support this CPU)" if name == "SIGILL" else ""
        return f"onnxruntime crashed on import with {name}{hint}"
    tail = proc.stderr.decode(errors="replace").strip().splitlines()[-1:] or [""]
    return f"onnxruntime failed to import: {tail[0]}"


def load_runtime(*, probe: bool) -> RuntimeInfo:
    """Import onnxruntime once per process (cached); never raises."""
    with _lock:
        if probe in _cache:
            return _cache[probe]
        info: RuntimeInfo
        error = _probe() if probe else ""
        if error:
            info = RuntimeInfo(None, "", error)
        else:
            try:
                import onnxruntime as ort
            except Exception as exc:
                info = RuntimeInfo(None, "", f"onnxruntime failed to import: {exc!r}")
            else:
                info = RuntimeInfo(ort, str(getattr(ort, "__version__", "?")), "")
        _cache[probe] = info
        return info
