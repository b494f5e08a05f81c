"""A small HTTP/1.1 server on asyncio, with the limits of the framework's Beast server.

Why not http.server: its limits (64 KiB request line, 100 headers of 64 KiB each, no
header deadline, a thread per connection) are far looser than the C++ services', and a
hostile client should find the same walls whichever language answers. asyncio's
StreamReader bounds the request head (`limit`), wait_for() gives every read a deadline,
and one thread serves every connection.

What it speaks: HTTP/1.0 and 1.1 requests with keep-alive and pipelining; a body with
Content-Length is read and ignored (the routes take none); Transfer-Encoding is refused
with 501. Lines end in CRLF: a bare LF is refused with 400 at once, as the C++ services'
Beast parser refuses it. `Expect: 100-continue` (HTTP/1.1, a body to come) is answered
100 Continue before the body is read, or, when the request is refused whatever its body
(404, 405), with that answer at once and the connection closed (the C++ services alike). Routes are exact paths answered for GET and HEAD, by plain functions of the
query string (bytes) returning a Response: the event loop's thread runs them, so they
must not block.

Errors are the framework's JSON shape, {"error": "<code>", "reason": "<text>"}:
400 malformed_request, 404 not_found, 405 method_not_allowed (with Allow), 413
payload_too_large, 431 header_too_large, 500 internal_error, 501 not_implemented, 503
too_many_connections. Timed-out and abandoned connections are closed without an answer.
"""

import asyncio
import dataclasses
import http
import json
import re
import time

from modsvc.log import log

_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_CONTENT_LENGTH = re.compile(rb"[0-9]{1,19}")
_VERSIONS = (b"HTTP/1.1", b"HTTP/1.0")


@dataclasses.dataclass(frozen=True)
class Limits:
    max_header_bytes: int = 8 * 1024  # request line and headers together
    max_body_bytes: int = 1024 * 1024
    header_timeout: float = 10.0  # from a request's first byte to its last
    idle_timeout: float = 60.0  # a keep-alive connection waiting for its next request
    max_connections: int = 10000


@dataclasses.dataclass
class Response:
    status: int
    body: bytes
    content_type: str
    headers: tuple = ()


def json_error(status, code, reason, headers=()):
    body = json.dumps({"error": code, "reason": reason}, separators=(",", ":")).encode()
    return Response(status, body, "application/json", headers)


def text_response(text):
    return Response(200, text.encode(), "text/plain; charset=utf-8")


class _Refusal(Exception):
    """A request that cannot be served: answered with `response`, then the connection
    is closed (what follows in the stream cannot be trusted)."""

    def __init__(self, status, code, reason):
        super().__init__(reason)
        self.response = json_error(status, code, reason)


@dataclasses.dataclass
class _Request:
    method: bytes
    path: bytes
    query: bytes
    keep_alive: bool
    version: bytes


@dataclasses.dataclass(eq=False)
class _Connection:
    task: asyncio.Task
    busy: bool = False  # between a request's first byte and its response's last


def _printable(raw, limit=64):
    text = raw[:limit].decode("utf-8", errors="replace")
    return text + "..." if len(raw) > limit else text


class HttpServer:
    def __init__(self, routes, metrics, limits=Limits()):
        """`routes`: {b"/path": (operation name for metrics, handler(query) -> Response)}."""
        self._routes = routes
        self._metrics = metrics
        self._limits = limits
        self._connections = set()
        self._server = None
        self._stopping = False

    async def start(self, host, port):
        """Listens on host:port (0: any free port) and returns the port."""
        self._server = await asyncio.start_server(
            self._serve_connection, host, port, limit=self._limits.max_header_bytes
        )
        return self._server.sockets[0].getsockname()[1]

    async def stop(self, grace):
        """Stops accepting, closes idle connections at once, lets requests being served
        finish for up to `grace` seconds, then cuts the rest off. Returns how many were."""
        self._stopping = True
        self._server.close()
        busy = []
        for connection in list(self._connections):
            if connection.busy:
                busy.append(connection.task)
            else:
                connection.task.cancel()
        pending = set()
        if busy:
            _, pending = await asyncio.wait(busy, timeout=grace)
        for task in pending:
            task.cancel()
        await self._server.wait_closed()
        return len(pending)

    async def _serve_connection(self, reader, writer):
        if len(self._connections) >= self._limits.max_connections:
            reason = f"more than {self._limits.max_connections} connections"
            try:
                refusal = json_error(503, "too_many_connections", reason)
                await self._send(writer, refusal, keep_alive=False, head_only=False)
            except ConnectionError:
                pass  # it left first
            finally:
                writer.close()
            return
        connection = _Connection(asyncio.current_task())
        self._connections.add(connection)
        try:
            while not self._stopping:
                keep_alive = await self._serve_one(reader, writer, connection)
                if not keep_alive:
                    break
        except (ConnectionError, asyncio.CancelledError):
            pass  # the peer went away, or shutdown cut the connection off
        finally:
            self._connections.discard(connection)
            writer.close()

    async def _serve_one(self, reader, writer, connection):
        """Reads and answers one request; whether the connection may carry another."""
        first_byte = await self._wait_for_request(reader)
        if first_byte is None:
            return False
        connection.busy = True
        self._metrics.in_flight += 1
        started = time.monotonic()
        try:
            try:
                request = await self._read_request(reader, writer, first_byte)
            except _Refusal as refusal:
                refused = refusal.response
                if refused.status == 431:
                    log("info", "http.request.rejected", code="header_too_large",
                        reason=str(refusal))
                await self._send(writer, refused, keep_alive=False, head_only=False)
                self._metrics.record("unmatched", refused.status, time.monotonic() - started)
                return False
            if request is None:  # the client went away or stalled mid-request
                return False
            operation, response = self._dispatch(request)
            keep_alive = request.keep_alive and not self._stopping
            # HTTP/1.0 persists only when the answer says so: without it the client reads
            # until the close, which comes at the idle timeout (the C++ server says so too).
            confirm = keep_alive and request.version == b"HTTP/1.0"
            await self._send(writer, response, keep_alive, head_only=request.method == b"HEAD",
                             confirm_keep_alive=confirm)
            self._metrics.record(operation, response.status, time.monotonic() - started)
            return keep_alive
        finally:
            self._metrics.in_flight -= 1
            connection.busy = False

    async def _wait_for_request(self, reader):
        """Waits (idle timeout) for a request's first byte and returns it, skipping the
        empty lines a client may send between requests; None when the connection should
        close. (The header deadline starts at that byte: an idle keep-alive connection
        waits longer than a request that has begun.)"""
        for _ in range(8):
            try:
                first = await asyncio.wait_for(reader.readexactly(1), self._limits.idle_timeout)
            except (asyncio.IncompleteReadError, TimeoutError):
                return None
            if first not in (b"\r", b"\n"):
                return first
        return None

    async def _read_head(self, reader, first_byte):
        """The request line and headers up to the empty line, each line ending in CRLF.
        Read line by line: read up to a CRLF CRLF that a bare-LF client never sends, the
        request would wait for the header timeout instead of being refused."""
        head = bytearray(first_byte)
        while True:
            line = await reader.readuntil(b"\n")
            head += line
            if len(head) > self._limits.max_header_bytes:
                raise asyncio.LimitOverrunError("request head too large", len(head))
            if not head.endswith(b"\r\n"):
                raise _Refusal(400, "malformed_request", "malformed request: a line ends in a bare LF")
            if line == b"\r\n" and len(head) > len(first_byte) + 2:
                return bytes(head)

    async def _read_request(self, reader, writer, first_byte):
        limits = self._limits
        try:
            head = await asyncio.wait_for(self._read_head(reader, first_byte),
                                          limits.header_timeout)
        except asyncio.LimitOverrunError:
            raise _Refusal(
                431, "header_too_large", f"request header exceeds {limits.max_header_bytes} bytes"
            )
        except (asyncio.IncompleteReadError, TimeoutError):
            return None
        request_line, *header_lines = head[:-4].split(b"\r\n")
        parts = request_line.split(b" ")
        if len(parts) != 3 or not _TOKEN.fullmatch(parts[0]) or not parts[1].startswith(b"/"):
            raise _Refusal(400, "malformed_request", "malformed request line")
        method, target, version = parts
        if version not in _VERSIONS:
            raise _Refusal(400, "malformed_request", f"unsupported HTTP version '{_printable(version)}'")
        headers = {}
        for line in header_lines:
            name, colon, value = line.partition(b":")
            if not colon or not _TOKEN.fullmatch(name):
                raise _Refusal(400, "malformed_request", f"malformed header line '{_printable(line)}'")
            headers.setdefault(name.lower(), []).append(value.strip(b" \t"))
        path, _, query = target.partition(b"?")
        expects_continue = (version == b"HTTP/1.1"
                            and headers.get(b"expect", [b""])[0].lower() == b"100-continue")
        body_unread = await self._discard_body(reader, writer, headers, expects_continue,
                                               refused=self._refused(method, path))
        connection_tokens = {
            token.strip().lower()
            for value in headers.get(b"connection", [])
            for token in value.split(b",")
        }
        if version == b"HTTP/1.1":
            keep_alive = b"close" not in connection_tokens
        else:
            keep_alive = b"keep-alive" in connection_tokens
        # A body not read may still follow: nothing after it can be trusted.
        keep_alive = keep_alive and not body_unread
        return _Request(method, path, query, keep_alive, version)

    def _refused(self, method, path):
        """Whether _dispatch refuses the request whatever its body (404, 405)."""
        return path not in self._routes or method not in (b"GET", b"HEAD")

    async def _discard_body(self, reader, writer, headers, expects_continue, refused):
        """Reads the body and drops it; True when it was left unread: the client waits for
        100 Continue, and the request is refused anyway."""
        if b"transfer-encoding" in headers:
            reason = "Transfer-Encoding is not supported; send a Content-Length"
            raise _Refusal(501, "not_implemented", reason)
        lengths = set(headers.get(b"content-length", []))
        if not lengths:
            return False
        if len(lengths) != 1 or not _CONTENT_LENGTH.fullmatch(next(iter(lengths))):
            raise _Refusal(400, "malformed_request", "malformed Content-Length")
        length = int(next(iter(lengths)))
        if length > self._limits.max_body_bytes:
            raise _Refusal(
                413, "payload_too_large",
                f"request body exceeds {self._limits.max_body_bytes} bytes",
            )
        if length == 0:
            return False
        if expects_continue:
            if refused:
                return True
            # Sent even when the body has already arrived: RFC 9110 §10.1.1 lets a server
            # omit it then, and any client reads past an interim answer.
            writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            await writer.drain()
        try:
            await asyncio.wait_for(reader.readexactly(length), self._limits.header_timeout)
        except (asyncio.IncompleteReadError, TimeoutError):
            raise ConnectionResetError("the request body did not arrive")
        return False

    def _dispatch(self, request):
        """(operation name for metrics, response)."""
        route = self._routes.get(request.path)
        path = _printable(request.path)
        if route is None:
            return "unmatched", json_error(404, "not_found", f"no route for {path}")
        if request.method not in (b"GET", b"HEAD"):
            method = _printable(request.method)
            reason = f"{method} is not allowed on {path}"
            allow = (("Allow", "GET, HEAD"),)
            return "unmatched", json_error(405, "method_not_allowed", reason, allow)
        operation, handler = route
        try:
            return operation, handler(request.query)
        except Exception as error:  # a bug here must cost one request, not the process
            log("error", "http.handler.failed", operation=operation, error=repr(error))
            return operation, json_error(500, "internal_error", "the handler failed")

    @staticmethod
    async def _send(writer, response, keep_alive, head_only, confirm_keep_alive=False):
        phrase = http.HTTPStatus(response.status).phrase
        lines = [
            f"HTTP/1.1 {response.status} {phrase}",
            f"Content-Type: {response.content_type}",
            f"Content-Length: {len(response.body)}",
        ]
        lines += [f"{name}: {value}" for name, value in response.headers]
        if not keep_alive:
            lines.append("Connection: close")
        elif confirm_keep_alive:
            lines.append("Connection: keep-alive")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        writer.write(head if head_only else head + response.body)
        await writer.drain()
