"""Pure parts of the dashboard: message catalogues, PIN hashing, sessions, the login limit,
identifiers and visits, and the page's view of scores."""

from __future__ import annotations

import re
import subprocess
import sys
import unicodedata
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge_agent.dashboard import auth
from edge_agent.dashboard.i18n import LOCALE_DIR, CatalogError, catalog, negotiate, parse_po
from edge_agent.dashboard.view import score_for_page
from edge_agent.dashboard.visits import (
    Identifier,
    VisitBook,
    VisitError,
    parse_age_band,
    parse_identifier,
    parse_observations,
)
from edge_agent.scoring.patient import AgeBand

PKG = Path(__file__).parents[3] / "edge_agent" / "dashboard"
WEBUI = Path(__file__).parents[3] / "webui"  # the login page and its texts, shared with the hub's page
T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)


def used_msgids() -> set[str]:
    ids: set[str] = set()
    for p in [*(PKG / "templates").glob("*.html"), *(WEBUI / "templates").glob("*.html")]:
        ids |= set(re.findall(r'\{\{\s*_\("((?:[^"\\]|\\.)*)"\)\s*\}\}', p.read_text()))
    ids |= set(re.findall(r'\bt\("((?:[^"\\]|\\.)*)"', (PKG / "static" / "app.js").read_text()))
    for p in [*PKG.glob("*.py"), *WEBUI.glob("*.py")]:
        s = p.read_text()
        ids |= set(re.findall(r'gettext\(\s*"((?:[^"\\]|\\.)*)"', s))
        ids |= set(re.findall(r'VisitError\(\s*[^,()]+,\s*"((?:[^"\\]|\\.)*)"', s))
        ids |= set(re.findall(r'"(?:cccd|bhyt|local)": "((?:[^"\\]|\\.)*)"', s))
    return ids


def test_every_message_has_a_vietnamese_translation() -> None:
    vi = catalog("vi").messages
    ids = used_msgids()
    assert len(ids) > 100
    missing = sorted(ids - set(vi))
    assert not missing, f"not in locale/vi.po: {missing}"
    unused = sorted(set(vi) - ids)
    assert not unused, f"vi.po entries nothing uses: {unused}"


def test_vietnamese_is_nfc_with_its_diacritics() -> None:
    text = (LOCALE_DIR / "vi.po").read_text(encoding="utf-8")
    assert unicodedata.normalize("NFC", text) == text  # precomposed letters: one glyph each
    vi = catalog("vi")
    assert vi.gettext("Respiration rate") == "Nhịp thở"
    assert vi.gettext("≥ {total}, missing: {missing}") == "≥ {total}, chưa đủ: {missing}"
    for msgid, msgstr in vi.messages.items():  # placeholders survive translation
        assert set(re.findall(r"\{\w+\}", msgid)) == set(re.findall(r"\{\w+\}", msgstr)), msgid


def test_po_parser() -> None:
    po = 'msgid ""\nmsgstr "Language: vi\\n"\n\n#, fuzzy\nmsgid "a"\nmsgstr "x"\n\nmsgid "b"\n"c"\nmsgstr "B\\"C"\n'
    assert parse_po(po) == {"bc": 'B"C'}
    with pytest.raises(CatalogError):
        parse_po('msgid "a"\nmsgplural "b"\n')
    assert catalog("en").gettext("Patients") == "Patients"
    assert negotiate(None) == "vi" and negotiate("en") == "en" and negotiate("fr") == "vi"


def test_pin_hash_round_trip_and_refusals(tmp_path: Path) -> None:
    line = auth.hash_pin("246810")
    assert line.startswith("scrypt$14$8$1$") and "246810" not in line
    assert auth.verify_pin("246810", line)
    assert not auth.verify_pin("246811", line)
    assert not auth.verify_pin("246810", line.replace("scrypt$14", "scrypt$30"))  # absurd cost: refused
    assert not auth.verify_pin("246810", "plain$246810")
    assert auth.hash_pin("246810") != line  # salted
    path = tmp_path / "pin"
    auth.write_pin_hash(path, line)
    assert path.stat().st_mode & 0o777 == 0o600
    assert auth.read_pin_hash(path) == line
    with pytest.raises(auth.PinFileError):
        auth.read_pin_hash(tmp_path / "missing")
    for bad in ("12345", "1" * 200, "12345\n6"):
        with pytest.raises(auth.PinError):
            auth.check_new_pin(bad)


def test_sessions_expire_and_are_bounded() -> None:
    now = [T0]
    sessions = auth.Sessions(timedelta(minutes=10), lambda: now[0], max_sessions=2)
    a = sessions.create("Lan")
    assert sessions.get(a.token) == a and sessions.get("nope") is None and sessions.get(None) is None
    now[0] += timedelta(minutes=10)
    assert sessions.get(a.token) is None
    b, c, d = sessions.create("b"), sessions.create("c"), sessions.create("d")
    assert sessions.get(b.token) is None and sessions.get(c.token) == c and sessions.get(d.token) == d
    assert auth.same_token(c.csrf, c.csrf) and not auth.same_token(None, c.csrf) and not auth.same_token("x", c.csrf)


def test_login_limiter_per_client_and_overall() -> None:
    now = [T0]
    lim = auth.LoginLimiter(lambda: now[0], per_client=3, overall=5)
    for _ in range(3):
        assert lim.retry_after("a") == 0
        lim.failed("a")
    assert lim.retry_after("a") > 0 and lim.retry_after("b") == 0
    lim.failed("b")
    lim.failed("c")  # five failures in all: everyone waits
    assert lim.retry_after("d") > 0
    now[0] += timedelta(minutes=5)
    assert lim.retry_after("a") == 0 and lim.retry_after("d") == 0


@given(st.from_regex(r"\d{12}", fullmatch=True))
def test_any_twelve_digits_is_a_cccd(text: str) -> None:
    ident = parse_identifier("cccd", f" {text[:4]} {text[4:]} ")
    assert ident.value == text and ident.patient_id == f"cccd:{text}" and ident.masked.endswith(text[-4:])
    assert text not in ident.masked


@given(st.text(max_size=20).filter(lambda s: not re.fullmatch(r"\d{12}", re.sub(r"[\s-]", "", s.split("|")[0]))))
def test_anything_else_is_not_a_cccd(text: str) -> None:
    with pytest.raises(VisitError):
        parse_identifier("cccd", text)


def test_bhyt_local_and_scanned_codes() -> None:
    assert parse_identifier("bhyt", "dn4 01 012345 6789").value == "DN4010123456789"
    assert parse_identifier("bhyt", "DN4010123456789").value == "DN4010123456789"
    for bad in ("DN401012345678", "DN9010123456789", "1N4010123456789"):
        with pytest.raises(VisitError):
            parse_identifier("bhyt", bad)
    assert parse_identifier("local", "tyt-0042").value == "TYT-0042"
    scanned = parse_identifier("cccd", "001099012345|123456789|Trần Thị B|29022000|Nữ|Huế|01012021")
    assert scanned.value == "001099012345" and scanned.birth == date(2000, 2, 29)
    with pytest.raises(VisitError):
        parse_identifier("passport", "X")


def test_age_band_and_pregnancy() -> None:
    today = date(2026, 6, 1)
    assert parse_age_band("", date(2026, 5, 1), today) is AgeBand.UNDER_2_MONTHS
    assert parse_age_band("16y+", None, today) is AgeBand.ADULT and parse_age_band(None, None, today) is None
    with pytest.raises(VisitError):
        parse_age_band("", date(2027, 1, 1), today)
    book = VisitBook(("ox", "bp"))
    ident = Identifier("local", "A1")
    with pytest.raises(VisitError, match="pregnant"):
        book.open(ident, age_band=AgeBand.YEARS_5_12, pregnant=True, device_ids=(), now=T0)
    v = book.open(ident, age_band=AgeBand.ADULT, pregnant=True, device_ids=("ox",), now=T0)
    with pytest.raises(VisitError, match="devices"):
        book.open(Identifier("local", "A2"), age_band=None, pregnant=False, device_ids=("ox",), now=T0)
    with pytest.raises(VisitError, match="identifier"):
        book.open(ident, age_band=None, pregnant=False, device_ids=("bp",), now=T0)
    assert book.visit_of_device("ox") == v and book.by_patient("local:A1") == v
    assert book.close(v.visit_id, T0).closed_at == T0 and book.open_visits() == []


def test_observations_are_validated() -> None:
    assert parse_observations({"resp_rate": "18", "consciousness": "c", "on_oxygen": "false", "spo2_scale": "2"}) == {
        "resp_rate": 18,
        "consciousness": "C",
        "on_oxygen": False,
        "spo2_scale": 2,
    }
    assert parse_observations({"resp_distress": "2", "cap_refill": "2,5"}) == {"resp_distress": 2, "cap_refill": 2.5}
    assert parse_observations({"o2_flow": "1,5", "o2_high_flow": "true"}) == {"o2_flow": 1.5, "o2_high_flow": True}
    assert parse_observations({"o2_flow": "0", "o2_high_flow": "false"}) == {"o2_flow": 0, "o2_high_flow": False}
    bad_values = (
        {"resp_rate": "abc"},
        {"resp_rate": "0"},
        {"consciousness": "X"},
        {"spo2_scale": "3"},
        {"resp_distress": "4"},
        {"cap_refill": "31"},
        {"o2_flow": "61"},
        {"o2_flow": "-1"},
        {"o2_flow": "lots"},
        {},
    )
    for bad in bad_values:
        with pytest.raises(VisitError):
            parse_observations(bad)


def test_score_for_page_prefers_the_generic_keys() -> None:
    old = {"news2_total": 3, "news2_level": "low", "news2_partial": True, "news2_missing": ["resp_rate"]}
    assert score_for_page(old) == {
        "name": "NEWS2",
        "total": 3,
        "level": "low",
        "partial": True,
        "missing": ["resp_rate"],
        "notes": [],
        "bp_category": None,
        "pregnancy_bp": None,
        "imci_flags": [],
        "at": None,
    }
    new = {**old, "score": "PEWS", "total": 5, "level": "medium", "partial": False, "missing": [], "notes": ["x"]}
    page = score_for_page(new)
    assert (page["name"], page["total"], page["partial"], page["notes"]) == ("PEWS", 5, False, ["x"])


def test_set_pin_command(tmp_path: Path) -> None:
    config = tmp_path / "agent.toml"
    config.write_text(f'version = 1\n[gateway]\nid = "gw"\nprovince = "p"\nstate_dir = "{tmp_path / "state"}"\n')
    cli = [sys.executable, "-m", "edge_agent.cli", "set-pin", "--config", str(config)]
    short = subprocess.run(cli, input="123\n", capture_output=True, text=True, timeout=60)
    assert short.returncode == 2 and "at least 6" in short.stderr
    ok = subprocess.run(cli, input="975310\n", capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0, ok.stderr
    assert auth.verify_pin("975310", auth.read_pin_hash(tmp_path / "state" / "dashboard-pin"))


def test_dashboard_config_is_validated(tmp_path: Path) -> None:
    from edge_agent.config import ConfigError, parse_config

    base = {"version": 1, "gateway": {"id": "gw", "province": "p", "state_dir": "s"}}
    assert parse_config(base, base_dir=tmp_path).dashboard is None  # no table: no page
    cfg = parse_config(base | {"dashboard": {"host": "::", "pin_file": "pin"}}, base_dir=tmp_path)
    assert cfg.dashboard is not None and cfg.dashboard.port == 8080 and cfg.pin_path == tmp_path / "pin"
    for table, key in (({"host": "not a host!"}, "dashboard.host"), ({"colour": "red"}, "dashboard.colour")):
        with pytest.raises(ConfigError) as err:
            parse_config(base | {"dashboard": table}, base_dir=tmp_path)
        assert err.value.key == key


def _js_table(js: str, name: str) -> dict[str, str]:
    """``const NAME = { key: () => t("msgid"), ... };`` of app.js as key -> msgid."""
    m = re.search(r"const " + name + r" = \{(.*?)\n?\};", js, re.S)
    assert m is not None, name
    return {k.strip('"'): v for k, v in re.findall(r'("[\w-]+"|\w+): \(\) => t\("((?:[^"\\]|\\.)*)"\)', m.group(1))}


def test_every_code_the_scorer_emits_has_a_vietnamese_name_on_the_page() -> None:
    """Missing-parameter codes (NEWS2, PEWS), notes, IMCI flags, alert kinds and pregnancy BP
    categories, as edge_agent.scoring emits them: each has a label in app.js whose msgid has a
    Vietnamese translation (with its diacritics), so the page never shows a raw code."""
    from edge_agent.scoring import labels
    from models import events, news2, pews, pregnancy

    js = (PKG / "static" / "app.js").read_text()
    vi = catalog("vi").messages
    wanted = {
        "PARAMS": {*news2.PARAMETERS, *pews.PARAMETERS, "consciousness"},
        "NOTES": set(labels.NOTES),
        "IMCI": set(labels.IMCI_TEXT),
        "KINDS": {"news2", "pews", "bp_crisis", "pregnancy_bp", *(r.kind for r in events.DEFAULT_RULES)}
        | {f"imci_{k}" for k in labels.IMCI_TEXT},
        "PREGNANCY_BP": {level.label for level in pregnancy.PregnancyBp},
        "DISTRESS": {"0", "1", "2", "3"},
    }
    for table, codes in wanted.items():
        have = _js_table(js, table)
        assert codes <= set(have), f"{table} lacks {sorted(codes - set(have))}"
        for code in codes:
            assert have[code] in vi, f"{table}.{code}: {have[code]!r} not in vi.po"
    assert vi["respiratory distress"] == "mức độ suy hô hấp"
    assert vi["capillary refill time"] == "thời gian đổ đầy mao mạch"
    assert vi["temperature ≥ 38 or < 36 °C: think sepsis"] == "nhiệt độ ≥ 38 hoặc < 36 °C: nghĩ đến nhiễm khuẩn huyết"
    for code, (vi_text, _) in labels.NOTES.items():  # the page's note says what the scorer's message says
        assert vi[_js_table(js, "NOTES")[code]] == vi_text, code
