"""The HTTP conventions both pages follow (webui.httpd): templates, JSON inside HTML, the
same-origin check for state-changing requests, the security headers, and giving scrypt's
memory back after a check."""

from __future__ import annotations

import ctypes
import functools
import html
import json
import re
from collections.abc import Callable, Mapping
from urllib.parse import urlsplit

from webui import httpd as web
from webui.i18n import Catalog

# no inline script or style, nothing from another origin (no CDN, no web font)
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)

_TEMPLATE_RE = re.compile(r"\{\{\s*(?:_\(\"((?:[^\"\\]|\\.)*)\"\)|(!?)([a-z_]+))\s*\}\}")


def render_template(template: str, cat: Catalog, values: Mapping[str, str]) -> str:
    """Pure: ``{{ _("msgid") }}`` -> the translation, ``{{ name }}`` -> the value (both
    HTML-escaped), ``{{ !name }}`` -> the value as it is (for trusted, pre-escaped markup or JSON)."""

    def sub(m: re.Match[str]) -> str:
        if m.group(1) is not None:
            return html.escape(cat.gettext(m.group(1).replace('\\"', '"')))
        value = values[m.group(3)]
        return value if m.group(2) else html.escape(value)

    return _TEMPLATE_RE.sub(sub, template)


def json_for_html(obj: object) -> str:
    """JSON safe inside a ``<script type="application/json">`` element."""
    return json.dumps(obj, ensure_ascii=False).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def same_origin(request: web.Request) -> bool:
    """Whether a state-changing request comes from a page of this server: ``Sec-Fetch-Site``,
    when sent, ``same-origin`` (or ``none``), and the ``Origin`` (else the ``Referer``) this host."""
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None and site not in ("same-origin", "none"):
        return False
    origin = request.headers.get("Origin")
    if origin is None or origin == "null":
        referer = request.headers.get("Referer")
        if not referer:
            return False
        parts = urlsplit(referer)
        origin = f"{parts.scheme}://{parts.netloc}"
    parts = urlsplit(origin)
    return parts.scheme in ("http", "https") and parts.netloc.lower() == request.host.lower()


def set_security_headers(response: web.StreamResponse, csp: str = CSP) -> None:
    response.headers.setdefault("Content-Security-Policy", csp)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "same-origin")  # no-referrer would make Origin "null"
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("Cache-Control", "no-store")


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    try:
        trim: Callable[[int], int] = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):  # not glibc
        return None
    return trim


def release_free_memory() -> None:
    """Return freed heap memory (scrypt's 16 MiB) to the system: glibc keeps it otherwise."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)
