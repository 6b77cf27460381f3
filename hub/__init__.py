"""Provincial hub: ingest, dedupe, acks, fleet registry."""
