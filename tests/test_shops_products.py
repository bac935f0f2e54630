"""Products with several shops mirroring one Rackbeat catalogue (S13 = rackbeat in each):
one Rackbeat edit reaches every shop, each with its own S14 and new-product status, and
Rackbeat's changes are read once for all of them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from daemon.flows.products import ProductsFlow
from daemon.index import SkuIndex
from daemon.metrics import Metrics
from daemon.rackbeat import Product, RackbeatClient
from daemon.shared import SharedChanges
from daemon.shopify import ShopifyClient
from daemon.shutdown import Shutdown
from daemon.sim.rackbeat import RackbeatSimulator
from daemon.sim.shopify import ShopifySimulator, SimClock
from daemon.store import Store
from tests.harness import settings_for

pytestmark = pytest.mark.anyio


@dataclass
class Shop:
    sim: ShopifySimulator
    flow: ProductsFlow

    def price_and_status(self, sku: str) -> tuple[Decimal, str]:
        variant = self.sim.find_by_sku(sku)
        assert variant is not None, sku
        product = self.sim.node(variant.product_id)
        return variant.price, str(getattr(product, "status", ""))


@dataclass
class Account:
    clock: SimClock
    rackbeat: RackbeatSimulator
    changes: SharedChanges[Product]
    shops: dict[str, Shop]

    async def cycle(self) -> None:
        """One products cycle of every shop, a minute after the last."""
        self.clock.advance(60)
        for shop in self.shops.values():
            await shop.flow.run_once()


@asynccontextmanager
async def two_mirrors(tmp_path: Path, per_shop: dict[str, dict[str, Any]]) -> AsyncIterator[Account]:
    clock = SimClock(datetime(2026, 11, 1, 10, 0, tzinfo=UTC))

    async def sleep(seconds: float) -> None:
        clock.advance(seconds)

    rackbeat = RackbeatSimulator(now=clock.now, monotonic=clock.monotonic, sleep=sleep)
    sims = {
        alias: ShopifySimulator(now=clock.now, monotonic=clock.monotonic, sleep=sleep, validate_schema=None)
        for alias in per_shop
    }
    for sim in sims.values():
        sim.add_location("Warehouse", primary=True)

    async def route(request: httpx.Request) -> httpx.Response:
        host = request.url.host
        return await (sims[host.split(".")[0]] if host != "rackbeat.sim" else rackbeat).handle(request)

    root = await Store.open(tmp_path / "sync.db", "eu.myshopify.com")
    changes = SharedChanges[Product](shops=len(per_shop), window=30.0, clock=clock.monotonic)
    try:
        async with httpx.AsyncClient(transport=httpx.MockTransport(route)) as http:
            first = settings_for(tmp_path / "sync.db")
            rackbeat_client = RackbeatClient.from_settings(first, http, sleep=sleep, clock=clock.monotonic)
            metrics = Metrics()
            shops: dict[str, Shop] = {}
            for alias, overrides in per_shop.items():
                s = settings_for(
                    tmp_path / "sync.db",
                    shopify_shop=f"{alias}.myshopify.com",
                    shopify_admin_url=f"http://{alias}.sim/admin",
                    **overrides,
                )
                store = root.for_shop(s.shop)
                shopify = ShopifyClient.from_settings(s, http, sleep=sleep, clock=clock.monotonic)
                flow = ProductsFlow(
                    s,
                    store,
                    shopify,
                    rackbeat_client,
                    index=SkuIndex(store, shopify, clock=clock.now),
                    metrics=metrics.for_shop(alias),
                    shutdown=Shutdown(),
                    changes=changes,
                    clock=clock.now,
                )
                shops[alias] = Shop(sims[alias], flow)
            yield Account(clock, rackbeat, changes, shops)
    finally:
        await root.close()


async def test_one_rackbeat_edit_reaches_every_mirroring_shop_with_its_own_s14(tmp_path: Path) -> None:
    per_shop: dict[str, dict[str, Any]] = {
        "eu": {"sync_vat_rate": Decimal(25)},
        "se": {"sync_vat_rate": Decimal(12), "sync_new_product_status": "draft"},
    }
    async with two_mirrors(tmp_path, per_shop) as account:
        account.rackbeat.add_product("MUG-1", "Mug", sales_price="100.00")
        for _ in range(2):  # not searchable yet may mean "made a moment ago": search again, create
            await account.cycle()
        eu, se = account.shops["eu"], account.shops["se"]
        assert eu.price_and_status("MUG-1") == (Decimal("125.00"), "ACTIVE")
        assert se.price_and_status("MUG-1") == (Decimal("112.00"), "DRAFT")

        reads_before = account.changes.reads
        account.rackbeat.reset_counts()
        account.rackbeat.update_product("MUG-1", sales_price="200.00")
        await account.cycle()
        assert eu.price_and_status("MUG-1")[0] == Decimal("250.00")
        assert se.price_and_status("MUG-1")[0] == Decimal("224.00")
        # one read of Rackbeat's changes served both shops
        assert account.changes.reads - reads_before == 1
        assert (
            sum(n for route, n in account.rackbeat.requests.items() if route.startswith("GET /products")) == 1
        )

        # a minute on, nothing changed: one read again, not one per shop
        await account.cycle()
        assert account.changes.reads - reads_before == 2
