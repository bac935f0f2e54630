"""One instance's state file into another's: two daemons of one Rackbeat account become one.

``rackbeat-shopify merge-state PATH`` copies every row of every table of the state file at
``PATH`` (another instance's ``SYNC_DB``) into ``SYNC_DB``. Every row of the state DB is
keyed by its shop's domain, so shops sit side by side in one file: the copied shops keep
their cursors, ledgers, SKU index, customers, stock memory and parked records, and the
daemon serving the account goes on where each shop's own daemon stopped — nothing is
imported or pushed again.

What the merge guarantees:

- ``PATH`` is migrated to the current schema first (:meth:`Store.open`, as a daemon of
  this release would on start), and ``SYNC_DB`` is created (mode 0600) or migrated too, so
  both have the same tables and columns; rows are copied with explicit column lists.
- Refused, with nothing written, while another process has either file open (a daemon
  that was not stopped), when ``PATH`` holds no state, and when a shop of ``PATH``
  already has rows in ``SYNC_DB`` (two histories of one shop cannot be merged: the
  message names the shop).
- Everything is copied in one transaction: a crash or a refusal leaves ``SYNC_DB`` as it
  was. ``PATH`` is read only (apart from its migration): keep it as the backup.

Order-ledger row numbers. The stock flow remembers the order ledger's largest rowid when
it decided — ``stock_state.seen_watermark`` and the ``watermark`` of each stock ledger
row's inputs (:class:`daemon.stock_decision.Recorded`) — and counts the orders after it
as sold since. So the copied orders keep their order and come after the target's
(rowid + offset, the offset being the target's largest rowid), and the copied shops'
watermarks move by the same offset: each copied shop sees exactly its own orders after
its watermarks, as before, and none of the target's. The target shops' recorded
watermarks are raised to the new largest rowid: otherwise the copied shops' whole
history would count as orders that arrived since their decisions and could explain
units held back for Shopify sales not in the ledger yet, releasing them early. Raised,
such units are held at most :data:`daemon.stock_decision.HOLD_LIMIT` longer — towards
underselling, never overselling. Their ``seen_watermark`` stays: the copied orders then
count as sold since their last cycle, which costs one re-read of those SKUs.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import anyio

from daemon.errors import FatalError
from daemon.stock_decision import Recorded
from daemon.store import SCHEMA_VERSION, Store, Transaction

#: rows read from the source and written to the target at a time
BATCH = 1000
#: the table whose rowids other tables refer to (the stock flow's watermarks)
ORDER_LEDGER = "order_ledger"


class MergeRefused(FatalError):
    """The merge was not done (nothing was written to the target); the message says why."""


@dataclass(frozen=True)
class MergeReport:
    """What :func:`merge_state` did."""

    source: Path
    target: Path
    #: the shops (domains) whose rows were copied
    shops: tuple[str, ...]
    #: rows copied per table, in the schema's order
    copied: dict[str, int]
    #: the source's schema version before it was migrated
    source_version: int
    #: the target did not exist and was created
    created: bool

    @property
    def total(self) -> int:
        """Rows copied in all."""
        return sum(self.copied.values())


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _probe(path: Path) -> int:
    """``path``'s schema version, after making sure no other connection has it open.

    A daemon keeps its state DB open while it runs (in WAL mode every open connection
    holds a shared lock on the file), so an exclusive lock that cannot be had at once
    means a daemon, or a command, is using the file.
    """
    try:
        connection = sqlite3.connect(path, timeout=0, isolation_level=None)
    except sqlite3.Error as exc:
        raise MergeRefused(f"cannot open {path}: {exc}") from None
    try:
        connection.execute("PRAGMA locking_mode = EXCLUSIVE")
        connection.execute("BEGIN EXCLUSIVE")
        version = int(connection.execute("PRAGMA user_version").fetchone()[0])
        connection.execute("ROLLBACK")
    except sqlite3.OperationalError as exc:
        if exc.sqlite_errorcode in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
            raise MergeRefused(
                f"{path} is in use by another process: stop the daemon that uses it "
                "(systemctl stop rackbeat-shopify@…) and try again"
            ) from None
        raise MergeRefused(f"cannot use {path}: {exc}") from None
    except sqlite3.DatabaseError as exc:
        raise MergeRefused(f"{path} is not a state DB: {exc}") from None
    finally:
        connection.close()
    return version


async def _tables(store: Store) -> dict[str, list[str]]:
    """Table → its columns, in the schema's order (SQLite's own tables left out)."""
    names = await store.fetchall(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY rowid"
    )
    tables: dict[str, list[str]] = {}
    for (name,) in names:
        columns = await store.fetchall(f"PRAGMA table_info({_quote(str(name))})")
        tables[str(name)] = [str(column[1]) for column in columns]
    return tables


async def _shops(store: Store, tables: Sequence[str]) -> tuple[str, ...]:
    found: set[str] = set()
    for table in tables:
        rows = await store.fetchall(f"SELECT DISTINCT shop FROM {_quote(table)}")  # noqa: S608  # names from sqlite_master, quoted
        found.update(str(row[0]) for row in rows)
    return tuple(sorted(found))


async def merge_state(source: Path | str, target: Path | str) -> MergeReport:
    """Copy every shop's state from the state file ``source`` into ``target`` (module
    docstring); :class:`MergeRefused` (nothing written) when it must not be done."""
    source, target = Path(source), Path(target)
    if not source.is_file():
        raise MergeRefused(f"no state file at {source}")
    created = not target.exists()
    if not created and source.resolve() == target.resolve():
        raise MergeRefused(f"{source} is SYNC_DB itself; name the other instance's state file")
    source_version = await anyio.to_thread.run_sync(_probe, source)
    if source_version > SCHEMA_VERSION:
        raise MergeRefused(
            f"{source} has schema version {source_version}, newer than this daemon knows "
            f"({SCHEMA_VERSION}); run the merge with the newer release"
        )
    if not created:
        await anyio.to_thread.run_sync(_probe, target)
    try:
        src = await Store.open(source, "")
    except sqlite3.DatabaseError as exc:
        raise MergeRefused(f"{source} is not a state DB: {exc}") from None
    try:
        tables = await _tables(src)
        shops = await _shops(src, list(tables))
        if not shops:
            raise MergeRefused(f"{source} holds no shop's state: nothing to merge")
        try:
            dst = await Store.open(target, "")
            try:
                copied = await _merge(src, dst, tables, shops)
            finally:
                await dst.close()
        except BaseException:
            if created:  # leave no empty file behind for a merge that did not happen
                for leftover in (target, Path(f"{target}-wal"), Path(f"{target}-shm")):
                    leftover.unlink(missing_ok=True)
            raise
    finally:
        await src.close()
    return MergeReport(source, target, shops, copied, source_version, created)


async def _merge(
    src: Store, dst: Store, theirs: dict[str, list[str]], shops: tuple[str, ...]
) -> dict[str, int]:
    """Copy the rows of ``shops`` (every row of ``src``) into ``dst`` in one transaction."""
    source, target = src.path, dst.path
    async with dst.transaction() as tx:
        ours = await _tables(dst)
        for table, columns in theirs.items():
            missing = [c for c in columns if c not in ours.get(table, [])]
            if missing or "shop" not in columns:
                raise MergeRefused(
                    f"{source}: table {table} does not match {target}'s schema (columns {missing or columns})"
                )
        await _refuse_clashes(dst, list(theirs), shops, target)
        offset = int(await dst.fetchval(f"SELECT COALESCE(MAX(rowid), 0) FROM {ORDER_LEDGER}") or 0)  # noqa: S608  # a constant
        copied = {table: await _copy(src, tx, table, columns, offset) for table, columns in theirs.items()}
        newest = int(await dst.fetchval(f"SELECT COALESCE(MAX(rowid), 0) FROM {ORDER_LEDGER}") or 0)  # noqa: S608  # a constant
        await _move_watermarks(dst, tx, shops, offset=offset, newest=newest)
    return copied


async def _refuse_clashes(dst: Store, tables: Sequence[str], shops: Sequence[str], target: Path) -> None:
    """:class:`MergeRefused` naming each shop of ``shops`` that already has rows in the target."""
    held: dict[str, list[str]] = {}
    marks = ", ".join("?" for _ in shops)
    for table in tables:
        rows = await dst.fetchall(
            f"SELECT DISTINCT shop FROM {_quote(table)} WHERE shop IN ({marks})",  # noqa: S608  # names from sqlite_master, quoted
            shops,
        )
        for (shop,) in rows:
            held.setdefault(str(shop), []).append(table)
    if held:
        lines = [
            f"shop {shop} already has state in {target} ({', '.join(t)})" for shop, t in sorted(held.items())
        ]
        raise MergeRefused(
            "\n".join(lines) + "\nthe state of one shop cannot come from two files; nothing was copied"
        )


async def _copy(src: Store, tx: Transaction, table: str, columns: Sequence[str], offset: int) -> int:
    """Copy every row of ``table``, in rowid order; order-ledger rows keep their order
    behind the target's (rowid + ``offset``)."""
    keep_rowid = table == ORDER_LEDGER
    listed = ", ".join(_quote(c) for c in columns)
    into = ("rowid, " if keep_rowid else "") + listed
    marks = ", ".join("?" for _ in range(len(columns) + (1 if keep_rowid else 0)))
    insert = f"INSERT INTO {_quote(table)} ({into}) VALUES ({marks})"  # noqa: S608  # names from sqlite_master, quoted
    select = f"SELECT rowid, {listed} FROM {_quote(table)} WHERE rowid > ? ORDER BY rowid LIMIT {BATCH}"  # noqa: S608  # names from sqlite_master, quoted
    copied, last = 0, None
    while True:
        rows = await src.fetchall(select, (last if last is not None else -(2**63),))
        if not rows:
            return copied
        batch: list[tuple[Any, ...]] = [
            ((int(row[0]) + offset, *row[1:]) if keep_rowid else row[1:]) for row in rows
        ]
        await tx.executemany(insert, batch)
        copied += len(rows)
        last = int(rows[-1][0])


async def _move_watermarks(
    dst: Store, tx: Transaction, shops: Sequence[str], *, offset: int, newest: int
) -> None:
    """The stock flow's order-ledger watermarks after the copy (module docstring)."""
    marks = ", ".join("?" for _ in shops)
    if offset:
        await tx.execute(
            f"UPDATE stock_state SET seen_watermark = seen_watermark + ? "  # noqa: S608  # placeholders only
            f"WHERE shop IN ({marks}) AND seen_watermark IS NOT NULL",
            (offset, *shops),
        )
    rows = await dst.fetchall(
        "SELECT shop, inventory_item_id, location_id, quantity, rackbeat_figure FROM stock_ledger"
    )
    changed: list[tuple[str, str, str, str]] = []
    for shop, item, location, quantity, blob in rows:
        recorded = Recorded.from_row(int(quantity), blob)
        if shop in shops:
            moved = replace(recorded, watermark=recorded.watermark + offset)
        elif newest > offset:  # orders were copied: none of them arrived after this decision
            moved = replace(recorded, watermark=max(recorded.watermark, newest))
        else:
            continue
        if moved != recorded:
            changed.append((moved.blob(), str(shop), str(item), str(location)))
    await tx.executemany(
        "UPDATE stock_ledger SET rackbeat_figure = ? WHERE shop = ? AND inventory_item_id = ? AND location_id = ?",
        changed,
    )
