"""What ``check --live`` costs on a big account (in-process simulators).

A Rackbeat account of :data:`FULL_SIZE` products (with customers, orders carrying a
``your_reference`` and a shipped order, so that every fact can be proven) and one shop:
the requests ``check --live`` sends to each API, and the wall time of the probe against
in-process simulators (no network latency: on a live account add the round trips).
Goal (issue 15): at most :data:`GOAL` requests in total, whatever the catalogue's size.

    python -m bench.live_check [SKUS]
"""

from __future__ import annotations

import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from bench import Row, bench_settings, run_alone
from bench.sims import Sims
from daemon.live_check import Outcome, live_check

#: products of the full run (``python -m bench``)
FULL_SIZE = 10_000
#: requests ``check --live`` may send in total (both APIs)
GOAL = 30


async def measure(skus: int = FULL_SIZE) -> dict[str, Any]:
    """Seed an account of ``skus`` products, run the probes once; requests and wall time."""
    sims = Sims(datetime.now(UTC))
    sims.seed(skus, stock=5)
    rackbeat = sims.rackbeat
    customer = rackbeat.add_customer("Åsa Öberg", "asa@example.se")
    for n in range(3):
        number = rackbeat.place_order(customer, [(f"SKU-{n:05}", 1)], book=True)
        rackbeat.order(number).your_reference = f"#{1001 + n}"
    rackbeat.ship(number, carrier="PostNord", tracking="TT1")
    rackbeat.reset_counts()
    sims.shopify.reset_requests()
    with tempfile.TemporaryDirectory() as tmp:
        settings = bench_settings(Path(tmp) / "sync.db", rackbeat_requests_per_minute=10_000)
        async with httpx.AsyncClient(transport=httpx.MockTransport(sims.route)) as http:
            shopify, client = sims.clients(settings, http)
            started = time.perf_counter()
            report = await live_check(client, [(None, settings, shopify)], now=sims.clock.now())
            seconds = time.perf_counter() - started
    return {
        "skus": skus,
        "rackbeat": rackbeat.request_total(),
        "shopify": sum(sims.shopify.requests.values()),
        "seconds": seconds,
        "confirmed": sum(1 for r in report.results if r.outcome is Outcome.CONFIRMED),
        "facts": len(report.results),
        "routes": dict(rackbeat.requests),
    }


def table(m: dict[str, Any]) -> list[Row]:
    """The rows of :func:`measure`'s figures."""
    n = m["skus"]
    total = m["rackbeat"] + m["shopify"]
    return [
        ("live check", f"requests, {n:,} products: Rackbeat", m["rackbeat"], "requests (GET only)"),
        ("live check", f"requests, {n:,} products: Shopify", m["shopify"], "queries (one per shop)"),
        ("live check", f"requests, {n:,} products: total", total, f"requests (goal <= {GOAL})"),
        ("live check", f"facts confirmed, {n:,} products", m["confirmed"], f"of {m['facts']}"),
        ("live check", f"wall time, {n:,} products", round(m["seconds"], 2), "s (in-process simulators)"),
    ]


async def run(size: int | None = None) -> list[Row]:
    """The bench's rows (``size`` products; default :data:`FULL_SIZE`)."""
    return table(await measure(size or FULL_SIZE))


if __name__ == "__main__":
    run_alone(run)
