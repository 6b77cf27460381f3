"""The fleet page's HTTP side (webui.httpd): routes as data, the page, its JSON API and the fleet
sampler; login, logout, the language switch, the static assets and the security middleware are
the station dashboard's (webui.session_routes), with an operator's name and password.

Access: every route but the login page, the language switch and the static assets needs a live
session cookie (HttpOnly, SameSite=Strict, expiring). Every POST must come from this page (its
``Origin``/``Referer`` this server, ``Sec-Fetch-Site`` same-origin when sent) and carry the
session's CSRF token (form field ``csrf`` or header ``X-CSRF-Token``; before login, the login
form's token, a double-submitted cookie). Logins are rate-limited per client and overall. No
access log; nothing from another origin (no CDN, no web font).

Store reads run on the default executor (a store call blocks); scrypt runs on a thread of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from hub.errors import StoreError
from hub.fleet import Thresholds, fleet_records
from hub.fleet_alerts import fleet_alerts
from hub.fleet_history import DEFAULT_EVERY_S, DEFAULT_RETENTION_S, Sampler
from hub.store import HubStore
from hub.web.accounts import MAX_PASSWORD_LEN, AccountsFileError, read_accounts, verify
from hub.web.view import PLOT_WINDOW, PageData, api_json, fragments
from webui import httpd as web
from webui.auth import Session
from webui.http import json_for_html, render_template
from webui.i18n import Catalog, load_catalog
from webui.session_routes import Handler, Refusal, Route, SessionSite, SiteNames, json_error, refused

log = logging.getLogger("hub.web")

T = TypeVar("T")

HERE = Path(__file__).parent
LOCALE_DIR = HERE / "locale"
LANGUAGES = ("vi", "en")  # the first is the default
STATIC = ("fleet.js", "fleet.css", "icon.svg")  # nothing else is served
# not the station dashboard's names: both may run on one host, and cookies ignore the port
NAMES = SiteNames(
    session_cookie="hub_session",
    pre_cookie="hub_login",
    lang_cookie="hub_lang",
    cross_site_event="fleet_web_cross_site_refused",
    rate_limited_event="fleet_web_login_refused",
    login_failed_event="fleet_web_login_failed",
)
PROVINCE_RE = re.compile(r"[A-Za-z0-9._-]{1,64}")
MAX_NAME = 64


@dataclass(frozen=True, slots=True)
class WebSettings:
    accounts: Path
    thresholds: Thresholds = field(default_factory=Thresholds)
    timezone: str = "Asia/Ho_Chi_Minh"
    session_ttl_s: float = 8 * 3600.0
    refresh_s: float = 10.0
    sample_every_s: float = DEFAULT_EVERY_S
    retention_s: float = DEFAULT_RETENTION_S


def catalogs() -> dict[str, Catalog]:
    return {lang: load_catalog(LOCALE_DIR, lang) for lang in LANGUAGES}


class FleetWeb(SessionSite):
    def __init__(
        self,
        store: HubStore,
        settings: WebSettings,
        clock: Callable[[], datetime],
        *,
        sample: bool = True,
    ) -> None:
        super().__init__(
            names=NAMES,
            package_dir=HERE,
            static=STATIC,
            catalogs=catalogs(),
            clock=clock,
            session_ttl_s=settings.session_ttl_s,
            log=log,
            thread_name="hub-web-login",
        )
        self.store = store
        self.settings = settings
        self.tz = ZoneInfo(settings.timezone)
        self.sampler = Sampler(
            store,
            clock,
            every_s=settings.sample_every_s,
            retention_s=settings.retention_s,
            thresholds=settings.thresholds,
        )
        self.sample = sample
        routes: list[Route] = [
            ("GET", "/api/fleet", self.api_fleet),
            ("GET", "/api/alerts", self.api_alerts),
            ("GET", "/api/fragments", self.api_fragments),
        ]
        self.app = self.build_app(routes, client_max_size=16 * 1024)
        self.app.cleanup_ctx.append(self._sampler_ctx)

    async def _sampler_ctx(self, app: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(self._sample_loop()) if self.sample else None
        yield
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.close()

    async def _sample_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                samples = await loop.run_in_executor(None, self.sampler.sample)
                log.debug("event=fleet_sampled provinces=%d", len(samples))
            except StoreError as exc:  # logged, counted, tried again at the next bucket
                self.sampler.failures += 1
                log.warning("event=fleet_sample_failed failures=%d error=%r", self.sampler.failures, str(exc))
            await asyncio.sleep(max(0.5, self.sampler.next_delay()))

    # -- security ---------------------------------------------------------------------------
    async def answer(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await super().answer(request, handler)
        except StoreError as exc:
            log.warning("event=fleet_web_store_error path=%s error=%r", request.path, str(exc))
            return json_error(503, "the hub store is not answering; try again")

    @staticmethod
    def _province(request: web.Request) -> str | None:
        value = request.query.get("province", "")
        if not value:
            return None
        if not PROVINCE_RE.fullmatch(value):
            raise refused(400, "bad province")
        return value

    # -- data -------------------------------------------------------------------------------
    async def _blocking(self, fn: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(None, fn)

    def _page_data(self, province: str | None) -> PageData:
        """One consistent read of the store for one view (runs on the executor)."""
        now = self.clock()
        gateways = self.store.gateways()
        provinces = tuple(sorted({g.province for g in gateways if g.province}))
        last = self.store.last_commands(province)
        records = fleet_records(gateways, now, province=province, thresholds=self.settings.thresholds, commands=last)
        alerts = fleet_alerts(records, now, self.settings.thresholds)
        samples = self.store.fleet_samples(now - PLOT_WINDOW, province)
        commands = self.store.commands(province=province, limit=50)
        return PageData(now, province, provinces, records, alerts, samples, commands, last)

    # -- pages ------------------------------------------------------------------------------
    async def page(self, request: web.Request, session: Session, lang: str) -> web.StreamResponse:
        province = self._province(request)
        page = await self._blocking(lambda: self._page_data(province))
        cat = self.catalog(lang)
        parts = fragments(page, cat, self.tz)
        options = [f'<option value="">{_esc(cat.gettext("All provinces"))}</option>'] + [
            f'<option value="{_esc(p)}"{" selected" if p == province else ""}>{_esc(p)}</option>'
            for p in page.provinces
        ]
        config = {
            "lang": lang,
            "csrf": session.csrf,
            "refresh_s": self.settings.refresh_s,
            "expires": session.expires.isoformat(),
        }
        text = render_template(
            self._templates["app"],
            cat,
            {
                **self.lang_values(lang),
                **{f"frag_{k}": v for k, v in parts.items()},
                "who": session.who,
                "csrf": session.csrf,
                "timezone": self.settings.timezone,
                "province_options": "".join(options),
                "config": json_for_html(config),
            },
        )
        return web.Response(text=text, content_type="text/html", charset="utf-8")

    # -- login ------------------------------------------------------------------------------
    def login_values(self, lang: str, cat: Catalog) -> dict[str, str]:
        return {"title": cat.gettext("Fleet of stations"), "stylesheet": "/static/fleet.css"}

    def rate_limited_error(self, cat: Catalog, minutes: int) -> str:
        return cat.gettext("Too many failed logins. Wait {minutes} minutes.").format(minutes=minutes)

    async def authenticate(self, form: Mapping[str, object], cat: Catalog) -> str | Refusal:
        name = str(form.get("name", "")).strip()[:MAX_NAME]
        password = str(form.get("password", ""))[: MAX_PASSWORD_LEN + 1]
        if not name or not password:
            return Refusal(400, cat.gettext("Enter your name and password"))
        path = self.settings.accounts

        def check() -> bool:
            return verify(read_accounts(path), name, password)

        try:
            ok = await self.in_secret_thread(check)
        except AccountsFileError as exc:
            log.error("event=fleet_web_accounts_unreadable error=%r", exc.reason)
            return Refusal(503, cat.gettext("Logins are unavailable: see the hub's log"))
        return name if ok else Refusal(401, cat.gettext("Wrong name or password"))

    def logged_in(self, session: Session) -> None:
        log.info("event=fleet_web_login operator=%s sessions=%d", session.who, len(self.sessions))

    def lang_redirect(self, form: Mapping[str, object]) -> str:
        back = str(form.get("province", ""))
        return f"/?province={back}" if PROVINCE_RE.fullmatch(back) else "/"

    # -- API --------------------------------------------------------------------------------
    async def api_fleet(self, request: web.Request) -> web.StreamResponse:
        self.require(request)
        province = self._province(request)
        page = await self._blocking(lambda: self._page_data(province))
        return _compressed(web.json_response(api_json(page, self.settings.timezone), dumps=_dumps))

    async def api_alerts(self, request: web.Request) -> web.StreamResponse:
        self.require(request)
        province = self._province(request)
        page = await self._blocking(lambda: self._page_data(province))
        return web.json_response(
            {"now": page.now.isoformat(), "alerts": [a.to_json() for a in page.alerts]}, dumps=_dumps
        )

    async def api_fragments(self, request: web.Request) -> web.StreamResponse:
        """The page's live parts as HTML (the page's script swaps them in, no reload)."""
        self.require(request)
        province = self._province(request)
        page = await self._blocking(lambda: self._page_data(province))
        cat = self.catalog(self.lang_of(request))
        return _compressed(
            web.json_response({"province": province, "html": fragments(page, cat, self.tz)}, dumps=_dumps)
        )


def _esc(text: str) -> str:
    import html

    return html.escape(text)


def _compressed(response: web.Response) -> web.Response:
    """gzip when the client accepts it: the table of a thousand gateways is ~0.8 MiB of HTML."""
    response.enable_compression()
    return response


def _dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False)
