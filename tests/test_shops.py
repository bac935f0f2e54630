"""Several Shopify shops on one Rackbeat account, served by one process (issue 12).

The flows of two shops on one simulated Rackbeat, wired as ``build_account_flows`` wires
them (one stock scan shared, one customer lock, each stock flow subtracting the demand of
every shop whose S10 locations meet its own), on one fake clock; then the shared pieces
on their own (:class:`StockReads`, :class:`KeyedLocks`, :class:`OrderDemand`). The
daemon itself serving two shops is in ``test_shops_daemon.py``; killed with SIGKILL in
``test_process.py``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import httpx
import pytest
from graphql import GraphQLSchema
from pydantic import SecretStr

from daemon.demand import OrderDemand
from daemon.mapping import shopify_heading
from daemon.rackbeat import LocationStock, RackbeatClient
from daemon.shared import KeyedLocks, StockReads
from daemon.sim.rackbeat import DEFAULT_TOKEN as RACKBEAT_TOKEN
from daemon.sim.rackbeat import RackbeatSimulator
from tests.harness import (
    RACKBEAT_URL,
    ShopWorld,
    World,
    account_flows,
    add_shop,
    book_for,
    first_shop,
    make_world,
)

pytestmark = pytest.mark.anyio


@asynccontextmanager
async def two_shops(
    tmp_path: Path,
    schema: GraphQLSchema | None,
    *,
    skus: Mapping[str, int],
    a: Mapping[str, Any] | None = None,
    b: Mapping[str, Any] | None = None,
    search_lag: float = 0.0,
    **settings: Any,
) -> AsyncIterator[tuple[World, ShopWorld, ShopWorld]]:
    """Shops ``a`` and ``b`` (their own settings ``a`` and ``b``, the rest shared) selling
    the same ``skus`` (SKU → Rackbeat stock at the default location)."""
    async with make_world(
        tmp_path,
        validate_schema=schema,
        settings={**settings, **(a or {})},
        shopify_options={"search_lag": search_lag},
    ) as w:
        shop_a, shop_b = first_shop(w, "a"), add_shop(w, "b", **(b or {}))
        for sku, stock in skus.items():
            for shop in (shop_a, shop_b):
                shop.sim.add_product(f"Product {sku}", [{"sku": sku, "price": "100.00"}])
            w.rackbeat.add_product(sku, stock=stock)
        w.rackbeat.add_product("frakt", name="Frakt")
        yield w, shop_a, shop_b


def customers_with(w: World, email: str) -> list[str]:
    return [n for n, c in w.rackbeat.customers.items() if (c.contact_email or "").lower() == email]


# --- the flows of two shops --------------------------------------------------------------------------


async def test_a_sale_in_one_shop_lowers_the_other_shops_figure_in_its_next_cycle(
    tmp_path: Path, shopify_schema: GraphQLSchema
) -> None:
    async with two_shops(tmp_path, shopify_schema, skus={"LAST-3": 3}, sync_order_status="draft") as (
        w,
        a,
        b,
    ):
        flows = account_flows(w, [a, b])
        for alias in "ab":
            await flows.orders[alias].run_once()
        for alias in "ab":
            await flows.stock[alias].run_once()
        assert (a.sim.available("LAST-3"), b.sim.available("LAST-3")) == (3, 3)
        w.tick(60)
        a.sim.sell("LAST-3", 3)
        # nothing else runs: shop B's next stock cycle reads shop A's new order itself
        await flows.stock["b"].run_once()
        assert b.sim.available("LAST-3") == 0
        assert w.rackbeat.available_quantity("LAST-3") == 3  # a draft: Rackbeat does not reserve it


async def test_another_shops_order_does_not_explain_units_this_shop_sold(
    tmp_path: Path, shopify_schema: GraphQLSchema
) -> None:
    # Shopify's search lags: shop B's own sale is not in the ledger yet when B's stock cycle
    # reads B's drop; shop A's order for as many units is. A's order is no sale of B's.
    async with two_shops(tmp_path, shopify_schema, skus={"MUG-1": 10}, search_lag=45) as (w, a, b):
        flows = account_flows(w, [a, b])
        for alias in "ab":
            await flows.orders[alias].run_once()
            await flows.stock[alias].run_once()
        w.tick(60)
        a.sim.sell("MUG-1", 2)
        w.tick(60)
        await flows.orders["a"].run_once()  # A's order is in the ledger
        b.sim.sell("MUG-1", 2)  # B's is not, for 45 s
        await flows.stock["b"].run_once()
        assert b.sim.available("MUG-1") == 10 - 2 - 2
        w.tick(60)
        await flows.orders["b"].run_once()
        await flows.stock["b"].run_once()  # B's order explains the units held back: no change
        await flows.stock["a"].run_once()
        assert (a.sim.available("MUG-1"), b.sim.available("MUG-1")) == (6, 6)


async def test_a_scan_begun_before_a_cycle_read_its_demand_is_not_the_cycles(tmp_path: Path) -> None:
    async with two_shops(tmp_path, None, skus={"MUG-1": 5}, sync_order_status="draft") as (w, a, b):
        flows = account_flows(w, [a, b])
        for alias in "ab":
            await flows.orders[alias].run_once()
        w.tick(60)
        a.sim.sell("MUG-1", 3)
        w.tick(60)
        await flows.orders["a"].run_once()  # a draft: its 3 units are demand Rackbeat does not reserve
        for alias in "ab":
            await flows.stock[alias].run_once()
        assert b.sim.available("MUG-1") == 2
        [draft] = w.rackbeat.orders

        class BookedMeanwhile(OrderDemand):
            """While shop B's cycle reads its demand, shop A's cycle scans Rackbeat, and then
            the draft is booked (Rackbeat reserves it; the ledger says so)."""

            booked = False

            async def unreserved(self) -> dict[str, int]:
                if not self.booked:
                    self.booked = True
                    async for _ in flows.reads.totals(flows.reads.clock()):
                        pass
                    await book_for(w, [a, b], draft.number)
                return await super().unreserved()

        stock_b = flows.stock["b"]
        stock_b.demand = BookedMeanwhile(b.store, stock_b.demand.shops)
        w.tick(60)
        await stock_b.run_once()
        assert w.rackbeat.available_quantity("MUG-1") == 2
        assert b.sim.available("MUG-1") == 2  # not the 5 of the scan before the booking


async def test_with_disjoint_locations_one_shops_orders_do_not_lower_the_others_figure(
    tmp_path: Path, shopify_schema: GraphQLSchema
) -> None:
    async with two_shops(
        tmp_path,
        shopify_schema,
        skus={"MUG-1": 0},
        a={"sync_locations": "1"},
        b={"sync_locations": "2"},
        sync_order_status="draft",
    ) as (w, a, b):
        w.rackbeat.goods_receipt("MUG-1", 6, "1")
        w.rackbeat.goods_receipt("MUG-1", 4, "2")
        flows = account_flows(w, [a, b])
        assert flows.stock["a"].demand.shops == (a.settings.shop,)
        for alias in "ab":
            await flows.orders[alias].run_once()
            await flows.stock[alias].run_once()
        assert (a.sim.available("MUG-1"), b.sim.available("MUG-1")) == (6, 4)
        w.tick(60)
        a.sim.sell("MUG-1", 5)
        w.tick(60)
        for alias in "ab":
            await flows.orders[alias].run_once()  # A's draft: 5 units Rackbeat does not reserve
        for alias in "ab":
            await flows.stock[alias].run_once()
        assert (a.sim.available("MUG-1"), b.sim.available("MUG-1")) == (1, 4)
        w.tick(60)
        b.sim.sell("MUG-1", 3)
        w.tick(60)
        for alias in "ab":
            await flows.orders[alias].run_once()
            await flows.stock[alias].run_once()
        assert (a.sim.available("MUG-1"), b.sim.available("MUG-1")) == (1, 1)


async def test_one_email_buying_in_both_shops_at_once_is_one_rackbeat_customer(
    tmp_path: Path, shopify_schema: GraphQLSchema
) -> None:
    async with two_shops(tmp_path, shopify_schema, skus={"MUG-1": 50}) as (w, a, b):
        flows = account_flows(w, [a, b])
        for alias in "ab":
            await flows.orders[alias].run_once()
        w.tick(60)
        a.sim.sell("MUG-1", 1, email="Anna@Example.com")
        b.sim.sell("MUG-1", 2, email="anna@example.com")
        w.tick(60)
        # a new customer is slow to make: the other shop's orders flow asks meanwhile
        handle, creating, searched = w.rackbeat.handle, anyio.Event(), anyio.Event()

        async def slow_to_create(request: httpx.Request) -> httpx.Response:
            if request.url.path.endswith("/customers"):
                if request.method == "POST":
                    creating.set()
                    with anyio.move_on_after(0.3):  # until another search arrives, or a while
                        await searched.wait()
                elif creating.is_set():
                    searched.set()
            return await handle(request)

        w.rackbeat.handle = slow_to_create  # type: ignore[method-assign]
        async with anyio.create_task_group() as tg:  # both shops' orders flows at the same moment
            for alias in "ab":
                tg.start_soon(flows.orders[alias].run_once)
        [customer] = customers_with(w, "anna@example.com")
        # each shop's #1001 is its own Rackbeat order, told apart by its heading
        orders = sorted((o.heading, o.customer_id) for o in w.rackbeat.orders)
        assert orders == [
            (shopify_heading("#1001", a.settings.shop), customer),
            (shopify_heading("#1001", b.settings.shop), customer),
        ]


async def test_order_demand_counts_the_orders_of_every_shop_it_is_given(tmp_path: Path) -> None:
    async with two_shops(tmp_path, None, skus={"MUG-1": 50, "TEE-2": 50}, sync_order_status="draft") as (
        w,
        a,
        b,
    ):
        flows = account_flows(w, [a, b])
        for alias in "ab":
            await flows.orders[alias].run_once()
        w.tick(60)
        b.sim.add_location("Shop floor")  # the same Shopify ids in both shops from here on
        sold_a = a.sim.sell("MUG-1", 2)
        sold_b = b.sim.create_order([("MUG-1", 1), ("TEE-2", 1)])
        assert sold_a == sold_b  # each shop numbers its own orders: the same id in both
        w.tick(60)
        for alias in "ab":
            await flows.orders[alias].run_once()
        own, both = OrderDemand(a.store), OrderDemand(a.store, [a.settings.shop, b.settings.shop])
        assert await own.unreserved() == {"MUG-1": 2}
        assert await both.unreserved() == {"MUG-1": 3, "TEE-2": 1}
        assert await both.unreserved_order_ids() == {sold_a, f"{b.settings.shop}:{sold_b}"}
        assert await both.watermark() > await own.watermark()
        assert [d for _, d in await both.after(0)] == [{"MUG-1": 2}, {"MUG-1": 1, "TEE-2": 1}]
        assert [d for _, d in await both.after(0, own=True)] == [{"MUG-1": 2}]
        [draft_b] = [o for o in w.rackbeat.orders if o.heading == shopify_heading("#1001", b.settings.shop)]
        await book_for(w, [a, b], draft_b.number)  # Rackbeat reserves B's order now
        assert await both.unreserved() == {"MUG-1": 2}


# --- the shared pieces on their own -----------------------------------------------------------------


class Scans:
    """A Rackbeat of 25 products behind :class:`StockReads` for two shops, read 10 products
    a page; ``gate``, when set, holds the second page of every scan until it is set."""

    def __init__(self, http: httpx.AsyncClient, sim: RackbeatSimulator, *, gather: float) -> None:
        self.sim = sim
        self.now = 0.0
        self.gate: anyio.Event | None = None
        client = RackbeatClient(
            http,
            base_url=RACKBEAT_URL,
            token=SecretStr(RACKBEAT_TOKEN),
            contact_email="ops@example.com",
            page_limit=10,
        )
        self.reads = StockReads(client, shops=2, gather=gather, clock=lambda: self.now)

    async def route(self, request: httpx.Request) -> httpx.Response:
        if self.gate is not None and request.url.params.get("page") == "2":
            await self.gate.wait()
        return await self.sim.handle(request)

    async def scan(self, since: float) -> dict[str, Decimal | None]:
        """A cycle's scan: every product's stock, from a scan that began at ``since`` or later."""
        return {t.number: t.stock_quantity async for page in self.reads.totals(since) for t in page}

    @property
    def requests(self) -> int:
        return self.sim.requests["GET /products"]


@asynccontextmanager
async def scans(*, gather: float = 0.0) -> AsyncIterator[Scans]:
    sim = RackbeatSimulator()
    for n in range(25):
        sim.add_product(f"SKU-{n:02}", stock=n)
    scans: Scans | None = None

    async def route(request: httpx.Request) -> httpx.Response:
        assert scans is not None
        return await scans.route(request)

    async with httpx.AsyncClient(transport=httpx.MockTransport(route)) as http:
        scans = Scans(http, sim, gather=gather)
        yield scans


async def test_the_stock_cycles_of_two_shops_asking_together_share_one_scan() -> None:
    async with scans(gather=30.0) as s:
        results: list[dict[str, Decimal | None]] = []

        async def cycle() -> None:
            results.append(await s.scan(s.now))

        with anyio.fail_after(5):  # the second to ask ends the first one's gathering at once
            async with anyio.create_task_group() as tg:
                tg.start_soon(cycle)
                tg.start_soon(cycle)
        assert (s.reads.scans, s.requests) == (1, 3)  # one scan of three pages
        assert results[0] == results[1]
        assert len(results[0]) == 25


async def test_a_stock_cycle_never_gets_a_scan_that_began_before_its_marker() -> None:
    async with scans() as s:
        s.gate = anyio.Event()
        first: list[dict[str, Decimal | None]] = []
        s.now = 1.0
        async with anyio.create_task_group() as tg:

            async def cycle_of_a() -> None:
                first.append(await s.scan(1.0))

            tg.start_soon(cycle_of_a)
            with anyio.fail_after(5):
                while True:  # until A's scan has read page 1 (page 2 waits for the gate)
                    if s.requests == 1:
                        break
                    await anyio.sleep(0.001)
            s.sim.goods_receipt("SKU-00", 5)  # on page 1, after A's scan read it
            s.now = 2.0  # B's cycle reads its marker now: A's scan began before it
            second: list[dict[str, Decimal | None]] = []

            async def cycle_of_b() -> None:
                second.append(await s.scan(2.0))

            tg.start_soon(cycle_of_b)
            s.gate.set()
        assert first[0]["SKU-00"] == 0  # read before the goods arrived
        assert second[0]["SKU-00"] == 5  # B waited for a scan of its own
        assert s.reads.scans == 2
        # a cycle whose marker is before the latest scan began takes that one: no new scan
        assert (await s.scan(2.0))["SKU-00"] == 5
        assert s.reads.scans == 2
        # one whose marker is after it does not
        s.now = 3.0
        await s.scan(3.0)
        assert s.reads.scans == 3


async def test_per_location_reads_after_one_scan_serve_every_shop() -> None:
    async with scans() as s:
        s.now = 1.0
        await s.scan(1.0)
        reads = [await s.reads.product_locations(1.0, "SKU-07") for _ in range(2)]
        assert reads[0] == reads[1]
        assert s.sim.requests["GET /products/{number}/locations"] == 1
        s.now = 2.0  # a cycle that began after that scan reads afresh
        await s.reads.product_locations(2.0, "SKU-07")
        assert s.sim.requests["GET /products/{number}/locations"] == 2


async def test_a_shared_read_whose_first_reader_stops_is_read_again_by_the_others() -> None:
    async with scans() as s:
        s.now = 1.0
        await s.scan(1.0)
        entered, release = anyio.Event(), anyio.Event()
        original = s.reads.rackbeat.product_locations

        async def slow(number: str) -> list[LocationStock]:
            entered.set()
            await release.wait()
            return await original(number)

        s.reads.rackbeat.product_locations = slow  # type: ignore[method-assign]
        got: list[list[LocationStock]] = []
        stopped = anyio.CancelScope()

        async def first() -> None:
            with stopped:  # this shop's cycle is stopped while its read is in flight
                await s.reads.product_locations(1.0, "SKU-07")

        async def second() -> None:
            got.append(await s.reads.product_locations(1.0, "SKU-07"))

        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                tg.start_soon(first)
                await entered.wait()
                tg.start_soon(second)
                await anyio.wait_all_tasks_blocked()  # the second waits for the first's read
                stopped.cancel()
                release.set()
        # the other shop got the figures, not the first one's cancellation
        assert [x.location for x in got[0]] == [x.location for x in await original("SKU-07")]


async def test_keyed_locks_hold_one_key_at_a_time_and_forget_it_after() -> None:
    locks = KeyedLocks()
    inside: dict[str, int] = {"anna": 0, "bo": 0}
    most = {"anna": 0, "bo": 0, "both": 0}

    async def customer(key: str) -> None:
        async with locks.hold(key):
            inside[key] += 1
            most[key] = max(most[key], inside[key])
            most["both"] = max(most["both"], sum(inside.values()))
            for _ in range(3):
                await anyio.lowlevel.checkpoint()
            inside[key] -= 1

    async with anyio.create_task_group() as tg:
        for _ in range(4):
            for key in ("anna", "bo"):
                tg.start_soon(customer, key)
    assert (most["anna"], most["bo"]) == (1, 1)  # one holder per key …
    assert most["both"] == 2  # … while another key is held at the same time
    assert locks._locks == {}  # nobody holds or waits: nothing kept

    # a waiter that gives up leaves nothing behind either
    async def gives_up() -> None:
        with anyio.move_on_after(0.01):
            async with locks.hold("anna"):
                pytest.fail("held twice")

    async with locks.hold("anna"), anyio.create_task_group() as tg:
        tg.start_soon(gives_up)
    assert locks._locks == {}
