"""Both clients read a 5,000-product catalogue through a faulty API, each record exactly once.

The simulators run behind real loopback sockets (the daemon's own HTTP server), so the
clients' ``httpx`` stack, connection reuse and the bytes on the wire are the real ones.
The simulators draw seeded faults: on Shopify 30 % of requests are throttled, in bursts,
half of the bursts as HTTP 429 and half as ``THROTTLED`` with HTTP 200 and the bucket's
``throttleStatus`` (the client must compute its wait from it); 10 % fail with a 5xx. On
Rackbeat 10 % fail with a 5xx. Shopify's own cost bucket (Standard plan) throttles on
top. Time is simulated: the clients' ``sleep`` moves the clock the simulators read, so
every backoff and bucket wait is honoured without waiting. Shopify documents are
validated against Shopify's published schema as well.
"""

from __future__ import annotations

import collections
import itertools
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
from tests.harness import serving

pytestmark = pytest.mark.anyio

CATALOGUE = 5000
THROTTLES = {"fault_throttle", "fault_cost_throttle"}


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
    sim.faults = Faults(
        error_rate=0.10, throttle_rate=0.30, throttle_burst=3, cost_throttle_share=0.5, seed=2026
    )
    async with serving(sim.handle, "shopify-sim") as base, httpx.AsyncClient() as http:
        client = ShopifyClient(
            http,
            graphql_url=f"{base}/admin/api/2026-10/graphql.json",
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
    # the faults were really met, in bursts of both kinds, and each was waited out
    outcomes = [record.outcome for record in sim.request_log]
    counts = collections.Counter(outcomes)
    assert counts["fault_error"] > 0
    assert counts["fault_throttle"] > 0
    assert counts["fault_cost_throttle"] > 0
    throttled = counts["fault_throttle"] + counts["fault_cost_throttle"]
    assert 0.25 <= throttled / len(outcomes) <= 0.35  # about 30 % of Shopify requests
    assert 0.07 <= counts["fault_error"] / len(outcomes) <= 0.13  # about 10 %
    runs = [
        len(list(run)) for throttled, run in itertools.groupby(outcomes, THROTTLES.__contains__) if throttled
    ]
    assert max(runs) >= 2
    assert client.retries > 0
    assert client.throttled >= throttled
    # a cost throttle is waited out by the bucket's own arithmetic: after it, the resend
    # finds enough points (it is never throttled by the real bucket straight after)
    after_cost = [b for a, b in itertools.pairwise(outcomes) if a == "fault_cost_throttle"]
    assert "throttled" not in after_cost
    assert client.throttle_wait_seconds > 0


async def test_rackbeat_products_each_read_exactly_once_through_5xx() -> None:
    clock = SimClock()
    sim = RackbeatSimulator(
        now=clock.now, monotonic=clock.monotonic, sleep=clock.sleep, request_log_size=10_000
    )
    expected = {f"SKU-{n:05}" for n in range(CATALOGUE)}
    for number in sorted(expected):
        sim.add_product(number, stock=1)
    sim.faults = Faults(error_rate=0.10, seed=2026)
    async with serving(sim.handle, "rackbeat-sim") as base, httpx.AsyncClient() as http:
        client = RackbeatClient(
            http,
            base_url=f"{base}/api",
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
