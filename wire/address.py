"""The broker address both sides are configured with: ``mqtts://host[:port]`` (TLS only). Pure."""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

SCHEMES = ("mqtts",)
DEFAULT_PORT = 8883


def broker_address(url: str) -> tuple[str, int]:
    """``mqtts://host[:port]`` -> (host, port); raises ValueError saying what is wrong."""
    parts = urlsplit(url)
    if parts.scheme not in SCHEMES:
        raise ValueError(f"must be mqtts://host[:port] (TLS only), got {url!r}")
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username or parts.password:
        raise ValueError(f"must be mqtts://host[:port] with nothing after the port, got {url!r}")
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"port must be a number from 1 to 65535, got {url!r}") from None
    host = parts.hostname or ""
    if not host:
        raise ValueError(f"has no host, got {url!r}")
    if ":" in host:  # an IPv6 literal ([::1]) must be one
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"{host!r} is not an IPv6 address") from None
    if port == 0:
        raise ValueError(f"port must be a number from 1 to 65535, got {url!r}")
    return host, DEFAULT_PORT if port is None else port
