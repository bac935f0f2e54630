"""Shopify Admin GraphQL client: credentials, cost-aware throttle, retries, pagination.

Every request goes through :meth:`ShopifyClient.execute`, which sends one document from
:mod:`daemon.shopify_documents` and returns the response's ``data``. The flows use the
higher-level methods below it (``orders_updated_since``, ``set_available`` …).

Return values
-------------
Reads return plain JSON (``dict``/``list``) shaped exactly like the document's selection,
so the document *is* the description of the result; the only changes are that nested
connections (an order's ``lineItems``, a product's ``variants``) are completed: their
``nodes`` hold every item and ``pageInfo.hasNextPage`` is false. Inventory results are
small frozen dataclasses (:class:`SetStockResult`, :class:`UserError`) or mappings of id →
quantity, because the stock flow reasons about them item by item; so is an order's
fulfilment state (:class:`OrderFulfilment`), which the fulfilments flow compares with
what Rackbeat shipped.

Throttle
--------
Shopify meters the Admin API with a leaky bucket per app and shop, counted in query-cost
points. Every response reports the bucket in ``extensions.cost.throttleStatus``
(``maximumAvailable``, ``currentlyAvailable``, ``restoreRate`` per second) and the price of
the query (``requestedQueryCost`` before running, ``actualQueryCost`` after the refund for
what was not returned). Bucket sizes differ by plan and change without notice, so none is
hard-coded: the client only knows what the last response said.

Before sending, the client extrapolates the last known bucket to now
(``currentlyAvailable + restoreRate × elapsed``, capped at ``maximumAvailable``) and compares
it with the expected cost of the request: the ``requestedQueryCost`` the document had last
time, scaled to the number of nodes asked for now (``first``, or the number of ``ids``: a
connection costs 2 plus that many nodes, so 10 ids do not wait for what 250 cost), and
:data:`DEFAULT_EXPECTED_COST` before the first answer. If the bucket cannot cover it, the
client sleeps ``(expected − available) / restoreRate`` first, and then books the points
against its own estimate so that concurrent callers sharing the client do not all spend the
same points. Shopify's next answer replaces the estimate.

The bucket must hold a query's *requested* cost before it runs, although Shopify refunds
what the answer did not use. So an incremental read — orders or products changed since a
moment, usually a handful — starts with a page of :data:`INCREMENTAL_FIRST_PAGE` and asks
for twice as many on each page after a full one, up to the document's page size
(:meth:`ShopifyClient.paginate`'s ``grow_from``): a cycle that finds two new orders waits for
the price of two, not of a full page.

When Shopify throttles anyway (top-level error ``THROTTLED``, usually with HTTP 200, or
HTTP 429) the client waits ``(requestedQueryCost − currentlyAvailable) / restoreRate``, or
``Retry-After`` on a 429, and sends the same request again. How often, and for how long
at most, is the one retry policy's (:mod:`daemon.retry`; :data:`MAX_THROTTLE_WAITS` in a
row for one request): throttling does not use up the failure budget.

Failures
--------
Retries follow the one policy of :mod:`daemon.retry` (:data:`MAX_ATTEMPTS` sends): 5xx
answers, timeouts, connection errors and unreadable bodies (truncated JSON, an HTML error
page, no ``data``) are retried, then raised as :class:`~daemon.errors.TransportError` or
:class:`~daemon.errors.MalformedResponse`. A mutation that may not be replayed
(``productCreate`` and ``fulfillmentCreate`` have no idempotency key) is only resent when
Shopify certainly did not receive it; otherwise :class:`~daemon.errors.AmbiguousWrite` is
raised. Top-level ``errors`` that are neither throttling nor access problems raise
:class:`~daemon.errors.GraphQLError`; ``userErrors`` of a mutation raise
:class:`~daemon.errors.ValidationError` (see :func:`raise_user_errors`), except for
``inventorySetQuantities``, whose errors are returned item by item.

Access tokens are held as :class:`~pydantic.SecretStr`, registered with the log scrubber,
and never written into an exception, a log line or a ``repr``.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import random as _random
import re
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, NamedTuple

import anyio
import httpx
import structlog
from pydantic import SecretStr

from daemon import shopify_documents as docs
from daemon.errors import (
    AuthError,
    ConfigError,
    FatalError,
    GraphQLError,
    MalformedResponse,
    NotFoundError,
    ThrottledError,
    TransportError,
    ValidationError,
)
from daemon.logs import register_secret
from daemon.retry import AttemptFailed, Retrying, RetryPolicy, SendAgain, retry_after

if TYPE_CHECKING:
    from daemon.config import Settings

__all__ = [
    "BULK_FINAL_STATUSES",
    "DEFAULT_EXPECTED_COST",
    "INCREMENTAL_FIRST_PAGE",
    "MAX_ATTEMPTS",
    "MAX_THROTTLE_WAITS",
    "STALE_CODE",
    "BulkOperation",
    "Fulfillment",
    "FulfillmentOrder",
    "FulfillmentOrderLine",
    "JSONObject",
    "OrderFulfilment",
    "SetStockResult",
    "ShopifyClient",
    "StockQuantity",
    "ThrottleStatus",
    "Tracking",
    "UserError",
    "location_gid",
    "raise_user_errors",
    "sku_search",
]

log = structlog.get_logger("daemon.shopify")

JSONObject = dict[str, Any]
"""A JSON object as decoded from a response."""


#: points assumed for a document the client has not sent before
DEFAULT_EXPECTED_COST = 50.0
#: ``first`` of the first page of an incremental read (changed since a moment)
INCREMENTAL_FIRST_PAGE = 1
#: sends of one request, first one included, before a failure is raised
MAX_ATTEMPTS = 8
#: throttled answers in a row for one request before giving up with ThrottledError
MAX_THROTTLE_WAITS = 60
#: never retry a throttled request sooner than this, whatever the arithmetic says
MIN_THROTTLE_WAIT_SECONDS = 0.25
#: renew a granted token after this fraction of its lifetime …
TOKEN_RENEW_FRACTION = 0.9
#: … or this many seconds before it expires, whichever comes first
TOKEN_RENEW_MARGIN_SECONDS = 300.0

#: ``inventorySetQuantities`` code for a failed compare-and-swap
STALE_CODE = "CHANGE_FROM_QUANTITY_STALE"
#: ``inventorySetQuantities`` code for "the same key is still being processed"
_CONCURRENT_CODE = "IDEMPOTENCY_CONCURRENT_REQUEST"


#: statuses after which a bulk operation changes no more
BULK_FINAL_STATUSES = frozenset({"COMPLETED", "FAILED", "CANCELED", "EXPIRED"})


# --- value types -------------------------------------------------------------------------


@dataclass(frozen=True)
class BulkOperation:
    """A bulk query operation as Shopify reports it (:meth:`ShopifyClient.bulk_operation`)."""

    id: str
    #: CREATED, RUNNING, COMPLETED, FAILED, CANCELING, CANCELED or EXPIRED
    status: str
    #: why it FAILED (ACCESS_DENIED, INTERNAL_SERVER_ERROR, TIMEOUT)
    error_code: str | None
    #: objects read so far (every JSONL line of the result once COMPLETED)
    object_count: int
    #: the JSONL result (COMPLETED only; it expires after a week)
    url: str | None
    created_at: datetime | None

    @property
    def final(self) -> bool:
        """Nothing more will change (COMPLETED, FAILED, CANCELED or EXPIRED)."""
        return self.status in BULK_FINAL_STATUSES


@dataclass(frozen=True)
class ThrottleStatus:
    """The cost bucket as Shopify last reported it."""

    maximum_available: float
    currently_available: float
    restore_rate: float
    #: ``clock()`` reading when the report arrived
    observed_at: float

    def available_at(self, now: float) -> float:
        """Points available at ``now``, assuming nothing else was spent meanwhile."""
        elapsed = max(0.0, now - self.observed_at)
        return min(self.maximum_available, self.currently_available + self.restore_rate * elapsed)


@dataclass(frozen=True)
class UserError:
    """One entry of a mutation's ``userErrors``."""

    message: str
    #: path to the input field, e.g. ``("input", "quantities", "3", "changeFromQuantity")``
    field: tuple[str, ...] = ()
    #: machine code where the payload type has one (``CHANGE_FROM_QUANTITY_STALE`` …)
    code: str | None = None

    @property
    def index(self) -> int | None:
        """Position in the input list the error refers to, when the path has one."""
        for part in self.field:
            if part.isdigit():
                return int(part)
        return None

    @classmethod
    def from_json(cls, raw: Any) -> UserError:
        """Build from one ``userErrors`` entry, tolerating missing keys."""
        if not isinstance(raw, Mapping):
            return cls(message=str(raw))
        field = raw.get("field")
        code = raw.get("code")
        return cls(
            message=str(raw.get("message") or "rejected"),
            field=tuple(str(part) for part in field) if isinstance(field, list) else (),
            code=str(code) if code is not None else None,
        )


class StockQuantity(NamedTuple):
    """One quantity for :meth:`ShopifyClient.set_available`.

    ``change_from`` is the quantity the caller believes Shopify has now: Shopify applies
    the change only if it still has that value (compare-and-swap). ``None`` opts out.
    """

    inventory_item_id: str
    location_id: str
    quantity: int
    change_from: int | None


@dataclass(frozen=True)
class SetStockResult:
    """What ``inventorySetQuantities`` did with a batch of quantities.

    Shopify applies a batch as a whole: with any ``user_errors`` nothing was changed
    (``adjustment_group_id`` is then None) and the caller re-sends the good items, with a
    new idempotency key, after dealing with the bad ones.
    """

    quantities: tuple[StockQuantity, ...]
    user_errors: tuple[UserError, ...] = ()
    adjustment_group_id: str | None = None
    #: ``inventoryAdjustmentGroup.changes`` as returned
    changes: tuple[JSONObject, ...] = ()

    @property
    def ok(self) -> bool:
        """True when Shopify reported no error."""
        return not self.user_errors

    @property
    def codes(self) -> tuple[str, ...]:
        """Every error code, in order."""
        return tuple(e.code for e in self.user_errors if e.code)

    @property
    def stale_item_ids(self) -> frozenset[str]:
        """Inventory items whose ``change_from`` no longer matched Shopify."""
        return frozenset(
            item
            for item, errors in self.errors_by_item().items()
            if any(e.code == STALE_CODE for e in errors)
        )

    @property
    def general_errors(self) -> tuple[UserError, ...]:
        """Errors that do not point at one quantity (a bad reason, a reused key …)."""
        return tuple(e for e in self.user_errors if self._item_of(e) is None)

    def errors_by_item(self) -> dict[str, tuple[UserError, ...]]:
        """Errors that point at one quantity, by inventory item id."""
        grouped: dict[str, list[UserError]] = {}
        for error in self.user_errors:
            item = self._item_of(error)
            if item is not None:
                grouped.setdefault(item, []).append(error)
        return {item: tuple(errors) for item, errors in grouped.items()}

    def _item_of(self, error: UserError) -> str | None:
        index = error.index
        if index is None or not 0 <= index < len(self.quantities):
            return None
        return self.quantities[index].inventory_item_id


@dataclass(frozen=True)
class FulfillmentOrderLine:
    """One line of a fulfillment order: how much of an order line it holds and has left."""

    #: the ``FulfillmentOrderLineItem`` gid (what ``fulfillmentCreate`` takes), not the order line's
    id: str
    line_item_id: str
    sku: str | None
    #: ``totalQuantity``
    total: int
    #: ``remainingQuantity``: still to be fulfilled from this fulfillment order
    remaining: int


@dataclass(frozen=True)
class FulfillmentOrder:
    """The work of shipping (part of) an order from one location."""

    id: str
    #: ``OPEN``, ``IN_PROGRESS``, ``ON_HOLD``, ``CLOSED``, ``CANCELLED``, ``SCHEDULED``, ``INCOMPLETE``
    status: str
    #: ``assignedLocation.location.id`` (None when the location is gone or not visible)
    location_id: str | None
    lines: tuple[FulfillmentOrderLine, ...]


@dataclass(frozen=True)
class Tracking:
    """A shipment's tracking: carrier, number and link, each optional."""

    company: str | None = None
    number: str | None = None
    url: str | None = None

    def __bool__(self) -> bool:
        """True when any part is set."""
        return any((self.company, self.number, self.url))


@dataclass(frozen=True)
class Fulfillment:
    """A shipment Shopify knows about."""

    id: str
    #: ``SUCCESS``, ``CANCELLED``, ``ERROR``, ``FAILURE`` (``OPEN``/``PENDING`` are legacy)
    status: str
    tracking: Tracking


@dataclass(frozen=True)
class OrderFulfilment:
    """What is left to ship of one order and what has been shipped."""

    order_id: str
    name: str
    #: ``cancelledAt`` is set
    cancelled: bool
    #: ``displayFulfillmentStatus`` (``UNFULFILLED``, ``PARTIALLY_FULFILLED``, ``FULFILLED`` …)
    fulfillment_status: str
    fulfillment_orders: tuple[FulfillmentOrder, ...]
    #: oldest first
    fulfillments: tuple[Fulfillment, ...]


# --- helpers ---------------------------------------------------------------------------------


def raise_user_errors(payload: Mapping[str, Any] | None, *, record: str) -> Mapping[str, Any]:
    """Return a mutation payload unchanged, or raise ValidationError for its ``userErrors``.

    ``record`` names what was being written (``"product 'Blue mug'"``) for the message and
    the parked-record reason. The error's ``codes`` list every ``userErrors[].code`` and its
    ``fields`` map the dotted input path to the messages; its ``reason`` is the first code.
    """
    if payload is None:
        raise MalformedResponse(f"{record}: the mutation returned no payload")
    raw = payload.get("userErrors") or []
    if not raw:
        return payload
    errors = [UserError.from_json(item) for item in raw]
    fields: dict[str, list[str]] = {}
    for error in errors:
        fields.setdefault(".".join(error.field) or "base", []).append(error.message)
    codes = [e.code for e in errors if e.code]
    summary = "; ".join(e.message for e in errors)
    raise ValidationError(
        f"Shopify rejected {record}: {summary}",
        fields=fields,
        codes=codes,
        reason=codes[0] if codes else None,
    )


def location_gid(value: str) -> str:
    """A location id as Shopify's GID (``SHOPIFY_LOCATION_ID`` may be the bare number)."""
    return value if value.startswith("gid://") else f"gid://shopify/Location/{value}"


def sku_search(sku: str) -> str:
    """The ``productVariants`` search filter for exactly ``sku``.

    Quotes keep spaces and colons inside the value; backslash and quote are escaped,
    as Shopify's search syntax asks.
    """
    escaped = sku.replace("\\", "\\\\").replace("'", "\\'")
    return f"sku:'{escaped}'"


def _search_time(moment: datetime) -> str:
    if moment.tzinfo is None:
        raise ValueError("a timezone-aware datetime is required (naive datetimes are ambiguous)")
    # Seconds precision; the filter is >= so dropping the fraction only re-reads a little.
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _first_page(since: datetime | None, page_size: int) -> int | None:
    """``grow_from`` for a read of what changed since ``since``: small pages first (usually
    few records); None (full pages) for a read of everything."""
    return None if since is None else min(INCREMENTAL_FIRST_PAGE, page_size)


def _size(variables: Mapping[str, Any]) -> int | None:
    """How many nodes a request asks for, which its cost grows with: ``first``, or the
    number of ``ids``; None when it asks for neither."""
    first = variables.get("first")
    if isinstance(first, int) and not isinstance(first, bool):
        return first
    ids = variables.get("ids")
    return len(ids) if isinstance(ids, list) else None


def _updated_since_filter(since: datetime | None) -> str | None:
    return None if since is None else f"updated_at:>='{_search_time(since)}'"


def _text(raw: Mapping[str, Any], key: str, what: str) -> str:
    """A required string field of an answer (MalformedResponse when missing)."""
    value = raw.get(key)
    if not isinstance(value, str) or not value:
        raise MalformedResponse(f"{what} has no {key}")
    return value


def _optional_text(raw: Mapping[str, Any], key: str) -> str | None:
    value = raw.get(key)
    return value if isinstance(value, str) else None


def _count(raw: Mapping[str, Any], key: str, what: str) -> int:
    """A required non-negative integer field of an answer."""
    value = raw.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise MalformedResponse(f"{what} has no {key}")
    return value


def _object(raw: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(raw, Mapping):
        raise MalformedResponse(f"{what} is not an object")
    return raw


def _connection_nodes(raw: Mapping[str, Any], key: str, what: str) -> list[Any]:
    nodes = _object(raw.get(key), f"{what} {key}").get("nodes")
    if not isinstance(nodes, list):
        raise MalformedResponse(f"{what} {key} has no nodes")
    return nodes


def _parse_fulfillment(raw: Any, operation: str) -> Fulfillment:
    """A ``Fulfillment`` selected as ``id status createdAt trackingInfo { company number url }``."""
    what = f"{operation}: a fulfillment"
    fulfillment = _object(raw, what)
    infos = fulfillment.get("trackingInfo")
    if not isinstance(infos, list):
        raise MalformedResponse(f"{what} has no trackingInfo")
    first = _object(infos[0], f"{what}'s trackingInfo") if infos else {}
    tracking = Tracking(
        company=_optional_text(first, "company"),
        number=_optional_text(first, "number"),
        url=_optional_text(first, "url"),
    )
    return Fulfillment(_text(fulfillment, "id", what), _text(fulfillment, "status", what), tracking)


def _parse_fulfillment_order(raw: Any, operation: str) -> FulfillmentOrder:
    what = f"{operation}: a fulfillment order"
    fo = _object(raw, what)
    assigned = _object(fo.get("assignedLocation"), f"{what}'s assignedLocation")
    location = assigned.get("location")
    location_id = _optional_text(location, "id") if isinstance(location, Mapping) else None
    lines = []
    for node in _connection_nodes(fo, "lineItems", what):
        line = _object(node, f"{what}'s line item")
        line_what = f"{operation}: fulfillment order line item"
        order_line = _object(line.get("lineItem"), f"{line_what}'s lineItem")
        lines.append(
            FulfillmentOrderLine(
                id=_text(line, "id", line_what),
                line_item_id=_text(order_line, "id", f"{line_what}'s lineItem"),
                sku=_optional_text(order_line, "sku"),
                total=_count(line, "totalQuantity", line_what),
                remaining=_count(line, "remainingQuantity", line_what),
            )
        )
    return FulfillmentOrder(_text(fo, "id", what), _text(fo, "status", what), location_id, tuple(lines))


def _tracking_input(tracking: Tracking, *, absolute: bool) -> dict[str, str | None]:
    """``FulfillmentTrackingInput``: every field when ``absolute`` (null clears it), else
    only those set."""
    fields = {"company": tracking.company, "number": tracking.number, "url": tracking.url}
    return fields if absolute else {k: v for k, v in fields.items() if v is not None}


def _parse_bulk_operation(raw: Any) -> BulkOperation:
    """A ``BulkOperation`` as BULK_OPERATION or BULK_RUN_QUERY select it."""
    what = "a bulk operation"
    found = _object(raw, what)
    count = found.get("objectCount")
    created = found.get("createdAt")
    try:
        object_count = int(count) if count is not None else 0  # UnsignedInt64: a string
        created_at = (
            datetime.fromisoformat(created.replace("Z", "+00:00")) if isinstance(created, str) else None
        )
    except ValueError as exc:
        raise MalformedResponse(f"{what} has an unreadable objectCount or createdAt") from exc
    return BulkOperation(
        id=_text(found, "id", what),
        status=_text(found, "status", what),
        error_code=_optional_text(found, "errorCode"),
        object_count=object_count,
        url=_optional_text(found, "url"),
        created_at=created_at,
    )


@functools.lru_cache(maxsize=64)
def _operation(document: str) -> tuple[str, str]:
    """(kind, name) of the document's operation: ``("mutation", "SetStock")``."""
    match = re.search(r"\b(query|mutation)\s+(\w+)", document)
    if match is None:
        return ("mutation" if document.lstrip().startswith("mutation") else "query", "anonymous")
    return match.group(1), match.group(2)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _json_or_none(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _error_list(raw: Any) -> list[JSONObject]:
    """Top-level ``errors`` as a list of objects (Shopify sometimes sends one string)."""
    if isinstance(raw, str):
        return [{"message": raw}]
    if isinstance(raw, list):
        return [e if isinstance(e, dict) else {"message": str(e)} for e in raw]
    if isinstance(raw, dict):
        return [raw]
    return []


def _error_code(error: Mapping[str, Any]) -> str | None:
    extensions = error.get("extensions")
    code = extensions.get("code") if isinstance(extensions, Mapping) else None
    return str(code) if code is not None else None


def _describe_errors(errors: Sequence[Mapping[str, Any]]) -> str:
    parts = []
    for error in errors:
        code = _error_code(error)
        message = str(error.get("message") or "error")
        parts.append(f"{message} [{code}]" if code else message)
    return "; ".join(parts) or "no message"


def _dig(data: Mapping[str, Any], path: Sequence[str], operation: str) -> JSONObject:
    current: Any = data
    for depth, key in enumerate(path, start=1):
        if not isinstance(current, Mapping):
            raise MalformedResponse(f"{operation}: {'.'.join(path[: depth - 1])} is not an object")
        current = current.get(key)
        if current is None:
            # An object asked for by id (an order, a product) vanished between pages.
            raise NotFoundError(f"{operation}: {'.'.join(path[:depth])} is null")
    if not isinstance(current, dict):
        raise MalformedResponse(f"{operation}: {'.'.join(path)} is not an object")
    return current


@dataclass(frozen=True)
class _Token:
    value: SecretStr
    renew_at: float


@dataclass(frozen=True)
class _ClientCredentials:
    token_url: str
    client_id: str
    client_secret: SecretStr


# --- the client ---------------------------------------------------------------------------------


class ShopifyClient:
    """Talks to one shop's Admin GraphQL API through an injected ``httpx.AsyncClient``.

    Counters for metrics (plain attributes, only ever increased):
    ``requests`` GraphQL requests sent (retries included), ``retries`` re-sends after a
    failure, ``throttled`` throttled answers, ``cost_spent`` sum of ``actualQueryCost``,
    ``token_requests`` client-credentials grants sent, ``throttle_wait_seconds`` time spent
    waiting for the bucket (pre-emptive and after throttling).
    """

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        graphql_url: str,
        token_url: str | None = None,
        access_token: SecretStr | None = None,
        client_id: str | None = None,
        client_secret: SecretStr | None = None,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
        backoff_sleep: Callable[[float], Awaitable[None]] | None = None,
        clock: Callable[[], float] = time.monotonic,
        random: Callable[[], float] = _random.random,
        max_attempts: int = MAX_ATTEMPTS,
        max_throttle_waits: int = MAX_THROTTLE_WAITS,
        default_expected_cost: float = DEFAULT_EXPECTED_COST,
    ) -> None:
        """Use a static ``access_token``, or ``client_id`` + ``client_secret`` + ``token_url``
        for the client-credentials grant. ``sleep``, ``clock`` (monotonic seconds) and
        ``random`` (uniform in [0, 1)) are seams for tests; ``backoff_sleep`` (default
        ``sleep``) is the wait before retrying a failed request (the daemon's ends on stop).
        """
        if access_token is None and not (client_id and client_secret and token_url):
            raise ConfigError(
                "SHOPIFY_ACCESS_TOKEN: missing; set it, or both SHOPIFY_CLIENT_ID and SHOPIFY_CLIENT_SECRET"
            )
        self._http = http
        self._graphql_url = graphql_url
        self._static_token = access_token
        self._credentials = (
            _ClientCredentials(token_url, client_id, client_secret)
            if access_token is None and token_url and client_id and client_secret
            else None
        )
        self._sleep = sleep
        self._clock = clock
        # a throttled request waits (cost arithmetic or Retry-After), then goes again
        self._retry = Retrying(
            "shopify",
            RetryPolicy(max_attempts=max_attempts, max_throttle_waits=max_throttle_waits),
            backoff_sleep=backoff_sleep or sleep,  # the daemon's ends on shutdown
            random=random,
            wait=self._pause,
        )
        self._default_cost = default_expected_cost
        for secret in (access_token, client_secret):
            if secret is not None:
                register_secret(secret.get_secret_value())

        self._token: _Token | None = None
        self._token_lock = anyio.Lock()
        self._bucket: ThrottleStatus | None = None
        #: last requestedQueryCost per document, with the number of nodes it asked for
        self._expected_cost: dict[str, tuple[int | None, float]] = {}
        self._primary_location: str | None = None

        self.requests = 0
        self.cost_spent = 0
        self.token_requests = 0
        self.throttle_wait_seconds = 0.0

    @classmethod
    def from_settings(cls, settings: Settings, http: httpx.AsyncClient, **kwargs: Any) -> ShopifyClient:
        """Build from :class:`~daemon.config.Settings`; ``kwargs`` go to the constructor."""
        return cls(
            http,
            graphql_url=settings.graphql_url,
            token_url=settings.token_url,
            access_token=settings.shopify_access_token,
            client_id=settings.shopify_client_id,
            client_secret=settings.shopify_client_secret,
            **kwargs,
        )

    def __repr__(self) -> str:
        auth = "access token" if self._static_token is not None else "client credentials"
        return f"ShopifyClient(url={self._graphql_url!r}, auth={auth!r})"

    @property
    def retries(self) -> int:
        """Re-sends after a failure (and after a concurrent request with the same key)."""
        return self._retry.retries

    @property
    def throttled(self) -> int:
        """Throttled answers (HTTP 429 or THROTTLED)."""
        return self._retry.throttled

    @property
    def sleep(self) -> Callable[[float], Awaitable[None]]:
        """The injected sleep: waits that belong to this shop's API (a bulk query's polls) use it."""
        return self._sleep

    @property
    def throttle_status(self) -> ThrottleStatus | None:
        """The bucket as last reported (or booked against), None before the first answer."""
        return self._bucket

    # --- core ---------------------------------------------------------------------------

    async def execute(
        self,
        document: str,
        variables: Mapping[str, Any] | None = None,
        *,
        replay_safe: bool | None = None,
    ) -> JSONObject:
        """Send one document and return the response's ``data``.

        ``replay_safe`` says whether the request may be sent again after a failure that
        Shopify may already have acted on (a timeout, a 5xx). By default queries and
        mutations carrying ``@idempotent`` are; other mutations are only resent when the
        request certainly never arrived. Raises the errors of :mod:`daemon.errors`.
        """
        kind, name = _operation(document)
        if replay_safe is None:
            replay_safe = kind == "query" or "@idempotent" in document
        payload: JSONObject = {"query": document, "variables": dict(variables or {})}
        if name != "anonymous":
            payload["operationName"] = name
        size = _size(payload["variables"])
        renewed = False

        async def attempt() -> JSONObject:
            nonlocal renewed
            await self._await_budget(document, size)
            token = await self._access_token()
            self.requests += 1
            response = await self._post(
                self._graphql_url,
                name,
                json=payload,
                headers={"X-Shopify-Access-Token": token.get_secret_value(), "Accept": "application/json"},
            )
            if response.status_code == 401:
                if self._static_token is not None:
                    raise AuthError(f"Shopify refused SHOPIFY_ACCESS_TOKEN (HTTP 401) in {name}")
                if renewed:
                    raise AuthError(
                        f"Shopify refused a freshly granted token (HTTP 401) in {name}; "
                        "check the app installation and SHOPIFY_CLIENT_ID"
                    )
                # Tokens can be revoked before they expire: get a new one, once.
                renewed = True
                self._forget_token(token)
                raise SendAgain
            return self._interpret(response, name, document, size)

        return await self._retry.run(name, attempt, replay_safe=replay_safe)

    async def paginate(
        self,
        document: str,
        variables: Mapping[str, Any],
        connection_path: Sequence[str],
        *,
        grow_from: int | None = None,
    ) -> AsyncGenerator[list[JSONObject], None]:
        """Yield the ``nodes`` of each page of the connection at ``connection_path``.

        ``variables`` must hold ``first`` (1–250) and may hold ``after`` to start past a
        cursor. Pages follow ``pageInfo { hasNextPage endCursor }``; a cursor seen before
        raises MalformedResponse rather than looping forever. A null object on the path
        (the order being paged was deleted) raises NotFoundError.

        ``grow_from`` (1 to ``first``): the first page asks for that many nodes, and each
        page after a full one for twice as many as the last, up to ``first``. For a read
        that usually finds a few nodes: Shopify prices a query by what it may return, and
        the bucket must hold that price before the query runs.
        """
        _, name = _operation(document)
        first = variables.get("first")
        if not isinstance(first, int) or isinstance(first, bool) or not 1 <= first <= 250:
            raise ValueError(f"{name}: 'first' must be an integer from 1 to 250, not {first!r}")
        if grow_from is not None and not 1 <= grow_from <= first:
            raise ValueError(f"{name}: 'grow_from' must be from 1 to first ({first}), not {grow_from!r}")
        current = dict(variables)
        cursor = current.get("after")
        seen: set[str] = {cursor} if isinstance(cursor, str) else set()
        size = first if grow_from is None else grow_from
        while True:
            current["after"] = cursor
            current["first"] = size
            data = await self.execute(document, current)
            connection = _dig(data, connection_path, name)
            nodes = connection.get("nodes")
            page_info = connection.get("pageInfo")
            if not isinstance(nodes, list) or not isinstance(page_info, dict):
                raise MalformedResponse(f"{name}: {'.'.join(connection_path)} has no nodes or pageInfo")
            yield nodes
            if not page_info.get("hasNextPage"):
                return
            cursor = page_info.get("endCursor")
            if not isinstance(cursor, str) or not cursor:
                raise MalformedResponse(f"{name}: hasNextPage is true but endCursor is missing")
            if cursor in seen:
                raise MalformedResponse(f"{name}: Shopify repeated a page cursor; stopped to avoid a loop")
            seen.add(cursor)
            size = min(first, size * 2)  # a full page: more are likely

    # --- reads ----------------------------------------------------------------------------

    async def locations(self) -> list[JSONObject]:
        """Every active location: ``[{id, name, isActive, fulfillsOnlineOrders}]``."""
        found: list[JSONObject] = []
        pages = self.paginate(docs.LOCATIONS, {"first": docs.LOCATIONS_PAGE_SIZE}, ("locations",))
        async with contextlib.aclosing(pages):
            async for page in pages:
                found.extend(page)
        return found

    async def stock_location(self, configured: str | None) -> str:
        """The location the daemon writes stock to and fulfils from: ``configured``
        (``SHOPIFY_LOCATION_ID``), else the primary one (read once for every flow, then kept)."""
        if configured:
            return location_gid(configured)
        if self._primary_location is None:
            self._primary_location = await self.primary_location_id()
        return self._primary_location

    async def primary_location_id(self) -> str:
        """The id of the shop's primary location (``gid://shopify/Location/…``)."""
        data = await self.execute(docs.PRIMARY_LOCATION)
        location = data.get("location")
        if not isinstance(location, Mapping) or not isinstance(location.get("id"), str):
            raise ConfigError("SHOPIFY_LOCATION_ID: Shopify reports no primary location; set it explicitly")
        return str(location["id"])

    async def orders_updated_since(
        self, since: datetime | None, *, page_size: int = docs.ORDERS_PAGE_SIZE
    ) -> AsyncGenerator[list[JSONObject], None]:
        """Yield pages of orders updated at or after ``since`` (all orders when None), oldest first.

        Each order is shaped like ``ORDERS_UPDATED_SINCE``'s selection, with
        ``lineItems.nodes`` holding every line item (paged with ``ORDER_LINE_ITEMS``).
        ``since`` must be timezone-aware; the filter has seconds precision and runs on
        Shopify's search index, which lags, so callers query with an overlap.
        """
        variables = {"first": page_size, "query": _updated_since_filter(since)}
        pages = self.paginate(
            docs.ORDERS_UPDATED_SINCE, variables, ("orders",), grow_from=_first_page(since, page_size)
        )
        async with contextlib.aclosing(pages):
            async for orders in pages:
                for order in orders:
                    await self._complete(
                        order, "lineItems", docs.ORDER_LINE_ITEMS, docs.ORDER_LINE_ITEMS_PAGE_SIZE, "order"
                    )
                yield orders

    async def orders_by_ids(self, order_ids: Sequence[str]) -> list[JSONObject]:
        """The orders with these ids (``gid://shopify/Order/…``), shaped like
        ``orders_updated_since``'s, in the order asked; ids Shopify no longer has are left
        out. A lookup by id, so unlike a search it sees a write at once."""
        return await self._by_ids(
            docs.ORDERS_BY_IDS,
            order_ids,
            docs.ORDERS_PAGE_SIZE,
            ("lineItems", docs.ORDER_LINE_ITEMS, docs.ORDER_LINE_ITEMS_PAGE_SIZE, "order"),
        )

    async def products_by_ids(self, product_ids: Sequence[str]) -> list[JSONObject]:
        """The products with these ids, shaped like :meth:`products_updated_since`'s, as
        :meth:`orders_by_ids` reads orders."""
        return await self._by_ids(
            docs.PRODUCTS_BY_IDS,
            product_ids,
            docs.PRODUCTS_PAGE_SIZE,
            ("variants", docs.PRODUCT_VARIANTS, docs.PRODUCT_VARIANTS_PAGE_SIZE, "product"),
        )

    async def stamps_since(
        self, kind: str, since: datetime, *, first: int = INCREMENTAL_FIRST_PAGE
    ) -> AsyncGenerator[list[JSONObject], None]:
        """Yield pages of ``{id, updatedAt}`` of the ``kind`` (``orders`` or ``products``)
        updated at or after ``since``, oldest first: the cheap pass of an incremental read
        (:mod:`daemon.incremental`). The first page asks for ``first`` (the caller's guess
        of how many there are), each page after a full one for twice as many."""
        document = {"orders": docs.ORDER_STAMPS, "products": docs.PRODUCT_STAMPS}[kind]
        size = docs.STAMPS_PAGE_SIZE
        variables = {"first": size, "query": _updated_since_filter(since)}
        pages = self.paginate(document, variables, (kind,), grow_from=max(1, min(first, size)))
        async with contextlib.aclosing(pages):
            async for page in pages:
                yield page

    async def _by_ids(
        self,
        document: str,
        ids: Sequence[str],
        batch: int,
        nested: tuple[str, str, int, str],
    ) -> list[JSONObject]:
        """Records by id through a ``nodes(ids:)`` document, ``batch`` ids a request, their
        nested connection completed (``nested``: :meth:`_complete`'s arguments); nulls
        (deleted records) left out."""
        _, name = _operation(document)
        unique = list(dict.fromkeys(ids))
        found: list[JSONObject] = []
        for start in range(0, len(unique), batch):
            data = await self.execute(document, {"ids": unique[start : start + batch]})
            nodes = data.get("nodes")
            if not isinstance(nodes, list):
                raise MalformedResponse(f"{name}: nodes is not a list")
            for node in nodes:
                if not isinstance(node, dict) or "id" not in node:
                    continue  # deleted since (null), or not of the kind asked for
                await self._complete(node, *nested)
                found.append(node)
        return found

    async def products_updated_since(
        self, since: datetime | None, *, page_size: int = docs.PRODUCTS_PAGE_SIZE
    ) -> AsyncGenerator[list[JSONObject], None]:
        """Yield pages of products updated at or after ``since`` (all when None), oldest first.

        Each product is shaped like ``PRODUCTS_UPDATED_SINCE``'s selection, with
        ``variants.nodes`` holding every variant (paged with ``PRODUCT_VARIANTS``).
        """
        variables = {"first": page_size, "query": _updated_since_filter(since)}
        pages = self.paginate(
            docs.PRODUCTS_UPDATED_SINCE, variables, ("products",), grow_from=_first_page(since, page_size)
        )
        async with contextlib.aclosing(pages):
            async for products in pages:
                for product in products:
                    await self._complete(
                        product, "variants", docs.PRODUCT_VARIANTS, docs.PRODUCT_VARIANTS_PAGE_SIZE, "product"
                    )
                yield products

    async def products_created_since(
        self, since: datetime, *, page_size: int = docs.PRODUCTS_PAGE_SIZE
    ) -> AsyncGenerator[list[JSONObject], None]:
        """Yield pages of products created at or after ``since`` (aware), shaped like
        :meth:`products_updated_since`'s. A search: recent products may be missing while
        Shopify's index catches up."""
        variables = {"first": page_size, "query": f"created_at:>='{_search_time(since)}'"}
        pages = self.paginate(
            docs.PRODUCTS_UPDATED_SINCE, variables, ("products",), grow_from=_first_page(since, page_size)
        )
        async with contextlib.aclosing(pages):
            async for products in pages:
                for product in products:
                    await self._complete(
                        product, "variants", docs.PRODUCT_VARIANTS, docs.PRODUCT_VARIANTS_PAGE_SIZE, "product"
                    )
                yield products

    async def product_of_variant(self, variant_id: str) -> JSONObject | None:
        """The product of one variant, shaped like a product of :meth:`products_updated_since`
        (every variant included); None when the variant no longer exists. A lookup by id,
        so unlike a search it sees a write at once."""
        data = await self.execute(docs.PRODUCT_BY_VARIANT, {"id": variant_id})
        variant = data.get("productVariant")
        if variant is None:
            return None
        product = variant.get("product") if isinstance(variant, dict) else None
        if not isinstance(product, dict):
            raise MalformedResponse(f"ProductByVariant: variant {variant_id} has no product")
        await self._complete(
            product, "variants", docs.PRODUCT_VARIANTS, docs.PRODUCT_VARIANTS_PAGE_SIZE, "product"
        )
        return product

    async def variants(
        self, *, page_size: int = docs.VARIANTS_PAGE_SIZE
    ) -> AsyncGenerator[list[JSONObject], None]:
        """Yield pages of every variant of the shop:
        ``[{id, sku, product: {id, updatedAt}, inventoryItem: {id, tracked}}]``."""
        pages = self.paginate(docs.VARIANTS_PAGE, {"first": page_size}, ("productVariants",))
        async with contextlib.aclosing(pages):
            async for page in pages:
                yield page

    async def variant_count(self) -> int | None:
        """How many variants the shop has (None when Shopify does not say)."""
        data = await self.execute(docs.VARIANTS_COUNT)
        count = data.get("productVariantsCount")
        if isinstance(count, Mapping) and isinstance(count.get("count"), int):
            return int(count["count"])
        return None

    async def variants_by_sku(self, sku: str) -> list[JSONObject]:
        """Variants whose SKU is exactly ``sku`` (Shopify does not keep SKUs unique):
        ``[{id, sku, barcode, price, product: {id, updatedAt}, inventoryItem: {id, tracked}}]``."""
        if not sku.strip():
            raise ValueError("an empty SKU matches nothing reliably")
        data = await self.execute(docs.VARIANTS_BY_SKU, {"query": sku_search(sku)})
        nodes = _dig(data, ("productVariants",), "VariantsBySku").get("nodes")
        if not isinstance(nodes, list):
            raise MalformedResponse("VariantsBySku: productVariants has no nodes")
        # The search index tokenises values; only an exact match is the SKU asked for.
        return [node for node in nodes if isinstance(node, dict) and node.get("sku") == sku]

    async def variant_by_sku(self, sku: str) -> JSONObject | None:
        """The one variant with SKU ``sku``, None when there is none.

        Raises ValidationError (reason ``DUPLICATE_SKU``) when several variants share it:
        stock or prices cannot be assigned to one of them safely.
        """
        matches = await self.variants_by_sku(sku)
        if len(matches) > 1:
            raise ValidationError(
                f"SKU {sku!r} is on {len(matches)} Shopify variants",
                codes=["DUPLICATE_SKU"],
                reason="DUPLICATE_SKU",
            )
        return matches[0] if matches else None

    async def order_fulfilment(self, order_id: str) -> OrderFulfilment | None:
        """One order's fulfillment orders (with their line items) and fulfilments; None when
        the order does not exist.

        One request for a normal order (ORDER_FULFILMENT, a lookup by id: it sees a
        fulfilment made a moment ago); fulfillment orders and line items beyond the inline
        pages are paged, and an order with ORDER_INLINE_FULFILLMENTS fulfilments or more is
        read again for all of them (up to ORDER_FULFILLMENTS_LIMIT). Raises
        MalformedResponse when the answer lacks a part the selection asks for.
        """
        data = await self.execute(docs.ORDER_FULFILMENT, {"id": order_id})
        raw = data.get("order")
        if raw is None:
            return None
        if not isinstance(raw, dict):
            raise MalformedResponse("OrderFulfilment: order is not an object")
        await self._complete(
            raw,
            "fulfillmentOrders",
            docs.ORDER_FULFILLMENT_ORDERS,
            docs.ORDER_FULFILLMENT_ORDERS_PAGE_SIZE,
            "order",
        )
        nodes = _connection_nodes(raw, "fulfillmentOrders", "OrderFulfilment: the order's")
        for node in nodes:
            if not isinstance(node, dict):
                raise MalformedResponse("OrderFulfilment: a fulfillment order is not an object")
            await self._complete(
                node,
                "lineItems",
                docs.FULFILLMENT_ORDER_LINE_ITEMS,
                docs.FULFILLMENT_ORDER_LINE_ITEMS_PAGE_SIZE,
                "fulfillmentOrder",
            )
        shipped = raw.get("fulfillments")
        if isinstance(shipped, list) and len(shipped) >= docs.ORDER_INLINE_FULFILLMENTS:
            # a list, not a connection: no cursor to page on, so ask once for the lot
            more = await self.execute(docs.ORDER_FULFILLMENTS, {"id": order_id})
            shipped = _dig(more, ("order",), "OrderFulfillments").get("fulfillments")
        if not isinstance(shipped, list):
            raise MalformedResponse("OrderFulfilment: the order has no fulfillments list")
        ordered = sorted(shipped, key=lambda f: str(f.get("createdAt") or "") if isinstance(f, dict) else "")
        return OrderFulfilment(
            order_id=_text(raw, "id", "OrderFulfilment: the order"),
            name=_text(raw, "name", "OrderFulfilment: the order"),
            cancelled=raw.get("cancelledAt") is not None,
            fulfillment_status=_text(raw, "displayFulfillmentStatus", "OrderFulfilment: the order"),
            fulfillment_orders=tuple(_parse_fulfillment_order(fo, "OrderFulfilment") for fo in nodes),
            fulfillments=tuple(_parse_fulfillment(f, "OrderFulfilment") for f in ordered),
        )

    async def inventory_quantities(
        self, item_ids: Sequence[str], location_id: str
    ) -> dict[str, dict[str, int] | None]:
        """``{inventory item id: {"available": n, "on_hand": m}}`` at ``location_id``.

        The value is None for an item not stocked at the location or no longer existing.
        Any number of ids; they are sent 250 at a time.
        """
        unique = list(dict.fromkeys(item_ids))
        result: dict[str, dict[str, int] | None] = dict.fromkeys(unique)
        for start in range(0, len(unique), docs.MAX_INPUT_ITEMS):
            chunk = unique[start : start + docs.MAX_INPUT_ITEMS]
            data = await self.execute(docs.INVENTORY_LEVELS, {"ids": chunk, "locationId": location_id})
            nodes = data.get("nodes")
            if not isinstance(nodes, list):
                raise MalformedResponse("InventoryLevels: nodes is not a list")
            for node in nodes:
                if not isinstance(node, Mapping) or node.get("id") not in result:
                    continue  # a deleted item comes back as null
                level = node.get("inventoryLevel")
                if not isinstance(level, Mapping):
                    continue
                quantities = level.get("quantities")
                if not isinstance(quantities, list):
                    raise MalformedResponse("InventoryLevels: inventoryLevel has no quantities")
                result[str(node["id"])] = {
                    str(q["name"]): int(q["quantity"])
                    for q in quantities
                    if isinstance(q, Mapping) and isinstance(q.get("quantity"), int)
                }
        return result

    async def inventory_levels(self, item_ids: Sequence[str], location_id: str) -> dict[str, int | None]:
        """``{inventory item id: available}`` at ``location_id``; None where not stocked."""
        quantities = await self.inventory_quantities(item_ids, location_id)
        return {item: q.get("available") if q is not None else None for item, q in quantities.items()}

    # --- bulk queries ---------------------------------------------------------------------

    async def bulk_query_start(self, query: str) -> BulkOperation:
        """Start a bulk query (the text of one of :data:`~daemon.shopify_documents.BULK_QUERIES`);
        return the new operation (its ``id`` to poll).

        Sent once only: the mutation has no idempotency key, so a lost answer raises
        :class:`~daemon.errors.AmbiguousWrite` rather than maybe starting a second
        operation. ``userErrors`` (an invalid query, another bulk query running) raise
        :class:`~daemon.errors.ValidationError` with their codes.
        """
        data = await self.execute(docs.BULK_RUN_QUERY, {"query": query}, replay_safe=False)
        payload = raise_user_errors(data.get("bulkOperationRunQuery"), record="the bulk query")
        return _parse_bulk_operation(self._payload_object(payload, "bulkOperation", "BulkRunQuery"))

    async def bulk_operation(self, operation_id: str) -> BulkOperation | None:
        """One bulk operation by id; None when Shopify no longer knows it."""
        data = await self.execute(docs.BULK_OPERATION, {"id": operation_id})
        raw = data.get("bulkOperation")
        return None if raw is None else _parse_bulk_operation(raw)

    async def bulk_lines(self, url: str) -> AsyncGenerator[tuple[int, JSONObject], None]:
        """Yield ``(line number, object)`` of a bulk result as the file streams in.

        The file is never held whole: each line is parsed when it arrives. The URL is
        signed, so no Shopify token is sent with it. Raises NotFoundError when the file is
        gone (HTTP 403/404/410: expired), TransportError when the download fails (it can be
        started again), MalformedResponse naming the line that is not a JSON object.
        """
        try:
            async with self._http.stream("GET", url, headers={"Accept": "application/jsonl"}) as response:
                if response.status_code in (403, 404, 410):
                    raise NotFoundError(f"the bulk result is gone (HTTP {response.status_code})")
                if response.status_code != 200:
                    raise TransportError(f"the bulk result download answered HTTP {response.status_code}")
                number = 0
                async for line in response.aiter_lines():
                    number += 1
                    if not line.strip():
                        continue
                    try:
                        row = json.loads(line)
                    except ValueError:
                        row = None
                    if not isinstance(row, dict):
                        raise MalformedResponse(f"line {number} of the bulk result is not a JSON object")
                    yield number, row
        except httpx.HTTPError as exc:
            raise TransportError(f"the bulk result download failed ({type(exc).__name__}: {exc})") from exc

    # --- writes ---------------------------------------------------------------------------

    async def set_available(
        self,
        quantities: Sequence[StockQuantity | tuple[str, str, int, int | None]],
        *,
        key: str,
        reference_uri: str,
        reason: str = "correction",
        name: str = "available",
    ) -> SetStockResult:
        """Set absolute stock quantities (at most 250) with ``inventorySetQuantities``.

        ``key`` is the idempotency key: reuse it when re-sending the same batch, use a new
        one for a different batch. ``reference_uri`` names the source document in Shopify's
        inventory history (``gid://rackbeat-shopify/StockSync/…``). Errors are returned,
        not raised, so the caller can see which items were stale
        (:attr:`SetStockResult.stale_item_ids`); ``IDEMPOTENCY_CONCURRENT_REQUEST`` (the
        same key still running) is waited out and re-sent here.
        """
        batch = tuple(StockQuantity(*q) for q in quantities)
        if not batch:
            return SetStockResult(quantities=batch)
        if len(batch) > docs.MAX_INPUT_ITEMS:
            raise ValueError(f"at most {docs.MAX_INPUT_ITEMS} quantities per call, got {len(batch)}")
        if not key.strip():
            raise ValueError("the idempotency key must not be blank")
        variables = {
            "key": key,
            "input": {
                "name": name,
                "reason": reason,
                "referenceDocumentUri": reference_uri,
                "quantities": [
                    {
                        "inventoryItemId": q.inventory_item_id,
                        "locationId": q.location_id,
                        "quantity": q.quantity,
                        # always present: since 2026-04 leaving it out is an error
                        "changeFromQuantity": q.change_from,
                    }
                    for q in batch
                ],
            },
        }
        attempt = 0
        while True:
            attempt += 1
            data = await self.execute(docs.SET_STOCK, variables)
            payload = data.get("inventorySetQuantities")
            if not isinstance(payload, Mapping):
                raise MalformedResponse("SetStock: inventorySetQuantities is missing")
            errors = tuple(UserError.from_json(e) for e in payload.get("userErrors") or [])
            if (
                errors
                and all(e.code == _CONCURRENT_CODE for e in errors)
                and attempt < self._retry.policy.max_attempts
            ):
                # An earlier send with this key is still running; its outcome is ours.
                await self._retry.pause(attempt)
                continue
            group = payload.get("inventoryAdjustmentGroup")
            group_id = group.get("id") if isinstance(group, Mapping) else None
            changes = group.get("changes") if isinstance(group, Mapping) else None
            return SetStockResult(
                quantities=batch,
                user_errors=errors,
                adjustment_group_id=str(group_id) if group_id is not None else None,
                changes=tuple(c for c in changes or [] if isinstance(c, dict)),
            )

    async def product_create(self, product: Mapping[str, Any]) -> JSONObject:
        """Create a product from a ``ProductCreateInput``; return
        ``{id, updatedAt, variants: {nodes: [{id, inventoryItem: {id}}]}}``.

        Not resent after a failure Shopify may have acted on (it has no idempotency key):
        raises AmbiguousWrite, and the products flow looks for the half-made product
        instead of risking a duplicate. Raises ValidationError for ``userErrors``.
        """
        data = await self.execute(docs.PRODUCT_CREATE, {"product": dict(product)})
        record = f"product {product.get('title')!r}"
        payload = raise_user_errors(data.get("productCreate"), record=record)
        return self._payload_object(payload, "product", "ProductCreate")

    async def product_update(self, product: Mapping[str, Any]) -> JSONObject:
        """Update a product from a ``ProductUpdateInput`` (which carries ``id``);
        return ``{id, updatedAt}``. Raises ValidationError for ``userErrors``."""
        if not product.get("id"):
            raise ValueError("product_update needs the product's id")
        # Setting absolute values twice has the same effect as once: safe to resend.
        data = await self.execute(docs.PRODUCT_UPDATE, {"product": dict(product)}, replay_safe=True)
        payload = raise_user_errors(data.get("productUpdate"), record=f"product {product['id']}")
        return self._payload_object(payload, "product", "ProductUpdate")

    async def variants_bulk_update(
        self, product_id: str, variants: Sequence[Mapping[str, Any]]
    ) -> JSONObject:
        """Update existing variants (``ProductVariantsBulkInput`` with ``id``) of one product.

        Returns ``{product: {id, updatedAt}, productVariants: [{id, sku, barcode, price,
        inventoryItem: {id, tracked}}]}``; raises ValidationError for ``userErrors`` (with
        codes). At most 250 variants.
        """
        if len(variants) > docs.MAX_INPUT_ITEMS:
            raise ValueError(f"at most {docs.MAX_INPUT_ITEMS} variants per call, got {len(variants)}")
        data = await self.execute(
            docs.VARIANTS_BULK_UPDATE,
            {"productId": product_id, "variants": [dict(v) for v in variants]},
            replay_safe=True,  # absolute values, like product_update
        )
        payload = raise_user_errors(data.get("productVariantsBulkUpdate"), record=f"variants of {product_id}")
        return {k: v for k, v in payload.items() if k != "userErrors"}

    async def fulfillment_create(
        self, lines: Mapping[str, Sequence[tuple[str, int]]], *, tracking: Tracking | None, notify: bool
    ) -> Fulfillment:
        """Fulfil units of one order's fulfillment orders (all at one location) as one shipment.

        ``lines`` maps a fulfillment order id to ``[(fulfillment order line item id,
        quantity)]``; an empty sequence fulfils everything left on that fulfillment order
        (Shopify's meaning of no line items). ``tracking`` is sent when it has any part set;
        ``notify`` asks Shopify to e-mail the customer.

        Not replay-safe (``fulfillmentCreate`` takes no idempotency key): a failure Shopify
        may have acted on (a timeout, a 5xx, a cut-off answer) raises AmbiguousWrite
        without resending, and the caller re-reads :meth:`order_fulfilment` to see whether
        it landed. ``userErrors`` (a quantity above what is left, a held or closed
        fulfillment order …) raise ValidationError; Shopify then changed nothing.
        """
        if not lines:
            raise ValueError("fulfillment_create needs at least one fulfillment order")
        if len(lines) > docs.MAX_INPUT_ITEMS:
            raise ValueError(f"at most {docs.MAX_INPUT_ITEMS} fulfillment orders per call, got {len(lines)}")
        groups: list[JSONObject] = []
        for fo_id, items in lines.items():
            group: JSONObject = {"fulfillmentOrderId": fo_id}
            for line_id, quantity in items:
                if isinstance(quantity, bool) or not isinstance(quantity, int) or quantity < 1:
                    raise ValueError(f"quantity for {line_id} must be a positive integer, not {quantity!r}")
            if items:
                group["fulfillmentOrderLineItems"] = [{"id": i, "quantity": q} for i, q in items]
            groups.append(group)
        fulfillment: JSONObject = {"lineItemsByFulfillmentOrder": groups, "notifyCustomer": notify}
        if tracking:
            fulfillment["trackingInfo"] = _tracking_input(tracking, absolute=False)
        data = await self.execute(docs.FULFILLMENT_CREATE, {"fulfillment": fulfillment})
        record = f"fulfilment of {', '.join(lines)}"
        payload = raise_user_errors(data.get("fulfillmentCreate"), record=record)
        return _parse_fulfillment(
            self._payload_object(payload, "fulfillment", "FulfillmentCreate"), "FulfillmentCreate"
        )

    async def fulfillment_tracking_update(
        self, fulfillment_id: str, tracking: Tracking, *, notify: bool
    ) -> None:
        """Set a fulfilment's tracking to ``tracking`` (parts left None are cleared).

        Replay-safe: the values are absolute, so a resend after a lost answer changes
        nothing more (with ``notify`` the customer may be e-mailed twice). ``userErrors``
        (an unknown fulfilment …) raise ValidationError.
        """
        variables = {
            "fulfillmentId": fulfillment_id,
            "trackingInfoInput": _tracking_input(tracking, absolute=True),
            "notifyCustomer": notify,
        }
        data = await self.execute(docs.FULFILLMENT_TRACKING_UPDATE, variables, replay_safe=True)
        record = f"tracking of fulfilment {fulfillment_id}"
        payload = raise_user_errors(data.get("fulfillmentTrackingInfoUpdate"), record=record)
        self._payload_object(payload, "fulfillment", "FulfillmentTrackingUpdate")

    # --- internals: nested pages ----------------------------------------------------------------

    async def _complete(
        self, parent: JSONObject, field: str, document: str, page_size: int, root: str
    ) -> None:
        """Fetch the remaining pages of ``parent[field]`` and append them in place."""
        connection = parent.get(field)
        if not isinstance(connection, dict):
            raise MalformedResponse(f"{_operation(document)[1]}: {field} is missing")
        page_info = connection.get("pageInfo") or {}
        nodes = connection.get("nodes")
        if not isinstance(nodes, list):
            raise MalformedResponse(f"{_operation(document)[1]}: {field} has no nodes")
        if not page_info.get("hasNextPage"):
            return
        variables = {"id": parent.get("id"), "first": page_size, "after": page_info.get("endCursor")}
        pages = self.paginate(document, variables, (root, field))
        async with contextlib.aclosing(pages):
            async for page in pages:
                nodes.extend(page)
        connection["pageInfo"] = {"hasNextPage": False, "endCursor": None}

    @staticmethod
    def _payload_object(payload: Mapping[str, Any], key: str, operation: str) -> JSONObject:
        value = payload.get(key)
        if not isinstance(value, dict):
            raise MalformedResponse(f"{operation}: no {key} in the payload and no userErrors")
        return value

    # --- internals: sending ------------------------------------------------------------------

    async def _post(self, url: str, what: str, **kwargs: Any) -> httpx.Response:
        """POST, turning httpx's exceptions into retriable failures."""
        try:
            return await self._http.post(url, **kwargs)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            # The request never left: resending cannot duplicate anything.
            error = TransportError(f"{what}: cannot reach Shopify ({type(exc).__name__}: {exc})")
            raise AttemptFailed(error, delivered=False, cause=exc) from exc
        except httpx.TimeoutException as exc:
            error = TransportError(f"{what}: Shopify did not answer in time ({type(exc).__name__})")
            raise AttemptFailed(error, delivered=True, cause=exc) from exc
        except httpx.TransportError as exc:
            error = TransportError(f"{what}: connection failed ({type(exc).__name__}: {exc})")
            raise AttemptFailed(error, delivered=True, cause=exc) from exc

    def _interpret(self, response: httpx.Response, name: str, document: str, size: int | None) -> JSONObject:
        """Turn one GraphQL response into ``data`` or the matching error."""
        status = response.status_code
        if status == 429:
            body = _json_or_none(response)
            if isinstance(body, dict):
                self._observe_cost(body, document, size)
            wait = retry_after(response)
            if wait is None and isinstance(body, dict):
                wait = self._throttle_wait(body, document, size)
            raise ThrottledError(f"{name}: throttled by Shopify (HTTP 429)", retry_after=wait)
        if status >= 500:
            error = TransportError(f"{name}: Shopify answered HTTP {status}")
            raise AttemptFailed(error, delivered=True)
        if status == 403:
            raise AuthError(f"{name}: Shopify answered HTTP 403; check the app's access scopes")
        if status == 404:
            raise ConfigError(
                f"{name}: Shopify answered HTTP 404; check SHOPIFY_SHOP, SHOPIFY_ADMIN_URL and SHOPIFY_API_VERSION"
            )
        if status in (402, 423):
            raise FatalError(f"{name}: Shopify answered HTTP {status}; the shop is frozen, locked or unpaid")
        if 300 <= status < 400:
            raise ConfigError(
                f"{name}: Shopify redirected (HTTP {status}) to {response.headers.get('location', '?')}; "
                "check SHOPIFY_SHOP and SHOPIFY_ADMIN_URL"
            )

        body = _json_or_none(response)
        if not isinstance(body, dict):
            kind = response.headers.get("content-type", "unknown content type")
            malformed = MalformedResponse(f"{name}: HTTP {status} body is not a JSON object ({kind})")
            raise AttemptFailed(malformed, delivered=True)
        self._observe_cost(body, document, size)

        errors = _error_list(body.get("errors"))
        if errors:
            codes = {_error_code(e) for e in errors}
            if "THROTTLED" in codes:
                raise ThrottledError(
                    f"{name}: throttled by Shopify", retry_after=self._throttle_wait(body, document, size)
                )
            if "INTERNAL_SERVER_ERROR" in codes:
                error = TransportError(f"{name}: Shopify reported an internal error")
                raise AttemptFailed(error, delivered=True)
            if "ACCESS_DENIED" in codes:
                raise AuthError(f"{name}: {_describe_errors(errors)}; check the app's access scopes")
            raise GraphQLError(f"Shopify rejected {name}: {_describe_errors(errors)}", errors)
        if status != 200:
            raise GraphQLError(f"Shopify rejected {name} with HTTP {status}")
        data = body.get("data")
        if not isinstance(data, dict):
            raise AttemptFailed(MalformedResponse(f"{name}: the response has no data"), delivered=True)
        return data

    # --- internals: throttle ------------------------------------------------------------------

    def _observe_cost(self, body: Mapping[str, Any], document: str, size: int | None) -> None:
        """Remember the bucket, the document's price (for ``size`` nodes) and what was spent."""
        extensions = body.get("extensions")
        cost = extensions.get("cost") if isinstance(extensions, Mapping) else None
        if not isinstance(cost, Mapping):
            return
        requested = _number(cost.get("requestedQueryCost"))
        if requested is not None:
            self._expected_cost[document] = (size, requested)
        actual = _number(cost.get("actualQueryCost"))
        if actual is not None:
            self.cost_spent += round(actual)
        status = cost.get("throttleStatus")
        if isinstance(status, Mapping):
            maximum = _number(status.get("maximumAvailable"))
            available = _number(status.get("currentlyAvailable"))
            rate = _number(status.get("restoreRate"))
            if maximum is not None and available is not None and rate is not None and rate > 0:
                self._bucket = ThrottleStatus(maximum, available, rate, self._clock())

    def _throttle_wait(self, body: Mapping[str, Any], document: str, size: int | None) -> float | None:
        """Seconds until the bucket holds the requested cost again, from a throttled answer."""
        bucket = self._bucket
        if bucket is None:
            return None
        extensions = body.get("extensions")
        cost = extensions.get("cost") if isinstance(extensions, Mapping) else None
        requested = _number(cost.get("requestedQueryCost")) if isinstance(cost, Mapping) else None
        if requested is None:
            requested = self._expected(document, size)
        needed = min(requested, bucket.maximum_available) - bucket.currently_available
        return max(MIN_THROTTLE_WAIT_SECONDS, needed / bucket.restore_rate)

    def _expected(self, document: str, size: int | None) -> float:
        """The points a request of ``document`` for ``size`` nodes is likely to ask for."""
        known = self._expected_cost.get(document)
        if known is None:
            per_id = docs.POINTS_PER_ID.get(document)
            return self._default_cost if per_id is None or size is None else float(per_id * size)
        known_size, requested = known
        if size is None or not known_size or size == known_size:
            return requested
        # a connection costs 2 plus its nodes' cost, a list of ids its items' cost: both
        # grow in proportion to the nodes asked for
        return 2 + max(0.0, requested - 2) * size / known_size

    async def _await_budget(self, document: str, size: int | None) -> None:
        """Sleep until the known bucket covers the request's expected cost, then book it."""
        while True:
            bucket = self._bucket
            if bucket is None:
                return  # nothing known yet: the first answer will tell
            needed = min(self._expected(document, size), bucket.maximum_available)
            available = bucket.available_at(self._clock())
            if available < needed:
                wait = (needed - available) / bucket.restore_rate
                log.debug(
                    "shopify.bucket_low",
                    available=round(available),
                    needed=round(needed),
                    wait=round(wait, 2),
                )
                await self._pause(wait)
                if self._bucket is not bucket:
                    continue  # news arrived while sleeping (a report, another caller's booking)
                # The wait covered the shortfall; not re-measured, because rounding can
                # leave it a hair short and turn the check into a loop of tiny sleeps.
            # Book the points so that concurrent callers wait their turn; Shopify's next
            # report replaces this estimate.
            now = self._clock()
            left = max(0.0, bucket.available_at(now) - needed)
            self._bucket = ThrottleStatus(bucket.maximum_available, left, bucket.restore_rate, now)
            return

    async def _pause(self, seconds: float) -> None:
        self.throttle_wait_seconds += seconds
        await self._sleep(seconds)

    # --- internals: credentials ----------------------------------------------------------------

    async def _access_token(self) -> SecretStr:
        if self._static_token is not None:
            return self._static_token
        token = self._token
        if token is not None and self._clock() < token.renew_at:
            return token.value
        async with self._token_lock:
            # Another task may have renewed it while this one waited for the lock.
            token = self._token
            if token is None or self._clock() >= token.renew_at:
                token = await self._grant()
                self._token = token
            return token.value

    def _forget_token(self, rejected: SecretStr) -> None:
        # Only drop the token that was refused; a concurrent task may already hold a new one.
        if self._token is not None and self._token.value == rejected:
            self._token = None

    async def _grant(self) -> _Token:
        """Obtain a token with the client-credentials grant."""
        credentials = self._credentials
        if credentials is None:
            raise ConfigError("SHOPIFY_CLIENT_ID and SHOPIFY_CLIENT_SECRET are needed to obtain a token")
        form = {
            "grant_type": "client_credentials",
            "client_id": credentials.client_id,
            "client_secret": credentials.client_secret.get_secret_value(),
        }

        async def attempt() -> _Token:
            self.token_requests += 1
            response = await self._post(
                credentials.token_url, "token grant", data=form, headers={"Accept": "application/json"}
            )
            status = response.status_code
            if status in (400, 401, 403):
                body = _json_or_none(response)
                code = body.get("error") if isinstance(body, dict) else None
                # Only a short machine code is repeated; free text could echo the request.
                shown = f", {code}" if isinstance(code, str) and re.fullmatch(r"[a-z_]{1,40}", code) else ""
                raise AuthError(
                    f"Shopify refused the client credentials (HTTP {status}{shown}); "
                    "check SHOPIFY_CLIENT_ID and SHOPIFY_CLIENT_SECRET"
                )
            if status == 429:
                raise ThrottledError("token grant: throttled by Shopify", retry_after=retry_after(response))
            if status >= 500:
                error = TransportError(f"token grant: Shopify answered HTTP {status}")
                raise AttemptFailed(error, delivered=True)
            if status != 200:
                raise ConfigError(
                    f"token grant: Shopify answered HTTP {status}; check SHOPIFY_SHOP and SHOPIFY_ADMIN_URL"
                )
            body = _json_or_none(response)
            value = body.get("access_token") if isinstance(body, dict) else None
            if not isinstance(value, str) or not value:
                malformed = MalformedResponse("token grant: the answer has no access_token")
                raise AttemptFailed(malformed, delivered=True)
            register_secret(value)
            lifetime = _number(body.get("expires_in")) if isinstance(body, dict) else None
            now = self._clock()
            if lifetime is None or lifetime <= 0:
                renew_at = math.inf  # no expiry given: renew only when refused
            else:
                renew_at = now + max(
                    0.0, min(lifetime * TOKEN_RENEW_FRACTION, lifetime - TOKEN_RENEW_MARGIN_SECONDS)
                )
            return _Token(SecretStr(value), renew_at)

        return await self._retry.run("token grant", attempt, replay_safe=True)
