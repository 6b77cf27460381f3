"""The dashboard's HTTP side (aiohttp, on the agent's event loop): routes as data, the security
middleware, templates, static assets and the server-sent event stream.

Access: every route but the login page, the language switch and the static assets needs a live
session cookie (HttpOnly, SameSite=Strict). Every POST must come from this page: its ``Origin``
(or ``Referer``) must be this server and ``Sec-Fetch-Site``, when sent, ``same-origin``; it must
carry the session's CSRF token (header ``X-CSRF-Token`` or form field ``csrf``; before login, the
login form's token, a double-submitted cookie). Logins are rate-limited per client and overall.
The login page and the shell of the dashboard page hold no patient data: that only comes over
``/events`` and ``/api/state`` after login. No access log (the station's SD card, and nothing to
learn from it); no patient identifier in any URL.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import functools
import html
import json
import logging
import re
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

from aiohttp import web

from edge_agent.dashboard.auth import LoginLimiter, PinFileError, Session, Sessions, same_token, verify_pin
from edge_agent.dashboard.i18n import LANGUAGES, catalog, negotiate
from edge_agent.dashboard.view import LiveView
from edge_agent.dashboard.visits import VisitError

log = logging.getLogger("edge_agent.dashboard")

HERE = Path(__file__).parent
STATIC = {  # name -> content type; nothing else is served
    "app.js": "text/javascript; charset=utf-8",
    "app.css": "text/css; charset=utf-8",
    "icon.svg": "image/svg+xml",
}
SESSION_COOKIE = "se_session"
PRE_COOKIE = "se_login"
LANG_COOKIE = "se_lang"
KEEPALIVE_S = 15.0
CLIENT_QUEUE = 512
MAX_NAME = 40
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)


class Controller(Protocol):
    """What the routes ask the agent to do (edge_agent.dashboard.part implements it)."""

    async def open_visit(self, form: Mapping[str, Any], who: str) -> dict[str, object]: ...

    async def observe(self, visit_id: str, form: Mapping[str, Any], who: str) -> dict[str, object]: ...

    async def close_visit(self, visit_id: str, who: str) -> dict[str, object]: ...

    async def assign(self, visit_id: str, form: Mapping[str, Any], who: str) -> dict[str, object]: ...

    async def acknowledge(self, alert_id: str, who: str) -> dict[str, object]: ...


@dataclass(frozen=True, slots=True)
class PageInfo:
    station: str
    gateway_id: str
    timezone: str
    devices: tuple[str, ...]


_TEMPLATE_RE = re.compile(r"\{\{\s*(?:_\(\"((?:[^\"\\]|\\.)*)\"\)|(!?)([a-z_]+))\s*\}\}")


def render(template: str, lang: str, values: Mapping[str, str]) -> str:
    """Pure: ``{{ _("msgid") }}`` -> the translation, ``{{ name }}`` -> the value (both
    HTML-escaped), ``{{ !name }}`` -> the value as it is (for trusted, pre-escaped JSON)."""
    cat = catalog(lang)

    def sub(m: re.Match[str]) -> str:
        if m.group(1) is not None:
            return html.escape(cat.gettext(m.group(1).replace('\\"', '"')))
        value = values[m.group(3)]
        return value if m.group(2) else html.escape(value)

    return _TEMPLATE_RE.sub(sub, template)


def json_for_html(obj: object) -> str:
    """JSON safe inside a ``<script type="application/json">`` element."""
    return json.dumps(obj, ensure_ascii=False).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


class Client:
    """One open event stream (one browser tab)."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.queue: asyncio.Queue[dict[str, object] | None] = asyncio.Queue(CLIENT_QUEUE)
        self.overflowed = False

    def send(self, message: dict[str, object]) -> None:
        try:
            self.queue.put_nowait(message)
        except asyncio.QueueFull:  # a stalled tab: end its stream; it reconnects to a fresh snapshot
            self.overflowed = True
            with contextlib.suppress(asyncio.QueueFull):
                self.queue.get_nowait()
                self.queue.put_nowait(None)


class DashboardServer:
    def __init__(
        self,
        *,
        info: PageInfo,
        view: LiveView,
        controller: Controller,
        pin_file: Path,
        session_ttl_s: float,
        clock: Callable[[], datetime],
        run_blocking: Callable[[Callable[[], Any]], Awaitable[Any]] | None = None,
    ) -> None:
        self.info = info
        self.view = view
        self.controller = controller
        self.pin_file = pin_file
        self.clock = clock
        self.sessions = Sessions(timedelta(seconds=session_ttl_s), clock)
        self.limiter = LoginLimiter(clock)
        self.clients: set[Client] = set()
        self.logins = 0
        self.failed_logins = 0
        # scrypt needs 16 MiB per check: on one thread of its own, given back after each check
        # (on the shared executor every worker thread's glibc arena would keep 16 MiB)
        self._pin_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dashboard-pin")
        self._run_blocking = run_blocking or self._in_pin_thread
        self._templates = {n: (HERE / "templates" / f"{n}.html").read_text(encoding="utf-8") for n in ("login", "app")}
        self._static = {n: (HERE / "static" / n).read_bytes() for n in STATIC}
        self._static_etag = {n: f'"{hash(b) & 0xFFFFFFFF:08x}"' for n, b in self._static.items()}
        self.app = self._build_app()

    # -- app --------------------------------------------------------------------------------
    def _build_app(self) -> web.Application:
        app = web.Application(middlewares=[self._security], client_max_size=64 * 1024)
        routes: list[tuple[str, str, Callable[[web.Request], Awaitable[web.StreamResponse]]]] = [
            ("GET", "/", self.index),
            ("POST", "/login", self.login),
            ("POST", "/logout", self.logout),
            ("POST", "/lang", self.set_lang),
            ("GET", "/events", self.events),
            ("GET", "/api/state", self.state),
            ("POST", "/api/visits", self.open_visit),
            ("POST", "/api/visits/{visit_id}/observations", self.observe),
            ("POST", "/api/visits/{visit_id}/close", self.close_visit),
            ("POST", "/api/visits/{visit_id}/assign", self.assign),
            ("POST", "/api/alerts/{alert_id}/ack", self.acknowledge),
            ("GET", "/static/{name}", self.static),
        ]
        for method, path, handler in routes:
            app.router.add_route(method, path, handler)
        return app

    # -- security ---------------------------------------------------------------------------
    @web.middleware
    async def _security(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if request.method not in ("GET", "HEAD") and not self._same_origin(request):
            log.warning("event=dashboard_cross_site_refused path=%s", request.path)
            response: web.StreamResponse = web.Response(
                status=403, text=json.dumps({"error": "cross-site request refused"}), content_type="application/json"
            )
        else:
            try:
                response = await handler(request)
            except web.HTTPException as exc:  # raised by a handler: answered as a plain response
                response = web.Response(status=exc.status, text=exc.text, content_type=exc.content_type)
        response.headers.setdefault("Content-Security-Policy", CSP)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "same-origin")  # no-referrer would make Origin "null"
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Cache-Control", "no-store")
        return response

    @staticmethod
    def _same_origin(request: web.Request) -> bool:
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

    def session_of(self, request: web.Request) -> Session | None:
        return self.sessions.get(request.cookies.get(SESSION_COOKIE))

    def _require(self, request: web.Request, *, csrf: str | None = None) -> Session:
        session = self.session_of(request)
        if session is None:
            raise _refused(401, "login required")
        if request.method == "POST":
            given = request.headers.get("X-CSRF-Token") or csrf
            if not same_token(given, session.csrf):
                raise _refused(403, "missing or wrong CSRF token")
        return session

    # -- pages ------------------------------------------------------------------------------
    def _lang(self, request: web.Request) -> str:
        return negotiate(request.cookies.get(LANG_COOKIE))

    async def index(self, request: web.Request) -> web.StreamResponse:
        session = self.session_of(request)
        lang = self._lang(request)
        if session is None:
            return self._login_page(lang, error="", status=200)
        config = {
            "lang": lang,
            "csrf": session.csrf,
            "who": session.who,
            "timezone": self.info.timezone,
            "station": self.info.station,
            "expires": session.expires.isoformat(),
            "ageBands": ["0-1m", "2-11m", "1-4y", "5-12y", "13-15y", "16y+"],
            "messages": dict(catalog(lang).messages),
        }
        page = render(
            self._templates["app"],
            lang,
            {
                "lang": lang,
                "station": self.info.station or self.info.gateway_id,
                "csrf": session.csrf,
                "who": session.who,
                "config": json_for_html(config),
                "other_lang": _other(lang),
                "other_lang_label": _LANG_LABEL[_other(lang)],
            },
        )
        return web.Response(text=page, content_type="text/html", charset="utf-8")

    def _login_page(self, lang: str, *, error: str, status: int) -> web.Response:
        token = secrets.token_urlsafe(24)
        try:
            self._pin_line()
            no_pin = ""
        except PinFileError:
            no_pin = catalog(lang).gettext(
                "No PIN is set for this station. A technician sets one with: edge-agent set-pin"
            )
        page = render(
            self._templates["login"],
            lang,
            {
                "lang": lang,
                "station": self.info.station or self.info.gateway_id,
                "error": error,
                "error_class": "error" if error else "error hidden",
                "no_pin": no_pin,
                "no_pin_class": "error" if no_pin else "error hidden",
                "login_token": token,
                "other_lang": _other(lang),
                "other_lang_label": _LANG_LABEL[_other(lang)],
            },
        )
        response = web.Response(text=page, content_type="text/html", charset="utf-8", status=status)
        response.set_cookie(PRE_COOKIE, token, httponly=True, samesite="Strict", path="/", max_age=3600)
        return response

    def _pin_line(self) -> str:
        from edge_agent.dashboard.auth import read_pin_hash

        return read_pin_hash(self.pin_file)

    async def login(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()
        lang = self._lang(request)
        cat = catalog(lang)
        if not same_token(str(form.get("login_token", "")), request.cookies.get(PRE_COOKIE, "\0")):
            return self._login_page(lang, error=cat.gettext("The login form expired; try again"), status=403)
        client = request.remote or "?"
        wait = self.limiter.retry_after(client)
        if wait:
            log.warning("event=dashboard_login_refused reason=rate_limited retry_after_s=%d", int(wait))
            page = self._login_page(
                lang,
                error=cat.gettext("Too many wrong PINs. Wait {minutes} minutes.").format(
                    minutes=max(1, round(wait / 60))
                ),
                status=429,
            )
            page.headers["Retry-After"] = str(int(wait) + 1)
            return page
        pin = str(form.get("pin", ""))
        who = " ".join(str(form.get("who", "")).split())[:MAX_NAME]
        if not who:
            return self._login_page(lang, error=cat.gettext("Enter your name"), status=400)
        try:
            line = self._pin_line()
        except PinFileError:
            return self._login_page(lang, error="", status=503)
        ok = await self._run_blocking(lambda: verify_pin(pin, line))
        if not ok:
            self.limiter.failed(client)
            self.failed_logins += 1
            log.warning("event=dashboard_login_failed")
            return self._login_page(lang, error=cat.gettext("Wrong PIN"), status=401)
        self.limiter.succeeded(client)
        self.logins += 1
        session = self.sessions.create(who)
        log.info("event=dashboard_login sessions=%d", len(self.sessions))
        response = _redirect()
        response.set_cookie(
            SESSION_COOKIE,
            session.token,
            httponly=True,
            samesite="Strict",
            path="/",
            max_age=int((session.expires - session.created).total_seconds()),
        )
        response.del_cookie(PRE_COOKIE, path="/")
        return response

    async def logout(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()
        self._require(request, csrf=str(form.get("csrf", "")))
        self.sessions.end(request.cookies.get(SESSION_COOKIE))
        response = _redirect()
        response.del_cookie(SESSION_COOKIE, path="/")
        return response

    async def set_lang(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()
        lang = str(form.get("lang", ""))
        if lang not in LANGUAGES:
            raise _refused(400, "unsupported language")
        session = self.session_of(request)
        if session is not None:
            self._require(request, csrf=str(form.get("csrf", "")))
        elif not same_token(str(form.get("login_token", "")), request.cookies.get(PRE_COOKIE, "\0")):
            raise _refused(403, "missing or wrong form token")
        response = _redirect()
        response.set_cookie(LANG_COOKIE, lang, samesite="Strict", path="/", max_age=365 * 24 * 3600)
        return response

    async def static(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        if name not in STATIC:
            raise web.HTTPNotFound()
        etag = self._static_etag[name]
        headers = {"ETag": etag, "Cache-Control": "no-cache"}
        if request.headers.get("If-None-Match") == etag:
            return web.Response(status=304, headers=headers)
        return web.Response(body=self._static[name], headers={**headers, "Content-Type": STATIC[name]})

    # -- live data --------------------------------------------------------------------------
    async def state(self, request: web.Request) -> web.StreamResponse:
        self._require(request)
        return web.json_response(self.view.snapshot(), dumps=_dumps)

    async def events(self, request: web.Request) -> web.StreamResponse:
        session = self._require(request)
        client = Client(session)
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store", "X-Accel-Buffering": "no"}
        )
        await response.prepare(request)
        self.clients.add(client)
        try:
            await _send(response, {**self.view.snapshot(), "sent_ms": time.time() * 1000})
            while True:
                try:
                    message = await asyncio.wait_for(client.queue.get(), KEEPALIVE_S)
                except TimeoutError:
                    message = {}
                if self.sessions.get(session.token) is None:
                    await _send(response, {"type": "expired"})
                    break
                if message is None:
                    break
                if message:
                    await _send(response, message)
                else:
                    await response.write(b": keepalive\n\n")
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            self.clients.discard(client)
        return response

    async def _in_pin_thread(self, fn: Callable[[], Any]) -> Any:
        def run() -> Any:
            try:
                return fn()
            finally:
                _release_free_memory()

        return await asyncio.get_running_loop().run_in_executor(self._pin_pool, run)

    def close(self) -> None:
        self._pin_pool.shutdown(wait=False)

    def broadcast(self, message: dict[str, object]) -> None:
        for client in list(self.clients):
            client.send(message)

    def close_streams(self) -> None:
        for client in list(self.clients):
            with contextlib.suppress(asyncio.QueueFull):
                client.queue.put_nowait(None)

    # -- actions ----------------------------------------------------------------------------
    async def _json_body(self, request: web.Request) -> dict[str, Any]:
        if request.content_type != "application/json":
            raise _refused(415, "send JSON")
        try:
            body = await request.json()
        except ValueError:
            raise _refused(400, "bad JSON") from None
        if not isinstance(body, dict):
            raise _refused(400, "bad JSON")
        return body

    async def _act(
        self, request: web.Request, action: Callable[[Session, dict[str, Any]], Awaitable[object]]
    ) -> web.StreamResponse:
        session = self._require(request)
        body = await self._json_body(request)
        try:
            result = await action(session, body)
        except VisitError as exc:
            lang = self._lang(request)
            return web.json_response({"error": catalog(lang).gettext(exc.code), "field": exc.field}, status=422)
        return web.json_response(result)

    async def open_visit(self, request: web.Request) -> web.StreamResponse:
        return await self._act(request, lambda s, body: self.controller.open_visit(body, s.who))

    async def observe(self, request: web.Request) -> web.StreamResponse:
        vid = request.match_info["visit_id"]
        return await self._act(request, lambda s, body: self.controller.observe(vid, body, s.who))

    async def close_visit(self, request: web.Request) -> web.StreamResponse:
        vid = request.match_info["visit_id"]
        return await self._act(request, lambda s, body: self.controller.close_visit(vid, s.who))

    async def assign(self, request: web.Request) -> web.StreamResponse:
        vid = request.match_info["visit_id"]
        return await self._act(request, lambda s, body: self.controller.assign(vid, body, s.who))

    async def acknowledge(self, request: web.Request) -> web.StreamResponse:
        aid = request.match_info["alert_id"]
        return await self._act(request, lambda s, body: self.controller.acknowledge(aid, s.who))


_LANG_LABEL = {"vi": "Tiếng Việt", "en": "English"}


def _other(lang: str) -> str:
    return "en" if lang == "vi" else "vi"


def _redirect() -> web.Response:
    return web.Response(status=303, headers={"Location": "/"})


def _refused(status: int, reason: str) -> web.HTTPException:
    cls: type[web.HTTPException] = {
        400: web.HTTPBadRequest,
        401: web.HTTPUnauthorized,
        403: web.HTTPForbidden,
        415: web.HTTPUnsupportedMediaType,
    }[status]
    return cls(text=json.dumps({"error": reason}), content_type="application/json")


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    try:
        trim: Callable[[int], int] = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):  # not glibc
        return None
    return trim


def _release_free_memory() -> None:
    """Return freed heap memory (scrypt's 16 MiB) to the system: glibc keeps it otherwise."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


def _dumps(obj: object) -> str:
    return json.dumps(obj, ensure_ascii=False)


async def _send(response: web.StreamResponse, message: Mapping[str, object]) -> None:
    data = json.dumps(message, ensure_ascii=False, separators=(",", ":"))
    await response.write(f"data: {data}\n\n".encode())
