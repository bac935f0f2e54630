"""The stock flow at scale: 10,000 SKUs, 1,000 of them changed in Rackbeat.

Both simulators run in-process (``httpx.MockTransport``) with the Shopify simulator at the
Standard plan's limits (bucket 2,000 points, 100 points/s). The catalogue is synced
first on a *fast-forwarded* clock (throttle waits are added to the clock, not slept; the
simulated seconds are reported). The cycle that pushes the 1,000 changes then runs in
**real time**: the clock is the machine's, throttle waits are really slept, and the
seconds reported are wall-clock seconds from the start of that cycle until Shopify has
confirmed every change. The orders flow is wired as the stock flow's catch-up, as in
the daemon.

Then two cycles with falling targets for the same 1,000 SKUs, where the stock flow reads
Shopify before it writes (a compare-and-swap on a stale belief would fail):

* **sales echo**: one unit of each sold in Shopify; the orders flow imports and books
  the orders, so Rackbeat's available falls by what Shopify shows already (reads only);
* **stock leaving Rackbeat** outside Shopify (shipments to other channels, breakage):
  two units of each; Shopify still shows the old figure (reads and writes).

These two run on the fast-forwarded clock again (calls are counted, not seconds).

Every Shopify call of the stock cycle is counted (reads, writes, and the orders
catch-up and SKU index refresh it makes). Last, "throughput vs the rate-limit bound":
every SKU rises by one with the bucket emptied just before the cycle's first Shopify
request (other traffic), and the quantities confirmed per second of the Shopify client's
throttle wait are divided by the most the Standard plan allows for writes alone
(100 points/s ÷ the points of a 250-quantity ``inventorySetQuantities`` × 250). That
cycle runs on a frozen clock: only sleeps move it, so the machine's own seconds of work
do not refill the bucket. Below 1: reads, the catch-up and the SKU index refresh share
the bucket, or waits overshoot (the bucket must hold a query's *requested* cost before it
runs, even when Shopify refunds most of it); the next row splits the points.

    python -m bench.stock [SKUS]        # SKUS defaults to 10,000; 10 % of them change
"""

from __future__ import annotations

import contextlib
import itertools
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import httpx

from bench import Row, bench_settings, peak_rss_mb, reset_peak_rss, run_alone
from daemon.config import Settings
from daemon.demand import OrderDemand
from daemon.flows.orders import OrdersFlow
from daemon.flows.stock import StockFlow
from daemon.index import SkuIndex
from daemon.metrics import Metrics
from daemon.rackbeat import RackbeatClient
from daemon.runner import CycleRequests, InlineCycles
from daemon.shopify import ShopifyClient
from daemon.shopify_documents import MAX_INPUT_ITEMS
from daemon.shutdown import Shutdown
from daemon.sim.rackbeat import RackbeatSimulator
from daemon.sim.shopify import ShopifySimulator
from daemon.store import Store

#: the Shopify simulator's plan: Standard
BUCKET_POINTS = 2000.0
RESTORE_PER_SECOND = 100.0


class BenchClock:
    """Monotonic and wall clock that is either fast-forwarded or real.

    ``fast``: :meth:`sleep` adds to an offset and returns at once, so set-up work that the
    Shopify bucket would throttle costs simulated seconds only (:attr:`simulated`).
    Otherwise sleeps are real and time is the machine's (plus the offset gathered before).
    """

    def __init__(self, start: datetime) -> None:
        self.fast = True
        self.offset = 0.0
        self._base = time.monotonic()
        self._start = start
        #: machine seconds since ``_base`` when :meth:`frozen` began, None outside it
        self._frozen_at: float | None = None

    def monotonic(self) -> float:
        """Seconds, monotonic."""
        machine = time.monotonic() - self._base if self._frozen_at is None else self._frozen_at
        return machine + self.offset

    @contextlib.contextmanager
    def frozen(self) -> Iterator[None]:
        """Fast-forwarded time that only sleeps move: the machine's seconds spent computing
        do not refill Shopify's bucket, so a throttle wait is the whole of the time."""
        self._frozen_at = time.monotonic() - self._base
        try:
            yield
        finally:
            self._base += time.monotonic() - self._base - self._frozen_at
            self._frozen_at = None

    def now(self) -> datetime:
        """Aware UTC wall time that moves with :meth:`monotonic`."""
        return self._start + timedelta(seconds=self.monotonic())

    def advance(self, seconds: float) -> None:
        """Let simulated time pass (a poll interval between cycles)."""
        self.offset += seconds

    async def sleep(self, seconds: float) -> None:
        """Fast: move the clock on. Real: sleep."""
        if self.fast:
            self.offset += max(seconds, 0.0)
            await anyio.lowlevel.checkpoint()
        else:
            await anyio.sleep(seconds)


class Transport:
    """Routes requests to the in-process simulators and times them, so that the daemon's
    own share of a wall-clock figure can be told from the simulators'."""

    def __init__(self, shopify: ShopifySimulator, rackbeat: RackbeatSimulator | None = None) -> None:
        self.shopify = shopify
        self.rackbeat = rackbeat
        #: seconds spent inside the simulators
        self.simulator_seconds = 0.0
        #: empty Shopify's bucket just before the next Shopify request (other traffic)
        self.drain_next = False

    async def route(self, request: httpx.Request) -> httpx.Response:
        """An ``httpx.MockTransport`` handler."""
        started = time.perf_counter()
        try:
            if request.url.host == "shopify.sim" or self.rackbeat is None:
                if self.drain_next:
                    self.drain_next = False
                    self.shopify.bucket.refill(self.shopify.monotonic())  # up to now, then empty
                    self.shopify.bucket.drain()
                return await self.shopify.handle(request)
            return await self.rackbeat.handle(request)
        finally:
            self.simulator_seconds += time.perf_counter() - started


def stock_and_orders(
    settings: Settings,
    store: Store,
    shopify: ShopifyClient,
    rackbeat: RackbeatClient,
    *,
    now: Callable[[], datetime],
    monotonic: Callable[[], float],
    cycles: CycleRequests | None = None,
    metrics: Metrics | None = None,
    shutdown: Shutdown | None = None,
) -> tuple[OrdersFlow, SkuIndex, StockFlow]:
    """One shop's orders flow, SKU index and stock flow wired as the daemon wires them, on
    the clock ``now``/``monotonic``; the stock flow's orders catch-up runs inline unless
    ``cycles`` (the runner's) runs it."""
    metrics = metrics or Metrics()
    shutdown = shutdown or Shutdown()
    orders = OrdersFlow(settings, store, shopify, rackbeat, metrics=metrics, shutdown=shutdown, clock=now)
    index = SkuIndex(
        store,
        shopify,
        clock=now,
        min_interval=settings.sync_poll_seconds / 2,
        monotonic=monotonic,
        levels_at=lambda: shopify.stock_location(settings.shopify_location_id),
    )
    stock = StockFlow(
        settings,
        store,
        shopify,
        rackbeat,
        index=index,
        metrics=metrics,
        shutdown=shutdown,
        demand=OrderDemand(store),
        cycles=cycles or InlineCycles({"orders": orders.run_once}),
        clock=now,
        monotonic=monotonic,
    )
    return orders, index, stock


def fast_handles(sim: ShopifySimulator) -> None:
    """Give products numbered handles: the simulator looks for a free handle among every
    product on each add (quadratic: minutes at 50,000 products), which only slows the set-up."""
    numbers = itertools.count(1)
    sim._unique_handle = lambda _title: f"product-{next(numbers)}"  # type: ignore[method-assign,assignment]  # set-up speed only


@dataclass
class Rig:
    """Simulators, clients, state and flows of one benchmark run."""

    clock: BenchClock
    shopify_sim: ShopifySimulator
    rackbeat_sim: RackbeatSimulator
    settings: Settings
    store: Store
    stock: StockFlow
    orders: OrdersFlow
    transport: Transport

    async def cycle(self, *, drain: bool = False) -> dict[str, Any]:
        """One orders cycle then one stock cycle (the daemon's order), counted per API;
        ``drain`` empties Shopify's bucket just before the stock cycle's first Shopify
        request (other traffic; the Rackbeat scan before it may take a while)."""
        self.shopify_sim.reset_requests()
        self.rackbeat_sim.reset_counts()
        self.clock.advance(self.settings.sync_poll_seconds)
        started, inside = time.perf_counter(), self.transport.simulator_seconds
        await self.orders.run_once()
        before = self.clock.monotonic()
        self.transport.drain_next = drain
        waited = self.stock.shopify.throttle_wait_seconds
        calls_before = dict(self.shopify_sim.requests)
        logged, spent = len(self.shopify_sim.request_log), self.stock.shopify.cost_spent
        pushed = await self.stock.run_once()
        stock_calls = {
            op: n - calls_before.get(op, 0)
            for op, n in self.shopify_sim.requests.items()
            if n - calls_before.get(op, 0)
        }
        answered = [r for r in list(self.shopify_sim.request_log)[logged:] if r.status == 200]
        push_points = sum(
            r.requested_cost for r in answered if r.operation == "SetStock" and r.outcome == "ok"
        )
        return {
            "stock_calls": stock_calls,
            "stock_reads": stock_calls.get("InventoryLevels", 0),
            "stock_writes": stock_calls.get("SetStock", 0),
            "stock_shopify": sum(stock_calls.values()),
            # seconds the stock cycle waited for Shopify's bucket (not for Rackbeat's budget)
            "waited": self.stock.shopify.throttle_wait_seconds - waited,
            # points the stock cycle spent (Shopify's actual cost): the push's, and the rest's
            # (reads, the orders catch-up, the SKU index refresh)
            "push_points": push_points,
            "other_points": self.stock.shopify.cost_spent - spent - push_points,
            # points the rest asked for (the bucket must hold a query's requested cost)
            "other_requested": sum(
                r.requested_cost for r in answered if r.operation != "SetStock" and r.outcome == "ok"
            ),
            "throttled": sum(1 for r in answered if r.outcome == "throttled"),
            "pushed": pushed,
            "set_stock": self.shopify_sim.requests["SetStock"],
            "shopify": sum(self.shopify_sim.requests.values()),
            "rackbeat": self.rackbeat_sim.request_total(),
            "seconds": time.perf_counter() - started,
            "simulator_seconds": self.transport.simulator_seconds - inside,
            "clock_seconds": self.clock.monotonic() - before,
        }


async def measure(skus: int = 10_000, changed: int | None = None) -> dict[str, Any]:
    """Sync ``skus`` products, change ``changed`` (default 10 %) in Rackbeat, push them."""
    changed = max(1, skus // 10) if changed is None else changed
    reset_peak_rss()
    clock = BenchClock(datetime.now(UTC) - timedelta(days=1))
    shopify_sim = ShopifySimulator(
        now=clock.now,
        monotonic=clock.monotonic,
        sleep=clock.sleep,
        bucket_size=BUCKET_POINTS,
        restore_rate=RESTORE_PER_SECOND,
        request_log_size=1000 + skus // 100,  # every request of a cycle that pushes them all
    )
    fast_handles(shopify_sim)
    rackbeat_sim = RackbeatSimulator(now=clock.now, monotonic=clock.monotonic, sleep=clock.sleep)
    for n in range(skus):
        sku = f"SKU-{n:05}"
        rackbeat_sim.add_product(sku, f"Product {n}", stock=5)
        shopify_sim.add_product(f"Product {n}", [{"sku": sku, "price": "100.00"}])
    rackbeat_sim.add_product("frakt", "Frakt")
    clock.advance(3600)

    transport = Transport(shopify_sim, rackbeat_sim)
    with tempfile.TemporaryDirectory() as tmp:
        settings = bench_settings(Path(tmp) / "sync.db")
        store = await Store.open(settings.sync_db, settings.shop)
        try:
            async with httpx.AsyncClient(transport=httpx.MockTransport(transport.route)) as http:
                shopify = ShopifyClient.from_settings(
                    settings, http, sleep=clock.sleep, clock=clock.monotonic
                )
                rackbeat = RackbeatClient.from_settings(
                    settings, http, sleep=clock.sleep, clock=clock.monotonic
                )
                orders, _, stock = stock_and_orders(
                    settings, store, shopify, rackbeat, now=clock.now, monotonic=clock.monotonic
                )
                rig = Rig(clock, shopify_sim, rackbeat_sim, settings, store, stock, orders, transport)
                first = await rig.cycle()  # the first full sync, fast-forwarded
                batch_cost = max(
                    (r.requested_cost for r in shopify_sim.request_log if r.operation == "SetStock"),
                    default=0,
                )
                await rig.cycle()  # the SKU index's overlap re-read
                idle = await rig.cycle()
                for n in range(changed):
                    rackbeat_sim.goods_receipt(f"SKU-{n * (skus // changed):05}", 3)
                rig.clock.advance(60)  # a quiet minute: the bucket refills as it would
                rig.clock.fast = False  # from here on: real time, real sleeps
                busy = await rig.cycle()
                after = await rig.cycle()
                moved = [f"SKU-{n * (skus // changed):05}" for n in range(changed)]
                converged = all(shopify_sim.available(sku) == 8 for sku in moved)
                # the falling scenarios count calls, not seconds: fast-forwarded again (the
                # orders flow's 1,000 imports would wait out Rackbeat's request budget)
                rig.clock.fast = True
                for sku in moved:  # the sales echo: Shopify shows 7 at once, Rackbeat once booked
                    shopify_sim.sell(sku, 1, email="bench-buyer@example.com")
                rig.clock.advance(shopify_sim.search_lag + 1)
                echo = await rig.cycle()  # the orders cycle imports and books the 1,000 orders
                echo_converged = all(shopify_sim.available(sku) == 7 for sku in moved)
                for sku in moved:  # stock leaves Rackbeat by another way: Shopify still shows 7
                    rackbeat_sim.adjust_stock(sku, -2)
                falling = await rig.cycle()
                falling_converged = all(shopify_sim.available(sku) == 5 for sku in moved)
                # the rate-limit bound: every SKU rises, the bucket starts empty (other traffic)
                for n in range(skus):
                    rackbeat_sim.goods_receipt(f"SKU-{n:05}", 1)
                with clock.frozen():  # the machine's own seconds would refill the bucket
                    everything = await rig.cycle(drain=True)
        finally:
            await store.close()
    return {
        "skus": skus,
        "changed": changed,
        "first": first,
        "idle": idle,
        "busy": busy,
        "after": after,
        "converged": converged,
        "echo": echo,
        "echo_converged": echo_converged,
        "falling": falling,
        "falling_converged": falling_converged,
        "batch_cost": batch_cost,
        "everything": everything,
        "peak_rss_mb": peak_rss_mb(),
    }


async def run(size: int | None = None) -> list[Row]:
    """The bench runner's entry point; ``size`` is the number of SKUs (default 10,000)."""
    m = await measure(size or 10_000)
    n, k = m["skus"], m["changed"]
    busy, idle, first = m["busy"], m["idle"], m["first"]
    echo, falling = m["echo"], m["falling"]

    def calls(cycle: dict[str, Any]) -> str:
        other = cycle["stock_shopify"] - cycle["stock_reads"] - cycle["stock_writes"]
        return (
            f"{cycle['stock_shopify']} ({cycle['stock_reads']} read, {cycle['stock_writes']} write, "
            f"{other} orders catch-up / SKU index)"
        )

    # the most quantities per second the bucket's refill allows for writes alone
    bound = RESTORE_PER_SECOND * MAX_INPUT_ITEMS / m["batch_cost"] if m["batch_cost"] else 0.0
    everything = m["everything"]
    waited = everything["waited"]
    achieved = everything["pushed"] / waited if waited > 0 else 0.0
    return [
        (
            "stock",
            f"Shopify SetStock calls to push {k} changed of {n} SKUs",
            busy["set_stock"],
            "calls (goal ≤ 4)",
        ),
        ("stock", f"all Shopify calls of that stock cycle, {k} rising", calls(busy), "calls"),
        (
            "stock",
            f"all Shopify calls of the stock cycle, {k} falling (sales echo)",
            calls(echo),
            "calls" + ("" if m["echo_converged"] else "; NOT converged"),
        ),
        (
            "stock",
            f"all Shopify calls of the stock cycle, {k} falling (stock left Rackbeat)",
            calls(falling),
            "calls" + ("" if m["falling_converged"] else "; NOT converged"),
        ),
        (
            "stock",
            "Shopify requests in that orders + stock cycle (all calls)",
            busy["shopify"],
            "requests",
        ),
        ("stock", f"Rackbeat requests, cycle with {k} changes", busy["rackbeat"], "requests"),
        ("stock", "Rackbeat requests, idle cycle", idle["rackbeat"], "requests (the narrow scan, 100/page)"),
        ("stock", "Shopify requests, idle orders + stock cycle", idle["shopify"], "requests"),
        (
            "stock",
            f"seconds until {k} changes are confirmed in Shopify (100 points/s)",
            round(busy["seconds"], 2),
            "s wall clock, real time, orders + stock cycle",
        ),
        (
            "stock",
            "of which inside the in-process simulators",
            round(busy["simulator_seconds"], 2),
            "s",
        ),
        (
            "stock",
            "converged after that one cycle",
            "yes" if m["converged"] and not m["after"]["pushed"] else "NO",
            "",
        ),
        (
            "stock",
            f"first sync of {n} SKUs (read and write every level)",
            round(first["clock_seconds"], 1),
            "s simulated (Shopify throttle waits at 100 points/s)",
        ),
        (
            "stock",
            "first sync Shopify / Rackbeat requests",
            f"{first['shopify']} / {first['rackbeat']}",
            "requests",
        ),
        (
            "stock",
            f"throughput vs the rate-limit bound ({everything['pushed']} rising, empty bucket)",
            round(achieved / bound, 2) if bound else "-",
            f"goal ≥ 0.9; today 0.73. {achieved:.0f} quantities/s of simulated throttle wait "
            f"({waited:.1f} s) ÷ {bound:.0f}/s (100 points/s, {m['batch_cost']} points per {MAX_INPUT_ITEMS})",
        ),
        (
            "stock",
            "points of that stock cycle: push / the rest",
            f"{everything['push_points']} / {everything['other_points']}",
            f"points spent (reads, orders catch-up, SKU index: {everything['other_requested']} requested; "
            f"{everything['throttled']} throttled answers) at {RESTORE_PER_SECOND:.0f} points/s",
        ),
        ("stock", f"peak RSS, {n} SKUs", round(m["peak_rss_mb"], 1), "MiB (both simulators in-process)"),
    ]


def main() -> None:
    """``python -m bench.stock [SKUS]``."""
    run_alone(run)


if __name__ == "__main__":
    main()
