"""Sync to the provincial hub: the paho-mqtt adapter (mqtt), the uplink loop, the heartbeat, the
clock probe, and SyncPart, the component that ties them to the agent."""
