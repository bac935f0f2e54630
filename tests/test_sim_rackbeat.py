"""The Rackbeat simulator, driven through RackbeatClient (in-process and over a socket).

The client gets a fake clock and sleep, so throttling and retries cost no real time.
"""

from __future__ import annotations

import collections
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import httpx
import pytest
from pydantic import SecretStr

from daemon.errors import AuthError, NotFoundError, ValidationError
from daemon.rackbeat import RackbeatClient, customer_body, order_body, product_body
from daemon.sim.faults import Faults
from daemon.sim.rackbeat import DEFAULT_TOKEN, RackbeatSimulator
from tests.harness import serving

ODD_NUMBERS = ["a/b", "a b", "a+b", "æøå", "50%", "x?y#z"]


class FakeTime:
    """Monotonic seconds and UTC wall time that move only when someone sleeps."""

    def __init__(self) -> None:
        self.mono = 1000.0
        self.wall = datetime(2026, 11, 1, 10, 0, tzinfo=UTC)
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.mono

    def now(self) -> datetime:
        return self.wall

    def advance(self, seconds: float) -> None:
        self.mono += seconds
        self.wall += timedelta(seconds=seconds)

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.advance(seconds)


def qty(*values: int) -> tuple[Decimal | None, ...]:
    """Expected quantities, typed like the client's (which may be None)."""
    return tuple(Decimal(v) for v in values)


@pytest.fixture
def time() -> FakeTime:
    return FakeTime()


@pytest.fixture
def sim(time: FakeTime) -> RackbeatSimulator:
    return RackbeatSimulator(now=time.now, monotonic=time.clock, sleep=time.sleep)


@asynccontextmanager
async def connect(
    sim: RackbeatSimulator, time: FakeTime, *, token: str = DEFAULT_TOKEN, rpm: int = 10_000
) -> AsyncIterator[RackbeatClient]:
    async with httpx.AsyncClient(transport=httpx.MockTransport(sim.handle)) as http:
        yield RackbeatClient(
            http,
            base_url="http://rackbeat.sim/api",
            token=SecretStr(token),
            contact_email="ops@example.com",
            requests_per_minute=rpm,
            sleep=time.sleep,
            clock=time.clock,
        )


# --- orders and stock -----------------------------------------------------------------------


@pytest.mark.anyio
async def test_draft_book_shipment_ship_moves_in_order_available_and_stock(
    sim: RackbeatSimulator, time: FakeTime
) -> None:
    sim.add_product("MUG", "Blue mug", stock=10, sales_price=79)
    sim.add_product("frakt", "Shipping", inventory_enabled=False, group="2")
    customer = sim.add_customer("Anna", "anna@example.com", payment_terms_id="3")
    async with connect(sim, time) as client:
        body = order_body(
            customer=customer,
            currency="DKK",
            your_reference="#1042",
            heading="Shopify #1042",
            lines=[
                {"item_id": "MUG", "quantity": 3, "line_price": Decimal("63.2000")},
                {"item_id": "frakt", "quantity": 1, "line_price": Decimal("39")},
            ],
        )
        draft = await client.create_draft_order(body)
        assert draft.state == "draft"
        assert draft.your_reference == "#1042"

        async def figures() -> tuple[Decimal | None, ...]:
            product = await client.get_product("MUG")
            assert product is not None
            return product.stock_quantity, product.in_order_quantity, product.available_quantity

        assert await figures() == qty(10, 0, 10)  # a draft reserves nothing

        await client.book_order(draft.number, send_mail=False)
        assert (await client.get_order(draft.number)).state == "booked"
        assert await figures() == qty(10, 3, 7)
        per_location = {row.location: row for row in await client.product_locations("MUG")}
        assert (per_location["1"].stock_quantity, per_location["1"].available_quantity) == qty(10, 7)
        assert (per_location["2"].stock_quantity, per_location["2"].available_quantity) == qty(0, 0)
        assert await client.available_per_location("MUG") == {"1": 7, "2": 0}

        await client.create_shipment(draft.number)
        assert (await client.get_order(draft.number)).state == "ready_to_ship"
        assert await figures() == qty(10, 3, 7)

        sim.ship(draft.number)
        assert (await client.get_order(draft.number)).state == "shipped"
        assert await figures() == qty(7, 0, 7)
    assert sim.stock_quantity("frakt") == 0  # a service product has no stock to take


@pytest.mark.anyio
async def test_order_numbers_auto_increment_unless_given(sim: RackbeatSimulator, time: FakeTime) -> None:
    sim.add_product("A")
    customer = sim.add_customer("C", "c@example.com")
    async with connect(sim, time) as client:
        lines = [{"item_id": "A", "quantity": 1}]
        first = await client.create_draft_order(
            order_body(customer=customer, lines=lines, your_reference="#1")
        )
        second = await client.create_draft_order(
            order_body(customer=customer, lines=lines, your_reference="#2")
        )
        chosen = await client.create_draft_order(
            order_body(customer=customer, lines=lines, number="5000", your_reference="#3")
        )
        assert (first.number, second.number, chosen.number) == ("1001", "1002", "5000")
        assert (await client.get_order("5000")).number == "5000"
        with pytest.raises(NotFoundError):
            await client.get_order("5001")
        with pytest.raises(ValidationError) as info:
            await client.create_draft_order(order_body(customer=customer, lines=lines, number="5000"))
        assert info.value.fields == {"number": ["The number has already been taken."]}
        assert [o.number for o in await client.orders_by_reference("#2")] == ["1002"]
    assert sim.order_count_by_reference("#1") == 1
    assert [o.number for o in sim.orders] == ["1001", "1002", "5000"]


# --- 422 shapes -------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_validation_errors_name_the_field(sim: RackbeatSimulator, time: FakeTime) -> None:
    sim.add_product("A")
    customer = sim.add_customer("C", "c@example.com", payment_terms_id=None)
    async with connect(sim, time) as client:

        async def rejected(body: dict[str, object]) -> dict[str, list[str]]:
            with pytest.raises(ValidationError) as info:
                await client.create_draft_order(body)
            return info.value.fields

        line = {"item_id": "A", "quantity": 1}
        assert await rejected(
            order_body(customer=customer, payment_terms="1", lines=[line, {"item_id": "NOPE", "quantity": 1}])
        ) == {"lines.1.item_id": ["Product needed"]}
        assert await rejected(order_body(customer="999", payment_terms="1", lines=[line])) == {
            "customer_id": ["The selected Customer is invalid."]
        }
        assert await rejected(order_body(customer=customer, lines=[line])) == {
            "payment_terms_id": ["Payment terms are required."]
        }

        await client.create_product(product_body(number="B", name="Bee"))
        with pytest.raises(ValidationError) as info:
            await client.create_product(product_body(number="B", name="Bee again"))
        assert info.value.fields == {"number": ["The number has already been taken."]}

        order = await client.create_draft_order(
            order_body(customer=customer, payment_terms="1", lines=[line])
        )
        with pytest.raises(ValidationError):
            await client.create_shipment(order.number)  # not booked yet
        await client.book_order(order.number)
        with pytest.raises(ValidationError, match="already booked"):
            await client.book_order(order.number)
        await client.create_shipment(order.number)
        with pytest.raises(ValidationError, match="already has a shipment"):
            await client.create_shipment(order.number)
        with pytest.raises(NotFoundError):
            await client.book_order("no-such-order")


@pytest.mark.anyio
async def test_customers_round_trip_and_email_search_is_exact(sim: RackbeatSimulator, time: FakeTime) -> None:
    sim.add_customer("Hanna", "hanna@example.com")
    sim.add_customer("Anna Near", "anna@example.com.au")
    async with connect(sim, time) as client:
        assert await client.find_customer_by_email("anna@example.com") is None
        created = await client.create_customer(
            customer_body(
                name="Anna",
                email="Anna+shop@Example.com",
                group="2",
                vat_zone="eu",
                currency="EUR",
                payment_terms="3",
            )
        )
        found = await client.find_customer_by_email("anna+shop@example.com")
        assert found is not None
        assert found.number == created.number == "1003"
        with pytest.raises(ValidationError) as info:
            await client.create_customer(customer_body(name="X", vat_zone="mars", group="99"))
        assert set(info.value.fields) == {"vat_zone", "customer_group_id"}
    stored = sim.customers["1003"]
    assert (stored.customer_group_id, stored.vat_zone, stored.currency, stored.payment_terms_id) == (
        "2",
        "eu",
        "EUR",
        "3",
    )


# --- shipments, the shipped list and deleting drafts (issue 13) ---------------------------------


def booked_order(sim: RackbeatSimulator, lines: list[tuple[str, int]], reference: str = "#1") -> str:
    """A booked order for ``lines`` (SKU, quantity), as the orders flow leaves it."""
    customer = sim.add_customer(f"C {reference}", f"c{len(sim.customers)}@example.com")
    number = sim.place_order(customer, lines, book=True)
    sim.order(number).your_reference = reference
    return number


@pytest.mark.anyio
async def test_partial_then_full_shipment_moves_flags_stock_and_reservation(
    sim: RackbeatSimulator, time: FakeTime
) -> None:
    sim.add_product("MUG", stock=10)
    sim.add_product("CUP", stock=5)
    sim.add_product("frakt", inventory_enabled=False)
    number = booked_order(sim, [("MUG", 3), ("CUP", 2), ("MUG", 1), ("frakt", 1)])
    async with connect(sim, time) as client:

        async def figures(sku: str) -> tuple[Decimal | None, ...]:
            product = await client.get_product(sku)
            assert product is not None
            return product.stock_quantity, product.in_order_quantity, product.available_quantity

        assert await figures("MUG") == qty(10, 4, 6)
        booked_at = (await client.get_order(number)).updated_at

        time.advance(60)
        first = sim.ship(number, lines=[("MUG", 3), ("CUP", 1)], carrier="PostNord", tracking="PN1")
        order = await client.get_order(number)
        assert (order.is_partly_shipped, order.is_shipped, order.state) == (True, False, "booked")
        assert order.updated_at is not None
        assert booked_at is not None
        assert order.updated_at > booked_at
        assert await figures("MUG") == qty(7, 1, 6)  # left: 3 of stock and their reservation
        assert await figures("CUP") == qty(4, 1, 3)

        # MUG is on two lines: the first has left whole, the second has 1 to go
        with pytest.raises(ValueError, match="fewer"):
            sim.ship(number, lines=[("MUG", 2)])
        with pytest.raises(ValueError, match="fewer"):
            sim.ship(number, lines=[("NOPE", 1)])
        with pytest.raises(ValueError, match="positive"):
            sim.ship(number, lines=[("CUP", 0)])
        assert await figures("MUG") == qty(7, 1, 6)  # refused shipments change nothing

        time.advance(60)
        second = sim.ship(number)  # everything not shipped yet
        order = await client.get_order(number)
        assert (order.is_partly_shipped, order.is_shipped, order.state) == (False, True, "shipped")
        assert await figures("MUG") == qty(6, 0, 6)
        assert await figures("CUP") == qty(3, 0, 3)
        assert sim.stock_quantity("frakt") == 0  # a service has no stock to take
        with pytest.raises(ValueError, match="not a booked, unshipped"):
            sim.ship(number)

        shipments = await client.order_shipments(number)
    assert [s.id for s in shipments] == [str(first), str(second)]
    assert first != second
    assert [s.is_shipped for s in shipments] == [True, True]
    assert [(line.sku, line.quantity) for line in shipments[0].lines or ()] == [("MUG", 3), ("CUP", 1)]
    assert [(line.sku, line.quantity) for line in shipments[1].lines or ()] == [
        ("CUP", 1),
        ("MUG", 1),
        ("frakt", 1),
    ]
    assert (shipments[0].carrier, shipments[0].tracking_number, shipments[0].tracking_url) == (
        "PostNord",
        "PN1",
        None,
    )
    assert (shipments[1].carrier, shipments[1].tracking_number) == (None, None)
    assert shipments[1].updated_at == time.now()


@pytest.mark.anyio
async def test_adding_tracking_bumps_the_shipment_and_the_order(
    sim: RackbeatSimulator, time: FakeTime
) -> None:
    sim.add_product("A", stock=5)
    number = booked_order(sim, [("A", 2)])
    first = sim.ship(number, lines=[("A", 1)], carrier="GLS")
    second = sim.ship(number)
    shipped_at = time.now()
    time.advance(3600)
    sim.add_tracking(number, first, number="GLS-1", url="https://gls.example/GLS-1")
    time.advance(60)
    sim.add_tracking(number, number="DAO-2", carrier="DAO")  # the last shipment
    async with connect(sim, time) as client:
        order = await client.get_order(number)
        shipments = {s.id: s for s in await client.order_shipments(number)}
    assert order.updated_at == time.now()
    one, two = shipments[str(first)], shipments[str(second)]
    assert (one.carrier, one.tracking_number, one.tracking_url) == (
        "GLS",
        "GLS-1",
        "https://gls.example/GLS-1",
    )
    assert (two.carrier, two.tracking_number, two.tracking_url) == ("DAO", "DAO-2", None)
    assert one.updated_at == shipped_at + timedelta(seconds=3600)
    assert two.updated_at == time.now()
    other = booked_order(sim, [("A", 1)], "#2")
    with pytest.raises(ValueError, match="no shipment"):
        sim.add_tracking(other, number="X")
    with pytest.raises(KeyError):
        sim.add_tracking(other, first, number="X")  # not this order's shipment


@pytest.mark.anyio
async def test_shipments_of_an_order_are_paged_and_404_for_an_unknown_order(
    sim: RackbeatSimulator, time: FakeTime
) -> None:
    sim.add_product("A", stock=500)
    number = booked_order(sim, [("A", 250)])
    ids = [sim.ship(number, lines=[("A", 1)]) for _ in range(250)]
    async with connect(sim, time) as client:
        client.page_limit = 100
        shipments = await client.order_shipments(number)
        with pytest.raises(NotFoundError):
            await client.order_shipments("9999")
    assert [s.id for s in shipments] == [str(i) for i in ids]
    assert sim.requests["GET /orders/{number}/shipments"] == 4  # 3 pages, then the 404
    assert sim.order(number).is_shipped


@pytest.mark.anyio
async def test_order_list_filters_on_flags_and_updated_at(sim: RackbeatSimulator, time: FakeTime) -> None:
    sim.add_product("A", stock=100)
    shipped_early = booked_order(sim, [("A", 1)], "#1")
    sim.ship(shipped_early)
    time.advance(3600)
    cut = time.now()
    shipped_late = booked_order(sim, [("A", 1)], "#2")
    partly = booked_order(sim, [("A", 2)], "#3")
    booked = booked_order(sim, [("A", 1)], "#4")
    draft = sim.place_order(sim.add_customer("D", "d@example.com"), [("A", 1)])
    time.advance(60)
    sim.ship(shipped_late)
    sim.ship(partly, lines=[("A", 1)])
    headers = {"Authorization": f"Bearer {DEFAULT_TOKEN}"}

    async def listed(query: str) -> list[str]:
        async with httpx.AsyncClient(transport=httpx.MockTransport(sim.handle)) as http:
            answer = await http.get(f"http://sim/api/orders?{query}", headers=headers)
        assert answer.status_code == 200, answer.text
        return [str(o["number"]) for o in answer.json()["orders"]]

    since = cut.strftime("%Y-%m-%d %H:%M:%S")
    assert await listed("is_shipped=true") == [shipped_early, shipped_late]
    assert await listed(f"is_shipped=true&updated_at_from={since}") == [shipped_late]
    assert await listed(f"is_partly_shipped=true&updated_at_from={since}") == [partly]
    assert await listed("is_shipped=0&is_booked=1") == [partly, booked]
    assert await listed("is_booked=false") == [draft]
    assert await listed("is_shipped=false&is_partly_shipped=false&search=%232") == []
    async with httpx.AsyncClient(transport=httpx.MockTransport(sim.handle)) as http:
        refused = await http.get("http://sim/api/orders?is_shipped=maybe", headers=headers)
    assert refused.status_code == 422
    assert "is_shipped" in refused.json()["errors"]

    # a live API might ignore them: the switch lists every order (search still applies)
    sim.ignore_order_filters = True
    everything = [shipped_early, shipped_late, partly, booked, draft]
    assert await listed(f"is_shipped=true&updated_at_from={since}") == everything
    assert await listed("is_partly_shipped=maybe") == everything
    assert await listed("is_shipped=true&search=%233") == [partly]

    async with connect(sim, time) as client:
        # the client passes the list on as it came: the fulfilments flow sees the filter ignored
        listed_now = [o.number async for page in client.changed_orders(cut) for o in page]
        sim.ignore_order_filters = False
        honoured = [o.number async for page in client.changed_orders(cut) for o in page]
    assert listed_now == everything
    # without a flag: every order updated since, whatever its state
    assert honoured == [shipped_late, partly, booked, draft]


@pytest.mark.anyio
async def test_a_draft_can_be_deleted_a_booked_order_cannot(sim: RackbeatSimulator, time: FakeTime) -> None:
    sim.add_product("A", stock=5)
    customer = sim.add_customer("C", "c@example.com")
    async with connect(sim, time) as client:
        draft = await client.create_draft_order(
            order_body(customer=customer, lines=[{"item_id": "A", "quantity": 2}], your_reference="#9")
        )
        booked = await client.create_draft_order(
            order_body(customer=customer, lines=[{"item_id": "A", "quantity": 1}], your_reference="#10")
        )
        await client.book_order(booked.number)

        await client.delete_draft(draft.number)
        with pytest.raises(NotFoundError):
            await client.get_order(draft.number)
        assert await client.orders_by_reference("#9") == []
        with pytest.raises(NotFoundError):
            await client.delete_draft(draft.number)  # gone already: the caller's "done"

        with pytest.raises(ValidationError, match="booked") as info:
            await client.delete_draft(booked.number)
        assert info.value.fields == {"order": ["A booked order cannot be deleted."]}
        assert (await client.get_order(booked.number)).state == "booked"
    assert [r.status for r in sim.request_log if r.route == "DELETE /orders/{number}"] == [204, 404, 422]
    assert sim.in_order_quantity("A") == 1
    with pytest.raises(ValueError, match="booked"):
        sim.delete_order(booked.number)
    with pytest.raises(KeyError):
        sim.delete_order(draft.number)


@pytest.mark.anyio
async def test_control_api_ships_and_adds_tracking_over_a_socket(
    sim: RackbeatSimulator, time: FakeTime
) -> None:
    sim.add_product("A/1", stock=5)
    number = booked_order(sim, [("A/1", 3)])
    async with serving(sim.handle, "rackbeat-sim") as base, httpx.AsyncClient(base_url=base) as http:
        part = await http.post(
            f"/_sim/orders/{number}/ship",
            json={"lines": [{"sku": "A/1", "quantity": 1}], "carrier": "GLS", "tracking": "G1"},
        )
        assert part.status_code == 201, part.text
        assert part.json()["order"]["is_partly_shipped"] is True
        rest = await http.post(f"/_sim/orders/{number}/ship", json={})
        assert rest.status_code == 201
        assert rest.json()["order"]["is_shipped"] is True
        tracked = await http.post(
            f"/_sim/orders/{number}/tracking", json={"number": "G2", "url": "https://gls.example/G2"}
        )
        assert tracked.status_code == 200
        assert tracked.json()["order_shipment"]["id"] == rest.json()["shipment_id"]
        first = await http.post(
            f"/_sim/orders/{number}/tracking",
            json={"number": "G1b", "shipment_id": part.json()["shipment_id"]},
        )
        assert first.json()["order_shipment"]["track_trace_number"] == "G1b"
        for path, body in [
            (f"/_sim/orders/{number}/ship", {}),  # shipped already
            ("/_sim/orders/9999/ship", {}),
            (f"/_sim/orders/{number}/tracking", {}),  # no number
            (f"/_sim/orders/{number}/tracking", {"number": "X", "shipment_id": "1"}),
            (f"/_sim/orders/{number}/tracking", {"number": "X", "shipment_id": 999}),
        ]:
            refused = await http.post(path, json=body)
            assert refused.status_code == 422, (path, body)
            assert refused.json()["message"]
        assert (await http.post(f"/_sim/orders/{number}/pick", json={})).status_code == 404
        assert (await http.get("/_sim/state")).json()["shipments"] == 2
    assert sim.stock_quantity("A/1") == 2
    assert [s.track_trace_number for s in sim.order_shipments(number)] == ["G1b", "G2"]


# --- numbers and lists -----------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("number", ODD_NUMBERS)
async def test_odd_product_numbers_round_trip(sim: RackbeatSimulator, time: FakeTime, number: str) -> None:
    sim.add_product("plain")
    async with connect(sim, time) as client:
        created = await client.create_product(
            product_body(number=number, name="Odd", sales_price=Decimal("12.5"))
        )
        assert created.number == number
        updated = await client.update_product(number, product_body(name="Odder", weight=Decimal("0.25")))
        assert (updated.name, updated.weight) == ("Odder", Decimal("0.25"))
        fetched = await client.get_product(number)
        assert fetched is not None
        assert fetched.name == "Odder"
        sim.set_stock(number, "2", 4)
        assert {r.location: r.stock_quantity for r in await client.product_locations(number)} == {
            "1": 0,
            "2": 4,
        }
        assert await client.get_product(number + "x") is None
    assert set(sim.products) == {"plain", number}
    assert sim.requests["PUT /products/{number}"] == 1


@pytest.mark.anyio
async def test_lists_page_with_206_and_narrow_fields(sim: RackbeatSimulator, time: FakeTime) -> None:
    for n in range(250):
        sim.add_product(f"P{n:04}", stock=n)
    statuses: list[int] = []

    async def spy(request: httpx.Request) -> httpx.Response:
        response = await sim.handle(request)
        statuses.append(response.status_code)
        return response

    async with httpx.AsyncClient(transport=httpx.MockTransport(spy)) as http:
        client = RackbeatClient(
            http, base_url="http://sim/api", token=SecretStr(DEFAULT_TOKEN), contact_email="a@b.c"
        )
        totals = [t async for page in client.stock_totals() for t in page]
    assert statuses == [206, 206, 200]
    assert [t.number for t in totals] == [f"P{n:04}" for n in range(250)]
    assert totals[249].stock_quantity == 249
    assert client.echoed_limit == 100


@pytest.mark.anyio
async def test_updated_since_filters_products(sim: RackbeatSimulator, time: FakeTime) -> None:
    sim.add_product("OLD")
    time.advance(3600)
    cut = time.now()
    sim.add_product("NEW")
    time.advance(60)
    sim.update_product("OLD", name="Renamed")
    sim.set_stock("NEW", None, 5)  # a stock movement does not touch updated_at here
    async with connect(sim, time) as client:
        seen = [p.number async for page in client.products(updated_since=cut) for p in page]
        fetched = await client.get_product("NEW")
    assert sorted(seen) == ["NEW", "OLD"]
    assert fetched is not None
    assert fetched.updated_at == cut


@pytest.mark.anyio
async def test_wrong_token_is_refused(sim: RackbeatSimulator, time: FakeTime) -> None:
    async with connect(sim, time, token="wrong") as client:
        with pytest.raises(AuthError, match="RACKBEAT_API_TOKEN"):
            await client.locations()


@pytest.mark.anyio
async def test_reference_lists(sim: RackbeatSimulator, time: FakeTime) -> None:
    async with connect(sim, time) as client:
        assert [t.number for t in await client.payment_terms()] == ["1", "2", "3"]
        assert [e.number for e in await client.employees()] == ["1", "2"]
        assert [g.number for g in await client.customer_groups()] == ["1", "2", "3"]
        assert "SEK" in {c.number for c in await client.currencies()}
        assert [g.number for g in await client.product_groups()] == ["1", "2"]
        locations = await client.locations()
    assert [(loc.number, loc.is_default) for loc in locations] == [("1", True), ("2", False)]


# --- limits and faults ----------------------------------------------------------------------------


@pytest.mark.anyio
async def test_server_rate_limit_is_waited_out(time: FakeTime) -> None:
    sim = RackbeatSimulator(now=time.now, monotonic=time.clock, requests_per_minute=5)
    sim.add_product("A")
    async with connect(sim, time) as client:
        for _ in range(8):
            assert await client.get_product("A") is not None
    assert client.throttled >= 1
    assert time.mono - 1000.0 >= 60.0
    assert any(r.status == 429 and r.note == "limit" for r in sim.request_log)


@pytest.mark.anyio
async def test_5000_products_through_faults_are_each_read_exactly_once(time: FakeTime) -> None:
    faults = Faults(error_rate=0.10, throttle_rate=0.03, truncate_rate=0.02, seed=11)
    sim = RackbeatSimulator(now=time.now, monotonic=time.clock, sleep=time.sleep, faults=faults)
    for n in range(5000):
        sim.add_product(f"SKU-{n:05}", stock=n % 7)
    async with connect(sim, time) as client:
        full = collections.Counter([p.number async for page in client.products() for p in page])
        narrow = collections.Counter([t.number async for page in client.stock_totals() for t in page])
    expected = {f"SKU-{n:05}" for n in range(5000)}
    for seen in (full, narrow):
        assert set(seen) == expected
        assert set(seen.values()) == {1}
    assert client.retries > 0
    assert client.throttled > 0
    assert sim.requests["GET /products"] == client.requests
    assert any(r.note == "fault_truncate" for r in sim.request_log)


@pytest.mark.anyio
async def test_served_over_a_real_socket(sim: RackbeatSimulator) -> None:
    for number in ODD_NUMBERS:
        sim.add_product(number, stock=3)
    async with serving(sim.handle, "rackbeat-sim") as base, httpx.AsyncClient(timeout=5.0) as http:
        client = RackbeatClient(
            http,
            base_url=f"{base}/api",
            token=SecretStr(DEFAULT_TOKEN),
            contact_email="a@b.c",
        )
        for number in ODD_NUMBERS:
            product = await client.get_product(number)
            assert product is not None
            assert product.number == number
            assert product.stock_quantity == Decimal(3)
        numbers = [p.number async for page in client.products(fields=["name"]) for p in page]
    assert numbers == ODD_NUMBERS


@pytest.mark.anyio
async def test_control_api_over_a_socket_seeds_receives_sets_faults_and_revokes_the_key(
    sim: RackbeatSimulator, time: FakeTime
) -> None:
    async with serving(sim.handle, "rackbeat-sim") as base, httpx.AsyncClient(base_url=base) as http:
        client = RackbeatClient(
            http,
            base_url=f"{base}/api",
            token=SecretStr(DEFAULT_TOKEN),
            contact_email="a@b.c",
            sleep=time.sleep,
            clock=time.clock,
        )
        seeded = await http.post(
            "/api/_sim/products",
            json={"number": "MUG/1", "name": "Mug", "stock": {"1": 4}, "sales_price": 79.2},
        )
        assert seeded.status_code == 201
        product = await client.get_product("MUG/1")
        assert product is not None
        assert (product.name, product.stock_quantity, product.sales_price) == (
            "Mug",
            Decimal(4),
            Decimal("79.2"),
        )

        # goods arrive at location 2: the daemon sees the new stock there and in the total
        receipt = await http.post(
            "/_sim/goods-receipts", json={"number": "MUG/1", "quantity": 6, "location": "2"}
        )
        assert receipt.status_code == 201
        assert receipt.json()["stock_quantity"] == 6
        by_location = {s.location: s.stock_quantity for s in await client.product_locations("MUG/1")}
        assert by_location["1"] == 4
        assert by_location["2"] == 6
        assert [t.stock_quantity async for page in client.stock_totals() for t in page] == [10]

        # faults on and off
        assert (await http.put("/_sim/faults", json={"error_rate": 1.0})).status_code == 200
        assert (await http.get("/_sim/faults")).json()["error_rate"] == 1.0
        headers = {"Authorization": f"Bearer {DEFAULT_TOKEN}"}
        assert (await http.get("/api/products/MUG%2F1", headers=headers)).status_code == 503
        assert (await http.put("/_sim/faults", json={})).status_code == 200
        assert await client.get_product("MUG/1") is not None

        # the key is revoked: the daemon gets a fatal auth error; a new key works
        revoked = await http.post("/_sim/tokens/expire", json={"token": "rb_new_key"})
        assert revoked.json() == {"token": "rb_new_key"}
        with pytest.raises(AuthError):
            await client.get_product("MUG/1")
        assert (
            await http.get("/api/products/MUG%2F1", headers={"Authorization": "Bearer rb_new_key"})
        ).is_success


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/_sim/products", {"name": "no number"}),
        ("/_sim/products", {"number": "B", "colour": "red"}),
        ("/_sim/goods-receipts", {"number": "NOPE", "quantity": 1}),
        ("/_sim/goods-receipts", {"number": "A", "quantity": 1, "location": "99"}),
        ("/_sim/goods-receipts", {"number": "A", "quantity": "lots"}),
    ],
)
async def test_control_api_refuses_what_it_cannot_do(sim: RackbeatSimulator, path: str, body: object) -> None:
    sim.add_product("A", stock=1)
    async with serving(sim.handle, "rackbeat-sim") as base, httpx.AsyncClient(base_url=base) as http:
        answer = await http.post(path, json=body)
        assert answer.status_code == 422
        assert answer.json()["message"]
        assert (await http.put("/_sim/faults", json={"throttle_rate": -1})).status_code == 422
        assert (await http.get("/_sim/nothing-here")).status_code == 404
    assert sim.stock_quantity("A") == 1
    assert sorted(sim.products) == ["A"]
    assert sim.faults.active is False
