"""Sync benchmark: drain a buffered backlog to a real Mosquitto (TLS) and a real ``edge-hub serve``
worker (SQLite store), against a raw paho QoS 1 publish loop sending the same bytes in the same
run; plus bytes on the wire per reading at the default batch size and the gateway's RSS.

    .venv/bin/python benchmarks/bench_sync.py [--readings 100000]

The "week-long outage in miniature" of issue 9: N readings are buffered with the link down, then
the agent starts with the link up and no devices; the clock runs from the moment its sync is
connected until nothing is pending (every batch acknowledged after the hub's commit).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from device_drivers.records import Reading, Vital  # noqa: E402
from edge_agent.agent import Agent  # noqa: E402
from edge_agent.config import AgentConfig, GatewayConfig, StoreConfig, SyncConfig  # noqa: E402
from edge_agent.store import BufferStore  # noqa: E402
from hub.store import open_store  # noqa: E402
from tests.fixtures.mosquitto import MosquittoBroker  # noqa: E402
from tests.fixtures.pki import Pki, kernel_now  # noqa: E402
from wire.envelope import seal_batch  # noqa: E402
from wire.messages import ReadingBatch  # noqa: E402

GW = "gw-bench"
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def reading(seq: int) -> Reading:
    """Like an oximeter's stream: SpO2 and pulse alternating, values and timing that vary (an
    unvarying stream would compress unrealistically well on the wire)."""
    rng = random.Random(seq)
    vital = (Vital.SPO2, Vital.HEART_RATE)[seq % 2]
    at = T0 + timedelta(seconds=seq // 2, milliseconds=rng.randrange(1000))
    return Reading(
        uid=f"{GW}:{seq}",
        seq=seq,
        vital=vital,
        value=float(rng.randint(88, 100) if vital == Vital.SPO2 else rng.randint(55, 130)),
        unit="%" if vital == Vital.SPO2 else "/min",
        measured_at=at,
        received_at=at,
        device_id="ox-1",
        source_format="masimo-ascii",
        clock_from_device=True,
        patient_id=None,
    )


def rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def fill(state: Path, n: int) -> None:
    store = BufferStore.open(
        state / "buffer.sqlite3",
        gateway_id=GW,
        keystore_path=state / "keystore.json",
        config=StoreConfig(quota_mb=4096),
    )
    try:
        for start in range(1, n + 1, 2000):
            store.submit([reading(s) for s in range(start, min(n, start + 1999) + 1)]).result()
    finally:
        store.close()


def wire_bytes_per_reading(pki: Pki, batch_max: int) -> float:
    batch = ReadingBatch(
        batch_id="b" * 16, gateway_id=GW, sent_at=T0, readings=tuple(reading(s) for s in range(1, batch_max + 1))
    )
    sealed = seal_batch(batch, hub_sealing_public=pki.hub_public.sealing, gateway=pki.gateway(GW).certified)
    return len(sealed) / batch_max


def raw_paho(broker: MosquittoBroker, pki: Pki, messages: int, size: int) -> float:
    """Seconds for a bare paho loop to publish ``messages`` payloads of ``size`` bytes at QoS 1, up
    to 4 in flight (the agent's window), and get every PUBACK."""
    ident = pki.gateway(GW)
    done = threading.Semaphore(0)
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=GW, protocol=MQTTProtocolVersion.MQTTv5)
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(pki.ca_path))
    ctx.load_cert_chain(str(ident.cert_path), str(ident.key_path))
    client.tls_set_context(ctx)
    client.max_inflight_messages_set(4)
    client.on_publish = lambda *a: done.release()
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    payload = b"x" * size
    start = time.perf_counter()
    for _ in range(messages):
        client.publish(f"se/v1/p1/{GW}/status", payload, qos=1)
    for _ in range(messages):
        done.acquire()
    elapsed = time.perf_counter() - start
    client.disconnect()
    client.loop_stop()
    return elapsed


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--readings", type=int, default=100_000)
    ap.add_argument("--batch-max", type=int, default=500)
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-sync-") as tmp_s:
        tmp = Path(tmp_s)
        pki = Pki(tmp / "pki", now=kernel_now(tmp))
        per_reading = wire_bytes_per_reading(pki, args.batch_max)
        with MosquittoBroker(tmp / "broker", pki, persistence=False) as broker:
            state = tmp / "state"
            state.mkdir()
            t = time.perf_counter()
            fill(state, args.readings)
            print(f"buffered {args.readings:,} readings in {time.perf_counter() - t:.1f} s (link down)")
            hub_ident = pki.hub("hub-1")
            hub = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "hub.cli",
                    "serve",
                    "--store",
                    str(tmp / "hub"),
                    "--broker",
                    broker.url,
                    "--ca",
                    str(pki.ca_path),
                    "--cert",
                    str(hub_ident.cert_path),
                    "--key",
                    str(hub_ident.key_path),
                    "--hub-keys",
                    str(pki.hub_keys_dir),
                ],
                stderr=subprocess.DEVNULL,
            )
            ident = pki.gateway(GW)
            config = AgentConfig(
                version=1,
                gateway=GatewayConfig(id=GW, province="p1", state_dir=state),
                devices=(),
                store=StoreConfig(quota_mb=4096),
                sync=SyncConfig(
                    broker=broker.url,
                    ca=pki.ca_path,
                    cert=ident.cert_path,
                    key=ident.key_path,
                    hub_keys=pki.hub_public_path,
                    batch_max=args.batch_max,
                ),
            )
            agent = Agent(config)
            elapsed = 0.0
            rss_at_connect = rss_peak = 0

            async def drain() -> None:
                nonlocal elapsed, rss_at_connect, rss_peak
                stop = asyncio.Event()

                async def watch() -> None:
                    nonlocal elapsed, rss_at_connect, rss_peak
                    while agent.sync is None or agent.sync.state != "connected":  # the clock starts here
                        await asyncio.sleep(0.01)
                    start = time.perf_counter()
                    rss_at_connect = rss_peak = rss_kib()
                    while agent.store.stats().pending > 0:
                        await asyncio.sleep(0.05)
                        rss_peak = max(rss_peak, rss_kib())
                    elapsed = time.perf_counter() - start
                    stop.set()

                watcher = asyncio.get_running_loop().create_task(watch())
                await agent.run(stop)
                await watcher

            asyncio.run(drain())
            time.sleep(1.0)
            hub.terminate()
            hub.wait(timeout=30)
            with open_store(tmp / "hub") as hs:
                at_hub = hs.count_readings(GW)
            messages = -(-args.readings // args.batch_max)
            t_raw = raw_paho(broker, pki, messages, int(per_reading * args.batch_max))
        rate = args.readings / elapsed
        raw_rate = args.readings / t_raw
        print(
            f"drain to broker + hub (acked, committed): {rate:>10,.0f} readings/s  ({elapsed:.1f} s; at hub {at_hub:,})"
        )
        print(f"raw paho QoS 1, same bytes, 4 in flight:  {raw_rate:>10,.0f} readings/s  ratio {rate / raw_rate:.2f}")
        print(f"bytes on the wire per reading (batch {args.batch_max}, sealed + signed): {per_reading:.1f}")
        print(f"peak RSS growth, gateway process, connect to drained: {(rss_peak - rss_at_connect) / 1024:.1f} MiB")
        print(
            json.dumps(
                {
                    "drain_readings_per_s": round(rate),
                    "ratio_to_raw_paho": round(rate / raw_rate, 3),
                    "wire_bytes_per_reading": round(per_reading, 1),
                    "rss_growth_mib": round((rss_peak - rss_at_connect) / 1024, 1),
                    "all_at_hub": at_hub == args.readings,
                }
            )
        )
        return 0 if at_hub == args.readings else 1


if __name__ == "__main__":
    sys.exit(main())
