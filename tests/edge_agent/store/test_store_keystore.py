"""The keystore file refuses anything but its documented shape with one KeystoreError line that
names the file and what is wrong (fuzzed over arbitrary JSON)."""

from __future__ import annotations

import base64
import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_agent.store import KeystoreError
from edge_agent.store.keystore import Keystore

NOW = datetime(2030, 1, 1, tzinfo=UTC)
KS_PATH = Path("/var/lib/station-edge/keystore.json")
KEY = base64.b64encode(bytes(range(32))).decode()


def _valid() -> dict[str, Any]:
    return {
        "format": 1,
        "index_key": KEY,
        "current": 2,
        "keys": {"2": {"key": KEY, "created": "2030-01-01T00:00:00+00:00"}},
        "destroyed": {"1": "2029-12-31T00:00:00+00:00"},
    }


def _write(p: Path, text: str) -> None:
    fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.write(fd, text.encode())
    os.close(fd)


@pytest.mark.parametrize(
    ("text", "what"),
    [
        ("null", "holds null, not an object with format, index_key, current, keys"),
        ("[]", "holds a list"),
        ('"x"', "holds a string"),
        ("7", "holds a number"),
        ("true", "holds true"),
        ("{}", "format, index_key, current, keys missing"),
        ('{"format": 2, "index_key": "", "current": 1, "keys": {}}', "format is 2, this agent reads format 1"),
        ('{"format": true, "index_key": "", "current": 1, "keys": {}}', "format is true"),
        ('{"format": 1, "index_key": null, "current": 1, "keys": {}}', "index_key is null, not base64 text"),
        ('{"format": 1, "index_key": "%%%", "current": 1, "keys": {}}', "index_key is not valid base64"),
        ('{"format": 1, "index_key": "AAAA", "current": 1, "keys": {}}', "index_key has 3 bytes, expected 32"),
        ("{not json", "not JSON"),
        ("[" * 100_000, "not JSON"),
    ],
)
def test_malformed_keystore_is_one_line_naming_file_and_problem(tmp_path: Path, text: str, what: str) -> None:
    p = tmp_path / "keystore.json"
    _write(p, text)
    with pytest.raises(KeystoreError) as err:
        Keystore.open(p, now=NOW)
    msg = str(err.value)
    assert msg.startswith(f"{p}: keystore is malformed: ") and what in msg, msg
    assert "\n" not in msg and err.value.path == str(p)


@pytest.mark.parametrize(
    ("edit", "what"),
    [
        (lambda d: d.update(current="2"), "current is a string, not a key id"),
        (lambda d: d.update(current=3), "current key 3 is not among the keys"),
        (lambda d: d.update(keys=[]), "keys is a list, not an object"),
        (lambda d: d["keys"].update({"x": d["keys"]["2"]}), "keys has a key id that is not a number ('x')"),
        (lambda d: d["keys"].update({"02": d["keys"]["2"]}), "key 2 appears twice"),
        (lambda d: d["keys"].update({"2": None}), "keys.2 is null, not an object with key and created"),
        (lambda d: d["keys"]["2"].pop("created"), "keys.2.created is null, not an ISO 8601 time"),
        (lambda d: d["keys"]["2"].update(created="yesterday"), "keys.2.created is not an ISO 8601 time"),
        (lambda d: d["keys"]["2"].update(created="2030-01-01T00:00:00"), "keys.2.created has no UTC offset"),
        (lambda d: d.update(destroyed=None), "destroyed is null, not an object"),
        (lambda d: d["destroyed"].update({"1": 5}), "destroyed.1 is a number, not an ISO 8601 time"),
    ],
)
def test_each_wrong_field_is_named(edit: Any, what: str) -> None:
    doc = _valid()
    edit(doc)
    with pytest.raises(KeystoreError, match="keystore is malformed") as err:
        Keystore._parse(KS_PATH, doc)
    assert what in str(err.value) and KEY not in str(err.value)  # never the key bytes


def test_valid_document_parses() -> None:
    ks = Keystore._parse(KS_PATH, _valid())
    assert (
        ks.current_id == 2
        and ks.keys[2].key == bytes(range(32))
        and ks.destroyed == {1: datetime(2029, 12, 31, tzinfo=UTC)}
    )


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4),
    max_leaves=20,
)
NEAR = st.fixed_dictionaries(
    {
        "format": st.sampled_from([1, 1.0, True, "1", 0]) | JSON,
        "index_key": st.sampled_from([KEY, KEY[:-4], "", "ÿÿ"]) | JSON,
        "current": st.sampled_from([1, 2, -1, True]) | JSON,
        "keys": st.dictionaries(
            st.sampled_from(["1", "2", "01", "x", "", "١"]) | st.text(max_size=4),
            st.fixed_dictionaries(
                {
                    "key": st.sampled_from([KEY, "AAAA", "*"]) | JSON,
                    "created": st.sampled_from(["2030-01-01T00:00:00+00:00", "2030-01-01", "nope"]) | JSON,
                }
            )
            | JSON,
            max_size=3,
        )
        | JSON,
    },
    optional={"destroyed": st.dictionaries(st.text(max_size=3), JSON, max_size=2) | JSON},
)


@settings(max_examples=400, deadline=None)
@given(st.one_of(JSON, NEAR))
def test_parse_only_ever_raises_keystore_error(data: object) -> None:
    try:
        ks = Keystore._parse(KS_PATH, data)
    except KeystoreError as exc:
        msg = str(exc)
        assert msg.startswith(f"{KS_PATH}: keystore is malformed: ") and "\n" not in msg
    else:
        assert ks.current_id in ks.keys


@settings(max_examples=100, deadline=None)
@given(st.one_of(JSON, NEAR))
def test_open_only_ever_raises_keystore_error(data: object) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "keystore.json"
        _write(p, json.dumps(data))
        try:
            Keystore.open(p, now=NOW)
        except KeystoreError as exc:
            assert str(exc).startswith(f"{p}: ") and "\n" not in str(exc)
