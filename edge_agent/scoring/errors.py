"""Exceptions of the scoring runtime (one root, typed subclasses carrying their fields)."""

from __future__ import annotations


class ScoringError(Exception):
    """Root of the scoring runtime's errors."""


class ModelRejected(ScoringError):
    """A model was refused: it is never run. ``reason`` is a short code for status and logs:
    ``format``, ``unsigned``, ``unknown_key``, ``bad_signature``, ``hash_mismatch``,
    ``bad_inputs``, ``bad_outputs``, ``load_failed``, ``self_test_failed``, ``runtime_unavailable``."""

    def __init__(self, model: str, reason: str, detail: str) -> None:
        super().__init__(f"model {model} rejected ({reason}): {detail}")
        self.model = model
        self.reason = reason
        self.detail = detail


class TrustedKeyError(ScoringError):
    """A configured model-signing public key cannot be read (``scoring.trusted_keys``)."""

    def __init__(self, path: object, detail: str) -> None:
        super().__init__(f"trusted key {path}: {detail}")
        self.path = path
        self.detail = detail


class RuntimeUnavailable(ScoringError):
    """onnxruntime cannot be imported or crashed on import; scores are unavailable."""


class AlertNotFound(ScoringError, KeyError):
    def __init__(self, alert_id: str) -> None:
        super().__init__(f"no alert {alert_id!r}")
        self.alert_id = alert_id


class ManualObservationError(ScoringError, ValueError):
    """A manual observation has an unknown name or an impossible value; ``key`` names it."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key
