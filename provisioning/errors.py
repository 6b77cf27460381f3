"""The one exception root of ``provisioning``."""

from __future__ import annotations


class ProvisioningError(Exception):
    """A key, certificate or config file cannot be used; ``reason`` is a short code for counting
    (``not_found``, ``bad_pem``, ``wrong_key_type``, ``key_mismatch``, ...)."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class Refused(ProvisioningError):
    """An operator must act: ``str()`` is one line saying what is wrong and what to do (``fix``)."""

    def __init__(self, reason: str, detail: str, fix: str) -> None:
        super().__init__(reason, detail)
        self.fix = fix

    def __str__(self) -> str:
        return f"{self.detail}; fix: {self.fix}"


# Exit codes: the agent's (edge_agent/errors.py, which provisioning may not import; a test in
# tests/provisioning checks they agree), so the units' RestartPreventExitStatus covers both.
EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_OPERATOR = 78
