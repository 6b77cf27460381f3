"""Message catalogues: gettext ``.po`` files read directly (no compile step, no ``.mo`` file to
keep in step). English is the source language (the msgids). Only what the pages need of the
format is read: ``msgid``/``msgstr`` pairs, multi-line strings, C escapes, comments and the
``fuzzy`` flag (a fuzzy entry is not used)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

_ESCAPES = {"n": "\n", "t": "\t", '"': '"', "\\": "\\", "r": "\r"}


class CatalogError(ValueError):
    def __init__(self, path: Path, line: int, message: str) -> None:
        super().__init__(f"{path}:{line}: {message}")


def _unquote(text: str, path: Path, line: int) -> str:
    text = text.strip()
    if len(text) < 2 or text[0] != '"' or text[-1] != '"':
        raise CatalogError(path, line, f"expected a quoted string, got {text!r}")
    out: list[str] = []
    body = iter(text[1:-1])
    for ch in body:
        if ch == "\\":
            nxt = next(body, "")
            if nxt not in _ESCAPES:
                raise CatalogError(path, line, f"unknown escape \\{nxt}")
            out.append(_ESCAPES[nxt])
        else:
            out.append(ch)
    return "".join(out)


def parse_po(text: str, path: Path = Path("<po>")) -> dict[str, str]:
    """Pure: msgid -> msgstr of a ``.po`` document (the header entry, empty and fuzzy
    translations left out)."""
    entries: dict[str, str] = {}
    field: str | None = None
    cur: dict[str, list[str]] = {}
    fuzzy = False
    next_fuzzy = False

    def flush() -> None:
        nonlocal cur, fuzzy
        if "msgid" in cur:
            msgid = "".join(cur["msgid"])
            msgstr = "".join(cur.get("msgstr", []))
            if msgid and msgstr and not fuzzy:
                entries[msgid] = msgstr
        cur = {}
        fuzzy = False

    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line:
            continue
        if line.startswith("#"):
            if line.startswith("#,") and "fuzzy" in line:
                next_fuzzy = True
            continue
        if line.startswith('"'):
            if field is None:
                raise CatalogError(path, n, "string continuation without msgid/msgstr")
            cur[field].append(_unquote(line, path, n))
            continue
        keyword, _, rest = line.partition(" ")
        if keyword == "msgid":
            flush()
            fuzzy, next_fuzzy = next_fuzzy, False
        elif keyword not in ("msgstr", "msgctxt"):
            raise CatalogError(path, n, f"unsupported keyword {keyword!r}")
        field = keyword
        cur[field] = [_unquote(rest, path, n)]
    flush()
    return entries


@dataclass(frozen=True, slots=True)
class Catalog:
    lang: str
    messages: Mapping[str, str]

    def gettext(self, msgid: str) -> str:
        return self.messages.get(msgid, msgid)

    def subset(self, msgids: Iterable[str]) -> dict[str, str]:
        """The translations of ``msgids`` (for the page's script)."""
        return {m: self.gettext(m) for m in msgids}


def load_catalog(locale_dir: Path, lang: str, *, source: str = "en") -> Catalog:
    """The catalogue of ``lang`` from ``locale_dir/<lang>.po``; the source language needs none."""
    if lang == source:
        return Catalog(lang, {})
    path = locale_dir / f"{lang}.po"
    return Catalog(lang, parse_po(path.read_text(encoding="utf-8"), path))
