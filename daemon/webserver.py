"""HTTP serving inside the daemon's task group: ASGI apps on hypercorn, on a socket we bind.

The health endpoint, and the simulators of the demo, the tests and the benches, are served
by :func:`serve`. A simulator keeps the handler shape of ``httpx.MockTransport``
(``httpx.Request`` → ``httpx.Response``), so it runs in-process or on a socket without
change; :func:`handler_app` turns such a handler into an ASGI app.

Why hypercorn rather than uvicorn (read in their sources, hypercorn 0.18 and uvicorn 0.55):

- **Slow clients.** Hypercorn arms a connection's idle timer when it is accepted and stops it
  only once a whole request head has been parsed; bytes arriving do not reset it. So
  ``keep_alive_timeout`` is a deadline for the request head however it trickles in, and a
  client that connects and says nothing is dropped by the same timer. Uvicorn arms its
  keep-alive timer only after a response and cancels it on any byte received: a client that
  never sends, or drips a byte at a time, holds its connection for good (and, with
  ``limit_concurrency``, a handful of them turn every other request into a 503).
- **Signals.** ``hypercorn.asyncio.serve(..., shutdown_trigger=...)`` installs no signal
  handler; the daemon keeps its own (``runner.handle_signals``). Uvicorn's ``Server.serve()``
  sets SIGINT/SIGTERM with ``signal.signal`` (replacing anyio's receiver) unless
  ``capture_signals`` is overridden, and wakes every 100 ms while idle.
- **Stopping.** When the trigger fires, hypercorn closes idle connections at once and gives
  requests in progress ``graceful_timeout``; :func:`serve` fires it when its task is cancelled.
- **Our socket.** Hypercorn serves a socket it is handed (``fd://``), so binding stays ours:
  port 0 reports the port it got, and "address in use" is our ``OSError`` to turn into a
  configuration error naming the setting.
- **Weight.** Both add a handful of pure-Python modules (hypercorn: h11, h2, wsproto); the
  import happens only when something is served, not in the operator commands.

Limits (:class:`Limits`): the request head must arrive within ``head_timeout`` and fit in
``max_header_bytes`` (431 beyond that: hypercorn's h11 measures a head still arriving, we
measure one that arrived whole); the body must arrive within ``read_timeout`` (408) and
fit in ``max_body_bytes`` (413), as :func:`serve` reads it before the app sees the request.
Hypercorn has no setting that caps connections; a connection without a request holds a
socket and nothing else, for at most ``head_timeout``. So the cap is on requests in
progress: beyond ``max_requests`` a request is answered 503 at once, and the ones in
progress go on.
"""

from __future__ import annotations

import logging
import math
import os
import socket
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import anyio
import httpx
import structlog
from anyio.abc import TaskStatus

if TYPE_CHECKING:
    from hypercorn.config import Config

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
#: the simulators' shape, and ``httpx.MockTransport``'s
Handler = Callable[[httpx.Request], Awaitable[httpx.Response]]

log = structlog.get_logger("daemon.webserver")


@dataclass(frozen=True)
class Limits:
    """What one client may cost the daemon."""

    #: seconds for a whole request head (and for an idle keep-alive connection)
    head_timeout: float = 10.0
    #: seconds for a whole request body
    read_timeout: float = 10.0
    max_header_bytes: int = 16 * 1024
    max_body_bytes: int = 1024 * 1024
    #: requests in progress at once; more are answered 503
    max_requests: int = 32
    #: on stop, seconds that requests in progress get to finish
    stop_timeout: float = 1.0
    #: connections the kernel queues before they are accepted
    backlog: int = 64


async def listen(host: str, port: int, backlog: int) -> socket.socket:
    """A TCP socket listening on ``host:port`` (0: any free port); OSError when that fails
    (a name that does not resolve, an address in use or not ours)."""
    [(family, _, _, _, address), *_] = await anyio.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        # listening before the port is reported: a client may connect the moment it knows it
        sock.listen(backlog)
    except OSError:
        sock.close()
        raise
    return sock


async def serve(
    app: ASGIApp,
    host: str,
    port: int,
    *,
    limits: Limits = Limits(),
    name: str = "http",
    task_status: TaskStatus[int] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``app`` on ``host:port`` until cancelled; report the bound port to ``task_status``.

    Binding happens before anything else, so a port that is taken raises OSError from
    ``TaskGroup.start``. Cancelling the task stops the server: idle connections are closed
    at once, requests in progress get ``limits.stop_timeout``.
    """
    # hypercorn only where something is served: the operator commands import this module too
    import hypercorn.asyncio  # noqa: PLC0415

    with await listen(host, port, limits.backlog) as sock:
        bound = int(sock.getsockname()[1])
        config = _config(limits, name, sock)
        stop = anyio.Event()
        async with anyio.create_task_group() as tg:
            tg.start_soon(_set_when_cancelled, stop)
            task_status.started(bound)
            log.debug("http.listening", server=name, host=host, port=bound)
            # hypercorn stops itself when ``stop`` is set; cancelling it half-way would leave
            # its connections' tasks behind
            with anyio.CancelScope(shield=True):
                await hypercorn.asyncio.serve(
                    _Guarded(app, limits),  # type: ignore[arg-type]  # hypercorn's TypedDict messages vs our mappings
                    config,
                    shutdown_trigger=stop.wait,
                    mode="asgi",
                )
            tg.cancel_scope.cancel()


async def _set_when_cancelled(stop: anyio.Event) -> None:
    try:
        await anyio.sleep_forever()
    finally:
        stop.set()


def _config(limits: Limits, name: str, sock: socket.socket) -> Config:
    from hypercorn.config import Config  # noqa: PLC0415  # see serve

    config = Config()
    # hypercorn takes the descriptor over and closes it when it stops; ours is closed by serve
    config.bind = [f"fd://{os.dup(sock.fileno())}"]
    config.keep_alive_timeout = limits.head_timeout
    config.read_timeout = math.ceil(limits.read_timeout)  # per read; the body's deadline is ours
    config.h11_max_incomplete_size = limits.max_header_bytes
    config.graceful_timeout = limits.stop_timeout
    config.backlog = limits.backlog
    config.include_server_header = False
    config.accesslog = None
    # its start-up line ("Running on … CTRL + C to quit") is not ours to log; its errors are
    errors = logging.getLogger(f"daemon.webserver.{name}")
    errors.setLevel(logging.WARNING)
    config.errorlog = errors
    return config


class _Guarded:
    """What :func:`serve` puts around every app: answers hypercorn's lifespan messages and
    applies :class:`Limits` (head size, requests in progress, body size and deadline), so
    the app is called with a whole body or not at all."""

    def __init__(self, app: ASGIApp, limits: Limits) -> None:
        self.app = app
        self.limits = limits
        self.in_progress = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        refusal = self._refusal(scope)
        if refusal is not None:
            await respond(send, refusal, close=True)
            return
        self.in_progress += 1
        try:
            try:
                with anyio.fail_after(self.limits.read_timeout):
                    body = await _read_body(receive, self.limits.max_body_bytes)
            except TimeoutError:
                await respond(send, httpx.Response(408, text="request timeout\n"), close=True)
                return
            except _TooLarge:
                await respond(send, httpx.Response(413, text="request body too large\n"), close=True)
                return
            except _Gone:
                return
            await self.app(scope, _replay(body, receive), send)
        finally:
            self.in_progress -= 1

    def _refusal(self, scope: Scope) -> httpx.Response | None:
        """The answer to a request refused on its head alone; None to go on."""
        head = sum(len(k) + len(v) + 4 for k, v in scope["headers"]) + len(scope.get("raw_path") or b"")
        if head > self.limits.max_header_bytes:
            # hypercorn (h11) bounds a head that is still arriving; one that came whole is measured here
            return httpx.Response(431, text="request headers too large\n")
        declared = next((v for k, v in scope["headers"] if k.lower() == b"content-length"), b"")
        if declared.isdigit() and int(declared) > self.limits.max_body_bytes:
            return httpx.Response(413, text="request body too large\n")
        if self.in_progress >= self.limits.max_requests:
            return httpx.Response(503, text="busy: too many requests at once\n")
        return None


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


class _TooLarge(Exception):
    pass


class _Gone(Exception):
    """The client hung up before its request was whole: nobody to answer."""


async def _read_body(receive: Receive, limit: int) -> bytes:
    body = bytearray()
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _Gone
        body.extend(message.get("body", b""))
        if len(body) > limit:
            raise _TooLarge
        if not message.get("more_body", False):
            return bytes(body)


def _replay(body: bytes, receive: Receive) -> Receive:
    """``receive`` for an app: the body already read, in one message, then the server's."""
    pending = [{"type": "http.request", "body": body, "more_body": False}]

    async def replayed() -> Message:
        return pending.pop() if pending else await receive()

    return replayed


async def respond(send: Send, response: httpx.Response, *, close: bool = False) -> None:
    """Send ``response`` as one ASGI response (the server leaves the body out for HEAD)."""
    body = await response.aread()
    headers = [
        (k.encode("latin-1"), v.encode("latin-1"))
        for k, v in response.headers.multi_items()
        if k.lower() not in ("content-length", "transfer-encoding", "connection")
    ]
    headers.append((b"content-length", str(len(body)).encode()))
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": response.status_code, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def handler_app(handler: Handler) -> ASGIApp:
    """An ASGI app answering each request with ``handler`` (the ``httpx.MockTransport`` shape).

    A handler that raises is answered 500 and logged; the server goes on.
    """

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        body = bytearray()
        while True:  # under serve, the whole body in one message
            message = await receive()
            if message["type"] != "http.request":
                return  # the client is gone
            body.extend(message.get("body", b""))
            if not message.get("more_body", False):
                break
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"]]
        request = httpx.Request(scope["method"], _url(scope, headers), headers=headers, content=bytes(body))
        try:
            response = await handler(request)
        except Exception:
            # the handler is ours; a bug there must not take the listener down
            log.exception("http.handler_failed", path=request.url.path)
            response = httpx.Response(500, text="internal error\n")
        await respond(send, response)

    return app


def _url(scope: Scope, headers: list[tuple[str, str]]) -> str:
    host = next((v for k, v in headers if k.lower() == "host"), None)
    if host is None:
        server = scope.get("server") or ("localhost", None)
        host = server[0] if server[1] is None else f"{server[0]}:{server[1]}"
    target = (scope.get("raw_path") or scope["path"].encode()).decode("latin-1")
    if scope.get("query_string"):
        target += "?" + scope["query_string"].decode("latin-1")
    return f"{scope.get('scheme', 'http')}://{host}{target}"
