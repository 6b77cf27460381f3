"""The config file itself (encoding, not a file, unreadable), paths, ``version``, and one-line errors.

Whatever is in the file, ``load_config`` raises :class:`ConfigError` (never a traceback from
deeper down) and ``str(error)`` is a single line: the CLI prints it as one journal line.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge_agent.config import ConfigError, load_config, parse_config

GOOD = """version = 1
[gateway]
id = "gw-0001"
province = "ha-giang"
state_dir = "state"
[[devices]]
id = "ox-1"
format = "masimo-ascii"
transport = "serial"
port = "/dev/ttyUSB0"
"""


def write(tmp_path: Path, text: str | bytes, name: str = "agent.toml") -> Path:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def one_line(exc: ConfigError) -> str:
    text = str(exc)
    assert len(text.splitlines()) == 1, text
    return text


# --- the file ----------------------------------------------------------------------------------


def test_non_utf8_file_names_the_file_and_the_byte_offset(tmp_path: Path) -> None:
    raw = GOOD.encode().replace(b'"ha-giang"', b'"h\xe0-giang"')  # Latin-1 à, not UTF-8
    offset = raw.index(b"\xe0")
    path = write(tmp_path, raw)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    text = one_line(info.value)
    assert str(path) in text
    assert f"offset {offset}" in text
    assert "UTF-8" in text
    assert info.value.key == ""


def test_utf8_byte_order_mark_is_accepted(tmp_path: Path) -> None:
    # Windows editors write one; it is not a config error.
    cfg = load_config(write(tmp_path, b"\xef\xbb\xbf" + GOOD.encode()))
    assert cfg.gateway.id == "gw-0001"


def test_config_that_is_a_directory(tmp_path: Path) -> None:
    (tmp_path / "conf.d").mkdir()
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "conf.d")
    text = one_line(info.value)
    assert "is a directory" in text and str(tmp_path / "conf.d") in text


def test_missing_config(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "absent.toml")
    text = one_line(info.value)
    assert "cannot read config" in text and "absent.toml" in text and "No such file" in text


def test_unreadable_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, GOOD)
    if os.geteuid() != 0:  # root reads anything; then simulate the permission error instead
        path.chmod(0)
    else:

        def denied(self: Path) -> bytes:
            raise PermissionError(13, "Permission denied", str(self))

        monkeypatch.setattr(Path, "read_bytes", denied)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    text = one_line(info.value)
    assert "cannot read config" in text and "Permission denied" in text and str(path) in text


def test_file_name_with_a_newline_stays_on_one_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "bad\nname.toml")
    one_line(info.value)


# --- paths ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "key"),
    [
        ('[store]\nkeystore = ""\n', "store.keystore"),
        ('[scoring]\npushed_models_dir = ""\n', "scoring.pushed_models_dir"),
        ('[scoring]\ntrusted_keys = ["/etc/a.pem", ""]\n', "scoring.trusted_keys[1]"),
        ('[scoring]\ntrusted_keys = "/etc/a.pem"\n', "scoring.trusted_keys"),
    ],
)
def test_empty_paths_are_refused(tmp_path: Path, extra: str, key: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, GOOD + extra))
    assert info.value.key == key


def test_empty_state_dir_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, GOOD.replace('state_dir = "state"', 'state_dir = ""')))
    assert info.value.key == "gateway.state_dir"
    assert "must not be empty" in one_line(info.value)


def test_empty_models_dir_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, 'models_dir = ""\n' + GOOD))
    assert info.value.key == "models_dir"


def test_paths_resolve_relative_to_the_config_file(tmp_path: Path) -> None:
    extra = '[store]\nkeystore = "keys/ks.json"\n[scoring]\ntrusted_keys = ["k.pem"]\n'
    text = 'models_dir = "models"\n' + GOOD + extra
    cfg = load_config(write(tmp_path, text))
    assert cfg.models_dir == tmp_path / "models"
    assert cfg.keystore_path == tmp_path / "keys" / "ks.json"
    assert cfg.scoring.trusted_keys == (tmp_path / "k.pem",)


def test_nul_byte_in_a_path_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, GOOD.replace('state_dir = "state"', 'state_dir = "st\\u0000ate"')))
    assert info.value.key == "gateway.state_dir"
    assert "control characters" in one_line(info.value)


# --- version ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ('"1"', "got a string '1'"),
        ("true", "got a boolean"),
        ("1.0", "got a float"),
        ("[1]", "got an array"),
        ("2", "unsupported config version 2"),
    ],
)
def test_version_must_be_the_integer_1(tmp_path: Path, value: str, words: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, GOOD.replace("version = 1", f"version = {value}")))
    assert info.value.key == "version"
    text = one_line(info.value)
    assert words in text
    assert "this agent reads 1" in text


# --- other strings ----------------------------------------------------------------------------


def test_station_name_must_be_one_line(tmp_path: Path) -> None:
    text = GOOD.replace('state_dir = "state"', 'state_dir = "state"\nstation_name = "Tram\\nY te"')
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text))
    assert info.value.key == "gateway.station_name"
    ok = GOOD.replace('state_dir = "state"', 'state_dir = "state"\nstation_name = "Trạm Y tế xã Minh Tân"')
    assert load_config(write(tmp_path, ok)).gateway.station_name == "Trạm Y tế xã Minh Tân"


def test_missing_gateway_table_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({"version": 1}, base_dir=tmp_path)
    assert info.value.key == "gateway"


def test_unknown_key_with_a_newline_in_its_name(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, GOOD.replace("[gateway]", '[gateway]\n"col\\nour" = 1')))
    assert info.value.key == "gateway.'col\\nour'"
    assert "\n" not in info.value.key
    one_line(info.value)


# --- one line, whatever the input ---------------------------------------------------------------

LINE_BREAKS = "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"
nasty_text = st.text(alphabet=st.sampled_from([*LINE_BREAKS, "a", "-", "\x00", "é", '"', "'"]), max_size=12)
FIELDS = [
    ("gateway", "id"),
    ("gateway", "province"),
    ("gateway", "timezone"),
    ("gateway", "state_dir"),
    ("gateway", "station_name"),
    ("store", "keystore"),
    ("scoring", "news2_min_level"),
    ("devices", "id"),
    ("devices", "format"),
    ("devices", "transport"),
    ("devices", "port"),
    ("devices", "scenario"),
    ("store", "quota_mb"),
    ("gateway", "nasty-key"),
]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(field=st.sampled_from(FIELDS), text=nasty_text, as_key=st.booleans())
def test_error_message_is_always_one_line(tmp_path: Path, field: tuple[str, str], text: str, as_key: bool) -> None:
    section, name = field
    data: dict[str, object] = {
        "version": 1,
        "gateway": {"id": "gw-1", "province": "hg", "state_dir": "s"},
        "devices": [{"id": "d-1", "format": "masimo-ascii", "transport": "serial", "port": "/dev/ttyUSB0"}],
    }
    table = data["devices"][0] if section == "devices" else data.setdefault(section, {})  # type: ignore[index]
    if as_key:
        table[text or "x\n"] = 1  # type: ignore[index]
    else:
        table[name] = text  # type: ignore[index]
    try:
        parse_config(data, base_dir=tmp_path)
    except ConfigError as exc:
        assert len(str(exc).splitlines()) == 1, repr(str(exc))
        assert len(exc.key.splitlines()) <= 1, repr(exc.key)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=st.binary(max_size=200))
def test_any_bytes_give_a_config_error_or_a_config(tmp_path: Path, raw: bytes) -> None:
    path = write(tmp_path, raw, "fuzz.toml")
    try:
        load_config(path)
    except ConfigError as exc:
        assert len(str(exc).splitlines()) == 1, repr(str(exc))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cut=st.integers(min_value=0, max_value=len(GOOD)), junk=st.binary(max_size=8))
def test_damaged_good_file_gives_a_config_error_or_a_config(tmp_path: Path, cut: int, junk: bytes) -> None:
    raw = GOOD.encode()
    path = write(tmp_path, raw[:cut] + junk + raw[cut:], "damaged.toml")
    try:
        load_config(path)
    except ConfigError as exc:
        assert len(str(exc).splitlines()) == 1, repr(str(exc))
