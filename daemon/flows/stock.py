"""Stock Rackbeat → Shopify (S10, S12): never oversell, spend almost no API budget.

Each cycle:

1. **Scan** Rackbeat's stock totals once (the narrow ``fields=`` scan, 100 products a
   request). With S10 = a list of locations, a product whose totals changed since the
   last cycle is read per location; the others reuse the figure stored in the ledger.
2. **Decide** per SKU: the target is the Rackbeat figure (``SYNC_STOCK_FIGURE``) minus
   the units of Shopify orders Rackbeat does not reserve yet (the order ledger's
   :func:`~daemon.flows.orders.unreserved_demand`), floored to whole units, at least 0
   unless ``SYNC_ALLOW_NEGATIVE_STOCK``. Only SKUs whose target differs from the quantity
   last confirmed in Shopify (the stock ledger) go further.
3. **Push** up to 250 quantities per ``inventorySetQuantities``, each with
   ``changeFromQuantity`` = the Shopify quantity the decision was based on. A quantity
   Shopify calls stale (a sale happened meanwhile) is re-read and decided again.

Crash safety of a push: the batch (its idempotency key and quantities) is committed to
``stock_batches`` before it is sent; the stock ledger is updated and the batch deleted in
one transaction after Shopify confirms. A batch left over by a crash is re-sent first,
with the same key, so Shopify applies it at most once.

Every ``SYNC_RECONCILE_SECONDS`` (and on the first cycle) the flow also reads Shopify's
levels of every indexed item, so hand-made drift in Shopify is corrected.
"""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import ROUND_FLOOR, Decimal
from typing import Any

import anyio
import structlog

from daemon.config import Settings, StockFigure
from daemon.errors import NotFoundError
from daemon.flows.orders import OrdersFlow, unreserved_demand
from daemon.index import IndexEntry, SkuIndex
from daemon.metrics import Metrics
from daemon.rackbeat import RackbeatClient, StockTotals
from daemon.runner import Shutdown
from daemon.shopify import ShopifyClient, StockQuantity
from daemon.shopify_documents import MAX_INPUT_ITEMS
from daemon.store import Store

log = structlog.get_logger("daemon.flows.stock")

FLOW = "stock"
#: rounds of "stale → re-read → decide again" per cycle before leaving the rest to the next
MAX_STALE_ROUNDS = 3
#: Shopify's inventory history names the daemon as the source of each change
REFERENCE_URI = "gid://rackbeat-shopify/StockSync/{key}"


@dataclass(frozen=True)
class StockDifference:
    """One item whose Shopify quantity is not what the stock flow would write."""

    sku: str
    location_id: str
    shopify: int | None
    target: int


@dataclass
class _Item:
    """One SKU's decision in a cycle."""

    sku: str
    item_id: str
    figure: Decimal
    totals_key: str
    demand: int = 0  # units of Shopify orders Rackbeat does not reserve yet
    target: int = 0
    believed: int | None = None  # the Shopify quantity the decision is based on
    #: the stock ledger's (quantity, totals, figure, demand) from the last confirmed write
    recorded: tuple[int, str, str, int] | None = None
    #: ``believed`` was just read from Shopify (not taken from the ledger)
    fresh: bool = False

    @property
    def settled(self) -> tuple[int, str, str, int]:
        """What the ledger holds once this item's target is confirmed in Shopify."""
        return (self.target, self.totals_key, str(self.figure), self.demand)

    @property
    def needs_write(self) -> bool:
        """Shopify may differ from the target: it is known to, or an input of the target
        (the figure or the demand) changed since the last confirmed write. A sale since
        then lowered Shopify without our knowing, so a changed input is always written."""
        if self.believed != self.target or self.recorded is None:
            return True
        if self.fresh:
            return False
        return self.recorded[2:] != self.settled[2:]


def _whole(quantity: Decimal) -> int:
    """Whole units, rounded down: a fraction of a unit cannot be sold."""
    return int(quantity.to_integral_value(rounding=ROUND_FLOOR))


def _location_gid(value: str) -> str:
    return value if value.startswith("gid://") else f"gid://shopify/Location/{value}"


class StockFlow:
    """Pushes Rackbeat's stock to Shopify; see the module docstring."""

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
        orders: OrdersFlow | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.store = store
        self.shopify = shopify
        self.rackbeat = rackbeat
        self.index = index
        self.metrics = metrics
        self.shutdown = shutdown
        self.orders = orders
        self.clock = clock
        self.monotonic = monotonic
        self.log = log.bind(flow=FLOW)
        self._location: str | None = None
        self._reconciled_at: float | None = None
        self._known_numbers: set[str] | None = None
        self._lock = anyio.Lock()
        self._extra_demand: dict[str, int] = {}

    # --- the cycle ---------------------------------------------------------------------------

    async def run_once(self) -> int:
        """One cycle: leftover batch, scan, decide, push. Returns quantities written."""
        if not self.settings.sync_stock:
            return 0
        async with self._exclusive():
            await self.index.current()
            location = await self.location()
            written = await self._resend_pending(location)
            full = self._reconcile_due()
            items = await self._decide(location)
            if full:
                await self._read_shopify(items, location)
            written += await self._push(items, location)
            if full:
                self._reconciled_at = self.monotonic()
            async with self.store.transaction() as tx:
                await tx.set_cursor(FLOW, self.clock().astimezone(UTC).isoformat(timespec="seconds"))
            return written

    @contextlib.asynccontextmanager
    async def _exclusive(self) -> AsyncIterator[None]:
        """This flow's lock and the orders flow's: while stock is decided no order is
        imported or booked, so the Rackbeat figures and the demand belong together.
        New orders are caught up first: a sale since the orders flow's last cycle is demand."""
        async with self._lock:
            if self.orders is None:
                yield
                return
            async with self.orders.lock:
                await self._catch_up()
                yield

    async def _catch_up(self) -> None:
        if self.orders is not None and self.settings.sync_orders:
            await self.orders.cycle_locked()

    async def reconcile(
        self, *, dry_run: bool, extra_demand: Mapping[str, int] | None = None
    ) -> list[StockDifference]:
        """Read both sides in full; return every difference, and fix them unless ``dry_run``.

        ``extra_demand`` (SKU → units) counts orders the ledger does not have yet, so that
        a dry run, which imports nothing, still decides as the daemon would.
        """
        self._extra_demand = dict(extra_demand or {})
        async with self._exclusive():
            location = await self.location()
            await self._resend_pending(location)
            items = await self._decide(location)
            await self._read_shopify(items, location)
            differences = [
                StockDifference(i.sku, location, i.believed, i.target)
                for i in items
                if i.believed != i.target
            ]
            if not dry_run:
                await self._push(items, location)
            return differences

    async def location(self) -> str:
        """The Shopify location stock is written to (``SHOPIFY_LOCATION_ID`` or the primary)."""
        if self._location is None:
            configured = self.settings.shopify_location_id
            self._location = (
                _location_gid(configured) if configured else await self.shopify.primary_location_id()
            )
        return self._location

    def _reconcile_due(self) -> bool:
        if self._reconciled_at is None:
            return True
        return self.monotonic() - self._reconciled_at >= self.settings.sync_reconcile_seconds

    # --- deciding ------------------------------------------------------------------------------

    async def _decide(self, location: str) -> list[_Item]:
        """Scan Rackbeat, match SKUs to Shopify items, compute each target."""
        totals = await self._scan()
        entries = await self.index.by_sku()
        await self._park_duplicates(entries, totals)
        ledger = await self._ledger(location)
        items: list[_Item] = []
        for sku, total in totals.items():
            rows = entries.get(sku)
            if rows is None or len(rows) != 1 or rows[0].inventory_item_id is None:
                continue  # only in Rackbeat, a duplicate SKU, or not a stock item in Shopify
            item = await self._item(sku, rows[0], total, ledger.get(str(rows[0].inventory_item_id)))
            if item is not None:
                items.append(item)
        await self._apply_demand(items)
        return items

    async def _scan(self) -> dict[str, StockTotals]:
        """Every Rackbeat product's totals, by number (the S15 shipping product left out)."""
        totals: dict[str, StockTotals] = {}
        async for page in self.rackbeat.stock_totals():
            for total in page:
                if total.number != self.settings.sync_shipping_product:
                    totals[total.number] = total
        numbers = set(totals)
        new = numbers - self._known_numbers if self._known_numbers is not None else set()
        async with self.store.transaction() as tx:
            await self.index.set_rackbeat_numbers(tx, new or (numbers if self._known_numbers is None else ()))
        if new:
            # orders parked because a SKU was unknown in Rackbeat may go through now
            woken = await self.store.wake_parked("orders", "UNKNOWN_SKU", sorted(new))
            if woken:
                self.log.info("new Rackbeat products: parked orders retried", products=len(new), orders=woken)
        self._known_numbers = numbers
        return totals

    async def _park_duplicates(
        self, entries: Mapping[str, list[IndexEntry]], totals: Mapping[str, Any]
    ) -> None:
        parked = {p.key for p in await self.store.parked(FLOW) if p.reason == "DUPLICATE_SKU"}
        async with self.store.transaction() as tx:
            for sku, rows in entries.items():
                if len(rows) > 1 and sku in totals and sku not in parked:
                    await tx.park(
                        FLOW,
                        sku,
                        "DUPLICATE_SKU",
                        f"SKU {sku!r} is on {len(rows)} Shopify variants; its stock is not written",
                    )
                    self.log.warning("duplicate SKU: stock not written", sku=sku, variants=len(rows))
            for sku in parked:
                if len(entries.get(sku, [])) <= 1:
                    await tx.unpark(FLOW, sku)

    async def _ledger(self, location: str) -> dict[str, tuple[int, dict[str, str]]]:
        rows = await self.store.fetchall(
            "SELECT inventory_item_id, quantity, rackbeat_figure FROM stock_ledger WHERE shop = ? AND location_id = ?",
            (self.store.shop, location),
        )
        return {str(item): (int(q), json.loads(f) if f else {}) for item, q, f in rows}

    async def _item(
        self, sku: str, entry: IndexEntry, total: StockTotals, known: tuple[int, dict[str, str]] | None
    ) -> _Item | None:
        totals_key = f"{total.stock_quantity}/{total.available_quantity}"
        wanted = self.settings.location_numbers
        figure: Decimal | None
        if wanted is None:
            figure = (
                total.stock_quantity
                if self.settings.sync_stock_figure is StockFigure.IN_STOCK
                else total.available_quantity
            )
        elif known is not None and known[1].get("totals") == totals_key and "figure" in known[1]:
            figure = Decimal(known[1]["figure"])  # unchanged totals: the per-location sum is too
        else:
            figure = await self._per_location(sku, wanted)
        if figure is None:
            return None  # Rackbeat did not say: unknown is not zero
        item = _Item(sku=sku, item_id=str(entry.inventory_item_id), figure=figure, totals_key=totals_key)
        if known is not None:
            item.believed = known[0]
            item.recorded = (
                known[0],
                known[1].get("totals", ""),
                known[1].get("figure", ""),
                int(known[1].get("demand", 0)),
            )
        return item

    async def _per_location(self, sku: str, wanted: Sequence[str]) -> Decimal | None:
        try:
            stocks = await self.rackbeat.product_locations(sku)
        except NotFoundError:
            return None
        use_stock = self.settings.sync_stock_figure is StockFigure.IN_STOCK
        figures = [
            s.stock_quantity if use_stock else s.available_quantity for s in stocks if s.location in wanted
        ]
        if any(f is None for f in figures):
            return None
        return sum((f for f in figures if f is not None), Decimal(0))

    async def _refigure(self, items: Sequence[_Item]) -> None:
        """Read the Rackbeat figure of these items again (after orders were imported)."""
        wanted = self.settings.location_numbers
        for item in items:
            figure: Decimal | None
            if wanted is not None:
                figure = await self._per_location(item.sku, wanted)
            else:
                product = await self.rackbeat.get_product(item.sku)
                figure = None
                if product is not None:
                    figure = (
                        product.stock_quantity
                        if self.settings.sync_stock_figure is StockFigure.IN_STOCK
                        else product.available_quantity
                    )
            if figure is not None:
                item.figure = figure

    async def _apply_demand(self, items: Sequence[_Item]) -> None:
        demand = await unreserved_demand(self.store)
        for sku, units in self._extra_demand.items():
            demand[sku] = demand.get(sku, 0) + units
        for item in items:
            item.demand = demand.get(item.sku, 0)
            target = _whole(item.figure - item.demand)
            item.target = target if self.settings.sync_allow_negative_stock else max(target, 0)

    async def _read_shopify(self, items: Sequence[_Item], location: str) -> None:
        """Replace what we believe Shopify has by what it has (reconcile, stale answers)."""
        levels = await self.shopify.inventory_levels([i.item_id for i in items], location)
        for item in items:
            item.believed = levels.get(item.item_id)
            item.fresh = True

    # --- pushing -------------------------------------------------------------------------------

    async def _push(self, items: Sequence[_Item], location: str) -> int:
        """Write every item whose target differs from Shopify's quantity; re-decide stale ones."""
        pending = [i for i in items if i.needs_write]
        unknown = [i for i in pending if i.believed is None]
        if unknown:
            await self._read_shopify(unknown, location)  # first sight: ask Shopify what it has
            pending = [i for i in pending if i.needs_write]
        written = 0
        for _round in range(MAX_STALE_ROUNDS):
            stale: list[_Item] = []
            for start in range(0, len(pending), MAX_INPUT_ITEMS):
                batch = pending[start : start + MAX_INPUT_ITEMS]
                done, stale_here = await self._send(batch, location)
                written += done
                stale.extend(stale_here)
            if not stale:
                break
            self.metrics.count(FLOW, "stale_retries", len(stale))
            # Shopify changed under us, most likely a sale: take the new order in, then
            # read both sides of these items again before deciding again
            await self._catch_up()
            await self._refigure(stale)
            await self._read_shopify(stale, location)
            await self._apply_demand(stale)
            pending = [i for i in stale if i.needs_write]
        else:
            self.log.info("stock still changing in Shopify; the rest next cycle", items=len(pending))
        await self._confirm_unchanged(items, location)
        return written

    async def _send(self, batch: Sequence[_Item], location: str) -> tuple[int, list[_Item]]:
        """Store the batch, send it, confirm it; return (written, stale items)."""
        if not batch:
            return 0, []
        key = str(uuid.uuid4())
        payload = [
            [i.sku, i.item_id, i.target, i.believed, str(i.figure), i.totals_key, i.demand] for i in batch
        ]
        async with self.store.transaction() as tx:
            await tx.execute(
                "INSERT INTO stock_batches (shop, batch_key, location_id, payload, created_at) VALUES (?, ?, ?, ?, ?)",
                (self.store.shop, key, location, json.dumps(payload), self.clock().isoformat()),
            )
        return await self._deliver(key, location, batch)

    async def _deliver(self, key: str, location: str, batch: Sequence[_Item]) -> tuple[int, list[_Item]]:
        quantities = [StockQuantity(i.item_id, location, i.target, i.believed) for i in batch]
        result = await self.shopify.set_available(
            quantities, key=key, reference_uri=REFERENCE_URI.format(key=key), reason="correction"
        )
        if result.ok:
            async with self.store.transaction() as tx:
                await self._record(tx, location, [(i, i.target) for i in batch])
                await tx.execute(
                    "DELETE FROM stock_batches WHERE shop = ? AND batch_key = ?", (self.store.shop, key)
                )
            self.metrics.count(FLOW, "quantities_pushed", len(batch))
            self.metrics.count(FLOW, "batches")
            self.log.info("stock written", quantities=len(batch))
            return len(batch), []
        # Shopify applied nothing: stale items are decided again, rejected ones parked
        stale_ids = result.stale_item_ids
        by_item = result.errors_by_item()
        async with self.store.transaction() as tx:
            await tx.execute(
                "DELETE FROM stock_batches WHERE shop = ? AND batch_key = ?", (self.store.shop, key)
            )
            for item in batch:
                errors = by_item.get(item.item_id, ())
                if errors and item.item_id not in stale_ids:
                    detail = "; ".join(f"{e.code}: {e.message}" for e in errors)
                    await tx.park(
                        FLOW,
                        item.sku,
                        "REJECTED",
                        f"SKU {item.sku!r}: Shopify refused the quantity: {detail}",
                    )
        if result.general_errors:
            detail = "; ".join(f"{e.code}: {e.message}" for e in result.general_errors)
            self.log.error("Shopify refused a stock batch", detail=detail)
        good = [i for i in batch if i.item_id not in by_item]
        stale = [i for i in batch if i.item_id in stale_ids]
        if good and not result.general_errors:
            written, more_stale = await self._send(good, location)
            return written, stale + more_stale
        return 0, stale

    async def _record(self, tx: Any, location: str, confirmed: Sequence[tuple[_Item, int]]) -> None:
        now = self.clock().isoformat()
        await tx.executemany(
            "INSERT INTO stock_ledger (shop, inventory_item_id, location_id, quantity, rackbeat_figure, updated_at) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (shop, inventory_item_id, location_id) DO UPDATE SET "
            "quantity = excluded.quantity, rackbeat_figure = excluded.rackbeat_figure, updated_at = excluded.updated_at",
            [
                (
                    self.store.shop,
                    item.item_id,
                    location,
                    quantity,
                    json.dumps(
                        {"totals": item.totals_key, "figure": str(item.figure), "demand": item.demand}
                    ),
                    now,
                )
                for item, quantity in confirmed
            ],
        )

    async def _confirm_unchanged(self, items: Sequence[_Item], location: str) -> None:
        """Remember what Shopify has for items that needed no write (so the next cycle
        compares against it) and the per-location figures behind them."""
        settled = [(i, i.target) for i in items if i.believed == i.target and i.recorded != i.settled]
        if settled:
            async with self.store.transaction() as tx:
                await self._record(tx, location, settled)

    async def _resend_pending(self, location: str) -> int:
        """Re-send batches a crash left between storing and confirming, with their keys."""
        rows = await self.store.fetchall(
            "SELECT batch_key, location_id, payload FROM stock_batches WHERE shop = ? ORDER BY created_at",
            (self.store.shop,),
        )
        written = 0
        for key, batch_location, payload in rows:
            batch = [
                _Item(
                    sku=sku,
                    item_id=item,
                    figure=Decimal(figure),
                    totals_key=totals,
                    target=target,
                    believed=believed,
                    demand=demand,
                )
                for sku, item, target, believed, figure, totals, demand in json.loads(payload)
            ]
            self.log.info("re-sending a stock batch left by an interrupted push", quantities=len(batch))
            done, _stale = await self._deliver(str(key), str(batch_location), batch)
            written += done
        return written
