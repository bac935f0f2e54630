"""Rackbeat shipped → Shopify fulfilled, and the order trigger ``paid`` (in-process simulators).

Five measurements, each a count or a ratio; time is simulated (no sleeping):

1. **Idle.** One fulfilments cycle with nothing shipped, with :data:`IDLE_OPEN` open
   (imported, booked, unshipped) orders: 10, then 1,000 (or ``N`` if more), in one shop.
   Requests to each API.
2. **Burst.** Rackbeat then ships ``N`` of those orders at once (every other one with
   carrier, tracking number and URL), and one fulfilments cycle runs. Counted: Rackbeat's
   list requests that found them (the list of orders updated since the cursor), all
   Rackbeat requests, Shopify reads and writes; then the requests of the next quiet cycle,
   of one an hour later and of the one after.
3. **Busy.** As the burst, but while ``N`` orders ship the daemon imports (books) ``N``
   new ones: the list holds both. Counted: its requests, and the requests per shipped
   order beyond them. Before (two lists, filtered on ``is_shipped`` and on
   ``is_partly_shipped``) the bookings cost no page, the partly shipped list one
   (:func:`lists_before`).
4. **Lost answers.** As the burst, but the answer of every :data:`LOST_EVERY`-th
   ``fulfillmentCreate`` is cut off, in turn: a truncated body, a reset connection, a
   timeout after Shopify applied it, and a timeout before it did (not applied). Cycles
   are run as the runner runs them until every order is fulfilled. Counted: fulfilments
   in Shopify per shipped order, and the Shopify requests beyond the burst's one read and
   one write per order (and the location read).
5. **Trigger paid.** ``SYNC_ORDER_TRIGGER=paid``, the orders and the stock flow: ``N``
   orders placed unpaid (Shopify commits their units), then a goods receipt for every SKU
   in Rackbeat, so the stock flow pushes while the orders wait. Counted: units Shopify
   still holds for them, units a push handed back (Shopify's available above Rackbeat's
   available less the waiting orders' units), Rackbeat orders made while waiting; then
   every order is paid, and Rackbeat orders per order once paid.

The baseline, before issue 13: the merchant fulfils every shipped order by hand in
Shopify: no request, and no order fulfilled by the daemon.

    python -m bench.fulfilments [ORDERS]
"""

from __future__ import annotations

import math
import tempfile
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from bench import Row, bench_settings, run_alone
from bench.sims import Sims
from daemon.demand import OrderDemand
from daemon.errors import RetriableError
from daemon.flows.fulfilments import FulfilmentsFlow
from daemon.flows.orders import OrdersFlow
from daemon.flows.stock import StockFlow
from daemon.index import SkuIndex
from daemon.metrics import Metrics
from daemon.rackbeat import RackbeatClient
from daemon.retry import backoff_delay
from daemon.runner import InlineCycles
from daemon.shopify import ShopifyClient
from daemon.shutdown import Shutdown
from daemon.sim.faults import LostAnswers
from daemon.sim.rackbeat import RackbeatSimulator
from daemon.sim.shopify import Order as ShopifyOrder
from daemon.sim.shopify import ShopifySimulator, SimClock
from daemon.store import Store

BENCH = "fulfilments"
#: the products every order draws on (one line each, 1 or 2 units)
SKUS: tuple[str, ...] = ("MUG-1", "TEE-2", "CAP-3")
#: open (imported, unshipped) orders of the two idle measurements
IDLE_OPEN: tuple[int, int] = (10, 1_000)
#: every how many ``fulfillmentCreate`` requests an answer is lost
LOST_EVERY = 3
#: how a lost answer is lost, in turn (the first three after Shopify applied the request)
LOST_KINDS = LostAnswers.KINDS
#: the poll interval, and the base of the runner's backoff after a failed cycle
POLL_SECONDS = 60.0
#: cycles after which a measurement gives up
MAX_CYCLES = 50
#: how long after the burst the last quiet cycle runs (seconds)
AN_HOUR = 3600.0
#: units of every SKU Rackbeat receives while the trigger-``paid`` orders wait
RECEIPT = 10
#: Shopify operations that write (every other operation the flows send reads)
SHOPIFY_WRITES = frozenset({"FulfillmentCreate", "FulfillmentTrackingUpdate", "SetStock"})


def is_fulfillment_create(request: httpx.Request) -> bool:
    """A ``fulfillmentCreate`` mutation (the one write without an idempotency key)."""
    return request.url.host == "shopify.sim" and b"fulfillmentCreate" in request.content


@dataclass
class ShopifyLine:
    """The way to the Shopify simulator: its handler (a :class:`LostAnswers` when answers
    get lost) and the requests the daemon sent, answered or not."""

    handle: Callable[[httpx.Request], Awaitable[httpx.Response]]
    sent: int = 0

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        self.sent += 1
        return await self.handle(request)


@dataclass
class Shop:
    """One shop on both simulators, its state DB and the flows under measurement."""

    clock: SimClock
    shopify_sim: ShopifySimulator
    rackbeat_sim: RackbeatSimulator
    store: Store
    shopify: ShopifyClient
    rackbeat: RackbeatClient
    orders: OrdersFlow
    fulfilments: FulfilmentsFlow
    stock: StockFlow
    shopify_line: ShopifyLine
    #: what cuts fulfilment answers off (None: nothing)
    lossy: LostAnswers | None = None
    #: Shopify order id → Rackbeat order number of the orders :meth:`place` imported
    imported: dict[str, str] = field(default_factory=dict)

    def tick(self, seconds: float = POLL_SECONDS) -> None:
        """Let time pass (the poll interval)."""
        self.clock.advance(seconds)

    def reset_counts(self) -> None:
        """Start counting requests afresh on both simulators."""
        self.shopify_sim.reset_requests()
        self.rackbeat_sim.reset_counts()
        self.shopify_line.sent = 0

    @property
    def shopify_sent(self) -> int:
        """Shopify requests the daemon sent since :meth:`reset_counts`, answered or not."""
        return self.shopify_line.sent

    def shopify_counts(self) -> tuple[int, int]:
        """(reads, writes) answered by Shopify since :meth:`reset_counts`."""
        writes = sum(n for op, n in self.shopify_sim.requests.items() if op in SHOPIFY_WRITES)
        return sum(self.shopify_sim.requests.values()) - writes, writes

    def rackbeat_lists(self) -> int:
        """``GET /orders`` list requests Rackbeat answered since :meth:`reset_counts`."""
        return sum(
            n for route, n in self.rackbeat_sim.requests.items() if route.split("?")[0] == "GET /orders"
        )

    async def place(self, count: int, **order_fields: Any) -> list[str]:
        """Place ``count`` orders in Shopify, one line of 1 or 2 units each; their ids."""
        return [
            self.shopify_sim.create_order([(SKUS[n % len(SKUS)], 1 + n % 2)], **order_fields)
            for n in range(count)
        ]

    async def import_orders(self, count: int) -> list[str]:
        """Place ``count`` orders and let the orders flow import them (booked in Rackbeat)."""
        ids = await self.place(count)
        await self.run_until(self.orders.run_once)
        names = {self.name(i): i for i in ids}
        for order in self.rackbeat_sim.orders:
            if order.your_reference in names:
                self.imported[names[order.your_reference]] = order.number
        if len(self.imported) < count:
            raise RuntimeError(f"{count - len(self.imported)} of {count} orders were not imported")
        return ids

    def ship(self, ids: Sequence[str]) -> None:
        """Rackbeat ships the orders, every other one with carrier, tracking number and URL."""
        for n, order_id in enumerate(ids):
            number = self.imported[order_id]
            if n % 2:
                self.rackbeat_sim.ship(number)
            else:
                self.rackbeat_sim.ship(
                    number, carrier="PostNord", tracking=f"PN{n:05}", url=f"https://track.example/PN{n:05}"
                )

    async def run_until(self, cycle: Callable[[], Awaitable[object]]) -> tuple[int, int]:
        """Run ``cycle`` as the runner does, until one succeeds: after a failed cycle wait
        its backoff, then the poll interval; return (cycles, failed cycles)."""
        failed = 0
        for cycles in range(1, MAX_CYCLES + 1):
            self.tick()
            try:
                await cycle()
            except RetriableError:
                failed += 1
                self.clock.advance(backoff_delay(failed, POLL_SECONDS, lambda: 0.5))
                continue
            return cycles, failed
        raise RuntimeError(f"no cycle succeeded in {MAX_CYCLES}")

    def name(self, order_id: str) -> str:
        """The Shopify order's name (``#1001``), which Rackbeat's order carries as its reference."""
        order = self.shopify_sim.node(order_id)
        if not isinstance(order, ShopifyOrder):
            raise TypeError(f"{order_id} is not an order")
        return order.name

    def fulfilled(self, ids: Sequence[str]) -> int:
        """Fulfilments Shopify holds for the orders ``ids``."""
        return sum(len(self.shopify_sim.fulfillments(i)) for i in ids)


@asynccontextmanager
async def open_shop(orders: int, *, lose: bool = False, **settings: Any) -> AsyncIterator[Shop]:
    """A shop whose products exist on both sides with stock for ``orders`` orders, both
    flows' cursors set (their first start); ``lose``: lose fulfilment answers
    (:class:`LostAnswers`)."""
    sims = Sims(datetime(2026, 11, 1, 10, 0, tzinfo=UTC))
    clock, shopify_sim, rackbeat_sim = sims.clock, sims.shopify, sims.rackbeat
    stock = 2 * orders + 10  # every SKU: more than the orders can take
    for sku in SKUS:
        shopify_sim.add_product(f"Product {sku}", [{"sku": sku, "price": "100.00", "stock": stock}])
        rackbeat_sim.add_product(sku, stock=stock)
    rackbeat_sim.add_product("frakt", "Frakt")
    lossy = LostAnswers(shopify_sim.handle, is_fulfillment_create, every=LOST_EVERY) if lose else None
    line = ShopifyLine(lossy or shopify_sim.handle)

    async def route(request: httpx.Request) -> httpx.Response:
        if request.url.host == "shopify.sim":
            return await line(request)
        return await rackbeat_sim.handle(request)

    with tempfile.TemporaryDirectory() as tmp:
        s = bench_settings(
            Path(tmp) / "sync.db",
            rackbeat_requests_per_minute=10_000,
            sync_poll_seconds=POLL_SECONDS,
            **settings,
        )
        store = await Store.open(s.sync_db, s.shop)
        try:
            async with httpx.AsyncClient(transport=httpx.MockTransport(route)) as http:
                shopify, rackbeat = sims.clients(s, http)
                common = (s, store, shopify, rackbeat)
                metrics, shutdown = Metrics(), Shutdown()
                orders_flow = OrdersFlow(*common, metrics=metrics, shutdown=shutdown, clock=clock.now)
                shop = Shop(
                    clock=clock,
                    shopify_sim=shopify_sim,
                    rackbeat_sim=rackbeat_sim,
                    store=store,
                    shopify=shopify,
                    rackbeat=rackbeat,
                    orders=orders_flow,
                    fulfilments=FulfilmentsFlow(*common, metrics=metrics, shutdown=shutdown, clock=clock.now),
                    stock=StockFlow(
                        *common,
                        index=SkuIndex(store, shopify, clock=clock.now),
                        metrics=metrics,
                        shutdown=shutdown,
                        demand=OrderDemand(store),
                        cycles=InlineCycles({orders_flow.name: orders_flow.run_once}),
                        clock=clock.now,
                        monotonic=clock.monotonic,
                    ),
                    shopify_line=line,
                    lossy=lossy,
                )
                await shop.orders.run_once()
                await shop.fulfilments.run_once()
                shop.tick(1)
                yield shop
        finally:
            await store.close()


# --- the measurements ----------------------------------------------------------------------------


async def measure_burst(orders: int) -> dict[str, Any]:
    """Idle and burst, in one shop: idle cycles with :data:`IDLE_OPEN` open orders (at
    least ``orders`` for the second), then ``orders`` of them shipped at once and one
    fulfilments cycle, and the cycle after it."""
    few, many = IDLE_OPEN[0], max(IDLE_OPEN[1], orders)
    async with open_shop(many) as shop:
        idle: dict[int, tuple[int, int]] = {}
        ids: list[str] = []
        for open_orders in (few, many):
            ids += await shop.import_orders(open_orders - len(ids))
            await shop.run_until(shop.fulfilments.run_once)  # moves the cursor past the imports
            shop.tick(AN_HOUR)
            # lists the overlap once more: from then on the list starts at the cursor
            await shop.run_until(shop.fulfilments.run_once)
            shop.reset_counts()
            await shop.run_until(shop.fulfilments.run_once)
            idle[open_orders] = (shop.rackbeat_sim.request_total(), shop.shopify_sent)
        shipped = ids[:orders]
        shop.ship(shipped)
        shop.reset_counts()
        cycles, failed = await shop.run_until(shop.fulfilments.run_once)
        reads, writes = shop.shopify_counts()
        burst = {
            "orders": orders,
            "open": many,
            "idle": idle,
            "cycles": cycles,
            "failed": failed,
            "rackbeat_lists": shop.rackbeat_lists(),
            "rackbeat": shop.rackbeat_sim.request_total(),
            "shopify_reads": reads,
            "shopify_writes": writes,
            "shopify_sent": shop.shopify_sent,
            "shopify_by_operation": dict(shop.shopify_sim.requests),
            "fulfilled": shop.fulfilled(shipped),
            "fulfilled_orders": sum(1 for i in shipped if shop.shopify_sim.fulfillments(i)),
            "with_tracking": sum(
                1 for i in shipped for f in shop.shopify_sim.fulfillments(i) if f.tracking_number
            ),
            "unshipped_fulfilled": shop.fulfilled(ids[orders:]),
        }
        # quiet cycles after it: the next one, one an hour later (the first after the overlap:
        # it still reads the overlap) and the one after that (nothing new shipped)
        after: list[tuple[int, int]] = []
        for wait in (0, AN_HOUR, 60):
            shop.tick(wait)
            shop.reset_counts()
            await shop.run_until(shop.fulfilments.run_once)
            after.append((shop.rackbeat_sim.request_total(), shop.shopify_sent))
        burst["after"] = after
        burst["fulfilled_after"] = shop.fulfilled(ids)
        return burst


async def measure_busy(orders: int) -> dict[str, Any]:
    """A busy cycle: while ``orders`` earlier orders ship, the daemon imports (books)
    ``orders`` new ones; then one fulfilments cycle. Counted: the ``GET /orders`` list
    requests that found the shipped orders among everything else updated since the
    cursor, and the requests per shipped order beyond them."""
    async with open_shop(2 * orders) as shop:
        ids = await shop.import_orders(orders)
        await shop.run_until(shop.fulfilments.run_once)  # moves the cursor to the imports
        shop.tick(AN_HOUR)
        await shop.import_orders(orders)  # the daemon's own bookings, in the same minutes
        shop.ship(ids)
        shop.reset_counts()
        cycles, failed = await shop.run_until(shop.fulfilments.run_once)
        lists = shop.rackbeat_lists()
        operations = shop.shopify_sim.requests
        return {
            "orders": orders,
            "cycles": cycles,
            "failed": failed,
            "rackbeat_lists": lists,
            "rackbeat_beyond_lists": shop.rackbeat_sim.request_total() - lists,
            "shopify_reads": operations.get("OrderFulfilment", 0),
            "shopify_writes": operations.get("FulfillmentCreate", 0),
            "fulfilled_orders": sum(1 for i in ids if shop.shopify_sim.fulfillments(i)),
        }


async def measure_lost(orders: int) -> dict[str, Any]:
    """Lost answers: the burst of :func:`measure_burst` while fulfilment answers get lost."""
    async with open_shop(orders, lose=True) as shop:
        ids = await shop.import_orders(orders)
        await shop.run_until(shop.fulfilments.run_once)
        shop.ship(ids)
        shop.reset_counts()
        cycles = failed = 0
        while cycles < MAX_CYCLES:
            ran, failures = await shop.run_until(shop.fulfilments.run_once)
            cycles, failed = cycles + ran, failed + failures
            done = await shop.store.fetchval("SELECT COUNT(*) FROM order_ledger WHERE fulfilment = 'done'")
            if done == orders:
                break
        lost = shop.lossy.lost if shop.lossy else []
        return {
            "orders": orders,
            "cycles": cycles,
            "failed": failed,
            "lost": len(lost),
            "lost_kinds": Counter(lost),
            "shopify_sent": shop.shopify_sent,
            # beyond one read and one write per order (and the location read): what the
            # lost answers cost
            "extra": shop.shopify_sent - 2 * orders - shop.shopify_sim.requests["PrimaryLocation"],
            "fulfilled": shop.fulfilled(ids),
            "fulfilled_orders": sum(1 for i in ids if shop.shopify_sim.fulfillments(i)),
            "parked": len(await shop.store.parked(BENCH)),
        }


async def measure_trigger_paid(orders: int) -> dict[str, Any]:
    """Trigger paid: ``orders`` unpaid orders wait for SYNC_ORDER_TRIGGER=paid while the stock
    flow pushes a goods receipt; then they are paid."""
    async with open_shop(orders, sync_order_trigger="paid") as shop:
        await shop.run_until(shop.stock.run_once)  # the first stock cycle (nothing to change)
        ids = await shop.place(orders, financial_status="PENDING")
        ordered = Counter[str]()
        for n in range(orders):
            ordered[SKUS[n % len(SKUS)]] += 1 + n % 2
        for sku in SKUS:
            shop.rackbeat_sim.goods_receipt(sku, RECEIPT)
        shop.reset_counts()
        for _ in range(3):  # the orders cycle, then the stock cycle (it catches the orders up too)
            await shop.run_until(shop.orders.run_once)
            await shop.run_until(shop.stock.run_once)
        pushes = shop.shopify_sim.requests.get("SetStock", 0)
        names = {shop.name(i) for i in ids}

        def transferred() -> int:
            return sum(1 for o in shop.rackbeat_sim.orders if o.your_reference in names)

        waiting: dict[str, Any] = {}
        for sku in SKUS:
            rackbeat = int(shop.rackbeat_sim.available_quantity(sku))
            shopify = shop.shopify_sim.available(sku)
            waiting[sku] = {"rackbeat": rackbeat, "shopify": shopify, "ordered": ordered[sku]}
        held = sum(w["rackbeat"] - w["shopify"] for w in waiting.values())
        handed_back = sum(max(0, w["shopify"] - (w["rackbeat"] - w["ordered"])) for w in waiting.values())
        unreserved = await OrderDemand(shop.store).unreserved()
        made_waiting = transferred()

        for order_id in ids:
            shop.shopify_sim.mark_paid(order_id)
        for _ in range(3):
            shop.tick(600)  # past Shopify's search lag
            await shop.run_until(shop.orders.run_once)
        await shop.run_until(shop.stock.run_once)
        made = transferred()
        per_order = Counter(o.your_reference for o in shop.rackbeat_sim.orders if o.your_reference in names)
        off_after = sum(
            abs(shop.shopify_sim.available(sku) - int(shop.rackbeat_sim.available_quantity(sku)))
            for sku in SKUS
        )
        return {
            "orders": orders,
            "units": sum(ordered.values()),
            "held": held,
            "handed_back": handed_back,
            "pushes": pushes,
            "unreserved": sum(unreserved.values()),
            "made_waiting": made_waiting,
            "made": made,
            "transferred_orders": len(per_order),
            "twins": sum(n - 1 for n in per_order.values()),
            "off_after": off_after,
        }


# --- the table -----------------------------------------------------------------------------------


async def measure(orders: int = 1_000) -> dict[str, Any]:
    """Every figure at ``orders`` shipped (or waiting) orders; idle at :data:`IDLE_OPEN` open."""
    return {
        "burst": await measure_burst(orders),
        "busy": await measure_busy(orders),
        "lost": await measure_lost(orders),
        "paid": await measure_trigger_paid(orders),
    }


def lists_before(shipped: int) -> int:
    """List requests that found ``shipped`` orders before one list replaced two: the
    shipped list's pages of 100, and one of the partly shipped list (the orders the daemon
    booked meanwhile were in neither)."""
    return max(1, math.ceil(shipped / 100)) + 1


def per(value: float, count: int, digits: int = 2) -> float:
    """``value / count`` rounded (0 for no count)."""
    return round(value / count, digits) if count else 0.0


def table(m: dict[str, Any]) -> list[Row]:
    """The rows of :func:`measure`'s figures."""
    b, busy_m, lost, paid = m["burst"], m["busy"], m["lost"], m["paid"]
    n, b_n = b["orders"], busy_m["orders"]
    busy = f"{b_n} shipped while {b_n} are booked"
    idle = b["idle"]
    fixed = idle[b["open"]][0]  # the list reads of every cycle, shipped or not
    pages = math.ceil(n / 100)
    extra = lost["extra"]
    kinds = ", ".join(f"{lost['lost_kinds'][k]} {k}" for k in LOST_KINDS if lost["lost_kinds"][k])
    burst = f"{n} shipped"
    rows: list[Row] = [
        (
            BENCH,
            f"Rackbeat list requests for detection per 100 shipped, {burst}",
            per(100 * b["rackbeat_lists"], n),
            f"requests (goal <= 1): {b['rackbeat_lists']} in all, {fixed} of them in every cycle anyway",
        ),
        (
            BENCH,
            "  the same, beyond an idle cycle's",
            per(100 * (b["rackbeat_lists"] - fixed), n),
            f"requests (goal <= 1; pages of 100: {pages} shipped)",
        ),
        (
            BENCH,
            f"Rackbeat requests per shipped order, {burst}",
            per(b["rackbeat"], n),
            "requests (the list, and one shipments read per order)",
        ),
        (
            BENCH,
            f"Shopify reads per shipped order, {burst}",
            per(b["shopify_reads"], n),
            f"requests (goal 1; {b['shopify_reads']} in all: the order's fulfillment orders, "
            "and the location once)",
        ),
        (
            BENCH,
            f"Shopify writes per shipped order, {burst}",
            per(b["shopify_writes"], n),
            f"requests (goal 1): fulfillmentCreate, {b['with_tracking']} with tracking",
        ),
        (
            BENCH,
            f"orders fulfilled by the daemon, {burst}",
            b["fulfilled_orders"],
            f"orders (goal {n}): {b['fulfilled']} fulfilments in {b['cycles']} cycle(s)"
            + (f", {b['unshipped_fulfilled']} of the {b['open'] - n} unshipped" if b["open"] > n else ""),
        ),
        (
            BENCH,
            f"orders fulfilled by the daemon, {burst} (before)",
            0,
            "orders, 0 requests: the merchant fulfilled each by hand in Shopify (no tracking mail)",
        ),
        (
            BENCH,
            "requests per quiet cycle after the burst: the next / an hour later / the one after",
            " / ".join(f"{rackbeat}+{shopify}" for rackbeat, shopify in b["after"]),
            "Rackbeat+Shopify requests (goal 1+0; until a scan has run 2 minutes after the latest "
            "shipment, the list re-reads the orders shipped within that overlap, no Shopify request)",
        ),
    ]
    rows.extend(
        (
            BENCH,
            f"requests per idle cycle, {open_orders} open orders",
            f"{rackbeat}+{shopify}",
            "Rackbeat+Shopify requests (goal: the same whatever is open; 1+0)",
        )
        for open_orders, (rackbeat, shopify) in sorted(idle.items())
    )
    rows += [
        (
            BENCH,
            f"Rackbeat list requests of a busy cycle, {busy} (before: two lists)",
            f"{lists_before(b_n)} -> {busy_m['rackbeat_lists']}",
            f"requests (one list of every order updated since: {b_n} shipped + {b_n} booked by the daemon, "
            "pages of 100; before, the shipped list's pages + 1 partly shipped)",
        ),
        (
            BENCH,
            f"requests per shipped order beyond the list, {busy}",
            f"{per(busy_m['rackbeat_beyond_lists'], b_n)} + {per(busy_m['shopify_reads'], b_n)} + "
            f"{per(busy_m['shopify_writes'], b_n)}",
            "Rackbeat read + Shopify read + Shopify write (goal 1 + 1 + 1: the bookings cost only pages)",
        ),
        (
            BENCH,
            f"fulfilments per shipped order, {lost['orders']} shipped, {lost['lost']} answers lost",
            per(lost["fulfilled"], lost["orders"]),
            f"fulfilments (goal exactly 1.00; lost: {kinds}; {lost['cycles']} cycle(s), "
            f"{lost['failed']} failed, {lost['parked']} parked)",
        ),
        (
            BENCH,
            "extra Shopify requests per lost answer",
            per(extra, lost["lost"]),
            f"requests ({extra} beyond one read + one write per order: a read each, and the write "
            "again when it had not been applied)",
        ),
        (
            BENCH,
            f"trigger paid: units held in Shopify while {paid['orders']} orders wait",
            paid["held"],
            f"units (goal {paid['units']}, all they ordered; the stock flow pushed {paid['pushes']} "
            f"time(s) meanwhile)",
        ),
        (
            BENCH,
            "trigger paid: units handed back by a push while waiting",
            paid["handed_back"],
            f"units (goal 0; unreserved demand while waiting: {paid['unreserved']})",
        ),
        (
            BENCH,
            "trigger paid: Rackbeat orders made while waiting",
            paid["made_waiting"],
            "orders (goal 0)",
        ),
        (
            BENCH,
            "trigger paid: Rackbeat orders made per order once paid",
            per(paid["made"], paid["orders"]),
            f"orders (goal exactly 1.00; {paid['transferred_orders']} transferred, {paid['twins']} twins; "
            f"Shopify's available off Rackbeat's by {paid['off_after']} units after)",
        ),
    ]
    return rows


async def run(size: int | None = None) -> list[Row]:
    """The bench runner's entry point; ``size`` is the number of orders (default 1,000)."""
    return table(await measure(size or 1_000))


def main() -> None:
    """``python -m bench.fulfilments [ORDERS]``."""
    run_alone(run)


if __name__ == "__main__":
    main()
