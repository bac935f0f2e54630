"""``rackbeat-shopify merge-state PATH``: two instances' state files become one, losing nothing.

Each shop's state is made by the real flows (orders, stock, products) against the
simulators; the merged file must show each shop to ``status`` exactly as its own file did,
and the shops' daemon must go on from there without importing anything again.
"""

from __future__ import annotations

import io
import json
import os
import re
import sqlite3
import stat
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, closing
from pathlib import Path
from typing import Any

import anyio
import pytest

from daemon import app
from daemon.__main__ import main
from daemon.config import Account, Shop
from daemon.merge import MergeRefused, merge_state
from daemon.metrics import Metrics
from daemon.stock_decision import Recorded
from daemon.store import MIGRATIONS, SCHEMA_VERSION, Store
from tests.harness import World, orders_flow, settings_for
from tests.test_flow_products import products_flow
from tests.test_flow_stock import catalogue, stock_flow

pytestmark = pytest.mark.anyio

SHOP_A = "shop-a.myshopify.com"
SHOP_B = "shop-b.myshopify.com"
#: every table of the state DB
TABLES = re.findall(r"CREATE TABLE (\w+)", "".join(MIGRATIONS))


@asynccontextmanager
async def shop_with_history(directory: Path, domain: str, *, orders: int) -> AsyncIterator[World]:
    """A shop whose daemon ran for a while: orders imported (customers created), one order
    parked for an unknown SKU, stock pushed, products indexed, one order imported after the
    last stock cycle (so the stock flow's watermark trails the ledger), flow outcomes kept."""
    async with catalogue(directory, None, 3, shopify_shop=domain) as w:
        importer = orders_flow(w)
        await importer.run_once()  # the orders cursor starts now
        stock = stock_flow(w, importer.run_once)
        await stock.run_once()
        for i in range(orders):
            w.shopify_sim.sell(f"SKU-{i % 3:04}", 1, email=f"buyer{i}@example.com")
        w.shopify_sim.create_order([{"sku": "GIFT", "quantity": 1, "price": "10.00", "title": "Gift card"}])
        w.tick(60)
        await importer.run_once()
        w.tick(60)
        await stock.run_once()
        await products_flow(w).run_once()
        w.shopify_sim.sell("SKU-0001", 1, email="late@example.com")
        w.tick(60)
        await importer.run_once()
        await w.store.record_outcome("orders", ok=True)
        await w.store.record_outcome("stock", ok=False, error="transport: Rackbeat answered 503")
        yield w


def account(db: Path, *shops: tuple[str, str]) -> Account:
    return Account(tuple(Shop(alias, settings_for(db, shopify_shop=domain)) for alias, domain in shops))


async def status_of(db: Path, *shops: tuple[str, str]) -> dict[str, dict[str, Any]]:
    """``status --json`` of each shop in the file at ``db``, by domain (the file's path left out)."""
    out = io.StringIO()
    assert await app.status(account(db, *shops), as_json=True, out=out) == 0
    doc = json.loads(out.getvalue())
    docs = doc.get("shops", [doc])
    return {d["shop"]: {k: v for k, v in d.items() if k != "db"} for d in docs}


def table_rows(db: Path, shop: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of ``shop`` in every table (rowids left out), sorted."""
    with closing(sqlite3.connect(db)) as connection:
        tables = [r[0] for r in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        return {
            table: sorted(
                connection.execute(f"SELECT * FROM {table} WHERE shop = ?", (shop,)).fetchall(),  # noqa: S608
                key=repr,
            )
            for table in tables
        }


def after_watermarks(db: Path, shop: str) -> dict[str, tuple[int, int]]:
    """Each of ``shop``'s order-ledger watermarks (its last stock cycle's, and each stock
    ledger row's) → (its own orders after it, other shops' orders after it)."""
    with closing(sqlite3.connect(db)) as connection:
        marks: dict[str, int] = {}
        seen = connection.execute("SELECT seen_watermark FROM stock_state WHERE shop = ?", (shop,)).fetchone()
        if seen is not None and seen[0] is not None:
            marks["seen"] = int(seen[0])
        for item, quantity, blob in connection.execute(
            "SELECT inventory_item_id, quantity, rackbeat_figure FROM stock_ledger WHERE shop = ?", (shop,)
        ):
            marks[item] = Recorded.from_row(quantity, blob).watermark
        rows = connection.execute("SELECT rowid, shop FROM order_ledger").fetchall()
    return {
        name: (
            sum(1 for rowid, owner in rows if rowid > mark and owner == shop),
            sum(1 for rowid, owner in rows if rowid > mark and owner != shop),
        )
        for name, mark in marks.items()
    }


async def test_merged_shops_show_the_same_status_and_nothing_is_imported_again(tmp_path: Path) -> None:
    db_a, db_b = tmp_path / "a" / "sync.db", tmp_path / "b" / "sync.db"
    async with shop_with_history(db_a.parent, SHOP_A, orders=5):
        pass
    before_a = (await status_of(db_a, ("a", SHOP_A)))[SHOP_A]
    rows_a = table_rows(db_a, SHOP_A)
    marks_a = after_watermarks(db_a, SHOP_A)
    async with shop_with_history(db_b.parent, SHOP_B, orders=3) as w:
        before_b = (await status_of(db_b, ("b", SHOP_B)))[SHOP_B]
        rows_b = table_rows(db_b, SHOP_B)
        marks_b = after_watermarks(db_b, SHOP_B)
        assert marks_b["seen"] == (1, 0)  # the late order came after the last stock cycle
        drafts, customers = len(w.rackbeat.orders), len(w.rackbeat.customers)
        parked = [(p.key, p.attempts, p.next_attempt) for p in await w.store.parked()]
        assert len(parked) == 1  # the gift card's order: UNKNOWN_SKU

        # B's daemon still has its file open: refused, nothing written
        with pytest.raises(MergeRefused, match="in use by another process"):
            await merge_state(db_b, db_a)
        assert table_rows(db_a, SHOP_B) == {table: [] for table in rows_a}

        await w.store.close()  # B's daemon stopped
        report = await merge_state(db_b, db_a)

        assert report.shops == (SHOP_B,)
        assert report.copied["order_ledger"] == len(rows_b["order_ledger"]) == 3 + 1 + 1  # GIFT + late
        assert report.copied == {table: len(rows) for table, rows in rows_b.items()}
        for table in (
            "cursors",
            "flow_status",
            "sku_index",
            "customers",
            "stock_ledger",
            "parked",
            "stock_state",
        ):
            assert report.copied[table] > 0, table
        after = await status_of(db_a, ("a", SHOP_A), ("b", SHOP_B))
        assert after[SHOP_A] == before_a
        assert after[SHOP_B] == before_b
        assert after[SHOP_B]["counts"]["parked"] == 1
        # every row of both shops, byte for byte, apart from the stock flow's watermarks
        assert table_rows(db_a, SHOP_A)["order_ledger"] == rows_a["order_ledger"]
        assert table_rows(db_a, SHOP_B)["order_ledger"] == rows_b["order_ledger"]
        assert table_rows(db_a, SHOP_B)["parked"] == rows_b["parked"]
        # the copied shop's watermarks see its own orders after them as before, and no other
        # shop's; the target shop's stock decisions see no copied order as arrived since
        # (the units they hold stay held), its last cycle sees them all as sold since (re-read)
        assert after_watermarks(db_a, SHOP_B) == marks_b
        marks = after_watermarks(db_a, SHOP_A)
        assert marks.pop("seen") == (marks_a["seen"][0], len(rows_b["order_ledger"]))
        assert len(marks) == 3
        assert set(marks.values()) == {(0, 0)}

        # B's daemon now runs on the merged file: nothing is imported or created again
        w.store, w.metrics = await Store.open(db_a, SHOP_B), Metrics()
        importer = orders_flow(w)
        w.tick(60)
        await importer.run_once()
        await stock_flow(w, importer.run_once).run_once()
        assert (len(w.rackbeat.orders), len(w.rackbeat.customers)) == (drafts, customers)
        assert w.metrics.value("orders", "imported") == 0
        # the stock memory carried over: that cycle was no first-ever full reconcile
        assert table_rows(db_a, SHOP_B)["stock_state"][0][1:3] == rows_b["stock_state"][0][1:3]
        assert [(p.key, p.attempts, p.next_attempt) for p in await w.store.parked()] == parked


async def test_a_shop_already_in_sync_db_is_refused_and_nothing_is_written(tmp_path: Path) -> None:
    db_a, db_b = tmp_path / "a.db", tmp_path / "b.db"
    await parked_in(db_a, SHOP_A, "#1")
    await parked_in(db_b, SHOP_B, "#2")
    await merge_state(db_b, db_a)
    await parked_in(db_b, SHOP_A, "#3")  # b's file now holds a's state too
    before = table_rows(db_a, SHOP_B), table_rows(db_a, SHOP_A)

    with pytest.raises(MergeRefused) as refused:
        await merge_state(db_b, db_a)

    assert f"shop {SHOP_B} already has state in {db_a} (cursors, parked)" in str(refused.value)
    assert f"shop {SHOP_A} already has state" in str(refused.value)
    assert "nothing was copied" in str(refused.value)
    assert (table_rows(db_a, SHOP_B), table_rows(db_a, SHOP_A)) == before


async def parked_in(db: Path, shop: str, key: str | None) -> None:
    """A state file with ``shop``'s orders cursor and the order ``key`` parked (None: an
    empty state file)."""
    store = await Store.open(db, shop)
    try:
        if key is not None:
            async with store.transaction() as tx:
                await tx.set_cursor("orders", "2026-11-01T10:00:00+00:00")
                await tx.park("orders", key, "NO_EMAIL", f"order {key} has no e-mail")
    finally:
        await store.close()


def old_state_file(path: Path, version: int, shop: str) -> None:
    """A state file as release ``version`` of the schema left it, with a parked order and an
    imported one."""
    with closing(sqlite3.connect(path)) as connection, connection:
        for migration in MIGRATIONS[:version]:
            connection.executescript(migration)
        connection.execute(f"PRAGMA user_version = {version}")
        connection.execute(
            "INSERT INTO parked (shop, flow, key, reason, detail, first_seen, last_seen, next_attempt) "
            "VALUES (?, 'orders', '#1001', 'UNKNOWN_SKU', 'line 1: SKU ''GIFT'' is not in Rackbeat', "
            "'2026-01-01T00:00:00+00:00', '2026-01-01T00:00:00+00:00', '2026-01-01T00:05:00+00:00')",
            (shop,),
        )
        connection.execute(
            "INSERT INTO order_ledger (shop, order_id, order_name, state, rackbeat_number, created_at, updated_at) "
            "VALUES (?, 'gid://shopify/Order/1', '#1000', 'done', '5001', '2026-01-01', '2026-01-01')",
            (shop,),
        )


@pytest.fixture
def sync_db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An environment with nothing of ours but ``SYNC_DB`` (the one setting merge-state
    needs); the returned path does not exist yet."""
    monkeypatch.chdir(tmp_path)  # no .env of a developer's checkout
    for name in list(os.environ):
        if name.startswith(("RACKBEAT_", "SHOPIFY_", "SYNC_", "SHOP", "LOG_", "CREDENTIALS_", "STATE_DIR")):
            monkeypatch.delenv(name)
    target = tmp_path / "account" / "sync.db"
    monkeypatch.setenv("SYNC_DB", str(target))
    return target


def test_an_older_state_file_is_migrated_first_and_sync_db_created_private(
    tmp_path: Path, sync_db: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    source = tmp_path / "old.db"
    old_state_file(source, 5, SHOP_B)
    monkeypatch.setenv("SHOPIFY_SHOP", SHOP_A)  # the account's settings name another shop

    assert main(["merge-state", str(source)]) == 0

    out = capsys.readouterr().out
    assert f"merged {source} into {sync_db} (created)" in out
    assert f"  shop {SHOP_B}" in out
    copied = {m[1]: int(m[2]) for m in re.finditer(r"^  (\w+) +(\d+) rows$", out, re.MULTILINE)}
    assert copied == {table: 1 if table in ("order_ledger", "parked") else 0 for table in TABLES}
    assert f"2 rows copied in one transaction; {source} is migrated from schema 5 to {SCHEMA_VERSION}" in out
    assert f"note: {SHOP_B} is not one of this account's shops (SHOPS)" in out
    assert stat.S_IMODE(sync_db.stat().st_mode) == 0o600
    with closing(sqlite3.connect(source)) as connection:
        assert connection.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
    with closing(sqlite3.connect(sync_db)) as connection:
        # migration 6 found the parked order's SKU in its detail; migration 5's columns have their defaults
        assert connection.execute("SELECT subject FROM parked").fetchall() == [("GIFT",)]
        assert connection.execute("SELECT cancelled, failures FROM order_ledger").fetchall() == [(0, 0)]
    after = anyio.run(status_of, sync_db, ("b", SHOP_B))
    assert {row["flow"]: row["parked"] for row in after[SHOP_B]["flows"]}["orders"] == 1


def test_the_command_refuses_what_it_must_not_merge(
    tmp_path: Path, sync_db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "missing.db"
    assert main(["merge-state", str(missing)]) == 1
    assert f"error: no state file at {missing}" in capsys.readouterr().err
    assert not sync_db.exists()

    empty = tmp_path / "empty.db"
    anyio.run(lambda: parked_in(empty, SHOP_A, None))
    assert main(["merge-state", str(empty)]) == 1
    assert "holds no shop's state: nothing to merge" in capsys.readouterr().err
    assert not sync_db.exists()

    source = tmp_path / "a.db"
    anyio.run(parked_in, source, SHOP_A, "#1")
    with closing(sqlite3.connect(source)) as daemon:  # its daemon still runs: it has the file open
        daemon.execute("SELECT COUNT(*) FROM parked").fetchall()
        assert main(["merge-state", str(source)]) == 1
        assert f"error: {source} is in use by another process: stop the daemon" in capsys.readouterr().err
    assert not sync_db.exists()

    assert main(["merge-state", str(source)]) == 0
    other = tmp_path / "b.db"
    anyio.run(parked_in, other, SHOP_B, "#2")
    with closing(sqlite3.connect(sync_db)) as daemon:  # the account's daemon runs already
        daemon.execute("SELECT COUNT(*) FROM parked").fetchall()
        assert main(["merge-state", str(other)]) == 1
        assert f"error: {sync_db} is in use by another process" in capsys.readouterr().err
    assert main(["merge-state", str(source)]) == 1
    assert f"error: shop {SHOP_A} already has state in {sync_db} (cursors, parked)" in capsys.readouterr().err
    assert main(["merge-state", str(sync_db)]) == 1
    assert "is SYNC_DB itself" in capsys.readouterr().err
