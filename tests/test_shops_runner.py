"""Several shops in one process: one shop failing leaves the others running; health and
metrics per shop; the state DB commands per shop (``--shop``)."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import anyio
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from daemon.__main__ import main
from daemon.errors import AuthError
from daemon.health import HealthApp
from daemon.metrics import Metrics
from daemon.runner import Runner, ShopFlows
from daemon.shutdown import Shutdown
from daemon.store import Store

EU, SE = "eu-shop.myshopify.com", "se-shop.myshopify.com"


class Flow:
    """Succeeds (applying one record) or raises ``error`` on every cycle."""

    def __init__(self, name: str, error: Exception | None = None) -> None:
        self.name = name
        self.error = error
        self.cycles = 0

    async def run_once(self) -> int:
        self.cycles += 1
        if self.error is not None:
            raise self.error
        return 1


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    s = await Store.open(tmp_path / "sync.db", EU)
    yield s
    await s.close()


@pytest.mark.anyio
async def test_a_shop_whose_token_is_revoked_fails_alone(store: Store) -> None:
    shutdown = Shutdown()
    metrics = Metrics()
    revoked = AuthError("SHOPIFY_ACCESS_TOKEN: Shopify refused the token (401)")
    eu = [Flow("orders", revoked), Flow("stock", revoked)]
    se = [Flow("orders"), Flow("stock")]
    runner = Runner(
        shops=[ShopFlows("eu", store.for_shop(EU), eu), ShopFlows("se", store.for_shop(SE), se)],
        metrics=metrics,
        poll_seconds=0.01,
        shutdown=shutdown,
    )
    assert set(runner.states) == {"eu/orders", "eu/stock", "se/orders", "se/stock"}
    app = HealthApp(runner, store, metrics, "test")
    async with anyio.create_task_group() as tg:
        tg.start_soon(runner.run)
        with anyio.fail_after(10):
            while not (all(f.cycles >= 3 for f in se) and all(f.cycles >= 1 for f in eu)):
                await runner.wait_for_cycle()
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://h") as client:
            health = (await client.get("/healthz")).json()
            exposition = (await client.get("/metrics")).text
        shutdown.request()
    assert all(f.cycles >= 3 for f in se)  # the other shop kept going
    checks = {name: c[0] for name, c in health["checks"].items()}
    assert set(checks) == {"eu/orders:lag", "eu/stock:lag", "se/orders:lag", "se/stock:lag"}
    assert checks["eu/orders:lag"]["status"] == "fail"  # a refused token is fatal at once
    assert checks["eu/orders:lag"]["shop"] == "eu"
    assert "SHOPIFY_ACCESS_TOKEN" in checks["eu/orders:lag"]["output"]
    assert checks["se/orders:lag"]["status"] == "pass"
    assert health["status"] == "fail"
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(exposition)
        for s in family.samples
    }
    assert samples[("rackbeat_shopify_flow_up", (("flow", "orders"), ("shop", "eu")))] == 0
    assert samples[("rackbeat_shopify_flow_up", (("flow", "orders"), ("shop", "se")))] == 1
    assert samples[("rackbeat_shopify_records_applied_total", (("flow", "stock"), ("shop", "se")))] >= 3
    # each shop's outcome is booked in its own rows
    [eu_orders] = await store.for_shop(EU).flows(["orders"])
    [se_orders] = await store.for_shop(SE).flows(["orders"])
    assert eu_orders.last_error is not None
    assert "refused the token" in eu_orders.last_error
    assert se_orders.last_error is None
    assert se_orders.last_success is not None


@pytest.mark.anyio
async def test_shop_views_share_one_writer_and_keep_their_rows(store: Store) -> None:
    eu, se = store.for_shop(EU), store.for_shop(SE)
    async with eu.transaction() as tx:
        await tx.set_cursor("orders", "eu-cursor")
        # a read inside the transaction sees its own write, whichever view reads
        assert await se.fetchval("SELECT value FROM cursors WHERE shop = ?", (EU,)) == "eu-cursor"
    async with se.transaction() as tx:
        await tx.set_cursor("orders", "se-cursor")
    assert (await eu.get_cursor("orders"), await se.get_cursor("orders")) == ("eu-cursor", "se-cursor")
    await se.close()  # a view does not close the file
    assert await eu.get_cursor("orders") == "eu-cursor"


# --- the state DB commands --------------------------------------------------------------------------


@pytest.fixture
def db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in list(os.environ):
        if name.startswith(("RACKBEAT_", "SHOPIFY_", "SYNC_", "HEALTH_", "LOG_", "SHOP")):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "sync.db"
    for name, value in {
        "SHOPS": "eu,se",
        "SHOP_EU__SHOPIFY_SHOP": EU,
        "SHOP_SE__SHOPIFY_SHOP": SE,
        "SYNC_DB": str(path),
    }.items():
        monkeypatch.setenv(name, value)

    async def write() -> None:
        root = await Store.open(path, EU)
        try:
            for shop, key in ((EU, "#1001"), (SE, "#1001"), (SE, "#1002")):
                async with root.for_shop(shop).transaction(datetime(2099, 1, 1, tzinfo=UTC)) as tx:
                    await tx.park("orders", key, "NO_EMAIL", f"order {key} of {shop} has no e-mail")
                    await tx.set_cursor("orders", f"cursor-of-{shop}")
        finally:
            await root.close()

    anyio.run(write)
    return path


def due(path: Path, shop: str) -> set[str]:
    async def read() -> set[str]:
        store = await Store.open(path, shop)
        try:
            return {p.key for p in await store.due_parked("orders", datetime.now(UTC))}
        finally:
            await store.close()

    return anyio.run(read)


def test_status_parked_and_retry_take_a_shop(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["status", "--json"]) == 0
    docs = json.loads(capsys.readouterr().out)["shops"]
    assert [(d["alias"], d["flows"][0]["cursor"], d["flows"][0]["parked"]) for d in docs] == [
        ("eu", f"cursor-of-{EU}", 1),
        ("se", f"cursor-of-{SE}", 2),
    ]
    assert main(["status", "--shop", "se"]) == 0
    out = capsys.readouterr().out
    assert f"shop se ({SE})" in out
    assert EU not in out

    assert main(["parked", "--json", "--shop", "se"]) == 0
    assert [(r["shop"], r["key"]) for r in json.loads(capsys.readouterr().out)] == [
        ("se", "#1001"),
        ("se", "#1002"),
    ]
    assert main(["parked"]) == 0
    out = capsys.readouterr().out
    assert "eu:orders/#1001" in out
    assert "se:orders/#1001" in out

    assert main(["retry", "#1001", "--shop", "se"]) == 0
    assert "1 parked record(s) queued" in capsys.readouterr().out
    assert (due(db, EU), due(db, SE)) == (set(), {"#1001"})  # the other shop's #1001 stays parked
    assert main(["retry", "--all"]) == 0
    assert "3 parked record(s) queued" in capsys.readouterr().out
    assert (due(db, EU), due(db, SE)) == ({"#1001"}, {"#1001", "#1002"})
