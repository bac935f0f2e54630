"""The stock decision of one SKU: a pure function of a snapshot (the guide's S12).

:func:`decide` takes everything that decides what Shopify should show for a SKU — the
Rackbeat figure, the stock ledger's row, the demand terms, a reading of Shopify taken in
this cycle (if any), the order-ledger rows that arrived since the row was recorded, the
cycle's wall-clock time and the settings that matter — and returns what to do: whether
the SKU goes further this cycle, whether Shopify is read first, the quantity to write
with the quantity it is based on (``changeFromQuantity``), and the ledger row to record
(with any units held back). No I/O, no clock read, no input changed: the stock flow
(:mod:`daemon.flows.stock`) reads, calls :func:`decide`, writes what it says and commits
the row it names; after a stale write it builds a new snapshot and decides again.

Why the result never oversells is argued in :mod:`daemon.flows.stock`'s docstring.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from decimal import ROUND_FLOOR, Decimal, InvalidOperation

from daemon.times import iso

__all__ = [
    "HOLD_LIMIT",
    "Cycle",
    "Decision",
    "Demand",
    "Reading",
    "Recorded",
    "Snapshot",
    "decide",
    "effective_demand",
    "looks_for_sales",
    "target_quantity",
]

#: How long units are held back for a Shopify sale the order ledger does not show yet.
#: Shopify's order search lags by seconds, now and then by a minute or two; the orders
#: flow re-reads 5 minutes behind its cursor. An order still missing after this is not a
#: lag any more: the drop is taken for a hand-made correction in Shopify and undone.
HOLD_LIMIT = timedelta(minutes=10)


def target_quantity(figure: Decimal, demand: int, *, allow_negative: bool) -> int:
    """The quantity Shopify should offer: whole units of ``figure − demand``, rounded down
    (a fraction of a unit cannot be sold), and 0 instead of a negative result unless allowed."""
    whole = int((figure - demand).to_integral_value(rounding=ROUND_FLOOR))
    return whole if allow_negative else max(whole, 0)


def effective_demand(
    now: Mapping[str, int], at_marker: Mapping[str, int], new_since_marker: Mapping[str, int]
) -> dict[str, int]:
    """``max(now, at_marker + new_since_marker)`` per SKU (see :mod:`daemon.flows.stock`): the
    unreserved demand, plus whatever may have become reserved after Rackbeat was scanned."""
    skus = set(now) | set(at_marker) | set(new_since_marker)
    return {sku: max(now.get(sku, 0), at_marker.get(sku, 0) + new_since_marker.get(sku, 0)) for sku in skus}


def decimal_or_none(text: str) -> Decimal | None:
    """``text`` as a Decimal; None when empty or not a number."""
    try:
        return Decimal(text) if text else None
    except InvalidOperation:
        return None


@dataclass(frozen=True, slots=True)
class Recorded:
    """A stock ledger row: the quantity Shopify confirmed and the inputs it was decided from.

    ``totals`` is Rackbeat's "stock/available" of the product when decided and ``updated``
    its ``updated_at`` (to see a change in the next scan), ``figure`` the figure used (with
    S10 = a list, the per-location sum, reused on normal cycles while totals and
    ``updated`` stay the same), ``demand`` the unreserved demand it was decided with, and
    ``watermark`` the order ledger's largest rowid when it was decided: orders after it
    were sold after that decision, as far as the ledger can tell. It moves on only with a
    quantity Shopify confirmed or showed (a write or a reading): a row settled with neither
    keeps it, since nothing tells which later orders Shopify's quantity reflects.

    ``held`` is the units held back for Shopify sales the order ledger did not show yet
    (the last of them joined the hold at ``held_since``): it stays until orders for that
    many units reached the ledger after ``watermark``, or :data:`HOLD_LIMIT` has passed
    since ``held_since``.
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
            inputs.update(held=self.held, held_since=self.held_since)
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


@dataclass(frozen=True, slots=True)
class Demand:
    """The demand terms of one SKU (units of Shopify orders Rackbeat does not reserve).

    ``at_marker`` (D0) was read before Rackbeat was scanned, ``now`` (D_now) after the
    latest catch-up of the orders, ``since_marker`` (N) is the units of order-ledger rows
    added after the marker, and ``extra`` the units of orders the ledger does not hold at
    all (the reconcile command's dry run counts them). Before the catch-up, ``now`` is
    ``at_marker`` and ``since_marker`` 0.
    """

    now: int = 0
    at_marker: int = 0
    since_marker: int = 0
    extra: int = 0

    @property
    def units(self) -> int:
        """E = max(D_now, D0 + N), plus ``extra``: the units kept back from the figure."""
        return max(self.now, self.at_marker + self.since_marker) + self.extra


@dataclass(frozen=True, slots=True)
class Reading:
    """Shopify's quantity read in this cycle (None: the item is not stocked at the location)."""

    quantity: int | None


@dataclass(frozen=True, slots=True)
class Cycle:
    """What every SKU of one cycle is decided with."""

    #: the cycle's wall-clock time: holds are measured against it, and one that begins now
    #: begins at it
    now: datetime
    #: SYNC_ALLOW_NEGATIVE_STOCK
    allow_negative: bool = False
    #: a fresh reading below the quantity last confirmed counts as sales the ledger does
    #: not show yet (the daemon's cycles; not the reconcile command, which writes targets)
    count_drops: bool = True
    #: a full reconcile: every SKU goes further and is read first
    full: bool = False
    #: S10 = a list: a changed ``updated_at`` is worth recording (it decides a re-read)
    listed: bool = False


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Everything that decides one SKU's stock in Shopify, as read in one cycle."""

    sku: str
    #: the Shopify inventory item the quantity is written to
    item_id: str
    #: Rackbeat's figure (SYNC_STOCK_FIGURE), over all locations or summed over S10's
    figure: Decimal
    #: the stock ledger's row (None: never confirmed at this location)
    recorded: Recorded | None
    demand: Demand
    #: the order ledger's largest rowid when ``demand`` was read (recorded with the decision)
    watermark: int
    cycle: Cycle
    #: Rackbeat's "stock/available" totals and ``updated_at`` as scanned
    totals: str = ""
    updated: str = ""
    #: Shopify's quantity read in this cycle, if it was read
    reading: Reading | None = None
    #: (rowid, units) of this SKU's order-ledger rows; those after the recorded row's
    #: watermark, up to this snapshot's, explain held or dropped units, and any beyond
    #: those units were sold after the quantity believed (see :func:`looks_for_sales`)
    arrivals: Sequence[tuple[int, int]] = ()
    #: an order for it reached the order ledger since the previous cycle
    sold: bool = False
    #: its last write went stale without a reading that cycle could use
    reread: bool = False


@dataclass(frozen=True, slots=True)
class Decision:
    """What to do with one SKU this cycle."""

    #: floor(F − E), 0 instead of negative unless allowed
    target: int
    #: units held back for Shopify sales the order ledger does not show yet
    hidden: int
    #: the quantity to write: the target less ``hidden`` (not below 0 for that reason)
    goal: int
    #: the Shopify quantity the decision is based on (``changeFromQuantity``): read this
    #: cycle, else the ledger's; None when neither says
    believed: int | None
    #: the SKU goes further this cycle (read, write or settle); otherwise nothing changed
    candidate: bool
    #: read Shopify before writing (never written, a target that does not rise, a stale
    #: write, or a full reconcile) — and decide again with the reading
    read_first: bool
    #: Shopify may differ from the goal: write it
    write: bool
    #: the ledger row to record once Shopify confirms ``goal`` (it carries the hold)
    written: Recorded
    #: without a write: the row to record because Shopify holds ``believed`` for these
    #: inputs (None: the ledger is as decided, or there is nothing to record)
    settled: Recorded | None
    #: not a candidate, but the scanned totals (or ``updated_at``) changed: the row with
    #: them, so that the next cycle reuses the figure instead of reading it again
    restamp: Recorded | None


def looks_for_sales(snapshot: Snapshot) -> bool:
    """Hidden sales are to be counted for this SKU (units are held, or a fresh reading fell
    below the quantity last confirmed), or orders since the marker may have been sold after
    the reading: :attr:`Snapshot.arrivals` matter."""
    recorded = snapshot.recorded
    return recorded is not None and (
        recorded.hold_open(snapshot.cycle.now)
        or _drop(snapshot) > 0
        or (snapshot.reading is not None and snapshot.demand.since_marker > 0)
    )


def base_watermark(snapshot: Snapshot) -> int:
    """The order ledger's rowid that hidden sales are counted from: the largest when the
    last confirmed decision (and its hold) was made."""
    return snapshot.recorded.watermark if snapshot.recorded is not None else 0


def _drop(snapshot: Snapshot) -> int:
    """How far a fresh reading fell below the quantity last confirmed (0: it did not)."""
    reading, recorded = snapshot.reading, snapshot.recorded
    if not snapshot.cycle.count_drops or reading is None or reading.quantity is None or recorded is None:
        return 0
    return max(0, recorded.quantity - reading.quantity)


def decide(snapshot: Snapshot) -> Decision:
    """What to do with ``snapshot``'s SKU (module docstring); pure."""
    s, r, cycle = snapshot, snapshot.recorded, snapshot.cycle
    hold_open = r is not None and r.hold_open(cycle.now)
    fresh = s.reading is not None
    believed = s.reading.quantity if s.reading is not None else (r.quantity if r is not None else None)
    demand = s.demand.units
    target = target_quantity(s.figure, demand, allow_negative=cycle.allow_negative)

    # Units Shopify sold that the ledger cannot show yet: those still held from earlier
    # cycles plus a fresh reading's drop, less the units of orders that reached the ledger
    # since the row was recorded, whatever Rackbeat did with them since. Only orders up to
    # this snapshot's watermark explain: the demand was read after it and counts them, and
    # the row recorded now carries it (a later order explains the next decision instead).
    known = looks_for_sales(s)
    sold = explained = 0
    if r is not None:
        sold = (r.held if hold_open else 0) + _drop(s)
        explained = sum(units for rowid, units in s.arrivals if r.watermark < rowid <= s.watermark)
    hidden = max(0, sold - explained)
    goal = target if not hidden else max(target - hidden, min(target, 0))

    # An order that shows up for units held as a hidden sale moves them from one term to
    # the other and changes nothing.
    inputs_changed = (
        r is None
        or decimal_or_none(r.figure) != s.figure
        or r.demand + (r.held if hold_open else 0) != demand + hidden
    )
    # Orders since the row was recorded beyond the units the believed quantity shows sold
    # (held, or the reading's drop) were most likely sold after it was confirmed or read:
    # Shopify shows less than believed. The inputs can look unchanged all the same (a
    # reservation left the demand as the new order joined it, beside a goods receipt; or
    # the quantity read was too low by just the units sold after the reading), and a row
    # settled with them would take them for sales the quantity shows, and the next reading's
    # drop for hidden sales. So the quantity is written (the same, if need be): the
    # compare-and-swap tells. Without the orders at hand (nothing held or dropped, not read),
    # any order for the SKU since the last cycle counts.
    if known:
        unconfirmed = explained > sold
    else:
        unconfirmed = not fresh and r is not None and (s.sold or s.demand.since_marker > 0)
    # Without a fresh reading a changed input is always written: the compare-and-swap
    # then tells whether Shopify still has what the ledger says, so that a sale the ledger
    # missed is corrected now, not at the next full reconcile.
    write = unconfirmed or (believed != goal if fresh else (r is None or believed != goal or inputs_changed))
    # A falling target is most often the echo of a Shopify sale, which Shopify shows
    # already: a compare-and-swap would fail and hold up its whole batch.
    read_first = not fresh and (cycle.full or s.reread or believed is None or target <= believed)
    holding = r is not None and r.held > 0
    candidate = cycle.full or write or holding or s.sold or s.reread

    row = Recorded(goal, s.totals, str(s.figure), demand, s.updated, watermark=s.watermark)
    if hidden and r is not None:
        # units sold just now join the hold: it lasts HOLD_LIMIT from now, or the newest
        # units would be released before their order could reach the ledger
        renewed = not hold_open or _drop(s) > 0
        row = replace(row, held=hidden, held_since=iso(cycle.now) if renewed else r.held_since)
    settled = None
    if not write and believed is not None:
        settled = replace(row, quantity=believed)
        if not fresh and not known and r is not None:
            # Neither read nor written, and the orders since the row not at hand: nothing
            # says which of them Shopify's quantity reflects, so the row keeps its watermark
            # (moving it on would take an order sold after the row was confirmed for one the
            # quantity shows, and the next reading's drop for a hidden sale).
            settled = replace(settled, watermark=r.watermark)
        if settled == r:
            settled = None
    restamp = None
    if (
        not candidate
        and r is not None
        and (r.totals != s.totals or (cycle.listed and r.updated != s.updated))
    ):
        restamp = replace(r, totals=s.totals, updated=s.updated)
    return Decision(
        target=target,
        hidden=hidden,
        goal=goal,
        believed=believed,
        candidate=candidate,
        read_first=read_first,
        write=write,
        written=row,
        settled=settled,
        restamp=restamp,
    )
