"""The ``edge-provision`` console script: :func:`provisioning.cli.run` with the wall clock and the
agent's side of the gateway verbs (provisioning.gateway.GatewaySide): the agent's own config
loader, its model-manifest verification and its pid file. provisioning imports nothing of ours
(DESIGN §2), so this is where the two meet."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from edge_agent.config import ConfigError, load_config
from edge_agent.state_files import PidFileError, process_alive, read_pid
from edge_agent.sync.renewal import best_identity
from models import signing
from models.manifest import MANIFEST_SUFFIX
from provisioning.cli import run
from provisioning.gateway import ConfigProblem, GatewayConfig, ModelFacts, ModelsReport, SyncFiles

__all__ = ["AgentGateway", "main"]

BUILT_DIR = Path(signing.__file__).resolve().parent / "built"


class AgentGateway:
    """provisioning.gateway.GatewaySide for this agent."""

    def __init__(self, clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.clock = clock

    def load_config(self, path: Path) -> GatewayConfig:
        try:
            cfg = load_config(path)
        except ConfigError as exc:
            raise ConfigProblem(str(exc)) from None
        sync = cfg.sync
        pair = (
            None
            if sync is None
            else best_identity(sync.cert, sync.key, sync.ca, cfg.gateway.state_dir, cfg.gateway.id, self.clock())
        )
        return GatewayConfig(
            path=path,
            gateway_id=cfg.gateway.id,
            province=cfg.gateway.province,
            state_dir=cfg.gateway.state_dir,
            keystore=cfg.keystore_path,
            db_path=cfg.db_path,
            quota_bytes=int(cfg.store.quota_mb * 2**20),
            sync=None
            if sync is None or pair is None
            else SyncFiles(
                broker=sync.broker,
                ca=sync.ca,
                # the pair the agent connects with: a renewed certificate (or a rotated key and its
                # certificate) in the state dir when newer
                cert=pair[1],
                key=pair[0],
                hub_keys=sync.hub_keys,
            ),
            serial_ports=tuple((d.id, d.port) for d in cfg.devices if d.transport == "serial"),
            ble_devices=sum(1 for d in cfg.devices if d.transport == "ble" and not d.address.startswith("replay:")),
            models_dir=cfg.models_dir,
            trusted_keys=cfg.scoring.trusted_keys,
            allow_dev_key=cfg.scoring.allow_dev_key,
        )

    def models(self, config: GatewayConfig) -> ModelsReport:
        """Each manifest's sha256 and, when signed by a key this gateway knows (the development
        key or a trusted one), its signature. An unknown key is not damage: the ``models`` check
        reports it as untrusted."""
        dev = signing.dev_public_key()
        known: dict[str, Ed25519PublicKey] = {signing.key_id(dev): dev}
        trusted: list[str] = []
        error = ""
        for path in config.trusted_keys:
            try:
                key = signing.load_public_key(path)
            except (OSError, ValueError, TypeError) as exc:
                error = f"scoring.trusted_keys: {path}: {exc}"
                continue
            known[signing.key_id(key)] = key
            trusted.append(signing.key_id(key))
        directory = config.models_dir or BUILT_DIR
        facts: list[ModelFacts] = []
        try:
            manifests = sorted(directory.glob(f"*{MANIFEST_SUFFIX}"))
        except OSError as exc:
            return ModelsReport((), tuple(trusted), signing.key_id(dev), f"cannot read {directory}: {exc.strerror}")
        for path in manifests:
            facts.append(_model_facts(path, known))
        return ModelsReport(tuple(facts), tuple(trusted), signing.key_id(dev), error)

    def agent_running(self, state_dir: Path) -> bool:
        try:
            pid = read_pid(state_dir / "agent.pid")
        except (PidFileError, OSError):
            return False
        return pid is not None and process_alive(pid)


def _model_facts(path: Path, known: dict[str, Ed25519PublicKey]) -> ModelFacts:
    try:
        raw: Any = json.loads(path.read_bytes())
        sig = raw.get("signature") if isinstance(raw, dict) else None
        kid = str(sig.get("key_id", "")) if isinstance(sig, dict) else ""
        model = (path.parent / str(raw.get("model_file", ""))).read_bytes()
    except (OSError, ValueError, AttributeError) as exc:
        return ModelFacts(path.name, "", f"unreadable ({type(exc).__name__})")
    if hashlib.sha256(model).hexdigest() != raw.get("sha256"):
        return ModelFacts(path.name, kid, "the model file does not match its sha256")
    if kid in known:
        try:
            signing.verify(raw, {kid: known[kid]})
        except signing.SignatureError as exc:
            return ModelFacts(path.name, kid, str(exc))
    return ModelFacts(path.name, kid)


def main(argv: Sequence[str] | None = None) -> int:
    return run(argv, clock=lambda: datetime.now(UTC), gateway=AgentGateway())


if __name__ == "__main__":
    import sys

    sys.exit(main())
