"""Rackbeat ships → Shopify fulfils, with tracking, exactly once (both simulators)."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from graphql import GraphQLSchema

from daemon import app
from daemon.errors import RetriableError
from daemon.flows.fulfilments import MAX_FAILURES, READ_BACKS_PER_CYCLE
from daemon.services import Services
from daemon.shutdown import Shutdown
from daemon.sim.faults import LostAnswers
from daemon.sim.shopify import Order as ShopifyOrder
from tests.harness import World, fulfilments_flow, make_world, orders_flow

pytestmark = pytest.mark.anyio

SKUS = ("MUG-1", "TEE-2", "CAP-3")


class Crash(BaseException):
    """The process dies here (no handler in the daemon may swallow a BaseException)."""


@asynccontextmanager
async def shop(tmp_path: Path, schema: GraphQLSchema | None, **settings: Any) -> AsyncIterator[World]:
    """Products on both sides; both flows' cursors set (their first start)."""
    async with make_world(tmp_path, validate_schema=schema, settings=settings) as w:
        for sku in SKUS:
            w.shopify_sim.add_product(f"Product {sku}", [{"sku": sku, "price": "100.00", "stock": 500}])
            w.rackbeat.add_product(sku, stock=500)
        w.rackbeat.add_product("frakt", name="Frakt")
        await orders_flow(w).run_once()
        await fulfilments_flow(w).run_once()
        w.tick(1)
        yield w


async def imported(w: World, lines: Sequence[Sequence[tuple[str, int]]]) -> list[tuple[str, str]]:
    """Place orders in Shopify, import them; return (Shopify id, Rackbeat number) each."""
    ids = [w.shopify_sim.create_order(list(order_lines), shipping_price="49.00") for order_lines in lines]
    w.tick(60)
    await orders_flow(w).run_once()
    pairs = []
    for order_id in ids:
        node = w.shopify_sim.node(order_id)
        assert isinstance(node, ShopifyOrder)
        (rb,) = [o for o in w.rackbeat.orders if o.your_reference == node.name]
        pairs.append((order_id, rb.number))
    return pairs


async def cycle(w: World, seconds: float = 60.0) -> int:
    w.tick(seconds)
    return await fulfilments_flow(w).run_once()


def fulfilled_units(w: World, order_id: str) -> dict[str, int]:
    node = w.shopify_sim.node(order_id)
    assert isinstance(node, ShopifyOrder)
    return {line.sku or "": line.fulfilled_quantity for line in node.line_items}


def shopify_posts(w: World, operation: str) -> int:
    return w.shopify_sim.requests[operation]


async def test_shipped_orders_are_fulfilled_once_with_their_tracking(
    tmp_path: Path, shopify_schema: GraphQLSchema
) -> None:
    async with shop(tmp_path, shopify_schema) as w:
        orders = await imported(w, [[(SKUS[n % 3], 1 + n % 2)] for n in range(12)])
        for n, (_, number) in enumerate(orders[:8]):
            if n < 5:
                w.rackbeat.ship(
                    number, carrier="PostNord", tracking=f"PN{n:04}", url=f"https://track.example/PN{n:04}"
                )
            else:
                w.rackbeat.ship(number)
        w.rackbeat.reset_counts()
        w.shopify_sim.reset_requests()
        assert await cycle(w) == 8
        for n, (order_id, _) in enumerate(orders):
            sent = w.shopify_sim.fulfillments(order_id)
            if n >= 8:
                assert sent == []  # not shipped: not fulfilled
                continue
            (fulfilment,) = sent
            sku = SKUS[n % 3]
            assert fulfilled_units(w, order_id)[sku] == 1 + n % 2
            if n < 5:
                assert (fulfilment.tracking_company, fulfilment.tracking_number, fulfilment.tracking_url) == (
                    "PostNord",
                    f"PN{n:04}",
                    f"https://track.example/PN{n:04}",
                )
            else:
                assert fulfilment.tracking_number is None
            assert fulfilment.notify_customer is True
        # per shipped order: one Shopify read and one write; Rackbeat: the one list (the
        # shipped orders among those updated since) and one shipments read per shipped order
        assert shopify_posts(w, "OrderFulfilment") == 8
        assert shopify_posts(w, "FulfillmentCreate") == 8
        assert w.rackbeat.request_total() == 1 + 8
        # the next cycles send nothing again
        assert await cycle(w) == 0
        assert await cycle(w, 3600) == 0
        assert all(
            len(w.shopify_sim.fulfillments(o)) == (1 if n < 8 else 0) for n, (o, _) in enumerate(orders)
        )


async def test_an_idle_cycle_costs_one_rackbeat_request_whatever_is_open(
    tmp_path: Path, shopify_schema: GraphQLSchema
) -> None:
    async with shop(tmp_path, shopify_schema) as w:
        await imported(w, [[("MUG-1", 1)] for _ in range(40)])
        await cycle(w)
        w.rackbeat.reset_counts()
        w.shopify_sim.reset_requests()
        assert await cycle(w) == 0
        assert w.rackbeat.request_total() == 1
        assert len(w.shopify_sim.requests) == 0


async def test_lost_fulfilment_answers_are_settled_without_a_second_fulfilment(
    tmp_path: Path, shopify_schema: GraphQLSchema
) -> None:
    async with shop(tmp_path, shopify_schema) as w:
        orders = await imported(w, [[("MUG-1", 2)], [("TEE-2", 1)], [("CAP-3", 1)], [("MUG-1", 1)]])
        for n, (_, number) in enumerate(orders):
            w.rackbeat.ship(number, tracking=f"T{n}")
        # every fulfillmentCreate loses its answer: truncated, reset, timed out (all three
        # applied) and not applied at all
        lossy = LostAnswers.on(w.shopify_sim, lambda request: b"fulfillmentCreate" in request.content)
        assert await cycle(w) == 4
        assert set(lossy.lost) == set(LostAnswers.KINDS)
        for n, (order_id, _) in enumerate(orders):
            assert [f.tracking_number for f in w.shopify_sim.fulfillments(order_id)] == [f"T{n}"]
        rows = await w.store.fetchall("SELECT state, fulfillment_id FROM fulfilments")
        assert [state for state, _ in rows] == ["done"] * 4
        assert all(fid for _, fid in rows)


async def test_a_crash_between_sending_and_recording_never_fulfils_twice(
    tmp_path: Path, shopify_schema: GraphQLSchema
) -> None:
    async with shop(tmp_path, shopify_schema) as w:
        orders = await imported(w, [[("MUG-1", 1)], [("TEE-2", 2)], [("CAP-3", 1)]])
        for _, number in orders:
            w.rackbeat.ship(number, tracking="PN1")

        def die_after_fulfilling(request: httpx.Request, phase: str) -> None:
            if phase == "after" and b"fulfillmentCreate" in request.content:
                raise Crash

        w.hook = die_after_fulfilling
        for _ in range(10):
            try:
                await cycle(w)
                break
            except Crash:
                await w.restart()
        w.hook = None
        await cycle(w)
        for order_id, _ in orders:
            assert len(w.shopify_sim.fulfillments(order_id)) == 1
        assert await w.store.fetchval("SELECT COUNT(*) FROM fulfilments WHERE state = 'done'") == 3


async def test_a_partial_shipment_fulfils_its_lines_and_the_rest_follows(
    tmp_path: Path, shopify_schema: GraphQLSchema
) -> None:
    async with shop(tmp_path, shopify_schema) as w:
        ((order_id, number),) = await imported(w, [[("MUG-1", 3), ("TEE-2", 1)]])
        w.rackbeat.ship(number, lines=[("MUG-1", 2)], tracking="A1")
        await cycle(w)
        assert fulfilled_units(w, order_id) == {"MUG-1": 2, "TEE-2": 0}
        w.rackbeat.ship(number, tracking="A2")  # the rest
        await cycle(w)
        assert fulfilled_units(w, order_id) == {"MUG-1": 3, "TEE-2": 1}
        assert [f.tracking_number for f in w.shopify_sim.fulfillments(order_id)] == ["A1", "A2"]
        assert (
            await w.store.fetchval("SELECT fulfilment FROM order_ledger WHERE order_id = ?", (order_id,))
            == "done"
        )


async def test_tracking_added_in_rackbeat_later_is_added_to_the_fulfilment_once(
    tmp_path: Path, shopify_schema: GraphQLSchema
) -> None:
    async with shop(tmp_path, shopify_schema) as w:
        ((order_id, number),) = await imported(w, [[("MUG-1", 1)]])
        w.rackbeat.ship(number)
        await cycle(w)
        (fulfilment,) = w.shopify_sim.fulfillments(order_id)
        assert fulfilment.tracking_number is None
        w.rackbeat.add_tracking(number, number="DHL-9", url="https://dhl.example/9", carrier="DHL")
        await cycle(w)
        await cycle(w)
        (fulfilment,) = w.shopify_sim.fulfillments(order_id)
        assert (fulfilment.tracking_company, fulfilment.tracking_number) == ("DHL", "DHL-9")
        assert shopify_posts(w, "FulfillmentTrackingUpdate") == 1


async def test_an_order_fulfilled_in_shopify_already_is_recorded_without_a_write(
    tmp_path: Path, shopify_schema: GraphQLSchema
) -> None:
    async with shop(tmp_path, shopify_schema) as w:
        ((order_id, number),) = await imported(w, [[("MUG-1", 1)]])
        w.shopify_sim.fulfill_order(order_id)  # by hand
        w.rackbeat.ship(number, tracking="X")
        await cycle(w)
        assert len(w.shopify_sim.fulfillments(order_id)) == 1  # the one made by hand
        assert shopify_posts(w, "FulfillmentCreate") == 0
        assert await w.store.fetchval("SELECT state FROM fulfilments") == "done"


async def test_held_or_moved_fulfillment_orders_are_parked_and_retried(
    tmp_path: Path, shopify_schema: GraphQLSchema
) -> None:
    async with shop(tmp_path, shopify_schema) as w:
        (held, _), (moved, _) = orders = await imported(w, [[("MUG-1", 1)], [("TEE-2", 1)]])
        elsewhere = w.shopify_sim.add_location("Shop floor")
        w.shopify_sim.hold_fulfillment_order(held)
        w.shopify_sim.move_fulfillment_order(moved, elsewhere)
        for _, number in orders:
            w.rackbeat.ship(number)
        await cycle(w)
        reasons = {p.reason for p in await w.store.parked("fulfilments")}
        assert reasons == {"FULFILMENT_ON_HOLD", "FULFILMENT_ELSEWHERE"}
        assert w.shopify_sim.fulfillments(held) == []
        assert w.shopify_sim.fulfillments(moved) == []
        # the hold is released; the parked order is tried again after its backoff
        w.shopify_sim.release_fulfillment_order(held)
        await cycle(w, 600)
        assert len(w.shopify_sim.fulfillments(held)) == 1
        assert [p.reason for p in await w.store.parked("fulfilments")] == ["FULFILMENT_ELSEWHERE"]


async def test_an_order_cancelled_after_transfer_is_never_fulfilled(
    tmp_path: Path, shopify_schema: GraphQLSchema
) -> None:
    async with shop(tmp_path, shopify_schema) as w:
        ((order_id, number),) = await imported(w, [[("MUG-1", 1)]])
        w.shopify_sim.cancel_order(order_id)
        w.tick(600)
        await orders_flow(w).run_once()
        w.rackbeat.ship(number)
        await cycle(w)
        assert w.shopify_sim.fulfillments(order_id) == []
        assert shopify_posts(w, "FulfillmentCreate") == 0


async def test_ignored_list_filters_fall_back_to_reading_orders_back(
    tmp_path: Path, shopify_schema: GraphQLSchema
) -> None:
    async with shop(tmp_path, shopify_schema) as w:
        orders = await imported(w, [[("MUG-1", 1)] for _ in range(3)])
        w.tick(600)
        w.rackbeat.ship(orders[1][1])
        await cycle(w)  # the cursor moves to that shipment, ten minutes after the imports
        w.rackbeat.ignore_order_filters = True
        w.rackbeat.ship(orders[0][1], tracking="R1")
        await cycle(w)  # the list holds the imports too, older than asked for: it switches
        assert await w.store.get_cursor("fulfilments.detection") is not None
        await cycle(w)
        assert len(w.shopify_sim.fulfillments(orders[0][0])) == 1
        assert len(w.shopify_sim.fulfillments(orders[1][0])) == 1
        assert w.shopify_sim.fulfillments(orders[2][0]) == []
        out = io.StringIO()
        assert await app.status(w.settings, as_json=False, out=out) == 0
        assert "reading orders back (Rackbeat ignored" in out.getvalue()
        # the read-back is bounded per cycle
        w.rackbeat.reset_counts()
        await cycle(w, 3600)
        assert w.rackbeat.request_total() <= READ_BACKS_PER_CYCLE + 1


async def test_sync_fulfilments_false_builds_no_fulfilments_flow(
    tmp_path: Path, shopify_schema: GraphQLSchema
) -> None:
    async with shop(tmp_path, shopify_schema, sync_fulfilments=False) as w:
        services = Services(
            settings=w.settings,
            store=w.store,
            http=w.http,  # type: ignore[arg-type]
            shopify=w.shopify,
            rackbeat=w.rackbeat_client,
            metrics=w.metrics,
        )
        names = [flow.name for flow in app.build_flows(services, Shutdown())]
        assert "fulfilments" not in names
        assert "orders" in names


async def test_an_order_shopify_keeps_failing_on_is_set_aside_and_the_others_fulfilled(
    tmp_path: Path, shopify_schema: GraphQLSchema
) -> None:
    async with shop(tmp_path, shopify_schema) as w:
        (bad, bad_number), (good, good_number) = await imported(w, [[("MUG-1", 1)], [("TEE-2", 1)]])
        for number in (bad_number, good_number):
            w.rackbeat.ship(number)

        def always_down_for_one(request: httpx.Request, phase: str) -> None:
            if phase == "before" and bad.encode() in request.content:
                raise httpx.ConnectError("down for this order", request=request)

        w.hook = always_down_for_one
        flow = fulfilments_flow(w)  # the daemon keeps its flows (and their failure counts)
        failed = 0
        for _ in range(MAX_FAILURES + 2):
            w.tick(60)
            try:
                await flow.run_once()
            except RetriableError:
                failed += 1
        assert failed == MAX_FAILURES - 1  # then it is set aside and the cycle gets through
        assert [p.reason for p in await w.store.parked("fulfilments")] == ["REPEATED_FAILURE"]
        assert len(w.shopify_sim.fulfillments(good)) == 1
        w.hook = None
        await cycle(w, 600)  # retried after its backoff
        assert len(w.shopify_sim.fulfillments(bad)) == 1
        assert await w.store.parked("fulfilments") == []


async def test_an_order_listed_late_within_the_overlap_is_still_fulfilled_and_then_the_lists_start_at_the_cursor(
    tmp_path: Path, shopify_schema: GraphQLSchema
) -> None:
    async with shop(tmp_path, shopify_schema) as w:
        (first, first_number), (late, late_number), (other, _) = await imported(
            w, [[("MUG-1", 1)], [("TEE-2", 1)], [("CAP-3", 1)]]
        )
        w.rackbeat.ship(first_number)
        await cycle(w, 30)
        # saved in Rackbeat 30 s before the one already seen, listed only now
        w.rackbeat.ship(late_number)
        w.rackbeat.order(late_number).updated_at = w.rackbeat.order(first_number).updated_at - timedelta(
            seconds=30
        )
        await cycle(w, 30)
        assert len(w.shopify_sim.fulfillments(late)) == 1
        assert len(w.shopify_sim.fulfillments(first)) == 1
        # once a scan has run the overlap after the cursor moved, an idle cycle lists from the
        # cursor: only the order at the cursor itself, at no cost beyond the one list
        await cycle(w, 150)
        await cycle(w, 60)
        w.rackbeat.reset_counts()
        assert await cycle(w) == 0
        assert w.rackbeat.request_total() == 1
        assert len(w.shopify_sim.fulfillments(other)) == 0
