"""A small HTTP/1.1 server: h11 over anyio streams.

Used by the health endpoint and by the simulators. A handler is an async function
from :class:`httpx.Request` to :class:`httpx.Response`, the same shape as
``httpx.MockTransport`` handlers, so a simulator can be driven in-process or over
a real socket without change.

Slow or malformed clients cannot stall the daemon: the whole request head, and then
the whole body, must arrive within ``read_timeout`` (a deadline, not a per-read
timeout, so dripping a byte at a time does not keep a connection open); headers and
bodies have size limits; at most ``max_connections`` connections are served at once
(one more waits ``busy_timeout`` for a slot, then gets 503); and a protocol error
closes that connection only.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable

import anyio
import h11
import httpx
import structlog
from anyio.abc import SocketAttribute, SocketStream, TaskStatus

Handler = Callable[[httpx.Request], Awaitable[httpx.Response]]

log = structlog.get_logger("daemon.http")


class HTTPServer:
    """Serves ``handler`` on a TCP port with read deadlines, size and connection limits."""

    def __init__(
        self,
        handler: Handler,
        *,
        read_timeout: float = 10.0,
        max_header_bytes: int = 16 * 1024,
        max_body_bytes: int = 1024 * 1024,
        max_connections: int = 32,
        busy_timeout: float = 1.0,
        name: str = "http",
    ) -> None:
        self.handler = handler
        self.read_timeout = read_timeout
        self.busy_timeout = busy_timeout
        self._slots = anyio.CapacityLimiter(max_connections)
        self.max_header_bytes = max_header_bytes
        self.max_body_bytes = max_body_bytes
        self.name = name

    async def serve(
        self,
        host: str,
        port: int,
        *,
        task_status: TaskStatus[int] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """Listen on ``host:port`` (0 = any free port) until cancelled; report the port."""
        listener = await anyio.create_tcp_listener(local_host=host, local_port=port, reuse_port=False)
        async with listener:
            bound = listener.extra(SocketAttribute.local_address)  # noqa: S610  # anyio typed attribute, not Django
            task_status.started(int(bound[1]))  # (host, port[, …]) for IP sockets
            await listener.serve(self._connection)

    async def _connection(self, stream: SocketStream) -> None:
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=self.max_header_bytes)
        async with stream:
            acquired = False
            with anyio.move_on_after(self.busy_timeout):
                await self._slots.acquire()
                acquired = True
            if not acquired:
                # a flood of connections gets told so, rather than queueing without end
                log.debug("http connection refused: too many open", server=self.name)
                await self._reject(stream, conn, 503, b"too many connections\n")
                return
            try:
                await self._serve_connection(stream, conn)
            finally:
                self._slots.release()

    async def _serve_connection(self, stream: SocketStream, conn: h11.Connection) -> None:
        try:
            while await self._one_request(stream, conn):
                conn.start_next_cycle()
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, anyio.EndOfStream, TimeoutError):
            return  # gone, or too slow to take its answer
        except h11.ProtocolError:
            return

    async def _next_event(self, stream: SocketStream, conn: h11.Connection) -> object:
        """The next h11 event; the caller puts the deadline around it."""
        while True:
            event = conn.next_event()
            if event is not h11.NEED_DATA:
                return event
            try:
                data = await stream.receive(65536)
            except anyio.EndOfStream:
                data = b""
            conn.receive_data(data)

    async def _send(self, stream: SocketStream, conn: h11.Connection, response: httpx.Response) -> None:
        body = response.content
        headers = [
            (k.encode(), v.encode()) for k, v in response.headers.items() if k.lower() != "content-length"
        ]
        headers.append((b"content-length", str(len(body)).encode()))
        # a client that does not read its answer must not hold a connection slot for good
        with anyio.fail_after(self.read_timeout):
            await stream.send(
                conn.send(h11.Response(status_code=response.status_code, headers=headers)) or b""
            )
            await stream.send(conn.send(h11.Data(data=body)) or b"")
            await stream.send(conn.send(h11.EndOfMessage()) or b"")

    async def _one_request(self, stream: SocketStream, conn: h11.Connection) -> bool:
        """Serve one request; return True when the connection may be reused."""
        try:
            with anyio.fail_after(self.read_timeout):  # for the whole head, however it trickles in
                event = await self._next_event(stream, conn)
        except TimeoutError:
            if conn.trailing_data[0]:  # part of a head arrived: say why we hang up
                await self._reject(stream, conn, 408, b"request timeout\n")
            return False
        except h11.RemoteProtocolError:
            await self._reject(stream, conn, 400, b"malformed request\n")
            return False
        if isinstance(event, h11.ConnectionClosed) or not isinstance(event, h11.Request):
            return False
        if sum(len(k) + len(v) + 4 for k, v in event.headers) + len(event.target) > self.max_header_bytes:
            # h11 bounds only what is still incomplete; a request that arrived whole is measured here
            await self._reject(stream, conn, 431, b"request headers too large\n")
            return False
        declared = dict(event.headers).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
            await self._reject(stream, conn, 413, b"request body too large\n")
            return False
        body = bytearray()
        try:
            with anyio.fail_after(self.read_timeout):  # for the whole body
                while True:
                    part = await self._next_event(stream, conn)
                    if isinstance(part, h11.Data):
                        body.extend(part.data)
                        if len(body) > self.max_body_bytes:
                            await self._reject(stream, conn, 413, b"request body too large\n")
                            return False
                    elif isinstance(part, h11.EndOfMessage):
                        break
                    else:
                        return False
        except TimeoutError:
            await self._reject(stream, conn, 408, b"request timeout\n")
            return False
        except h11.RemoteProtocolError:
            await self._reject(stream, conn, 400, b"malformed request\n")
            return False
        host = dict(event.headers).get(b"host", b"localhost").decode("latin-1")
        request = httpx.Request(
            event.method.decode("ascii"),
            f"http://{host}{event.target.decode('latin-1')}",
            headers=[(k, v) for k, v in event.headers],
            content=bytes(body),
        )
        try:
            response = await self.handler(request)
        except Exception:
            # the handler is ours; a bug there must not take the listener down
            log.exception("http handler failed", server=self.name, path=request.url.path)
            response = httpx.Response(500, text="internal error\n")
        await self._send(stream, conn, response)
        return conn.our_state is h11.DONE and conn.their_state is h11.DONE

    async def _reject(self, stream: SocketStream, conn: h11.Connection, status: int, text: bytes) -> None:
        if conn.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
            return
        with contextlib.suppress(
            h11.LocalProtocolError, anyio.BrokenResourceError, anyio.ClosedResourceError, TimeoutError
        ):
            await self._send(
                stream, conn, httpx.Response(status, content=text, headers={"connection": "close"})
            )
