"""Requests per idle cycle, and per imported order, with every flow on (in-process simulators).

A quiet shop should cost almost nothing: after the first full sync, one cycle of every
flow with nothing changed is measured on each API, by flow; then one new order is
imported and its Rackbeat and Shopify requests counted. Time is simulated (no sleeping).
The daemon's defaults, nothing changed; :data:`FULL_SIZE` products (the quick size is
small).

The goal (issue 14) for ``N`` products: Rackbeat ⌈N/100⌉ + 2 requests per idle cycle (the
stock scan's pages of 100, the S15 shipping product among them, and a request or two
more), Shopify at most 2. Before: the stock scan, the fulfilments flow's two lists
(shipped, partly shipped) and the products flow's list of products updated since
(:func:`rackbeat_before`).

    python -m bench.idle [SKUS]
"""

from __future__ import annotations

import math
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from bench import Row, bench_settings, run_alone
from bench.sims import Sims
from daemon.app import build_flows
from daemon.metrics import Metrics
from daemon.services import Services
from daemon.shutdown import Shutdown
from daemon.store import Store

#: products of the full run (``python -m bench``)
FULL_SIZE = 50_000
#: Shopify requests an idle cycle may cost (the orders search, the SKU index's refresh)
SHOPIFY_GOAL = 2


def rackbeat_goal(skus: int) -> int:
    """Issue 14's goal for an idle cycle: ⌈N/100⌉ + 2 Rackbeat requests."""
    return math.ceil(skus / 100) + 2


def rackbeat_before(skus: int) -> int:
    """An idle cycle's Rackbeat requests before issue 14 (measured: 14 at 1,000 products,
    504 at 50,000): the stock scan (the shipping product too, 100 a page), the fulfilments
    flow's two lists and the products flow's list."""
    return math.ceil((skus + 1) / 100) + 2 + 1


async def measure(skus: int = 1000) -> dict[str, Any]:
    """Build a synced shop of ``skus`` products, then count requests of quiet and busy cycles."""
    # the catalogue exists "since yesterday"; the flows read the real clock for their first cursors
    sims = Sims(datetime.now(UTC) - timedelta(days=1))
    sims.seed(skus, stock=5)
    clock, shopify_sim, rackbeat_sim = sims.clock, sims.shopify, sims.rackbeat
    clock.advance(timedelta(days=1).total_seconds())

    with tempfile.TemporaryDirectory() as tmp:
        settings = bench_settings(Path(tmp) / "sync.db", rackbeat_requests_per_minute=10_000)
        store = await Store.open(settings.sync_db, settings.shop)
        try:
            async with httpx.AsyncClient(transport=httpx.MockTransport(sims.route)) as http:
                shopify, rackbeat = sims.clients(settings, http)
                services = Services(settings, store, http, shopify, rackbeat, Metrics())
                flows = build_flows(services, Shutdown())

                #: (Shopify, Rackbeat) requests of each flow in the latest cycle
                by_flow: dict[str, tuple[int, int]] = {}

                def sent() -> tuple[int, int]:
                    return sum(shopify_sim.requests.values()), rackbeat_sim.request_total()

                async def cycle() -> tuple[int, int]:
                    shopify_sim.reset_requests()
                    rackbeat_sim.reset_counts()
                    clock.advance(60)
                    for flow in flows:
                        before = sent()
                        await flow.run_once()
                        after = sent()
                        by_flow[flow.name] = (after[0] - before[0], after[1] - before[1])
                    return sent()

                first = await cycle()  # the first full sync
                await cycle()  # settles what the first one wrote
                idle = await cycle()
                idle_routes = dict(rackbeat_sim.requests)
                idle_operations = dict(shopify_sim.requests)
                idle_by_flow = {
                    api: {name: counts[i] for name, counts in by_flow.items()}
                    for i, api in enumerate(("shopify", "rackbeat"))
                }
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
        "idle_operations": idle_operations,
        "idle_by_flow": idle_by_flow,
        "first_sync": first,
        "idle": idle,
        "order": (order[0] - idle[0], order[1] - idle[1]),
        "receipts": receipt_skus,
        "receipt_cycle": receipts,
        "set_stock_calls": set_stock_calls,
    }


def table(m: dict[str, Any]) -> list[Row]:
    """The rows of :func:`measure`'s figures."""
    n = m["skus"]

    def by_flow(api: str) -> str:
        return ", ".join(f"{flow} {count}" for flow, count in m["idle_by_flow"][api].items())

    operations = ", ".join(f"{op} {count}" for op, count in sorted(m["idle_operations"].items()))
    return [
        (
            "idle cycle",
            f"Shopify requests, all flows, {n} SKUs",
            m["idle"][0],
            f"requests (goal <= {SHOPIFY_GOAL}): {by_flow('shopify')} ({operations})",
        ),
        (
            "idle cycle",
            f"Rackbeat requests, all flows, {n} SKUs",
            m["idle"][1],
            f"requests (goal ⌈N/100⌉+2 = {rackbeat_goal(n)}; before {rackbeat_before(n)}): "
            f"{by_flow('rackbeat')}",
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


async def run(size: int | None = None) -> list[Row]:
    """The bench runner's entry point; ``size`` is the number of products (default :data:`FULL_SIZE`)."""
    return table(await measure(size or FULL_SIZE))


def main() -> None:
    """``python -m bench.idle [SKUS]``."""
    run_alone(run)


if __name__ == "__main__":
    main()
