"""The dashboard's HTTP side (webui.httpd, on the agent's event loop): routes as data, the page, its
actions and the server-sent event stream; login (the station PIN), logout, the language switch,
the static assets and the security middleware are shared with the hub's fleet page
(webui.session_routes).

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
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from edge_agent.dashboard.auth import PinFileError, Session, verify_pin
from edge_agent.dashboard.i18n import LANGUAGES, Catalog, catalog
from edge_agent.dashboard.view import LiveView
from edge_agent.dashboard.visits import VisitError
from webui import httpd as web
from webui.http import json_for_html, render_template
from webui.session_routes import Refusal, Route, SessionSite, SiteNames, refused

log = logging.getLogger("edge_agent.dashboard")

HERE = Path(__file__).parent
STATIC = ("app.js", "app.css", "icon.svg")  # nothing else is served
NAMES = SiteNames(
    session_cookie="se_session",
    pre_cookie="se_login",
    lang_cookie="se_lang",
    cross_site_event="dashboard_cross_site_refused",
    rate_limited_event="dashboard_login_refused",
    login_failed_event="dashboard_login_failed",
)
KEEPALIVE_S = 15.0
CLIENT_QUEUE = 512
MAX_NAME = 40


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


def render(template: str, lang: str, values: Mapping[str, str]) -> str:
    """Pure: ``{{ _("msgid") }}`` -> the translation, ``{{ name }}`` -> the value (both
    HTML-escaped), ``{{ !name }}`` -> the value as it is (for trusted, pre-escaped JSON)."""
    return render_template(template, catalog(lang), values)


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


class DashboardServer(SessionSite):
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
        super().__init__(
            names=NAMES,
            package_dir=HERE,
            static=STATIC,
            catalogs={lang: catalog(lang) for lang in LANGUAGES},
            clock=clock,
            session_ttl_s=session_ttl_s,
            log=log,
            thread_name="dashboard-pin",
        )
        self.info = info
        self.view = view
        self.controller = controller
        self.pin_file = pin_file
        self.clients: set[Client] = set()
        self._run_blocking = run_blocking or self.in_secret_thread
        routes: list[Route] = [
            ("GET", "/events", self.events),
            ("GET", "/api/state", self.state),
            ("POST", "/api/visits", self.open_visit),
            ("POST", "/api/visits/{visit_id}/observations", self.observe),
            ("POST", "/api/visits/{visit_id}/close", self.close_visit),
            ("POST", "/api/visits/{visit_id}/assign", self.assign),
            ("POST", "/api/alerts/{alert_id}/ack", self.acknowledge),
        ]
        self.app = self.build_app(routes, client_max_size=64 * 1024)

    # -- pages ------------------------------------------------------------------------------
    async def page(self, request: web.Request, session: Session, lang: str) -> web.StreamResponse:
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
                **self.lang_values(lang),
                "station": self._station(),
                "csrf": session.csrf,
                "who": session.who,
                "config": json_for_html(config),
            },
        )
        return web.Response(text=page, content_type="text/html", charset="utf-8")

    def _station(self) -> str:
        return self.info.station or self.info.gateway_id

    # -- login ------------------------------------------------------------------------------
    def login_values(self, lang: str, cat: Catalog) -> dict[str, str]:
        try:
            self._pin_line()
            no_pin = ""
        except PinFileError:
            no_pin = cat.gettext("No PIN is set for this station. A technician sets one with: edge-agent set-pin")
        heading = cat.gettext("Station dashboard")
        return {
            "title": f"{heading} · {self._station()}",
            "stylesheet": "/static/app.css",
            "station": self._station(),
            "no_pin": no_pin,
            "no_pin_class": "error" if no_pin else "error hidden",
        }

    def _pin_line(self) -> str:
        from edge_agent.dashboard.auth import read_pin_hash

        return read_pin_hash(self.pin_file)

    def rate_limited_error(self, cat: Catalog, minutes: int) -> str:
        return cat.gettext("Too many wrong PINs. Wait {minutes} minutes.").format(minutes=minutes)

    async def authenticate(self, form: Mapping[str, object], cat: Catalog) -> str | Refusal:
        pin = str(form.get("pin", ""))
        who = " ".join(str(form.get("who", "")).split())[:MAX_NAME]
        if not who:
            return Refusal(400, cat.gettext("Enter your name"))
        try:
            line = self._pin_line()
        except PinFileError:
            return Refusal(503, "")
        ok = await self._run_blocking(lambda: verify_pin(pin, line))
        return who if ok else Refusal(401, cat.gettext("Wrong PIN"))

    def logged_in(self, session: Session) -> None:
        log.info("event=dashboard_login sessions=%d", len(self.sessions))

    # -- live data --------------------------------------------------------------------------
    async def state(self, request: web.Request) -> web.StreamResponse:
        self.require(request)
        return web.json_response(self.view.snapshot(), dumps=_dumps)

    async def events(self, request: web.Request) -> web.StreamResponse:
        session = self.require(request)
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
            raise refused(415, "send JSON")
        try:
            body = await request.json()
        except ValueError:
            raise refused(400, "bad JSON") from None
        if not isinstance(body, dict):
            raise refused(400, "bad JSON")
        return body

    async def _act(
        self, request: web.Request, action: Callable[[Session, dict[str, Any]], Awaitable[object]]
    ) -> web.StreamResponse:
        session = self.require(request)
        body = await self._json_body(request)
        try:
            result = await action(session, body)
        except VisitError as exc:
            lang = self.lang_of(request)
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


def _dumps(obj: object) -> str:
    return json.dumps(obj, ensure_ascii=False)


async def _send(response: web.StreamResponse, message: Mapping[str, object]) -> None:
    data = json.dumps(message, ensure_ascii=False, separators=(",", ":"))
    await response.write(f"data: {data}\n\n".encode())
