"""Products in the direction S13 says, with the guide's fields only.

S13 = rackbeat
    Read: Rackbeat products updated since the ``products.rackbeat`` cursor minus an
    overlap, narrowed to the mapped fields (:data:`~daemon.rackbeat.PRODUCT_FIELDS`). The
    ``updated_at_from`` filter is an assumption, so the result is also filtered here: if
    Rackbeat ignores the parameter, the same request is a narrow full scan and only the
    changed products go on (the flow then stops sending it, and says so once).
    With the stock flow on, its scan of every product's totals, which carries each
    ``updated_at``, is looked at first (:class:`~daemon.shared.ScanSummary`): a scan that
    started after the flow's last look and shows no product updated since the cursor
    minus the overlap moves the cursor as a read would (to the scan's start less the
    overlap), without a request; only a scan showing a change makes the flow read as
    above. While no new scan has completed, the flow waits for one, at most
    :data:`SCAN_WAIT` after its last look, then reads itself. That ``updated_at`` moves
    with every change of a mapped field is what the ``updated_at_from`` read assumes
    already (:func:`~daemon.rackbeat.updated_since_params`); the scan adds no assumption.
    Decide:
    :func:`~daemon.product_mapping.shopify_fields`. Write: ``productUpdate`` for
    title, description, product type and status, ``productVariantsBulkUpdate`` for price and
    barcode — only the fields that differ from what Shopify holds; or create the product.
    Commit: the SKU index row and both fingerprints. The S15 shipping product is never
    published, and a barred product is never created (only archived, when it exists). A
    missing barcode or price is unknown and leaves Shopify's alone; a product without a
    price (or priced 0) is created, and kept, as a draft — the daemon activates it when a
    price arrives if SYNC_NEW_PRODUCT_STATUS is active, and never a merchant's draft.
S13 = shopify
    Read: Shopify products updated since the ``products.shopify`` cursor minus an overlap;
    :class:`daemon.incremental.ChangeFeed` lists them by id and time and reads in full only
    those changed since they were pulled.
    Decide: :func:`~daemon.product_mapping.rackbeat_fields`, one Rackbeat product per
    variant. Write: ``PUT`` of the fields that differ, or ``POST`` a new product into S11's
    group; a changed weight goes inside the whole current ``physical`` object. A variant
    without SKU is parked (NO_SKU).
S13 = disabled
    No product writes; the SKU index is still refreshed every cycle for stock and orders.

Switching S13
    The last active value is kept in the cursors table (``products.priority``). When it
    changes, the direction switched to starts at now, as on a first start, and changes
    made before the switch — while the other side had priority — are skipped even inside
    the cursor's overlap; the old direction's parked records and planned creations are
    dropped. Nothing is bulk-written: aligning is ``reconcile``'s job.

Only the tables' fields are ever sent: tags, images, SEO, metafields, options and other
variants are not in any input the flow builds, and ``productSet`` (whose lists replace
what is there) is not used.

Echoes
------
The SKU index keeps a fingerprint per side (:mod:`daemon.product_mapping`): a hash of what
the record maps to, with a hash per field. A record whose fingerprint equals the stored
one is skipped without a request; one that changed writes only the fields that changed
since the last sync (per-field hashes), so a cost edited in Shopify does not also copy a
price that differs from Rackbeat's only by S14's VAT. ``reconcile`` writes every
difference. After a write the fingerprints of both sides *as they now are* are stored, so the
daemon's own write is never synced back, not even after S13 is switched and the other
side's cursor re-reads it. Before writing, the flow reads the target and sends only the
fields that differ, so re-applying (a crash before the commit, an overlap) writes nothing.

Duplicates
----------
Rackbeat numbers are unique: a ``POST`` that finds the number taken (a crash lost the
answer) reads the product and updates it instead. Shopify SKUs are not: before creating,
the flow looks the SKU up in the index, then with a search — and since a product the
merchant just made may not be searchable yet, a first "not found" only commits a
*planned* intent; the product is created by a later cycle, when the index and a second
search at least :data:`NEW_PRODUCT_SETTLE` later still find no such SKU (else the
merchant's product is updated instead). ``productCreate`` has no
idempotency key, so an *intent* row (table ``product_intents``) is committed before it is
sent and completed with the new ids right after; the product is created as a draft and
only gets its SKU, price and final status once the ids are safe. After a crash or an
ambiguous failure, a pending intent with ids is simply finished. For one without ids the
flow searches for the SKU and for the half-made product (same title, a draft, created
since the intent, one variant without SKU, price 0) and adopts what it finds (one found by
SKU may be the merchant's, so its status is left alone); it creates
again only when nothing turned up *and* the intent is older than :data:`CREATE_SETTLE`,
the bound on Shopify's search lag — before that, "not found" may just mean "not indexed
yet".

A lost answer (:class:`~daemon.errors.AmbiguousWrite`: a timeout, a reset, a 5xx, a
truncated body) is settled at once, inside the cycle, and the flow goes on with the next
product. ``productCreate``: the half-made product is searched for right away and adopted
when found; when not, the intent stays pending for a later cycle as above (Shopify's
search may lag, so "not found" proves nothing yet). ``POST /products`` in Rackbeat: the
number is read back (:func:`daemon.retry.settle_write`; numbers are unique and reads
are immediate), adopted when there, sent again when not.

Failures
--------
A record-level error (Rackbeat 422, Shopify ``userErrors``, a SKU on two variants, a
variant without SKU) parks that product with its reason, keyed by SKU (by variant id for
NO_SKU, by product id for an unreadable Shopify product, MALFORMED); the others go on.
Parked products are retried with backoff, and at once when the record changes; they are
unparked once they sync, or read fine again. Retriable and fatal errors propagate before the cursor moves.

State invariant (:mod:`daemon.store`): a cursor never passes a record whose outcome is not
committed, and applying a record again is harmless.
Here: the SKU index's hashes and the product intents hold each record's outcome; the
cursors move after their page, and an echo or a repeat writes nothing.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import structlog

from daemon.config import ProductPriority, Settings
from daemon.errors import AmbiguousWrite, MalformedResponse, NotFoundError, RecordError, ValidationError
from daemon.incremental import OVERLAP, shopify_feed
from daemon.index import IndexEntry, SkuIndex
from daemon.metrics import Metrics
from daemon.product_mapping import (
    ACTIVE,
    ARCHIVED,
    DRAFT,
    ProductRules,
    ShopifyChanges,
    ShopifyFields,
    ShopifyVariant,
    applied,
    archived_by_daemon,
    changed_fields,
    current_rackbeat_fields,
    current_shopify_fields,
    held_by_daemon,
    held_mark,
    html_to_text,
    new_rackbeat_product,
    priced,
    rackbeat_changes,
    rackbeat_differences,
    rackbeat_fields,
    rackbeat_fingerprint,
    rackbeat_update_body,
    same_content,
    shop_price,
    shopify_changes,
    shopify_differences,
    shopify_fields,
    shopify_fingerprint,
    shopify_variants,
    text_to_html,
)
from daemon.rackbeat import PRODUCT_FIELDS, Product, RackbeatClient, product_body
from daemon.reasons import REASONS
from daemon.retry import settle_write
from daemon.shared import SharedChanges, StockReads
from daemon.shopify import ShopifyClient
from daemon.shutdown import Shutdown, note_progress
from daemon.store import ParkedRecord, Store, Transaction
from daemon.storm import ParkGuard
from daemon.times import iso, parse_time

__all__ = [
    "CREATE_SETTLE",
    "FLOW",
    "NEW_PRODUCT_SETTLE",
    "OVERLAP",
    "ProductDifference",
    "ProductsFlow",
    # the mapping's text and price rules, for callers that know only the flow
    "html_to_text",
    "shop_price",
    "text_to_html",
]

log = structlog.get_logger("daemon.flows.products")

FLOW = "products"
RACKBEAT_CURSOR = "products.rackbeat"
#: when the last complete look at Rackbeat's changes (a read, or a stock scan) started
LOOKED = "products.rackbeat.looked"
SHOPIFY_CURSOR = "products.shopify"
#: a row of the cursors table holding the last active S13 value and the moment it became
#: active ("shopify 2026-12-04T02:00:00Z"); not a time cursor
PRIORITY_CURSOR = "products.priority"
#: a pending creation without ids is made again only once it is this old and a search
#: finds nothing: a search sooner could miss the product Shopify already made
CREATE_SETTLE = OVERLAP
#: a new Rackbeat product is created in Shopify only when a second SKU search, at least
#: this long after a first one found nothing, still finds nothing: a product the merchant
#: just made in Shopify is not searchable at once (Shopify's search index lags by seconds;
#: a minute is many times that, and costs a new product one extra cycle)
NEW_PRODUCT_SETTLE = timedelta(minutes=1)
#: ``product_intents.product_id`` of an intent whose ``productCreate`` was not sent yet
#: (the creation waits for :data:`NEW_PRODUCT_SETTLE`): nothing in Shopify to adopt
NOT_SENT = "not-sent"
#: how long the flow goes without a look at Rackbeat's changes while it waits for a new
#: stock scan before it reads them itself (a failing stock flow, or a slow scan: 50,000
#: products take 100 s of the default budget)
SCAN_WAIT = timedelta(minutes=5)
#: a Rackbeat product this much older than the ``updated_at_from`` asked for proves that
#: the filter is ignored (the slack absorbs a server reading the time as local time)
FILTER_SLACK = timedelta(days=1)
#: the most likely cause when every product change a cycle tries to copy is refused
#: (health's stall check)
STALL_CAUSE = (
    "every product change read in the SYNC_PRODUCT_PRIORITY direction is refused; "
    "see `rackbeat-shopify parked` and the product.* log lines"
)


@dataclass(frozen=True)
class ProductDifference:
    """One way a SKU differs between the shops, per the table S13 chooses.

    Values are in the terms of the side S13 writes to: a Rackbeat price is shown with
    S14's VAT when Rackbeat has priority, a Shopify description as plain text when Shopify
    has. ``field`` is ``"product"`` for a SKU on one side only (the other value None).
    """

    sku: str
    field: str
    shopify: str | None
    rackbeat: str | None


@dataclass(frozen=True)
class _Intent:
    """A product being created in Shopify (see "Duplicates" in the module docstring)."""

    sku: str
    title: str
    product_id: str | None
    variant_id: str | None
    inventory_item_id: str | None
    created_at: datetime

    @property
    def sent(self) -> bool:
        """False while the creation waits for a second search (nothing was sent)."""
        return self.product_id != NOT_SENT


def _settled(started: datetime) -> datetime:
    """Where a complete scan that began at ``started`` may leave its cursor.

    Everything updated before ``started − OVERLAP`` was visible to that scan (the overlap
    is the bound on search lag and clock skew), so the next scan, from this cursor minus
    the overlap again, re-reads a few minutes at most: a quiet shop costs one empty page.
    """
    return started - OVERLAP


def _reason(exc: RecordError) -> str:
    """A reason code the operator's table explains (Shopify's own codes become REJECTED)."""
    return exc.reason if exc.reason in REASONS else "REJECTED"


class ProductsFlow:
    """Syncs products in S13's direction; see the module docstring."""

    name = FLOW

    def __init__(
        self,
        settings: Settings,
        store: Store,
        shopify: ShopifyClient,
        rackbeat: RackbeatClient,
        *,
        index: SkuIndex,
        metrics: Metrics,
        shutdown: Shutdown,
        changes: SharedChanges[Product] | None = None,
        scans: StockReads | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        """``changes`` is shared by the products flows of every shop of the account (one
        read of Rackbeat's changes serves them all); ``scans``: the stock flow's scans,
        when it runs (their summaries spare the read while nothing changed)."""
        self.settings = settings
        self.store = store
        self.shopify = shopify
        self.rackbeat = rackbeat
        self.index = index
        self.metrics = metrics
        self.shutdown = shutdown
        self.changes = changes or SharedChanges[Product]()
        self.scans = scans
        self.clock = clock
        self.rules = ProductRules.from_settings(settings)
        self.log = log.bind(flow=FLOW)
        self._lock = anyio.Lock()
        #: False once Rackbeat was seen to ignore ``updated_at_from``
        self._filter_honoured = True
        # per cycle: parked records, keys dealt with, Rackbeat's group names
        self._parked: dict[str, ParkedRecord] = {}
        self._handled: set[str] = set()
        self._groups: dict[str, str] | None = None
        #: records parked by the running cycle (health's progress check)
        self._refused = 0
        #: changes before this moment were made under another S13 value: not synced
        self._switched_at: datetime | None = None
        self._feed = shopify_feed(store, shopify, "products", stream=SHOPIFY_CURSOR, clock=clock)
        #: the running cycle's error-storm check (:mod:`daemon.storm`)
        self._guard = ParkGuard(store, FLOW, self._feed.versions)

    @property
    def priority(self) -> ProductPriority:
        """S13."""
        return self.settings.sync_product_priority

    # --- the cycle ---------------------------------------------------------------------------

    async def run_once(self) -> int:
        """One cycle in S13's direction; return how many products were created or updated."""
        async with self._lock:
            await self.index.current()
            await self._note_priority()
            if self.priority is ProductPriority.DISABLED:
                return 0
            await self._begin()
            if self.priority is ProductPriority.RACKBEAT:
                applied = await self._rackbeat_cycle()
            else:
                applied = await self._shopify_cycle()
            await self._guard.check()
            # the changes the cycle tried to copy: those written, and those refused (parked)
            note_progress(pending=applied + self._refused, confirmed=applied, cause=STALL_CAUSE)
            return applied

    async def _note_priority(self) -> None:
        """Remember S13; on a switch, start the new direction from now.

        Changes made while the other side had priority are not this direction's to copy:
        the switched-to direction's cursor starts at now (as on a first start), changes up
        to the switch are skipped even inside the cursor's overlap, records parked by the
        old direction are dropped, and so are creations that were still only planned.
        Aligning the catalogues is ``reconcile``'s job, never a bulk write on a switch.
        """
        value = self.priority.value
        stored = await self.store.get_cursor(PRIORITY_CURSOR)
        if stored is not None:
            previous, _, since = stored.partition(" ")
            if previous == value:
                self._switched_at = parse_time(since) if since else None
                return
        now = self.clock()
        parked = await self.store.parked(FLOW) if stored is not None else []
        async with self.store.transaction(now) as tx:
            if stored is None:
                # first start, or a database from before S13 was remembered: nothing to reset
                await tx.set_cursor(PRIORITY_CURSOR, value)
                self._switched_at = None
                return
            await tx.set_cursor(PRIORITY_CURSOR, f"{value} {iso(now)}")
            cursor = {ProductPriority.RACKBEAT: RACKBEAT_CURSOR, ProductPriority.SHOPIFY: SHOPIFY_CURSOR}.get(
                self.priority
            )
            if cursor is not None:
                await tx.set_cursor(cursor, iso(now))
            for record in parked:  # the old direction's problems: not this one's to retry
                await tx.unpark(FLOW, record.key)
            await tx.execute(
                "DELETE FROM product_intents WHERE shop = ? AND product_id = ?", (self.store.shop, NOT_SENT)
            )
        self._switched_at = now
        self.log.info(
            "products.priority_changed",
            detail="syncing only changes made from now on (run `reconcile` to align existing products)",
            previous=stored.partition(" ")[0],
            priority=value,
            since=iso(now),
            parked_dropped=len(parked),
        )

    def _before_switch(self, updated: datetime | None) -> bool:
        """True for a change made while the other side had priority (see _note_priority)."""
        # a change in the very second of the switch is synced: better once too often than lost
        return self._switched_at is not None and updated is not None and updated < self._switched_at

    async def _begin(self) -> None:
        self._parked = {p.key: p for p in await self.store.parked(FLOW)}
        self._handled = set()
        self._groups = None
        self._refused = 0
        self._guard.begin()

    async def _cursor(self, name: str) -> datetime:
        stored = await self.store.get_cursor(name)
        if stored is not None:
            return parse_time(stored)
        # First start in this direction: from now. Bringing existing catalogues in line is
        # `rackbeat-shopify reconcile`'s job, never a surprise mass write.
        start = self.clock()
        async with self.store.transaction(self.clock()) as tx:
            await tx.set_cursor(name, iso(start))
        self.log.info("products.cursor_initialised", cursor=name, since=iso(start))
        return start

    def _waiting(self, key: str, updated: datetime | None) -> bool:
        """True for a parked record that is not due and has not changed since it was parked."""
        parked = self._parked.get(key)
        if parked is None or parked.next_attempt <= self.clock():
            return False
        return updated is None or updated <= parked.last_seen

    async def _park(self, key: str, exc: RecordError, *, record_id: str | None = None) -> None:
        """Park ``key``; ``record_id``: its product's id in the Shopify feed, when read from it."""
        await self._guard.failed(exc, key, record_id or key)
        reason = _reason(exc)
        detail = str(exc)
        if isinstance(exc, ValidationError) and exc.codes:
            detail += f" [{', '.join(exc.codes)}]"
        async with self.store.transaction(self.clock()) as tx:
            await tx.park(FLOW, key, reason, detail)
        self._refused += 1
        self.metrics.count(FLOW, f"parked_{reason.lower()}")
        self.log.warning("product.parked", key=key, reason=reason, detail=detail)

    async def _unpark(self, keys: Iterable[str]) -> None:
        parked = [k for k in keys if k in self._parked]
        if not parked:
            return
        async with self.store.transaction(self.clock()) as tx:
            for key in parked:
                await tx.unpark(FLOW, key)
        for key in parked:
            del self._parked[key]

    async def _group_name(self, product: Product) -> str | None:
        """The name of the product's group (read from the product, else the group list)."""
        if product.group_name is not None or product.group_number is None:
            return product.group_name
        if self._groups is None:
            self._groups = {g.number: g.name for g in await self.rackbeat.product_groups()}
        return self._groups.get(product.group_number)

    async def _read_variant(self, variant_id: str) -> ShopifyVariant | None:
        """A variant as Shopify has it now (not a search: no lag); None when deleted."""
        product = await self.shopify.product_of_variant(variant_id)
        if product is None:
            return None
        try:
            variants = shopify_variants(product)
        except MalformedResponse as exc:
            # this one product cannot be read (a price that is not a number …): park, go on
            raise RecordError(f"Shopify product {product.get('id')}: {exc}", reason="MALFORMED") from None
        return next((v for v in variants if v.variant_id == variant_id), None)

    async def _commit(
        self,
        sku: str,
        variant: ShopifyVariant | None,
        *,
        rackbeat_hash: str | None,
        shopify_hash: str | None,
        forget: Sequence[str] = (),
        intent_done: bool = False,
        in_rackbeat: bool = True,
    ) -> None:
        """Record one synced product: its index row, both fingerprints, and (``in_rackbeat``)
        that it exists in Rackbeat; drop stale rows and the intent; unpark it — in one
        transaction."""
        async with self.store.transaction(self.clock()) as tx:
            await self.index.forget(tx, forget)
            if variant is not None:
                entry = IndexEntry(variant.variant_id, sku, variant.product_id, variant.inventory_item_id)
                await self.index.record(tx, [entry])
            await self.index.set_hashes(tx, sku, rackbeat_hash=rackbeat_hash, shopify_hash=shopify_hash)
            if in_rackbeat:
                await self.index.set_rackbeat_numbers(tx, [sku])
            if intent_done:
                await tx.execute(
                    "DELETE FROM product_intents WHERE shop = ? AND sku = ?", (self.store.shop, sku)
                )
            if sku in self._parked:
                await tx.unpark(FLOW, sku)
        self._parked.pop(sku, None)

    # --- S13 = rackbeat: Rackbeat → Shopify ------------------------------------------------------

    async def _rackbeat_cycle(self) -> int:
        applied_count = await self._resume_intents()
        applied_count += await self._retry_parked_rackbeat()
        cursor = await self._cursor(RACKBEAT_CURSOR)
        since = cursor - OVERLAP  # Rackbeat's filter has seconds precision, and clocks differ
        if not await self._changes_to_read(cursor, since):
            return applied_count
        # another shop's read may serve: then its start bounds the cursor
        started, _, pages = await self.changes.read(
            self.store.shop, since, self.clock(), self._changed_rackbeat_products
        )
        high = cursor
        complete = True
        async with contextlib.aclosing(pages):
            async for page in pages:
                # orders parked for a SKU Rackbeat lacked are due at once when it appears
                # (the stock scan wakes them too; this covers S12 off)
                await self.store.wake_parked("orders", "UNKNOWN_SKU", [p.number for p in page])
                entries = await self.index.by_sku([p.number for p in page])
                for product in page:
                    if self._before_switch(product.updated_at):
                        continue  # changed while Shopify had priority: not ours to copy
                    if product.number not in self._handled and await self._push(
                        product, entries.get(product.number, [])
                    ):
                        applied_count += 1
                    if product.updated_at is not None:
                        # never past the cycle's start: later changes may still be committing
                        high = max(high, min(product.updated_at, started))
                if self.shutdown.requested:
                    complete = False
                    break
        # Rackbeat lists in its own order, not by updated_at: the cursor may only move once
        # the whole scan is applied, or a later page's older change would be skipped.
        if complete:
            await self._guard.check()  # the cursor moves past every record: not on a storm
            await self._looked_at(started, max(high, _settled(started)), cursor)
        return applied_count

    async def _changes_to_read(self, cursor: datetime, since: datetime) -> bool:
        """Whether Rackbeat's changes must be read this cycle (see the module docstring):
        not when a stock scan newer than the last look shows none since ``since`` (the
        cursor moves as after a read), nor while waiting for such a scan."""
        if self.scans is None:
            return True
        stored = await self.store.get_cursor(LOOKED)
        if stored is None:
            return True  # never looked (or a database from before): read once
        looked = parse_time(stored)
        scan = self.scans.latest_summary
        if scan is None or scan.started <= looked:
            # nothing new to look at yet: wait for the stock flow's next scan, a while
            return self.clock() - looked >= SCAN_WAIT
        if scan.changed_since(since):
            return True
        await self._looked_at(scan.started, _settled(scan.started), cursor)
        return False

    async def _looked_at(self, started: datetime, high: datetime, cursor: datetime) -> None:
        """Commit a complete look at Rackbeat's changes that started at ``started``: the
        cursor moves to ``high`` (never back)."""
        async with self.store.transaction(self.clock()) as tx:
            # to the microsecond: a scan a moment after this look is a new one
            await tx.set_cursor(LOOKED, started.astimezone(UTC).isoformat())
            if high > cursor:
                await tx.set_cursor(RACKBEAT_CURSOR, iso(high))

    async def _changed_rackbeat_products(self, since: datetime) -> AsyncGenerator[list[Product], None]:
        """Pages of Rackbeat products updated at or after ``since`` (unknown times included)."""
        asked = since if self._filter_honoured else None
        pages = self.rackbeat.products(fields=PRODUCT_FIELDS, updated_since=asked)
        async with contextlib.aclosing(pages):
            async for page in pages:
                if asked is not None and self._filter_honoured:
                    stale = [
                        p for p in page if p.updated_at is not None and p.updated_at < since - FILTER_SLACK
                    ]
                    if stale:
                        self._filter_honoured = False
                        self.metrics.count(FLOW, "rackbeat_filter_ignored")
                        self.log.warning(
                            "products.updated_filter_ignored",
                            detail="Rackbeat ignores updated_at_from on /products; scanning all "
                            "products narrowly and keeping the changed ones",
                            example=stale[0].number,
                        )
                changed = [p for p in page if p.updated_at is None or p.updated_at >= since]
                if changed:
                    yield changed

    async def _resume_intents(self) -> int:
        """Finish creations a crash or an ambiguous failure left pending."""
        count = 0
        for intent in await self._intents():
            product = await self.rackbeat.get_product(intent.sku)
            if product is None:
                async with self.store.transaction(self.clock()) as tx:
                    await self._drop_intent(tx, intent.sku)
                self.log.warning(
                    "product.gone_while_created",
                    sku=intent.sku,
                    shopify_product=intent.product_id,
                )
                continue
            entries = await self.index.by_sku([intent.sku])
            if await self._push(product, entries.get(intent.sku, [])):
                count += 1
        return count

    async def _retry_parked_rackbeat(self) -> int:
        count = 0
        for parked in await self.store.due_parked(FLOW, self.clock()):
            if parked.key.startswith("gid://") or parked.key in self._handled:
                continue  # a Shopify variant without SKU: only Shopify's priority reads those
            product = await self.rackbeat.get_product(parked.key)
            if product is None:
                await self._unpark([parked.key])  # gone from Rackbeat: nothing left to sync
                continue
            entries = await self.index.by_sku([parked.key])
            if await self._push(product, entries.get(parked.key, [])):
                count += 1
        return count

    async def _push(self, product: Product, entries: Sequence[IndexEntry], *, force: bool = False) -> bool:
        """Bring one Rackbeat product to Shopify; True when Shopify was written.

        Record-level problems park it; retriable and fatal errors propagate.
        """
        sku = product.number
        self._handled.add(sku)
        if sku == self.rules.shipping_product:
            return False  # S15: an order line, never a shop product
        if not force and self._waiting(sku, product.updated_at):
            return False
        self._guard.watch.attempt()
        try:
            return await self._push_record(product, entries, force=force)
        except RecordError as exc:
            await self._park(sku, exc)
            return False

    async def _push_record(self, product: Product, entries: Sequence[IndexEntry], *, force: bool) -> bool:
        sku = product.number
        target = shopify_fields(product, await self._group_name(product), self.rules)
        fingerprint = rackbeat_fingerprint(target)
        intent = await self._intent(sku)
        if intent is not None:
            return await self._resume(intent, product, target, fingerprint, force=force)
        if len(entries) > 1:
            raise RecordError(f"SKU {sku!r} is on {len(entries)} Shopify variants", reason="DUPLICATE_SKU")
        entry = entries[0] if entries else None
        if entry is not None and same_content(entry.rackbeat_hash, fingerprint) and not force:
            await self._unpark([sku])
            return False
        current = await self._read_variant(entry.variant_id) if entry is not None else None
        stale = [entry.variant_id] if entry is not None and (current is None or current.sku != sku) else []
        if stale:
            current = None  # deleted, or its SKU changed since the index saw it
        if current is None:
            found = await self.shopify.variant_by_sku(sku)  # DUPLICATE_SKU when on several
            if found is not None:
                current = await self._read_variant(str(found["id"]))
        if current is None:
            if product.is_barred:
                return False  # barred products are archived, never created
            if force:
                # reconcile: its full, unfiltered read of the shop found no such SKU
                return await self._create(product, target, fingerprint, stale=stale)
            return await self._plan_create(sku, target, stale=stale)
        previous = entry.rackbeat_hash if entry is not None and not stale else None
        # only what changed in Rackbeat since the last sync; reconcile (force) aligns all
        only = None if force else changed_fields(previous, fingerprint, kind="rackbeat")
        return await self._update(current, target, fingerprint, previous=previous, stale=stale, only=only)

    async def _update(
        self,
        current: ShopifyVariant,
        target: ShopifyFields,
        fingerprint: str,
        *,
        previous: str | None,
        stale: Sequence[str] = (),
        only: frozenset[str] | None = None,
    ) -> bool:
        archived_before = archived_by_daemon(previous)
        held_before = held_by_daemon(previous)
        changes = shopify_changes(
            current,
            target,
            self.rules,
            archived_by_daemon=archived_before,
            held_by_daemon=held_before,
            only=only,
        )
        await self._write_shopify(current, changes)
        after = applied(current, changes)
        # still the daemon's draft, waiting for a price (or restored as one after un-barring)
        held = held_mark(
            target, after, by_daemon=(held_before or archived_before) and self.rules.new_status == ACTIVE
        )
        await self._commit(
            target.sku,
            after,
            rackbeat_hash=fingerprint + held,
            shopify_hash=shopify_fingerprint(rackbeat_fields(after), archived=after.archived),
            forget=stale,
        )
        if changes:
            self.metrics.count(FLOW, "updated_shopify")
            if changes.product.get("status") == ARCHIVED:
                self.metrics.count(FLOW, "archived_shopify")
            self.log.info(
                "product.updated",
                to="shopify",
                sku=target.sku,
                product=current.product_id,
                fields=changes.names,
            )
        return bool(changes)

    async def _write_shopify(self, current: ShopifyVariant, changes: ShopifyChanges) -> None:
        if changes.variant:
            await self.shopify.variants_bulk_update(
                current.product_id, [{"id": current.variant_id, **changes.variant}]
            )
        if changes.product:
            await self.shopify.product_update({"id": current.product_id, **changes.product})

    async def _plan_create(self, sku: str, target: ShopifyFields, *, stale: Sequence[str] = ()) -> bool:
        """Commit the intent to create the product, without sending anything yet.

        One "not found" is not proof: a product the merchant just made in Shopify may not be
        searchable yet. The product is created by a later cycle, once the SKU index and a
        second search :data:`NEW_PRODUCT_SETTLE` later still know no such SKU (:meth:`_resume`).
        """
        async with self.store.transaction(self.clock()) as tx:
            await self.index.forget(tx, stale)
            await tx.execute(
                "INSERT INTO product_intents (shop, sku, title, product_id, created_at) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (shop, sku) DO NOTHING",
                (self.store.shop, sku, target.title, NOT_SENT, self.clock().isoformat()),
            )
        self.log.info(
            "product.create_planned",
            detail="created in Shopify once a second search confirms the SKU is not there",
            sku=sku,
            after_seconds=NEW_PRODUCT_SETTLE.total_seconds(),
        )
        return False

    async def _create(
        self, product: Product, target: ShopifyFields, fingerprint: str, *, stale: Sequence[str] = ()
    ) -> bool:
        """Create the product as a draft; the intent makes a crash in between harmless."""
        sku = product.number
        begun = self.clock()
        async with self.store.transaction(self.clock()) as tx:
            await self.index.forget(tx, stale)
            await tx.execute(
                "INSERT INTO product_intents (shop, sku, title, created_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (shop, sku) DO UPDATE SET title = excluded.title, product_id = NULL, "
                "variant_id = NULL, inventory_item_id = NULL, created_at = excluded.created_at",
                (self.store.shop, sku, target.title, begun.isoformat()),
            )
        try:
            created = await self.shopify.product_create(
                {
                    "title": target.title,
                    "descriptionHtml": text_to_html(target.description),
                    "productType": target.product_type,
                    # a draft until SKU and price are set: a crash must not leave a
                    # sellable product priced 0.00
                    "status": DRAFT,
                }
            )
        except ValidationError:
            async with self.store.transaction(self.clock()) as tx:
                await self._drop_intent(tx, sku)  # refused: certainly not created
            raise
        except AmbiguousWrite as exc:
            # the answer was lost: look for the half-made product now; if the search does
            # not show it (yet), the pending intent settles it in a later cycle
            pending = _Intent(sku, target.title, None, None, None, begun)
            found = await self._find_half_made(pending)
            if found is None:
                self.log.info("product.create_unsettled", sku=sku, error=str(exc.error))
                return False
            return await self._adopt(pending, found, target, fingerprint, made_here=True)
        variants = (created.get("variants") or {}).get("nodes") or []
        first = variants[0] if variants and isinstance(variants[0], dict) else {}
        product_id, variant_id = created.get("id"), first.get("id")
        item_id = (first.get("inventoryItem") or {}).get("id")
        if not isinstance(product_id, str) or not isinstance(variant_id, str):
            raise MalformedResponse(f"ProductCreate for SKU {sku!r}: no product or variant id")
        intent = _Intent(sku, target.title, product_id, variant_id, item_id, self.clock())
        await self._save_intent(intent)
        return await self._finish(intent, target, fingerprint, current=None)

    async def _finish(
        self,
        intent: _Intent,
        target: ShopifyFields,
        fingerprint: str,
        *,
        current: ShopifyVariant | None,
        made_here: bool = True,
    ) -> bool:
        """Give the intent's product its SKU, tracking, fields and status; commit it.

        ``current`` is what Shopify holds (None right after productCreate: the input).
        ``made_here`` is False for a product found by its SKU, which may be the merchant's:
        its status is then left as it is (a merchant's draft stays a draft).
        """
        sku = intent.sku
        assert intent.product_id is not None  # noqa: S101  # callers finish intents with ids only
        assert intent.variant_id is not None  # noqa: S101
        if current is None:
            variant_input: dict[str, Any] = {}
            if target.barcode is not None:
                variant_input["barcode"] = target.barcode
            if target.price is not None:
                variant_input["price"] = str(target.price)
            changes = ShopifyChanges({}, variant_input)
            needs_item = True
            status = DRAFT
        else:
            changes = shopify_changes(current, target, self.rules, archived_by_daemon=False)
            needs_item = current.sku != sku or current.tracked is not True
            status = str(changes.product.get("status", current.status))
        held = False
        if made_here and status == DRAFT and self.rules.new_status != DRAFT:
            if priced(target):
                changes.product["status"] = self.rules.new_status
            else:
                held = True  # never sellable at 0.00: a draft until Rackbeat has a price
        if needs_item:
            changes.variant["inventoryItem"] = {"sku": sku, "tracked": True}
        shell = current or ShopifyVariant(
            product_id=intent.product_id,
            variant_id=intent.variant_id,
            inventory_item_id=intent.inventory_item_id,
            sku=None,
            product_title=target.title,
            variant_title="",
            variant_count=1,
            description_html="",
            product_type=target.product_type,
            status=DRAFT,
            price=None,
            barcode=None,
            cost=None,
            weight=None,
            weight_unit=None,
            tracked=None,
        )
        await self._write_shopify(shell, changes)
        after = await self._read_variant(intent.variant_id)
        if after is None:
            async with self.store.transaction(self.clock()) as tx:
                await self._drop_intent(tx, sku)
            raise NotFoundError(
                f"the Shopify product made for SKU {sku!r} was deleted before it was finished"
            )
        await self._commit(
            sku,
            after,
            rackbeat_hash=fingerprint + held_mark(target, after, by_daemon=held),
            shopify_hash=shopify_fingerprint(rackbeat_fields(after), archived=after.archived),
            intent_done=True,
        )
        self.metrics.count(FLOW, "created_shopify")
        self.log.info(
            "product.created", to="shopify", sku=sku, product=intent.product_id, status=after.status
        )
        if held and after.status == DRAFT:
            self.log.warning(
                "product.held_as_draft",
                detail="it has no sales price in Rackbeat; it is made active when a price arrives",
                sku=sku,
                product=intent.product_id,
            )
        return True

    async def _resume(
        self, intent: _Intent, product: Product, target: ShopifyFields, fingerprint: str, *, force: bool
    ) -> bool:
        """Carry on with a creation an earlier attempt began (or only planned)."""
        if not intent.sent:
            current = await self._variant_with_sku(intent.sku)
            if current is not None:
                # made in Shopify meanwhile (by the merchant): update it, never twin it
                async with self.store.transaction(self.clock()) as tx:
                    await self._drop_intent(tx, intent.sku)
                self.log.info("product.found_before_create", sku=intent.sku)
                return await self._update(current, target, fingerprint, previous=None)
            if product.is_barred:
                async with self.store.transaction(self.clock()) as tx:
                    await self._drop_intent(tx, intent.sku)  # barred meanwhile: never created
                return False
            if not force and self.clock() - intent.created_at < NEW_PRODUCT_SETTLE:
                return False  # a product just made in Shopify may not be searchable yet
            return await self._create(product, target, fingerprint)
        if intent.variant_id is not None:
            current = await self._read_variant(intent.variant_id)
            if current is not None:
                return await self._finish(intent, target, fingerprint, current=current)
            self.log.warning("product.half_made_deleted", sku=intent.sku, detail="creating again")
            return await self._create(product, target, fingerprint)
        by_sku = await self._variant_with_sku(intent.sku)
        found = by_sku or await self._find_half_made(intent)
        if found is None:
            if self.clock() - intent.created_at < CREATE_SETTLE:
                return False  # Shopify's search may not show it yet: look again, do not create twice
            self.log.info("product.create_lost", sku=intent.sku)
            return await self._create(product, target, fingerprint)
        # one found by SKU may be the merchant's: its status is not the daemon's to set
        return await self._adopt(intent, found, target, fingerprint, made_here=by_sku is None)

    async def _adopt(
        self,
        intent: _Intent,
        found: ShopifyVariant,
        target: ShopifyFields,
        fingerprint: str,
        *,
        made_here: bool,
    ) -> bool:
        """Take the product an interrupted (or unanswered) creation made as the intent's, and
        finish it."""
        intent = replace(
            intent,
            product_id=found.product_id,
            variant_id=found.variant_id,
            inventory_item_id=found.inventory_item_id,
        )
        await self._save_intent(intent)
        self.metrics.count(FLOW, "adopted_shopify")
        self.log.info("product.adopted", sku=intent.sku, product=found.product_id)
        return await self._finish(intent, target, fingerprint, current=found, made_here=made_here)

    async def _variant_with_sku(self, sku: str) -> ShopifyVariant | None:
        """The Shopify variant with this SKU, by the SKU index (which may know one a search
        does not show yet), else by a search; raises DUPLICATE_SKU when on several."""
        rows = (await self.index.by_sku([sku])).get(sku, [])
        if len(rows) > 1:
            raise RecordError(f"SKU {sku!r} is on {len(rows)} Shopify variants", reason="DUPLICATE_SKU")
        if rows:
            variant = await self._read_variant(rows[0].variant_id)
            if variant is not None and variant.sku == sku:
                return variant
        found = await self.shopify.variant_by_sku(sku)
        return None if found is None else await self._read_variant(str(found["id"]))

    async def _find_half_made(self, intent: _Intent) -> ShopifyVariant | None:
        """The product an interrupted creation made before it got its SKU: a draft with the
        intent's title, created since, with one variant without SKU and no price."""
        candidates: list[ShopifyVariant] = []
        pages = self.shopify.products_created_since(intent.created_at - OVERLAP)
        async with contextlib.aclosing(pages):
            async for page in pages:
                for raw in page:
                    try:
                        variants = shopify_variants(raw)
                    except MalformedResponse:
                        continue  # not one the daemon made
                    if (
                        len(variants) == 1
                        and variants[0].sku is None
                        and variants[0].product_title == intent.title
                        and variants[0].status == DRAFT
                        and not variants[0].price
                    ):
                        candidates.append(variants[0])
        if len(candidates) > 1:
            self.log.warning(
                "product.half_made_ambiguous",
                detail="several half-made products match; adopting the first",
                sku=intent.sku,
                products=[c.product_id for c in candidates],
            )
        return candidates[0] if candidates else None

    # --- intents ---------------------------------------------------------------------------------

    async def _intents(self) -> list[_Intent]:
        rows = await self.store.fetchall(
            "SELECT sku, title, product_id, variant_id, inventory_item_id, created_at FROM product_intents "
            "WHERE shop = ? ORDER BY created_at",
            (self.store.shop,),
        )
        return [_Intent(r[0], r[1], r[2], r[3], r[4], datetime.fromisoformat(r[5])) for r in rows]

    async def _intent(self, sku: str) -> _Intent | None:
        row = await self.store.fetchone(
            "SELECT sku, title, product_id, variant_id, inventory_item_id, created_at FROM product_intents "
            "WHERE shop = ? AND sku = ?",
            (self.store.shop, sku),
        )
        return (
            None
            if row is None
            else _Intent(row[0], row[1], row[2], row[3], row[4], datetime.fromisoformat(row[5]))
        )

    async def _save_intent(self, intent: _Intent) -> None:
        async with self.store.transaction(self.clock()) as tx:
            await tx.execute(
                "UPDATE product_intents SET product_id = ?, variant_id = ?, inventory_item_id = ? "
                "WHERE shop = ? AND sku = ?",
                (intent.product_id, intent.variant_id, intent.inventory_item_id, self.store.shop, intent.sku),
            )

    async def _drop_intent(self, tx: Transaction, sku: str) -> None:
        await tx.execute("DELETE FROM product_intents WHERE shop = ? AND sku = ?", (self.store.shop, sku))

    # --- S13 = shopify: Shopify → Rackbeat ---------------------------------------------------------

    async def _shopify_cycle(self) -> int:
        applied_count = await self._retry_parked_shopify()
        cursor = await self._cursor(SHOPIFY_CURSOR)
        # The cursor is where the last read got to, and reads go back the overlap from it (as
        # the first start's read does: from now). The feed lists that by id and time, reads
        # in full only products changed since they were pulled, and moves the cursor after
        # each page, never past the lag.
        pages = self._feed.changes(cursor - OVERLAP, hold=self._guard.hold)
        async with contextlib.aclosing(pages):
            async for products in pages:
                applied_count += await self._pull_page(products)
                if self.shutdown.requested:
                    break
        return applied_count

    async def _pull_page(self, products: Sequence[dict[str, Any]]) -> int:
        variants: list[ShopifyVariant] = []
        readable: list[str] = []
        for product in products:
            try:
                variants.extend(shopify_variants(product))
            except MalformedResponse as exc:
                key = str(product.get("id") or "?")
                self._handled.add(key)
                self._guard.watch.attempt()
                await self._park(key, RecordError(f"Shopify product {key}: {exc}", reason="MALFORMED"))
            else:
                readable.append(str(product["id"]))
        await self._unpark(readable)  # a product parked as MALFORMED that reads fine now
        # the index may not have refreshed this cycle (it is shared and rate-limited)
        entries = [
            IndexEntry(v.variant_id, v.sku, v.product_id, v.inventory_item_id) for v in variants if v.sku
        ]
        if entries:
            async with self.store.transaction(self.clock()) as tx:
                await self.index.record(tx, entries)
        rows = await self.index.by_sku([v.sku for v in variants if v.sku])
        count = 0
        for variant in variants:
            if self._before_switch(parse_time(variant.updated_at) if variant.updated_at else None):
                continue  # changed while Rackbeat had priority: not ours to copy
            mine = rows.get(variant.sku, []) if variant.sku else []
            if await self._pull(variant, mine):
                count += 1
        return count

    async def _retry_parked_shopify(self) -> int:
        count = 0
        for parked in await self.store.due_parked(FLOW, self.clock()):
            if parked.key in self._handled or parked.key.startswith("gid://shopify/Product/"):
                continue  # a malformed product is read again when it changes
            if parked.key.startswith("gid://"):
                variant_id = parked.key
            else:
                rows = (await self.index.by_sku([parked.key])).get(parked.key, [])
                if not rows:
                    await self._unpark([parked.key])  # no longer in Shopify: nothing to sync
                    continue
                variant_id = rows[0].variant_id
            try:
                variant = await self._read_variant(variant_id)
            except RecordError as exc:
                await self._park(parked.key, exc)  # still unreadable: later, with backoff
                continue
            if variant is None or (variant.sku or variant.variant_id) != parked.key:
                await self._unpark([parked.key])  # deleted, or given a (new) SKU: synced as that
            if variant is None:
                continue
            rows = (await self.index.by_sku([variant.sku])).get(variant.sku, []) if variant.sku else []
            if await self._pull(variant, rows):
                count += 1
        return count

    async def _pull(
        self, variant: ShopifyVariant, rows: Sequence[IndexEntry], *, force: bool = False
    ) -> bool:
        """Bring one Shopify variant to Rackbeat; True when Rackbeat was written.

        ``rows`` are the index rows of its SKU. Record-level problems park it.
        """
        key = variant.sku or variant.variant_id
        self._handled.add(key)
        if variant.sku == self.rules.shipping_product:
            return False  # S15 belongs to the orders flow
        updated = parse_time(variant.updated_at) if variant.updated_at else None
        if not force and self._waiting(key, updated):
            return False
        self._guard.watch.attempt()
        try:
            wrote = await self._pull_record(variant, rows, force=force)
        except RecordError as exc:
            await self._park(key, exc, record_id=variant.product_id)
            return False
        await self._unpark([variant.variant_id])  # a variant parked for NO_SKU has one now
        return wrote

    async def _pull_record(self, variant: ShopifyVariant, rows: Sequence[IndexEntry], *, force: bool) -> bool:
        target = rackbeat_fields(variant)  # NO_SKU
        sku = target.number
        if len(rows) > 1:
            raise RecordError(f"SKU {sku!r} is on {len(rows)} Shopify variants", reason="DUPLICATE_SKU")
        entry = next((r for r in rows if r.variant_id == variant.variant_id), None)
        fingerprint = shopify_fingerprint(target, archived=variant.archived)
        if entry is not None and same_content(entry.shopify_hash, fingerprint) and not force:
            await self._unpark([sku])
            return False
        # only what changed in Shopify since the last sync; reconcile (force) aligns all
        only = (
            None
            if force or entry is None
            else changed_fields(entry.shopify_hash, fingerprint, kind="shopify")
        )
        current = await self.rackbeat.get_product(sku)
        created = False
        if current is None:
            if variant.archived:
                # archived products are not created in Rackbeat; remember we looked
                await self._commit(
                    sku, variant, rackbeat_hash=None, shopify_hash=fingerprint, in_rackbeat=False
                )
                return False
            body = product_body(**new_rackbeat_product(target, self.rules))

            async def create() -> Product:
                return await self.rackbeat.create_product(body)

            async def landed() -> Product | None:
                return await self.rackbeat.get_product(sku)

            try:
                # an answer lost on the way: the number, unique in Rackbeat, tells whether it was made
                after = await settle_write(create, landed, what=f"create Rackbeat product {sku}")
                created = True
            except ValidationError as exc:
                if "number" not in exc.fields:
                    raise
                # taken: our earlier POST landed and its answer was lost, or someone was quicker
                current = await self.rackbeat.get_product(sku)
                if current is None:
                    raise
        changes: dict[str, Any] = {}
        if current is not None:
            changes = rackbeat_changes(current, target, only=only)
            after = (
                await self.rackbeat.update_product(sku, rackbeat_update_body(current, changes))
                if changes
                else current
            )
        mapped_back = shopify_fields(after, await self._group_name(after), self.rules)
        await self._commit(
            sku, variant, rackbeat_hash=rackbeat_fingerprint(mapped_back), shopify_hash=fingerprint
        )
        if created:
            self.metrics.count(FLOW, "created_rackbeat")
            self.log.info("product.created", to="rackbeat", sku=sku, group=self.rules.default_group)
        elif changes:
            self.metrics.count(FLOW, "updated_rackbeat")
            self.log.info("product.updated", to="rackbeat", sku=sku, fields=sorted(changes))
        return created or bool(changes)

    # --- reconcile ----------------------------------------------------------------------------------

    async def differences(self) -> list[ProductDifference]:
        """Every difference the S13 direction would write, for SKUs on both sides, plus the
        SKUs on one side only that it would create. Reads both catalogues in full; writes
        nothing. S13 = disabled owns no fields: no differences."""
        if self.priority is ProductPriority.DISABLED:
            return []
        async with self._lock:
            await self._begin()
            shopify_side: dict[str, list[ShopifyVariant]] = {}
            pages = self.shopify.products_updated_since(None)
            async with contextlib.aclosing(pages):
                async for products in pages:
                    for product in products:
                        with contextlib.suppress(MalformedResponse):  # unreadable: nothing to compare
                            for variant in shopify_variants(product):
                                if variant.sku:
                                    shopify_side.setdefault(variant.sku, []).append(variant)
            rackbeat_side: dict[str, Product] = {}
            rb_pages = self.rackbeat.products(fields=PRODUCT_FIELDS)
            async with contextlib.aclosing(rb_pages):
                async for page in rb_pages:
                    rackbeat_side.update((p.number, p) for p in page)
            found: list[ProductDifference] = []
            for sku in sorted(set(shopify_side) | set(rackbeat_side)):
                variants = shopify_side.get(sku, [])
                if sku == self.rules.shipping_product or len(variants) > 1:
                    continue  # S15 is not a shop product; duplicates are reported by reconcile
                found.extend(
                    await self._differences_of(sku, variants[0] if variants else None, rackbeat_side.get(sku))
                )
            return found

    async def _differences_of(
        self, sku: str, variant: ShopifyVariant | None, product: Product | None
    ) -> list[ProductDifference]:
        rackbeat_priority = self.priority is ProductPriority.RACKBEAT
        if variant is None and product is not None:
            if rackbeat_priority and product.is_barred:
                return []  # never created
            return [ProductDifference(sku, "product", None, product.name)]
        if product is None and variant is not None:
            if not rackbeat_priority and variant.archived:
                return []  # never created
            return [ProductDifference(sku, "product", variant.name, None)]
        assert variant is not None  # noqa: S101  # the SKU came from one of the sides
        assert product is not None  # noqa: S101
        if rackbeat_priority:
            try:
                target = shopify_fields(product, await self._group_name(product), self.rules)
            except RecordError:
                return [ProductDifference(sku, "title", variant.product_title, None)]
            rows = shopify_differences(
                current_shopify_fields(variant, self.rules), target, multi=variant.multi
            )
        else:
            rows = rackbeat_differences(current_rackbeat_fields(product), rackbeat_fields(variant))
        return [ProductDifference(sku, name, shopify, rackbeat) for name, shopify, rackbeat in rows]

    async def fix(self, differences: Iterable[ProductDifference]) -> int:
        """Sync the SKUs of ``differences`` in S13's direction only (reading each afresh);
        return how many products were written. Nothing under S13 = disabled."""
        if self.priority is ProductPriority.DISABLED:
            return 0
        written = 0
        async with self._lock:
            await self._begin()
            for sku in dict.fromkeys(d.sku for d in differences):
                rows = (await self.index.by_sku([sku])).get(sku, [])
                if self.priority is ProductPriority.RACKBEAT:
                    product = await self.rackbeat.get_product(sku)
                    if product is not None and await self._push(product, rows, force=True):
                        written += 1
                    continue
                if len(rows) != 1:
                    continue  # not in Shopify (nothing to copy), or on several variants
                variant = await self._read_variant(rows[0].variant_id)
                if variant is not None and variant.sku == sku and await self._pull(variant, rows, force=True):
                    written += 1
        return written
