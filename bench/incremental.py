"""What a change costs in the five minutes after it (in-process simulators, simulated time).

**Products.** A shop of ``N`` products, its SKU index built; then every product changes at
once (a bulk edit, an import). The SKU index is refreshed every ``SYNC_POLL_SECONDS`` (5 s:
the stock flow's cycle at that setting) for the :data:`WINDOW` after the change, and once
more after it (an idle cycle). Counted: Shopify requests and points (requested, and
actual: what Shopify charged after its refund), and how often each product was read in
full (the simulator's served nodes of the full-record documents).

**Orders.** A synced shop; ``M`` orders arrive evenly over :data:`WINDOW` (a sale peak) while
the orders flow runs every 5 s, and for :data:`WINDOW` after the last one. The same counts,
for orders.

The numbers before issue 16 (every cycle re-read everything updated in the last five
minutes in full) were measured with this module on the release before it.

    python -m bench.incremental [N]
"""

from __future__ import annotations

import json
import tempfile
from collections import Counter
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from bench import Row, bench_settings, run_alone
from bench.sims import Sims
from daemon.index import SkuIndex
from daemon.store import Store

#: products of the full run
FULL_SIZE = 10_000
#: how long after a change the overlap used to re-read it
WINDOW = timedelta(minutes=5)
#: the poll interval of the measurement (issue 16 measured at 5 s)
POLL_SECONDS = 5
#: operations that read whole records (the cheap pass reads ids and times only)
FULL_READS = frozenset({"ProductsUpdatedSince", "ProductsByIds", "OrdersUpdatedSince", "OrdersByIds"})


class CostMeter:
    """Counts the Shopify requests and points of the answers that pass through it."""

    def __init__(self, sims: Sims) -> None:
        self.sims = sims
        self.requests = 0
        self.requested = 0.0
        self.actual = 0.0
        self.by_operation: Counter[str] = Counter()

    def reset(self) -> None:
        """Start counting afresh."""
        self.requests, self.requested, self.actual = 0, 0.0, 0.0
        self.by_operation.clear()

    async def route(self, request: httpx.Request) -> httpx.Response:
        """The simulators' router, metering Shopify's GraphQL answers."""
        response = await self.sims.route(request)
        if request.url.host == "shopify.sim" and request.url.path.endswith("graphql.json"):
            self.requests += 1
            self.by_operation[str(json.loads(request.content).get("operationName"))] += 1
            body = json.loads(await response.aread())
            cost = (body.get("extensions") or {}).get("cost") or {}
            self.requested += float(cost.get("requestedQueryCost") or 0)
            self.actual += float(cost.get("actualQueryCost") or 0)
        return response

    def figures(self) -> dict[str, Any]:
        """What was counted since the last reset."""
        return {
            "requests": self.requests,
            "requested_points": round(self.requested),
            "actual_points": round(self.actual),
            "by_operation": dict(self.by_operation),
        }


def _full_reads(sims: Sims, kind: str) -> Counter[str]:
    """Times each record of ``kind`` (``Product``, ``Order``) was served in full (empty on a
    simulator without the counter: the release before issue 16)."""
    served: Mapping[tuple[str, str], int] = getattr(sims.shopify, "served", {})
    counts: Counter[str] = Counter()
    for (operation, gid), n in served.items():
        if operation in FULL_READS and f"/{kind}/" in gid:
            counts[gid] += n
    return counts


def _forget_served(sims: Sims) -> None:
    served = getattr(sims.shopify, "served", None)
    if served is not None:
        served.clear()


async def measure_products(products: int = FULL_SIZE) -> dict[str, Any]:
    """Refresh the index every 5 s for five minutes after every product changed at once."""
    sims = Sims(datetime.now(UTC) - timedelta(days=1))
    sims.seed(products, stock=5)
    meter = CostMeter(sims)
    with tempfile.TemporaryDirectory() as tmp:
        settings = bench_settings(Path(tmp) / "sync.db", sync_poll_seconds=POLL_SECONDS)
        store = await Store.open(settings.sync_db, settings.shop)
        try:
            async with httpx.AsyncClient(transport=httpx.MockTransport(meter.route)) as http:
                shopify, _ = sims.clients(settings, http)
                index = SkuIndex(store, shopify, clock=sims.clock.now, monotonic=sims.clock.monotonic)
                await index.build()
                sims.clock.advance(WINDOW.total_seconds() * 2)
                await index.refresh()  # settled: the overlap is empty
                for product_id in list(sims.shopify.products):
                    sims.shopify.update_product(product_id, title="Renamed")
                _forget_served(sims)
                meter.reset()
                started = sims.clock.monotonic()
                cycles = 0
                settled = False
                per_refresh: list[int] = []
                while not settled:  # up to a refresh that starts after the change settled
                    settled = sims.clock.monotonic() - started > WINDOW.total_seconds()
                    before = meter.requests
                    await index.refresh()
                    per_refresh.append(meter.requests - before)
                    cycles += 1
                    sims.clock.advance(POLL_SECONDS)
                window = meter.figures()
                meter.reset()
                sims.clock.advance(POLL_SECONDS)
                await index.refresh()
                idle = meter.figures()
                reads = _full_reads(sims, "Product")
        finally:
            await store.close()
    return {
        "products": products,
        "cycles": cycles,
        "window": window,
        "idle": idle,
        "reads": reads,
        "per_refresh": per_refresh,
    }


async def measure_orders(orders: int = 1_000) -> dict[str, Any]:
    """Run the orders flow every 5 s while ``orders`` orders arrive over five minutes, and
    five minutes more."""
    sims = Sims(datetime.now(UTC) - timedelta(days=1))
    sims.seed(20, stock=100_000)
    sims.clock.advance(timedelta(days=1).total_seconds())
    meter = CostMeter(sims)
    with tempfile.TemporaryDirectory() as tmp:
        settings = bench_settings(
            Path(tmp) / "sync.db", sync_poll_seconds=POLL_SECONDS, rackbeat_requests_per_minute=10_000
        )
        store = await Store.open(settings.sync_db, settings.shop)
        try:
            async with httpx.AsyncClient(transport=httpx.MockTransport(meter.route)) as http:
                shopify, rackbeat = sims.clients(settings, http)
                flow = sims.orders_flow(settings, store, shopify, rackbeat)
                await flow.run_once()  # the first start: the cursor begins now
                _forget_served(sims)
                meter.reset()
                placed = 0
                cycles = 0
                end = WINDOW.total_seconds() * 2
                started = sims.clock.monotonic()
                while sims.clock.monotonic() - started < end:
                    elapsed = sims.clock.monotonic() - started
                    due = min(orders, round(orders * elapsed / WINDOW.total_seconds()))
                    for n in range(placed, due):
                        sims.shopify.create_order([(f"SKU-{n % 20:05}", 1)], email=f"c{n % 50}@example.com")
                    placed = due
                    sims.clock.advance(POLL_SECONDS)
                    await flow.run_once()
                    cycles += 1
                window = meter.figures()
                reads = _full_reads(sims, "Order")
                imported = await store.fetchval(
                    "SELECT COUNT(*) FROM order_ledger WHERE shop = ? AND state = 'done'", (store.shop,)
                )
        finally:
            await store.close()
    return {"orders": placed, "imported": imported, "cycles": cycles, "window": window, "reads": reads}


def _rows(name: str, what: str, m: Mapping[str, Any]) -> list[Row]:
    window = m["window"]
    reads: Counter[str] = m["reads"]
    rows: list[Row] = [
        (name, f"Shopify requests, {what}", window["requests"], "requests"),
        (name, "  points requested", window["requested_points"], "points"),
        (name, "  points charged", window["actual_points"], "points (after Shopify's refund)"),
        (name, "  by operation", " ".join(f"{k}={v}" for k, v in sorted(window["by_operation"].items())), ""),
    ]
    if reads:
        rows.append((name, "most full reads of one record", max(reads.values()), "reads"))
    return rows


async def run(size: int | None = None) -> list[Row]:
    """The rows for ``python -m bench``."""
    products = await measure_products(size or FULL_SIZE)
    orders = await measure_orders(max((size or FULL_SIZE) // 10, 10))
    rows = _rows(
        "incremental",
        f"{products['cycles']} index refreshes after {products['products']} products changed, to settled",
        products,
    )
    first, *later = products["per_refresh"]
    rows.append(("incremental", "  the first refresh", first, "requests"))
    rows.append(
        ("incremental", "  the most of a later refresh in the 5 min", max(later, default=0), "requests")
    )
    idle = products["idle"]
    rows.append(("incremental", "  the idle refresh after them", idle["requests"], "requests"))
    rows += _rows(
        "incremental",
        f"{orders['cycles']} orders cycles: {orders['orders']} orders over 5 min, 5 min more",
        orders,
    )
    rows.append(("incremental", "  orders imported", orders["imported"], "orders"))
    return rows


def main() -> None:
    """``python -m bench.incremental [N]``."""
    run_alone(run)


if __name__ == "__main__":
    main()
