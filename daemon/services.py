"""What a running daemon holds open: the state DB, one HTTP client and both API clients.

``run``, ``reconcile`` and the benches open them the same way through
:func:`open_services`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import anyio
import httpx

from daemon.config import Settings
from daemon.logs import register_secret
from daemon.metrics import Metrics
from daemon.rackbeat import RackbeatClient
from daemon.shopify import ShopifyClient
from daemon.shutdown import Shutdown
from daemon.store import Store


def register_secrets(settings: Settings) -> None:
    """Make sure no token of ``settings`` can reach a log line."""
    for secret in (
        settings.rackbeat_api_token,
        settings.shopify_access_token,
        settings.shopify_client_secret,
    ):
        if secret is not None:
            register_secret(secret.get_secret_value())


def http_client() -> httpx.AsyncClient:
    """The one HTTP client both API clients share (timeouts on every phase)."""
    return httpx.AsyncClient(
        timeout=httpx.Timeout(30.0, connect=10.0),
        limits=httpx.Limits(max_connections=10, max_keepalive_connections=5),
        follow_redirects=False,
    )


@dataclass
class Services:
    """Everything a running daemon holds open."""

    settings: Settings
    store: Store
    http: httpx.AsyncClient
    shopify: ShopifyClient
    rackbeat: RackbeatClient
    metrics: Metrics


@asynccontextmanager
async def open_services(
    settings: Settings, http: httpx.AsyncClient | None = None, *, shutdown: Shutdown | None = None
) -> AsyncIterator[Services]:
    """Open the state DB and the API clients; close them on exit.

    With ``shutdown`` the clients' retry backoff ends as soon as a stop is requested.
    """
    store = await Store.open(settings.sync_db, settings.shop)
    own_http = http is None
    client = http or http_client()
    waits: dict[str, Any] = {} if shutdown is None else {"backoff_sleep": shutdown.backoff}
    try:
        shopify = ShopifyClient.from_settings(settings, client, **waits)
        rackbeat = RackbeatClient.from_settings(settings, client, **waits)

        def api_counters() -> dict[str, dict[str, int]]:
            return {
                name: {"requests": c.requests, "retries": c.retries, "throttled": c.throttled}
                for name, c in (("shopify", shopify), ("rackbeat", rackbeat))
            }

        yield Services(settings, store, client, shopify, rackbeat, Metrics(api_counters))
    finally:
        with anyio.CancelScope(shield=True):
            if own_http:
                await client.aclose()
            await store.close()
