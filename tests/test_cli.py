"""The operator commands as processes (``python -m daemon …``): what lands on stdout, and
which settings each command needs.

The simulators are served by this test's event loop on loopback while the command runs;
the environment is stripped of every setting of ours (see ``tests.test_process``).
"""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator, Mapping
from pathlib import Path

import anyio
import pytest

from daemon.reasons import advice_for
from daemon.sim.rackbeat import RackbeatSimulator
from daemon.sim.shopify import ShopifySimulator
from daemon.store import Store
from tests.harness import Apis, apis_on_loopback
from tests.test_check_online import settings
from tests.test_process import clean_env

pytestmark = pytest.mark.anyio

SHOP = "check-test.myshopify.com"
EX_CONFIG = 78


@pytest.fixture
async def apis() -> AsyncIterator[Apis]:
    """Both simulators on loopback, with a small catalogue on both sides."""
    shopify, rackbeat = ShopifySimulator(), RackbeatSimulator()
    rackbeat.add_product("frakt", "Frakt")
    for n in range(3):
        sku = f"CLI-{n}"
        rackbeat.add_product(sku, f"Product {n}", sales_price="80", stock=10)
        shopify.add_product(f"Product {n}", [{"sku": sku, "price": "100.00", "stock": 4}])
    async with apis_on_loopback(shopify, rackbeat) as served:
        yield served


async def command(cwd: Path, values: Mapping[str, str], *args: str) -> tuple[int, str, str]:
    """Run ``python -m daemon ARGS``; return (exit status, stdout, stderr)."""
    with anyio.fail_after(45):
        result = await anyio.run_process(
            [sys.executable, "-m", "daemon", *args], cwd=cwd, env=clean_env(values), check=False
        )
    return result.returncode, result.stdout.decode(), result.stderr.decode()


async def test_reconcile_json_is_valid_json_with_logs_on_stderr(apis: Apis, tmp_path: Path) -> None:
    values = settings(apis, tmp_path, LOG_LEVEL="info", LOG_FORMAT="json")
    status, out, err = await command(tmp_path, values, "reconcile", "--dry-run", "--json")
    assert status == 0, out + err
    report = json.loads(out)  # stdout is the report and nothing else
    assert report["dry_run"] is True
    assert {row["sku"] for row in report["stock"]} == {"CLI-0", "CLI-1", "CLI-2"}
    assert all(row["shopify"] == 4 and row["target"] == 10 for row in report["stock"])
    # S10 lists locations 1 and 2: each one's figure is in the row
    assert all(row["rackbeat"] == {"1": "10", "2": "0"} for row in report["stock"]), report["stock"]
    # the log lines went to stderr, at the configured level and format
    logged = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    assert any(
        (entry.get("event"), entry.get("work")) == ("progress.done", "SKU index build") for entry in logged
    ), err


async def test_log_level_applies_to_every_command(apis: Apis, tmp_path: Path) -> None:
    values = settings(apis, tmp_path, LOG_LEVEL="warning")
    status, out, err = await command(tmp_path, values, "reconcile", "--dry-run")
    assert status == 0, out + err
    assert "stock differences: 3" in out
    assert "SKU index build" not in out + err  # an info line, below LOG_LEVEL


async def _state_db(path: Path) -> None:
    store = await Store.open(path, SHOP)
    try:
        async with store.transaction() as tx:
            await tx.park("orders", "#1001", "UNKNOWN_SKU", "line 1: SKU 'GIFT' is not in Rackbeat")
    finally:
        await store.close()


async def test_db_commands_need_only_the_db_and_the_shop(tmp_path: Path) -> None:
    db = tmp_path / "state" / "sync.db"
    db.parent.mkdir()
    await _state_db(db)
    # no tokens, no S3/S5/S8; an unrelated broken setting does not hide the state either
    values = {"SYNC_DB": str(db), "SHOPIFY_SHOP": SHOP, "SYNC_POLL_SECONDS": "nonsense"}

    status, out, err = await command(tmp_path, values, "status", "--json")
    assert status == 0, out + err
    doc = json.loads(out)
    assert doc["shop"] == SHOP
    assert {row["flow"]: row["parked"] for row in doc["flows"]}["orders"] == 1

    status, out, err = await command(tmp_path, values, "parked", "--json")
    assert status == 0, out + err
    [row] = json.loads(out)
    assert row["key"] == "#1001"
    assert row["meaning"] == advice_for("UNKNOWN_SKU").meaning
    assert row["advice"] == advice_for("UNKNOWN_SKU").fix

    status, out, err = await command(tmp_path, values, "retry", "#1001")
    assert status == 0, out + err
    assert "1 parked record(s) queued for retry" in out


async def test_db_commands_name_a_missing_shop(tmp_path: Path) -> None:
    status, out, err = await command(tmp_path, {"SYNC_DB": str(tmp_path / "sync.db")}, "parked")
    assert status == EX_CONFIG, out + err
    assert "SHOPIFY_SHOP: missing" in err


async def test_the_other_commands_still_need_every_setting(tmp_path: Path) -> None:
    values = {"SYNC_DB": str(tmp_path / "sync.db"), "SHOPIFY_SHOP": SHOP}
    status, out, err = await command(tmp_path, values, "reconcile", "--dry-run")
    assert status == EX_CONFIG, out + err
    assert "SHOPIFY_ACCESS_TOKEN: missing" in err
