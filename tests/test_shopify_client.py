"""ShopifyClient against scripted HTTP answers: respx routes for the credential and
throttle paths, a small scripted ``httpx.MockTransport`` for the rest.

Time is fake: ``sleep`` records the wait and moves ``clock`` forward, so every test runs
in milliseconds and can assert the exact waits the client chose. Jitter is pinned
(``random`` returns 1.0), so a backoff before retry n is exactly 0.5 × 2^(n-1) seconds.
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import anyio
import anyio.lowlevel
import httpx
import pytest
import respx
from pydantic import SecretStr

from daemon import shopify_documents as docs
from daemon.errors import (
    AmbiguousWrite,
    AuthError,
    GraphQLError,
    MalformedResponse,
    RetriableError,
    TransportError,
    ValidationError,
)
from daemon.shopify import (
    STALE_CODE,
    Fulfillment,
    FulfillmentOrder,
    FulfillmentOrderLine,
    OrderFulfilment,
    SetStockResult,
    ShopifyClient,
    StockQuantity,
    Tracking,
    UserError,
    raise_user_errors,
    sku_search,
)
from daemon.sim.faults import Faults, truncate_body
from daemon.sim.shopify import DEFAULT_ACCESS_TOKEN as SIM_TOKEN
from daemon.sim.shopify import ShopifySimulator, SimClock, SimFulfillmentOrder

GRAPHQL_URL = "https://test-shop.myshopify.com/admin/api/2026-10/graphql.json"
TOKEN_URL = "https://test-shop.myshopify.com/admin/oauth/access_token"
STATIC_TOKEN = "shpat_static_0123456789"
CLIENT_SECRET = "shpss_client_secret_0123456789"
GRANTED = ("shpat_granted_one_0123", "shpat_granted_two_4567")
SECRETS = (STATIC_TOKEN, CLIENT_SECRET, *GRANTED)

Handler = Callable[[httpx.Request], httpx.Response]
AsyncHandler = Callable[[httpx.Request], Coroutine[None, None, httpx.Response]]


class FakeTime:
    """A monotonic clock that only moves when the client sleeps (or a test says so)."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


class Script:
    """Answers GraphQL and token requests from two queues and records every request.

    A queued item is an ``httpx.Response`` or a function of the request (which may raise
    an httpx exception to simulate a timeout or a refused connection).
    """

    def __init__(self) -> None:
        self.graphql: list[httpx.Response | Handler] = []
        self.tokens: list[httpx.Response | Handler] = []
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        queue = self.tokens if request.url.path.endswith("/oauth/access_token") else self.graphql
        assert queue, f"unexpected request to {request.url.path}"
        item = queue.pop(0)
        return item(request) if callable(item) else item

    @property
    def graphql_requests(self) -> list[httpx.Request]:
        return [r for r in self.requests if r.url.path.endswith("graphql.json")]

    @property
    def token_requests(self) -> list[httpx.Request]:
        return [r for r in self.requests if r.url.path.endswith("/oauth/access_token")]


@pytest.fixture
def fake_time() -> FakeTime:
    return FakeTime()


@asynccontextmanager
async def connected(
    handler: Handler | None, fake_time: FakeTime, **overrides: Any
) -> AsyncIterator[ShopifyClient]:
    """A client on a scripted transport, or (``handler`` None) a plain one that respx intercepts."""
    options: dict[str, Any] = {
        "graphql_url": GRAPHQL_URL,
        "access_token": SecretStr(STATIC_TOKEN),
        "sleep": fake_time.sleep,
        "clock": fake_time.clock,
        "random": lambda: 1.0,
    }
    options.update(overrides)
    transport = httpx.MockTransport(handler) if handler is not None else None
    async with httpx.AsyncClient(transport=transport) as http:
        yield ShopifyClient(http, **options)


def client_credentials() -> dict[str, Any]:
    return {
        "access_token": None,
        "token_url": TOKEN_URL,
        "client_id": "client-id-1",
        "client_secret": SecretStr(CLIENT_SECRET),
    }


def cost(
    requested: float = 10,
    actual: float | None = None,
    available: float = 1990,
    maximum: float = 2000,
    rate: float = 100,
) -> dict[str, Any]:
    return {
        "cost": {
            "requestedQueryCost": requested,
            "actualQueryCost": actual,
            "throttleStatus": {
                "maximumAvailable": maximum,
                "currentlyAvailable": available,
                "restoreRate": rate,
            },
        }
    }


def ok(data: dict[str, Any], **cost_args: Any) -> httpx.Response:
    cost_args.setdefault("actual", cost_args.get("requested", 10))
    return httpx.Response(200, json={"data": data, "extensions": cost(**cost_args)})


def throttled(requested: float, available: float, rate: float, maximum: float = 2000) -> httpx.Response:
    return httpx.Response(
        200,
        json={
            "errors": [{"message": "Throttled", "extensions": {"code": "THROTTLED"}}],
            "extensions": cost(requested=requested, available=available, rate=rate, maximum=maximum),
        },
    )


def token(value: str, expires_in: float | None = 86_400) -> httpx.Response:
    body: dict[str, Any] = {"access_token": value, "scope": "read_orders,write_inventory"}
    if expires_in is not None:
        body["expires_in"] = expires_in
    return httpx.Response(200, json=body)


def body_of(request: httpx.Request) -> dict[str, Any]:
    parsed: dict[str, Any] = json.loads(request.content)
    return parsed


PRIMARY = {"location": {"id": "gid://shopify/Location/1", "name": "Main", "isActive": True}}


def assert_no_secret(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text


# --- credentials (respx) ---------------------------------------------------------------------
#
# Credential and throttle paths mock Shopify with respx: one route for GraphQL, one for the
# token grant; each answers its side effects in order and records its calls.


@dataclass
class Shopify:
    """The respx routes standing in for Shopify."""

    graphql: respx.Route
    grant: respx.Route


@pytest.fixture
def shopify() -> Iterator[Shopify]:
    with respx.mock(assert_all_called=False) as router:
        yield Shopify(graphql=router.post(GRAPHQL_URL), grant=router.post(TOKEN_URL))


def sent_tokens(route: respx.Route) -> list[str]:
    return [call.request.headers["X-Shopify-Access-Token"] for call in route.calls]


@pytest.mark.anyio
async def test_static_token_is_sent_and_data_returned(shopify: Shopify, fake_time: FakeTime) -> None:
    shopify.graphql.side_effect = [ok(PRIMARY, requested=1)]
    async with connected(None, fake_time) as client:
        assert await client.primary_location_id() == "gid://shopify/Location/1"
    request = shopify.graphql.calls.last.request
    assert shopify.graphql.call_count == 1
    assert request.headers["X-Shopify-Access-Token"] == STATIC_TOKEN
    assert body_of(request)["operationName"] == "PrimaryLocation"
    assert not shopify.grant.called
    assert (client.requests, client.retries, client.throttled, client.cost_spent) == (1, 0, 0, 1)
    assert fake_time.sleeps == []


@pytest.mark.anyio
async def test_client_credentials_grant_and_renewal_before_expiry(
    shopify: Shopify, fake_time: FakeTime
) -> None:
    shopify.grant.side_effect = [token(GRANTED[0], expires_in=1000), token(GRANTED[1], expires_in=1000)]
    shopify.graphql.side_effect = [ok(PRIMARY), ok(PRIMARY), ok(PRIMARY)]
    async with connected(None, fake_time, **client_credentials()) as client:
        await client.primary_location_id()
        fake_time.now += 650  # renewal is due at min(90 %, lifetime − 5 min) = 700 s
        await client.primary_location_id()
        fake_time.now += 100
        await client.primary_location_id()

    grant = shopify.grant.calls[0].request
    assert grant.headers["content-type"] == "application/x-www-form-urlencoded"
    form = urllib.parse.parse_qs(grant.content.decode())
    assert form == {
        "grant_type": ["client_credentials"],
        "client_id": ["client-id-1"],
        "client_secret": [CLIENT_SECRET],
    }
    assert sent_tokens(shopify.graphql) == [GRANTED[0], GRANTED[0], GRANTED[1]]
    assert shopify.grant.call_count == client.token_requests == 2


@pytest.mark.anyio
async def test_a_401_renews_the_token_once(shopify: Shopify, fake_time: FakeTime) -> None:
    shopify.grant.side_effect = [token(GRANTED[0]), token(GRANTED[1])]
    shopify.graphql.side_effect = [
        httpx.Response(401, json={"errors": "[API] Invalid API key or access token"}),
        ok(PRIMARY),
    ]
    async with connected(None, fake_time, **client_credentials()) as client:
        assert await client.primary_location_id() == "gid://shopify/Location/1"
    assert sent_tokens(shopify.graphql) == [GRANTED[0], GRANTED[1]]
    assert fake_time.sleeps == []


@pytest.mark.anyio
async def test_a_second_401_in_a_row_is_an_auth_error(shopify: Shopify, fake_time: FakeTime) -> None:
    shopify.grant.side_effect = [token(GRANTED[0]), token(GRANTED[1])]
    shopify.graphql.side_effect = [httpx.Response(401), httpx.Response(401)]
    async with connected(None, fake_time, **client_credentials()) as client:
        with pytest.raises(AuthError) as caught:
            await client.primary_location_id()
    assert shopify.graphql.call_count == 2
    assert_no_secret(str(caught.value))


@pytest.mark.anyio
async def test_a_refused_static_token_names_the_variable(shopify: Shopify, fake_time: FakeTime) -> None:
    shopify.graphql.side_effect = [httpx.Response(401)]
    async with connected(None, fake_time) as client:
        with pytest.raises(AuthError, match="SHOPIFY_ACCESS_TOKEN") as caught:
            await client.primary_location_id()
    assert_no_secret(str(caught.value))
    assert shopify.graphql.call_count == 1


@pytest.mark.anyio
@pytest.mark.parametrize("status", [400, 401])
async def test_a_refused_token_grant_names_the_client_settings(
    shopify: Shopify, fake_time: FakeTime, status: int
) -> None:
    refusal = {"error": "invalid_client", "error_description": f"bad secret {CLIENT_SECRET}"}
    shopify.grant.side_effect = [httpx.Response(status, json=refusal)]
    async with connected(None, fake_time, **client_credentials()) as client:
        with pytest.raises(AuthError) as caught:
            await client.primary_location_id()
    message = str(caught.value)
    assert "SHOPIFY_CLIENT_ID" in message
    assert "SHOPIFY_CLIENT_SECRET" in message
    assert "invalid_client" in message
    assert_no_secret(message)
    assert not shopify.graphql.called


@pytest.mark.anyio
async def test_a_token_grant_5xx_is_retried(shopify: Shopify, fake_time: FakeTime) -> None:
    shopify.grant.side_effect = [httpx.Response(502, text="<html>Bad gateway</html>"), token(GRANTED[0])]
    shopify.graphql.side_effect = [ok(PRIMARY)]
    async with connected(None, fake_time, **client_credentials()) as client:
        await client.primary_location_id()
    assert fake_time.sleeps == [0.5]
    assert shopify.grant.call_count == 2


@pytest.mark.anyio
async def test_secrets_stay_out_of_reprs_and_errors(shopify: Shopify, fake_time: FakeTime) -> None:
    shopify.grant.side_effect = [token(GRANTED[0])]
    shopify.graphql.side_effect = [httpx.Response(500), httpx.Response(500)]
    async with connected(None, fake_time, max_attempts=2, **client_credentials()) as client:
        with pytest.raises(TransportError) as caught:
            await client.primary_location_id()
        assert_no_secret(repr(client))
        assert_no_secret(str(client.__dict__))
    assert_no_secret(str(caught.value))
    assert_no_secret(repr(caught.value))


# --- throttle ---------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_throttled_with_http_200_waits_the_computed_time(shopify: Shopify, fake_time: FakeTime) -> None:
    shopify.graphql.side_effect = [throttled(requested=500, available=100, rate=50), ok(PRIMARY)]
    async with connected(None, fake_time) as client:
        await client.primary_location_id()
    assert fake_time.sleeps == [pytest.approx((500 - 100) / 50)]
    assert (client.requests, client.throttled, client.retries) == (2, 1, 0)
    assert shopify.graphql.call_count == 2


@pytest.mark.anyio
async def test_http_429_waits_retry_after(shopify: Shopify, fake_time: FakeTime) -> None:
    shopify.graphql.side_effect = [
        httpx.Response(429, headers={"Retry-After": "2.5"}, text="Too Many Requests"),
        ok(PRIMARY),
    ]
    async with connected(None, fake_time) as client:
        await client.primary_location_id()
    assert fake_time.sleeps == [2.5]
    assert client.throttled == 1


@pytest.mark.anyio
async def test_http_429_without_retry_after_uses_the_reported_bucket(
    shopify: Shopify, fake_time: FakeTime
) -> None:
    body = {"errors": [{"message": "Throttled"}], "extensions": cost(requested=300, available=0, rate=200)}
    shopify.graphql.side_effect = [httpx.Response(429, json=body), ok(PRIMARY)]
    async with connected(None, fake_time) as client:
        await client.primary_location_id()
    assert fake_time.sleeps == [pytest.approx(1.5)]


@pytest.mark.anyio
async def test_waits_before_sending_when_the_bucket_is_low(fake_time: FakeTime) -> None:
    script = Script()
    script.graphql = [ok(PRIMARY, requested=200, available=10, rate=100), ok(PRIMARY, requested=200)]
    async with connected(script, fake_time) as client:
        await client.primary_location_id()
        assert fake_time.sleeps == []
        await client.primary_location_id()
    # the document cost 200 last time; 10 are left and 100 come back per second
    assert fake_time.sleeps == [pytest.approx(1.9)]
    assert client.throttled == 0
    assert client.throttle_wait_seconds == pytest.approx(1.9)


@pytest.mark.anyio
async def test_concurrent_callers_book_points_and_wait_their_turn(fake_time: FakeTime) -> None:
    async def yielding_sleep(seconds: float) -> None:
        await fake_time.sleep(seconds)
        await anyio.lowlevel.checkpoint()  # let the other caller run meanwhile

    script = Script()
    script.graphql = [ok(PRIMARY, requested=100, available=0, rate=100) for _ in range(3)]
    async with connected(script, fake_time, sleep=yielding_sleep) as client:
        await client.primary_location_id()
        async with anyio.create_task_group() as group:
            group.start_soon(client.primary_location_id)
            group.start_soon(client.primary_location_id)
    # 200 points at 100 a second from an empty bucket: two seconds in all, not one
    assert sum(fake_time.sleeps) == pytest.approx(2.0)
    assert client.requests == 3


@pytest.mark.anyio
async def test_no_wait_once_the_bucket_has_refilled(fake_time: FakeTime) -> None:
    script = Script()
    script.graphql = [ok(PRIMARY, requested=200, available=10, rate=100), ok(PRIMARY)]
    async with connected(script, fake_time) as client:
        await client.primary_location_id()
        fake_time.now += 5  # 10 + 5 × 100 ≥ 200
        await client.primary_location_id()
    assert fake_time.sleeps == []


@pytest.mark.anyio
async def test_a_small_read_after_a_big_one_waits_only_for_its_own_cost(fake_time: FakeTime) -> None:
    items = [f"gid://shopify/InventoryItem/{i}" for i in range(250)]

    def shopify(request: httpx.Request) -> httpx.Response:
        ids = body_of(request)["variables"]["ids"]
        # Shopify prices nodes(ids:) per id: 3 points each, nothing left in the bucket
        return ok({"nodes": [None] * len(ids)}, requested=3 * len(ids), available=0, rate=100)

    async with connected(shopify, fake_time) as client:
        await client.inventory_levels(items, "gid://shopify/Location/1")
        assert fake_time.sleeps == []
        await client.inventory_levels(items[:10], "gid://shopify/Location/1")
    # 10 ids ask for about 30 points (2 + 748 × 10 / 250), not the 750 that 250 cost
    assert fake_time.sleeps == [pytest.approx(0.3192)]
    assert client.throttled == 0


@pytest.mark.anyio
async def test_a_read_of_recent_orders_asks_for_few_and_grows_while_pages_come_back_full(
    sim: ShopifySimulator, sim_clock: SimClock
) -> None:
    since = sim_clock.now()
    sim_clock.advance(60)
    ids = [sim.sell("CH-1", 1, email=f"buyer{n}@example.com") for n in range(8)]
    sim_clock.advance(60)
    async with on_simulator(sim, sim_clock) as client:
        sim.reset_requests()
        got = [o["id"] async for page in client.orders_updated_since(since) for o in page]
        incremental = [r.requested_cost for r in sim.request_log]
        sim.reset_requests()
        everything = [o["id"] async for page in client.orders_updated_since(None) for o in page]
        full = [r.requested_cost for r in sim.request_log]
    assert got == everything == ids
    # pages of 1, 2 and 4 orders, then the page size (5): one order's price first, which
    # is what the bucket must hold before a poll that finds nothing new can run
    one = incremental[0]
    assert incremental == [one, 2 * one - 2, 4 * one - 6, full[0]]
    assert full == [full[0], full[0]]
    assert full[0] == 5 * one - 8 == docs.ORDERS_PAGE_SIZE * (one - 2) + 2


# --- failures ----------------------------------------------------------------------------------


def _raise_read_timeout(request: httpx.Request) -> httpx.Response:
    raise httpx.ReadTimeout("timed out", request=request)


def _raise_connect_error(request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectError("connection refused", request=request)


TRANSIENT: dict[str, httpx.Response | Handler] = {
    "503": httpx.Response(503, text="<html><body>Service unavailable</body></html>"),
    "read timeout": _raise_read_timeout,
    "connection refused": _raise_connect_error,
    "truncated JSON": httpx.Response(200, text='{"data": {"location": {"id": "gid://sho'),
    "HTML page": httpx.Response(
        200, text="<!DOCTYPE html><html>Maintenance</html>", headers={"content-type": "text/html"}
    ),
    "no data": httpx.Response(200, json={"extensions": cost()}),
    "JSON list": httpx.Response(200, json=[1, 2]),
    "internal error": httpx.Response(
        200, json={"errors": [{"message": "Internal error", "extensions": {"code": "INTERNAL_SERVER_ERROR"}}]}
    ),
}


@pytest.mark.anyio
async def test_failures_wait_through_backoff_sleep_and_throttles_through_sleep(fake_time: FakeTime) -> None:
    backoffs: list[float] = []

    async def backoff_sleep(seconds: float) -> None:
        backoffs.append(seconds)

    script = Script()
    script.graphql = [httpx.Response(503), throttled(requested=300, available=100, rate=100), ok(PRIMARY)]
    async with connected(script, fake_time, backoff_sleep=backoff_sleep) as client:
        await client.primary_location_id()
    assert backoffs == [0.5]  # the daemon's marks the flow as retrying and ends on stop
    assert fake_time.sleeps == [pytest.approx(2.0)]  # the cost throttle: (300 − 100) / 100


@pytest.mark.anyio
@pytest.mark.parametrize("failure", sorted(TRANSIENT))
async def test_transient_failures_are_retried(fake_time: FakeTime, failure: str) -> None:
    script = Script()
    script.graphql = [TRANSIENT[failure], ok(PRIMARY)]
    async with connected(script, fake_time) as client:
        assert await client.primary_location_id() == "gid://shopify/Location/1"
    assert fake_time.sleeps == [0.5]
    assert (client.requests, client.retries) == (2, 1)


@pytest.mark.anyio
async def test_persistently_malformed_answers_raise_a_retriable_error(fake_time: FakeTime) -> None:
    script = Script()
    script.graphql = [httpx.Response(200, text="<html>oops</html>") for _ in range(3)]
    async with connected(script, fake_time, max_attempts=3) as client:
        with pytest.raises(MalformedResponse) as caught:
            await client.primary_location_id()
    assert isinstance(caught.value, RetriableError)


@pytest.mark.anyio
async def test_product_create_is_not_resent_after_an_ambiguous_failure(fake_time: FakeTime) -> None:
    script = Script()
    script.graphql = [_raise_read_timeout]
    async with connected(script, fake_time) as client:
        with pytest.raises(AmbiguousWrite) as caught:
            await client.product_create({"title": "Blue mug"})
    assert isinstance(caught.value.error, TransportError)
    assert len(script.requests) == 1


@pytest.mark.anyio
async def test_product_create_is_resent_when_the_request_never_left(fake_time: FakeTime) -> None:
    created = {
        "id": "gid://shopify/Product/9",
        "updatedAt": "2026-11-01T10:00:00Z",
        "variants": {"nodes": []},
    }
    script = Script()
    script.graphql = [_raise_connect_error, ok({"productCreate": {"product": created, "userErrors": []}})]
    async with connected(script, fake_time) as client:
        assert await client.product_create({"title": "Blue mug"}) == created


@pytest.mark.anyio
async def test_top_level_errors_raise_graphql_error(fake_time: FakeTime) -> None:
    script = Script()
    error = {
        "message": "Field 'bogus' doesn't exist on type 'Location'",
        "extensions": {"code": "undefinedField"},
    }
    script.graphql = [httpx.Response(200, json={"errors": [error], "extensions": cost()})]
    async with connected(script, fake_time) as client:
        with pytest.raises(GraphQLError) as caught:
            await client.primary_location_id()
    assert "Field 'bogus' doesn't exist on type 'Location'" in str(caught.value)
    assert "undefinedField" in str(caught.value)
    assert "PrimaryLocation" in str(caught.value)
    assert caught.value.errors == [error]
    assert len(script.requests) == 1


@pytest.mark.anyio
async def test_access_denied_is_an_auth_error(fake_time: FakeTime) -> None:
    script = Script()
    denied = {"message": "Access denied for locations field.", "extensions": {"code": "ACCESS_DENIED"}}
    script.graphql = [httpx.Response(200, json={"data": None, "errors": [denied]})]
    async with connected(script, fake_time) as client:
        with pytest.raises(AuthError, match="Access denied for locations"):
            await client.primary_location_id()


# --- userErrors -----------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_user_errors_raise_validation_error_with_codes_and_fields(fake_time: FakeTime) -> None:
    script = Script()
    user_error = {"code": "INVALID_INPUT", "field": ["variants", "0", "price"], "message": "Price is invalid"}
    payload = {"product": None, "productVariants": None, "userErrors": [user_error]}
    script.graphql = [ok({"productVariantsBulkUpdate": payload})]
    async with connected(script, fake_time) as client:
        with pytest.raises(ValidationError) as caught:
            await client.variants_bulk_update("gid://shopify/Product/1", [{"id": "v1", "price": "-1"}])
    assert caught.value.codes == ["INVALID_INPUT"]
    assert caught.value.fields == {"variants.0.price": ["Price is invalid"]}
    assert caught.value.reason == "INVALID_INPUT"
    assert "Price is invalid" in str(caught.value)


def test_raise_user_errors_passes_clean_payloads_and_names_the_record() -> None:
    clean = {"product": {"id": "p"}, "userErrors": []}
    assert raise_user_errors(clean, record="product 'x'") is clean
    with pytest.raises(ValidationError, match="product 'x'") as caught:
        raise_user_errors(
            {"userErrors": [{"field": ["title"], "message": "Title can't be blank"}]}, record="product 'x'"
        )
    assert caught.value.fields == {"title": ["Title can't be blank"]}
    assert caught.value.codes == []


@pytest.mark.anyio
async def test_set_available_sends_every_change_from_and_reports_stale_items(fake_time: FakeTime) -> None:
    script = Script()
    stale = {
        "code": STALE_CODE,
        "field": ["input", "quantities", "1", "changeFromQuantity"],
        "message": "The changeFromQuantity value does not match persisted value.",
    }
    script.graphql = [
        ok({"inventorySetQuantities": {"inventoryAdjustmentGroup": None, "userErrors": [stale]}})
    ]
    quantities = [
        StockQuantity("gid://shopify/InventoryItem/1", "gid://shopify/Location/1", 5, 3),
        ("gid://shopify/InventoryItem/2", "gid://shopify/Location/1", 7, 9),
        StockQuantity("gid://shopify/InventoryItem/3", "gid://shopify/Location/1", 0, None),
    ]
    async with connected(script, fake_time) as client:
        result = await client.set_available(
            quantities, key="key-1", reference_uri="gid://rackbeat-shopify/StockSync/1"
        )

    variables = body_of(script.requests[0])["variables"]
    assert variables["key"] == "key-1"
    sent = variables["input"]
    assert (sent["name"], sent["reason"], sent["referenceDocumentUri"]) == (
        "available",
        "correction",
        "gid://rackbeat-shopify/StockSync/1",
    )
    assert [q["changeFromQuantity"] for q in sent["quantities"]] == [3, 9, None]
    assert all("changeFromQuantity" in q for q in sent["quantities"])
    assert not result.ok
    assert result.adjustment_group_id is None
    assert result.stale_item_ids == {"gid://shopify/InventoryItem/2"}
    assert result.codes == (STALE_CODE,)
    assert result.general_errors == ()


@pytest.mark.anyio
async def test_set_available_waits_out_a_concurrent_request_with_the_same_key(fake_time: FakeTime) -> None:
    script = Script()
    busy = {"code": "IDEMPOTENCY_CONCURRENT_REQUEST", "field": None, "message": "in progress"}
    change = {
        "name": "available",
        "delta": 2,
        "quantityAfterChange": 5,
        "item": {"id": "i1"},
        "location": {"id": "l1"},
    }
    done = {
        "inventoryAdjustmentGroup": {"id": "gid://shopify/InventoryAdjustmentGroup/1", "changes": [change]},
        "userErrors": [],
    }
    script.graphql = [
        ok({"inventorySetQuantities": {"inventoryAdjustmentGroup": None, "userErrors": [busy]}}),
        ok({"inventorySetQuantities": done}),
    ]
    async with connected(script, fake_time) as client:
        result = await client.set_available([("i1", "l1", 5, 3)], key="key-7", reference_uri="gid://x/Y/1")
    assert [body_of(r)["variables"]["key"] for r in script.requests] == ["key-7", "key-7"]
    assert result.ok
    assert result.adjustment_group_id == "gid://shopify/InventoryAdjustmentGroup/1"
    assert result.changes == (change,)
    assert fake_time.sleeps == [0.5]


@pytest.mark.anyio
async def test_set_available_limits_and_empty_batches(fake_time: FakeTime) -> None:
    script = Script()
    async with connected(script, fake_time) as client:
        assert await client.set_available([], key="k", reference_uri="gid://x/Y/1") == SetStockResult(
            quantities=()
        )
        with pytest.raises(ValueError, match="250"):
            await client.set_available([("i", "l", 1, None)] * 251, key="k", reference_uri="gid://x/Y/1")
        with pytest.raises(ValueError, match="key"):
            await client.set_available([("i", "l", 1, None)], key=" ", reference_uri="gid://x/Y/1")
    assert script.requests == []


def test_user_error_index_and_general_errors() -> None:
    result = SetStockResult(
        quantities=(StockQuantity("a", "l", 1, 0),),
        user_errors=(
            UserError("bad reason", ("input", "reason"), "INVALID_REASON"),
            UserError("stale", ("input", "quantities", "0", "changeFromQuantity"), STALE_CODE),
        ),
    )
    assert [e.index for e in result.user_errors] == [None, 0]
    assert result.general_errors == (result.user_errors[0],)
    assert result.errors_by_item() == {"a": (result.user_errors[1],)}


# --- pagination ----------------------------------------------------------------------------------


def _page(path: str, nodes: list[dict[str, Any]], cursor: str | None, more: bool) -> httpx.Response:
    return ok({path: {"pageInfo": {"hasNextPage": more, "endCursor": cursor}, "nodes": nodes}})


@pytest.mark.anyio
async def test_paginate_follows_cursors(fake_time: FakeTime) -> None:
    script = Script()
    script.graphql = [
        _page("productVariants", [{"id": "v1"}, {"id": "v2"}], "c1", True),
        _page("productVariants", [{"id": "v3"}], "c2", True),
        _page("productVariants", [{"id": "v4"}], "c3", False),
    ]
    async with connected(script, fake_time) as client:
        pages = [page async for page in client.variants(page_size=2)]
    assert [[n["id"] for n in page] for page in pages] == [["v1", "v2"], ["v3"], ["v4"]]
    sent = [body_of(r)["variables"] for r in script.requests]
    assert [v["after"] for v in sent] == [None, "c1", "c2"]
    assert {v["first"] for v in sent} == {2}


@pytest.mark.anyio
async def test_a_repeated_cursor_stops_pagination(fake_time: FakeTime) -> None:
    script = Script()
    script.graphql = [
        _page("productVariants", [{"id": "v1"}], "c1", True),
        _page("productVariants", [{"id": "v2"}], "c1", True),
    ]
    async with connected(script, fake_time) as client:
        with pytest.raises(MalformedResponse, match="repeated"):
            async for _ in client.variants():
                pass
    assert len(script.requests) == 2


@pytest.mark.anyio
async def test_has_next_page_without_cursor_is_malformed(fake_time: FakeTime) -> None:
    script = Script()
    script.graphql = [_page("productVariants", [{"id": "v1"}], None, True)]
    async with connected(script, fake_time) as client:
        with pytest.raises(MalformedResponse, match="endCursor"):
            async for _ in client.variants():
                pass


@pytest.mark.anyio
@pytest.mark.parametrize("first", [0, 251, "10", None])
async def test_paginate_checks_first(fake_time: FakeTime, first: object) -> None:
    async with connected(Script(), fake_time) as client:
        with pytest.raises(ValueError, match="first"):
            async for _ in client.paginate(docs.VARIANTS_PAGE, {"first": first}, ("productVariants",)):
                pass


@pytest.mark.anyio
@pytest.mark.parametrize("grow_from", [0, 3])
async def test_paginate_checks_grow_from(fake_time: FakeTime, grow_from: int) -> None:
    async with connected(Script(), fake_time) as client:
        pages = client.paginate(docs.VARIANTS_PAGE, {"first": 2}, ("productVariants",), grow_from=grow_from)
        with pytest.raises(ValueError, match="grow_from"):
            async for _ in pages:
                pass


def _line_items(start: int, count: int) -> list[dict[str, Any]]:
    return [
        {"id": f"gid://shopify/LineItem/{i}", "sku": f"SKU-{i}", "quantity": 1}
        for i in range(start, start + count)
    ]


@pytest.mark.anyio
async def test_an_order_with_250_line_items_comes_back_complete(fake_time: FakeTime) -> None:
    order_id = "gid://shopify/Order/1"
    seen_after: list[str | None] = []

    def shopify(request: httpx.Request) -> httpx.Response:
        body = body_of(request)
        variables = body["variables"]
        if body["operationName"] == "OrdersUpdatedSince":
            assert variables["query"] == "updated_at:>='2026-11-01T10:00:00Z'"
            order = {
                "id": order_id,
                "updatedAt": "2026-11-01T10:05:00Z",
                "lineItems": {
                    "pageInfo": {"hasNextPage": True, "endCursor": "li-10"},
                    "nodes": _line_items(0, 10),
                },
            }
            return _page("orders", [order], "o1", False)
        assert body["operationName"] == "OrderLineItems"
        assert variables["id"] == order_id
        assert variables["first"] == docs.ORDER_LINE_ITEMS_PAGE_SIZE
        seen_after.append(variables["after"])
        start = int(variables["after"].removeprefix("li-"))
        count = min(docs.ORDER_LINE_ITEMS_PAGE_SIZE, 250 - start)
        more = start + count < 250
        connection = {
            "pageInfo": {"hasNextPage": more, "endCursor": f"li-{start + count}"},
            "nodes": _line_items(start, count),
        }
        return ok({"order": {"id": order_id, "lineItems": connection}})

    since = datetime(2026, 11, 1, 11, 0, tzinfo=timezone(timedelta(hours=1)))
    async with connected(shopify, fake_time) as client:
        pages = [page async for page in client.orders_updated_since(since)]
    (orders,) = pages
    (order,) = orders
    ids = [item["id"] for item in order["lineItems"]["nodes"]]
    assert ids == [f"gid://shopify/LineItem/{i}" for i in range(250)]
    assert order["lineItems"]["pageInfo"]["hasNextPage"] is False
    page = docs.ORDER_LINE_ITEMS_PAGE_SIZE
    assert seen_after == [f"li-{start}" for start in range(10, 250, page)]
    assert len(seen_after) == 3


@pytest.mark.anyio
async def test_a_product_with_many_variants_comes_back_complete(fake_time: FakeTime) -> None:
    def shopify(request: httpx.Request) -> httpx.Response:
        body = body_of(request)
        if body["operationName"] == "ProductsUpdatedSince":
            assert body["variables"]["query"] is None
            product = {
                "id": "p1",
                "variants": {"pageInfo": {"hasNextPage": True, "endCursor": "v20"}, "nodes": [{"id": "v0"}]},
            }
            return _page(
                "products",
                [product, {"id": "p2", "variants": {"pageInfo": {"hasNextPage": False}, "nodes": []}}],
                None,
                False,
            )
        assert body["operationName"] == "ProductVariants"
        assert body["variables"]["after"] == "v20"
        connection = {"pageInfo": {"hasNextPage": False, "endCursor": "v21"}, "nodes": [{"id": "v1"}]}
        return ok({"product": {"id": "p1", "variants": connection}})

    async with connected(shopify, fake_time) as client:
        (products,) = [page async for page in client.products_updated_since(None)]
    assert [v["id"] for v in products[0]["variants"]["nodes"]] == ["v0", "v1"]


@pytest.mark.anyio
async def test_naive_datetimes_are_refused(fake_time: FakeTime) -> None:
    async with connected(Script(), fake_time) as client:
        with pytest.raises(ValueError, match="timezone"):
            async for _ in client.orders_updated_since(datetime(2026, 1, 1)):  # noqa: DTZ001
                pass


# --- reads ----------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_inventory_levels_are_read_250_at_a_time(fake_time: FakeTime) -> None:
    item_ids = [f"gid://shopify/InventoryItem/{i}" for i in range(300)]

    def shopify(request: httpx.Request) -> httpx.Response:
        variables = body_of(request)["variables"]
        assert variables["locationId"] == "gid://shopify/Location/1"
        nodes: list[dict[str, Any] | None] = []
        for item in variables["ids"]:
            number = int(item.rsplit("/", 1)[1])
            if number == 5:
                nodes.append(None)  # deleted
            elif number == 6:
                nodes.append({"id": item, "sku": "S6", "inventoryLevel": None})  # not stocked here
            else:
                quantities = [
                    {"name": "available", "quantity": number},
                    {"name": "on_hand", "quantity": number + 1},
                ]
                nodes.append({"id": item, "sku": f"S{number}", "inventoryLevel": {"quantities": quantities}})
        return ok({"nodes": nodes})

    async with connected(shopify, fake_time) as client:
        levels = await client.inventory_levels([*item_ids, item_ids[0]], "gid://shopify/Location/1")
        quantities = await client.inventory_quantities(item_ids[:1], "gid://shopify/Location/1")
    assert client.requests == 3
    assert len(levels) == 300
    assert levels[item_ids[7]] == 7
    assert levels[item_ids[299]] == 299
    assert levels[item_ids[5]] is None
    assert levels[item_ids[6]] is None
    assert quantities == {item_ids[0]: {"available": 0, "on_hand": 1}}


@pytest.mark.anyio
async def test_variant_by_sku_matches_exactly_and_flags_duplicates(fake_time: FakeTime) -> None:
    script = Script()
    hit = {"id": "v1", "sku": "MUG-1"}
    script.graphql = [
        ok({"productVariants": {"nodes": [hit, {"id": "v2", "sku": "MUG-10"}]}}),
        ok({"productVariants": {"nodes": [hit, {"id": "v3", "sku": "MUG-1"}]}}),
        ok({"productVariants": {"nodes": []}}),
    ]
    async with connected(script, fake_time) as client:
        assert await client.variant_by_sku("MUG-1") == hit
        with pytest.raises(ValidationError) as caught:
            await client.variant_by_sku("MUG-1")
        assert await client.variant_by_sku("MUG-2") is None
    assert caught.value.reason == "DUPLICATE_SKU"
    assert body_of(script.requests[0])["variables"]["query"] == "sku:'MUG-1'"


def test_sku_search_escapes_quotes_and_backslashes() -> None:
    assert sku_search("A'B\\C") == "sku:'A\\'B\\\\C'"


@pytest.mark.anyio
async def test_locations_pages_all(fake_time: FakeTime) -> None:
    script = Script()
    script.graphql = [
        _page("locations", [{"id": "l1"}], "c1", True),
        _page("locations", [{"id": "l2"}], "c2", False),
    ]
    async with connected(script, fake_time) as client:
        assert [loc["id"] for loc in await client.locations()] == ["l1", "l2"]


@pytest.mark.anyio
async def test_cost_spent_sums_actual_costs(fake_time: FakeTime) -> None:
    script = Script()
    script.graphql = [ok(PRIMARY, requested=10, actual=4), ok(PRIMARY, requested=10, actual=6)]
    async with connected(script, fake_time) as client:
        await client.primary_location_id()
        await client.primary_location_id()
    assert client.cost_spent == 10
    status = client.throttle_status
    assert status is not None
    assert status.restore_rate == 100


def test_settings_build_a_client() -> None:
    from daemon.config import Settings

    settings = Settings(
        shopify_shop="test-shop.myshopify.com",
        shopify_access_token=SecretStr(STATIC_TOKEN),
        rackbeat_api_token=SecretStr("rb"),
        sync_orders=False,
    )
    http = httpx.AsyncClient(transport=httpx.MockTransport(Script()))
    client = ShopifyClient.from_settings(settings, http)
    assert GRAPHQL_URL in repr(client)
    assert_no_secret(repr(client))


def test_credentials_are_required() -> None:
    from daemon.errors import ConfigError

    http = httpx.AsyncClient(transport=httpx.MockTransport(Script()))
    with pytest.raises(ConfigError, match="SHOPIFY_ACCESS_TOKEN"):
        ShopifyClient(http, graphql_url=GRAPHQL_URL)


@pytest.mark.anyio
async def test_since_is_sent_in_utc() -> None:
    # also covered above; kept explicit because the cursor logic depends on it
    fake_time = FakeTime()
    seen: list[str] = []

    def shopify(request: httpx.Request) -> httpx.Response:
        seen.append(body_of(request)["variables"]["query"])
        return _page("orders", [], None, False)

    async with connected(shopify, fake_time) as client:
        async for _ in client.orders_updated_since(datetime(2026, 3, 1, 0, 0, 59, 999_000, tzinfo=UTC)):
            pass
    assert seen == ["updated_at:>='2026-03-01T00:00:59Z'"]


# --- fulfilments -------------------------------------------------------------------------------
#
# Against the simulated shop where Shopify's behaviour is the point (what a lost answer leaves
# behind, what is refused), against scripted answers where the exact request or a broken
# answer is.

SIM_GRAPHQL_URL = "https://sim-shop.myshopify.com/admin/api/2026-10/graphql.json"


@asynccontextmanager
async def on_simulator(
    sim: ShopifySimulator, clock: SimClock, handler: Handler | AsyncHandler | None = None
) -> AsyncIterator[ShopifyClient]:
    """A client talking to ``sim`` (or ``handler`` in front of it) on the simulator's clock."""
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler or sim.handle)) as http:
        yield ShopifyClient(
            http,
            graphql_url=SIM_GRAPHQL_URL,
            access_token=SecretStr(SIM_TOKEN),
            sleep=clock.sleep,
            clock=clock.monotonic,
            random=lambda: 1.0,
        )


@pytest.fixture
def sim_clock() -> SimClock:
    return SimClock()


@pytest.fixture
def sim(sim_clock: SimClock) -> ShopifySimulator:
    simulator = ShopifySimulator(now=sim_clock.now, monotonic=sim_clock.monotonic, sleep=sim_clock.sleep)
    simulator.add_product("Chair", [{"sku": "CH-1", "stock": 10}])
    simulator.add_product("Table", [{"sku": "TB-1", "stock": 3}])
    return simulator


def ship(sim: ShopifySimulator, fo: SimFulfillmentOrder, units: int, **fields: Any) -> str:
    """Fulfil ``units`` of the fulfillment order's first line in the simulator; the fulfilment id."""
    line = {"id": fo.line_items[0].id, "quantity": units}
    group = {"fulfillmentOrderId": fo.id, "fulfillmentOrderLineItems": [line]}
    result = sim.fulfillment_create({"lineItemsByFulfillmentOrder": [group], **fields})
    assert result["userErrors"] == []
    return str(result["fulfillment"].id)


@pytest.mark.anyio
async def test_order_fulfilment_reads_what_is_left_and_what_was_shipped_in_one_request(
    sim: ShopifySimulator, sim_clock: SimClock
) -> None:
    order_id = sim.create_order([("CH-1", 3), ("TB-1", 1)])
    (fo,) = sim.fulfillment_orders(order_id)
    chair, table = fo.line_items
    tracking = {"company": "DHL", "number": "JD0001", "url": "https://track.example/JD0001"}
    shipped = ship(sim, fo, 1, trackingInfo=tracking)
    cancelled = sim.sell("TB-1", 1)
    sim.cancel_order(cancelled)

    async with on_simulator(sim, sim_clock) as client:
        state = await client.order_fulfilment(order_id)
        assert client.requests == 1
        gone = await client.order_fulfilment("gid://shopify/Order/1")
        was_cancelled = await client.order_fulfilment(cancelled)

    assert state == OrderFulfilment(
        order_id=order_id,
        name=sim.orders[order_id].name,
        cancelled=False,
        fulfillment_status="PARTIALLY_FULFILLED",
        fulfillment_orders=(
            FulfillmentOrder(
                id=fo.id,
                status="IN_PROGRESS",
                location_id=sim.primary_location_id,
                lines=(
                    FulfillmentOrderLine(chair.id, chair.line_item.id, "CH-1", total=3, remaining=2),
                    FulfillmentOrderLine(table.id, table.line_item.id, "TB-1", total=1, remaining=1),
                ),
            ),
        ),
        fulfillments=(
            Fulfillment(shipped, "SUCCESS", Tracking("DHL", "JD0001", "https://track.example/JD0001")),
        ),
    )
    assert gone is None
    assert was_cancelled is not None
    assert was_cancelled.cancelled
    assert [fo.status for fo in was_cancelled.fulfillment_orders] == ["CANCELLED"]
    assert was_cancelled.fulfillments == ()


def test_tracking_is_true_when_any_part_is_set() -> None:
    assert not Tracking()
    assert Tracking(company="DHL")
    assert Tracking(number="1")
    assert Tracking(url="https://track.example/1")


@pytest.mark.anyio
async def test_order_fulfilment_pages_a_big_order(sim: ShopifySimulator, sim_clock: SimClock) -> None:
    store = sim.add_location("Store")
    parts = [{"sku": f"PART-{i}", "quantity": 30, "price": "1.00", "title": f"Part {i}"} for i in range(25)]
    order_id = sim.create_order(parts)  # type: ignore[arg-type]  # dicts shaped like OrderLineSpec

    def current() -> SimFulfillmentOrder:
        (open_fo,) = [fo for fo in sim.fulfillment_orders(order_id) if fo.fulfillable]
        return open_fo

    # a move after a partial fulfilment closes the fulfillment order and opens a new one
    for n in range(6):
        ship(sim, current(), 1)
        sim.move_fulfillment_order(order_id, store if n % 2 == 0 else sim.primary_location_id)
    for _ in range(15):
        ship(sim, current(), 1)
    assert docs.ORDER_INLINE_FULFILLMENT_ORDERS < 7
    assert docs.FULFILLMENT_ORDER_INLINE_LINE_ITEMS < 25
    assert docs.ORDER_INLINE_FULFILLMENTS <= 21

    async with on_simulator(sim, sim_clock) as client:
        state = await client.order_fulfilment(order_id)
    assert state is not None
    assert sim.requests == {
        "OrderFulfilment": 1,
        "OrderFulfillmentOrders": 1,  # the sixth and seventh fulfillment orders
        "FulfillmentOrderLineItems": 7,  # lines 21–25 of each
        "OrderFulfillments": 1,  # 21 fulfilments: more than the inline list holds
    }
    expected = sim.fulfillment_orders(order_id)
    assert [fo.id for fo in state.fulfillment_orders] == [fo.id for fo in expected]
    assert [fo.status for fo in state.fulfillment_orders] == ["CLOSED"] * 6 + ["IN_PROGRESS"]
    for got, want in zip(state.fulfillment_orders, expected, strict=True):
        assert [line.id for line in got.lines] == [line.id for line in want.line_items]
    last = state.fulfillment_orders[-1]
    assert last.location_id == sim.primary_location_id  # the sixth move went back
    assert (last.lines[0].sku, last.lines[0].total, last.lines[0].remaining) == ("PART-0", 24, 9)
    assert [f.id for f in state.fulfillments] == [f.id for f in sim.fulfillments(order_id)]


@pytest.mark.anyio
async def test_fulfillment_create_sends_the_lines_tracking_and_notify_flag(fake_time: FakeTime) -> None:
    created = {
        "id": "gid://shopify/Fulfillment/9",
        "status": "SUCCESS",
        "createdAt": "2026-11-01T10:00:00Z",
        "trackingInfo": [{"company": "DHL", "number": "JD0001", "url": None}],
    }
    script = Script()
    script.graphql = [ok({"fulfillmentCreate": {"fulfillment": created, "userErrors": []}})]
    script.graphql.append(
        ok({"fulfillmentCreate": {"fulfillment": {**created, "trackingInfo": []}, "userErrors": []}})
    )
    lines = {
        "gid://shopify/FulfillmentOrder/1": [
            ("gid://shopify/FulfillmentOrderLineItem/2", 2),
            ("gid://shopify/FulfillmentOrderLineItem/3", 1),
        ],
        "gid://shopify/FulfillmentOrder/4": [],
    }
    async with connected(script, fake_time) as client:
        made = await client.fulfillment_create(lines, tracking=Tracking("DHL", "JD0001"), notify=True)
        bare = await client.fulfillment_create(lines, tracking=Tracking(), notify=False)
    assert made == Fulfillment("gid://shopify/Fulfillment/9", "SUCCESS", Tracking("DHL", "JD0001", None))
    assert bare.tracking == Tracking()
    first, second = (body_of(r) for r in script.requests)
    assert first["operationName"] == "FulfillmentCreate"
    by_order = [
        {
            "fulfillmentOrderId": "gid://shopify/FulfillmentOrder/1",
            "fulfillmentOrderLineItems": [
                {"id": "gid://shopify/FulfillmentOrderLineItem/2", "quantity": 2},
                {"id": "gid://shopify/FulfillmentOrderLineItem/3", "quantity": 1},
            ],
        },
        {"fulfillmentOrderId": "gid://shopify/FulfillmentOrder/4"},  # all that is left on it
    ]
    assert first["variables"] == {
        "fulfillment": {
            "lineItemsByFulfillmentOrder": by_order,
            "notifyCustomer": True,
            "trackingInfo": {"company": "DHL", "number": "JD0001"},
        }
    }
    assert second["variables"] == {
        "fulfillment": {"lineItemsByFulfillmentOrder": by_order, "notifyCustomer": False}
    }


@pytest.mark.anyio
@pytest.mark.parametrize("lines", [{}, {"fo": [("line", 0)]}, {"fo": [("line", True)]}])
async def test_fulfillment_create_refuses_nonsense_before_sending(
    fake_time: FakeTime, lines: dict[str, list[tuple[str, int]]]
) -> None:
    script = Script()
    async with connected(script, fake_time) as client:
        with pytest.raises(ValueError, match=r"fulfillment order|positive"):
            await client.fulfillment_create(lines, tracking=None, notify=False)
    assert script.requests == []


@pytest.mark.anyio
@pytest.mark.parametrize(("fault", "landed"), [("truncate", 1), ("error", 0)])
async def test_a_lost_fulfillment_create_is_ambiguous_and_not_resent(
    sim: ShopifySimulator, sim_clock: SimClock, fault: str, landed: int
) -> None:
    order_id = sim.sell("CH-1", 2)
    (fo,) = sim.fulfillment_orders(order_id)
    sim.faults = Faults(truncate_rate=1.0) if fault == "truncate" else Faults(error_rate=1.0)
    async with on_simulator(sim, sim_clock) as client:
        with pytest.raises(AmbiguousWrite) as caught:
            await client.fulfillment_create({fo.id: [(fo.line_items[0].id, 2)]}, tracking=None, notify=True)
        assert client.requests == 1
        sim.faults = Faults()
        state = await client.order_fulfilment(order_id)
    assert isinstance(caught.value.error, MalformedResponse if fault == "truncate" else TransportError)
    # a cut-off answer came after the work: exactly one fulfilment, which a resend would have doubled
    assert len(sim.fulfillments(order_id)) == landed
    assert state is not None
    assert len(state.fulfillments) == landed
    assert state.fulfillment_orders[0].lines[0].remaining == 2 - 2 * landed


@pytest.mark.anyio
async def test_refused_fulfilments_raise_validation_error(sim: ShopifySimulator, sim_clock: SimClock) -> None:
    order_id = sim.sell("CH-1", 2)
    (fo,) = sim.fulfillment_orders(order_id)
    async with on_simulator(sim, sim_clock) as client:
        with pytest.raises(ValidationError, match="Invalid fulfillment order line item quantity") as caught:
            await client.fulfillment_create({fo.id: [(fo.line_items[0].id, 3)]}, tracking=None, notify=False)
        assert fo.id in str(caught.value)
        assert caught.value.fields == {
            "fulfillment": ["Invalid fulfillment order line item quantity requested."]
        }
        sim.hold_fulfillment_order(order_id)
        with pytest.raises(ValidationError, match="on_hold"):
            await client.fulfillment_create({fo.id: []}, tracking=None, notify=False)
        assert client.requests == 2  # userErrors are an answer: nothing to resend
    assert sim.fulfillments(order_id) == []
    assert sim.committed("CH-1") == 2


@pytest.mark.anyio
async def test_tracking_update_is_replay_safe(sim: ShopifySimulator, sim_clock: SimClock) -> None:
    order_id = sim.sell("CH-1", 1)
    (fo,) = sim.fulfillment_orders(order_id)
    answers = 0

    async def cut_first_tracking_answer(request: httpx.Request) -> httpx.Response:
        nonlocal answers
        response = await sim.handle(request)
        if body_of(request).get("operationName") != "FulfillmentTrackingUpdate":
            return response
        answers += 1
        if answers == 1:
            return httpx.Response(200, content=truncate_body(await response.aread()))
        return response

    tracking = Tracking("GLS", "123", "https://gls.example/123")
    async with on_simulator(sim, sim_clock, cut_first_tracking_answer) as client:
        made = await client.fulfillment_create({fo.id: []}, tracking=None, notify=False)
        assert not made.tracking
        await client.fulfillment_tracking_update(made.id, tracking, notify=True)
        assert (client.requests, client.retries) == (3, 1)
        state = await client.order_fulfilment(order_id)
        with pytest.raises(ValidationError, match="Fulfillment does not exist"):
            await client.fulfillment_tracking_update("gid://shopify/Fulfillment/1", tracking, notify=False)
    assert state is not None
    assert state.fulfillments == (Fulfillment(made.id, "SUCCESS", tracking),)
    (shipped,) = sim.fulfillments(order_id)
    assert shipped.tracking_updates == [True, True]  # the resend set the same values again


@pytest.mark.anyio
async def test_tracking_update_sends_every_part_so_unset_ones_are_cleared(fake_time: FakeTime) -> None:
    updated = {"id": "gid://shopify/Fulfillment/9", "status": "SUCCESS", "trackingInfo": []}
    script = Script()
    script.graphql = [ok({"fulfillmentTrackingInfoUpdate": {"fulfillment": updated, "userErrors": []}})]
    async with connected(script, fake_time) as client:
        await client.fulfillment_tracking_update(
            "gid://shopify/Fulfillment/9", Tracking(number="JD2"), notify=False
        )
    (request,) = script.requests
    assert body_of(request)["variables"] == {
        "fulfillmentId": "gid://shopify/Fulfillment/9",
        "trackingInfoInput": {"company": None, "number": "JD2", "url": None},
        "notifyCustomer": False,
    }


def _fulfilment_answer() -> dict[str, Any]:
    line = {"id": "fol-1", "totalQuantity": 2, "remainingQuantity": 1, "lineItem": {"id": "li-1", "sku": "A"}}
    return {
        "id": "gid://shopify/Order/1",
        "name": "#1001",
        "cancelledAt": None,
        "displayFulfillmentStatus": "PARTIALLY_FULFILLED",
        "fulfillmentOrders": {
            "pageInfo": {"hasNextPage": False, "endCursor": "c"},
            "nodes": [
                {
                    "id": "fo-1",
                    "status": "IN_PROGRESS",
                    "assignedLocation": {"location": None},
                    "lineItems": {"pageInfo": {"hasNextPage": False, "endCursor": "c"}, "nodes": [line]},
                }
            ],
        },
        "fulfillments": [
            {"id": "f-2", "status": "SUCCESS", "createdAt": "2026-11-01T10:05:00Z", "trackingInfo": []},
            {"id": "f-1", "status": "SUCCESS", "createdAt": "2026-11-01T10:00:00Z", "trackingInfo": []},
        ],
    }


def _break(path: str) -> Callable[[dict[str, Any]], None]:
    """Remove (``key``) or null (``key=None``) one part of the answer, by a dotted path."""

    def apply(order: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        target: Any = order
        for part in parents:
            target = target[int(part)] if part.isdigit() else target[part]
        del target[last]

    return apply


@pytest.mark.anyio
async def test_order_fulfilment_tolerates_a_missing_location_and_sorts_fulfilments(
    fake_time: FakeTime,
) -> None:
    script = Script()
    script.graphql = [ok({"order": _fulfilment_answer()})]
    async with connected(script, fake_time) as client:
        state = await client.order_fulfilment("gid://shopify/Order/1")
    assert state is not None
    assert state.fulfillment_orders[0].location_id is None
    assert [f.id for f in state.fulfillments] == ["f-1", "f-2"]  # oldest first


@pytest.mark.anyio
@pytest.mark.parametrize(
    "missing",
    [
        "name",
        "displayFulfillmentStatus",
        "fulfillmentOrders",
        "fulfillments",
        "fulfillmentOrders.nodes.0.status",
        "fulfillmentOrders.nodes.0.assignedLocation",
        "fulfillmentOrders.nodes.0.lineItems",
        "fulfillmentOrders.nodes.0.lineItems.nodes.0.remainingQuantity",
        "fulfillmentOrders.nodes.0.lineItems.nodes.0.lineItem",
        "fulfillments.0.trackingInfo",
        "fulfillments.1.id",
    ],
)
async def test_order_fulfilment_missing_parts_are_malformed(fake_time: FakeTime, missing: str) -> None:
    order = _fulfilment_answer()
    _break(missing)(order)
    script = Script()
    script.graphql = [ok({"order": order})]
    async with connected(script, fake_time) as client:
        with pytest.raises(MalformedResponse):
            await client.order_fulfilment("gid://shopify/Order/1")


@pytest.mark.anyio
async def test_fulfillment_create_without_a_fulfillment_is_malformed(fake_time: FakeTime) -> None:
    script = Script()
    script.graphql = [ok({"fulfillmentCreate": {"fulfillment": None, "userErrors": []}})]
    async with connected(script, fake_time) as client:
        with pytest.raises(MalformedResponse, match="fulfillment"):
            await client.fulfillment_create({"fo": []}, tracking=None, notify=False)
