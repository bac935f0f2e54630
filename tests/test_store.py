"""State DB: private file, WAL, migrations, atomic page + cursor commits, parking."""

from __future__ import annotations

import sqlite3
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio
import pytest

from daemon import store as store_module
from daemon.errors import FatalError
from daemon.logs import register_secret
from daemon.store import SCHEMA_VERSION, Store

pytestmark = pytest.mark.anyio


async def test_created_private_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "state" / "sync.db"
    store = await Store.open(path, "a.myshopify.com")
    try:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert await store.fetchval("PRAGMA journal_mode") == "wal"
        assert await store.schema_version() == SCHEMA_VERSION
    finally:
        await store.close()


async def test_existing_world_readable_file_is_tightened(tmp_path: Path) -> None:
    path = tmp_path / "sync.db"
    path.touch(mode=0o644)
    path.chmod(0o644)
    store = await Store.open(path, "a.myshopify.com")
    await store.close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


async def test_newer_schema_is_refused_with_a_clear_message(tmp_path: Path) -> None:
    path = tmp_path / "sync.db"
    with sqlite3.connect(path) as db:
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(FatalError, match=r"newer than this daemon knows"):
        await Store.open(path, "a.myshopify.com")


async def test_older_schema_is_migrated_keeping_rows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "sync.db"
    store = await Store.open(path, "a.myshopify.com")
    async with store.transaction() as tx:
        await tx.set_cursor("orders", "2026-11-01T00:00:00+00:00")
    await store.close()
    extra = "CREATE TABLE added_later (shop TEXT NOT NULL, x INTEGER);"
    monkeypatch.setattr(store_module, "MIGRATIONS", (*store_module.MIGRATIONS, extra))
    monkeypatch.setattr(store_module, "SCHEMA_VERSION", SCHEMA_VERSION + 1)
    store = await Store.open(path, "a.myshopify.com")
    try:
        assert await store.schema_version() == SCHEMA_VERSION + 1
        assert await store.get_cursor("orders") == "2026-11-01T00:00:00+00:00"
        assert await store.fetchval("SELECT COUNT(*) FROM added_later") == 0
    finally:
        await store.close()


async def test_page_and_cursor_commit_together_or_not_at_all(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "sync.db", "a.myshopify.com")
    try:

        async def crash_mid_transaction() -> None:
            async with store.transaction() as tx:
                await tx.execute(
                    "INSERT INTO customers (shop, email, customer_number) VALUES (?, ?, ?)",
                    (store.shop, "a@example.com", "1001"),
                )
                await tx.set_cursor("orders", "X")
                raise RuntimeError("crash between the page and the commit")

        with pytest.raises(RuntimeError):
            await crash_mid_transaction()
        assert await store.get_cursor("orders") is None
        assert await store.fetchval("SELECT COUNT(*) FROM customers") == 0
    finally:
        await store.close()


async def test_rows_are_kept_per_shop(tmp_path: Path) -> None:
    path = tmp_path / "sync.db"
    one = await Store.open(path, "one.myshopify.com")
    async with one.transaction() as tx:
        await tx.set_cursor("orders", "1")
        await tx.park("orders", "#1001", "NO_EMAIL", "order #1001 has no e-mail")
    await one.close()
    two = await Store.open(path, "two.myshopify.com")
    try:
        assert await two.get_cursor("orders") is None
        assert await two.parked() == []
    finally:
        await two.close()


async def test_parking_backs_off_and_retry_makes_due(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "sync.db", "a.myshopify.com")
    t0 = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
    try:
        for n in range(3):
            async with store.transaction(now=t0 + timedelta(minutes=n)) as tx:
                await tx.park("orders", "#1001", "UNKNOWN_SKU", "SKU 'X-1' is not a Rackbeat product")
        [record] = await store.parked()
        assert record.attempts == 3
        assert record.next_attempt - record.last_seen == timedelta(minutes=20)
        assert await store.due_parked("orders", now=t0 + timedelta(minutes=3)) == []
        assert await store.parked_counts() == {"orders": 1}
        assert await store.retry_parked("#1001") == 1
        assert [p.key for p in await store.due_parked("orders", now=t0)] == ["#1001"]
        async with store.transaction() as tx:
            await tx.unpark("orders", "#1001")
        assert await store.parked_counts() == {}
    finally:
        await store.close()


async def test_flow_outcomes_for_status(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "sync.db", "a.myshopify.com")
    try:
        await store.record_outcome("stock", ok=False, error="transport: connection refused")
        await store.record_outcome("orders", ok=True)
        rows = {r.flow: r for r in await store.flows(["orders", "stock", "products"])}
        assert rows["orders"].last_success is not None
        assert rows["stock"].last_error == "transport: connection refused"
        assert rows["products"].last_success is None
    finally:
        await store.close()


def state_files(folder: Path) -> list[tuple[str, bytes]]:
    """The state DB and any -wal or -shm beside it, with their bytes."""
    return [(path.name, path.read_bytes()) for path in folder.glob("sync.db*")]


async def test_a_parked_detail_never_keeps_a_token(tmp_path: Path) -> None:
    # an API that quotes our request in its 422 must not put the token into `parked`
    register_secret("rb-store-test-token-77aa")
    store = await Store.open(tmp_path / "sync.db", "a.myshopify.com")
    try:
        async with store.transaction() as tx:
            await tx.park(
                "orders",
                "#1001",
                "REJECTED",
                "name: invalid (Authorization: Bearer rb-store-test-token-77aa)",
            )
        [record] = await store.parked()
        assert "rb-store-test-token-77aa" not in record.detail
        assert record.detail.startswith("name: invalid")
    finally:
        await store.close()
    for name, content in state_files(tmp_path):
        assert b"rb-store-test-token-77aa" not in content, name


async def test_a_read_never_sees_another_tasks_uncommitted_write(tmp_path: Path) -> None:
    """Task A writes a cursor and is still inside its transaction (which it then rolls
    back); task B reading meanwhile must see the committed state, not A's write."""
    store = await Store.open(tmp_path / "sync.db", "a.myshopify.com")
    written, read = anyio.Event(), anyio.Event()
    seen: list[str | None] = []

    async def write_and_roll_back() -> None:
        async with store.transaction() as tx:
            await tx.set_cursor("orders", "2026-12-01T00:00:00Z")
            assert await store.get_cursor("orders") == "2026-12-01T00:00:00Z"  # its own write
            written.set()
            await read.wait()
            raise RuntimeError("rolled back")

    async def writer() -> None:
        with pytest.raises(RuntimeError, match="rolled back"):
            await write_and_roll_back()

    async def reader() -> None:
        await written.wait()
        seen.append(await store.get_cursor("orders"))
        read.set()

    try:
        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                tg.start_soon(writer)
                tg.start_soon(reader)
        assert seen == [None]
        assert await store.get_cursor("orders") is None
        async with store.transaction() as tx:
            await tx.set_cursor("orders", "2026-12-02T00:00:00Z")
        assert await store.get_cursor("orders") == "2026-12-02T00:00:00Z"  # committed: seen at once
    finally:
        await store.close()


async def test_orders_parked_for_an_unknown_sku_before_the_upgrade_still_wake_for_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file of schema 5 kept the SKU only in the detail text; after the migration the
    order wakes when that SKU appears, and not when another SKU that contains it does."""
    path = tmp_path / "sync.db"
    with monkeypatch.context() as old:
        old.setattr(store_module, "MIGRATIONS", store_module.MIGRATIONS[:5])
        old.setattr(store_module, "SCHEMA_VERSION", 5)
        store = await Store.open(path, "a.myshopify.com")
        async with store.transaction() as tx:
            for key, sku in (("#1001", "MUG-1"), ("#1002", "MUG-10")):
                await tx.execute(  # as the daemon of schema 5 parked them
                    "INSERT INTO parked (shop, flow, key, reason, detail, first_seen, last_seen, next_attempt) "
                    "VALUES (?, 'orders', ?, 'UNKNOWN_SKU', ?, '2026-12-01', '2026-12-01', '2999-01-01')",
                    (store.shop, key, f"order {key}: SKU {sku!r} is not a Rackbeat product"),
                )
        await store.close()
    store = await Store.open(path, "a.myshopify.com")
    try:
        assert await store.schema_version() == SCHEMA_VERSION
        assert await store.wake_parked("orders", "UNKNOWN_SKU", ["MUG-1"]) == 1
        due = await store.due_parked("orders")
        assert [p.key for p in due] == ["#1001"]
    finally:
        await store.close()
