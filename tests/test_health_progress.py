"""Health follows progress (issue 17): stalled flows, error storms, and what was skipped."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
from graphql import GraphQLSchema
from structlog.testing import capture_logs

from daemon import app
from daemon.errors import RecordError
from daemon.health import health_document
from daemon.metrics import PREFIX, Metrics
from daemon.runner import STALL_FAIL, STALL_WARN, Flow, Runner
from daemon.shutdown import Shutdown, note_progress
from daemon.store import Store
from daemon.storm import ApiProblem, StormWatch, failure_shape
from tests.harness import World, make_world, orders_flow
from tests.test_flow_orders import shop
from tests.test_flow_products import products_flow
from tests.test_flow_stock import catalogue, stock_flow

pytestmark = pytest.mark.anyio

PER_LOCATION = "GET /items/{number}/locations/available"


class Cycles:
    """Runs a flow's cycles under a :class:`Runner`; after each cycle (the runner's rest or
    backoff) notes ``/healthz``'s verdict on it and lets a poll interval of simulated time
    pass."""

    def __init__(self, flow: Flow, store: Store, metrics: Metrics, *, world: World | None = None) -> None:
        self.flow = flow
        self.world = world
        # the runner's own stop signal (the flow's stays unset: it would skip reads)
        self.runner = Runner(
            [flow],
            store=store,
            metrics=metrics,
            poll_seconds=60,
            shutdown=Shutdown(),
            sleep_until_stop=self._rest,
        )
        self.health: list[dict[str, Any]] = []
        self._stop_at = 0

    async def _rest(self, seconds: float) -> None:
        doc = health_document(self.runner, "test")
        self.health.append({"status": doc["status"], **doc["checks"][f"{self.flow.name}:lag"][0]})
        if len(self.health) >= self._stop_at:
            self.runner.shutdown.request()
        if self.world is not None:
            self.world.tick(60)
        await anyio.lowlevel.checkpoint()

    async def run(self, cycles: int) -> list[dict[str, Any]]:
        """Run ``cycles`` more cycles; the health after each."""
        self.runner.shutdown = Shutdown()
        start = len(self.health)
        self._stop_at = start + cycles
        with anyio.fail_after(50):
            await self.runner.run()
        return self.health[start:]


# --- stalled: work pending and none of it confirmed ---------------------------------------------


class ReportingFlow:
    """A flow that reports ``pending`` records each cycle, of which ``confirmed`` went through."""

    name = "orders"

    def __init__(self, pending: int, confirmed: int) -> None:
        self.pending, self.confirmed = pending, confirmed

    async def run_once(self) -> int:
        note_progress(pending=self.pending, confirmed=self.confirmed, cause="Rackbeat keeps refusing them")
        return self.confirmed


async def test_work_pending_and_nothing_confirmed_warns_then_fails_naming_the_flow(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "sync.db", "a.myshopify.com")
    try:
        metrics = Metrics()
        flow = ReportingFlow(pending=7, confirmed=0)
        cycles = Cycles(flow, store, metrics)
        with capture_logs() as logs:
            health = await cycles.run(STALL_FAIL + 1)
        statuses = [h["status"] for h in health]
        assert statuses[: STALL_WARN - 1] == ["pass"] * (STALL_WARN - 1)
        assert statuses[STALL_WARN - 1 : STALL_FAIL - 1] == ["warn"] * (STALL_FAIL - STALL_WARN)
        assert statuses[STALL_FAIL - 1 :] == ["fail", "fail"]
        output = health[-1]["output"]
        assert "stalled: 7 record(s)" in output
        assert "Rackbeat keeps refusing them" in output
        assert health[-1]["componentId"] == "orders"
        assert health[-1]["pending"] == 7
        stalled = metrics.registry.get_sample_value(f"{PREFIX}_flow_stalled", {"shop": "", "flow": "orders"})
        assert stalled == STALL_FAIL + 1
        stalled_lines = [(e["log_level"], e["cycles"]) for e in logs if e["event"] == "flow.stalled"]
        assert stalled_lines == [("warning", STALL_WARN), ("error", STALL_FAIL)]  # once each

        # it gets going again: pass at once, said once
        flow.confirmed = 2
        with capture_logs() as logs:
            health = await cycles.run(2)
        assert [h["status"] for h in health] == ["pass", "pass"]
        assert [e["event"] for e in logs if e["event"] == "flow.progressing"] == ["flow.progressing"]
    finally:
        await store.close()


async def test_slow_work_that_makes_progress_is_not_stalled(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "sync.db", "a.myshopify.com")
    try:
        # rate-limited: 500 to do, 1 confirmed a cycle
        health = await Cycles(ReportingFlow(pending=500, confirmed=1), store, Metrics()).run(STALL_FAIL + 2)
        assert {h["status"] for h in health} == {"pass"}
    finally:
        await store.close()


async def test_a_shop_with_nothing_to_do_stays_pass_for_an_hour_of_cycles(
    tmp_path: Path, shopify_schema: GraphQLSchema
) -> None:
    async with catalogue(tmp_path, shopify_schema, 5, sync_orders=False) as w:
        flow = stock_flow(w)
        await flow.run_once()  # the first sync: Shopify is as Rackbeat says from here on
        cycles = Cycles(flow, w.store, w.metrics, world=w)
        health = await cycles.run(60)  # 60 polls of 60 s
        assert {h["status"] for h in health} == {"pass"}
        assert cycles.runner.states["stock"].stalled == 0


# --- an error storm is an API problem ------------------------------------------------------------


@asynccontextmanager
async def twenty_read_per_location(tmp_path: Path, schema: GraphQLSchema) -> AsyncIterator[World]:
    """20 products with 5 units at the listed location 1 (S10 = "1"), Shopify at 0, whose
    available figure per location comes from ``/items/{n}/locations/available``."""
    async with catalogue(tmp_path, schema, 20, stock=0, sync_locations="1", sync_orders=False) as w:
        for i in range(20):
            w.rackbeat.goods_receipt(f"SKU-{i:04}", 5, "1")
        w.rackbeat.listing_has_available = False  # the listing does not carry the figure
        yield w


async def test_a_per_location_endpoint_answering_404_for_every_product_fails_the_flow_and_recovers(
    tmp_path: Path, shopify_schema: GraphQLSchema
) -> None:
    async with twenty_read_per_location(tmp_path, shopify_schema) as w:
        w.rackbeat.not_found.add(PER_LOCATION)  # 404 for every product
        cycles = Cycles(stock_flow(w), w.store, w.metrics, world=w)
        with capture_logs() as logs:
            health = await cycles.run(3)

        assert [h["status"] for h in health] == ["fail", "fail", "fail"]  # from the first cycle on
        output = health[-1]["output"]
        assert "/items/{n}/locations/available" in output
        assert "HTTP 404" in output
        assert "20 of 20" in output
        assert "location_stock" in output
        assert await w.store.parked() == []  # nothing parked
        assert w.shopify_sim.available("SKU-0000") == 0  # nothing pushed
        failed = [e for e in logs if e["event"] == "flow.failed"]
        assert len(failed) == 1
        assert failed[0]["kind"] == "api_problem"

        # the endpoint returns: the next cycle (after the backoff) pushes everything
        w.rackbeat.not_found.clear()
        health = await cycles.run(1)
        assert health[-1]["status"] == "pass"
        assert [w.shopify_sim.available(f"SKU-{i:04}") for i in range(20)] == [5] * 20
        assert await w.store.parked() == []


async def test_one_product_404ing_among_many_is_a_record_problem(
    tmp_path: Path, shopify_schema: GraphQLSchema
) -> None:
    async with twenty_read_per_location(tmp_path, shopify_schema) as w:
        w.rackbeat.not_found.add("GET /items/SKU-0007/locations/available")
        flow = stock_flow(w)
        await flow.run_once()  # no storm: the cycle succeeds
        shown = [w.shopify_sim.available(f"SKU-{i:04}") for i in range(20)]
        assert shown == [0 if i == 7 else 5 for i in range(20)]
        [record] = await w.store.parked()
        assert (record.key, record.reason) == ("SKU-0007", "NOT_FOUND")
        assert "/items/{n}/locations/available" in record.detail

        # it reads again: released and pushed
        w.rackbeat.not_found.clear()
        w.tick(60)
        await flow.run_once()
        assert w.shopify_sim.available("SKU-0007") == 5
        assert await w.store.parked() == []


async def test_every_product_create_refused_the_same_way_is_an_api_problem(
    tmp_path: Path, shopify_schema: GraphQLSchema
) -> None:
    async with make_world(
        tmp_path, validate_schema=shopify_schema, settings={"sync_product_priority": "shopify"}
    ) as w:
        flow = products_flow(w)
        await flow.run_once()  # the first start: from now
        for i in range(6):
            w.shopify_sim.add_product(f"Mug {i}", [{"sku": f"MUG-{i}", "price": "5.00"}])
            w.tick(1)  # a second apart: listed over several pages
        w.tick(600)  # past the cursor's overlap: only the storm check keeps the cursor before them
        w.rackbeat.not_found.add("POST /products")  # the create path is wrong
        with pytest.raises(ApiProblem) as raised:
            await flow.run_once()
        assert raised.value.storm.path == "/products"
        assert "6 of 6" in str(raised.value)
        assert "product_fields" in str(raised.value)
        assert await w.store.parked() == []  # nothing parked

        w.rackbeat.not_found.clear()  # fixed: they go through, no retry needed
        w.tick(60)
        await flow.run_once()
        assert sorted(w.rackbeat.products) == [f"MUG-{i}" for i in range(6)]
        assert await w.store.parked() == []


async def test_product_changes_all_refused_make_the_products_flow_stalled(
    tmp_path: Path, shopify_schema: GraphQLSchema
) -> None:
    async with make_world(
        tmp_path, validate_schema=shopify_schema, settings={"sync_product_priority": "shopify"}
    ) as w:
        cycles = Cycles(products_flow(w), w.store, w.metrics, world=w)
        await cycles.run(1)
        state = cycles.runner.states["products"]
        # every cycle the merchant changes a product Rackbeat cannot take (no SKU): refused
        for i in range(STALL_WARN):
            w.shopify_sim.add_product(f"Loose {i}", [{"sku": None, "price": "5.00"}])
            health = await cycles.run(1)
        assert (state.pending, state.stalled) == (1, STALL_WARN)
        assert health[-1]["status"] == "warn"
        assert "SYNC_PRODUCT_PRIORITY" in health[-1]["output"]

        w.shopify_sim.add_product("Fine", [{"sku": "FINE-1", "price": "5.00"}])  # one goes through
        health = await cycles.run(1)
        assert state.stalled == 0
        assert "stalled" not in health[-1].get("output", "")  # still warn: the 3 refused are parked
        assert health[-1]["parked"] == STALL_WARN


async def test_a_product_unread_in_the_reconciles_pass_stays_parked_until_it_reads_again(
    tmp_path: Path, shopify_schema: GraphQLSchema
) -> None:
    async with twenty_read_per_location(tmp_path, shopify_schema) as w:
        flow = stock_flow(w)
        await flow.run_once()  # the first cycle reads every product per location
        assert w.shopify_sim.available("SKU-0007") == 5
        w.rackbeat.not_found.add("GET /items/SKU-0007/locations/available")
        w.tick(w.settings.sync_reconcile_seconds)  # the reconcile's pass: each product read again
        for _ in range(20):  # a few a cycle, whatever their totals say
            await flow.run_once()
            if await w.store.parked():
                break
            w.tick(60)
        assert [(r.key, r.reason) for r in await w.store.parked()] == [("SKU-0007", "NOT_FOUND")]

        w.tick(60)
        await flow.run_once()  # nothing changed in Rackbeat: it is still unread, still parked
        assert [r.key for r in await w.store.parked()] == ["SKU-0007"]

        w.rackbeat.not_found.clear()
        w.tick(60)
        await flow.run_once()  # read every cycle while parked: released once it reads
        assert await w.store.parked() == []


# --- say what was skipped -------------------------------------------------------------------------


async def test_orders_before_the_import_start_are_said_in_one_line_naming_the_setting(
    tmp_path: Path, shopify_schema: GraphQLSchema
) -> None:
    async with shop(tmp_path, shopify_schema, sync_orders_since="2026-11-01T10:30:00Z") as w:
        old = [w.shopify_sim.sell("MUG-1", 2) for _ in range(20)]  # 10:00, before SYNC_ORDERS_SINCE
        w.tick(3600)
        for order_id in old:  # paid, tagged … : updated after the start, so they are read
            w.shopify_sim.edit_order(order_id, {"MUG-1": 1})
        flow = orders_flow(w)
        with capture_logs() as logs:
            await flow.run_once()
            w.tick(60)
            await flow.run_once()  # nothing new: nothing said
        said = [
            e for e in logs if e["event"] in ("orders.skipped", "order.skipped") and e["log_level"] == "info"
        ]
        assert len(said) == 1
        assert said[0]["event"] == "orders.skipped"
        assert said[0]["before_start"] == 20
        assert "20 created before the import start (SYNC_ORDERS_SINCE)" in said[0]["detail"]
        assert w.rackbeat.orders == []

        # a test order joins them: the line comes again with the new count
        w.shopify_sim.sell("MUG-1", test=True)
        w.tick(60)
        with capture_logs() as logs:
            await flow.run_once()
        [line] = [e for e in logs if e["event"] == "orders.skipped"]
        assert (line["before_start"], line["test"]) == (20, 1)
        assert "1 test orders (SYNC_IMPORT_TEST_ORDERS)" in line["detail"]

        out = io.StringIO()
        assert await app.status(w.settings, as_json=False, out=out) == 0
        assert (
            "orders not imported: 20 created before the import start (SYNC_ORDERS_SINCE), "
            "1 test orders (SYNC_IMPORT_TEST_ORDERS)" in out.getvalue()
        )


async def test_every_order_refused_the_same_way_is_an_api_problem_not_parked_orders(
    tmp_path: Path, shopify_schema: GraphQLSchema
) -> None:
    async with shop(tmp_path, shopify_schema) as w:
        employees = dict(w.rackbeat.employees)
        w.rackbeat.employees.clear()  # every draft is refused with the same 422
        for _ in range(6):
            w.shopify_sim.sell("MUG-1")
            w.tick(1)  # a second apart: they are listed over several pages
        w.tick(600)  # past the cursor's overlap: only the storm check keeps the cursor before them
        flow = orders_flow(w)
        with pytest.raises(ApiProblem) as raised:
            await flow.run_once()
        assert raised.value.storm.path == "/orders/drafts"
        assert "our_reference" in str(raised.value)
        assert "6 of 6" in str(raised.value)
        assert "order_fields" in str(raised.value)
        assert await w.store.parked() == []  # nothing parked

        w.rackbeat.employees.update(employees)  # fixed: they go through, no retry needed
        w.tick(60)
        await flow.run_once()
        assert len(w.rackbeat.orders) == 6
        assert await w.store.parked() == []


async def test_one_order_refused_among_many_is_parked_and_the_rest_go_through(
    tmp_path: Path, shopify_schema: GraphQLSchema
) -> None:
    async with shop(tmp_path, shopify_schema) as w:
        for _ in range(5):
            w.shopify_sim.sell("MUG-1")
        w.shopify_sim.sell("MUG-1", currency="XXX")  # Rackbeat refuses this one's currency
        w.tick(60)
        await orders_flow(w).run_once()
        assert len(w.rackbeat.orders) == 5
        [record] = await w.store.parked()
        assert record.reason == "REJECTED"


def test_the_same_malformed_field_on_every_record_is_a_storm_said_without_a_path() -> None:
    watch = StormWatch()
    for n in range(1001, 1006):
        watch.attempt()
        shape = failure_shape(RecordError(f"order #{n}: line 1 has no quantity", reason="MALFORMED"))
        assert shape is not None
        watch.failed(*shape, f"#{n}")
    storm = watch.storm()
    assert storm is not None
    assert storm.message().startswith("MALFORMED: order …: line … has no quantity for 5 of 5 records")
