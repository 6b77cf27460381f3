"""webui.httpd over real sockets: routes, bodies and their limits, keep-alive, cookies, streamed
responses and clients that go away, failures and shutdown, and hostile bytes (hypothesis)."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gzip
import json
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from webui import httpd as web


def arun(fn: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """An async test run on a loop of its own (fixtures passed through)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        asyncio.run(fn(*args, **kwargs))

    return wrapper


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Served:
    def __init__(self, runner: web.AppRunner, port: int) -> None:
        self.runner = runner
        self.port = port

    async def raw(
        self, data: bytes, *, read_until_close: bool = True, timeout: float = 5.0, eof: bool = False
    ) -> bytes:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        try:
            writer.write(data)
            await writer.drain()
            if eof:  # the client sends nothing more (a half-close)
                writer.write_eof()
            if not read_until_close:
                return await asyncio.wait_for(reader.read(65536), timeout)
            return await asyncio.wait_for(reader.read(), timeout)
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()


def status_of(raw: bytes) -> int:
    return int(raw.split(b" ", 2)[1])


def body_of(raw: bytes) -> bytes:
    return raw.split(b"\r\n\r\n", 1)[1]


def get(path: str, *, headers: str = "", close: bool = True) -> bytes:
    conn = "Connection: close\r\n" if close else ""
    return f"GET {path} HTTP/1.1\r\nHost: t\r\n{conn}{headers}\r\n".encode()


@contextlib.asynccontextmanager
async def serve(app: web.Application, **kw: float) -> AsyncIterator[Served]:
    runner = web.AppRunner(app, **kw)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield Served(runner, port)
    finally:
        await runner.cleanup()


def app_with(
    *routes: tuple[str, str, Callable[[web.Request], Awaitable[web.StreamResponse]]], **kw: int
) -> web.Application:
    app = web.Application(**kw)
    for method, path, handler in routes:
        app.router.add_route(method, path, handler)
    return app


async def echo(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    return web.json_response(
        {
            "method": request.method,
            "path": request.path,
            "match": request.match_info,
            "query": request.query,
            "form": form,
            "cookies": request.cookies,
            "host": request.host,
            "remote": request.remote,
            "content_type": request.content_type,
            "body": (await request.read()).decode(),
        }
    )


@arun
async def test_routes_their_parts_the_query_and_what_is_not_routed() -> None:
    app = app_with(("GET", "/a/{item_id}/b", echo), ("POST", "/form", echo))
    async with serve(app) as s:
        raw = await s.raw(get("/a/x%20y/b?k=1&k=2&e="))
        assert status_of(raw) == 200
        got = json.loads(body_of(raw))
        assert got["match"] == {"item_id": "x y"} and got["query"] == {"k": "1", "e": ""}
        assert got["host"] == "t" and got["remote"] == "127.0.0.1"
        assert status_of(await s.raw(get("/a/b"))) == 404
        assert status_of(await s.raw(get("/a/x/y/b"))) == 404  # a part is one path segment
        assert status_of(await s.raw(get("/form"))) == 405
        head = await s.raw(b"HEAD /a/1/b HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        assert status_of(head) == 200 and body_of(head) == b""  # HEAD: a GET route's head, no body
        assert status_of(await s.raw(get("//evil.example/a/1/b"))) == 404  # a path, never a host


@arun
async def test_a_form_a_json_body_and_cookies_including_a_malformed_header() -> None:
    app = app_with(("POST", "/form", echo))
    async with serve(app) as s:
        body = "who=Lan+Anh&pin=12%2634&who=second"
        raw = await s.raw(
            (
                "POST /form HTTP/1.1\r\nHost: t\r\nConnection: close\r\n"
                "Content-Type: application/x-www-form-urlencoded; charset=utf-8\r\n"
                f'Cookie: se_lang=vi; se_session="abc"\r\nContent-Length: {len(body)}\r\n\r\n{body}'
            ).encode()
        )
        got = json.loads(body_of(raw))
        assert got["form"] == {"who": "Lan Anh", "pin": "12&34"}  # the first value of a repeated field
        assert got["cookies"] == {"se_lang": "vi", "se_session": "abc"}
        assert got["content_type"] == "application/x-www-form-urlencoded"
        raw = await s.raw(
            b'POST /form HTTP/1.1\r\nHost: t\r\nConnection: close\r\nCookie: a="unterminated\r\n'
            b"Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
        )
        got = json.loads(body_of(raw))
        assert got["cookies"] == {} and got["form"] == {} and got["body"] == "{}"


@arun
async def test_a_body_over_the_limit_is_refused_413_whether_declared_or_streamed() -> None:
    app = app_with(("POST", "/form", echo), client_max_size=100)
    async with serve(app) as s:
        declared = await s.raw(b"POST /form HTTP/1.1\r\nHost: t\r\nContent-Length: 101\r\n\r\n")
        assert status_of(declared) == 413 and b"Connection: close" in declared
        chunk = b"x" * 80
        chunked = (
            b"POST /form HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
            + b"50\r\n"
            + chunk
            + b"\r\n"
            + b"50\r\n"
            + chunk
            + b"\r\n0\r\n\r\n"
        )
        assert status_of(await s.raw(chunked)) == 413
        assert status_of(await s.raw(get("/nothing"))) == 404  # and the server goes on


@arun
async def test_keep_alive_answers_requests_one_after_another_on_one_connection() -> None:
    app = app_with(("GET", "/a/{item_id}/b", echo))
    async with serve(app) as s:
        raw = await s.raw(get("/a/1/b", close=False) + get("/a/2/b"))
        assert raw.count(b"HTTP/1.1 200 OK") == 2 and b'"item_id": "1"' in raw and b'"item_id": "2"' in raw


@arun
async def test_response_cookies_headers_and_compression() -> None:
    async def page(request: web.Request) -> web.StreamResponse:
        r = web.Response(text="<p>x</p>" * 200, content_type="text/html", headers={"X-Test": "1"})
        r.set_cookie("se_session", "tok", httponly=True, samesite="Strict", path="/", max_age=60)
        r.del_cookie("se_login")
        r.enable_compression()
        return r

    async with serve(app_with(("GET", "/", page))) as s:
        plain = await s.raw(get("/"))
        assert b"Content-Type: text/html; charset=utf-8" in plain and b"X-Test: 1" in plain
        assert b"Set-Cookie: se_session=tok; HttpOnly; Max-Age=60; Path=/; SameSite=Strict" in plain
        assert b"Set-Cookie: se_login=" in plain and b"Max-Age=0" in plain
        assert body_of(plain) == b"<p>x</p>" * 200
        zipped = await s.raw(get("/", headers="Accept-Encoding: gzip, deflate\r\n"))
        assert b"Content-Encoding: gzip" in zipped
        assert gzip.decompress(body_of(zipped)) == b"<p>x</p>" * 200


@arun
async def test_a_stream_is_chunked_and_its_handler_learns_when_the_client_has_gone() -> None:
    gone = asyncio.Event()
    wrote = asyncio.Event()

    async def events(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        try:
            while True:
                await response.write(b"data: {}\n\n")
                wrote.set()
                await asyncio.sleep(0.02)
        except ConnectionResetError:
            gone.set()
        return response

    async with serve(app_with(("GET", "/events", events))) as s:
        reader, writer = await asyncio.open_connection("127.0.0.1", s.port)
        writer.write(get("/events", close=False))
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert b"Transfer-Encoding: chunked" in head and b"text/event-stream" in head
        assert b"data: {}" in await asyncio.wait_for(reader.read(1000), 5)
        writer.close()
        await asyncio.wait_for(gone.wait(), 5)


@arun
async def test_cleanup_ends_a_stream_that_does_not_end_by_itself_and_runs_cleanup_contexts() -> None:
    steps: list[str] = []

    async def forever(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        await response.write(b"x")
        await asyncio.sleep(3600)
        return response

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        steps.append("up")
        yield
        steps.append("down")

    app = app_with(("GET", "/forever", forever))
    app.cleanup_ctx.append(ctx)
    runner = web.AppRunner(app, shutdown_timeout=0.2)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    idle_reader, idle_writer = await asyncio.open_connection("127.0.0.1", port)  # keep-alive, no request
    writer.write(get("/forever", close=False))
    await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    await asyncio.wait_for(runner.cleanup(), 5)
    assert loop.time() - t0 < 2 and steps == ["up", "down"]
    assert await asyncio.wait_for(idle_reader.read(), 5) == b""  # closed
    with pytest.raises(OSError):
        await asyncio.open_connection("127.0.0.1", port)  # no longer listening
    writer.close()
    idle_writer.close()


@arun
async def test_a_failing_handler_is_answered_500_without_its_details_and_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def broken(request: web.Request) -> web.StreamResponse:
        raise RuntimeError("secret detail")

    async with serve(app_with(("GET", "/", broken))) as s:
        raw = await s.raw(get("/"))
        assert status_of(raw) == 500 and b"secret" not in raw
    assert "event=http_handler_failed" in caplog.text and "secret detail" in caplog.text


@arun
async def test_a_client_that_trickles_its_request_is_not_waited_for(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(web, "REQUEST_TIMEOUT_S", 0.3)
    async with serve(app_with(("GET", "/a/{item_id}/b", echo))) as s:
        reader, writer = await asyncio.open_connection("127.0.0.1", s.port)
        writer.write(b"GET /a/1/b HTTP/1.1\r\n")
        closed = False
        for _ in range(20):  # a header line every 0.1 s, never the end of the head
            await asyncio.sleep(0.1)
            if reader.at_eof():
                closed = True
                break
            with contextlib.suppress(ConnectionError):
                writer.write(b"X-Slow: 1\r\n")
        assert closed or await asyncio.wait_for(reader.read(), 2) == b""
        writer.close()


@arun
async def test_malformed_requests_are_answered_400_and_closed() -> None:
    async with serve(app_with(("GET", "/a/{item_id}/b", echo))) as s:
        assert status_of(await s.raw(b"NOT HTTP AT ALL\r\n\r\n")) == 400
        assert status_of(await s.raw(b"GET /a/1/b HTTP/1.1\r\nNo colon here\r\n\r\n")) == 400
        assert status_of(await s.raw(b"GET /a/1/b HTTP/1.1\r\nHost: t\r\nContent-Length: x\r\n\r\n")) == 400
        huge = b"GET /a/1/b HTTP/1.1\r\nHost: t\r\nX-Big: " + b"a" * (web.MAX_HEAD + 10) + b"\r\n\r\n"
        assert status_of(await s.raw(huge)) == 400


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    junk=st.one_of(
        st.binary(max_size=400),
        st.builds(
            lambda m, t, h: m + b" " + t + b" HTTP/1.1\r\n" + h + b"\r\n\r\n",
            st.sampled_from([b"GET", b"POST", b"HEAD", b"PUT", b"G\x00T"]),
            st.binary(min_size=1, max_size=60),
            st.binary(max_size=200),
        ),
    )
)
def test_hostile_bytes_never_bring_the_server_down(junk: bytes) -> None:
    """Whatever a client sends, the server answers or closes, and answers the next client."""

    async def run() -> None:
        async with serve(app_with(("GET", "/a/{item_id}/b", echo), ("POST", "/a/{item_id}/b", echo))) as s:
            with contextlib.suppress(ConnectionError, TimeoutError):
                raw = await s.raw(junk, timeout=5.0, eof=True)
                if raw:
                    assert raw.startswith(b"HTTP/1.1 ") and status_of(raw) in (200, 400, 404, 405, 413)
                    assert b"Traceback" not in raw
            assert status_of(await s.raw(get("/a/ok/b"))) == 200

    asyncio.run(run())


@arun
async def test_a_client_waiting_for_100_continue_gets_it_and_too_many_connections_are_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with serve(app_with(("POST", "/form", echo))) as s:
        reader, writer = await asyncio.open_connection("127.0.0.1", s.port)
        writer.write(
            b"POST /form HTTP/1.1\r\nHost: t\r\nConnection: close\r\nExpect: 100-continue\r\n"
            b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 3\r\n\r\n"
        )
        assert await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5) == b"HTTP/1.1 100 \r\n\r\n"
        writer.write(b"a=1")
        raw = await asyncio.wait_for(reader.read(), 5)
        assert status_of(raw) == 200 and json.loads(body_of(raw))["form"] == {"a": "1"}
        writer.close()

        monkeypatch.setattr(web, "MAX_CONNECTIONS", 2)
        held = [await asyncio.open_connection("127.0.0.1", s.port) for _ in range(2)]
        await asyncio.sleep(0.05)
        try:
            refused = await s.raw(get("/form"))
        except ConnectionResetError:  # closed with the request unread
            refused = b""
        assert refused == b""  # closed without an answer
        for _, w in held:
            w.close()
        await asyncio.sleep(0.05)
        assert status_of(await s.raw(get("/form"))) == 405  # room again


@arun
async def test_a_client_that_reads_nothing_of_a_stream_is_dropped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(web, "WRITE_TIMEOUT_S", 0.3)
    dropped = asyncio.Event()

    async def flood(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        try:
            while True:
                await response.write(b"x" * 65536)
        except ConnectionResetError:
            dropped.set()
        return response

    async with serve(app_with(("GET", "/flood", flood))) as s:
        _reader, writer = await asyncio.open_connection("127.0.0.1", s.port, limit=1024)
        writer.transport.pause_reading()  # a stalled tab: its socket buffer fills, then the server's
        writer.write(get("/flood", close=False))
        await asyncio.wait_for(dropped.wait(), 10)
        writer.close()
