"""The demo: the README's first command takes a fresh clone to a working, truthful demo."""

from __future__ import annotations

import io
import os
import random
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import anyio
import pytest

from daemon.demo import (
    DemoOptions,
    Snapshot,
    World,
    act,
    compact_line,
    demo,
    health_status,
    seed_world,
    summary_lines,
)
from daemon.sim.rackbeat import DEFAULT_TOKEN as RACKBEAT_TOKEN
from daemon.sim.rackbeat import RackbeatSimulator
from daemon.sim.shopify import DEFAULT_ACCESS_TOKEN, ShopifySimulator
from tests.test_process import clean_env

TOKENS = (RACKBEAT_TOKEN, DEFAULT_ACCESS_TOKEN)
#: a status line (output that is not a terminal) once orders reached Rackbeat
IMPORTED = re.compile(r"\| orders [1-9]\d*/\d+ in Rackbeat")


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
        seconds=4, seed=3, db=tmp_path / "demo.db", poll_seconds=0.5, activity_every=0.3, health_port=0
    )
    result = await demo(options, out)
    text = out.getvalue()

    assert result.ok, text
    truth = result.truth
    assert truth.once > 0, text
    assert truth.once == truth.placed - len(truth.unknown_sku)
    assert (truth.missing, truth.duplicated, truth.leaked) == ([], [], [])
    assert truth.unknown_sku, "the gift card order is in the demo"
    assert result.snapshot.event("orders", "imported") == truth.once
    assert result.snapshot.parked >= len(truth.unknown_sku)
    assert result.activity["orders placed"] > len(truth.unknown_sku)
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
    env = dict(word.split("=", 1) for word in step.split() if word.startswith(("SYNC_DB=", "SHOPIFY_SHOP=")))
    assert env == {"SYNC_DB": str(tmp_path / "demo.db"), "SHOPIFY_SHOP": "demo-shop.myshopify.com"}
    with anyio.fail_after(30):
        parked = await anyio.run_process(
            [sys.executable, "-m", "daemon", "parked"], cwd=tmp_path, env=clean_env(env), check=False
        )
    assert parked.returncode == 0, parked.stdout + parked.stderr
    assert "UNKNOWN_SKU" in parked.stdout.decode()
    assert "rackbeat-shopify reconcile --dry-run" in text


def test_the_summary_counts_in_words() -> None:
    world = World(ShopifySimulator(), RackbeatSimulator(), random.Random(1))
    snap = Snapshot(events={("stock", "quantities_pushed"): 1, ("stock", "batches"): 1})
    assert "stock     1 quantity pushed to Shopify in 1 batch" in summary_lines(world, snap, "url")
    snap = Snapshot(events={("stock", "quantities_pushed"): 12, ("stock", "batches"): 2})
    assert "stock     12 quantities pushed to Shopify in 2 batches" in summary_lines(world, snap, "url")


def test_a_health_warning_says_why() -> None:
    def check(name: str, status: str, **extra: object) -> list[dict[str, object]]:
        return [{"componentId": name, "status": status, "observedValue": 0.5, "parked": 0, **extra}]

    snap = Snapshot(health={"status": "pass", "checks": {"orders:lag": check("orders", "pass")}})
    assert health_status(snap) == "pass"
    snap.health = {
        "status": "warn",
        "checks": {
            "orders:lag": check("orders", "warn", parked=1),
            "stock:lag": check("stock", "warn", output="retrying: a request failed 3s ago; backing off"),
            "products:lag": check("products", "pass"),
        },
    }
    assert health_status(snap) == (
        "warn (orders: 1 record parked; stock: retrying: a request failed 3s ago; backing off)"
    )
    world = World(ShopifySimulator(), RackbeatSimulator(), random.Random(1))
    assert "| health warn (orders: 1 record parked; stock: retrying" in compact_line(world, snap)


def _activity(seed: int, *, fast_daemon: bool) -> list[str]:
    """Forty pieces of activity without a daemon; ``fast_daemon``: as if one booked every
    imported order and created every new product in Shopify at once."""
    world = World(ShopifySimulator(), RackbeatSimulator(), random.Random(seed), seed=seed)
    seed_world(world)
    texts: list[str] = []
    for _ in range(40):
        text = act(world)
        texts.append(text.split("  ", 1)[-1])
        if fast_daemon:
            for sku in world.new_skus:
                if world.shopify.find_by_sku(sku) is None:
                    world.shopify.add_product(sku, [{"sku": sku, "price": "100.00", "stock": 12}])
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
    assert "| health warn (orders: 1 record parked" in done.stdout
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
