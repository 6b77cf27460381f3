"""What provisioning repeats because it may import nothing of ours (DESIGN §2) agrees with the
original: the exit codes (edge_agent/errors.py) and the broker address rules (wire/address.py)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from edge_agent import errors as agent_errors
from provisioning import errors
from provisioning.address import broker_problem, host_port
from wire.address import broker_address


def test_exit_codes_agree() -> None:
    for name in ("EXIT_OK", "EXIT_FAILURE", "EXIT_USAGE", "EXIT_OPERATOR"):
        assert getattr(errors, name) == getattr(agent_errors, name), name


hosts = st.sampled_from(["h", "hub.example.vn", "127.0.0.1", "[::1]", "[zz::1]", "", "a b", "h:", "x_y"])
ports = st.sampled_from(["", ":1", ":8883", ":65535", ":0", ":65536", ":x", ":-1"])
tails = st.sampled_from(["", "/", "/p", "?q=1", "#f"])
schemes = st.sampled_from(["mqtts://", "mqtt://", "https://", "", "mqtts:/"])
users = st.sampled_from(["", "u@", "u:p@"])


@given(schemes, users, hosts, ports, tails)
def test_broker_rules_agree_with_wire(scheme: str, user: str, host: str, port: str, tail: str) -> None:
    url = f"{scheme}{user}{host}{port}{tail}"
    try:
        expected: tuple[str, int] | None = broker_address(url)
    except ValueError:
        expected = None
    assert (broker_problem(url) is None) == (expected is not None), url
    if expected is not None:
        assert host_port(url) == expected


@given(st.text(max_size=40))
def test_broker_rules_agree_on_any_text(url: str) -> None:
    try:
        broker_address(url)
        ok = True
    except ValueError:
        ok = False
    assert (broker_problem(url) is None) == ok, url
