"""What the gateway-side verbs (``apply``, ``check``, ``decommission``) need to know about the
agent, as plain records, and the interface the agent provides them through.

``provisioning`` imports nothing of ours (DESIGN §2), yet the preflight must judge the agent's
own config, its models and whether it runs. So the agent hands those facts in: the console
script ``edge-provision`` is ``edge_agent.provision_cli:main``, which implements
:class:`GatewaySide` with the agent's config loader, model verification and pid file, injects
the wall clock, and calls :func:`provisioning.cli.run`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

__all__ = ["ConfigProblem", "GatewayConfig", "GatewaySide", "ModelFacts", "ModelsReport", "SyncFiles"]


class ConfigProblem(Exception):
    """The agent's config does not load; ``str()`` is the agent's one-line message (it names the key)."""


@dataclass(frozen=True, slots=True)
class SyncFiles:
    broker: str
    ca: Path
    cert: Path
    key: Path
    hub_keys: Path


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    """The parts of the agent's validated config that provisioning looks at."""

    path: Path
    gateway_id: str
    province: str
    state_dir: Path
    keystore: Path
    db_path: Path
    quota_bytes: int
    sync: SyncFiles | None
    serial_ports: tuple[tuple[str, str], ...] = ()  # (device id, port)
    ble_devices: int = 0  # real BLE devices (replayed captures not counted)
    models_dir: Path | None = None
    trusted_keys: tuple[Path, ...] = ()
    allow_dev_key: bool = True


@dataclass(frozen=True, slots=True)
class ModelFacts:
    name: str
    key_id: str  # "" when unsigned
    error: str = ""  # "" when the sha256 and (for a known key) the signature verify


@dataclass(frozen=True, slots=True)
class ModelsReport:
    models: tuple[ModelFacts, ...]
    trusted_key_ids: tuple[str, ...]
    dev_key_id: str
    error: str = ""  # e.g. a trusted key file that cannot be read


class GatewaySide(Protocol):
    def load_config(self, path: Path) -> GatewayConfig:
        """The agent's loader; raises :class:`ConfigProblem`."""
        ...

    def models(self, config: GatewayConfig) -> ModelsReport:
        """Every manifest in the config's models dir, checked against the keys it trusts."""
        ...

    def agent_running(self, state_dir: Path) -> bool:
        """A live process holds the state dir's pid file."""
        ...
