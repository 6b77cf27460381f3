"""Versioned MQTT payloads shared by gateway and hub: topics, messages, the sealed and signed envelope. Pure: no I/O."""
