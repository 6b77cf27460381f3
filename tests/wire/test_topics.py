"""wire.topics: building and parsing ``se/v1/{province}/{gateway_id}/{leaf}``."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wire.errors import Malformed
from wire.topics import (
    LEAVES,
    QOS,
    RETAIN,
    TopicRef,
    gateway_subscriptions,
    hub_status_subscription,
    hub_subscriptions,
    parse_topic,
    topic,
)

segments = st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z")


@given(segments, segments, st.sampled_from(LEAVES))
def test_round_trip(province: str, gateway_id: str, leaf: str) -> None:
    t = topic(province, gateway_id, leaf)
    assert t == f"se/v1/{province}/{gateway_id}/{leaf}"
    assert parse_topic(t) == TopicRef(province, gateway_id, leaf)


@pytest.mark.parametrize(
    "args",
    [
        ("p1", "gw/1", "up"),
        ("p1", "+", "up"),
        ("#", "gw-1", "up"),
        ("", "gw-1", "up"),
        ("p1", "gw-1", "down"),
        ("p1", "$SYS", "up"),
        ("p1", "gw 1", "up"),
        ("p1", "x" * 65, "up"),
    ],
)
def test_bad_parts(args: tuple[str, str, str]) -> None:
    with pytest.raises(Malformed) as err:
        topic(*args)
    assert err.value.reason == "bad_topic"


@pytest.mark.parametrize(
    "t",
    [
        "se/v1/p1/gw-1",
        "se/v2/p1/gw-1/up",
        "xx/v1/p1/gw-1/up",
        "se/v1/p1/gw-1/cmd/other",
        "se/v1/p1/+/up",
        "se/v1//gw-1/up",
        "se/v1/p1/gw-1/up/",
        "se/v1/p1/gw-1/" + "x" * 300,
    ],
)
def test_parse_refuses(t: str) -> None:
    with pytest.raises(Malformed):
        parse_topic(t)


@given(st.text(max_size=80))
def test_parse_raises_only_malformed(t: str) -> None:
    with contextlib.suppress(Malformed):
        parse_topic(t)


def test_subscriptions_and_qos() -> None:
    assert hub_subscriptions() == ["$share/hub/se/v1/+/+/up", "$share/hub/se/v1/+/+/alert"]
    assert hub_subscriptions("hub-x7") == ["$share/hub-x7/se/v1/+/+/up", "$share/hub-x7/se/v1/+/+/alert"]
    assert hub_status_subscription() == "se/v1/+/+/status"
    assert gateway_subscriptions("p1", "gw-0001") == ["se/v1/p1/gw-0001/ack", "se/v1/p1/gw-0001/cmd"]
    assert set(QOS.values()) == {1} and [leaf for leaf, r in RETAIN.items() if r] == ["status"]
    assert parse_topic("se/v1/p1/gw-0001/cmd/result").leaf == "cmd/result"
