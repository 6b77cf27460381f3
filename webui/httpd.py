"""The HTTP server of both pages (the station's nurse dashboard, the hub's fleet page): HTTP/1.1
on asyncio streams, the protocol itself done by h11 (a state machine that parses and frames every
message: request heads, bodies, chunked encoding, keep-alive, pipelining rules), and here only what
the pages need on top: routes, middlewares, requests with their cookies, forms and JSON, responses
whole or streamed (server-sent events), and a runner that starts and stops listening.

Why not aiohttp (issue 14): the dashboard runs inside the agent on a gateway of 1-2 GB, and
importing aiohttp (its client half comes with its server, with seven packages of its own) cost
the agent about 9 MiB of its 100 MiB budget; h11 is 0.5 MiB and has no dependencies. The names
follow aiohttp's (``Request``, ``Response``, ``StreamResponse``, ``json_response``, ``HTTPNotFound``,
``Application``, ``AppRunner``, ``TCPSite``) so that the pages read as before.

Limits, as a page on a local network needs them: a request head of at most ``MAX_HEAD`` bytes,
a body of at most the application's ``client_max_size`` (413 beyond), ``REQUEST_TIMEOUT_S`` to send
a whole request once it began and ``KEEPALIVE_TIMEOUT_S`` idle between requests, then the
connection is closed; a client that takes nothing of a response for ``WRITE_TIMEOUT_S`` (a stalled
tab on an event stream) is dropped, and the handler's next ``write`` raises ``ConnectionResetError``;
at most ``MAX_CONNECTIONS`` at once. A malformed request is answered 400 and the connection closed; a handler
that raises is logged and answered 500, never with its traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import http.cookies
import json
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, MutableMapping, Sequence
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import h11

log = logging.getLogger("webui.httpd")

MAX_HEAD = 16 * 1024
REQUEST_TIMEOUT_S = 30.0
KEEPALIVE_TIMEOUT_S = 75.0
MAX_CONNECTIONS = 64  # a station has a few screens, a hub a few operators: beyond, refused
WRITE_TIMEOUT_S = 30.0  # a client that reads nothing for this long (a stalled tab) is dropped
READ_CHUNK = 64 * 1024
SERVER = b"station-edge"

Handler = Callable[["Request"], Awaitable["StreamResponse"]]
Middleware = Callable[["Request", Handler], Awaitable["StreamResponse"]]
CleanupCtx = Callable[["Application"], AsyncIterator[None]]


class Headers(MutableMapping[str, str]):
    """One value per name, names compared without case, the first spelling kept."""

    def __init__(self, items: Mapping[str, str] | Sequence[tuple[str, str]] = ()) -> None:
        self._d: dict[str, tuple[str, str]] = {}
        for k, v in items.items() if isinstance(items, Mapping) else items:
            self[k] = v

    def __getitem__(self, key: str) -> str:
        return self._d[key.lower()][1]

    def __setitem__(self, key: str, value: str) -> None:
        self._d[key.lower()] = (key, value)

    def __delitem__(self, key: str) -> None:
        del self._d[key.lower()]

    def __iter__(self) -> Iterator[str]:
        return (k for k, _ in self._d.values())

    def __len__(self) -> int:
        return len(self._d)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and key.lower() in self._d


class Request:
    """One request, its body already read (at most the application's ``client_max_size``)."""

    def __init__(
        self,
        method: str,
        target: str,
        headers: Sequence[tuple[bytes, bytes]],
        body: bytes,
        remote: str | None,
    ) -> None:
        self.method = method
        if target.startswith(("http://", "https://")):  # absolute-form: only its path and query count
            parts = urlsplit(target)
            raw_path, raw_query = parts.path, parts.query
        else:  # origin-form ("//x" is a path here, not a host)
            raw_path, _, raw_query = target.partition("?")
        self.path = unquote(raw_path) or "/"
        self.query: dict[str, str] = {}
        for k, v in parse_qsl(raw_query, keep_blank_values=True):
            self.query.setdefault(k, v)
        self.headers = Headers()
        for name, value in headers:  # repeated names: the first (a page reads none that repeat)
            key = name.decode("latin-1")
            if key not in self.headers:
                self.headers[key] = value.decode("latin-1")
        self.remote = remote
        self.match_info: dict[str, str] = {}
        self._body = body
        self._exchange: _Exchange | None = None  # set while the server answers it
        self.cookies = _parse_cookies(self.headers.get("Cookie", ""))

    @property
    def host(self) -> str:
        return self.headers.get("Host", "")

    @property
    def content_type(self) -> str:
        return self.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()

    async def read(self) -> bytes:
        return self._body

    async def post(self) -> dict[str, str]:
        """A urlencoded form's fields (the first value of each); empty for any other body."""
        if self.content_type != "application/x-www-form-urlencoded":
            return {}
        form: dict[str, str] = {}
        for k, v in parse_qsl(self._body.decode("utf-8", "replace"), keep_blank_values=True):
            form.setdefault(k, v)
        return form

    async def json(self) -> Any:
        """The body as JSON; ``ValueError`` when it is not (UTF-8) JSON."""
        return json.loads(self._body.decode("utf-8"))


def _parse_cookies(header: str) -> dict[str, str]:
    jar: http.cookies.SimpleCookie = http.cookies.SimpleCookie()
    try:
        jar.load(header)
    except http.cookies.CookieError:  # a malformed header: no cookies, as if none were sent
        return {}
    return {name: morsel.value for name, morsel in jar.items()}


class StreamResponse:
    """A response; streamed (``prepare`` then ``write``) or, as :class:`Response`, whole."""

    def __init__(self, *, status: int = 200, headers: Mapping[str, str] | None = None) -> None:
        self.status = status
        self.headers = Headers(headers or {})
        self._cookies: http.cookies.SimpleCookie = http.cookies.SimpleCookie()
        self._compress = False
        self._exchange: _Exchange | None = None

    @property
    def prepared(self) -> bool:
        return self._exchange is not None

    def set_cookie(
        self,
        name: str,
        value: str,
        *,
        path: str = "/",
        max_age: int | None = None,
        httponly: bool | None = None,
        samesite: str | None = None,
        secure: bool | None = None,
        expires: str | None = None,
    ) -> None:
        self._cookies[name] = value
        morsel = self._cookies[name]
        morsel["path"] = path
        if max_age is not None:
            morsel["max-age"] = str(int(max_age))
        if expires is not None:
            morsel["expires"] = expires
        if httponly:
            morsel["httponly"] = True
        if secure:
            morsel["secure"] = True
        if samesite:
            morsel["samesite"] = samesite

    def del_cookie(self, name: str, *, path: str = "/") -> None:
        self.set_cookie(name, "", path=path, max_age=0, expires="Thu, 01 Jan 1970 00:00:00 GMT")

    def enable_compression(self) -> None:
        """gzip the body when the client accepts it (whole responses only)."""
        self._compress = True

    def _head(self, body_length: int | None) -> list[tuple[bytes, bytes]]:
        out = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in self.headers.items()]
        if body_length is not None and self.status not in (204, 304) and self.status >= 200:
            out.append((b"Content-Length", str(body_length).encode("ascii")))
        out.extend((b"Set-Cookie", m.OutputString().encode("latin-1")) for m in self._cookies.values())
        return out

    async def prepare(self, request: Request) -> None:
        """Send the status line and headers; the body follows with ``write`` (chunked)."""
        exchange = request._exchange
        if exchange is None:
            raise RuntimeError("this request is not being served")
        self._exchange = exchange
        await exchange.send_head(self.status, self._head(None))

    async def write(self, data: bytes) -> None:
        """Send ``data`` now. ``ConnectionResetError`` when the client has gone."""
        if self._exchange is None:
            raise RuntimeError("write() before prepare()")
        await self._exchange.send_data(data)


class Response(StreamResponse):
    def __init__(
        self,
        *,
        body: bytes | None = None,
        text: str | None = None,
        status: int = 200,
        headers: Mapping[str, str] | None = None,
        content_type: str | None = None,
        charset: str | None = None,
    ) -> None:
        super().__init__(status=status, headers=headers)
        if text is not None:
            charset = charset or "utf-8"
            body = text.encode(charset)
            self.headers.setdefault("Content-Type", f"{content_type or 'text/plain'}; charset={charset}")
        elif content_type is not None:
            self.headers.setdefault("Content-Type", content_type)
        self.body = body or b""

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


def json_response(
    data: object,
    *,
    status: int = 200,
    dumps: Callable[[object], str] = json.dumps,
    headers: Mapping[str, str] | None = None,
) -> Response:
    return Response(text=dumps(data), status=status, content_type="application/json", headers=headers)


class HTTPException(Response, Exception):
    """A response raised by a handler (answered as it is by the middleware or the server)."""

    status_code = 500

    def __init__(
        self, *, text: str | None = None, content_type: str | None = None, headers: Mapping[str, str] | None = None
    ) -> None:
        status = self.status_code
        if text is None:
            text = f"{status}: {HTTPStatus(status).phrase}"
            content_type = content_type or "text/plain"
        Response.__init__(self, text=text, status=status, content_type=content_type, headers=headers)
        Exception.__init__(self, text)
        self.content_type = self.headers.get("Content-Type", "text/plain").split(";", 1)[0]


class HTTPBadRequest(HTTPException):
    status_code = 400


class HTTPUnauthorized(HTTPException):
    status_code = 401


class HTTPForbidden(HTTPException):
    status_code = 403


class HTTPNotFound(HTTPException):
    status_code = 404


class HTTPMethodNotAllowed(HTTPException):
    status_code = 405


class HTTPRequestEntityTooLarge(HTTPException):
    status_code = 413


class HTTPUnsupportedMediaType(HTTPException):
    status_code = 415


def middleware(fn: Callable[..., Awaitable[StreamResponse]]) -> Callable[..., Awaitable[StreamResponse]]:
    """aiohttp's marker for new-style middlewares (``async def mw(request, handler)``): the only style here."""
    return fn


_PARAM = re.compile(r"\{([a-z_]+)\}")


class Router:
    def __init__(self) -> None:
        self._routes: list[tuple[str, re.Pattern[str], Handler]] = []

    def add_route(self, method: str, path: str, handler: Handler) -> None:
        """``path`` may hold ``{name}`` parts: one path segment each, in ``request.match_info``."""
        pattern = "".join(f"(?P<{p}>[^/]+)" if i % 2 else re.escape(p) for i, p in enumerate(_PARAM.split(path)))
        self._routes.append((method.upper(), re.compile(pattern), handler))

    def resolve(self, request: Request) -> Handler:
        method = "GET" if request.method == "HEAD" else request.method
        allowed = False
        for m, pattern, handler in self._routes:
            match = pattern.fullmatch(request.path)
            if match is None:
                continue
            if m == method:
                request.match_info = match.groupdict()
                return handler
            allowed = True
        raise HTTPMethodNotAllowed() if allowed else HTTPNotFound()


class Application:
    def __init__(self, *, middlewares: Sequence[Middleware] = (), client_max_size: int = 1024**2) -> None:
        self.router = Router()
        self.middlewares = tuple(middlewares)
        self.client_max_size = client_max_size
        self.cleanup_ctx: list[CleanupCtx] = []

    async def handle(self, request: Request) -> StreamResponse:
        """The middlewares around the route's handler; an ``HTTPException`` that gets through is
        the response."""

        async def route(req: Request) -> StreamResponse:
            return await self.router.resolve(req)(req)

        handler: Handler = route
        for mw in reversed(self.middlewares):
            handler = _wrapped(mw, handler)
        try:
            return await handler(request)
        except HTTPException as exc:
            return exc


def _wrapped(mw: Middleware, inner: Handler) -> Handler:
    async def call(request: Request) -> StreamResponse:
        return await mw(request, inner)

    return call


class _Closed(Exception):
    """The client closed the connection, or broke the protocol."""


class _Exchange:
    """One connection's h11 state and socket, for the request being answered."""

    def __init__(self, conn: h11.Connection, writer: asyncio.StreamWriter, head_only: bool) -> None:
        self.conn = conn
        self.writer = writer
        self.head_only = head_only
        self.head_sent = False

    async def _send(self, event: Any) -> None:
        data = self.conn.send(event)
        if data:
            if self.writer.is_closing():
                raise ConnectionResetError("the client has gone")
            self.writer.write(data)
            try:
                await asyncio.wait_for(self.writer.drain(), WRITE_TIMEOUT_S)
            except TimeoutError:
                self.writer.transport.abort()
                raise ConnectionResetError("the client reads nothing") from None
            except ConnectionError as exc:  # a broken pipe too: one exception for "the client has gone"
                raise ConnectionResetError(str(exc)) from exc

    async def send_head(self, status: int, headers: list[tuple[bytes, bytes]]) -> None:
        headers = [(b"Server", SERVER), *headers]
        reason = HTTPStatus(status).phrase.encode("ascii") if status in HTTPStatus._value2member_map_ else b""
        await self._send(h11.Response(status_code=status, headers=headers, reason=reason))
        self.head_sent = True

    async def send_data(self, data: bytes) -> None:
        if data and not self.head_only:
            await self._send(h11.Data(data=data))

    async def finish(self) -> None:
        await self._send(h11.EndOfMessage())


class AppRunner:
    """Serves ``app`` on the sites started after ``setup``; ``cleanup`` stops listening, ends
    every connection (a handler still running gets ``shutdown_timeout`` to finish, then is
    cancelled) and runs the rest of the application's cleanup contexts."""

    def __init__(self, app: Application, *, shutdown_timeout: float = 5.0) -> None:
        self.app = app
        self.shutdown_timeout = shutdown_timeout
        self._servers: list[asyncio.Server] = []
        self._connections: set[asyncio.Task[None]] = set()
        self._busy: set[asyncio.Task[None]] = set()
        self._contexts: list[AsyncIterator[None]] = []

    async def setup(self) -> None:
        for make in self.app.cleanup_ctx:
            ctx = make(self.app)
            await anext(ctx)
            self._contexts.append(ctx)

    async def cleanup(self) -> None:
        for server in self._servers:
            server.close()
        self._servers.clear()
        idle = self._connections - self._busy
        for task in idle:
            task.cancel()
        if self._busy:
            await asyncio.wait(set(self._busy), timeout=self.shutdown_timeout)
        for task in list(self._connections):
            task.cancel()
        if self._connections:
            await asyncio.gather(*self._connections, return_exceptions=True)
        for ctx in reversed(self._contexts):
            with contextlib.suppress(StopAsyncIteration):
                await anext(ctx)
        self._contexts.clear()

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One connection: requests answered one after another until either side closes."""
        task = asyncio.current_task()
        assert task is not None
        if len(self._connections) >= MAX_CONNECTIONS:  # closed at once: memory stays bounded
            log.warning("event=http_connection_refused reason=too_many connections=%d", len(self._connections))
            writer.close()
            return
        self._connections.add(task)
        task.add_done_callback(self._connections.discard)
        peer = writer.get_extra_info("peername")
        remote = peer[0] if isinstance(peer, tuple) and peer else None
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD)
        try:
            while True:
                try:
                    request = await self._read_request(conn, reader, writer, remote)
                except _Closed:
                    return
                except HTTPException as exc:  # too large, malformed: answered, then closed
                    await self._answer_error(conn, writer, exc)
                    return
                self._busy.add(task)
                try:
                    await self._respond(conn, writer, request)
                finally:
                    self._busy.discard(task)
                if conn.our_state is h11.MUST_CLOSE or conn.their_state is not h11.DONE:
                    return
                try:
                    conn.start_next_cycle()
                except h11.LocalProtocolError:
                    return
        except (ConnectionError, TimeoutError, asyncio.IncompleteReadError, h11.LocalProtocolError):
            return
        except asyncio.CancelledError:  # cleanup() ends the connection: the task ends here (on Python
            return  # 3.11 a cancelled connection task makes asyncio.start_server log a spurious error)
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _read_request(
        self, conn: h11.Connection, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, remote: str | None
    ) -> Request:
        """The next request: ``KEEPALIVE_TIMEOUT_S`` for its first bytes, then ``REQUEST_TIMEOUT_S``
        for all of it (a client that sends a byte now and then is not waited for)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + KEEPALIVE_TIMEOUT_S
        begun = conn.trailing_data[0] != b""

        async def next_event() -> Any:
            nonlocal deadline, begun
            while True:
                try:
                    event = conn.next_event()
                except h11.RemoteProtocolError as exc:
                    raise HTTPBadRequest(text=f"bad request: {exc}") from None
                if event is not h11.NEED_DATA:
                    return event
                remaining = deadline - loop.time()
                if remaining <= 0:
                    raise _Closed()
                try:
                    data = await asyncio.wait_for(reader.read(READ_CHUNK), remaining)
                except TimeoutError:
                    raise _Closed() from None
                if data and not begun:
                    begun = True
                    deadline = loop.time() + REQUEST_TIMEOUT_S
                conn.receive_data(data)  # b"" is the end of the stream

        if begun:
            deadline = loop.time() + REQUEST_TIMEOUT_S
        event = await next_event()
        if isinstance(event, h11.ConnectionClosed):
            raise _Closed()
        if not isinstance(event, h11.Request):
            raise HTTPBadRequest(text="bad request")
        if len(event.target) + sum(len(k) + len(v) + 4 for k, v in event.headers) > MAX_HEAD:
            raise HTTPBadRequest(text="request head too large")  # h11 bounds only a head that arrives in parts
        limit = self.app.client_max_size
        declared = dict(event.headers).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise HTTPRequestEntityTooLarge(text=f"request body larger than {limit} bytes")
        if conn.they_are_waiting_for_100_continue:  # curl and other clients wait for it before a body
            writer.write(conn.send(h11.InformationalResponse(status_code=100, headers=[])) or b"")
        body = bytearray()
        while True:
            part = await next_event()
            if isinstance(part, h11.Data):
                body += part.data
                if len(body) > limit:
                    raise HTTPRequestEntityTooLarge(text=f"request body larger than {limit} bytes")
            elif isinstance(part, h11.EndOfMessage):
                break
            else:  # the client closed mid-request
                raise _Closed()
        return Request(
            event.method.decode("ascii"), event.target.decode("latin-1"), list(event.headers), bytes(body), remote
        )

    async def _respond(self, conn: h11.Connection, writer: asyncio.StreamWriter, request: Request) -> None:
        exchange = _Exchange(conn, writer, head_only=request.method == "HEAD")
        request._exchange = exchange
        try:
            response = await self.app.handle(request)
        except (ConnectionError, asyncio.CancelledError):
            raise
        except Exception:
            log.exception("event=http_handler_failed method=%s path=%s", request.method, request.path[:200])
            if exchange.head_sent:
                raise ConnectionResetError("the handler failed mid-response") from None
            response = Response(status=500, text="500: Internal Server Error")
        if not exchange.head_sent:
            body = response.body if isinstance(response, Response) else b""
            if isinstance(response, Response) and response._compress and body:
                if "gzip" in request.headers.get("Accept-Encoding", "").lower():
                    body = gzip.compress(body, compresslevel=6)
                    response.headers["Content-Encoding"] = "gzip"
                response.headers["Vary"] = "Accept-Encoding"
            await exchange.send_head(response.status, response._head(len(body)))
            await exchange.send_data(body)
        await exchange.finish()

    async def _answer_error(self, conn: h11.Connection, writer: asyncio.StreamWriter, exc: HTTPException) -> None:
        if conn.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
            return
        exc.headers["Connection"] = "close"
        exchange = _Exchange(conn, writer, head_only=False)
        with contextlib.suppress(h11.LocalProtocolError, ConnectionError):
            await exchange.send_head(exc.status, exc._head(len(exc.body)))
            await exchange.send_data(exc.body)
            await exchange.finish()


class TCPSite:
    def __init__(self, runner: AppRunner, host: str, port: int, *, reuse_address: bool | None = None) -> None:
        self.runner = runner
        self.host = host
        self.port = port
        self.reuse_address = reuse_address

    async def start(self) -> None:
        """Listen (``OSError`` when the address is taken or not ours)."""
        server = await asyncio.start_server(self.runner.serve, self.host, self.port, reuse_address=self.reuse_address)
        self.runner._servers.append(server)
