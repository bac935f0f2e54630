"""Requests per idle cycle, and per imported order, with every flow on (in-process simulators).

A quiet shop should cost almost nothing: after the first full sync, one cycle of every
flow with nothing changed is measured on each API; then one new order is imported and
its Rackbeat and Shopify requests counted. Time is simulated (no sleeping).

    python -m bench.idle [SKUS]
"""

from __future__ import annotations

import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from bench import Row, bench_settings, run_alone
from daemon.app import build_flows
from daemon.metrics import Metrics
from daemon.rackbeat import RackbeatClient
from daemon.services import Services
from daemon.shopify import ShopifyClient
from daemon.shutdown import Shutdown
from daemon.sim.rackbeat import RackbeatSimulator
from daemon.sim.shopify import ShopifySimulator, SimClock
from daemon.store import Store


async def measure(skus: int = 1000) -> dict[str, Any]:
    """Build a synced shop of ``skus`` products, then count requests of quiet and busy cycles."""
    # the catalogue exists "since yesterday"; the flows read the real clock for their first cursors
    clock = SimClock(datetime.now(UTC) - timedelta(days=1))

    async def sleep(seconds: float) -> None:
        clock.advance(seconds)

    shopify_sim = ShopifySimulator(now=clock.now, monotonic=clock.monotonic, sleep=sleep)
    shopify_sim.add_location("Warehouse", primary=True)
    rackbeat_sim = RackbeatSimulator(now=clock.now, monotonic=clock.monotonic, sleep=sleep)
    for n in range(skus):
        sku = f"SKU-{n:05}"
        rackbeat_sim.add_product(sku, f"Product {n}", sales_price="80", stock=5)
        shopify_sim.add_product(f"Product {n}", [{"sku": sku, "price": "100.00"}])
    rackbeat_sim.add_product("frakt", "Frakt")
    clock.advance(timedelta(days=1).total_seconds())

    async def route(request: httpx.Request) -> httpx.Response:
        sim = shopify_sim if request.url.host == "shopify.sim" else rackbeat_sim
        return await sim.handle(request)

    with tempfile.TemporaryDirectory() as tmp:
        settings = bench_settings(Path(tmp) / "sync.db", rackbeat_requests_per_minute=10_000)
        store = await Store.open(settings.sync_db, settings.shop)
        try:
            async with httpx.AsyncClient(transport=httpx.MockTransport(route)) as http:
                shopify = ShopifyClient.from_settings(settings, http, sleep=sleep, clock=clock.monotonic)
                rackbeat = RackbeatClient.from_settings(settings, http, sleep=sleep, clock=clock.monotonic)
                services = Services(settings, store, http, shopify, rackbeat, Metrics())
                flows = build_flows(services, Shutdown())

                async def cycle() -> tuple[int, int]:
                    shopify_sim.reset_requests()
                    rackbeat_sim.reset_counts()
                    clock.advance(60)
                    for flow in flows:
                        await flow.run_once()
                    return sum(shopify_sim.requests.values()), rackbeat_sim.request_total()

                first = await cycle()  # the first full sync
                await cycle()  # settles what the first one wrote
                idle = await cycle()
                idle_routes = dict(rackbeat_sim.requests)
                shopify_sim.sell("SKU-00001", 1)
                clock.advance(600)  # past Shopify's search lag
                order = await cycle()
                receipt_skus = max(skus // 10, 1)
                for n in range(receipt_skus):
                    rackbeat_sim.goods_receipt(f"SKU-{n:05}", 3)
                receipts = await cycle()
                set_stock_calls = shopify_sim.requests.get("SetStock", 0)
        finally:
            await store.close()
    return {
        "skus": skus,
        "idle_routes": idle_routes,
        "first_sync": first,
        "idle": idle,
        "order": (order[0] - idle[0], order[1] - idle[1]),
        "receipts": receipt_skus,
        "receipt_cycle": receipts,
        "set_stock_calls": set_stock_calls,
    }


async def run(size: int | None = None) -> list[Row]:
    """The bench runner's entry point."""
    m = await measure(size or 1000)
    n = m["skus"]
    return [
        ("idle cycle", f"Shopify requests, all flows, {n} SKUs", m["idle"][0], "requests"),
        (
            "idle cycle",
            f"Rackbeat requests, all flows, {n} SKUs",
            m["idle"][1],
            "requests (the stock scan, 100/page)",
        ),
        ("order import", "extra Shopify requests per order", m["order"][0], "requests"),
        ("order import", "extra Rackbeat requests per order", m["order"][1], "requests"),
        (
            "stock change",
            f"Shopify SetStock calls for {m['receipts']} changed SKUs",
            m["set_stock_calls"],
            "calls",
        ),
        (
            "first sync",
            f"Shopify / Rackbeat requests, {n} SKUs",
            f"{m['first_sync'][0]} / {m['first_sync'][1]}",
            "requests",
        ),
    ]


def main() -> None:
    """``python -m bench.idle [SKUS]``."""
    run_alone(run)


if __name__ == "__main__":
    main()
