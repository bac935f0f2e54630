"""A world for flow tests: both simulators, both clients, a state DB and settings.

Everything runs in-process over ``httpx.MockTransport`` with one fake clock, so a test
drives daemon cycles and simulated activity in turn and nothing sleeps. Every Shopify
document the daemon sends is validated against Shopify's published schema unless a test
opts out with ``validate_schema=None`` (the schema is fetched once per run; without it
the test skips, or fails under ``$CI``). :func:`serving` puts a simulator behind a real
loopback socket instead.

    async with make_world(tmp_path) as w:
        w.rackbeat.add_product("SKU-1", stock=5)
        ...
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import httpx
from pydantic import SecretStr

from daemon.config import IsolatedSettings, Settings
from daemon.demand import OrderDemand
from daemon.flows.fulfilments import FulfilmentsFlow
from daemon.flows.orders import OrdersFlow
from daemon.flows.stock import StockFlow
from daemon.index import SkuIndex
from daemon.live_check import ReferenceGate
from daemon.mapping import shopify_heading
from daemon.metrics import Metrics
from daemon.rackbeat import RackbeatClient
from daemon.runner import InlineCycles, flow_key
from daemon.services import shares_locations
from daemon.shared import KeyedLocks, StockReads
from daemon.shopify import ShopifyClient
from daemon.shutdown import Shutdown
from daemon.sim.rackbeat import DEFAULT_TOKEN as RACKBEAT_TOKEN
from daemon.sim.rackbeat import RackbeatSimulator
from daemon.sim.shopify import DEFAULT_ACCESS_TOKEN as SHOPIFY_TOKEN
from daemon.sim.shopify import ShopifySimulator, SimClock
from daemon.store import Store
from daemon.webserver import handler_app, serve
from tests.shopify_schema import require_admin_schema

SHOP = "demo-shop.myshopify.com"
RACKBEAT_URL = "http://rackbeat.sim/api"
SHOPIFY_ADMIN = "http://shopify.sim/admin"
#: ``make_world``'s default: validate against Shopify's published schema
REAL_SCHEMA: Any = object()


@asynccontextmanager
async def serving(
    handler: Callable[[httpx.Request], Awaitable[httpx.Response]], name: str
) -> AsyncIterator[str]:
    """Serve a simulator's ``handle`` on a free loopback port; yield its ``http://host:port``."""
    async with anyio.create_task_group() as tg:
        port = await tg.start(functools.partial(serve, handler_app(handler), name=name), "127.0.0.1", 0)
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            tg.cancel_scope.cancel()


@dataclass
class Apis:
    """Both simulators behind real loopback sockets, and their base URLs."""

    shopify: ShopifySimulator
    rackbeat: RackbeatSimulator
    shopify_admin_url: str
    rackbeat_url: str


@asynccontextmanager
async def apis_on_loopback(
    shopify: ShopifySimulator | None = None, rackbeat: RackbeatSimulator | None = None
) -> AsyncIterator[Apis]:
    """Serve both simulators (new empty ones unless given) on free loopback ports."""
    shopify, rackbeat = shopify or ShopifySimulator(), rackbeat or RackbeatSimulator()
    async with serving(shopify.handle, "shopify-sim") as shop, serving(rackbeat.handle, "rackbeat-sim") as rb:
        yield Apis(shopify, rackbeat, f"{shop}/admin", f"{rb}/api")


@dataclass
class World:
    """The two simulated systems and the daemon's parts wired to them."""

    clock: SimClock
    shopify_sim: ShopifySimulator
    rackbeat: RackbeatSimulator
    shopify: ShopifyClient
    rackbeat_client: RackbeatClient
    store: Store
    settings: Settings
    metrics: Metrics
    http: httpx.AsyncClient | None = None
    shutdown: Shutdown = field(default_factory=Shutdown)
    location_id: str = ""
    #: called with (request, "before" | "after") around every simulated request: a test's
    #: way to inject a crash before a request lands or after it landed (the answer is lost)
    hook: Callable[[httpx.Request, str], None] | None = None
    #: more simulated Shopify shops by host (:func:`add_shop`); any other host is Rackbeat
    shops: dict[str, ShopifySimulator] = field(default_factory=dict)

    @property
    def index(self) -> SkuIndex:
        """A SKU index over this world's store (a new object each time; the state is the DB)."""
        return SkuIndex(self.store, self.shopify, clock=self.clock.now)

    async def restart(self) -> None:
        """What a process restart does to the daemon's state: the DB is closed and reopened
        (anything uncommitted is gone); the simulated systems keep theirs."""
        await self.store.close()
        self.store = await Store.open(self.settings.sync_db, self.settings.shop)
        self.metrics = Metrics()
        self.shutdown = Shutdown()

    def tick(self, seconds: float = 60.0) -> None:
        """Let time pass (poll interval, Shopify's search lag, parked-record backoff)."""
        self.clock.advance(seconds)


def settings_for(db: Path, **overrides: Any) -> Settings:
    """Valid settings pointing at the simulators; ``overrides`` by field name."""
    values: dict[str, Any] = {
        "rackbeat_api_url": RACKBEAT_URL,
        "rackbeat_api_token": SecretStr(RACKBEAT_TOKEN),
        "shopify_shop": SHOP,
        "shopify_access_token": SecretStr(SHOPIFY_TOKEN),
        "shopify_admin_url": SHOPIFY_ADMIN,
        "sync_db": db,
        "sync_poll_seconds": 1.0,
        "rackbeat_contact_email": "ops@example.com",
        # numbers the simulated Rackbeat has out of the box
        "sync_payment_terms": "1",
        "sync_customer_group": "1",
        "sync_employee": "1",
        "sync_default_product_group": "1",
    }
    values.update(overrides)
    return IsolatedSettings.of(values)


@asynccontextmanager
async def make_world(
    tmp_path: Path,
    *,
    validate_schema: Any = REAL_SCHEMA,
    settings: Mapping[str, Any] | None = None,
    shopify_options: Mapping[str, Any] | None = None,
    rackbeat_options: Mapping[str, Any] | None = None,
) -> AsyncIterator[World]:
    """Open a world; ``validate_schema`` is the schema Shopify documents must pass: by
    default Shopify's published one, None to skip validation."""
    if validate_schema is REAL_SCHEMA:
        validate_schema = require_admin_schema()
    clock = SimClock(datetime(2026, 11, 1, 10, 0, tzinfo=UTC))

    async def sleep(seconds: float) -> None:
        clock.advance(seconds)

    shopify_sim = ShopifySimulator(
        now=clock.now,
        monotonic=clock.monotonic,
        sleep=sleep,
        validate_schema=validate_schema,
        **dict(shopify_options or {}),
    )
    location_id = shopify_sim.add_location("Warehouse", primary=True)
    rackbeat = RackbeatSimulator(
        now=clock.now, monotonic=clock.monotonic, sleep=sleep, **dict(rackbeat_options or {})
    )
    s = settings_for(tmp_path / "sync.db", **dict(settings or {}))
    store = await Store.open(s.sync_db, s.shop)

    world: World | None = None

    async def route(request: httpx.Request) -> httpx.Response:
        hook = world.hook if world is not None else None
        if hook is not None:
            hook(request, "before")
        host = request.url.host
        other = world.shops.get(host) if world is not None else None
        sim = shopify_sim if host == "shopify.sim" else other or rackbeat
        response = await sim.handle(request)
        if hook is not None:
            hook(request, "after")
        return response

    try:
        async with httpx.AsyncClient(transport=httpx.MockTransport(route)) as http:
            shopify = ShopifyClient.from_settings(s, http, sleep=sleep, clock=clock.monotonic)
            rackbeat_client = RackbeatClient.from_settings(s, http, sleep=sleep, clock=clock.monotonic)
            world = World(
                clock=clock,
                shopify_sim=shopify_sim,
                rackbeat=rackbeat,
                shopify=shopify,
                rackbeat_client=rackbeat_client,
                store=store,
                settings=s,
                metrics=Metrics(),
                location_id=location_id,
                http=http,
            )
            yield world
    finally:
        await (world.store if world is not None else store).close()


def later(clock: SimClock, **delta: float) -> datetime:
    """A moment after the clock's now."""
    return clock.now() + timedelta(**delta)


def orders_flow(w: World, gate: ReferenceGate | None = None) -> OrdersFlow:
    """The orders flow of ``w``, on its clock (held by ``gate`` as in ``run``, when given)."""
    return OrdersFlow(
        w.settings,
        w.store,
        w.shopify,
        w.rackbeat_client,
        metrics=w.metrics,
        shutdown=w.shutdown,
        clock=w.clock.now,
        gate=gate,
    )


def fulfilments_flow(w: World) -> FulfilmentsFlow:
    """The fulfilments flow of ``w``, on its clock."""
    return FulfilmentsFlow(
        w.settings,
        w.store,
        w.shopify,
        w.rackbeat_client,
        metrics=w.metrics,
        shutdown=w.shutdown,
        clock=w.clock.now,
    )


# --- several shops on one Rackbeat account ---------------------------------------------------------

#: the domain of the second shop :func:`add_shop` adds by default
SHOP_B = "second-shop.myshopify.com"


@dataclass
class ShopWorld:
    """One Shopify shop of a world that serves several (:func:`first_shop`, :func:`add_shop`):
    its simulator, its client, its settings and its view of the one state DB."""

    alias: str
    sim: ShopifySimulator
    shopify: ShopifyClient
    settings: Settings
    store: Store
    metrics: Metrics


def first_shop(w: World, alias: str = "a") -> ShopWorld:
    """``w``'s own shop as one shop of several."""
    return ShopWorld(alias, w.shopify_sim, w.shopify, w.settings, w.store, w.metrics.for_shop(alias))


def add_shop(w: World, alias: str = "b", domain: str = SHOP_B, **settings: Any) -> ShopWorld:
    """A second simulated Shopify shop on ``w``'s clock, Rackbeat and state DB, served at
    ``http://<alias>.shopify.sim``; ``settings`` are its own values (S10 …), the rest are
    the first shop's (the account-scoped ones must be)."""
    host = f"{alias}.shopify.sim"
    token = f"shpat_{alias}_sim_token"
    sim = ShopifySimulator(
        now=w.clock.now,
        monotonic=w.clock.monotonic,
        sleep=w.clock.sleep,
        validate_schema=w.shopify_sim.validate_schema,
        search_lag=w.shopify_sim.search_lag,
        shop_domain=domain,
        access_tokens=(token,),
    )
    w.shops[host] = sim
    values = w.settings.model_dump()
    values.update(
        shopify_shop=domain,
        shopify_access_token=SecretStr(token),
        shopify_admin_url=f"http://{host}/admin",
        **settings,
    )
    s = IsolatedSettings.of(values)
    assert w.http is not None
    client = ShopifyClient.from_settings(s, w.http, sleep=w.clock.sleep, clock=w.clock.monotonic)
    return ShopWorld(alias, sim, client, s, w.store.for_shop(domain), w.metrics.for_shop(alias))


def increasing(clock: SimClock) -> Callable[[], float]:
    """``clock``'s monotonic time, a microsecond later on every read: a fake clock stands
    still between ticks, and a stock scan must be seen to start after a cycle's marker."""
    last = clock.monotonic()

    def now() -> float:
        nonlocal last
        last = max(clock.monotonic(), last + 1e-6)
        return last

    return now


@dataclass
class AccountFlows:
    """The orders and stock flows of several shops, wired as ``build_account_flows`` wires
    them (one :class:`StockReads`, one customer lock, each stock flow catching up the
    orders of every shop whose S10 locations meet its own), on the world's clock; keys are
    the shops' aliases."""

    orders: dict[str, OrdersFlow]
    stock: dict[str, StockFlow]
    reads: StockReads


def account_flows(
    w: World,
    shops: Sequence[ShopWorld],
    *,
    before_orders: Callable[[str], Awaitable[object]] | None = None,
    gather: float = 0.0,
) -> AccountFlows:
    """:class:`AccountFlows` of ``shops``. A stock flow's catch-up runs the orders cycle it
    asks for inline, after ``before_orders(alias)`` (a test's chance to act mid-cycle)."""
    several = len(shops) > 1
    monotonic = increasing(w.clock)
    reads = StockReads(w.rackbeat_client, shops=len(shops), gather=gather, clock=monotonic)
    customers = KeyedLocks()
    orders = {
        shop.alias: OrdersFlow(
            shop.settings,
            shop.store,
            shop.shopify,
            w.rackbeat_client,
            metrics=shop.metrics,
            shutdown=w.shutdown,
            customers=customers,
            clock=w.clock.now,
        )
        for shop in shops
    }

    def orders_cycle(alias: str) -> Callable[[], Awaitable[object]]:
        async def cycle() -> object:
            if before_orders is not None:
                await before_orders(alias)
            return await orders[alias].run_once()

        return cycle

    cycles = InlineCycles(
        {flow_key(shop.alias, "orders", several=several): orders_cycle(shop.alias) for shop in shops}
    )
    stock: dict[str, StockFlow] = {}
    for shop in shops:
        meeting = [o for o in shops if o is not shop and shares_locations(shop.settings, o.settings)]
        stock[shop.alias] = StockFlow(
            shop.settings,
            shop.store,
            shop.shopify,
            w.rackbeat_client,
            index=SkuIndex(shop.store, shop.shopify, clock=w.clock.now),
            metrics=shop.metrics,
            shutdown=w.shutdown,
            demand=OrderDemand(shop.store, [shop.settings.shop, *(o.settings.shop for o in meeting)]),
            cycles=cycles,
            reads=reads,
            catch_up=[flow_key(o.alias, "orders", several=several) for o in (shop, *meeting)],
            clock=w.clock.now,
            monotonic=monotonic,
        )
    return AccountFlows(orders, stock, reads)


async def book_for(w: World, shops: Sequence[ShopWorld], number: str) -> None:
    """Book a Rackbeat draft and let the order ledger know, as the orders flow does when it
    books a draft it made; the draft's heading says whose it is (two shops may each have a
    ``#1001``)."""
    w.rackbeat.book(number)
    order = w.rackbeat.order(number)
    [shop] = [
        s for s in shops if order.heading == shopify_heading(str(order.your_reference), s.settings.shop)
    ]
    async with w.store.transaction() as tx:
        await tx.execute(
            "UPDATE order_ledger SET rackbeat_state = 'booked' WHERE shop = ? AND order_name = ?",
            (shop.settings.shop, order.your_reference),
        )
