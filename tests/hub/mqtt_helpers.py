"""Helpers for the hub's tests against a real Mosquitto: a minimal gateway (publish sealed batches,
collect the hub's signed acks), hub workers in this process or as ``edge-hub serve`` processes."""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from hub.ingest import Ingestor
from hub.mqtt_worker import HubWorker, WorkerSettings
from hub.store import HubStore
from tests.fixtures.mosquitto import MosquittoBroker, MqttClient
from tests.fixtures.pki import Identity, Pki
from wire import messages
from wire.topics import topic

PROVINCE = "p01"
ROOT = Path(__file__).parents[2]


class Gateway:
    """Publishes envelopes on its ``up`` topic and collects the hub's acks (signature checked)."""

    def __init__(self, broker: MosquittoBroker, pki: Pki, gateway_id: str, identity: Identity | None = None) -> None:
        self.gateway_id = gateway_id
        self.pki = pki
        self.client = MqttClient(broker, identity or pki.gateway(gateway_id)).connect()
        self.client.subscribe(topic(PROVINCE, gateway_id, "ack"))
        self.acks: list[messages.Ack] = []

    @property
    def up(self) -> str:
        return topic(PROVINCE, self.gateway_id, "up")

    def publish(self, data: bytes, topic_: str | None = None) -> None:
        self.client.publish(topic_ or self.up, data)

    def collect(self, seconds: float) -> list[messages.Ack]:
        for msg in self.client.received_within(seconds):
            self.acks.append(messages.decode_ack(msg.payload, self.pki.hub_public.signing))
        return self.acks

    def wait_acked(self, batch_ids: Sequence[str], timeout: float = 30.0) -> dict[str, list[messages.Ack]]:
        """Acks by batch id once every id in ``batch_ids`` has at least one; TimeoutError else."""
        deadline = time.monotonic() + timeout
        wanted = set(batch_ids)
        while True:
            got = self.by_batch()
            if wanted <= set(got):
                return got
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"{len(wanted - set(got))} of {len(wanted)} batches never acked")
            try:
                msg = self.client.messages.get(timeout=min(left, 0.2))
            except queue.Empty:
                continue
            self.acks.append(messages.decode_ack(msg.payload, self.pki.hub_public.signing))

    def by_batch(self) -> dict[str, list[messages.Ack]]:
        out: dict[str, list[messages.Ack]] = {}
        for a in self.acks:
            out.setdefault(a.batch_id, []).append(a)
        return out

    def close(self) -> None:
        self.client.disconnect()


def worker_settings(broker: MosquittoBroker, pki: Pki, hub: str = "hub-1") -> WorkerSettings:
    ident = pki.hub(hub)
    return WorkerSettings(
        host="127.0.0.1",
        port=broker.port,
        ca=pki.ca_path,
        cert=ident.cert_path,
        key=ident.key_path,
        client_id=hub,
        reconnect_min_s=1,
        reconnect_max_s=2,
    )


@contextlib.contextmanager
def running_worker(broker: MosquittoBroker, pki: Pki, store: HubStore, hub: str = "hub-1") -> Iterator[HubWorker]:
    """A HubWorker in this process, subscribed before the block starts, stopped after it."""
    worker = HubWorker(worker_settings(broker, pki, hub), Ingestor(store, pki.hub_keys, pki.ca_certs)).start()
    try:
        assert worker.wait_subscribed(10), "the worker never subscribed"
        yield worker
    finally:
        worker.stop()


class ServeProcess:
    """``edge-hub serve`` (python -m hub.cli) as a child process, its log in ``log_path``."""

    def __init__(
        self, workdir: Path, broker: MosquittoBroker, pki: Pki, store_spec: str, hub: str, *extra: str
    ) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.log_path = workdir / f"{hub}.log"
        ident = pki.hub(hub)
        self.argv = [
            sys.executable,
            "-m",
            "hub.cli",
            "serve",
            "--store",
            store_spec,
            "--broker",
            broker.url,
            "--ca",
            str(pki.ca_path),
            "--cert",
            str(ident.cert_path),
            "--key",
            str(ident.key_path),
            "--hub-keys",
            str(pki.hub_keys_dir),
            *extra,
        ]
        self.proc: subprocess.Popen[bytes] | None = None
        self._subscribed_seen = 0

    def start(self, timeout: float = 20.0) -> ServeProcess:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                self.argv,
                stdout=log,
                stderr=log,
                cwd=ROOT,
                env={
                    **os.environ,
                    "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
                },
            )
        self.wait_log("event=subscribed", timeout)
        return self

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def wait_log(self, needle: str, timeout: float) -> None:
        """Wait for one more occurrence of ``needle`` than seen before (per start)."""
        want = self._subscribed_seen + 1
        deadline = time.monotonic() + timeout
        while self.log_text().count(needle) < want:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"edge-hub serve exited {self.proc.returncode}:\n{self.log_text()[-3000:]}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"no {needle!r} in the worker log:\n{self.log_text()[-3000:]}")
            time.sleep(0.05)
        self._subscribed_seen = want

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def terminate(self, timeout: float = 15.0) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode

    def __enter__(self) -> ServeProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(Exception):
            self.terminate()
