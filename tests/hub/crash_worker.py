"""A hub worker that dies (``os._exit``, like SIGKILL: no cleanup, no PUBACK, no Ack) right after
the store commits its first batch: the "hub killed between commit and ack" case.

    python -m tests.hub.crash_worker PORT CA CERT KEY HUB_KEYS_DIR STORE CLIENT_ID
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from pathlib import Path

from hub.ingest import Ingestor, Outcome
from hub.mqtt_worker import HubWorker, WorkerSettings
from hub.store import open_store
from provisioning.pki import HubKeys, load_ca_certs

CRASH_EXIT = 9


def main(argv: list[str]) -> None:
    port, ca, cert, key, keys_dir, store_spec, client_id = argv
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(name)s %(message)s")
    store = open_store(store_spec)
    ingestor = Ingestor(store, HubKeys.load(Path(keys_dir)), load_ca_certs(Path(ca)))

    def crash(outcome: Outcome) -> None:
        print(f"event=crash_after_commit batch={outcome.batch_id}", file=sys.stderr, flush=True)
        os._exit(CRASH_EXIT)

    settings = WorkerSettings("127.0.0.1", int(port), Path(ca), Path(cert), Path(key), client_id)
    HubWorker(settings, ingestor, after_commit=crash).run(threading.Event())


if __name__ == "__main__":
    main(sys.argv[1:])
