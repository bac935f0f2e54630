"""Rackbeat client benchmark: page a catalogue through :class:`RackbeatClient` over a real socket.

``run`` serves a :class:`~daemon.sim.rackbeat.RackbeatSimulator` on loopback
(:func:`~daemon.webserver.serve`), seeds it with products and reads them all with
:meth:`RackbeatClient.products` (pages of 100). Real sleeping and the real clock are
used; the client's budget is set high enough not to pace the scan, so the seconds are
what this machine needs (the in-process simulator's share is reported apart).

``bench_rackbeat_window`` measures the request budget instead, on a simulated clock: a
quiet client at ``RACKBEAT_REQUESTS_PER_MINUTE=120`` sends 400 requests from four
concurrent callers, and the figure is the most sends in any 60-second window
``[t, t + 60)`` (every window starting at a send is checked). A per-minute server limit
punishes anything above 120. The same run against a simulator that enforces 120 per
rolling minute counts the 429 answers.

    python -m bench.clients_rackbeat [PRODUCTS]     # PRODUCTS defaults to 10,000
"""

from __future__ import annotations

import bisect
import contextlib
import functools
import time
from collections.abc import Sequence

import anyio
import httpx
from pydantic import SecretStr

from bench import Row, TimedHandler, paging_rows, run_alone
from daemon.rackbeat import RackbeatClient
from daemon.sim.rackbeat import DEFAULT_TOKEN, RackbeatSimulator
from daemon.sim.shopify import SimClock
from daemon.webserver import handler_app, serve

#: high enough that the client's own budget does not pace the run (the socket is measured)
BENCH_REQUESTS_PER_MINUTE = 10_000
#: products in the catalogue ``run`` pages through unless told otherwise
DEFAULT_PRODUCTS = 10_000
#: the budget and workload of the window figure (fixed: it costs simulated time only)
WINDOW_REQUESTS_PER_MINUTE = 120
WINDOW_REQUESTS = 400
WINDOW_CALLERS = 4


async def bench_rackbeat_paging(
    n: int, *, requests_per_minute: int = BENCH_REQUESTS_PER_MINUTE
) -> dict[str, float]:
    """Page ``n`` products through :class:`RackbeatClient` from a simulator on loopback.

    Starts a :class:`RackbeatSimulator` holding ``n`` products behind
    :func:`~daemon.webserver.serve` on 127.0.0.1 (any free port), reads every product
    with :meth:`RackbeatClient.products` (pages of 100) and stops the server. Real sleeping
    and the real clock are used. Returns ``requests`` (sent by the client), ``seconds``
    (wall time of the scan, setup excluded), ``simulator_seconds`` (the part of it spent
    in the simulator's handler), ``products`` (read), ``retries`` and ``throttled``.
    """
    if n < 1:
        raise ValueError("n must be at least 1")
    sim = RackbeatSimulator(request_log_size=10)
    for index in range(n):
        sim.add_product(f"BENCH-{index:07}", f"Bench product {index}", stock=index % 50, sales_price=100)
    timed = TimedHandler(sim.handle)

    read = 0
    async with anyio.create_task_group() as tg:
        port = await tg.start(
            functools.partial(serve, handler_app(timed), name="rackbeat-sim"), "127.0.0.1", 0
        )
        async with httpx.AsyncClient(timeout=30.0) as http:
            client = RackbeatClient(
                http,
                base_url=f"http://127.0.0.1:{port}/api",
                token=SecretStr(DEFAULT_TOKEN),
                contact_name="rackbeat-shopify-bench",
                contact_email="bench@localhost",
                requests_per_minute=requests_per_minute,
            )
            started = time.perf_counter()
            pages = client.products()
            async with contextlib.aclosing(pages):
                async for products in pages:
                    read += len(products)
            seconds = time.perf_counter() - started
        tg.cancel_scope.cancel()
    return {
        "requests": client.requests,
        "seconds": seconds,
        "simulator_seconds": timed.seconds,
        "products": read,
        "retries": client.retries,
        "throttled": client.throttled,
    }


def most_in_window(sends: Sequence[float], seconds: float = 60.0) -> int:
    """The most of ``sends`` (times, any order) inside one window ``[t, t + seconds)``.

    The fullest window starts at a send, so only those windows are counted."""
    times = sorted(sends)
    return max((bisect.bisect_left(times, t + seconds) - i for i, t in enumerate(times)), default=0)


async def bench_rackbeat_window(
    n: int = WINDOW_REQUESTS,
    *,
    requests_per_minute: int = WINDOW_REQUESTS_PER_MINUTE,
    callers: int = WINDOW_CALLERS,
    server_limit: int | None = None,
) -> dict[str, float]:
    """Send ``n`` requests through a quiet :class:`RackbeatClient` on a simulated clock.

    ``callers`` tasks share the ``n`` requests (``GET /products/{number}``) and send them
    back to back; the client's budget waits advance the clock instead of sleeping. The
    in-process simulator enforces ``server_limit`` requests per rolling minute (None: no
    limit). Returns ``most_in_window`` (the most sends, retries included, in any 60 s
    window), ``requests``, ``throttled`` (429 answers) and ``seconds`` (simulated).
    """
    clock = SimClock()
    sim = RackbeatSimulator(
        now=clock.now,
        monotonic=clock.monotonic,
        sleep=clock.sleep,
        requests_per_minute=server_limit,
        request_log_size=10,
    )
    sim.add_product("BENCH-1", "Bench product", stock=1)
    sends: list[float] = []

    async def handle(request: httpx.Request) -> httpx.Response:
        sends.append(clock.monotonic())
        return await sim.handle(request)

    started = clock.monotonic()
    async with httpx.AsyncClient(transport=httpx.MockTransport(handle)) as http:
        client = RackbeatClient(
            http,
            base_url="http://rackbeat.sim/api",
            token=SecretStr(DEFAULT_TOKEN),
            contact_email="bench@localhost",
            requests_per_minute=requests_per_minute,
            sleep=clock.sleep,
            clock=clock.monotonic,
            random=lambda: 1.0,
        )

        async def caller(count: int) -> None:
            for _ in range(count):
                await client.get_product("BENCH-1")

        async with anyio.create_task_group() as tg:
            for index in range(callers):
                tg.start_soon(caller, n // callers + (index < n % callers))
    return {
        "most_in_window": most_in_window(sends),
        "requests": client.requests,
        "throttled": client.throttled,
        "seconds": clock.monotonic() - started,
    }


async def run(size: int | None = None) -> list[Row]:
    """The bench runner's entry point; ``size`` is the number of products (default 10,000).

    The window figures always use :data:`WINDOW_REQUESTS` requests (simulated time)."""
    m = await bench_rackbeat_paging(size or DEFAULT_PRODUCTS)
    rows = paging_rows("rackbeat client", "REST", m, "requests (100 products/page)")
    rpm, n = WINDOW_REQUESTS_PER_MINUTE, WINDOW_REQUESTS
    window = await bench_rackbeat_window()
    limited = await bench_rackbeat_window(server_limit=rpm)
    rows += [
        (
            "rackbeat client",
            f"most Rackbeat requests in any 60 s window at RACKBEAT_REQUESTS_PER_MINUTE={rpm}, {n} requests",
            int(window["most_in_window"]),
            f"requests (goal <= {rpm}; simulated clock)",
        ),
        (
            "rackbeat client",
            f"429 answers from a server allowing {rpm} per rolling minute, {n} requests",
            int(limited["throttled"]),
            "answers (goal 0; simulated clock)",
        ),
    ]
    return rows


def main() -> None:
    """``python -m bench.clients_rackbeat [PRODUCTS]``."""
    run_alone(run)


if __name__ == "__main__":
    main()
