"""What a running daemon holds open: the state DB, one HTTP client and the API clients.

One process serves every Shopify shop of a Rackbeat account (``SHOPS``): the shops share
the state DB (each its own rows), the HTTP client, the one Rackbeat client with its one
request budget, and the metrics registry; each has its own Shopify client.
``run``, ``reconcile`` and the benches open them the same way through
:func:`open_account` (:func:`open_services` for one shop).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import anyio
import httpx

from daemon.config import Account, Settings, Shop
from daemon.demand import OrderDemand
from daemon.logs import register_secret
from daemon.metrics import Metrics
from daemon.rackbeat import RackbeatClient
from daemon.shopify import ShopifyClient
from daemon.shutdown import Shutdown
from daemon.store import Store


def register_secrets(settings: Settings | Account) -> None:
    """Make sure no token of ``settings`` (of every shop of an account) can reach a log line."""
    every = [s.settings for s in settings.shops] if isinstance(settings, Account) else [settings]
    for one in every:
        for secret in (one.rackbeat_api_token, one.shopify_access_token, one.shopify_client_secret):
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
    """What one shop's flows use: its settings, its view of the state DB, its Shopify client,
    and the account's Rackbeat client, HTTP client and metrics (this shop's view)."""

    settings: Settings
    store: Store
    http: httpx.AsyncClient
    shopify: ShopifyClient
    rackbeat: RackbeatClient
    metrics: Metrics
    #: the shop's alias (``SHOPS``)
    alias: str = ""
    #: the state keys (domains) of every shop whose orders draw on this shop's S10
    #: locations, this one first: their unreserved demand lowers this shop's figures
    demand_shops: tuple[str, ...] = ()

    @property
    def demand(self) -> OrderDemand:
        """The unreserved demand this shop's stock figures subtract."""
        return OrderDemand(self.store, self.demand_shops or (self.store.shop,))


@dataclass
class AccountServices:
    """Everything a running daemon holds open: one state DB, one HTTP client, one Rackbeat
    client (one request budget) and one metrics registry, shared by every shop's
    :class:`Services`."""

    account: Account
    store: Store
    http: httpx.AsyncClient
    rackbeat: RackbeatClient
    metrics: Metrics
    shops: list[Services]


def shares_locations(a: Settings, b: Settings) -> bool:
    """Whether orders of one shop can draw on stock the other's S10 sends (``all`` meets
    every list; two lists meet when they share a location)."""
    wanted_a, wanted_b = a.location_numbers, b.location_numbers
    return wanted_a is None or wanted_b is None or bool(set(wanted_a) & set(wanted_b))


@asynccontextmanager
async def open_account(
    account: Account,
    http: httpx.AsyncClient | None = None,
    *,
    shutdown: Shutdown | None = None,
    rackbeat_options: Mapping[str, Any] | None = None,
) -> AsyncIterator[AccountServices]:
    """Open the state DB and the API clients of every shop; close them on exit.

    With ``shutdown`` the clients' retry backoff ends as soon as a stop is requested.
    ``rackbeat_options`` are further :class:`RackbeatClient` arguments (the benches give
    the request budget a simulated ``clock`` and ``sleep``).
    """
    settings = account.settings
    store = await Store.open(settings.sync_db, account.shops[0].settings.shop)
    own_http = http is None
    client = http or http_client()
    waits: dict[str, Any] = {} if shutdown is None else {"backoff_sleep": shutdown.backoff}
    try:
        rackbeat = RackbeatClient.from_settings(settings, client, **waits, **(rackbeat_options or {}))
        shopify = {
            shop.alias: ShopifyClient.from_settings(shop.settings, client, **waits) for shop in account.shops
        }

        def api_counters() -> Iterator[tuple[str, str, dict[str, int]]]:
            yield "rackbeat", "", _counters(rackbeat)
            for alias, one in shopify.items():
                yield "shopify", alias, _counters(one)

        metrics = Metrics(api_counters)
        shops = [
            Services(
                shop.settings,
                store.for_shop(shop.settings.shop),
                client,
                shopify[shop.alias],
                rackbeat,
                metrics.for_shop(shop.alias),
                alias=shop.alias,
                demand_shops=_demand_shops(shop, account.shops),
            )
            for shop in account.shops
        ]
        yield AccountServices(account, store, client, rackbeat, metrics, shops)
    finally:
        with anyio.CancelScope(shield=True):
            if own_http:
                await client.aclose()
            await store.close()


def _demand_shops(shop: Shop, shops: Iterable[Shop]) -> tuple[str, ...]:
    others = [o.settings.shop for o in shops if o is not shop and shares_locations(shop.settings, o.settings)]
    return (shop.settings.shop, *others)


def _counters(client: ShopifyClient | RackbeatClient) -> dict[str, int]:
    return {"requests": client.requests, "retries": client.retries, "throttled": client.throttled}


@asynccontextmanager
async def open_services(
    settings: Settings, http: httpx.AsyncClient | None = None, *, shutdown: Shutdown | None = None
) -> AsyncIterator[Services]:
    """:func:`open_account` for one shop: its :class:`Services`."""
    async with open_account(Account.single(settings), http, shutdown=shutdown) as opened:
        yield opened.shops[0]
