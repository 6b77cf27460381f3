"""The encrypted offline buffer (issue 4): readings outbox (leased batches), alert lane, dashboard queries.

See docs/storage.md for the schema, what stays in clear and the key lifecycle.
"""

from edge_agent.store.buffer import BufferStore
from edge_agent.store.envelope import Cipher, choose_cipher, cpu_has_aes
from edge_agent.store.errors import (
    DecryptError,
    KeystoreError,
    SchemaError,
    StoreClosedError,
    StoreCorruptError,
    StoreError,
    StoreFullError,
    TamperError,
)
from edge_agent.store.results import Batch, PendingAlert, RetentionResult, StoreStats
from edge_agent.store.writer import CommitResult

__all__ = [
    "Batch",
    "BufferStore",
    "Cipher",
    "CommitResult",
    "DecryptError",
    "KeystoreError",
    "PendingAlert",
    "RetentionResult",
    "SchemaError",
    "StoreClosedError",
    "StoreCorruptError",
    "StoreError",
    "StoreFullError",
    "StoreStats",
    "TamperError",
    "choose_cipher",
    "cpu_has_aes",
]
