"""The daemon's state in SQLite: cursors, the SKU index, ledgers and parked records.

One file per daemon instance (``SYNC_DB``), opened in WAL mode and created with mode
0600. Every row carries the shop it belongs to, so one file can never mix two shops'
state by accident. The schema is versioned with ``PRAGMA user_version``: an older file
is migrated on open, a newer one is refused.

Writes happen in :meth:`Store.transaction`, one ``BEGIN IMMEDIATE`` … ``COMMIT`` at a
time, on the one writing connection. Reads go through a second, read-only connection
and so see committed state only: a task never decides from another task's writes that
may still be rolled back. Inside its own transaction a task reads through that
transaction (it sees its own writes).

The invariant every flow keeps (README, "State and crash safety", says the same):
**a cursor never passes a record whose outcome is not committed, and applying a record
again is harmless.** Each record's outcome is committed in the record's own ledger row
(order ledger, SKU index, stock ledger, product intents, parked records) — before the
next write that depends on it; a cursor is advanced only after every record before it
was committed, and it trails by the flow's overlap, so records are read again and the
ledgers make that a no-op. A crash therefore loses nothing and repeats nothing that
was committed.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiosqlite
import anyio
import structlog

from daemon.errors import FatalError
from daemon.logs import scrub
from daemon.reasons import advice_for

log = structlog.get_logger("daemon.store")

#: schema migrations, in order; migration N brings a file from version N-1 to N
MIGRATIONS: tuple[str, ...] = (
    # 1: the first schema
    """
    CREATE TABLE cursors (
        shop TEXT NOT NULL,
        flow TEXT NOT NULL,
        value TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        PRIMARY KEY (shop, flow)
    );
    CREATE TABLE flow_status (
        shop TEXT NOT NULL,
        flow TEXT NOT NULL,
        last_success TEXT,
        last_error TEXT,
        last_error_at TEXT,
        PRIMARY KEY (shop, flow)
    );
    CREATE TABLE sku_index (
        shop TEXT NOT NULL,
        variant_id TEXT NOT NULL,
        sku TEXT NOT NULL,
        product_id TEXT NOT NULL,
        inventory_item_id TEXT,
        rackbeat_number TEXT,
        shopify_hash TEXT,
        rackbeat_hash TEXT,
        updated_at TEXT NOT NULL,
        PRIMARY KEY (shop, variant_id)
    );
    CREATE INDEX sku_index_by_sku ON sku_index (shop, sku);
    CREATE INDEX sku_index_by_item ON sku_index (shop, inventory_item_id);
    CREATE TABLE order_ledger (
        shop TEXT NOT NULL,
        order_id TEXT NOT NULL,
        order_name TEXT NOT NULL,
        state TEXT NOT NULL,
        rackbeat_number TEXT,
        customer_number TEXT,
        shopify_updated_at TEXT,
        demand TEXT,
        note TEXT,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        PRIMARY KEY (shop, order_id)
    );
    CREATE INDEX order_ledger_by_state ON order_ledger (shop, state);
    CREATE TABLE customers (
        shop TEXT NOT NULL,
        email TEXT NOT NULL,
        customer_number TEXT NOT NULL,
        PRIMARY KEY (shop, email)
    );
    CREATE TABLE stock_ledger (
        shop TEXT NOT NULL,
        inventory_item_id TEXT NOT NULL,
        location_id TEXT NOT NULL,
        quantity INTEGER NOT NULL,
        rackbeat_figure TEXT,
        updated_at TEXT NOT NULL,
        PRIMARY KEY (shop, inventory_item_id, location_id)
    );
    CREATE TABLE parked (
        shop TEXT NOT NULL,
        flow TEXT NOT NULL,
        key TEXT NOT NULL,
        reason TEXT NOT NULL,
        detail TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 1,
        first_seen TEXT NOT NULL,
        last_seen TEXT NOT NULL,
        next_attempt TEXT NOT NULL,
        PRIMARY KEY (shop, flow, key)
    );
    """,
    # 2: stock pushes in flight (the idempotency key is stored before sending)
    """
    CREATE TABLE stock_batches (
        shop TEXT NOT NULL,
        batch_key TEXT NOT NULL,
        location_id TEXT NOT NULL,
        payload TEXT NOT NULL,
        created_at TEXT NOT NULL,
        PRIMARY KEY (shop, batch_key)
    );
    """,
    # 3: what Rackbeat last said of an imported order, and cancellations in Shopify
    """
    ALTER TABLE order_ledger ADD COLUMN rackbeat_state TEXT;
    ALTER TABLE order_ledger ADD COLUMN cancelled INTEGER NOT NULL DEFAULT 0;
    """,
    # 4: products being created in Shopify: written before productCreate (which cannot be
    # resent safely), completed with the new ids, deleted once the SKU index has the product
    """
    CREATE TABLE product_intents (
        shop TEXT NOT NULL,
        sku TEXT NOT NULL,
        title TEXT NOT NULL,
        product_id TEXT,
        variant_id TEXT,
        inventory_item_id TEXT,
        created_at TEXT NOT NULL,
        PRIMARY KEY (shop, sku)
    );
    """,
    # 5: orders: consecutive retriable failures (parked after a few), and when a draft's
    # state was last read back from Rackbeat (drafts are re-read until Rackbeat reserves them)
    """
    ALTER TABLE order_ledger ADD COLUMN failures INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE order_ledger ADD COLUMN checked_at TEXT;
    """,
    # 6: what a parked record's reason is about (the SKU of UNKNOWN_SKU), so that it wakes
    # when that appears; rows parked before keep theirs in the detail ("SKU 'X' is not …")
    """
    ALTER TABLE parked ADD COLUMN subject TEXT;
    UPDATE parked SET subject = substr(detail, instr(detail, 'SKU ''') + 5,
        instr(substr(detail, instr(detail, 'SKU ''') + 5), '''') - 1)
    WHERE reason = 'UNKNOWN_SKU' AND instr(detail, 'SKU ''') > 0;
    CREATE INDEX parked_by_subject ON parked (shop, flow, reason, subject);
    """,
    # 7: the stock flow's memory between cycles, so that a restart changes nothing: when the
    # last full reconcile began and for which settings, the order ledger's rowid the last
    # cycle looked at, and SKUs still to do — 'read': read Shopify first (a write went
    # stale), 'refresh': the full reconcile's pass has still to read it per location
    """
    CREATE TABLE stock_state (
        shop TEXT NOT NULL PRIMARY KEY,
        reconciled_at TEXT,
        reconciled_for TEXT,
        seen_watermark INTEGER
    );
    CREATE TABLE stock_pending (
        shop TEXT NOT NULL,
        pending TEXT NOT NULL,
        sku TEXT NOT NULL,
        PRIMARY KEY (shop, pending, sku)
    );
    """,
    # 8: an order's life after transfer: Shopify's own demand when it differs from what was
    # transferred (an edit after transfer), how far its fulfilment in Shopify is, and the
    # Rackbeat updated_at last acted on; one row per Rackbeat shipment fulfilled in Shopify,
    # written before fulfillmentCreate (which cannot be resent safely)
    """
    ALTER TABLE order_ledger ADD COLUMN shopify_demand TEXT;
    ALTER TABLE order_ledger ADD COLUMN fulfilment TEXT;
    ALTER TABLE order_ledger ADD COLUMN shipped_seen TEXT;
    CREATE INDEX order_ledger_by_rackbeat ON order_ledger (shop, rackbeat_number);
    CREATE TABLE fulfilments (
        shop TEXT NOT NULL,
        order_id TEXT NOT NULL,
        shipment TEXT NOT NULL,
        state TEXT NOT NULL,
        lines TEXT NOT NULL,
        tracking TEXT,
        fulfillment_id TEXT,
        note TEXT,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        PRIMARY KEY (shop, order_id, shipment)
    );
    """,
    # 9: the bulk reads of the first start —
    # a running Shopify bulk operation by purpose, stored before it is waited for so that a
    # restart polls it instead of starting another; the progress of long work for
    # ``status`` (another process); Shopify's available quantities the index's bulk read
    # took at the stock location, for the first push (each used once)
    """
    CREATE TABLE bulk_operations (
        shop TEXT NOT NULL,
        purpose TEXT NOT NULL,
        operation_id TEXT NOT NULL,
        started_at TEXT NOT NULL,
        PRIMARY KEY (shop, purpose)
    );
    CREATE TABLE progress (
        shop TEXT NOT NULL,
        work TEXT NOT NULL,
        phase TEXT NOT NULL,
        done INTEGER NOT NULL,
        total INTEGER,
        seconds_left REAL,
        updated_at TEXT NOT NULL,
        PRIMARY KEY (shop, work)
    );
    CREATE TABLE shopify_levels (
        shop TEXT NOT NULL,
        inventory_item_id TEXT NOT NULL,
        location TEXT NOT NULL,
        available INTEGER,
        read_at TEXT NOT NULL,
        PRIMARY KEY (shop, inventory_item_id, location)
    );
    """,
    # 10: the versions of Shopify records each incremental read has applied (its stream:
    # orders, the SKU index, products), so that the overlap re-reads a record in full only
    # when it changed since (daemon.incremental); rows older than the stream's cursor go
    """
    CREATE TABLE applied_versions (
        shop TEXT NOT NULL,
        stream TEXT NOT NULL,
        record_id TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        PRIMARY KEY (shop, stream, record_id)
    );
    """,
)

SCHEMA_VERSION = len(MIGRATIONS)

#: how the order ledger's note of an order skipped for its age begins (``status`` counts them)
SKIPPED_BEFORE_START = "created before the import start"
#: the order ledger's ``fulfilment`` of an order Shopify had fulfilled itself when it was
#: transferred (the orders flow writes it; the fulfilments flow leaves such orders alone)
FULFILLED_IN_SHOPIFY = "shopify"

#: parked records are retried after this delay, doubling per attempt up to the cap
PARK_RETRY_FIRST = timedelta(minutes=5)
PARK_RETRY_CAP = timedelta(hours=6)
#: the next attempt of a record parked for a person to look at: never, until ``retry``
PARKED_FOR_A_PERSON = datetime(9999, 12, 31, tzinfo=UTC)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class ParkedRecord:
    """A record a flow could not apply, with why."""

    flow: str
    key: str
    reason: str
    detail: str
    attempts: int
    first_seen: datetime
    last_seen: datetime
    next_attempt: datetime


@dataclass(frozen=True)
class FlowRecord:
    """What the DB remembers of a flow for ``status``."""

    flow: str
    cursor: str | None
    cursor_updated_at: datetime | None
    last_success: datetime | None
    last_error: str | None
    last_error_at: datetime | None


class Transaction:
    """The writes of one ``BEGIN IMMEDIATE`` … ``COMMIT``; obtained from :meth:`Store.transaction`."""

    def __init__(self, db: aiosqlite.Connection, shop: str, now: datetime) -> None:
        self.db = db
        self.shop = shop
        self.now = now

    async def execute(self, sql: str, params: Iterable[Any] = ()) -> None:
        """Run one statement inside the transaction."""
        await self.db.execute(sql, tuple(params))

    async def executemany(self, sql: str, rows: Iterable[Iterable[Any]]) -> None:
        """Run one statement for each parameter row."""
        await self.db.executemany(sql, rows)

    async def set_cursor(self, flow: str, value: str) -> None:
        """Advance ``flow``'s cursor; lands together with the rest of the transaction."""
        await self.db.execute(
            "INSERT INTO cursors (shop, flow, value, updated_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (shop, flow) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
            (self.shop, flow, value, _iso(self.now)),
        )

    async def park(
        self,
        flow: str,
        key: str,
        reason: str,
        detail: str,
        *,
        subject: str | None = None,
        manual: bool = False,
    ) -> None:
        """Park a record (or count one more attempt); it is retried later with backoff, or
        at once when :meth:`Store.wake_parked` is told its ``subject`` appeared. A
        ``manual`` record waits for a person (:data:`PARKED_FOR_A_PERSON`): it comes due
        only with ``rackbeat-shopify retry``.

        ``detail`` is scrubbed of the tokens first: it may quote an API's own words (a 422's
        field messages), and it is shown by ``parked`` and kept in the file."""
        detail = scrub(detail)
        cursor = await self.db.execute(
            "SELECT attempts FROM parked WHERE shop = ? AND flow = ? AND key = ?", (self.shop, flow, key)
        )
        row = await cursor.fetchone()
        attempts = (row[0] if row else 0) + 1
        delay = (
            PARKED_FOR_A_PERSON - self.now
            if manual
            else min(PARK_RETRY_FIRST * (2 ** (attempts - 1)), PARK_RETRY_CAP)
        )
        await self.db.execute(
            "INSERT INTO parked (shop, flow, key, reason, subject, detail, attempts, first_seen, last_seen, "
            "next_attempt) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (shop, flow, key) DO UPDATE SET reason = excluded.reason, subject = excluded.subject, "
            "detail = excluded.detail, attempts = excluded.attempts, last_seen = excluded.last_seen, "
            "next_attempt = excluded.next_attempt",
            (
                self.shop,
                flow,
                key,
                reason,
                subject,
                detail,
                attempts,
                _iso(self.now),
                _iso(self.now),
                _iso(self.now + delay),
            ),
        )

    async def unpark(self, flow: str, key: str) -> None:
        """Forget a parked record (it has been applied)."""
        await self.db.execute(
            "DELETE FROM parked WHERE shop = ? AND flow = ? AND key = ?", (self.shop, flow, key)
        )


#: the store whose transaction the current task is inside (its reads see its own writes)
_writing: ContextVar[Store | None] = ContextVar("writing", default=None)


class Store:
    """The state DB of one shop. Open with :meth:`open`; close with :meth:`close`."""

    def __init__(
        self,
        db: aiosqlite.Connection,
        path: Path,
        shop: str,
        reader: aiosqlite.Connection,
        write_lock: anyio.Lock | None = None,
    ) -> None:
        #: the writing connection (transactions only)
        self.db = db
        self.path = path
        self.shop = shop
        self._reader = reader
        self._write_lock = write_lock or anyio.Lock()
        #: this object opened the connections (a view of another shop does not close them)
        self._owner = write_lock is None

    def for_shop(self, shop: str) -> Store:
        """The same file seen as ``shop``'s state: the shops of one account share the
        connections and the one writer, each with its own rows."""
        return Store(self.db, self.path, shop, self._reader, self._write_lock)

    @classmethod
    async def open(cls, path: Path | str, shop: str) -> Store:
        """Open (creating with mode 0600, migrating if older) the state DB at ``path``."""
        path = Path(path)
        if str(path) != ":memory:":
            path.parent.mkdir(parents=True, exist_ok=True)
            # create it ourselves so that it is never world-readable, not even for a moment
            fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
            os.close(fd)
            os.chmod(path, 0o600)
        db = await aiosqlite.connect(str(path), isolation_level=None)
        try:
            await db.execute("PRAGMA journal_mode = WAL")
            await db.execute("PRAGMA synchronous = NORMAL")
            await db.execute("PRAGMA foreign_keys = ON")
            await db.execute("PRAGMA busy_timeout = 5000")
            await cls._migrate(db, path)
            reader = await aiosqlite.connect(str(path), isolation_level=None)
        except BaseException:
            await db.close()
            raise
        try:
            await reader.execute("PRAGMA query_only = ON")
            await reader.execute("PRAGMA busy_timeout = 5000")
        except BaseException:
            await reader.close()
            await db.close()
            raise
        return cls(db, path, shop, reader)

    @staticmethod
    async def _migrate(db: aiosqlite.Connection, path: Path) -> None:
        cursor = await db.execute("PRAGMA user_version")
        row = await cursor.fetchone()
        version = int(row[0]) if row else 0
        if version > SCHEMA_VERSION:
            raise FatalError(
                f"state DB {path} has schema version {version}, newer than this daemon knows "
                f"({SCHEMA_VERSION}); run the newer release, or restore a backup made before the upgrade"
            )
        for number in range(version + 1, SCHEMA_VERSION + 1):
            # executescript commits on its own; the version bump is part of the same script
            await db.executescript(
                f"BEGIN IMMEDIATE;\n{MIGRATIONS[number - 1]}\nPRAGMA user_version = {number};\nCOMMIT;"
            )

    async def close(self) -> None:
        """Close the DB (after the last transaction committed); a shop's view leaves it open."""
        if not self._owner:
            return
        async with self._write_lock:
            await self._reader.close()
            await self.db.close()

    async def schema_version(self) -> int:
        """The file's schema version."""
        return int((await self.fetchval("PRAGMA user_version")) or 0)

    @asynccontextmanager
    async def transaction(self, now: datetime | None = None) -> AsyncIterator[Transaction]:
        """One write transaction: everything inside commits together or not at all."""
        async with self._write_lock:
            await self.db.execute("BEGIN IMMEDIATE")
            token = _writing.set(self)
            try:
                yield Transaction(self.db, self.shop, now or _now())
            except BaseException:
                with anyio.CancelScope(shield=True):
                    await self.db.execute("ROLLBACK")
                raise
            finally:
                _writing.reset(token)
            with anyio.CancelScope(shield=True):
                await self.db.execute("COMMIT")

    def _connection(self) -> aiosqlite.Connection:
        """Where a read goes: the reading connection (committed state), or the writing one
        inside this task's own transaction (its own writes included)."""
        writing = _writing.get()
        return self.db if writing is not None and writing.db is self.db else self._reader

    # --- reads ----------------------------------------------------------------------
    async def fetchall(self, sql: str, params: Iterable[Any] = ()) -> list[tuple[Any, ...]]:
        """Rows of a read query (committed state; see the module docstring)."""
        cursor = await self._connection().execute(sql, tuple(params))
        return [tuple(row) for row in await cursor.fetchall()]

    async def fetchone(self, sql: str, params: Iterable[Any] = ()) -> tuple[Any, ...] | None:
        """The first row of a read query, or None."""
        cursor = await self._connection().execute(sql, tuple(params))
        row = await cursor.fetchone()
        return tuple(row) if row is not None else None

    async def fetchval(self, sql: str, params: Iterable[Any] = ()) -> Any:
        """The first column of the first row, or None."""
        row = await self.fetchone(sql, params)
        return row[0] if row else None

    async def get_cursor(self, flow: str) -> str | None:
        """The committed cursor of ``flow``, or None before its first commit."""
        value = await self.fetchval(
            "SELECT value FROM cursors WHERE shop = ? AND flow = ?", (self.shop, flow)
        )
        return str(value) if value is not None else None

    async def parked(self, flow: str | None = None) -> list[ParkedRecord]:
        """Parked records, oldest first (optionally of one flow)."""
        sql = (
            "SELECT flow, key, reason, detail, attempts, first_seen, last_seen, next_attempt FROM parked "
            "WHERE shop = ?"
        )
        params: list[Any] = [self.shop]
        if flow is not None:
            sql += " AND flow = ?"
            params.append(flow)
        rows = await self.fetchall(sql + " ORDER BY first_seen, key", params)
        return [
            ParkedRecord(
                flow=r[0],
                key=r[1],
                reason=r[2],
                detail=r[3],
                attempts=int(r[4]),
                first_seen=datetime.fromisoformat(r[5]),
                last_seen=datetime.fromisoformat(r[6]),
                next_attempt=datetime.fromisoformat(r[7]),
            )
            for r in rows
        ]

    async def parked_counts(self) -> dict[str, int]:
        """Number of parked records per flow."""
        rows = await self.fetchall(
            "SELECT flow, COUNT(*) FROM parked WHERE shop = ? GROUP BY flow", (self.shop,)
        )
        return {str(r[0]): int(r[1]) for r in rows}

    async def due_parked(self, flow: str, now: datetime | None = None) -> list[ParkedRecord]:
        """Parked records of ``flow`` whose retry time has come. A record that waited for a
        person (``manual``) comes due only when that person ran ``retry``, which says it is
        dealt with: it is cleared here instead of returned."""
        moment = _iso(now or _now())
        due = [p for p in await self.parked(flow) if _iso(p.next_attempt) <= moment]
        cleared = [p for p in due if advice_for(p.reason).manual]
        if cleared:
            async with self.transaction() as tx:
                for record in cleared:
                    await tx.unpark(flow, record.key)
            log.info("parked.cleared", flow=flow, keys=[p.key for p in cleared])
        return [p for p in due if not advice_for(p.reason).manual]

    async def retry_parked(self, key: str | None = None, flow: str | None = None) -> int:
        """Make parked records due now (one by key, or all); return how many.

        A bare number that is no key of its own (``1042``) also finds the parked order
        named ``#1042``: operators type the number they see in Shopify.
        """
        changed = await self._retry_parked(key, flow)
        if changed == 0 and key is not None and key.strip().isdigit() and flow in (None, "orders"):
            changed = await self._retry_parked(f"#{key.strip()}", "orders")
        return changed

    async def _retry_parked(self, key: str | None, flow: str | None, reason: str | None = None) -> int:
        sql = "UPDATE parked SET next_attempt = ? WHERE shop = ?"
        params: list[Any] = [_iso(datetime(1970, 1, 1, tzinfo=UTC)), self.shop]
        for column, value in (("key", key), ("flow", flow), ("reason", reason)):
            if value is not None:
                sql += f" AND {column} = ?"
                params.append(value)
        async with self._write_lock:
            cursor = await self.db.execute(sql, params)
            return int(cursor.rowcount)

    async def wake_parked(self, flow: str, reason: str, subjects: Iterable[str]) -> int:
        """Make due now the records parked for ``reason`` whose subject (the SKU of
        UNKNOWN_SKU) is one of ``subjects``: their cause may have cleared."""
        rows = [(_iso(datetime(1970, 1, 1, tzinfo=UTC)), self.shop, flow, reason, s) for s in subjects]
        if not rows:
            return 0
        async with self._write_lock:
            before = self.db.total_changes
            await self.db.executemany(
                "UPDATE parked SET next_attempt = ? WHERE shop = ? AND flow = ? AND reason = ? AND subject = ?",
                rows,
            )
            return int(self.db.total_changes - before)

    async def wake_reason(self, flow: str, reason: str) -> int:
        """Make due now every record of ``flow`` parked for ``reason``; return how many."""
        return await self._retry_parked(None, flow, reason)

    async def flows(self, names: Iterable[str]) -> list[FlowRecord]:
        """Cursor and last outcome of each named flow."""
        result: list[FlowRecord] = []
        for name in names:
            cur = await self.fetchone(
                "SELECT value, updated_at FROM cursors WHERE shop = ? AND flow = ?", (self.shop, name)
            )
            st = await self.fetchone(
                "SELECT last_success, last_error, last_error_at FROM flow_status WHERE shop = ? AND flow = ?",
                (self.shop, name),
            )
            result.append(
                FlowRecord(
                    flow=name,
                    cursor=cur[0] if cur else None,
                    cursor_updated_at=_parse(cur[1]) if cur else None,
                    last_success=_parse(st[0]) if st else None,
                    last_error=st[1] if st else None,
                    last_error_at=_parse(st[2]) if st else None,
                )
            )
        return result

    async def record_outcome(self, flow: str, *, ok: bool, error: str | None = None) -> None:
        """Remember a flow cycle's outcome for ``status`` (success time, or the error)."""
        now = _iso(_now())
        async with self.transaction() as tx:
            if ok:
                await tx.execute(
                    "INSERT INTO flow_status (shop, flow, last_success) VALUES (?, ?, ?) "
                    "ON CONFLICT (shop, flow) DO UPDATE SET last_success = excluded.last_success",
                    (self.shop, flow, now),
                )
            else:
                await tx.execute(
                    "INSERT INTO flow_status (shop, flow, last_error, last_error_at) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT (shop, flow) DO UPDATE SET last_error = excluded.last_error, "
                    "last_error_at = excluded.last_error_at",
                    (self.shop, flow, error, now),
                )

    async def counts(self) -> Mapping[str, int]:
        """Row counts of the main tables (for ``status``)."""
        result: dict[str, int] = {}
        for table in ("sku_index", "order_ledger", "stock_ledger", "customers", "parked"):
            result[table] = int(
                await self.fetchval(f"SELECT COUNT(*) FROM {table} WHERE shop = ?", (self.shop,))  # noqa: S608  # table names are the constants above
            )
        # orders left out on purpose, by why (the ledger's note has each one's detail)
        result["orders_skipped_before_start"] = int(
            await self.fetchval(
                "SELECT COUNT(*) FROM order_ledger WHERE shop = ? AND state = 'skipped' AND note LIKE ?",
                (self.shop, f"{SKIPPED_BEFORE_START}%"),
            )
        )
        return result


def _parse(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None
