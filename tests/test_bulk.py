"""The first build of a large shop's SKU index by Shopify bulk query: resumable, streamed,
falling back to paging when the bulk read cannot give the answer; and the first push
using the levels it read."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from graphql import GraphQLSchema
from pydantic import SecretStr
from structlog.testing import capture_logs

from daemon import app
from daemon import index as index_module
from daemon.demand import OrderDemand
from daemon.errors import MalformedResponse, NotFoundError
from daemon.flows.stock import StockFlow
from daemon.incremental import OVERLAP
from daemon.index import SkuIndex
from daemon.runner import InlineCycles
from daemon.shopify import ShopifyClient
from daemon.times import iso
from tests.harness import World, make_world, orders_flow

pytestmark = pytest.mark.anyio

PRODUCTS = 45


async def shop(w: World, n: int = PRODUCTS) -> None:
    """``n`` products with one SKU each, a variant without SKU and a duplicate SKU."""
    for i in range(n):
        w.shopify_sim.add_product(f"Product {i}", [{"sku": f"SKU-{i:04}", "stock": i}])
    w.shopify_sim.add_product("No SKU", [{"sku": None}])
    w.shopify_sim.add_product("Twin", [{"sku": "SKU-0007"}])
    w.tick(60)


def bulk_index(w: World, **options: Any) -> SkuIndex:
    async def location() -> str:
        return w.location_id

    return SkuIndex(
        w.store,
        w.shopify,
        clock=w.clock.now,
        monotonic=w.clock.monotonic,
        levels_at=location,
        bulk_from=10,
        **options,
    )


def paged_index(w: World) -> SkuIndex:
    return SkuIndex(w.store, w.shopify, clock=w.clock.now, bulk_from=10**9)


async def rows(index: SkuIndex) -> list[tuple[str, str, str, str | None]]:
    return [(e.variant_id, e.sku, e.product_id, e.inventory_item_id) for e in await index.entries()]


async def stored_operations(w: World) -> int:
    return int(await w.store.fetchval("SELECT COUNT(*) FROM bulk_operations"))


@pytest.fixture
def world(tmp_path: Path, shopify_schema: GraphQLSchema) -> Callable[[], Any]:
    def open_world() -> Any:
        return make_world(tmp_path, validate_schema=shopify_schema)

    return open_world


async def test_a_large_shop_is_indexed_by_one_bulk_query_with_its_levels(world: Callable[[], Any]) -> None:
    async with world() as w:
        await shop(w)
        index = bulk_index(w)
        assert await index.build() == PRODUCTS + 2
        assert w.shopify_sim.requests["BulkRunQuery"] == 1
        assert w.shopify_sim.requests["VariantsPage"] == 0
        by_bulk = await rows(index)
        assert len(by_bulk) == PRODUCTS + 1  # the variant without SKU is not indexed
        assert await index.duplicates() == {"SKU-0007": 2}
        # the cursor is where the bulk read began (less the overlap), not where it ended
        (operation,) = w.shopify_sim.bulk_operations.values()
        assert await w.store.get_cursor("index") == iso(operation.created_at - OVERLAP)
        assert await stored_operations(w) == 0  # done with
        assert await w.store.fetchval("SELECT COUNT(*) FROM progress") == 0
        # the levels at the stock location came with it, each given out once
        item = w.shopify_sim.find_by_sku("SKU-0005")
        assert item is not None
        taken = await index.take_levels([item.inventory_item_id], w.location_id)
        assert taken == {item.inventory_item_id: 5}
        assert await index.take_levels([item.inventory_item_id], w.location_id) == {}

        # the same rows as paging gives
        assert await paged_index(w).build() == PRODUCTS + 2
        assert await rows(index) == by_bulk


async def test_a_restart_polls_the_stored_operation_instead_of_starting_another(
    world: Callable[[], Any],
) -> None:
    async with world() as w:
        await shop(w)
        await bulk_index(w).prepare()  # the stock flow does this before its scan
        assert await stored_operations(w) == 1
        await w.restart()
        index = bulk_index(w)
        await index.prepare()  # again after the restart: nothing new
        assert await index.build() == PRODUCTS + 2
        assert w.shopify_sim.requests["BulkRunQuery"] == 1
        assert w.shopify_sim.requests["BulkOperation"] >= 1
        assert len(await rows(index)) == PRODUCTS + 1


def _fail(w: World, op: str) -> None:
    w.shopify_sim.fail_bulk_operation(op, "TIMEOUT")


def _expire(w: World, op: str) -> None:
    w.shopify_sim.expire_bulk_operation(op)


def _lose(w: World, op: str) -> None:
    w.shopify_sim.lose_bulk_operation(op)


def _garble(w: World, op: str) -> None:
    w.shopify_sim.bulk_operations[op].lines[6] = b'{"id": "gid://shopify/ProductVariant/1", "sku": \n'


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        (_fail, "FAILED (TIMEOUT)"),
        (_expire, "EXPIRED"),
        (_lose, "no longer knows"),
        (_garble, "line 7 of the bulk result"),
    ],
)
async def test_a_bulk_read_that_cannot_answer_falls_back_to_paging(
    world: Callable[[], Any], fault: Callable[[World, str], None], reason: str
) -> None:
    async with world() as w:
        await shop(w)
        index = bulk_index(w)
        await index.prepare()
        (op,) = w.shopify_sim.bulk_operations
        fault(w, op)
        with capture_logs() as logs:
            assert await index.build() == PRODUCTS + 2
        (fallback,) = [e for e in logs if e["event"] == "bulk.fallback"]
        assert reason in fallback["reason"]
        assert w.shopify_sim.requests["VariantsPage"] >= 1
        assert len(await rows(index)) == PRODUCTS + 1
        assert await stored_operations(w) == 0
        assert await w.store.get_cursor("index") is not None


async def test_an_expired_file_is_a_fall_back_too(world: Callable[[], Any]) -> None:
    async with world() as w:
        await shop(w)
        index = bulk_index(w)
        await index.prepare()
        (op,) = w.shopify_sim.bulk_operations
        w.tick(60)  # completed; then the file goes (404) while the status still says COMPLETED
        w.shopify_sim.bulk_operations[op].url += ".gone"
        with capture_logs() as logs:
            await index.build()
        assert any("HTTP 404" in str(e.get("reason")) for e in logs if e["event"] == "bulk.fallback")
        assert len(await rows(index)) == PRODUCTS + 1


class Crash(Exception):
    """The process dies here."""


async def test_a_crash_mid_download_costs_only_the_download(
    world: Callable[[], Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(index_module, "BULK_BATCH", 10)
    monkeypatch.setattr(index_module, "PROGRESS_EVERY", 0.0)
    async with world() as w:
        await shop(w)
        index = bulk_index(w)
        commits = 0
        commit = index._commit_bulk

        async def dying(*args: Any, **kwargs: Any) -> None:
            nonlocal commits
            commits += 1
            if commits == 3:
                raise Crash
            await commit(*args, **kwargs)

        monkeypatch.setattr(index, "_commit_bulk", dying)
        with pytest.raises(Crash):
            await index.build()
        assert len(await rows(index)) == 20  # two batches committed
        assert await w.store.get_cursor("index") is None  # the build's end is not
        out = io.StringIO()  # ``status`` is another process: it reads what the build stored
        assert await app.status(w.settings, as_json=False, out=out) == 0
        assert f"SKU index build: 20 of {PRODUCTS + 2} variants" in out.getvalue()

        await w.restart()
        again = bulk_index(w)
        assert await again.build() == PRODUCTS + 2
        assert w.shopify_sim.requests["BulkRunQuery"] == 1  # no second bulk operation
        (op,) = w.shopify_sim.bulk_operations
        assert w.shopify_sim.bulk_downloads[op] == 2
        assert len(await rows(again)) == PRODUCTS + 1
        out = io.StringIO()
        await app.status(w.settings, as_json=False, out=out)
        assert "SKU index build" not in out.getvalue()


# --- the client's streaming --------------------------------------------------------------------


LINES = 100_000


async def test_the_result_is_parsed_as_it_streams_in_without_the_token() -> None:
    produced = 0
    seen_headers: list[httpx.Headers] = []

    async def body() -> AsyncIterator[bytes]:
        nonlocal produced
        for start in range(0, LINES, 1000):
            produced += 1
            yield b"".join(
                b'{"id":"gid://shopify/ProductVariant/%d"}\n' % n for n in range(start, start + 1000)
            )

    async def handler(request: httpx.Request) -> httpx.Response:
        seen_headers.append(request.headers)
        if request.url.path == "/gone.jsonl":
            return httpx.Response(404)
        if request.url.path == "/bad.jsonl":
            return httpx.Response(200, content=b'{"id":1}\n\n[1]\n')
        return httpx.Response(200, content=body())

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        client = ShopifyClient(
            http, graphql_url="https://shop.example/graphql.json", access_token=SecretStr("shpat_secret")
        )
        chunks_at_first_line = None
        count = 0
        async for number, row in client.bulk_lines("https://files.example/result.jsonl"):
            if chunks_at_first_line is None:
                chunks_at_first_line = produced
            count += 1
            assert row["id"].endswith(f"/{number - 1}")
        assert count == LINES
        assert chunks_at_first_line == 1  # the first line arrived before the rest was made
        with pytest.raises(NotFoundError, match="HTTP 404"):
            async for _ in client.bulk_lines("https://files.example/gone.jsonl"):
                pass
        with pytest.raises(MalformedResponse, match="line 3"):
            async for _ in client.bulk_lines("https://files.example/bad.jsonl"):
                pass
    assert all("x-shopify-access-token" not in headers for headers in seen_headers)


# --- the first push ---------------------------------------------------------------------------


def stock_flow(w: World, index: SkuIndex) -> StockFlow:
    orders = orders_flow(w)
    return StockFlow(
        w.settings,
        w.store,
        w.shopify,
        w.rackbeat_client,
        index=index,
        metrics=w.metrics,
        shutdown=w.shutdown,
        demand=OrderDemand(w.store),
        cycles=InlineCycles({"orders": orders.run_once}),
        clock=w.clock.now,
        monotonic=w.clock.monotonic,
    )


async def first_push_world(w: World, n: int) -> None:
    for i in range(n):
        sku = f"SKU-{i:04}"
        w.shopify_sim.add_product(f"Product {i}", [{"sku": sku, "price": "100.00", "stock": 3}])
        w.rackbeat.add_product(sku, stock=10)
    w.rackbeat.add_product("frakt", name="Frakt")
    w.tick(60)


async def test_the_first_push_uses_the_bulk_readings_instead_of_reading_levels(
    world: Callable[[], Any],
) -> None:
    async with world() as w:
        await first_push_world(w, 30)
        flow = stock_flow(w, bulk_index(w))
        assert await flow.run_once() == 30
        assert w.shopify_sim.requests["BulkRunQuery"] == 1
        assert w.shopify_sim.requests["InventoryLevels"] == 0
        assert all(w.shopify_sim.available(f"SKU-{i:04}") == 10 for i in range(30))
        assert await w.store.fetchval("SELECT COUNT(*) FROM shopify_levels") == 0  # all used


async def test_a_sale_after_the_bulk_read_goes_stale_and_is_read_again(world: Callable[[], Any]) -> None:
    async with world() as w:
        await first_push_world(w, 30)
        index = bulk_index(w)
        await index.prepare()
        w.tick(30)  # the bulk read has completed; its readings say 3
        w.shopify_sim.sell("SKU-0004", 2)  # 1 left in Shopify; the order reaches the ledger
        flow = stock_flow(w, index)
        await flow.run_once()
        assert w.metrics.value("stock", "stale_retries") == 1
        assert w.shopify_sim.requests["InventoryLevels"] == 1  # only the stale one
        # 10 in Rackbeat, 2 sold in Shopify and not reserved in Rackbeat: 8, never 10
        assert w.shopify_sim.available("SKU-0004") == 8
        w.tick(60)
        await flow.run_once()
        assert w.shopify_sim.available("SKU-0004") == 8
        assert all(w.shopify_sim.available(f"SKU-{i:04}") == 10 for i in range(30) if i != 4)
