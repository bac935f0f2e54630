"""A stateful simulated Rackbeat REST API.

It serves the endpoints and envelopes of ``shared/reference/rackbeat-api.md`` and nothing
invented beyond them:

* Bearer auth (401 otherwise); paths under an optional ``/api`` prefix; path numbers
  percent-decoded once from the *raw* path, so a SKU with ``/`` works;
* lists with ``page``/``limit`` (default 20, at most :attr:`RackbeatSimulator.max_limit`),
  answered 206 while more pages follow and 200 on the last, in the envelope
  ``{"<plural>": [...], "total", "pages", "limit", "page"}``; ``fields=``, ``search=``
  (case-insensitive substring, as loose as a real free-text search), ``updated_at_from`` /
  ``updated_at_to`` (``YYYY-MM-DD HH:MM:SS`` UTC) and ``order_by``/``order_direction``;
* single objects wrapped in the singular key, 201 on create, 404 for unknown numbers,
  422 ``{"message", "errors": {field: [messages]}}`` for invalid bodies;
* products with stock per location; ``in_order_quantity`` is what booked, unshipped,
  uncancelled orders reserve, ``available_quantity`` = stock − in order, as totals on the
  product and per location;
* orders: ``POST /orders/drafts`` → ``/book`` (422 when booked already) →
  ``/create-shipment`` (422 unless booked, or when it has one) → :meth:`RackbeatSimulator.ship`
  (a control method: the warehouse sends all or some of the lines, stock leaves for those,
  their reservation ends, and the order is ``is_partly_shipped`` until the last line has
  left, then ``is_shipped``). Each :meth:`~RackbeatSimulator.ship` makes one shipped
  shipment, listed by ``GET /orders/{number}/shipments`` (envelope ``order_shipments``)
  with its ``lines`` and its ``carrier`` / ``track_trace_number`` / ``track_trace_url``
  (the reference's **[assumed]** shape); :meth:`~RackbeatSimulator.add_tracking` adds a
  tracking number later and bumps the order's ``updated_at`` too;
* ``GET /orders`` also takes the boolean filters ``is_shipped``, ``is_partly_shipped`` and
  ``is_booked`` (``true``/``false``, ``1``/``0``); :attr:`RackbeatSimulator.ignore_order_filters`
  makes it ignore them and the ``updated_at`` range, as a live API might;
* ``DELETE /orders/{number}`` removes a draft (204, no body; later reads are 404) and
  refuses a booked order with 422;
* ``refute={...}`` (:data:`REFUTABLE`): the account behaves otherwise than the reference
  assumes, one setting per fact of :mod:`daemon.live_check` (the search ignores
  ``your_reference``, ``limit`` capped lower, fields renamed, numbers as floats …);
* a per-minute request limit answered with 429 and ``Retry-After``; faults from
  :class:`~daemon.sim.faults.Faults` (5xx, 429 bursts, truncated bodies, delay; a cost
  throttle is a 429 here too).

JSON types vary as the reference says they may: customer, order and reference-list numbers
are JSON numbers when they are all digits, location and product numbers are strings.
Product timestamps are ISO 8601 with a +01:00 offset, customer and order timestamps
``YYYY-MM-DD HH:MM:SS`` UTC, so a client must read both.

Tests and the demo drive it through Python methods (:meth:`~RackbeatSimulator.add_product`,
:meth:`~RackbeatSimulator.set_stock`, :meth:`~RackbeatSimulator.goods_receipt` …) or the
``/_sim/`` HTTP control API (seed products, receive goods, set faults, revoke the key; see
:meth:`RackbeatSimulator._control`).
:meth:`RackbeatSimulator.handle` has the shape of an ``httpx.MockTransport`` handler
(:func:`daemon.webserver.handler_app` serves it on a socket). Time is injected (``now`` for
timestamps, ``monotonic`` for the rate limit, ``sleep`` for the delay fault).
"""

from __future__ import annotations

import collections
import json
import math
import secrets
import time
import urllib.parse
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from typing import Any, TypeVar

import anyio
import httpx

from daemon.sim.faults import Faults, truncate_body

__all__ = [
    "DEFAULT_TOKEN",
    "REFUTABLE",
    "RackbeatSimulator",
    "RequestRecord",
    "SimCustomer",
    "SimLocation",
    "SimOrder",
    "SimOrderLine",
    "SimProduct",
    "SimShipment",
]

#: the API key every simulator accepts unless told otherwise
DEFAULT_TOKEN = "rackbeat-simulator-token"  # noqa: S105  # a well-known fake key for a simulator

#: offset of product timestamps (Rackbeat is Danish; a fixed offset keeps it tzdata-free)
_PRODUCT_OFFSET = timezone(timedelta(hours=1))
#: reference lists: path → envelope key
_REFERENCE_LISTS = {
    "payment-terms": "payment_terms",
    "employees": "employees",
    "customer-groups": "customer_groups",
    "currencies": "currencies",
    "product-groups": "product_groups",
}
_VAT_ZONES = ("domestic", "eu", "abroad")
#: what ``RackbeatSimulator(refute=…)`` can make behave otherwise than the reference
#: assumes, by the :mod:`daemon.live_check` fact each one refutes
REFUTABLE = frozenset(
    {
        "reference_search",  # GET /orders ignores ``search`` (every order comes back)
        "customer_email_search",  # GET /customers searches number and name, not the e-mail
        "list_envelope",  # lists without total/pages/page, and never 206
        "page_limit",  # ``limit`` capped at 50
        "products_updated_from",  # GET /products ignores updated_at_from/_to
        "orders_updated_from",  # GET /orders ignores its filters (ignore_order_filters)
        "product_fields",  # ``available_quantity`` is called ``available``
        "order_fields",  # ``is_booked`` is called ``booked``
        "location_stock",  # 404 on /items/{n}/locations/available
        "shipment_shape",  # a shipment's lines are ``items`` of ``product_number``
        "number_format",  # customer, order and reference numbers as JSON floats (1001.0)
        "timestamp_format",  # timestamps as ``07.12.2026 10:00``
        "reference_envelopes",  # reference lists in the envelope ``data``
    }
)
#: the boolean filters ``GET /orders`` takes (``?is_shipped=true``), each an order attribute
_ORDER_FLAGS = ("is_shipped", "is_partly_shipped", "is_booked")

T = TypeVar("T")
JSONObject = dict[str, Any]
Errors = dict[str, list[str]]


def _utc_now() -> datetime:
    return datetime.now(UTC)


# --- state -----------------------------------------------------------------------------------


@dataclass
class SimLocation:
    """A stock location."""

    number: str
    name: str
    is_default: bool = False
    parent_id: int | None = None


@dataclass
class SimProduct:
    """A product; stock lives in :attr:`RackbeatSimulator.stock`."""

    number: str
    name: str
    created_at: datetime
    updated_at: datetime
    description: str = ""
    barcode: str | None = None
    sales_price: Decimal = Decimal(0)
    cost_price: Decimal = Decimal(0)
    group: str | None = None
    weight: Decimal | None = None
    weight_unit: str = "kg"
    is_barred: bool = False
    inventory_enabled: bool = True


@dataclass
class SimCustomer:
    """A customer."""

    number: str
    name: str
    created_at: datetime
    updated_at: datetime
    contact_email: str | None = None
    contact_phone: str | None = None
    customer_group_id: str | None = None
    vat_zone: str = "domestic"
    currency: str = "DKK"
    payment_terms_id: str | None = None
    locale: str | None = None
    is_barred: bool = False


@dataclass
class SimOrderLine:
    """One order line; ``line_price`` is the unit price excluding VAT."""

    item_id: str
    name: str
    quantity: Decimal
    line_price: Decimal
    discount_percentage: Decimal = Decimal(0)
    #: how much of ``quantity`` has been shipped (:meth:`RackbeatSimulator.ship`)
    shipped: Decimal = Decimal(0)

    @property
    def total(self) -> Decimal:
        """Quantity × unit price less the discount."""
        return self.quantity * self.line_price * (1 - self.discount_percentage / 100)

    @property
    def unshipped(self) -> Decimal:
        """What is still to be shipped of this line (and, on a booked order, reserved)."""
        return self.quantity - self.shipped


@dataclass
class SimOrder:
    """A sales order: a draft until booked."""

    number: str
    customer_id: str
    currency: str
    location: str
    created_at: datetime
    updated_at: datetime
    lines: list[SimOrderLine] = field(default_factory=list)
    payment_terms_id: str | None = None
    our_reference: str | None = None
    your_reference: str | None = None
    heading: str | None = None
    delivery_address: dict[str, str] = field(default_factory=dict)
    is_booked: bool = False
    is_ready_for_shipping: bool = False
    is_shipped: bool = False
    #: some lines (or part of one) have been shipped, not all: the rest is still reserved
    is_partly_shipped: bool = False
    is_cancelled: bool = False
    is_archived: bool = False
    booked_at: datetime | None = None
    #: the ``mail.send`` flag the order was booked with (None: not given)
    mail_sent: bool | None = None

    @property
    def reserves_stock(self) -> bool:
        """Booked and neither shipped nor cancelled: its lines' unshipped quantities count
        as ``in_order`` (all of them, unless it is partly shipped)."""
        return self.is_booked and not self.is_shipped and not self.is_cancelled


@dataclass
class SimShipment:
    """One shipment of an order, made by :meth:`RackbeatSimulator.ship` (shipped at once).

    ``lines`` are (SKU, quantity) of what left with it. ``id`` is unique over the account.
    """

    id: int
    order_number: str
    lines: list[tuple[str, Decimal]]
    created_at: datetime
    updated_at: datetime
    is_shipped: bool = True
    carrier: str | None = None
    track_trace_number: str | None = None
    track_trace_url: str | None = None


@dataclass(frozen=True)
class RequestRecord:
    """One request as the simulator saw it."""

    route: str
    status: int
    note: str = ""


# --- JSON helpers ----------------------------------------------------------------------------


def _json_response(status: int, payload: object, headers: Mapping[str, str] | None = None) -> httpx.Response:
    body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
    return httpx.Response(
        status, content=body, headers={"content-type": "application/json; charset=utf-8", **(headers or {})}
    )


def _unprocessable(errors: Errors) -> httpx.Response:
    first = next(iter(errors.values()))[0]
    return _json_response(422, {"message": first, "errors": errors})


async def _control_body(request: httpx.Request) -> dict[str, Any]:
    """The JSON object a control request carries (ValueError or TypeError otherwise)."""
    payload = json.loads(await request.aread() or b"{}")
    if not isinstance(payload, dict):
        raise TypeError("expected a JSON object")
    return payload


def _not_found(what: str) -> httpx.Response:
    return _json_response(404, {"message": f"{what} not found"})


def _number_out(number: str) -> int | str:
    """A customer/order/reference number as Rackbeat sends it: a JSON number when all digits."""
    return int(number) if number.isdigit() and len(number) < 16 else number


def _quantity_out(value: Decimal) -> int | float:
    return int(value) if value == value.to_integral_value() else float(value)


def _product_time(moment: datetime) -> str:
    return moment.astimezone(_PRODUCT_OFFSET).isoformat(timespec="seconds")


def _plain_time(moment: datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def _text(value: Any) -> str | None:
    """A number or text from a request body as the string the simulator keys on."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    text = str(value).strip()
    return text or None


def _decimal(value: Any) -> Decimal | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        result = Decimal(str(value))
    except InvalidOperation:
        return None
    return result if result.is_finite() else None


def _parse_filter_time(value: str) -> datetime | None:
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _flag_param(value: str) -> bool | None:
    """A boolean query parameter (``true``/``false``, ``1``/``0``); None for anything else."""
    return {"true": True, "1": True, "false": False, "0": False}.get(value.strip().lower())


def _int_param(value: str | None, default: int) -> int:
    if value is None or not value.strip().isdigit():
        return default
    return int(value)


# --- the simulator -----------------------------------------------------------------------------


class RackbeatSimulator:
    """An in-memory Rackbeat account behind its REST API.

    Every argument is optional: the defaults give an account with two locations
    (``"1"`` the default), three payment terms (1–3), two employees (1–2), three customer
    groups (1–3), a few currencies, two product groups (``1`` goods, ``2`` services),
    the token :data:`DEFAULT_TOKEN`, no rate limit and no faults.
    """

    def __init__(
        self,
        *,
        token: str = DEFAULT_TOKEN,
        now: Callable[[], datetime] = _utc_now,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
        faults: Faults | None = None,
        requests_per_minute: int | None = None,
        max_limit: int = 100,
        default_limit: int = 20,
        prefix: str = "/api",
        stock_touches_updated_at: bool = False,
        ignore_order_filters: bool = False,
        request_log_size: int = 1000,
        refute: Iterable[str] = (),
    ) -> None:
        """``refute`` names facts of :data:`REFUTABLE` this account behaves otherwise on
        (:attr:`refute` may be changed later: the account then behaves as assumed again)."""
        self.refute = frozenset(refute)
        unknown = self.refute - REFUTABLE
        if unknown:
            raise ValueError(f"cannot refute {sorted(unknown)}; choose from {sorted(REFUTABLE)}")
        self.token = token
        self.now = now
        self.monotonic = monotonic
        self.sleep = sleep
        #: fault knobs; replace or mutate at any time
        self.faults = faults or Faults()
        #: requests per rolling minute before 429 (None: unlimited)
        self.requests_per_minute = requests_per_minute
        self.max_limit = max_limit
        self.default_limit = default_limit
        self.prefix = prefix.strip("/")
        #: whether a stock movement bumps the product's ``updated_at`` (unknown in the real API)
        self.stock_touches_updated_at = stock_touches_updated_at
        #: ``GET /orders`` ignores ``is_shipped``/``is_partly_shipped``/``is_booked`` and the
        #: ``updated_at`` range (whether the live API honours them there is not confirmed)
        self.ignore_order_filters = ignore_order_filters

        self.locations: dict[str, SimLocation] = {}
        self.products: dict[str, SimProduct] = {}
        #: product number → location number → quantity in stock
        self.stock: dict[str, dict[str, Decimal]] = {}
        #: reservations computed once per HTTP request (None outside one, or after a change)
        self._reservations: dict[tuple[str, str], Decimal] | None = None
        self._in_request = False
        self.customers: dict[str, SimCustomer] = {}
        self._orders: dict[str, SimOrder] = {}
        self.payment_terms: dict[str, str] = {"1": "Netto 8 dage", "2": "Netto 14 dage", "3": "Netto 30 dage"}
        self.employees: dict[str, str] = {"1": "Anna Lager", "2": "Bo Salg"}
        self.customer_groups: dict[str, str] = {"1": "Danmark", "2": "EU", "3": "Udland"}
        self.currencies: dict[str, str] = {
            "DKK": "Danish krone",
            "SEK": "Swedish krona",
            "NOK": "Norwegian krone",
            "EUR": "Euro",
            "USD": "US dollar",
        }
        self.product_groups: dict[str, str] = {"1": "Varer", "2": "Ydelser"}
        self._next_customer = 1001
        self._next_order = 1001
        #: every shipment by id, oldest first (:meth:`ship` makes them)
        self.shipments: dict[int, SimShipment] = {}
        self._next_shipment = 1

        #: requests by route (``"GET /products"``, ``"POST /orders/{number}/book"`` …)
        self.requests: collections.Counter[str] = collections.Counter()
        #: the most recent requests, oldest first
        self.request_log: collections.deque[RequestRecord] = collections.deque(maxlen=request_log_size)
        self._window: collections.deque[float] = collections.deque()

        self.add_location("1", "Hovedlager", is_default=True)
        self.add_location("2", "Butik")

    # --- time ---------------------------------------------------------------------------------

    def _stamp(self) -> datetime:
        moment = self.now()
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return moment.astimezone(UTC).replace(microsecond=0)

    # --- control API: locations, products, stock ------------------------------------------------

    def add_location(self, number: str, name: str, *, is_default: bool = False) -> SimLocation:
        """Add a location (``is_default`` moves the default to it)."""
        if number in self.locations:
            raise ValueError(f"location {number!r} exists")
        if is_default:
            for other in self.locations.values():
                other.is_default = False
        location = SimLocation(number=number, name=name, is_default=is_default)
        self.locations[number] = location
        return location

    @property
    def default_location(self) -> str:
        """Number of the default location."""
        for location in self.locations.values():
            if location.is_default:
                return location.number
        return next(iter(self.locations))

    def add_product(
        self,
        number: str,
        name: str | None = None,
        *,
        stock: Decimal | int | Mapping[str, Decimal | int] | None = None,
        sales_price: Decimal | int | str = 0,
        cost_price: Decimal | int | str = 0,
        barcode: str | None = None,
        description: str = "",
        group: str | None = "1",
        weight: Decimal | int | str | None = None,
        weight_unit: str = "kg",
        is_barred: bool = False,
        inventory_enabled: bool = True,
    ) -> SimProduct:
        """Add a product; ``stock`` is a quantity at the default location or location → quantity."""
        if number in self.products:
            raise ValueError(f"product {number!r} exists")
        stamp = self._stamp()
        product = SimProduct(
            number=number,
            name=name if name is not None else f"Product {number}",
            created_at=stamp,
            updated_at=stamp,
            description=description,
            barcode=barcode,
            sales_price=Decimal(str(sales_price)),
            cost_price=Decimal(str(cost_price)),
            group=group,
            weight=None if weight is None else Decimal(str(weight)),
            weight_unit=weight_unit,
            is_barred=is_barred,
            inventory_enabled=inventory_enabled,
        )
        self.products[number] = product
        if isinstance(stock, Mapping):
            for location, quantity in stock.items():
                self.set_stock(number, location, quantity)
        elif stock is not None:
            self.set_stock(number, self.default_location, stock)
        return product

    def update_product(self, number: str, **changes: Any) -> None:
        """Change product attributes as a user in Rackbeat would (bumps ``updated_at``)."""
        product = self._product(number)
        for key, value in changes.items():
            if not hasattr(product, key) or key in ("number", "created_at", "updated_at"):
                raise AttributeError(f"SimProduct has no settable {key!r}")
            decimal = key in ("sales_price", "cost_price", "weight") and value is not None
            setattr(product, key, Decimal(str(value)) if decimal else value)
        product.updated_at = self._stamp()

    def _product(self, number: str) -> SimProduct:
        try:
            return self.products[number]
        except KeyError:
            raise KeyError(f"no product {number!r}") from None

    def _location(self, location: str | None) -> str:
        location = self.default_location if location is None else str(location)
        if location not in self.locations:
            raise KeyError(f"no location {location!r}")
        return location

    def set_stock(self, number: str, location: str | None, quantity: Decimal | int | str) -> None:
        """Set the quantity in stock of product ``number`` at ``location`` (None: the default)."""
        product = self._product(number)
        self.stock.setdefault(number, {})[self._location(location)] = Decimal(str(quantity))
        if self.stock_touches_updated_at:
            product.updated_at = self._stamp()

    def goods_receipt(self, number: str, quantity: Decimal | int | str, location: str | None = None) -> None:
        """Receive goods: add ``quantity`` to stock."""
        self.adjust_stock(number, quantity, location)

    def adjust_stock(self, number: str, delta: Decimal | int | str, location: str | None = None) -> None:
        """Add ``delta`` (may be negative) to the stock at ``location`` (None: the default)."""
        where = self._location(location)
        current = self.stock.get(number, {}).get(where, Decimal(0))
        self.set_stock(number, where, current + Decimal(str(delta)))

    def stock_quantity(self, number: str, location: str | None = None) -> Decimal:
        """In stock at ``location``, or over all locations when None."""
        self._product(number)
        held = self.stock.get(number, {})
        if location is not None:
            return held.get(str(location), Decimal(0))
        return sum(held.values(), Decimal(0))

    def in_order_quantity(self, number: str, location: str | None = None) -> Decimal:
        """Reserved by booked, unshipped orders, at ``location`` or over all when None."""
        reserved = self._reserved()
        if location is not None:
            return reserved.get((number, str(location)), Decimal(0))
        return sum((reserved.get((number, loc), Decimal(0)) for loc in self.locations), Decimal(0))

    def _reserved(self) -> dict[tuple[str, str], Decimal]:
        """(product, location) → quantity reserved by booked, unshipped orders (the lines'
        unshipped part: what a partial shipment sent is no longer reserved).

        Inside one HTTP request it is computed once (a page of 100 products must not walk
        every order 100 times); outside, always afresh, so tests may edit orders directly.
        """
        if self._reservations is not None:
            return self._reservations
        reserved: dict[tuple[str, str], Decimal] = {}
        for order in self._orders.values():
            if order.reserves_stock:
                for line in order.lines:
                    key = (line.item_id, order.location)
                    reserved[key] = reserved.get(key, Decimal(0)) + line.unshipped
        if self._in_request:
            self._reservations = reserved
        return reserved

    def available_quantity(self, number: str, location: str | None = None) -> Decimal:
        """Stock − in order, at ``location`` or over all when None."""
        return self.stock_quantity(number, location) - self.in_order_quantity(number, location)

    # --- control API: customers, orders -----------------------------------------------------------

    def add_customer(
        self,
        name: str,
        contact_email: str | None = None,
        *,
        number: str | None = None,
        contact_phone: str | None = None,
        customer_group_id: str | None = "1",
        vat_zone: str = "domestic",
        currency: str = "DKK",
        payment_terms_id: str | None = "1",
        locale: str | None = None,
    ) -> str:
        """Add a customer; return its number (the next free one unless given)."""
        if number is None:
            number = self._take_customer_number()
        elif number in self.customers:
            raise ValueError(f"customer {number!r} exists")
        stamp = self._stamp()
        self.customers[number] = SimCustomer(
            number=number,
            name=name,
            created_at=stamp,
            updated_at=stamp,
            contact_email=contact_email,
            contact_phone=contact_phone,
            customer_group_id=customer_group_id,
            vat_zone=vat_zone,
            currency=currency,
            payment_terms_id=payment_terms_id,
            locale=locale,
        )
        return number

    def _take_customer_number(self) -> str:
        while str(self._next_customer) in self.customers:
            self._next_customer += 1
        number = str(self._next_customer)
        self._next_customer += 1
        return number

    def _take_order_number(self) -> str:
        while str(self._next_order) in self._orders:
            self._next_order += 1
        number = str(self._next_order)
        self._next_order += 1
        return number

    @property
    def orders(self) -> list[SimOrder]:
        """Every order, oldest first."""
        return list(self._orders.values())

    def order(self, number: str) -> SimOrder:
        """The order with this number (KeyError if none)."""
        try:
            return self._orders[str(number)]
        except KeyError:
            raise KeyError(f"no order {number!r}") from None

    def order_count_by_reference(self, your_reference: str) -> int:
        """How many orders carry exactly this ``your_reference`` (duplicates show up here)."""
        return sum(1 for order in self._orders.values() if order.your_reference == your_reference)

    def place_order(
        self, customer: str, lines: Sequence[tuple[str, int | Decimal]], *, book: bool = False
    ) -> str:
        """An order entered in Rackbeat by hand (another sales channel); booked when asked."""
        stamp = self._stamp()
        order = SimOrder(
            number=self._take_order_number(),
            customer_id=customer,
            currency="DKK",
            location=self.default_location,
            created_at=stamp,
            updated_at=stamp,
            lines=[SimOrderLine(sku, sku, Decimal(qty), Decimal(0)) for sku, qty in lines],
        )
        self._orders[order.number] = order
        if book:
            self.book(order.number)
        return order.number

    def book(self, order_number: str) -> None:
        """Book a draft by hand in Rackbeat: from now on it reserves its stock."""
        order = self.order(order_number)
        if order.is_booked:
            raise ValueError(f"order {order_number!r} is booked already")
        order.is_booked = True
        order.booked_at = order.updated_at = self._stamp()
        self._reservations = None

    def ship(
        self,
        order_number: str,
        *,
        lines: Sequence[tuple[str, Decimal | int | str]] | None = None,
        carrier: str | None = None,
        tracking: str | None = None,
        url: str | None = None,
    ) -> int:
        """The warehouse ships a booked order, or part of it; returns the new shipment's id.

        ``lines`` are (SKU, quantity) pairs to send now (None: everything not shipped yet);
        a SKU on several lines fills them in order. Stock leaves the order's location for
        what is sent (products without inventory have none to take) and its reservation
        ends. The order is ``is_shipped`` once nothing is left to send, ``is_partly_shipped``
        before that. One shipped shipment records what left, with ``carrier``, the tracking
        number ``tracking`` and ``url``. ValueError for an order that is not booked, is
        cancelled or shipped already, or lines it does not have (or not that many of).
        """
        order = self.order(order_number)
        if not order.is_booked or order.is_shipped or order.is_cancelled:
            raise ValueError(f"order {order_number!r} is not a booked, unshipped order")
        sending = self._shipment_quantities(order, lines)
        if not any(sending):
            raise ValueError(f"order {order_number!r}: nothing to ship")
        sent: list[tuple[str, Decimal]] = []
        for line, quantity in zip(order.lines, sending, strict=True):
            if not quantity:
                continue
            product = self.products.get(line.item_id)
            if product is not None and product.inventory_enabled:
                self.adjust_stock(line.item_id, -quantity, order.location)
            line.shipped += quantity
            sent.append((line.item_id, quantity))
        self._reservations = None
        stamp = self._stamp()
        done = all(line.unshipped <= 0 for line in order.lines)
        order.is_shipped, order.is_partly_shipped = done, not done
        if done:
            order.is_ready_for_shipping = False
        order.updated_at = stamp
        shipment = SimShipment(
            id=self._next_shipment,
            order_number=order.number,
            lines=sent,
            created_at=stamp,
            updated_at=stamp,
            carrier=carrier,
            track_trace_number=tracking,
            track_trace_url=url,
        )
        self._next_shipment += 1
        self.shipments[shipment.id] = shipment
        return shipment.id

    @staticmethod
    def _shipment_quantities(
        order: SimOrder, lines: Sequence[tuple[str, Decimal | int | str]] | None
    ) -> list[Decimal]:
        """How much of each order line (by index) a shipment of ``lines`` sends."""
        if lines is None:
            return [line.unshipped for line in order.lines]
        sending = [Decimal(0)] * len(order.lines)
        for sku, raw_quantity in lines:
            wanted = Decimal(str(raw_quantity))
            if not wanted.is_finite() or wanted <= 0:
                raise ValueError(f"order {order.number!r}: ship a positive quantity of {sku!r}")
            for index, line in enumerate(order.lines):
                if line.item_id == sku and wanted > 0:
                    taken = min(wanted, line.unshipped - sending[index])
                    sending[index] += taken
                    wanted -= taken
            if wanted > 0:
                raise ValueError(f"order {order.number!r} has {wanted} fewer of {sku!r} left to ship")
        return sending

    def order_shipments(self, order_number: str) -> list[SimShipment]:
        """The shipments of an order, oldest first (KeyError for an unknown order)."""
        number = self.order(order_number).number
        return [s for s in self.shipments.values() if s.order_number == number]

    def add_tracking(
        self,
        order_number: str,
        shipment_id: int | None = None,
        *,
        number: str,
        url: str | None = None,
        carrier: str | None = None,
    ) -> None:
        """The warehouse adds a tracking number to a shipment (None: the order's last one).

        Sets ``track_trace_number`` to ``number`` and ``track_trace_url`` to ``url`` (None
        clears an old one); ``carrier`` None keeps the carrier the shipment has. Bumps the
        shipment's ``updated_at`` and the order's, so the shipped list shows the order again.
        KeyError for an unknown order or a shipment that is not the order's; ValueError when
        the order has no shipment.
        """
        order = self.order(order_number)
        shipments = self.order_shipments(order.number)
        if shipment_id is None:
            if not shipments:
                raise ValueError(f"order {order_number!r} has no shipment")
            shipment = shipments[-1]
        else:
            found = self.shipments.get(shipment_id)
            if found is None or found.order_number != order.number:
                raise KeyError(f"order {order_number!r} has no shipment {shipment_id!r}")
            shipment = found
        shipment.track_trace_number = number
        shipment.track_trace_url = url
        if carrier is not None:
            shipment.carrier = carrier
        shipment.updated_at = order.updated_at = self._stamp()

    def delete_order(self, number: str) -> None:
        """Delete a draft as a user in Rackbeat would; a booked order cannot be deleted
        (ValueError). KeyError for an unknown number."""
        order = self.order(number)
        if order.is_booked:
            raise ValueError(f"order {number!r} is booked; only a draft can be deleted")
        del self._orders[order.number]
        self._reservations = None

    def cancel(self, order_number: str) -> None:
        """Cancel an unshipped order (its reservation ends)."""
        order = self.order(order_number)
        if order.is_shipped:
            raise ValueError(f"order {order_number!r} is shipped")
        order.is_cancelled = True
        order.updated_at = self._stamp()

    # --- control API: counters --------------------------------------------------------------------

    def request_total(self) -> int:
        """Requests answered since the last :meth:`reset_counts`."""
        return sum(self.requests.values())

    def reset_counts(self) -> None:
        """Forget the request counts and log (e.g. before measuring one idle cycle)."""
        self.requests.clear()
        self.request_log.clear()

    def expire_token(self, replacement: str | None = None) -> str:
        """The API key stops working (revoked, as in Rackbeat's settings); return the new one."""
        self.token = replacement or f"rb_{secrets.token_hex(16)}"
        return self.token

    async def _control(self, request: httpx.Request, route: list[str]) -> httpx.Response:
        """The ``/_sim/`` control API (no token needed): seed and change the account over HTTP.

        ==============================  ===================================================
        ``GET /_sim/state``             :meth:`summary`
        ``POST /_sim/products``         ``{"number", "name", "stock", "sales_price" …}`` (the
                                        arguments of :meth:`add_product`) → 201 the product
        ``POST /_sim/goods-receipts``   ``{"number", "quantity", "location"}``: goods arrive
                                        (:meth:`goods_receipt`) → 201 the stock now
        ``GET``/``PUT /_sim/faults``    the fault knobs (:meth:`Faults.from_json`)
        ``POST /_sim/tokens/expire``    ``{"token"?}``: the API key stops working
                                        (:meth:`expire_token`) → ``{"token": new key}``
        ``POST /_sim/orders/{n}/ship``  ``{"lines"?: [{"sku", "quantity"}], "carrier"?,
                                        "tracking"?, "url"?}``: the warehouse ships all
                                        (no ``lines``) or part of order ``n`` (:meth:`ship`)
                                        → 201 ``{"shipment_id", "order": …}``
        ``POST /_sim/orders/{n}/        ``{"number", "url"?, "carrier"?, "shipment_id"?}``:
        tracking``                      a tracking number for a shipment, the last one
                                        when no id (:meth:`add_tracking`) → 200
                                        ``{"order_shipment": …}``
        ==============================  ===================================================

        A body that does not fit is answered 422 ``{"message": …}``.
        """
        method = request.method
        try:
            if (method, route) == ("GET", ["state"]):
                return _json_response(200, self.summary())
            if (method, route) == ("GET", ["faults"]):
                return _json_response(200, self.faults.to_json())
            if (method, route) == ("PUT", ["faults"]):
                self.faults = Faults.from_json(await _control_body(request))
                return _json_response(200, self.faults.to_json())
            if (method, route) == ("POST", ["tokens", "expire"]):
                replacement = (await _control_body(request)).get("token")
                return _json_response(200, {"token": self.expire_token(replacement and str(replacement))})
            if (method, route) == ("POST", ["products"]):
                payload = await _control_body(request)
                number = str(payload.pop("number"))
                self.add_product(number, **payload)
                return _json_response(201, {"product": self._product_json(self.products[number])})
            if (method, route) == ("POST", ["goods-receipts"]):
                payload = await _control_body(request)
                number = str(payload["number"])
                location = payload.get("location")
                location = None if location is None else str(location)
                self.goods_receipt(number, str(payload["quantity"]), location)
                where = self._location(location)
                stock = self.stock_quantity(number, where)
                return _json_response(
                    201, {"number": number, "location": where, "stock_quantity": _quantity_out(stock)}
                )
            if method == "POST" and len(route) == 3 and route[0] == "orders":
                return self._control_order(route[1], route[2], await _control_body(request))
        except (ValueError, KeyError, TypeError, AttributeError, ArithmeticError) as exc:
            return _json_response(422, {"message": str(exc)})
        return _not_found("route")

    def _control_order(self, number: str, action: str, payload: Mapping[str, Any]) -> httpx.Response:
        """``POST /_sim/orders/{number}/ship`` and ``…/tracking`` (see :meth:`_control`);
        raises what :meth:`_control` answers with 422."""
        if action == "ship":
            raw_lines = payload.get("lines")
            lines = None if raw_lines is None else [(str(x["sku"]), str(x["quantity"])) for x in raw_lines]
            shipment_id = self.ship(
                number,
                lines=lines,
                carrier=_text(payload.get("carrier")),
                tracking=_text(payload.get("tracking")),
                url=_text(payload.get("url")),
            )
            order = self.order(number)
            return _json_response(201, {"shipment_id": shipment_id, "order": self._order_json(order)})
        if action == "tracking":
            given = payload.get("shipment_id")
            if given is not None and (isinstance(given, bool) or not isinstance(given, int)):
                raise TypeError("shipment_id must be an integer")
            tracking = _text(payload.get("number"))
            if tracking is None:
                raise ValueError("number: a tracking number is required")
            self.add_tracking(
                number,
                given,
                number=tracking,
                url=_text(payload.get("url")),
                carrier=_text(payload.get("carrier")),
            )
            shipment = self.shipments[given] if given is not None else self.order_shipments(number)[-1]
            return _json_response(200, {"order_shipment": self._shipment_json(shipment)})
        return _not_found("route")

    def summary(self) -> JSONObject:
        """A small overview of the account (for the demo and ``/_sim/state``)."""
        return {
            "products": len(self.products),
            "customers": len(self.customers),
            "orders": len(self._orders),
            "shipments": len(self.shipments),
            "locations": sorted(self.locations),
            "requests": dict(self.requests),
        }

    # --- JSON views ---------------------------------------------------------------------------------

    def _number_out(self, number: str) -> int | str | float:
        value = _number_out(number)
        return float(value) if "number_format" in self.refute and isinstance(value, int) else value

    def _product_time(self, moment: datetime) -> str:
        if "timestamp_format" in self.refute:
            return moment.astimezone(UTC).strftime("%d.%m.%Y %H:%M")
        return _product_time(moment)

    def _plain_time(self, moment: datetime | None) -> str | None:
        if moment is not None and "timestamp_format" in self.refute:
            return moment.astimezone(UTC).strftime("%d.%m.%Y %H:%M")
        return _plain_time(moment)

    def _product_json(self, product: SimProduct) -> JSONObject:
        number = product.number
        stock = self.stock_quantity(number)
        in_order = self.in_order_quantity(number)
        group_name = self.product_groups.get(product.group) if product.group is not None else None
        return {
            "number": number,
            "name": product.name,
            "description": product.description,
            "barcode": product.barcode,
            "sales_price": float(product.sales_price),
            "cost_price": float(product.cost_price),
            "group_id": self._number_out(product.group) if product.group is not None else None,
            "group": {"number": self._number_out(product.group), "name": group_name}
            if product.group
            else None,
            "physical": {
                "weight": float(product.weight) if product.weight is not None else None,
                "weight_unit": product.weight_unit,
            },
            "stock_quantity": _quantity_out(stock),
            "in_order_quantity": _quantity_out(in_order),
            ("available" if "product_fields" in self.refute else "available_quantity"): _quantity_out(
                stock - in_order
            ),
            "purchased_quantity": 0,
            "is_barred": product.is_barred,
            "inventory_enabled": product.inventory_enabled,
            "created_at": self._product_time(product.created_at),
            "updated_at": self._product_time(product.updated_at),
            "deleted_at": None,
        }

    def _location_json(self, location: SimLocation) -> JSONObject:
        return {
            "number": location.number,
            "name": location.name,
            "is_default": location.is_default,
            "parent_id": location.parent_id,
        }

    def _product_location_json(self, number: str, location: SimLocation) -> JSONObject:
        stock = self.stock_quantity(number, location.number)
        in_order = self.in_order_quantity(number, location.number)
        return {
            "number": location.number,
            "name": location.name,
            "stock_quantity": _quantity_out(stock),
            "in_order_quantity": _quantity_out(in_order),
            "available_quantity": _quantity_out(stock - in_order),
        }

    def _customer_json(self, customer: SimCustomer) -> JSONObject:
        return {
            "number": self._number_out(customer.number),
            "name": customer.name,
            "contact_email": customer.contact_email,
            "contact_phone": customer.contact_phone,
            "customer_group_id": self._number_out(customer.customer_group_id)
            if customer.customer_group_id
            else None,
            "vat_zone": customer.vat_zone,
            "currency": customer.currency,
            "payment_terms_id": self._number_out(customer.payment_terms_id)
            if customer.payment_terms_id
            else None,
            "locale": customer.locale,
            "is_barred": customer.is_barred,
            "created_at": self._plain_time(customer.created_at),
            "updated_at": self._plain_time(customer.updated_at),
        }

    def _order_json(self, order: SimOrder) -> JSONObject:
        return {
            "number": self._number_out(order.number),
            "customer_id": self._number_out(order.customer_id),
            "currency": order.currency,
            "payment_terms_id": self._number_out(order.payment_terms_id) if order.payment_terms_id else None,
            "our_reference": self._number_out(order.our_reference) if order.our_reference else None,
            "your_reference": order.your_reference,
            "heading": order.heading,
            "delivery_address": order.delivery_address,
            "location_id": order.location,
            "lines": [
                {
                    "item_id": line.item_id,
                    "name": line.name,
                    "quantity": _quantity_out(line.quantity),
                    "line_price": float(line.line_price),
                    "discount_percentage": float(line.discount_percentage),
                    "line_total": float(line.total),
                }
                for line in order.lines
            ],
            "total_total": float(sum((line.total for line in order.lines), Decimal(0))),
            ("booked" if "order_fields" in self.refute else "is_booked"): order.is_booked,
            "is_ready_for_shipping": order.is_ready_for_shipping,
            "is_shipped": order.is_shipped,
            "is_partly_shipped": order.is_partly_shipped,
            "is_cancelled": order.is_cancelled,
            "is_archived": order.is_archived,
            "booked_at": self._plain_time(order.booked_at),
            "created_at": self._plain_time(order.created_at),
            "updated_at": self._plain_time(order.updated_at),
        }

    def _shipment_json(self, shipment: SimShipment) -> JSONObject:
        return {
            "id": shipment.id,
            "is_picked": shipment.is_shipped,
            "is_partly_picked": False,
            "is_shipped": shipment.is_shipped,
            "created_at": self._plain_time(shipment.created_at),
            "updated_at": self._plain_time(shipment.updated_at),
            ("items" if "shipment_shape" in self.refute else "lines"): [
                {
                    ("product_number" if "shipment_shape" in self.refute else "item_id"): sku,
                    "quantity": _quantity_out(quantity),
                }
                for sku, quantity in shipment.lines
            ],
            "carrier": shipment.carrier,
            "track_trace_number": shipment.track_trace_number,
            "track_trace_url": shipment.track_trace_url,
        }

    # --- HTTP ---------------------------------------------------------------------------------------

    async def handle(self, request: httpx.Request) -> httpx.Response:
        """Answer one HTTP request (an ``httpx.MockTransport`` handler; :func:`daemon.webserver.handler_app` serves it)."""
        segments = self._segments(request)
        route = self._route_label(request.method, segments)
        if segments[:1] == ["_sim"]:
            self.requests[route] += 1
            return await self._control(request, segments[1:])
        response, note = await self._answer(request, segments)
        self.requests[route] += 1
        self.request_log.append(RequestRecord(route, response.status_code, note))
        return response

    def _segments(self, request: httpx.Request) -> list[str]:
        """The path's segments, each percent-decoded exactly once, without the prefix."""
        raw = request.url.raw_path.split(b"?", 1)[0].decode("ascii", "replace")
        parts = [urllib.parse.unquote(part, errors="replace") for part in raw.split("/")[1:]]
        if parts and parts[-1] == "":
            parts.pop()
        if self.prefix and parts[:1] == [self.prefix]:
            parts = parts[1:]
        return parts

    @staticmethod
    def _route_label(method: str, segments: list[str]) -> str:
        shown = list(segments)
        numbered = len(shown) >= 2 and shown[0] in ("products", "items", "customers", "orders")
        if numbered and shown[:2] != ["orders", "drafts"]:
            shown[1] = "{number}"
        return f"{method} /{'/'.join(shown)}"

    def _authorized(self, request: httpx.Request) -> bool:
        header = request.headers.get("authorization", "")
        scheme, _, given = header.partition(" ")
        return scheme.lower() == "bearer" and secrets.compare_digest(given.strip(), self.token)

    def _rate_limited(self) -> float | None:
        """Seconds to wait when the per-minute limit is used up, else None (and count this one)."""
        if self.requests_per_minute is None:
            return None
        now = self.monotonic()
        while self._window and now - self._window[0] >= 60.0:
            self._window.popleft()
        if len(self._window) >= self.requests_per_minute:
            return max(1.0, math.ceil(60.0 - (now - self._window[0])))
        self._window.append(now)
        return None

    async def _answer(self, request: httpx.Request, segments: list[str]) -> tuple[httpx.Response, str]:
        if not self._authorized(request):
            return _json_response(401, {"message": "Unauthenticated."}), "unauthorized"
        if self.faults.delay:
            await self.sleep(self.faults.delay)
        wait = self._rate_limited()
        if wait is not None:
            return _json_response(
                429, {"message": "Too Many Attempts."}, {"retry-after": str(int(wait))}
            ), "limit"
        fault = self.faults.draw()
        if fault == "error":
            html = "<html><body><h1>503 Service Unavailable</h1></body></html>"
            return httpx.Response(503, text=html, headers={"content-type": "text/html"}), "fault_error"
        if fault in ("throttle", "cost_throttle"):  # no cost bucket here: both are a 429
            return _json_response(
                429, {"message": "Too Many Attempts."}, {"retry-after": "1"}
            ), "fault_throttle"
        body: Any = None
        raw = await request.aread()
        if raw.strip():
            try:
                body = json.loads(raw)
            except ValueError:
                return _json_response(400, {"message": "Malformed JSON body."}), "bad_json"
        # _dispatch never awaits, so one request's reservation cache cannot leak into another's
        self._in_request, self._reservations = True, None
        try:
            response = self._dispatch(request.method, segments, request.url.params, body)
        finally:
            self._in_request, self._reservations = False, None
        if fault == "truncate":
            kept = {k: v for k, v in response.headers.items() if k.lower() != "content-length"}
            return httpx.Response(
                response.status_code, content=truncate_body(response.content), headers=kept
            ), "fault_truncate"
        return response, ""

    def _dispatch(
        self, method: str, segments: list[str], params: httpx.QueryParams, body: Any
    ) -> httpx.Response:
        match (method, segments):
            case ("GET", ["products"]):
                return self._list_products(params)
            case ("POST", ["products"]):
                return self._create_product(body)
            case ("GET", ["products", number]):
                product = self.products.get(number)
                if product is None:
                    return _not_found("product")
                return _json_response(200, {"product": self._product_json(product)})
            case ("PUT", ["products", number]):
                return self._update_product(number, body)
            case ("GET", ["products", number, "locations"]):
                if number not in self.products:
                    return _not_found("product")
                rows = [self._product_location_json(number, loc) for loc in self.locations.values()]
                return self._page("product_locations", rows, params)
            case ("GET", ["items", number, "locations", "available"]):
                if number not in self.products or "location_stock" in self.refute:
                    return _not_found("item")
                rows = [
                    {
                        **self._location_json(loc),
                        "available_quantity": _quantity_out(self.available_quantity(number, loc.number)),
                    }
                    for loc in self.locations.values()
                ]
                return self._page("locations", rows, params)
            case ("GET", ["locations"]):
                return self._page(
                    "locations", [self._location_json(loc) for loc in self.locations.values()], params
                )
            case ("GET", [resource]) if resource in _REFERENCE_LISTS:
                key = "data" if "reference_envelopes" in self.refute else _REFERENCE_LISTS[resource]
                return self._page(key, self._reference_rows(resource), params)
            case ("GET", ["customers"]):
                return self._list(
                    "customers",
                    self.customers.values(),
                    self._customer_json,
                    params,
                    search=lambda c: (
                        (c.number, c.name)
                        if "customer_email_search" in self.refute
                        else (c.number, c.name, c.contact_email or "", c.contact_phone or "")
                    ),
                    stamp=lambda c: c.updated_at,
                )
            case ("POST", ["customers"]):
                return self._create_customer(body)
            case ("GET", ["customers", number]):
                customer = self.customers.get(number)
                if customer is None:
                    return _not_found("customer")
                return _json_response(200, {"customer": self._customer_json(customer)})
            case ("POST", ["orders", "drafts"]):
                return self._create_draft(body)
            case ("GET", ["orders"]):
                return self._list_orders(params)
            case ("GET", ["orders", number]):
                order = self._orders.get(number)
                if order is None:
                    return _not_found("order")
                return _json_response(200, {"order": self._order_json(order)})
            case ("DELETE", ["orders", number]):
                return self._delete_order(number)
            case ("GET", ["orders", number, "shipments"]):
                if number not in self._orders:
                    return _not_found("order")
                return self._page(
                    "order_shipments", self.order_shipments(number), params, view=self._shipment_json
                )
            case ("POST", ["orders", number, "book"]):
                return self._book(number, body)
            case ("POST", ["orders", number, "create-shipment"]):
                return self._create_shipment(number)
            case _:
                return _json_response(404, {"message": "Route not found."})

    # --- lists --------------------------------------------------------------------------------------

    def _reference_rows(self, resource: str) -> list[JSONObject]:
        if resource == "currencies":
            return [{"code": code, "name": name} for code, name in self.currencies.items()]
        table = {
            "payment-terms": self.payment_terms,
            "employees": self.employees,
            "customer-groups": self.customer_groups,
            "product-groups": self.product_groups,
        }[resource]
        return [{"number": self._number_out(number), "name": name} for number, name in table.items()]

    def _list_products(self, params: httpx.QueryParams) -> httpx.Response:
        if "products_updated_from" in self.refute:
            params = params.remove("updated_at_from").remove("updated_at_to")
        return self._list(
            "products",
            self.products.values(),
            self._product_json,
            params,
            search=lambda p: (p.number, p.name, p.barcode or ""),
            stamp=lambda p: p.updated_at,
        )

    def _list_orders(self, params: httpx.QueryParams) -> httpx.Response:
        """``GET /orders``: the shared filters plus the boolean flags of :data:`_ORDER_FLAGS`
        (all ignored with the date range when :attr:`ignore_order_filters` is on)."""
        chosen = list(self._orders.values())
        if "reference_search" in self.refute:
            params = params.remove("search")
        if self.ignore_order_filters or "orders_updated_from" in self.refute:
            for name in ("updated_at_from", "updated_at_to"):
                params = params.remove(name)
        else:
            for name in _ORDER_FLAGS:
                given = params.get(name)
                if given is None:
                    continue
                wanted = _flag_param(given)
                if wanted is None:
                    return _unprocessable(
                        {name: [f"The {name.replace('_', ' ')} field must be true or false."]}
                    )
                chosen = [o for o in chosen if getattr(o, name) is wanted]
        return self._list(
            "orders",
            chosen,
            self._order_json,
            params,
            search=lambda o: (o.number, o.your_reference or "", o.heading or ""),
            stamp=lambda o: o.updated_at,
        )

    def _list(
        self,
        key: str,
        records: Iterable[T],
        view: Callable[[T], JSONObject],
        params: httpx.QueryParams,
        *,
        search: Callable[[T], tuple[str, ...]],
        stamp: Callable[[T], datetime],
    ) -> httpx.Response:
        """Filter (search, updated_at range) before serialising, then sort and page."""
        chosen = list(records)
        text = (params.get("search") or "").strip().casefold()
        if text:
            chosen = [r for r in chosen if any(text in value.casefold() for value in search(r))]
        low = (
            _parse_filter_time(params.get("updated_at_from") or "") if params.get("updated_at_from") else None
        )
        high = _parse_filter_time(params.get("updated_at_to") or "") if params.get("updated_at_to") else None
        if low is not None:
            chosen = [r for r in chosen if stamp(r) >= low]
        if high is not None:
            chosen = [r for r in chosen if stamp(r) <= high]
        order_by = params.get("order_by")
        if order_by:
            rows = [view(r) for r in chosen]
            descending = (params.get("order_direction") or "ASC").upper() == "DESC"
            rows.sort(key=lambda row: str(row.get(order_by, "")), reverse=descending)
            return self._page(key, rows, params)
        return self._page(key, chosen, params, view=view)

    def _page(
        self,
        key: str,
        rows: list[Any],
        params: httpx.QueryParams,
        *,
        view: Callable[[Any], JSONObject] | None = None,
    ) -> httpx.Response:
        cap = min(self.max_limit, 50) if "page_limit" in self.refute else self.max_limit
        limit = min(max(_int_param(params.get("limit"), self.default_limit), 1), cap)
        page = max(_int_param(params.get("page"), 1), 1)
        total = len(rows)
        pages = max(1, math.ceil(total / limit))
        chunk = rows[(page - 1) * limit : page * limit]
        items = [view(row) for row in chunk] if view is not None else chunk
        wanted = [f.strip() for f in (params.get("fields") or "").split(",") if f.strip()]
        if wanted:
            items = [{f: item[f] for f in wanted if f in item} for item in items]
        if "list_envelope" in self.refute:
            return _json_response(200, {key: items, "limit": limit})
        status = 206 if page < pages else 200
        return _json_response(
            status, {key: items, "total": total, "pages": pages, "limit": limit, "page": page}
        )

    # --- writes ----------------------------------------------------------------------------------------

    def _product_fields(self, body: Mapping[str, Any], errors: Errors, *, creating: bool) -> JSONObject:
        """Validate a product body; return the attribute changes it asks for."""
        changes: JSONObject = {}
        name = body.get("name")
        if "name" in body or creating:
            if not isinstance(name, str) or not name.strip():
                errors["name"] = ["The name field is required."]
            else:
                changes["name"] = name.strip()
        for key in ("sales_price", "cost_price"):
            if key in body:
                amount = _decimal(body[key])
                if amount is None:
                    errors[key] = [f"The {key.replace('_', ' ')} must be a number."]
                else:
                    changes[key] = amount
        for key in ("description", "barcode"):
            if key in body:
                changes[key] = None if body[key] is None else str(body[key])
        if "group_id" in body:
            group = _text(body["group_id"])
            if group is None or group not in self.product_groups:
                errors["group_id"] = ["The selected group id is invalid."]
            else:
                changes["group"] = group
        physical = body.get("physical")
        if isinstance(physical, Mapping):
            if "weight" in physical:
                weight = _decimal(physical["weight"])
                if weight is None and physical["weight"] is not None:
                    errors["physical.weight"] = ["The physical.weight must be a number."]
                changes["weight"] = weight
            if "weight_unit" in physical:
                changes["weight_unit"] = str(physical["weight_unit"])
        if "is_barred" in body:
            changes["is_barred"] = bool(body["is_barred"])
        return changes

    def _create_product(self, body: Any) -> httpx.Response:
        if not isinstance(body, Mapping):
            return _unprocessable({"number": ["The number field is required."]})
        errors: Errors = {}
        number = _text(body.get("number"))
        if number is None:
            errors["number"] = ["The number field is required."]
        elif number in self.products:
            errors["number"] = ["The number has already been taken."]
        changes = self._product_fields(body, errors, creating=True)
        if errors or number is None:
            return _unprocessable(errors)
        product = self.add_product(number, changes.pop("name"))
        for key, value in changes.items():
            setattr(product, key, value)
        return _json_response(201, {"product": self._product_json(product)})

    def _update_product(self, number: str, body: Any) -> httpx.Response:
        product = self.products.get(number)
        if product is None:
            return _not_found("product")
        if not isinstance(body, Mapping):
            return _unprocessable({"body": ["A JSON object is required."]})
        errors: Errors = {}
        renamed = _text(body.get("number")) if "number" in body else None
        if renamed is not None and renamed != number:
            errors["number"] = ["The number cannot be changed."]
        changes = self._product_fields(body, errors, creating=False)
        if errors:
            return _unprocessable(errors)
        for key, value in changes.items():
            setattr(product, key, value)
        product.updated_at = self._stamp()
        return _json_response(200, {"product": self._product_json(product)})

    def _create_customer(self, body: Any) -> httpx.Response:
        if not isinstance(body, Mapping):
            return _unprocessable({"name": ["The name field is required."]})
        errors: Errors = {}
        name = body.get("name")
        if not isinstance(name, str) or not name.strip():
            errors["name"] = ["The name field is required."]
        email = body.get("contact_email")
        if email is not None and (not isinstance(email, str) or "@" not in email):
            errors["contact_email"] = ["The contact email must be a valid email address."]
        group = _text(body.get("customer_group_id"))
        if group is not None and group not in self.customer_groups:
            errors["customer_group_id"] = ["The selected customer group id is invalid."]
        terms = _text(body.get("payment_terms_id"))
        if terms is not None and terms not in self.payment_terms:
            errors["payment_terms_id"] = ["The selected payment terms id is invalid."]
        vat_zone = body.get("vat_zone", "domestic")
        if vat_zone not in _VAT_ZONES:
            errors["vat_zone"] = ["The selected vat zone is invalid."]
        currency = body.get("currency", "DKK")
        if currency not in self.currencies:
            errors["currency"] = ["The selected currency is invalid."]
        number = _text(body.get("number"))
        if number is not None and number in self.customers:
            errors["number"] = ["The number has already been taken."]
        if errors:
            return _unprocessable(errors)
        created = self.add_customer(
            str(name).strip(),
            email,
            number=number,
            contact_phone=_text(body.get("contact_phone")),
            customer_group_id=group,
            vat_zone=str(vat_zone),
            currency=str(currency),
            payment_terms_id=terms,
            locale=_text(body.get("locale")),
        )
        return _json_response(201, {"customer": self._customer_json(self.customers[created])})

    def _order_lines(self, raw_lines: Any, errors: Errors) -> list[SimOrderLine]:
        if not isinstance(raw_lines, list) or not raw_lines:
            errors["lines"] = ["The lines field is required."]
            return []
        lines: list[SimOrderLine] = []
        for index, raw in enumerate(raw_lines):
            if not isinstance(raw, Mapping):
                errors[f"lines.{index}"] = ["The line must be an object."]
                continue
            item = _text(raw.get("item_id"))
            product = self.products.get(item) if item is not None else None
            if product is None:
                errors[f"lines.{index}.item_id"] = ["Product needed"]
                continue
            quantity = _decimal(raw.get("quantity"))
            if quantity is None or quantity <= 0:
                errors[f"lines.{index}.quantity"] = ["The quantity must be a positive number."]
                continue
            price = (
                _decimal(raw.get("line_price")) if raw.get("line_price") is not None else product.sales_price
            )
            discount = _decimal(raw.get("discount_percentage") or 0)
            if price is None or discount is None:
                errors[f"lines.{index}.line_price"] = ["The line price must be a number."]
                continue
            name = raw.get("name")
            lines.append(
                SimOrderLine(
                    item_id=item or product.number,
                    name=str(name) if name else product.name,
                    quantity=quantity,
                    line_price=price,
                    discount_percentage=discount,
                )
            )
        return lines

    def _create_draft(self, body: Any) -> httpx.Response:
        if not isinstance(body, Mapping):
            return _unprocessable({"customer_id": ["The customer id field is required."]})
        errors: Errors = {}
        customer_id = _text(body.get("customer_id"))
        customer = self.customers.get(customer_id) if customer_id is not None else None
        if customer is None:
            errors["customer_id"] = ["The selected Customer is invalid."]
        number = _text(body.get("number"))
        if number is not None and number in self._orders:
            errors["number"] = ["The number has already been taken."]
        terms = _text(body.get("payment_terms_id"))
        if terms is None and customer is not None:
            terms = customer.payment_terms_id
        if terms is None:
            errors["payment_terms_id"] = ["Payment terms are required."]
        elif terms not in self.payment_terms:
            errors["payment_terms_id"] = ["The selected payment terms id is invalid."]
        employee = _text(body.get("our_reference"))
        if employee is not None and employee not in self.employees:
            errors["our_reference"] = ["The selected our reference is invalid."]
        currency = _text(body.get("currency")) or (customer.currency if customer else "DKK")
        if currency not in self.currencies:
            errors["currency"] = ["The selected currency is invalid."]
        lines = self._order_lines(body.get("lines"), errors)
        address = body.get("delivery_address")
        if address is not None and not isinstance(address, Mapping):
            errors["delivery_address"] = ["The delivery address must be an object."]
        if errors or customer_id is None:
            return _unprocessable(errors)
        stamp = self._stamp()
        order = SimOrder(
            number=number or self._take_order_number(),
            customer_id=customer_id,
            currency=currency,
            location=self.default_location,
            created_at=stamp,
            updated_at=stamp,
            lines=lines,
            payment_terms_id=terms,
            our_reference=employee,
            your_reference=_text(body.get("your_reference")),
            heading=_text(body.get("heading")),
            delivery_address={str(k): "" if v is None else str(v) for k, v in (address or {}).items()},
        )
        self._orders[order.number] = order
        return _json_response(201, {"order": self._order_json(order)})

    def _book(self, number: str, body: Any) -> httpx.Response:
        order = self._orders.get(number)
        if order is None:
            return _not_found("order")
        if order.is_booked:
            return _unprocessable({"order": ["The order is already booked."]})
        if order.is_cancelled:
            return _unprocessable({"order": ["The order is cancelled."]})
        mail = body.get("mail") if isinstance(body, Mapping) else None
        if mail is not None and not (isinstance(mail, Mapping) and isinstance(mail.get("send"), bool)):
            return _unprocessable({"mail.send": ["The mail.send field must be true or false."]})
        stamp = self._stamp()
        order.is_booked = True
        self._reservations = None
        order.booked_at = stamp
        order.updated_at = stamp
        order.mail_sent = mail.get("send") if isinstance(mail, Mapping) else None
        return _json_response(200, {"order": self._order_json(order)})

    def _delete_order(self, number: str) -> httpx.Response:
        order = self._orders.get(number)
        if order is None:
            return _not_found("order")
        if order.is_booked:
            return _unprocessable({"order": ["A booked order cannot be deleted."]})
        self.delete_order(number)
        return httpx.Response(204)

    def _create_shipment(self, number: str) -> httpx.Response:
        order = self._orders.get(number)
        if order is None:
            return _not_found("order")
        if not order.is_booked:
            return _unprocessable({"order": ["The order must be booked before it can be shipped."]})
        if order.is_ready_for_shipping or order.is_shipped:
            return _unprocessable({"order": ["The order already has a shipment."]})
        order.is_ready_for_shipping = True
        order.updated_at = self._stamp()
        return _json_response(201, {"order": self._order_json(order)})
