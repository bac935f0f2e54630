"""The daemon serving two shops on one Rackbeat account, end to end (issue 12).

``run_daemon`` with ``SHOPS``' account of two shops, each on its own simulated Shopify,
both on one simulated Rackbeat, in real time with a short poll: what each shop shows,
what reaches Rackbeat, and what ``/healthz`` and ``/metrics`` say. The same daemon killed
with SIGKILL is in ``test_process.py``; the flows of two shops on a fake clock in
``test_shops.py``.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from graphql import GraphQLSchema
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr

from daemon.app import run_daemon
from daemon.config import Account, Shop
from daemon.mapping import shopify_heading
from daemon.runner import FlowState, Runner
from daemon.shutdown import Shutdown
from daemon.sim.rackbeat import RackbeatSimulator
from daemon.sim.shopify import Order as ShopifyOrder
from daemon.sim.shopify import ShopifySimulator
from tests.harness import settings_for

pytestmark = pytest.mark.anyio

#: the shops' aliases and domains
DOMAINS = {"a": "shop-a.myshopify.com", "b": "shop-b.myshopify.com"}
POLL = 0.25


def token(alias: str) -> str:
    return f"shpat_daemon_test_{alias}"


@dataclass
class TwoShops:
    """The simulators, the running daemon's runner, and its health listener."""

    shops: dict[str, ShopifySimulator]
    rackbeat: RackbeatSimulator
    runner: Runner
    health: httpx.AsyncClient
    #: answers that stand in for the simulators' (a test's fault injection): the first
    #: that returns a response for a request answers it
    faults: list[Callable[[httpx.Request], httpx.Response | None]] = field(default_factory=list)

    def state(self, alias: str, flow: str) -> FlowState:
        return self.runner.states[f"{alias}/{flow}"]

    async def until(self, condition: Callable[[], bool], what: str, *, within: float = 20.0) -> None:
        """Poll ``condition`` until it holds."""
        try:
            with anyio.fail_after(within):
                while True:
                    if condition():
                        return
                    await anyio.sleep(0.01)
        except TimeoutError:
            pytest.fail(f"not within {within} s: {what}")

    async def cycle_after(self, alias: str, flow: str, moment: float, *, within: float = 20.0) -> None:
        """Wait until a cycle of the flow that began after ``moment`` (``time.time()``) has
        finished (a failed one fails the test)."""
        state = self.state(alias, flow)
        await self.until(lambda: (state.last_attempt or 0) > moment, f"{alias}/{flow} began a cycle")
        began = state.last_attempt or 0
        await self.until(
            lambda: (
                (state.last_success or 0) >= began or state.failures > 0 or (state.last_attempt or 0) > began
            ),
            f"{alias}/{flow} finished its cycle",
            within=within,
        )
        assert state.failures == 0, f"{alias}/{flow} failed: {state.last_error}"
        assert (state.last_success or 0) >= began

    async def healthz(self) -> dict[str, Any]:
        doc: dict[str, Any] = (await self.health.get("/healthz")).json()
        return doc

    async def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        text = (await self.health.get("/metrics")).text
        return {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
        }


@asynccontextmanager
async def two_shops_daemon(
    tmp_path: Path, schema: GraphQLSchema, skus: Mapping[str, int], **settings: Any
) -> AsyncIterator[TwoShops]:
    """Both shops selling ``skus`` (SKU → Rackbeat stock), the daemon serving them, and the
    first stock cycle of each done."""
    sims = {
        alias: ShopifySimulator(
            validate_schema=schema,
            shop_domain=domain,
            access_tokens=(token(alias),),
            # Shopify Plus's bucket: polls four times a second do not wait for points
            bucket_size=20_000,
            restore_rate=1_000,
        )
        for alias, domain in DOMAINS.items()
    }
    rackbeat = RackbeatSimulator()
    for sku, stock in skus.items():
        rackbeat.add_product(sku, stock=stock)
        for sim in sims.values():
            sim.add_product(f"Product {sku}", [{"sku": sku, "price": "100.00"}])
    rackbeat.add_product("frakt", name="Frakt")
    faults: list[Callable[[httpx.Request], httpx.Response | None]] = []

    async def route(request: httpx.Request) -> httpx.Response:
        for fault in faults:
            answer = fault(request)
            if answer is not None:
                return answer
        host = request.url.host
        return await (sims[host.split(".")[0]] if host.endswith(".shopify.sim") else rackbeat).handle(request)

    account = Account(
        tuple(
            Shop(
                alias,
                settings_for(
                    tmp_path / "sync.db",
                    shopify_shop=domain,
                    shopify_access_token=SecretStr(token(alias)),
                    shopify_admin_url=f"http://{alias}.shopify.sim/admin",
                    sync_poll_seconds=POLL,
                    health_listen="127.0.0.1:0",
                    **settings,
                ),
            )
            for alias, domain in DOMAINS.items()
        )
    )
    shutdown = Shutdown()
    ready = anyio.Event()
    started: list[tuple[Runner, int]] = []

    def on_ready(runner: Runner, port: int) -> None:
        started.append((runner, port))
        ready.set()

    async with (
        httpx.AsyncClient(transport=httpx.MockTransport(route)) as http,
        anyio.create_task_group() as tg,
    ):
        daemon = functools.partial(
            run_daemon, account, shutdown=shutdown, http=http, configure_logs=False, on_ready=on_ready
        )
        tg.start_soon(daemon)
        with anyio.fail_after(20):
            await ready.wait()
        [(runner, port)] = started
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", trust_env=False) as health:
            world = TwoShops(sims, rackbeat, runner, health, faults)
            await world.until(
                lambda: all(
                    sim.available(sku) == stock for sim in sims.values() for sku, stock in skus.items()
                ),
                "the first stock cycle of each shop",
            )
            try:
                yield world
            finally:
                shutdown.request()


def order_name(sim: ShopifySimulator, order_id: str) -> str:
    order = sim.node(order_id)
    assert isinstance(order, ShopifyOrder)
    return order.name


def refuse_drafts(status: int) -> Callable[[httpx.Request], httpx.Response | None]:
    """Rackbeat refuses new orders: a 503 (down for writes) or a 422 (rejected)."""

    def fault(request: httpx.Request) -> httpx.Response | None:
        if request.method == "POST" and request.url.path.endswith("/orders/drafts"):
            if status == 422:
                return httpx.Response(422, json={"message": "Refused.", "errors": {"lines": ["refused"]}})
            return httpx.Response(
                status, text="<html>unavailable</html>", headers={"content-type": "text/html"}
            )
        return None

    return fault


@pytest.mark.parametrize("status", [503, 422])
async def test_the_last_units_sold_in_one_shop_while_rackbeat_refuses_orders_leave_the_other_shop(
    tmp_path: Path, shopify_schema: GraphQLSchema, status: int
) -> None:
    async with two_shops_daemon(
        tmp_path, shopify_schema, {"LAST-3": 3, "MUG-1": 20}, sync_order_status="booked"
    ) as d:
        a, b = d.shops["a"], d.shops["b"]
        d.faults.append(refuse_drafts(status))
        a.sell("LAST-3", 3, email="anna@example.com")
        sold = time.time()
        assert a.available("LAST-3") == 0  # Shopify's own doing

        def bound() -> int:
            """Rackbeat's available less shop A's demand it does not reserve (the order is
            not in Rackbeat: its draft was refused)."""
            assert not [o for o in d.rackbeat.orders if o.your_reference == "#1001"]
            return max(0, math.floor(d.rackbeat.available_quantity("LAST-3") - 3))

        seen: list[int] = []

        async def sample() -> None:
            while True:  # shop B's figure as often as a customer could look
                seen.append(b.available("LAST-3"))
                assert seen[-1] <= bound(), seen
                await anyio.sleep(0.005)

        # within the first stock cycle of shop B that begins after the sale
        await d.cycle_after("b", "stock", sold)
        assert b.available("LAST-3") == 0
        async with anyio.create_task_group() as tg:
            tg.start_soon(sample)
            for _ in range(2):  # and it stays there, cycle after cycle
                await d.cycle_after("b", "stock", time.time())
                assert b.available("LAST-3") == bound() == 0
            d.rackbeat.goods_receipt("LAST-3", 2)  # Rackbeat's figure 5: B may offer 2, not 5
            for _ in range(2):
                await d.cycle_after("b", "stock", time.time())
                assert b.available("LAST-3") == bound() == 2
            tg.cancel_scope.cancel()
        assert max(seen) <= 2
        # shop A's order is held as demand in the ledger all along: refused, not lost
        orders = d.state("a", "orders")
        if status == 503:
            assert orders.status == "failing"
        else:
            assert orders.parked == 1
        assert b.available("MUG-1") == 20  # the rest of shop B's catalogue is untouched


async def test_a_shop_whose_token_is_revoked_fails_alone_and_the_other_keeps_syncing(
    tmp_path: Path, shopify_schema: GraphQLSchema
) -> None:
    async with two_shops_daemon(tmp_path, shopify_schema, {"MUG-1": 20, "TEE-2": 10}) as d:
        a, b = d.shops["a"], d.shops["b"]
        assert (await d.healthz())["status"] == "pass"
        a.static_tokens.clear()  # shop A's token is revoked: its Shopify answers 401
        revoked = time.time()
        await d.until(
            lambda: all(d.state("a", flow).status == "fatal" for flow in ("orders", "stock", "products")),
            "every flow of shop A failing",
        )
        # shop B goes on: its order reaches Rackbeat, Rackbeat's stock reaches it
        order = b.sell("MUG-1", 2, email="bo@example.com")
        d.rackbeat.goods_receipt("TEE-2", 5)
        await d.until(
            lambda: (
                b.available("TEE-2") == 15
                and any(
                    o.heading == shopify_heading(order_name(b, order), DOMAINS["b"])
                    and o.is_ready_for_shipping
                    for o in d.rackbeat.orders
                )
            ),
            "shop B's order in Rackbeat and Rackbeat's receipt in shop B",
        )
        for flow in ("orders", "stock", "products"):
            await d.cycle_after("b", flow, revoked)
        assert a.available("TEE-2") == 10  # shop A is not written to: it refuses us

        response = await d.health.get("/healthz")
        assert response.status_code == 503
        checks = {name: c[0] for name, c in response.json()["checks"].items()}
        for flow in ("orders", "stock", "products"):
            failing, passing = checks[f"a/{flow}:lag"], checks[f"b/{flow}:lag"]
            assert (failing["shop"], failing["status"]) == ("a", "fail")
            assert failing["output"].startswith("auth:")
            assert "SHOPIFY_ACCESS_TOKEN" in failing["output"]
            assert (passing["shop"], passing["status"]) == ("b", "pass")
        samples = await d.metrics()
        for flow in ("orders", "stock", "products"):
            assert samples[("rackbeat_shopify_flow_up", (("flow", flow), ("shop", "a")))] == 0
            assert samples[("rackbeat_shopify_flow_up", (("flow", flow), ("shop", "b")))] == 1
        assert (
            samples[("rackbeat_shopify_errors_total", (("flow", "orders"), ("kind", "auth"), ("shop", "a")))]
            >= 1
        )
        assert samples[("rackbeat_shopify_records_applied_total", (("flow", "orders"), ("shop", "b")))] == 1
        assert samples[("rackbeat_shopify_api_requests_total", (("api", "shopify"), ("shop", "b")))] > 0
        assert samples[("rackbeat_shopify_api_requests_total", (("api", "rackbeat"), ("shop", "")))] > 0
        body = (await d.health.get("/metrics")).text + response.text
        for alias in DOMAINS:
            assert token(alias) not in body
