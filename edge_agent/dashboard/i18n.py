"""Message catalogues: gettext ``.po`` files (``locale/<lang>.po``), read at start.

English is the source language (the msgids); Vietnamese, the station's language and the page's
default, is ``locale/vi.po``. A translator edits the ``.po`` file with any gettext tool (Poedit,
Weblate); the agent reads it directly, so there is no compile step and no ``.mo`` file to keep in
step. Only what the dashboard needs of the format is read: ``msgid``/``msgstr`` pairs, multi-line
strings, C escapes, comments and the ``fuzzy`` flag (a fuzzy entry is not used); the parser is
shared with the hub's fleet page (webui.i18n).
"""

from __future__ import annotations

import functools
from pathlib import Path

from webui.i18n import Catalog, CatalogError, load_catalog, parse_po

__all__ = ["DEFAULT_LANGUAGE", "LANGUAGES", "LOCALE_DIR", "Catalog", "CatalogError", "catalog", "negotiate", "parse_po"]

LOCALE_DIR = Path(__file__).parent / "locale"
LANGUAGES = ("vi", "en")  # the first is the default
DEFAULT_LANGUAGE = LANGUAGES[0]
SOURCE_LANGUAGE = "en"


@functools.cache
def catalog(lang: str) -> Catalog:
    """The catalogue of ``lang`` (one of :data:`LANGUAGES`); English needs none."""
    if lang not in LANGUAGES:
        raise ValueError(f"unsupported language {lang!r}")
    return load_catalog(LOCALE_DIR, lang, source=SOURCE_LANGUAGE)


def negotiate(cookie: str | None) -> str:
    """The page's language: the nurse's choice (a cookie), else Vietnamese. The browser's own
    language is not asked: a station tablet set up in English still shows Vietnamese first."""
    return cookie if cookie in LANGUAGES else DEFAULT_LANGUAGE
