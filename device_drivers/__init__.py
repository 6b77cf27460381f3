"""Device drivers: transports, pure parsers (bytes -> Measurements) and device simulators."""
