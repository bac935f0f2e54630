"""Rackbeat REST client: request budget, retries, pagination, and every API assumption.

:class:`RackbeatClient` speaks to Rackbeat's REST API (``shared/reference/rackbeat-api.md``)
through an injected ``httpx.AsyncClient``. The flows call its methods
(:meth:`~RackbeatClient.stock_totals`, :meth:`~RackbeatClient.create_draft_order` …) and
build request bodies with the pure functions :func:`product_body`, :func:`customer_body`
and :func:`order_body`.

Assumptions
-----------
Facts the reference marks **[assumed]** each live behind exactly one small function or
constant of this module (whose docstring carries the mark), so that a difference in the
live API is a one-line fix:
:func:`number_text`, :func:`parse_timestamp`, :func:`updated_since_params`,
:data:`PAGE_LIMIT`, :func:`customer_search_params`, :func:`customer_email_matches`,
:meth:`Customer.from_json`, :func:`customer_body`, :func:`order_body`,
:func:`number_taken`, :func:`order_search_params`, :func:`order_reference_matches`,
:meth:`Order.from_json`, :func:`order_state`, :func:`step_already_done`,
:func:`changed_orders_params`, :func:`shipment_lines`, :func:`shipment_tracking`,
:meth:`RackbeatClient.delete_draft`,
:func:`reference_envelope`, :meth:`ReferenceItem.from_json`, :func:`product_body`,
:func:`available_at_locations`, :func:`available_entry` and :func:`weight_unit`. One
lives in the settings: the ``vat_zone`` values are :class:`daemon.config.VatZone`. The
README section "Rackbeat API assumptions" has one row per function; a test keeps the two
lists equal. ``check --live`` (:mod:`daemon.live_check`) proves them, read-only, on a live
account, through these same functions.

Return values
-------------
Records come back as small frozen dataclasses (:class:`Product`, :class:`StockTotals`,
:class:`Customer`, :class:`Order`, :class:`Shipment` …) that keep the decoded JSON in
``raw``. Every Rackbeat *number* (SKU, customer, order, location, group …) is a ``str``
whatever JSON type it arrived as. Quantities and money are :class:`~decimal.Decimal`
(Rackbeat quantities may be fractional, and Decimal keeps ``0.1 + 0.2`` exact) but for a
shipment line's, an ``int`` (Shopify fulfils whole units); a field the answer did not
contain (``fields=`` narrows it) is ``None``, never a made-up zero. Timestamps are aware
UTC datetimes.

Budget and throttling
---------------------
Every request, retries included, first takes a slot from a budget of
``requests_per_minute`` shared by all tasks using the client (one client per daemon; the
flows run concurrently). The budget is a sliding window: no 60-second interval
``[t, t + 60)`` holds more than ``requests_per_minute`` sends, whichever ``t`` — the limit a
per-minute server counter enforces. The client keeps the send times of the last
``requests_per_minute`` requests (a bounded deque, under an :class:`anyio.Lock`); a quiet
client sends a full minute's worth at once, and the next request waits until the oldest
of those is 60 seconds old. A **429** pauses the whole client — for ``Retry-After``
seconds, or the policy's backoff (:mod:`daemon.retry`) — and the request is sent again
after the pause, which the budget waits out; a pause too long to sleep through inside one
call raises :class:`~daemon.errors.ThrottledError` (the pause still holds for the next call).

Failures
--------
Retries follow the one policy of :mod:`daemon.retry` (:data:`MAX_ATTEMPTS` sends): 5xx
answers, 408, timeouts, connection errors and unreadable bodies (truncated JSON, an HTML
error page) are retried, then raised as :class:`~daemon.errors.TransportError` or
:class:`~daemon.errors.MalformedResponse`. Writes that are not idempotent (create a
product, a customer, a draft order; book; create a shipment) are resent only when the
request certainly did not arrive (connection refused); otherwise
:class:`~daemon.errors.AmbiguousWrite` is raised and the flow reads back before trying
again (:func:`daemon.retry.settle_write`). 401/403 raise :class:`~daemon.errors.AuthError` (the message names
``RACKBEAT_API_TOKEN``, never the token); 404 on a record raises
:class:`~daemon.errors.NotFoundError` (``get_product`` returns None instead) and on a list
:class:`~daemon.errors.ConfigError` (the base URL is wrong); 400/409/422 raise
:class:`~daemon.errors.ValidationError` whose ``fields`` is Rackbeat's ``errors`` object.
"""

from __future__ import annotations

import collections
import contextlib
import math
import random as _random
import time
import urllib.parse
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any, Literal, TypedDict, Unpack

import anyio
import httpx
import structlog
from pydantic import SecretStr

from daemon.errors import (
    AuthError,
    ConfigError,
    FatalError,
    MalformedResponse,
    NotFoundError,
    ThrottledError,
    TransportError,
    ValidationError,
)
from daemon.logs import register_secret
from daemon.retry import AttemptFailed, Retrying, RetryPolicy, retry_after

if TYPE_CHECKING:
    from daemon.config import Settings

__all__ = [
    "MAX_ATTEMPTS",
    "MAX_THROTTLE_WAITS",
    "PAGE_LIMIT",
    "PRODUCT_FIELDS",
    "STOCK_FIELDS",
    "WEIGHT_UNITS",
    "Customer",
    "JSONObject",
    "Location",
    "LocationStock",
    "Order",
    "OrderState",
    "OrderStep",
    "Product",
    "RackbeatClient",
    "ReferenceItem",
    "Shipment",
    "ShipmentLine",
    "StockTotals",
    "available_at_locations",
    "available_entry",
    "changed_orders_params",
    "customer_body",
    "customer_email_matches",
    "customer_search_params",
    "envelope_count",
    "format_timestamp",
    "number_taken",
    "number_text",
    "order_body",
    "order_reference_matches",
    "order_search_params",
    "order_state",
    "parse_timestamp",
    "product_body",
    "reference_envelope",
    "shipment_lines",
    "shipment_tracking",
    "step_already_done",
    "updated_since_params",
    "weight_unit",
]

log = structlog.get_logger("daemon.rackbeat")

JSONObject = dict[str, Any]
"""A JSON object as decoded from a response."""

OrderState = Literal["draft", "booked", "ready_to_ship", "shipped", "cancelled"]
#: the order steps after the draft, named as their paths (``/orders/{n}/book`` …)
OrderStep = Literal["book", "create-shipment"]

#: items per list page asked for. [assumed] Sources name 100, 200 and 1000 as the maximum;
#: the echoed ``limit`` is read back, so a smaller server maximum costs pages, not items.
PAGE_LIMIT = 100
#: fields of the narrow stock scan (``GET /products?fields=…``)
STOCK_FIELDS = (
    "number",
    "stock_quantity",
    "available_quantity",
    "in_order_quantity",
    "is_barred",
    "updated_at",
)
#: fields of the products flow's scan: what the guide's two product tables need
PRODUCT_FIELDS = (
    "number",
    "name",
    "description",
    "barcode",
    "sales_price",
    "cost_price",
    "group",
    "group_id",
    "physical",
    "is_barred",
    "updated_at",
)
#: [assumed] ``physical.weight_unit`` values for Shopify's ``WeightUnit`` enum
WEIGHT_UNITS = {"KILOGRAMS": "kg", "GRAMS": "g", "POUNDS": "lb", "OUNCES": "oz"}
#: sends of one request, first one included, before a failure is raised
MAX_ATTEMPTS = 6
#: 429 answers in a row for one request before ThrottledError is raised
MAX_THROTTLE_WAITS = 20
#: more pages than this from one list means the server ignores ``page``: stop, do not loop
MAX_PAGES = 100_000
#: the length of the request budget's window: ``requests_per_minute`` sends per this long
BUDGET_WINDOW_SECONDS = 60.0

_SUCCESS = frozenset({200, 201, 202, 206})


# --- assumptions: one function each ---------------------------------------------------------


def number_text(value: Any) -> str:
    """A Rackbeat number (SKU, customer, order, location …) as the opaque string we key on.

    [assumed] Numbers arrive as JSON strings or numbers; ``1001``, ``1001.0`` and
    ``"1001"`` are the same number. Raises MalformedResponse for a missing or non-scalar value.
    """
    if isinstance(value, bool) or value is None:
        raise MalformedResponse(f"expected a Rackbeat number, got {value!r}")
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isfinite(value) and value.is_integer():
            return str(int(value))
        raise MalformedResponse(f"expected a Rackbeat number, got {value!r}")
    if isinstance(value, str) and value.strip():
        return value.strip()
    raise MalformedResponse(f"expected a Rackbeat number, got {value!r}")


def parse_timestamp(value: str) -> datetime:
    """A Rackbeat timestamp as an aware UTC datetime.

    [assumed] Either ISO 8601 with an offset (``2026-11-01T10:00:00+01:00``, ``…Z``,
    fractions allowed) or ``YYYY-MM-DD HH:MM:SS``, which is UTC. Raises MalformedResponse.
    """
    try:
        moment = datetime.fromisoformat(value.strip())
    except (ValueError, AttributeError, TypeError):
        raise MalformedResponse(f"not a timestamp: {value!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def format_timestamp(moment: datetime) -> str:
    """``YYYY-MM-DD HH:MM:SS`` in UTC, the form Rackbeat's date filters take."""
    if moment.tzinfo is None:
        raise ValueError("a timezone-aware datetime is required (naive datetimes are ambiguous)")
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def updated_since_params(since: datetime) -> dict[str, str]:
    """Query parameters for "updated at or after ``since``" on ``/products``.

    [assumed] ``updated_at_from`` is documented on invoices only. Whether a stock movement
    changes ``updated_at`` is unknown, so the stock flow must not rely on this filter.
    """
    return {"updated_at_from": format_timestamp(since)}


def customer_search_params(email: str) -> dict[str, str]:
    """Query parameters that find customers by e-mail: ``/customers?search=<email>``.

    [assumed] Rackbeat's free-text search covers the e-mail; the results are then compared
    exactly with :func:`customer_email_matches`.
    """
    return {"search": email.strip()}


def customer_email_matches(customer: Customer, email: str) -> bool:
    """True when ``customer``'s e-mail is ``email`` (exact, case-insensitive, trimmed).

    [assumed] The free-text search also finds near matches, so the e-mail is compared
    here: equal ignoring case and surrounding blanks. ``anna@x.se`` for ``hanna@x.se`` is
    no match. (Which field holds the e-mail is :meth:`Customer.from_json`'s business.)
    """
    return customer.email is not None and customer.email.strip().casefold() == email.strip().casefold()


def order_search_params(reference: str) -> dict[str, str]:
    """Query parameters that find orders by our reference: ``/orders?search=<reference>``.

    [assumed] The free-text search covers ``your_reference``; results are compared exactly
    with :func:`order_reference_matches`.
    """
    return {"search": reference.strip()}


def order_reference_matches(order: Order, reference: str) -> bool:
    """True when ``order.your_reference`` is exactly ``reference`` (surrounding blanks ignored).

    [assumed] The free-text search is loose, so the reference is compared here, and case
    matters: ``#1042`` never matches ``#10420`` or ``#1042-1``.
    """
    return order.your_reference is not None and order.your_reference.strip() == reference.strip()


def order_heading(order: Order) -> str | None:
    """The heading an order was created with (``heading``, the name :func:`order_body` writes)."""
    heading = order.raw.get("heading")
    return str(heading) if heading is not None else None


def reference_envelope(resource: str) -> str:
    """The envelope key of a list endpoint: the path with ``-`` as ``_``.

    [assumed] for ``payment-terms``, ``employees``, ``customer-groups`` and ``currencies``
    (documented for ``product-groups`` → ``product_groups``).
    """
    return resource.strip("/").replace("-", "_")


def available_at_locations(
    stocks: Mapping[str, LocationStock], wanted: Sequence[str]
) -> list[Decimal | None] | None:
    """The available quantity at each of the ``wanted`` locations, from the entries of
    ``/products/{n}/locations`` (by location number); None when that listing does not
    carry the figure, so the caller asks :meth:`RackbeatClient.available_per_location`.

    A wanted location without an entry holds nothing (0). [assumed] Whether
    ``available_quantity`` exists per location is unknown: an entry without it (or with
    null) means the listing does not say, not that nothing is available.
    """
    values = [stocks[n].available_quantity if n in stocks else Decimal(0) for n in wanted]
    if any(value is None for value in values):
        return None
    return values


def available_entry(raw: Mapping[str, Any]) -> tuple[str, Decimal | None]:
    """(location number, available quantity) from one ``/items/{n}/locations/available`` entry.

    [assumed] The entry is a location with its ``number`` (or a nested ``location.number``)
    and ``available_quantity`` (``quantity`` as a second guess).
    """
    location = raw.get("location")
    number = location.get("number") if isinstance(location, Mapping) else raw.get("number")
    value = raw["available_quantity"] if "available_quantity" in raw else raw.get("quantity")
    return number_text(number), _decimal(value, "available quantity")


def weight_unit(shopify_unit: str | None) -> str | None:
    """Rackbeat's ``physical.weight_unit`` for a Shopify ``WeightUnit`` (``KILOGRAMS`` → ``kg``);
    None for a unit without a known name.

    [assumed] Rackbeat names units by their symbols (:data:`WEIGHT_UNITS`); the reference
    lists ``weight_unit``'s values as unknown.
    """
    return WEIGHT_UNITS.get(shopify_unit or "")


def product_body(
    *,
    number: str | None = None,
    name: str | None = None,
    description: str | None = None,
    barcode: str | None = None,
    sales_price: Decimal | int | float | None = None,
    cost_price: Decimal | int | float | None = None,
    group: str | None = None,
    weight: Decimal | int | float | None = None,
    weight_unit: str | None = None,
    is_barred: bool | None = None,
) -> JSONObject:
    """Body of ``POST /products`` and ``PUT /products/{number}``; None leaves a field out.

    [assumed] Writes use the read names; the group is ``group_id`` holding the group
    *number*; the weight is ``physical.weight`` / ``physical.weight_unit`` (unit values
    such as ``"kg"`` or ``"g"`` are passed through as given).
    """
    body: JSONObject = {}
    for key, value in (
        ("number", number),
        ("name", name),
        ("description", description),
        ("barcode", barcode),
    ):
        if value is not None:
            body[key] = value
    for key, amount in (("sales_price", sales_price), ("cost_price", cost_price)):
        if amount is not None:
            body[key] = _json_number(amount)
    if group is not None:
        body["group_id"] = group
    physical: JSONObject = {}
    if weight is not None:
        physical["weight"] = _json_number(weight)
    if weight_unit is not None:
        physical["weight_unit"] = weight_unit
    if physical:
        body["physical"] = physical
    if is_barred is not None:
        body["is_barred"] = is_barred
    return body


def customer_body(
    *,
    name: str,
    email: str | None = None,
    phone: str | None = None,
    group: str | None = None,
    vat_zone: str | None = None,
    currency: str | None = None,
    payment_terms: str | None = None,
    locale: str | None = None,
) -> JSONObject:
    """Body of ``POST /customers``; None leaves a field out (Rackbeat's default applies).

    [assumed] snake_case names seen in .NET connectors: ``contact_email``, ``contact_phone``,
    ``customer_group_id``, ``vat_zone`` (``domestic``/``eu``/``abroad``), ``currency``,
    ``payment_terms_id``, ``locale``. Numbers are sent as the strings configured.
    """
    body: JSONObject = {"name": name}
    optional = (
        ("contact_email", email),
        ("contact_phone", phone),
        ("customer_group_id", group),
        ("vat_zone", vat_zone),
        ("currency", currency),
        ("payment_terms_id", payment_terms),
        ("locale", locale),
    )
    body.update({key: value for key, value in optional if value is not None})
    return body


def order_body(
    *,
    customer: str,
    lines: Sequence[Mapping[str, Any]],
    currency: str | None = None,
    number: str | None = None,
    payment_terms: str | None = None,
    employee: str | None = None,
    your_reference: str | None = None,
    heading: str | None = None,
    delivery_address: Mapping[str, str] | None = None,
) -> JSONObject:
    """Body of ``POST /orders/drafts``.

    Each line needs ``item_id`` (the product number) and ``quantity``, and may have ``name``,
    ``line_price`` (the *unit* price excluding VAT; left out → Rackbeat's price) and
    ``discount_percentage`` (default 0). ``number`` is only for reusing Shopify's order
    number (S2); None lets Rackbeat number the order.

    [assumed] header names ``customer_id``, ``currency``, ``number``, ``payment_terms_id``,
    ``our_reference`` (the employee number), ``your_reference`` (the Shopify order name, also
    what :meth:`RackbeatClient.orders_by_reference` looks for), ``heading`` and
    ``delivery_address`` {name, street, street2, zipcode, city, country}. ``number`` is
    accepted on create (when it is taken, see :func:`number_taken`).
    """
    body: JSONObject = {"customer_id": customer}
    optional = (
        ("currency", currency),
        ("number", number),
        ("payment_terms_id", payment_terms),
        ("our_reference", employee),
        ("your_reference", your_reference),
        ("heading", heading),
    )
    body.update({key: value for key, value in optional if value is not None})
    if delivery_address is not None:
        body["delivery_address"] = {str(k): "" if v is None else str(v) for k, v in delivery_address.items()}
    body["lines"] = [_order_line(index, line) for index, line in enumerate(lines)]
    return body


def _order_line(index: int, line: Mapping[str, Any]) -> JSONObject:
    if not line.get("item_id") or line.get("quantity") is None:
        raise ValueError(f"order line {index} needs item_id and quantity")
    out: JSONObject = {"item_id": str(line["item_id"]), "quantity": _json_number(line["quantity"])}
    if line.get("name") is not None:
        out["name"] = str(line["name"])
    if line.get("line_price") is not None:
        out["line_price"] = _json_number(line["line_price"])
    out["discount_percentage"] = _json_number(line.get("discount_percentage") or 0)
    return out


def number_taken(fields: Mapping[str, Sequence[str]]) -> list[str] | None:
    """Rackbeat's messages when a 422 on a new draft says its ``number`` is taken, else None.

    ``fields`` is :attr:`~daemon.errors.ValidationError.fields`. [assumed] A number already
    in use (setting S2 = shopify) is answered with 422 on the field ``number``.
    """
    messages = fields.get("number")
    return list(messages) if messages is not None else None


def order_state(order: Order) -> OrderState:
    """Where an order stands, from its flags (read by :meth:`Order.from_json`), the
    strongest first: cancelled, shipped, ready to ship, booked, draft.

    [assumed] "ready to ship" is a booked order with a shipment created, which Rackbeat
    shows as ``is_ready_for_shipping``.
    """
    if order.is_cancelled:
        return "cancelled"
    if order.is_shipped:
        return "shipped"
    if order.is_ready_for_shipping:
        return "ready_to_ship"
    if order.is_booked:
        return "booked"
    return "draft"


#: the states in which an order step has been done
_DONE_STATES: dict[str, frozenset[OrderState]] = {
    "book": frozenset({"booked", "ready_to_ship", "shipped"}),
    "create-shipment": frozenset({"ready_to_ship", "shipped"}),
}


def step_already_done(step: OrderStep, order: Order) -> bool:
    """True when ``order`` (read back after Rackbeat refused ``step`` with a 422) shows
    that the step had been done already, e.g. by an earlier attempt whose answer was lost.

    [assumed] Booking an order that is already booked, or creating a second shipment, is
    answered with 422 rather than 200; the order's state is what tells the two apart from
    a real refusal.
    """
    return order_state(order) in _DONE_STATES[step]


def changed_orders_params(since: datetime) -> dict[str, str]:
    """Query parameters for "orders updated at or after ``since``", whatever their state:
    ``/orders?updated_at_from=<since>``.

    [assumed] ``updated_at_from`` filters ``/orders`` on its own, without a flag beside it
    (the docs show it on invoices only). Shipping (all or part of an order) bumps the
    order's ``updated_at``, and adding tracking to a shipment bumps the order's
    ``updated_at`` (so the list shows it again). The list also holds the orders the daemon
    itself just made or booked: the fulfilments flow keeps the shipped and partly shipped
    ones (by their flags) and checks each answer against the time, so a server that
    ignores the filter costs requests, not correctness.
    """
    return {"updated_at_from": format_timestamp(since)}


def shipment_lines(raw: Mapping[str, Any]) -> tuple[ShipmentLine, ...] | None:
    """What left with a shipment, from its ``lines`` (None when Rackbeat gave none).

    [assumed] ``lines: [{"item_id": "<sku>", "quantity": n}]`` on each shipment of
    ``/orders/{n}/shipments``; no public source shows a shipment's lines. Absent, null or
    empty is None ("not said": the caller goes by the order's flags), not "nothing left".
    A quantity must be a whole number of at least 0. Raises MalformedResponse otherwise.
    """
    lines = raw.get("lines")
    if lines is None or (isinstance(lines, list) and not lines):
        return None
    if not isinstance(lines, list):
        raise MalformedResponse(f"a shipment's lines are not a list: {lines!r}")
    parsed: list[ShipmentLine] = []
    for line in lines:
        entry = _record(line, "a shipment line")
        sku = number_text(entry.get("item_id"))
        quantity = _decimal(entry.get("quantity"), f"shipment line {sku!r} quantity")
        if quantity is None or quantity < 0 or quantity != quantity.to_integral_value():
            raise MalformedResponse(f"shipment line {sku!r}: not a whole quantity: {entry.get('quantity')!r}")
        parsed.append(ShipmentLine(sku=sku, quantity=int(quantity)))
    return tuple(parsed)


def shipment_tracking(raw: Mapping[str, Any]) -> tuple[str | None, str | None, str | None]:
    """(carrier, tracking number, tracking URL) of a shipment; None for each one it lacks.

    [assumed] The fields are ``carrier``, ``track_trace_number`` and ``track_trace_url``;
    no public source shows them. A blank value is None; a ``carrier`` object gives its
    ``name``. Raises MalformedResponse for a value that is not text.
    """

    def text(key: str) -> str | None:
        value = raw.get(key)
        if key == "carrier" and isinstance(value, Mapping):
            value = value.get("name")
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise MalformedResponse(f"a shipment's {key} is not text: {value!r}")
        return str(value).strip() or None

    return text("carrier"), text("track_trace_number"), text("track_trace_url")


# --- value parsing --------------------------------------------------------------------------


def _json_number(value: Any) -> int | float:
    """An amount or quantity as a JSON number (integral values as int)."""
    if isinstance(value, bool):
        raise TypeError(f"not a number: {value!r}")
    try:
        exact = Decimal(str(value))
    except InvalidOperation:
        raise ValueError(f"not a number: {value!r}") from None
    if not exact.is_finite():
        raise ValueError(f"not a finite number: {value!r}")
    return int(exact) if exact == exact.to_integral_value() else float(exact)


#: parsed numbers by their text, shared: a catalogue's stock figures repeat a few values
#: thousands of times, and a Decimal is over 100 bytes (memory at 50,000 SKUs)
_DECIMALS: dict[str, Decimal] = {}
_SHARED_DECIMALS = 4096


def _decimal(value: Any, what: str) -> Decimal | None:
    if value is None:
        return None
    if isinstance(value, bool):
        raise MalformedResponse(f"{what} is not a number: {value!r}")
    text = str(value).strip()
    shared = _DECIMALS.get(text)
    if shared is not None:
        return shared
    try:
        result = Decimal(text)
    except InvalidOperation:
        raise MalformedResponse(f"{what} is not a number: {value!r}") from None
    if not result.is_finite():
        raise MalformedResponse(f"{what} is not a finite number: {value!r}")
    if len(_DECIMALS) < _SHARED_DECIMALS:
        _DECIMALS[text] = result  # a Decimal is immutable: one object serves every equal text
    return result


def _optional_number(value: Any) -> str | None:
    return None if value is None or value == "" else number_text(value)


def _optional_text(value: Any) -> str | None:
    return None if value is None else str(value)


def _optional_time(value: Any) -> datetime | None:
    return parse_timestamp(value) if isinstance(value, str) and value.strip() else None


def _flag(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes")
    return bool(value)


def _record(raw: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(raw, Mapping):
        raise MalformedResponse(f"{what} is not a JSON object")
    return raw


# --- records ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Product:
    """A Rackbeat product; fields a narrow scan (``fields=``) did not ask for are None."""

    number: str
    name: str | None = None
    description: str | None = None
    barcode: str | None = None
    sales_price: Decimal | None = None
    cost_price: Decimal | None = None
    group_number: str | None = None
    group_name: str | None = None
    weight: Decimal | None = None
    weight_unit: str | None = None
    stock_quantity: Decimal | None = None
    in_order_quantity: Decimal | None = None
    available_quantity: Decimal | None = None
    is_barred: bool | None = None
    inventory_enabled: bool | None = None
    updated_at: datetime | None = None
    #: the product as Rackbeat sent it
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_json(cls, raw: Any) -> Product:
        """Build from one product object; raises MalformedResponse without a number."""
        data = _record(raw, "a product")
        number = number_text(data.get("number"))
        what = f"product {number!r}"
        group = data.get("group")
        group_number = _optional_number(group.get("number")) if isinstance(group, Mapping) else None
        if group_number is None:
            group_number = _optional_number(data.get("group_id"))
        physical = data.get("physical")
        physical = physical if isinstance(physical, Mapping) else {}
        return cls(
            number=number,
            name=_optional_text(data.get("name")),
            description=_optional_text(data.get("description")),
            barcode=_optional_text(data.get("barcode")) or None,
            sales_price=_decimal(data.get("sales_price"), f"{what} sales_price"),
            cost_price=_decimal(data.get("cost_price"), f"{what} cost_price"),
            group_number=group_number,
            group_name=_optional_text(group.get("name")) if isinstance(group, Mapping) else None,
            weight=_decimal(physical.get("weight"), f"{what} weight"),
            weight_unit=_optional_text(physical.get("weight_unit")),
            stock_quantity=_decimal(data.get("stock_quantity"), f"{what} stock_quantity"),
            in_order_quantity=_decimal(data.get("in_order_quantity"), f"{what} in_order_quantity"),
            available_quantity=_decimal(data.get("available_quantity"), f"{what} available_quantity"),
            is_barred=_flag(data["is_barred"]) if "is_barred" in data else None,
            inventory_enabled=_flag(data["inventory_enabled"]) if "inventory_enabled" in data else None,
            updated_at=_optional_time(data.get("updated_at")),
            raw=data,
        )


@dataclass(frozen=True, slots=True)
class StockTotals:
    """One product's stock over all locations, from the narrow scan (:data:`STOCK_FIELDS`).

    A quantity Rackbeat left out or sent as null is None: "unknown", not zero.
    """

    number: str
    stock_quantity: Decimal | None
    in_order_quantity: Decimal | None
    available_quantity: Decimal | None
    is_barred: bool
    updated_at: datetime | None

    @classmethod
    def from_json(cls, raw: Any) -> StockTotals:
        """Build from one (narrowed) product object."""
        product = Product.from_json(raw)
        return cls(
            number=product.number,
            stock_quantity=product.stock_quantity,
            in_order_quantity=product.in_order_quantity,
            available_quantity=product.available_quantity,
            is_barred=bool(product.is_barred),
            updated_at=product.updated_at,
        )


@dataclass(frozen=True)
class Location:
    """A stock location (``number`` is a string in Rackbeat too)."""

    number: str
    name: str
    is_default: bool
    parent_id: str | None = None

    @classmethod
    def from_json(cls, raw: Any) -> Location:
        """Build from one ``locations`` entry."""
        data = _record(raw, "a location")
        return cls(
            number=number_text(data.get("number")),
            name=str(data.get("name") or ""),
            is_default=_flag(data.get("is_default")),
            parent_id=_optional_number(data.get("parent_id")),
        )


@dataclass(frozen=True)
class LocationStock:
    """A product's stock at one location (``/products/{n}/locations``)."""

    location: str
    stock_quantity: Decimal | None
    in_order_quantity: Decimal | None
    available_quantity: Decimal | None

    @classmethod
    def from_json(cls, raw: Any) -> LocationStock:
        """Build from one ``product_locations`` entry (``number`` is the location's)."""
        data = _record(raw, "a product location")
        location = number_text(data.get("number"))
        what = f"location {location!r}"
        return cls(
            location=location,
            stock_quantity=_decimal(data.get("stock_quantity"), f"{what} stock_quantity"),
            in_order_quantity=_decimal(data.get("in_order_quantity"), f"{what} in_order_quantity"),
            available_quantity=_decimal(data.get("available_quantity"), f"{what} available_quantity"),
        )


@dataclass(frozen=True)
class ReferenceItem:
    """An entry of a reference list: payment terms, employees, groups, currencies."""

    number: str
    name: str
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_json(cls, raw: Any) -> ReferenceItem:
        """Build from one entry.

        [assumed] Currencies have no ``number``, so they are keyed by their ``code``.
        """
        data = _record(raw, "a reference entry")
        number = data.get("number")
        if number is None:
            number = data.get("code")
        return cls(number=number_text(number), name=str(data.get("name") or ""), raw=data)


@dataclass(frozen=True)
class Customer:
    """A Rackbeat customer."""

    number: str
    name: str
    #: ``contact_email`` (see :meth:`from_json`)
    email: str | None
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_json(cls, raw: Any) -> Customer:
        """Build from one customer object.

        [assumed] The customer's e-mail is ``contact_email``.
        """
        data = _record(raw, "a customer")
        email = data.get("contact_email")
        return cls(
            number=number_text(data.get("number")),
            name=str(data.get("name") or ""),
            email=str(email) if email else None,
            raw=data,
        )


@dataclass(frozen=True)
class Order:
    """A Rackbeat sales order (a draft is an order that is not booked yet)."""

    number: str
    customer: str | None
    your_reference: str | None
    is_booked: bool
    is_ready_for_shipping: bool
    is_shipped: bool
    is_cancelled: bool
    updated_at: datetime | None
    #: some of the order has been shipped, not all (not a state: :func:`order_state` ignores it)
    is_partly_shipped: bool = False
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def state(self) -> OrderState:
        """:func:`order_state` of this order."""
        return order_state(self)

    @classmethod
    def from_json(cls, raw: Any) -> Order:
        """Build from one order object.

        [assumed] The customer is ``customer_id`` (or a nested ``customer.number``) and our
        reference is ``your_reference``, the names :func:`order_body` writes. The state
        flags are ``is_booked``, ``is_ready_for_shipping``, ``is_shipped`` and
        ``is_cancelled``, and ``is_partly_shipped`` says part of it has left (named by
        Rackbeat's client; a flag left out is false).
        """
        data = _record(raw, "an order")
        customer = data.get("customer_id")
        nested = data.get("customer")
        if customer is None and isinstance(nested, Mapping):
            customer = nested.get("number")
        reference = data.get("your_reference")
        return cls(
            number=number_text(data.get("number")),
            customer=_optional_number(customer),
            your_reference=str(reference) if reference is not None else None,
            is_booked=_flag(data.get("is_booked")),
            is_ready_for_shipping=_flag(data.get("is_ready_for_shipping")),
            is_shipped=_flag(data.get("is_shipped")),
            is_cancelled=_flag(data.get("is_cancelled")),
            updated_at=_optional_time(data.get("updated_at")),
            is_partly_shipped=_flag(data.get("is_partly_shipped")),
            raw=data,
        )


@dataclass(frozen=True)
class ShipmentLine:
    """What of one product left with a shipment."""

    #: the product number (Rackbeat's ``item_id``)
    sku: str
    quantity: int


@dataclass(frozen=True)
class Shipment:
    """One shipment of an order (``/orders/{n}/shipments``).

    ``lines`` is None when Rackbeat did not say what left with it (:func:`shipment_lines`);
    the carrier and tracking are :func:`shipment_tracking`'s.
    """

    id: str
    is_shipped: bool
    lines: tuple[ShipmentLine, ...] | None
    carrier: str | None
    tracking_number: str | None
    tracking_url: str | None
    updated_at: datetime | None
    #: the shipment as Rackbeat sent it
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_json(cls, raw: Any) -> Shipment:
        """Build from one ``order_shipments`` entry (``id``, ``is_shipped`` and ``updated_at``
        as Rackbeat's client names them); raises MalformedResponse without an id."""
        data = _record(raw, "a shipment")
        carrier, number, url = shipment_tracking(data)
        return cls(
            id=number_text(data.get("id")),
            is_shipped=_flag(data.get("is_shipped")),
            lines=shipment_lines(data),
            carrier=carrier,
            tracking_number=number,
            tracking_url=url,
            updated_at=_optional_time(data.get("updated_at")),
            raw=data,
        )


# --- transport helpers --------------------------------------------------------------------------


def _segment(number: str) -> str:
    """A path parameter, percent-encoded exactly once (``/``, space, ``+`` and ``æøå`` too)."""
    text = str(number)
    if not text.strip():
        raise ValueError("a Rackbeat number must not be blank")
    return urllib.parse.quote(text, safe="")


def _json_or_none(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _validation_fields(body: Any) -> dict[str, list[str]]:
    """Rackbeat's ``{"errors": {field: [messages]}}`` as field → messages."""
    if not isinstance(body, Mapping):
        return {}
    errors = body.get("errors")
    fields: dict[str, list[str]] = {}
    if isinstance(errors, Mapping):
        for key, messages in errors.items():
            if isinstance(messages, list):
                fields[str(key)] = [str(m) for m in messages]
            else:
                fields[str(key)] = [str(messages)]
    elif isinstance(errors, list):
        fields["base"] = [str(m) for m in errors]
    message = body.get("message")
    if not fields and isinstance(message, str) and message:
        fields["base"] = [message]
    return fields


def envelope_count(value: Any) -> int | None:
    """A count of a list envelope (``pages``, ``limit``, ``total``): an int, a digit string or an
    integral float; None for anything else."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def _unwrap(body: Mapping[str, Any], key: str, what: str) -> JSONObject:
    value = body.get(key)
    if not isinstance(value, dict):
        raise MalformedResponse(f"{what}: the answer has no {key!r} object")
    return value


def _items(body: Mapping[str, Any], key: str, what: str) -> list[JSONObject]:
    value = body.get(key)
    if not isinstance(value, list):
        raise MalformedResponse(f"{what}: the answer has no {key!r} list")
    if not all(isinstance(item, dict) for item in value):
        raise MalformedResponse(f"{what}: {key!r} holds something other than objects")
    return value


Missing = Literal["record", "config"]


class _Sending(TypedDict, total=False):
    """How :meth:`RackbeatClient._exchange` sends a request (its keyword arguments)."""

    params: Mapping[str, str] | None
    json: JSONObject | None
    replay_safe: bool
    missing: Missing


# --- the client ---------------------------------------------------------------------------------


class RackbeatClient:
    """Talks to one Rackbeat account through an injected ``httpx.AsyncClient``.

    Counters for metrics (plain attributes, only ever increased): ``requests`` sent
    (retries included), ``retries`` re-sends after a failure, ``throttled`` 429 answers,
    ``wait_seconds`` time spent waiting for the budget or a throttle pause.
    """

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        base_url: str,
        token: SecretStr,
        contact_name: str = "rackbeat-shopify",
        contact_email: str = "",
        requests_per_minute: int = 300,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
        backoff_sleep: Callable[[float], Awaitable[None]] | None = None,
        clock: Callable[[], float] = time.monotonic,
        random: Callable[[], float] = _random.random,
        max_attempts: int = MAX_ATTEMPTS,
        max_throttle_waits: int = MAX_THROTTLE_WAITS,
        page_limit: int = PAGE_LIMIT,
    ) -> None:
        """``requests_per_minute`` is the budget shared by every caller: at most that many
        sends in any 60 seconds. ``sleep``, ``clock`` (monotonic seconds) and ``random``
        (uniform in [0, 1), the jitter) are seams for tests; ``backoff_sleep`` (default
        ``sleep``) is the wait before retrying a failed request (the daemon's ends on stop).
        """
        if not token.get_secret_value().strip():
            raise ConfigError("RACKBEAT_API_TOKEN: missing; set the Rackbeat API key")
        if requests_per_minute < 1:
            raise ConfigError("RACKBEAT_REQUESTS_PER_MINUTE: must be at least 1")
        if not 1 <= page_limit <= 1000:
            raise ValueError("page_limit must be 1–1000")
        for variable, value in (
            ("RACKBEAT_CONTACT_NAME", contact_name),
            ("RACKBEAT_CONTACT_EMAIL", contact_email),
        ):
            # sent in HTTP headers: plain ASCII on one line, or httpx refuses to send
            if not value.isascii() or any(c in value for c in "\r\n"):
                raise ConfigError(f"{variable}: must be plain ASCII on one line (it is sent in HTTP headers)")
        self._http = http
        self._base_url = base_url.rstrip("/")
        self._token = token
        register_secret(token.get_secret_value())
        self._sleep = sleep
        self._clock = clock
        # a 429 pauses every caller (`hold`); the budget then waits the pause out
        self._retry = Retrying(
            "rackbeat",
            RetryPolicy(max_attempts=max_attempts, max_throttle_waits=max_throttle_waits),
            backoff_sleep=backoff_sleep or sleep,  # the daemon's ends on shutdown
            random=random,
            hold=self._pause_all,
        )
        self.page_limit = page_limit
        #: the ``limit`` Rackbeat last echoed on a list (it may cap what we ask for)
        self.echoed_limit: int | None = None

        name = contact_name.strip() or "rackbeat-shopify"
        email = contact_email.strip()
        self._headers = {
            "Authorization": f"Bearer {token.get_secret_value()}",
            "Accept": "application/json",
            "Content-Type": "application/json",
            "User-Agent": f"{name} ({email})" if email else name,
            "Consumer-Name": name,
            "API-Version": "latest",
        }
        if email:
            self._headers["Consumer-Contact"] = email
        else:
            log.warning(
                "rackbeat.contact_missing",
                variable="RACKBEAT_CONTACT_EMAIL",
                detail="Rackbeat asks integrations to send a contact e-mail",
            )

        # budget: the send times of the last `requests_per_minute` requests, oldest first
        self._per_window = requests_per_minute
        self._sent: collections.deque[float] = collections.deque(maxlen=requests_per_minute)
        self._resume_at = -math.inf
        self._budget_lock = anyio.Lock()

        self.requests = 0
        self.wait_seconds = 0.0

    @classmethod
    def from_settings(cls, settings: Settings, http: httpx.AsyncClient, **kwargs: Any) -> RackbeatClient:
        """Build from :class:`~daemon.config.Settings`; ``kwargs`` go to the constructor."""
        return cls(
            http,
            base_url=settings.rackbeat_api_url,
            token=settings.rackbeat_api_token,
            contact_name=settings.rackbeat_contact_name,
            contact_email=settings.rackbeat_contact_email,
            requests_per_minute=settings.rackbeat_requests_per_minute,
            **kwargs,
        )

    def __repr__(self) -> str:
        return f"RackbeatClient(url={self._base_url!r})"

    @property
    def retries(self) -> int:
        """Re-sends after a failure."""
        return self._retry.retries

    @property
    def throttled(self) -> int:
        """429 answers."""
        return self._retry.throttled

    # --- products ---------------------------------------------------------------------------

    async def products(
        self, fields: Sequence[str] | None = None, updated_since: datetime | None = None
    ) -> AsyncGenerator[list[Product], None]:
        """Yield pages of products (``GET /products``), in Rackbeat's order.

        ``fields`` narrows each product to those fields (``number`` is always added);
        ``updated_since`` (aware) keeps products updated at or after it
        (:func:`updated_since_params`). Close the generator (``contextlib.aclosing``) when
        leaving early.
        """
        params: dict[str, str] = {}
        if fields:
            wanted = ["number", *(f for f in fields if f != "number")]
            params["fields"] = ",".join(wanted)
        if updated_since is not None:
            params.update(updated_since_params(updated_since))
        pages = self._pages("products", "products", params)
        async with contextlib.aclosing(pages):
            async for page in pages:
                yield [Product.from_json(item) for item in page]

    async def stock_totals(
        self, *, on_total: Callable[[int], None] | None = None
    ) -> AsyncGenerator[list[StockTotals], None]:
        """Yield pages of every product's stock totals: the narrow scan (:data:`STOCK_FIELDS`).

        ``on_total`` is told the number of products to expect once the first page says it."""
        pages = self._pages("products", "products", {"fields": ",".join(STOCK_FIELDS)}, on_total=on_total)
        async with contextlib.aclosing(pages):
            async for page in pages:
                yield [StockTotals.from_json(item) for item in page]

    async def get_product(self, number: str) -> Product | None:
        """The product with this number (SKU), or None when Rackbeat has none (404)."""
        try:
            body = await self._call("GET", f"products/{_segment(number)}")
        except NotFoundError:
            return None
        return Product.from_json(_unwrap(body, "product", f"GET product {number!r}"))

    async def create_product(self, body: Mapping[str, Any]) -> Product:
        """Create a product (:func:`product_body`) → the created product.

        Raises ValidationError (422) e.g. for a number already taken. Not resent after a
        failure Rackbeat may have acted on (AmbiguousWrite): look the number up first.
        """
        answer = await self._call("POST", "products", json=dict(body), replay_safe=False)
        return Product.from_json(_unwrap(answer, "product", "POST product"))

    async def update_product(self, number: str, body: Mapping[str, Any]) -> Product:
        """Update the product with this number (:func:`product_body`) → the product.

        Raises NotFoundError (404) and ValidationError (422).
        """
        answer = await self._call("PUT", f"products/{_segment(number)}", json=dict(body))
        return Product.from_json(_unwrap(answer, "product", f"PUT product {number!r}"))

    async def product_locations(self, number: str) -> list[LocationStock]:
        """Stock of one product per location (``/products/{n}/locations``); NotFoundError (404)."""
        path = f"products/{_segment(number)}/locations"
        return [
            LocationStock.from_json(item)
            for item in await self._all(path, "product_locations", missing="record")
        ]

    async def available_per_location(self, number: str) -> dict[str, Decimal | None]:
        """Available stock of one product by location number
        (``/items/{n}/locations/available``, read with :func:`available_entry`); NotFoundError (404)."""
        path = f"items/{_segment(number)}/locations/available"
        return dict(available_entry(item) for item in await self._all(path, "locations", missing="record"))

    # --- reference data -----------------------------------------------------------------------

    async def locations(self) -> list[Location]:
        """Every stock location."""
        return [Location.from_json(item) for item in await self._all("locations", "locations")]

    async def product_groups(self) -> list[ReferenceItem]:
        """Every product group (``product_groups``)."""
        return await self._reference("product-groups")

    async def payment_terms(self) -> list[ReferenceItem]:
        """Every payment term (envelope :func:`reference_envelope`)."""
        return await self._reference("payment-terms")

    async def employees(self) -> list[ReferenceItem]:
        """Every employee (their numbers go in an order's ``our_reference``)."""
        return await self._reference("employees")

    async def customer_groups(self) -> list[ReferenceItem]:
        """Every customer group."""
        return await self._reference("customer-groups")

    async def currencies(self) -> list[ReferenceItem]:
        """Every currency (``number`` is the ISO code where Rackbeat gives only ``code``)."""
        return await self._reference("currencies")

    async def _reference(self, resource: str) -> list[ReferenceItem]:
        return [ReferenceItem.from_json(i) for i in await self._all(resource, reference_envelope(resource))]

    # --- customers -------------------------------------------------------------------------------

    async def find_customer_by_email(self, email: str) -> Customer | None:
        """The customer whose e-mail is exactly ``email`` (case-insensitive), None if none.

        Searches (:func:`customer_search_params`) and compares every result
        (:func:`customer_email_matches`); near matches of the free-text search are ignored.
        With several exact matches the first Rackbeat lists wins.
        """
        if not email.strip():
            raise ValueError("an empty e-mail matches nothing reliably")
        pages = self._pages("customers", "customers", customer_search_params(email))
        async with contextlib.aclosing(pages):
            async for page in pages:
                for item in page:
                    customer = Customer.from_json(item)
                    if customer_email_matches(customer, email):
                        return customer
        return None

    async def create_customer(self, body: Mapping[str, Any]) -> Customer:
        """Create a customer (:func:`customer_body`) → the customer with its new number.

        Not resent after a failure Rackbeat may have acted on (AmbiguousWrite): search
        again first.
        """
        answer = await self._call("POST", "customers", json=dict(body), replay_safe=False)
        return Customer.from_json(_unwrap(answer, "customer", "POST customer"))

    # --- orders ----------------------------------------------------------------------------------

    async def create_draft_order(self, body: Mapping[str, Any]) -> Order:
        """Create a draft order (:func:`order_body`, ``POST /orders/drafts``) → the order.

        Raises ValidationError (422: unknown item, customer, number taken …). Not resent
        after a failure Rackbeat may have acted on (AmbiguousWrite): call
        :meth:`orders_by_reference` before trying again.
        """
        answer = await self._call("POST", "orders/drafts", json=dict(body), replay_safe=False)
        return Order.from_json(_unwrap(answer, "order", "POST draft order"))

    async def book_order(self, number: str, send_mail: bool = False) -> None:
        """Book a draft (``POST /orders/{n}/book``); ``send_mail`` e-mails the confirmation.

        An already booked order answers ValidationError (422): read the order
        (:meth:`get_order`) and ask :func:`step_already_done`. NotFoundError for an unknown
        number. Not resent after a failure Rackbeat may have acted on (AmbiguousWrite): a
        second booking is refused only by assumption, and could mail the customer twice.
        """
        await self._call(
            "POST",
            f"orders/{_segment(number)}/book",
            json={"mail": {"send": bool(send_mail)}},
            replay_safe=False,
        )

    async def create_shipment(self, number: str) -> None:
        """Create the shipment of a booked order (``POST /orders/{n}/create-shipment``),
        which makes it ready to ship. A second shipment answers ValidationError: read the
        order and ask :func:`step_already_done`. Not resent after a failure Rackbeat may have
        acted on (AmbiguousWrite): that a second shipment is refused is only assumed."""
        await self._call("POST", f"orders/{_segment(number)}/create-shipment", json={}, replay_safe=False)

    async def get_order(self, number: str) -> Order:
        """The order with this number; NotFoundError (404) when there is none."""
        body = await self._call("GET", f"orders/{_segment(number)}")
        return Order.from_json(_unwrap(body, "order", f"GET order {number!r}"))

    async def orders_by_reference(self, your_reference: str) -> list[Order]:
        """Every order whose ``your_reference`` is exactly ``your_reference``: searches
        (:func:`order_search_params`) and compares every result (:func:`order_reference_matches`);
        several shops feeding one account may each have a ``#1001``."""
        if not your_reference.strip():
            raise ValueError("an empty reference matches nothing reliably")
        found: list[Order] = []
        pages = self._pages("orders", "orders", order_search_params(your_reference))
        async with contextlib.aclosing(pages):
            async for page in pages:
                found.extend(
                    o for o in map(Order.from_json, page) if order_reference_matches(o, your_reference)
                )
        return found

    async def changed_orders(self, since: datetime) -> AsyncGenerator[list[Order], None]:
        """Pages of orders updated at/after ``since`` (:func:`changed_orders_params`), as
        Rackbeat lists them: which were shipped, and whether the filter held, is the
        caller's to check (the fulfilments flow falls back to reading orders back when it
        did not). Close the generator (``contextlib.aclosing``) when leaving early.
        """
        pages = self._pages("orders", "orders", changed_orders_params(since))
        async with contextlib.aclosing(pages):
            async for page in pages:
                yield [Order.from_json(item) for item in page]

    async def order_shipments(self, number: str) -> list[Shipment]:
        """GET /orders/{n}/shipments (all pages); NotFoundError (404) for an unknown order."""
        path = f"orders/{_segment(number)}/shipments"
        return [
            Shipment.from_json(item) for item in await self._all(path, "order_shipments", missing="record")
        ]

    async def delete_draft(self, number: str) -> None:
        """Delete a draft order (``DELETE /orders/{n}``).

        [assumed] DELETE removes a draft (answered 200 or 204); a booked order is refused
        with 422 (ValidationError); NotFoundError (404) when it is gone already. Replay-safe:
        a failure whose answer was lost is resent, and when the first DELETE had arrived,
        the resend answers 404, so NotFoundError is "done" to a caller that wants the draft
        gone. (Order numbers are not reused by Rackbeat; with S2 = shopify only the daemon
        reuses one, after it has seen the delete succeed.)
        """
        await self._call("DELETE", f"orders/{_segment(number)}")

    # --- reads for ``check --live`` -----------------------------------------------------------

    async def read_raw(
        self, *segments: str, params: Mapping[str, str] | None = None
    ) -> tuple[int, JSONObject]:
        """``GET`` one page or record exactly as Rackbeat answers it: (HTTP status, JSON body).

        ``segments`` are path parts, each percent-encoded once (a SKU with ``/`` is one
        part). Budgeted and retried like every request; a 404 raises NotFoundError. For
        :mod:`daemon.live_check`, which checks the shapes the other methods assume.
        """
        path = "/".join(_segment(part) for part in segments)
        return await self._exchange("GET", path, params=params)

    # --- internals: lists ------------------------------------------------------------------------

    async def _pages(
        self,
        path: str,
        envelope: str,
        params: Mapping[str, str] | None = None,
        *,
        missing: Missing = "config",
        on_total: Callable[[int], None] | None = None,
    ) -> AsyncGenerator[list[JSONObject], None]:
        """Yield the ``envelope`` list of each page of ``path`` (200 and 206 alike).

        Stops at the answer's ``pages``; without it, at a page shorter than the echoed
        ``limit``. An empty page before ``pages`` (the list shrank meanwhile) ends it too.
        ``on_total`` hears the expected number of items (``pages`` × the page size) once
        the first page tells it.
        """
        page = 1
        what = f"GET /{path}"
        while True:
            query = {**(params or {}), "page": str(page), "limit": str(self.page_limit)}
            body = await self._call("GET", path, params=query, missing=missing)
            items = _items(body, envelope, what)
            echoed = envelope_count(body.get("limit"))
            if echoed is not None and echoed != self.echoed_limit:
                if echoed != self.page_limit:
                    log.info("rackbeat.page_limit_capped", request=what, asked=self.page_limit, echoed=echoed)
                self.echoed_limit = echoed
            pages = envelope_count(body.get("pages"))
            if on_total is not None and page == 1 and pages is not None:
                on_total(pages * (echoed or self.page_limit))
            yield items
            if pages is not None:
                if page >= pages:
                    return
            elif len(items) < (echoed or self.page_limit):
                return
            if not items:
                return
            page += 1
            if page > MAX_PAGES:
                raise MalformedResponse(f"{what}: more than {MAX_PAGES} pages; stopped to avoid a loop")

    async def _all(self, path: str, envelope: str, *, missing: Missing = "config") -> list[JSONObject]:
        found: list[JSONObject] = []
        pages = self._pages(path, envelope, missing=missing)
        async with contextlib.aclosing(pages):
            async for page in pages:
                found.extend(page)
        return found

    # --- internals: sending ----------------------------------------------------------------------

    async def _call(self, method: str, path: str, **options: Unpack[_Sending]) -> JSONObject:
        """:meth:`_exchange` without the HTTP status: the decoded JSON object."""
        _, body = await self._exchange(method, path, **options)
        return body

    async def _exchange(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        json: JSONObject | None = None,
        replay_safe: bool = True,
        missing: Missing = "record",
    ) -> tuple[int, JSONObject]:
        """Send one request (budgeted, retried): the HTTP status and the decoded JSON object.

        ``path`` is relative to the base URL with its numbers already encoded by
        :func:`_segment`. ``missing`` says what a 404 means: a record that does not exist
        (NotFoundError) or a base URL that is wrong (ConfigError).
        """
        what = f"{method} /{path}"
        url = f"{self._base_url}/{path}"

        async def attempt() -> tuple[int, JSONObject]:
            await self._await_budget()
            self.requests += 1
            response = await self._send(method, url, what, params=params, json=json)
            return response.status_code, self._interpret(response, what, missing)

        return await self._retry.run(what, attempt, replay_safe=replay_safe)

    async def _send(
        self, method: str, url: str, what: str, *, params: Mapping[str, str] | None, json: JSONObject | None
    ) -> httpx.Response:
        """Send, turning httpx's exceptions into retriable failures."""
        try:
            return await self._http.request(method, url, params=params, json=json, headers=self._headers)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            # the request never left: resending cannot duplicate anything
            error = TransportError(f"{what}: cannot reach Rackbeat ({type(exc).__name__})")
            raise AttemptFailed(error, delivered=False, cause=exc) from exc
        except httpx.TimeoutException as exc:
            error = TransportError(f"{what}: Rackbeat did not answer in time ({type(exc).__name__})")
            raise AttemptFailed(error, delivered=True, cause=exc) from exc
        except httpx.TransportError as exc:
            error = TransportError(f"{what}: connection failed ({type(exc).__name__})")
            raise AttemptFailed(error, delivered=True, cause=exc) from exc

    def _interpret(self, response: httpx.Response, what: str, missing: Missing) -> JSONObject:
        """Turn one response into its JSON object or the matching error."""
        status = response.status_code
        if status in _SUCCESS:
            if not response.content.strip():
                return {}
            body = _json_or_none(response)
            if not isinstance(body, dict):
                kind = response.headers.get("content-type", "unknown content type")
                malformed = MalformedResponse(f"{what}: HTTP {status} body is not a JSON object ({kind})")
                raise AttemptFailed(malformed, delivered=True)
            return body
        if status == 204:
            return {}
        if status == 429:
            raise ThrottledError(
                f"{what}: throttled by Rackbeat (HTTP 429)", retry_after=retry_after(response)
            )
        if status == 401:
            raise AuthError(f"Rackbeat refused RACKBEAT_API_TOKEN (HTTP 401) on {what}; check the API key")
        if status == 403:
            raise AuthError(
                f"Rackbeat answered HTTP 403 on {what}: RACKBEAT_API_TOKEN lacks access, or this IP is "
                "restricted (check RACKBEAT_CONTACT_NAME and RACKBEAT_CONTACT_EMAIL)"
            )
        if status == 404:
            if missing == "config":
                raise ConfigError(
                    f"RACKBEAT_API_URL: Rackbeat answered HTTP 404 on {what}; check the base URL"
                )
            raise NotFoundError(f"{what}: Rackbeat has no such record (HTTP 404)")
        if status in (400, 409, 422):
            fields = _validation_fields(_json_or_none(response))
            raise ValidationError(f"Rackbeat rejected {what} (HTTP {status})", fields=fields)
        if status == 408 or status >= 500:
            raise AttemptFailed(TransportError(f"{what}: Rackbeat answered HTTP {status}"), delivered=True)
        if 300 <= status < 400:
            raise ConfigError(
                f"RACKBEAT_API_URL: Rackbeat redirected {what} (HTTP {status}) to "
                f"{response.headers.get('location', '?')}; check the base URL"
            )
        raise FatalError(f"{what}: Rackbeat answered HTTP {status}")

    # --- internals: budget -----------------------------------------------------------------------

    async def _await_budget(self) -> None:
        """Take one request slot, sleeping until the window (and any throttle pause) allows it.

        A send is allowed once the ``requests_per_minute``-th latest send is at least
        :data:`BUDGET_WINDOW_SECONDS` old: then no window ``[t, t + 60)`` holds more.
        """
        async with self._budget_lock:
            now = self._clock()
            start = max(now, self._resume_at)
            if len(self._sent) == self._per_window:
                start = max(start, self._sent[0] + BUDGET_WINDOW_SECONDS)
            wait = start - now
            if wait > 0:
                self.wait_seconds += wait
                await self._sleep(wait)
            # The wait is trusted rather than re-measured: a fake clock that does not move,
            # or rounding, must not turn this into a loop of tiny sleeps. A sleep that
            # overran is recorded as the later time it is, which only ever waits longer.
            # The deque's maxlen drops the send that has just left the window.
            self._sent.append(max(start, self._clock()))

    def _pause_all(self, seconds: float) -> None:
        """Hold every caller's next request for ``seconds`` (Rackbeat throttled us)."""
        self._resume_at = max(self._resume_at, self._clock() + seconds)
