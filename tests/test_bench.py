"""``python -m bench``: one table of every benchmark's figures (tiny workloads here)."""

from __future__ import annotations

import importlib
import json
import math
import subprocess
import sys
import time
import types
from typing import Any

import pytest

from bench import Row, fulfilments, health, idle, incremental, live_check, orders, shops
from bench.__main__ import MODULES, QUICK_SIZES, collect
from tests.test_process import REPO, clean_env

#: orders per shop in the several-shops tests: enough for two shops to need more than one
#: minute's Rackbeat budget (about 6 requests per order), few enough to stay quick
ORDERS = 30
TINY = ["--quick", "--size", "40", "--only", "clients_shopify", "--only", "clients_rackbeat"]


def bench(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603  # this interpreter and fixed arguments, no shell
        [sys.executable, "-m", "bench", *args],
        cwd=REPO,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


@pytest.mark.anyio
async def test_a_failing_benchmark_is_reported_and_the_others_still_run(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    broken = types.ModuleType("bench.broken")

    async def run(size: int | None = None) -> list[Row]:
        raise RuntimeError("simulator refused to start")

    broken.run = run  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "bench.broken", broken)
    rows, ok = await collect(["bench.broken", "bench.clients_rackbeat"], size=40)
    assert not ok
    assert rows[0] == ("broken", "failed", "RuntimeError", "simulator refused to start")
    assert ("rackbeat client", "REST requests to page 40 products", 1, "requests") in [r[:4] for r in rows]


def test_runner_reports_each_client_benchmark_and_the_peak_rss() -> None:
    started = time.monotonic()
    result = bench(*TINY, "--json")
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stderr
    rows: list[dict[str, Any]] = json.loads(result.stdout)
    figures = {(row["benchmark"], row["figure"]): row["value"] for row in rows}
    # 40 products: 5 GraphQL pages of 8 (cost-bound), 1 REST page of 100
    assert figures["shopify client", "GraphQL requests to page 40 products"] == 5
    assert figures["shopify client", "requests per 1,000 products"] == 125.0
    assert figures["rackbeat client", "REST requests to page 40 products"] == 1
    assert figures["rackbeat client", "requests per 1,000 products"] == 25.0
    # the request budget on a simulated clock (a token bucket let 239 through in one minute)
    window = "most Rackbeat requests in any 60 s window at RACKBEAT_REQUESTS_PER_MINUTE=120, 400 requests"
    limited = "429 answers from a server allowing 120 per rolling minute, 400 requests"
    assert (figures["rackbeat client", window], figures["rackbeat client", limited]) == (120, 0)
    for name in ("shopify client", "rackbeat client"):
        seconds = figures[name, "scan of 40 products, this machine"]
        assert isinstance(seconds, float)
        # rounded to 0.01 s, so a tiny scan may show 0.0; never more than the whole run took
        assert 0 <= seconds <= elapsed
    assert rows[-1]["benchmark"] == "process"
    assert rows[-1]["figure"] == "peak RSS of the whole run"
    # MiB: a Python process with httpx and graphql-core loaded, and no more than a tiny run needs
    assert 10 < rows[-1]["value"] < 1024

    table = bench(*TINY)
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["benchmark", "figure", "value", "unit", "/", "notes"]
    assert len(lines) == len(rows) + 2  # header, rule, one line per row
    assert all(row["figure"] in line for row, line in zip(rows, lines[2:], strict=True))


def test_every_benchmark_of_the_table_exists() -> None:
    for name in MODULES:
        module = importlib.import_module(name)
        assert callable(module.run), name


@pytest.mark.anyio
async def test_an_idle_cycle_costs_rackbeat_the_stock_scan_and_one_request_and_shopify_at_most_two() -> None:
    skus = QUICK_SIZES["bench.idle"]
    m = await idle.measure(skus)
    scan = math.ceil((skus + 1) / 100)  # pages of 100 (the shipping product is one too)
    # every flow on, the defaults: the stock scan, the fulfilments flow's one list; the
    # products flow sees on the scan that nothing changed
    assert m["idle_by_flow"]["rackbeat"] == {"orders": 0, "fulfilments": 1, "stock": scan, "products": 0}
    assert m["idle"][1] == scan + 1 <= idle.rackbeat_goal(skus) < idle.rackbeat_before(skus)
    assert m["idle"][0] <= idle.SHOPIFY_GOAL
    rows = {figure: (value, notes) for _, figure, value, notes in idle.table(m)}
    value, notes = rows[f"Rackbeat requests, all flows, {skus} SKUs"]
    assert value == m["idle"][1]
    assert notes.startswith(f"requests (goal ⌈N/100⌉+2 = {idle.rackbeat_goal(skus)}; before {scan + 3}): ")


@pytest.mark.anyio
async def test_several_shops_in_one_process_share_one_stock_scan_and_one_request_budget() -> None:
    skus = QUICK_SIZES["bench.shops"]
    one = await shops.measure(1, skus, orders=ORDERS)
    two = await shops.measure(2, skus, orders=ORDERS)
    apart = await shops.measure(2, skus, separate=True, orders=ORDERS)  # before: a process per shop
    scan = math.ceil((skus + 1) / 100)  # pages of 100 (the shipping product is one too)

    # a quiet cycle: one shop scans the stock (which shows no product changed: the products
    # flow reads nothing) and reads the orders updated since (none shipped)
    assert one["idle_by_flow"] == {"stock": scan, "fulfilments": 1}
    # a second shop adds no request: one scan and one read of each list serve both
    assert two["idle"] == [one["idle"][-1]] * shops.IDLE_CYCLES
    assert two["idle_by_flow"] == {"stock": scan, "fulfilments": 1}
    assert two["idle_scans"] == [1] * shops.IDLE_CYCLES
    assert two["first_start_scans"] == 1
    # the first start (stock pushed, 30 orders per shop) needs more than a minute's budget,
    # and no 60 s window holds more than the one budget of 300
    assert two["first_start_requests"] > shops.DEFAULT_RPM
    assert two["peak_window"] == shops.DEFAULT_RPM

    # a process per shop scanned twice and spent two budgets at once: all its requests in one minute
    assert apart["idle"][-1] == 2 * one["idle"][-1]
    assert apart["idle_scans"][-1] == 2
    assert apart["peak_window"] == apart["first_start_requests"] > shops.DEFAULT_RPM

    rows = shops.table(skus, {1: one, 2: two}, {1: one, 2: apart}, {1: 50.0, 2: 51.5}, counts=(1, 2))
    figures = {figure: (value, notes) for _, figure, value, notes in rows}
    idle = f"Rackbeat requests per idle cycle, {skus} SKUs"
    assert figures[f"{idle}, 2 shops, one process"] == (
        scan + 1,
        f"requests (goal {scan} + a few): fulfilments 1, stock {scan}",
    )
    assert figures[f"{idle}, 2 shops, a process per shop (before)"][0] == 2 * (scan + 1)
    assert figures["Rackbeat stock scans per idle cycle, 2 shops, one process"][0] == 1
    peak = "most Rackbeat requests in any 60 s, first start + 30 orders per shop, 2 shops"
    assert figures[f"{peak}, one process"][0] == 300
    assert figures[f"{peak}, a process per shop (before)"][0] == apart["peak_window"]
    assert figures[f"peak RSS, {skus} SKUs, 2 shops, a process per shop (before)"][0] == 100.0
    assert figures["peak RSS per added shop, 1 -> 2 shops, one process"][0] == 1.5


@pytest.mark.anyio
async def test_the_daemon_process_of_the_rss_figure_syncs_over_loopback_without_simulator_code() -> None:
    # the child refuses to report when it has loaded simulator code; the parent checks that
    # every order reached Rackbeat over loopback
    measured = await shops.measure_rss(2, QUICK_SIZES["bench.shops"], orders=ORDERS)
    # MiB: Python with httpx, pydantic and aiosqlite loaded, and less than the simulators' 2 x 200 SKUs
    assert 20 < measured["rss_before_mib"] <= measured["peak_rss_mib"] < 512


@pytest.mark.anyio
async def test_fulfilments_cost_one_shopify_read_and_write_per_shipped_order_and_are_made_once() -> None:
    size = QUICK_SIZES["bench.fulfilments"]  # shipped at once, of 1,000 open
    few = 30  # orders losing answers, orders waiting for payment
    m = {
        "burst": await fulfilments.measure_burst(size),
        "busy": await fulfilments.measure_busy(size),
        "lost": await fulfilments.measure_lost(few),
        "paid": await fulfilments.measure_trigger_paid(few),
    }
    burst, busy, lost, paid = m["burst"], m["busy"], m["lost"], m["paid"]
    # an idle cycle reads the one list, whether 10 or 1,000 orders are open
    assert burst["idle"] == {10: (1, 0), 1_000: (1, 0)}
    # the burst: found by the list (pages of 100) at <= 1 request per 100 shipped orders
    # beyond the one every cycle reads anyway; one shipments read each
    assert burst["rackbeat_lists"] == math.ceil(size / 100)
    assert (burst["rackbeat_lists"] - 1) * 100 <= size
    assert burst["rackbeat"] == burst["rackbeat_lists"] + size
    # Shopify: one read and one write per order (and the location, once per process)
    assert burst["shopify_by_operation"] == {
        "OrderFulfilment": size,
        "PrimaryLocation": 1,
        "FulfillmentCreate": size,
    }
    assert burst["fulfilled_orders"] == burst["fulfilled"] == size
    assert burst["with_tracking"] == size // 2
    assert burst["unshipped_fulfilled"] == 0
    assert (burst["cycles"], burst["failed"]) == (1, 0)
    # quiet cycles after the burst write nothing and read no shipments; once a scan has run
    # the overlap after the latest shipment, the list starts at it: one request, as idle
    assert burst["after"][0] == (burst["rackbeat_lists"], 0)
    assert burst["after"][-1] == (1, 0)
    assert burst["fulfilled_after"] == size

    # busy: the list also holds the orders the daemon booked meanwhile: they cost pages of
    # 100, nothing per order; each shipped order still costs one read on each side and a write
    assert busy["rackbeat_lists"] == math.ceil(2 * size / 100)
    assert (busy["rackbeat_beyond_lists"], busy["shopify_reads"], busy["shopify_writes"]) == (size,) * 3
    assert busy["fulfilled_orders"] == size
    assert (busy["cycles"], busy["failed"]) == (1, 0)

    # lost answers: every kind happened, exactly one fulfilment per order, in one cycle; each
    # lost answer costs a read, and the write again when it had not been applied
    assert set(lost["lost_kinds"]) == set(fulfilments.LOST_KINDS)
    assert lost["lost"] >= few // fulfilments.LOST_EVERY
    assert lost["fulfilled"] == lost["fulfilled_orders"] == few
    assert (lost["cycles"], lost["failed"], lost["parked"]) == (1, 0, 0)
    assert lost["extra"] == lost["lost"] + lost["lost_kinds"]["not applied"]

    # trigger paid: every waiting unit stays held through a push; once paid, one Rackbeat order each
    assert paid["pushes"] >= 1
    assert paid["held"] == paid["unreserved"] == paid["units"]
    assert paid["handed_back"] == 0
    assert paid["made_waiting"] == 0
    assert paid["made"] == paid["transferred_orders"] == few
    assert paid["twins"] == 0

    figures = {figure: value for _, figure, value, _ in fulfilments.table(m)}
    assert figures[f"Shopify reads per shipped order, {size} shipped"] == round((size + 1) / size, 2)
    assert figures[f"Shopify writes per shipped order, {size} shipped"] == 1.0
    beyond_idle = figures["  the same, beyond an idle cycle's"]
    assert isinstance(beyond_idle, float)
    assert beyond_idle <= 1
    assert figures[f"fulfilments per shipped order, {few} shipped, {lost['lost']} answers lost"] == 1.0
    assert figures["trigger paid: Rackbeat orders made per order once paid"] == 1.0


@pytest.mark.anyio
async def test_an_order_costs_three_to_five_rackbeat_requests_and_rackbeat_is_the_bound() -> None:
    size = QUICK_SIZES["bench.orders"]
    burst = await orders.measure_burst(size)
    catch_up = await orders.measure_catch_up(size)
    # every order of the burst imported, none twice; each kind of customer at its cost: no
    # reference search, the customer search only where the cache has none, the shipping
    # product looked up once per process (before the burst)
    assert burst["imported"] == size
    assert burst["twins"] == 0
    assert {kind: sorted(set(counts)) for kind, counts in burst["by_kind"].items()} == {
        "returning, cached": [3],
        "returning, not cached": [4],
        "new": [5],
    }
    assert len(burst["by_kind"]["new"]) == size // 2
    assert burst["shopify"] < size  # orders are read in pages
    assert catch_up["orders"] == size

    figures = {figure: value for _, figure, value, _ in orders.table(burst, catch_up)}
    assert figures["Rackbeat requests per order, returning, cached customer"] == 3.0
    assert figures["Rackbeat requests per order, new customer"] == 5.0
    per_minute = figures[f"orders imported per minute, {size} at once, defaults"]
    assert isinstance(per_minute, float)
    assert per_minute >= orders.GOAL_PER_MINUTE  # simulated minutes: the budget's waits
    # Shopify pages a far-back catch-up faster than Rackbeat's budget takes it: a bulk
    # order read would not make a catch-up faster
    ratio = figures["Shopify paging / Rackbeat import rate"]
    assert isinstance(ratio, float)
    assert ratio > 1


@pytest.mark.anyio
async def test_the_index_bench_builds_by_one_bulk_query_in_a_handful_of_requests() -> None:
    from bench.index import measure

    paged = await measure(2_000)
    bulk = await measure(2_000, bulk=True)
    assert paged["indexed"] == bulk["indexed"] == 2_000
    assert bulk["requests"] <= 10  # count, start, a few polls: not one per 250 variants
    assert bulk["points"] < 50 < paged["points"]
    assert bulk["simulated_seconds"] < paged["simulated_seconds"]  # simulated, not wall clock


@pytest.mark.anyio
async def test_the_incremental_bench_reads_each_change_in_full_at_most_twice() -> None:
    size = QUICK_SIZES["bench.incremental"]
    products = await incremental.measure_products(size)
    assert len(products["reads"]) == size
    assert max(products["reads"].values()) <= 2
    assert products["idle"]["requests"] <= 2
    orders = await incremental.measure_orders(size // 10)
    assert orders["imported"] == len(orders["reads"]) == size // 10
    assert max(orders["reads"].values()) <= 2


@pytest.mark.anyio
@pytest.mark.slow
@pytest.mark.timeout(240)
async def test_the_first_sync_bench_runs_the_daemon_process_until_every_sku_is_pushed() -> None:
    from bench import first_sync

    skus = QUICK_SIZES["bench.first_sync"]
    m = await first_sync.measure(skus)
    # every SKU's level written once, 250 to a call: nothing read or written one by one
    assert m["set_stock"] == math.ceil(skus / 250), m
    assert m["peak_rss_mib"] >= m["peak_rss_push_mib"] > 0, m  # the figures, should it ever fail


@pytest.mark.anyio
async def test_check_live_spends_at_most_30_requests_and_proves_every_fact() -> None:

    m = await live_check.measure(QUICK_SIZES["bench.live_check"])
    assert m["rackbeat"] + m["shopify"] <= live_check.GOAL
    assert m["confirmed"] == m["facts"]
    assert all(route.startswith("GET ") for route in m["routes"])


@pytest.mark.anyio
async def test_the_health_bench_sees_each_storm_at_once_and_recovers_in_one_round() -> None:
    size = QUICK_SIZES["bench.health"]
    m = await health.measure(size)
    stock, orders_ = m["stock_storm"], m["orders_storm"]
    assert stock["during"] == ["fail"] * health.FAULT_ROUNDS
    assert (stock["parked"], stock["pushed"], stock["recovered"], stock["shown"]) == (0, 0, 1, size)
    assert orders_["during"] == ["fail"] * health.FAULT_ROUNDS
    assert (orders_["parked"], orders_["recovered"], orders_["imported"]) == (0, 1, orders_["orders"])
    assert (m["skipped"]["lines"], m["skipped"]["names_setting"], m["skipped"]["names_count"]) == (
        1,
        True,
        True,
    )
    assert m["quiet"] == {"rounds": 60, "not_pass": 0}
