"""The broker address a bundle carries: ``mqtts://host[:port]``, TLS only. The same rules as
``wire.address`` (which provisioning may not import, DESIGN §2); tests/provisioning compare the
two on generated addresses. Pure."""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

__all__ = ["broker_problem", "host_port"]


def broker_problem(url: str) -> str | None:
    """What is wrong with ``url`` as a broker address, or None."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return f"is not a URL: {url!r}"
    if parts.scheme != "mqtts":
        return f"must be mqtts://host[:port] (TLS only), got {url!r}"
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username or parts.password:
        return f"must be mqtts://host[:port] with nothing after the port, got {url!r}"
    try:
        port = parts.port
    except ValueError:
        return f"port must be a number from 1 to 65535, got {url!r}"
    host = parts.hostname or ""
    if not host:
        return f"has no host, got {url!r}"
    if ":" in host:
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            return f"{host!r} is not an IPv6 address"
    if port == 0:
        return f"port must be a number from 1 to 65535, got {url!r}"
    return None


def host_port(url: str, default_port: int = 8883) -> tuple[str, int]:
    """(host, port) of a valid broker address; ValueError naming the problem otherwise."""
    problem = broker_problem(url)
    if problem is not None:
        raise ValueError(problem)
    parts = urlsplit(url)
    return parts.hostname or "", parts.port or default_port
