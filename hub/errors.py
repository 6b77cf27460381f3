"""The one exception root of ``hub`` and its exit codes: "retry later" kept apart from "an
operator must act" (STYLE: errors), so systemd's restart policy can tell them apart.

| code | name | meaning |
| --- | --- | --- |
| 0 | ``EXIT_OK`` | success, or a clean stop on SIGTERM/SIGINT |
| 1 | ``EXIT_FAILURE`` | runtime failure worth retrying (database or broker away, a bug) |
| 2 | ``EXIT_USAGE`` | usage or input error (bad arguments) |
| 78 | ``EXIT_OPERATOR`` | an operator must act: unreadable keys or certificates, unusable store, schema too new |
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_OPERATOR = 78  # EX_CONFIG (sysexits.h); the hub unit lists it in RestartPreventExitStatus


class HubError(Exception):
    """Root of the hub's own errors."""


class StoreError(HubError):
    """The store failed; worth retrying (connection lost, disk busy, deadlock after retries)."""


class StoreOperatorError(StoreError):
    """The store cannot be used until an operator acts: ``what`` is wrong, ``fix`` says what to do.

    ``str()`` is one line, suitable for the journal."""

    def __init__(self, what: str, fix: str) -> None:
        super().__init__(f"{what}; {fix}")
        self.what = what
        self.fix = fix


class OperatorActionRequired(HubError):
    """Starting again cannot help (bad keys, certificates, broker URL): one line, what to fix."""

    def __init__(self, what: str, fix: str) -> None:
        super().__init__(f"{what}; {fix}")
        self.what = what
        self.fix = fix
