"""Both clients read a 5,000-product catalogue through a faulty API, each record exactly once.

The simulators draw seeded faults: on Shopify 30 % of requests are throttled (429) and
10 % fail with a 5xx; on Rackbeat 10 % fail with a 5xx. Shopify's own cost bucket
(Standard plan) throttles on top. Time is simulated: the clients' ``sleep`` moves the
clock the simulators read, so every backoff and bucket wait is honoured without waiting.
Shopify documents are validated against Shopify's published schema as well.
"""

from __future__ import annotations

import collections
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from daemon.rackbeat import RackbeatClient
from daemon.shopify import ShopifyClient
from daemon.sim.faults import Faults
from daemon.sim.rackbeat import DEFAULT_TOKEN as RACKBEAT_TOKEN
from daemon.sim.rackbeat import RackbeatSimulator
from daemon.sim.shopify import DEFAULT_ACCESS_TOKEN as SHOPIFY_TOKEN
from daemon.sim.shopify import ShopifySimulator, SimClock

pytestmark = pytest.mark.anyio

CATALOGUE = 5000


async def test_shopify_products_each_read_exactly_once_through_throttles_and_5xx(
    shopify_schema: Any,
) -> None:
    clock = SimClock()
    sim = ShopifySimulator(
        now=clock.now,
        monotonic=clock.monotonic,
        sleep=clock.sleep,
        validate_schema=shopify_schema,
        request_log_size=10_000,
    )
    expected = {
        sim.add_product(f"Product {n}", [{"sku": f"SKU-{n:05}"}]).product_id for n in range(CATALOGUE)
    }
    sim.faults = Faults(error_rate=0.10, throttle_rate=0.30, seed=2026)
    async with httpx.AsyncClient(transport=httpx.MockTransport(sim.handle)) as http:
        client = ShopifyClient(
            http,
            graphql_url="http://shopify.sim/admin/api/2026-10/graphql.json",
            access_token=SecretStr(SHOPIFY_TOKEN),
            sleep=clock.sleep,
            clock=clock.monotonic,
        )
        seen = collections.Counter(
            [product["id"] async for page in client.products_updated_since(None) for product in page]
        )
    assert len(seen) == CATALOGUE
    assert set(seen) == expected
    assert set(seen.values()) == {1}
    # the faults were really met, and every one was retried within the same read
    outcomes = collections.Counter(record.outcome for record in sim.request_log)
    assert outcomes["fault_error"] > 0
    assert outcomes["fault_throttle"] > 0
    assert client.retries > 0
    assert client.throttled > 0


async def test_rackbeat_products_each_read_exactly_once_through_5xx() -> None:
    clock = SimClock()
    sim = RackbeatSimulator(
        now=clock.now, monotonic=clock.monotonic, sleep=clock.sleep, request_log_size=10_000
    )
    expected = {f"SKU-{n:05}" for n in range(CATALOGUE)}
    for number in sorted(expected):
        sim.add_product(number, stock=1)
    sim.faults = Faults(error_rate=0.10, seed=2026)
    async with httpx.AsyncClient(transport=httpx.MockTransport(sim.handle)) as http:
        client = RackbeatClient(
            http,
            base_url="http://rackbeat.sim/api",
            token=SecretStr(RACKBEAT_TOKEN),
            contact_email="ops@example.com",
            sleep=clock.sleep,
            clock=clock.monotonic,
        )
        seen = collections.Counter([product.number async for page in client.products() for product in page])
    assert len(seen) == CATALOGUE
    assert set(seen) == expected
    assert set(seen.values()) == {1}
    assert client.retries > 0
    assert any(record.note == "fault_error" for record in sim.request_log)
