"""An order import on a flaky line: every third draft-create answer is lost (in-process simulators).

``ORDERS`` new Shopify orders (seven customers); the answer of every third ``POST
/orders/drafts`` is cut off after Rackbeat applied it — a truncated body, a reset
connection, a read timeout in turn. Cycles are run as the runner runs them: after a failed
cycle it waits its backoff (:func:`daemon.retry.backoff_delay` from 30 s, the middle of
its jitter), after a good one the poll interval. Counted until every order is in
Rackbeat: cycles, failed cycles, requests to both APIs, and simulated seconds. Time is
simulated (no sleeping).

    python -m bench.lost_answers [ORDERS]
"""

from __future__ import annotations

import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from bench import Row, bench_settings, run_alone
from bench.sims import Sims
from daemon.errors import RetriableError
from daemon.retry import backoff_delay
from daemon.store import Store

#: the poll interval, and the base of the runner's backoff after a failed cycle (15–30 s first)
POLL_SECONDS = 30.0
#: cycles after which the measurement gives up (far more than the old behaviour needed)
MAX_CYCLES = 500


async def measure(orders: int = 40) -> dict[str, Any]:
    """Import ``orders`` orders while every third draft answer is lost; count what it took."""
    sims = Sims(datetime(2026, 11, 1, 10, 0, tzinfo=UTC))
    clock, shopify_sim, rackbeat_sim = sims.clock, sims.shopify, sims.rackbeat
    for sku, price in (("MUG-1", "125.00"), ("TEE-2", "250.00")):
        shopify_sim.add_product(f"Product {sku}", [{"sku": sku, "price": price}])
        rackbeat_sim.add_product(sku, stock=10 * orders)
    rackbeat_sim.add_product("frakt", "Frakt")
    drafts = 0
    lost = 0

    async def route(request: httpx.Request) -> httpx.Response:
        nonlocal drafts, lost
        if request.url.host == "shopify.sim":
            return await shopify_sim.handle(request)
        response = await rackbeat_sim.handle(request)
        if request.method == "POST" and request.url.path.endswith("/orders/drafts"):
            drafts += 1
            if drafts % 3 == 1:  # applied by Rackbeat; the answer never arrives whole
                lost += 1
                if lost % 3 == 1:
                    return httpx.Response(response.status_code, content=response.content[:20])
                if lost % 3 == 2:
                    raise httpx.ReadError("connection reset by peer", request=request)
                raise httpx.ReadTimeout("timed out", request=request)
        return response

    with tempfile.TemporaryDirectory() as tmp:
        settings = bench_settings(
            Path(tmp) / "sync.db", rackbeat_requests_per_minute=10_000, sync_poll_seconds=POLL_SECONDS
        )
        store = await Store.open(settings.sync_db, settings.shop)
        try:
            async with httpx.AsyncClient(transport=httpx.MockTransport(route)) as http:
                shopify, rackbeat = sims.clients(settings, http)
                flow = sims.orders_flow(settings, store, shopify, rackbeat)
                await flow.run_once()  # first start: the cursor is "now"
                clock.advance(1)
                for n in range(orders):
                    shopify_sim.sell(
                        "MUG-1" if n % 2 else "TEE-2", 1 + n % 3, email=f"buyer{n % 7}@example.com"
                    )
                clock.advance(POLL_SECONDS)
                started = clock.monotonic()
                before = shopify.requests + rackbeat.requests
                cycles = failed = in_a_row = 0
                while cycles < MAX_CYCLES:
                    cycles += 1
                    try:
                        await flow.run_once()
                    except RetriableError:
                        failed += 1
                        in_a_row += 1
                        clock.advance(backoff_delay(in_a_row, POLL_SECONDS, lambda: 0.5))
                        continue
                    in_a_row = 0
                    done = await store.fetchval("SELECT COUNT(*) FROM order_ledger WHERE state = 'done'")
                    if done == orders:
                        break
                    clock.advance(POLL_SECONDS)
                references = [o.your_reference for o in rackbeat_sim.orders]
                return {
                    "orders": orders,
                    "lost": lost,
                    "cycles": cycles,
                    "failed": failed,
                    "requests": shopify.requests + rackbeat.requests - before,
                    "seconds": clock.monotonic() - started,
                    "in_rackbeat": len(set(references)),
                    "twins": len(references) - len(set(references)),
                }
        finally:
            await store.close()


async def run(size: int | None = None) -> list[Row]:
    """The bench runner's entry point."""
    m = await measure(size or 40)
    what = f"{m['orders']} orders, {m['lost']} draft answers lost"
    return [
        ("lost answers", f"orders cycles (failed), {what}", f"{m['cycles']} ({m['failed']})", "cycles"),
        ("lost answers", f"requests, {what}", m["requests"], "requests (both APIs)"),
        ("lost answers", f"simulated time, {what}", round(m["seconds"]), "seconds (runner backoff included)"),
        ("lost answers", "orders in Rackbeat / twins", f"{m['in_rackbeat']} / {m['twins']}", "orders"),
    ]


def main() -> None:
    """``python -m bench.lost_answers [ORDERS]``."""
    run_alone(run)


if __name__ == "__main__":
    main()
