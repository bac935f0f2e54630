"""Client benchmarks against the simulators (the bench runner calls these functions)."""

from __future__ import annotations

import contextlib
import time

import httpx
from pydantic import SecretStr

from daemon.shopify import ShopifyClient

# --- Shopify -------------------------------------------------------------------------------

#: Admin API version the simulator is addressed with when given only its base URL
SHOPIFY_API_VERSION = "2026-10"
#: the simulator accepts any token; this one only has to look like one
SIMULATOR_TOKEN = "shpat_bench"  # noqa: S105


def shopify_graphql_url(base_url: str) -> str:
    """The GraphQL endpoint for ``base_url``: the endpoint itself, an ``…/admin`` root or a host root."""
    url = base_url.rstrip("/")
    if url.endswith("/graphql.json"):
        return url
    if not url.endswith("/admin"):
        url += "/admin"
    return f"{url}/api/{SHOPIFY_API_VERSION}/graphql.json"


async def bench_shopify_paging(
    base_url: str, n: int, *, access_token: str = SIMULATOR_TOKEN
) -> dict[str, float]:
    """Page ``n`` products through :class:`ShopifyClient` from a running Shopify simulator.

    The simulator must hold at least ``n`` products (fewer end the run early; ``products``
    says how many were read). Real sleeping and the real clock are used, so the
    simulator's cost bucket is part of what is measured. Returns ``requests`` (GraphQL
    requests sent), ``seconds`` (wall time), ``products``, ``retries``, ``throttled`` and
    ``throttle_wait_seconds``.
    """
    if n < 1:
        raise ValueError("n must be at least 1")
    read = 0
    async with httpx.AsyncClient(timeout=30.0) as http:
        client = ShopifyClient(
            http, graphql_url=shopify_graphql_url(base_url), access_token=SecretStr(access_token)
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
