"""Orders per minute and Rackbeat requests per order at the defaults (in-process simulators).

**Burst.** A shop of :data:`CATALOGUE` products, synced, with every default flow on
(stock, orders, fulfilments, products) and ``RACKBEAT_REQUESTS_PER_MINUTE`` at its default
(300). ``N`` orders arrive at once, a quarter each from returning customers the daemon
knows (the e-mail → customer cache) and from returning customers only Rackbeat knows
(a customer search finds them), the other half from new customers; each with a shipping
charge (a line with the shipping product). One orders cycle
imports them; each order's Rackbeat requests are counted by kind of customer, and the
cycle's simulated length gives orders imported per minute. Every poll interval of it the
fulfilments and products flows run their (quiet) cycles on the same request budget, as
the runner runs them beside the orders flow; the stock flow runs between orders cycles
(in the daemon its catch-up waits for the orders cycle anyway).

**Far-back catch-up.** :data:`CATCH_UP_FACTOR` × ``N`` orders created a month ago are
paged from Shopify as the orders flow pages them (``SYNC_ORDERS_SINCE`` far back), under
the Standard plan's cost bucket (2,000 points, 100/s): orders read per simulated Shopify
second against the orders Rackbeat's budget lets through per second (from the burst),
and the request budget at which the two meet. A bulk order read
(``bulkOperationRunQuery``) could only pay off where Shopify's paging is the slower side.

Time is simulated: the Rackbeat budget's and Shopify throttle's waits move a
:class:`~daemon.sim.shopify.SimClock` (no sleeping). The figures in the notes marked
"today" were measured with this module on the release before the reference search was
limited to orders that may have a draft (:data:`BASELINE`).

    python -m bench.orders [ORDERS]
"""

from __future__ import annotations

import tempfile
from collections import Counter
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from bench import Row, bench_settings, run_alone
from bench.sims import Sims
from daemon.app import build_flows
from daemon.flows.orders import OrdersFlow
from daemon.metrics import Metrics
from daemon.runner import Flow, InlineCycles
from daemon.services import Services
from daemon.shutdown import Shutdown
from daemon.sim.shopify import SimClock
from daemon.store import Store

#: products on both sides (the stock flow's scan is one page)
CATALOGUE = 50
DEFAULT_ORDERS = 300
#: every order's shipping charge (a line with the shipping product, SYNC_SHIPPING_PRODUCT)
SHIPPING = "49.00"
#: the kinds of customer of the burst, in the order orders are placed (round robin; "new" twice)
KINDS = ("returning, cached", "returning, not cached", "new", "new")
#: the figures of the release before (284893b), measured with this module (300 orders)
BASELINE: Mapping[str, float] = {
    "returning, cached": 4,
    "returning, not cached": 5,
    "new": 7,  # 6 without a shipping charge: the shipping product was looked up for every one
    "orders per minute": 56.0,
}
#: the far-back catch-up pages this many times the burst's orders (past the bucket's first 2,000 points)
CATCH_UP_FACTOR = 4
#: orders per minute the issue asks for at the defaults
GOAL_PER_MINUTE = 60


class CountingOrders(OrdersFlow):
    """The orders flow, counting each order's Rackbeat requests, and running the quiet
    flows' cycles every poll interval of simulated time while it works."""

    def __init__(self, *args: Any, kinds: Mapping[str, str], clock: SimClock, **kwargs: Any) -> None:
        super().__init__(*args, clock=clock.now, **kwargs)
        self.kinds = kinds
        self.sim_clock = clock
        self.by_kind: dict[str, list[int]] = {}
        self.beside: list[Flow] = []
        self.next_beside = 0.0

    async def apply(self, order: Mapping[str, Any]) -> bool:
        """Apply one order; count its Rackbeat requests under its kind of customer."""
        if self.beside and self.sim_clock.monotonic() >= self.next_beside:
            self.next_beside = self.sim_clock.monotonic() + self.settings.sync_poll_seconds
            for flow in self.beside:
                await flow.run_once()
        before = self.rackbeat.requests
        applied = await super().apply(order)
        kind = self.kinds.get(str(order.get("id")))
        if kind is not None and applied:
            self.by_kind.setdefault(kind, []).append(self.rackbeat.requests - before)
        return applied


async def measure_burst(orders: int = DEFAULT_ORDERS) -> dict[str, Any]:
    """Import a burst of ``orders`` orders with every default flow on; count and time it."""
    # the catalogue exists "since yesterday"; the other flows read the real clock for
    # their first cursors
    sims = Sims(datetime.now(UTC) - timedelta(days=1))
    sims.seed(CATALOGUE, stock=10_000)
    clock, shopify_sim, rackbeat_sim = sims.clock, sims.shopify, sims.rackbeat
    clock.advance(timedelta(days=1).total_seconds())

    kinds: dict[str, str] = {}
    with tempfile.TemporaryDirectory() as tmp:
        settings = bench_settings(Path(tmp) / "sync.db")  # RACKBEAT_REQUESTS_PER_MINUTE: the default
        store = await Store.open(settings.sync_db, settings.shop)
        try:
            async with httpx.AsyncClient(transport=httpx.MockTransport(sims.route)) as http:
                shopify, rackbeat = sims.clients(settings, http)
                services = Services(settings, store, http, shopify, rackbeat, Metrics())
                shutdown = Shutdown()
                flow = CountingOrders(
                    settings,
                    store,
                    shopify,
                    rackbeat,
                    metrics=services.metrics,
                    shutdown=shutdown,
                    kinds=kinds,
                    clock=clock,
                )
                others = [
                    f
                    for f in build_flows(services, shutdown, InlineCycles({flow.name: flow.run_once}))
                    if f.name != flow.name
                ]
                flow.beside = [f for f in others if f.name != "stock"]

                async def cycle() -> None:
                    clock.advance(settings.sync_poll_seconds)
                    await flow.run_once()
                    for other in others:
                        await other.run_once()

                await cycle()  # the first full sync
                # the returning customers: half ordered before (cached), half Rackbeat knows only
                customers = orders // len(KINDS) + 1
                for n in range(customers):
                    shopify_sim.sell(
                        f"SKU-{n % CATALOGUE:05}", email=f"known{n}@example.com", shipping_price=SHIPPING
                    )
                    rackbeat_sim.add_customer(f"Rackbeat only {n}", f"rackbeat{n}@example.com")
                await cycle()
                await cycle()  # settles what the first cycles wrote

                for n in range(orders):
                    kind = KINDS[n % len(KINDS)]
                    email = {
                        "returning, cached": f"known{n // len(KINDS)}@example.com",
                        "returning, not cached": f"rackbeat{n // len(KINDS)}@example.com",
                    }.get(kind, f"new{n}@example.com")
                    order_id = shopify_sim.sell(
                        f"SKU-{n % CATALOGUE:05}", 1 + n % 2, email=email, shipping_price=SHIPPING
                    )
                    kinds[order_id] = kind
                clock.advance(settings.sync_poll_seconds)
                shopify_sim.reset_requests()
                rackbeat_sim.reset_counts()
                flow.next_beside = clock.monotonic() + settings.sync_poll_seconds
                started = clock.monotonic()
                imported = await flow.run_once()
                seconds = clock.monotonic() - started
                by_route = Counter(rackbeat_sim.requests)
                shopify_requests = sum(shopify_sim.requests.values())
        finally:
            await store.close()
    references = [o.your_reference for o in rackbeat_sim.orders]
    return {
        "orders": orders,
        "imported": imported,
        "seconds": seconds,
        "by_kind": flow.by_kind,
        "rackbeat_routes": dict(by_route),
        "shopify": shopify_requests,
        "twins": len(references) - len(set(references)),
    }


async def measure_catch_up(orders: int = DEFAULT_ORDERS) -> dict[str, Any]:
    """Page ``orders`` month-old orders from Shopify as a far-back catch-up does, under the
    Standard plan's cost bucket; count requests and simulated seconds."""
    sims = Sims(datetime(2026, 10, 1, 10, 0, tzinfo=UTC))
    sims.seed(CATALOGUE, stock=10_000)
    clock, shopify_sim = sims.clock, sims.shopify
    since = clock.now()
    for n in range(orders):
        shopify_sim.sell(f"SKU-{n % CATALOGUE:05}", 1 + n % 2, email=f"buyer{n % 50}@example.com")
    clock.advance(timedelta(days=30).total_seconds())

    with tempfile.TemporaryDirectory() as tmp:
        settings = bench_settings(Path(tmp) / "sync.db")
        async with httpx.AsyncClient(transport=httpx.MockTransport(shopify_sim.handle)) as http:
            shopify, _ = sims.clients(settings, http)
            shopify_sim.reset_requests()
            started = clock.monotonic()
            read = 0
            pages = shopify.orders_updated_since(since)
            async for page in pages:
                read += len(page)
            seconds = clock.monotonic() - started
    return {"orders": read, "requests": sum(shopify_sim.requests.values()), "seconds": seconds}


def table(burst: Mapping[str, Any], catch_up: Mapping[str, Any]) -> list[Row]:
    """The rows of both measurements."""
    n = burst["orders"]
    rows: list[Row] = []
    for kind in dict.fromkeys(KINDS):
        counts = burst["by_kind"].get(kind, [])
        per_order = round(sum(counts) / len(counts), 2) if counts else "-"
        rows.append(
            (
                "orders",
                f"Rackbeat requests per order, {kind} customer",
                per_order,
                f"requests (today {BASELINE[kind]:g})",
            )
        )
    per_minute = round(burst["imported"] * 60 / burst["seconds"], 1) if burst["seconds"] else "-"
    rows += [
        (
            "orders",
            f"Shopify requests per order, {n} orders",
            round(burst["shopify"] / n, 2),
            "requests (pages of orders, and the quiet flows' reads beside)",
        ),
        (
            "orders",
            f"orders imported per minute, {n} at once, defaults",
            per_minute,
            f"orders/min, simulated (goal >= {GOAL_PER_MINUTE}; today {BASELINE['orders per minute']:g})",
        ),
        ("orders", "Rackbeat orders made twice", burst["twins"], "orders"),
    ]
    shopify_rate = catch_up["orders"] / catch_up["seconds"] if catch_up["seconds"] else None
    rackbeat_rate = burst["imported"] / burst["seconds"] if burst["seconds"] else None
    counts = [c for kind in burst["by_kind"].values() for c in kind]
    per_order = sum(counts) / len(counts) if counts else 0
    today = BASELINE["orders per minute"] / 60
    rows += [
        (
            "order catch-up",
            f"Shopify: orders paged per second, {catch_up['orders']} month-old orders",
            round(shopify_rate, 2) if shopify_rate else "-",
            f"orders/s, simulated ({catch_up['requests']} requests, Standard plan bucket)",
        ),
        (
            "order catch-up",
            "Rackbeat: orders imported per second, defaults",
            round(rackbeat_rate, 2) if rackbeat_rate else "-",
            f"orders/s, simulated (today {today:.2f})",
        ),
        (
            "order catch-up",
            "Shopify paging / Rackbeat import rate",
            round(shopify_rate / rackbeat_rate, 1) if shopify_rate and rackbeat_rate else "-",
            "x (a bulk order read could pay off below 1 only: paging would be the bound)",
        ),
        (
            "order catch-up",
            "  break-even RACKBEAT_REQUESTS_PER_MINUTE",
            round(shopify_rate * 60 * per_order) if shopify_rate else "-",
            f"requests/min (at {per_order:.2f} per order; Shopify's paging is the bound above it)",
        ),
    ]
    return rows


async def run(size: int | None = None) -> list[Row]:
    """The bench runner's entry point."""
    orders = size or DEFAULT_ORDERS
    return table(await measure_burst(orders), await measure_catch_up(CATCH_UP_FACTOR * orders))


def main() -> None:
    """``python -m bench.orders [ORDERS]``."""
    run_alone(run)


if __name__ == "__main__":
    main()
