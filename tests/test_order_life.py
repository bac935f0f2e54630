"""An order's life around its transfer: SYNC_ORDER_TRIGGER, cancellations and edits after it."""

from __future__ import annotations

import io
import json
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from graphql import GraphQLSchema

from daemon import app
from daemon.config import OrderTrigger
from daemon.demand import OrderDemand
from daemon.flows.orders import trigger_wait
from daemon.reconcile import reconcile
from daemon.services import Services
from daemon.sim.shopify import Order as ShopifyOrder
from daemon.store import PARKED_FOR_A_PERSON
from tests.harness import World, make_world, orders_flow

pytestmark = pytest.mark.anyio


@asynccontextmanager
async def shop(
    tmp_path: Path, schema: GraphQLSchema | None, skus: Mapping[str, int] | None = None, **settings: Any
) -> AsyncIterator[World]:
    """Products on both sides (Shopify's stock as Rackbeat's) and the order cursor set."""
    async with make_world(tmp_path, validate_schema=schema, settings=settings) as w:
        for sku, stock in (skus or {"MUG-1": 10, "TEE-2": 10}).items():
            w.shopify_sim.add_product(f"Product {sku}", [{"sku": sku, "price": "100.00", "stock": stock}])
            w.rackbeat.add_product(sku, stock=stock)
        w.rackbeat.add_product("frakt", name="Frakt")
        await orders_flow(w).run_once()
        w.tick(1)
        yield w


async def cycle(w: World, seconds: float = 60.0) -> int:
    w.tick(seconds)
    return await orders_flow(w).run_once()


def name_of(w: World, order_id: str) -> str:
    order = w.shopify_sim.node(order_id)
    assert isinstance(order, ShopifyOrder)
    return order.name


def rackbeat_orders(w: World, order_id: str) -> list[Any]:
    return [o for o in w.rackbeat.orders if o.your_reference == name_of(w, order_id)]


async def status_text(w: World) -> str:
    out = io.StringIO()
    assert await app.status(w.settings, as_json=False, out=out) == 0
    return out.getvalue()


# --- the trigger ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("trigger", "order", "waits"),
    [
        ("created", {"displayFinancialStatus": "PENDING"}, False),
        ("paid", {"displayFinancialStatus": "PENDING"}, True),
        ("paid", {"displayFinancialStatus": "PARTIALLY_PAID"}, True),
        ("paid", {"displayFinancialStatus": "VOIDED"}, True),
        ("paid", {"displayFinancialStatus": "PAID"}, False),
        ("paid", {"displayFinancialStatus": "AUTHORIZED"}, False),
        ("paid", {"displayFinancialStatus": "PARTIALLY_REFUNDED"}, False),
        ("fulfilled", {"displayFulfillmentStatus": "UNFULFILLED"}, True),
        ("fulfilled", {"displayFulfillmentStatus": "PARTIALLY_FULFILLED"}, True),
        ("fulfilled", {"displayFulfillmentStatus": "FULFILLED"}, False),
    ],
)
def test_what_each_trigger_waits_for(trigger: str, order: dict[str, str], waits: bool) -> None:
    wait = trigger_wait(order, OrderTrigger(trigger))
    assert (wait is not None) == waits
    if wait is not None:
        assert f"SYNC_ORDER_TRIGGER={trigger}" in wait


async def test_trigger_paid_holds_pending_orders_and_transfers_them_once_paid(
    tmp_path: Path, shopify_schema: GraphQLSchema
) -> None:
    async with shop(tmp_path, shopify_schema, sync_order_trigger="paid") as w:
        pending = [w.shopify_sim.create_order([("MUG-1", 2)], financial_status="PENDING") for _ in range(3)]
        paid = w.shopify_sim.create_order([("TEE-2", 1)])
        await cycle(w)
        assert [len(rackbeat_orders(w, o)) for o in pending] == [0, 0, 0]
        assert len(rackbeat_orders(w, paid)) == 1
        # the waiting orders' units stay held: the stock flow subtracts them
        assert await OrderDemand(w.store).unreserved() == {"MUG-1": 6}
        text = await status_text(w)
        assert "orders waiting for SYNC_ORDER_TRIGGER: 3, the oldest for" in text
        # nothing changes while they wait, however many cycles pass
        await cycle(w)
        await cycle(w)
        assert [len(rackbeat_orders(w, o)) for o in pending] == [0, 0, 0]

        w.shopify_sim.mark_paid(pending[0])
        w.shopify_sim.cancel_order(pending[1])
        await cycle(w, 600)
        await cycle(w, 600)
        assert len(rackbeat_orders(w, pending[0])) == 1  # transferred exactly once
        assert rackbeat_orders(w, pending[1]) == []  # cancelled while it waited: never
        assert rackbeat_orders(w, pending[2]) == []
        assert await OrderDemand(w.store).unreserved() == {"MUG-1": 2}
        assert "orders waiting for SYNC_ORDER_TRIGGER: 1," in await status_text(w)
        # the transferred one keeps no "waiting" note (status would list it as changed)
        assert (
            await w.store.fetchval("SELECT note FROM order_ledger WHERE order_id = ?", (pending[0],)) is None
        )


async def test_trigger_fulfilled_transfers_once_fulfilled_and_marks_it_fulfilled(
    tmp_path: Path, shopify_schema: GraphQLSchema
) -> None:
    async with shop(tmp_path, shopify_schema, sync_order_trigger="fulfilled") as w:
        order_id = w.shopify_sim.create_order([("MUG-1", 1)])
        await cycle(w)
        assert rackbeat_orders(w, order_id) == []
        assert await OrderDemand(w.store).unreserved() == {"MUG-1": 1}
        w.shopify_sim.fulfill_order(order_id)  # a 3PL or a POS fulfilled it
        await cycle(w, 600)
        await cycle(w, 600)
        assert len(rackbeat_orders(w, order_id)) == 1
        fulfilment = await w.store.fetchval(
            "SELECT fulfilment FROM order_ledger WHERE order_id = ?", (order_id,)
        )
        assert fulfilment == "shopify"  # the fulfilments flow never fulfils it again


# --- cancellations after the transfer -------------------------------------------------------------


async def test_an_order_cancelled_after_transfer_as_a_draft_deletes_the_draft(
    tmp_path: Path, shopify_schema: GraphQLSchema
) -> None:
    async with shop(tmp_path, shopify_schema, sync_order_status="draft") as w:
        order_id = w.shopify_sim.create_order([("MUG-1", 2)])
        await cycle(w)
        (draft,) = rackbeat_orders(w, order_id)
        assert await OrderDemand(w.store).unreserved() == {"MUG-1": 2}
        w.shopify_sim.cancel_order(order_id)
        await cycle(w, 600)
        assert rackbeat_orders(w, order_id) == []  # the draft is gone from Rackbeat
        assert await OrderDemand(w.store).unreserved() == {}
        assert await w.store.parked("orders") == []
        assert f"Rackbeat order {draft.number} deleted" in await status_text(w)


async def test_an_order_cancelled_after_booking_is_parked_for_a_person_and_released(
    tmp_path: Path, shopify_schema: GraphQLSchema
) -> None:
    async with shop(tmp_path, shopify_schema) as w:
        order_id = w.shopify_sim.create_order([("MUG-1", 2)])
        await cycle(w)
        (booked,) = rackbeat_orders(w, order_id)
        w.shopify_sim.cancel_order(order_id)
        await cycle(w, 600)
        assert booked.is_booked
        assert not booked.is_cancelled
        (parked,) = await w.store.parked("orders")
        assert parked.reason == "CANCELLED_AFTER_TRANSFER"
        assert booked.number in parked.detail
        assert parked.next_attempt == PARKED_FOR_A_PERSON  # no automatic retries
        assert (
            await w.store.fetchval("SELECT cancelled FROM order_ledger WHERE order_id = ?", (order_id,)) == 1
        )
        # more cycles change nothing and send nothing to Rackbeat
        w.rackbeat.reset_counts()
        await cycle(w, 7 * 3600)
        assert [p.reason for p in await w.store.parked("orders")] == ["CANCELLED_AFTER_TRANSFER"]
        assert w.rackbeat.request_total() == 0
        # the merchant credits it in Rackbeat and clears the record with `retry`
        assert await app.retry(w.settings, key=name_of(w, order_id), out=io.StringIO()) == 0
        await cycle(w)
        assert await w.store.parked("orders") == []


async def test_a_quantity_edit_after_transfer_is_parked_with_the_difference(
    tmp_path: Path, shopify_schema: GraphQLSchema
) -> None:
    async with shop(tmp_path, shopify_schema) as w:
        order_id = w.shopify_sim.create_order([("MUG-1", 2), ("TEE-2", 1)])
        await cycle(w)
        (booked,) = rackbeat_orders(w, order_id)
        w.shopify_sim.edit_order(order_id, {"MUG-1": 1, "TEE-2": 0})
        await cycle(w, 600)
        (parked,) = await w.store.parked("orders")
        assert parked.reason == "CHANGED_AFTER_TRANSFER"
        assert "MUG-1 2 → 1" in parked.detail
        assert "TEE-2 1 → 0" in parked.detail
        assert booked.number in parked.detail
        # Rackbeat's order and the ledger's transferred demand are left as they were
        assert [int(line.quantity) for line in booked.lines[:2]] == [2, 1]
        demand = await w.store.fetchval("SELECT demand FROM order_ledger WHERE order_id = ?", (order_id,))
        assert json.loads(demand) == {"MUG-1": 2, "TEE-2": 1}
        # cleared with `retry`; later cycles (the order's updatedAt moves on) do not park it again
        assert await app.retry(w.settings, key=name_of(w, order_id), out=io.StringIO()) == 0
        await cycle(w)
        w.shopify_sim.fulfill_order(order_id)
        await cycle(w, 600)
        assert await w.store.parked("orders") == []


async def test_reconcile_does_not_count_an_order_waiting_for_payment_as_missing(
    tmp_path: Path, shopify_schema: GraphQLSchema
) -> None:
    async with shop(tmp_path, shopify_schema, sync_order_trigger="paid") as w:
        pending = w.shopify_sim.create_order([("MUG-1", 1)], financial_status="PENDING")
        paid = w.shopify_sim.create_order([("TEE-2", 1)])
        w.tick(600)
        assert w.http is not None
        services = Services(w.settings, w.store, w.http, w.shopify, w.rackbeat_client, w.metrics)
        report = await reconcile(services, dry_run=True, now=w.clock.now(), window=timedelta(days=1))
        assert report.missing_orders == [name_of(w, paid)]
        assert name_of(w, pending) not in report.missing_orders
