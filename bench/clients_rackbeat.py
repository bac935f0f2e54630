"""Rackbeat client benchmark: page a catalogue through :class:`RackbeatClient` over a real socket.

``run`` serves a :class:`~daemon.sim.rackbeat.RackbeatSimulator` on loopback
(:func:`~daemon.webserver.serve`), seeds it with products and reads them all with
:meth:`RackbeatClient.products` (pages of 100). Real sleeping and the real clock are
used; the client's budget is set high enough not to pace the scan, so the seconds are
what this machine needs (the in-process simulator's share is reported apart).

    python -m bench.clients_rackbeat [PRODUCTS]     # PRODUCTS defaults to 10,000
"""

from __future__ import annotations

import contextlib
import functools
import time

import anyio
import httpx
from pydantic import SecretStr

from bench import Row, TimedHandler, paging_rows, run_alone
from daemon.rackbeat import RackbeatClient
from daemon.sim.rackbeat import DEFAULT_TOKEN, RackbeatSimulator
from daemon.webserver import handler_app, serve

#: high enough that the client's own budget does not pace the run (the socket is measured)
BENCH_REQUESTS_PER_MINUTE = 10_000
#: products in the catalogue ``run`` pages through unless told otherwise
DEFAULT_PRODUCTS = 10_000


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


async def run(size: int | None = None) -> list[Row]:
    """The bench runner's entry point; ``size`` is the number of products (default 10,000)."""
    m = await bench_rackbeat_paging(size or DEFAULT_PRODUCTS)
    return paging_rows("rackbeat client", "REST", m, "requests (100 products/page)")


def main() -> None:
    """``python -m bench.clients_rackbeat [PRODUCTS]``."""
    run_alone(run)


if __name__ == "__main__":
    main()
