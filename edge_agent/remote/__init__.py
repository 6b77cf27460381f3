"""Signed remote commands from the hub (wire.commands): verification, replay and expiry guard,
atomic apply with rollback (config overlay, pushed models), diagnostics bundles, key rotation,
and the component that runs them on the sync link (docs/protocol.md, docs/hub.md)."""
