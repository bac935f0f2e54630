"""The stock push against Shopify's cost bucket: a push from an empty bucket waits for the
points it spends, not for the price of pages its reads might have returned."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from graphql import GraphQLSchema, get_operation_ast, parse

from daemon import shopify_documents as docs
from daemon.sim.shopify import estimate_cost
from tests.harness import World, orders_flow
from tests.test_flow_stock import catalogue, stock_flow

pytestmark = pytest.mark.anyio


def drain_before_the_next_shopify_request(w: World) -> None:
    """Other traffic empties the bucket just before the daemon's next Shopify request."""
    drained = False

    def drain(request: httpx.Request, when: str) -> None:
        nonlocal drained
        if request.url.host == "shopify.sim" and not drained:
            w.shopify_sim.bucket.refill(w.clock.monotonic())
            w.shopify_sim.bucket.drain()
            drained = True

    w.hook = drain


def orders_page_price(w: World, orders: int) -> int:
    """What Shopify asks for a page of ``orders`` orders changed since a moment."""
    document = parse(docs.ORDERS_UPDATED_SINCE)
    operation = get_operation_ast(document)
    assert operation is not None
    return estimate_cost(w.shopify_sim.schema, document, operation, {"first": orders})


async def test_a_push_from_an_empty_bucket_waits_for_what_it_spends(
    tmp_path: Path, shopify_schema: GraphQLSchema
) -> None:
    async with catalogue(tmp_path, shopify_schema, 500) as w:
        orders = orders_flow(w)
        await orders.run_once()  # the orders cursor starts now
        flow = stock_flow(w, orders.run_once)
        assert await flow.run_once() == 500
        w.tick(600)
        await flow.run_once()  # the SKU index's overlap re-read
        w.tick(60)
        # two sales in Shopify (the push's compare-and-swap finds one of them), then every
        # SKU rises in Rackbeat
        for sku in ("SKU-0000", "SKU-0001"):
            w.shopify_sim.sell(sku, 1, email="buyer@example.com")
        for i in range(500):
            w.rackbeat.goods_receipt(f"SKU-{i:04}", 1)
        w.tick(60)
        drain_before_the_next_shopify_request(w)
        waited, spent = w.shopify.throttle_wait_seconds, w.shopify.cost_spent
        w.shopify_sim.reset_requests()
        assert await flow.run_once() == 500
        waited = w.shopify.throttle_wait_seconds - waited
        spent = w.shopify.cost_spent - spent
        rate = w.shopify_sim.bucket.restore_rate
        assert w.shopify_sim.available("SKU-0000") == 10
        assert w.shopify_sim.available("SKU-0002") == 11
        # only the first request meets the emptied bucket unawares
        assert sum(1 for r in w.shopify_sim.request_log if r.outcome == "throttled") == 1
        # The bucket must hold a query's price before it runs, though Shopify refunds what
        # the answer did not use: the push waits for the points spent (its writes, a
        # reading, the orders read twice) and for no more than a page of the two orders it
        # found — not for a full page of orders or products that were never there.
        assert spent <= waited * rate <= spent + orders_page_price(w, 2)
