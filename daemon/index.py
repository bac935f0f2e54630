"""The SKU index: SKU ↔ Shopify product, variant and inventory item ↔ Rackbeat number.

Matching between the two systems is SKU = Rackbeat product number (the guide). Shopify
does not keep SKUs unique, so the index is keyed by variant and a SKU may map to several
rows; :meth:`SkuIndex.duplicates` names those, and the flows refuse to guess between them.

Built in full on the first start and then kept current from products updated since the
``index`` cursor, read by :class:`daemon.incremental.ChangeFeed`: the overlap Shopify's
lagging search index needs is listed by id and time, and only products changed since the
index last read them are read in full (the build records the version of every product it
read, so the refresh after it reads nothing again). :meth:`SkuIndex.current` may be given
a budget (the stock flow's: its push never waits for a long refresh): it then reads at
most that many products in full and leaves the rest to the next call, and a call while
another refresh runs returns at once. A full rebuild
(:meth:`SkuIndex.build`) also drops variants that no longer exist; ``reconcile`` runs one.

A full build reads page by page (250 variants a request, bound by query cost: about
25 minutes for 50,000 variants on the Standard plan) or, from :data:`BULK_FROM_VARIANTS`
variants on, with one Shopify bulk query (:mod:`daemon.bulk`): started early (the stock
flow calls :meth:`SkuIndex.prepare` before it scans Rackbeat, so the two run at once),
its id stored before it is waited for (a restart polls it instead of starting another),
its result streamed line by line and committed every :data:`BULK_BATCH` lines. The same
query reads Shopify's available quantity at the stock location; those readings go to
``shopify_levels`` for the stock flow's first push (:meth:`SkuIndex.take_levels`, each used
once). A bulk read that fails, expires or is lost falls back to paging, logged with why.
Either way the build's end — dropping variants that no longer exist, setting the cursor
to the moment the data were read — commits only after every variant is in. Progress
(done of total, time left) is logged and kept in the ``progress`` table for ``status``.

State invariant (:mod:`daemon.store`): a cursor never passes a record whose outcome is not
committed, and applying a record again is harmless.
Here: each page's (or batch's) variants commit together and the cursor only after the
last; re-reading a variant writes the same row again.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import structlog

from daemon.bulk import BulkRead, BulkUnavailable
from daemon.errors import MalformedResponse
from daemon.incremental import OVERLAP, shopify_feed, updated_at
from daemon.progress import Progress
from daemon.shopify import BulkOperation, ShopifyClient
from daemon.shopify_documents import bulk_variants_query
from daemon.store import Store, Transaction
from daemon.times import iso, parse_time

log = structlog.get_logger("daemon.index")

#: the cursor (products ``updated_at``) of the incremental refresh
CURSOR = "index"
#: build by bulk query from this many variants on. Measured with bench/index.py's
#: ``measure`` (simulated seconds, Standard plan: bucket 2,000 points, 100 a second):
#: paged 0.1 s at 500 variants, 10.2 s at 1,000, 130.6 s at 5,000, 281 s at 10,000;
#: bulk 3.4 s, 3.6 s, 19.4 s, 30.6 s. Paging is free while the bucket lasts (about 660
#: variants at 3 points each), then costs 7.5 s per 250; a bulk read costs about 3.5 s
#: at that size, so they meet near 780 variants. 800, rounded.
BULK_FROM_VARIANTS = 800
#: bulk result lines committed together
BULK_BATCH = 1000
#: a level read by the bulk read is used for a first push only this long: older, it
#: would most likely go stale (costing a request) rather than save one
LEVEL_TTL = timedelta(hours=1)
#: the progress row for ``status`` is written at most this often (seconds)
PROGRESS_EVERY = 5.0
#: the work the progress row and log lines name
BUILD_WORK = "SKU index build"

#: SKUs per lookup query (SQLite's limit on placeholders is far above it)
_LOOKUP_CHUNK = 500

#: the variants a build read (:meth:`SkuIndex._seen_reset`)
_SEEN_TABLE = (
    "CREATE TEMP TABLE IF NOT EXISTS index_seen (shop TEXT NOT NULL, variant_id TEXT NOT NULL, "
    "PRIMARY KEY (shop, variant_id))"
)

_COLUMNS = (
    "variant_id",
    "sku",
    "product_id",
    "inventory_item_id",
    "rackbeat_number",
    "shopify_hash",
    "rackbeat_hash",
)


@dataclass(frozen=True, slots=True)
class IndexEntry:
    """One Shopify variant with a SKU, and what the daemon knows of its Rackbeat twin."""

    variant_id: str
    sku: str
    product_id: str
    inventory_item_id: str | None
    rackbeat_number: str | None = None
    shopify_hash: str | None = None
    rackbeat_hash: str | None = None


def _product_versions(variants: Iterable[Mapping[str, Any]]) -> list[tuple[str, datetime]]:
    """The version (id, ``updatedAt``) of each product of a build's variant rows."""
    found: dict[str, datetime] = {}
    for variant in variants:
        product = variant.get("product")
        if isinstance(product, Mapping) and isinstance(product.get("id"), str) and "updatedAt" in product:
            found[product["id"]] = updated_at(product, "product")
    return list(found.items())


def _bulk_level(row: Mapping[str, Any]) -> tuple[int | None]:
    """The available quantity a bulk row carries: ``(None,)`` where the item is not stocked
    at the location; MalformedResponse when the row lacks what the query asks for."""
    item = row.get("inventoryItem")
    if not isinstance(item, Mapping) or "inventoryLevel" not in item:
        raise MalformedResponse("a variant without its inventory level")
    level = item["inventoryLevel"]
    if level is None:
        return (None,)
    quantities = level.get("quantities") if isinstance(level, Mapping) else None
    if not isinstance(quantities, list):
        raise MalformedResponse("an inventory level without quantities")
    for quantity in quantities:
        if isinstance(quantity, Mapping) and quantity.get("name") == "available":
            value = quantity.get("quantity")
            if isinstance(value, int) and not isinstance(value, bool):
                return (value,)
    raise MalformedResponse("an inventory level without its available quantity")


def entry_from_variant(variant: Mapping[str, Any], product_id: str | None = None) -> IndexEntry | None:
    """The index row of a variant as Shopify returns it; None for a variant without SKU."""
    sku = variant.get("sku")
    variant_id = variant.get("id")
    if not isinstance(variant_id, str):
        raise MalformedResponse("a variant without id")
    if not isinstance(sku, str) or not sku.strip():
        return None
    product = variant.get("product")
    if product_id is None and isinstance(product, Mapping):
        product_id = product.get("id")
    if not isinstance(product_id, str):
        raise MalformedResponse(f"variant {variant_id} without product id")
    item = variant.get("inventoryItem")
    item_id = item.get("id") if isinstance(item, Mapping) else None
    return IndexEntry(variant_id, sku, product_id, item_id if isinstance(item_id, str) else None)


class SkuIndex:
    """Reads and keeps the ``sku_index`` table; see the module docstring."""

    def __init__(
        self,
        store: Store,
        shopify: ShopifyClient,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        min_interval: float = 0.0,
        monotonic: Callable[[], float] = time.monotonic,
        levels_at: Callable[[], Awaitable[str]] | None = None,
        bulk_from: int = BULK_FROM_VARIANTS,
    ) -> None:
        """``levels_at`` gives the stock location (the stock flow's); with it, a bulk
        build also reads Shopify's available quantities there. ``bulk_from``: the
        variant count from which a full build reads by bulk query."""
        self.store = store
        self.shopify = shopify
        self.clock = clock
        self.min_interval = min_interval
        self._monotonic = monotonic
        self._levels_at = levels_at
        self.bulk_from = bulk_from
        self._bulk = BulkRead(store, shopify, CURSOR)
        self._feed = shopify_feed(store, shopify, "products", stream=CURSOR, clock=clock)
        self._lock = anyio.Lock()
        self._refreshed_at: float | None = None
        #: when and in which phase the progress row was last written
        self._saved: tuple[float, str] | None = None

    # --- keeping it current -------------------------------------------------------------------

    async def ensure_built(self) -> bool:
        """Build the index in full unless it has been built before; True when it was built now."""
        if await self.store.get_cursor(CURSOR) is not None:
            return False
        await self.build()
        return True

    async def prepare(self) -> None:
        """Start the first build's bulk read without waiting for it (the stock flow calls
        this before it scans Rackbeat, so both run at once); nothing when the index is
        built, a bulk read is running already, or the shop is too small for one."""
        if await self.store.get_cursor(CURSOR) is not None or await self._bulk.stored() is not None:
            return
        total = await self.shopify.variant_count()
        if total is not None and total < self.bulk_from:
            return
        with contextlib.suppress(BulkUnavailable):  # build() falls back and logs why
            await self._bulk.start(bulk_variants_query(await self._location()))

    async def build(self) -> int:
        """Read every variant of the shop; drop rows of variants that no longer exist.

        By bulk query when one is running already or the shop has :attr:`bulk_from`
        variants or more, else (or when the bulk read cannot give the answer) page by
        page. Rows are committed as they arrive (a crash costs at most reading again);
        the cursor is set at the end, to the moment the data were read.
        """
        started = self.clock()
        total = await self.shopify.variant_count()
        progress = Progress(BUILD_WORK, total, clock=self._monotonic, shop=self.store.shop)
        if await self._bulk.stored() is not None or total is None or total >= self.bulk_from:
            try:
                return await self._build_bulk(progress)
            except BulkUnavailable as exc:
                await self._bulk.abandon(exc.reason)
                progress = Progress(BUILD_WORK, total, clock=self._monotonic, shop=self.store.shop)
        seen = 0
        pages = self.shopify.variants()
        async with contextlib.aclosing(pages):
            async for page in pages:
                entries = [e for e in (entry_from_variant(v) for v in page) if e is not None]
                async with self.store.transaction() as tx:
                    if not seen:
                        await self._seen_reset(tx)
                    await self._upsert(tx, entries, seen=True)
                await self._feed.versions.record(_product_versions(page), started)
                seen += len(page)
                progress.advance(len(page))
                await self._save_progress(progress)
        await self._finish_build(progress, started)
        return seen

    async def _build_bulk(self, progress: Progress) -> int:
        """The build by bulk query (see the module docstring); BulkUnavailable when the
        bulk read cannot give the answer."""
        location = await self._location()
        operation = await self._bulk.start(bulk_variants_query(location))

        async def running(state: BulkOperation) -> None:
            progress.done = state.object_count  # Shopify's count of variants read so far
            await self._save_progress(progress, phase="Shopify reading")

        url = await self._bulk.wait(operation.operation_id, running)
        progress = Progress(progress.what, progress.total, clock=self._monotonic, shop=self.store.shop)
        read_at = iso(operation.started_at)
        seen = 0
        entries: list[IndexEntry] = []
        levels: list[tuple[str, int | None]] = []
        rows: list[Mapping[str, Any]] = []
        first = True
        lines = self._bulk.lines(url)
        async with contextlib.aclosing(lines):
            async for number, row in lines:
                if "__parentId" in row:
                    continue  # not asked for; a nested row belongs to no variant of ours
                try:
                    entry = entry_from_variant(row)
                    level = _bulk_level(row) if location is not None else None
                except MalformedResponse as exc:
                    raise BulkUnavailable(f"line {number} of the bulk result: {exc}") from exc
                seen += 1
                rows.append(row)
                if entry is not None:
                    entries.append(entry)
                    if level is not None and entry.inventory_item_id is not None:
                        levels.append((entry.inventory_item_id, level[0]))
                if len(entries) >= BULK_BATCH:
                    await self._commit_bulk(entries, levels, location, read_at, clear=first)
                    await self._feed.versions.record(_product_versions(rows), operation.started_at)
                    first = False
                    progress.advance(len(entries))
                    await self._save_progress(progress)
                    entries, levels, rows = [], [], []
        await self._commit_bulk(entries, levels, location, read_at, clear=first)
        await self._feed.versions.record(_product_versions(rows), operation.started_at)
        progress.advance(len(entries))
        await self._finish_build(progress, operation.started_at)
        return seen

    async def _commit_bulk(
        self,
        entries: Sequence[IndexEntry],
        levels: Sequence[tuple[str, int | None]],
        location: str | None,
        read_at: str,
        *,
        clear: bool,
    ) -> None:
        """One batch of a bulk build's rows and levels, in one transaction; the first
        batch clears the readings of an earlier build."""
        async with self.store.transaction() as tx:
            if clear:
                await self._seen_reset(tx)
            await self._upsert(tx, entries, seen=True)
            if location is None:
                return
            if clear:
                await tx.execute("DELETE FROM shopify_levels WHERE shop = ?", (self.store.shop,))
            await tx.executemany(
                "INSERT INTO shopify_levels (shop, inventory_item_id, location, available, read_at) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (shop, inventory_item_id, location) DO UPDATE SET "
                "available = excluded.available, read_at = excluded.read_at",
                [(self.store.shop, item, location, available, read_at) for item, available in levels],
            )

    async def _finish_build(self, progress: Progress, read_at: datetime) -> None:
        """The build's end, in one transaction: rows of variants not seen dropped, the
        cursor set to when the data were read, the bulk read and the progress row gone."""
        async with self.store.transaction() as tx:
            await tx.execute(_SEEN_TABLE)  # a build that read no variant at all
            await tx.execute(
                "DELETE FROM sku_index WHERE shop = ? AND variant_id NOT IN "
                "(SELECT variant_id FROM temp.index_seen WHERE shop = ?)",
                (self.store.shop, self.store.shop),
            )
            await self._seen_reset(tx)
            await tx.set_cursor(CURSOR, iso(read_at - OVERLAP))
            await self._feed.versions.moved(tx, read_at - OVERLAP)
            await self._bulk.forget(tx)
            await tx.execute(
                "DELETE FROM progress WHERE shop = ? AND work = ?", (self.store.shop, BUILD_WORK)
            )
        progress.finish()

    async def _save_progress(self, progress: Progress, *, phase: str = "storing") -> None:
        """Keep the progress row for ``status`` (another process): at once when the phase
        changes, else at most every :data:`PROGRESS_EVERY` seconds."""
        now = self._monotonic()
        if self._saved is not None and self._saved[1] == phase and now - self._saved[0] < PROGRESS_EVERY:
            return
        self._saved = (now, phase)
        left = progress.seconds_left
        async with self.store.transaction() as tx:
            await tx.execute(
                "INSERT INTO progress (shop, work, phase, done, total, seconds_left, updated_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (shop, work) DO UPDATE SET phase = excluded.phase, "
                "done = excluded.done, "
                "total = excluded.total, seconds_left = excluded.seconds_left, updated_at = excluded.updated_at",
                (
                    self.store.shop,
                    BUILD_WORK,
                    phase,
                    progress.done,
                    progress.total,
                    left,
                    iso(self.clock()),
                ),
            )

    async def _location(self) -> str | None:
        return None if self._levels_at is None else await self._levels_at()

    # --- the bulk read's levels ---------------------------------------------------------------

    async def take_levels(
        self, item_ids: Sequence[str], location: str, *, keep: bool = False
    ) -> dict[str, int | None]:
        """Shopify's available quantity of these items at ``location`` as the bulk read
        found it (None: not stocked there), for the items it read within
        :data:`LEVEL_TTL`. Each is given out once: the rows are deleted (unless ``keep``:
        a dry run), so a write that goes stale reads Shopify again."""
        if not item_ids:
            return {}
        fresh = iso(self.clock() - LEVEL_TTL)
        found: dict[str, int | None] = {}
        for start in range(0, len(item_ids), 500):
            chunk = list(item_ids[start : start + 500])
            marks = ",".join("?" * len(chunk))
            rows = await self.store.fetchall(
                f"SELECT inventory_item_id, available FROM shopify_levels WHERE shop = ? AND location = ? AND read_at >= ? AND inventory_item_id IN ({marks})",  # noqa: S608  # placeholders only
                (self.store.shop, location, fresh, *chunk),
            )
            found.update(
                (str(item), None if available is None else int(available)) for item, available in rows
            )
        if found and not keep:
            async with self.store.transaction() as tx:
                await tx.executemany(
                    "DELETE FROM shopify_levels WHERE shop = ? AND inventory_item_id = ? AND location = ?",
                    [(self.store.shop, item, location) for item in found],
                )
        return found

    async def current(self, budget: int | None = None) -> set[str]:
        """Refresh unless another flow did so within ``min_interval`` seconds (the flows
        share one index); return the SKUs new in the index.

        With a ``budget`` (products read in full) the caller is in a hurry: a refresh
        running elsewhere is not waited for (a first build is), and this one stops after
        the budget, leaving the rest to the next call (:attr:`more`)."""
        if budget is not None and self._lock.locked() and await self.store.get_cursor(CURSOR) is not None:
            return set()
        async with self._lock:
            now = self._monotonic()
            if self._refreshed_at is not None and now - self._refreshed_at < self.min_interval:
                return set()
            new = await self.refresh(budget)
            self._refreshed_at = None if self.more else self._monotonic()
            return new

    @property
    def more(self) -> bool:
        """The last refresh stopped at its budget with products to go."""
        return self._feed.more

    async def refresh(self, budget: int | None = None) -> set[str]:
        """Apply products changed since the cursor (at most ``budget`` read in full); return
        the SKUs that are new in the index."""
        await self.ensure_built()
        cursor = parse_time(await self.store.get_cursor(CURSOR) or iso(self.clock()))
        new: set[str] = set()
        pages = self._feed.changes(cursor, budget=budget)
        async with contextlib.aclosing(pages):
            async for products in pages:
                known = await self._known_variants([str(p.get("id")) for p in products])
                entries: list[IndexEntry] = []
                current: set[str] = set()
                for product in products:
                    product_id = product.get("id")
                    if not isinstance(product_id, str):
                        raise MalformedResponse("a product without id")
                    for variant in product.get("variants", {}).get("nodes", []):
                        entry = entry_from_variant(variant, product_id)
                        if entry is not None:
                            entries.append(entry)
                            current.add(entry.variant_id)
                new.update(e.sku for e in entries if e.variant_id not in known)
                async with self.store.transaction() as tx:
                    await self._upsert(tx, entries)
                    await self._delete(tx, [v for v in known if v not in current])
        if new:
            log.info("index.new_skus", count=len(new))
        return new

    async def record(self, tx: Transaction, entries: Iterable[IndexEntry]) -> None:
        """Add or replace rows inside ``tx`` (a product the daemon just created in Shopify)."""
        await self._upsert(tx, list(entries))

    async def forget(self, tx: Transaction, variant_ids: Iterable[str]) -> None:
        """Drop rows inside ``tx`` (variants a flow found deleted, e.g. a product removed in
        Shopify; the incremental refresh never sees deletions)."""
        await self._delete(tx, list(variant_ids))

    async def set_hashes(
        self,
        tx: Transaction,
        sku: str,
        *,
        shopify_hash: str | None = None,
        rackbeat_hash: str | None = None,
    ) -> None:
        """Remember the mapped-content hash of ``sku`` on either side (for echo suppression)."""
        for column, value in (("shopify_hash", shopify_hash), ("rackbeat_hash", rackbeat_hash)):
            if value is not None:
                await tx.execute(
                    f"UPDATE sku_index SET {column} = ? WHERE shop = ? AND sku = ?",  # noqa: S608  # fixed column names
                    (value, self.store.shop, sku),
                )

    async def set_rackbeat_numbers(self, tx: Transaction, numbers: Iterable[str]) -> None:
        """Mark these SKUs as existing in Rackbeat (number = SKU)."""
        await tx.executemany(
            "UPDATE sku_index SET rackbeat_number = sku WHERE shop = ? AND sku = ? AND rackbeat_number IS NULL",
            ((self.store.shop, n) for n in numbers),  # a whole scan's numbers: never listed at once
        )

    # --- lookups ----------------------------------------------------------------------------

    async def entries(self) -> list[IndexEntry]:
        """Every row, ordered by SKU."""
        rows = await self.store.fetchall(
            f"SELECT {', '.join(_COLUMNS)} FROM sku_index WHERE shop = ? ORDER BY sku, variant_id",  # noqa: S608  # fixed column names
            (self.store.shop,),
        )
        return [IndexEntry(*row) for row in rows]

    async def by_sku(self, skus: Sequence[str] | None = None) -> dict[str, list[IndexEntry]]:
        """SKU → its rows (several rows: a duplicate SKU); all SKUs when ``skus`` is None.
        Given SKUs are looked up by the table's index, not by reading every row."""
        result: dict[str, list[IndexEntry]] = {}
        if skus is None:
            for entry in await self.entries():
                result.setdefault(entry.sku, []).append(entry)
            return result
        wanted = sorted(set(skus))
        for start in range(0, len(wanted), _LOOKUP_CHUNK):
            chunk = wanted[start : start + _LOOKUP_CHUNK]
            rows = await self.store.fetchall(
                f"SELECT {', '.join(_COLUMNS)} FROM sku_index WHERE shop = ? "  # noqa: S608  # fixed column names, placeholders
                f"AND sku IN ({','.join('?' * len(chunk))}) ORDER BY sku, variant_id",
                (self.store.shop, *chunk),
            )
            for row in rows:
                entry = IndexEntry(*row)
                result.setdefault(entry.sku, []).append(entry)
        return result

    async def unmarked(self, limit: int | None = None) -> set[str] | None:
        """SKUs with a row not yet marked as existing in Rackbeat; None when there are more
        than ``limit`` (a first sync: every row)."""
        rows = await self.store.fetchall(
            "SELECT DISTINCT sku FROM sku_index WHERE shop = ? AND rackbeat_number IS NULL LIMIT ?",
            (self.store.shop, -1 if limit is None else limit + 1),
        )
        if limit is not None and len(rows) > limit:
            return None
        return {str(row[0]) for row in rows}

    async def duplicates(self) -> dict[str, int]:
        """SKUs found on more than one Shopify variant, with how many."""
        rows = await self.store.fetchall(
            "SELECT sku, COUNT(*) FROM sku_index WHERE shop = ? GROUP BY sku HAVING COUNT(*) > 1",
            (self.store.shop,),
        )
        return {str(sku): int(n) for sku, n in rows}

    # --- rows -------------------------------------------------------------------------------

    async def _known_variants(self, product_ids: Sequence[str]) -> set[str]:
        if not product_ids:
            return set()
        marks = ",".join("?" * len(product_ids))
        rows = await self.store.fetchall(
            f"SELECT variant_id FROM sku_index WHERE shop = ? AND product_id IN ({marks})",  # noqa: S608  # placeholders only
            (self.store.shop, *product_ids),
        )
        return {str(r[0]) for r in rows}

    async def _seen_reset(self, tx: Transaction) -> None:
        """Start (or end) a build's list of the variants it read: a table of the writing
        connection's own (``temp``), so that a catalogue's ids are never held in memory and
        a crash leaves nothing behind (a build starts over then)."""
        await tx.execute(_SEEN_TABLE)
        await tx.execute("DELETE FROM temp.index_seen WHERE shop = ?", (self.store.shop,))

    async def _upsert(self, tx: Transaction, entries: Sequence[IndexEntry], *, seen: bool = False) -> None:
        """Add or replace rows; ``seen``: a build read them (kept by :meth:`_finish_build`)."""
        if seen:
            await tx.executemany(
                "INSERT OR IGNORE INTO temp.index_seen (shop, variant_id) VALUES (?, ?)",
                [(self.store.shop, e.variant_id) for e in entries],
            )
        now = iso(self.clock())
        await tx.executemany(
            "INSERT INTO sku_index (shop, variant_id, sku, product_id, inventory_item_id, updated_at) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (shop, variant_id) DO UPDATE SET "
            "product_id = excluded.product_id, inventory_item_id = excluded.inventory_item_id, "
            "updated_at = excluded.updated_at, "
            # a changed SKU is another record: forget what was known of the old one
            "rackbeat_number = CASE WHEN sku = excluded.sku THEN rackbeat_number END, "
            "shopify_hash = CASE WHEN sku = excluded.sku THEN shopify_hash END, "
            "rackbeat_hash = CASE WHEN sku = excluded.sku THEN rackbeat_hash END, "
            "sku = excluded.sku",
            [(self.store.shop, e.variant_id, e.sku, e.product_id, e.inventory_item_id, now) for e in entries],
        )

    async def _delete(self, tx: Transaction, variant_ids: Sequence[str]) -> None:
        await tx.executemany(
            "DELETE FROM sku_index WHERE shop = ? AND variant_id = ?",
            [(self.store.shop, v) for v in variant_ids],
        )
