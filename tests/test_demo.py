"""The demo: the README's first command takes a fresh clone to a working, truthful demo."""

from __future__ import annotations

import dataclasses
import io
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import anyio
import pytest
from prometheus_client.parser import text_string_to_metric_families

from daemon.demo import (
    SHOPS,
    DemoOptions,
    Snapshot,
    World,
    act,
    compact_line,
    demo,
    fulfilment_truth,
    health_status,
    seed_world,
    stock_truth,
    summary_lines,
    truth,
)
from daemon.mapping import shopify_heading
from daemon.metrics import PREFIX
from daemon.sim.rackbeat import DEFAULT_TOKEN as RACKBEAT_TOKEN
from daemon.sim.shopify import DEFAULT_ACCESS_TOKEN
from tests.test_process import clean_env

TOKENS = (RACKBEAT_TOKEN, DEFAULT_ACCESS_TOKEN)
#: a status line (output that is not a terminal) once orders of both shops reached Rackbeat
IMPORTED = re.compile(r"\| orders eu [1-9]\d*/\d+ se [1-9]\d*/\d+ in Rackbeat")
FLOWS = ("orders", "fulfilments", "stock", "products")


def _hostile_environment(directory: Path) -> dict[str, str]:
    """A stray .env, broken settings and proxy variables: none of it may reach the demo."""
    (directory / ".env").write_text("SHOPIFY_SHOP=not-a-shop\nSYNC_ORDER_STATUS=bogus\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RACKBEAT_", "SHOPIFY_", "SYNC_"))}
    env.update(
        SYNC_POLL_SECONDS="nonsense",
        SHOPIFY_ACCESS_TOKEN="shpat_from_the_environment",
        HEALTH_LISTEN="not an address",
        HTTP_PROXY="http://127.0.0.1:9",
        HTTPS_PROXY="http://127.0.0.1:9",
        ALL_PROXY="http://127.0.0.1:9",
        PYTHONUNBUFFERED="1",
    )
    return env


@pytest.mark.anyio
async def test_the_demo_imports_every_order_exactly_once(tmp_path: Path) -> None:
    out = io.StringIO()
    options = DemoOptions(
        seconds=4, seed=5, db=tmp_path / "demo.db", poll_seconds=0.5, activity_every=0.3, health_port=0
    )
    result = await demo(options, out)
    text = out.getvalue()

    assert result.ok, text
    truth = result.truth
    assert truth.once > 0, text
    assert truth.once == truth.placed - len(truth.unknown_sku)
    assert (truth.missing, truth.duplicated, truth.leaked, truth.strays) == ([], [], [], [])
    assert truth.unknown_sku == ["eu #1003"], "the gift card order is in the demo, in shop eu"
    assert result.snapshot.event("orders", "imported") == truth.once
    assert result.snapshot.parked >= len(truth.unknown_sku)
    assert result.activity["orders placed"] > len(truth.unknown_sku)
    # one daemon, two shops: each shop's orders reached Rackbeat, each exactly once, and the
    # daemon counted them per shop
    assert [s.alias for s in truth.shops] == ["eu", "se"]
    for shop in truth.shops:
        assert shop.once > 0, text
        assert shop.ok, text
        assert result.snapshot.event("orders", "imported", shop.alias) == shop.once
    # #1001 is in both shops: two Rackbeat orders, told apart by the heading
    world = result.world
    assert world is not None
    headings = sorted(o.heading or "" for o in world.rackbeat.orders if o.your_reference == "#1001")
    assert headings == ["Shopify #1001 (demo-eu.myshopify.com)", "Shopify #1001 (demo-se.myshopify.com)"]
    assert "#1001" in truth.clashing
    # one Rackbeat customer per e-mail, whichever shop the customer bought in
    emails = [c.contact_email for c in world.rackbeat.customers.values() if c.contact_email]
    assert len(emails) == len(set(emails))
    # /healthz has a check per shop and flow; /metrics has series of both shops
    checks = result.snapshot.health["checks"]
    assert set(checks) == {f"{alias}/{flow}:lag" for alias in SHOPS for flow in FLOWS}
    assert {entries[0]["shop"] for entries in checks.values()} == {"eu", "se"}
    for alias in SHOPS:
        assert result.snapshot.event("stock", "quantities_pushed", alias) > 0
        assert result.stock_writes_by_shop[alias] > 0, f"stock reached shop {alias}"
    up = {
        (sample.labels["shop"], sample.labels["flow"])
        for family in text_string_to_metric_families(result.snapshot.metrics)
        for sample in family.samples
        if sample.name == f"{PREFIX}_flow_up" and sample.value == 1
    }
    assert up == {(alias, flow) for alias in SHOPS for flow in FLOWS}
    # no shop offers a unit that is not there: Rackbeat's available minus both shops' demand
    assert result.stock is not None
    assert result.stock.settled
    assert result.stock.over == []
    assert result.stock.checked["eu"] >= 196
    assert result.stock.checked["se"] >= 196
    assert "stock check: OK" in text
    # Rackbeat's shipments reached the shops as fulfilments, once each, with their tracking
    # (seed 5 ships some orders with tracking and some without)
    fulfilments = result.fulfilments
    assert fulfilments is not None
    assert fulfilments.settled, text
    assert fulfilments.ok, text
    assert "fulfilment check: OK" in text
    shipped = [name for shop in fulfilments.shops for name in shop.shipped]
    assert len(shipped) >= 2, text
    assert [name for shop in fulfilments.shops for name in shop.fulfilled] == shipped
    sent = [f for shop in world.shops.values() for order in shop.orders.values() for f in order.fulfillments]
    assert len(sent) == len(world.rackbeat.shipments) == len(shipped)
    assert {
        (s.carrier, s.track_trace_number, s.track_trace_url) for s in world.rackbeat.shipments.values()
    } == {f.tracking for f in sent}
    assert any(f.tracking_number for f in sent), "a shipment with tracking"
    assert any(f.tracking == (None, None, None) for f in sent), "a shipment without"
    assert result.snapshot.event("fulfilments", "fulfilled") == len(sent)
    for line in (
        "orders    eu  ",
        "          se  ",
        "fulfilled eu  ",
        "stock     eu  ",
        "          se  ",
        "eu/orders ",
        "eu/fulfilments ",
    ):
        assert f"\n  {line}" in text, line
    # the health endpoint answered while the demo ran, and the summary says so
    assert result.health_url.endswith("/healthz")
    assert result.snapshot.answered > 0
    assert f"{result.health_url}: answered {result.snapshot.answered} of" in text
    assert "truth check: OK" in text
    log = (tmp_path / "demo.log").read_text()
    assert '"reason": "UNKNOWN_SKU"' in log  # the gift card order is parked, not lost
    assert result.stock_writes > 0, "stock reached Shopify"
    for token in TOKENS:
        assert token not in text
        assert token not in log
    # the log is kept beside the DB, and the summary says where
    assert f"daemon log {tmp_path / 'demo.log'} kept" in text
    # the first next step works as printed: the parked gift card order, with its fix
    [step] = [line for line in text.splitlines() if "rackbeat-shopify parked" in line]
    env = dict(word.split("=", 1) for word in step.split() if "=" in word)
    assert env == {
        "SYNC_DB": str(tmp_path / "demo.db"),
        "SHOPS": "eu,se",
        "SHOP_EU__SHOPIFY_SHOP": "demo-eu.myshopify.com",
        "SHOP_SE__SHOPIFY_SHOP": "demo-se.myshopify.com",
    }
    with anyio.fail_after(30):
        parked = await anyio.run_process(
            [sys.executable, "-m", "daemon", "parked"], cwd=tmp_path, env=clean_env(env), check=False
        )
    assert parked.returncode == 0, parked.stdout + parked.stderr
    assert "UNKNOWN_SKU" in parked.stdout.decode()
    assert "#1003" in parked.stdout.decode()
    assert "rackbeat-shopify reconcile --dry-run" in text


def test_the_summary_counts_in_words_per_shop() -> None:
    world = World.of_shops(SHOPS, 1)
    snap = Snapshot(
        events={
            ("eu", "stock", "quantities_pushed"): 1,
            ("eu", "stock", "batches"): 1,
            ("se", "stock", "quantities_pushed"): 12,
            ("se", "stock", "batches"): 2,
        }
    )
    lines = summary_lines(world, snap, "url")
    assert "stock     eu  1 quantity pushed to Shopify in 1 batch" in lines
    assert "          se  12 quantities pushed to Shopify in 2 batches" in lines
    assert "| stock pushed eu 1 se 12 |" in compact_line(world, snap)


def test_a_health_warning_says_why() -> None:
    def check(name: str, status: str, **extra: object) -> list[dict[str, object]]:
        return [{"componentId": name, "status": status, "observedValue": 0.5, "parked": 0, **extra}]

    snap = Snapshot(health={"status": "pass", "checks": {"eu/orders:lag": check("orders", "pass")}})
    assert health_status(snap) == "pass"
    snap.health = {
        "status": "warn",
        "checks": {
            "eu/orders:lag": check("orders", "warn", parked=1),
            "eu/stock:lag": check("stock", "pass"),
            "se/orders:lag": check("orders", "pass"),
            "se/stock:lag": check("stock", "warn", output="retrying: a request failed 3s ago; backing off"),
        },
    }
    # the check names the shop: both shops have an orders and a stock flow
    assert health_status(snap) == (
        "warn (eu/orders: 1 record parked; se/stock: retrying: a request failed 3s ago; backing off)"
    )
    world = World.of_shops(SHOPS, 1)
    assert "| health warn (eu/orders: 1 record parked; se/stock: retrying" in compact_line(world, snap)


def _activity(seed: int, *, fast_daemon: bool) -> list[str]:
    """Forty pieces of activity without a daemon; ``fast_daemon``: as if one booked every
    imported order and created every new product in Shopify at once."""
    world = World.of_shops(SHOPS, seed)
    seed_world(world)
    texts: list[str] = []
    for _ in range(40):
        text = act(world)
        texts.append(text.split("  ", 1)[-1])
        if fast_daemon:
            for sku in world.new_skus:
                for shop in world.shops.values():
                    if shop.find_by_sku(sku) is None:
                        shop.add_product(sku, [{"sku": sku, "price": "100.00", "stock": 12}])
            if not any(o.reserves_stock for o in world.rackbeat.orders):
                world.rackbeat.place_order("1001", [(world.skus[0], 1)], book=True)
    return texts


def test_the_same_seed_gives_the_same_activity_whatever_the_daemon_did() -> None:
    slow, fast = _activity(5, fast_daemon=False), _activity(5, fast_daemon=True)
    assert _activity(5, fast_daemon=False) == slow
    assert _activity(6, fast_daemon=False) != slow
    # what the daemon did changes some outcomes (a shipment instead of nothing to ship, an
    # order line of a new product), never what Rackbeat's side does on its own
    own = ("Rackbeat goods receipt", "Rackbeat price", "Rackbeat: new product")
    assert [t for t in slow if t.startswith(own)] == [t for t in fast if t.startswith(own)]
    assert sum(t.startswith(own) for t in slow) >= 10
    # orders come in both shops
    assert any(t.startswith("Shopify order eu #") for t in slow)
    assert any(t.startswith("Shopify order se #") for t in slow)


def test_the_truth_tells_the_shops_orders_apart_by_heading() -> None:
    world = World.of_shops(SHOPS, 2)
    seed_world(world)
    rb = world.rackbeat
    customer = rb.add_customer("Astrid Lindqvist", "astrid@example.se")
    # eu's #1001 is in Rackbeat; se's #1001 is not, and eu's does not count for it
    order = rb.order(rb.place_order(customer, [(world.skus[0], 1)]))
    order.your_reference, order.heading = "#1001", "Shopify #1001 (demo-eu.myshopify.com)"
    found = truth(world)
    eu, se = found.shops
    assert (eu.once, eu.missing) == (1, ["#1002"])
    assert (se.once, se.missing) == (0, ["#1001", "#1002"])
    assert not found.ok
    assert found.verdict.startswith("FAILED — missing: eu #1002, se #1001, se #1002")


def test_the_stock_check_catches_a_unit_sold_in_the_other_shop() -> None:
    # before any daemon: each shop's waiting orders lowered only that shop's own figures
    world = World.of_shops(SHOPS, 2)
    seed_world(world)
    sold_in_eu = {line.sku for o in world.shops["eu"].orders.values() for line in o.line_items}
    found = stock_truth(world, settled=True)
    assert not found.ok
    assert any(f.startswith("se ") and f.split()[1].rstrip(":") in sold_in_eu for f in found.over), found.over
    # what the daemon's stock cycles do: every shop offers Rackbeat's figure minus both shops' demand
    for shop in world.shops.values():
        for line in found.over:
            alias, sku, _, _, allowed = line.replace(":", "").split()
            if world.shops[alias] is shop:
                shop.set_available(sku, int(allowed))
    assert stock_truth(world, settled=True).ok
    assert not stock_truth(world, settled=False).ok
    assert "not checked" in stock_truth(world, settled=False).verdict


def _transferred(world: World, alias: str, name: str) -> str:
    """What the daemon does to a shop's order: the same lines in a booked Rackbeat order
    headed with the shop (the shipping line as Rackbeat's freight product); its number."""
    shop = world.shops[alias]
    order = next(o for o in shop.orders.values() if o.name == name)
    rb = world.rackbeat
    lines = [(line.sku or "", line.quantity) for line in order.line_items]
    number = rb.place_order(rb.add_customer(name, f"{alias}{name}@example.com"), [*lines, ("frakt", 1)])
    transferred = rb.order(number)
    transferred.your_reference, transferred.heading = name, shopify_heading(name, shop.shop_domain)
    rb.book(number)
    return number


def test_the_fulfilment_check_holds_shopify_to_every_rackbeat_shipment() -> None:
    world = World.of_shops(SHOPS, 2)
    seed_world(world)
    rb, eu, se = world.rackbeat, world.shops["eu"], world.shops["se"]
    tracked = ("GLS", "GL123456789DK", "https://tracking.example/gls/GL123456789DK")
    carrier, number, url = tracked
    rb.ship(_transferred(world, "eu", "#1001"), carrier=carrier, tracking=number, url=url)
    rb.ship(_transferred(world, "eu", "#1002"))
    _transferred(world, "se", "#1001")  # booked, not shipped
    # nothing fulfilled yet: while the demo runs, that is the daemon catching up; at the end, a failure
    found = fulfilment_truth(world, settled=True)
    assert [s.shipped for s in found.shops] == [["#1001", "#1002"], []]
    assert [s.unfulfilled for s in found.shops] == [["#1001", "#1002"], []]
    assert not found.ok
    assert found.verdict == "FAILED — shipped, not fulfilled: eu #1001, eu #1002"
    summary = summary_lines(world, Snapshot(), "url")
    assert "fulfilled eu  0 in Shopify of 2 orders shipped in Rackbeat · 0 with tracking" in summary
    assert "          se  0 in Shopify of 0 orders shipped in Rackbeat · 0 with tracking" in summary

    # eu #1001 fulfilled without its tracking, eu #1002 twice, se #1001 though Rackbeat has not shipped it
    for order in ("#1001", "#1002"):
        eu.fulfill_order(order)
    (twice,) = eu.fulfillments("#1002")
    eu.orders[twice.order_id].fulfillments.append(twice)
    se.fulfill_order("#1001")
    found = fulfilment_truth(world, settled=True)
    (eu_found, se_found) = found.shops
    assert eu_found.fulfilled == []
    assert eu_found.wrong == [
        f"#1001: fulfilled with no tracking, shipped with {' '.join(tracked)}",
        "#1002: 2 fulfilments for 1 shipment",
    ]
    assert se_found.unshipped_fulfilled == ["#1001"]
    assert found.verdict.startswith("FAILED — not fulfilled as shipped: eu #1001: fulfilled with no tracking")
    assert found.verdict.endswith("; fulfilled, not shipped: se #1001")
    summary = summary_lines(world, Snapshot(), "url")
    assert "fulfilled eu  0 in Shopify of 2 orders shipped in Rackbeat · 0 with tracking · WRONG 2" in summary
    assert (
        "          se  0 in Shopify of 0 orders shipped in Rackbeat · 0 with tracking · NOT SHIPPED 1"
        in summary
    )

    # as the daemon leaves them: one fulfilment per shipment, with its tracking; se #1001 not fulfilled
    (first,) = eu.fulfillments("#1001")
    first.tracking_company, first.tracking_number, first.tracking_url = tracked
    eu.orders[twice.order_id].fulfillments.remove(twice)
    se_order = next(o for o in se.orders.values() if o.name == "#1001")
    se_order.fulfillments.clear()
    found = fulfilment_truth(world, settled=True)
    assert found.ok, found.verdict
    assert found.verdict.startswith("OK — ")
    assert [(s.fulfilled, s.tracked) for s in found.shops] == [(["#1001", "#1002"], ["#1001"]), ([], [])]
    assert found.details[0] == "eu: 2 of 2 orders shipped in Rackbeat fulfilled as shipped, 1 with tracking"
    # the units count too: a fulfilment of fewer units than the shipment sent is not it
    line = first.lines[0]
    first.lines = (dataclasses.replace(line, quantity=line.quantity - 1), *first.lines[1:])
    assert not fulfilment_truth(world, settled=True).ok
    first.lines = (line, *first.lines[1:])
    # and before a fulfilments cycle after the last shipment, nothing is claimed
    unsettled = fulfilment_truth(world, settled=False)
    assert not unsettled.ok
    assert "not checked" in unsettled.verdict


def test_demo_command_runs_from_the_command_line(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "daemon", "demo", "--seconds", "6", "--health-port", "0"],
        cwd=tmp_path,
        env=_hostile_environment(tmp_path),
        capture_output=True,
        text=True,
        timeout=45,
        check=False,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert "final summary" in done.stdout
    assert "truth check: OK" in done.stdout
    # plain output says why health warns: the gift card order is parked
    assert "| health warn (eu/orders: 1 record parked" in done.stdout
    assert "stock check: OK" in done.stdout
    assert "next steps" in done.stdout
    assert "rackbeat-shopify reconcile --dry-run" in done.stdout
    assert "/healthz" in done.stdout
    for token in (*TOKENS, "shpat_from_the_environment"):
        assert token not in output
    assert list(tmp_path.iterdir()) == [tmp_path / ".env"], "the state DB lives in a temporary directory"


def test_ctrl_c_ends_the_demo_with_a_summary(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "daemon", "demo", "--health-port", "0"],
        cwd=tmp_path,
        env=_hostile_environment(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 30
        seen: list[str] = []
        # a status line with imported orders: the daemon's flows (and its signal handler) run
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            seen.append(line)
            if IMPORTED.search(line):
                break
        assert IMPORTED.search(seen[-1] if seen else ""), "".join(seen)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, out + err
    assert "final summary (stopped by Ctrl-C)" in out
    assert "truth check: OK" in out


@pytest.mark.anyio
async def test_a_taken_health_port_moves_the_demo_to_a_free_one(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = int(taken.getsockname()[1])
        options = DemoOptions(seconds=1, seed=3, poll_seconds=0.5, activity_every=0.3, health_port=port)
        out = io.StringIO()
        result = await demo(options, out)
    assert result.ok, out.getvalue()
    assert result.health_url.startswith("http://127.0.0.1:")
    assert f":{port}/" not in result.health_url
    assert result.snapshot.answered > 0  # the endpoint on the free port answered
