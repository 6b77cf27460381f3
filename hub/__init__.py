"""Provincial hub: MQTT ingest workers (verify, open, store each reading once, signed acks), the
store (SQLite or PostgreSQL), the fleet registry and the FHIR R4 export. See docs/hub.md."""
