"""Stock Rackbeat → Shopify (the guide's S10 and S12): never oversell, spend almost no API budget.

One cycle, in this order (the order is what makes it safe):

1. **Leftover batch.** A batch a crash left between "stored" and "confirmed" is re-sent
   first, with its stored idempotency key (see *Crash safety* below).
2. **Marker.** The order ledger's high-water mark (its largest ``rowid``), then the
   unreserved demand ``D0`` — both before Rackbeat is read.
3. **Scan.** One narrow paged read of every Rackbeat product's totals (``fields=``); the
   numbers no Shopify variant has are left for ``status`` (:data:`RACKBEAT_ONLY`). With
   S10 = a list of locations, a normal cycle reads per location only the products whose
   totals (stock, available) or ``updated_at`` changed since the stock ledger's record;
   the others reuse the per-location sum stored there. A full reconcile re-reads every
   product per location, spending at most :data:`REFRESH_BUDGET_SHARE` of a cycle's
   Rackbeat budget on it and going on over the next cycles until all are read.

   *What remains:* goods moved between a listed and an unlisted location leave both
   totals as they were (in order follows from them), and whether Rackbeat bumps
   ``updated_at`` for a stock movement is unknown. Such a move is caught by the full
   reconcile's pass (``SYNC_RECONCILE_SECONDS``, plus the pass's length for a large
   catalogue); until then Shopify may show the old sum — too much when goods left a
   listed location.
4. **Candidates.** Per SKU on exactly one Shopify variant, the target with ``D0``. A SKU
   goes further if the target differs from the quantity last confirmed in Shopify (the
   stock ledger), if an input of the target (figure, units kept back) changed, if units
   are held for hidden sales (see below), if its last write went stale without a reading
   to decide on, or if an order for it reached the order ledger since the last cycle
   (Shopify sold it, so the confirmed quantity is out of date even when a goods receipt
   hides the reservation). None: the cycle ends here, without a Shopify call and without
   catching the orders up.
5. **Read** Shopify's quantity of SKUs never written, of SKUs whose target does not rise
   (usually the echo of a Shopify sale, which Shopify shows already: a read is cheaper
   than a compare-and-swap that fails and holds up its whole batch), of SKUs whose last
   write went stale, and of every SKU on a full reconcile.
6. **Catch up** the orders (an orders cycle asked of the runner: recent Shopify sales reach the order
   ledger), then decide again with the effective demand below.
7. **Push** up to 250 quantities per ``inventorySetQuantities``, each with
   ``changeFromQuantity`` = the Shopify quantity the decision was based on. A stale one
   (Shopify changed meanwhile: a sale) is read again, the orders caught up again, and it
   is decided again — at most :data:`MAX_STALE_ROUNDS` rounds a cycle; what is still stale
   after the last round is read first on the next cycle.

No oversell
-----------
For SKU ``s``, written to one Shopify location::

    target = floor(F − E)     0 instead of a negative value unless SYNC_ALLOW_NEGATIVE_STOCK
    F      = Rackbeat's available_quantity (stock_quantity with SYNC_STOCK_FIGURE=in_stock),
             over all locations or summed over S10's, as scanned
    E      = max(D_now[s], D0[s] + N[s])
    sent   = target − H, not below 0 for that reason;  changeFromQuantity = B

``D_now`` is the unreserved demand after the latest catch-up (Shopify orders not imported
yet or imported as drafts: :func:`daemon.flows.orders.unreserved_demand`, which the
orders flow owns), ``D0`` the same at the marker, and ``N`` the demand of order-ledger
rows created after the marker. An order Rackbeat starts to reserve after the scan (the
catch-up, or the orders flow running beside this one, books it) is then in neither
``F`` nor ``D_now``; it is in ``D0`` if the ledger had it at the marker, else in ``N``.
An order reserved before the scan may be counted twice: that undersells for one cycle
and is corrected on the next; it never oversells.

``B`` (believed) is the quantity last confirmed (the stock ledger) or one read before the
catch-up. Every Shopify sale after that moment makes the compare-and-swap fail, and
every sale before it is in the order ledger once the catch-up is done — except one that
Shopify's search index does not list yet (it lags by seconds, at times minutes). ``H``
(hidden) covers those: the units held from earlier cycles plus how far a fresh reading
fell below the quantity last confirmed, less the units of orders that reached the order
ledger since that decision (its largest rowid is stored with each ledger row). They are
held back and stay held, cycle after cycle, until orders for them reach the ledger (an
order then explains them once: the quantity already reflects it, nothing is written) or
:data:`HOLD_LIMIT` passes — then the drop is taken for a hand-made change in Shopify and
undone. A search lag longer than the poll interval is covered up to that limit.

Crash safety of a push
----------------------
A batch (its key, location and quantities) is committed to ``stock_batches`` before it
is sent. When Shopify confirms, the stock ledger is updated and the batch deleted in one
transaction; the ledger never records a quantity Shopify did not confirm. A batch a
crash left behind is re-sent first on the next cycle, with the same key and payload: if
Shopify had applied it, it answers from its idempotency store (nothing is applied
twice) and the ledger catches up; if not, the compare-and-swap decides whether it still
applies. Only then is Rackbeat scanned again.

A re-sent batch whose compare-and-swap comes back stale (Shopify changed while the
daemon was down) is read and decided again in the same cycle.

Every ``SYNC_RECONCILE_SECONDS`` (and on the first cycle after a start) Shopify's levels
of every matched SKU are read, and with S10 = a list every product per location, so
hand-made drift in Shopify is corrected too (drift downwards after :data:`HOLD_LIMIT`:
it looks like a hidden sale at first).
"""

from __future__ import annotations

import contextlib
import json
import time
import uuid
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from decimal import ROUND_FLOOR, Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

import anyio
import structlog
from prometheus_client import CollectorRegistry, Gauge

from daemon.config import Settings, StockFigure
from daemon.demand import OrderDemand
from daemon.errors import FatalError, NotFoundError, WaitingError
from daemon.index import IndexEntry, SkuIndex
from daemon.metrics import PREFIX, Metrics
from daemon.progress import Progress
from daemon.rackbeat import RackbeatClient, StockTotals, available_at_locations
from daemon.shopify import ShopifyClient, StockQuantity
from daemon.shopify_documents import MAX_INPUT_ITEMS
from daemon.shutdown import Shutdown
from daemon.store import Store, Transaction

__all__ = [
    "FLOW",
    "HOLD_LIMIT",
    "MAX_STALE_ROUNDS",
    "RACKBEAT_ONLY",
    "Recorded",
    "StockDifference",
    "StockFlow",
    "effective_demand",
    "target_quantity",
]

if TYPE_CHECKING:
    from daemon.runner import CycleRequests

log = structlog.get_logger("daemon.flows.stock")

FLOW = "stock"
#: rounds of "stale → read → catch up → decide again" per cycle before leaving the rest to the next
MAX_STALE_ROUNDS = 3
#: Shopify's inventory history names the daemon as the source of each change
REFERENCE_URI = "gid://rackbeat-shopify/StockSync/{key}"
#: the ``cursors`` row (flow column) where the scan leaves the Rackbeat numbers missing in
#: Shopify, as JSON ``{"count": n, "examples": [...]}``, for ``status``
RACKBEAT_ONLY = "stock.rackbeat_only"
#: how many of them are kept by name
RACKBEAT_ONLY_EXAMPLES = 20
#: pushes at least this large report progress (the first sync of a large shop)
PROGRESS_FROM = 1000
#: How long units are held back for a Shopify sale the order ledger does not show yet.
#: Shopify's order search lags by seconds, now and then by a minute or two; the orders
#: flow re-reads 5 minutes behind its cursor. An order still missing after this is not a
#: lag any more: the drop is taken for a hand-made correction in Shopify and undone.
HOLD_LIMIT = timedelta(minutes=10)
#: With S10 = a list, the share of the Rackbeat request budget one cycle may spend on
#: re-reading products per location for the full reconcile (one or two requests each, and
#: no bulk endpoint): the rest of the catalogue is re-read on the cycles after it, so a
#: large catalogue never starves the orders and products flows of requests.
REFRESH_BUDGET_SHARE = 0.25


# --- pure decisions ------------------------------------------------------------------------------


def target_quantity(figure: Decimal, demand: int, *, allow_negative: bool) -> int:
    """The quantity Shopify should offer: whole units of ``figure − demand``, rounded down
    (a fraction of a unit cannot be sold), and 0 instead of a negative result unless allowed."""
    whole = int((figure - demand).to_integral_value(rounding=ROUND_FLOOR))
    return whole if allow_negative else max(whole, 0)


def effective_demand(
    now: Mapping[str, int], at_marker: Mapping[str, int], new_since_marker: Mapping[str, int]
) -> dict[str, int]:
    """``max(now, at_marker + new_since_marker)`` per SKU (see the module docstring): the
    unreserved demand, plus whatever may have become reserved after Rackbeat was scanned."""
    skus = set(now) | set(at_marker) | set(new_since_marker)
    return {sku: max(now.get(sku, 0), at_marker.get(sku, 0) + new_since_marker.get(sku, 0)) for sku in skus}


def _figure(stock: Decimal | None, available: Decimal | None, which: StockFigure) -> Decimal | None:
    return stock if which is StockFigure.IN_STOCK else available


def _decimal(text: str) -> Decimal | None:
    try:
        return Decimal(text) if text else None
    except InvalidOperation:
        return None


def _chunks(items: Sequence[_Item], size: int) -> Iterator[Sequence[_Item]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _location_gid(value: str) -> str:
    return value if value.startswith("gid://") else f"gid://shopify/Location/{value}"


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


# --- records ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StockDifference:
    """One SKU whose Shopify quantity is not what the stock flow would write."""

    sku: str
    location_id: str
    #: what Shopify has (None: the item is not stocked at the location)
    shopify: int | None
    target: int
    #: with S10 = a list, Rackbeat's figure at each listed location as read this time
    #: (empty when the stored sum was used, or with S10 = all)
    rackbeat: Mapping[str, Decimal] = field(default_factory=dict)


@dataclass(frozen=True)
class Recorded:
    """A stock ledger row: the quantity Shopify confirmed and the inputs it was decided from.

    ``totals`` is Rackbeat's "stock/available" of the product when decided and ``updated``
    its ``updated_at`` (to see a change in the next scan), ``figure`` the figure used (with
    S10 = a list, the per-location sum, reused on normal cycles while totals and
    ``updated`` stay the same), ``demand`` the unreserved demand it was decided with, and
    ``watermark`` the order ledger's largest rowid when it was decided: orders after it
    were sold after that decision, as far as the ledger can tell.

    ``held`` is the units held back for Shopify sales the order ledger did not show yet
    (the hold began at ``held_since``): it stays until orders for that many units reached
    the ledger after ``watermark``, or :data:`HOLD_LIMIT` has passed.
    """

    quantity: int
    totals: str = ""
    figure: str = ""
    demand: int = 0
    updated: str = ""
    held: int = 0
    watermark: int = 0
    held_since: str = ""

    @classmethod
    def from_row(cls, quantity: int, blob: str | None) -> Recorded:
        """Read a row (``rackbeat_figure`` holds the inputs as JSON)."""
        try:
            inputs = json.loads(blob) if blob else {}
        except ValueError:
            inputs = {}
        if not isinstance(inputs, dict):
            inputs = {}
        return cls(
            quantity=int(quantity),
            totals=str(inputs.get("totals", "")),
            figure=str(inputs.get("figure", "")),
            demand=int(inputs.get("demand", 0)),
            updated=str(inputs.get("updated", "")),
            held=int(inputs.get("held", 0)),
            watermark=int(inputs.get("watermark", 0)),
            held_since=str(inputs.get("held_since", "")),
        )

    def blob(self) -> str:
        """The ``rackbeat_figure`` column."""
        inputs: dict[str, object] = {
            "totals": self.totals,
            "figure": self.figure,
            "demand": self.demand,
            "updated": self.updated,
            "watermark": self.watermark,
        }
        if self.held:
            inputs.update(
                held=self.held,
                held_since=self.held_since,
            )
        return json.dumps(inputs)

    def hold_open(self, now: datetime) -> bool:
        """Units are held and :data:`HOLD_LIMIT` has not passed since the hold began."""
        if not self.held:
            return False
        try:
            since = datetime.fromisoformat(self.held_since.replace("Z", "+00:00"))
        except ValueError:
            return False  # unreadable: let the units go rather than hold them forever
        return now - since < HOLD_LIMIT


@dataclass(frozen=True)
class _Marker:
    """The order ledger before Rackbeat was read: its largest rowid and the unreserved demand."""

    watermark: int
    demand: Mapping[str, int]


@dataclass(eq=False)
class _Item:
    """One SKU's decision in a cycle (compared by identity)."""

    sku: str
    item_id: str
    totals: str
    figure: Decimal
    recorded: Recorded | None
    #: Rackbeat's ``updated_at`` of the product as scanned ("" when not given)
    updated: str = ""
    #: the cycle's wall-clock time (ISO 8601): when a hold that begins now began
    now: str = ""
    #: the recorded hold is still within :data:`HOLD_LIMIT`
    hold_open: bool = False
    demand: int = 0
    target: int = 0
    #: the Shopify quantity the decision is based on (the ledger's, or just read)
    believed: int | None = None
    #: ``believed`` was read from Shopify in this cycle
    fresh: bool = False
    #: how far a fresh reading fell below the last confirmed quantity (0: it did not)
    drop: int = 0
    #: the decision is in the stock ledger (confirmed by Shopify, or nothing to write)
    done: bool = False
    #: units held back as hidden sales when it was recorded
    held: int = 0
    #: the ledger row a re-sent batch recorded when it was stored (decided then, not now)
    preset: Recorded | None = None
    #: (rowid, units) of this SKU's order-ledger rows after :attr:`base_watermark`
    arrivals: Sequence[tuple[int, int]] = ()
    #: the order ledger's largest rowid when the demand was last read
    watermark: int = 0
    #: with S10 = a list, Rackbeat's figure per listed location when read this cycle
    locations: Mapping[str, Decimal] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.recorded is not None:
            self.believed = self.recorded.quantity

    @property
    def base_watermark(self) -> int:
        """The order ledger's rowid that hidden sales are counted from: the largest when
        the last confirmed decision (and its hold) was made."""
        return self.recorded.watermark if self.recorded is not None else 0

    @property
    def looks_for_sales(self) -> bool:
        """Hidden sales are to be counted: units are held, or a fresh reading dropped."""
        return self.hold_open or (self.fresh and self.drop > 0)

    @property
    def hidden(self) -> int:
        """Units Shopify sold that the ledger cannot show yet: the units still held from
        earlier cycles plus a fresh reading's drop below the last confirmed quantity, less
        the units of orders that reached the ledger since (see the module docstring),
        whatever Rackbeat did with them since (draft, booked, shipped)."""
        r = self.recorded
        if r is None:
            return 0
        sold = (r.held if self.hold_open else 0) + (self.drop if self.fresh else 0)
        if sold <= 0:
            return 0
        base = self.base_watermark
        explained = sum(units for rowid, units in self.arrivals if rowid > base)
        return max(0, sold - explained)

    @property
    def goal(self) -> int:
        """The quantity written this cycle: the target less hidden sales (not below 0 for
        that reason)."""
        hidden = self.hidden
        return self.target if not hidden else max(self.target - hidden, min(self.target, 0))

    @property
    def holding(self) -> bool:
        """The last confirmed decision held units back (open or expired: either way this
        cycle must look, to keep or to release them)."""
        return self.recorded is not None and self.recorded.held > 0

    @property
    def inputs_changed(self) -> bool:
        """The figure or the units kept back (demand plus hidden sales) differ from the
        last confirmed decision. An order that shows up for units held as a hidden sale
        moves them from one to the other and changes nothing."""
        r = self.recorded
        if r is None or _decimal(r.figure) != self.figure:
            return True
        return r.demand + (r.held if self.hold_open else 0) != self.demand + self.hidden

    @property
    def needs_write(self) -> bool:
        """Shopify may differ from the goal. Without a fresh reading a changed input is
        always written (the compare-and-swap then tells whether Shopify still has what
        the ledger says), so that a sale the ledger missed is corrected now, not hourly."""
        if self.fresh:
            return self.believed != self.goal
        return self.recorded is None or self.believed != self.goal or self.inputs_changed

    @property
    def read_first(self) -> bool:
        """Shopify should be read before this item is written: it was never written, or its
        target does not rise. A falling target is most often the echo of a Shopify sale, which
        Shopify shows already; a compare-and-swap write would fail and hold up its batch."""
        if self.fresh:
            return False
        return self.believed is None or self.target <= self.believed

    def settled(self) -> Recorded:
        """The ledger row once Shopify holds ``believed`` for these inputs."""
        return self.recorded_as(self.believed if self.believed is not None else self.goal)

    def mark_recorded(self, recorded: Recorded) -> None:
        """The ledger now holds ``recorded`` for this item."""
        self.held = recorded.held
        self.recorded, self.believed = recorded, recorded.quantity
        self.fresh, self.drop, self.done = False, 0, True
        self.hold_open = recorded.held > 0

    def recorded_as(self, quantity: int) -> Recorded:
        """The ledger row for ``quantity`` decided from these inputs, with the hidden sales
        as the hold (its start kept while it goes on)."""
        if self.preset is not None:
            return replace(self.preset, quantity=quantity)
        hidden = self.hidden
        row = Recorded(
            quantity, self.totals, str(self.figure), self.demand, self.updated, watermark=self.watermark
        )
        r = self.recorded
        if not hidden or r is None:
            return row
        since = r.held_since if self.hold_open else self.now
        return replace(row, held=hidden, held_since=since)

    def payload(self) -> list[object]:
        """What a stored batch keeps of the item (the ledger row to record on confirmation)."""
        recorded = self.recorded_as(self.goal)
        return [
            self.sku,
            self.item_id,
            self.goal,
            self.believed,
            self.totals,
            recorded.figure,
            recorded.demand,
            recorded.blob(),
        ]

    @classmethod
    def from_payload(cls, raw: Sequence[object]) -> _Item:
        """The item of a stored batch (its goal becomes the target)."""
        sku, item_id, goal, believed, totals, figure, demand = raw[:7]
        item = cls(
            sku=str(sku),
            item_id=str(item_id),
            totals=str(totals),
            figure=Decimal(str(figure)),
            recorded=None,
            demand=int(str(demand)),
            target=int(str(goal)),
        )
        item.believed = None if believed is None else int(str(believed))
        blob = str(raw[7]) if len(raw) > 7 else None  # batches stored before holds were kept
        item.preset = Recorded.from_row(item.target, blob) if blob else None
        if item.preset is None:
            item.preset = Recorded(item.target, item.totals, str(figure), item.demand)
        return item


@dataclass
class _Outcome:
    """What one cycle did."""

    written: int = 0
    batches: int = 0
    #: the order ledger's rowid at the cycle's marker
    watermark: int | None = None
    #: SKUs still not as decided (stale rounds exhausted, refused, held back, shutdown)
    outstanding: int = 0
    differences: list[StockDifference] = field(default_factory=list)


_LAG_GAUGES: weakref.WeakKeyDictionary[CollectorRegistry, Gauge] = weakref.WeakKeyDictionary()


def _lag_gauge(metrics: Metrics) -> Gauge:
    """``rackbeat_shopify_stock_lag_seconds`` in the metrics' own registry (one per registry:
    the daemon and the reconcile command may build a flow each on the same metrics)."""
    gauge = _LAG_GAUGES.get(metrics.registry)
    if gauge is None:
        gauge = Gauge(
            f"{PREFIX}_stock_lag_seconds",
            "Seconds from the stock scan that saw a change until Shopify confirmed it "
            "(grows while a change waits; 0 when Shopify is as decided)",
            registry=metrics.registry,
        )
        _LAG_GAUGES[metrics.registry] = gauge
    return gauge


# --- the flow ----------------------------------------------------------------------------------------


async def _location_figures(
    rackbeat: RackbeatClient, sku: str, wanted: Sequence[str], which: StockFigure
) -> dict[str, Decimal] | None:
    """Rackbeat's figure (``which``) of ``sku`` at each of the ``wanted`` locations (a location
    without an entry holds none); None when Rackbeat does not say (unknown is not zero)."""
    try:
        stocks = {s.location: s for s in await rackbeat.product_locations(sku)}
    except NotFoundError:
        return None
    values: Sequence[Decimal | None] | None
    if which is StockFigure.IN_STOCK:
        values = [stocks[n].stock_quantity if n in stocks else Decimal(0) for n in wanted]
    else:
        values = available_at_locations(stocks, wanted)
        if values is None:
            # the listing does not carry the figure per location: ask the items endpoint
            try:
                available = await rackbeat.available_per_location(sku)
            except NotFoundError:
                return None
            values = [available.get(n, Decimal(0)) for n in wanted]
    if any(v is None for v in values):
        return None
    return {n: v for n, v in zip(wanted, values, strict=True) if v is not None}


async def read_rackbeat_only(store: Store) -> dict[str, Any]:
    """What the last scan left for ``status`` (:meth:`StockFlow._note_rackbeat_only`): how
    many Rackbeat numbers no Shopify variant has, and a few of them."""
    summary = await store.get_cursor(RACKBEAT_ONLY)
    try:
        loaded = json.loads(summary) if summary else {}
    except ValueError:
        loaded = {}
    if not isinstance(loaded, dict):
        loaded = {}
    return {"count": int(loaded.get("count", 0)), "examples": [str(n) for n in loaded.get("examples", [])]}


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
        demand: OrderDemand,
        cycles: CycleRequests | None = None,
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
        self.demand = demand
        self.cycles = cycles
        self.clock = clock
        self.monotonic = monotonic
        self.log = log.bind(flow=FLOW)
        self._location: str | None = None
        self._reconciled_at: float | None = None
        self._known_numbers: set[str] | None = None
        self._waiting_since: float | None = None
        #: the order ledger's rowid up to which sales have been looked at (None: since start)
        self._seen_watermark: int | None = None
        self._parked: set[str] = set()
        self._refused: set[str] = set()
        #: SKUs whose write went stale without a reading this cycle could use: read first next
        self._reread: set[str] = set()
        #: S10 = a list: products the running full reconcile has still to re-read per location
        self._refresh_pending: set[str] = set()
        #: the S15 shipping product was in the latest scan, and in the one remembered before it
        self._shipping_in_scan = False
        self._shipping_seen = False
        #: the Rackbeat-only summary last stored (written again only when it changes)
        self._rackbeat_only: str | None = None
        self._lock = anyio.Lock()
        self._lag = _lag_gauge(metrics)

    # --- entry points ------------------------------------------------------------------------------

    async def run_once(self) -> int:
        """One cycle (see the module docstring); returns the quantities Shopify confirmed."""
        if not self.settings.sync_stock:
            return 0
        async with self._lock:
            started = self.monotonic()
            await self.index.current()
            location = await self.location()
            resent = await self._resend_pending(location)
            full = self._reconcile_due()
            outcome = await self._cycle(location, full=full, hold=True)
            self._seen_watermark = outcome.watermark
            if full:
                self._reconciled_at = started
            self._note_lag(started, outcome)
            async with self.store.transaction() as tx:
                await tx.set_cursor(FLOW, _iso(self.clock()))
            if outcome.written or outcome.outstanding or resent:
                self.log.info(
                    "stock cycle",
                    pushed=outcome.written + resent,
                    batches=outcome.batches,
                    waiting=outcome.outstanding,
                    full=full,
                )
            return outcome.written + resent

    async def reconcile(
        self, *, dry_run: bool, extra_demand: Mapping[str, int] | None = None
    ) -> list[StockDifference]:
        """Read both sides in full (every Rackbeat total, Shopify's level of every SKU in the
        index as it stands: the reconcile command rebuilds the index first); return every
        SKU whose Shopify quantity differs from the target, and write the targets unless
        ``dry_run``.

        ``extra_demand`` (SKU → units) counts orders the ledger does not have yet, so that a
        dry run, which imports nothing, decides as the daemon would. A dry run writes to
        neither API nor to the state DB.
        """
        async with self._lock:
            location = await self.location()
            if not dry_run:
                await self._resend_pending(location)
            outcome = await self._cycle(
                location, full=True, hold=False, dry_run=dry_run, extra=dict(extra_demand or {})
            )
            if not dry_run:
                self._reconciled_at = self.monotonic()
            return outcome.differences

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

    def _note_lag(self, started: float, outcome: _Outcome) -> None:
        now = self.monotonic()
        if outcome.outstanding:
            if self._waiting_since is None:
                self._waiting_since = started
            self._lag.set(now - self._waiting_since)
            return
        origin = self._waiting_since if self._waiting_since is not None else started
        self._waiting_since = None
        self._lag.set(now - origin if outcome.written else 0.0)

    # --- one pass: read, decide, write, commit -----------------------------------------------------

    async def _cycle(
        self,
        location: str,
        *,
        full: bool,
        hold: bool,
        dry_run: bool = False,
        extra: Mapping[str, int] | None = None,
    ) -> _Outcome:
        extra = extra or {}
        marker = await self._marker()
        totals = await self._scan()
        entries = await self.index.by_sku()
        if not dry_run:
            await self._remember_numbers(totals, entries)
            await self._park_duplicates(entries, totals)
        if not dry_run:
            await self._note_rackbeat_only(totals, entries)
        blocked = await self._blocked()
        refresh = self._refresh_budget(totals, full=full, whole=not hold)
        items = await self._items(totals, entries, await self._ledger(location), blocked, refresh=refresh)
        await self._decide(items, (marker.demand, marker.watermark), extra)
        sold = await self._sold_since(self._seen_watermark) if not full else set()
        reread = set(self._reread)
        candidates = (
            items
            if full
            else [i for i in items if i.needs_write or i.holding or i.sku in sold or i.sku in reread]
        )
        if not dry_run:
            self._reread = set()
            chosen = {id(i) for i in candidates}
            await self._restamp([i for i in items if not full and id(i) not in chosen], location)
        if not candidates:
            return _Outcome(watermark=marker.watermark)
        # read before catching up: every sale up to the reading is then in the ledger
        await self._read_shopify(
            [i for i in candidates if full or i.read_first or i.sku in reread], location, hold=hold
        )
        if not dry_run:
            # the orders first, then decide with them: a Shopify sale that is not in the
            # ledger yet would otherwise look like stock to sell
            await self._catch_up()
        await self._decide(candidates, await self._demand_since(marker), extra)
        differences = [
            StockDifference(i.sku, location, i.believed, i.target, i.locations)
            for i in candidates
            if i.believed != i.target
        ]
        if dry_run:
            return _Outcome(watermark=marker.watermark, differences=differences)
        self._refused = set()
        pending = [i for i in candidates if i.needs_write]
        self.log.debug(
            "stock decided",
            skus=len(items),
            candidates=len(candidates),
            read=sum(1 for i in candidates if i.fresh),
            to_write=len(pending),
            full=full,
        )
        written, batches = await self._push(pending, location, marker, extra, hold=hold)
        await self._settle([i for i in candidates if not i.done and not i.needs_write], location)
        # still to do: not confirmed (stale rounds used up, shutdown), or held back
        outstanding = [i for i in candidates if (not i.done or i.held) and i.sku not in self._refused]
        held = [i for i in candidates if i.held]
        if held:
            self.metrics.count(FLOW, "held_back", len(held))
            self.log.info(
                "Shopify sold units the order ledger does not show yet: held back",
                skus=[i.sku for i in held[:20]],
                count=len(held),
            )
        return _Outcome(written, batches, marker.watermark, len(outstanding), differences)

    # --- reading Rackbeat -----------------------------------------------------------------------------

    async def _marker(self) -> _Marker:
        # the watermark first: a row added between the two reads is then "new" (counted)
        watermark = await self.demand.watermark()
        return _Marker(watermark, await self.demand.unreserved())

    async def _sold_since(self, watermark: int | None) -> set[str]:
        """SKUs of orders that reached the ledger since the previous cycle's marker: Shopify
        sold them, so the quantity last confirmed there is out of date even where the
        Rackbeat figure and the demand look unchanged (a receipt can hide a reservation)."""
        if watermark is None:
            return set()
        return {sku for _, demand in await self.demand.after(watermark) for sku in demand}

    async def _demand_since(self, marker: _Marker) -> tuple[dict[str, int], int]:
        """The effective demand (module docstring) now, and the order ledger's largest
        rowid read just before it (no later order is part of that demand)."""
        watermark = await self.demand.watermark()
        now = await self.demand.unreserved()
        new: dict[str, int] = {}
        for _, demand in await self.demand.after(marker.watermark):
            for sku, units in demand.items():
                new[sku] = new.get(sku, 0) + units
        return effective_demand(now, marker.demand, new), watermark

    async def _scan(self) -> dict[str, StockTotals]:
        """Every Rackbeat product's totals by number (the S15 shipping product left out)."""
        totals: dict[str, StockTotals] = {}
        shipping_seen = False
        # the first scan of a large catalogue reports its progress (later ones are routine)
        progress = (
            Progress("Rackbeat stock scan", None, shop=self.store.shop)
            if self._known_numbers is None
            else None
        )
        pages = self.rackbeat.stock_totals(on_total=progress.expect if progress is not None else None)
        async with contextlib.aclosing(pages):
            async for page in pages:
                for total in page:
                    if total.number != self.settings.sync_shipping_product:
                        totals[total.number] = total
                    else:
                        shipping_seen = True
                if progress is not None:
                    progress.advance(len(page))
        if progress is not None and progress.done >= PROGRESS_FROM:
            progress.finish()
        self._shipping_in_scan = shipping_seen
        return totals

    async def _remember_numbers(
        self, totals: Mapping[str, StockTotals], entries: Mapping[str, list[IndexEntry]]
    ) -> None:
        """Mark the SKU index rows Rackbeat has (``status`` lists the others), and retry at
        once the orders parked because a SKU was unknown in Rackbeat when one appears."""
        numbers = set(totals)
        unmarked = {
            sku for sku in numbers & set(entries) if any(e.rackbeat_number is None for e in entries[sku])
        }
        new = unmarked if self._known_numbers is None else (numbers - self._known_numbers) | unmarked
        self._known_numbers = numbers
        if unmarked:
            async with self.store.transaction() as tx:
                await self.index.set_rackbeat_numbers(tx, sorted(unmarked))
        if new:
            woken = await self.store.wake_parked("orders", "UNKNOWN_SKU", sorted(new))
            if woken:
                self.log.info("new Rackbeat products: parked orders retried now", orders=woken)
        if self._shipping_in_scan and not self._shipping_seen:
            # orders parked because the S15 product was missing may go through now
            woken = await self.store.wake_reason("orders", "NO_SHIPPING_PRODUCT")
            if woken:
                self.log.info("shipping product found in Rackbeat: parked orders retried now", orders=woken)
        self._shipping_seen = self._shipping_in_scan

    async def _note_rackbeat_only(
        self, totals: Mapping[str, StockTotals], entries: Mapping[str, list[IndexEntry]]
    ) -> None:
        """Store how many scanned Rackbeat numbers no Shopify variant has, with a few of
        them, for ``status`` (a SKU on one side only is reported, not an error)."""
        only = sorted(set(totals) - set(entries))
        summary = json.dumps({"count": len(only), "examples": only[:RACKBEAT_ONLY_EXAMPLES]})
        if summary == self._rackbeat_only:
            return
        async with self.store.transaction() as tx:
            await tx.set_cursor(RACKBEAT_ONLY, summary)
        self._rackbeat_only = summary

    async def _restamp(self, items: Sequence[_Item], location: str) -> None:
        """Record the scanned totals (and ``updated_at``) of SKUs that need no write although
        these changed (goods moved at a location S10 does not list, a product edit): the
        next cycle then reuses their per-location sum instead of reading it again. Quantity,
        figure, demand and any hold stay as they were."""
        listed = self.settings.location_numbers is not None
        rows = [
            (i.item_id, replace(i.recorded, totals=i.totals, updated=i.updated))
            for i in items
            if i.recorded is not None
            and (i.recorded.totals != i.totals or (listed and i.recorded.updated != i.updated))
        ]
        if rows:
            async with self.store.transaction() as tx:
                await self._record(tx, location, rows)

    def _refresh_budget(self, totals: Mapping[str, StockTotals], *, full: bool, whole: bool) -> int | None:
        """How many products of the running full reconcile's pass to re-read per location
        this cycle whatever their totals say (S10 = a list; ``None``: every product).

        The reconcile command (``whole``) reads them all. The daemon's full reconcile starts
        a pass over every product (:attr:`_refresh_pending`), and each cycle spends at most
        :data:`REFRESH_BUDGET_SHARE` of a cycle's Rackbeat budget on it, until the pass is
        done: a move between locations leaves the totals as they were.
        """
        if whole:
            return None
        if full and not self._refresh_pending and self.settings.location_numbers is not None:
            self._refresh_pending = set(totals)
        s = self.settings
        return max(1, int(s.rackbeat_requests_per_minute * s.sync_poll_seconds / 60 * REFRESH_BUDGET_SHARE))

    async def _items(
        self,
        totals: Mapping[str, StockTotals],
        entries: Mapping[str, list[IndexEntry]],
        ledger: Mapping[str, Recorded],
        blocked: set[str],
        *,
        refresh: int | None,
    ) -> list[_Item]:
        """One item per SKU found in both systems, on one Shopify variant, with a figure.

        With S10 = a list, the per-location sum stored in the ledger is reused while the
        product's totals and ``updated_at`` are as recorded, except for ``refresh`` products
        of the full reconcile's pass (``None``: every product; see :meth:`_refresh_budget`)."""
        wanted = self.settings.location_numbers
        which = self.settings.sync_stock_figure
        now = self.clock()
        stamp = _iso(now)
        items: list[_Item] = []
        unknown = 0
        pending = self._refresh_pending
        for sku, total in totals.items():
            rows = entries.get(sku)
            if not rows or len(rows) != 1 or rows[0].inventory_item_id is None or sku in blocked:
                pending.discard(sku)
                continue  # only in Rackbeat, a duplicate SKU, not a stock item, or parked
            item_id = rows[0].inventory_item_id
            recorded = ledger.get(item_id)
            key = f"{total.stock_quantity}/{total.available_quantity}"
            updated = total.updated_at.isoformat() if total.updated_at is not None else ""
            figure: Decimal | None
            locations: dict[str, Decimal] = {}
            if wanted is None:
                figure = _figure(total.stock_quantity, total.available_quantity, which)
            elif (
                recorded is not None
                and recorded.totals == key
                and recorded.updated == updated
                and _decimal(recorded.figure) is not None
                and (refresh is not None and (sku not in pending or refresh <= 0))
            ):
                # nothing Rackbeat shows of the product changed: most likely neither did the
                # sum (a move between locations does not show; the reconcile's pass finds it)
                figure = _decimal(recorded.figure)
            elif self.shutdown.requested:
                continue  # stopping: no more per-location reads this cycle
            else:
                if refresh is not None and sku in pending and recorded is not None:
                    refresh -= 1  # a read of the pass that the totals would not have asked for
                pending.discard(sku)
                read = await _location_figures(self.rackbeat, sku, wanted, which)
                locations = read or {}
                figure = None if read is None else sum(read.values(), Decimal(0))
            if figure is None:
                unknown += 1  # Rackbeat did not say: unknown is not zero, so nothing is sent
                continue
            hold_open = recorded is not None and recorded.hold_open(now)
            items.append(
                _Item(sku, item_id, key, figure, recorded, updated, stamp, hold_open, locations=locations)
            )
        if unknown:
            self.log.debug("SKUs without a Rackbeat figure left alone", count=unknown)
        return items

    # --- the ledgers ----------------------------------------------------------------------------------

    async def _ledger(self, location: str) -> dict[str, Recorded]:
        rows = await self.store.fetchall(
            "SELECT inventory_item_id, quantity, rackbeat_figure FROM stock_ledger "
            "WHERE shop = ? AND location_id = ?",
            (self.store.shop, location),
        )
        return {str(item): Recorded.from_row(int(q), blob) for item, q, blob in rows}

    async def _blocked(self) -> set[str]:
        """SKUs Shopify refused, until their retry is due."""
        now = self.clock()
        parked = await self.store.parked(FLOW)
        self._parked = {p.key for p in parked}
        return {p.key for p in parked if p.reason == "REJECTED" and p.next_attempt > now}

    async def _park_duplicates(
        self, entries: Mapping[str, list[IndexEntry]], totals: Mapping[str, StockTotals]
    ) -> None:
        parked = {p.key for p in await self.store.parked(FLOW) if p.reason == "DUPLICATE_SKU"}
        twins = {sku: len(rows) for sku, rows in entries.items() if len(rows) > 1 and sku in totals}
        resolved = [sku for sku in parked if sku not in twins]
        new = {sku: n for sku, n in twins.items() if sku not in parked}
        if not new and not resolved:
            return
        async with self.store.transaction() as tx:
            for sku, n in new.items():
                await tx.park(
                    FLOW,
                    sku,
                    "DUPLICATE_SKU",
                    f"SKU {sku!r} is on {n} Shopify variants; its stock is not written",
                )
                self.log.warning("duplicate SKU: stock not written", sku=sku, variants=n)
            for sku in resolved:
                await tx.unpark(FLOW, sku)
                self.log.info("duplicate SKU resolved", sku=sku)

    async def _record(self, tx: Transaction, location: str, rows: Iterable[tuple[str, Recorded]]) -> None:
        now = _iso(self.clock())
        await tx.executemany(
            "INSERT INTO stock_ledger (shop, inventory_item_id, location_id, quantity, rackbeat_figure, updated_at) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (shop, inventory_item_id, location_id) DO UPDATE SET "
            "quantity = excluded.quantity, rackbeat_figure = excluded.rackbeat_figure, updated_at = excluded.updated_at",
            [(self.store.shop, item, location, r.quantity, r.blob(), now) for item, r in rows],
        )

    async def _settle(self, items: Sequence[_Item], location: str) -> None:
        """Record what Shopify has for items that need no write (it was read and is as
        decided, or held back), so that the next cycle compares against it."""
        changed = [(i, i.settled()) for i in items if i.believed is not None and i.recorded != i.settled()]
        if changed:
            async with self.store.transaction() as tx:
                await self._record(tx, location, [(i.item_id, r) for i, r in changed])
        for item, recorded in changed:
            item.mark_recorded(recorded)
        for item in items:
            item.done = True
            item.held = item.recorded.held if item.recorded is not None else 0

    # --- deciding ---------------------------------------------------------------------------------------

    async def _decide(
        self,
        items: Sequence[_Item],
        demand: tuple[Mapping[str, int], int],
        extra: Mapping[str, int],
    ) -> None:
        """Set each item's demand and target from ``demand`` (the demand by SKU and the
        order ledger's largest rowid read before it), and what the order ledger holds that
        was sold since each one's last decision (to count hidden sales)."""
        allow = self.settings.sync_allow_negative_stock
        by_sku, watermark = demand
        looking = [i for i in items if i.looks_for_sales]
        arrivals: dict[str, list[tuple[int, int]]] = {}
        if looking:
            since = min(i.base_watermark for i in looking)
            for rowid, sold in await self.demand.after(since):
                for sku, units in sold.items():
                    arrivals.setdefault(sku, []).append((rowid, units))
        for item in items:
            item.demand = by_sku.get(item.sku, 0) + extra.get(item.sku, 0)
            item.target = target_quantity(item.figure, item.demand, allow_negative=allow)
            item.watermark = watermark
            item.arrivals = arrivals.get(item.sku, ())

    async def _catch_up(self) -> None:
        """Have the orders flow put recent Shopify orders into the ledger first (through
        the runner: the orders cycle is the orders flow's, its errors are its own)."""
        if self.cycles is not None and not await self.cycles.request_cycle("orders"):
            raise WaitingError(
                "recent Shopify orders could not be caught up (the orders flow is failing; see its "
                "error): stock is not pushed until they are, so that no sold unit is offered again"
            )

    async def _read_shopify(self, items: Sequence[_Item], location: str, *, hold: bool) -> None:
        """Base these items' decisions on what Shopify has now."""
        if not items:
            return
        levels = await self.shopify.inventory_levels([i.item_id for i in items], location)
        for item in items:
            level = levels.get(item.item_id)
            item.believed, item.fresh, item.drop = level, True, 0
            if hold and level is not None and item.recorded is not None:
                item.drop = max(0, item.recorded.quantity - level)

    # --- writing -------------------------------------------------------------------------------------------

    async def _push(
        self,
        pending: Sequence[_Item],
        location: str,
        marker: _Marker,
        extra: Mapping[str, int],
        *,
        hold: bool,
    ) -> tuple[int, int]:
        """Write ``pending``; decide stale ones again. Returns (quantities written, batches)."""
        written = batches = 0
        progress = (
            Progress("stock push", len(pending), shop=self.store.shop)
            if len(pending) >= PROGRESS_FROM
            else None
        )
        for round_ in range(MAX_STALE_ROUNDS):
            stale: list[_Item] = []
            for batch in _chunks(pending, MAX_INPUT_ITEMS):
                if self.shutdown.requested:
                    return written, batches
                done, sent, stale_here = await self._send(batch, location)
                written, batches = written + done, batches + sent
                stale.extend(stale_here)
                if progress is not None:
                    progress.advance(len(batch))
            if progress is not None:
                progress.finish()
                progress = None
            if not stale:
                return written, batches
            self.metrics.count(FLOW, "stale_retries", len(stale))
            if round_ == MAX_STALE_ROUNDS - 1:
                # no reading now that this cycle could not use: the next cycle reads them first
                self._reread.update(i.sku for i in stale)
                self.log.info("stock still changing in Shopify; the rest next cycle", skus=len(stale))
                return written, batches
            self.log.info("Shopify stock changed under the push: deciding again", skus=len(stale))
            # Shopify changed under us (most likely a sale): read first, then take the new
            # orders in, then decide again
            await self._read_shopify(stale, location, hold=hold)
            await self._catch_up()
            await self._decide(stale, await self._demand_since(marker), extra)
            pending = [i for i in stale if i.needs_write]
            if not pending:
                return written, batches
        return written, batches

    async def _send(self, batch: Sequence[_Item], location: str) -> tuple[int, int, list[_Item]]:
        """Store the batch with a new key, send it; return (written, calls, stale items)."""
        key = str(uuid.uuid4())
        async with self.store.transaction() as tx:
            await tx.execute(
                "INSERT INTO stock_batches (shop, batch_key, location_id, payload, created_at) VALUES (?, ?, ?, ?, ?)",
                (
                    self.store.shop,
                    key,
                    location,
                    json.dumps([i.payload() for i in batch]),
                    _iso(self.clock()),
                ),
            )
        return await self._deliver(key, location, batch)

    async def _deliver(self, key: str, location: str, batch: Sequence[_Item]) -> tuple[int, int, list[_Item]]:
        """Send a stored batch and commit its outcome; return (written, calls, stale items)."""
        quantities = [StockQuantity(i.item_id, location, i.goal, i.believed) for i in batch]
        result = await self.shopify.set_available(
            quantities, key=key, reference_uri=REFERENCE_URI.format(key=key), reason="correction"
        )
        if result.ok:
            confirmed = [(i, i.recorded_as(i.goal)) for i in batch]
            async with self.store.transaction() as tx:
                await self._record(tx, location, [(i.item_id, r) for i, r in confirmed])
                for item, _ in confirmed:
                    if item.sku in self._parked:
                        await tx.unpark(FLOW, item.sku)
                await tx.execute(
                    "DELETE FROM stock_batches WHERE shop = ? AND batch_key = ?", (self.store.shop, key)
                )
            for item, recorded in confirmed:
                item.mark_recorded(recorded)
            self.metrics.count(FLOW, "quantities_pushed", len(batch))
            self.metrics.count(FLOW, "batches")
            self.log.debug("stock batch confirmed", quantities=len(batch), key=key)
            return len(batch), 1, []
        # all or nothing: Shopify applied none of it. Stale items are decided again by the
        # caller, refused ones parked, the rest re-sent as a new batch with a new key.
        stale_ids = result.stale_item_ids
        by_item = result.errors_by_item()
        refused = [i for i in batch if i.item_id in by_item and i.item_id not in stale_ids]
        async with self.store.transaction() as tx:
            await tx.execute(
                "DELETE FROM stock_batches WHERE shop = ? AND batch_key = ?", (self.store.shop, key)
            )
            for item in refused:
                detail = "; ".join(f"{e.code}: {e.message}" for e in by_item[item.item_id])
                await tx.park(
                    FLOW, item.sku, "REJECTED", f"SKU {item.sku!r}: Shopify refused the quantity: {detail}"
                )
        for item in refused:
            self._refused.add(item.sku)
            self.metrics.count(FLOW, "parked_rejected")
            self.log.warning("Shopify refused a quantity; SKU parked", sku=item.sku)
        if result.general_errors:
            detail = "; ".join(f"{e.code}: {e.message}" for e in result.general_errors)
            raise FatalError(f"Shopify refused a stock batch as a whole: {detail}")
        stale = [i for i in batch if i.item_id in stale_ids]
        good = [i for i in batch if i.item_id not in by_item]
        if not good:
            return 0, 1, stale
        written, calls, more_stale = await self._send(good, location)
        return written, calls + 1, stale + more_stale

    async def _resend_pending(self, location: str) -> int:
        """Re-send, with their keys, batches a crash left between storing and confirming."""
        rows = await self.store.fetchall(
            "SELECT batch_key, location_id, payload FROM stock_batches WHERE shop = ? ORDER BY created_at, batch_key",
            (self.store.shop,),
        )
        if rows:
            self._parked = {p.key for p in await self.store.parked(FLOW)}
        written = 0
        for key, batch_location, payload in rows:
            if batch_location != location:
                # SHOPIFY_LOCATION_ID changed since: never write to a location no longer configured
                async with self.store.transaction() as tx:
                    await tx.execute(
                        "DELETE FROM stock_batches WHERE shop = ? AND batch_key = ?", (self.store.shop, key)
                    )
                self.log.warning(
                    "dropped a stock batch for a location no longer configured", location=batch_location
                )
                continue
            batch = [_Item.from_payload(raw) for raw in json.loads(payload)]
            self.log.info(
                "re-sending a stock batch left by an interrupted push", quantities=len(batch), key=key
            )
            done, _calls, stale = await self._deliver(str(key), location, batch)
            written += done
            if stale:
                # Shopify changed since the batch was stored: this cycle reads and decides
                # these SKUs again instead of trusting the ledger's quantity
                self._reread.update(i.sku for i in stale)
                self.log.info("re-sent stock batch was stale: deciding again", skus=len(stale))
        return written
