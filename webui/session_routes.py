"""What the station's nurse dashboard (edge_agent.dashboard) and the hub's fleet page (hub.web)
do the same way over HTTP (webui.httpd): the security middleware, the login page with its pre-login
token, login (the rate limit, scrypt on a thread of its own, the session cookie), logout, the
language switch and the static assets.

A page subclasses :class:`SessionSite` and says only what is its own: its cookie and log event
names (:class:`SiteNames`), how a login is checked (:meth:`SessionSite.authenticate`: a station
PIN, an operator's name and password), its wording, the parts of its login page
(``templates/login_intro.html``, ``templates/login_fields.html`` in the page's package) and the
page behind the login (:meth:`SessionSite.page`).

The security properties live here once: the session cookie is HttpOnly, SameSite=Strict and lasts
as long as the session; every POST must come from this server's own page (``same_origin``) and
carry the session's CSRF token (before login, the login form's token, a double-submitted cookie);
failed logins are counted per client and overall (``LoginLimiter``).
"""

from __future__ import annotations

import abc
import asyncio
import json
import logging
import secrets
from collections.abc import Awaitable, Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TypeVar

from webui import httpd as web
from webui.auth import LoginLimiter, Session, Sessions, same_token
from webui.http import CSP, release_free_memory, render_template, same_origin, set_security_headers
from webui.i18n import Catalog

T = TypeVar("T")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Route = tuple[str, str, Handler]

LOGIN_TEMPLATE = Path(__file__).parent / "templates" / "login.html"
LANG_LABEL = {"vi": "Tiếng Việt", "en": "English"}
CONTENT_TYPES = {  # of the static assets, by their ending
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}
PRE_LOGIN_MAX_AGE_S = 3600
LANG_MAX_AGE_S = 365 * 24 * 3600


@dataclass(frozen=True, slots=True)
class SiteNames:
    """A page's own names: its cookies (both pages may run on one host, and cookies ignore the
    port) and the events it logs (``event=<name>``)."""

    session_cookie: str
    pre_cookie: str
    lang_cookie: str
    cross_site_event: str  # a POST from another origin, refused
    rate_limited_event: str  # a login refused by the limiter
    login_failed_event: str  # a wrong secret


@dataclass(frozen=True, slots=True)
class Refusal:
    """A login the page's own check refused: the login page again with ``error``, answered with
    ``status``. 401 (a wrong secret) is counted by the limiter and logged as a failed login; any
    other status (a field missing, a secrets file that cannot be read) is not."""

    status: int
    error: str


class SessionSite(abc.ABC):
    """The routes ``/`` (the login page, or :meth:`page` with a live session), ``POST /login``,
    ``POST /logout``, ``POST /lang`` and ``GET /static/{name}``, plus the page's own routes."""

    def __init__(
        self,
        *,
        names: SiteNames,
        package_dir: Path,
        static: Sequence[str],
        catalogs: Mapping[str, Catalog],
        clock: Callable[[], datetime],
        session_ttl_s: float,
        log: logging.Logger,
        thread_name: str,
    ) -> None:
        self.names = names
        self.catalogs = dict(catalogs)
        self.languages = tuple(catalogs)  # the first is the default
        self.clock = clock
        self.log = log
        self.sessions = Sessions(timedelta(seconds=session_ttl_s), clock)
        self.limiter = LoginLimiter(clock)
        self.logins = 0
        self.failed_logins = 0
        # scrypt needs 16 MiB per check: on one thread of its own, given back after each check
        # (on the shared executor every worker thread's glibc arena would keep 16 MiB)
        self._secret_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=thread_name)
        self._login_template = LOGIN_TEMPLATE.read_text(encoding="utf-8")
        self._templates = {p.stem: p.read_text(encoding="utf-8") for p in (package_dir / "templates").glob("*.html")}
        self._static_types = {n: CONTENT_TYPES[Path(n).suffix] for n in static}  # nothing else is served
        self._static = {n: (package_dir / "static" / n).read_bytes() for n in static}
        self._static_etag = {n: f'"{hash(b) & 0xFFFFFFFF:08x}"' for n, b in self._static.items()}

    # -- what a page says of its own ----------------------------------------------------------
    @abc.abstractmethod
    async def page(self, request: web.Request, session: Session, lang: str) -> web.StreamResponse:
        """``GET /`` with a live session."""

    @abc.abstractmethod
    async def authenticate(self, form: Mapping[str, object], cat: Catalog) -> str | Refusal:
        """Who logs in (the session's name), or why not."""

    @abc.abstractmethod
    def login_values(self, lang: str, cat: Catalog) -> dict[str, str]:
        """The login page's ``title`` and ``stylesheet``, and the values of its own parts."""

    @abc.abstractmethod
    def rate_limited_error(self, cat: Catalog, minutes: int) -> str:
        """The login page's text when the limiter says wait ``minutes``."""

    @abc.abstractmethod
    def logged_in(self, session: Session) -> None:
        """Log a login (each page its own event)."""

    def lang_redirect(self, form: Mapping[str, object]) -> str:
        """Where the language switch goes back to."""
        return "/"

    async def answer(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """The handler's response; an ``HTTPException`` it raises answered as a plain response (a
        page that answers more errors extends this)."""
        try:
            return await handler(request)
        except web.HTTPException as exc:
            return web.Response(status=exc.status, text=exc.text, content_type=exc.content_type)

    # -- app ----------------------------------------------------------------------------------
    def build_app(self, routes: Sequence[Route], *, client_max_size: int) -> web.Application:
        app = web.Application(middlewares=[self._security], client_max_size=client_max_size)
        common: list[Route] = [
            ("GET", "/", self.index),
            ("POST", "/login", self.login),
            ("POST", "/logout", self.logout),
            ("POST", "/lang", self.set_lang),
        ]
        for method, path, handler in [*common, *routes, ("GET", "/static/{name}", self.static)]:
            app.router.add_route(method, path, handler)
        return app

    def close(self) -> None:
        self._secret_pool.shutdown(wait=False)

    # -- security -----------------------------------------------------------------------------
    @web.middleware
    async def _security(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.method not in ("GET", "HEAD") and not same_origin(request):
            self.log.warning("event=%s path=%s", self.names.cross_site_event, request.path)
            response: web.StreamResponse = json_error(403, "cross-site request refused")
        else:
            response = await self.answer(request, handler)
        set_security_headers(response, CSP)
        return response

    def session_of(self, request: web.Request) -> Session | None:
        return self.sessions.get(request.cookies.get(self.names.session_cookie))

    def require(self, request: web.Request, *, csrf: str | None = None) -> Session:
        """The live session of ``request``; for a POST, with its CSRF token (the header, else the
        form field ``csrf``)."""
        session = self.session_of(request)
        if session is None:
            raise refused(401, "login required")
        if request.method == "POST":
            given = request.headers.get("X-CSRF-Token") or csrf
            if not same_token(given, session.csrf):
                raise refused(403, "missing or wrong CSRF token")
        return session

    def _pre_login_ok(self, request: web.Request, form: Mapping[str, object]) -> bool:
        return same_token(str(form.get("login_token", "")), request.cookies.get(self.names.pre_cookie, "\0"))

    async def in_secret_thread(self, fn: Callable[[], T]) -> T:
        """``fn`` (an scrypt check) on the login thread, its memory given back afterwards."""

        def run() -> T:
            try:
                return fn()
            finally:
                release_free_memory()

        return await asyncio.get_running_loop().run_in_executor(self._secret_pool, run)

    # -- language -----------------------------------------------------------------------------
    def catalog(self, lang: str) -> Catalog:
        return self.catalogs[lang]

    def lang_of(self, request: web.Request) -> str:
        """The reader's choice (a cookie), else the page's first language; the browser's own
        language is not asked."""
        lang = request.cookies.get(self.names.lang_cookie)
        return lang if lang in self.languages else self.languages[0]

    def lang_values(self, lang: str) -> dict[str, str]:
        other = next(x for x in self.languages if x != lang)
        return {"lang": lang, "other_lang": other, "other_lang_label": LANG_LABEL[other]}

    # -- routes -------------------------------------------------------------------------------
    async def index(self, request: web.Request) -> web.StreamResponse:
        session = self.session_of(request)
        lang = self.lang_of(request)
        if session is None:
            return self.login_page(lang, error="", status=200)
        return await self.page(request, session, lang)

    def login_page(self, lang: str, *, error: str, status: int) -> web.Response:
        """The login page, with a fresh pre-login token in its forms and in a cookie."""
        token = secrets.token_urlsafe(24)
        cat = self.catalog(lang)
        values = {
            **self.lang_values(lang),
            **self.login_values(lang, cat),
            "error": error,
            "error_class": "error" if error else "error hidden",
            "login_token": token,
        }
        for part in ("login_intro", "login_fields"):
            values[part] = render_template(self._templates[part], cat, values).rstrip("\n")
        text = render_template(self._login_template, cat, values)
        response = web.Response(text=text, content_type="text/html", charset="utf-8", status=status)
        response.set_cookie(
            self.names.pre_cookie, token, httponly=True, samesite="Strict", path="/", max_age=PRE_LOGIN_MAX_AGE_S
        )
        return response

    async def login(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()
        lang = self.lang_of(request)
        cat = self.catalog(lang)
        if not self._pre_login_ok(request, form):
            return self.login_page(lang, error=cat.gettext("The login form expired; try again"), status=403)
        client = request.remote or "?"
        wait = self.limiter.retry_after(client)
        if wait:
            self.log.warning("event=%s reason=rate_limited retry_after_s=%d", self.names.rate_limited_event, int(wait))
            page = self.login_page(lang, error=self.rate_limited_error(cat, max(1, round(wait / 60))), status=429)
            page.headers["Retry-After"] = str(int(wait) + 1)
            return page
        outcome = await self.authenticate(form, cat)
        if isinstance(outcome, Refusal):
            if outcome.status == 401:
                self.limiter.failed(client)
                self.failed_logins += 1
                self.log.warning("event=%s", self.names.login_failed_event)
            return self.login_page(lang, error=outcome.error, status=outcome.status)
        self.limiter.succeeded(client)
        self.logins += 1
        session = self.sessions.create(outcome)
        self.logged_in(session)
        response = redirect()
        response.set_cookie(
            self.names.session_cookie,
            session.token,
            httponly=True,
            samesite="Strict",
            path="/",
            max_age=int((session.expires - session.created).total_seconds()),
        )
        response.del_cookie(self.names.pre_cookie, path="/")
        return response

    async def logout(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()
        self.require(request, csrf=str(form.get("csrf", "")))
        self.sessions.end(request.cookies.get(self.names.session_cookie))
        response = redirect()
        response.del_cookie(self.names.session_cookie, path="/")
        return response

    async def set_lang(self, request: web.Request) -> web.StreamResponse:
        """The language switch, before login (with the login form's token) or after (with the
        session's CSRF token)."""
        form = await request.post()
        lang = str(form.get("lang", ""))
        if lang not in self.languages:
            raise refused(400, "unsupported language")
        if self.session_of(request) is not None:
            self.require(request, csrf=str(form.get("csrf", "")))
        elif not self._pre_login_ok(request, form):
            raise refused(403, "missing or wrong form token")
        response = redirect(self.lang_redirect(form))
        response.set_cookie(self.names.lang_cookie, lang, samesite="Strict", path="/", max_age=LANG_MAX_AGE_S)
        return response

    async def static(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        if name not in self._static_types:
            raise web.HTTPNotFound()
        etag = self._static_etag[name]
        headers = {"ETag": etag, "Cache-Control": "no-cache"}
        if request.headers.get("If-None-Match") == etag:
            return web.Response(status=304, headers=headers)
        return web.Response(body=self._static[name], headers={**headers, "Content-Type": self._static_types[name]})


def redirect(location: str = "/") -> web.Response:
    return web.Response(status=303, headers={"Location": location})


def json_error(status: int, reason: str) -> web.Response:
    return web.Response(status=status, text=json.dumps({"error": reason}), content_type="application/json")


def refused(status: int, reason: str) -> web.HTTPException:
    """An error to raise from a handler (the middleware answers it as a JSON response)."""
    cls: type[web.HTTPException] = {
        400: web.HTTPBadRequest,
        401: web.HTTPUnauthorized,
        403: web.HTTPForbidden,
        415: web.HTTPUnsupportedMediaType,
    }[status]
    return cls(text=json.dumps({"error": reason}), content_type="application/json")
