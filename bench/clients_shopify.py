"""Shopify client benchmark: page a catalogue through :class:`ShopifyClient` from the simulator.

``run`` serves a :class:`~daemon.sim.shopify.ShopifySimulator` on a real loopback socket
(:func:`~daemon.webserver.serve`), seeds it with single-variant products and reads
them all with :meth:`ShopifyClient.products_updated_since`. The simulator keeps the
Standard plan's cost bucket (2,000 points, 100/s) on a *fast-forwarded* clock: when the
client waits for the bucket, the clock shared by client and simulator moves on instead of
the process sleeping. The seconds reported are wall-clock seconds of the scan on this
machine (socket, JSON, GraphQL execution in the simulator and the client's own work); the
waits a real shop of that plan would add are reported apart, in simulated seconds.

    python -m bench.clients_shopify [PRODUCTS]      # PRODUCTS defaults to 10,000
"""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import Awaitable, Callable

import anyio
import anyio.lowlevel
import httpx
from pydantic import SecretStr

from bench import Row, TimedHandler, paging_rows, run_alone
from daemon.shopify import ShopifyClient
from daemon.sim.shopify import ShopifySimulator
from daemon.webserver import handler_app, serve

#: Admin API version the simulator is addressed with when given only its base URL
SHOPIFY_API_VERSION = "2026-10"
#: the token the benchmark's simulator is told to accept
SIMULATOR_TOKEN = "shpat_bench"  # noqa: S105  # a fake token for a simulator
#: products in the catalogue ``run`` pages through unless told otherwise
DEFAULT_PRODUCTS = 10_000


class FastClock:
    """Monotonic seconds that jump forward when someone sleeps, instead of sleeping.

    Shared by the client (``sleep``/``clock``) and the simulator (``monotonic``), so that the
    simulator's bucket refills by exactly the time the client chose to wait.
    """

    def __init__(self) -> None:
        self._base = time.monotonic()
        #: simulated seconds slept so far
        self.skipped = 0.0

    def monotonic(self) -> float:
        """Real elapsed seconds plus every sleep skipped."""
        return time.monotonic() - self._base + self.skipped

    async def sleep(self, seconds: float) -> None:
        """Move the clock on by ``seconds`` and return at once."""
        self.skipped += max(0.0, seconds)
        await anyio.lowlevel.checkpoint()


def shopify_graphql_url(base_url: str) -> str:
    """The GraphQL endpoint for ``base_url``: the endpoint itself, an ``…/admin`` root or a host root."""
    url = base_url.rstrip("/")
    if url.endswith("/graphql.json"):
        return url
    if not url.endswith("/admin"):
        url += "/admin"
    return f"{url}/api/{SHOPIFY_API_VERSION}/graphql.json"


async def bench_shopify_paging(
    base_url: str,
    n: int,
    *,
    access_token: str = SIMULATOR_TOKEN,
    sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> dict[str, float]:
    """Page ``n`` products through :class:`ShopifyClient` from a running Shopify simulator.

    The simulator must hold at least ``n`` products (fewer end the run early; ``products``
    says how many were read). ``sleep`` and ``clock`` go to the client: by default real
    sleeping and the real clock, so the simulator's cost bucket is part of what is measured.
    Returns ``requests`` (GraphQL requests sent), ``seconds`` (wall time), ``products``,
    ``retries``, ``throttled`` and ``throttle_wait_seconds``.
    """
    if n < 1:
        raise ValueError("n must be at least 1")
    read = 0
    async with httpx.AsyncClient(timeout=30.0) as http:
        client = ShopifyClient(
            http,
            graphql_url=shopify_graphql_url(base_url),
            access_token=SecretStr(access_token),
            sleep=sleep,
            clock=clock,
        )
        started = time.perf_counter()
        pages = client.products_updated_since(None)
        async with contextlib.aclosing(pages):
            async for products in pages:
                read += len(products)
                if read >= n:
                    break
        seconds = time.perf_counter() - started
    return {
        "requests": client.requests,
        "seconds": seconds,
        "products": min(read, n),
        "retries": client.retries,
        "throttled": client.throttled,
        "throttle_wait_seconds": client.throttle_wait_seconds,
    }


async def measure(n: int = DEFAULT_PRODUCTS) -> dict[str, float]:
    """Serve a simulator holding ``n`` products on loopback and page them all once."""
    clock = FastClock()
    sim = ShopifySimulator(
        monotonic=clock.monotonic, sleep=clock.sleep, access_tokens=(SIMULATOR_TOKEN,), request_log_size=10
    )
    for index in range(n):
        sim.add_product(f"Bench product {index}", [{"sku": f"BENCH-{index:07}", "price": "100.00"}])
    timed = TimedHandler(sim.handle)

    async with anyio.create_task_group() as tg:
        port = await tg.start(
            functools.partial(serve, handler_app(timed), name="shopify-sim"), "127.0.0.1", 0
        )
        result = await bench_shopify_paging(
            f"http://127.0.0.1:{port}", n, sleep=clock.sleep, clock=clock.monotonic
        )
        tg.cancel_scope.cancel()
    return {**result, "simulator_seconds": timed.seconds}


async def run(size: int | None = None) -> list[Row]:
    """The bench runner's entry point; ``size`` is the number of products (default 10,000)."""
    n = size or DEFAULT_PRODUCTS
    m = await measure(n)
    return [
        *paging_rows("shopify client", "GraphQL", m, "requests (8 products/page: cost-bound)"),
        (
            "shopify client",
            "bucket waits a Standard-plan shop adds",
            round(m["throttle_wait_seconds"], 1),
            "s simulated (skipped here)",
        ),
    ]


def main() -> None:
    """``python -m bench.clients_shopify [PRODUCTS]``."""
    run_alone(run)


if __name__ == "__main__":
    main()
