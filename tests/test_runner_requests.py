"""One flow asks the runner for another flow's cycle; it never runs that cycle itself."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest
from graphql import GraphQLSchema
from structlog.testing import capture_logs

from daemon.errors import TransportError, WaitingError
from daemon.health import flow_status
from daemon.metrics import Metrics
from daemon.runner import FlowSchedules, Runner
from daemon.shutdown import Shutdown, note_held
from daemon.store import Store
from tests.harness import make_world
from tests.test_flow_stock import stock_flow

pytestmark = pytest.mark.anyio


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    s = await Store.open(tmp_path / "sync.db", "a.myshopify.com")
    yield s
    await s.close()


class Orders:
    """An orders flow that counts its cycles; fails while ``failing`` is set."""

    name = "orders"

    def __init__(self) -> None:
        self.cycles = 0
        self.failing = False
        self.held: str | None = None

    async def run_once(self) -> int:
        self.cycles += 1
        if self.failing:
            raise TransportError("Rackbeat: connection refused")
        if self.held is not None:
            note_held(self.held)
        return 0


class Stock:
    """A flow that asks for ``asks`` orders cycles at once in each of its cycles."""

    name = "stock"

    def __init__(self, requests: FlowSchedules, shutdown: Shutdown, asks: int = 1) -> None:
        self.requests = requests
        self.shutdown = shutdown
        self.asks = asks
        self.answers: list[list[bool]] = []

    async def run_once(self) -> int:
        answers: list[bool] = []

        async def ask() -> None:
            answers.append(await self.requests.request_cycle("orders"))

        async with anyio.create_task_group() as tg:
            for _ in range(self.asks):
                tg.start_soon(ask)
        self.answers.append(answers)
        self.shutdown.request()
        return 0


async def run(store: Store, orders: Orders, asks: int = 1) -> tuple[Runner, Stock]:
    shutdown = Shutdown()
    requests = FlowSchedules()
    stock = Stock(requests, shutdown, asks)
    # an hour's poll interval: only a request can bring the orders flow round again
    runner = Runner(
        [orders, stock],
        store=store,
        metrics=Metrics(),
        poll_seconds=3600,
        shutdown=shutdown,
        requests=requests,
    )
    with anyio.fail_after(10):
        await runner.run()
    return runner, stock


async def test_a_request_wakes_the_flow_and_waits_for_a_cycle_that_started_after_it(store: Store) -> None:
    orders = Orders()
    _, stock = await run(store, orders)
    assert stock.answers == [[True]]
    assert orders.cycles == 2  # its first cycle, then the one asked for, well before the hour


async def test_requests_made_together_share_one_cycle(store: Store) -> None:
    orders = Orders()
    _, stock = await run(store, orders, asks=3)
    assert stock.answers == [[True, True, True]]
    assert orders.cycles == 2


async def test_a_failing_flow_is_not_woken_from_its_backoff(store: Store) -> None:
    orders = Orders()
    orders.failing = True
    with capture_logs() as logs:
        runner, stock = await run(store, orders)
    assert stock.answers == [[False]]
    assert orders.cycles == 1  # the request did not cut its backoff short
    failed = [(e["flow"], e["kind"]) for e in logs if e["event"] == "flow.failed"]
    assert failed == [("orders", "transport")]  # booked against the flow that failed, only
    assert runner.states["stock"].status == "ok"


async def test_a_flow_holding_its_work_back_still_answers_requests_and_fails_health(store: Store) -> None:
    orders = Orders()
    orders.held = "orders are held, not imported: the reference search is refuted"
    with capture_logs() as logs:
        runner, stock = await run(store, orders)
    assert stock.answers == [[True]], "the stock flow's catch-up goes on while orders are held"
    state = runner.states["orders"]
    assert flow_status(state, poll_seconds=3600) == "fail"
    assert state.held == orders.held
    assert [e["reason"] for e in logs if e["event"] == "flow.held"] == [orders.held]  # said once
    assert runner.status_line().startswith("orders held")


async def test_a_flow_that_is_not_run_needs_no_waiting() -> None:
    assert await FlowSchedules().request_cycle("orders") is True


async def test_stock_waits_instead_of_pushing_when_the_orders_catch_up_failed(
    tmp_path: Path, shopify_schema: GraphQLSchema
) -> None:
    """Without recent sales in the ledger a push could offer a sold unit again: the stock
    cycle stops with its own 'waiting' error and pushes nothing."""

    class Refused:
        async def request_cycle(self, flow: str) -> bool:
            return False

    async with make_world(tmp_path, validate_schema=shopify_schema) as w:
        w.shopify_sim.add_product("Mug", [{"sku": "MUG-1", "price": "10.00"}])
        w.rackbeat.add_product("MUG-1", stock=10)
        w.tick(60)
        flow = stock_flow(w, cycles=Refused())
        with pytest.raises(WaitingError, match="orders flow is failing"):
            await flow.run_once()
        assert w.shopify_sim.requests["SetStock"] == 0


async def test_one_canonical_line_per_cycle_with_outcome_duration_and_counts(store: Store) -> None:
    """``flow.cycle``: info when the cycle did something or failed, debug when it was quiet."""
    shutdown = Shutdown()
    script: list[int | Exception] = [3, 0, TransportError("Rackbeat: 503")]

    class Scripted:
        name = "orders"

        async def run_once(self) -> int:
            step = script.pop(0)
            if not script:
                shutdown.request()
            if isinstance(step, Exception):
                raise step
            return step

    async def no_wait(seconds: float) -> None:
        await anyio.lowlevel.checkpoint()

    runner = Runner(
        [Scripted()],
        store=store,
        metrics=Metrics(),
        poll_seconds=1,
        shutdown=shutdown,
        sleep_until_stop=no_wait,
    )
    with capture_logs() as logs, anyio.fail_after(5):
        await runner.run()
    cycles = [e for e in logs if e["event"] == "flow.cycle"]
    assert [(e["log_level"], e["outcome"], e["applied"]) for e in cycles] == [
        ("info", "ok", 3),
        ("debug", "ok", 0),
        ("info", "failed", 0),
    ]
    assert all(e["flow"] == "orders" and e["duration_s"] >= 0 for e in cycles)
    assert (cycles[2]["kind"], cycles[2]["failures"]) == ("transport", 1)
