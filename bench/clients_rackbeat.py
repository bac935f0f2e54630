"""Rackbeat client benchmarks against the simulator on a real loopback socket."""

from __future__ import annotations

import contextlib
import time

import anyio
import httpx
from pydantic import SecretStr

from daemon.httpserver import HTTPServer
from daemon.rackbeat import RackbeatClient
from daemon.sim.rackbeat import DEFAULT_TOKEN, RackbeatSimulator

#: high enough that the client's own budget does not pace the run (the socket is measured)
BENCH_REQUESTS_PER_MINUTE = 10_000


async def bench_rackbeat_paging(
    n: int, *, requests_per_minute: int = BENCH_REQUESTS_PER_MINUTE
) -> dict[str, float]:
    """Page ``n`` products through :class:`RackbeatClient` from a simulator on loopback.

    Starts a :class:`RackbeatSimulator` holding ``n`` products behind
    :class:`~daemon.httpserver.HTTPServer` on 127.0.0.1 (any free port), reads every product
    with :meth:`RackbeatClient.products` (pages of 100) and stops the server. Real sleeping
    and the real clock are used. Returns ``requests`` (sent by the client), ``seconds``
    (wall time of the scan, setup excluded), ``products`` (read), ``retries`` and ``throttled``.
    """
    if n < 1:
        raise ValueError("n must be at least 1")
    sim = RackbeatSimulator()
    for index in range(n):
        sim.add_product(f"BENCH-{index:07}", f"Bench product {index}", stock=index % 50, sales_price=100)
    read = 0
    async with anyio.create_task_group() as tg:
        port = await tg.start(HTTPServer(sim.handle, name="rackbeat-sim").serve, "127.0.0.1", 0)
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
        "products": read,
        "retries": client.retries,
        "throttled": client.throttled,
    }
