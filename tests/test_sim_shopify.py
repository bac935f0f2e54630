"""The simulated Shopify Admin API, as a client sees it.

Most tests talk to the simulator in-process through ``httpx.MockTransport``; one goes
over a real socket with :func:`~daemon.webserver.serve`. Time is a
:class:`~daemon.sim.shopify.SimClock`, so nothing here sleeps.
"""

from __future__ import annotations

import collections
import itertools
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from graphql import GraphQLSchema, build_schema, parse, validate

from daemon import shopify_documents as docs
from daemon.sim.faults import Faults, truncate_body
from daemon.sim.shopify import (
    DEFAULT_ACCESS_TOKEN,
    DEFAULT_CLIENT_ID,
    DEFAULT_CLIENT_SECRET,
    ShopifySimulator,
    SimClock,
    load_schema,
    parse_search,
)
from tests.harness import serving

pytestmark = pytest.mark.anyio

GRAPHQL = "/admin/api/2026-10/graphql.json"

PRODUCTS_PAGE = """
query Products($first: Int!, $after: String, $query: String) {
  products(first: $first, after: $after, query: $query, sortKey: UPDATED_AT) {
    pageInfo { hasNextPage endCursor }
    nodes { id title updatedAt }
  }
}
"""

VARIANTS_BY_SKU = """
query VariantsBySku($query: String!) {
  productVariants(first: 10, query: $query) {
    edges { cursor node { id sku price inventoryItem { id tracked } } }
  }
}
"""

SET_STOCK = """
mutation SetStock($input: InventorySetQuantitiesInput!, $key: String!) {
  inventorySetQuantities(input: $input) @idempotent(key: $key) {
    inventoryAdjustmentGroup { id changes { name delta quantityAfterChange item { id } location { id } } }
    userErrors { code field message }
  }
}
"""

LEVELS = """
query Levels($ids: [ID!]!, $locationId: ID!) {
  nodes(ids: $ids) {
    ... on InventoryItem {
      sku
      inventoryLevel(locationId: $locationId) { quantities(names: ["available", "on_hand"]) { name quantity } }
    }
  }
}
"""


@pytest.fixture
def clock() -> SimClock:
    return SimClock()


@pytest.fixture
def sim(clock: SimClock, shopify_schema: GraphQLSchema) -> ShopifySimulator:
    """A simulator that also holds every document to Shopify's published schema."""
    return ShopifySimulator(
        now=clock.now, monotonic=clock.monotonic, sleep=clock.sleep, validate_schema=shopify_schema
    )


@pytest.fixture
async def client(sim: ShopifySimulator) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        transport=httpx.MockTransport(sim.handle),
        base_url="https://sim-shop.myshopify.com",
        headers={"X-Shopify-Access-Token": DEFAULT_ACCESS_TOKEN},
    ) as http:
        yield http


async def gql(http: httpx.AsyncClient, document: str, /, **variables: Any) -> dict[str, Any]:
    """POST one document with ``variables`` and return the JSON body (asserting HTTP 200)."""
    response = await http.post(GRAPHQL, json={"query": document, "variables": variables})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def quantity(sim: ShopifySimulator, item_id: str, value: int, change_from: int | None) -> dict[str, Any]:
    return {
        "inventoryItemId": item_id,
        "locationId": sim.primary_location_id,
        "quantity": value,
        "changeFromQuantity": change_from,
    }


def stock_input(*quantities: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": "available",
        "reason": "correction",
        "referenceDocumentUri": "gid://rackbeat/StockSync/1",
        "quantities": list(quantities),
    }


# --- reading ---------------------------------------------------------------------------------


async def test_pages_over_600_products(
    sim: ShopifySimulator, client: httpx.AsyncClient, clock: SimClock
) -> None:
    for n in range(600):
        sim.add_product(f"Product {n:03}", [{"sku": f"SKU-{n:03}", "price": "10.00"}])
    seen: list[str] = []
    after: str | None = None
    pages = 0
    while True:
        clock.advance(10)  # let the bucket refill between 252-point pages
        body = await gql(client, PRODUCTS_PAGE, first=250, after=after)
        connection = body["data"]["products"]
        seen.extend(node["id"] for node in connection["nodes"])
        pages += 1
        if not connection["pageInfo"]["hasNextPage"]:
            assert connection["pageInfo"]["endCursor"] is not None
            break
        after = connection["pageInfo"]["endCursor"]
    assert pages == 3
    assert len(seen) == len(set(seen)) == 600
    assert sim.requests["Products"] == 3


async def test_updated_at_filter(sim: ShopifySimulator, client: httpx.AsyncClient, clock: SimClock) -> None:
    old = sim.add_product("Old chair", [{"sku": "OLD"}])
    clock.advance(60)
    mark = clock.now().strftime("%Y-%m-%dT%H:%M:%SZ")
    new = sim.add_product("New chair", [{"sku": "NEW"}])
    clock.advance(60)
    sim.update_product(old.product_id, title="Old chair, renamed")

    body = await gql(client, PRODUCTS_PAGE, first=10, query=f"updated_at:>='{mark}'")
    titles = [n["title"] for n in body["data"]["products"]["nodes"]]
    assert titles == ["New chair", "Old chair, renamed"]  # UPDATED_AT order

    body = await gql(client, PRODUCTS_PAGE, first=10, query=f"updated_at:>'{mark}'")
    assert [n["id"] for n in body["data"]["products"]["nodes"]] == [old.product_id]
    assert new.product_id not in str(body)


async def test_search_index_lags(sim: ShopifySimulator, client: httpx.AsyncClient, clock: SimClock) -> None:
    sim.search_lag = 30
    sim.add_product("Fresh", [{"sku": "FRESH"}])
    query = "updated_at:>='2026-01-01T00:00:00Z'"
    assert (await gql(client, PRODUCTS_PAGE, first=10, query=query))["data"]["products"]["nodes"] == []
    # unfiltered reads are not served from the search index
    assert len((await gql(client, PRODUCTS_PAGE, first=10))["data"]["products"]["nodes"]) == 1
    clock.advance(31)
    assert len((await gql(client, PRODUCTS_PAGE, first=10, query=query))["data"]["products"]["nodes"]) == 1


async def test_sku_filter(sim: ShopifySimulator, client: httpx.AsyncClient) -> None:
    sim.add_product("Chair", [{"sku": "CH-1", "price": "125.00"}, {"sku": "CH-10", "price": "99"}])
    sim.add_product("Table", [{"sku": "TB-1"}])
    for query in ("sku:'CH-1'", "sku:CH-1", 'sku:"ch-1"'):
        edges = (await gql(client, VARIANTS_BY_SKU, query=query))["data"]["productVariants"]["edges"]
        assert [(e["node"]["sku"], e["node"]["price"]) for e in edges] == [("CH-1", "125.00")], query
        assert edges[0]["cursor"]
    edges = (await gql(client, VARIANTS_BY_SKU, query="sku:CH*"))["data"]["productVariants"]["edges"]
    assert sorted(e["node"]["sku"] for e in edges) == ["CH-1", "CH-10"]


def test_search_terms_are_parsed() -> None:
    terms = parse_search("updated_at:>='2026-11-01T10:00:00Z' AND -status:archived sku:\"A B\" free text")
    assert [(t.field, t.op, t.value, t.negate) for t in terms] == [
        ("updated_at", ">=", "2026-11-01T10:00:00Z", False),
        ("status", "=", "archived", True),
        ("sku", "=", "A B", False),
    ]


async def test_nodes_resolve_each_type(sim: ShopifySimulator, client: httpx.AsyncClient) -> None:
    added = sim.add_product("Lamp", [{"sku": "LAMP"}])
    order_id = sim.sell("LAMP")
    ids = [
        added.product_id,
        added.variant_ids[0],
        added.inventory_item_ids[0],
        order_id,
        "gid://shopify/Product/1",
    ]
    query = "query Nodes($ids: [ID!]!) { nodes(ids: $ids) { __typename id } }"
    nodes = (await gql(client, query, ids=ids))["data"]["nodes"]
    assert [n and n["__typename"] for n in nodes] == [
        "Product",
        "ProductVariant",
        "InventoryItem",
        "Order",
        None,
    ]


async def test_unknown_field_is_a_top_level_error(client: httpx.AsyncClient) -> None:
    body = await gql(client, "query Shop { shop { name myshopifyDomain nonsense } }")
    assert "data" not in body
    assert "nonsense" in body["errors"][0]["message"]
    assert "cost" in body["extensions"]
    ok = await gql(client, "query Shop { shop { name myshopifyDomain } }")
    assert ok["data"]["shop"] == {"name": "Simulated Shop", "myshopifyDomain": "sim-shop.myshopify.com"}


async def test_validate_schema_rejects_what_it_does_not_know(
    sim: ShopifySimulator, client: httpx.AsyncClient
) -> None:
    # stands in for Shopify's published schema: it knows Shop.name but not myshopifyDomain
    sim.validate_schema = build_schema(
        "schema { query: QueryRoot } type QueryRoot { shop: Shop! } type Shop { name: String! }"
    )
    assert (await gql(client, "{ shop { name } }"))["data"] == {"shop": {"name": "Simulated Shop"}}
    body = await gql(client, "{ shop { myshopifyDomain } }")
    assert "myshopifyDomain" in body["errors"][0]["message"]


def test_daemon_documents_validate_against_the_simulator() -> None:
    from daemon.shopify_documents import ALL_DOCUMENTS

    schema = load_schema()
    for name, document in ALL_DOCUMENTS.items():
        assert validate(schema, parse(document)) == [], name


async def test_unknown_version_is_404(client: httpx.AsyncClient) -> None:
    response = await client.post("/admin/api/2019-04/graphql.json", json={"query": "{ shop { name } }"})
    assert response.status_code == 404


# --- stock -------------------------------------------------------------------------------------


async def test_sale_commits_stock(sim: ShopifySimulator, client: httpx.AsyncClient) -> None:
    added = sim.add_product("Chair", [{"sku": "CH-1", "price": "125.00", "stock": 10}])
    order_id = sim.sell("CH-1", 3, shipping_price="50.00")
    assert (sim.available("CH-1"), sim.on_hand("CH-1"), sim.committed("CH-1")) == (7, 10, 3)
    nodes = (
        await gql(client, LEVELS, ids=list(added.inventory_item_ids), locationId=sim.primary_location_id)
    )["data"]["nodes"]
    quantities = {q["name"]: q["quantity"] for q in nodes[0]["inventoryLevel"]["quantities"]}
    assert quantities == {"available": 7, "on_hand": 10}

    query = """query Order($id: ID!) { order(id: $id) {
      name taxesIncluded
      lineItems(first: 5) { nodes { sku currentQuantity discountedUnitPriceSet { shopMoney { amount } }
                                   taxLines { rate priceSet { shopMoney { amount } } } } }
      totalPriceSet { shopMoney { amount currencyCode } } totalTaxSet { shopMoney { amount } } } }"""
    order = (await gql(client, query, id=order_id))["data"]["order"]
    assert order["name"] == "#1001"
    assert order["taxesIncluded"] is True
    line = order["lineItems"]["nodes"][0]
    assert line["discountedUnitPriceSet"]["shopMoney"]["amount"] == "125.00"
    assert line["taxLines"] == [
        {"rate": 0.25, "priceSet": {"shopMoney": {"amount": "75.00"}}}
    ]  # 375 × 0.25/1.25
    assert order["totalPriceSet"]["shopMoney"] == {"amount": "425.00", "currencyCode": "DKK"}
    assert order["totalTaxSet"]["shopMoney"]["amount"] == "85.00"  # plus 10.00 on shipping

    sim.edit_order(order_id, {"CH-1": 1})
    assert sim.available("CH-1") == 9
    sim.cancel_order(order_id)
    assert (sim.available("CH-1"), sim.committed("CH-1")) == (10, 0)


async def test_stale_change_from_applies_nothing(sim: ShopifySimulator, client: httpx.AsyncClient) -> None:
    a = sim.add_product("A", [{"sku": "A", "stock": 5}]).inventory_item_ids[0]
    b = sim.add_product("B", [{"sku": "B", "stock": 7}]).inventory_item_ids[0]
    payload = stock_input(quantity(sim, a, 50, 5), quantity(sim, b, 70, 6))  # b is really 7
    result = (await gql(client, SET_STOCK, input=payload, key="k-1"))["data"]["inventorySetQuantities"]
    assert result["inventoryAdjustmentGroup"] is None
    assert [e["code"] for e in result["userErrors"]] == ["CHANGE_FROM_QUANTITY_STALE"]
    assert result["userErrors"][0]["field"] == ["input", "quantities", "1", "changeFromQuantity"]
    assert (sim.available("A"), sim.available("B")) == (5, 7)
    assert sim.inventory_applications == []


async def test_idempotent_replay_and_mismatch(sim: ShopifySimulator, client: httpx.AsyncClient) -> None:
    item = sim.add_product("A", [{"sku": "A", "stock": 5}]).inventory_item_ids[0]
    payload = stock_input(quantity(sim, item, 8, 5))
    first = (await gql(client, SET_STOCK, input=payload, key="k-1"))["data"]["inventorySetQuantities"]
    again = (await gql(client, SET_STOCK, input=payload, key="k-1"))["data"]["inventorySetQuantities"]
    assert first == again
    assert first["userErrors"] == []
    assert {
        c["name"]: (c["delta"], c["quantityAfterChange"])
        for c in first["inventoryAdjustmentGroup"]["changes"]
    } == {
        "available": (3, 8),
        "on_hand": (3, 8),
    }
    assert sim.available("A") == 8
    assert len(sim.inventory_applications) == 1
    assert sim.idempotent_replays == 1

    other = stock_input(quantity(sim, item, 9, 8))
    mismatch = (await gql(client, SET_STOCK, input=other, key="k-1"))["data"]["inventorySetQuantities"]
    assert [e["code"] for e in mismatch["userErrors"]] == ["IDEMPOTENCY_KEY_PARAMETER_MISMATCH"]
    assert sim.available("A") == 8


async def test_set_quantities_contract(sim: ShopifySimulator, client: httpx.AsyncClient) -> None:
    item = sim.add_product("A", [{"sku": "A", "stock": 5}]).inventory_item_ids[0]
    untracked = sim.add_product("U", [{"sku": "U", "tracked": False}]).inventory_item_ids[0]

    no_key = SET_STOCK.replace(
        "($input: InventorySetQuantitiesInput!, $key: String!)", "($input: InventorySetQuantitiesInput!)"
    )
    no_key = no_key.replace(" @idempotent(key: $key)", "")
    body = await gql(client, no_key, input=stock_input(quantity(sim, item, 1, None)))
    assert "@idempotent" in body["errors"][0]["message"]

    missing = stock_input({"inventoryItemId": item, "locationId": sim.primary_location_id, "quantity": 1})
    body = await gql(client, SET_STOCK, input=missing, key="k-missing")
    assert "changeFromQuantity" in body["errors"][0]["message"]

    body = await gql(
        client, SET_STOCK, input=stock_input(quantity(sim, untracked, 1, None)), key="k-untracked"
    )
    assert body["data"]["inventorySetQuantities"]["userErrors"][0]["code"] == "NON_MUTABLE_INVENTORY_ITEM"

    too_many = stock_input(*(quantity(sim, item, n, None) for n in range(251)))
    body = await gql(client, SET_STOCK, input=too_many, key="k-many")
    assert body["errors"][0]["extensions"]["code"] == "MAX_INPUT_SIZE_EXCEEDED"

    # null opts out of the compare-and-swap
    body = await gql(client, SET_STOCK, input=stock_input(quantity(sim, item, 2, None)), key="k-null")
    assert body["data"]["inventorySetQuantities"]["userErrors"] == []
    assert sim.available("A") == 2


# --- cost and throttling -------------------------------------------------------------------------


async def test_throttled_with_http_200_then_refills(
    sim: ShopifySimulator, client: httpx.AsyncClient, clock: SimClock
) -> None:
    query = "query Locations { locations(first: 250) { nodes { id } } }"  # 2 + 250 × 1
    sim.bucket.drain()
    body = await gql(client, query)
    assert body["errors"] == [
        {
            "message": "Throttled",
            "extensions": {
                "code": "THROTTLED",
                "documentation": body["errors"][0]["extensions"]["documentation"],
            },
        }
    ]
    cost = body["extensions"]["cost"]
    assert cost["requestedQueryCost"] == 252
    assert cost["throttleStatus"] == {
        "maximumAvailable": 2000.0,
        "currentlyAvailable": 0,
        "restoreRate": 100.0,
    }

    clock.advance(3)  # 300 points back
    body = await gql(client, query)
    assert "errors" not in body
    # Shopify charges what came back (here: the connection and one location) and refunds the rest
    actual = body["extensions"]["cost"]["actualQueryCost"]
    assert actual == 2 + len(body["data"]["locations"]["nodes"])
    assert body["extensions"]["cost"]["throttleStatus"]["currentlyAvailable"] == 300 - actual


async def test_max_cost_exceeded(client: httpx.AsyncClient) -> None:
    query = "{ orders(first: 50) { nodes { lineItems(first: 100) { nodes { id } } } } }"
    body = await gql(client, query)
    assert body["errors"][0]["extensions"]["code"] == "MAX_COST_EXCEEDED"
    assert body["extensions"]["cost"]["requestedQueryCost"] > 1000


# --- auth ------------------------------------------------------------------------------------------


async def test_client_credentials_tokens_expire(sim: ShopifySimulator, clock: SimClock) -> None:
    async with httpx.AsyncClient(
        transport=httpx.MockTransport(sim.handle), base_url="https://sim-shop.myshopify.com"
    ) as http:
        assert (await http.post(GRAPHQL, json={"query": "{ shop { name } }"})).status_code == 401
        denied = await http.post(
            "/admin/oauth/access_token",
            data={
                "grant_type": "client_credentials",
                "client_id": DEFAULT_CLIENT_ID,
                "client_secret": "wrong",
            },
        )
        assert denied.status_code == 401
        granted = await http.post(
            "/admin/oauth/access_token",
            data={
                "grant_type": "client_credentials",
                "client_id": DEFAULT_CLIENT_ID,
                "client_secret": DEFAULT_CLIENT_SECRET,
            },
        )
        grant = granted.json()
        assert grant["expires_in"] == 86399
        assert "write_inventory" in grant["scope"]
        headers = {"X-Shopify-Access-Token": grant["access_token"]}
        ok = await http.post(GRAPHQL, json={"query": "{ shop { name } }"}, headers=headers)
        assert ok.status_code == 200
        clock.advance(86400)
        expired = await http.post(GRAPHQL, json={"query": "{ shop { name } }"}, headers=headers)
        assert expired.status_code == 401
        assert "Invalid API key or access token" in expired.json()["errors"]

        token = sim.issue_token()
        sim.expire_tokens()
        revoked = await http.post(
            GRAPHQL, json={"query": "{ shop { name } }"}, headers={"X-Shopify-Access-Token": token}
        )
        assert revoked.status_code == 401


# --- faults ----------------------------------------------------------------------------------------


def test_faults_draw_is_seeded() -> None:
    assert Faults().draw() is None
    draws = [Faults(error_rate=0.2, throttle_rate=0.2, truncate_rate=0.2, seed=7).draw() for _ in range(2)]
    assert draws[0] == draws[1]
    sequence = Faults(error_rate=0.3, throttle_rate=0.3, truncate_rate=0.3, seed=1)
    assert {sequence.draw() for _ in range(200)} == {"error", "throttle", "truncate", None}
    assert truncate_body(b"abcdef") == b"abc"
    with pytest.raises(ValueError, match="error_rate"):
        Faults(error_rate=1.5)


def test_throttles_come_in_bursts_at_the_rates_asked() -> None:
    faults = Faults(error_rate=0.1, throttle_rate=0.3, throttle_burst=4, cost_throttle_share=0.5, seed=5)
    draws = [faults.draw() for _ in range(100_000)]
    counts = collections.Counter(draws)
    throttled = counts["throttle"] + counts["cost_throttle"]
    assert 0.28 < throttled / len(draws) < 0.32
    assert 0.09 < counts["error"] / len(draws) < 0.11
    assert 0.4 < counts["cost_throttle"] / throttled < 0.6
    runs = [len(list(run)) for kind, run in itertools.groupby(draws) if kind in ("throttle", "cost_throttle")]
    assert sum(runs) / len(runs) > 3  # bursts, not isolated throttles
    # without bursts (the default) throttles are independent: runs average 1 / (1 − 0.3)
    independent = Faults(throttle_rate=0.3, seed=5)
    lone = [independent.draw() for _ in range(100_000)]
    runs = [len(list(run)) for kind, run in itertools.groupby(lone) if kind == "throttle"]
    assert 1.35 < sum(runs) / len(runs) < 1.5
    assert Faults.from_json(faults.to_json()) == faults
    with pytest.raises(ValueError, match="throttle_burst"):
        Faults(throttle_burst=0.5)


async def test_cost_throttle_answers_throttled_with_the_bucket_it_emptied(
    sim: ShopifySimulator, client: httpx.AsyncClient, clock: SimClock
) -> None:
    sim.add_product("A", [{"sku": "A"}])
    sim.faults = Faults(throttle_rate=1.0, cost_throttle_share=1.0)
    answer = await client.post(GRAPHQL, json={"query": PRODUCTS_PAGE, "variables": {"first": 50}})
    assert answer.status_code == 200
    body = answer.json()
    assert body["errors"][0]["extensions"]["code"] == "THROTTLED"
    cost = body["extensions"]["cost"]
    status = cost["throttleStatus"]
    assert status["currentlyAvailable"] < cost["requestedQueryCost"]
    # waiting what the status says is enough: the same query then runs
    sim.faults = Faults()
    clock.advance((cost["requestedQueryCost"] - status["currentlyAvailable"]) / status["restoreRate"])
    again = (await client.post(GRAPHQL, json={"query": PRODUCTS_PAGE, "variables": {"first": 50}})).json()
    assert "errors" not in again
    assert again["data"]["products"]["nodes"][0]["title"] == "A"


async def test_faults_answer_before_and_after_execution(
    sim: ShopifySimulator, client: httpx.AsyncClient
) -> None:
    item = sim.add_product("A", [{"sku": "A", "stock": 5}]).inventory_item_ids[0]
    sim.faults = Faults(error_rate=1.0)
    assert (await client.post(GRAPHQL, json={"query": "{ shop { name } }"})).status_code == 503
    sim.faults = Faults(throttle_rate=1.0)
    throttled = await client.post(GRAPHQL, json={"query": "{ shop { name } }"})
    assert throttled.status_code == 429
    assert throttled.json()["errors"][0]["extensions"]["code"] == "THROTTLED"

    # a truncated answer still did the work: the retry with the same key is a replay
    sim.faults = Faults(truncate_rate=1.0)
    payload = {
        "query": SET_STOCK,
        "variables": {"input": stock_input(quantity(sim, item, 9, 5)), "key": "k-cut"},
    }
    cut = await client.post(GRAPHQL, json=payload)
    with pytest.raises(ValueError, match=r"Expecting|Unterminated|delimiter"):
        cut.json()
    sim.faults = Faults()
    retry = (await client.post(GRAPHQL, json=payload)).json()
    assert retry["data"]["inventorySetQuantities"]["userErrors"] == []
    assert sim.available("A") == 9
    assert (len(sim.inventory_applications), sim.idempotent_replays) == (1, 1)


# --- fulfilment ------------------------------------------------------------------------------

FULFILMENT_DETAIL = """
query Detail($id: ID!) {
  order(id: $id) {
    fulfillmentOrders(first: 5) {
      edges { node {
        orderName
        assignedLocation { name countryCode location { id } }
        lineItems(first: 10) { nodes { sku requiresShipping productTitle inventoryItemId lineItem { id } } }
      } }
    }
    fulfillments(first: 5) {
      name
      totalQuantity
      location { id }
      fulfillmentLineItems(first: 10) { nodes { quantity lineItem { sku } } }
    }
  }
}
"""


async def fulfilment_of(http: httpx.AsyncClient, order_id: str) -> dict[str, Any]:
    """The order as ORDER_FULFILMENT reads it."""
    body = await gql(http, docs.ORDER_FULFILMENT, id=order_id)
    assert "errors" not in body, body["errors"]
    order: dict[str, Any] = body["data"]["order"]
    return order


async def fulfil(http: httpx.AsyncClient, groups: list[dict[str, Any]], **fields: Any) -> dict[str, Any]:
    """Send FULFILLMENT_CREATE and return its payload."""
    body = await gql(
        http, docs.FULFILLMENT_CREATE, fulfillment={"lineItemsByFulfillmentOrder": groups, **fields}
    )
    assert "errors" not in body, body["errors"]
    payload: dict[str, Any] = body["data"]["fulfillmentCreate"]
    return payload


def stock_of(sim: ShopifySimulator, sku: str, location: str | None = None) -> tuple[int, int, int]:
    """(available, on hand, committed)."""
    return (sim.available(sku, location), sim.on_hand(sku, location), sim.committed(sku, location))


def remaining(order: dict[str, Any]) -> list[list[tuple[str, int, int]]]:
    """Each fulfillment order's lines as (sku, total, remaining)."""
    return [
        [(n["lineItem"]["sku"], n["totalQuantity"], n["remainingQuantity"]) for n in fo["lineItems"]["nodes"]]
        for fo in order["fulfillmentOrders"]["nodes"]
    ]


async def test_a_new_order_has_one_open_fulfillment_order_for_what_ships(
    sim: ShopifySimulator, client: httpx.AsyncClient
) -> None:
    sim.add_product("Chair", [{"sku": "CH-1", "stock": 5}])
    gift = sim.add_product("Gift card", [{"sku": "GIFT"}])
    sim.inventory_items[gift.inventory_item_ids[0]].requires_shipping = False
    store = sim.add_location("Store")
    order_id = sim.create_order(
        [("CH-1", 2), ("GIFT", 1), {"sku": "ENGRAVING", "quantity": 1, "price": "10", "title": "Engraving"}],
        location=store,
    )
    order = await fulfilment_of(client, order_id)
    assert order["displayFulfillmentStatus"] == "UNFULFILLED"
    assert order["fulfillments"] == []
    (fo,) = order["fulfillmentOrders"]["nodes"]
    assert (fo["status"], fo["assignedLocation"]["location"]["id"]) == ("OPEN", store)
    assert remaining(order) == [[("CH-1", 2, 2), ("ENGRAVING", 1, 1)]]  # the gift card ships nothing
    assert fo["lineItems"]["pageInfo"]["hasNextPage"] is False
    assert stock_of(sim, "CH-1", store) == (-2, 0, 2)

    detail = (await gql(client, FULFILMENT_DETAIL, id=order_id))["data"]["order"]
    fo_detail = detail["fulfillmentOrders"]["edges"][0]["node"]
    assert fo_detail["orderName"] == sim.orders[order_id].name
    assert fo_detail["assignedLocation"] == {"name": "Store", "countryCode": "DK", "location": {"id": store}}
    chair_line = fo_detail["lineItems"]["nodes"][0]
    assert chair_line["requiresShipping"] is True
    assert chair_line["inventoryItemId"] == sim.find_by_sku("CH-1").inventory_item_id  # type: ignore[union-attr]
    assert fo_detail["lineItems"]["nodes"][1]["inventoryItemId"] is None  # a custom line
    (only,) = sim.fulfillment_orders(sim.orders[order_id].name)
    assert only.id == fo["id"]


async def test_fulfil_part_then_the_rest(
    sim: ShopifySimulator, client: httpx.AsyncClient, clock: SimClock
) -> None:
    sim.add_product("Chair", [{"sku": "CH-1", "stock": 10}])
    sim.add_product("Table", [{"sku": "TB-1", "stock": 4}])
    order_id = sim.create_order([("CH-1", 3), ("TB-1", 1)])
    before = sim.orders[order_id].updated_at
    order = await fulfilment_of(client, order_id)
    (fo,) = order["fulfillmentOrders"]["nodes"]
    chair = fo["lineItems"]["nodes"][0]

    clock.advance(60)
    tracking = {"company": "DHL", "number": "JD0001", "url": "https://track.example/JD0001"}
    payload = await fulfil(
        client,
        [{"fulfillmentOrderId": fo["id"], "fulfillmentOrderLineItems": [{"id": chair["id"], "quantity": 1}]}],
        trackingInfo=tracking,
        notifyCustomer=True,
    )
    assert payload["userErrors"] == []
    first = payload["fulfillment"]
    assert (first["status"], first["trackingInfo"]) == ("SUCCESS", [tracking])
    order = await fulfilment_of(client, order_id)
    assert order["displayFulfillmentStatus"] == "PARTIALLY_FULFILLED"
    assert order["fulfillmentOrders"]["nodes"][0]["status"] == "IN_PROGRESS"
    assert remaining(order) == [[("CH-1", 3, 2), ("TB-1", 1, 1)]]
    assert [f["id"] for f in order["fulfillments"]] == [first["id"]]
    assert sim.orders[order_id].updated_at > before
    assert stock_of(sim, "CH-1") == (7, 9, 2)  # one left the building: on hand and committed drop
    (shipped,) = sim.fulfillments(order_id)
    assert (shipped.quantities, shipped.notify_customer) == ({"CH-1": 1}, True)
    assert shipped.tracking == ("DHL", "JD0001", "https://track.example/JD0001")

    # no line items: everything left on the fulfillment order
    clock.advance(60)
    payload = await fulfil(client, [{"fulfillmentOrderId": fo["id"]}])
    assert payload["userErrors"] == []
    assert payload["fulfillment"]["trackingInfo"] == []
    order = await fulfilment_of(client, order_id)
    assert order["displayFulfillmentStatus"] == "FULFILLED"
    assert order["fulfillmentOrders"]["nodes"][0]["status"] == "CLOSED"
    assert remaining(order) == [[("CH-1", 3, 0), ("TB-1", 1, 0)]]
    assert [f["createdAt"] for f in order["fulfillments"]] == sorted(
        f["createdAt"] for f in order["fulfillments"]
    )
    assert stock_of(sim, "CH-1") == (7, 7, 0)
    assert stock_of(sim, "TB-1") == (3, 3, 0)
    assert [f.quantities for f in sim.fulfillments(order_id)] == [{"CH-1": 1}, {"CH-1": 2, "TB-1": 1}]
    assert sim.fulfillments(order_id)[1].notify_customer is False

    detail = (await gql(client, FULFILMENT_DETAIL, id=order_id))["data"]["order"]["fulfillments"]
    assert [(f["name"], f["totalQuantity"], f["location"]["id"]) for f in detail] == [
        (f"{sim.orders[order_id].name}.1", 1, sim.primary_location_id),
        (f"{sim.orders[order_id].name}.2", 3, sim.primary_location_id),
    ]
    assert detail[1]["fulfillmentLineItems"]["nodes"] == [
        {"quantity": 2, "lineItem": {"sku": "CH-1"}},
        {"quantity": 1, "lineItem": {"sku": "TB-1"}},
    ]

    # the merchant's "mark as fulfilled" goes the same way, with the same stock effect
    other = sim.create_order([("CH-1", 3), ("TB-1", 1)])
    (made,) = sim.fulfill_order(other)
    assert stock_of(sim, "CH-1") == (4, 4, 0)
    assert stock_of(sim, "TB-1") == (2, 2, 0)
    assert [f.id for f in sim.fulfillments(other)] == [made]
    assert [fo.status for fo in sim.fulfillment_orders(other)] == ["CLOSED"]
    assert sim.orders[other].display_fulfillment_status == "FULFILLED"
    assert sim.fulfill_order(other) == []  # nothing left


@pytest.mark.parametrize(
    "case",
    [
        "over_remaining",
        "zero",
        "on_hold",
        "unknown_order",
        "foreign_line",
        "cancelled",
        "closed",
        "two_locations",
    ],
)
async def test_refused_fulfilments_change_nothing(
    sim: ShopifySimulator, client: httpx.AsyncClient, case: str
) -> None:
    sim.add_product("Chair", [{"sku": "CH-1", "stock": 10}])
    order_id = sim.sell("CH-1", 2)
    other_id = sim.sell("CH-1", 1)
    fo = sim.fulfillment_orders(order_id)[0]
    line = fo.line_items[0]
    groups: list[dict[str, Any]] = [
        {"fulfillmentOrderId": fo.id, "fulfillmentOrderLineItems": [{"id": line.id, "quantity": 1}]}
    ]
    if case == "over_remaining":
        groups[0]["fulfillmentOrderLineItems"][0]["quantity"] = 3
    elif case == "zero":
        groups[0]["fulfillmentOrderLineItems"][0]["quantity"] = 0
    elif case == "on_hold":
        sim.hold_fulfillment_order(order_id)
    elif case == "unknown_order":
        groups[0]["fulfillmentOrderId"] = "gid://shopify/FulfillmentOrder/1"
    elif case == "foreign_line":
        groups[0]["fulfillmentOrderLineItems"][0]["id"] = sim.fulfillment_orders(other_id)[0].line_items[0].id
    elif case == "cancelled":
        sim.cancel_order(order_id)
    elif case == "closed":
        sim.fulfill_order(order_id)
        groups = [{"fulfillmentOrderId": fo.id}]
    elif case == "two_locations":
        sim.move_fulfillment_order(other_id, sim.add_location("Store"))
        groups.append({"fulfillmentOrderId": sim.fulfillment_orders(other_id)[0].id})
    stock = stock_of(sim, "CH-1")
    shipped = sum(len(sim.fulfillments(o)) for o in (order_id, other_id))
    left = [
        held.remaining_quantity
        for o in (order_id, other_id)
        for f in sim.fulfillment_orders(o)
        for held in f.line_items
    ]

    payload = await fulfil(client, groups)
    assert payload["fulfillment"] is None
    (error,) = payload["userErrors"]
    assert error["field"] == ["fulfillment"]
    assert error["message"]
    assert stock_of(sim, "CH-1") == stock
    assert sum(len(sim.fulfillments(o)) for o in (order_id, other_id)) == shipped
    assert [
        held.remaining_quantity
        for o in (order_id, other_id)
        for f in sim.fulfillment_orders(o)
        for held in f.line_items
    ] == left


async def test_tracking_is_replaced_and_the_customer_notified_on_request(
    sim: ShopifySimulator, client: httpx.AsyncClient, clock: SimClock
) -> None:
    sim.add_product("Chair", [{"sku": "CH-1", "stock": 10}])
    order_id = sim.sell("CH-1", 1)
    (fulfillment_id,) = sim.fulfill_order(order_id)
    clock.advance(60)
    before = sim.orders[order_id].updated_at
    tracking = {"company": "GLS", "number": "123", "url": "https://gls.example/123"}
    variables = {"fulfillmentId": fulfillment_id, "trackingInfoInput": tracking, "notifyCustomer": True}
    body = await gql(client, docs.FULFILLMENT_TRACKING_UPDATE, **variables)
    result = body["data"]["fulfillmentTrackingInfoUpdate"]
    assert result["userErrors"] == []
    assert result["fulfillment"]["trackingInfo"] == [tracking]
    assert sim.orders[order_id].updated_at > before

    # absolute values: a field left out is cleared, and sending it again changes nothing more
    variables = {
        "fulfillmentId": fulfillment_id,
        "trackingInfoInput": {"number": "456"},
        "notifyCustomer": False,
    }
    for _ in range(2):
        body = await gql(client, docs.FULFILLMENT_TRACKING_UPDATE, **variables)
    (shipped,) = sim.fulfillments(order_id)
    assert shipped.tracking == (None, "456", None)
    assert shipped.tracking_updates == [True, False, False]

    variables["fulfillmentId"] = "gid://shopify/Fulfillment/1"
    body = await gql(client, docs.FULFILLMENT_TRACKING_UPDATE, **variables)
    result = body["data"]["fulfillmentTrackingInfoUpdate"]
    assert result["fulfillment"] is None
    assert result["userErrors"][0]["field"] == ["fulfillmentId"]


async def test_a_cut_off_answer_to_fulfillment_create_left_the_fulfilment_made(
    sim: ShopifySimulator, client: httpx.AsyncClient
) -> None:
    sim.add_product("Chair", [{"sku": "CH-1", "stock": 10}])
    order_id = sim.sell("CH-1", 2)
    fo = sim.fulfillment_orders(order_id)[0]
    request = {
        "query": docs.FULFILLMENT_CREATE,
        "variables": {"fulfillment": {"lineItemsByFulfillmentOrder": [{"fulfillmentOrderId": fo.id}]}},
    }
    # a 5xx is answered before anything runs
    sim.faults = Faults(error_rate=1.0)
    assert (await client.post(GRAPHQL, json=request)).status_code == 503
    assert sim.fulfillments(order_id) == []
    # a cut-off answer comes after the work was done
    sim.faults = Faults(truncate_rate=1.0)
    cut = await client.post(GRAPHQL, json=request)
    with pytest.raises(ValueError, match=r"Expecting|Unterminated|delimiter"):
        cut.json()
    sim.faults = Faults()
    assert [f.quantities for f in sim.fulfillments(order_id)] == [{"CH-1": 2}]
    assert stock_of(sim, "CH-1") == (8, 8, 0)
    # so sending it again is refused: nothing is left to fulfil (not idempotent)
    again = (await client.post(GRAPHQL, json=request)).json()["data"]["fulfillmentCreate"]
    assert again["fulfillment"] is None
    assert "closed" in again["userErrors"][0]["message"]
    assert len(sim.fulfillments(order_id)) == 1


async def test_hold_release_and_move(
    sim: ShopifySimulator, client: httpx.AsyncClient, clock: SimClock
) -> None:
    sim.add_product("Chair", [{"sku": "CH-1", "stock": {sim.primary_location_id: 10}}])
    store = sim.add_location("Store")
    sim.set_on_hand("CH-1", 5, store)
    order_id = sim.sell("CH-1", 3)

    clock.advance(60)
    stamp = sim.orders[order_id].updated_at
    sim.hold_fulfillment_order(order_id)
    assert sim.orders[order_id].updated_at > stamp
    order = await fulfilment_of(client, order_id)
    assert (order["displayFulfillmentStatus"], order["fulfillmentOrders"]["nodes"][0]["status"]) == (
        "ON_HOLD",
        "ON_HOLD",
    )
    with pytest.raises(ValueError, match="held"):
        sim.hold_fulfillment_order(order_id)
    with pytest.raises(ValueError, match="moved"):
        sim.move_fulfillment_order(order_id, store)
    sim.release_fulfillment_order(order_id)
    assert sim.fulfillment_orders(order_id)[0].status == "OPEN"

    # nothing fulfilled yet: the same fulfillment order changes location, committed stock follows
    (original,) = sim.fulfillment_orders(order_id)
    assert sim.move_fulfillment_order(order_id, store) == [original.id]
    assert original.location_id == store
    assert stock_of(sim, "CH-1") == (10, 10, 0)
    assert stock_of(sim, "CH-1", store) == (2, 5, 3)

    # partly fulfilled: the original closes with what it shipped, a new one holds the rest
    await fulfil(
        client,
        [
            {
                "fulfillmentOrderId": original.id,
                "fulfillmentOrderLineItems": [{"id": original.line_items[0].id, "quantity": 1}],
            }
        ],
    )
    assert stock_of(sim, "CH-1", store) == (2, 4, 2)
    (moved,) = sim.move_fulfillment_order(order_id, sim.primary_location_id)
    assert moved != original.id
    order = await fulfilment_of(client, order_id)
    assert [
        (fo["status"], fo["assignedLocation"]["location"]["id"]) for fo in order["fulfillmentOrders"]["nodes"]
    ] == [
        ("CLOSED", store),
        ("OPEN", sim.primary_location_id),
    ]
    assert remaining(order) == [[("CH-1", 1, 0)], [("CH-1", 2, 2)]]
    assert order["displayFulfillmentStatus"] == "PARTIALLY_FULFILLED"
    assert stock_of(sim, "CH-1", store) == (4, 4, 0)
    assert stock_of(sim, "CH-1") == (8, 10, 2)
    sim.fulfill_order(order_id)
    assert stock_of(sim, "CH-1") == (8, 8, 0)
    assert sim.orders[order_id].display_fulfillment_status == "FULFILLED"
    assert [f.location_id for f in sim.fulfillments(order_id)] == [store, sim.primary_location_id]


async def test_edits_and_cancellation_reach_the_fulfillment_orders(sim: ShopifySimulator) -> None:
    sim.add_product("Chair", [{"sku": "CH-1", "stock": 10}])
    order_id = sim.sell("CH-1", 4)
    (fo,) = sim.fulfillment_orders(order_id)
    sim.fulfillment_create(
        {
            "lineItemsByFulfillmentOrder": [
                {
                    "fulfillmentOrderId": fo.id,
                    "fulfillmentOrderLineItems": [{"id": fo.line_items[0].id, "quantity": 1}],
                }
            ]
        }
    )
    sim.edit_order(order_id, {"CH-1": 2})
    assert (fo.line_items[0].total_quantity, fo.line_items[0].remaining_quantity) == (2, 1)
    assert stock_of(sim, "CH-1") == (8, 9, 1)
    with pytest.raises(ValueError, match=r"1\.\.4"):
        sim.edit_order(order_id, {"CH-1": 0})  # one unit has shipped
    sim.edit_order(order_id, {"CH-1": 1})
    assert fo.status == "CLOSED"
    assert sim.orders[order_id].display_fulfillment_status == "FULFILLED"
    # units added back once the fulfillment order is closed get a new one
    sim.edit_order(order_id, {"CH-1": 3})
    assert [(f.status, f.line_items[0].remaining_quantity) for f in sim.fulfillment_orders(order_id)] == [
        ("CLOSED", 0),
        ("OPEN", 2),
    ]
    assert sim.orders[order_id].display_fulfillment_status == "PARTIALLY_FULFILLED"
    sim.cancel_order(order_id)
    assert [f.status for f in sim.fulfillment_orders(order_id)] == ["CLOSED", "CANCELLED"]
    assert stock_of(sim, "CH-1") == (9, 9, 0)

    untouched = sim.sell("CH-1", 1)
    sim.cancel_order(untouched)
    assert [f.status for f in sim.fulfillment_orders(untouched)] == ["CANCELLED"]


async def test_financial_and_fulfillment_status_filters(
    sim: ShopifySimulator, client: httpx.AsyncClient, clock: SimClock
) -> None:
    sim.add_product("Chair", [{"sku": "CH-1", "stock": 10}])
    pending = sim.sell("CH-1", 1, financial_status="PENDING")
    paid = sim.sell("CH-1", 2)
    sim.fulfill_order(paid)
    query = (
        "query O($query: String) { orders(first: 10, query: $query) { nodes { id displayFinancialStatus } } }"
    )

    async def found(search: str) -> list[str]:
        return [n["id"] for n in (await gql(client, query, query=search))["data"]["orders"]["nodes"]]

    assert await found("financial_status:paid") == [paid]
    assert await found("financial_status:pending,authorized") == [pending]
    assert await found("fulfillment_status:shipped") == [paid]
    assert await found("fulfillment_status:unfulfilled") == [pending]
    assert await found("financial_status:paid fulfillment_status:unshipped") == []

    clock.advance(60)
    stamp = sim.orders[pending].updated_at
    sim.mark_paid(sim.orders[pending].name)
    assert sim.orders[pending].updated_at > stamp
    assert await found("financial_status:paid") == [pending, paid]
    sim.set_financial_status(pending, "PARTIALLY_REFUNDED")
    assert sim.orders[pending].display_financial_status == "PARTIALLY_REFUNDED"
    with pytest.raises(ValueError, match="financial status"):
        sim.set_financial_status(pending, "SETTLED")
    with pytest.raises(ValueError, match="financial status"):
        sim.sell("CH-1", financial_status="paid")
    with pytest.raises(KeyError):
        sim.mark_paid("#9999")


# --- product writes ------------------------------------------------------------------------------


async def test_create_then_set_variant_fields(sim: ShopifySimulator, client: httpx.AsyncClient) -> None:
    create = """mutation ProductCreate($product: ProductCreateInput!) { productCreate(product: $product) {
      product { id variants(first: 1) { nodes { id inventoryItem { id } } } } userErrors { field message } } }"""
    created = (await gql(client, create, product={"title": "Desk", "status": "DRAFT"}))["data"][
        "productCreate"
    ]
    product_id = created["product"]["id"]
    variant_id = created["product"]["variants"]["nodes"][0]["id"]
    update = """mutation V($productId: ID!, $variants: [ProductVariantsBulkInput!]!) {
      productVariantsBulkUpdate(productId: $productId, variants: $variants) {
        productVariants { sku price barcode inventoryItem { unitCost { amount } measurement { weight { unit value } } } }
        userErrors { code field message } } }"""
    variants = [
        {
            "id": variant_id,
            "price": "499.5",
            "barcode": "5701234567890",
            "inventoryItem": {
                "sku": "DESK-1",
                "cost": "200",
                "measurement": {"weight": {"unit": "KILOGRAMS", "value": 20}},
            },
        }
    ]
    result = (await gql(client, update, productId=product_id, variants=variants))["data"][
        "productVariantsBulkUpdate"
    ]
    assert result["userErrors"] == []
    assert result["productVariants"] == [
        {
            "sku": "DESK-1",
            "price": "499.50",
            "barcode": "5701234567890",
            "inventoryItem": {
                "unitCost": {"amount": "200.00"},
                "measurement": {"weight": {"unit": "KILOGRAMS", "value": 20.0}},
            },
        }
    ]
    bad = [{"id": "gid://shopify/ProductVariant/1", "price": "1"}]
    result = (await gql(client, update, productId=product_id, variants=bad))["data"][
        "productVariantsBulkUpdate"
    ]
    assert result["userErrors"][0]["code"] == "PRODUCT_VARIANT_DOES_NOT_EXIST"
    assert sim.find_by_sku("DESK-1") is not None


# --- over a real socket -------------------------------------------------------------------------


async def test_over_a_real_socket(sim: ShopifySimulator) -> None:
    sim.add_product("Chair", [{"sku": "CH-1", "stock": 4}])
    async with (
        serving(sim.handle, "shopify-sim") as base,
        httpx.AsyncClient(base_url=base, headers={"X-Shopify-Access-Token": DEFAULT_ACCESS_TOKEN}) as http,
    ):
        created = await http.post("/_sim/orders", json={"lines": [{"sku": "CH-1", "quantity": 1}]})
        assert created.status_code == 201
        body = (
            await http.post(GRAPHQL, json={"query": VARIANTS_BY_SKU, "variables": {"query": "sku:CH-1"}})
        ).json()
        assert body["data"]["productVariants"]["edges"][0]["node"]["sku"] == "CH-1"
        state = (await http.get("/_sim/state")).json()
        assert state["stock"]["CH-1"]["Warehouse"] == {"available": 3, "on_hand": 4, "committed": 1}
        assert state["requests"] == {"VariantsBySku": 1}


async def test_control_api_over_a_socket_seeds_sells_sets_faults_and_expires_tokens(
    sim: ShopifySimulator,
) -> None:
    async with serving(sim.handle, "shopify-sim") as base, httpx.AsyncClient(base_url=base) as http:
        seeded = await http.post(
            "/_sim/products",
            json={
                "title": "Lamp",
                "variants": [{"sku": "LA-1", "price": "80.00", "stock": 5}],
                "vendor": "Acme",
            },
        )
        assert seeded.status_code == 201
        ids = seeded.json()
        static = {"X-Shopify-Access-Token": DEFAULT_ACCESS_TOKEN}
        query = {"query": VARIANTS_BY_SKU, "variables": {"query": "sku:LA-1"}}
        found = (await http.post(GRAPHQL, json=query, headers=static)).json()
        node = found["data"]["productVariants"]["edges"][0]["node"]
        assert (node["id"], node["sku"]) == (ids["variant_ids"][0], "LA-1")

        # a customer buys two: the shop commits them, available drops
        sale = await http.post("/_sim/sales", json={"sku": "LA-1", "quantity": 2})
        assert sale.status_code == 201
        assert sale.json()["name"].startswith("#")
        state = (await http.get("/_sim/state")).json()
        assert state["stock"]["LA-1"]["Warehouse"] == {"available": 3, "on_hand": 5, "committed": 2}

        # faults are set and cleared over HTTP
        assert (await http.put("/_sim/faults", json={"error_rate": 1.0, "seed": 3})).status_code == 200
        assert (await http.get("/_sim/faults")).json()["error_rate"] == 1.0
        assert (await http.post(GRAPHQL, json=query, headers=static)).status_code == 503
        assert (await http.put("/_sim/faults", json={})).status_code == 200
        assert (await http.post(GRAPHQL, json=query, headers=static)).status_code == 200

        # a token from the client-credentials grant works until the control API expires it
        grant = await http.post(
            "/admin/oauth/access_token",
            data={
                "grant_type": "client_credentials",
                "client_id": DEFAULT_CLIENT_ID,
                "client_secret": DEFAULT_CLIENT_SECRET,
            },
        )
        issued = {"X-Shopify-Access-Token": grant.json()["access_token"]}
        assert (await http.post(GRAPHQL, json=query, headers=issued)).status_code == 200
        assert (await http.post("/_sim/tokens/expire")).status_code == 200
        assert (await http.post(GRAPHQL, json=query, headers=issued)).status_code == 401
        assert (await http.post(GRAPHQL, json=query, headers=static)).status_code == 200


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("PUT", "/_sim/faults", {"error_rate": 2.0}),
        ("PUT", "/_sim/faults", {"errors": 0.5}),
        ("PUT", "/_sim/faults", [1]),
        ("POST", "/_sim/products", {"variants": []}),
        ("POST", "/_sim/products", {"title": "X", "variants": [{"colour": "red"}]}),
        ("POST", "/_sim/sales", {"sku": "NO-SUCH-SKU"}),
        ("POST", "/_sim/fulfillments", {"order": "#9999"}),
        ("GET", "/_sim/fulfillments", None),
        ("POST", "/_sim/payments", {"order": "#9999", "status": "PAID"}),
        ("POST", "/_sim/holds", {}),
        ("DELETE", "/_sim/holds", {"order": "#9999"}),
        ("POST", "/_sim/moves", {"order": "#9999", "location_id": "gid://shopify/Location/1"}),
    ],
)
async def test_control_api_refuses_what_it_cannot_do(
    sim: ShopifySimulator, method: str, path: str, body: object
) -> None:
    async with serving(sim.handle, "shopify-sim") as base, httpx.AsyncClient(base_url=base) as http:
        answer = await http.request(method, path, json=body)
        assert answer.status_code == 422
        assert answer.json()["error"]
        assert (await http.get("/_sim/nothing-here")).status_code == 404
    assert sim.faults.error_rate == 0.0
    assert len(sim.products) == 0


async def test_control_api_pays_holds_moves_and_fulfils_orders(sim: ShopifySimulator) -> None:
    sim.add_product("Lamp", [{"sku": "LA-1", "stock": 5}])
    store = sim.add_location("Store")
    async with serving(sim.handle, "shopify-sim") as base, httpx.AsyncClient(base_url=base) as http:
        sale = await http.post(
            "/_sim/sales", json={"sku": "LA-1", "quantity": 2, "financial_status": "PENDING"}
        )
        order = sale.json()["name"]
        assert sim.orders[sale.json()["id"]].display_financial_status == "PENDING"

        paid = await http.post("/_sim/payments", json={"order": order})
        assert (paid.status_code, paid.json()["display_financial_status"]) == (200, "PAID")
        held = await http.post("/_sim/holds", json={"order": order})
        assert held.json()["display_fulfillment_status"] == "ON_HOLD"
        released = await http.request("DELETE", "/_sim/holds", json={"order": order})
        assert [fo["status"] for fo in released.json()["fulfillment_orders"]] == ["OPEN"]
        moved = await http.post("/_sim/moves", json={"order": order, "location_id": store})
        assert moved.json()["ids"] == [fo.id for fo in sim.fulfillment_orders(order)]
        assert sim.committed("LA-1", store) == 2

        made = await http.post("/_sim/fulfillments", json={"order": order})
        assert made.status_code == 201
        listed = (await http.get("/_sim/fulfillments", params={"order": order})).json()
        assert listed == [
            {
                "id": made.json()["ids"][0],
                "name": f"{order}.1",
                "location_id": store,
                "quantities": {"LA-1": 2},
                "tracking": {"company": None, "number": None, "url": None},
                "notify_customer": False,
                "tracking_updates": [],
            }
        ]
        assert (await http.get("/_sim/state")).json()["fulfillments"] == 1


# --- Shopify's published schema ---------------------------------------------------------------


async def test_daemon_documents_run_against_the_real_schema(sim: ShopifySimulator, clock: SimClock) -> None:
    """Every document the daemon sends validates against Shopify's schema and runs here cleanly."""
    from daemon.shopify_documents import ALL_DOCUMENTS, BULK_QUERIES, PAGE_SIZES, bulk_variants_query
    from tests.shopify_schema import require_admin_schema

    sim.validate_schema = require_admin_schema()
    chair = sim.add_product("Chair", [{"sku": "CH-1", "price": "125.00", "stock": 5}])
    order_id = sim.sell("CH-1", 2, shipping_price="49.00")
    (shipped_id,) = sim.fulfill_order(sim.sell("CH-1", 1))  # shipping moves on hand, not available
    (fo,) = sim.fulfillment_orders(order_id)
    ids_by_document = {
        "ORDER_LINE_ITEMS": order_id,
        "ORDER_FULFILMENT": order_id,
        "ORDER_FULFILLMENT_ORDERS": order_id,
        "ORDER_FULFILLMENTS": order_id,
        "FULFILLMENT_ORDER_LINE_ITEMS": fo.id,
        "PRODUCT_BY_VARIANT": chair.variant_ids[0],
    }
    item = chair.inventory_item_ids[0]
    tracking = {"company": "DHL", "number": "JD0001", "url": "https://track.example/JD0001"}
    variables: dict[str, dict[str, Any]] = {
        "SET_STOCK": {"input": stock_input(quantity(sim, item, 9, 2)), "key": "contract-1"},
        "FULFILLMENT_CREATE": {
            "fulfillment": {
                "lineItemsByFulfillmentOrder": [
                    {
                        "fulfillmentOrderId": fo.id,
                        "fulfillmentOrderLineItems": [{"id": fo.line_items[0].id, "quantity": 1}],
                    }
                ],
                "notifyCustomer": False,
                "trackingInfo": tracking,
            }
        },
        "FULFILLMENT_TRACKING_UPDATE": {
            "fulfillmentId": shipped_id,
            "trackingInfoInput": tracking,
            "notifyCustomer": True,
        },
        "PRODUCT_CREATE": {"product": {"title": "Desk", "descriptionHtml": "<p>Oak</p>", "status": "DRAFT"}},
        "PRODUCT_UPDATE": {"product": {"id": chair.product_id, "title": "Armchair"}},
        "VARIANTS_BULK_UPDATE": {
            "productId": chair.product_id,
            "variants": [{"id": chair.variant_ids[0], "price": "130.00", "inventoryItem": {"sku": "CH-1"}}],
        },
        "INVENTORY_LEVELS": {"ids": list(chair.inventory_item_ids), "locationId": sim.primary_location_id},
        "ORDERS_BY_IDS": {"ids": [order_id]},
        "PRODUCTS_BY_IDS": {"ids": [chair.product_id]},
        "VARIANTS_BY_SKU": {"query": "sku:'CH-1'"},
        "BULK_RUN_QUERY": {"query": bulk_variants_query(sim.primary_location_id)},
    }
    async with httpx.AsyncClient(
        transport=httpx.MockTransport(sim.handle),
        base_url="https://sim-shop.myshopify.com",
        headers={"X-Shopify-Access-Token": DEFAULT_ACCESS_TOKEN},
    ) as http:
        for name, document in ALL_DOCUMENTS.items():
            if name in BULK_QUERIES:
                continue  # sent as BULK_RUN_QUERY's text (tests/test_bulk.py runs them)
            values = dict(variables.get(name, {}))
            if "$first" in document:
                values["first"] = PAGE_SIZES.get(name, 10)
            if "$id" in document:
                values["id"] = ids_by_document.get(name, chair.product_id)
            clock.advance(10)  # keep the bucket full: this test is about validity, not cost
            body = await gql(http, document, **values)
            assert "errors" not in body, (name, body["errors"])
            assert body["extensions"]["cost"]["requestedQueryCost"] <= 1000, name
            assert None not in body["data"].values(), name  # every id found
            if name == "BULK_RUN_QUERY":
                assert body["data"]["bulkOperationRunQuery"]["userErrors"] == []
                ids_by_document["BULK_OPERATION"] = body["data"]["bulkOperationRunQuery"]["bulkOperation"][
                    "id"
                ]
    assert sim.available("CH-1") == 9
    assert [f.tracking for f in sim.fulfillments(order_id)] == [
        ("DHL", "JD0001", "https://track.example/JD0001")
    ]


# --- bulk operations ---------------------------------------------------------------------------

BULK_PRODUCTS = "query { products { edges { node { id title variants { edges { node { id sku } } } } } } }"


async def bulk_state(client: httpx.AsyncClient, op: str) -> dict[str, Any]:
    body = await gql(client, docs.BULK_OPERATION, id=op)
    state: dict[str, Any] = body["data"]["bulkOperation"]
    return state


async def test_a_bulk_query_runs_on_the_clock_and_its_file_is_served(
    sim: ShopifySimulator, client: httpx.AsyncClient, clock: SimClock
) -> None:
    sim.bulk_objects_per_second = 10
    products = [sim.add_product(f"P{n}", [{"sku": f"A-{n}"}, {"sku": f"B-{n}"}]) for n in range(3)]
    body = await gql(client, docs.BULK_RUN_QUERY, query=BULK_PRODUCTS)
    started = body["data"]["bulkOperationRunQuery"]
    assert started["userErrors"] == []
    assert started["bulkOperation"]["status"] == "CREATED"
    assert body["extensions"]["cost"]["actualQueryCost"] <= 20  # a flat few points, however large
    op = started["bulkOperation"]["id"]
    clock.advance(1.5)  # start-up 1 s, then 10 objects a second
    running = await bulk_state(client, op)
    assert (running["status"], running["objectCount"], running["url"]) == ("RUNNING", "5", None)
    clock.advance(0.5)  # 9 objects: 1 s + 0.9 s
    done = await bulk_state(client, op)
    assert (done["status"], done["objectCount"], done["rootObjectCount"]) == ("COMPLETED", "9", "3")
    assert done["url"].startswith("https://sim-shop.myshopify.com/_bulk/")
    async with httpx.AsyncClient(transport=httpx.MockTransport(sim.handle)) as anonymous:  # no token
        response = await anonymous.get(done["url"])
    assert response.status_code == 200
    assert int(done["fileSize"]) == len(response.content)
    lines = [json.loads(line) for line in response.text.splitlines()]
    assert len(lines) == 9
    for product in products:
        (row,) = [r for r in lines if r["id"] == product.product_id]
        assert "variants" not in row  # nested rows come separately
        assert "__parentId" not in row
        children = [r["id"] for r in lines if r.get("__parentId") == product.product_id]
        assert children == list(product.variant_ids)


async def test_bulk_queries_refused(
    sim: ShopifySimulator, client: httpx.AsyncClient, clock: SimClock
) -> None:
    sim.add_product("P", [{"sku": "A"}])

    async def errors(query: str) -> list[dict[str, Any]]:
        body = await gql(client, docs.BULK_RUN_QUERY, query=query)
        result: list[dict[str, Any]] = body["data"]["bulkOperationRunQuery"]["userErrors"]
        return result

    assert (await errors("query { productz { edges { node { id } } } }"))[0]["code"] == "INVALID"
    assert (await errors('query { product(id: "gid://shopify/Product/1") { id } }'))[0]["code"] == "INVALID"
    sim.bulk_query_limit = 1  # API versions before 2026-01: one at a time
    assert await errors(BULK_PRODUCTS) == []
    (busy,) = await errors(BULK_PRODUCTS)
    assert busy["code"] == "OPERATION_IN_PROGRESS"
    assert "already in progress" in busy["message"]
    clock.advance(10)  # the first one completed: the shop may start another
    assert await errors(BULK_PRODUCTS) == []


async def test_bulk_faults_fail_expire_and_lose_an_operation(
    sim: ShopifySimulator, client: httpx.AsyncClient, clock: SimClock
) -> None:
    sim.add_product("P", [{"sku": "A"}])
    ops = []
    for _ in range(3):
        body = await gql(client, docs.BULK_RUN_QUERY, query=BULK_PRODUCTS)
        ops.append(body["data"]["bulkOperationRunQuery"]["bulkOperation"]["id"])
    clock.advance(10)
    url = (await bulk_state(client, ops[1]))["url"]
    sim.fail_bulk_operation(ops[0], "ACCESS_DENIED")
    sim.expire_bulk_operation(ops[1])
    sim.lose_bulk_operation(ops[2])
    failed = await bulk_state(client, ops[0])
    assert (failed["status"], failed["errorCode"], failed["url"]) == ("FAILED", "ACCESS_DENIED", None)
    expired = await bulk_state(client, ops[1])
    assert (expired["status"], expired["url"]) == ("EXPIRED", None)
    assert (await client.get(url)).status_code == 404
    body = await gql(client, docs.BULK_OPERATION, id=ops[2])
    assert body["data"]["bulkOperation"] is None
