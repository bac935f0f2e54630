"""The SKU index: SKU ↔ Shopify product, variant and inventory item ↔ Rackbeat number.

Matching between the two systems is SKU = Rackbeat product number (the guide). Shopify
does not keep SKUs unique, so the index is keyed by variant and a SKU may map to several
rows; :meth:`SkuIndex.duplicates` names those, and the flows refuse to guess between them.

Built in full on the first start (every variant, paged, with progress) and then kept
current from products updated since the ``index`` cursor (minus an overlap: Shopify's
search index lags). A full rebuild (:meth:`SkuIndex.build`) also drops variants that no
longer exist; ``reconcile`` runs one.

State invariant (:mod:`daemon.store`): a cursor never passes a record whose outcome is not
committed, and applying a record again is harmless.
Here: each page's variants and the cursor commit together, and re-reading a variant
writes the same row again.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import structlog

from daemon.errors import MalformedResponse
from daemon.progress import Progress
from daemon.shopify import ShopifyClient
from daemon.store import Store, Transaction

log = structlog.get_logger("daemon.index")

#: the cursor (products ``updated_at``) of the incremental refresh
CURSOR = "index"
#: re-read this much before the cursor: Shopify's search index lags behind writes
OVERLAP = timedelta(minutes=5)

_COLUMNS = (
    "variant_id",
    "sku",
    "product_id",
    "inventory_item_id",
    "rackbeat_number",
    "shopify_hash",
    "rackbeat_hash",
)


@dataclass(frozen=True)
class IndexEntry:
    """One Shopify variant with a SKU, and what the daemon knows of its Rackbeat twin."""

    variant_id: str
    sku: str
    product_id: str
    inventory_item_id: str | None
    rackbeat_number: str | None = None
    shopify_hash: str | None = None
    rackbeat_hash: str | None = None


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _parse(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)


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
    ) -> None:
        self.store = store
        self.shopify = shopify
        self.clock = clock
        self.min_interval = min_interval
        self._monotonic = monotonic
        self._lock = anyio.Lock()
        self._refreshed_at: float | None = None

    # --- keeping it current -------------------------------------------------------------------

    async def ensure_built(self) -> bool:
        """Build the index in full unless it has been built before; True when it was built now."""
        if await self.store.get_cursor(CURSOR) is not None:
            return False
        await self.build()
        return True

    async def build(self) -> int:
        """Read every variant of the shop; drop rows of variants that no longer exist.

        Each page is committed as it arrives (a crash costs at most the build being
        restarted); the cursor is set at the end, to the moment the build started.
        """
        started = self.clock()
        total = await self.shopify.variant_count()
        progress = Progress("SKU index build", total, shop=self.store.shop)
        seen: set[str] = set()
        pages = self.shopify.variants()
        async with contextlib.aclosing(pages):
            async for page in pages:
                entries = [e for e in (entry_from_variant(v) for v in page) if e is not None]
                seen.update(str(v.get("id")) for v in page)
                async with self.store.transaction() as tx:
                    await self._upsert(tx, entries)
                progress.advance(len(page))
        rows = await self.store.fetchall(
            "SELECT variant_id FROM sku_index WHERE shop = ?", (self.store.shop,)
        )
        gone = [r[0] for r in rows if r[0] not in seen]
        async with self.store.transaction() as tx:
            await self._delete(tx, gone)
            await tx.set_cursor(CURSOR, _iso(started - OVERLAP))
        progress.finish()
        return len(seen)

    async def current(self) -> set[str]:
        """Refresh unless another flow did so within ``min_interval`` seconds (the flows
        share one index); return the SKUs new in the index."""
        async with self._lock:
            now = self._monotonic()
            if self._refreshed_at is not None and now - self._refreshed_at < self.min_interval:
                return set()
            new = await self.refresh()
            self._refreshed_at = self._monotonic()
            return new

    async def refresh(self) -> set[str]:
        """Apply products updated since the cursor; return the SKUs that are new in the index."""
        await self.ensure_built()
        cursor = _parse(await self.store.get_cursor(CURSOR) or _iso(self.clock()))
        # products updated before ``settled`` are in Shopify's lagging search index by now
        settled = self.clock() - OVERLAP
        new: set[str] = set()
        pages = self.shopify.products_updated_since(cursor)
        async with contextlib.aclosing(pages):
            async for products in pages:
                known = await self._known_variants([str(p.get("id")) for p in products])
                entries: list[IndexEntry] = []
                current: set[str] = set()
                last = cursor
                for product in products:
                    product_id = product.get("id")
                    if not isinstance(product_id, str):
                        raise MalformedResponse("a product without id")
                    for variant in product.get("variants", {}).get("nodes", []):
                        entry = entry_from_variant(variant, product_id)
                        if entry is not None:
                            entries.append(entry)
                            current.add(entry.variant_id)
                    updated = product.get("updatedAt")
                    if isinstance(updated, str):
                        last = max(last, _parse(updated))
                new.update(e.sku for e in entries if e.variant_id not in known)
                async with self.store.transaction() as tx:
                    await self._upsert(tx, entries)
                    await self._delete(tx, [v for v in known if v not in current])
                    await tx.set_cursor(CURSOR, _iso(max(cursor, min(last, settled))))
        if settled > cursor:  # every page is in: the cursor may trail the start by the lag
            async with self.store.transaction() as tx:
                await tx.set_cursor(CURSOR, _iso(settled))
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
            [(self.store.shop, n) for n in numbers],
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
        """SKU → its rows (several rows: a duplicate SKU); all SKUs when ``skus`` is None."""
        result: dict[str, list[IndexEntry]] = {}
        wanted = set(skus) if skus is not None else None
        for entry in await self.entries():
            if wanted is None or entry.sku in wanted:
                result.setdefault(entry.sku, []).append(entry)
        return result

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

    async def _upsert(self, tx: Transaction, entries: Sequence[IndexEntry]) -> None:
        now = _iso(self.clock())
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
