"""``rackbeat-shopify demo``: the real daemon against the built-in simulators, live.

Starts one simulated Rackbeat and two simulated Shopify shops (``eu`` and ``se``, the
way ``SHOPS=eu,se`` configures them) on loopback (real HTTP servers), runs ONE daemon
process for both shops against them, and makes things happen every few seconds. Both
shops sell Rackbeat's one catalogue (200 products over 3 Rackbeat locations, the same
SKUs in both shops), and both number their orders from ``#1001``: every order name
exists in both shops, and each must become its own Rackbeat order, told apart by the
heading that names the shop. The activity: Shopify orders in either shop by returning and
new customers (one Rackbeat customer per e-mail, whichever shop they buy in), goods
receipts and shipments in Rackbeat (most with a carrier, a tracking number and its link,
some without), price edits and new products in Rackbeat. A summary is redrawn in the
terminal (in place on a TTY, a line every few seconds otherwise), with figures per shop;
at the end a truth check compares the systems: every order of each shop exists exactly
once in Rackbeat under that shop's heading, except the ones the daemon parked (an order
with a SKU Rackbeat does not know), which must not be there at all; once each shop's
stock flow has run a cycle after the last order reached the daemon, no shop offers more
than Rackbeat's available minus the unreserved demand of both shops (a unit sold in one
shop is not offered again in the other); and once each shop's fulfilments flow has run a
cycle after the last shipment, every order Rackbeat shipped is fulfilled in its shop once
per shipment, with the shipment's tracking, and no other order is fulfilled.

The summary is read from where an operator would read it: ``/healthz`` and ``/metrics``
of the running daemon, and the simulators' own records for the truth-based figures.

Needs no settings, no network and no ``.env``: the settings are built here from fixed
values only (:class:`~daemon.config.IsolatedSettings` per shop: no environment, no
``.env``, no credentials directory), HTTP clients ignore proxy variables, and the state
DB and the daemon's log live in a temporary directory unless ``--db`` names a new DB
file. The simulators keep the real clock; the seeded catalogue's timestamps are set a
day back (:func:`backdate`), as for shops that existed before the daemon.

Ctrl-C ends the activity, lets the daemon catch up with what was placed last, stops it
and prints the final summary; a second Ctrl-C stops at once.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import logging
import math
import random
import shlex
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, TextIO

import anyio
import httpx
import structlog
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr

from daemon.app import run_daemon
from daemon.config import (
    Account,
    IsolatedSettings,
    Shop,
    check_account,
    default_alias,
    shop_variable,
)
from daemon.errors import ConfigError
from daemon.flows.products import NEW_PRODUCT_SETTLE
from daemon.logs import configure_logging
from daemon.mapping import shopify_heading
from daemon.metrics import PREFIX
from daemon.runner import Runner
from daemon.shutdown import Shutdown
from daemon.sim.rackbeat import DEFAULT_TOKEN as RACKBEAT_TOKEN
from daemon.sim.rackbeat import RackbeatSimulator, SimOrder, SimShipment
from daemon.sim.shopify import DEFAULT_ACCESS_TOKEN, Order, ShopifySimulator, SimFulfillment
from daemon.webserver import handler_app, serve

log = structlog.get_logger("daemon.demo")

LOOPBACK = "127.0.0.1"
#: the health port the README names; another free port when it is taken
PREFERRED_HEALTH_PORT = 8787
#: the demo's shops (``SHOPS=eu,se``), alias → domain: one daemon, one Rackbeat, one catalogue
SHOPS = {"eu": "demo-eu.myshopify.com", "se": "demo-se.myshopify.com"}
PRODUCTS = 200
#: the last few products exist in Rackbeat only (not everything in the warehouse is for sale online)
RACKBEAT_ONLY = 4
#: a SKU Shopify sells and Rackbeat does not know: an order with it is parked, not lost
SHOPIFY_ONLY_SKU = "GIFT-CARD"
#: Rackbeat locations: the simulator's "1" and "2", and a third the demo adds
LOCATIONS = {"1": "Hovedlager", "2": "Butik", "3": "Outlet"}
#: customers Rackbeat knows before the demo starts (matched by e-mail when they order)
RETURNING = [
    ("Astrid Lindqvist", "astrid@example.se"),
    ("Bjørn Hansen", "bjorn@example.dk"),
    ("Camilla Øster", "camilla@example.no"),
]
FIRST_NAMES = ("Dagny", "Erik", "Frida", "Gustav", "Hanne", "Ingrid", "Jonas", "Karin", "Lars", "Maja")
LAST_NAMES = ("Åberg", "Berg", "Dahl", "Eklund", "Holm", "Lund", "Nygaard", "Sørensen", "Vik", "Wiik")
NOUNS = ("Mug", "Plate", "Bowl", "Vase", "Candle", "Throw", "Cushion", "Lamp", "Tray", "Jug")
ADJECTIVES = ("Nordic", "Fjord", "Birch", "Granite", "Linen", "Åland", "Skagen", "Öland", "Moss", "Ember")
#: orders waiting in each shop when the daemon starts (SYNC_ORDERS_SINCE reaches back to
#: them); both shops number from #1001, so these names are in both shops from the start
WAITING_ORDERS = 2
VAT = Decimal("1.25")
#: how old the seeded catalogue looks (see :func:`backdate`)
CATALOGUE_AGE = timedelta(days=1)
#: products the activity may add to Rackbeat
MAX_NEW_PRODUCTS = 30
#: carriers of the warehouse's shipments, with the tracking link of a number
CARRIERS = (
    ("PostNord", "https://tracking.example/postnord/{}"),
    ("GLS", "https://tracking.example/gls/{}"),
    ("Bring", "https://tracking.example/bring/{}"),
)
#: the share of shipments that carry tracking; the others have none
TRACKED_SHARE = 0.7
#: the flows the demo's end waits a whole cycle of, in every shop, before its checks: stock
#: (a unit sold in one shop is not offered in the other) and fulfilments (the last shipment)
SETTLING = ("stock", "fulfilments")
#: Shopify Plus's GraphQL cost bucket (points, points restored per second). The demo polls
#: every 2 s instead of every minute; with the Standard plan's bucket (2,000, 100/s) each
#: cycle would wait for query budget, and lag would show the demo's pace, not the daemon's.
SHOPIFY_PLUS = (20_000.0, 1_000.0)


@dataclass(frozen=True)
class DemoOptions:
    """How the demo runs; the defaults are the command line's."""

    #: stop after this long (None: at Ctrl-C)
    seconds: float | None = None
    #: seed of the catalogue and the activity
    seed: int = 7
    #: the state DB (None: a temporary directory, removed at the end)
    db: Path | None = None
    #: SYNC_POLL_SECONDS of the daemon
    poll_seconds: float = 2.0
    #: seconds between two pieces of activity
    activity_every: float = 3.0
    #: seconds between two redraws of the summary
    redraw_every: float = 1.0
    #: the health port wanted; another free one when it is taken (0: any free port)
    health_port: int = PREFERRED_HEALTH_PORT
    #: how long the daemon may take to catch up with the last activity at the end
    catch_up_seconds: float = 15.0
    #: the simulated shops' GraphQL cost bucket (see :data:`SHOPIFY_PLUS`)
    shopify_bucket: tuple[float, float] = SHOPIFY_PLUS


# --- the world: the simulators and what the demo did to them ------------------------------


@dataclass
class World:
    """The simulators, seeded, and a record of the demo's activity.

    ``shopify`` is the first shop; ``shops`` holds every shop by alias (the first one
    alone, under its domain's handle, when not given).
    """

    shopify: ShopifySimulator
    rackbeat: RackbeatSimulator
    rng: random.Random
    #: SKUs on both sides (what Shopify customers buy)
    skus: list[str] = field(default_factory=list)
    #: products added to Rackbeat during the demo (for sale once the daemon created them)
    new_skus: list[str] = field(default_factory=list)
    #: (name, e-mail) of every customer who may come back (to either shop)
    customers: list[tuple[str, str]] = field(default_factory=list)
    activity: collections.Counter[str] = field(default_factory=collections.Counter)
    recent: collections.deque[str] = field(default_factory=lambda: collections.deque(maxlen=5))
    new_customers: int = 0
    #: the seed; each piece of activity draws from its own generator, seeded with it and
    #: the activity's number (see :func:`act`)
    seed: int = 0
    acts: int = 0
    #: every shop by alias, the first being ``shopify``
    shops: dict[str, ShopifySimulator] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.shops:
            self.shops = {default_alias(self.shopify.shop_domain): self.shopify}

    @classmethod
    def of_shops(
        cls, domains: dict[str, str], seed: int, *, bucket: tuple[float, float] = SHOPIFY_PLUS
    ) -> World:
        """A world of one simulated Rackbeat and a simulated Shopify per ``alias → domain``."""
        size, restore = bucket
        shops = {
            alias: ShopifySimulator(shop_domain=domain, bucket_size=size, restore_rate=restore)
            for alias, domain in domains.items()
        }
        rng = random.Random(seed)  # noqa: S311  # demo activity, not cryptography
        return cls(next(iter(shops.values())), RackbeatSimulator(), rng, seed=seed, shops=shops)

    def happened(self, kind: str, text: str) -> str:
        """Record one piece of activity; return its text."""
        self.activity[kind] += 1
        self.recent.append(f"{datetime.now(UTC):%H:%M:%S}  {text}")
        log.info("demo.activity", kind=kind, what=text)
        return text

    def label(self, alias: str, name: str) -> str:
        """An order's name as the summary shows it: ``eu #1001`` (the name alone with one shop)."""
        return f"{alias} {name}" if len(self.shops) > 1 else name


def seed_world(world: World) -> None:
    """The sample catalogue on every side (the same SKUs in every shop), a few customers and
    orders already waiting in every shop."""
    rb, rng = world.rackbeat, world.rng
    goods = rb.product_groups["1"]  # Shopify's product type is the Rackbeat group's name
    for number, name in LOCATIONS.items():
        if number not in rb.locations:
            rb.add_location(number, name)
    # S15: shipping is a line of this product; it is in a group without stock
    rb.add_product("frakt", "Frakt", sales_price="39.20", group="2", inventory_enabled=False)
    for n in range(PRODUCTS):
        sku = f"DEMO-{n + 1:03}"
        name = f"{ADJECTIVES[n % 10]} {NOUNS[(n // 10) % 10]} {n // 100 + 1}"
        price = Decimal(rng.randrange(40, 800))
        stock = {"1": rng.randrange(0, 40), "2": rng.randrange(0, 10), "3": rng.randrange(0, 5)}
        rb.add_product(sku, name, sales_price=price, cost_price=price * Decimal("0.4"), stock=stock)
        if n < PRODUCTS - RACKBEAT_ONLY:
            # the shops' stock figure is a day behind for some: the first stock cycle corrects it
            on_hand = sum(stock.values()) - (rng.randrange(1, 4) if n % 5 == 0 else 0)
            for shop in world.shops.values():
                shop.add_product(
                    name,
                    [{"sku": sku, "price": f"{price * VAT:.2f}", "stock": max(on_hand, 0)}],
                    product_type=goods,
                )
            world.skus.append(sku)
    for shop in world.shops.values():
        shop.add_product("Gift card", [{"sku": SHOPIFY_ONLY_SKU, "price": "250.00", "tracked": False}])
    for name, email in RETURNING:
        rb.add_customer(name, email)
        world.customers.append((name, email))
    backdate(world, datetime.now(UTC) - CATALOGUE_AGE)
    for _ in range(WAITING_ORDERS):
        for alias in world.shops:
            place_order(world, alias)
    # a gift card and a mug in the first shop: Rackbeat does not know the gift card, so the
    # order is parked (and its mug stays held in every shop that sells from the same stock)
    alias, shop = next(iter(world.shops.items()))
    name, email = RETURNING[0]
    first, last = name.split(" ", 1)
    order_id = shop.create_order(
        [(SHOPIFY_ONLY_SKU, 1), (world.skus[0], 1)],
        email=email,
        first_name=first,
        last_name=last,
        shipping_price="49.00",
    )
    world.happened(
        "orders placed",
        f"Shopify order {world.label(alias, _order_name(shop, order_id))} by {name}: 1× {SHOPIFY_ONLY_SKU} "
        f"(Rackbeat does not know it: parked), 1× {world.skus[0]}",
    )


def _order_name(shop: ShopifySimulator, order_id: str) -> str:
    order = shop.node(order_id)
    return order.name if isinstance(order, Order) else order_id


def backdate(world: World, moment: datetime) -> None:
    """Make everything seeded so far look as old as ``moment``.

    The simulators keep the real clock; only the records' timestamps move. A catalogue
    that existed before the daemon's first start is what the daemon meets in a real shop:
    its product flows begin at "now" and leave existing products to ``reconcile``, instead
    of treating 200 products made a second ago as 200 fresh edits.
    """
    records: list[Any] = [*world.rackbeat.products.values(), *world.rackbeat.customers.values()]
    for shop in world.shops.values():
        records += [
            *shop.locations.values(),
            *shop.products.values(),
            *shop.variants.values(),
            *shop.inventory_items.values(),
            *shop.levels.values(),
            *shop.customers.values(),
        ]
    for record in records:
        record.created_at = record.updated_at = moment


def place_order(world: World, alias: str | None = None) -> str:
    """A Shopify order of 1–3 lines by a returning or a new customer, in the shop ``alias``
    (None: one of the shops, at random)."""
    rng = world.rng
    if alias is None:
        alias = rng.choice(list(world.shops))
    shop = world.shops[alias]
    if world.customers and rng.random() < 0.6:
        name, email = rng.choice(world.customers)
        who = "returning"
    else:
        world.new_customers += 1
        name = f"{rng.choice(FIRST_NAMES)} {rng.choice(LAST_NAMES)}"
        email = f"customer{world.new_customers}@example.com"
        world.customers.append((name, email))
        who = "new"
    # what the shop sells: the catalogue, and new Rackbeat products once the daemon made
    # them. The choice is among all of them, so that it does not depend on how far the
    # daemon got; a product not in this shop yet is not bought.
    wanted: dict[str, int] = {}
    for _ in range(rng.randint(1, 3)):
        sku = rng.choice(world.skus + world.new_skus)
        wanted[sku] = wanted.get(sku, 0) + rng.randint(1, 2)
    lines = [
        (sku, qty)
        for sku, qty in wanted.items()
        if shop.find_by_sku(sku) is not None and shop.available(sku) >= qty
    ]
    if not lines:
        where = f" in {alias}" if len(world.shops) > 1 else ""
        return world.happened("sold out", f"{name} found nothing in stock{where}")
    first, last = name.split(" ", 1)
    order_id = shop.create_order(lines, email=email, first_name=first, last_name=last, shipping_price="49.00")
    items = ", ".join(f"{qty}× {sku}" for sku, qty in lines)
    label = world.label(alias, _order_name(shop, order_id))
    return world.happened("orders placed", f"Shopify order {label} by {name} ({who}): {items}")


def origin(world: World, order: SimOrder) -> str:
    """Which shop's order a Rackbeat order is (``se #1003``), by the heading naming the shop."""
    name = order.your_reference or "-"
    for alias, shop in world.shops.items():
        if order.heading == shopify_heading(name, shop.shop_domain):
            return world.label(alias, name)
    return name


def ship(world: World, order: SimOrder, rng: random.Random) -> str:
    """The warehouse ships ``order`` whole: most shipments with a carrier, a tracking
    number and its link, some without (a parcel handed over the counter); returns what
    happened."""
    where = f"Rackbeat shipped order {order.number} ({origin(world, order)})"
    if rng.random() < TRACKED_SHARE:
        carrier, link = rng.choice(CARRIERS)
        number = f"{carrier[:2].upper()}{rng.randrange(10**8, 10**9)}DK"
        world.rackbeat.ship(order.number, carrier=carrier, tracking=number, url=link.format(number))
        return f"{where} with {carrier} tracking {number}"
    world.rackbeat.ship(order.number)
    return f"{where} without tracking"


def act(world: World) -> str:
    """One piece of activity, chosen at random; returns what happened.

    The n-th piece draws from a generator of its own (the seed and n): what the daemon did
    meanwhile (orders booked, products created, stock pushed) may change that one piece's
    outcome, never the pieces after it. The same seed gives the same activity.
    """
    world.acts += 1
    world.rng = rng = random.Random(f"demo-{world.seed}-{world.acts}")  # noqa: S311  # demo activity
    rb = world.rackbeat
    roll, pick = rng.random(), rng.random()  # both always drawn: the draws after do not shift
    if roll < 0.25:
        sku = rng.choice(world.skus)
        quantity, location = rng.randint(5, 20), rng.choice(list(LOCATIONS))
        rb.goods_receipt(sku, quantity, location)
        where = LOCATIONS[location]
        return world.happened("goods receipts", f"Rackbeat goods receipt: {quantity}× {sku} at {where}")
    if roll < 0.45:
        booked = sorted((o for o in rb.orders if o.reserves_stock), key=lambda o: o.number)
        if booked:
            order = booked[int(pick * len(booked))]
            return world.happened("shipments", ship(world, order, rng))
    elif roll < 0.52 and len(world.new_skus) < MAX_NEW_PRODUCTS:
        n = PRODUCTS + len(world.new_skus)
        sku = f"DEMO-{n + 1:03}"
        name = f"{rng.choice(ADJECTIVES)} {rng.choice(NOUNS)} {n // 100 + 1}"
        price = Decimal(rng.randrange(40, 800))
        rb.add_product(sku, name, sales_price=price, cost_price=price * Decimal("0.4"), stock={"1": 12})
        world.new_skus.append(sku)
        settle = int(NEW_PRODUCT_SETTLE.total_seconds())
        shops = (
            "both shops" if len(world.shops) == 2 else "Shopify" if len(world.shops) == 1 else "every shop"
        )
        return world.happened(
            "new products",
            f"Rackbeat: new product {sku} {name!r}, 12 in stock (in {shops} after a {settle} s check)",
        )
    elif roll < 0.65:
        sku = rng.choice(world.skus)
        old_price = rb.products[sku].sales_price
        factor = rng.choice((Decimal("0.9"), Decimal("1.05"), Decimal("1.1")))
        new_price = (old_price * factor).quantize(Decimal(1))
        rb.update_product(sku, sales_price=new_price)
        return world.happened(
            "price edits", f"Rackbeat price of {sku}: {old_price:.0f} → {new_price} excl. VAT"
        )
    return place_order(world)


# --- the truth, from the simulators ---------------------------------------------------------


@dataclass(frozen=True)
class ShopTruth:
    """One shop's orders compared with Rackbeat's, straight from the simulators: a Rackbeat
    order is this shop's when its ``your_reference`` is the order's name and its heading
    names this shop's domain (the other shop has a ``#1001`` too)."""

    alias: str
    domain: str
    #: Shopify orders (test orders excluded)
    placed: int
    #: orders with a SKU Rackbeat does not know: the daemon must park them
    unknown_sku: list[str]
    #: orders that are in Rackbeat exactly once
    once: int
    #: importable orders not (yet) in Rackbeat
    missing: list[str]
    #: orders in Rackbeat more than once
    duplicated: list[str]
    #: orders with an unknown SKU that are in Rackbeat all the same
    leaked: list[str]
    #: every order name of the shop
    names: frozenset[str] = frozenset()

    @property
    def importable(self) -> int:
        """Orders the daemon must import."""
        return self.placed - len(self.unknown_sku)

    @property
    def ok(self) -> bool:
        """Every importable order exactly once, the others not at all."""
        return not (self.missing or self.duplicated or self.leaked)


@dataclass(frozen=True)
class Truth:
    """Every shop's orders compared with Rackbeat's (see :class:`ShopTruth`)."""

    shops: tuple[ShopTruth, ...]
    #: Rackbeat orders headed as a Shopify order that no shop's order explains
    strays: list[str] = field(default_factory=list)

    def _each(self, what: str) -> list[str]:
        several = len(self.shops) > 1
        return [f"{s.alias} {name}" if several else name for s in self.shops for name in getattr(s, what)]

    @property
    def placed(self) -> int:
        """Shopify orders of every shop."""
        return sum(s.placed for s in self.shops)

    @property
    def once(self) -> int:
        """Orders of every shop in Rackbeat exactly once."""
        return sum(s.once for s in self.shops)

    @property
    def unknown_sku(self) -> list[str]:
        """Orders with a SKU Rackbeat does not know (``eu #1005``)."""
        return self._each("unknown_sku")

    @property
    def missing(self) -> list[str]:
        """Importable orders not (yet) in Rackbeat."""
        return self._each("missing")

    @property
    def duplicated(self) -> list[str]:
        """Orders in Rackbeat more than once."""
        return self._each("duplicated")

    @property
    def leaked(self) -> list[str]:
        """Orders with an unknown SKU that are in Rackbeat all the same."""
        return self._each("leaked")

    @property
    def clashing(self) -> list[str]:
        """Order names every shop has (``#1001``), in number order."""
        if len(self.shops) < 2:
            return []
        common = frozenset.intersection(*(s.names for s in self.shops))
        return sorted(common, key=lambda name: (len(name), name))

    @property
    def ok(self) -> bool:
        """Every importable order of every shop exactly once, the others not at all."""
        return all(s.ok for s in self.shops) and not self.strays

    @property
    def clashes(self) -> str:
        """How the names every shop uses fared: ``#1001–#1004 in both shops: 3 of 3 in
        Rackbeat once per shop; eu #1003 parked`` (a parked order is not in Rackbeat at all)."""
        parked = {s.alias: set(s.unknown_sku) for s in self.shops}
        importable = [n for n in self.clashing if not any(n in names for names in parked.values())]
        problems = {name for s in self.shops for name in (*s.missing, *s.duplicated)}
        once = sum(1 for name in importable if name not in problems)
        text = (
            f"{_names(self.clashing)} in {_every(len(self.shops))}: {once} of {len(importable)} "
            "in Rackbeat once per shop, told apart by the heading"
        )
        aside = [f"{alias} {n}" for alias, names in parked.items() for n in self.clashing if n in names]
        return text + (f"; {', '.join(aside)} parked" if aside else "")

    @property
    def verdict(self) -> str:
        """The final summary's line: OK, or what is wrong."""
        shops = " and ".join(s.alias for s in self.shops)
        if self.ok:
            where = f"of {shops} " if len(self.shops) > 1 else ""
            return (
                f"OK — every order {where}exists exactly once in Rackbeat, counted by the heading that names "
                "its shop; the ones with an unknown SKU are parked and not in Rackbeat"
            )
        problems = [
            f"{what}: {', '.join(names)}"
            for what, names in (
                ("missing", self.missing),
                ("duplicated", self.duplicated),
                ("unknown SKU but imported", self.leaked),
                ("in Rackbeat under no shop's order", self.strays),
            )
            if names
        ]
        return "FAILED — " + "; ".join(problems)

    @property
    def details(self) -> list[str]:
        """The verdict's figures, a line per shop and one for the names both shops use."""
        lines = []
        for s in self.shops:
            heading = shopify_heading("#…", s.domain)
            parked = (
                f"; {len(s.unknown_sku)} with an unknown SKU parked, not in Rackbeat" if s.unknown_sku else ""
            )
            lines.append(f"{s.alias}: {s.once} of {s.importable} orders once under {heading!r}{parked}")
        if self.clashing:
            lines.append(self.clashes)
        return lines


def _every(shops: int) -> str:
    return "both shops" if shops == 2 else f"all {shops} shops"


def _names(names: list[str]) -> str:
    """``#1001`` or ``#1001–#1004`` (a run) or ``#1001, #1003``."""
    if len(names) == 1:
        return names[0]
    numbers = [int(n.lstrip("#")) for n in names if n.lstrip("#").isdigit()]
    if len(numbers) == len(names) and numbers == list(range(numbers[0], numbers[0] + len(numbers))):
        return f"{names[0]}–{names[-1]}"
    return ", ".join(names)


def truth(world: World) -> Truth:
    """Compare every shop's orders with Rackbeat's (by ``your_reference`` and the heading)."""
    rb_orders: collections.Counter[tuple[str, str]] = collections.Counter(
        (o.your_reference or "", o.heading or "") for o in world.rackbeat.orders
    )
    explained: set[tuple[str, str]] = set()
    shops: list[ShopTruth] = []
    for alias, shop in world.shops.items():
        orders = [o for o in shop.orders.values() if not o.test]
        unknown, missing, duplicated, leaked = [], [], [], []
        once = 0
        for order in orders:
            key = (order.name, shopify_heading(order.name, shop.shop_domain))
            explained.add(key)
            copies = rb_orders[key]
            if any(line.sku not in world.rackbeat.products for line in order.line_items):
                unknown.append(order.name)
                if copies:
                    leaked.append(order.name)
            elif copies == 1:
                once += 1
            elif copies == 0:
                missing.append(order.name)
            else:
                duplicated.append(order.name)
        names = frozenset(o.name for o in orders)
        shops.append(
            ShopTruth(alias, shop.shop_domain, len(orders), unknown, once, missing, duplicated, leaked, names)
        )
    strays = sorted(
        f"{reference} ({heading})"
        for (reference, heading) in rb_orders
        if heading.startswith("Shopify ") and (reference, heading) not in explained
    )
    return Truth(tuple(shops), strays)


@dataclass(frozen=True)
class StockTruth:
    """Every shop's available quantities against Rackbeat's, straight from the simulators."""

    #: SKUs compared, by shop alias
    checked: dict[str, int]
    #: ``se DEMO-017: 5 > 4``: a shop offering more than Rackbeat's available minus the
    #: unreserved demand of every shop
    over: list[str]
    #: every shop's stock flow finished a cycle that began after the last order reached
    #: the daemon (before that, a shop may rightly still show what another shop just sold)
    settled: bool

    @property
    def ok(self) -> bool:
        """Settled, and no shop offers a unit that is not there."""
        return self.settled and not self.over

    @property
    def verdict(self) -> str:
        """One line for the final summary."""
        if not self.settled:
            return "FAILED — not checked: a shop's stock flow finished no cycle after the last order reached the daemon"
        demand = (
            f"the unreserved demand of {_every(len(self.checked))}"
            if len(self.checked) > 1
            else "unreserved demand"
        )
        compared = ", ".join(f"{n} in {alias}" for alias, n in self.checked.items())
        text = (
            f"after a stock cycle of every shop, no shop offers more than Rackbeat's available minus {demand} "
            f"(SKUs compared: {compared})"
        )
        if not self.over:
            return "OK — " + text
        more = f" and {len(self.over) - 5} more" if len(self.over) > 5 else ""
        return f"FAILED — offered more than allowed: {', '.join(self.over[:5])}{more}"


def unreserved_demand(world: World) -> collections.Counter[str]:
    """SKU → units that every shop sold and Rackbeat does not reserve: orders with no
    Rackbeat order of their shop (not imported yet, or parked) or only a draft."""
    state: dict[tuple[str, str], bool] = {}
    for o in world.rackbeat.orders:
        key = (o.your_reference or "", o.heading or "")
        state[key] = state.get(key, False) or o.reserves_stock or o.is_shipped
    demand: collections.Counter[str] = collections.Counter()
    for shop in world.shops.values():
        for order in shop.orders.values():
            if order.test or order.cancelled_at is not None:
                continue
            if state.get((order.name, shopify_heading(order.name, shop.shop_domain)), False):
                continue  # reserved (booked) or gone (shipped): in Rackbeat's available already
            for line in order.line_items:
                if line.sku and line.current_quantity > 0:
                    demand[line.sku] += line.current_quantity
    return demand


def stock_truth(world: World, *, settled: bool) -> StockTruth:
    """Each shop's available of every tracked SKU Rackbeat stocks, against Rackbeat's
    available (all locations: the demo's S10) minus the unreserved demand of every shop."""
    rb = world.rackbeat
    demand = unreserved_demand(world)
    allowed: dict[str, int] = {}
    checked: dict[str, int] = {}
    over: list[str] = []
    for alias, shop in world.shops.items():
        checked[alias] = 0
        for variant in shop.variants.values():
            item = shop.inventory_items[variant.inventory_item_id]
            sku = item.sku or ""
            product = rb.products.get(sku)
            if not item.tracked or product is None or not product.inventory_enabled:
                continue
            if sku not in allowed:
                allowed[sku] = max(0, math.floor(rb.available_quantity(sku)) - demand[sku])
            checked[alias] += 1
            have = shop.available(sku)
            if have > allowed[sku]:
                over.append(f"{world.label(alias, sku)}: {have} > {allowed[sku]}")
    return StockTruth(checked, over, settled)


#: a shipment's or a fulfilment's tracking: (carrier, number, URL)
TrackingTriple = tuple[str | None, str | None, str | None]


@dataclass(frozen=True)
class ShopFulfilments:
    """One shop's orders that Rackbeat shipped against their fulfilments in Shopify,
    straight from the simulators (each a list of order names)."""

    alias: str
    #: orders whose Rackbeat order (this shop's, once) has a shipment
    shipped: list[str] = field(default_factory=list)
    #: shipped orders fulfilled in Shopify as shipped: a fulfilment per shipment, the
    #: shipments' tracking and units
    fulfilled: list[str] = field(default_factory=list)
    #: fulfilled orders whose shipments carry a tracking number
    tracked: list[str] = field(default_factory=list)
    #: shipped orders with no fulfilment in Shopify (yet)
    unfulfilled: list[str] = field(default_factory=list)
    #: ``#1004: 2 fulfilments for 1 shipment`` and the like: fulfilled, but not as shipped
    wrong: list[str] = field(default_factory=list)
    #: orders fulfilled in Shopify that Rackbeat has not shipped
    unshipped_fulfilled: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class FulfilmentTruth:
    """Every shop's shipped orders against Shopify's fulfilments (:func:`fulfilment_truth`)."""

    shops: tuple[ShopFulfilments, ...]
    #: every shop's fulfilments flow finished a cycle that began after the last shipment
    #: (before that, a shipped order may rightly not be fulfilled yet)
    settled: bool

    def _each(self, what: str) -> list[str]:
        several = len(self.shops) > 1
        return [f"{s.alias} {text}" if several else text for s in self.shops for text in getattr(s, what)]

    @property
    def ok(self) -> bool:
        """Settled; every shipped order fulfilled once per shipment with its tracking; no
        unshipped order fulfilled."""
        return self.settled and not (
            self._each("unfulfilled") or self._each("wrong") or self._each("unshipped_fulfilled")
        )

    @property
    def verdict(self) -> str:
        """One line for the final summary."""
        if not self.settled:
            return "FAILED — not checked: a shop's fulfilments flow finished no cycle after the last shipment"
        if self.ok:
            return (
                "OK — after a fulfilments cycle of every shop, every order Rackbeat shipped is fulfilled in "
                "Shopify once per shipment, with the shipment's tracking; no unshipped order is fulfilled"
            )
        problems = [
            f"{what}: {', '.join(texts)}"
            for what, texts in (
                ("shipped, not fulfilled", self._each("unfulfilled")),
                ("not fulfilled as shipped", self._each("wrong")),
                ("fulfilled, not shipped", self._each("unshipped_fulfilled")),
            )
            if texts
        ]
        return "FAILED — " + "; ".join(problems)

    @property
    def details(self) -> list[str]:
        """The verdict's figures, a line per shop."""
        return [
            f"{s.alias}: {len(s.fulfilled)} of {_plural(len(s.shipped), 'order', 'orders')} shipped in Rackbeat "
            f"fulfilled as shipped, {len(s.tracked)} with tracking"
            for s in self.shops
        ]


def _tracking_text(tracking: TrackingTriple) -> str:
    return " ".join(part for part in tracking if part) or "no tracking"


def _shipment_problem(
    order: Order, shipments: list[SimShipment], fulfilments: list[SimFulfillment]
) -> str | None:
    """How Shopify's fulfilments of ``order`` differ from Rackbeat's ``shipments`` (None:
    one per shipment, each shipment's tracking, the units shipped of the order's SKUs)."""
    if len(fulfilments) != len(shipments):
        return (
            f"{order.name}: {_plural(len(fulfilments), 'fulfilment', 'fulfilments')} for "
            f"{_plural(len(shipments), 'shipment', 'shipments')}"
        )
    wanted: collections.Counter[TrackingTriple] = collections.Counter(
        (s.carrier, s.track_trace_number, s.track_trace_url) for s in shipments
    )
    got: collections.Counter[TrackingTriple] = collections.Counter(f.tracking for f in fulfilments)
    if wanted != got:
        shipped = "; ".join(_tracking_text(t) for t in sorted(wanted, key=str))
        fulfilled = "; ".join(_tracking_text(t) for t in sorted(got, key=str))
        return f"{order.name}: fulfilled with {fulfilled}, shipped with {shipped}"
    skus = {line.sku for line in order.line_items if line.sku}
    sent: collections.Counter[str] = collections.Counter()
    for shipment in shipments:
        for sku, quantity in shipment.lines:
            if sku in skus:  # not the shipping line (Rackbeat's freight product)
                sent[sku] += int(quantity)
    done: collections.Counter[str] = collections.Counter()
    for fulfilment in fulfilments:
        done.update(fulfilment.quantities)
    if sent != done:
        return f"{order.name}: fulfilled {dict(sorted(done.items()))}, shipped {dict(sorted(sent.items()))}"
    return None


def fulfilment_truth(world: World, *, settled: bool) -> FulfilmentTruth:
    """Each shop's orders against Rackbeat's shipments of them: an order Rackbeat shipped
    (its one Rackbeat order, found by ``your_reference`` and the heading, has a shipment)
    must have a Shopify fulfilment per shipment, with that shipment's tracking and units;
    an order Rackbeat has not shipped must have none."""
    rb = world.rackbeat
    by_key: dict[tuple[str, str], list[SimOrder]] = collections.defaultdict(list)
    for o in rb.orders:
        by_key[(o.your_reference or "", o.heading or "")].append(o)
    shops: list[ShopFulfilments] = []
    for alias, shop in world.shops.items():
        found = ShopFulfilments(alias)
        for order in shop.orders.values():
            if order.test:
                continue
            copies = by_key.get((order.name, shopify_heading(order.name, shop.shop_domain)), [])
            # an order in Rackbeat twice is the orders check's failure; its shipments are not these
            shipments = rb.order_shipments(copies[0].number) if len(copies) == 1 else []
            fulfilments = list(order.fulfillments)
            if not shipments:
                if fulfilments:
                    found.unshipped_fulfilled.append(order.name)
                continue
            found.shipped.append(order.name)
            problem = _shipment_problem(order, shipments, fulfilments)
            if not fulfilments:
                found.unfulfilled.append(order.name)
            elif problem is not None:
                found.wrong.append(problem)
            else:
                found.fulfilled.append(order.name)
                if any(s.track_trace_number for s in shipments):
                    found.tracked.append(order.name)
        shops.append(found)
    return FulfilmentTruth(tuple(shops), settled)


# --- what the daemon says: /healthz and /metrics ----------------------------------------------


@dataclass
class Snapshot:
    """The daemon's own account of itself, as an operator would read it."""

    health: dict[str, Any] = field(default_factory=dict)
    #: the domain counters, by (shop alias, flow, event)
    events: dict[tuple[str, str, str], float] = field(default_factory=dict)
    #: each flow's last successful cycle (Unix time), by (shop alias, flow)
    last_success: dict[tuple[str, str], float] = field(default_factory=dict)
    #: the last /metrics text
    metrics: str = ""
    #: how many times /healthz answered, and how many times it was asked
    answered: int = 0
    asked: int = 0

    def event(self, flow: str, name: str, shop: str | None = None) -> int:
        """A domain counter's value: of the shop ``shop`` (None: of every shop)."""
        return int(
            sum(
                v
                for (alias, f, e), v in self.events.items()
                if (f, e) == (flow, name) and shop in (None, alias)
            )
        )

    @property
    def checks(self) -> list[tuple[str, dict[str, Any]]]:
        """The per-flow checks of the last /healthz answer, by name (``eu/orders``)."""
        return [
            (key.removesuffix(":lag"), entries[0])
            for key, entries in self.health.get("checks", {}).items()
            if entries
        ]

    @property
    def flows(self) -> list[dict[str, Any]]:
        """The per-flow checks of the last /healthz answer."""
        return [entry for _name, entry in self.checks]

    @property
    def parked(self) -> int:
        """Records parked, over all flows."""
        return sum(int(f.get("parked", 0)) for f in self.flows)


async def observe(client: httpx.AsyncClient, base: str, snapshot: Snapshot) -> None:
    """Read /healthz and /metrics into ``snapshot`` (what fails to answer keeps its last value)."""
    snapshot.asked += 1
    try:
        answer = await client.get(f"{base}/healthz")
        document = answer.json()
    except (httpx.HTTPError, ValueError):
        return
    if isinstance(document, dict) and "status" in document:
        snapshot.health = document
        snapshot.answered += 1
    try:
        text = (await client.get(f"{base}/metrics")).text
    except httpx.HTTPError:
        return
    events: dict[tuple[str, str, str], float] = {}
    last_success: dict[tuple[str, str], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = sample.labels
            if sample.name == f"{PREFIX}_events_total":
                events[(labels.get("shop", ""), labels.get("flow", ""), labels.get("event", ""))] = (
                    sample.value
                )
            elif sample.name == f"{PREFIX}_flow_last_success_timestamp_seconds":
                last_success[(labels.get("shop", ""), labels.get("flow", ""))] = sample.value
    snapshot.events, snapshot.last_success, snapshot.metrics = events, last_success, text


# --- the summary ----------------------------------------------------------------------------


def _elapsed(seconds: float) -> str:
    whole = int(seconds)
    return f"{whole // 60}:{whole % 60:02}"


def _plural(count: int, one: str, many: str) -> str:
    return f"{count} {one if count == 1 else many}"


def health_status(snap: Snapshot) -> str:
    """``/healthz``'s status, and why when it is not ``pass``: each flow's problem in the
    words of its check (its error or what its cycle is doing, records parked, lag)."""
    status = str(snap.health.get("status", "…"))
    if status in ("pass", "…"):
        return status
    reasons: list[str] = []
    for name, check in snap.checks:
        if check.get("status") == "pass":
            continue
        if check.get("output"):
            reasons.append(f"{name}: {check['output']}")
        elif int(check.get("parked", 0)):
            reasons.append(f"{name}: {_plural(int(check['parked']), 'record', 'records')} parked")
        else:
            reasons.append(f"{name}: lag {float(check.get('observedValue', 0.0)):.0f}s")
    return f"{status} ({'; '.join(reasons)})" if reasons else status


#: the products flow's events that put a product into a shop
_SYNCED = ("created_shopify", "updated_shopify", "adopted_shopify")


def _fulfilment_problems(shop: ShopFulfilments) -> str:
    """`` · WRONG 1 · NOT SHIPPED 1`` for what the final check would fail (nothing when all is well)."""
    problems = [("WRONG", shop.wrong), ("NOT SHIPPED", shop.unshipped_fulfilled)]
    return "".join(f" · {what} {len(names)}" for what, names in problems if names)


def summary_lines(world: World, snap: Snapshot, health_url: str) -> list[str]:
    """The summary's figures, per shop: truth from the simulators, the rest from the daemon."""
    t = truth(world)
    several = len(t.shops) > 1
    pad = max((len(s.alias) for s in t.shops), default=0)

    def head(title: str, i: int, alias: str) -> str:
        return f"{title if i == 0 else '':<10}" + (f"{alias:<{pad}}  " if several else "")

    lines = [f"health    {health_url}  {health_status(snap)}"]
    if several:
        shops = " · ".join(f"{s.alias} {s.domain}" for s in t.shops)
        lines.append(f"shops     {shops} · one daemon, one Rackbeat, one catalogue")
    for i, s in enumerate(t.shops):
        waiting = f" · waiting {len(s.missing)}" if s.missing else ""
        dupes = f" · DUPLICATED {len(s.duplicated)}" if s.duplicated else ""
        unknown = f" · {len(s.unknown_sku)} with an unknown SKU" if s.unknown_sku or not several else ""
        lines.append(
            f"{head('orders', i, s.alias)}{s.placed} in Shopify · {s.once} of {s.importable} in Rackbeat, "
            f"each once{waiting}{dupes} · imported {snap.event('orders', 'imported', s.alias)}{unknown}"
        )
    if t.clashing:
        lines.append(f"          {t.clashes}")
    lines.append(f"          new customers in Rackbeat {snap.event('orders', 'customers_created')}")
    shipped = {s.alias: s for s in fulfilment_truth(world, settled=False).shops}
    for i, s in enumerate(t.shops):
        f = shipped[s.alias]
        lines.append(
            f"{head('fulfilled', i, s.alias)}{len(f.fulfilled)} in Shopify of "
            f"{_plural(len(f.shipped), 'order', 'orders')} shipped in Rackbeat · {len(f.tracked)} with tracking"
            + _fulfilment_problems(f)
        )
    for i, s in enumerate(t.shops):
        pushed = _plural(snap.event("stock", "quantities_pushed", s.alias), "quantity", "quantities")
        batches = _plural(snap.event("stock", "batches", s.alias), "batch", "batches")
        lines.append(f"{head('stock', i, s.alias)}{pushed} pushed to Shopify in {batches}")
    for i, s in enumerate(t.shops):
        synced = sum(snap.event("products", e, s.alias) for e in _SYNCED)
        lines.append(
            f"{head('products', i, s.alias)}{synced} synced to Shopify: "
            f"{snap.event('products', 'created_shopify', s.alias)} created, "
            f"{snap.event('products', 'updated_shopify', s.alias)} updated"
        )
    lines.append(f"parked    {snap.parked}")
    width = max([9, *(len(name) for name, _ in snap.checks)])
    lines.append(f"{'flow':<{width}} {'health':<6} {'lag':>6}  {'parked':>6}")
    for name, check in snap.checks:
        lag = float(check.get("observedValue", 0.0))
        error = f"  {check['output']}" if check.get("output") else ""
        lines.append(
            f"{name:<{width}} {check.get('status', '?'):<6} {lag:5.1f}s  {check.get('parked', 0):>6}{error}"
        )
    return lines


def compact_line(world: World, snap: Snapshot) -> str:
    """The summary in one line, for output that is not a terminal."""
    t = truth(world)
    several = len(t.shops) > 1

    def each(figure: Callable[[ShopTruth], str]) -> str:
        return " ".join(f"{s.alias} {figure(s)}" if several else figure(s) for s in t.shops)

    synced = sum(snap.event("products", e) for e in _SYNCED)
    shipped = fulfilment_truth(world, settled=False).shops
    fulfilled = " ".join(
        f"{f.alias} {len(f.fulfilled)}/{len(f.shipped)}"
        if several
        else f"{len(f.fulfilled)}/{len(f.shipped)}"
        for f in shipped
    )
    lags = " ".join(f"{name} {float(f.get('observedValue', 0.0)):.1f}s" for name, f in snap.checks)
    return (
        f"orders {each(lambda s: f'{s.once}/{s.importable}')} in Rackbeat"
        + (f" ({len(t.missing)} waiting)" if t.missing else "")
        + f" | stock pushed {each(lambda s: str(snap.event('stock', 'quantities_pushed', s.alias)))}"
        f" | fulfilled {fulfilled}"
        f" | products synced {synced} | parked {snap.parked} | lag {lags or '-'}"
        f" | health {health_status(snap)}"
    )


class Screen:
    """Draws the summary: redrawn in place on a terminal; otherwise activity as it happens
    and a line of figures every few seconds."""

    def __init__(self, out: TextIO, *, line_every: float = 5.0) -> None:
        self.out = out
        self.tty = out.isatty()
        self.line_every = line_every
        self._drawn = 0
        self._last_line = -line_every
        self._printed_recent = 0
        self._last_imported = 0

    def draw(self, header: str, world: World, snap: Snapshot, health_url: str) -> None:
        """One frame (a TTY) or activity as it happens and a line every few seconds (else)."""
        recent, total = list(world.recent), sum(world.activity.values())
        if self.tty:
            width = max(40, shutil.get_terminal_size((100, 24)).columns - 1)
            frame = [
                header,
                *summary_lines(world, snap, health_url),
                "recent activity",
                *(f"  {r}" for r in recent),
            ]
            up = f"\x1b[{self._drawn}F" if self._drawn else ""
            self.out.write(up + "\x1b[J" + "\n".join(line[:width] for line in frame) + "\n")
            self._drawn = len(frame)
            self.out.flush()
            return
        fresh = min(total - self._printed_recent, len(recent))
        for text in recent[len(recent) - fresh :] if fresh > 0 else []:
            self.out.write(f"  + {text}\n")
        self._printed_recent = total
        # a line every few seconds, and as soon as orders reached Rackbeat
        now, imported = time.monotonic(), truth(world).once
        if now - self._last_line >= self.line_every or imported != self._last_imported:
            self._last_line, self._last_imported = now, imported
            self.out.write(f"{header} | {compact_line(world, snap)}\n")
        self.out.flush()

    def release(self) -> None:
        """Leave the last frame on screen; what follows prints below it."""
        self._drawn = 0


# --- running it -----------------------------------------------------------------------------


class _HeldShutdown(Shutdown):
    """The daemon's stop switch, held by the demo.

    :func:`daemon.runner.handle_signals` calls :meth:`request` on SIGINT/SIGTERM: here that
    only ends the activity, so that the daemon can catch up with the last orders before
    :meth:`stop` really stops it (the handler is gone after the first signal: a second
    Ctrl-C stops at once).
    """

    def __init__(self) -> None:
        super().__init__()
        self.interrupted = anyio.Event()

    def request(self) -> None:
        self.interrupted.set()

    def stop(self) -> None:
        """Stop the daemon after the work in flight."""
        super().request()


@dataclass
class DemoResult:
    """What a finished demo found."""

    truth: Truth
    snapshot: Snapshot
    health_url: str
    activity: dict[str, int]
    interrupted: bool
    #: ``inventorySetQuantities`` calls that changed stock, as each simulated shop counted them
    stock_writes_by_shop: dict[str, int] = field(default_factory=dict)
    daemon_error: str | None = None
    #: every shop's available against Rackbeat's, at the end
    stock: StockTruth | None = None
    #: the simulators as the demo left them
    world: World | None = None
    #: every shop's shipped orders against their fulfilments in Shopify, at the end
    fulfilments: FulfilmentTruth | None = None

    @property
    def stock_writes(self) -> int:
        """``inventorySetQuantities`` calls that changed stock, in every shop."""
        return sum(self.stock_writes_by_shop.values())

    @property
    def ok(self) -> bool:
        """The daemon ran to the end and every truth check holds."""
        return (
            self.daemon_error is None
            and self.truth.ok
            and self.stock is not None
            and self.stock.ok
            and self.fulfilments is not None
            and self.fulfilments.ok
        )


def demo_account(
    shopify_ports: dict[str, int], rackbeat_port: int, db: Path, options: DemoOptions, *, health_port: int
) -> Account:
    """The daemon's shops (``SHOPS=eu,se``), each with its :class:`IsolatedSettings`: fixed
    values only, nothing from the environment or ``.env``. The account-scoped values
    (Rackbeat, state DB, poll interval, health listener, logs) are the same in every shop."""
    account = {
        "rackbeat_api_url": f"http://{LOOPBACK}:{rackbeat_port}/api",
        "rackbeat_api_token": SecretStr(RACKBEAT_TOKEN),
        "rackbeat_contact_email": "demo@example.com",
        "sync_db": db,
        "sync_poll_seconds": options.poll_seconds,
        "health_listen": f"{LOOPBACK}:{health_port}",
        "log_level": "info",
    }
    shared = {
        "sync_payment_terms": "1",
        "sync_customer_group": "1",
        "sync_employee": "1",
        "sync_default_product_group": "1",
        "sync_currency": "DKK",
        "sync_shipping_product": "frakt",
        # the orders waiting in the shops were placed a moment ago: import them
        "sync_orders_since": datetime.now(UTC) - timedelta(minutes=1),
    }
    shops = tuple(
        Shop(
            alias,
            IsolatedSettings.of(
                {
                    **account,
                    **shared,
                    "shopify_shop": SHOPS[alias],
                    "shopify_access_token": SecretStr(DEFAULT_ACCESS_TOKEN),
                    "shopify_admin_url": f"http://{LOOPBACK}:{port}/admin",
                }
            ),
        )
        for alias, port in shopify_ports.items()
    )
    problems = check_account(shops)
    if problems:  # a mistake in the lines above
        raise ConfigError("\n".join(problems))
    return Account(shops)


@contextlib.contextmanager
def _daemon_log(path: Path) -> Iterator[None]:
    """The daemon (and the demo) log JSON lines to ``path``; logging is restored afterwards."""
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    saved_structlog = structlog.get_config()
    with path.open("w", encoding="utf-8") as stream:
        configure_logging("info", "json", stream=stream)
        try:
            yield
        finally:
            root.handlers[:] = saved_handlers
            root.setLevel(saved_level)
            structlog.configure(**saved_structlog)


def _http() -> httpx.AsyncClient:
    # loopback only: proxy variables of the environment must not reroute it
    return httpx.AsyncClient(timeout=httpx.Timeout(10.0, connect=5.0), trust_env=False)


async def run_demo(
    *,
    seconds: float | None = None,
    seed_value: int = 7,
    db: Path | None = None,
    poll_seconds: float = 2.0,
    activity_every: float = 3.0,
    health_port: int = PREFERRED_HEALTH_PORT,
    out: TextIO | None = None,
) -> int:
    """The ``demo`` command: 0 when the daemon ran and the truth check holds, 1 when not,
    2 when ``db`` exists (the simulators start empty: an old ledger would not match them)."""
    out = out or sys.stdout
    if db is not None and await anyio.Path(db).exists():
        out.write(f"demo: {db} exists; the demo needs a new state DB (--db names a file to create)\n")
        return 2
    options = DemoOptions(
        seconds=seconds,
        seed=seed_value,
        db=db,
        poll_seconds=poll_seconds,
        activity_every=activity_every,
        health_port=health_port,
    )
    result = await demo(options, out)
    return 0 if result.ok else 1


async def demo(options: DemoOptions, out: TextIO) -> DemoResult:
    """Run the demo as ``options`` say, writing the summary to ``out``."""
    with tempfile.TemporaryDirectory(prefix="rackbeat-shopify-demo-") as tmp:
        db = options.db or Path(tmp) / "demo.db"
        db.parent.mkdir(parents=True, exist_ok=True)
        log_path = db.with_suffix(".log") if db.suffix != ".log" else db.with_name(db.name + ".daemon")
        with _daemon_log(log_path):
            result, world = await _demo(options, db, log_path, out)
        _final(result, world, out, db, log_path, kept=options.db is not None)
    return result


async def _demo(options: DemoOptions, db: Path, log_path: Path, out: TextIO) -> tuple[DemoResult, World]:
    world = World.of_shops(SHOPS, options.seed, bucket=options.shopify_bucket)
    shutdown = _HeldShutdown()
    snapshot = Snapshot()
    health_url = ""
    daemon_error: list[str] = []
    settled: set[str] = set()
    ready, stopped = anyio.Event(), anyio.Event()

    async with _http() as client, _http() as daemon_http, anyio.create_task_group() as tg:
        shop_ports: dict[str, int] = {}
        for alias, shop in world.shops.items():
            shop_sim = functools.partial(serve, handler_app(shop.handle), name=f"shopify-sim-{alias}")
            shop_ports[alias] = await tg.start(shop_sim, LOOPBACK, 0)
        rb_sim = functools.partial(serve, handler_app(world.rackbeat.handle), name="rackbeat-sim")
        rb_port = await tg.start(rb_sim, LOOPBACK, 0)
        health_port = options.health_port or 0
        account = demo_account(shop_ports, rb_port, db, options, health_port=health_port)
        seed_world(world)
        log.info(
            "demo.seeded",
            products=len(world.rackbeat.products),
            orders={alias: len(shop.orders) for alias, shop in world.shops.items()},
        )

        def on_ready(_runner: Runner, port: int) -> None:
            nonlocal health_url
            health_url = f"http://{LOOPBACK}:{port}/healthz"
            ready.set()

        async def daemon() -> None:
            try:
                try:
                    await run_daemon(
                        account, shutdown=shutdown, http=daemon_http, configure_logs=False, on_ready=on_ready
                    )
                except ConfigError:
                    if ready.is_set() or health_port == 0:
                        raise
                    # the health port is taken (HEALTH_LISTEN refused): any port will do
                    again = demo_account(shop_ports, rb_port, db, options, health_port=0)
                    await run_daemon(
                        again, shutdown=shutdown, http=daemon_http, configure_logs=False, on_ready=on_ready
                    )
            except Exception as exc:
                log.exception("demo.daemon_failed")
                daemon_error.append(f"{type(exc).__name__}: {exc}")
            finally:
                stopped.set()
                ready.set()

        tg.start_soon(daemon)
        await ready.wait()
        if not stopped.is_set():
            shops = ", ".join(
                f"{alias} ({SHOPS[alias]}) http://{LOOPBACK}:{port}/admin"
                for alias, port in shop_ports.items()
            )
            out.write(
                f"rackbeat-shopify demo: one daemon, {len(shop_ports)} simulated Shopify shops selling one "
                f"Rackbeat catalogue\n"
                f"shops {shops}; Rackbeat http://{LOOPBACK}:{rb_port}/api\n"
                f"health {health_url} (also /metrics /livez /readyz); daemon log {log_path}\n"
                + ("Ctrl-C to stop\n" if options.seconds is None else f"running for {options.seconds:g} s\n")
            )
            out.flush()
            live = _Live(world, options, client, health_url, snapshot, shutdown, stopped)
            await live.drive(out)
            settled = await live.catch_up()
        shutdown.stop()
        await stopped.wait()
        tg.cancel_scope.cancel()
    result = DemoResult(
        truth(world),
        snapshot,
        health_url,
        dict(world.activity),
        shutdown.interrupted.is_set(),
        {alias: shop.adjustment_groups for alias, shop in world.shops.items()},
        daemon_error[0] if daemon_error else None,
        stock_truth(world, settled="stock" in settled),
        world,
        fulfilment_truth(world, settled="fulfilments" in settled),
    )
    return result, world


@dataclass
class _Live:
    """A running demo: the world, the daemon's address and the means to watch it."""

    world: World
    options: DemoOptions
    client: httpx.AsyncClient
    health_url: str
    snapshot: Snapshot
    shutdown: _HeldShutdown
    #: set when the daemon has stopped (normally or not)
    stopped: anyio.Event

    async def observe(self) -> None:
        """Read the daemon's health and metrics."""
        await observe(self.client, self.health_url.removesuffix("/healthz"), self.snapshot)

    async def drive(self, out: TextIO) -> None:
        """Activity and redraws until the time is up, Ctrl-C, or the daemon stops."""
        options, world = self.options, self.world
        screen = Screen(out)
        started = time.monotonic()
        next_act = started + options.activity_every
        tail = "Ctrl-C to stop" if options.seconds is None else f"of {_elapsed(options.seconds)}"
        while not (self.shutdown.interrupted.is_set() or self.stopped.is_set()):
            now = time.monotonic()
            if options.seconds is not None and now - started >= options.seconds:
                break
            if now >= next_act:
                next_act = now + options.activity_every
                act(world)
            await self.observe()
            header = f"rackbeat-shopify demo · {_elapsed(now - started)} {tail}"
            screen.draw(header, world, self.snapshot, self.health_url)
            wait = min(options.redraw_every, max(0.05, next_act - time.monotonic()))
            with anyio.move_on_after(wait):
                await self.shutdown.interrupted.wait()
        screen.release()
        if self.shutdown.interrupted.is_set():
            out.write("stopping: the daemon catches up with the last activity (Ctrl-C again: stop at once)\n")
            out.flush()

    async def catch_up(self) -> set[str]:
        """Let the daemon import what was placed last: poll every side until they agree or
        the deadline passes; then wait for a stock cycle of every shop that began after
        that (the one that stops a shop offering what another shop sold last), and a
        fulfilments cycle of every shop that began after the last shipment. Returns the
        flows (of :data:`SETTLING`) of which every shop finished such a cycle."""
        options = self.options
        pause = min(0.25, options.poll_seconds / 4)
        limit = max(options.catch_up_seconds, 4 * options.poll_seconds)
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline and not self.stopped.is_set():
            await self.observe()
            if self._orders_done():
                break
            await anyio.sleep(pause)
        # a cycle that ends after this moment may have begun before it; the next one has not
        # (the last shipment was made before it: the activity has ended)
        marks = {(alias, flow): time.time() for alias in self.world.shops for flow in SETTLING}
        passes = dict.fromkeys(marks, 0)
        deadline = time.monotonic() + limit
        while not self.stopped.is_set():
            await self.observe()  # also the figures as they are now, for the final summary
            for key, mark in marks.items():
                last = self.snapshot.last_success.get(key)
                if last is not None and last > mark:
                    marks[key], passes[key] = last, passes[key] + 1
            if all(n >= 2 for n in passes.values()) or time.monotonic() >= deadline:
                break
            await anyio.sleep(pause)
        return {flow for flow in SETTLING if all(passes[(alias, flow)] >= 2 for alias in self.world.shops)}

    def _orders_done(self) -> bool:
        """Every order of every shop in Rackbeat once and counted by the daemon, the parked parked."""
        t, snap = truth(self.world), self.snapshot
        # a draft is in Rackbeat before the daemon has finished (and counted) that order
        counted = all(snap.event("orders", "imported", s.alias) >= s.once for s in t.shops)
        return t.ok and counted and snap.parked >= len(t.unknown_sku)


def _final(result: DemoResult, world: World, out: TextIO, db: Path, log_path: Path, *, kept: bool) -> None:
    snap, t = result.snapshot, result.truth
    health = result.health_url or "never came up"
    lines = [
        "",
        "final summary" + (" (stopped by Ctrl-C)" if result.interrupted else ""),
        f"health    {health}: answered {snap.answered} of {snap.asked} polls, "
        f"last status {health_status(snap) if snap.health else 'unknown'}",
        *summary_lines(world, snap, health)[1:],
        f"activity  {', '.join(f'{kind} {n}' for kind, n in sorted(result.activity.items())) or 'none'}",
    ]
    if result.daemon_error:
        lines.append(f"daemon    stopped with an error: {result.daemon_error} (see {log_path})")
    lines.append(f"truth check: {t.verdict}")
    lines += [f"  {line}" for line in t.details]
    if result.stock is not None:
        lines.append(f"stock check: {result.stock.verdict}")
    if result.fulfilments is not None:
        lines.append(f"fulfilment check: {result.fulfilments.verdict}")
        lines += [f"  {line}" for line in result.fulfilments.details]
    if kept:
        lines.append(f"state DB {db} and daemon log {log_path} kept")
    else:
        lines.append("state DB and daemon log removed (keep them with --db PATH)")
    out.write("\n".join(lines[:2]) + "\n" + "".join(f"  {line}\n" for line in lines[2:]))
    out.write("".join(f"{line}\n" for line in next_steps(db if kept else None, parked=snap.parked)))
    out.flush()


def shops_env() -> str:
    """The variables that name the demo's shops to a DB-only command (``parked``, ``status``)."""
    domains = " ".join(f"{shop_variable(alias, 'shopify_shop')}={domain}" for alias, domain in SHOPS.items())
    return f"SHOPS={','.join(SHOPS)} {domains}"


def next_steps(db: Path | None, *, parked: int) -> list[str]:
    """What to try after the demo: its parked records, then the real shops."""
    what = f"what the daemon parked ({_plural(parked, 'record', 'records')})" if parked else "parked records"
    what += f" in every shop, with the fix (--shop {next(iter(SHOPS))}: one shop's)"
    lines = ["next steps"]
    if db is not None:
        lines += [f"  SYNC_DB={shlex.quote(str(db))} {shops_env()} rackbeat-shopify parked", f"      {what}"]
    else:
        lines += [
            "  rackbeat-shopify demo --db demo.db       keeps the state DB, then",
            f"  SYNC_DB=demo.db {shops_env()} rackbeat-shopify parked",
            f"      {what}",
        ]
    lines += [
        "  with your shop's settings (see .env.example; SHOPS for several shops on one Rackbeat):",
        "  rackbeat-shopify check                   both APIs reachable, the configured numbers exist",
        "  rackbeat-shopify reconcile --dry-run     what differs between Shopify and Rackbeat; writes nothing",
    ]
    return lines
