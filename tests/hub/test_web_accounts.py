"""The fleet page's operator accounts (hub/web/accounts.py): the file's parser on any text, the
round trip through set_password, and verification (an unknown name never matches)."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hub.web.accounts import (
    AccountError,
    AccountsFileError,
    check_name,
    check_password,
    parse_accounts,
    read_accounts,
    set_password,
    verify,
)


@given(st.text(max_size=200))
def test_the_parser_takes_any_text_without_crashing(text: str) -> None:
    try:
        accounts = parse_accounts(text, Path("f"))
    except AccountsFileError as exc:
        assert "line" in exc.reason
    else:
        assert all(check_name(n) == n and h.startswith("scrypt$") for n, h in accounts.items())


def test_round_trip_and_verification(tmp_path: Path) -> None:
    path = tmp_path / "ops"
    assert read_accounts(path) == {}
    assert set_password(path, "lan", "mật khẩu dài đủ")
    assert set_password(path, "minh.t@so-y-te", "another password")
    assert not set_password(path, "lan", "a new password!")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    accounts = read_accounts(path)
    assert sorted(accounts) == ["lan", "minh.t@so-y-te"]
    assert verify(accounts, "lan", "a new password!")
    assert not verify(accounts, "lan", "mật khẩu dài đủ")  # the old one
    assert not verify(accounts, "nobody", "a new password!")
    assert not verify(accounts, "lan", "x" * 200)
    path.write_text(path.read_text() + "\n# a comment\n\n")
    assert read_accounts(path) == accounts


@pytest.mark.parametrize("name", ["", "-lan", "a b", "x" * 65, "lan:2", "Lê"])
def test_bad_names(name: str) -> None:
    with pytest.raises(AccountError):
        check_name(name)


@pytest.mark.parametrize("password", ["short", "x" * 129, "tab\tinside password"])
def test_bad_passwords(password: str) -> None:
    with pytest.raises(AccountError):
        check_password(password)


def test_an_unreadable_file_is_an_operator_error(tmp_path: Path) -> None:
    (tmp_path / "ops").mkdir()
    with pytest.raises(AccountsFileError):
        read_accounts(tmp_path / "ops")
    with pytest.raises(AccountsFileError):
        set_password(tmp_path / "ops", "lan", "long enough pw")
