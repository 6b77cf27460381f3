"""Helpers for the remote-command tests: the agent's config file for the test PKI and broker."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from tests.fixtures.mosquitto import MosquittoBroker
from tests.fixtures.pki import Pki

GW = "gw-0001"
PROVINCE = "p1"


def write_config(tmp: Path, pki: Pki, broker: MosquittoBroker) -> Path:
    gw = pki.gateway(GW)
    path = tmp / "etc" / "agent.toml"
    path.parent.mkdir(parents=True)
    path.write_text(
        f"""version = 1
[gateway]
id = "{GW}"
province = "{PROVINCE}"
state_dir = "{tmp / "state"}"
[scheduler]
status_interval_s = 1.0
[sync]
broker = "{broker.url}"
ca = "{pki.ca_path}"
cert = "{gw.cert_path}"
key = "{gw.key_path}"
hub_keys = "{pki.hub_public_path}"
heartbeat_s = 60.0
batch_max_age_s = 0.2
"""
    )
    return path


def wait_until(pred: Callable[[], bool], timeout: float = 20.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.05)
    return pred()
