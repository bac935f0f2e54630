"""Order import Shopify → Rackbeat against both simulators: settings, parking, exactly once."""

from __future__ import annotations

import io
import sqlite3
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from graphql import GraphQLSchema
from structlog.testing import capture_logs

from daemon import app
from daemon.demand import OrderDemand
from daemon.errors import TransportError
from daemon.flows.orders import DRAFT_CHECKS_PER_CYCLE
from daemon.rackbeat import order_body
from daemon.sim.faults import LostAnswers
from daemon.sim.shopify import Order as ShopifyOrder
from daemon.store import Store
from tests.harness import RACKBEAT_URL, World, make_world, orders_flow

pytestmark = pytest.mark.anyio


@asynccontextmanager
async def shop(
    tmp_path: Path, schema: GraphQLSchema | None, skus: Mapping[str, str] | None = None, **settings: Any
) -> AsyncIterator[World]:
    """A world with products on both sides and the order cursor initialised."""
    async with make_world(tmp_path, validate_schema=schema, settings=settings) as w:
        for sku, price in (skus or {"MUG-1": "125.00", "TEE-2": "250.00"}).items():
            w.shopify_sim.add_product(f"Product {sku}", [{"sku": sku, "price": price}])
            w.rackbeat.add_product(sku, stock=100)
        w.rackbeat.add_product("frakt", name="Frakt")
        await orders_flow(w).run_once()  # first start: the cursor is "now"
        w.tick(1)
        yield w


async def cycle(w: World, seconds: float = 60.0) -> int:
    w.tick(seconds)
    return await orders_flow(w).run_once()


def only_order(w: World, reference: str) -> Any:
    matches = [o for o in w.rackbeat.orders if o.your_reference == reference]
    assert len(matches) == 1, f"{reference}: {len(matches)} Rackbeat orders"
    return matches[0]


def shopify_name(w: World, order_id: str) -> str:
    return f"#{shopify_number(w, order_id)}"


def shopify_number(w: World, order_id: str) -> int:
    order = w.shopify_sim.node(order_id)
    assert isinstance(order, ShopifyOrder)
    return order.number


async def test_an_order_becomes_one_ready_to_ship_order_with_mapped_lines(
    tmp_path: Path, shopify_schema: GraphQLSchema
) -> None:
    async with shop(tmp_path, shopify_schema) as w:
        existing = w.rackbeat.add_customer("Åsa Öberg", "asa@example.se")
        order_id = w.shopify_sim.create_order(
            [("MUG-1", 2), ("TEE-2", 1)],
            email="ASA@Example.se",
            first_name="Åsa",
            last_name="Öberg",
            shipping_price="49.00",
            shipping_address={
                "address1": "Storgatan 1",
                "city": "Malmö",
                "zip": "211 22",
                "countryCodeV2": "SE",
            },
        )
        assert await cycle(w) == 1
        name = shopify_name(w, order_id)
        rb = only_order(w, name)
        assert rb.customer_id == existing  # matched by e-mail, case-insensitively
        lines = [(line.item_id, line.quantity, line.line_price) for line in rb.lines]
        # prices include 25 % VAT in Shopify; Rackbeat gets them without VAT
        assert lines == [
            ("MUG-1", Decimal(2), Decimal("100.00")),
            ("TEE-2", Decimal(1), Decimal("200.00")),
            ("frakt", Decimal(1), Decimal("39.20")),
        ]
        assert rb.is_booked
        assert rb.is_ready_for_shipping
        assert rb.mail_sent is False  # S9 default
        assert rb.payment_terms_id == "1"
        assert rb.our_reference == "1"
        assert "Malmö" in rb.delivery_address.values()
        assert rb.heading
        # nothing more to do: the next cycles send no order or customer writes
        before = sum(n for route, n in w.rackbeat.requests.items() if not route.startswith("GET"))
        for _ in range(3):
            assert await cycle(w) == 0
        assert sum(n for route, n in w.rackbeat.requests.items() if not route.startswith("GET")) == before
        assert w.metrics.value("orders", "imported") == 1


@pytest.mark.parametrize(
    ("status", "booked", "ready"),
    [("draft", False, False), ("booked", True, False), ("ready_to_ship", True, True)],
)
async def test_s1_decides_how_far_the_order_goes(
    tmp_path: Path, shopify_schema: GraphQLSchema, status: str, booked: bool, ready: bool
) -> None:
    async with shop(tmp_path, shopify_schema, sync_order_status=status) as w:
        order_id = w.shopify_sim.sell("MUG-1", 3)
        await cycle(w)
        rb = only_order(w, shopify_name(w, order_id))
        assert (rb.is_booked, rb.is_ready_for_shipping) == (booked, ready)
        # a draft does not reserve stock in Rackbeat, so its demand stays held for the stock flow
        assert await OrderDemand(w.store).unreserved() == ({"MUG-1": 3} if status == "draft" else {})


@pytest.mark.parametrize("send", [True, False])
async def test_s9_decides_the_confirmation_mail(
    tmp_path: Path, shopify_schema: GraphQLSchema, send: bool
) -> None:
    async with shop(
        tmp_path, shopify_schema, sync_send_order_confirmation=send, sync_order_status="booked"
    ) as w:
        order_id = w.shopify_sim.sell("MUG-1")
        await cycle(w)
        assert only_order(w, shopify_name(w, order_id)).mail_sent is send


async def test_s2_shopify_reuses_the_number_and_parks_a_taken_one(
    tmp_path: Path, shopify_schema: GraphQLSchema
) -> None:
    async with shop(tmp_path, shopify_schema, sync_order_number="shopify") as w:
        first = w.shopify_sim.sell("MUG-1")
        await cycle(w)
        number = str(shopify_number(w, first))
        assert only_order(w, shopify_name(w, first)).number == number

        # Rackbeat already has the next number (another sales channel took it)
        taken = str(int(number) + 1)
        w.rackbeat.add_customer("Other", "other@example.com", number="9000")
        await w.rackbeat_client.create_draft_order(
            order_body(customer="9000", number=taken, lines=[{"item_id": "MUG-1", "quantity": 1}])
        )
        blocked = w.shopify_sim.sell("MUG-1")
        after = w.shopify_sim.sell("TEE-2")
        await cycle(w)
        parked = await w.store.parked("orders")
        assert [(p.key, p.reason) for p in parked] == [(shopify_name(w, blocked), "NUMBER_TAKEN")]
        assert only_order(w, shopify_name(w, after)).number == str(int(number) + 2)


async def test_s2_rackbeat_numbers_the_order(tmp_path: Path, shopify_schema: GraphQLSchema) -> None:
    async with shop(tmp_path, shopify_schema) as w:
        w.rackbeat._next_order = 5000  # Rackbeat's own series
        order_id = w.shopify_sim.sell("MUG-1")
        await cycle(w)
        assert only_order(w, shopify_name(w, order_id)).number == "5000"


async def test_a_new_customer_gets_the_guides_settings(tmp_path: Path, shopify_schema: GraphQLSchema) -> None:
    async with shop(
        tmp_path,
        shopify_schema,
        sync_customer_group="2",
        sync_vat_zone="eu",
        sync_currency="EUR",
        sync_payment_terms="3",
    ) as w:
        w.shopify_sim.sell(
            "MUG-1", email="new@example.de", first_name="Jürgen", last_name="Groß", phone="+4930123"
        )
        await cycle(w)
        [customer] = [c for c in w.rackbeat.customers.values() if c.contact_email == "new@example.de"]
        assert (customer.name, customer.contact_phone) == ("Jürgen Groß", "+4930123")
        assert (
            customer.customer_group_id,
            customer.vat_zone,
            customer.currency,
            customer.payment_terms_id,
        ) == (
            "2",
            "eu",
            "EUR",
            "3",
        )
        # a second order of the same customer reuses it (cached: no second search)
        searches = w.rackbeat.requests["GET /customers"]
        w.shopify_sim.sell("TEE-2", email="NEW@example.de")
        await cycle(w)
        assert len([c for c in w.rackbeat.customers.values() if c.contact_email == "new@example.de"]) == 1
        assert w.rackbeat.requests["GET /customers"] == searches


async def test_an_order_without_email_is_parked_or_goes_to_the_fallback_customer(
    tmp_path: Path, shopify_schema: GraphQLSchema
) -> None:
    async with shop(tmp_path, shopify_schema) as w:
        order_id = w.shopify_sim.sell("MUG-1", email=None, first_name="Walk", last_name="In")
        await cycle(w)
        [parked] = await w.store.parked("orders")
        assert (parked.key, parked.reason) == (shopify_name(w, order_id), "NO_EMAIL")
        assert "SYNC_FALLBACK_CUSTOMER" in parked.detail
        assert await OrderDemand(w.store).unreserved() == {"MUG-1": 1}  # held while parked

    fallback = tmp_path / "fallback"
    fallback.mkdir()
    async with shop(fallback, shopify_schema, sync_fallback_customer="1001") as w:
        w.rackbeat.add_customer("Counter sales", number="1001")
        order_id = w.shopify_sim.sell("MUG-1", email=None, first_name="Walk", last_name="In")
        await cycle(w)
        assert only_order(w, shopify_name(w, order_id)).customer_id == "1001"


async def test_an_unknown_sku_parks_its_order_and_not_the_next(
    tmp_path: Path, shopify_schema: GraphQLSchema
) -> None:
    async with shop(tmp_path, shopify_schema) as w:
        w.shopify_sim.add_product("Not in Rackbeat", [{"sku": "GHOST-9", "price": "10.00"}])
        blocked = w.shopify_sim.create_order([("MUG-1", 1), ("GHOST-9", 2)])
        after = w.shopify_sim.sell("TEE-2")
        await cycle(w)
        [parked] = await w.store.parked("orders")
        assert (parked.key, parked.reason) == (shopify_name(w, blocked), "UNKNOWN_SKU")
        assert "'GHOST-9'" in parked.detail
        only_order(w, shopify_name(w, after))
        assert not [o for o in w.rackbeat.orders if o.your_reference == shopify_name(w, blocked)]

        # a parked order that did not change is not retried before it is due
        writes = w.rackbeat.requests["POST /orders/drafts"]
        await cycle(w)
        assert w.rackbeat.requests["POST /orders/drafts"] == writes

        # the product appears in Rackbeat; the stock flow wakes the order; the next cycle imports it
        w.rackbeat.add_product("GHOST-9", stock=5)
        assert await w.store.wake_parked("orders", "UNKNOWN_SKU", ["GHOST-9"]) == 1
        await cycle(w)
        only_order(w, shopify_name(w, blocked))
        assert await w.store.parked("orders") == []


async def test_a_250_line_order_with_non_ascii_names(tmp_path: Path, shopify_schema: GraphQLSchema) -> None:
    skus = {f"SKU-{n:03}": "12.50" for n in range(250)}
    async with shop(tmp_path, shopify_schema, skus=skus) as w:
        order_id = w.shopify_sim.create_order(
            [(sku, 1 + n % 3) for n, sku in enumerate(skus)],
            first_name="Søren",
            last_name="Ærøskøbing",
            email="soren@example.dk",
            shipping_price="49.00",
            shipping_address={
                "name": "Søren Ærøskøbing",
                "address1": "Æblevej 7",
                "city": "Århus",
                "zip": "8000",
                "countryCodeV2": "DK",
            },
        )
        await cycle(w)
        rb = only_order(w, shopify_name(w, order_id))
        assert len(rb.lines) == 251  # every line item (paged) plus shipping
        assert sum(line.quantity for line in rb.lines[:250]) == sum(1 + n % 3 for n in range(250))
        assert "Århus" in rb.delivery_address.values()
        assert any("Søren" in v for v in rb.delivery_address.values())


async def test_test_orders_and_cancelled_orders_are_not_imported(
    tmp_path: Path, shopify_schema: GraphQLSchema
) -> None:
    async with shop(tmp_path, shopify_schema) as w:
        w.shopify_sim.sell("MUG-1", test=True)
        cancelled = w.shopify_sim.sell("MUG-1")
        w.shopify_sim.cancel_order(cancelled)
        await cycle(w)
        assert w.rackbeat.orders == []
        assert await OrderDemand(w.store).unreserved() == {}


async def test_a_cancellation_after_import_is_recorded_and_shown_in_status(
    tmp_path: Path, shopify_schema: GraphQLSchema
) -> None:
    async with shop(tmp_path, shopify_schema) as w:
        order_id = w.shopify_sim.create_order([("MUG-1", 2), ("TEE-2", 1)])
        await cycle(w)
        rb = only_order(w, shopify_name(w, order_id))
        w.tick(600)
        w.shopify_sim.cancel_order(order_id)
        await cycle(w)
        note = await w.store.fetchval("SELECT note FROM order_ledger WHERE order_id = ?", (order_id,))
        assert f"cancelled in Shopify after transfer; Rackbeat order {rb.number} is ready to ship" in note
        assert [line.quantity for line in rb.lines][:2] == [Decimal(2), Decimal(1)]  # booked: untouched
        assert w.metrics.value("orders", "cancelled_after_transfer") == 1
        # the operator sees it in `status`
        out = io.StringIO()
        assert await app.status(w.settings, as_json=False, out=out) == 0
        assert f"{shopify_name(w, order_id)} (Rackbeat {rb.number}): cancelled in Shopify after transfer" in (
            out.getvalue()
        )


class Crash(BaseException):
    """The process dies here (a BaseException: no handler in the daemon may swallow it)."""


async def crash_and_restart(w: World, at: Callable[[httpx.Request, str], bool]) -> None:
    """A cycle that dies at the request ``at`` picks (``"before"`` it lands or ``"after"``:
    the answer is lost), then the process restarts."""

    def crash(request: httpx.Request, phase: str) -> None:
        if at(request, phase):
            raise Crash

    w.hook = crash
    with pytest.raises(Crash):
        await cycle(w)
    w.hook = None
    await w.restart()


@pytest.mark.parametrize(
    ("status", "numbering"),
    [("ready_to_ship", "rackbeat"), ("draft", "rackbeat"), ("ready_to_ship", "shopify")],
)
async def test_crashes_at_every_step_boundary_never_lose_or_duplicate_an_order(
    tmp_path: Path, shopify_schema: GraphQLSchema, status: str, numbering: str
) -> None:
    async with shop(tmp_path, shopify_schema, sync_order_status=status, sync_order_number=numbering) as w:
        ids = [
            w.shopify_sim.sell("MUG-1" if n % 2 else "TEE-2", 1 + n % 3, email=f"buyer{n % 7}@example.com")
            for n in range(50)
        ]
        writes = 0
        crashes: dict[str, int] = {}

        def crash_now(request: httpx.Request, phase: str) -> None:
            # every third write to Rackbeat dies: alternately before it lands and after
            # it landed with the answer lost (the worst moment: Rackbeat has it, we do not)
            nonlocal writes
            if request.url.host != "rackbeat.sim" or request.method == "GET":
                return
            if phase == "before":
                writes += 1
            if writes % 3 == 0 and phase == ("before" if writes % 2 else "after"):
                step = request.url.path.rsplit("/", 1)[-1]
                crashes[f"{phase} {step}"] = crashes.get(f"{phase} {step}", 0) + 1
                writes += 1  # the restarted process starts counting afresh
                raise Crash

        w.hook = crash_now
        for _ in range(400):
            try:
                await cycle(w, 1)
            except Crash:
                await w.restart()
                continue
            if await w.store.fetchval("SELECT COUNT(*) FROM order_ledger WHERE state = 'done'") == len(ids):
                break
        w.hook = None
        shipped = status == "ready_to_ship"
        for order_id in ids:
            assert w.rackbeat.order_count_by_reference(shopify_name(w, order_id)) == 1
            rb = only_order(w, shopify_name(w, order_id))
            assert (rb.is_booked, rb.is_ready_for_shipping) == (shipped, shipped)
            if numbering == "shopify":
                assert rb.number == str(shopify_number(w, order_id))
        assert len(w.rackbeat.orders) == 50
        assert len(w.rackbeat.customers) == 7  # one per e-mail, never a twin
        assert await w.store.parked("orders") == []
        # every kind of step boundary was hit, on both sides of the write
        assert {"before customers", "after customers", "before drafts", "after drafts"} <= set(crashes)
        if shipped:
            assert {"before book", "after book", "before create-shipment", "after create-shipment"} <= set(
                crashes
            )


async def test_a_malformed_order_is_parked_and_the_next_one_imported(
    tmp_path: Path, shopify_schema: GraphQLSchema
) -> None:
    async with shop(tmp_path, shopify_schema) as w:
        flow = orders_flow(w)
        broken = {"id": "gid://shopify/Order/999999", "name": "#BROKEN", "updatedAt": "2026-11-01T10:00:00Z"}
        assert await flow.apply(broken) is False
        [parked] = await w.store.parked("orders")
        assert (parked.key, parked.reason) == ("#BROKEN", "MALFORMED")
        order_id = w.shopify_sim.sell("MUG-1")
        await cycle(w)
        only_order(w, shopify_name(w, order_id))


# --- which orders: the import start ----------------------------------------------------------


async def test_orders_created_before_the_start_are_skipped_when_they_change_later(
    tmp_path: Path, shopify_schema: GraphQLSchema
) -> None:
    async with make_world(tmp_path, validate_schema=shopify_schema) as w:
        w.shopify_sim.add_product("Mug", [{"sku": "MUG-1", "price": "125.00"}])
        w.rackbeat.add_product("MUG-1", stock=100)
        w.rackbeat.add_product("frakt", name="Frakt")
        old = w.shopify_sim.sell("MUG-1", 2)  # placed before the daemon ever ran
        w.tick(60)
        await orders_flow(w).run_once()  # first start
        w.tick(3600)
        w.shopify_sim.edit_order(old, {"MUG-1": 1})  # fulfilled, refunded, tagged … : updated now
        new = w.shopify_sim.sell("MUG-1")
        await cycle(w)
        assert [o.your_reference for o in w.rackbeat.orders] == [shopify_name(w, new)]
        state, note = await w.store.fetchone(
            "SELECT state, note FROM order_ledger WHERE order_id = ?", (old,)
        ) or ("", "")
        assert state == "skipped"
        assert "before the import start" in note
        assert await OrderDemand(w.store).unreserved() == {}  # its stock is not held back either
        assert w.metrics.value("orders", "skipped_before_start") == 1
        out = io.StringIO()
        assert await app.status(w.settings, as_json=False, out=out) == 0
        assert "orders_skipped_before_start=1" in out.getvalue()
        # the start is stored: a restart much later does not move it
        await w.restart()
        w.tick(86400)
        w.shopify_sim.edit_order(old, {"MUG-1": 0})
        await cycle(w)
        assert len(w.rackbeat.orders) == 1


async def test_sync_orders_since_decides_by_creation_date(
    tmp_path: Path, shopify_schema: GraphQLSchema
) -> None:
    async with make_world(
        tmp_path, validate_schema=shopify_schema, settings={"sync_orders_since": "2026-11-01T10:30:00Z"}
    ) as w:
        w.shopify_sim.add_product("Mug", [{"sku": "MUG-1", "price": "125.00"}])
        w.rackbeat.add_product("MUG-1", stock=100)
        w.rackbeat.add_product("frakt", name="Frakt")
        too_old = w.shopify_sim.sell("MUG-1")  # 10:00, before SYNC_ORDERS_SINCE
        w.tick(3600)
        wanted = w.shopify_sim.sell("MUG-1")  # 11:00, after it
        w.shopify_sim.edit_order(too_old, {"MUG-1": 1})
        await cycle(w)
        assert [o.your_reference for o in w.rackbeat.orders] == [shopify_name(w, wanted)]


# --- drafts are read back ----------------------------------------------------------------------


async def test_a_draft_booked_or_cancelled_in_rackbeat_releases_its_demand(
    tmp_path: Path, shopify_schema: GraphQLSchema
) -> None:
    async with shop(tmp_path, shopify_schema, sync_order_status="draft") as w:
        first = w.shopify_sim.sell("MUG-1", 3)
        second = w.shopify_sim.sell("TEE-2", 2)
        await cycle(w)
        assert await OrderDemand(w.store).unreserved() == {"MUG-1": 3, "TEE-2": 2}
        # the merchant books one draft in Rackbeat (it now reserves its stock) and cancels the other
        w.rackbeat.book(only_order(w, shopify_name(w, first)).number)
        w.rackbeat.cancel(only_order(w, shopify_name(w, second)).number)
        await cycle(w)
        assert await OrderDemand(w.store).unreserved() == {}  # not counted twice
        # nothing more is read once no draft is left
        reads = w.rackbeat.requests["GET /orders/{number}"]
        await cycle(w)
        assert w.rackbeat.requests["GET /orders/{number}"] == reads


async def test_drafts_are_read_back_a_few_per_cycle(tmp_path: Path, shopify_schema: GraphQLSchema) -> None:
    async with shop(tmp_path, shopify_schema, sync_order_status="draft") as w:
        for _ in range(DRAFT_CHECKS_PER_CYCLE + 5):
            w.shopify_sim.sell("MUG-1")
        await cycle(w)
        for order in w.rackbeat.orders:
            w.rackbeat.book(order.number)
        before = w.rackbeat.requests["GET /orders/{number}"]
        await cycle(w)
        assert w.rackbeat.requests["GET /orders/{number}"] - before == DRAFT_CHECKS_PER_CYCLE
        assert await OrderDemand(w.store).unreserved() == {"MUG-1": 5}  # the rest on the next cycle
        await cycle(w)
        assert await OrderDemand(w.store).unreserved() == {}


# --- discounts that do not divide evenly ------------------------------------------------------------


async def test_an_uneven_order_discount_is_imported_to_the_cent(
    tmp_path: Path, shopify_schema: GraphQLSchema
) -> None:
    async with shop(tmp_path, shopify_schema, skus={"MUG-1": "100.00"}) as w:
        # 7 × 100 kr with 1 kr off the order: Shopify's unit price after discounts says 99.86
        order_id = w.shopify_sim.create_order(
            [{"sku": "MUG-1", "quantity": 7, "discount": "1.00"}],
            shipping_lines=[
                {"price": "49.00", "title": "PostNord"},
                {"price": "29.00", "title": "Gift wrap", "discount": "29.00"},  # free
                {"price": "10.00", "title": "Pick-up", "tax_rate": "0"},  # untaxed
            ],
        )
        await cycle(w)
        assert await w.store.parked("orders") == []
        rb = only_order(w, shopify_name(w, order_id))
        [mug, freight] = rb.lines
        assert mug.line_price == Decimal("79.8857")  # 699 / 1.25 / 7, to four decimals
        # Rackbeat's line with VAT is what the customer paid for it in Shopify, to the øre
        assert (mug.total * Decimal("1.25")).quantize(Decimal("0.01")) == Decimal("699.00")
        assert freight.line_price == Decimal("49.2")  # 49 / 1.25 taxed, the free line, 10 untaxed


async def test_an_order_with_many_shipping_lines_is_imported_whole(
    tmp_path: Path, shopify_schema: GraphQLSchema
) -> None:
    async with shop(tmp_path, shopify_schema) as w:
        order_id = w.shopify_sim.create_order(
            [("MUG-1", 1)], shipping_lines=[{"price": "12.50", "title": f"Parcel {n}"} for n in range(7)]
        )
        await cycle(w)
        assert await w.store.parked("orders") == []
        rb = only_order(w, shopify_name(w, order_id))
        assert rb.lines[-1].line_price == Decimal("70.00")  # 7 × 12.50 / 1.25


# --- one bad order does not block the others --------------------------------------------------------


async def test_an_order_that_keeps_failing_is_parked_and_the_others_go_on(
    tmp_path: Path, shopify_schema: GraphQLSchema
) -> None:
    async with shop(tmp_path, shopify_schema) as w:
        bad = w.shopify_sim.sell("MUG-1", email="bad@example.com")
        good = w.shopify_sim.sell("TEE-2")
        broken = True

        def rackbeat_fails_on_bad(request: httpx.Request, phase: str) -> None:
            # Rackbeat answers this one customer's search with an error, every time
            if broken and phase == "before" and "bad%40example.com" in str(request.url):
                raise httpx.ConnectError("Rackbeat failed on this record", request=request)

        w.hook = rackbeat_fails_on_bad
        flow = orders_flow(w)  # one flow, as the daemon runs it
        for attempt in range(1, 5):
            w.tick(60)
            with pytest.raises(TransportError):
                await flow.run_once()  # a failure may pass: the cycle stops and is tried again
            assert await w.store.parked("orders") == [], attempt
        assert not [o for o in w.rackbeat.orders if o.your_reference == shopify_name(w, good)]
        w.tick(60)
        await flow.run_once()  # the fifth failure in a row: set aside
        [parked] = await w.store.parked("orders")
        assert (parked.key, parked.reason) == (shopify_name(w, bad), "REPEATED_FAILURE")
        only_order(w, shopify_name(w, good))
        assert w.metrics.value("orders", "parked_repeated_failure") == 1
        # a cycle that got through only by setting it aside says nothing of the cause:
        # the next cycles go on without it, and it waits for its retry time
        w.tick(60)
        await flow.run_once()
        assert [p.key for p in await w.store.parked("orders")] == [shopify_name(w, bad)]
        # the cause clears; at its retry time the order goes through
        broken = False
        w.tick(300)
        await flow.run_once()
        only_order(w, shopify_name(w, bad))
        assert await w.store.parked("orders") == []
        assert await w.store.fetchval("SELECT failures FROM order_ledger WHERE order_id = ?", (bad,)) == 0


async def test_orders_set_aside_during_an_outage_are_retried_once_it_ends(
    tmp_path: Path, shopify_schema: GraphQLSchema
) -> None:
    async with shop(tmp_path, shopify_schema) as w:
        first = w.shopify_sim.sell("MUG-1")
        second = w.shopify_sim.sell("TEE-2")
        down = True

        def rackbeat_is_down(request: httpx.Request, phase: str) -> None:
            if down and phase == "before" and str(request.url).startswith(RACKBEAT_URL):
                raise httpx.ConnectError("Rackbeat is down", request=request)

        w.hook = rackbeat_is_down
        flow = orders_flow(w)
        for _ in range(5):  # the first order fails every time; the fifth sets it aside
            w.tick(60)
            with pytest.raises(TransportError):
                await flow.run_once()  # the second one fails too: still an outage
        assert [p.key for p in await w.store.parked("orders")] == [shopify_name(w, first)]
        down = False
        w.tick(60)
        await flow.run_once()  # the outage is over: the second goes in, the first is due again
        only_order(w, shopify_name(w, second))
        w.tick(60)
        await flow.run_once()  # long before its backoff would have ended
        only_order(w, shopify_name(w, first))
        assert await w.store.parked("orders") == []


async def test_a_single_failure_is_just_retried(tmp_path: Path, shopify_schema: GraphQLSchema) -> None:
    async with shop(tmp_path, shopify_schema) as w:
        order_id = w.shopify_sim.sell("MUG-1")
        failures = 0

        def fail_once(request: httpx.Request, phase: str) -> None:
            nonlocal failures
            if phase == "before" and request.url.path.endswith("/orders/drafts") and failures == 0:
                failures += 1
                raise httpx.ConnectError("refused", request=request)

        w.hook = fail_once
        await cycle(w)  # refused before it arrived: the client sends it again
        only_order(w, shopify_name(w, order_id))
        assert await w.store.parked("orders") == []


# --- several shops feed one Rackbeat -----------------------------------------------------------------


async def test_another_shops_order_of_the_same_name_is_not_adopted(
    tmp_path: Path, shopify_schema: GraphQLSchema
) -> None:
    async with shop(tmp_path, shopify_schema) as w:
        w.rackbeat.add_customer("Shop B customer", "b@example.com", number="9000")
        await w.rackbeat_client.create_draft_order(
            order_body(
                customer="9000",
                your_reference="#1001",
                heading="Shopify #1001 (other-shop.myshopify.com)",
                lines=[{"item_id": "MUG-1", "quantity": 5}],
            )
        )
        order_id = w.shopify_sim.sell("MUG-1")
        assert shopify_name(w, order_id) == "#1001"
        await cycle(w)
        assert w.rackbeat.order_count_by_reference("#1001") == 2
        ours = [o for o in w.rackbeat.orders if o.customer_id != "9000"]
        assert [o.heading for o in ours] == [f"Shopify #1001 ({w.settings.shop})"]
        assert [line.quantity for line in ours[0].lines][:1] == [Decimal(1)]


# --- smaller ----------------------------------------------------------------------------------------


async def test_an_order_cancelled_while_a_draft_is_not_booked(
    tmp_path: Path, shopify_schema: GraphQLSchema
) -> None:
    async with shop(tmp_path, shopify_schema) as w:
        order_id = w.shopify_sim.sell("MUG-1", 2)
        await crash_and_restart(w, lambda request, phase: request.url.path.endswith("/book"))
        (draft,) = [o for o in w.rackbeat.orders if o.your_reference == shopify_name(w, order_id)]
        w.shopify_sim.cancel_order(order_id)
        await cycle(w, 600)
        # the draft is deleted in Rackbeat, never booked
        assert [o for o in w.rackbeat.orders if o.your_reference == shopify_name(w, order_id)] == []
        assert await OrderDemand(w.store).unreserved() == {}
        out = io.StringIO()
        assert await app.status(w.settings, as_json=False, out=out) == 0
        assert (
            f"{shopify_name(w, order_id)} (Rackbeat {draft.number}): cancelled in Shopify after transfer; "
            f"Rackbeat order {draft.number} deleted"
        ) in out.getvalue()


async def test_an_order_with_an_unknown_sku_creates_no_customer(
    tmp_path: Path, shopify_schema: GraphQLSchema
) -> None:
    async with shop(tmp_path, shopify_schema) as w:
        w.shopify_sim.add_product("Not in Rackbeat", [{"sku": "GHOST-9", "price": "10.00"}])
        blocked = w.shopify_sim.create_order([("MUG-1", 1), ("GHOST-9", 2)], email="new@example.com")
        await cycle(w)
        [parked] = await w.store.parked("orders")
        assert (parked.key, parked.reason) == (shopify_name(w, blocked), "UNKNOWN_SKU")
        assert "'GHOST-9'" in parked.detail
        assert w.rackbeat.customers == {}  # no orphan customer in Rackbeat
        assert w.metrics.value("orders", "parked_unknown_sku") == 1


async def test_a_cached_customer_deleted_in_rackbeat_is_resolved_again(
    tmp_path: Path, shopify_schema: GraphQLSchema
) -> None:
    async with shop(tmp_path, shopify_schema) as w:
        w.shopify_sim.sell("MUG-1", email="anna@example.se")
        await cycle(w)
        [gone] = list(w.rackbeat.customers)
        del w.rackbeat.customers[gone]  # deleted in Rackbeat; the daemon still has it cached
        second = w.shopify_sim.sell("TEE-2", email="anna@example.se")
        await cycle(w)
        [parked] = await w.store.parked("orders")
        assert parked.reason == "REJECTED"
        assert w.metrics.value("orders", "parked_rejected") == 1
        await cycle(w, 600)  # the retry resolves the customer afresh
        rb = only_order(w, shopify_name(w, second))
        assert rb.customer_id != gone
        assert rb.customer_id in w.rackbeat.customers
        assert await w.store.parked("orders") == []


async def test_an_order_parked_for_a_line_without_sku_still_holds_its_stock(
    tmp_path: Path, shopify_schema: GraphQLSchema
) -> None:
    async with shop(tmp_path, shopify_schema) as w:
        w.shopify_sim.create_order(
            [("MUG-1", 2), {"sku": "", "quantity": 1, "price": "50.00", "title": "Gift wrap"}]
        )
        await cycle(w)
        [parked] = await w.store.parked("orders")
        assert parked.reason == "NO_SKU"
        # the two mugs are sold in Shopify: the stock flow keeps holding them back
        assert await OrderDemand(w.store).unreserved() == {"MUG-1": 2}


async def test_a_catch_up_from_far_back_reports_its_progress(
    tmp_path: Path, shopify_schema: GraphQLSchema
) -> None:
    async with make_world(
        tmp_path, validate_schema=shopify_schema, settings={"sync_orders_since": "2026-10-30T00:00:00Z"}
    ) as w:
        w.shopify_sim.add_product("Mug", [{"sku": "MUG-1", "price": "125.00"}])
        w.rackbeat.add_product("MUG-1", stock=100)
        w.rackbeat.add_product("frakt", name="Frakt")
        for _ in range(7):
            w.shopify_sim.sell("MUG-1")
        with capture_logs() as logs:
            await cycle(w)  # two days behind: the operator is told how the catch-up goes
            await cycle(w)  # caught up: nothing more to say
        done = [e for e in logs if (e["event"], e.get("work")) == ("progress.done", "order catch-up")]
        assert [e["records"] for e in done] == [7]
        assert len(w.rackbeat.orders) == 7


# --- lost answers: settled inside the cycle -------------------------------------------------------------


def posts_to(suffix: str) -> Callable[[httpx.Request], bool]:
    return lambda request: request.method == "POST" and request.url.path.endswith(suffix)


async def test_forty_orders_with_a_dozen_lost_draft_answers_import_in_one_cycle(
    tmp_path: Path, shopify_schema: GraphQLSchema
) -> None:
    async with shop(tmp_path, shopify_schema) as w:
        ids = [
            w.shopify_sim.sell("MUG-1" if n % 2 else "TEE-2", 1 + n % 3, email=f"buyer{n % 7}@example.com")
            for n in range(40)
        ]
        lossy = LostAnswers.on(w.rackbeat, posts_to("/orders/drafts"), every=3)
        w.tick(60)
        started = w.clock.monotonic()
        with capture_logs() as logs:
            assert await orders_flow(w).run_once() == 40  # one cycle, no failure
        assert len(lossy.lost) >= 12
        assert set(lossy.lost) == set(LostAnswers.KINDS)
        assert w.clock.monotonic() - started < 1  # settled by reading back, not by backing off
        for order_id in ids:
            rb = only_order(w, shopify_name(w, order_id))
            assert (rb.is_booked, rb.is_ready_for_shipping) == (True, True)
        assert len(w.rackbeat.orders) == 40
        assert len(w.rackbeat.customers) == 7
        assert await w.store.parked("orders") == []
        settled = [e["outcome"] for e in logs if e["event"] == "write.ambiguous"]
        # a timeout before it landed is written again; the others are adopted
        assert settled.count("not_applied") == lossy.lost.count("not applied")
        assert settled.count("applied") == len(lossy.lost) - lossy.lost.count("not applied")
        assert len([e for e in logs if e["event"] == "order.imported"]) == 40


async def test_lost_customer_answers_never_make_a_twin(tmp_path: Path, shopify_schema: GraphQLSchema) -> None:
    async with shop(tmp_path, shopify_schema) as w:
        ids = [w.shopify_sim.sell("MUG-1", email=f"new{n}@example.com") for n in range(8)]
        lossy = LostAnswers.on(w.rackbeat, posts_to("/customers"))
        assert await cycle(w) == 8
        assert set(lossy.lost) == set(LostAnswers.KINDS)  # every answer lost, resends too
        assert sorted(c.contact_email or "" for c in w.rackbeat.customers.values()) == sorted(
            f"new{n}@example.com" for n in range(8)
        )
        for order_id in ids:
            only_order(w, shopify_name(w, order_id))
        assert await w.store.parked("orders") == []


@pytest.mark.parametrize("step", ["/book", "/create-shipment"])
async def test_lost_booking_and_shipment_answers_are_settled_by_the_orders_flags(
    tmp_path: Path, shopify_schema: GraphQLSchema, step: str
) -> None:
    async with shop(tmp_path, shopify_schema, sync_send_order_confirmation=True) as w:
        ids = [w.shopify_sim.sell("TEE-2", email=f"b{n}@example.com") for n in range(4)]
        lossy = LostAnswers.on(w.rackbeat, posts_to(step))
        reached = lossy.reaching()
        assert await cycle(w) == 4
        assert set(lossy.lost) == set(LostAnswers.KINDS)
        for order_id in ids:
            rb = only_order(w, shopify_name(w, order_id))
            assert (rb.is_booked, rb.is_ready_for_shipping) == (True, True)
        # each reached Rackbeat once: sent again only where it did not land (one booking
        # mail, one shipment per order)
        paths = [r.url.path for r in reached]
        assert sorted(paths) == sorted(set(paths))
        assert len(paths) == len(ids)
        assert await w.store.parked("orders") == []


async def test_a_lost_answer_while_rackbeat_goes_down_fails_the_cycle_and_makes_no_twin(
    tmp_path: Path, shopify_schema: GraphQLSchema
) -> None:
    async with shop(tmp_path, shopify_schema) as w:
        order_id = w.shopify_sim.sell("MUG-1")
        lossy = LostAnswers.on(w.rackbeat, posts_to("/orders/drafts"))
        lossy.KINDS = ("reset",)  # landed, answer lost …
        original = lossy.__call__

        async def then_down(request: httpx.Request) -> httpx.Response:
            before = len(lossy.lost)
            try:
                return await original(request)
            finally:
                if len(lossy.lost) > before:
                    lossy.down = True  # … and the read-back finds Rackbeat gone

        w.rackbeat.handle = then_down  # type: ignore[method-assign]
        with pytest.raises(TransportError):
            await cycle(w)
        assert w.rackbeat.order_count_by_reference(shopify_name(w, order_id)) == 1
        lossy.down = False
        lossy.lost_every = 0
        await cycle(w)
        rb = only_order(w, shopify_name(w, order_id))
        assert rb.is_ready_for_shipping
        assert await w.store.parked("orders") == []


# --- Rackbeat requests per order: the reference search only where a draft may exist --------------


async def test_an_order_costs_three_rackbeat_requests_for_a_known_customer_and_five_for_a_new_one(
    tmp_path: Path, shopify_schema: GraphQLSchema
) -> None:
    async with shop(tmp_path, shopify_schema) as w:
        flow = orders_flow(w)  # one process: the products it looked up once stay known
        w.shopify_sim.sell("MUG-1", email="known@example.com", shipping_price="49.00")
        w.tick(60)
        await flow.run_once()  # the customer is created and cached; MUG-1 and frakt looked up
        w.rackbeat.add_customer("Known to Rackbeat only", "rackbeat-only@example.com")
        steps = {
            "POST /orders/drafts": 1,
            "POST /orders/{number}/book": 1,
            "POST /orders/{number}/create-shipment": 1,
        }
        expected = {
            "known@example.com": steps,
            "rackbeat-only@example.com": {"GET /customers": 1, **steps},
            "new@example.com": {"GET /customers": 1, "POST /customers": 1, **steps},
        }
        for email, requests in expected.items():
            order_id = w.shopify_sim.sell("MUG-1", email=email, shipping_price="49.00")
            w.rackbeat.reset_counts()
            w.tick(60)
            assert await flow.run_once() == 1
            assert dict(w.rackbeat.requests) == requests, email
            assert only_order(w, shopify_name(w, order_id)).is_ready_for_shipping
        assert w.metrics.value("orders", "adopted") == 0


@pytest.mark.parametrize("numbering", ["rackbeat", "shopify"])
async def test_a_crash_after_the_draft_landed_is_adopted_on_restart(
    tmp_path: Path, shopify_schema: GraphQLSchema, numbering: str
) -> None:
    async with shop(tmp_path, shopify_schema, sync_order_number=numbering) as w:
        order_id = w.shopify_sim.sell("MUG-1", email="buyer@example.com")
        await crash_and_restart(
            w, lambda request, phase: phase == "after" and posts_to("/orders/drafts")(request)
        )
        w.rackbeat.reset_counts()
        assert await cycle(w) == 1
        name = shopify_name(w, order_id)
        assert w.rackbeat.order_count_by_reference(name) == 1
        assert only_order(w, name).is_ready_for_shipping
        # searched for before anything was sent again (with S2 = shopify a second create
        # would have been refused for its number and the order parked NUMBER_TAKEN)
        assert w.rackbeat.requests["GET /orders"] == 1
        assert "POST /orders/drafts" not in w.rackbeat.requests
        assert await w.store.parked("orders") == []
        assert w.metrics.value("orders", "adopted") == 1


async def test_an_order_left_at_customer_by_an_older_release_is_adopted(
    tmp_path: Path, shopify_schema: GraphQLSchema
) -> None:
    """An older release sent the draft from the ledger state "customer" too (and searched
    before every create): its rows in "customer" are searched for after the upgrade."""
    async with shop(tmp_path, shopify_schema) as w:
        order_id = w.shopify_sim.sell("MUG-1", email="buyer@example.com")
        name = shopify_name(w, order_id)
        customer = w.rackbeat.add_customer("Buyer", "buyer@example.com")
        # the older release's draft (its heading did not name the shop) and ledger row
        await w.rackbeat_client.create_draft_order(
            order_body(
                customer=customer,
                your_reference=name,
                heading=f"Shopify {name}",
                lines=[{"item_id": "MUG-1", "quantity": 1}],
            )
        )
        async with w.store.transaction() as tx:
            await tx.execute(
                "INSERT INTO order_ledger (shop, order_id, order_name, state, customer_number, created_at, "
                "updated_at) VALUES (?, ?, ?, 'customer', ?, '2026-11-01', '2026-11-01')",
                (w.store.shop, order_id, name, customer),
            )
        assert await cycle(w) == 1
        assert w.rackbeat.order_count_by_reference(name) == 1
        assert only_order(w, name).is_ready_for_shipping
        assert w.metrics.value("orders", "adopted") == 1


async def test_orders_older_than_a_new_state_db_are_searched_for_before_they_are_made(
    tmp_path: Path, shopify_schema: GraphQLSchema
) -> None:
    """The state file was deleted and the daemon started again with SYNC_ORDERS_SINCE in
    the past: the orders the old file imported are adopted, not made a second time."""
    since = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)
    async with shop(tmp_path, shopify_schema, sync_orders_since=since) as w:
        imported = w.shopify_sim.sell("MUG-1", email="buyer@example.com")
        await cycle(w)
        await w.store.close()
        for path in w.settings.sync_db.parent.glob(f"{w.settings.sync_db.name}*"):
            path.unlink()
        w.store = await Store.open(w.settings.sync_db, w.settings.shop)
        await cycle(w)  # the new file's first start
        later_order = w.shopify_sim.sell("TEE-2", email="buyer@example.com")
        w.rackbeat.reset_counts()
        await cycle(w)
        assert w.rackbeat.order_count_by_reference(shopify_name(w, imported)) == 1
        assert only_order(w, shopify_name(w, later_order)).is_ready_for_shipping
        assert w.metrics.value("orders", "adopted") == 1
        # the order placed after the new file's first start was not searched for
        assert w.rackbeat.requests["GET /orders"] == 0


async def test_a_restored_backup_adopts_the_orders_imported_after_it_once_told_to(
    tmp_path: Path, shopify_schema: GraphQLSchema
) -> None:
    """README, "Upgrading": the restored file's first-start row is deleted before the start."""
    async with shop(tmp_path, shopify_schema) as w:
        backup = tmp_path / "backup.db"
        with sqlite3.connect(w.settings.sync_db) as live, sqlite3.connect(backup) as copy:
            live.backup(copy)
        w.tick(60)
        order_id = w.shopify_sim.sell("MUG-1", email="buyer@example.com")
        assert await cycle(w) == 1
        await w.store.close()
        for path in w.settings.sync_db.parent.glob(f"{w.settings.sync_db.name}*"):
            path.unlink()
        backup.rename(w.settings.sync_db)
        with sqlite3.connect(w.settings.sync_db) as db:
            db.execute("DELETE FROM cursors WHERE flow = 'orders.first_start'")
        w.store = await Store.open(w.settings.sync_db, w.settings.shop)
        await cycle(w)
        assert w.rackbeat.order_count_by_reference(shopify_name(w, order_id)) == 1
        assert w.metrics.value("orders", "adopted") == 1
