"""Both simulators in-process on one manual clock: what the in-process benches share.

Time is simulated: the clients' waits (Shopify's bucket, Rackbeat's budget) advance the
clock instead of sleeping. The daemon process of a bench that measures RSS (``bench.shops``,
``bench.first_sync``) never imports this module.
"""

from __future__ import annotations

from datetime import datetime

import httpx

from bench.stock import fast_handles
from daemon.config import Settings
from daemon.flows.orders import OrdersFlow
from daemon.metrics import Metrics
from daemon.rackbeat import RackbeatClient
from daemon.shopify import ShopifyClient
from daemon.shutdown import Shutdown
from daemon.sim.rackbeat import RackbeatSimulator
from daemon.sim.shopify import ShopifySimulator, SimClock
from daemon.store import Store


class Sims:
    """A Shopify and a Rackbeat simulator on one :class:`SimClock` starting at ``start``."""

    def __init__(self, start: datetime) -> None:
        self.clock = SimClock(start)
        self.shopify = ShopifySimulator(now=self.clock.now, monotonic=self.clock.monotonic, sleep=self.sleep)
        self.shopify.add_location("Warehouse", primary=True)
        self.rackbeat = RackbeatSimulator(
            now=self.clock.now, monotonic=self.clock.monotonic, sleep=self.sleep
        )

    async def sleep(self, seconds: float) -> None:
        """A wait: the clock moves, nothing sleeps."""
        self.clock.advance(seconds)

    async def route(self, request: httpx.Request) -> httpx.Response:
        """An ``httpx.MockTransport`` handler: Shopify's host to Shopify, the rest to Rackbeat."""
        sim = self.shopify if request.url.host == "shopify.sim" else self.rackbeat
        return await sim.handle(request)

    def clients(self, settings: Settings, http: httpx.AsyncClient) -> tuple[ShopifyClient, RackbeatClient]:
        """The daemon's two clients on ``http``, waiting on the simulated clock."""
        return (
            ShopifyClient.from_settings(settings, http, sleep=self.sleep, clock=self.clock.monotonic),
            RackbeatClient.from_settings(settings, http, sleep=self.sleep, clock=self.clock.monotonic),
        )

    def orders_flow(
        self, settings: Settings, store: Store, shopify: ShopifyClient, rackbeat: RackbeatClient
    ) -> OrdersFlow:
        """The orders flow on the simulated clock (its clock and the simulators' agree)."""
        return OrdersFlow(
            settings, store, shopify, rackbeat, metrics=Metrics(), shutdown=Shutdown(), clock=self.clock.now
        )

    def seed(self, skus: int, *, stock: int) -> None:
        """``skus`` products on both sides (``SKU-00000`` …, ``stock`` of each in Rackbeat)
        and the shipping product ``frakt`` in Rackbeat."""
        fast_handles(self.shopify)
        for n in range(skus):
            sku = f"SKU-{n:05}"
            self.rackbeat.add_product(sku, f"Product {n}", sales_price="80", stock=stock)
            self.shopify.add_product(f"Product {n}", [{"sku": sku, "price": "100.00"}])
        self.rackbeat.add_product("frakt", "Frakt")
