"""Building the SKU index of a large shop: 50,000 SKUs read from the Shopify simulator,
page by page and by one bulk query (:mod:`daemon.bulk`), and where one overtakes the other.

The simulator runs in-process at the Standard plan's limits (bucket 2,000 points,
100 points/s). Two times are reported: the wall-clock seconds the build takes on this
machine with throttle waits fast-forwarded (the daemon's own work plus the in-process
simulator's), and the simulated seconds including the waits Shopify's bucket imposes —
what a real Standard-plan shop would take. Peak RSS is measured from just before the
shop is created, so it includes the simulator holding 50,000 products.

The bulk build's simulated time rests on the simulator's assumed bulk speed
(``bulk_objects_per_second``, 500 by default, plus a second's start-up), not on a figure
Shopify publishes; its requests and points are Shopify's rules.

    python -m bench.index [SKUS]        # SKUS defaults to 50,000
"""

from __future__ import annotations

import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from bench import Row, bench_settings, current_rss_mb, peak_rss_mb, reset_peak_rss, run_alone
from bench.stock import (
    BUCKET_POINTS,
    RESTORE_PER_SECOND,
    BenchClock,
    Transport,
    fast_handles,
)
from daemon.index import SkuIndex
from daemon.shopify import ShopifyClient
from daemon.sim.shopify import ShopifySimulator
from daemon.store import Store


async def measure(skus: int = 50_000, *, bulk: bool = False) -> dict[str, Any]:
    """Create a shop of ``skus`` single-variant products, then build the index once:
    page by page, or (``bulk``) by one bulk query that also reads the stock location's levels."""
    reset_peak_rss()
    clock = BenchClock(datetime.now(UTC) - timedelta(days=1))
    shopify_sim = ShopifySimulator(
        now=clock.now,
        monotonic=clock.monotonic,
        sleep=clock.sleep,
        bucket_size=BUCKET_POINTS,
        restore_rate=RESTORE_PER_SECOND,
        request_log_size=10,
    )
    fast_handles(shopify_sim)
    for n in range(skus):
        shopify_sim.add_product(f"Product {n}", [{"sku": f"SKU-{n:06}", "price": "100.00"}])
    clock.advance(3600)
    shop_rss = current_rss_mb()

    transport = Transport(shopify_sim)
    with tempfile.TemporaryDirectory() as tmp:
        settings = bench_settings(Path(tmp) / "sync.db")
        store = await Store.open(settings.sync_db, settings.shop)
        try:
            async with httpx.AsyncClient(transport=httpx.MockTransport(transport.route)) as http:
                shopify = ShopifyClient.from_settings(
                    settings, http, sleep=clock.sleep, clock=clock.monotonic
                )
                location = shopify_sim.primary_location_id

                async def levels_at() -> str:
                    return location

                index = SkuIndex(
                    store,
                    shopify,
                    clock=clock.now,
                    monotonic=clock.monotonic,
                    levels_at=levels_at if bulk else None,
                    bulk_from=0 if bulk else 10**12,
                )
                started, simulated = time.perf_counter(), clock.monotonic()
                variants = await index.build()
                seconds = time.perf_counter() - started
                daemon_seconds = seconds - transport.simulator_seconds
                simulated = clock.monotonic() - simulated
                indexed = len(await index.entries())
        finally:
            await store.close()
    return {
        "skus": skus,
        "variants": variants,
        "indexed": indexed,
        "seconds": seconds,
        "daemon_seconds": daemon_seconds,
        "simulated_seconds": simulated,
        "requests": sum(shopify_sim.requests.values()),
        "points": shopify.cost_spent,
        "shop_rss_mb": shop_rss,
        "peak_rss_mb": peak_rss_mb(),
    }


async def run(size: int | None = None) -> list[Row]:
    """The bench runner's entry point; ``size`` is the number of SKUs (default 50,000)."""
    m = await measure(size or 50_000)
    b = await measure(size or 50_000, bulk=True)
    n = m["skus"]
    return [
        (
            "index",
            f"bulk build for {n} SKUs (+ levels), Standard plan",
            round(b["simulated_seconds"], 1),
            f"s simulated (paged: {round(m['simulated_seconds'], 1)} s)",
        ),
        (
            "index",
            "Shopify requests / points, bulk build",
            f"{b['requests']} / {b['points']}",
            f"requests / points (paged: {m['requests']} / {m['points']})",
        ),
        ("index", "variants indexed by bulk", f"{b['indexed']} of {b['variants']}", "rows"),
        ("index", "bulk build, this machine", round(b["seconds"], 1), "s wall clock (waits skipped)"),
        (
            "index",
            f"peak RSS at {n} SKUs, bulk build",
            round(b["peak_rss_mb"], 1),
            "MiB (incl. the simulator's shop and file)",
        ),
        (
            "index",
            f"build for {n} SKUs, this machine",
            round(m["seconds"], 1),
            "s wall clock (throttle waits skipped)",
        ),
        (
            "index",
            "of which outside the simulator (client, index, SQLite)",
            round(m["daemon_seconds"], 2),
            "s (the rest: the simulator)",
        ),
        (
            "index",
            f"build for {n} SKUs, Standard plan",
            round(m["simulated_seconds"], 1),
            "s simulated (incl. waits at 100 points/s)",
        ),
        ("index", "Shopify requests for the build", m["requests"], "requests"),
        ("index", "variants indexed", f"{m['indexed']} of {m['variants']}", "rows"),
        ("index", f"peak RSS at {n} SKUs", round(m["peak_rss_mb"], 1), "MiB (incl. the simulator's shop)"),
        ("index", "RSS of the simulated shop alone", round(m["shop_rss_mb"], 1), "MiB (before the build)"),
    ]


def main() -> None:
    """``python -m bench.index [SKUS]``."""
    run_alone(run)


if __name__ == "__main__":
    main()
