"""Stock Rackbeat → Shopify (the guide's S10 and S12): never oversell, spend almost no API budget.

One cycle, in this order (the order is what makes it safe):

1. **Leftover batch.** A batch a crash left between "stored" and "confirmed" is re-sent
   first, with its stored idempotency key (see *Crash safety* below).
2. **Marker.** The order ledger's high-water mark (its largest ``rowid``), then the
   unreserved demand ``D0`` — both before Rackbeat is read (with several shops, the other
   shops' orders are caught up first: see *Several shops on one account*).
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
4. **Candidates.** Per SKU on exactly one Shopify variant, the decision
   (:func:`daemon.stock_decision.decide`, pure) with ``D0``. A SKU
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
   ledger), then decide again on a new snapshot with the readings and the effective demand below.
7. **Push** up to 250 quantities per ``inventorySetQuantities``, each with
   ``changeFromQuantity`` = the Shopify quantity the decision was based on. A stale one
   (Shopify changed meanwhile: a sale) is read again, the orders caught up again, and it
   is decided again — at most :data:`MAX_STALE_ROUNDS` rounds a cycle; what is still stale
   after the last round is read first on the next cycle.
8. **Commit** what was confirmed or found as decided to the stock ledger as it happens, and
   the cycle's memory (below) at its end.

Memory: the scan is walked with the SKU index and the stock ledger read from SQLite a chunk
of SKUs at a time, each SKU decided as it comes and kept only if it goes further, and
steps 5–8 run in rounds of :data:`CANDIDATES_PER_ROUND` candidates (a first sync of 50,000
SKUs is never held whole). Each round keeps the argument below: its readings are taken
before its catch-up and it decides on the demand after it, with the cycle's marker and
scan; a round that read nothing decides on quantities confirmed before the first round's
catch-up, as a single round would, and makes none of its own.

No oversell
-----------
For SKU ``s``, written to one Shopify location::

    target = floor(F − E)     0 instead of a negative value unless SYNC_ALLOW_NEGATIVE_STOCK
    F      = Rackbeat's available_quantity (stock_quantity with SYNC_STOCK_FIGURE=in_stock),
             over all locations or summed over S10's, as scanned
    E      = max(D_now[s], D0[s] + N[s])
    sent   = target − H, not below 0 for that reason;  changeFromQuantity = B

``D_now`` is the unreserved demand after the latest catch-up (Shopify orders not imported
yet or imported as drafts: :meth:`daemon.demand.OrderDemand.unreserved`, the orders
flow's view), ``D0`` the same at the marker, and ``N`` the demand of order-ledger
rows created after the marker. An order Rackbeat starts to reserve after the scan (the
catch-up, or the orders flow running beside this one, books it) is then in neither
``F`` nor ``D_now``; it is in ``D0`` if the ledger had it at the marker, else in ``N``.
An order reserved before the scan may be counted twice: that undersells for one cycle
and is corrected on the next; it never oversells.

``B`` (believed) is the quantity last confirmed (the stock ledger) or one read before the
catch-up. For a SKU never written, the reading may be the one the SKU index's bulk query
took (:meth:`daemon.index.SkuIndex.take_levels`): that too was read before the catch-up,
and every sale since makes the compare-and-swap fail, so it is used once, like any
reading. Every Shopify sale after that moment makes the compare-and-swap fail, and
every sale before it is in the order ledger once the catch-up is done — except one that
Shopify's search index does not list yet (it lags by seconds, at times minutes). ``H``
(hidden) covers those: the units held from earlier cycles plus how far a fresh reading
fell below the quantity last confirmed, less the units of orders that reached the order
ledger since that decision (its largest rowid is stored with each ledger row). They are
held back and stay held, cycle after cycle, until orders for them reach the ledger (an
order then explains them once: the quantity already reflects it, nothing is written) or
:data:`HOLD_LIMIT` passes since units last joined the hold (a hold's start moves with its
newest units: their order may lag as long as the first ones') — then the drop is taken for
a hand-made change in Shopify and undone. A search lag longer than the poll interval is covered up to that limit.

Only orders up to the rowid read before the demand explain units: the demand counts
those, and the row records that rowid (an order after it would explain a second drop later).

The other way round, a sale whose order is in the ledger must not be held as a hidden one
(underselling for :data:`HOLD_LIMIT`). So a ledger row's rowid moves on only with a
quantity Shopify confirmed or showed: a row settled with neither a write nor a reading
keeps the rowid it had. And where more units of orders reached the ledger since the row
than ``B`` shows sold (held, or a reading's drop) — an order sold after the reading, or
after the quantity last confirmed while the target comes out at ``B`` all the same (a
reservation left the demand as the new order joined it) — ``B`` is written even if
unchanged: the compare-and-swap tells, and a stale one is read and decided again in the
same cycle.

Several shops on one account
----------------------------
One process serves every shop of a Rackbeat account, each shop with its own stock flow
(its own S10, figure, location, ledger and holds). ``D`` is then the unreserved demand of
the orders of **every** shop whose S10 locations meet this shop's (``all`` meets every
list; disjoint lists do not lower each other's figures), and the catch-up asks for an
orders cycle of each of them — this shop's must succeed; another shop's that is failing
(its token revoked) is logged (``stock.orders_behind``) and its orders already in the
ledger still count. Another shop's sale shows in this shop only through the order
ledger (this shop's Shopify does not see it), so the other shops' orders are also caught
up before the marker: a sale Shopify's search showed when the cycle began is off this
shop's figure when the cycle ends, whether or not anything else changed. One Rackbeat
scan serves every shop's cycle (:class:`daemon.shared.StockReads`): a cycle only joins a
scan that started after its marker — after ``D0`` was read, so an order booked before
that read is in the scan — and the argument above holds for each shop as it does for one.

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

Every ``SYNC_RECONCILE_SECONDS`` (and on the first cycle ever, or after S10 or
``SYNC_STOCK_FIGURE`` changed) Shopify's levels of every matched SKU are read, and with
S10 = a list every product per location, so hand-made drift in Shopify is corrected too
(drift downwards after :data:`HOLD_LIMIT`: it looks like a hidden sale at first).

Memory between cycles
---------------------
Whatever a cycle leaves for the next one is in the state DB, so that a restart changes
nothing: the units held back and since when (in each stock ledger row), the SKUs to read
first because their write went stale and the S10 pass's products still to read
(``stock_pending``), when the last full reconcile began and for which settings, and the
order ledger's rowid the last cycle looked at (``stock_state``). A restart neither
forgets a hold nor starts a full reconcile early. Only caches stay in RAM: the Shopify
location (asked again after a start), the Rackbeat numbers and the S15 product of the
previous scan (after a start the SKU index's unmarked rows say which numbers are new, and
orders parked for the shipping product get one early retry), the Rackbeat-only summary
last stored (stored once more), and when the lag gauge began to grow (a metric of this
process).

State invariant (:mod:`daemon.store`): a cursor never passes a record whose outcome is not
committed, and applying a record again is harmless.
Here: the stock ledger records only quantities Shopify confirmed, a batch is stored before
it is sent and re-sent with its key, and a compare-and-swap makes a repeat harmless.
"""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from collections.abc import AsyncGenerator, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import anyio
import structlog

from daemon.config import Settings, StockFigure
from daemon.demand import OrderDemand
from daemon.errors import FatalError, NotFoundError, WaitingError
from daemon.index import IndexEntry, SkuIndex
from daemon.metrics import Metrics
from daemon.progress import Progress
from daemon.rackbeat import RackbeatClient, StockTotals, available_at_locations
from daemon.shared import StockReads
from daemon.shopify import ShopifyClient, StockQuantity
from daemon.shopify_documents import MAX_INPUT_ITEMS
from daemon.shutdown import Shutdown, note_cycle, note_progress
from daemon.stock_decision import (
    HOLD_LIMIT,
    Cycle,
    Decision,
    Demand,
    Reading,
    Recorded,
    Snapshot,
    base_watermark,
    decide,
    decimal_or_none,
    effective_demand,
    looks_for_sales,
    target_quantity,
)
from daemon.store import Store, Transaction
from daemon.storm import ApiProblem, StormWatch
from daemon.times import iso

__all__ = [
    "FLOW",
    "HOLD_LIMIT",
    "MAX_STALE_ROUNDS",
    "RACKBEAT_ONLY",
    "Recorded",
    "StockDifference",
    "StockFlow",
    "effective_demand",
    "read_rackbeat_only",
    "target_quantity",
]

if TYPE_CHECKING:
    from daemon.runner import CycleRequests

log = structlog.get_logger("daemon.flows.stock")

FLOW = "stock"
#: rounds of "stale → read → catch up → decide again" per cycle before leaving the rest to the next
MAX_STALE_ROUNDS = 3
#: SKUs without a Rackbeat mark read into memory at most (more: a first sync marks every
#: scanned number in SQL instead)
UNMARKED_IN_MEMORY = 5_000
#: SKUs whose index rows and ledger rows are read at a time
LOOKUP_CHUNK = 500
#: candidates taken through a round of reading, deciding again and pushing at a time: a
#: first sync or full reconcile of a large catalogue goes in rounds, never held whole
CANDIDATES_PER_ROUND = 2_000
#: Shopify's inventory history names the daemon as the source of each change
REFERENCE_URI = "gid://rackbeat-shopify/StockSync/{key}"
#: the ``cursors`` row (flow column) where the scan leaves the Rackbeat numbers missing in
#: Shopify, as JSON ``{"count": n, "examples": [...]}``, for ``status``
RACKBEAT_ONLY = "stock.rackbeat_only"
#: how many of them are kept by name
RACKBEAT_ONLY_EXAMPLES = 20
#: pushes at least this large report progress (the first sync of a large shop)
PROGRESS_FROM = 1000
#: With S10 = a list, the share of the Rackbeat request budget one cycle may spend on
#: re-reading products per location for the full reconcile (one or two requests each, and
#: no bulk endpoint): the rest of the catalogue is re-read on the cycles after it, so a
#: large catalogue never starves the orders and products flows of requests.
REFRESH_BUDGET_SHARE = 0.25
#: the most likely cause when quantities to write are never confirmed (health's stall check)
STALL_CAUSE = (
    "Shopify does not confirm the quantities written (each write goes stale or is refused); "
    "see the stock.* log lines and `rackbeat-shopify parked`"
)
#: products the SKU index reads in full at most in one stock cycle before the push goes on
#: (about 25 requests; a running refresh of the products flow is not waited for at all)
INDEX_REFRESH_BUDGET = 200
#: ``stock_pending.pending``: read Shopify first (the SKU's write went stale)
READ_FIRST = "read"
#: ``stock_pending.pending``: the full reconcile's pass has still to read it per location
REFRESH = "refresh"


def _figure(stock: Decimal | None, available: Decimal | None, which: StockFigure) -> Decimal | None:
    return stock if which is StockFigure.IN_STOCK else available


def _chunks(items: Sequence[str], size: int) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


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
    #: Shopify confirmed the target written in this run (never in a dry run; not when the
    #: write went stale every round, was refused or interrupted, or units were held back)
    fixed: bool = False


@dataclass(frozen=True, slots=True)
class _Scanned:
    """One SKU found in both systems, on one Shopify variant, with a Rackbeat figure."""

    sku: str
    item_id: str
    figure: Decimal
    recorded: Recorded | None
    #: Rackbeat's "stock/available" totals and ``updated_at`` ("" when not given)
    totals: str
    updated: str
    #: with S10 = a list, Rackbeat's figure per listed location when read this cycle
    locations: Mapping[str, Decimal]
    #: read per location for the full reconcile's pass this cycle
    refreshed: bool = False


@dataclass(frozen=True, slots=True)
class _Marker:
    """The order ledger before Rackbeat was read: its largest rowid and the unreserved demand."""

    watermark: int
    demand: Mapping[str, int]
    #: when both had been read (monotonic): Rackbeat must be read after it
    at: float


@dataclass(frozen=True, slots=True)
class _Orders:
    """The order ledger as one decision sees it: the demand terms and the largest rowid
    read before them (no later order is part of that demand)."""

    watermark: int
    now: Mapping[str, int]
    at_marker: Mapping[str, int]
    since_marker: Mapping[str, int] = field(default_factory=dict)

    def terms(self, sku: str, extra: Mapping[str, int]) -> Demand:
        """``sku``'s demand terms, with ``extra`` units of orders the ledger does not hold."""
        return Demand(
            now=self.now.get(sku, 0),
            at_marker=self.at_marker.get(sku, 0),
            since_marker=self.since_marker.get(sku, 0),
            extra=extra.get(sku, 0),
        )


@dataclass(frozen=True, slots=True)
class _Entry:
    """One quantity of a stored batch: what is written, on what, and the ledger row to
    record when Shopify confirms it (decided when the batch was stored, not when re-sent)."""

    sku: str
    item_id: str
    goal: int
    believed: int | None
    row: Recorded

    def payload(self) -> list[object]:
        """What ``stock_batches.payload`` keeps of it (the layout older releases wrote too)."""
        r = self.row
        return [self.sku, self.item_id, self.goal, self.believed, r.totals, r.figure, r.demand, r.blob()]

    @classmethod
    def from_payload(cls, raw: Sequence[object]) -> _Entry:
        """The entry of a stored batch."""
        sku, item_id, goal, believed, totals, figure, demand = raw[:7]
        quantity = int(str(goal))
        blob = str(raw[7]) if len(raw) > 7 else None  # batches stored before holds were kept
        row = (
            Recorded.from_row(quantity, blob)
            if blob
            else Recorded(quantity, str(totals), str(figure), int(str(demand)))
        )
        return cls(str(sku), str(item_id), quantity, None if believed is None else int(str(believed)), row)


@dataclass(frozen=True)
class _Delivery:
    """What Shopify did with one batch (and the batches of its good rest)."""

    confirmed: Sequence[_Entry] = ()
    stale: Sequence[_Entry] = ()
    refused: Sequence[_Entry] = ()
    calls: int = 0


@dataclass(frozen=True)
class _Memory:
    """What the previous cycles left for this one (``stock_state``, ``stock_pending``)."""

    reconciled_at: datetime | None = None
    #: the settings the last full reconcile was made for (:meth:`StockFlow._fingerprint`)
    reconciled_for: str = ""
    #: the order ledger's rowid at the previous cycle's marker (None: no cycle yet)
    seen_watermark: int | None = None
    #: SKUs to read first (their write went stale)
    reread: frozenset[str] = frozenset()
    #: S10 = a list: products the running full reconcile has still to re-read per location
    refresh: frozenset[str] = frozenset()


@dataclass
class _Outcome:
    """What one cycle did."""

    written: int = 0
    batches: int = 0
    #: SKUs decided to be written (their target differs from what Shopify last confirmed)
    to_write: int = 0
    #: the order ledger's rowid at the cycle's marker
    watermark: int | None = None
    #: SKUs still not as decided (stale rounds exhausted, refused, held back, shutdown)
    outstanding: int = 0
    differences: list[StockDifference] = field(default_factory=list)
    #: the full reconcile's pass after this cycle (None: unchanged)
    refresh: frozenset[str] | None = None
    #: the per-location reads: those that failed (record problems, or an API problem when
    #: most failed the same way), and those parked as unread that read now
    reads: StormWatch = field(default_factory=StormWatch)


class _RackbeatOnly:
    """Scanned Rackbeat numbers no Shopify variant has: how many, and the first few."""

    def __init__(self) -> None:
        self.count = 0
        self._first: list[str] = []

    def add(self, number: str) -> None:
        self.count += 1
        self._first.append(number)
        if len(self._first) > 4 * RACKBEAT_ONLY_EXAMPLES:
            self._first = sorted(self._first)[:RACKBEAT_ONLY_EXAMPLES]

    def examples(self) -> list[str]:
        return sorted(self._first)[:RACKBEAT_ONLY_EXAMPLES]


@dataclass
class _Tail:
    """One cycle's rounds (:meth:`StockFlow._round`): what they share and what they did."""

    location: str
    marker: _Marker
    extra: Mapping[str, int]
    dry_run: bool
    #: whether the differences found are wanted (the reconcile command's report)
    report: bool
    #: the orders were caught up in an earlier round
    caught_up: bool = False
    #: SKUs scanned and decided, candidates, read in Shopify, to write
    count: int = 0
    chosen: int = 0
    read: int = 0
    to_write: int = 0
    written: int = 0
    batches: int = 0
    outstanding: int = 0
    held: list[str] = field(default_factory=list)
    differences: list[StockDifference] = field(default_factory=list)
    #: with S10 = a list, Rackbeat's figures per listed location read this cycle, by SKU
    locations: dict[str, Mapping[str, Decimal]] = field(default_factory=dict)
    #: products read per location for the full reconcile's pass, and those of them whose
    #: decision is not in the ledger yet (read again)
    refreshed: set[str] = field(default_factory=set)
    unsettled: set[str] = field(default_factory=set)


def _single_items(rows: Mapping[str, Sequence[IndexEntry]]) -> dict[str, str | None]:
    """SKU → inventory item of the SKUs on exactly one Shopify variant (``by_sku`` rows)."""
    return {sku: r[0].inventory_item_id for sku, r in rows.items() if len(r) == 1}


def _sort(
    snapshot: Snapshot,
    candidates: list[tuple[Snapshot, Decision]],
    restamps: list[tuple[Snapshot, Recorded]],
) -> None:
    """Decide ``snapshot`` and keep it only if it goes further (or needs a restamp)."""
    decision = decide(snapshot)
    if decision.candidate:
        candidates.append((snapshot, decision))
    elif decision.restamp is not None:
        restamps.append((snapshot, decision.restamp))


# --- the flow ----------------------------------------------------------------------------------------


async def _location_figures(
    reads: StockReads, since: float, sku: str, wanted: Sequence[str], which: StockFigure, *, watch: StormWatch
) -> dict[str, Decimal] | None:
    """Rackbeat's figure (``which``) of ``sku`` at each of the ``wanted`` locations (a location
    without an entry holds none); None when Rackbeat does not say (unknown is not zero).

    A 404 leaves this product's figure unknown; ``watch`` counts it, so that a cycle where
    most products get one fails as an API problem (:mod:`daemon.storm`)."""
    watch.attempt()
    try:
        stocks = {s.location: s for s in await reads.product_locations(since, sku)}
    except NotFoundError:
        watch.failed("/products/{n}/locations", "HTTP 404", sku)
        return None
    values: Sequence[Decimal | None] | None
    if which is StockFigure.IN_STOCK:
        values = [stocks[n].stock_quantity if n in stocks else Decimal(0) for n in wanted]
    else:
        values = available_at_locations(stocks, wanted)
        if values is None:
            # the listing does not carry the figure per location: ask the items endpoint
            try:
                available = await reads.available_per_location(since, sku)
            except NotFoundError:
                watch.failed("/items/{n}/locations/available", "HTTP 404", sku)
                return None
            values = [available.get(n, Decimal(0)) for n in wanted]
    if any(v is None for v in values):
        return None
    watch.succeeded(sku)
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
        reads: StockReads | None = None,
        catch_up: Sequence[str] = ("orders",),
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
        #: Rackbeat's stock, shared with the other shops' stock flows
        self.reads = reads or StockReads(rackbeat)
        #: the orders flows caught up before a push: this shop's first (it must succeed), then
        #: those of the other shops whose orders draw on the same locations
        self.catch_up = tuple(catch_up)
        self.clock = clock
        self.monotonic = monotonic
        self.log = log.bind(flow=FLOW)
        # caches only (see "Memory between cycles" in the module docstring); the rest is in the DB
        #: SKUs parked orders wait for that the previous scan found (None: no scan yet)
        self._present: set[str] | None = None
        self._waiting_since: float | None = None
        #: the S15 shipping product was in the latest scan, and in the one remembered before it
        self._shipping_in_scan = False
        self._shipping_seen = False
        #: the Rackbeat-only summary last stored (written again only when it changes)
        self._rackbeat_only: str | None = None
        self._lock = anyio.Lock()
        self._lag = metrics.stock_lag.labels(shop=metrics.shop)

    # --- entry points ------------------------------------------------------------------------------

    async def run_once(self) -> int:
        """One cycle (see the module docstring); returns the quantities Shopify confirmed."""
        if not self.settings.sync_stock:
            return 0
        async with self._lock:
            started, now = self.monotonic(), self.clock()
            # a first build by bulk query starts now and runs while Rackbeat is scanned;
            # the cycle waits for the index only after the scan
            await self.index.prepare()
            location = await self.location()
            resent = await self._resend_pending(location)
            memory = await self._memory()
            full = self._reconcile_due(memory, now)
            outcome = await self._cycle(location, memory, full=full, hold=True, refresh_index=True)
            self._note_lag(started, outcome)
            async with self.store.transaction() as tx:
                await tx.set_cursor(FLOW, iso(self.clock()))
                await self._remember(tx, memory, outcome, reconciled_at=now if full else None)
            # the runner's flow.cycle line carries them
            note_cycle(
                pushed=outcome.written + resent,
                batches=outcome.batches,
                waiting=outcome.outstanding,
                full=full,
            )
            confirmed = outcome.written + resent
            note_progress(pending=outcome.to_write + resent, confirmed=confirmed, cause=STALL_CAUSE)
            if (storm := outcome.reads.storm()) is not None:
                # an API problem: the products keep their state (nothing parked, nothing
                # marked) and go through on the first cycle after it is fixed
                raise ApiProblem(storm)
            await self._park_unread(outcome.reads)
            return confirmed

    async def reconcile(
        self, *, dry_run: bool, extra_demand: Mapping[str, int] | None = None
    ) -> list[StockDifference]:
        """Read both sides in full (every Rackbeat total, Shopify's level of every SKU in the
        index as it stands: the reconcile command rebuilds the index first); return every
        SKU whose Shopify quantity differs from the target, and write the targets unless
        ``dry_run`` (:attr:`StockDifference.fixed`: Shopify confirmed the write).

        ``extra_demand`` (SKU → units) counts orders the ledger does not have yet, so that a
        dry run, which imports nothing, decides as the daemon would. A dry run writes to
        neither API nor to the state DB.
        """
        async with self._lock:
            location = await self.location()
            if not dry_run:
                await self._resend_pending(location)
            memory = await self._memory()
            now = self.clock()
            outcome = await self._cycle(
                location,
                memory,
                full=True,
                hold=False,
                dry_run=dry_run,
                extra=dict(extra_demand or {}),
                report=True,
            )
            if not dry_run:
                async with self.store.transaction() as tx:
                    await self._remember(tx, memory, replace(outcome, watermark=None), reconciled_at=now)
            return outcome.differences

    async def location(self) -> str:
        """The Shopify location stock is written to (:meth:`ShopifyClient.stock_location`)."""
        return await self.shopify.stock_location(self.settings.shopify_location_id)

    def _fingerprint(self) -> str:
        """The settings a full reconcile reads for: when they change, the ledger's figures
        (per-location sums above all) were decided for other settings."""
        locations = self.settings.location_numbers
        return json.dumps(
            {
                "locations": None if locations is None else list(locations),
                "figure": str(self.settings.sync_stock_figure),
            }
        )

    def _reconcile_due(self, memory: _Memory, now: datetime) -> bool:
        if memory.reconciled_at is None or memory.reconciled_for != self._fingerprint():
            return True
        elapsed = (now - memory.reconciled_at).total_seconds()
        # a wall clock set back is no reason to wait longer than the interval
        return elapsed < 0 or elapsed >= self.settings.sync_reconcile_seconds

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

    # --- memory between cycles ----------------------------------------------------------------------

    async def _memory(self) -> _Memory:
        store = self.store
        row = await store.fetchone(
            "SELECT reconciled_at, reconciled_for, seen_watermark FROM stock_state WHERE shop = ?",
            (store.shop,),
        )
        pending = await store.fetchall("SELECT pending, sku FROM stock_pending WHERE shop = ?", (store.shop,))
        reconciled_at = None
        if row is not None and row[0]:
            with contextlib.suppress(ValueError):
                reconciled_at = datetime.fromisoformat(str(row[0]).replace("Z", "+00:00"))
        return _Memory(
            reconciled_at=reconciled_at,
            reconciled_for=str(row[1] or "") if row is not None else "",
            seen_watermark=int(row[2]) if row is not None and row[2] is not None else None,
            reread=frozenset(str(sku) for kind, sku in pending if kind == READ_FIRST),
            refresh=frozenset(str(sku) for kind, sku in pending if kind == REFRESH),
        )

    async def _remember(
        self, tx: Transaction, memory: _Memory, outcome: _Outcome, *, reconciled_at: datetime | None
    ) -> None:
        """Commit what the next cycle needs of this one (``stock_state``, the pass's progress)."""
        shop = self.store.shop
        await tx.execute("INSERT INTO stock_state (shop) VALUES (?) ON CONFLICT (shop) DO NOTHING", (shop,))
        if outcome.watermark is not None:
            await tx.execute(
                "UPDATE stock_state SET seen_watermark = ? WHERE shop = ?", (outcome.watermark, shop)
            )
        if reconciled_at is not None:
            await tx.execute(
                "UPDATE stock_state SET reconciled_at = ?, reconciled_for = ? WHERE shop = ?",
                (reconciled_at.astimezone(UTC).isoformat(), self._fingerprint(), shop),
            )
        if outcome.refresh is not None:
            await tx.executemany(
                "DELETE FROM stock_pending WHERE shop = ? AND pending = ? AND sku = ?",
                [(shop, REFRESH, sku) for sku in memory.refresh - outcome.refresh],
            )
            await tx.executemany(
                "INSERT INTO stock_pending (shop, pending, sku) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
                [(shop, REFRESH, sku) for sku in outcome.refresh - memory.refresh],
            )

    async def _reread_later(self, tx: Transaction, skus: Iterable[str]) -> None:
        await tx.executemany(
            "INSERT INTO stock_pending (shop, pending, sku) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
            [(self.store.shop, READ_FIRST, sku) for sku in skus],
        )

    async def _reread_done(self, tx: Transaction, skus: Iterable[str]) -> None:
        await tx.executemany(
            "DELETE FROM stock_pending WHERE shop = ? AND pending = ? AND sku = ?",
            [(self.store.shop, READ_FIRST, sku) for sku in skus],
        )

    # --- one pass: read, decide, write, commit -----------------------------------------------------

    async def _cycle(
        self,
        location: str,
        memory: _Memory,
        *,
        full: bool,
        hold: bool,
        dry_run: bool = False,
        extra: Mapping[str, int] | None = None,
        refresh_index: bool = False,
        report: bool = False,
    ) -> _Outcome:
        extra = extra or {}
        if not dry_run:
            await self._catch_up_others()
        marker = await self._marker()
        totals = await self._scan(marker.at)
        if refresh_index:
            # bounded: a long refresh (a bulk edit) never holds up the push; the products
            # flow, or the next cycles, read the rest, and new SKUs join when found
            await self.index.current(budget=INDEX_REFRESH_BUDGET)
        if not dry_run:
            await self._remember_numbers(totals)
            await self._park_duplicates(totals)
        blocked, unread = await self._blocked()
        budget, refresh = self._refresh_budget(totals, memory, full=full, whole=not hold)
        pass_left = set(refresh)
        cycle = Cycle(
            now=self.clock(),
            allow_negative=self.settings.sync_allow_negative_stock,
            count_drops=hold,
            full=full,
            listed=self.settings.location_numbers is not None,
        )
        tail = _Tail(location, marker, extra, dry_run=dry_run, report=report)

        # read: what the ledger and the marker say; decide who goes further, SKU by SKU:
        # only what goes further is kept, and it goes on in rounds of CANDIDATES_PER_ROUND
        # (a first sync of a large catalogue is never held whole in memory)
        sold = await self._sold_since(memory.seen_watermark) if not full else set()
        at_marker = _Orders(marker.watermark, marker.demand, marker.demand)
        looking: list[Snapshot] = []  # their orders since the marker matter: decided together
        candidates: list[tuple[Snapshot, Decision]] = []
        restamps: list[tuple[Snapshot, Recorded]] = []
        only = _RackbeatOnly()
        watch = StormWatch(suspects=frozenset(unread))
        items = self._items(
            totals,
            location,
            blocked,
            only,
            watch,
            budget=budget,
            pass_left=pass_left,
            since=marker.at,
        )
        async with contextlib.aclosing(items):
            async for item in items:
                tail.count += 1
                if item.locations:
                    tail.locations[item.sku] = item.locations
                if item.refreshed:
                    tail.refreshed.add(item.sku)
                snapshot = self._snapshot(
                    item, at_marker, cycle, extra, sold=item.sku in sold, reread=item.sku in memory.reread
                )
                if looks_for_sales(snapshot):
                    looking.append(snapshot)
                    continue
                _sort(snapshot, candidates, restamps)
                if len(candidates) >= CANDIDATES_PER_ROUND:
                    await self._round(tail, candidates, restamps)
        for snapshot in await self._with_arrivals(looking):
            _sort(snapshot, candidates, restamps)
        del looking
        if not dry_run:
            await self._note_rackbeat_only(only)
            singles = _single_items(await self.index.by_sku(sorted(memory.reread)))
            gone = {sku for sku in memory.reread if sku not in totals or sku not in singles}
            if gone:  # no longer a single item in both systems: nothing to read first
                async with self.store.transaction() as tx:
                    await self._reread_done(tx, gone)
        await self._round(tail, candidates, restamps)
        if not dry_run and tail.chosen:
            self.log.debug(
                "stock.decided",
                skus=tail.count,
                candidates=tail.chosen,
                read=tail.read,
                to_write=tail.to_write,
                full=full,
            )
        if tail.held:
            self.metrics.count(FLOW, "held_back", len(tail.held))
            self.log.info("stock.held_back", skus=tail.held[:20], count=len(tail.held))
        if budget is not None:
            # a product read for the pass whose decision is not in the ledger yet is read again
            pass_left |= tail.unsettled
        return _Outcome(
            written=tail.written,
            batches=tail.batches,
            to_write=tail.to_write,
            watermark=marker.watermark,
            outstanding=tail.outstanding,
            differences=tail.differences,
            refresh=None if budget is None else frozenset(pass_left),
            reads=watch,
        )

    async def _round(
        self,
        tail: _Tail,
        candidates: list[tuple[Snapshot, Decision]],
        restamps: list[tuple[Snapshot, Recorded]],
    ) -> None:
        """Take one round of ``candidates`` as far as the cycle goes (read Shopify, catch the
        orders up, decide again, push, settle), adding to ``tail``; empties both lists.

        Each round is the module docstring's steps 5–8 with the cycle's marker and scan:
        its readings are taken before its catch-up, and it decides on the demand after it."""
        if not tail.dry_run:
            await self._restamp(restamps, tail.location)
        restamps.clear()
        if not candidates:
            return
        location, marker, extra = tail.location, tail.marker, tail.extra
        # read before catching up: every sale up to the reading is then in the ledger
        readings = await self._read_shopify(
            [s for s, d in candidates if d.read_first], location, dry_run=tail.dry_run
        )
        if not tail.dry_run and (readings or not tail.caught_up):
            # the orders first, then decide with them: a Shopify sale that is not in the
            # ledger yet would otherwise look like stock to sell. A later round that read
            # nothing decides on quantities confirmed before the first round's catch-up,
            # as one round would: it needs no catch-up of its own
            await self._catch_up()
            tail.caught_up = True
        tail.chosen += len(candidates)
        tail.read += len(readings)
        plans = await self._decide_again([s for s, _ in candidates], readings, marker, extra)
        candidates.clear()
        del readings
        found = [(sku, d) for sku, (_, d) in plans.items() if tail.report and d.believed != d.target]

        def differences(fixed: set[str]) -> list[StockDifference]:
            return [
                StockDifference(
                    sku, location, d.believed, d.target, tail.locations.get(sku, {}), sku in fixed
                )
                for sku, d in found
            ]

        if tail.dry_run:
            tail.differences.extend(differences(set()))
            return
        tail.to_write += sum(1 for _, d in plans.values() if d.write)
        # write, commit
        confirmed: dict[str, Decision] = {}
        refused: set[str] = set()
        written, batches = await self._push(
            plans, location, marker, extra, confirmed=confirmed, refused=refused
        )
        tail.written += written
        tail.batches += batches
        settled = {sku: d for sku, (_, d) in plans.items() if sku not in confirmed and not d.write}
        await self._settle(plans, settled, location)
        done = confirmed | settled
        # still to do: not confirmed (stale rounds used up, shutdown), or held back
        tail.held.extend(sku for sku, d in done.items() if d.hidden)
        tail.outstanding += sum(
            1 for sku in plans if (sku not in done or done[sku].hidden) and sku not in refused
        )
        tail.unsettled |= {sku for sku in tail.refreshed if sku in plans and sku not in done}
        tail.differences.extend(differences({sku for sku, d in confirmed.items() if d.goal == d.target}))

    def _snapshot(
        self,
        item: _Scanned,
        orders: _Orders,
        cycle: Cycle,
        extra: Mapping[str, int],
        *,
        sold: bool = False,
        reread: bool = False,
    ) -> Snapshot:
        return Snapshot(
            sku=item.sku,
            item_id=item.item_id,
            figure=item.figure,
            recorded=item.recorded,
            demand=orders.terms(item.sku, extra),
            watermark=orders.watermark,
            cycle=cycle,
            totals=item.totals,
            updated=item.updated,
            sold=sold,
            reread=reread,
        )

    async def _decide_again(
        self,
        snapshots: Sequence[Snapshot],
        readings: Mapping[str, Reading],
        marker: _Marker,
        extra: Mapping[str, int],
    ) -> dict[str, tuple[Snapshot, Decision]]:
        """New snapshots of ``snapshots`` with the readings taken (by SKU) and the demand
        after the latest catch-up, and their decisions."""
        orders = await self._demand_since(marker)
        fresh = await self._with_arrivals(
            [
                replace(
                    s,
                    demand=orders.terms(s.sku, extra),
                    watermark=orders.watermark,
                    reading=readings.get(s.sku, s.reading),
                    arrivals=(),
                )
                for s in snapshots
            ]
        )
        return {s.sku: (s, decide(s)) for s in fresh}

    async def _with_arrivals(self, snapshots: list[Snapshot]) -> list[Snapshot]:
        """``snapshots`` with the order-ledger rows that may explain held or dropped units, or
        have been sold after a reading (:func:`daemon.stock_decision.looks_for_sales`)."""
        looking = [s for s in snapshots if looks_for_sales(s)]
        if not looking:
            return snapshots
        arrivals: dict[str, list[tuple[int, int]]] = {}
        for rowid, sold in await self.demand.after(min(base_watermark(s) for s in looking), own=True):
            for sku, units in sold.items():
                arrivals.setdefault(sku, []).append((rowid, units))
        return [replace(s, arrivals=tuple(arrivals.get(s.sku, ()))) for s in snapshots]

    # --- reading Rackbeat -----------------------------------------------------------------------------

    async def _marker(self) -> _Marker:
        # the watermark first: a row added between the two reads is then "new" (counted)
        watermark = await self.demand.watermark()
        demand = await self.demand.unreserved()
        # then the time the scan must begin after: an order booked before D0 was read is
        # not in D0, so Rackbeat's reservation of it must be in the scan (another shop's
        # cycle may have begun the scan this one joins while this one read the ledger)
        return _Marker(watermark, demand, self.monotonic())

    async def _sold_since(self, watermark: int | None) -> set[str]:
        """SKUs of orders that reached the ledger since the previous cycle's marker: Shopify
        sold them, so the quantity last confirmed there is out of date even where the
        Rackbeat figure and the demand look unchanged (a receipt can hide a reservation)."""
        if watermark is None:
            return set()
        return {sku for _, demand in await self.demand.after(watermark, own=True) for sku in demand}

    async def _demand_since(self, marker: _Marker) -> _Orders:
        """The demand terms now (module docstring), and the order ledger's largest rowid
        read just before them (no later order is part of that demand)."""
        watermark = await self.demand.watermark()
        now = await self.demand.unreserved()
        new: dict[str, int] = {}
        for _, demand in await self.demand.after(marker.watermark):
            for sku, units in demand.items():
                new[sku] = new.get(sku, 0) + units
        return _Orders(watermark, now, marker.demand, new)

    async def _scan(self, since: float) -> dict[str, StockTotals]:
        """Every Rackbeat product's totals by number (the S15 shipping product left out), from
        a scan that started after ``since`` (one scan serves every shop's cycle)."""
        totals: dict[str, StockTotals] = {}
        shipping_seen = False
        # the first scan of a large catalogue reports its progress (later ones are routine)
        progress = (
            Progress("Rackbeat stock scan", None, shop=self.store.shop) if self._present is None else None
        )
        pages = self.reads.totals(since, on_total=progress.expect if progress is not None else None)
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

    async def _remember_numbers(self, totals: Mapping[str, StockTotals]) -> None:
        """Mark the SKU index rows Rackbeat has (``status`` lists the others), and retry at
        once the orders parked because a SKU was unknown in Rackbeat when one appears (in
        this scan and not in the one before, or newly marked)."""
        unmarked = await self.index.unmarked(limit=UNMARKED_IN_MEMORY)
        waiting = {
            str(row[0])
            for row in await self.store.fetchall(
                "SELECT DISTINCT subject FROM parked WHERE shop = ? AND flow = 'orders' "
                "AND reason = 'UNKNOWN_SKU' AND subject IS NOT NULL",
                (self.store.shop,),
            )
        }
        # only the SKUs orders wait for are remembered between scans, not every number
        present = {sku for sku in waiting if sku in totals}
        to_mark: Iterable[str]
        if unmarked is None:  # most of the index (a first sync): every scanned number is marked
            to_mark, newly = totals, present
        else:
            to_mark = sorted(sku for sku in unmarked if sku in totals)
            newly = waiting.intersection(to_mark)
        new = newly if self._present is None else (present - self._present) | newly
        self._present = present
        if unmarked is None or to_mark:
            async with self.store.transaction() as tx:
                await self.index.set_rackbeat_numbers(tx, to_mark)
        if new:
            woken = await self.store.wake_parked("orders", "UNKNOWN_SKU", sorted(new))
            if woken:
                self.log.info("stock.orders_woken", reason="UNKNOWN_SKU", orders=woken)
        if self._shipping_in_scan and not self._shipping_seen:
            # orders parked because the S15 product was missing may go through now
            woken = await self.store.wake_reason("orders", "NO_SHIPPING_PRODUCT")
            if woken:
                self.log.info("stock.orders_woken", reason="NO_SHIPPING_PRODUCT", orders=woken)
        self._shipping_seen = self._shipping_in_scan

    async def _note_rackbeat_only(self, only: _RackbeatOnly) -> None:
        """Store how many scanned Rackbeat numbers no Shopify variant has, with a few of
        them, for ``status`` (a SKU on one side only is reported, not an error)."""
        summary = json.dumps({"count": only.count, "examples": only.examples()})
        if summary == self._rackbeat_only:
            return
        async with self.store.transaction() as tx:
            await tx.set_cursor(RACKBEAT_ONLY, summary)
        self._rackbeat_only = summary

    def _refresh_budget(
        self, totals: Mapping[str, StockTotals], memory: _Memory, *, full: bool, whole: bool
    ) -> tuple[int | None, frozenset[str]]:
        """How many products of the running full reconcile's pass to re-read per location
        this cycle whatever their totals say (S10 = a list; ``None``: every product), and
        the pass's products still to read.

        The reconcile command (``whole``) reads them all. The daemon's full reconcile starts
        a pass over every product (kept in ``stock_pending``), and each cycle spends at most
        :data:`REFRESH_BUDGET_SHARE` of a cycle's Rackbeat budget on it, until the pass is
        done: a move between locations leaves the totals as they were. New settings (S10,
        the figure) start a new pass at once.
        """
        if whole:
            return None, memory.refresh
        pending = memory.refresh
        renewed = not pending or memory.reconciled_for != self._fingerprint()
        if self.settings.location_numbers is None:
            pending = frozenset()  # S10 = all: nothing to read per location
        elif full and renewed:
            pending = frozenset(totals)
        s = self.settings
        # the shops of the account share the budget, and so this share of it
        share = REFRESH_BUDGET_SHARE / max(1, self.reads.shops)
        budget = max(1, int(s.rackbeat_requests_per_minute * s.sync_poll_seconds / 60 * share))
        return budget, pending

    async def _items(
        self,
        totals: Mapping[str, StockTotals],
        location: str,
        blocked: set[str],
        only: _RackbeatOnly,
        watch: StormWatch,
        *,
        budget: int | None,
        pass_left: set[str],
        since: float,
    ) -> AsyncGenerator[_Scanned]:
        """One item per SKU found in both systems, on one Shopify variant, with a figure.

        With S10 = a list, the per-location sum stored in the ledger is reused while the
        product's totals and ``updated_at`` are as recorded, except for ``budget`` products
        of the full reconcile's pass (``None``: every product; see :meth:`_refresh_budget`).
        ``pass_left`` loses the products read per location, and those that are no items."""
        wanted = self.settings.location_numbers
        which = self.settings.sync_stock_figure
        unknown = 0
        numbers = list(totals)
        # the index and the ledger are read for a chunk of numbers at a time: a large
        # catalogue is never held whole in memory
        for start in range(0, len(numbers), LOOKUP_CHUNK):
            chunk = numbers[start : start + LOOKUP_CHUNK]
            rows = await self.index.by_sku(chunk)
            singles = _single_items(rows)
            ledger = await self._ledger(location, [i for i in singles.values() if i is not None])
            for sku in chunk:
                if sku not in rows:
                    only.add(sku)
                item_id = singles.get(sku)
                if item_id is None:
                    watch.succeeded(sku)  # parked as unread: no longer an item to read
                if item_id is None or sku in blocked:
                    pass_left.discard(sku)
                    continue  # only in Rackbeat, a duplicate SKU, not a stock item, or parked
                total = totals[sku]
                recorded = ledger.get(item_id)
                key = f"{total.stock_quantity}/{total.available_quantity}"
                updated = total.updated_at.isoformat() if total.updated_at is not None else ""
                figure: Decimal | None
                locations: dict[str, Decimal] = {}
                refreshed = False
                if wanted is None:
                    figure = _figure(total.stock_quantity, total.available_quantity, which)
                elif (
                    recorded is not None
                    and recorded.totals == key
                    and recorded.updated == updated
                    and decimal_or_none(recorded.figure) is not None
                    and (budget is not None and (sku not in pass_left or budget <= 0))
                    and sku not in watch.suspects  # parked as unread: read until it reads
                ):
                    # nothing Rackbeat shows of the product changed: most likely neither did the
                    # sum (a move between locations does not show; the reconcile's pass finds it)
                    figure = decimal_or_none(recorded.figure)
                elif self.shutdown.requested:
                    continue  # stopping: no more per-location reads this cycle
                else:
                    if budget is not None and sku in pass_left:
                        refreshed = True
                        if recorded is not None:
                            budget -= 1  # a read of the pass that the totals would not have asked for
                    pass_left.discard(sku)
                    read = await _location_figures(self.reads, since, sku, wanted, which, watch=watch)
                    locations = read or {}
                    figure = None if read is None else sum(read.values(), Decimal(0))
                if figure is None:
                    unknown += 1  # Rackbeat did not say: unknown is not zero, so nothing is sent
                    continue
                yield _Scanned(sku, item_id, figure, recorded, key, updated, locations, refreshed)
        for sku in watch.suspects - totals.keys():
            watch.succeeded(sku)  # parked as unread: gone from Rackbeat
        if unknown:
            self.log.debug("stock.figure_unknown", count=unknown)

    # --- the ledgers ----------------------------------------------------------------------------------

    async def _ledger(self, location: str, items: Sequence[str]) -> dict[str, Recorded]:
        """The stock ledger's rows of these inventory items at ``location``."""
        if not items:
            return {}
        rows = await self.store.fetchall(
            "SELECT inventory_item_id, quantity, rackbeat_figure FROM stock_ledger "  # noqa: S608  # placeholders only
            f"WHERE shop = ? AND location_id = ? AND inventory_item_id IN ({','.join('?' * len(items))})",
            (self.store.shop, location, *items),
        )
        return {str(item): Recorded.from_row(int(q), blob) for item, q, blob in rows}

    async def _blocked(self) -> tuple[set[str], set[str]]:
        """SKUs Shopify refused, until their retry is due; SKUs parked because Rackbeat did
        not answer their per-location read (read again every cycle until they do)."""
        now = self.clock()
        parked = await self.store.parked(FLOW)
        refused = {p.key for p in parked if p.reason == "REJECTED" and p.next_attempt > now}
        return refused, {p.key for p in parked if p.reason == NotFoundError.reason}

    async def _park_unread(self, reads: StormWatch) -> None:
        """Park the products Rackbeat answered 404 for per location (a record problem: their
        figure is unknown, nothing is sent), and release those parked so that read again (or
        are no longer items): one not read this cycle (a stop) stays parked."""
        unread = reads.failed_records()
        if not unread and not reads.cleared:
            return
        async with self.store.transaction() as tx:
            for sku, how in unread.items():
                detail = f"Rackbeat answered {how} for this product: its stock is unknown, nothing is sent"
                await tx.park(FLOW, sku, NotFoundError.reason, detail)
            for sku in reads.cleared - unread.keys():
                await tx.unpark(FLOW, sku)
        if unread.keys() - reads.suspects:
            self.log.warning("stock.product_unread", skus=sorted(unread)[:20], count=len(unread))

    async def _park_duplicates(self, totals: Mapping[str, StockTotals]) -> None:
        parked = {p.key for p in await self.store.parked(FLOW) if p.reason == "DUPLICATE_SKU"}
        twins = {sku: n for sku, n in (await self.index.duplicates()).items() if sku in totals}
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
                self.log.warning("stock.duplicate_sku", sku=sku, variants=n)
            for sku in resolved:
                await tx.unpark(FLOW, sku)
                self.log.info("stock.duplicate_sku_resolved", sku=sku)

    async def _record(self, tx: Transaction, location: str, rows: Iterable[tuple[str, Recorded]]) -> None:
        now = iso(self.clock())
        await tx.executemany(
            "INSERT INTO stock_ledger (shop, inventory_item_id, location_id, quantity, rackbeat_figure, updated_at) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (shop, inventory_item_id, location_id) DO UPDATE SET "
            "quantity = excluded.quantity, rackbeat_figure = excluded.rackbeat_figure, updated_at = excluded.updated_at",
            [(self.store.shop, item, location, r.quantity, r.blob(), now) for item, r in rows],
        )

    async def _restamp(self, rows: Sequence[tuple[Snapshot, Recorded]], location: str) -> None:
        """Record the scanned totals (and ``updated_at``) of SKUs that need no write although
        these changed (goods moved at a location S10 does not list, a product edit): the
        next cycle then reuses their per-location sum instead of reading it again. Quantity,
        figure, demand and any hold stay as they were."""
        if rows:
            async with self.store.transaction() as tx:
                await self._record(tx, location, [(s.item_id, row) for s, row in rows])

    async def _settle(
        self, plans: Mapping[str, tuple[Snapshot, Decision]], settled: Mapping[str, Decision], location: str
    ) -> None:
        """Record what Shopify has for SKUs that need no write (it was read and is as
        decided, or held back), so that the next cycle compares against it."""
        rows = [(plans[sku][0].item_id, d.settled) for sku, d in settled.items() if d.settled is not None]
        reread = [
            sku for sku, (s, _) in plans.items() if sku in settled and (s.reread or s.reading is not None)
        ]
        if rows or reread:
            async with self.store.transaction() as tx:
                await self._record(tx, location, rows)
                await self._reread_done(tx, reread)

    # --- deciding ---------------------------------------------------------------------------------------

    async def _catch_up(self) -> None:
        """Have the orders flows put recent Shopify orders into the ledger first (through
        the runner: an orders cycle is the orders flow's, its errors are its own).

        This shop's orders must be caught up, or nothing is pushed. Another shop's whose
        orders flow is failing (its token revoked, its API down) does not stop this shop:
        its orders already in the ledger still count, and the gap is said in the log."""
        own, *others = self.catch_up
        answers = await self._request_cycles(self.catch_up)
        if not answers[own]:
            raise WaitingError(
                "recent Shopify orders could not be caught up (the orders flow is failing; see its "
                "error): stock is not pushed until they are, so that no sold unit is offered again"
            )
        behind = [key for key in others if not answers[key]]
        if behind:
            self.log.warning(
                "stock.orders_behind",
                flows=behind,
                detail="those shops' newest orders are not in the ledger yet; the figures pushed "
                "subtract the orders the ledger has",
            )

    async def _catch_up_others(self) -> None:
        """Have the other shops' orders flows (those whose demand this shop's figures
        subtract) put their recent orders into the ledger before the marker. Their outcome
        is theirs: a failing one holds up nothing here (:meth:`_catch_up` says so when it
        matters), its orders already in the ledger count."""
        await self._request_cycles(self.catch_up[1:])

    async def _request_cycles(self, keys: Sequence[str]) -> dict[str, bool]:
        """Ask the runner for a cycle of each of these flows at once; whether each succeeded
        (True for all without a runner)."""
        cycles = self.cycles
        answers = dict.fromkeys(keys, True)
        if cycles is None or not keys:
            return answers

        async def ask(key: str) -> None:
            answers[key] = await cycles.request_cycle(key)

        async with anyio.create_task_group() as tg:
            for key in keys:
                tg.start_soon(ask, key)
        return answers

    async def _read_shopify(
        self, snapshots: Sequence[Snapshot], location: str, *, dry_run: bool = False
    ) -> dict[str, Reading]:
        """What Shopify has now of these SKUs, by SKU. A SKU never written (no ledger row)
        takes the level the index's bulk read found, if it has one, instead of a request
        (once: a dry run leaves it for the real cycle)."""
        if not snapshots:
            return {}
        first = [s.item_id for s in snapshots if s.recorded is None]
        levels = await self.index.take_levels(first, location, keep=dry_run)
        unread = [s.item_id for s in snapshots if s.item_id not in levels]
        if unread:
            levels.update(await self.shopify.inventory_levels(unread, location))
        return {s.sku: Reading(levels.get(s.item_id)) for s in snapshots}

    # --- writing -------------------------------------------------------------------------------------------

    async def _push(
        self,
        plans: dict[str, tuple[Snapshot, Decision]],
        location: str,
        marker: _Marker,
        extra: Mapping[str, int],
        *,
        confirmed: dict[str, Decision],
        refused: set[str],
    ) -> tuple[int, int]:
        """Write what ``plans`` say to write; decide stale ones again on new snapshots (which
        replace theirs in ``plans``). Fills ``confirmed`` (SKU → the decision Shopify
        confirmed) and ``refused``; returns (quantities written, batches)."""
        pending = [sku for sku, (_, d) in plans.items() if d.write]
        written = batches = 0
        progress = (
            Progress("stock push", len(pending), shop=self.store.shop)
            if len(pending) >= PROGRESS_FROM
            else None
        )
        for round_ in range(MAX_STALE_ROUNDS):
            stale: list[str] = []
            for chunk in _chunks(pending, MAX_INPUT_ITEMS):
                if self.shutdown.requested:
                    return written, batches
                entries = [_entry(*plans[sku]) for sku in chunk]
                delivery = await self._send(entries, location)
                written += len(delivery.confirmed)
                batches += delivery.calls
                confirmed.update((e.sku, plans[e.sku][1]) for e in delivery.confirmed)
                refused.update(e.sku for e in delivery.refused)
                stale.extend(e.sku for e in delivery.stale)
                if progress is not None:
                    progress.advance(len(chunk))
            if progress is not None:
                progress.finish()
                progress = None
            if not stale:
                return written, batches
            self.metrics.count(FLOW, "stale_retries", len(stale))
            if round_ == MAX_STALE_ROUNDS - 1:
                # no reading now that this cycle could use: the next cycle reads them first
                # (marked in the DB when their batch came back stale)
                self.log.info("stock.stale_left", skus=len(stale))
                return written, batches
            self.log.info("stock.stale", skus=len(stale))
            # Shopify changed under us (most likely a sale): read first, then take the new
            # orders in, then decide again
            readings = await self._read_shopify([plans[sku][0] for sku in stale], location)
            await self._catch_up()
            plans.update(await self._decide_again([plans[sku][0] for sku in stale], readings, marker, extra))
            pending = [sku for sku in stale if plans[sku][1].write]
            if not pending:
                return written, batches
        return written, batches

    async def _send(self, batch: Sequence[_Entry], location: str) -> _Delivery:
        """Store the batch with a new key, send it, commit the outcome."""
        key = str(uuid.uuid4())
        async with self.store.transaction() as tx:
            await tx.execute(
                "INSERT INTO stock_batches (shop, batch_key, location_id, payload, created_at) VALUES (?, ?, ?, ?, ?)",
                (
                    self.store.shop,
                    key,
                    location,
                    json.dumps([e.payload() for e in batch]),
                    iso(self.clock()),
                ),
            )
        return await self._deliver(key, location, batch)

    async def _deliver(self, key: str, location: str, batch: Sequence[_Entry]) -> _Delivery:
        """Send a stored batch and commit its outcome (a good rest is sent as a new batch)."""
        quantities = [StockQuantity(e.item_id, location, e.goal, e.believed) for e in batch]
        result = await self.shopify.set_available(
            quantities, key=key, reference_uri=REFERENCE_URI.format(key=key), reason="correction"
        )
        if result.ok:
            parked = {p.key for p in await self.store.parked(FLOW)}
            async with self.store.transaction() as tx:
                await self._record(tx, location, [(e.item_id, e.row) for e in batch])
                for entry in batch:
                    if entry.sku in parked:
                        await tx.unpark(FLOW, entry.sku)
                await self._reread_done(tx, [e.sku for e in batch])
                await tx.execute(
                    "DELETE FROM stock_batches WHERE shop = ? AND batch_key = ?", (self.store.shop, key)
                )
            self.metrics.count(FLOW, "quantities_pushed", len(batch))
            self.metrics.count(FLOW, "batches")
            self.log.debug("stock.pushed", quantities=len(batch), key=key)
            return _Delivery(confirmed=batch, calls=1)
        # all or nothing: Shopify applied none of it. Stale entries are read first (this
        # cycle, or the next if it ends first), refused ones parked, the rest re-sent as a
        # new batch with a new key.
        stale_ids = result.stale_item_ids
        by_item = result.errors_by_item()
        refused = [e for e in batch if e.item_id in by_item and e.item_id not in stale_ids]
        stale = [e for e in batch if e.item_id in stale_ids]
        async with self.store.transaction() as tx:
            await tx.execute(
                "DELETE FROM stock_batches WHERE shop = ? AND batch_key = ?", (self.store.shop, key)
            )
            await self._reread_later(tx, [e.sku for e in stale])
            for entry in refused:
                detail = "; ".join(f"{e.code}: {e.message}" for e in by_item[entry.item_id])
                await tx.park(
                    FLOW, entry.sku, "REJECTED", f"SKU {entry.sku!r}: Shopify refused the quantity: {detail}"
                )
        for entry in refused:
            self.metrics.count(FLOW, "parked_rejected")
            self.log.warning("stock.refused", sku=entry.sku)
        if result.general_errors:
            detail = "; ".join(f"{e.code}: {e.message}" for e in result.general_errors)
            raise FatalError(f"Shopify refused a stock batch as a whole: {detail}")
        good = [e for e in batch if e.item_id not in by_item]
        if not good:
            return _Delivery(stale=stale, refused=refused, calls=1)
        rest = await self._send(good, location)
        return _Delivery(rest.confirmed, [*stale, *rest.stale], [*refused, *rest.refused], rest.calls + 1)

    async def _resend_pending(self, location: str) -> int:
        """Re-send, with their keys, batches a crash left between storing and confirming."""
        rows = await self.store.fetchall(
            "SELECT batch_key, location_id, payload FROM stock_batches WHERE shop = ? ORDER BY created_at, batch_key",
            (self.store.shop,),
        )
        written = 0
        for key, batch_location, payload in rows:
            if batch_location != location:
                # SHOPIFY_LOCATION_ID changed since: never write to a location no longer configured
                async with self.store.transaction() as tx:
                    await tx.execute(
                        "DELETE FROM stock_batches WHERE shop = ? AND batch_key = ?", (self.store.shop, key)
                    )
                self.log.warning("stock.batch_dropped", location=batch_location)
                continue
            batch = [_Entry.from_payload(raw) for raw in json.loads(payload)]
            self.log.info("stock.batch_resent", quantities=len(batch), key=key)
            delivery = await self._deliver(str(key), location, batch)
            written += len(delivery.confirmed)
            if delivery.stale:
                # Shopify changed since the batch was stored: this cycle reads and decides
                # these SKUs again instead of trusting the ledger's quantity
                self.log.info("stock.batch_resent_stale", skus=len(delivery.stale))
        return written


def _entry(snapshot: Snapshot, decision: Decision) -> _Entry:
    """The batch entry that writes ``decision``."""
    return _Entry(snapshot.sku, snapshot.item_id, decision.goal, decision.believed, decision.written)
