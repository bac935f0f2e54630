"""What ``/healthz`` says when the daemon cannot do its work (issue 17), in simulated time.

Each scenario runs the flows of one shop under the daemon's :class:`~daemon.runner.Runner`
against the in-process simulators, one poll interval (60 s) of simulated time per round,
and reads :func:`~daemon.health.health_document` after every round:

- **stock storm**: S10 = a list, and Rackbeat answers 404 for every product's per-location
  stock (a wrong path). Rounds until the stock flow is ``fail``, records parked, SKUs
  pushed; then the path answers again: rounds until every SKU shows its stock.
- **orders storm**: Rackbeat refuses every draft order with the same 422. Rounds until the
  orders flow is ``fail``, orders parked; then it takes them: rounds until all are imported.
- **skipped orders**: orders created before ``SYNC_ORDERS_SINCE`` and edited after it. Log
  lines at info or above about them over three rounds, and whether one names the setting.
- **quiet hour**: a synced shop where nothing happens for an hour: rounds that are not ``pass``.

The faults are the bench's own (answers it puts in front of the simulators), so that the
same file measures the code before this work (the baseline in the README and the note).

    python -m bench.health [SKUS]
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import httpx
from structlog.testing import capture_logs

from bench import Row, bench_settings, run_alone
from bench.sims import Sims
from bench.stock import stock_and_orders
from daemon.flows.fulfilments import FulfilmentsFlow
from daemon.flows.products import ProductsFlow
from daemon.health import health_document
from daemon.metrics import Metrics
from daemon.runner import Flow, FlowSchedules, Runner
from daemon.shutdown import Shutdown
from daemon.store import Store

#: products of the full run; orders are a fifth of them
FULL_SIZE = 500
#: the Rackbeat location of S10 = a list
LOCATION = "1"
#: rounds run with the fault in place, and at most after it is gone
FAULT_ROUNDS = 6
RECOVERY_ROUNDS = 20
#: a draft refused the same way for every order (a reference Rackbeat does not know)
REFUSED = {
    "message": "The selected our reference is invalid.",
    "errors": {"our_reference": ["The selected our reference is invalid."]},
}
PER_LOCATION = re.compile(r"/(products|items)/[^/]+/locations")


class Lockstep:
    """The runner's sleep on the simulated clock: once every flow loop rests, ``on_round``
    runs and the clock jumps to the earliest wake-up (a stop wakes every loop)."""

    def __init__(self, sims: Sims, loops: int, on_round: Callable[[], None]) -> None:
        self.sims = sims
        self.loops = loops
        self.on_round = on_round
        self.stopping = False
        self._waiting: list[tuple[float, anyio.Event]] = []

    async def sleep(self, seconds: float) -> None:
        entry = (self.sims.clock.monotonic() + seconds, anyio.Event())
        self._waiting.append(entry)
        try:
            if len(self._waiting) == self.loops:
                self._advance()
            await entry[1].wait()
        finally:
            if entry in self._waiting:
                self._waiting.remove(entry)

    def _advance(self) -> None:
        self.on_round()
        if self.stopping:
            due = list(self._waiting)
        else:
            earliest = min(wake for wake, _ in self._waiting)
            self.sims.clock.advance(max(0.0, earliest - self.sims.clock.monotonic()))
            due = [entry for entry in self._waiting if entry[0] <= earliest]
        for entry in due:
            self._waiting.remove(entry)
            entry[1].set()


@dataclass
class Shop:
    """One shop's flows on the simulators, with a fault the bench can put in front."""

    sims: Sims
    store: Store
    flows: list[Flow]
    requests: FlowSchedules
    #: answers the bench gives instead of the simulators' (None: the simulators answer)
    fault: Callable[[httpx.Request], httpx.Response | None] = lambda _: None
    #: ``/healthz`` after each round
    health: list[dict[str, Any]] = field(default_factory=list)

    async def route(self, request: httpx.Request) -> httpx.Response:
        answer = self.fault(request)
        return answer if answer is not None else await self.sims.route(request)

    def status(self, flow: str) -> list[str]:
        """The flow's status after each round."""
        return [doc["checks"][f"{flow}:lag"][0]["status"] for doc in self.health]

    def overall(self) -> list[str]:
        return [doc["status"] for doc in self.health]

    async def rounds(self, n: int, *, until: Callable[[], bool] | None = None) -> int:
        """Run the flows for ``n`` rounds (fewer once ``until`` holds); how many ran."""
        start = len(self.health)
        shutdown = Shutdown()
        runner: Runner

        def on_round() -> None:
            self.health.append(health_document(runner, "bench"))
            if len(self.health) - start >= n or (until is not None and until()):
                shutdown.request()
                lockstep.stopping = True

        lockstep = Lockstep(self.sims, len(self.flows), on_round)
        runner = Runner(
            self.flows,
            store=self.store,
            metrics=Metrics(),
            poll_seconds=60,
            shutdown=shutdown,
            requests=self.requests,
            sleep_until_stop=lockstep.sleep,
        )
        with anyio.fail_after(600):
            await runner.run()
        return len(self.health) - start


@asynccontextmanager
async def shop(skus: int, *, since: timedelta = timedelta(0), **settings: Any) -> AsyncIterator[Shop]:
    """A shop of ``skus`` products on both sides, 5 units each at :data:`LOCATION`, Shopify
    at 0; its orders, stock, products and fulfilments flows on the simulated clock, the
    runner's cycle requests between them; orders imported from ``since`` after now."""
    start = datetime.now(UTC) - timedelta(days=1)
    sims = Sims(start)
    sims.seed(skus, stock=0)
    for n in range(skus):
        sims.rackbeat.goods_receipt(f"SKU-{n:05}", 5, LOCATION)
    sims.clock.advance(3600)
    with tempfile.TemporaryDirectory() as tmp:
        config = bench_settings(
            Path(tmp) / "sync.db",
            rackbeat_requests_per_minute=10_000,
            sync_orders_since=sims.clock.now() + since,
            **settings,
        )
        store = await Store.open(config.sync_db, config.shop)
        s = Shop(sims, store, [], FlowSchedules())
        try:
            async with httpx.AsyncClient(transport=httpx.MockTransport(s.route)) as http:
                shopify, rackbeat = sims.clients(config, http)
                metrics, shutdown, now = Metrics(), Shutdown(), sims.clock.now
                common = (config, store, shopify, rackbeat)
                orders, index, stock = stock_and_orders(
                    *common,
                    now=now,
                    monotonic=sims.clock.monotonic,
                    cycles=s.requests,
                    metrics=metrics,
                    shutdown=shutdown,
                )
                products = ProductsFlow(*common, index=index, metrics=metrics, shutdown=shutdown, clock=now)
                fulfilments = FulfilmentsFlow(*common, metrics=metrics, shutdown=shutdown, clock=now)
                s.flows.extend([orders, stock, products, fulfilments])
                yield s
        finally:
            await store.close()


def shown(s: Shop, skus: int) -> int:
    """SKUs whose Shopify stock shows Rackbeat's 5."""
    return sum(s.sims.shopify.available(f"SKU-{n:05}") == 5 for n in range(skus))


def first(statuses: list[str], wanted: str) -> int | str:
    """The round (from 1) where ``wanted`` first shows, or "never"."""
    return statuses.index(wanted) + 1 if wanted in statuses else "never"


async def stock_storm(skus: int) -> dict[str, Any]:
    async with shop(skus, sync_locations=LOCATION) as s:
        s.fault = lambda r: (
            httpx.Response(404, json={"message": "Not found"}) if PER_LOCATION.search(r.url.path) else None
        )
        await s.rounds(FAULT_ROUNDS)
        during = s.status("stock")
        parked = len(await s.store.parked("stock"))
        pushed = shown(s, skus)
        s.fault = lambda _: None
        recovered = await s.rounds(RECOVERY_ROUNDS, until=lambda: shown(s, skus) == skus)
        return {
            "during": during,
            "parked": parked,
            "pushed": pushed,
            "recovered": recovered,
            "after": s.status("stock")[-1],
            "shown": shown(s, skus),
            "parked_after": len(await s.store.parked("stock")),
        }


async def orders_storm(skus: int) -> dict[str, Any]:
    count = max(skus // 5, 5)
    async with shop(skus) as s:
        await s.rounds(2)  # the first sync
        for n in range(count):
            s.sims.shopify.sell(f"SKU-{n % skus:05}", 1)
        s.fault = lambda r: (
            httpx.Response(422, json=REFUSED)
            if r.method == "POST" and r.url.path.endswith("/orders/drafts")
            else None
        )
        before = len(s.health)
        await s.rounds(FAULT_ROUNDS)
        during = s.status("orders")[before:]
        parked = len(await s.store.parked("orders"))
        s.fault = lambda _: None
        recovered = await s.rounds(RECOVERY_ROUNDS, until=lambda: len(s.sims.rackbeat.orders) >= count)
        return {
            "orders": count,
            "during": during,
            "parked": parked,
            "recovered": recovered,
            "imported": len(s.sims.rackbeat.orders),
            "parked_after": len(await s.store.parked("orders")),
        }


async def skipped_orders(skus: int) -> dict[str, Any]:
    count = max(skus // 5, 5)
    async with shop(skus, since=timedelta(minutes=30)) as s:
        skus_sold = [f"SKU-{n % skus:05}" for n in range(count)]
        old = [(s.sims.shopify.sell(sku, 2), sku) for sku in skus_sold]
        s.sims.clock.advance(3600)
        await s.rounds(1)  # the first start
        for order_id, sku in old:  # paid, tagged …: updated after the start, so they are read
            s.sims.shopify.edit_order(order_id, {sku: 1})
        with capture_logs() as logs:
            await s.rounds(3)
        said = [
            e
            for e in logs
            if e.get("log_level") in ("info", "warning", "error")
            and "skipped" in str(e.get("event"))
            and e.get("flow", "orders") == "orders"
        ]
        return {
            "orders": count,
            "lines": len(said),
            "names_setting": any("SYNC_ORDERS_SINCE" in str(e) for e in said),
            "names_count": any(str(count) in str(e.get("detail", "")) for e in said),
            "imported": len(s.sims.rackbeat.orders),
        }


async def quiet_hour(skus: int) -> dict[str, Any]:
    async with shop(skus) as s:
        await s.rounds(3)  # the first sync, settled
        start = len(s.health)
        await s.rounds(60)
        quiet = s.overall()[start:]
        return {"rounds": len(quiet), "not_pass": sum(status != "pass" for status in quiet)}


def _statuses(statuses: list[str]) -> str:
    return " ".join(statuses)


async def measure(skus: int) -> dict[str, Any]:
    scenarios: dict[str, Callable[[int], Awaitable[dict[str, Any]]]] = {
        "stock_storm": stock_storm,
        "orders_storm": orders_storm,
        "skipped": skipped_orders,
        "quiet": quiet_hour,
    }
    return {"skus": skus, **{name: await run(skus) for name, run in scenarios.items()}}


def table(m: dict[str, Any]) -> list[Row]:
    n = m["skus"]
    st, os_, sk, q = m["stock_storm"], m["orders_storm"], m["skipped"], m["quiet"]
    return [
        (
            "health: stock storm",
            f"first round /healthz fails, {n} SKUs all 404 per location",
            first(st["during"], "fail"),
            f"round (stock flow per round: {_statuses(st['during'])})",
        ),
        (
            "health: stock storm",
            "records parked / SKUs pushed during the storm",
            f"{st['parked']} / {st['pushed']}",
            "records / SKUs",
        ),
        (
            "health: stock storm",
            "rounds after the fix until every SKU shows its stock",
            st["recovered"],
            f"rounds ({st['shown']} of {n} shown, {st['parked_after']} parked, stock flow {st['after']})",
        ),
        (
            "health: orders storm",
            f"first round /healthz fails, {os_['orders']} orders all refused alike",
            first(os_["during"], "fail"),
            f"round (orders flow per round: {_statuses(os_['during'])})",
        ),
        ("health: orders storm", "orders parked during the storm", os_["parked"], "orders"),
        (
            "health: orders storm",
            "rounds after the fix until every order is imported",
            os_["recovered"],
            f"rounds ({os_['imported']} of {os_['orders']} imported, {os_['parked_after']} parked)",
        ),
        (
            "health: skipped orders",
            f"log lines (info and up) about {sk['orders']} orders before SYNC_ORDERS_SINCE, 3 rounds",
            sk["lines"],
            f"lines (name the setting: {sk['names_setting']}; the count: {sk['names_count']})",
        ),
        ("health: quiet hour", f"rounds not 'pass' of {q['rounds']} quiet rounds", q["not_pass"], "rounds"),
    ]


async def run(size: int | None = None) -> list[Row]:
    """The bench runner's entry point; ``size`` is the number of products."""
    return table(await measure(size or FULL_SIZE))


def main() -> None:
    """``python -m bench.health [SKUS]``."""
    run_alone(run)


if __name__ == "__main__":
    main()
