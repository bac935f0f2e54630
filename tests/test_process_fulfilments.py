"""Rackbeat ships → Shopify fulfilled, end to end: the real daemon process (``python -m
daemon run``), both simulators behind loopback sockets, and a SIGKILL at the one moment
``fulfillmentCreate``'s missing idempotency key matters: after Shopify applied the
fulfilment and before the daemon heard so (issue 13's test).

Everything waited for is observable state (the simulators' records, ``/metrics``,
``/healthz``, the state DB), polled with a deadline; nothing sleeps a guessed time.
"""

from __future__ import annotations

import contextlib
import signal
import sqlite3
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from daemon.sim.rackbeat import RackbeatSimulator
from daemon.sim.shopify import ShopifySimulator, SimFulfillment
from tests.harness import apis_on_loopback, serving
from tests.test_process import (
    RACKBEAT_TOKEN,
    SHOPIFY_TOKEN,
    Daemon,
    assert_no_token,
    daemon_env,
    last_successes,
    running_daemon,
    unused_port,
)

pytestmark = pytest.mark.anyio

SHOP = "process-test.myshopify.com"
SKUS = ("MUG-1", "TEE-2", "CAP-3")
#: what the warehouse ships: the first five with carrier, tracking number and URL, then three without
SHIPPED_WITH_TRACKING, SHIPPED_WITHOUT = 5, 3
SHIPPED = SHIPPED_WITH_TRACKING + SHIPPED_WITHOUT


def tracking_of(n: int) -> tuple[str, str, str]:
    """The carrier, tracking number and URL of the ``n``-th shipment with tracking."""
    return ("PostNord", f"PN{n:08}DK", f"https://tracking.example/PN{n:08}DK")


def world(orders: int) -> tuple[ShopifySimulator, RackbeatSimulator, list[str]]:
    """The shop and the warehouse with three products, ``orders`` one-line Shopify orders
    waiting (returned by Shopify name, in the order placed)."""
    shopify = ShopifySimulator(
        shop_domain=SHOP, access_tokens=(SHOPIFY_TOKEN,), bucket_size=20_000, restore_rate=1_000
    )
    rackbeat = RackbeatSimulator(token=RACKBEAT_TOKEN)
    rackbeat.add_product("frakt", "Frakt", group="2", inventory_enabled=False)
    for sku in SKUS:
        rackbeat.add_product(sku, stock=500)
        shopify.add_product(f"Product {sku}", [{"sku": sku, "price": "125.00", "stock": 500}])
    names = []
    for n in range(orders):
        order_id = shopify.sell(SKUS[n % 3], 1 + n % 2, email=f"customer{n}@example.com")
        names.append(shopify.orders[order_id].name)
    return shopify, rackbeat, names


def env_for(tmp_path: Path, rackbeat_url: str, shopify_url: str, **extra: str) -> dict[str, str]:
    """``run`` against the simulators, polling every 0.3 s, importing the orders waiting;
    ``extra`` variables on top."""
    env = daemon_env(
        tmp_path, rackbeat_url=rackbeat_url, shopify_admin_url=shopify_url, health_port=unused_port()
    )
    env.update(
        {
            "SYNC_POLL_SECONDS": "0.3",
            "SYNC_DEFAULT_PRODUCT_GROUP": "1",
            "SYNC_CURRENCY": "DKK",
            # the orders waiting were placed a moment ago: import them
            "SYNC_ORDERS_SINCE": (datetime.now(UTC) - timedelta(minutes=1)).isoformat(),
            **extra,
        }
    )
    return env


def rackbeat_number(rackbeat: RackbeatSimulator, name: str) -> str:
    """The one Rackbeat order the daemon made of the Shopify order ``name``."""
    (number,) = [o.number for o in rackbeat.orders if o.your_reference == name]
    return number


async def until(condition: Callable[[], bool], daemon: Daemon, *, within: float, what: str) -> None:
    """Poll ``condition`` until it holds; fail when the daemon exits or time runs out."""
    try:
        with anyio.fail_after(within):
            while not condition():
                if daemon.process.returncode is not None:
                    pytest.fail(f"daemon exited with {daemon.process.returncode}:\n{daemon.output()}")
                await anyio.sleep(0.05)
    except TimeoutError:
        pytest.fail(f"timed out waiting for {what}:\n{daemon.output()[-4000:]}")


def events(text: str, flow: str, event: str) -> float:
    """A domain counter's value in ``/metrics`` text (every shop's)."""
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "rackbeat_shopify_events_total"
        and sample.labels.get("flow") == flow
        and sample.labels.get("event") == event
    )


async def imported(daemon: Daemon, client: httpx.AsyncClient, count: int, *, within: float) -> None:
    """Wait until the daemon counted ``count`` orders imported: each is booked in Rackbeat
    and its Rackbeat number is in the ledger by then."""
    with anyio.fail_after(within):
        while events((await daemon.get(client, "/metrics")).text, "orders", "imported") < count:
            if daemon.process.returncode is not None:
                pytest.fail(f"daemon exited with {daemon.process.returncode}:\n{daemon.output()}")
            await anyio.sleep(0.05)


async def cycles_after(
    daemon: Daemon, client: httpx.AsyncClient, flow: str, count: int, *, within: float
) -> None:
    """Wait for ``count`` cycles of ``flow`` that succeeded after now (the first one that
    ends after now may have begun before, hence two for "a whole cycle after")."""
    with anyio.fail_after(within):
        for _ in range(count):
            mark = time.time()
            while True:
                if daemon.process.returncode is not None:
                    pytest.fail(f"daemon exited with {daemon.process.returncode}:\n{daemon.output()}")
                successes = await last_successes(daemon, client, flow)
                if successes and all(when > mark for when in successes.values()):
                    break
                await anyio.sleep(0.05)


def fulfilments_by_order(shopify: ShopifySimulator) -> dict[str, list[SimFulfillment]]:
    """Every Shopify order's fulfilments, by order name."""
    return {order.name: list(order.fulfillments) for order in shopify.orders.values()}


def ledger_rows(db: Path) -> dict[str, tuple[str, str | None, str | None]]:
    """The state DB's ``fulfilments`` rows by Shopify order name: (state, note, fulfilment id)."""
    with contextlib.closing(sqlite3.connect(db)) as conn:
        rows = conn.execute(
            "SELECT l.order_name, f.state, f.note, f.fulfillment_id FROM fulfilments f "
            "JOIN order_ledger l ON l.shop = f.shop AND l.order_id = f.order_id"
        ).fetchall()
    return {str(name): (str(state), note, fulfillment_id) for name, state, note, fulfillment_id in rows}


async def test_shipped_orders_are_fulfilled_once_with_their_tracking_through_kill_9(tmp_path: Path) -> None:
    shopify, rackbeat, names = world(12)
    shipped, unshipped = names[:SHIPPED], names[SHIPPED:]

    # the daemon dies the moment Shopify has applied the first fulfilment: it never hears
    # the answer, and its intent row is all it has
    daemons: list[Daemon] = []
    killed: list[str] = []

    async def kill_after_the_first_fulfilment(request: httpx.Request) -> httpx.Response:
        before = {name: len(f) for name, f in fulfilments_by_order(shopify).items()}
        response = await shopify.handle(request)
        if killed or b"fulfillmentCreate" not in request.content:
            return response
        landed = [name for name, f in fulfilments_by_order(shopify).items() if len(f) > before[name]]
        if landed:
            killed.extend(landed)
            daemons[0].process.kill()
            await daemons[0].process.wait()  # dead before the answer leaves
        return response

    async with (
        serving(kill_after_the_first_fulfilment, "shopify") as shopify_base,
        serving(rackbeat.handle, "rackbeat") as rackbeat_base,
    ):
        env = env_for(tmp_path, f"{rackbeat_base}/api", f"{shopify_base}/admin")
        db = Path(env["SYNC_DB"])
        async with running_daemon(tmp_path, env, "first") as first, httpx.AsyncClient(timeout=5) as client:
            daemons.append(first)
            await first.wait_until(client, "/livez", 200, within=20)
            await imported(first, client, len(names), within=20)
            # the fulfilments flow has run: it fulfils what is shipped from its first start on
            await cycles_after(first, client, "fulfilments", 1, within=10)
            assert not any(fulfilments_by_order(shopify).values())
            for n, name in enumerate(shipped):
                number = rackbeat_number(rackbeat, name)
                if n < SHIPPED_WITH_TRACKING:
                    carrier, tracking, url = tracking_of(n)
                    rackbeat.ship(number, carrier=carrier, tracking=tracking, url=url)
                else:
                    rackbeat.ship(number)
            with anyio.fail_after(20):
                assert await first.process.wait() == -signal.SIGKILL

        # killed between sending and recording: Shopify has the fulfilment, the DB only the intent
        [name_killed] = killed
        assert name_killed in shipped
        assert len(fulfilments_by_order(shopify)[name_killed]) == 1
        assert ledger_rows(db) == {name_killed: ("sending", None, None)}
        assert shopify.requests["FulfillmentCreate"] == 1

        async with running_daemon(tmp_path, env, "second") as second, httpx.AsyncClient(timeout=5) as client:
            await second.wait_until(client, "/livez", 200, within=20)
            await until(
                lambda: all(fulfilments_by_order(shopify)[name] for name in shipped),
                second,
                within=20,
                what="a fulfilment of every shipped order",
            )
            # two more fulfilments cycles find nothing left to do
            await cycles_after(second, client, "fulfilments", 2, within=10)
            health = (await second.get(client, "/healthz")).json()
            assert await second.stop(within=10) == 0

    found = fulfilments_by_order(shopify)
    for n, name in enumerate(shipped):
        [fulfilment] = found[name]  # exactly one per shipped order, the killed one too
        assert fulfilment.quantities == {SKUS[n % 3]: 1 + n % 2}, name
        expected = tracking_of(n) if n < SHIPPED_WITH_TRACKING else (None, None, None)
        assert fulfilment.tracking == expected, name
        assert fulfilment.notify_customer is True  # SYNC_FULFILMENT_NOTIFY_CUSTOMER's default
    assert all(found[name] == [] for name in unshipped)
    assert all(not o.is_shipped for o in rackbeat.orders if o.your_reference in unshipped)
    # one fulfillmentCreate per shipped order: the one in doubt was settled by reading, not resent
    assert shopify.requests["FulfillmentCreate"] == SHIPPED
    rows = ledger_rows(db)
    assert set(rows) == set(shipped)
    assert {state for state, _, _ in rows.values()} == {"done"}
    assert rows[name_killed] == ("done", "the earlier send had landed", found[name_killed][0].id)
    fulfilments_check = [c[0] for c in health["checks"].values() if c[0]["componentId"] == "fulfilments"]
    assert [c["parked"] for c in fulfilments_check] == [0]
    for daemon in (first, second):
        assert "Traceback" not in daemon.output()
        assert_no_token(daemon.output(), "the daemon's output")


async def test_with_sync_fulfilments_false_shipped_orders_are_not_fulfilled(tmp_path: Path) -> None:
    shopify, rackbeat, names = world(3)
    async with apis_on_loopback(shopify, rackbeat) as apis:
        env = env_for(tmp_path, apis.rackbeat_url, apis.shopify_admin_url, SYNC_FULFILMENTS="false")
        async with running_daemon(tmp_path, env, "off") as daemon, httpx.AsyncClient(timeout=5) as client:
            await daemon.wait_until(client, "/livez", 200, within=20)
            await imported(daemon, client, len(names), within=20)
            carrier, tracking, url = tracking_of(0)
            rackbeat.ship(rackbeat_number(rackbeat, names[0]), carrier=carrier, tracking=tracking, url=url)
            rackbeat.ship(rackbeat_number(rackbeat, names[1]))
            # the daemon's cycles go on after the shipments, and fulfil nothing
            await cycles_after(daemon, client, "orders", 2, within=10)
            health = (await daemon.get(client, "/healthz")).json()
            fulfilments_seen = await last_successes(daemon, client, "fulfilments")
            assert await daemon.stop(within=10) == 0

    assert {c[0]["componentId"] for c in health["checks"].values()} == {"orders", "stock", "products"}
    assert fulfilments_seen == {}
    assert not any(fulfilments_by_order(shopify).values())
    assert shopify.requests["FulfillmentCreate"] == 0
    assert shopify.requests["OrderFulfilment"] == 0
    assert "Traceback" not in daemon.output()
    assert_no_token(daemon.output(), "the daemon's output")
