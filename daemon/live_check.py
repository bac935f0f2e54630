"""``check --live``: prove each Rackbeat assumption and each Shopify scope on the real account.

Everything the daemon believes about Rackbeat that no public source confirms is marked
[assumed] and lives behind one function of :mod:`daemon.rackbeat`; the simulators follow
the same assumptions, so the end-to-end tests cannot prove them. This module asks the
merchant's live account, **read-only** (Rackbeat ``GET`` only, Shopify queries only), and
gives one :class:`Result` per fact: ``confirmed``, ``refuted`` (with what was seen
instead) or ``unknown`` (the account has no data to tell, e.g. no orders yet), and what
the daemon will do about it. The probes read through the same assumption functions the
flows use (:func:`~daemon.rackbeat.order_search_params`,
:func:`~daemon.rackbeat.order_reference_matches`, :meth:`~daemon.rackbeat.Order.from_json`
…), so a fix there is a fix here.

The fact ids (:data:`FACTS`) are stable: logs, the runner and ``--json`` name them. A fact
is *load-bearing* when its refutation makes the daemon wrong rather than slower
(:attr:`Result.load_bearing`): a duplicate order after a crash, a customer per order,
stock read as unknown. ``check --live`` exits 78 when a load-bearing fact is refuted.

Cost: about 20 Rackbeat requests and one Shopify query per shop, whatever the size of the
catalogue (small ``limit``\\ s; the catalogue is never paged). ``python -m bench --only
live_check`` measures it on a 10,000-product account.

The reference search is also what :class:`ReferenceGate` probes while ``run`` runs: the
orders flow holds orders (their units stay held) while it is refuted.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, TextIO

import anyio
import structlog

from daemon import rackbeat as rb
from daemon import shopify_documents as docs
from daemon.config import Account, ProductPriority, Settings, Shop, StockFigure
from daemon.errors import ConfigError, MalformedResponse, NotFoundError
from daemon.rackbeat import Customer, Order, RackbeatClient
from daemon.shopify import ShopifyClient, location_gid

log = structlog.get_logger("daemon.live_check")

# --- fact ids (stable: G's error messages and the runner import them) ---------------------

REFERENCE_SEARCH = "reference_search"
CUSTOMER_EMAIL_SEARCH = "customer_email_search"
LIST_ENVELOPE = "list_envelope"
PAGE_LIMIT = "page_limit"
PRODUCTS_UPDATED_FROM = "products_updated_from"
ORDERS_UPDATED_FROM = "orders_updated_from"
PRODUCT_FIELDS = "product_fields"
ORDER_FIELDS = "order_fields"
LOCATION_STOCK = "location_stock"
SHIPMENT_SHAPE = "shipment_shape"
NUMBER_FORMAT = "number_format"
TIMESTAMP_FORMAT = "timestamp_format"
REFERENCE_ENVELOPES = "reference_envelopes"
ACCESS_SCOPES = "access_scopes"
API_VERSION = "api_version"
LOCATION = "location"
PLAN_LIMITS = "plan_limits"

#: the Rackbeat facts, probed once per account, in the order they are reported
RACKBEAT_FACTS: tuple[str, ...] = (
    REFERENCE_SEARCH,
    CUSTOMER_EMAIL_SEARCH,
    LIST_ENVELOPE,
    PAGE_LIMIT,
    PRODUCTS_UPDATED_FROM,
    ORDERS_UPDATED_FROM,
    PRODUCT_FIELDS,
    ORDER_FIELDS,
    LOCATION_STOCK,
    SHIPMENT_SHAPE,
    NUMBER_FORMAT,
    TIMESTAMP_FORMAT,
    REFERENCE_ENVELOPES,
)
#: the Shopify facts, probed per shop
SHOPIFY_FACTS: tuple[str, ...] = (ACCESS_SCOPES, API_VERSION, LOCATION, PLAN_LIMITS)
#: every fact id
FACTS: tuple[str, ...] = RACKBEAT_FACTS + SHOPIFY_FACTS

#: orders read to find one with a ``your_reference`` (one page, newest first)
RECENT_ORDERS = 20
#: products and customers sampled for their fields
SAMPLE = 5
#: the ``limit`` asked for to learn the largest one Rackbeat accepts
LIMIT_PROBE = 1000
#: Shopify shows older orders only with ``read_all_orders``
ALL_ORDERS_AFTER = timedelta(days=60)


class Outcome(StrEnum):
    """What the live account showed about a fact."""

    CONFIRMED = "confirmed"
    REFUTED = "refuted"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class Result:
    """One fact's outcome on the live account."""

    fact: str
    outcome: Outcome
    #: what was seen (for ``refuted``: what was seen instead)
    seen: str
    #: what the daemon does about it
    action: str
    #: a refutation makes the daemon wrong, not just slower: ``check --live`` exits 78
    load_bearing: bool = False
    #: the shop's alias for a Shopify fact of several shops
    shop: str | None = None

    @property
    def blocking(self) -> bool:
        """Refuted and load-bearing."""
        return self.outcome is Outcome.REFUTED and self.load_bearing

    def line(self) -> str:
        """One human line: outcome, fact, what was seen, what the daemon does."""
        where = f"[{self.shop}] " if self.shop else ""
        return f"{self.outcome.value:<9} {where}{self.fact}: {self.seen} → {self.action}"


def _confirmed(fact: str, seen: str, action: str) -> Result:
    return Result(fact, Outcome.CONFIRMED, seen, action)


def _unknown(fact: str, seen: str, action: str) -> Result:
    return Result(fact, Outcome.UNKNOWN, seen, action)


def _refuted(fact: str, seen: str, action: str, *, load_bearing: bool) -> Result:
    return Result(fact, Outcome.REFUTED, seen, action, load_bearing=load_bearing)


# --- Rackbeat ------------------------------------------------------------------------------


@dataclass
class _Page:
    status: int
    body: dict[str, Any]
    key: str

    @property
    def items(self) -> list[Any]:
        value = self.body.get(self.key)
        return value if isinstance(value, list) else []


async def _page(client: RackbeatClient, path: str, key: str, **params: str | int) -> _Page:
    query = {"page": "1", **{k: str(v) for k, v in params.items()}}
    status, body = await client.read_raw(path, params=query)
    return _Page(status, body, key)


async def _recent_orders(client: RackbeatClient) -> list[Mapping[str, Any]]:
    """The newest :data:`RECENT_ORDERS` orders (one page)."""
    page = await _page(
        client, "orders", "orders", limit=RECENT_ORDERS, order_by="created_at", order_direction="DESC"
    )
    return [o for o in page.items if isinstance(o, Mapping)]


def _carries(
    fact: str,
    what: str,
    *,
    records: Sequence[Mapping[str, Any]],
    wanted: Sequence[str],
    either: tuple[str, str],
    parse: Callable[[Any], object],
    action: str,
) -> Result:
    """Whether every sampled record has each ``wanted`` field and one of ``either``, and reads
    with ``parse`` (the record's ``from_json``; a MalformedResponse is the caller's finding)."""
    if not records:
        return _unknown(fact, f"no {what} yet", f"run again once Rackbeat has {what}")
    missing = sorted({name for record in records for name in wanted if name not in record})
    if not all(either[0] in record or either[1] in record for record in records):
        missing.append("/".join(either))
    for record in records:
        parse(record)
    if missing:
        return _refuted(fact, f"{what} lack {', '.join(missing)}", action, load_bearing=True)
    return _confirmed(fact, f"{len(records)} {what} carry every field read", f"{what} read as assumed")


def _mentions(raw: Any, text: str) -> bool:
    """Whether ``text`` occurs (case-insensitively) in any value of a JSON record."""
    return text.casefold() in json.dumps(raw, ensure_ascii=False).casefold()


class _RackbeatProbes:
    """The Rackbeat facts of one account; samples read once and shared by the probes."""

    def __init__(self, client: RackbeatClient, shops: Sequence[Settings], now: datetime) -> None:
        self.client = client
        self.shops = shops
        self.now = now
        self.products: list[Mapping[str, Any]] = []
        self.orders: list[Mapping[str, Any]] = []

    async def run(self) -> list[Result]:
        limits = await _page(self.client, "products", "products", fields="number", limit=LIMIT_PROBE)
        sample = await _page(self.client, "products", "products", limit=SAMPLE)
        self.products = [p for p in sample.items if isinstance(p, Mapping)]
        self.orders = await _recent_orders(self.client)
        probes: list[Callable[[], Awaitable[Result]]] = [
            self.reference_search,
            self.customer_email_search,
            lambda: self.list_envelope(limits),
            lambda: self.page_limit(limits),
            lambda: self.updated_from(PRODUCTS_UPDATED_FROM, "products", self.products),
            lambda: self.updated_from(ORDERS_UPDATED_FROM, "orders", self.orders),
            self.product_fields,
            self.order_fields,
            self.location_stock,
            self.shipment_shape,
            self.number_format,
            self.timestamp_format,
            self.reference_envelopes,
        ]
        results: list[Result] = []
        for fact, probe in zip(RACKBEAT_FACTS, probes, strict=True):
            try:
                results.append(await probe())
            except (MalformedResponse, ConfigError, NotFoundError) as exc:
                # the answer did not have the assumed shape at all: that is the finding
                results.append(_refuted(fact, str(exc), "fix the assumption it names", load_bearing=True))
        return results

    # --- the exactly-once fact ---

    async def reference_search(self) -> Result:
        return await probe_reference_search(self.client, self.orders)

    async def customer_email_search(self) -> Result:
        fact = CUSTOMER_EMAIL_SEARCH
        customers = await _page(self.client, "customers", "customers", limit=RECENT_ORDERS)
        rows = [c for c in customers.items if isinstance(c, Mapping)]
        if rows and not any("contact_email" in c for c in rows):
            return _refuted(
                fact,
                f"customers carry no contact_email field (fields: {', '.join(sorted(rows[0]))[:200]})",
                "every order would create a new customer: fix Customer.from_json()",
                load_bearing=True,
            )
        known = next((Customer.from_json(c) for c in rows if c.get("contact_email")), None)
        if known is None or known.email is None:
            return _unknown(
                fact,
                "no customer with an e-mail yet",
                "the first orders' customers are created; run again later",
            )
        found = await _page(
            self.client,
            "customers",
            "customers",
            limit=self.client.page_limit,
            **rb.customer_search_params(known.email),
        )
        hits = [Customer.from_json(c) for c in found.items]
        if not any(c.number == known.number and rb.customer_email_matches(c, known.email) for c in hits):
            return _refuted(
                fact,
                f"searching {known.email!r} did not return customer {known.number}",
                "a returning customer would be created again for every order: fix customer_search_params()",
                load_bearing=True,
            )
        unrelated = [c for c in found.items if not _mentions(c, known.email)]
        if unrelated:
            return _refuted(
                fact,
                f"searching {known.email!r} also returned {len(unrelated)} customer(s) without it",
                "found by comparing every result: each new e-mail costs a scan of all customers",
                load_bearing=False,
            )
        return _confirmed(
            fact, f"customer {known.number} found by its e-mail", "customers are matched by e-mail"
        )

    # --- lists ---

    async def list_envelope(self, page: _Page) -> Result:
        fact = LIST_ENVELOPE
        if not isinstance(page.body.get("products"), list):
            return _refuted(
                fact,
                f"GET /products has no 'products' list (keys: {', '.join(sorted(page.body))})",
                "no list can be read: fix RackbeatClient._pages()",
                load_bearing=True,
            )
        missing = [k for k in ("total", "pages", "limit", "page") if k not in page.body]
        if missing:
            return _refuted(
                fact,
                f"the list envelope lacks {', '.join(missing)}",
                "lists end at the first short page (one request more per list at most)",
                load_bearing=False,
            )
        pages = rb.envelope_count(page.body.get("pages"))
        if pages is not None and pages > 1 and page.status != 206:
            return _refuted(
                fact,
                f"page 1 of {pages} answered HTTP {page.status}, not 206",
                "200 and 206 are read alike: nothing changes",
                load_bearing=False,
            )
        note = f"206 on page 1 of {pages}" if pages and pages > 1 else "one page only (206 not seen)"
        return _confirmed(
            fact, f"envelope products/total/pages/limit/page; {note}", "lists are paged as assumed"
        )

    async def page_limit(self, page: _Page) -> Result:
        fact = PAGE_LIMIT
        echoed = rb.envelope_count(page.body.get("limit"))
        pages = rb.envelope_count(page.body.get("pages"))
        largest = echoed
        if largest is None and pages is not None and pages > 1:
            largest = len(page.items)  # a full page at the server's cap
        if largest is None:
            return _unknown(
                fact, "no limit echoed and one page only", f"pages of {self.client.page_limit} are asked for"
            )
        largest = min(largest, LIMIT_PROBE)
        ours = self.client.page_limit
        if largest < ours:
            return _refuted(
                fact,
                f"limit={LIMIT_PROBE} was answered with {largest} items a page (the daemon asks for {ours})",
                "the echoed limit is read back: more pages, nothing missed",
                load_bearing=False,
            )
        return _confirmed(fact, f"limit={largest} accepted (the daemon asks for {ours})", "pages as assumed")

    async def updated_from(self, fact: str, path: str, sample: Sequence[Mapping[str, Any]]) -> Result:
        stamps = [rb.parse_timestamp(r["updated_at"]) for r in sample if isinstance(r.get("updated_at"), str)]
        if not stamps:
            return _unknown(fact, f"no {path} yet", f"{path} changes are read as assumed; run again later")
        params = rb.updated_since_params if path == "products" else rb.changed_orders_params
        future = await _page(
            self.client, path, path, limit=1, fields="number", **params(self.now + timedelta(days=1))
        )
        if future.items:
            total = rb.envelope_count(future.body.get("total"))
            ignored = "the filter is ignored"
            if path == "products":
                action = "every product counts as changed: more reads, nothing missed"
            else:
                action = "the fulfilments flow sees the filter fail and reads open orders back (20 a cycle)"
            return _refuted(
                fact,
                f"updated_at_from=tomorrow still listed {path} ({total if total is not None else 'some'}): {ignored}",
                action,
                load_bearing=False,
            )
        oldest = min(stamps)
        past = await _page(self.client, path, path, limit=1, fields="number", **params(oldest))
        if not past.items:
            return _refuted(
                fact,
                f"updated_at_from={rb.format_timestamp(oldest)} listed nothing, though a record was updated then",
                f"changed {path} would be missed: fix {params.__name__}()",
                load_bearing=True,
            )
        return _confirmed(fact, f"updated_at_from narrows /{path}", f"{path} changes are read incrementally")

    # --- fields ---

    async def product_fields(self) -> Result:
        wanted = {*rb.STOCK_FIELDS, *rb.PRODUCT_FIELDS} - {"group", "group_id"}
        return _carries(
            PRODUCT_FIELDS,
            "products",
            records=self.products,
            wanted=sorted(wanted),
            either=("group", "group_id"),
            parse=rb.Product.from_json,
            action="stock or product fields would read as unknown: fix Product.from_json() / STOCK_FIELDS",
        )

    async def order_fields(self) -> Result:
        wanted = [
            "number",
            "your_reference",
            "is_booked",
            "is_ready_for_shipping",
            "is_shipped",
            "is_cancelled",
        ]
        return _carries(
            ORDER_FIELDS,
            "orders",
            records=self.orders,
            wanted=wanted,
            either=("customer_id", "customer"),
            parse=Order.from_json,
            action="a missing flag reads as false (an order's state would be misread): fix Order.from_json()",
        )

    async def location_stock(self) -> Result:
        fact = LOCATION_STOCK
        # read per location only for S10 lists of the available figure
        listed = any(
            s.sync_stock and s.location_numbers is not None and s.sync_stock_figure is StockFigure.AVAILABLE
            for s in self.shops
        )
        action_refuted = (
            "SYNC_LOCATIONS lists locations: per-location stock cannot be read; use SYNC_LOCATIONS=all"
            if listed
            else "not used (SYNC_LOCATIONS=all)"
        )
        if not self.products:
            return _unknown(fact, "no products yet", "run again once the catalogue is in Rackbeat")
        number = rb.number_text(self.products[0].get("number"))
        try:
            _, body = await self.client.read_raw("items", number, "locations", "available")
        except NotFoundError:
            return _refuted(
                fact,
                f"GET /items/{number}/locations/available answered 404 for a product that exists",
                action_refuted,
                load_bearing=listed,
            )
        entries = body.get("locations")
        if not isinstance(entries, list):
            return _refuted(
                fact,
                f"no 'locations' list (keys: {', '.join(sorted(body))})",
                action_refuted,
                load_bearing=listed,
            )
        read = [rb.available_entry(e) for e in entries if isinstance(e, Mapping)]
        if any(value is None for _, value in read):
            return _refuted(
                fact,
                "entries carry neither available_quantity nor quantity",
                action_refuted,
                load_bearing=listed,
            )
        return _confirmed(
            fact, f"{len(read)} locations with available quantities", "per-location stock as assumed"
        )

    async def shipment_shape(self) -> Result:
        fact = SHIPMENT_SHAPE
        fulfilling = any(s.sync_orders and s.sync_fulfilments for s in self.shops)
        shipped = next((o for o in self.orders if Order.from_json(o).is_shipped), None)
        if shipped is None:
            page = await _page(self.client, "orders", "orders", limit=1, is_shipped="true")
            shipped = next((o for o in page.items if Order.from_json(o).is_shipped), None)
        if shipped is None:
            return _unknown(fact, "no shipped order yet", "run again after the warehouse ships an order")
        number = rb.number_text(shipped.get("number"))
        _, body = await self.client.read_raw("orders", number, "shipments")
        raws = body.get("order_shipments")
        if not isinstance(raws, list) or not raws:
            return _refuted(
                fact,
                f"shipped order {number} lists no shipments",
                "fulfils by the order's flags (is_shipped: everything), without tracking",
                load_bearing=False,
            )
        shipments = [rb.Shipment.from_json(r) for r in raws]
        if all(s.lines is None for s in shipments):
            return _refuted(
                fact,
                f"order {number}'s shipments carry no lines (keys: {', '.join(sorted(raws[0]))[:200]})",
                "fulfils by the order's flags (is_shipped: everything); partial shipments wait for the rest",
                load_bearing=False,
            )
        tracked = any(s.tracking_number for s in shipments)
        note = "with tracking" if tracked else "no tracking number seen"
        return _confirmed(
            fact,
            f"order {number}: {len(shipments)} shipment(s) with lines, {note}",
            "fulfils per shipment" if fulfilling else "not used (SYNC_FULFILMENTS off)",
        )

    async def number_format(self) -> Result:
        fact = NUMBER_FORMAT
        values = [
            (what, record.get(key))
            for what, records, keys in (
                ("product", self.products, ("number",)),
                ("order", self.orders, ("number", "customer_id")),
            )
            for record in records
            for key in keys
            if record.get(key) is not None
        ]
        if not values:
            return _unknown(fact, "no products or orders yet", "run again later")
        odd = [(what, v) for what, v in values if isinstance(v, bool) or not isinstance(v, str | int)]
        if odd:
            what, value = odd[0]
            readable = all(isinstance(v, float) and math.isfinite(v) and v.is_integer() for _, v in odd)
            return _refuted(
                fact,
                f"{len(odd)} number(s) neither text nor integer, e.g. {what} {value!r}",
                "read as the same number (1001.0 is 1001)"
                if readable
                else "such records fail to read: fix number_text()",
                load_bearing=not readable,
            )
        kinds = sorted({type(v).__name__ for _, v in values})
        return _confirmed(fact, f"numbers arrive as {'/'.join(kinds)}", "kept as opaque text")

    async def timestamp_format(self) -> Result:
        fact = TIMESTAMP_FORMAT
        stamps = [
            r["updated_at"] for r in (*self.products, *self.orders) if isinstance(r.get("updated_at"), str)
        ]
        if not stamps:
            return _unknown(fact, "no products or orders yet", "run again later")
        for stamp in stamps:
            try:
                rb.parse_timestamp(stamp)
            except MalformedResponse:
                return _refuted(
                    fact,
                    f"updated_at {stamp!r} is neither ISO 8601 nor YYYY-MM-DD HH:MM:SS",
                    "records with it fail to read: fix parse_timestamp()",
                    load_bearing=True,
                )
        return _confirmed(fact, f"{len(stamps)} timestamps read", "times read as assumed")

    async def reference_envelopes(self) -> Result:
        fact = REFERENCE_ENVELOPES
        wrong: list[str] = []
        for resource in ("payment-terms", "employees", "customer-groups", "currencies"):
            key = rb.reference_envelope(resource)
            page = await _page(self.client, resource, key, limit=1)
            if not isinstance(page.body.get(key), list):
                wrong.append(f"/{resource} has no {key!r} (keys: {', '.join(sorted(page.body))})")
        if wrong:
            return _refuted(
                fact,
                "; ".join(wrong),
                "`check` cannot verify S3/S5/S7/S8: fix reference_envelope()",
                load_bearing=True,
            )
        return _confirmed(
            fact, "payment_terms, employees, customer_groups, currencies", "settings are verified"
        )


async def probe_reference_search(
    client: RackbeatClient, recent: Sequence[Mapping[str, Any]] | None = None
) -> Result:
    """The exactly-once fact: searching a recent order's ``your_reference`` finds that order
    and no unrelated one (at most 2 requests: the recent orders, unless given, and the search).

    Refuted when the search misses the order or also returns orders that do not mention
    the reference (a search that ignores the text returns everything); unknown while no
    order has a ``your_reference``.
    """
    fact = REFERENCE_SEARCH
    action = "orders are held (SYNC_ORDERS_UNPROVEN_REFERENCE=refuse): a crash could make a duplicate"
    if recent is None:
        recent = await _recent_orders(client)
    known = next(
        (o for o in map(Order.from_json, recent) if o.your_reference and o.your_reference.strip()),
        None,
    )
    if known is None or known.your_reference is None:
        return _unknown(
            fact,
            "no order with a your_reference yet",
            "orders are imported; the search is probed again after the first import",
        )
    reference = known.your_reference.strip()
    found = await _page(
        client, "orders", "orders", limit=client.page_limit, **rb.order_search_params(reference)
    )
    hits = [Order.from_json(o) for o in found.items]
    if not any(o.number == known.number and rb.order_reference_matches(o, reference) for o in hits):
        seen = f"searching {reference!r} returned {len(hits)} order(s), not order {known.number}"
        return _refuted(fact, seen, action, load_bearing=True)
    unrelated = [o for o in found.items if not _mentions(o, reference)]
    if unrelated:
        example = Order.from_json(unrelated[0])
        seen = (
            f"searching {reference!r} also returned {len(unrelated)} unrelated order(s) "
            f"(e.g. {example.number} {example.your_reference!r}): the search ignores the text"
        )
        return _refuted(fact, seen, action, load_bearing=True)
    return _confirmed(
        fact,
        f"order {known.number} found by {reference!r}, nothing unrelated",
        "after a crash a draft is found, not made twice",
    )


# --- Shopify -------------------------------------------------------------------------------


def needed_scopes(settings: Settings, now: datetime) -> set[str]:
    """The access scopes the enabled flows of one shop need."""
    needed = {"read_products", "read_locations"}
    if settings.sync_orders:
        needed.add("read_orders")
        since = settings.sync_orders_since
        if since is not None and since.astimezone(UTC) < now - ALL_ORDERS_AFTER:
            needed.add("read_all_orders")
        if settings.sync_fulfilments:
            needed.add("write_merchant_managed_fulfillment_orders")
    if settings.sync_stock:
        needed |= {"read_inventory", "write_inventory"}
    if settings.sync_product_priority is ProductPriority.RACKBEAT:
        needed.add("write_products")
    return needed


async def shopify_results(client: ShopifyClient, settings: Settings, now: datetime) -> list[Result]:
    """The Shopify facts of one shop, from one query (:data:`~daemon.shopify_documents.LIVE_CHECK`)."""
    configured = settings.shopify_location_id
    data = await client.execute(
        docs.LIVE_CHECK, {"locationId": location_gid(configured) if configured else None}
    )
    results: list[Result] = []

    installation = data.get("currentAppInstallation") or {}
    granted = {s.get("handle") for s in installation.get("accessScopes") or [] if isinstance(s, Mapping)}
    # a write scope implies its read scope
    granted |= {
        f"read_{h[len('write_') :]}" for h in granted if isinstance(h, str) and h.startswith("write_")
    }
    missing = sorted(needed_scopes(settings, now) - granted)
    if missing:
        results.append(
            _refuted(
                ACCESS_SCOPES,
                f"the app lacks {', '.join(missing)}",
                "the flows needing them fail with `auth`: grant the scopes in the app's configuration",
                load_bearing=True,
            )
        )
    else:
        results.append(_confirmed(ACCESS_SCOPES, "every scope the enabled flows need", "nothing to do"))

    version = settings.shopify_api_version
    versions = {
        v.get("handle"): v.get("supported")
        for v in data.get("publicApiVersions") or []
        if isinstance(v, Mapping)
    }
    if versions.get(version) is True:
        results.append(_confirmed(API_VERSION, f"{version} is supported", "nothing to do"))
    else:
        newest = max((h for h, ok in versions.items() if ok and isinstance(h, str)), default="?")
        state = "listed as unsupported" if version in versions else "not listed"
        results.append(
            _refuted(
                API_VERSION,
                f"SHOPIFY_API_VERSION={version} is {state} (newest supported: {newest})",
                "Shopify may answer with another version: upgrade the daemon",
                load_bearing=True,
            )
        )

    location = data.get("location")
    which = f"SHOPIFY_LOCATION_ID={configured}" if configured else "the primary location"
    if not isinstance(location, Mapping):
        results.append(
            _refuted(
                LOCATION,
                f"{which} does not exist",
                "no stock can be written: fix SHOPIFY_LOCATION_ID",
                load_bearing=True,
            )
        )
    elif not location.get("isActive"):
        results.append(
            _refuted(
                LOCATION,
                f"{which} ({location.get('name')}) is not active",
                "stock writes fail: activate it or choose another",
                load_bearing=True,
            )
        )
    else:
        results.append(
            _confirmed(LOCATION, f"{which} {location.get('name')!r} is active", "stock goes there")
        )

    bucket = client.throttle_status
    if bucket is None:
        results.append(_unknown(PLAN_LIMITS, "no cost report in the answer", "the first answers will tell"))
    else:
        results.append(
            _confirmed(
                PLAN_LIMITS,
                f"bucket {bucket.maximum_available:g} points, restores {bucket.restore_rate:g}/s",
                "requests are paced to it",
            )
        )
    return results


# --- the command ---------------------------------------------------------------------------


@dataclass
class Report:
    """Every result of one ``check --live``, with the requests it spent."""

    results: list[Result] = field(default_factory=list)
    requests: dict[str, int] = field(default_factory=dict)

    @property
    def blocking(self) -> list[Result]:
        """The refuted load-bearing facts."""
        return [r for r in self.results if r.blocking]

    @property
    def exit_code(self) -> int:
        """0, or 78 (EX_CONFIG) when a load-bearing fact is refuted."""
        return 78 if self.blocking else 0

    def to_json(self) -> dict[str, Any]:
        """The ``--json`` document."""
        rows = [{**asdict(r), "outcome": r.outcome.value} for r in self.results]
        return {"results": rows, "requests": self.requests, "exit": self.exit_code}

    def print(self, out: TextIO, *, as_json: bool) -> None:
        """One line per fact (or JSON); then one line per refuted load-bearing fact."""
        if as_json:
            print(json.dumps(self.to_json(), indent=2), file=out)
            return
        for result in self.results:
            print(result.line(), file=out)
        blocking = self.blocking
        if blocking:
            print(f"{len(blocking)} load-bearing fact(s) refuted:", file=out)
            for result in blocking:
                where = f"[{result.shop}] " if result.shop else ""
                print(f"  {where}{result.fact}: {result.seen}", file=out)
        else:
            print("nothing load-bearing refuted", file=out)


async def live_check(
    rackbeat_client: RackbeatClient,
    shops: Iterable[tuple[str | None, Settings, ShopifyClient]],
    *,
    now: datetime | None = None,
) -> Report:
    """Probe the Rackbeat facts once (for the account) and the Shopify facts of each shop
    (``(alias or None, settings, client)``)."""
    moment = now or datetime.now(UTC)
    chosen = list(shops)
    report = Report()
    before_rb = rackbeat_client.requests
    before_sh = {id(c): c.requests for _, _, c in chosen}
    settings = [s for _, s, _ in chosen]
    report.results.extend(await _RackbeatProbes(rackbeat_client, settings, moment).run())
    for alias, shop_settings, client in chosen:
        for result in await shopify_results(client, shop_settings, moment):
            report.results.append(
                Result(result.fact, result.outcome, result.seen, result.action, result.load_bearing, alias)
            )
    report.requests = {
        "rackbeat": rackbeat_client.requests - before_rb,
        "shopify": sum(c.requests - before_sh[id(c)] for _, _, c in chosen),
    }
    return report


async def check_live(account: Account, shops: Sequence[Shop], *, out: TextIO, as_json: bool) -> int:
    """``check --live [--json]``: print the report; 0, or 78 when a load-bearing fact is refuted."""
    from daemon.services import open_account, register_secrets  # noqa: PLC0415  # keeps imports light

    register_secrets(account)
    wanted = {shop.alias for shop in shops}
    async with open_account(account) as opened:
        chosen = [
            (s.alias if account.several else None, s.settings, s.shopify)
            for s in opened.shops
            if s.alias in wanted
        ]
        report = await live_check(opened.rackbeat, chosen)
    report.print(out, as_json=as_json)
    return report.exit_code


# --- the gate in ``run`` -----------------------------------------------------------------

#: how often a confirmed (or unknown) reference search is probed again
EVERY = 24 * 3600.0
#: how often a refuted one is probed again (so the import resumes without a restart)
WHILE_REFUTED = 3600.0


class ReferenceGate:
    """The reference-search probe of ``run``, one per Rackbeat account (shared by every
    shop's orders flow): at the first cycle, then once a day, hourly while refuted.

    ``unknown`` (no order has a ``your_reference`` yet: a new account) does not hold
    orders: a new account must be able to start, and its first order cannot be a
    duplicate of anything. The probe is then repeated right after the first cycle that
    imported an order, so the first order proves (or refutes) the search before a second
    crash window opens. A failed probe (Rackbeat down) fails the cycle like any read.
    """

    def __init__(
        self,
        client: RackbeatClient,
        *,
        clock: Callable[[], float] = time.monotonic,
        every: float = EVERY,
        while_refuted: float = WHILE_REFUTED,
    ) -> None:
        self.client = client
        self.clock = clock
        self.every = every
        self.while_refuted = while_refuted
        #: the last probe's result (None before the first)
        self.result: Result | None = None
        self._due = -math.inf
        self._lock = anyio.Lock()

    async def refusal(self) -> str | None:
        """Why orders may not be imported now (the refuted search), or None; probes when due."""
        async with self._lock:
            if self.clock() >= self._due:
                await self._probe()
        result = self.result
        if result is None or result.outcome is not Outcome.REFUTED:
            return None
        return f"Rackbeat's order search by your_reference is refuted ({result.seen}); run `check --live`"

    def imported(self) -> None:
        """An order was imported: probe again at the next cycle while the search is unknown."""
        if self.result is not None and self.result.outcome is Outcome.UNKNOWN:
            self._due = -math.inf

    async def _probe(self) -> None:
        result = await probe_reference_search(self.client)
        previous = self.result
        self.result = result
        self._due = self.clock() + (self.while_refuted if result.outcome is Outcome.REFUTED else self.every)
        if previous is None or previous.outcome is not result.outcome:
            level = log.error if result.outcome is Outcome.REFUTED else log.info
            level(
                "live_check.reference_search",
                fact=REFERENCE_SEARCH,
                outcome=result.outcome.value,
                seen=result.seen,
            )


__all__ = [
    "ACCESS_SCOPES",
    "API_VERSION",
    "CUSTOMER_EMAIL_SEARCH",
    "FACTS",
    "LIST_ENVELOPE",
    "LOCATION",
    "LOCATION_STOCK",
    "NUMBER_FORMAT",
    "ORDERS_UPDATED_FROM",
    "ORDER_FIELDS",
    "PAGE_LIMIT",
    "PLAN_LIMITS",
    "PRODUCTS_UPDATED_FROM",
    "PRODUCT_FIELDS",
    "RACKBEAT_FACTS",
    "REFERENCE_ENVELOPES",
    "REFERENCE_SEARCH",
    "SHIPMENT_SHAPE",
    "SHOPIFY_FACTS",
    "TIMESTAMP_FORMAT",
    "Outcome",
    "ReferenceGate",
    "Report",
    "Result",
    "check_live",
    "live_check",
    "needed_scopes",
    "probe_reference_search",
    "shopify_results",
]
