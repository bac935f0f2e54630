"""A stateful simulated Shopify GraphQL Admin API (2026-10).

The simulator executes GraphQL for real (graphql-core) over an executable subset of
Shopify's Admin schema, ``shopify_schema.graphql`` next to this module: the type, field,
argument and enum names are Shopify's, so a document that works here is one Shopify
accepts. Pass Shopify's published schema as ``validate_schema`` and every incoming
document is checked against it as well.

What a client sees:

* ``POST /admin/api/{version}/graphql.json`` with ``X-Shopify-Access-Token`` (401 without
  a valid one, 404 for an unknown version);
* ``POST /admin/oauth/access_token`` — the client-credentials grant, tokens that expire;
* a leaky-bucket cost limit with ``extensions.cost`` on every response, ``THROTTLED``
  with HTTP 200 when the bucket is short, ``MAX_COST_EXCEEDED`` above 1,000 points;
* cursor pagination (``nodes``, ``edges``, ``pageInfo``) and search filters
  (``updated_at``, ``created_at``, ``sku``, ``status``, ``test``…) over an index that can
  be made to lag;
* ``inventorySetQuantities`` with mandatory ``@idempotent(key:)`` and
  ``changeFromQuantity`` compare-and-swap;
* fulfillment orders (one per order at its location, holding the lines that require
  shipping), ``fulfillmentCreate`` (no idempotency key, all or nothing, committed and
  on-hand stock drop) and ``fulfillmentTrackingInfoUpdate``;
* faults from :class:`~daemon.sim.faults.Faults`: 5xx answers, throttle bursts (HTTP 429,
  or ``THROTTLED`` with HTTP 200 after other traffic emptied the bucket), truncated
  bodies and delays.

Tests and the demo drive the shop through Python methods (:meth:`ShopifySimulator.add_product`,
:meth:`~ShopifySimulator.sell`, :meth:`~ShopifySimulator.fulfill_order`, …) or the ``/_sim/``
HTTP control API (seed products, orders and sales, fulfil, hold and move orders, mark them
paid, set faults, expire tokens; see :meth:`ShopifySimulator._control`). Time is injected
(``now`` for timestamps, ``monotonic`` for the bucket and token expiry), so tests never
sleep; :class:`SimClock` is a ready-made manual clock.

:meth:`ShopifySimulator.handle` has the shape of an ``httpx.MockTransport`` handler, so the
same simulator runs in-process or behind a real socket
(:func:`daemon.webserver.handler_app` makes it an ASGI app for :func:`daemon.webserver.serve`).
"""

from __future__ import annotations

import base64
import binascii
import collections
import contextvars
import functools
import importlib.resources
import json
import re
import secrets
import time
import urllib.parse
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Collection,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any, ClassVar, NotRequired, TypeAlias, TypedDict, TypeVar, cast

import anyio
import httpx
from graphql import (
    DocumentNode,
    ExecutionResult,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLEnumType,
    GraphQLError,
    GraphQLInterfaceType,
    GraphQLList,
    GraphQLNamedType,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLResolveInfo,
    GraphQLSchema,
    InlineFragmentNode,
    IntValueNode,
    ListValueNode,
    OperationDefinitionNode,
    OperationType,
    SelectionSetNode,
    ValueNode,
    VariableNode,
    build_schema,
    execute_sync,
    get_directive_values,
    get_named_type,
    get_operation_ast,
    is_leaf_type,
    parse,
    validate,
)

from daemon.sim.faults import Faults, truncate_body

__all__ = [
    "BULK_STARTUP_SECONDS",
    "DEFAULT_ACCESS_TOKEN",
    "DEFAULT_CLIENT_ID",
    "DEFAULT_CLIENT_SECRET",
    "FINISHED_STATUSES",
    "FULFILLABLE_STATUSES",
    "SUPPORTED_VERSIONS",
    "AddedProduct",
    "CostBucket",
    "Customer",
    "InventoryApplication",
    "InventoryItem",
    "InventoryLevel",
    "LineItem",
    "Location",
    "Order",
    "OrderLineSpec",
    "Product",
    "ProductVariant",
    "RequestRecord",
    "SearchTerm",
    "ShopifySimulator",
    "SimBulkOperation",
    "SimClock",
    "SimFulfillment",
    "SimFulfillmentLine",
    "SimFulfillmentOrder",
    "SimFulfillmentOrderLine",
    "VariantSpec",
    "estimate_cost",
    "load_schema",
    "parse_search",
]

#: The static Admin API token every simulator accepts unless told otherwise.
DEFAULT_ACCESS_TOKEN = "shpat_simulator"  # noqa: S105  # a well-known fake token for a simulator
#: Client credentials accepted by ``/admin/oauth/access_token`` unless told otherwise.
DEFAULT_CLIENT_ID = "sim-client-id"
DEFAULT_CLIENT_SECRET = "sim-client-secret"  # noqa: S105  # ditto
#: API versions the simulator answers; any other version in the path is a 404.
SUPPORTED_VERSIONS: tuple[str, ...] = ("2025-10", "2026-01", "2026-04", "2026-07", "2026-10")
DEFAULT_SCOPES = (
    "read_orders,read_all_orders,read_products,write_products,read_inventory,write_inventory,read_locations,"
    "write_merchant_managed_fulfillment_orders"
)

#: Shopify refuses any single query that asks for more than this.
MAX_QUERY_COST = 1000
#: Array inputs and ``first``/``last`` are capped at 250.
MAX_PAGE_SIZE = 250
#: A mutation field costs this much on top of its selection.
MUTATION_COST = 10
#: Inventory quantities may not leave ±1,000,000,000.
MAX_QUANTITY = 1_000_000_000
#: The simulator's assumption (not a Shopify figure): a bulk query sits this long in
#: CREATED before it runs; then it reads ``bulk_objects_per_second`` (a constructor
#: argument, default 500 objects a second, also an assumption) until it completes.
BULK_STARTUP_SECONDS = 1.0
#: statuses of a bulk operation that still counts against the shop's limit
_BULK_ACTIVE = frozenset({"CREATED", "RUNNING"})
#: while set, a connection without ``first``/``last`` answers every record (a bulk
#: query's connections take no page size)
_UNPAGED: contextvars.ContextVar[bool] = contextvars.ContextVar("unpaged", default=False)

#: Quantity names Shopify reports for an inventory level.
QUANTITY_NAMES = frozenset(
    {
        "available",
        "committed",
        "damaged",
        "incoming",
        "on_hand",
        "quality_control",
        "reserved",
        "safety_stock",
    }
)
#: ``InventorySetQuantitiesInput.reason`` values Shopify accepts.
INVENTORY_REASONS = frozenset(
    {
        "correction",
        "cycle_count_available",
        "damaged",
        "movement_canceled",
        "movement_created",
        "movement_received",
        "movement_updated",
        "other",
        "promotion",
        "quality_control",
        "received",
        "reservation_created",
        "reservation_deleted",
        "reservation_updated",
        "restock",
        "safety_stock",
        "shrinkage",
    }
)

_GRAPHQL_PATH = re.compile(r"^/admin/api/(?P<version>[^/]+)/graphql\.json$")
_OAUTH_PATH = "/admin/oauth/access_token"
_UNAUTHORIZED = "[API] Invalid API key or access token (unrecognized login or wrong password)"
_CENT = Decimal("0.01")

T = TypeVar("T")
#: what resolvers receive; the context is the simulator (a string so graphql-core 3.2,
#: where the class is not generic, still imports this module)
Info: TypeAlias = "GraphQLResolveInfo[ShopifySimulator]"


# --- time ---------------------------------------------------------------------------------


class SimClock:
    """A manual clock: wall time and monotonic time advance only when told to.

    Pass ``clock.now`` and ``clock.monotonic`` to :class:`ShopifySimulator` (and to the
    code under test) so that bucket refills, token expiry and ``updatedAt`` move in step.
    """

    def __init__(self, start: datetime | None = None) -> None:
        self._wall = (start or datetime(2026, 11, 1, 10, 0, tzinfo=UTC)).astimezone(UTC)
        self._mono = 1000.0

    def now(self) -> datetime:
        """Current wall-clock time (UTC)."""
        return self._wall

    def monotonic(self) -> float:
        """Current monotonic time in seconds."""
        return self._mono

    def advance(self, seconds: float) -> None:
        """Move both clocks forward."""
        if seconds < 0:
            raise ValueError("a clock does not go backwards")
        self._wall += timedelta(seconds=seconds)
        self._mono += seconds

    async def sleep(self, seconds: float) -> None:
        """Advance instead of waiting (an injectable ``sleep`` for code under test)."""
        self.advance(max(seconds, 0.0))


def _utc_now() -> datetime:
    return datetime.now(UTC)


@functools.lru_cache(maxsize=65536)
def _iso(value: datetime | None) -> str | None:
    """Shopify's DateTime format: second precision, UTC, ``Z``.

    Cached: sorting a connection formats every record's timestamp on every page.
    """
    if value is None:
        return None
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_datetime(text: str) -> datetime | None:
    """A search filter's date: ISO date-time (``Z`` or offset) or a bare date (midnight UTC)."""
    try:
        parsed = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


# --- money ----------------------------------------------------------------------------------


def _cents(value: Decimal) -> Decimal:
    return value.quantize(_CENT, rounding=ROUND_HALF_UP)


def _amount(value: Decimal) -> str:
    """A decimal string with at least two decimals, e.g. ``"125.00"``."""
    cents = _cents(value)
    return str(cents if cents == value else value)


def _to_decimal(value: object, what: str) -> Decimal:
    """Money and Decimal inputs arrive as strings (or numbers); reject anything else."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float, Decimal)):
        raise GraphQLError(f"{what}: expected a decimal string, got {value!r}")
    try:
        result = Decimal(str(value))
    except InvalidOperation as exc:
        raise GraphQLError(f"{what}: {value!r} is not a decimal number") from exc
    if not result.is_finite():
        raise GraphQLError(f"{what}: {value!r} is not a finite number")
    return result


def _tax(amount: Decimal, rate: Decimal, included: bool) -> Decimal:
    """Tax on ``amount`` at ``rate``; with ``included`` the amount already contains it."""
    return _cents(amount * rate / (1 + rate) if included else amount * rate)


# --- ids ---------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=65536)
def _gid_number(gid: str) -> int:
    """The numeric tail of ``gid://shopify/Type/123`` (query strings ignored; cached like :func:`_iso`)."""
    tail = gid.rsplit("/", 1)[-1].split("?", 1)[0]
    return int(tail) if tail.isdigit() else 0


# --- state ---------------------------------------------------------------------------------------


@dataclass(eq=False)
class Location:
    """A place that stocks inventory."""

    TYPENAME: ClassVar[str] = "Location"
    id: str
    name: str
    created_at: datetime
    updated_at: datetime
    is_primary: bool = False
    is_active: bool = True
    fulfills_online_orders: bool = True
    address: dict[str, str | None] = field(default_factory=dict)


@dataclass(eq=False)
class InventoryItem:
    """The stock-keeping side of a variant: SKU, tracking, cost and weight."""

    TYPENAME: ClassVar[str] = "InventoryItem"
    id: str
    variant_id: str
    created_at: datetime
    updated_at: datetime
    sku: str | None = None
    tracked: bool = True
    unit_cost: Decimal | None = None
    #: (unit, value), e.g. ("KILOGRAMS", 1.5)
    weight: tuple[str, float] | None = None
    requires_shipping: bool = True
    harmonized_system_code: str | None = None
    country_code_of_origin: str | None = None


@dataclass(eq=False)
class InventoryLevel:
    """One item's quantities at one location. ``available`` = ``on_hand`` − ``committed``."""

    TYPENAME: ClassVar[str] = "InventoryLevel"
    item_id: str
    location_id: str
    created_at: datetime
    updated_at: datetime
    on_hand: int = 0
    committed: int = 0

    @property
    def id(self) -> str:
        """Shopify's level id names the location and carries the item as a query."""
        return (
            f"gid://shopify/InventoryLevel/{_gid_number(self.location_id)}"
            f"?inventory_item_id={_gid_number(self.item_id)}"
        )

    @property
    def available(self) -> int:
        """Sellable now: on hand minus what open orders have committed."""
        return self.on_hand - self.committed

    def quantity(self, name: str) -> int:
        """The named quantity (states the simulator does not model are 0)."""
        if name == "available":
            return self.available
        if name == "on_hand":
            return self.on_hand
        if name == "committed":
            return self.committed
        return 0


@dataclass(eq=False)
class ProductVariant:
    """A sellable variant; its SKU lives on the inventory item, as in Shopify."""

    TYPENAME: ClassVar[str] = "ProductVariant"
    id: str
    product_id: str
    inventory_item_id: str
    title: str
    price: Decimal
    position: int
    created_at: datetime
    updated_at: datetime
    barcode: str | None = None
    compare_at_price: Decimal | None = None
    taxable: bool = True


@dataclass(eq=False)
class Product:
    """A product and the ids of its variants, in position order."""

    TYPENAME: ClassVar[str] = "Product"
    id: str
    title: str
    handle: str
    created_at: datetime
    updated_at: datetime
    description_html: str = ""
    product_type: str = ""
    vendor: str = ""
    status: str = "ACTIVE"
    tags: list[str] = field(default_factory=list)
    variant_ids: list[str] = field(default_factory=list)


@dataclass(eq=False)
class Customer:
    """A buyer, found again by e-mail."""

    TYPENAME: ClassVar[str] = "Customer"
    id: str
    created_at: datetime
    updated_at: datetime
    email: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    phone: str | None = None


@dataclass(eq=False)
class MailingAddress:
    """A shipping or billing address (field names as Shopify's, in snake case)."""

    TYPENAME: ClassVar[str] = "MailingAddress"
    id: str
    name: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    company: str | None = None
    address1: str | None = None
    address2: str | None = None
    city: str | None = None
    province: str | None = None
    province_code: str | None = None
    zip: str | None = None
    country: str | None = None
    country_code_v2: str | None = None
    phone: str | None = None


@dataclass(eq=False)
class LineItem:
    """One order line. ``current_quantity`` follows edits and cancellations."""

    TYPENAME: ClassVar[str] = "LineItem"
    id: str
    order_id: str
    title: str
    quantity: int
    current_quantity: int
    original_unit_price: Decimal
    discounted_unit_price: Decimal
    tax_rate: Decimal
    sku: str | None = None
    variant_id: str | None = None
    product_id: str | None = None
    variant_title: str | None = None
    vendor: str | None = None
    taxable: bool = True
    requires_shipping: bool = True
    fulfilled_quantity: int = 0
    #: unit price after order-level discounts too (defaults to ``discounted_unit_price``)
    final_unit_price: Decimal | None = None
    #: every discount allocated to the line (line- and order-level) over all its units, as
    #: Shopify allocates them in cents; when set it decides the prices, and the unit price
    #: after discounts is rounded to the cent as Shopify shows it ("approximate")
    discount_total: Decimal | None = None

    @property
    def net_unit_price(self) -> Decimal:
        """What one unit really sells for, after line- and order-level discounts."""
        if self.discount_total is not None:
            return _cents(self.net_total(self.quantity) / self.quantity)
        return self.discounted_unit_price if self.final_unit_price is None else self.final_unit_price

    def net_total(self, units: int) -> Decimal:
        """What ``units`` of the line sell for after every discount (exact, not unit × units)."""
        if self.discount_total is not None:
            whole = self.original_unit_price * self.quantity - self.discount_total
            return whole if units == self.quantity else whole * units / self.quantity
        return self.net_unit_price * units

    @property
    def allocated_discount(self) -> Decimal:
        """The line's discount allocations summed, over the quantity ordered."""
        return self.original_unit_price * self.quantity - self.net_total(self.quantity)

    @property
    def name(self) -> str:
        """Shopify's line name: product title plus variant title unless it is the default."""
        if self.variant_title and self.variant_title != "Default Title":
            return f"{self.title} - {self.variant_title}"
        return self.title


@dataclass(eq=False)
class ShippingLine:
    """A shipping charge; ``price`` is as entered (gross when the order includes taxes)."""

    id: str
    order_id: str
    title: str
    price: Decimal
    tax_rate: Decimal
    code: str | None = None
    source: str | None = "shopify"
    carrier_identifier: str | None = None
    is_removed: bool = False
    #: allocated by a shipping discount (free or cheaper shipping); ``price`` is before it
    discount: Decimal = Decimal(0)

    @property
    def net_price(self) -> Decimal:
        """The charge after its discount."""
        return self.price - self.discount


#: fulfillment order states in which units can be fulfilled
FULFILLABLE_STATUSES = frozenset({"OPEN", "IN_PROGRESS"})
#: fulfillment order states that are over: nothing is fulfilled, moved or edited on them
FINISHED_STATUSES = frozenset({"CLOSED", "CANCELLED", "INCOMPLETE"})


@dataclass(eq=False)
class SimFulfillmentOrderLine:
    """How many units of one order line a fulfillment order holds, and how many are left."""

    TYPENAME: ClassVar[str] = "FulfillmentOrderLineItem"
    id: str
    fulfillment_order_id: str
    line_item: LineItem
    total_quantity: int
    remaining_quantity: int


@dataclass(eq=False)
class SimFulfillmentOrder:
    """The work of shipping (part of) an order from one location.

    An order gets one when it is placed, at its location, holding every line that requires
    shipping. Moving it after a partial fulfilment closes it and opens a new one at the new
    location for what is left, as Shopify does; otherwise it stays the only one.
    """

    TYPENAME: ClassVar[str] = "FulfillmentOrder"
    id: str
    order_id: str
    location_id: str
    created_at: datetime
    updated_at: datetime
    status: str = "OPEN"
    line_items: list[SimFulfillmentOrderLine] = field(default_factory=list)

    @property
    def fulfillable(self) -> bool:
        """Whether ``fulfillmentCreate`` may take units from it now."""
        return self.status in FULFILLABLE_STATUSES

    @property
    def finished(self) -> bool:
        """Closed, cancelled or incomplete: it holds no further work."""
        return self.status in FINISHED_STATUSES

    @property
    def started(self) -> bool:
        """Whether any unit of it has been fulfilled."""
        return any(line.remaining_quantity < line.total_quantity for line in self.line_items)


@dataclass(frozen=True, eq=False)
class SimFulfillmentLine:
    """Units of one order line shipped by one fulfilment (Shopify's ``FulfillmentLineItem``)."""

    TYPENAME: ClassVar[str] = "FulfillmentLineItem"
    id: str
    line_item: LineItem
    fulfillment_order_line_id: str
    quantity: int


@dataclass(eq=False)
class SimFulfillment:
    """A shipment: units taken from fulfillment orders, with tracking.

    ``notify_customer`` is the flag ``fulfillmentCreate`` was given and ``tracking_updates``
    the ``notifyCustomer`` of each ``fulfillmentTrackingInfoUpdate`` since, so tests can
    tell whether (and how often) the customer would have been e-mailed.
    """

    TYPENAME: ClassVar[str] = "Fulfillment"
    id: str
    order_id: str
    location_id: str
    name: str
    created_at: datetime
    updated_at: datetime
    lines: tuple[SimFulfillmentLine, ...]
    status: str = "SUCCESS"
    tracking_company: str | None = None
    tracking_number: str | None = None
    tracking_url: str | None = None
    notify_customer: bool = False
    message: str | None = None
    tracking_updates: list[bool] = field(default_factory=list)

    @property
    def quantities(self) -> dict[str, int]:
        """Units shipped by SKU (the line item id for a line without one)."""
        shipped: dict[str, int] = {}
        for line in self.lines:
            key = line.line_item.sku or line.line_item.id
            shipped[key] = shipped.get(key, 0) + line.quantity
        return shipped

    @property
    def total_quantity(self) -> int:
        """Every unit the fulfilment shipped."""
        return sum(line.quantity for line in self.lines)

    @property
    def tracking(self) -> tuple[str | None, str | None, str | None]:
        """(company, number, url)."""
        return (self.tracking_company, self.tracking_number, self.tracking_url)


@dataclass(eq=False)
class Order:
    """An order with its lines, shipping, customer and addresses."""

    TYPENAME: ClassVar[str] = "Order"
    id: str
    number: int
    created_at: datetime
    updated_at: datetime
    processed_at: datetime
    currency_code: str
    taxes_included: bool
    location_id: str
    line_items: list[LineItem] = field(default_factory=list)
    shipping_lines: list[ShippingLine] = field(default_factory=list)
    email: str | None = None
    phone: str | None = None
    note: str | None = None
    tags: list[str] = field(default_factory=list)
    customer_id: str | None = None
    shipping_address: MailingAddress | None = None
    billing_address: MailingAddress | None = None
    cancelled_at: datetime | None = None
    cancel_reason: str | None = None
    closed_at: datetime | None = None
    test: bool = False
    display_financial_status: str | None = "PAID"
    display_fulfillment_status: str = "UNFULFILLED"
    source_name: str | None = "web"
    fulfillment_orders: list[SimFulfillmentOrder] = field(default_factory=list)
    #: oldest first
    fulfillments: list[SimFulfillment] = field(default_factory=list)

    @property
    def name(self) -> str:
        """The order's display name, e.g. ``#1001``."""
        return f"#{self.number}"


@dataclass(eq=False)
class InventoryAdjustmentGroup:
    """The result of one applied ``inventorySetQuantities``."""

    TYPENAME: ClassVar[str] = "InventoryAdjustmentGroup"
    id: str
    created_at: datetime
    reason: str
    reference_document_uri: str | None
    #: dicts shaped like ``InventoryChange`` (item and location are state objects)
    changes: list[dict[str, Any]]


@dataclass(frozen=True)
class InventoryApplication:
    """A record of one ``inventorySetQuantities`` that changed stock (replays are not recorded)."""

    key: str
    at: datetime
    name: str
    reason: str
    reference_document_uri: str | None
    #: (inventory item id, location id, quantity set, delta)
    quantities: tuple[tuple[str, str, int, int], ...]


@dataclass(frozen=True)
class AddedProduct:
    """Ids of a product made by :meth:`ShopifySimulator.add_product`, variants in order."""

    product_id: str
    variant_ids: tuple[str, ...]
    inventory_item_ids: tuple[str, ...]


@dataclass
class SimBulkOperation:
    """A bulk query operation: its result is computed when it is created (Shopify's data
    is a snapshot from some moment during the run) and shown as time passes."""

    id: str
    query: str
    created_at: datetime
    #: the simulator's monotonic time at creation; the status is derived from it
    started: float
    #: seconds from creation to COMPLETED
    duration: float
    #: the JSONL result, one line per object
    lines: list[bytes]
    root_objects: int
    #: where the file is served (``{base}/_bulk/{number}.jsonl``)
    url: str
    #: a final status forced by a fault hook (FAILED, EXPIRED, CANCELED)
    forced: str | None = None
    error_code: str | None = None


@dataclass(frozen=True)
class RequestRecord:
    """One GraphQL request as the simulator saw it."""

    operation: str
    status: int
    outcome: str
    requested_cost: int


class VariantSpec(TypedDict, total=False):
    """A variant for :meth:`ShopifySimulator.add_product`; every key is optional."""

    sku: str | None
    title: str
    price: str | Decimal
    barcode: str | None
    compare_at_price: str | Decimal | None
    cost: str | Decimal | None
    #: (unit, value), e.g. ("KILOGRAMS", 0.5)
    weight: tuple[str, float] | None
    tracked: bool
    taxable: bool
    #: on-hand stock: a number for the primary location, or location id → number
    stock: int | Mapping[str, int]


class OrderLineSpec(TypedDict):
    """An order line for :meth:`ShopifySimulator.create_order`.

    ``sku`` names a variant; a SKU the shop does not know makes a custom line, which
    then needs ``price`` and ``title``.
    """

    sku: str
    quantity: int
    #: unit price before discount; defaults to the variant's price
    price: NotRequired[str | Decimal]
    #: unit price after line-level discounts; defaults to ``price``
    discounted_price: NotRequired[str | Decimal]
    #: unit price after order-level discounts as well; defaults to ``discounted_price``
    final_price: NotRequired[str | Decimal]
    title: NotRequired[str]
    #: overrides the order's tax rate for this line
    tax_rate: NotRequired[str | Decimal]
    #: every discount allocated to the line over all its units (e.g. its share of an
    #: order-level discount), in money; overrides ``final_price``
    discount: NotRequired[str | Decimal]


class ShippingLineSpec(TypedDict):
    """A shipping line for :meth:`ShopifySimulator.create_order`."""

    price: str | Decimal
    title: NotRequired[str]
    #: defaults to the order's tax rate; 0 for untaxed shipping
    tax_rate: NotRequired[str | Decimal]
    #: a shipping discount allocated to this line
    discount: NotRequired[str | Decimal]


# --- cost ------------------------------------------------------------------------------------


@dataclass
class CostBucket:
    """Shopify's leaky bucket: ``maximum`` points, refilled at ``restore_rate`` per second."""

    maximum: float = 2000.0
    restore_rate: float = 100.0
    available: float | None = None
    _updated: float | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.available is None:
            self.available = self.maximum

    def refill(self, now: float) -> float:
        """Bring ``available`` up to ``now`` and return it."""
        current = self.maximum if self.available is None else self.available
        if self._updated is not None and now > self._updated:
            current = min(self.maximum, current + (now - self._updated) * self.restore_rate)
        self._updated = now
        self.available = current
        return current

    def spend(self, points: float) -> None:
        """Take ``points`` out (refill first)."""
        self.available = (self.available or 0.0) - points

    def drain(self) -> None:
        """Empty the bucket, as a burst of other traffic would."""
        self.available = 0.0

    def status(self) -> dict[str, float | int]:
        """``throttleStatus`` as Shopify reports it."""
        return {
            "maximumAvailable": float(self.maximum),
            "currentlyAvailable": int(self.available or 0.0),
            "restoreRate": float(self.restore_rate),
        }


def _fields(
    schema: GraphQLSchema,
    selection_set: SelectionSetNode | None,
    parent: GraphQLNamedType,
    fragments: Mapping[str, FragmentDefinitionNode],
) -> Iterator[tuple[FieldNode, GraphQLNamedType]]:
    """Fields of a selection with fragments flattened, each with the type it is selected on."""
    if selection_set is None:
        return
    for selection in selection_set.selections:
        if isinstance(selection, FieldNode):
            yield selection, parent
        elif isinstance(selection, InlineFragmentNode):
            condition = selection.type_condition
            target = schema.get_type(condition.name.value) if condition else parent
            yield from _fields(schema, selection.selection_set, target or parent, fragments)
        elif isinstance(selection, FragmentSpreadNode):
            fragment = fragments.get(selection.name.value)
            if fragment is not None:
                target = schema.get_type(fragment.type_condition.name.value)
                yield from _fields(schema, fragment.selection_set, target or parent, fragments)


def _argument(node: FieldNode, name: str, variables: Mapping[str, Any]) -> object:
    for argument in node.arguments or ():
        if argument.name.value == name:
            return _literal(argument.value, variables)
    return None


def _literal(value: ValueNode, variables: Mapping[str, Any]) -> object:
    if isinstance(value, VariableNode):
        return variables.get(value.name.value)
    if isinstance(value, IntValueNode):
        return int(value.value)
    if isinstance(value, ListValueNode):
        return [_literal(item, variables) for item in value.values]
    return None


def estimate_cost(
    schema: GraphQLSchema,
    document: DocumentNode,
    operation: OperationDefinitionNode,
    variables: Mapping[str, Any] | None = None,
) -> int:
    """Requested cost of ``operation``, the way Shopify prices it before running it.

    Scalars and enums cost 0 and objects 1; a connection costs 2 plus ``first`` (or
    ``last``) times the cost of one node, so nested connections multiply; a list field
    with ``first`` or ``ids`` is multiplied by it; a mutation field costs 10 plus its
    selection. The estimate only grows as a document asks for more.
    """
    variables = variables or {}
    fragments = {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}
    mutation = operation.operation == OperationType.MUTATION
    root = schema.mutation_type if mutation else schema.query_type
    if root is None:
        return 0

    def count(value: object) -> int | None:
        if isinstance(value, bool):
            return None
        if isinstance(value, int):
            return max(value, 0)
        if isinstance(value, list):
            return len(value)
        return None

    def selection(selection_set: SelectionSetNode | None, parent: GraphQLNamedType) -> int:
        return sum(one(node, owner) for node, owner in _fields(schema, selection_set, parent, fragments))

    def one(node: FieldNode, parent: GraphQLNamedType, *, top: bool = False) -> int:
        if not isinstance(parent, (GraphQLObjectType, GraphQLInterfaceType)):
            return 0
        definition = parent.fields.get(node.name.value)
        if definition is None:
            return 0
        named = get_named_type(definition.type)
        if top and mutation:
            return MUTATION_COST + selection(node.selection_set, named)
        if is_leaf_type(named):
            return 0
        if named.name.endswith("Connection"):
            size = count(_argument(node, "first", variables))
            if size is None:
                size = count(_argument(node, "last", variables))
            per_node = 0
            for child, owner in _fields(schema, node.selection_set, named, fragments):
                child_type = _field_type(owner, child.name.value)
                if child.name.value == "nodes" and child_type is not None:
                    per_node += 1 + selection(child.selection_set, child_type)
                elif child.name.value == "edges" and child_type is not None:
                    for grandchild, edge in _fields(schema, child.selection_set, child_type, fragments):
                        node_type = _field_type(edge, grandchild.name.value)
                        if grandchild.name.value == "node" and node_type is not None:
                            per_node += 1 + selection(grandchild.selection_set, node_type)
            return 2 + (1 if size is None else size) * per_node
        multiplier = 1
        if _is_list(definition.type):
            length = count(_argument(node, "first", variables))
            if length is None:
                length = count(_argument(node, "ids", variables))
            multiplier = 1 if length is None else length
        return multiplier * (1 + selection(node.selection_set, named))

    return sum(
        one(node, owner, top=True)
        for node, owner in _fields(schema, operation.selection_set, root, fragments)
    )


def actual_cost(data: object) -> int:
    """What a query's answer costs: 1 per object returned, 2 per connection (``pageInfo``)."""
    if isinstance(data, list):
        return sum(actual_cost(item) for item in data)
    if not isinstance(data, dict):
        return 0
    own = 2 if "pageInfo" in data else 1
    return own + sum(actual_cost(value) for key, value in data.items() if key != "pageInfo")


def _bulk_rows(connection: object, parent: str | None) -> Iterator[dict[str, Any]]:
    """A bulk query's JSONL rows: each node of ``connection`` without its nested
    connections, then those connections' nodes carrying ``__parentId``."""
    if not isinstance(connection, Mapping):
        return
    edges = connection.get("edges")
    nodes = [e["node"] for e in edges] if isinstance(edges, list) else connection.get("nodes") or []
    for node in nodes:
        nested = {k: v for k, v in node.items() if isinstance(v, Mapping) and ("edges" in v or "nodes" in v)}
        row = {k: v for k, v in node.items() if k not in nested}
        if parent is not None:
            row["__parentId"] = parent
        yield row
        for child in nested.values():
            yield from _bulk_rows(child, node.get("id"))


def _field_type(parent: GraphQLNamedType, name: str) -> GraphQLNamedType | None:
    if isinstance(parent, (GraphQLObjectType, GraphQLInterfaceType)):
        definition = parent.fields.get(name)
        if definition is not None:
            return cast(GraphQLNamedType, get_named_type(definition.type))
    return None


def _is_list(type_: object) -> bool:
    if isinstance(type_, GraphQLNonNull):
        type_ = type_.of_type
    return isinstance(type_, GraphQLList)


# --- search ------------------------------------------------------------------------------------

_TERM = re.compile(r"""(?P<neg>-)?(?P<field>\w+):(?P<op>>=|<=|>|<)?(?P<value>'[^']*'|"[^"]*"|[^\s)]+)""")


@dataclass(frozen=True)
class SearchTerm:
    """One ``field:value`` term of a search query; ``op`` is ``=`` or a comparison."""

    field: str
    op: str
    value: str
    negate: bool = False


def parse_search(query: str | None) -> list[SearchTerm]:
    """The ``field:value`` terms of a Shopify search string.

    Terms are AND-ed; free text, ``AND`` and parentheses are ignored (``OR`` is split
    off by :meth:`ShopifySimulator.search`), which is enough for the filters a sync
    client sends.
    """
    terms: list[SearchTerm] = []
    for match in _TERM.finditer(query or ""):
        value = match["value"]
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        terms.append(SearchTerm(match["field"].lower(), match["op"] or "=", value, bool(match["neg"])))
    return terms


def _compare(actual: datetime | None, term: SearchTerm) -> bool | None:
    wanted = _parse_datetime(term.value)
    if wanted is None:
        return None  # Shopify ignores a filter it cannot read
    if actual is None:
        return False
    if term.op == ">":
        return actual > wanted
    if term.op == ">=":
        return actual >= wanted
    if term.op == "<":
        return actual < wanted
    if term.op == "<=":
        return actual <= wanted
    return actual == wanted


def _text_matches(actual: str | None, pattern: str) -> bool:
    """Case-insensitive equality; a trailing ``*`` matches a prefix (like Shopify's index)."""
    if actual is None:
        return False
    if pattern.endswith("*"):
        return actual.lower().startswith(pattern[:-1].lower())
    return actual.lower() == pattern.lower()


#: ``fulfillment_status:`` search values and the ``displayFulfillmentStatus`` each matches
_FULFILLMENT_FILTER: dict[str, set[str]] = {
    "shipped": {"FULFILLED"},
    "fulfilled": {"FULFILLED"},
    "partial": {"PARTIALLY_FULFILLED"},
    "unshipped": {"UNFULFILLED"},
    "unfulfilled": {"UNFULFILLED", "PARTIALLY_FULFILLED"},
    "on_hold": {"ON_HOLD"},
    "scheduled": {"SCHEDULED"},
    "request_declined": {"REQUEST_DECLINED"},
}


def _flag(value: str) -> bool | None:
    lowered = value.lower()
    return True if lowered == "true" else False if lowered == "false" else None


# --- pagination ---------------------------------------------------------------------------------

SortKey = tuple[str | int | float, int]


def _encode_cursor(key: SortKey) -> str:
    raw = json.dumps({"last_id": key[1], "last_value": key[0]}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> SortKey:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        data = json.loads(raw)
        value, last_id = data["last_value"], data["last_id"]
    except (binascii.Error, ValueError, KeyError, TypeError) as exc:
        raise GraphQLError(f"Invalid cursor for current pagination sort: {cursor!r}") from exc
    if not isinstance(last_id, int) or not isinstance(value, (str, int, float)):
        raise GraphQLError(f"Invalid cursor for current pagination sort: {cursor!r}")
    return (value, last_id)


def _paginate(
    items: Iterable[T],
    key: Callable[[T], SortKey],
    args: Mapping[str, Any],
) -> dict[str, Any]:
    """A connection over ``items``: sorted by ``key``, cut by ``first``/``after``/``last``/``before``.

    Cursors carry the sort value and id of their record, not a position, so paging
    stays correct while records are added or move (as Shopify's do).
    """
    first, last = args.get("first"), args.get("last")
    if first is None and last is None and not _UNPAGED.get():
        raise GraphQLError("you must provide one of first or last")
    for name, size in (("first", first), ("last", last)):
        if size is not None and not 0 <= size <= MAX_PAGE_SIZE:
            raise GraphQLError(f"{name} must be between 0 and {MAX_PAGE_SIZE}, got {size}")
    reverse = bool(args.get("reverse"))
    keyed = sorted(((key(item), item) for item in items), key=lambda pair: pair[0], reverse=reverse)

    def beyond(cursor: SortKey, forward: bool) -> Callable[[tuple[SortKey, T]], bool]:
        def test(pair: tuple[SortKey, T]) -> bool:
            try:
                after = pair[0] > cursor
            except TypeError as exc:
                raise GraphQLError("Invalid cursor for current pagination sort") from exc
            if pair[0] == cursor:
                return False
            return after != reverse if forward else after == reverse

        return test

    # decode each cursor once, not once per record: a large shop pages through thousands
    if args.get("after"):
        past = beyond(_decode_cursor(args["after"]), forward=True)
        keyed = [pair for pair in keyed if past(pair)]
    if args.get("before"):
        ahead = beyond(_decode_cursor(args["before"]), forward=False)
        keyed = [pair for pair in keyed if ahead(pair)]
    has_next = bool(args.get("before"))
    has_previous = bool(args.get("after"))
    if first is not None:
        has_next = len(keyed) > first
        keyed = keyed[:first]
    if last is not None:
        has_previous = len(keyed) > last
        keyed = keyed[len(keyed) - last :] if last else []
    edges = [{"cursor": _encode_cursor(k), "node": item} for k, item in keyed]
    return {
        "edges": edges,
        "nodes": [edge["node"] for edge in edges],
        "pageInfo": {
            "hasNextPage": has_next,
            "hasPreviousPage": has_previous,
            "startCursor": edges[0]["cursor"] if edges else None,
            "endCursor": edges[-1]["cursor"] if edges else None,
        },
    }


def _by_id(record: Any) -> SortKey:
    number = _gid_number(record.id)
    return (number, number)


# --- resolvers ------------------------------------------------------------------------------------
# graphql-core passes arguments by their GraphQL names, so some parameters are camelCase
# (``productId``) or shadow a builtin (``id``, ``input``).

_CAMEL = re.compile(r"(?<!^)(?=[A-Z])")


@functools.cache
def _snake(name: str) -> str:
    return _CAMEL.sub("_", name).lower()


def _output(value: Any) -> Any:
    """Scalars in Shopify's wire format: DateTime as ISO ``Z``, money as decimal strings."""
    if isinstance(value, datetime):
        return _iso(value)
    if isinstance(value, Decimal):
        return _amount(value)
    return value


def _default_resolver(source: Any, info: Info, **_args: Any) -> Any:
    """Dict keys by GraphQL name; object attributes by the snake-case of the GraphQL name."""
    if isinstance(source, Mapping):
        return _output(source.get(info.field_name))
    return _output(getattr(source, _snake(info.field_name), None))


def _sim(info: Info) -> ShopifySimulator:
    return info.context


def _legacy_id(obj: Any, _info: Info) -> str:
    return str(_gid_number(obj.id))


def _resolve_node_type(value: Any, _info: Info, _type: Any) -> str | None:
    return cast(str | None, getattr(type(value), "TYPENAME", None))


Resolver = Callable[..., Any]


def _query_resolvers() -> dict[str, Resolver]:
    def shop(_root: None, info: Info) -> dict[str, Any]:
        return _sim(info).shop_info()

    def location(_root: None, info: Info, id: str | None = None) -> Location | None:
        sim = _sim(info)
        return sim.locations[sim.primary_location_id] if id is None else sim.locations.get(id)

    def locations(_root: None, info: Info, **args: Any) -> dict[str, Any]:
        sim = _sim(info)
        rows = [loc for loc in sim.locations.values() if loc.is_active or args.get("includeInactive")]
        if args.get("sortKey") == "ID":
            return _paginate(rows, _by_id, args)
        return _paginate(rows, lambda loc: (loc.name.lower(), _gid_number(loc.id)), args)

    def lookup(kind: type[T]) -> Resolver:
        def resolve(_root: None, info: Info, id: str) -> T | None:
            found = _sim(info).node(id)
            return found if isinstance(found, kind) else None

        return resolve

    def node(_root: None, info: Info, id: str) -> object | None:
        return _sim(info).node(id)

    def bulk_operation(_root: None, info: Info, id: str) -> dict[str, Any] | None:
        sim = _sim(info)
        found = sim.bulk_operations.get(id)
        return None if found is None else sim.bulk_view(found)

    def nodes(_root: None, info: Info, ids: list[str]) -> list[object | None]:
        if len(ids) > MAX_PAGE_SIZE:
            raise GraphQLError(
                f"The input array size of {len(ids)} is greater than the maximum allowed of {MAX_PAGE_SIZE}.",
                extensions={"code": "MAX_INPUT_SIZE_EXCEEDED"},
            )
        sim = _sim(info)
        found = [sim.node(one) for one in ids]
        sim.serve(info, [f for f in found if isinstance(f, (Order, Product))])
        return found

    def orders(_root: None, info: Info, **args: Any) -> dict[str, Any]:
        sim = _sim(info)
        rows = sim.search(sim.orders.values(), args.get("query"), sim.order_matches)
        sort = args.get("sortKey") or "PROCESSED_AT"
        keys: dict[str, Callable[[Order], SortKey]] = {
            "UPDATED_AT": lambda o: (_iso(o.updated_at) or "", o.number),
            "CREATED_AT": lambda o: (_iso(o.created_at) or "", o.number),
            "PROCESSED_AT": lambda o: (_iso(o.processed_at) or "", o.number),
            "ORDER_NUMBER": lambda o: (o.number, o.number),
        }
        page = _paginate(rows, keys.get(sort, lambda o: (o.number, o.number)), args)
        sim.serve(info, page["nodes"])
        return page

    def products(_root: None, info: Info, **args: Any) -> dict[str, Any]:
        sim = _sim(info)
        rows = sim.search(sim.products.values(), args.get("query"), sim.product_matches)
        sort = args.get("sortKey") or "ID"
        keys: dict[str, Callable[[Product], SortKey]] = {
            "UPDATED_AT": lambda p: (_iso(p.updated_at) or "", _gid_number(p.id)),
            "CREATED_AT": lambda p: (_iso(p.created_at) or "", _gid_number(p.id)),
            "TITLE": lambda p: (p.title.lower(), _gid_number(p.id)),
            "PRODUCT_TYPE": lambda p: (p.product_type.lower(), _gid_number(p.id)),
            "VENDOR": lambda p: (p.vendor.lower(), _gid_number(p.id)),
        }
        page = _paginate(rows, keys.get(sort, _by_id), args)
        sim.serve(info, page["nodes"])
        return page

    def product_variants(_root: None, info: Info, **args: Any) -> dict[str, Any]:
        sim = _sim(info)
        rows = sim.search(sim.variants.values(), args.get("query"), sim.variant_matches)
        return _paginate(rows, sim.variant_sort_key(args.get("sortKey") or "ID"), args)

    def variants_count(_root: None, info: Info, **args: Any) -> dict[str, Any]:
        sim = _sim(info)
        rows = sim.search(sim.variants.values(), args.get("query"), sim.variant_matches)
        limit = args.get("limit")
        if isinstance(limit, int) and len(rows) > limit:
            return {"count": limit, "precision": "AT_LEAST"}
        return {"count": len(rows), "precision": "EXACT"}

    def app_installation(_root: None, info: Info) -> dict[str, Any]:
        handles = [h.strip() for h in _sim(info).scopes.split(",") if h.strip()]
        return {
            "id": "gid://shopify/AppInstallation/1",
            "accessScopes": [{"handle": h, "description": h} for h in handles],
        }

    def api_versions(_root: None, info: Info) -> list[dict[str, Any]]:
        return [{"handle": v, "displayName": v, "supported": True} for v in sorted(_sim(info).api_versions)]

    return {
        "bulkOperation": bulk_operation,
        "currentAppInstallation": app_installation,
        "publicApiVersions": api_versions,
        "shop": shop,
        "location": location,
        "locations": locations,
        "node": node,
        "nodes": nodes,
        "order": lookup(Order),
        "orders": orders,
        "product": lookup(Product),
        "products": products,
        "productVariant": lookup(ProductVariant),
        "productVariants": product_variants,
        "productVariantsCount": variants_count,
        "inventoryItem": lookup(InventoryItem),
        "fulfillment": lookup(SimFulfillment),
        "fulfillmentOrder": lookup(SimFulfillmentOrder),
    }


def _mutation_resolvers() -> dict[str, Resolver]:
    def inventory_set_quantities(_root: None, info: Info, input: dict[str, Any]) -> dict[str, Any]:
        directive = info.schema.get_directive("idempotent")
        values = (
            get_directive_values(directive, info.field_nodes[0], info.variable_values) if directive else None
        )
        if not values or not values.get("key"):
            raise GraphQLError(
                "The @idempotent directive is required for this mutation.",
                info.field_nodes,
                extensions={"code": "BAD_REQUEST"},
            )
        return _sim(info).set_quantities(input, str(values["key"]))

    def product_create(_root: None, info: Info, product: dict[str, Any] | None = None) -> dict[str, Any]:
        return _sim(info).product_create(product or {})

    def bulk_run_query(_root: None, info: Info, query: str, groupObjects: bool) -> dict[str, Any]:
        return _sim(info).run_bulk_query(query, group_objects=groupObjects)

    def product_update(
        _root: None,
        info: Info,
        product: dict[str, Any] | None = None,
        identifier: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        return _sim(info).product_update(product or {}, identifier or {})

    def variants_bulk_update(
        _root: None,
        info: Info,
        productId: str,
        variants: list[dict[str, Any]],
        allowPartialUpdates: bool = False,
    ) -> dict[str, Any]:
        return _sim(info).variants_bulk_update(productId, variants, partial=allowPartialUpdates)

    def fulfillment_create(
        _root: None, info: Info, fulfillment: dict[str, Any], message: str | None = None
    ) -> dict[str, Any]:
        return _sim(info).fulfillment_create(fulfillment, message=message)

    def tracking_info_update(
        _root: None,
        info: Info,
        fulfillmentId: str,
        trackingInfoInput: dict[str, Any],
        notifyCustomer: bool | None = None,
    ) -> dict[str, Any]:
        return _sim(info).fulfillment_tracking_info_update(
            fulfillmentId, trackingInfoInput, notify=bool(notifyCustomer)
        )

    return {
        "bulkOperationRunQuery": bulk_run_query,
        "fulfillmentCreate": fulfillment_create,
        "fulfillmentTrackingInfoUpdate": tracking_info_update,
        "inventorySetQuantities": inventory_set_quantities,
        "productCreate": product_create,
        "productUpdate": product_update,
        "productVariantsBulkUpdate": variants_bulk_update,
    }


def _money_bag(amount: Decimal, currency: str) -> dict[str, Any]:
    money = {"amount": _amount(amount), "currencyCode": currency}
    return {"shopMoney": money, "presentmentMoney": money}


def _tax_line(rate: Decimal, tax: Decimal, currency: str) -> dict[str, Any]:
    return {
        "title": "VAT",
        "rate": float(rate),
        "ratePercentage": float(rate * 100),
        "price": _amount(tax),
        "priceSet": _money_bag(tax, currency),
        "source": "Shopify",
        "channelLiable": False,
    }


def _tax_lines(amount: Decimal, rate: Decimal, included: bool, currency: str) -> list[dict[str, Any]]:
    """The tax lines of one charge (none when untaxed)."""
    if rate == 0:
        return []
    return [_tax_line(rate, _tax(amount, rate, included), currency)]


def _type_resolvers() -> dict[str, dict[str, Resolver]]:
    """Fields that are computed or follow a reference; the rest use :func:`_default_resolver`."""

    def order_currency(order: Order) -> str:
        return order.currency_code

    def line_total(line: LineItem, *, current: bool) -> Decimal:
        return line.net_total(line.current_quantity if current else line.quantity)

    def order_sums(order: Order, *, current: bool) -> dict[str, Decimal]:
        subtotal = sum((line_total(li, current=current) for li in order.line_items), Decimal(0))
        discounts = sum(
            (
                li.original_unit_price * (li.current_quantity if current else li.quantity)
                - line_total(li, current=current)
                for li in order.line_items
            ),
            Decimal(0),
        )
        shipping = sum((s.net_price for s in order.shipping_lines if not s.is_removed), Decimal(0))
        tax = sum(
            (
                _tax(line_total(li, current=current), li.tax_rate, order.taxes_included)
                for li in order.line_items
                if li.taxable
            ),
            Decimal(0),
        ) + sum(
            (
                _tax(s.net_price, s.tax_rate, order.taxes_included)
                for s in order.shipping_lines
                if not s.is_removed
            ),
            Decimal(0),
        )
        total = subtotal + shipping + (Decimal(0) if order.taxes_included else tax)
        return {
            "subtotal": subtotal,
            "discounts": discounts,
            "shipping": shipping,
            "tax": tax,
            "total": total,
        }

    def bag(key: str, *, current: bool) -> Resolver:
        def resolve(order: Order, _info: Info) -> dict[str, Any]:
            return _money_bag(order_sums(order, current=current)[key], order.currency_code)

        return resolve

    def order_tax_lines(order: Order, _info: Info) -> list[dict[str, Any]]:
        # one line per rate, summed over the current lines and shipping
        by_rate: dict[Decimal, Decimal] = collections.defaultdict(Decimal)
        for li in order.line_items:
            if li.taxable:
                by_rate[li.tax_rate] += _tax(line_total(li, current=True), li.tax_rate, order.taxes_included)
        for s in order.shipping_lines:
            if not s.is_removed:
                by_rate[s.tax_rate] += _tax(s.net_price, s.tax_rate, order.taxes_included)
        return [_tax_line(rate, tax, order.currency_code) for rate, tax in sorted(by_rate.items()) if rate]

    def line_order(line: LineItem, info: Info) -> Order:
        return _sim(info).orders[line.order_id]

    def line_unit(attr: str) -> Resolver:
        def resolve(line: LineItem, info: Info) -> dict[str, Any]:
            return _money_bag(getattr(line, attr), order_currency(line_order(line, info)))

        return resolve

    def line_original_total(line: LineItem, info: Info) -> dict[str, Any]:
        return _money_bag(line.original_unit_price * line.quantity, line_order(line, info).currency_code)

    def line_discounted_total(line: LineItem, info: Info, **_args: Any) -> dict[str, Any]:
        return _money_bag(line_total(line, current=True), line_order(line, info).currency_code)

    def line_total_discount(line: LineItem, info: Info) -> dict[str, Any]:
        return _money_bag(line.allocated_discount, line_order(line, info).currency_code)

    def line_discount_allocations(line: LineItem, info: Info) -> list[dict[str, Any]]:
        # one allocation for all of the line's discounts (Shopify lists one per application)
        amount = line.allocated_discount
        currency = line_order(line, info).currency_code
        return [{"allocatedAmountSet": _money_bag(amount, currency)}] if amount else []

    def line_tax_lines(line: LineItem, info: Info, **_args: Any) -> list[dict[str, Any]]:
        order = line_order(line, info)
        if not line.taxable:
            return []
        return _tax_lines(
            line_total(line, current=True), line.tax_rate, order.taxes_included, order.currency_code
        )

    def shipping_bag(line: ShippingLine, info: Info) -> dict[str, Any]:
        return _money_bag(line.net_price, _sim(info).orders[line.order_id].currency_code)

    def shipping_original(line: ShippingLine, info: Info) -> dict[str, Any]:
        return _money_bag(line.price, _sim(info).orders[line.order_id].currency_code)

    def shipping_allocations(line: ShippingLine, info: Info) -> list[dict[str, Any]]:
        currency = _sim(info).orders[line.order_id].currency_code
        return [{"allocatedAmountSet": _money_bag(line.discount, currency)}] if line.discount else []

    def shipping_tax_lines(line: ShippingLine, info: Info) -> list[dict[str, Any]]:
        order = _sim(info).orders[line.order_id]
        return _tax_lines(line.net_price, line.tax_rate, order.taxes_included, order.currency_code)

    def order_line_items(order: Order, _info: Info, **args: Any) -> dict[str, Any]:
        return _paginate(order.line_items, _by_id, args)

    def order_shipping_lines(order: Order, _info: Info, **args: Any) -> dict[str, Any]:
        rows = [s for s in order.shipping_lines if args.get("includeRemovals") or not s.is_removed]
        return _paginate(rows, _by_id, args)

    def order_customer(order: Order, info: Info) -> Customer | None:
        return _sim(info).customers.get(order.customer_id or "")

    def order_fulfillment_orders(order: Order, _info: Info, **args: Any) -> dict[str, Any]:
        return _paginate(order.fulfillment_orders, _by_id, args)

    def first_of(rows: Sequence[T], first: int | None) -> list[T]:
        """A list field's ``first``: truncates the array (no cursor, no page info)."""
        if first is None:
            return list(rows)
        if not 0 <= first <= MAX_PAGE_SIZE:
            raise GraphQLError(f"first must be between 0 and {MAX_PAGE_SIZE}, got {first}")
        return list(rows[:first])

    def order_fulfillments(order: Order, _info: Info, first: int | None = None) -> list[SimFulfillment]:
        return first_of(order.fulfillments, first)

    def assigned_location(fo: SimFulfillmentOrder, info: Info) -> dict[str, Any]:
        location = _sim(info).locations[fo.location_id]
        address = location.address
        return {
            "address1": address.get("address1"),
            "address2": address.get("address2"),
            "city": address.get("city"),
            # ZZ is Shopify's "unknown region", for a location seeded without a country
            "countryCode": address.get("countryCode") or "ZZ",
            "location": location,
            "name": location.name,
            "phone": address.get("phone"),
            "province": address.get("province"),
            "zip": address.get("zip"),
        }

    def fo_line_items(fo: SimFulfillmentOrder, _info: Info, **args: Any) -> dict[str, Any]:
        return _paginate(fo.line_items, _by_id, args)

    def fo_line_variant(line: SimFulfillmentOrderLine, info: Info) -> ProductVariant | None:
        return _sim(info).variants.get(line.line_item.variant_id or "")

    def fo_line_item_id(line: SimFulfillmentOrderLine, info: Info) -> str | None:
        variant = fo_line_variant(line, info)
        return None if variant is None else variant.inventory_item_id

    def tracking_info(
        fulfillment: SimFulfillment, _info: Info, first: int | None = None
    ) -> list[dict[str, Any]]:
        company, number, url = fulfillment.tracking
        rows = [{"company": company, "number": number, "url": url}] if number or url or company else []
        return first_of(rows, first)

    def fulfillment_line_items(fulfillment: SimFulfillment, _info: Info, **args: Any) -> dict[str, Any]:
        return _paginate(fulfillment.lines, _by_id, args)

    def product_variants(product: Product, info: Info, **args: Any) -> dict[str, Any]:
        sim = _sim(info)
        rows = [sim.variants[v] for v in product.variant_ids]
        return _paginate(rows, sim.variant_sort_key(args.get("sortKey") or "POSITION"), args)

    def product_total_inventory(product: Product, info: Info) -> int:
        sim = _sim(info)
        return sum(sim.item_available(sim.variants[v].inventory_item_id) for v in product.variant_ids)

    def product_tracks(product: Product, info: Info) -> bool:
        sim = _sim(info)
        return any(
            sim.inventory_items[sim.variants[v].inventory_item_id].tracked for v in product.variant_ids
        )

    def variant_item(variant: ProductVariant, info: Info) -> InventoryItem:
        return _sim(info).inventory_items[variant.inventory_item_id]

    def variant_sku(variant: ProductVariant, info: Info) -> str | None:
        return variant_item(variant, info).sku

    def variant_display_name(variant: ProductVariant, info: Info) -> str:
        return f"{_sim(info).products[variant.product_id].title} - {variant.title}"

    def variant_quantity(variant: ProductVariant, info: Info) -> int:
        return _sim(info).item_available(variant.inventory_item_id)

    def item_unit_cost(item: InventoryItem, info: Info) -> dict[str, Any] | None:
        if item.unit_cost is None:
            return None
        return {"amount": _amount(item.unit_cost), "currencyCode": _sim(info).currency}

    def item_measurement(item: InventoryItem, _info: Info) -> dict[str, Any]:
        weight = None if item.weight is None else {"unit": item.weight[0], "value": float(item.weight[1])}
        return {"id": f"gid://shopify/InventoryItemMeasurement/{_gid_number(item.id)}", "weight": weight}

    def item_level(item: InventoryItem, info: Info, locationId: str, **_args: Any) -> InventoryLevel | None:
        return _sim(info).levels.get((item.id, locationId))

    def item_levels(item: InventoryItem, info: Info, **args: Any) -> dict[str, Any]:
        rows = [lv for (item_id, _), lv in _sim(info).levels.items() if item_id == item.id]
        return _paginate(rows, lambda lv: (_gid_number(lv.location_id), _gid_number(lv.location_id)), args)

    def item_variant(item: InventoryItem, info: Info) -> ProductVariant:
        return _sim(info).variants[item.variant_id]

    def location_level(
        loc: Location, info: Info, inventoryItemId: str, **_args: Any
    ) -> InventoryLevel | None:
        return _sim(info).levels.get((inventoryItemId, loc.id))

    def location_levels(loc: Location, info: Info, **args: Any) -> dict[str, Any]:
        rows = [lv for (_, loc_id), lv in _sim(info).levels.items() if loc_id == loc.id]
        return _paginate(rows, lambda lv: (_gid_number(lv.item_id), _gid_number(lv.item_id)), args)

    def location_address(loc: Location, _info: Info) -> dict[str, Any]:
        keys = ("address1", "address2", "city", "country", "countryCode", "phone", "province", "zip")
        return {key: loc.address.get(key) for key in keys}

    def level_quantities(level: InventoryLevel, _info: Info, names: list[str]) -> list[dict[str, Any]]:
        unknown = [name for name in names if name not in QUANTITY_NAMES]
        if unknown:
            raise GraphQLError(f"Invalid quantity names: {', '.join(unknown)}")
        return [
            {
                "id": f"gid://shopify/InventoryQuantity/{_gid_number(level.location_id)}"
                f"?inventory_item_id={_gid_number(level.item_id)}&name={name}",
                "name": name,
                "quantity": level.quantity(name),
                "updatedAt": _iso(level.updated_at),
            }
            for name in names
        ]

    def level_item(level: InventoryLevel, info: Info) -> InventoryItem:
        return _sim(info).inventory_items[level.item_id]

    def level_location(level: InventoryLevel, info: Info) -> Location:
        return _sim(info).locations[level.location_id]

    def group_changes(group: InventoryAdjustmentGroup, _info: Info, **args: Any) -> list[dict[str, Any]]:
        items, locations, names = (
            args.get("inventoryItemIds"),
            args.get("locationIds"),
            args.get("quantityNames"),
        )
        return [
            change
            for change in group.changes
            if (items is None or change["item"].id in items)
            and (locations is None or change["location"].id in locations)
            and (names is None or change["name"] in names)
        ]

    def customer_display_name(customer: Customer, _info: Info) -> str:
        full = " ".join(part for part in (customer.first_name, customer.last_name) if part)
        return full or customer.email or "Customer"

    def customer_email(customer: Customer, _info: Info) -> dict[str, str] | None:
        return None if customer.email is None else {"emailAddress": customer.email}

    return {
        "Location": {
            "address": location_address,
            "hasActiveInventory": lambda loc, info: any(k[1] == loc.id for k in _sim(info).levels),
            "inventoryLevel": location_level,
            "inventoryLevels": location_levels,
            "legacyResourceId": _legacy_id,
            "shipsInventory": lambda loc, _info: loc.fulfills_online_orders,
        },
        "Order": {
            "fulfillmentOrders": order_fulfillment_orders,
            "fulfillments": order_fulfillments,
            "closed": lambda order, _info: order.closed_at is not None,
            "confirmed": lambda _order, _info: True,
            "currentSubtotalPriceSet": bag("subtotal", current=True),
            "currentTotalPriceSet": bag("total", current=True),
            "currentTotalTaxSet": bag("tax", current=True),
            "customer": order_customer,
            "legacyResourceId": _legacy_id,
            "lineItems": order_line_items,
            "presentmentCurrencyCode": lambda order, _info: order.currency_code,
            "shippingLines": order_shipping_lines,
            "subtotalPriceSet": bag("subtotal", current=False),
            "taxLines": order_tax_lines,
            "totalDiscountsSet": bag("discounts", current=False),
            "totalPriceSet": bag("total", current=False),
            "totalShippingPriceSet": bag("shipping", current=False),
            "totalTaxSet": bag("tax", current=False),
        },
        "LineItem": {
            "discountAllocations": line_discount_allocations,
            "discountedTotalSet": line_discounted_total,
            "discountedUnitPriceAfterAllDiscountsSet": line_unit("net_unit_price"),
            "discountedUnitPriceSet": line_unit("discounted_unit_price"),
            "nonFulfillableQuantity": lambda _line, _info: 0,
            "originalTotalSet": line_original_total,
            "originalUnitPriceSet": line_unit("original_unit_price"),
            "product": lambda line, info: _sim(info).products.get(line.product_id or ""),
            "refundableQuantity": lambda line, _info: line.current_quantity,
            "taxLines": line_tax_lines,
            "totalDiscountSet": line_total_discount,
            "unfulfilledQuantity": lambda line, _info: max(
                line.current_quantity - line.fulfilled_quantity, 0
            ),
            "variant": lambda line, info: _sim(info).variants.get(line.variant_id or ""),
        },
        "ShippingLine": {
            "currentDiscountedPriceSet": shipping_bag,
            "discountAllocations": shipping_allocations,
            "discountedPriceSet": shipping_bag,
            "originalPriceSet": shipping_original,
            "taxLines": shipping_tax_lines,
        },
        "Customer": {
            "defaultEmailAddress": customer_email,
            "displayName": customer_display_name,
            "legacyResourceId": _legacy_id,
        },
        "Product": {
            "legacyResourceId": _legacy_id,
            "totalInventory": product_total_inventory,
            "tracksInventory": product_tracks,
            "variants": product_variants,
            "variantsCount": lambda product, _info: {"count": len(product.variant_ids), "precision": "EXACT"},
        },
        "ProductVariant": {
            "displayName": variant_display_name,
            "inventoryItem": variant_item,
            "inventoryQuantity": variant_quantity,
            "legacyResourceId": _legacy_id,
            "product": lambda variant, info: _sim(info).products[variant.product_id],
            "sku": variant_sku,
        },
        "InventoryItem": {
            "inventoryLevel": item_level,
            "inventoryLevels": item_levels,
            "legacyResourceId": _legacy_id,
            "measurement": item_measurement,
            "unitCost": item_unit_cost,
            "variant": item_variant,
        },
        "InventoryLevel": {
            "canDeactivate": lambda level, _info: level.committed == 0,
            "item": level_item,
            "location": level_location,
            "quantities": level_quantities,
        },
        "InventoryAdjustmentGroup": {"changes": group_changes},
        "FulfillmentOrder": {
            "assignedLocation": assigned_location,
            "lineItems": fo_line_items,
            "order": lambda fo, info: _sim(info).orders[fo.order_id],
            "orderName": lambda fo, info: _sim(info).orders[fo.order_id].name,
        },
        "FulfillmentOrderLineItem": {
            "inventoryItemId": fo_line_item_id,
            "productTitle": lambda line, _info: line.line_item.title,
            "requiresShipping": lambda line, _info: line.line_item.requires_shipping,
            "sku": lambda line, _info: line.line_item.sku,
            "variant": fo_line_variant,
            "variantTitle": lambda line, _info: line.line_item.variant_title,
            "vendor": lambda line, _info: line.line_item.vendor,
        },
        "Fulfillment": {
            # the simulator ships and tracks nothing further: every fulfilment is done
            "displayStatus": lambda _fulfillment, _info: "FULFILLED",
            "fulfillmentLineItems": fulfillment_line_items,
            "legacyResourceId": _legacy_id,
            "location": lambda fulfillment, info: _sim(info).locations.get(fulfillment.location_id),
            "order": lambda fulfillment, info: _sim(info).orders[fulfillment.order_id],
            "requiresShipping": lambda _fulfillment, _info: True,
            "trackingInfo": tracking_info,
        },
    }


@functools.cache
def load_schema() -> GraphQLSchema:
    """The simulator's executable schema, read from the package and wired to the resolvers."""
    sdl = importlib.resources.files("daemon.sim").joinpath("shopify_schema.graphql").read_text("utf-8")
    schema = build_schema(sdl)
    wiring = {
        "QueryRoot": _query_resolvers(),
        "Mutation": _mutation_resolvers(),
        **_type_resolvers(),
    }
    for type_name, resolvers in wiring.items():
        owner = schema.get_type(type_name)
        if not isinstance(owner, GraphQLObjectType):
            raise TypeError(f"resolver for unknown type {type_name}")
        for field_name, resolver in resolvers.items():
            if field_name not in owner.fields:
                # a typo here would silently fall back to the default resolver
                raise TypeError(f"resolver for unknown field {type_name}.{field_name}")
            owner.fields[field_name].resolve = resolver
    for interface in ("Node", "DisplayableError"):
        abstract = schema.get_type(interface)
        if isinstance(abstract, GraphQLInterfaceType):
            abstract.resolve_type = _resolve_node_type
    return schema


# --- the simulator -----------------------------------------------------------------------------------


def _json_response(status: int, payload: object, headers: Mapping[str, str] | None = None) -> httpx.Response:
    body = json.dumps(payload, separators=(",", ":")).encode()
    return httpx.Response(
        status,
        content=body,
        headers={"content-type": "application/json; charset=utf-8", **(headers or {})},
    )


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "product"


async def _control_body(request: httpx.Request) -> dict[str, Any]:
    """The JSON object a control request carries (ValueError or TypeError otherwise)."""
    payload = json.loads(await request.aread() or b"{}")
    if not isinstance(payload, dict):
        raise TypeError("expected a JSON object")
    return payload


def _fulfillment_json(fulfillment: SimFulfillment) -> dict[str, Any]:
    """A fulfilment as the control API shows it."""
    company, number, url = fulfillment.tracking
    return {
        "id": fulfillment.id,
        "name": fulfillment.name,
        "location_id": fulfillment.location_id,
        "quantities": fulfillment.quantities,
        "tracking": {"company": company, "number": number, "url": url},
        "notify_customer": fulfillment.notify_customer,
        "tracking_updates": list(fulfillment.tracking_updates),
    }


def _variant_spec(raw: object) -> VariantSpec:
    """A :class:`VariantSpec` from JSON (``weight`` as ``[unit, value]``)."""
    if not isinstance(raw, dict):
        raise TypeError("a variant is a JSON object")
    unknown = set(raw) - set(VariantSpec.__annotations__)
    if unknown:
        raise ValueError(f"unknown variant fields {sorted(unknown)}")
    spec = dict(raw)
    if spec.get("weight") is not None:
        unit, value = spec["weight"]
        spec["weight"] = (str(unit), float(value))
    return cast(VariantSpec, spec)


class ShopifySimulator:
    """An in-memory Shopify shop behind the GraphQL Admin API.

    Every argument is optional: the defaults give a shop with one primary location,
    the Standard plan's bucket (2,000 points, 100/s), the static token
    :data:`DEFAULT_ACCESS_TOKEN`, no faults and no search lag.
    """

    def __init__(
        self,
        *,
        now: Callable[[], datetime] = _utc_now,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
        faults: Faults | None = None,
        bucket_size: float = 2000.0,
        restore_rate: float = 100.0,
        access_tokens: Collection[str] = (DEFAULT_ACCESS_TOKEN,),
        clients: Mapping[str, str] | None = None,
        token_lifetime: float = 86399.0,
        scopes: str = DEFAULT_SCOPES,
        api_versions: Collection[str] = SUPPORTED_VERSIONS,
        validate_schema: GraphQLSchema | None = None,
        search_lag: float = 0.0,
        shop_name: str = "Simulated Shop",
        shop_domain: str = "sim-shop.myshopify.com",
        currency: str = "DKK",
        primary_location_name: str = "Warehouse",
        request_log_size: int = 1000,
        bulk_objects_per_second: float = 500.0,
        bulk_query_limit: int = 5,
    ) -> None:
        self.now = now
        self.monotonic = monotonic
        self.sleep = sleep
        #: fault knobs; replace or mutate at any time
        self.faults = faults or Faults()
        #: the cost bucket; ``bucket.drain()`` simulates other traffic
        self.bucket = CostBucket(maximum=bucket_size, restore_rate=restore_rate)
        #: static Admin API tokens that never expire
        self.static_tokens: set[str] = set(access_tokens)
        #: client id → client secret accepted by the client-credentials grant
        self.clients: dict[str, str] = dict(
            clients if clients is not None else {DEFAULT_CLIENT_ID: DEFAULT_CLIENT_SECRET}
        )
        self.token_lifetime = token_lifetime
        self.scopes = scopes
        self.api_versions = set(api_versions)
        #: Shopify's published schema; when set, documents must validate against it too
        self.validate_schema = validate_schema
        #: records changed less than this many seconds ago are missing from filtered searches
        self.search_lag = search_lag
        self.shop_name = shop_name
        self.shop_domain = shop_domain
        self.currency = currency
        self.schema = load_schema()

        self.locations: dict[str, Location] = {}
        self.products: dict[str, Product] = {}
        self.variants: dict[str, ProductVariant] = {}
        self.inventory_items: dict[str, InventoryItem] = {}
        self.levels: dict[tuple[str, str], InventoryLevel] = {}
        self.orders: dict[str, Order] = {}
        self.customers: dict[str, Customer] = {}
        self._nodes: dict[str, object] = {}
        self._next_id = 1000
        self._next_order_number = 1001

        #: requests by GraphQL operation name (``oauth`` for token grants)
        self.requests: collections.Counter[str] = collections.Counter()
        #: orders and products served, by (operation name, id): how often each record was read,
        #: and by which document (``served.clear()`` starts over)
        self.served: collections.Counter[tuple[str, str]] = collections.Counter()
        #: the most recent requests, oldest first
        self.request_log: collections.deque[RequestRecord] = collections.deque(maxlen=request_log_size)
        #: every ``inventorySetQuantities`` that changed stock, in order
        self.inventory_applications: list[InventoryApplication] = []
        #: how many ``inventorySetQuantities`` calls were answered from the idempotency store
        self.idempotent_replays = 0
        #: ``inventorySetQuantities`` calls that changed stock (replays not counted)
        self.adjustment_groups = 0
        self._idempotency: dict[str, tuple[str, dict[str, Any]]] = {}
        self._issued_tokens: dict[str, float] = {}
        self._documents: dict[tuple[str, int], tuple[DocumentNode | None, list[GraphQLError]]] = {}
        #: how fast a bulk query reads (an assumption of the simulator, see BULK_STARTUP_SECONDS)
        self.bulk_objects_per_second = bulk_objects_per_second
        #: bulk queries that may run at once (Shopify: 5 from API version 2026-01, 1 before)
        self.bulk_query_limit = bulk_query_limit
        #: bulk operations by id; ``lose_bulk_operation`` removes one
        self.bulk_operations: dict[str, SimBulkOperation] = {}
        #: bulk result files served, by operation id (a download started counts)
        self.bulk_downloads: collections.Counter[str] = collections.Counter()
        #: scheme and host of the request being answered (bulk result URLs point there)
        self._base_url = "http://sim-shop.invalid"

        self.primary_location_id = self.add_location(primary_location_name, primary=True)

    # --- ids and time ---------------------------------------------------------------------------

    def _stamp(self) -> datetime:
        moment = self.now()
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        # Shopify reports second precision; storing it keeps filters and output consistent
        return moment.astimezone(UTC).replace(microsecond=0)

    def _gid(self, kind: str) -> str:
        # one counter for every type, so a Product id never equals a Variant id by accident
        self._next_id += 1
        return f"gid://shopify/{kind}/{self._next_id}"

    def _register(self, obj: Any) -> None:
        self._nodes[obj.id] = obj

    def node(self, gid: str) -> object | None:
        """Any object by its global id (``nodes``/``node`` semantics)."""
        return self._nodes.get(gid)

    # --- control API: locations, products, stock -----------------------------------------------

    def add_location(
        self,
        name: str,
        *,
        primary: bool = False,
        active: bool = True,
        fulfills_online_orders: bool = True,
        address: Mapping[str, str | None] | None = None,
    ) -> str:
        """Add a location and return its id; existing items are stocked there with 0."""
        stamp = self._stamp()
        location = Location(
            id=self._gid("Location"),
            name=name,
            created_at=stamp,
            updated_at=stamp,
            is_primary=primary,
            is_active=active,
            fulfills_online_orders=fulfills_online_orders,
            address=dict(address or {"city": "Copenhagen", "countryCode": "DK", "country": "Denmark"}),
        )
        if primary:
            for other in self.locations.values():
                other.is_primary = False
            self.primary_location_id = location.id
        self.locations[location.id] = location
        self._register(location)
        for item_id in self.inventory_items:
            self._level(item_id, location.id)
        return location.id

    def add_product(
        self,
        title: str,
        variants: Sequence[VariantSpec] = ({},),
        *,
        description_html: str = "",
        product_type: str = "",
        vendor: str = "",
        status: str = "ACTIVE",
        tags: Sequence[str] = (),
    ) -> AddedProduct:
        """Add a product with ``variants`` (one default variant without SKU when empty)."""
        stamp = self._stamp()
        product = Product(
            id=self._gid("Product"),
            title=title,
            handle=self._unique_handle(title),
            created_at=stamp,
            updated_at=stamp,
            description_html=description_html,
            product_type=product_type,
            vendor=vendor,
            status=status,
            tags=list(tags),
        )
        self.products[product.id] = product
        self._register(product)
        for spec in variants or ({},):
            self._add_variant(product, spec)
        return AddedProduct(
            product.id,
            tuple(product.variant_ids),
            tuple(self.variants[v].inventory_item_id for v in product.variant_ids),
        )

    def _unique_handle(self, title: str) -> str:
        base = _slug(title)
        taken = {p.handle for p in self.products.values()}
        handle, n = base, 1
        while handle in taken:
            n += 1
            handle = f"{base}-{n}"
        return handle

    def _add_variant(self, product: Product, spec: VariantSpec) -> ProductVariant:
        stamp = self._stamp()
        variant_id, item_id = self._gid("ProductVariant"), self._gid("InventoryItem")
        cost = spec.get("cost")
        compare_at = spec.get("compare_at_price")
        item = InventoryItem(
            id=item_id,
            variant_id=variant_id,
            created_at=stamp,
            updated_at=stamp,
            sku=spec.get("sku"),
            tracked=spec.get("tracked", True),
            unit_cost=None if cost is None else Decimal(str(cost)),
            weight=spec.get("weight"),
        )
        variant = ProductVariant(
            id=variant_id,
            product_id=product.id,
            inventory_item_id=item_id,
            title=spec.get("title", "Default Title"),
            price=Decimal(str(spec.get("price", "0.00"))),
            position=len(product.variant_ids) + 1,
            created_at=stamp,
            updated_at=stamp,
            barcode=spec.get("barcode"),
            compare_at_price=None if compare_at is None else Decimal(str(compare_at)),
            taxable=spec.get("taxable", True),
        )
        self.inventory_items[item_id] = item
        self.variants[variant_id] = variant
        self._register(item)
        self._register(variant)
        product.variant_ids.append(variant_id)
        for location_id, location in self.locations.items():
            if location.is_active:
                self._level(item_id, location_id)
        stock = spec.get("stock")
        if isinstance(stock, int):
            self._level(item_id, self.primary_location_id).on_hand = stock
        elif stock is not None:
            for location_id, quantity in stock.items():
                self._level(item_id, location_id).on_hand = quantity
        return variant

    def update_product(self, product_id: str, **changes: Any) -> None:
        """Change product fields by attribute name (``title``, ``status``, …) and bump ``updatedAt``."""
        product = self.products[product_id]
        for name, value in changes.items():
            if not hasattr(product, name) or name in {"id", "variant_ids", "created_at"}:
                raise AttributeError(f"Product has no settable field {name!r}")
            setattr(product, name, value)
        product.updated_at = self._stamp()

    def update_variant(
        self,
        sku_or_id: str,
        *,
        price: str | Decimal | None = None,
        barcode: str | None = None,
        sku: str | None = None,
        cost: str | Decimal | None = None,
        title: str | None = None,
        tracked: bool | None = None,
    ) -> None:
        """Change a variant (and its product's ``updatedAt``), as a merchant would in the admin."""
        variant = self._variant(sku_or_id)
        item = self.inventory_items[variant.inventory_item_id]
        stamp = self._stamp()
        if price is not None:
            variant.price = Decimal(str(price))
        if barcode is not None:
            variant.barcode = barcode
        if title is not None:
            variant.title = title
        if sku is not None:
            item.sku = sku
        if cost is not None:
            item.unit_cost = Decimal(str(cost))
        if tracked is not None:
            item.tracked = tracked
        variant.updated_at = item.updated_at = stamp
        self.products[variant.product_id].updated_at = stamp

    def find_by_sku(self, sku: str) -> ProductVariant | None:
        """The first variant whose SKU is exactly ``sku``."""
        for variant in self.variants.values():
            if self.inventory_items[variant.inventory_item_id].sku == sku:
                return variant
        return None

    def _variant(self, sku_or_id: str) -> ProductVariant:
        if sku_or_id in self.variants:
            return self.variants[sku_or_id]
        if sku_or_id in self.inventory_items:
            return self.variants[self.inventory_items[sku_or_id].variant_id]
        found = self.find_by_sku(sku_or_id)
        if found is None:
            raise KeyError(f"no variant with SKU or id {sku_or_id!r}")
        return found

    def _item_id(self, sku_or_item: str) -> str:
        return self._variant(sku_or_item).inventory_item_id

    def _level(self, item_id: str, location_id: str) -> InventoryLevel:
        level = self.levels.get((item_id, location_id))
        if level is None:
            stamp = self._stamp()
            level = InventoryLevel(item_id, location_id, created_at=stamp, updated_at=stamp)
            self.levels[(item_id, location_id)] = level
        return level

    def _touch_stock(self, level: InventoryLevel) -> None:
        stamp = self._stamp()
        level.updated_at = stamp
        self.inventory_items[level.item_id].updated_at = stamp

    def set_on_hand(self, sku_or_item: str, quantity: int, location: str | None = None) -> None:
        """Set on-hand stock (a stock count in the shop's admin); ``available`` follows."""
        level = self._level(self._item_id(sku_or_item), location or self.primary_location_id)
        level.on_hand = quantity
        self._touch_stock(level)

    def set_available(self, sku_or_item: str, quantity: int, location: str | None = None) -> None:
        """Set available stock; on hand becomes ``quantity`` + committed."""
        level = self._level(self._item_id(sku_or_item), location or self.primary_location_id)
        level.on_hand = quantity + level.committed
        self._touch_stock(level)

    def available(self, sku_or_item: str, location: str | None = None) -> int:
        """Available quantity of a SKU (or variant/item id) at a location (primary by default)."""
        level = self.levels.get((self._item_id(sku_or_item), location or self.primary_location_id))
        return 0 if level is None else level.available

    def on_hand(self, sku_or_item: str, location: str | None = None) -> int:
        """On-hand quantity of a SKU at a location (primary by default)."""
        level = self.levels.get((self._item_id(sku_or_item), location or self.primary_location_id))
        return 0 if level is None else level.on_hand

    def committed(self, sku_or_item: str, location: str | None = None) -> int:
        """Quantity committed to open orders at a location (primary by default)."""
        level = self.levels.get((self._item_id(sku_or_item), location or self.primary_location_id))
        return 0 if level is None else level.committed

    def item_available(self, item_id: str) -> int:
        """Available quantity of an inventory item summed over all locations."""
        return sum(level.available for (item, _), level in self.levels.items() if item == item_id)

    # --- control API: orders -----------------------------------------------------------------

    def create_order(
        self,
        lines: Sequence[OrderLineSpec | tuple[str, int]],
        *,
        email: str | None = "customer@example.com",
        first_name: str | None = "Test",
        last_name: str | None = "Customer",
        phone: str | None = None,
        tax_rate: str | Decimal = "0.25",
        taxes_included: bool = True,
        shipping_price: str | Decimal = "0.00",
        shipping_title: str = "Standard",
        shipping_lines: Sequence[ShippingLineSpec] | None = None,
        currency: str | None = None,
        test: bool = False,
        shipping_address: Mapping[str, str | None] | None = None,
        billing_address: Mapping[str, str | None] | None = None,
        location: str | None = None,
        financial_status: str = "PAID",
        note: str | None = None,
        tags: Sequence[str] = (),
    ) -> str:
        """Place an order and return its id.

        Lines are ``(sku, quantity)`` or :class:`OrderLineSpec`. Tracked stock at
        ``location`` (primary by default) is committed, so ``available`` drops while
        ``on_hand`` stays until the order is fulfilled. The order gets one fulfillment
        order at ``location`` holding every line that requires shipping. Tax lines use
        ``tax_rate``; with ``taxes_included`` the prices contain the tax (as in the EU).
        ``shipping_lines`` replaces the one line of ``shipping_price`` (several, discounted
        or untaxed). ``financial_status`` is an ``OrderDisplayFinancialStatus`` value.
        """
        self._check_financial_status(financial_status)
        stamp = self._stamp()
        order_id = self._gid("Order")
        rate = Decimal(str(tax_rate))
        location_id = location or self.primary_location_id
        customer = self._customer(email, first_name, last_name, phone) if email or first_name else None
        order = Order(
            id=order_id,
            number=self._next_order_number,
            created_at=stamp,
            updated_at=stamp,
            processed_at=stamp,
            currency_code=currency or self.currency,
            taxes_included=taxes_included,
            location_id=location_id,
            email=email,
            phone=phone,
            note=note,
            tags=list(tags),
            customer_id=customer.id if customer else None,
            test=test,
            display_financial_status=financial_status,
        )
        default_address = {
            "first_name": first_name,
            "last_name": last_name,
            "address1": "Testvej 1",
            "zip": "2100",
            "city": "København Ø",
            "country": "Denmark",
            "country_code_v2": "DK",
            "phone": phone,
        }
        order.shipping_address = self._address(shipping_address or default_address)
        order.billing_address = self._address(billing_address or shipping_address or default_address)
        for raw in lines:
            spec: OrderLineSpec = {"sku": raw[0], "quantity": raw[1]} if isinstance(raw, tuple) else raw
            order.line_items.append(self._line_item(order, spec, rate))
        if not order.line_items:
            raise ValueError("an order needs at least one line")
        specs: Sequence[ShippingLineSpec] = (
            shipping_lines
            if shipping_lines is not None
            else [{"price": shipping_price, "title": shipping_title}]
        )
        for ship in specs:
            title = ship.get("title") or shipping_title
            order.shipping_lines.append(
                ShippingLine(
                    id=self._gid("ShippingLine"),
                    order_id=order_id,
                    title=title,
                    price=Decimal(str(ship["price"])),
                    tax_rate=Decimal(str(ship["tax_rate"])) if "tax_rate" in ship else rate,
                    code=title,
                    discount=Decimal(str(ship.get("discount") or 0)),
                )
            )
        self._next_order_number += 1
        self.orders[order_id] = order
        self._register(order)
        for line in order.line_items:
            self._commit(location_id, line, line.current_quantity)
        shipped = [(line, line.current_quantity) for line in order.line_items if line.requires_shipping]
        if shipped:
            self._open_fulfillment_order(order, location_id, shipped)
        return order_id

    def sell(self, sku: str, quantity: int = 1, **order_fields: Any) -> str:
        """One-line order for ``quantity`` × ``sku``; keyword arguments as :meth:`create_order`."""
        return self.create_order([{"sku": sku, "quantity": quantity}], **order_fields)

    def _customer(
        self, email: str | None, first: str | None, last: str | None, phone: str | None
    ) -> Customer:
        for customer in self.customers.values():
            if email is not None and customer.email == email:
                return customer
        stamp = self._stamp()
        customer = Customer(
            id=self._gid("Customer"),
            created_at=stamp,
            updated_at=stamp,
            email=email,
            first_name=first,
            last_name=last,
            phone=phone,
        )
        self.customers[customer.id] = customer
        self._register(customer)
        return customer

    def _address(self, fields: Mapping[str, str | None]) -> MailingAddress:
        address = MailingAddress(id=self._gid("MailingAddress"))
        for key, value in fields.items():
            name = _snake(key)
            if not hasattr(address, name) or name == "id":
                raise AttributeError(f"MailingAddress has no field {key!r}")
            setattr(address, name, value)
        if address.name is None:
            address.name = " ".join(p for p in (address.first_name, address.last_name) if p) or None
        return address

    def _line_item(self, order: Order, spec: OrderLineSpec, rate: Decimal) -> LineItem:
        variant = self.find_by_sku(spec["sku"])
        if variant is None and ("price" not in spec or "title" not in spec):
            raise KeyError(f"no variant with SKU {spec['sku']!r}; a custom line needs price and title")
        price = Decimal(str(spec["price"])) if "price" in spec else cast(ProductVariant, variant).price
        discounted = Decimal(str(spec["discounted_price"])) if "discounted_price" in spec else price
        product = self.products[variant.product_id] if variant else None
        return LineItem(
            id=self._gid("LineItem"),
            order_id=order.id,
            title=spec.get("title") or (product.title if product else spec["sku"]),
            quantity=spec["quantity"],
            current_quantity=spec["quantity"],
            original_unit_price=price,
            discounted_unit_price=discounted,
            final_unit_price=Decimal(str(spec["final_price"])) if "final_price" in spec else None,
            discount_total=Decimal(str(spec["discount"])) if "discount" in spec else None,
            tax_rate=Decimal(str(spec["tax_rate"])) if "tax_rate" in spec else rate,
            sku=spec["sku"],
            variant_id=variant.id if variant else None,
            product_id=product.id if product else None,
            variant_title=variant.title if variant else None,
            vendor=product.vendor if product else None,
            taxable=variant.taxable if variant else True,
            requires_shipping=self.inventory_items[variant.inventory_item_id].requires_shipping
            if variant
            else True,
        )

    def _tracked_item(self, line: LineItem) -> InventoryItem | None:
        """The inventory item whose stock a line moves (None: custom line or untracked)."""
        if line.variant_id is None:
            return None
        item = self.inventory_items[self.variants[line.variant_id].inventory_item_id]
        return item if item.tracked else None

    def _commit(self, location_id: str, line: LineItem, quantity: int) -> None:
        """Move ``quantity`` of a line's stock at a location into (positive) or out of
        (negative) committed."""
        item = self._tracked_item(line)
        if item is None or quantity == 0:
            return
        level = self._level(item.id, location_id)
        level.committed = max(level.committed + quantity, 0)
        self._touch_stock(level)

    def _ship(self, location_id: str, line: LineItem, quantity: int) -> None:
        """``quantity`` of a line leaves the building: committed and on hand both drop."""
        item = self._tracked_item(line)
        if item is not None and quantity:
            level = self._level(item.id, location_id)
            level.on_hand -= quantity
            level.committed = max(level.committed - quantity, 0)
            self._touch_stock(level)
        line.fulfilled_quantity += quantity

    def order_demand(self, order_id: str) -> dict[str, int]:
        """SKU → units still wanted by an order (current quantities; 0 when cancelled)."""
        order = self.node(order_id)
        if not isinstance(order, Order):
            raise KeyError(order_id)
        demand: dict[str, int] = {}
        if order.cancelled_at is None:
            for line in order.line_items:
                if line.sku and line.current_quantity:
                    demand[line.sku] = demand.get(line.sku, 0) + line.current_quantity
        return demand

    def edit_order(self, order_id: str, quantities: Mapping[str, int]) -> None:
        """Set lines' current quantities (keyed by SKU or line id); stock follows."""
        order = self.orders[order_id]
        for key, quantity in quantities.items():
            matches = [li for li in order.line_items if key in (li.id, li.sku)]
            if not matches:
                raise KeyError(f"order {order.name} has no line {key!r}")
            line = matches[0]
            if quantity < line.fulfilled_quantity or quantity > line.quantity:
                raise ValueError(
                    f"quantity for {key!r} must be within {line.fulfilled_quantity}..{line.quantity}"
                )
            delta = quantity - line.current_quantity
            line.current_quantity = quantity
            held = self._open_line(order, line)
            if held is not None:
                # the unfulfilled units live on the line's one unfinished fulfillment order
                fo = self._fulfillment_order(held.fulfillment_order_id)
                held.total_quantity += delta
                held.remaining_quantity += delta
                fo.updated_at = self._stamp()
                self._commit(fo.location_id, line, delta)
            elif delta > 0 and line.requires_shipping:
                # units added back after the line was done: Shopify opens a new fulfillment order
                self._commit(order.location_id, line, delta)
                self._open_fulfillment_order(order, order.location_id, [(line, delta)])
            else:
                self._commit(order.location_id, line, delta)
        self._settle(order)
        order.updated_at = self._stamp()

    def cancel_order(self, order_id: str, *, reason: str = "CUSTOMER", restock: bool = True) -> None:
        """Cancel an order; with ``restock`` committed stock is released and lines go to 0."""
        order = self.orders[order_id]
        stamp = self._stamp()
        if restock:
            for line in order.line_items:
                held = self._open_line(order, line)
                location = (
                    self._fulfillment_order(held.fulfillment_order_id).location_id
                    if held is not None
                    else order.location_id
                )
                self._commit(location, line, -(line.current_quantity - line.fulfilled_quantity))
                line.current_quantity = line.fulfilled_quantity
                if held is not None:
                    held.total_quantity -= held.remaining_quantity
                    held.remaining_quantity = 0
        for fo in order.fulfillment_orders:
            if not fo.finished:
                fo.status = "CLOSED" if fo.started else "CANCELLED"
                fo.updated_at = stamp
        self._settle(order)
        order.cancelled_at = order.closed_at = order.updated_at = stamp
        order.cancel_reason = reason
        order.display_financial_status = "REFUNDED" if order.display_financial_status == "PAID" else "VOIDED"

    def fulfill_order(self, order_id: str) -> list[str]:
        """Ship everything still open, one fulfilment per fulfillable fulfillment order
        (the merchant's "Mark as fulfilled"); return the new fulfilments' ids.

        Goes the way ``fulfillmentCreate`` does: committed and on-hand stock both drop at
        the fulfillment order's location. Held, closed and cancelled ones are left alone.
        """
        order = self._order(order_id)
        created: list[str] = []
        for fo in list(order.fulfillment_orders):
            picks = [(line, line.remaining_quantity) for line in fo.line_items if line.remaining_quantity]
            if fo.fulfillable and picks:
                created.append(self._fulfil(order, [(fo, picks)]).id)
        return created

    def fulfillment_orders(self, order_id: str) -> list[SimFulfillmentOrder]:
        """The order's fulfillment orders, oldest first (an order id or name like ``#1001``)."""
        return list(self._order(order_id).fulfillment_orders)

    def fulfillments(self, order_id: str) -> list[SimFulfillment]:
        """The order's fulfilments, oldest first (an order id or name like ``#1001``)."""
        return list(self._order(order_id).fulfillments)

    def set_financial_status(self, order_id: str, status: str) -> None:
        """Set ``displayFinancialStatus`` (``PAID``, ``PENDING`` …) and bump ``updatedAt``."""
        self._check_financial_status(status)
        order = self._order(order_id)
        order.display_financial_status = status
        order.updated_at = self._stamp()

    def mark_paid(self, order_id: str) -> None:
        """The payment was captured: ``displayFinancialStatus`` becomes ``PAID``."""
        self.set_financial_status(order_id, "PAID")

    def hold_fulfillment_order(self, order_id: str) -> None:
        """Put the order's fulfillable fulfillment orders ``ON_HOLD`` (ValueError: none)."""
        order = self._order(order_id)
        held = [fo for fo in order.fulfillment_orders if fo.fulfillable]
        if not held:
            raise ValueError(f"order {order.name} has no fulfillment order that can be held")
        stamp = self._stamp()
        for fo in held:
            fo.status, fo.updated_at = "ON_HOLD", stamp
        self._settle(order)
        order.updated_at = stamp

    def release_fulfillment_order(self, order_id: str) -> None:
        """Release the order's held fulfillment orders (ValueError: none is held)."""
        order = self._order(order_id)
        held = [fo for fo in order.fulfillment_orders if fo.status == "ON_HOLD"]
        if not held:
            raise ValueError(f"order {order.name} has no fulfillment order on hold")
        stamp = self._stamp()
        for fo in held:
            fo.status, fo.updated_at = "OPEN", stamp  # _settle makes it IN_PROGRESS if started
        self._settle(order)
        order.updated_at = stamp

    def move_fulfillment_order(self, order_id: str, location_id: str) -> list[str]:
        """Assign the order's fulfillable fulfillment orders to another location; return the
        ids of the fulfillment orders now there.

        Committed stock moves with them. A fulfillment order nothing was fulfilled from
        keeps its id; one that was partly fulfilled is closed with what it shipped and a
        new one at ``location_id`` takes what is left (Shopify's ``fulfillmentOrderMove``).
        """
        order = self._order(order_id)
        if location_id not in self.locations:
            raise KeyError(f"no location {location_id!r}")
        movable = [fo for fo in order.fulfillment_orders if fo.fulfillable]
        if not movable:
            raise ValueError(f"order {order.name} has no fulfillment order that can be moved")
        stamp = self._stamp()
        moved: list[str] = []
        for fo in movable:
            if fo.location_id == location_id:
                moved.append(fo.id)
                continue
            left = [
                (line.line_item, line.remaining_quantity) for line in fo.line_items if line.remaining_quantity
            ]
            for line_item, units in left:
                self._commit(fo.location_id, line_item, -units)
                self._commit(location_id, line_item, units)
            if not fo.started:
                fo.location_id, fo.updated_at = location_id, stamp
                moved.append(fo.id)
                continue
            for line in fo.line_items:
                line.total_quantity -= line.remaining_quantity
                line.remaining_quantity = 0
            fo.status, fo.updated_at = "CLOSED", stamp
            moved.append(self._open_fulfillment_order(order, location_id, left).id)
        order.location_id = location_id
        self._settle(order)
        order.updated_at = stamp
        return moved

    def _order(self, order_id: str) -> Order:
        """An order by id or by name (``#1001``); KeyError when there is none."""
        order = self.orders.get(order_id)
        if order is None:
            order = next((o for o in self.orders.values() if o.name == order_id), None)
        if order is None:
            raise KeyError(f"no order {order_id!r}")
        return order

    def _check_financial_status(self, status: str) -> None:
        enum = self.schema.get_type("OrderDisplayFinancialStatus")
        allowed = list(enum.values) if isinstance(enum, GraphQLEnumType) else []
        if status not in allowed:
            raise ValueError(f"financial status must be one of {', '.join(sorted(allowed))}, not {status!r}")

    def _fulfillment_order(self, fo_id: str) -> SimFulfillmentOrder:
        return cast(SimFulfillmentOrder, self._nodes[fo_id])

    def _open_fulfillment_order(
        self, order: Order, location_id: str, lines: Sequence[tuple[LineItem, int]]
    ) -> SimFulfillmentOrder:
        stamp = self._stamp()
        fo = SimFulfillmentOrder(
            id=self._gid("FulfillmentOrder"),
            order_id=order.id,
            location_id=location_id,
            created_at=stamp,
            updated_at=stamp,
        )
        for line_item, units in lines:
            line = SimFulfillmentOrderLine(
                self._gid("FulfillmentOrderLineItem"), fo.id, line_item, units, units
            )
            fo.line_items.append(line)
            self._register(line)
        order.fulfillment_orders.append(fo)
        self._register(fo)
        return fo

    def _open_line(self, order: Order, line: LineItem) -> SimFulfillmentOrderLine | None:
        """Where a line's unfulfilled units are: its entry on an unfinished fulfillment order."""
        for fo in order.fulfillment_orders:
            if not fo.finished:
                for held in fo.line_items:
                    if held.line_item is line:
                        return held
        return None

    def _fulfil(
        self,
        order: Order,
        plan: Sequence[tuple[SimFulfillmentOrder, Sequence[tuple[SimFulfillmentOrderLine, int]]]],
        *,
        tracking: Mapping[str, Any] | None = None,
        notify: bool = False,
        message: str | None = None,
    ) -> SimFulfillment:
        """Ship the units of ``plan`` (checked by the caller: fulfillable, one order, one
        location, within what is left) as one fulfilment: the one path for every fulfilment."""
        stamp = self._stamp()
        location_id = plan[0][0].location_id
        lines: list[SimFulfillmentLine] = []
        for fo, picks in plan:
            for held, units in picks:
                held.remaining_quantity -= units
                self._ship(location_id, held.line_item, units)
                lines.append(
                    SimFulfillmentLine(self._gid("FulfillmentLineItem"), held.line_item, held.id, units)
                )
            fo.updated_at = stamp
        tracking = tracking or {}
        fulfillment = SimFulfillment(
            id=self._gid("Fulfillment"),
            order_id=order.id,
            location_id=location_id,
            name=f"{order.name}.{len(order.fulfillments) + 1}",
            created_at=stamp,
            updated_at=stamp,
            lines=tuple(lines),
            tracking_company=tracking.get("company"),
            tracking_number=tracking.get("number"),
            tracking_url=tracking.get("url"),
            notify_customer=notify,
            message=message,
        )
        for line in lines:
            self._register(line)
        self._register(fulfillment)
        order.fulfillments.append(fulfillment)
        self._settle(order)
        order.updated_at = stamp
        return fulfillment

    def _settle(self, order: Order) -> None:
        """Bring fulfillment order states and the order's ``displayFulfillmentStatus`` in
        line with the quantities."""
        for fo in order.fulfillment_orders:
            if fo.fulfillable:
                if all(line.remaining_quantity == 0 for line in fo.line_items):
                    fo.status = "CLOSED"
                else:
                    fo.status = "IN_PROGRESS" if fo.started else "OPEN"
        shipping = [line for line in order.line_items if line.requires_shipping]
        fulfilled = sum(line.fulfilled_quantity for line in shipping)
        wanted = sum(line.current_quantity for line in shipping)
        if fulfilled and fulfilled >= wanted:
            order.display_fulfillment_status = "FULFILLED"
        elif fulfilled:
            order.display_fulfillment_status = "PARTIALLY_FULFILLED"
        elif any(fo.status == "ON_HOLD" for fo in order.fulfillment_orders):
            order.display_fulfillment_status = "ON_HOLD"
        else:
            order.display_fulfillment_status = "UNFULFILLED"

    # --- control API: auth, counters, summary -------------------------------------------------

    def expire_tokens(self) -> None:
        """Make every token issued by the client-credentials grant expire now."""
        for token in self._issued_tokens:
            self._issued_tokens[token] = float("-inf")

    def issue_token(self) -> str:
        """Issue a token as the grant would (for tests that skip the HTTP round trip)."""
        token = f"shpat_{secrets.token_hex(16)}"
        self._issued_tokens[token] = self.monotonic() + self.token_lifetime
        return token

    def serve(self, info: Info, records: Iterable[Order | Product]) -> None:
        """Count ``records`` as served to the operation being answered (:attr:`served`)."""
        name = info.operation.name.value if info.operation.name else "anonymous"
        self.served.update((name, record.id) for record in records)

    def reset_requests(self) -> None:
        """Forget request counts and the request log (e.g. before measuring an idle cycle)."""
        self.requests.clear()
        self.request_log.clear()

    def shop_info(self) -> dict[str, Any]:
        """The ``Shop`` object."""
        return {
            "id": "gid://shopify/Shop/1",
            "name": self.shop_name,
            "myshopifyDomain": self.shop_domain,
            "email": f"owner@{self.shop_domain}",
            "contactEmail": f"owner@{self.shop_domain}",
            "currencyCode": self.currency,
            "ianaTimezone": "Europe/Copenhagen",
            "taxesIncluded": True,
        }

    def summary(self) -> dict[str, Any]:
        """A JSON-able overview of the shop and the traffic it has seen."""
        stock: dict[str, dict[str, dict[str, int]]] = {}
        for (item_id, location_id), level in self.levels.items():
            sku = self.inventory_items[item_id].sku or item_id
            stock.setdefault(sku, {})[self.locations[location_id].name] = {
                "available": level.available,
                "on_hand": level.on_hand,
                "committed": level.committed,
            }
        return {
            "shop": self.shop_name,
            "locations": len(self.locations),
            "products": len(self.products),
            "variants": len(self.variants),
            "orders": len(self.orders),
            "fulfillments": sum(len(order.fulfillments) for order in self.orders.values()),
            "customers": len(self.customers),
            "requests": dict(self.requests),
            "inventory_applications": len(self.inventory_applications),
            "idempotent_replays": self.idempotent_replays,
            "bucket": self.bucket.status(),
            "stock": stock,
        }

    # --- search ---------------------------------------------------------------------------------

    def search(
        self,
        rows: Iterable[T],
        query: str | None,
        matches: Callable[[T, SearchTerm], bool | None],
    ) -> list[T]:
        """Rows matching every understood term of ``query``; unknown terms are ignored.

        With a filter present, rows changed within :attr:`search_lag` seconds are not yet
        in the index and are left out, as Shopify's lagging search does.
        """
        # "a:1 OR a:2" (no parentheses): a row matches when every term of one alternative does
        alternatives = [parse_search(part) for part in re.split(r"\s+OR\s+", query or "")]
        alternatives = [terms for terms in alternatives if terms]
        if not alternatives:
            return list(rows)
        horizon = self._stamp() - timedelta(seconds=self.search_lag) if self.search_lag > 0 else None
        result = []
        for row in rows:
            if horizon is not None and cast(Any, row).updated_at > horizon:
                continue
            for terms in alternatives:
                verdicts = ((matches(row, term), term.negate) for term in terms)
                if all(verdict is None or verdict != negate for verdict, negate in verdicts):
                    result.append(row)
                    break
        return result

    def order_matches(self, order: Order, term: SearchTerm) -> bool | None:
        """One search term against an order (None: not a filter the simulator knows)."""
        if term.field in {"updated_at", "created_at", "processed_at"}:
            return _compare(getattr(order, term.field), term)
        if term.field == "test":
            flag = _flag(term.value)
            return None if flag is None else order.test == flag
        if term.field == "sku":
            return any(_text_matches(li.sku, term.value) for li in order.line_items)
        if term.field == "status":
            states = {s.strip().lower() for s in term.value.split(",")}
            if "any" in states:
                return True
            current = "cancelled" if order.cancelled_at else "closed" if order.closed_at else "open"
            return current in states
        if term.field == "email":
            return _text_matches(order.email, term.value)
        if term.field == "id":
            return str(_gid_number(order.id)) == term.value
        if term.field == "financial_status":
            wanted = {v.strip().upper() for v in term.value.split(",")}
            return "ANY" in wanted or (order.display_financial_status or "") in wanted
        if term.field == "fulfillment_status":
            matching: set[str] = set()
            for value in term.value.lower().split(","):
                if value.strip() == "any":
                    return True
                matching |= _FULFILLMENT_FILTER.get(value.strip(), set())
            return order.display_fulfillment_status in matching
        return None

    def product_matches(self, product: Product, term: SearchTerm) -> bool | None:
        """One search term against a product."""
        if term.field in {"updated_at", "created_at"}:
            return _compare(getattr(product, term.field), term)
        if term.field == "status":
            return product.status.lower() in {s.strip().lower() for s in term.value.split(",")}
        if term.field == "sku":
            return any(
                _text_matches(self.inventory_items[self.variants[v].inventory_item_id].sku, term.value)
                for v in product.variant_ids
            )
        if term.field in {"title", "product_type", "vendor", "handle"}:
            return _text_matches(getattr(product, term.field), term.value)
        return None

    def variant_matches(self, variant: ProductVariant, term: SearchTerm) -> bool | None:
        """One search term against a variant."""
        if term.field in {"updated_at", "created_at"}:
            return _compare(getattr(variant, term.field), term)
        if term.field == "sku":
            return _text_matches(self.inventory_items[variant.inventory_item_id].sku, term.value)
        if term.field == "barcode":
            return _text_matches(variant.barcode, term.value)
        if term.field == "product_id":
            return str(_gid_number(variant.product_id)) == term.value
        return None

    def variant_sort_key(self, sort: str) -> Callable[[ProductVariant], SortKey]:
        """Sort key for a ``ProductVariantSortKeys`` value (unknown ones sort by id)."""
        if sort == "SKU":
            return lambda v: (
                (self.inventory_items[v.inventory_item_id].sku or "").lower(),
                _gid_number(v.id),
            )
        if sort == "TITLE":
            return lambda v: (v.title.lower(), _gid_number(v.id))
        if sort == "POSITION":
            return lambda v: (v.position, _gid_number(v.id))
        return _by_id

    # --- mutations ------------------------------------------------------------------------------

    def set_quantities(self, payload: dict[str, Any], key: str) -> dict[str, Any]:
        """``inventorySetQuantities`` under idempotency key ``key``.

        The same key with the same input answers the stored result without applying
        anything again; the same key with a different input is a userError.
        """
        fingerprint = json.dumps(payload, sort_keys=True, default=str)
        previous = self._idempotency.get(key)
        if previous is not None:
            if previous[0] == fingerprint:
                self.idempotent_replays += 1
                return previous[1]
            return {
                "inventoryAdjustmentGroup": None,
                "userErrors": [
                    {
                        "code": "IDEMPOTENCY_KEY_PARAMETER_MISMATCH",
                        "field": None,
                        "message": "The same idempotency key cannot be used with different operation parameters.",
                    }
                ],
            }
        result = self._apply_quantities(payload, key)
        self._idempotency[key] = (fingerprint, result)
        if result.get("inventoryAdjustmentGroup") is not None:
            self.adjustment_groups += 1
        return result

    def _apply_quantities(self, payload: dict[str, Any], key: str) -> dict[str, Any]:
        name, reason = payload["name"], payload["reason"]
        reference = payload.get("referenceDocumentUri")
        quantities: list[dict[str, Any]] = payload["quantities"]
        if len(quantities) > MAX_PAGE_SIZE:
            # an input-size violation is a top-level error, not a userError
            raise GraphQLError(
                f"The input array size of {len(quantities)} is greater than the maximum allowed of {MAX_PAGE_SIZE}.",
                extensions={"code": "MAX_INPUT_SIZE_EXCEEDED"},
            )
        missing = [str(i) for i, q in enumerate(quantities) if "changeFromQuantity" not in q]
        if missing:
            raise GraphQLError(
                "changeFromQuantity is required on every quantity (null opts out of the check); "
                f"missing at quantities {', '.join(missing)}",
                extensions={"code": "INVALID_FIELD_ARGUMENTS"},
            )
        errors: list[dict[str, Any]] = []

        def error(code: str, message: str, *path: str) -> None:
            errors.append({"code": code, "field": ["input", *path], "message": message})

        if name not in {"available", "on_hand"}:
            error("INVALID_NAME", "The quantity name must be either 'available' or 'on_hand'.", "name")
        if reason not in INVENTORY_REASONS:
            error("INVALID_REASON", "The specified reason is invalid.", "reason")
        if reference is not None and "://" not in reference:
            error(
                "INVALID_REFERENCE_DOCUMENT",
                "The specified reference document is invalid.",
                "referenceDocumentUri",
            )
        planned: list[tuple[tuple[str, str], int]] = []
        seen: set[tuple[str, str]] = set()
        for index, quantity in enumerate(quantities):
            at = ("quantities", str(index))
            item = self.inventory_items.get(quantity["inventoryItemId"])
            location = self.locations.get(quantity["locationId"])
            if item is None:
                error(
                    "INVALID_INVENTORY_ITEM",
                    "The specified inventory item could not be found.",
                    *at,
                    "inventoryItemId",
                )
                continue
            if location is None:
                error("INVALID_LOCATION", "The specified location could not be found.", *at, "locationId")
                continue
            if not item.tracked:
                error(
                    "NON_MUTABLE_INVENTORY_ITEM",
                    "The inventory item is not tracked, so its quantities cannot be set.",
                    *at,
                    "inventoryItemId",
                )
                continue
            pair = (item.id, location.id)
            if pair in seen:
                error(
                    "NO_DUPLICATE_INVENTORY_ITEM_ID_GROUP_ID_PAIR",
                    "The combination of inventoryItemId and locationId must be unique.",
                    *at,
                )
                continue
            seen.add(pair)
            value: int = quantity["quantity"]
            if value > MAX_QUANTITY:
                error(
                    "INVALID_QUANTITY_TOO_HIGH",
                    "The quantity can't be higher than 1,000,000,000.",
                    *at,
                    "quantity",
                )
                continue
            if value < -MAX_QUANTITY:
                error(
                    "INVALID_QUANTITY_TOO_LOW",
                    "The quantity can't be lower than -1,000,000,000.",
                    *at,
                    "quantity",
                )
                continue
            if name == "on_hand" and value < 0:
                error("INVALID_QUANTITY_NEGATIVE", "The quantity can't be negative.", *at, "quantity")
                continue
            existing = self.levels.get(pair)
            current = existing.quantity(name) if existing and name in {"available", "on_hand"} else 0
            expected = quantity["changeFromQuantity"]
            if expected is not None and expected != current:
                error(
                    "CHANGE_FROM_QUANTITY_STALE",
                    f"The changeFromQuantity value {expected} does not match the persisted value {current}.",
                    *at,
                    "changeFromQuantity",
                )
                continue
            planned.append((pair, value))
        if errors:
            # all or nothing: one bad quantity and the call applies none of them
            return {"inventoryAdjustmentGroup": None, "userErrors": errors}
        stamp = self._stamp()
        changes: list[dict[str, Any]] = []
        applied: list[tuple[str, str, int, int]] = []
        for pair, value in planned:
            # a level is created only now, so a rejected call leaves no trace
            level = self._level(*pair)
            delta = value - level.quantity(name)
            level.on_hand += delta
            self._touch_stock(level)
            item, location = self.inventory_items[level.item_id], self.locations[level.location_id]
            other = "on_hand" if name == "available" else "available"
            # setting one of available/on_hand moves the other by the same delta
            changes.extend(
                {
                    "name": changed,
                    "delta": delta,
                    "quantityAfterChange": level.quantity(changed),
                    "item": item,
                    "location": location,
                    "ledgerDocumentUri": None,
                }
                for changed in (name, other)
            )
            applied.append((item.id, location.id, value, delta))
        group = InventoryAdjustmentGroup(
            id=self._gid("InventoryAdjustmentGroup"),
            created_at=stamp,
            reason=reason,
            reference_document_uri=reference,
            changes=changes,
        )
        self._register(group)
        self.inventory_applications.append(
            InventoryApplication(key, stamp, name, reason, reference, tuple(applied))
        )
        return {"inventoryAdjustmentGroup": group, "userErrors": []}

    def product_create(self, fields: Mapping[str, Any]) -> dict[str, Any]:
        """``productCreate``: a product with one default variant, stocked with 0 everywhere."""
        title = (fields.get("title") or "").strip()
        if not title:
            return {
                "product": None,
                "shop": self.shop_info(),
                "userErrors": [{"field": ["title"], "message": "Title can't be blank"}],
            }
        added = self.add_product(
            title,
            description_html=fields.get("descriptionHtml") or "",
            product_type=fields.get("productType") or "",
            vendor=fields.get("vendor") or self.shop_name,
            status=fields.get("status") or "ACTIVE",
            tags=fields.get("tags") or (),
        )
        product = self.products[added.product_id]
        if fields.get("handle"):
            product.handle = fields["handle"]
        return {"product": product, "shop": self.shop_info(), "userErrors": []}

    def product_update(self, fields: Mapping[str, Any], identifier: Mapping[str, Any]) -> dict[str, Any]:
        """``productUpdate`` by ``product.id``, ``identifier.id`` or ``identifier.handle``."""
        product_id = fields.get("id") or identifier.get("id")
        product = self.products.get(product_id or "")
        if product is None and identifier.get("handle"):
            product = next((p for p in self.products.values() if p.handle == identifier["handle"]), None)
        if product is None:
            return {"product": None, "userErrors": [{"field": ["id"], "message": "Product does not exist"}]}
        if "title" in fields and not (fields["title"] or "").strip():
            return {"product": None, "userErrors": [{"field": ["title"], "message": "Title can't be blank"}]}
        mapping = {
            "title": "title",
            "descriptionHtml": "description_html",
            "productType": "product_type",
            "vendor": "vendor",
            "status": "status",
            "handle": "handle",
            "tags": "tags",
        }
        for graphql_name, attribute in mapping.items():
            if graphql_name in fields and fields[graphql_name] is not None:
                value = fields[graphql_name]
                setattr(product, attribute, list(value) if attribute == "tags" else value)
        product.updated_at = self._stamp()
        return {"product": product, "userErrors": []}

    def variants_bulk_update(
        self, product_id: str, updates: list[dict[str, Any]], *, partial: bool = False
    ) -> dict[str, Any]:
        """``productVariantsBulkUpdate``: price, barcode and inventory item fields of existing variants."""
        product = self.products.get(product_id)
        if product is None:
            return {
                "product": None,
                "productVariants": None,
                "userErrors": [
                    {
                        "code": "PRODUCT_DOES_NOT_EXIST",
                        "field": ["productId"],
                        "message": "Product does not exist",
                    }
                ],
            }
        if len(updates) > MAX_PAGE_SIZE:
            raise GraphQLError(
                f"The input array size of {len(updates)} is greater than the maximum allowed of {MAX_PAGE_SIZE}.",
                extensions={"code": "MAX_INPUT_SIZE_EXCEEDED"},
            )
        errors: list[dict[str, Any]] = []
        valid: list[tuple[ProductVariant, dict[str, Any]]] = []
        for index, update in enumerate(updates):
            at = ["variants", str(index)]
            variant = self.variants.get(update.get("id") or "")
            if not update.get("id"):
                errors.append(
                    {
                        "code": "PRODUCT_VARIANT_ID_MISSING",
                        "field": [*at, "id"],
                        "message": "Product variant is missing ID attribute",
                    }
                )
                continue
            if variant is None or variant.product_id != product_id:
                errors.append(
                    {
                        "code": "PRODUCT_VARIANT_DOES_NOT_EXIST",
                        "field": [*at, "id"],
                        "message": "Product variant does not exist",
                    }
                )
                continue
            bad_price = False
            for money in ("price", "compareAtPrice"):
                if update.get(money) is not None and _to_decimal(update[money], money) < 0:
                    errors.append(
                        {
                            "code": "NEGATIVE_PRICE_VALUE",
                            "field": [*at, money],
                            "message": "Price can't be negative",
                        }
                    )
                    bad_price = True
            cost = (update.get("inventoryItem") or {}).get("cost")
            if cost is not None and _to_decimal(cost, "cost") < 0:
                errors.append(
                    {
                        "code": "INVALID_INPUT",
                        "field": [*at, "inventoryItem", "cost"],
                        "message": "Cost can't be negative",
                    }
                )
                bad_price = True
            if not bad_price:
                valid.append((variant, update))
        if errors and not partial:
            return {"product": product, "productVariants": None, "userErrors": errors}
        stamp = self._stamp()
        changed: list[ProductVariant] = []
        for variant, update in valid:
            item = self.inventory_items[variant.inventory_item_id]
            if update.get("price") is not None:
                variant.price = _to_decimal(update["price"], "price")
            if "compareAtPrice" in update:
                value = update["compareAtPrice"]
                variant.compare_at_price = None if value is None else _to_decimal(value, "compareAtPrice")
            if "barcode" in update:
                variant.barcode = update["barcode"]
            if update.get("taxable") is not None:
                variant.taxable = update["taxable"]
            item_input: dict[str, Any] = update.get("inventoryItem") or {}
            if "sku" in item_input:
                item.sku = item_input["sku"]
            if item_input.get("tracked") is not None:
                item.tracked = item_input["tracked"]
            if "cost" in item_input:
                item.unit_cost = (
                    None if item_input["cost"] is None else _to_decimal(item_input["cost"], "cost")
                )
            if item_input.get("requiresShipping") is not None:
                item.requires_shipping = item_input["requiresShipping"]
            for graphql_name in ("harmonizedSystemCode", "countryCodeOfOrigin"):
                if graphql_name in item_input:
                    setattr(item, _snake(graphql_name), item_input[graphql_name])
            weight = (item_input.get("measurement") or {}).get("weight")
            if weight is not None:
                item.weight = (weight["unit"], float(weight["value"]))
            variant.updated_at = item.updated_at = stamp
            changed.append(variant)
        if changed:
            product.updated_at = stamp
        return {"product": product, "productVariants": changed, "userErrors": errors}

    def fulfillment_create(self, fields: Mapping[str, Any], *, message: str | None = None) -> dict[str, Any]:
        """``fulfillmentCreate``: ship units of one order's fulfillment orders at one location.

        All or nothing, like Shopify: an unknown or unfulfillable (held, closed, cancelled)
        fulfillment order, a line item of another fulfillment order, or a quantity that is
        not positive or above ``remainingQuantity`` is a userError and changes nothing. A
        fulfillment order given without line items is fulfilled in full.
        """
        groups: list[dict[str, Any]] = fields["lineItemsByFulfillmentOrder"]

        def refuse(text: str) -> dict[str, Any]:
            # Shopify points these at the whole input, not at the offending item
            return {"fulfillment": None, "userErrors": [{"field": ["fulfillment"], "message": text}]}

        if not groups:
            return refuse("Line items by fulfillment order must contain at least one fulfillment order.")
        if len(groups) > MAX_PAGE_SIZE:
            raise GraphQLError(
                f"The input array size of {len(groups)} is greater than the maximum allowed of {MAX_PAGE_SIZE}.",
                extensions={"code": "MAX_INPUT_SIZE_EXCEEDED"},
            )
        plan: list[tuple[SimFulfillmentOrder, list[tuple[SimFulfillmentOrderLine, int]]]] = []
        for group in groups:
            fo = self.node(group["fulfillmentOrderId"])
            if not isinstance(fo, SimFulfillmentOrder):
                return refuse(f"Fulfillment order {group['fulfillmentOrderId']} does not exist.")
            if any(fo is planned for planned, _ in plan):
                return refuse(f"Fulfillment order {fo.id} is given more than once.")
            if not fo.fulfillable:
                return refuse(f"Fulfillment order {fo.id} has an unfulfillable status= {fo.status.lower()}.")
            items = group.get("fulfillmentOrderLineItems")
            wanted: dict[str, int] = {}
            if not items:
                wanted = {
                    line.id: line.remaining_quantity for line in fo.line_items if line.remaining_quantity
                }
            for item in items or ():
                wanted[item["id"]] = wanted.get(item["id"], 0) + item["quantity"]
            by_id = {line.id: line for line in fo.line_items}
            picks: list[tuple[SimFulfillmentOrderLine, int]] = []
            for line_id, units in wanted.items():
                line = by_id.get(line_id)
                if line is None:
                    return refuse(
                        f"Fulfillment order line item {line_id} is not on fulfillment order {fo.id}."
                    )
                if not 0 < units <= line.remaining_quantity:
                    return refuse("Invalid fulfillment order line item quantity requested.")
                picks.append((line, units))
            if not picks:
                return refuse("Invalid fulfillment order line item quantity requested.")
            plan.append((fo, picks))
        if len({fo.order_id for fo, _ in plan}) > 1:
            return refuse("All fulfillment orders must belong to the same order.")
        if len({fo.location_id for fo, _ in plan}) > 1:
            return refuse("All fulfillment orders must be assigned to the same location.")
        order = self.orders[plan[0][0].order_id]
        tracking = fields.get("trackingInfo") or {}
        notify = bool(fields.get("notifyCustomer"))
        # one fulfilment however many fulfillment orders it draws from
        fulfillment = self._fulfil(order, plan, tracking=tracking, notify=notify, message=message)
        return {"fulfillment": fulfillment, "userErrors": []}

    def fulfillment_tracking_info_update(
        self, fulfillment_id: str, tracking: Mapping[str, Any], *, notify: bool = False
    ) -> dict[str, Any]:
        """``fulfillmentTrackingInfoUpdate``: replace a fulfilment's tracking (fields left
        out become empty), so sending the same values twice changes nothing more."""
        fulfillment = self.node(fulfillment_id)
        if not isinstance(fulfillment, SimFulfillment):
            return {
                "fulfillment": None,
                "userErrors": [{"field": ["fulfillmentId"], "message": "Fulfillment does not exist."}],
            }
        fulfillment.tracking_company = tracking.get("company")
        fulfillment.tracking_number = tracking.get("number")
        fulfillment.tracking_url = tracking.get("url")
        fulfillment.tracking_updates.append(notify)
        stamp = self._stamp()
        fulfillment.updated_at = self.orders[fulfillment.order_id].updated_at = stamp
        return {"fulfillment": fulfillment, "userErrors": []}

    # --- bulk operations ----------------------------------------------------------------------------

    def run_bulk_query(self, query: str, *, group_objects: bool = False) -> dict[str, Any]:
        """``bulkOperationRunQuery``: check ``query``, run it now, answer CREATED.

        The query must be valid, have one top-level field and that field must be a
        connection (not ``node``/``nodes``), as Shopify asks; otherwise ``userErrors``
        (code INVALID). More than :attr:`bulk_query_limit` running at once: LIMIT_REACHED
        (OPERATION_IN_PROGRESS with a limit of one, as before API version 2026-01).
        ``group_objects`` is accepted and ignored: nested rows always carry ``__parentId``.
        """
        del group_objects

        def refuse(code: str, message: str) -> dict[str, Any]:
            return {
                "bulkOperation": None,
                "userErrors": [{"code": code, "field": ["query"], "message": message}],
            }

        document, errors = self._document(query)
        if errors or document is None:
            return refuse("INVALID", f"Invalid bulk query: {errors[0].message if errors else 'empty'}")
        operation = get_operation_ast(document)
        if operation is None or operation.operation != OperationType.QUERY:
            return refuse("INVALID", "Invalid bulk query: one query operation is required")
        tops = [s for s in operation.selection_set.selections if isinstance(s, FieldNode)]
        root = self.schema.query_type
        top = tops[0] if len(tops) == 1 and root is not None else None
        field_type = _field_type(root, top.name.value) if top is not None and root is not None else None
        if top is None or field_type is None or not field_type.name.endswith("Connection"):
            return refuse("INVALID", "Bulk queries must contain exactly one top-level connection field")
        active = [op for op in self.bulk_operations.values() if self.bulk_status(op) in _BULK_ACTIVE]
        if len(active) >= self.bulk_query_limit:
            if self.bulk_query_limit == 1:
                return refuse(
                    "OPERATION_IN_PROGRESS",
                    f"A bulk query operation for this app and shop is already in progress: {active[0].id}.",
                )
            return refuse("LIMIT_REACHED", "Bulk operations limit reached. Please try again later.")
        token = _UNPAGED.set(True)
        try:
            result = execute_sync(self.schema, document, context_value=self, field_resolver=_default_resolver)
        finally:
            _UNPAGED.reset(token)
        if result.errors or not isinstance(result.data, dict):
            message = result.errors[0].message if result.errors else "no data"
            return refuse("INVALID", f"Invalid bulk query: {message}")
        lines: list[bytes] = []
        roots = 0
        for row in _bulk_rows(result.data[top.alias.value if top.alias else top.name.value], None):
            roots += "__parentId" not in row
            lines.append(json.dumps(row, separators=(",", ":")).encode() + b"\n")
        gid = self._gid("BulkOperation")
        found = SimBulkOperation(
            id=gid,
            query=query,
            created_at=self._stamp(),
            started=self.monotonic(),
            duration=BULK_STARTUP_SECONDS + len(lines) / self.bulk_objects_per_second,
            lines=lines,
            root_objects=roots,
            url=f"{self._base_url}/_bulk/{_gid_number(gid)}.jsonl",
        )
        self.bulk_operations[gid] = found
        return {"bulkOperation": self.bulk_view(found), "userErrors": []}

    def bulk_status(self, operation: SimBulkOperation) -> str:
        """CREATED for the start-up, RUNNING while it reads, then COMPLETED (or forced)."""
        if operation.forced is not None:
            return operation.forced
        elapsed = self.monotonic() - operation.started
        if elapsed < BULK_STARTUP_SECONDS:
            return "CREATED"
        return "RUNNING" if elapsed < operation.duration else "COMPLETED"

    def bulk_view(self, operation: SimBulkOperation) -> dict[str, Any]:
        """The operation as the ``BulkOperation`` type shows it now."""
        status = self.bulk_status(operation)
        elapsed = max(self.monotonic() - operation.started - BULK_STARTUP_SECONDS, 0.0)
        done = len(operation.lines) if status in ("COMPLETED", "EXPIRED") else 0
        if status in ("RUNNING", "FAILED", "CANCELED"):
            done = min(len(operation.lines), int(elapsed * self.bulk_objects_per_second))
        completed = status == "COMPLETED"
        return {
            "id": operation.id,
            "status": status,
            "errorCode": operation.error_code,
            "query": operation.query,
            "type": "QUERY",
            "createdAt": _iso(operation.created_at),
            "completedAt": _iso(operation.created_at + timedelta(seconds=operation.duration))
            if completed
            else None,
            "objectCount": str(done),
            "rootObjectCount": str(min(done, operation.root_objects)),
            "fileSize": str(sum(len(line) for line in operation.lines)) if completed else None,
            "url": operation.url if completed else None,
            "partialDataUrl": None,
        }

    def fail_bulk_operation(self, operation_id: str, error_code: str = "INTERNAL_SERVER_ERROR") -> None:
        """Fault hook: the operation FAILED with ``error_code`` (ACCESS_DENIED, INTERNAL_SERVER_ERROR, TIMEOUT)."""
        found = self.bulk_operations[operation_id]
        found.forced, found.error_code = "FAILED", error_code

    def expire_bulk_operation(self, operation_id: str) -> None:
        """Fault hook: the result expired (status EXPIRED, no url, the file answers 404)."""
        self.bulk_operations[operation_id].forced = "EXPIRED"

    def lose_bulk_operation(self, operation_id: str) -> None:
        """Fault hook: Shopify no longer knows the operation (``bulkOperation`` is null, the file 404)."""
        del self.bulk_operations[operation_id]

    def _bulk_file(self, path: str) -> httpx.Response:
        """``GET /_bulk/<number>.jsonl``: a completed operation's result, streamed (no token:
        like Shopify's signed URL, the address is the credential)."""
        match = re.fullmatch(r"/_bulk/(\d+)\.jsonl", path)
        found = self.bulk_operations.get(f"gid://shopify/BulkOperation/{match[1]}") if match else None
        if found is None or self.bulk_status(found) != "COMPLETED":
            return httpx.Response(404, text="NoSuchKey\n", headers={"content-type": "text/plain"})
        self.bulk_downloads[found.id] += 1
        lines = found.lines

        async def chunks() -> AsyncIterator[bytes]:
            buffer = bytearray()
            for line in lines:
                buffer += line
                if len(buffer) >= 65536:
                    yield bytes(buffer)
                    buffer.clear()
            if buffer:
                yield bytes(buffer)

        return httpx.Response(200, content=chunks(), headers={"content-type": "application/jsonl"})

    # --- HTTP ---------------------------------------------------------------------------------------

    async def handle(self, request: httpx.Request) -> httpx.Response:
        """Answer one HTTP request (an ``httpx.MockTransport`` handler; :func:`daemon.webserver.handler_app` serves it)."""
        path = request.url.path
        if path.startswith("/_sim/"):
            return await self._control(request)
        if path.startswith("/_bulk/"):
            return self._bulk_file(path)
        if path == _OAUTH_PATH:
            return await self._token(request)
        match = _GRAPHQL_PATH.match(path)
        if match is None:
            return _json_response(404, {"errors": "Not Found"})
        if request.method != "POST":
            return _json_response(405, {"errors": "Method Not Allowed"}, {"allow": "POST"})
        if match["version"] not in self.api_versions:
            return _json_response(404, {"errors": "Not Found"})
        return await self._graphql(request, match["version"])

    def _authorized(self, request: httpx.Request) -> bool:
        token = request.headers.get("x-shopify-access-token")
        if token is None:
            return False
        if token in self.static_tokens:
            return True
        expires = self._issued_tokens.get(token)
        return expires is not None and self.monotonic() < expires

    async def _token(self, request: httpx.Request) -> httpx.Response:
        self.requests["oauth"] += 1
        if request.method != "POST":
            return _json_response(405, {"errors": "Method Not Allowed"}, {"allow": "POST"})
        body = (await request.aread()).decode("utf-8", "replace")
        fields: dict[str, str]
        if request.headers.get("content-type", "").startswith("application/json"):
            try:
                parsed = json.loads(body)
            except ValueError:
                return _json_response(
                    400, {"error": "invalid_request", "error_description": "malformed JSON"}
                )
            fields = {str(k): str(v) for k, v in parsed.items()} if isinstance(parsed, dict) else {}
        else:
            fields = {k: v[-1] for k, v in urllib.parse.parse_qs(body).items()}
        if fields.get("grant_type") != "client_credentials":
            return _json_response(
                400,
                {
                    "error": "unsupported_grant_type",
                    "error_description": "only client_credentials is supported",
                },
            )
        client_id = fields.get("client_id", "")
        if client_id not in self.clients or not secrets.compare_digest(
            self.clients[client_id], fields.get("client_secret", "")
        ):
            return _json_response(
                401, {"error": "invalid_client", "error_description": "Client authentication failed"}
            )
        return _json_response(
            200,
            {
                "access_token": self.issue_token(),
                "scope": self.scopes,
                "expires_in": int(self.token_lifetime),
            },
        )

    async def _control(self, request: httpx.Request) -> httpx.Response:
        """The ``/_sim/`` control API: seed and change the shop over HTTP (no token needed).

        ============================  ======================================================
        ``GET /_sim/state``           :meth:`summary`
        ``POST /_sim/products``       ``{"title", "variants": [{"sku", "price", "stock" …}],
                                      "status", "vendor" …}`` → 201 the new ids
        ``POST /_sim/orders``         ``{"lines": [{"sku", "quantity"}], …}`` → 201 ``{"id", "name"}``
        ``POST /_sim/sales``          ``{"sku", "quantity"}``: a customer buys → 201 ``{"id", "name"}``
        ``POST /_sim/fulfillments``   ``{"order"}``: :meth:`fulfill_order` → 201 ``{"ids"}``
        ``GET /_sim/fulfillments``    ``?order=…``: :meth:`fulfillments` as JSON
        ``POST /_sim/payments``       ``{"order", "status"}``: :meth:`set_financial_status`
                                      (``status`` defaults to ``PAID``)
        ``POST /_sim/holds``          ``{"order"}``: :meth:`hold_fulfillment_order`
        ``DELETE /_sim/holds``        ``{"order"}``: :meth:`release_fulfillment_order`
        ``POST /_sim/moves``          ``{"order", "location_id"}``: :meth:`move_fulfillment_order`
                                      → 200 ``{"ids"}``
        ``GET``/``PUT /_sim/faults``  the fault knobs (:meth:`Faults.from_json`)
        ``POST /_sim/tokens/expire``  every client-credentials token expires now
        ============================  ======================================================

        ``order`` is an order's id or its name (``#1001``).

        A body that does not fit is answered 422 ``{"error": …}``.
        """
        route = (request.method, request.url.path.rstrip("/"))
        try:
            if route == ("GET", "/_sim/state"):
                return _json_response(200, self.summary())
            if route == ("GET", "/_sim/faults"):
                return _json_response(200, self.faults.to_json())
            if route == ("PUT", "/_sim/faults"):
                self.faults = Faults.from_json(await _control_body(request))
                return _json_response(200, self.faults.to_json())
            if route == ("POST", "/_sim/tokens/expire"):
                self.expire_tokens()
                return _json_response(200, {"expired": len(self._issued_tokens)})
            if route == ("POST", "/_sim/products"):
                payload = await _control_body(request)
                options = {k: v for k, v in payload.items() if k not in ("title", "variants")}
                variants = [_variant_spec(v) for v in payload.get("variants") or [{}]]
                added = self.add_product(str(payload["title"]), variants, **options)
                return _json_response(
                    201,
                    {
                        "product_id": added.product_id,
                        "variant_ids": list(added.variant_ids),
                        "inventory_item_ids": list(added.inventory_item_ids),
                    },
                )
            if route == ("POST", "/_sim/orders"):
                payload = await _control_body(request)
                lines: list[OrderLineSpec] = [
                    {"sku": str(line["sku"]), "quantity": int(line.get("quantity", 1))}
                    for line in payload["lines"]
                ]
                options = {k: v for k, v in payload.items() if k != "lines"}
                order_id = self.create_order(lines, **options)
                return _json_response(201, {"id": order_id, "name": self.orders[order_id].name})
            if route == ("POST", "/_sim/sales"):
                payload = await _control_body(request)
                options = {k: v for k, v in payload.items() if k not in ("sku", "quantity")}
                order_id = self.sell(str(payload["sku"]), int(payload.get("quantity", 1)), **options)
                return _json_response(201, {"id": order_id, "name": self.orders[order_id].name})
            if route == ("GET", "/_sim/fulfillments"):
                # no order parameter: KeyError "''", answered 422 like any unknown order
                order_ref = request.url.params.get("order", "")
                return _json_response(200, [_fulfillment_json(f) for f in self.fulfillments(order_ref)])
            if route[1] in {"/_sim/fulfillments", "/_sim/payments", "/_sim/holds", "/_sim/moves"}:
                return await self._control_order(route, await _control_body(request))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            return _json_response(422, {"error": str(exc)})
        return _json_response(404, {"errors": "Not Found"})

    async def _control_order(self, route: tuple[str, str], payload: dict[str, Any]) -> httpx.Response:
        """The control routes that change one order's payment or fulfilment."""
        order = str(payload["order"])
        if route == ("POST", "/_sim/fulfillments"):
            return _json_response(201, {"ids": self.fulfill_order(order)})
        if route == ("POST", "/_sim/payments"):
            self.set_financial_status(order, str(payload.get("status", "PAID")))
        elif route == ("POST", "/_sim/holds"):
            self.hold_fulfillment_order(order)
        elif route == ("DELETE", "/_sim/holds"):
            self.release_fulfillment_order(order)
        elif route == ("POST", "/_sim/moves"):
            return _json_response(
                200, {"ids": self.move_fulfillment_order(order, str(payload["location_id"]))}
            )
        else:
            return _json_response(405, {"errors": "Method Not Allowed"})
        found = self._order(order)
        return _json_response(
            200,
            {
                "id": found.id,
                "display_financial_status": found.display_financial_status,
                "display_fulfillment_status": found.display_fulfillment_status,
                "fulfillment_orders": [
                    {"id": fo.id, "status": fo.status, "location_id": fo.location_id}
                    for fo in found.fulfillment_orders
                ],
            },
        )

    def _document(self, text: str) -> tuple[DocumentNode | None, list[GraphQLError]]:
        """Parse and validate once per distinct document (clients resend the same few)."""
        cache_key = (text, id(self.validate_schema))
        cached = self._documents.get(cache_key)
        if cached is not None:
            return cached
        try:
            document = parse(text)
        except GraphQLError as exc:
            result: tuple[DocumentNode | None, list[GraphQLError]] = (None, [exc])
        else:
            errors: list[GraphQLError] = []
            if self.validate_schema is not None:
                errors = list(validate(self.validate_schema, document))
            if not errors:
                errors = list(validate(self.schema, document))
            result = (document, errors)
        if len(self._documents) > 256:
            self._documents.clear()
        self._documents[cache_key] = result
        return result

    def _cost_extension(self, requested: int, actual: int | None) -> dict[str, Any]:
        return {
            "cost": {
                "requestedQueryCost": requested,
                "actualQueryCost": actual,
                "throttleStatus": self.bucket.status(),
            }
        }

    async def _graphql(self, request: httpx.Request, version: str) -> httpx.Response:
        raw = await request.aread()
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        text = body.get("query") if isinstance(body, dict) else None
        operation_name = body.get("operationName") if isinstance(body, dict) else None
        if not isinstance(operation_name, str):
            operation_name = None
        document, errors = self._document(text) if isinstance(text, str) else (None, [])
        operation = get_operation_ast(document, operation_name) if document is not None else None
        label = operation_name or (operation.name.value if operation and operation.name else "anonymous")
        # credentials first, as Shopify does: an anonymous caller learns nothing about its request
        if not self._authorized(request):
            self._log(label, 401, "unauthorized", 0)
            return _json_response(401, {"errors": _UNAUTHORIZED})
        if not isinstance(body, dict) or not isinstance(text, str):
            self._log(label, 400, "bad_request", 0)
            return _json_response(
                400, {"errors": "Bad Request: expected a JSON object with a 'query' string"}
            )
        variables = body.get("variables") or {}
        headers = {"x-shopify-api-version": version}
        if self.faults.delay:
            await self.sleep(self.faults.delay)
        fault = self.faults.draw()
        self.bucket.refill(self.monotonic())
        if fault == "error":
            self._log(label, 503, "fault_error", 0)
            return httpx.Response(
                503,
                text="<html><body><h1>503 Service Unavailable</h1></body></html>",
                headers={"content-type": "text/html"},
            )
        if fault == "throttle":
            self._log(label, 429, "fault_throttle", 0)
            return _json_response(
                429,
                {"errors": [{"message": "Throttled", "extensions": {"code": "THROTTLED"}}]},
                {**headers, "retry-after": "1.0"},
            )
        if errors or document is None:
            self._log(label, 200, "invalid_document", 0)
            return self._respond(
                200,
                {"errors": [e.formatted for e in errors], "extensions": self._cost_extension(0, 0)},
                headers,
                fault,
            )
        if operation is None:
            message = (
                f"Unknown operation named '{operation_name}'."
                if operation_name
                else "An operation name is required"
            )
            self._log(label, 200, "invalid_document", 0)
            return self._respond(
                200,
                {"errors": [{"message": message}], "extensions": self._cost_extension(0, 0)},
                headers,
                fault,
            )
        if not isinstance(variables, dict):
            self._log(label, 200, "invalid_document", 0)
            return self._respond(
                200, {"errors": [{"message": "variables must be an object"}]}, headers, fault
            )
        requested = estimate_cost(self.schema, document, operation, variables)
        if requested > MAX_QUERY_COST:
            self._log(label, 200, "max_cost_exceeded", requested)
            return self._respond(
                200,
                {
                    "errors": [
                        {
                            "message": f"Query cost is {requested}, which exceeds the single query max cost limit ({MAX_QUERY_COST}).",
                            "extensions": {
                                "code": "MAX_COST_EXCEEDED",
                                "cost": requested,
                                "maxCost": MAX_QUERY_COST,
                            },
                        }
                    ],
                    "extensions": self._cost_extension(requested, None),
                },
                headers,
                fault,
            )
        if fault == "cost_throttle":
            # other traffic on the shop emptied the bucket: Shopify's own THROTTLED answer
            # follows, with the real throttleStatus the client computes its wait from
            self.bucket.drain()
        # a hair of tolerance: a client that waited exactly (cost − available) / restoreRate
        # must not be throttled by float rounding in the refill
        if requested > (self.bucket.available or 0.0) + 1e-6:
            outcome = "fault_cost_throttle" if fault == "cost_throttle" else "throttled"
            self._log(label, 200, outcome, requested)
            return self._respond(
                200,
                {
                    "errors": [
                        {
                            "message": "Throttled",
                            "extensions": {
                                "code": "THROTTLED",
                                "documentation": "https://shopify.dev/api/usage/rate-limits",
                            },
                        }
                    ],
                    "extensions": self._cost_extension(requested, None),
                },
                headers,
                fault,
            )
        self.bucket.spend(requested)
        self._base_url = f"{request.url.scheme}://{request.url.netloc.decode('ascii')}"
        result: ExecutionResult = execute_sync(
            self.schema,
            document,
            context_value=self,
            variable_values=variables,
            operation_name=operation_name,
            field_resolver=_default_resolver,
        )
        payload: dict[str, Any] = {}
        if result.errors:
            payload["errors"] = [error.formatted for error in result.errors]
        payload["data"] = result.data
        # Shopify charges what the query actually returned and refunds the rest
        is_mutation = operation.operation == OperationType.MUTATION
        actual = requested if is_mutation else min(requested, actual_cost(result.data))
        self.bucket.available = min(self.bucket.maximum, (self.bucket.available or 0.0) + requested - actual)
        payload["extensions"] = self._cost_extension(requested, actual)
        self._log(label, 200, "error" if result.errors else "ok", requested)
        return self._respond(200, payload, headers, fault)

    def _respond(
        self, status: int, payload: object, headers: Mapping[str, str], fault: str | None
    ) -> httpx.Response:
        response = _json_response(status, payload, headers)
        if fault == "truncate":
            # the work is done, only the answer is lost: exactly when idempotency keys matter
            kept = {k: v for k, v in response.headers.items() if k.lower() != "content-length"}
            return httpx.Response(status, content=truncate_body(response.content), headers=kept)
        return response

    def _log(self, operation: str, status: int, outcome: str, cost: int) -> None:
        self.requests[operation] += 1
        self.request_log.append(RequestRecord(operation, status, outcome, cost))
