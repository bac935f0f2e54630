"""``rackbeat-shopify demo``: the real daemon against the built-in simulators, live.

Starts a simulated Shopify and a simulated Rackbeat on loopback (real HTTP servers) with
a sample catalogue (200 products over 3 Rackbeat locations, a few customers), runs the
daemon against them with a short poll interval, and makes things happen every few
seconds: Shopify orders, goods receipts and shipments in Rackbeat, a product edit. A
summary is redrawn in the terminal; at the end a truth check compares both systems.

Needs no settings, no network and no ``.env``: the settings are built here, and the state
DB lives in a temporary directory unless ``--db`` names one.
"""

from __future__ import annotations

import random
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, TextIO

import anyio
import httpx
from pydantic import SecretStr

from daemon.app import run_daemon
from daemon.config import IsolatedSettings, Settings
from daemon.httpserver import HTTPServer
from daemon.logs import configure_logging
from daemon.runner import Runner, Shutdown
from daemon.sim.rackbeat import DEFAULT_TOKEN as RACKBEAT_TOKEN
from daemon.sim.rackbeat import RackbeatSimulator
from daemon.sim.shopify import DEFAULT_ACCESS_TOKEN, ShopifySimulator

PRODUCTS = 200
#: SKUs the demo shop does not have in Shopify (stock and orders simply do not meet them)
RACKBEAT_ONLY = 5
CUSTOMERS = [
    ("Astrid Lindqvist", "astrid@example.se"),
    ("Bjørn Hansen", "bjorn@example.dk"),
    ("Camilla Øster", "camilla@example.no"),
    ("David Åberg", "david@example.se"),
    ("Elin Sørensen", "elin@example.dk"),
]
NOUNS = ("Mug", "Plate", "Bowl", "Vase", "Candle", "Throw", "Cushion", "Lamp", "Tray", "Jug")
ADJECTIVES = ("Nordic", "Fjord", "Birch", "Granite", "Linen", "Åland", "Skagen", "Öland", "Moss", "Ember")


@dataclass
class Demo:
    """The running demo: the simulators, what was done, and the daemon's health URL."""

    shopify: ShopifySimulator
    rackbeat: RackbeatSimulator
    rng: random.Random
    skus: list[str] = field(default_factory=list)
    shopify_orders: list[str] = field(default_factory=list)
    events: dict[str, int] = field(default_factory=dict)
    health_url: str = ""
    #: the order the demo expects to see parked (UNKNOWN_SKU)
    parked_order: str | None = None
    runner: Runner | None = None

    def note(self, event: str) -> None:
        self.events[event] = self.events.get(event, 0) + 1


def seed(demo: Demo) -> None:
    """The sample catalogue on both sides."""
    rb, shop, rng = demo.rackbeat, demo.shopify, demo.rng
    rb.add_location("3", "Outlet")
    rb.add_product("frakt", "Frakt", sales_price="39.20")
    shop.add_location("Warehouse", primary=True)
    for n in range(PRODUCTS):
        sku = f"DEMO-{n + 1:03}"
        name = f"{ADJECTIVES[n % 10]} {NOUNS[(n // 10) % 10]} {n // 100 + 1}"
        price = Decimal(rng.randrange(40, 800)) + Decimal("0.00")
        stock = {"1": rng.randrange(0, 40), "2": rng.randrange(0, 10), "3": rng.randrange(0, 5)}
        rb.add_product(sku, name, sales_price=price, cost_price=price * Decimal("0.4"), stock=stock)
        if n < PRODUCTS - RACKBEAT_ONLY:
            shop.add_product(name, [{"sku": sku, "price": str(price * Decimal("1.25"))}])
            demo.skus.append(sku)
    shop.add_product("Gift card", [{"sku": "GIFT-1", "price": "250.00"}])  # not in Rackbeat
    for name, email in CUSTOMERS[:3]:
        rb.add_customer(name, email)


def act(demo: Demo) -> str:
    """One piece of activity, chosen at random; returns what happened."""
    rng, shop, rb = demo.rng, demo.shopify, demo.rackbeat
    roll = rng.random()
    if roll < 0.45:
        name, email = rng.choice(CUSTOMERS)
        first, last = name.split(" ", 1)
        lines = [(rng.choice(demo.skus), rng.randint(1, 2)) for _ in range(rng.randint(1, 3))]
        lines = [(sku, qty) for sku, qty in lines if shop.available(sku) >= qty]
        if not lines:
            return "a customer found nothing in stock"
        demo.shopify_orders.append(
            shop.create_order(lines, email=email, first_name=first, last_name=last, shipping_price="49.00")
        )
        demo.note("orders placed")
        return f"Shopify order by {name}: {', '.join(f'{q}× {s}' for s, q in lines)}"
    if roll < 0.70:
        sku = rng.choice(demo.skus)
        quantity = rng.randint(5, 20)
        rb.goods_receipt(sku, quantity, rng.choice(["1", "2", "3"]))
        demo.note("goods receipts")
        return f"Rackbeat goods receipt: {quantity} × {sku}"
    if roll < 0.90:
        booked = [o for o in rb.orders if o.is_booked and not o.is_shipped and not o.is_cancelled]
        if not booked:
            return "nothing to ship yet"
        order = rng.choice(booked)
        rb.ship(order.number)
        demo.note("shipments")
        return f"Rackbeat shipped order {order.number}"
    sku = rng.choice(demo.skus)
    product = rb.products[sku]
    new_price = (product.sales_price * Decimal("1.05")).quantize(Decimal("1"))
    rb.update_product(sku, sales_price=new_price)
    demo.note("price edits")
    return f"Rackbeat price of {sku} now {new_price}"


def _health(url: str) -> dict[str, Any]:
    try:
        answer = httpx.get(url, timeout=1.0)
        data: dict[str, Any] = answer.json()
    except (httpx.HTTPError, ValueError):
        return {}
    return data


def summary(demo: Demo, health: dict[str, Any]) -> list[str]:
    """The live summary's lines, from the simulators' state and the health endpoint."""
    imported = {o.your_reference for o in demo.rackbeat.orders if o.your_reference}
    placed = [demo.shopify.node(i) for i in demo.shopify_orders]
    names = [f"#{o.number}" for o in placed if o is not None]  # type: ignore[attr-defined]
    stock_writes = demo.shopify.requests.get("SetStock", 0)
    product_writes = sum(demo.shopify.requests.get(op, 0) for op in ("ProductCreate", "ProductUpdate"))
    lines = [
        f"health  {demo.health_url}  → {health.get('status', '…')}",
        f"orders  placed in Shopify {len(names):>4}   in Rackbeat {sum(1 for n in names if n in imported):>4}",
        f"stock   inventorySetQuantities calls {stock_writes:>4}",
        f"products written to Shopify {product_writes:>4}",
    ]
    for check in health.get("checks", {}).values():
        entry = check[0]
        lines.append(
            f"  {entry['componentId']:<9} {entry['status']:<5} lag {entry['observedValue']:>6.1f}s "
            f"parked {entry['parked']}" + (f"  {entry['output']}" if entry.get("output") else "")
        )
    return lines


def truth(demo: Demo) -> tuple[bool, str]:
    """Every Shopify order of the demo exists exactly once in Rackbeat."""
    counts = []
    for order_id in demo.shopify_orders:
        order = demo.shopify.node(order_id)
        if order is not None:
            counts.append(demo.rackbeat.order_count_by_reference(f"#{order.number}"))  # type: ignore[attr-defined]
    once = sum(1 for c in counts if c == 1)
    twice = sum(1 for c in counts if c > 1)
    ok = twice == 0 and once == len(counts)
    return ok, f"{once} of {len(counts)} Shopify orders exist exactly once in Rackbeat; duplicates: {twice}"


@dataclass(frozen=True)
class Options:
    """How the demo runs."""

    seconds: float | None = None
    poll_seconds: float = 2.0
    activity_every: float = 3.0


async def run_demo(
    *,
    seconds: float | None = None,
    seed_value: int = 7,
    db: Path | None = None,
    poll_seconds: float = 2.0,
    activity_every: float = 3.0,
    out: TextIO | None = None,
) -> int:
    """Run the demo until ``seconds`` pass or Ctrl-C; 0 when the truth check holds."""
    out = out or sys.stdout
    # the catalogue is seeded "yesterday", as a shop that exists before the daemon does
    age = [timedelta(days=1)]

    def now() -> datetime:
        return datetime.now(UTC) - age[0]

    rng = random.Random(seed_value)  # noqa: S311  # demo activity, not crypto
    demo = Demo(ShopifySimulator(now=now), RackbeatSimulator(now=now), rng)
    seed(demo)
    age[0] = timedelta(0)
    options = Options(seconds, poll_seconds, activity_every)
    with tempfile.TemporaryDirectory(prefix="rackbeat-shopify-demo-") as tmp:
        db_path = db or Path(tmp) / "demo.db"
        db_path.parent.mkdir(parents=True, exist_ok=True)
        log_file = db_path.parent / "demo-daemon.log"
        with log_file.open("w") as logs:
            configure_logging("info", "json", stream=logs)
            await _run(demo, db_path, log_file, options, out)
        ok, verdict = truth(demo)
        print("\nfinal summary", file=out)
        for line in summary(demo, {}):
            print(f"  {line}", file=out)
        print(f"  activity: {', '.join(f'{k} {v}' for k, v in sorted(demo.events.items()))}", file=out)
        print(f"  truth check: {verdict}", file=out)
    return 0 if ok else 1


def _settings(demo_ports: tuple[int, int], db_path: Path, poll_seconds: float) -> Settings:
    shop_port, rb_port = demo_ports
    return IsolatedSettings.of(
        {
            "rackbeat_api_url": f"http://127.0.0.1:{rb_port}/api",
            "rackbeat_api_token": SecretStr(RACKBEAT_TOKEN),
            "rackbeat_contact_email": "demo@example.com",
            "shopify_shop": "demo-shop.myshopify.com",
            "shopify_access_token": SecretStr(DEFAULT_ACCESS_TOKEN),
            "shopify_admin_url": f"http://127.0.0.1:{shop_port}/admin",
            "sync_db": db_path,
            "sync_poll_seconds": poll_seconds,
            "health_listen": "127.0.0.1:0",
            "sync_payment_terms": "1",
            "sync_customer_group": "1",
            "sync_employee": "1",
            "sync_default_product_group": "1",
        }
    )


async def _run(demo: Demo, db_path: Path, log_file: Path, options: Options, out: TextIO) -> None:
    tty = out.isatty()
    shutdown = Shutdown()
    async with anyio.create_task_group() as tg:
        shop_port = await tg.start(HTTPServer(demo.shopify.handle, name="shopify-sim").serve, "127.0.0.1", 0)
        rb_port = await tg.start(HTTPServer(demo.rackbeat.handle, name="rackbeat-sim").serve, "127.0.0.1", 0)
        settings = _settings((shop_port, rb_port), db_path, options.poll_seconds)
        ready = anyio.Event()

        def on_ready(runner: Runner, port: int) -> None:
            demo.runner = runner
            demo.health_url = f"http://127.0.0.1:{port}/healthz"
            ready.set()

        async def daemon() -> None:
            await run_daemon(settings, shutdown=shutdown, configure_logs=False, on_ready=on_ready)
            tg.cancel_scope.cancel()

        tg.start_soon(daemon)
        await ready.wait()
        # a gift card sold in Shopify that Rackbeat does not know: parked, not lost
        demo.parked_order = demo.shopify.create_order([("GIFT-1", 1), (demo.skus[0], 1)])
        print(
            f"demo: simulated Shopify on :{shop_port}, Rackbeat on :{rb_port}; "
            f"health {demo.health_url}; daemon log {log_file}",
            file=out,
        )
        print(
            "Ctrl-C to stop." if options.seconds is None else f"running for {options.seconds:g} s", file=out
        )
        started = last_act = time.monotonic()
        recent: list[str] = []
        while options.seconds is None or time.monotonic() - started < options.seconds:
            now = time.monotonic()
            if now - last_act >= options.activity_every:
                last_act = now
                recent = [*recent[-3:], act(demo)]
            health = await anyio.to_thread.run_sync(_health, demo.health_url)
            lines = [*summary(demo, health), *(f"  · {r}" for r in recent)]
            if tty:
                out.write("\x1b[H\x1b[J" + "\n".join(lines) + "\n")
            elif int(now - started) % 5 == 0:
                print(" | ".join(lines[:4]), file=out)
            out.flush()
            await anyio.sleep(min(1.0, options.activity_every))
        # let the daemon import what was placed last, then stop it
        deadline = time.monotonic() + max(3 * options.poll_seconds, 5.0)
        while time.monotonic() < deadline and not truth(demo)[0]:  # noqa: ASYNC110  # polls another system
            await anyio.sleep(0.5)
        shutdown.request()
