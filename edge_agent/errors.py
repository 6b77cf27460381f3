"""Exit codes and the agent's start-up failures: "retry later" kept apart from "an operator must act".

systemd restarts the agent after a failure (``Restart=on-failure``) unless the exit code is listed
in the unit's ``RestartPreventExitStatus``: a code there means restarting cannot help, so the
agent says once, in one line, what to fix and stays down (STYLE: errors; Home Assistant's
``ConfigEntryNotReady`` vs ``ConfigEntryAuthFailed``).

| code | name | meaning | systemd |
| --- | --- | --- | --- |
| 0 | ``EXIT_OK`` | success, or a clean stop on SIGTERM/SIGINT | not restarted |
| 1 | ``EXIT_FAILURE`` | runtime failure worth retrying (a transient I/O error, a bug) | restarted after 5 s |
| 2 | ``EXIT_USAGE`` | usage or input error: bad arguments, bad config file | not restarted |
| 78 | ``EXIT_OPERATOR`` | an operator must act: unusable state dir, bad keystore, buffer too new | not restarted |

78 is ``EX_CONFIG`` from BSD's sysexits.h ("configuration error"), which systemd documents
alongside its own codes.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_OPERATOR = 78

# What the unit file lists in RestartPreventExitStatus (tests/systemd check the unit agrees).
NO_RESTART_EXIT_CODES = (EXIT_USAGE, EXIT_OPERATOR)


class AgentError(Exception):
    """Root of the agent's own errors."""


class OperatorActionRequired(AgentError):
    """Starting again cannot help: ``what`` is wrong and ``fix`` says what an operator should do.

    ``str()`` is one line, suitable for the journal and a technician's terminal.
    """

    def __init__(self, what: str, fix: str) -> None:
        super().__init__(f"{what}; fix: {fix}")
        self.what = what
        self.fix = fix


class StateDirError(OperatorActionRequired):
    """The state directory is missing and cannot be made, not a directory, or not writable."""
