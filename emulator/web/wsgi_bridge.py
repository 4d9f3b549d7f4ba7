"""Calling the WSGI app (Flask) from aiohttp's HTTP/1.1 server: environ in, status/headers/body out.

aiohttp parses HTTP on an event loop (its C parser: keep-alive, chunked request bodies,
pipelining); the app runs on a thread pool, because Flask views block (an ad-hoc event waits for
its delivery). A response with a Content-Length is built whole in the app's thread and written in
one go; one without (the dashboard's event stream) is pulled chunk by chunk from the app's
iterator on the pool and written as it comes, so a stream never blocks the loop.
"""

from __future__ import annotations

import asyncio
import io
import logging
import sys
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, Future
from typing import Any
from urllib.parse import unquote_to_bytes

from aiohttp import web
from aiohttp.web_request import BaseRequest

log = logging.getLogger("tiw_emulator.server")

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
# environ key: a callable that is True once the client has gone (the dashboard's stream polls it).
DISCONNECTED_KEY = "tiw_emulator.client_disconnected"
# environ key: time.monotonic() when the server had read the request's head (the control API
# creates a task as of then, not as of when a busy server got round to it).
RECEIVED_KEY = "tiw_emulator.received"
SERVER_HEADER = {"Server": "tiw-emulator"}  # not aiohttp's default, which names Python's version
_SKIPPED_HEADERS = frozenset({"CONTENT_LENGTH", "TRANSFER_ENCODING"})


def json_error(status: int, code: str, message: str) -> web.Response:
    """An error in the control API's shape, for what the server refuses before the app runs."""
    body = {"error": {"code": code, "message": message, "details": {}}}
    response = web.json_response(body, status=status, headers=SERVER_HEADER)
    response.force_close()
    return response


def build_environ(request: BaseRequest, body: bytes, server_port: int) -> dict[str, Any]:
    """The PEP 3333 environ for one request whose body has been read whole."""
    raw_path, _, query = request.raw_path.partition("?")
    transport = request.transport
    peer = transport.get_extra_info("peername") if transport is not None else None
    environ: dict[str, Any] = {
        "REQUEST_METHOD": request.method,
        "SCRIPT_NAME": "",
        "PATH_INFO": unquote_to_bytes(raw_path).decode("latin-1"),
        "QUERY_STRING": query,
        "SERVER_NAME": "127.0.0.1",  # werkzeug takes the host from HTTP_HOST when given
        "SERVER_PORT": str(server_port),
        "SERVER_PROTOCOL": f"HTTP/{request.version.major}.{request.version.minor}",
        "REMOTE_ADDR": peer[0] if peer else "",
        "REMOTE_PORT": str(peer[1]) if peer else "",
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(body),
        "wsgi.input_terminated": True,
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    }
    for name, value in request.raw_headers:
        key = name.decode("latin-1").upper().replace("-", "_")
        text = value.decode("latin-1")
        if key == "CONTENT_TYPE":
            environ["CONTENT_TYPE"] = text
        elif key not in _SKIPPED_HEADERS:  # the body is read whole: CONTENT_LENGTH says its size
            key = "HTTP_" + key
            environ[key] = f"{environ[key]},{text}" if key in environ else text
    return environ


class AppResult:
    """What the app answered: status, headers, and either the whole body or its iterator."""

    def __init__(self) -> None:
        self.status = 500
        self.reason = ""
        self.headers: list[tuple[str, str]] = []
        self.body = b""
        self.chunks: Iterator[bytes] | None = None
        self.closer: Callable[[], None] | None = None

    def start_response(
        self, status: str, headers: list[tuple[str, str]], exc_info: Any = None
    ) -> Callable[[bytes], None]:
        code, _, reason = status.partition(" ")
        self.status, self.reason, self.headers = int(code), reason, list(headers)
        return self._write

    def _write(self, data: bytes) -> None:  # the legacy write() callable: rare, kept simple
        self.body += data

    def has_length(self) -> bool:
        return any(name.lower() == "content-length" for name, _ in self.headers)


def call_app(app: WsgiApp, environ: dict[str, Any]) -> AppResult:
    """Run the app (in a pool thread); a sized body is joined here, a stream is left to pull."""
    result = AppResult()
    try:
        iterable = app(environ, result.start_response)
    except Exception:
        log.exception("the WSGI app raised")
        result.status, result.reason, result.headers, result.body = 500, "", [], b""
        return result
    close = getattr(iterable, "close", None)
    if result.has_length() or environ["REQUEST_METHOD"] == "HEAD":
        try:
            result.body += b"".join(iterable)
        finally:
            if close is not None:
                close()
        return result
    result.chunks = iter(iterable)
    # start_response may come with the first chunk (a generator app): pull it here.
    result.body += next(result.chunks, b"")
    result.closer = close
    return result


def _next_chunk(chunks: Iterator[bytes]) -> bytes | None:
    return next(chunks, None)


async def send_result(
    request: BaseRequest, result: AppResult, pool: Executor
) -> web.StreamResponse:
    """Write the app's answer: at once when sized, else streamed chunk by chunk."""
    headers = [(k, v) for k, v in result.headers if k.lower() != "content-length"]
    if result.chunks is None:
        response = web.Response(status=result.status, reason=result.reason or None)
        response.headers.clear()
        response.headers.update(SERVER_HEADER)
        response.headers.extend(headers)
        response.body = result.body
        return response
    stream = web.StreamResponse(status=result.status, reason=result.reason or None)
    stream.headers.clear()
    stream.headers.update(SERVER_HEADER)
    stream.headers.extend(headers)
    chunks = result.chunks
    pending: Future[bytes | None] | None = None
    try:
        await stream.prepare(request)
        if result.body:
            await stream.write(result.body)
        while request.transport is not None and not request.transport.is_closing():
            pending = pool.submit(_next_chunk, chunks)
            chunk = await asyncio.wrap_future(pending)
            if chunk is None:
                break
            await stream.write(chunk)
        await stream.write_eof()
    except ConnectionError:
        pass  # the client went away mid-stream (a closed dashboard tab): nothing to answer
    finally:
        # Close the app's iterator in a pool thread, after any next() still running there
        # (a stream waits up to its poll interval): closing a running generator is an error.
        closer = result.closer
        if closer is not None:
            if pending is not None and not pending.done():
                pending.add_done_callback(lambda _: closer())
            else:
                pool.submit(closer)
    return stream
