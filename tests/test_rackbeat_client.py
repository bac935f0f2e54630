"""RackbeatClient against scripted HTTP answers: respx routes for the retry, throttle and
credential paths, a small scripted ``httpx.MockTransport`` for the rest.

Time is fake: ``sleep`` records the wait and moves ``clock`` forward, so every test runs in
milliseconds and can assert the exact waits the client chose. Jitter is pinned (``random``
returns 1.0), so a backoff before retry n is exactly 0.5 × 2^(n-1) seconds.
"""

from __future__ import annotations

import bisect
import json
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import anyio
import httpx
import pytest
import respx
from pydantic import SecretStr

from daemon.config import Settings
from daemon.errors import (
    AmbiguousWrite,
    AuthError,
    ConfigError,
    MalformedResponse,
    NotFoundError,
    RetriableError,
    ThrottledError,
    TransportError,
    ValidationError,
)
from daemon.rackbeat import (
    STOCK_FIELDS,
    LocationStock,
    Order,
    RackbeatClient,
    Shipment,
    ShipmentLine,
    available_at_locations,
    changed_orders_params,
    customer_body,
    number_taken,
    number_text,
    order_body,
    order_state,
    parse_timestamp,
    product_body,
    shipment_lines,
    shipment_tracking,
    step_already_done,
    updated_since_params,
)

BASE_URL = "https://rackbeat.test/api"
TOKEN = "rb_secret_token_0123456789"
#: SKUs that must survive the path, and how they look there (percent-encoded once, UTF-8)
ODD_NUMBERS = {
    "a/b": b"a%2Fb",
    "a b": b"a%20b",
    "a+b": b"a%2Bb",
    "æøå": b"%C3%A6%C3%B8%C3%A5",
    "x%2Fy": b"x%252Fy",
}

Handler = Callable[[httpx.Request], httpx.Response]
Answer = httpx.Response | Handler


class FakeTime:
    """A monotonic clock that only moves when the client sleeps."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


class Script:
    """Answers requests from a queue (a response, or a function of the request) and records them.

    When the queue is empty, ``default`` answers.
    """

    def __init__(self, *answers: Answer, default: Answer | None = None) -> None:
        self.answers: list[Answer] = list(answers)
        self.default = default
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answers.pop(0) if self.answers else self.default
        if answer is None:
            raise AssertionError(f"unexpected request {request.method} {request.url}")
        return answer(request) if callable(answer) else answer

    @property
    def raw_paths(self) -> list[bytes]:
        return [r.url.raw_path.split(b"?")[0] for r in self.requests]


def ok(payload: object, status: int = 200, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(status, json=payload, headers=headers)


def page(key: str, items: list[dict[str, Any]], number: int, pages: int, limit: int = 100) -> httpx.Response:
    status = 206 if number < pages else 200
    return ok({key: items, "total": len(items), "pages": pages, "limit": limit, "page": number}, status)


def products(*numbers: str) -> list[dict[str, Any]]:
    return [{"number": n, "name": f"P {n}", "stock_quantity": 1} for n in numbers]


def make_client(
    script: Script, time: FakeTime, *, rpm: int = 10_000, **kwargs: Any
) -> tuple[RackbeatClient, httpx.AsyncClient]:
    """A client on ``script`` with ``time``'s seams; ``kwargs`` (``sleep`` too) override."""
    http = httpx.AsyncClient(transport=httpx.MockTransport(script))
    seams: dict[str, Any] = {"sleep": time.sleep, "clock": time.clock, "random": lambda: 1.0}
    client = RackbeatClient(
        http,
        base_url=BASE_URL,
        token=SecretStr(TOKEN),
        contact_name="acme-sync",
        contact_email="ops@acme.example",
        requests_per_minute=rpm,
        **(seams | kwargs),
    )
    return client, http


@pytest.fixture
def time() -> FakeTime:
    return FakeTime()


# --- headers and settings ------------------------------------------------------------------------


@pytest.mark.anyio
async def test_every_request_carries_token_contact_and_version_headers(time: FakeTime) -> None:
    script = Script(ok({"product": {"number": "A"}}))
    client, http = make_client(script, time)
    async with http:
        await client.get_product("A")
    headers = script.requests[0].headers
    assert headers["authorization"] == f"Bearer {TOKEN}"
    assert headers["accept"] == "application/json"
    assert headers["content-type"] == "application/json"
    assert headers["user-agent"] == "acme-sync (ops@acme.example)"
    assert headers["consumer-name"] == "acme-sync"
    assert headers["consumer-contact"] == "ops@acme.example"
    assert headers["api-version"] == "latest"
    assert TOKEN not in repr(client)


@pytest.mark.anyio
async def test_from_settings_uses_the_rackbeat_settings(time: FakeTime) -> None:
    settings = Settings(
        rackbeat_api_token=SecretStr(TOKEN),
        rackbeat_api_url="https://rb.example/api/",
        rackbeat_contact_name="shop-x",
        rackbeat_contact_email="it@shop.example",
        rackbeat_requests_per_minute=2,
        shopify_shop="shop-x.myshopify.com",
        shopify_access_token=SecretStr("shpat_x"),
        sync_orders=False,
        _env_file=None,
    )
    script = Script(default=ok({"product": {"number": "A"}}))
    async with httpx.AsyncClient(transport=httpx.MockTransport(script)) as http:
        client = RackbeatClient.from_settings(settings, http, sleep=time.sleep, clock=time.clock)
        for _ in range(3):
            await client.get_product("A")
    request = script.requests[0]
    assert str(request.url) == "https://rb.example/api/products/A"
    assert request.headers["consumer-contact"] == "it@shop.example"
    assert request.headers["user-agent"] == "shop-x (it@shop.example)"
    assert time.sleeps == [60.0]  # 2 per minute: the third request waits until the first is a minute old


def test_contact_headers_must_be_ascii() -> None:
    with pytest.raises(ConfigError, match="RACKBEAT_CONTACT_NAME"):
        RackbeatClient(httpx.AsyncClient(), base_url=BASE_URL, token=SecretStr(TOKEN), contact_name="Søren")


# --- pagination --------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_pages_206_then_200_stop_at_pages(time: FakeTime) -> None:
    script = Script(
        page("products", products("1", "2"), 1, 3),
        page("products", products("3", "4"), 2, 3),
        page("products", products("5"), 3, 3),
    )
    client, http = make_client(script, time)
    seen: list[str] = []
    async with http:
        async for batch in client.products():
            seen.extend(p.number for p in batch)
    assert seen == ["1", "2", "3", "4", "5"]
    queries = [dict(r.url.params) for r in script.requests]
    assert queries == [{"page": str(n), "limit": "100"} for n in (1, 2, 3)]


@pytest.mark.anyio
async def test_pages_follow_a_smaller_echoed_limit(time: FakeTime) -> None:
    script = Script(
        page("products", products("1"), 1, 2, limit=1),
        page("products", products("2"), 2, 2, limit=1),
    )
    client, http = make_client(script, time)
    async with http:
        seen = [p.number async for batch in client.products() for p in batch]
    assert seen == ["1", "2"]
    assert client.echoed_limit == 1


@pytest.mark.anyio
async def test_without_pages_a_short_page_is_the_last(time: FakeTime) -> None:
    script = Script(
        ok({"products": products(*map(str, range(100))), "limit": 100}),
        ok({"products": products("x"), "limit": 100}),
    )
    client, http = make_client(script, time)
    async with http:
        seen = [p.number async for batch in client.products() for p in batch]
    assert len(seen) == 101
    assert len(script.requests) == 2


@pytest.mark.anyio
async def test_stock_scan_asks_for_narrow_fields(time: FakeTime) -> None:
    row = {
        "number": 42,
        "stock_quantity": "7.5",
        "available_quantity": 5,
        "in_order_quantity": 2.5,
        "is_barred": False,
        "updated_at": "2026-11-01 10:00:00",
    }
    script = Script(page("products", [row, {"number": "N", "stock_quantity": None}], 1, 1))
    client, http = make_client(script, time)
    async with http:
        totals = [t async for batch in client.stock_totals() for t in batch]
    assert script.requests[0].url.params["fields"] == ",".join(STOCK_FIELDS)
    assert totals[0].number == "42"
    assert totals[0].stock_quantity == Decimal("7.5")
    assert totals[0].in_order_quantity == Decimal("2.5")
    assert totals[0].updated_at == datetime(2026, 11, 1, 10, tzinfo=UTC)
    assert totals[1].stock_quantity is None  # unknown, not zero


@pytest.mark.anyio
async def test_products_updated_since_and_fields(time: FakeTime) -> None:
    script = Script(page("products", [], 1, 1))
    client, http = make_client(script, time)
    since = datetime(2026, 11, 1, 12, 0, tzinfo=timezone(timedelta(hours=1)))
    async with http:
        async for _ in client.products(fields=["name", "barcode"], updated_since=since):
            pass
    params = script.requests[0].url.params
    assert params["fields"] == "number,name,barcode"
    assert params["updated_at_from"] == "2026-11-01 11:00:00"
    assert updated_since_params(since) == {"updated_at_from": "2026-11-01 11:00:00"}


@pytest.mark.anyio
async def test_missing_envelope_is_malformed(time: FakeTime) -> None:
    script = Script(ok({"items": []}))
    client, http = make_client(script, time)
    async with http:
        with pytest.raises(MalformedResponse, match="'locations'"):
            await client.locations()


# --- throttling, failures and credentials (respx) ------------------------------------------------
#
# These mock Rackbeat with respx routes: each route answers its side effects in order, and
# ``route.calls`` shows what the client sent. The clock and sleep stay fake.


@pytest.fixture
def api() -> Iterator[respx.MockRouter]:
    with respx.mock(base_url=BASE_URL, assert_all_called=True) as router:
        yield router


def respx_client(time: FakeTime, **kwargs: Any) -> tuple[RackbeatClient, httpx.AsyncClient]:
    """A client on a plain ``httpx.AsyncClient``: respx intercepts its requests."""
    http = httpx.AsyncClient()
    client = RackbeatClient(
        http,
        base_url=BASE_URL,
        token=SecretStr(TOKEN),
        contact_name="acme-sync",
        contact_email="ops@acme.example",
        requests_per_minute=10_000,
        sleep=time.sleep,
        clock=time.clock,
        random=lambda: 1.0,
        **kwargs,
    )
    return client, http


def too_many(retry_after: str | None = None) -> httpx.Response:
    headers = {"Retry-After": retry_after} if retry_after is not None else None
    return httpx.Response(429, json={"message": "Too Many Attempts."}, headers=headers)


PRODUCT_A = {"product": {"number": "A"}}


@pytest.mark.anyio
async def test_429_with_retry_after_waits_exactly_that(api: respx.MockRouter, time: FakeTime) -> None:
    route = api.get("/products/A").mock(side_effect=[too_many("7"), httpx.Response(200, json=PRODUCT_A)])
    client, http = respx_client(time)
    async with http:
        product = await client.get_product("A")
    assert product is not None
    assert time.sleeps == [7.0]
    assert route.call_count == 2
    assert (client.requests, client.throttled, client.retries) == (2, 1, 0)


@pytest.mark.anyio
async def test_throttle_pause_holds_every_caller(api: respx.MockRouter, time: FakeTime) -> None:
    """A 429 seen by one task delays the next request of another task too."""
    api.get("/products/A").mock(return_value=too_many("600"))
    api.get("/products/B").mock(return_value=httpx.Response(200, json={"product": {"number": "B"}}))
    client, http = respx_client(time)
    async with http:
        with pytest.raises(ThrottledError) as info:
            await client.get_product("A")
        assert info.value.retry_after == 600.0
        assert time.sleeps == []  # too long to sleep inside one call: the runner backs off
        await client.get_product("B")
    assert time.sleeps == [600.0]


def html_503() -> httpx.Response:
    return httpx.Response(503, text="<html>503</html>", headers={"content-type": "text/html"})


def truncated() -> httpx.Response:
    return httpx.Response(
        200, content=b'{"product": {"number": "A", "na', headers={"content-type": "application/json"}
    )


def read_timeout() -> Exception:
    return httpx.ReadTimeout("slow")


def refused() -> Exception:
    return httpx.ConnectError("refused")


FAILURES: dict[str, Callable[[], httpx.Response | Exception]] = {
    "503": html_503,
    "timeout": read_timeout,
    "refused": refused,
    "truncated": truncated,
}


@pytest.mark.anyio
async def test_failures_wait_through_backoff_sleep_and_429s_through_the_budget(
    api: respx.MockRouter, time: FakeTime
) -> None:
    backoffs: list[float] = []

    async def backoff_sleep(seconds: float) -> None:
        backoffs.append(seconds)

    api.get("/products/A").mock(side_effect=[html_503(), too_many("3"), httpx.Response(200, json=PRODUCT_A)])
    client, http = respx_client(time, backoff_sleep=backoff_sleep)
    async with http:
        await client.get_product("A")
    assert backoffs == [0.5]  # the daemon's marks the flow as retrying and ends on stop
    assert time.sleeps == [3.0]
    assert client.wait_seconds == 3.0


@pytest.mark.anyio
@pytest.mark.parametrize("failure", FAILURES.values(), ids=FAILURES.keys())
async def test_passing_failures_are_retried_with_backoff(
    api: respx.MockRouter, time: FakeTime, failure: Callable[[], httpx.Response | Exception]
) -> None:
    route = api.get("/products/A").mock(
        side_effect=[failure(), failure(), httpx.Response(200, json=PRODUCT_A)]
    )
    client, http = respx_client(time)
    async with http:
        product = await client.get_product("A")
    assert product is not None
    assert product.number == "A"
    assert time.sleeps == [0.5, 1.0]
    assert route.call_count == 3
    assert (client.requests, client.retries) == (3, 2)


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("failure", "error"),
    [(html_503, TransportError), (read_timeout, TransportError), (truncated, MalformedResponse)],
    ids=["503", "timeout", "truncated"],
)
async def test_failures_that_do_not_pass_are_raised_as_their_kind(
    api: respx.MockRouter,
    time: FakeTime,
    failure: Callable[[], httpx.Response | Exception],
    error: type[RetriableError],
) -> None:
    route = api.get("/products/A").mock(side_effect=lambda request: _raise_or_return(failure()))
    client, http = respx_client(time, max_attempts=2)
    async with http:
        with pytest.raises(error) as info:
            await client.get_product("A")
    assert isinstance(info.value, RetriableError)
    assert route.call_count == 2


WRITES: dict[str, tuple[str, Callable[[RackbeatClient], Awaitable[object]]]] = {
    "customer": ("/customers", lambda c: c.create_customer(customer_body(name="Anna", email="a@x.se"))),
    "product": ("/products", lambda c: c.create_product(product_body(number="A", name="A"))),
    "book": ("/orders/7/book", lambda c: c.book_order("7")),
    "shipment": ("/orders/7/create-shipment", lambda c: c.create_shipment("7")),
}


@pytest.mark.anyio
@pytest.mark.parametrize("write", WRITES.values(), ids=WRITES.keys())
@pytest.mark.parametrize("failure", [read_timeout, truncated], ids=["timeout", "truncated"])
async def test_writes_that_must_not_repeat_are_sent_once_and_reported_ambiguous(
    api: respx.MockRouter,
    time: FakeTime,
    write: tuple[str, Callable[[RackbeatClient], Awaitable[object]]],
    failure: Callable[[], httpx.Response | Exception],
) -> None:
    path, call = write
    route = api.post(path).mock(side_effect=lambda request: _raise_or_return(failure()))
    client, http = respx_client(time)
    async with http:
        with pytest.raises(AmbiguousWrite):
            await call(client)
    assert route.call_count == 1
    assert time.sleeps == []


def _raise_or_return(outcome: httpx.Response | Exception) -> httpx.Response:
    if isinstance(outcome, Exception):
        raise outcome
    return outcome


@pytest.mark.anyio
async def test_draft_is_not_resent_after_an_ambiguous_failure(api: respx.MockRouter, time: FakeTime) -> None:
    route = api.post("/orders/drafts").mock(side_effect=[html_503()])
    client, http = respx_client(time)
    body = order_body(customer="1001", lines=[{"item_id": "A", "quantity": 1}])
    async with http:
        with pytest.raises(AmbiguousWrite) as info:
            await client.create_draft_order(body)
        assert isinstance(info.value.error, TransportError)
        assert route.call_count == 1
        # a request that never arrived is safe to send again
        route.side_effect = [refused(), httpx.Response(201, json={"order": {"number": 1}})]
        order = await client.create_draft_order(body)
    assert order.number == "1"
    assert route.call_count == 3
    assert json.loads(route.calls.last.request.content)["customer_id"] == "1001"


@pytest.mark.anyio
@pytest.mark.parametrize("status", [401, 403])
async def test_auth_errors_name_the_variable_not_the_token(
    api: respx.MockRouter, time: FakeTime, status: int
) -> None:
    route = api.get("/locations").mock(
        return_value=httpx.Response(status, json={"message": f"Unauthenticated {TOKEN}"})
    )
    client, http = respx_client(time)
    async with http:
        with pytest.raises(AuthError) as info:
            await client.locations()
    assert "RACKBEAT_API_TOKEN" in str(info.value)
    assert TOKEN not in str(info.value)
    assert route.call_count == 1  # a refused key is not retried
    assert route.calls.last.request.headers["authorization"] == f"Bearer {TOKEN}"


@pytest.mark.anyio
async def test_422_is_a_validation_error_with_field_messages(time: FakeTime) -> None:
    errors = {"customer_id": ["The selected Customer is invalid."], "lines.0.item_id": ["Product needed"]}
    script = Script(ok({"message": "The given data was invalid.", "errors": errors}, 422))
    client, http = make_client(script, time)
    async with http:
        with pytest.raises(ValidationError) as info:
            await client.create_draft_order(order_body(customer="9", lines=[{"item_id": "X", "quantity": 1}]))
    assert info.value.fields == errors
    assert "Product needed" in str(info.value)
    assert info.value.reason == "REJECTED"


@pytest.mark.anyio
async def test_404_means_none_not_found_or_a_wrong_base_url(time: FakeTime) -> None:
    missing = ok({"message": "Not found"}, 404)
    script = Script(default=missing)
    client, http = make_client(script, time)
    async with http:
        assert await client.get_product("nope") is None
        with pytest.raises(NotFoundError):
            await client.get_order("nope")
        with pytest.raises(NotFoundError):
            await client.product_locations("nope")
        with pytest.raises(ConfigError, match="RACKBEAT_API_URL"):
            await client.locations()


# --- URL encoding ----------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize(("number", "encoded"), ODD_NUMBERS.items())
async def test_path_numbers_are_encoded_exactly_once(time: FakeTime, number: str, encoded: bytes) -> None:
    script = Script(
        ok({"product": {"number": number}}),
        page("product_locations", [], 1, 1),
        page("locations", [], 1, 1),
        ok({"order": {"number": number}}, 200),
    )
    client, http = make_client(script, time)
    async with http:
        product = await client.get_product(number)
        await client.product_locations(number)
        await client.available_per_location(number)
        await client.book_order(number, send_mail=True)
    assert script.raw_paths == [
        b"/api/products/" + encoded,
        b"/api/products/" + encoded + b"/locations",
        b"/api/items/" + encoded + b"/locations/available",
        b"/api/orders/" + encoded + b"/book",
    ]
    assert product is not None
    assert product.number == number
    assert json.loads(script.requests[3].content) == {"mail": {"send": True}}


# --- budget --------------------------------------------------------------------------------------


def most_in_one_minute(sends: list[float]) -> int:
    """The most sends inside one 60-second window ``[t, t + 60)``, trying every window that
    starts at a send (the fullest window always does)."""
    times = sorted(sends)
    return max(bisect.bisect_left(times, t + 60.0) - i for i, t in enumerate(times))


def stamping(time: FakeTime, sends: list[float]) -> Handler:
    """An answer that records when each request reached the server."""

    def answer(request: httpx.Request) -> httpx.Response:
        sends.append(time.now)
        return ok({"product": {"number": "A"}})

    return answer


#: seconds a caller spends on its own work before its request ``i``: none, or a little
#: before every third and a quiet spell after every 40 (long enough for a token bucket to
#: refill, which then let 157 through in one minute)
IDLE_PATTERNS: dict[str, Callable[[int], float]] = {
    "back to back": lambda i: 0.0,
    "with quiet spells": lambda i: 70.0 if i % 40 == 39 else 0.2 if i % 3 == 0 else 0.0,
}


@pytest.mark.anyio
@pytest.mark.parametrize("idle", IDLE_PATTERNS.values(), ids=IDLE_PATTERNS.keys())
async def test_no_60_second_window_holds_more_than_the_budget(
    time: FakeTime, idle: Callable[[int], float]
) -> None:
    """400 requests at 120 a minute, from four concurrent callers: every 60 s window
    starting at a send holds at most 120 of them (a token bucket let 239 through)."""
    sends: list[float] = []
    client, http = make_client(Script(default=stamping(time, sends)), time, rpm=120)

    async def caller(count: int) -> None:
        for i in range(count):
            time.now += idle(i)  # the caller's own work, not a budget wait
            await client.get_product("A")

    async with http, anyio.create_task_group() as tg:
        for _ in range(4):
            tg.start_soon(caller, 100)
    assert len(sends) == client.requests == 400
    assert most_in_one_minute(sends) <= 120
    # and the budget is used, not wasted: back to back, 120 go in each of the first minutes
    if idle is IDLE_PATTERNS["back to back"]:
        assert most_in_one_minute(sends) == 120
        assert time.now - 1000.0 == pytest.approx(180.0)


@pytest.mark.anyio
async def test_a_quiet_client_sends_a_full_minute_at_once_then_waits_for_the_oldest_to_leave(
    time: FakeTime,
) -> None:
    sends: list[float] = []
    client, http = make_client(Script(default=stamping(time, sends)), time, rpm=120)
    async with http:
        await client.get_product("A")  # at 1000
        time.now += 10.0
        for _ in range(119):  # at 1010: the window still has room for all of them
            await client.get_product("A")
        assert time.sleeps == []
        assert client.wait_seconds == 0.0
        await client.get_product("A")  # the one sent at 1000 leaves the window at 1060
        assert time.sleeps == [50.0]
        await client.get_product("A")  # the next leaves at 1070 (119 were sent at 1010)
        assert time.sleeps == [50.0, 10.0]
        for _ in range(118):  # the other 118 sent at 1010 left at 1070 too
            await client.get_product("A")
    assert time.sleeps == [50.0, 10.0]
    assert client.wait_seconds == 60.0
    assert sends == [1000.0] + [1010.0] * 119 + [1060.0] + [1070.0] * 119


@pytest.mark.anyio
async def test_budget_trusts_its_waits_when_the_clock_does_not_move(time: FakeTime) -> None:
    """A clock that never moves must not turn the wait into a loop: each wait is taken as done."""
    waits: list[float] = []

    async def sleep_without_time(seconds: float) -> None:
        waits.append(seconds)

    script = Script(default=ok({"product": {"number": "A"}}))
    client, http = make_client(script, time, rpm=2, sleep=sleep_without_time)
    async with http:
        for _ in range(6):
            await client.get_product("A")
    # two at 1000, two at 1060 (after a wait of 60), two at 1120 (a wait of 120 from 1000)
    assert waits == [60.0, 60.0, 120.0, 120.0]
    assert client.wait_seconds == 360.0
    assert len(script.requests) == 6


@pytest.mark.anyio
async def test_a_throttle_pause_holds_concurrent_callers_though_the_window_has_room(
    time: FakeTime,
) -> None:
    """One caller's 429 (Retry-After 5) holds the others' requests too, while the budget
    would let them through at once."""
    released = anyio.Event()

    async def gated_sleep(seconds: float) -> None:
        time.sleeps.append(seconds)
        await released.wait()
        time.now += seconds

    sends: list[tuple[str, float]] = []

    def answer(request: httpx.Request) -> httpx.Response:
        number = request.url.path.rsplit("/", 1)[-1]
        sends.append((number, time.now))
        if len(sends) == 1:
            return too_many("5")
        return ok({"product": {"number": number}})

    client, http = make_client(Script(default=answer), time, rpm=120, sleep=gated_sleep)
    async with http, anyio.create_task_group() as tg:
        tg.start_soon(client.get_product, "A")
        await anyio.wait_all_tasks_blocked()  # A was throttled and is waiting out the pause
        tg.start_soon(client.get_product, "B")
        tg.start_soon(client.get_product, "C")
        await anyio.wait_all_tasks_blocked()
        assert sends == [("A", 1000.0)]  # B and C are held, not sent
        released.set()
    assert sorted(sends) == [("A", 1000.0), ("A", 1005.0), ("B", 1005.0), ("C", 1005.0)]
    assert time.sleeps == [5.0]
    assert client.throttled == 1


@pytest.mark.anyio
async def test_budget_is_shared_by_concurrent_callers(time: FakeTime) -> None:
    script = Script(default=ok({"product": {"number": "A"}}))
    client, http = make_client(script, time, rpm=5)
    start = time.now
    async with http, anyio.create_task_group() as tg:
        for _ in range(10):
            tg.start_soon(client.get_product, "A")
    assert len(script.requests) == 10
    assert time.now - start == pytest.approx(60.0)


# --- searches -----------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_customer_email_match_is_exact_and_case_insensitive(time: FakeTime) -> None:
    near = [
        {"number": 1, "name": "Hanna", "contact_email": "hanna@x.se"},
        {"number": 2, "name": "Anna", "contact_email": "anna@x.se.example"},
        {"number": 3, "name": "Anna B", "contact_email": None},
    ]
    exact = {"number": 4, "name": "Anna", "contact_email": " ANNA@X.SE "}
    script = Script(
        page("customers", near, 1, 2), page("customers", [exact], 2, 2), page("customers", near, 1, 1)
    )
    client, http = make_client(script, time)
    async with http:
        found = await client.find_customer_by_email("anna@x.se")
        assert found is not None
        assert found.number == "4"
        assert await client.find_customer_by_email("anna@x.se") is None  # only near matches
    assert script.requests[0].url.params["search"] == "anna@x.se"


@pytest.mark.anyio
async def test_order_search_by_reference_is_exact(time: FakeTime) -> None:
    rows: list[dict[str, Any]] = [
        {"number": 1, "your_reference": "#10420"},
        {"number": 2, "your_reference": "#1042-1"},
        {"number": 3, "your_reference": None},
        {"number": "1042", "your_reference": "#1042", "is_booked": True},
    ]
    script = Script(page("orders", rows, 1, 1), page("orders", rows[:3], 1, 1))
    client, http = make_client(script, time)
    async with http:
        [found] = await client.orders_by_reference("#1042")
        assert (found.number, found.state) == ("1042", "booked")
        assert await client.orders_by_reference("#1042") == []
    assert script.requests[0].url.params["search"] == "#1042"


# --- pure functions ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-01T11:00:00+01:00", datetime(2026, 11, 1, 10, tzinfo=UTC)),
        ("2026-11-01T10:00:00Z", datetime(2026, 11, 1, 10, tzinfo=UTC)),
        ("2026-11-01T10:00:00.000000Z", datetime(2026, 11, 1, 10, tzinfo=UTC)),
        ("2026-11-01 10:00:00", datetime(2026, 11, 1, 10, tzinfo=UTC)),
    ],
)
def test_timestamps_in_both_forms(text: str, expected: datetime) -> None:
    assert parse_timestamp(text) == expected


def test_bad_timestamp_is_malformed() -> None:
    with pytest.raises(MalformedResponse):
        parse_timestamp("yesterday")


@pytest.mark.parametrize(
    ("value", "expected"), [(1001, "1001"), (1001.0, "1001"), (" 1001 ", "1001"), ("A/1", "A/1")]
)
def test_numbers_are_opaque_strings(value: object, expected: str) -> None:
    assert number_text(value) == expected


@pytest.mark.parametrize("value", [None, True, "", 1.5, {"n": 1}])
def test_non_numbers_are_malformed(value: object) -> None:
    with pytest.raises(MalformedResponse):
        number_text(value)


def test_order_body_shape() -> None:
    body = order_body(
        customer="1001",
        currency="SEK",
        number="1042",
        payment_terms="3",
        employee="2",
        your_reference="#1042",
        heading="Shopify #1042",
        delivery_address={
            "name": "A",
            "street": "Gata 1",
            "street2": "",
            "zipcode": "111 22",
            "city": "Sthlm",
            "country": "SE",
        },
        lines=[{"item_id": "SKU-1", "quantity": 2, "name": "Blue mug", "line_price": Decimal("79.2000")}],
    )
    assert body == {
        "customer_id": "1001",
        "currency": "SEK",
        "number": "1042",
        "payment_terms_id": "3",
        "our_reference": "2",
        "your_reference": "#1042",
        "heading": "Shopify #1042",
        "delivery_address": {
            "name": "A",
            "street": "Gata 1",
            "street2": "",
            "zipcode": "111 22",
            "city": "Sthlm",
            "country": "SE",
        },
        "lines": [
            {
                "item_id": "SKU-1",
                "quantity": 2,
                "name": "Blue mug",
                "line_price": 79.2,
                "discount_percentage": 0,
            }
        ],
    }
    json.dumps(body)  # JSON-safe: no Decimal left
    minimal = order_body(customer="1", lines=[{"item_id": "A", "quantity": 1}])
    assert minimal == {
        "customer_id": "1",
        "lines": [{"item_id": "A", "quantity": 1, "discount_percentage": 0}],
    }
    with pytest.raises(ValueError, match="line 0"):
        order_body(customer="1", lines=[{"quantity": 1}])


def test_customer_and_product_bodies() -> None:
    assert customer_body(
        name="Anna", email="a@x.se", group="1", vat_zone="eu", currency="EUR", payment_terms="3"
    ) == {
        "name": "Anna",
        "contact_email": "a@x.se",
        "customer_group_id": "1",
        "vat_zone": "eu",
        "currency": "EUR",
        "payment_terms_id": "3",
    }
    assert product_body(
        number="A/1", name="Mug", sales_price=Decimal("99.50"), group="2", weight=Decimal("0.4")
    ) == {
        "number": "A/1",
        "name": "Mug",
        "sales_price": 99.5,
        "group_id": "2",
        "physical": {"weight": 0.4},
    }
    assert product_body(is_barred=True) == {"is_barred": True}


@pytest.mark.parametrize(
    ("flags", "state"),
    [
        ({}, "draft"),
        ({"is_booked": True}, "booked"),
        ({"is_booked": True, "is_ready_for_shipping": True}, "ready_to_ship"),
        ({"is_booked": True, "is_ready_for_shipping": True, "is_shipped": True}, "shipped"),
        ({"is_booked": True, "is_cancelled": True}, "cancelled"),
        ({"is_booked": "1"}, "booked"),
    ],
)
def test_order_state_from_flags(flags: dict[str, Any], state: str) -> None:
    assert order_state(Order.from_json({"number": 1, **flags})) == state


@pytest.mark.parametrize(
    ("flags", "booked", "shipment"),
    [
        ({}, False, False),
        ({"is_booked": True}, True, False),
        ({"is_booked": True, "is_ready_for_shipping": True}, True, True),
        ({"is_booked": True, "is_shipped": True}, True, True),
        ({"is_booked": True, "is_cancelled": True}, False, False),
    ],
)
def test_a_refused_step_counts_as_done_only_when_the_order_shows_it(
    flags: dict[str, Any], booked: bool, shipment: bool
) -> None:
    order = Order.from_json({"number": 1, **flags})
    assert step_already_done("book", order) is booked
    assert step_already_done("create-shipment", order) is shipment


def test_number_taken_reads_the_number_field_of_a_422() -> None:
    assert number_taken({"number": ["The number has already been taken."]}) == [
        "The number has already been taken."
    ]
    assert number_taken({"lines.0.item_id": ["Product needed"]}) is None
    assert number_taken({}) is None


def test_available_per_location_from_the_listing_or_none_when_it_lacks_the_figure() -> None:
    listed = {
        "1": LocationStock("1", Decimal(5), Decimal(2), Decimal(3)),
        "2": LocationStock("2", Decimal(4), Decimal(0), Decimal(4)),
    }
    assert available_at_locations(listed, ["1", "2", "9"]) == [Decimal(3), Decimal(4), Decimal(0)]
    bare = {"1": LocationStock.from_json({"number": "1", "stock_quantity": 5})}
    assert bare["1"].available_quantity is None
    assert available_at_locations(bare, ["1"]) is None
    assert available_at_locations(bare, ["2"]) == [Decimal(0)]


@pytest.mark.anyio
async def test_the_stock_scan_tells_how_many_products_to_expect_from_its_first_page(time: FakeTime) -> None:
    rows = [{"number": str(n), "stock_quantity": 1, "available_quantity": 1} for n in range(3)]
    script = Script(
        page("products", rows[:2], 1, 2, limit=2),
        page("products", rows[2:], 2, 2, limit=2),
    )
    client, http = make_client(script, time)
    expected: list[int] = []
    async with http:
        seen = [t.number async for batch in client.stock_totals(on_total=expected.append) for t in batch]
    assert seen == ["0", "1", "2"]
    assert expected == [4]  # told once: 2 pages of 2 (the last page may be short)


# --- shipped orders, shipments and deleting drafts (issue 13) -------------------------------------


def test_changed_orders_params_name_only_the_time_in_utc() -> None:
    since = datetime(2026, 11, 1, 12, 0, 30, 999_000, tzinfo=timezone(timedelta(hours=1)))
    assert changed_orders_params(since) == {"updated_at_from": "2026-11-01 11:00:30"}
    with pytest.raises(ValueError, match="timezone-aware"):
        changed_orders_params(datetime(2026, 11, 1))  # noqa: DTZ001  # naive on purpose


def test_an_order_reads_is_partly_shipped_as_a_flag_not_a_state() -> None:
    partly = Order.from_json({"number": 7, "is_booked": True, "is_partly_shipped": "1"})
    assert (partly.is_partly_shipped, partly.state) == (True, "booked")
    assert Order.from_json({"number": 7, "is_booked": True}).is_partly_shipped is False


@pytest.mark.anyio
async def test_changed_orders_ask_with_the_time_alone_and_read_every_page(time: FakeTime) -> None:
    since = datetime(2026, 11, 1, 10, 0, 0, 500_000, tzinfo=UTC)
    script = Script(
        page("orders", [{"number": 1, "is_shipped": True, "updated_at": "2026-11-01 10:00:00"}], 1, 2),
        page(
            "orders",
            [{"number": "2", "is_partly_shipped": True, "updated_at": "2026-11-01T12:00:00+01:00"}],
            2,
            2,
        ),
    )
    client, http = make_client(script, time)
    async with http:
        pages = [
            [(o.number, o.is_shipped, o.is_partly_shipped) for o in batch]
            async for batch in client.changed_orders(since)
        ]
    assert pages == [[("1", True, False)], [("2", False, True)]]
    queries = [dict(r.url.params) for r in script.requests]
    assert queries == [
        {"updated_at_from": "2026-11-01 10:00:00", "page": "1", "limit": "100"},
        {"updated_at_from": "2026-11-01 10:00:00", "page": "2", "limit": "100"},
    ]


@pytest.mark.anyio
async def test_changed_orders_pass_on_what_rackbeat_lists_for_the_caller_to_check(time: FakeTime) -> None:
    # a server ignoring the filter: the orders come as listed, and the fulfilments flow
    # (which reads them) sees that the filter did not hold
    everything: list[dict[str, Any]] = [
        {"number": 1, "is_booked": True, "updated_at": "2026-11-01 11:00:00"},
        {"number": 2, "is_shipped": True, "updated_at": "2026-11-01 09:59:59"},
    ]
    script = Script(default=page("orders", everything, 1, 1))
    client, http = make_client(script, time)
    async with http:
        listed = [
            (o.number, o.is_shipped)
            async for batch in client.changed_orders(datetime(2026, 11, 1, 10, tzinfo=UTC))
            for o in batch
        ]
    assert listed == [("1", False), ("2", True)]


SHIPMENT_FULL = {
    "id": 41,
    "is_picked": True,
    "is_partly_picked": False,
    "is_shipped": True,
    "created_at": "2026-11-01 10:00:00",
    "updated_at": "2026-11-01T12:30:00+01:00",
    "lines": [{"item_id": "MUG/1", "quantity": 2}, {"item_id": 1001, "quantity": "1.0"}],
    "carrier": " PostNord ",
    "track_trace_number": "PN123",
    "track_trace_url": "https://tracking.example/PN123",
}
SHIPMENT_BARE = {"id": "42", "is_shipped": False, "updated_at": None}


@pytest.mark.anyio
async def test_order_shipments_are_read_from_every_page_with_and_without_lines(time: FakeTime) -> None:
    script = Script(
        page("order_shipments", [SHIPMENT_FULL], 1, 2),
        page(
            "order_shipments",
            [SHIPMENT_BARE, {"id": 43, "is_shipped": "1", "lines": [], "carrier": ""}],
            2,
            2,
        ),
    )
    client, http = make_client(script, time)
    async with http:
        full, bare, empty = await client.order_shipments("a/b")
    assert script.raw_paths == [b"/api/orders/a%2Fb/shipments"] * 2
    assert full == Shipment(
        id="41",
        is_shipped=True,
        lines=(ShipmentLine("MUG/1", 2), ShipmentLine("1001", 1)),
        carrier="PostNord",
        tracking_number="PN123",
        tracking_url="https://tracking.example/PN123",
        updated_at=datetime(2026, 11, 1, 11, 30, tzinfo=UTC),
    )
    assert bare == Shipment(
        id="42",
        is_shipped=False,
        lines=None,
        carrier=None,
        tracking_number=None,
        tracking_url=None,
        updated_at=None,
    )
    assert (empty.is_shipped, empty.lines, empty.carrier) == (True, None, None)  # empty: not said
    assert shipment_tracking({"carrier": {"name": "GLS"}, "track_trace_number": 123}) == ("GLS", "123", None)
    assert shipment_lines({"lines": [{"item_id": "A", "quantity": 0}]}) == (ShipmentLine("A", 0),)


@pytest.mark.parametrize(
    "shipment",
    [
        {"is_shipped": True},  # no id
        {"id": 1, "lines": {"item_id": "A", "quantity": 1}},  # not a list
        {"id": 1, "lines": ["A"]},
        {"id": 1, "lines": [{"quantity": 1}]},  # no item
        {"id": 1, "lines": [{"item_id": "A"}]},  # no quantity
        {"id": 1, "lines": [{"item_id": "A", "quantity": "two"}]},
        {"id": 1, "lines": [{"item_id": "A", "quantity": 1.5}]},  # Shopify fulfils whole units
        {"id": 1, "lines": [{"item_id": "A", "quantity": -1}]},
        {"id": 1, "track_trace_number": ["PN1"]},
        {"id": 1, "carrier": True},
        {"id": 1, "updated_at": "yesterday"},
    ],
)
@pytest.mark.anyio
async def test_a_malformed_shipment_is_malformed_response(time: FakeTime, shipment: dict[str, Any]) -> None:
    script = Script(page("order_shipments", [shipment], 1, 1))
    client, http = make_client(script, time)
    async with http:
        with pytest.raises(MalformedResponse):
            await client.order_shipments("1")


@pytest.mark.anyio
async def test_order_shipments_without_the_envelope_or_of_an_unknown_order(time: FakeTime) -> None:
    script = Script(ok({"shipments": []}), ok({"message": "Not found"}, 404))
    client, http = make_client(script, time)
    async with http:
        with pytest.raises(MalformedResponse, match="'order_shipments'"):
            await client.order_shipments("1")
        with pytest.raises(NotFoundError):
            await client.order_shipments("1")


@pytest.mark.anyio
async def test_delete_draft_answers(time: FakeTime) -> None:
    errors = {"order": ["A booked order cannot be deleted."]}
    script = Script(
        ok({"message": "Deleted"}),
        httpx.Response(204),
        ok({"message": "The given data was invalid.", "errors": errors}, 422),
        ok({"message": "Not found"}, 404),
    )
    client, http = make_client(script, time)
    async with http:
        await client.delete_draft("1042")
        await client.delete_draft("a/b")
        with pytest.raises(ValidationError) as info:
            await client.delete_draft("1043")
        with pytest.raises(NotFoundError):
            await client.delete_draft("1042")
    assert info.value.fields == errors
    assert [r.method for r in script.requests] == ["DELETE"] * 4
    assert script.raw_paths == [
        b"/api/orders/1042",
        b"/api/orders/a%2Fb",
        b"/api/orders/1043",
        b"/api/orders/1042",
    ]


@pytest.mark.anyio
async def test_delete_draft_is_resent_after_a_lost_answer_and_404_then_means_done(time: FakeTime) -> None:
    def lost(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("the answer was lost", request=request)

    script = Script(lost, ok({"message": "Not found"}, 404))
    client, http = make_client(script, time)
    async with http:
        with pytest.raises(NotFoundError):
            await client.delete_draft("1042")
    assert len(script.requests) == 2  # replay-safe: resent, not AmbiguousWrite
    assert time.sleeps == [0.5]
