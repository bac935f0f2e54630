"""``check --live``: each Rackbeat assumption proven, refuted or unknown on the account,
the Shopify scopes, and the gate that holds orders while the reference search is refuted."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from graphql import GraphQLSchema

from daemon.__main__ import main
from daemon.flows.orders import OrdersFlow
from daemon.health import HealthApp
from daemon.live_check import (
    ACCESS_SCOPES,
    FACTS,
    RACKBEAT_FACTS,
    SHOPIFY_FACTS,
    Outcome,
    ReferenceGate,
    Report,
    live_check,
)
from daemon.runner import Runner
from daemon.shutdown import Shutdown
from daemon.sim.rackbeat import DEFAULT_TOKEN as RACKBEAT_TOKEN
from daemon.sim.rackbeat import REFUTABLE, RackbeatSimulator
from daemon.sim.shopify import DEFAULT_ACCESS_TOKEN as SHOPIFY_TOKEN
from daemon.sim.shopify import DEFAULT_SCOPES
from tests.harness import World, add_shop, apis_on_loopback, first_shop, make_world, orders_flow
from tests.test_process import clean_env

pytestmark = pytest.mark.anyio

#: refuting these makes the daemon wrong, not slower: ``check --live`` exits 78 (with
#: SYNC_LOCATIONS listing locations, which makes the per-location endpoint load-bearing)
LOAD_BEARING = {
    "reference_search",  # exactly-once after a crash
    "customer_email_search",  # a new customer for every order
    "product_fields",  # stock read as unknown
    "order_fields",  # a missing flag reads as false
    "location_stock",  # SYNC_LOCATIONS=1,2 cannot be read
    "timestamp_format",  # records fail to read
    "reference_envelopes",  # S3/S5/S7/S8 cannot be verified
}


def seed(rackbeat: RackbeatSimulator) -> None:
    """An account with a catalogue, customers, orders with references and one shipped order."""
    for n in range(3):
        rackbeat.add_product(f"SKU-{n}", stock=10)
    first = rackbeat.add_customer("Åsa Öberg", "asa@example.se")
    rackbeat.add_customer("Bo Ek", "bo@example.se")
    for n, reference in enumerate(("#1001", "#1002", "#1003")):
        number = rackbeat.place_order(first, [(f"SKU-{n}", 1)], book=True)
        rackbeat.order(number).your_reference = reference
    rackbeat.ship(number, carrier="PostNord", tracking="TT1")


async def probe(w: World, settings: Any = None) -> Report:
    return await live_check(w.rackbeat_client, [(None, settings or w.settings, w.shopify)], now=w.clock.now())


def outcomes(report: Report) -> dict[str, Outcome]:
    return {r.fact: r.outcome for r in report.results}


async def test_every_fact_confirmed_read_only_and_cheap(
    tmp_path: Path, shopify_schema: GraphQLSchema
) -> None:
    async with make_world(tmp_path, validate_schema=shopify_schema) as w:
        seed(w.rackbeat)
        w.rackbeat.reset_counts()
        report = await probe(w)
        assert outcomes(report) == dict.fromkeys(FACTS, Outcome.CONFIRMED), [r.line() for r in report.results]
        assert report.exit_code == 0
        # strictly read-only: Rackbeat saw GETs only, Shopify only the one query
        assert w.rackbeat.requests, "nothing was asked"
        assert all(route.startswith("GET ") for route in w.rackbeat.requests), w.rackbeat.requests
        assert set(w.shopify_sim.requests) == {"LiveCheck"}
        assert report.requests["rackbeat"] == sum(w.rackbeat.requests.values()) <= 30
        assert report.requests["shopify"] == 1


@pytest.mark.parametrize("fact", sorted(REFUTABLE))
async def test_each_assumption_switched_off_is_refuted(
    tmp_path: Path, shopify_schema: GraphQLSchema, fact: str
) -> None:
    async with make_world(
        tmp_path,
        validate_schema=shopify_schema,
        rackbeat_options={"refute": {fact}},
        settings={"sync_locations": "1,2"},
    ) as w:
        seed(w.rackbeat)
        report = await probe(w)
        refuted = {r.fact for r in report.results if r.outcome is Outcome.REFUTED}
        if fact == "timestamp_format":
            # unreadable timestamps make every record that carries one unreadable
            assert fact in refuted
        else:
            assert refuted == {fact}, [r.line() for r in report.results]
        assert report.exit_code == (78 if fact in LOAD_BEARING else 0)
        out = _printed(report)
        if fact in LOAD_BEARING:
            assert f"  {fact}: " in out


def _printed(report: Report) -> str:
    buffer = io.StringIO()
    report.print(buffer, as_json=False)
    return buffer.getvalue()


async def test_an_empty_account_is_unknown_not_refuted(tmp_path: Path, shopify_schema: GraphQLSchema) -> None:
    async with make_world(tmp_path, validate_schema=shopify_schema) as w:
        report = await probe(w)
        seen = outcomes(report)
        data_facts = set(RACKBEAT_FACTS) - {"list_envelope", "page_limit", "reference_envelopes"}
        assert {f for f in data_facts if seen[f] is Outcome.UNKNOWN} == data_facts, seen
        assert Outcome.REFUTED not in seen.values()
        assert report.exit_code == 0


async def test_a_missing_scope_is_named(tmp_path: Path, shopify_schema: GraphQLSchema) -> None:
    scopes = DEFAULT_SCOPES.replace(",write_inventory", "").replace(",read_all_orders", "")
    old_since = {"sync_orders_since": "2026-01-01T00:00:00+00:00"}
    async with make_world(
        tmp_path, validate_schema=shopify_schema, shopify_options={"scopes": scopes}, settings=old_since
    ) as w:
        seed(w.rackbeat)
        report = await probe(w)
        scope = next(r for r in report.results if r.fact == ACCESS_SCOPES)
        assert scope.outcome is Outcome.REFUTED
        assert "read_all_orders, write_inventory" in scope.seen
        assert report.exit_code == 78
        assert {r.fact for r in report.blocking} == {ACCESS_SCOPES}


async def test_several_shops_prove_rackbeat_once_and_shopify_per_shop(
    tmp_path: Path, shopify_schema: GraphQLSchema
) -> None:
    async with make_world(tmp_path, validate_schema=shopify_schema) as w:
        seed(w.rackbeat)
        a, b = first_shop(w), add_shop(w)
        b.sim.scopes = DEFAULT_SCOPES.replace(",write_inventory", "")
        w.rackbeat.reset_counts()
        report = await live_check(
            w.rackbeat_client,
            [(s.alias, s.settings, s.shopify) for s in (a, b)],
            now=w.clock.now(),
        )
        facts = [(r.shop, r.fact) for r in report.results]
        assert facts == [(None, f) for f in RACKBEAT_FACTS] + [
            (alias, f) for alias in ("a", "b") for f in SHOPIFY_FACTS
        ]
        assert [(r.shop, r.fact) for r in report.blocking] == [("b", ACCESS_SCOPES)]
        assert "[b] access_scopes: the app lacks write_inventory" in _printed(report)
        assert report.requests == {"rackbeat": sum(w.rackbeat.requests.values()), "shopify": 2}


# --- the gate in `run` -----------------------------------------------------------------------


def outcome_of(gate: ReferenceGate) -> Outcome | None:
    return None if gate.result is None else gate.result.outcome


@asynccontextmanager
async def gated_world(tmp_path: Path, schema: GraphQLSchema, **settings: Any) -> AsyncIterator[World]:
    async with make_world(
        tmp_path, validate_schema=schema, rackbeat_options={"refute": {"reference_search"}}, settings=settings
    ) as w:
        seed(w.rackbeat)
        w.rackbeat.add_product("MUG-1", stock=10)
        w.rackbeat.add_product("frakt", name="Frakt")
        w.shopify_sim.add_product("Mug", [{"sku": "MUG-1", "price": "100.00"}])
        yield w


async def test_refuted_reference_search_holds_orders_until_confirmed(
    tmp_path: Path, shopify_schema: GraphQLSchema
) -> None:
    async with gated_world(tmp_path, shopify_schema) as w:
        gate = ReferenceGate(w.rackbeat_client, clock=w.clock.monotonic)
        flow = orders_flow(w, gate)
        await flow.run_once()  # the first start: the cursor is "now"
        assert flow.refusal is not None
        w.tick(1)
        w.shopify_sim.sell("MUG-1", 2)
        w.tick(60)
        assert await flow.run_once() == 0
        assert flow.refusal is not None
        assert "search by your_reference is refuted" in flow.refusal
        assert len(w.rackbeat.orders) == 3, "nothing imported while refuted"
        held = await w.store.fetchval("SELECT demand FROM order_ledger WHERE state = 'waiting'")
        assert json.loads(str(held)) == {"MUG-1": 2}, "the held order's units stay held for the stock flow"
        # Rackbeat fixed (or the assumption corrected): within the hour, without a restart
        w.rackbeat.refute = frozenset()
        w.tick(1800)
        assert await flow.run_once() == 0  # not probed again yet
        assert flow.refusal is not None
        w.tick(1800)
        assert await flow.run_once() == 1
        assert flow.refusal is None
        assert len(w.rackbeat.orders) == 4


async def test_warn_imports_despite_a_refuted_search(tmp_path: Path, shopify_schema: GraphQLSchema) -> None:
    async with gated_world(tmp_path, shopify_schema, sync_orders_unproven_reference="warn") as w:
        gate = ReferenceGate(w.rackbeat_client, clock=w.clock.monotonic)
        flow = orders_flow(w, gate)
        await flow.run_once()
        w.tick(1)
        w.shopify_sim.sell("MUG-1", 1)
        w.tick(60)
        assert await flow.run_once() == 1
        assert outcome_of(gate) is Outcome.REFUTED


async def test_a_new_account_imports_and_probes_again_after_the_first_order(
    tmp_path: Path, shopify_schema: GraphQLSchema
) -> None:
    async with make_world(tmp_path, validate_schema=shopify_schema) as w:
        w.rackbeat.add_product("MUG-1", stock=10)
        w.rackbeat.add_product("frakt", name="Frakt")
        w.shopify_sim.add_product("Mug", [{"sku": "MUG-1", "price": "100.00"}])
        gate = ReferenceGate(w.rackbeat_client, clock=w.clock.monotonic)
        flow = orders_flow(w, gate)
        await flow.run_once()
        assert outcome_of(gate) is Outcome.UNKNOWN
        w.tick(1)
        w.shopify_sim.sell("MUG-1", 1)
        w.tick(60)
        assert await flow.run_once() == 1, "unknown does not block a new account"
        w.tick(60)
        await flow.run_once()
        assert outcome_of(gate) is Outcome.CONFIRMED, "the first imported order proved the search"


# --- the command -------------------------------------------------------------------------------


async def test_check_live_json_as_a_process(tmp_path: Path) -> None:
    rackbeat = RackbeatSimulator(refute={"reference_search"})
    seed(rackbeat)
    async with apis_on_loopback(rackbeat=rackbeat) as apis:
        values: Mapping[str, str] = {
            "RACKBEAT_API_URL": apis.rackbeat_url,
            "RACKBEAT_API_TOKEN": RACKBEAT_TOKEN,
            "RACKBEAT_CONTACT_EMAIL": "ops@example.com",
            "SHOPIFY_SHOP": "live-check.myshopify.com",
            "SHOPIFY_ACCESS_TOKEN": SHOPIFY_TOKEN,
            "SHOPIFY_ADMIN_URL": apis.shopify_admin_url,
            "SYNC_DB": str(tmp_path / "sync.db"),
            "SYNC_PAYMENT_TERMS": "1",
            "SYNC_CUSTOMER_GROUP": "1",
            "SYNC_EMPLOYEE": "1",
        }
        with anyio.fail_after(30):
            result = await anyio.run_process(
                [sys.executable, "-m", "daemon", "check", "--live", "--json"],
                cwd=tmp_path,
                env=clean_env(values),
                check=False,
                stderr=subprocess.PIPE,
            )
    assert result.returncode == 78, result.stderr.decode()
    document = json.loads(result.stdout)
    by_fact = {row["fact"]: row for row in document["results"]}
    assert set(by_fact) == set(FACTS)
    assert by_fact["reference_search"]["outcome"] == "refuted"
    assert "ignores the text" in by_fact["reference_search"]["seen"]
    assert all(by_fact[f]["outcome"] == "confirmed" for f in SHOPIFY_FACTS)
    assert document["exit"] == 78


def test_json_goes_with_live(capsys: pytest.CaptureFixture[str]) -> None:

    with pytest.raises(SystemExit) as stopped:
        main(["check", "--json"])
    assert stopped.value.code == 2
    assert "--json goes with --live" in capsys.readouterr().err


class OneCycle:
    """The gated orders flow for one runner cycle; the daemon stops after it."""

    name = "orders"

    def __init__(self, flow: OrdersFlow, shutdown: Shutdown) -> None:
        self.flow, self.shutdown = flow, shutdown

    async def run_once(self) -> int:
        try:
            return await self.flow.run_once()
        finally:
            self.shutdown.request()


async def test_health_fails_with_the_reason_while_orders_are_held(
    tmp_path: Path, shopify_schema: GraphQLSchema
) -> None:
    async with gated_world(tmp_path, shopify_schema) as w:
        gate = ReferenceGate(w.rackbeat_client, clock=w.clock.monotonic)
        runner = Runner(
            [OneCycle(orders_flow(w, gate), w.shutdown)],
            store=w.store,
            metrics=w.metrics,
            poll_seconds=60,
            shutdown=w.shutdown,
        )
        with anyio.fail_after(10):
            await runner.run()
        response = await HealthApp(runner, w.store, w.metrics, "test").handle(
            httpx.Request("GET", "http://h/healthz")
        )
        document = json.loads(response.content)
        assert response.status_code == 503
        assert document["status"] == "fail"
        [check] = document["checks"]["orders:lag"]
        assert "orders are held, not imported" in check["output"]
        assert "search by your_reference is refuted" in check["output"]
