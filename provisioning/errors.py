"""The one exception root of ``provisioning``."""

from __future__ import annotations


class ProvisioningError(Exception):
    """A key, certificate or config file cannot be used; ``reason`` is a short code for counting
    (``not_found``, ``bad_pem``, ``wrong_key_type``, ``key_mismatch``, ...)."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail
