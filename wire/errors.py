"""The one exception root of ``wire``: every decoder and :func:`wire.envelope.open_envelope`
raise :class:`WireError` (a subclass) and nothing else, whatever bytes they are given.

Each error has ``reason``: a short, fixed code to count rejections by (a metric label of bounded
cardinality) and to put in a rejected ack. ``detail`` is for a log line; it never holds a
payload value.
"""

from __future__ import annotations

__all__ = ["BadSeal", "BadSignature", "CertificateRejected", "Malformed", "UnsupportedVersion", "WireError"]


class WireError(Exception):
    """Bytes that are not a valid message of this format (root of the package's errors)."""

    default_reason = "wire_error"

    def __init__(self, reason: str | None = None, detail: str = "") -> None:
        self.reason: str = reason or self.default_reason
        self.detail = detail
        super().__init__(f"{self.reason}: {detail}" if detail else self.reason)


class Malformed(WireError):
    """Not parseable, a field missing or of the wrong type, too large (``too_large``), a zip bomb
    (``zip_bomb``), an invalid topic (``bad_topic``)."""

    default_reason = "malformed"


class UnsupportedVersion(WireError):
    """A format version this code does not speak."""

    default_reason = "unsupported_version"


class BadSignature(WireError):
    """The signature does not verify: not signed by the claimed key, or altered since."""

    default_reason = "bad_signature"


class BadSeal(WireError):
    """Authentically signed, but the sealed payload does not decrypt with the hub's key
    (``bad_seal``; ``wrong_hub_key`` when it was sealed to another hub key)."""

    default_reason = "bad_seal"


class CertificateRejected(WireError):
    """The gateway certificate in the envelope is not acceptable: ``cert_malformed``,
    ``cert_untrusted`` (no CA in the list signed it), ``cert_expired``, ``cert_not_yet_valid``,
    ``cert_cn_mismatch`` (its CN is not the header's gateway id), ``cert_wrong_usage``."""

    default_reason = "cert_rejected"
