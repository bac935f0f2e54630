"""The stock decision on its own (pure, so fast): what it writes, reads and holds, and the
no-oversell property over many random histories of a small model world."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from hypothesis import example, given, settings
from hypothesis import strategies as st

from daemon.flows.stock import MAX_STALE_ROUNDS
from daemon.stock_decision import (
    HOLD_LIMIT,
    Cycle,
    Decision,
    Demand,
    Reading,
    Recorded,
    Snapshot,
    decide,
    looks_for_sales,
)

T0 = datetime(2026, 11, 1, 10, 0, tzinfo=UTC)


def snapshot(figure: int | str, recorded: Recorded | None, **fields: object) -> Snapshot:
    values: dict[str, object] = {
        "sku": "A",
        "item_id": "gid://shopify/InventoryItem/1",
        "figure": Decimal(figure),
        "recorded": recorded,
        "demand": Demand(),
        "watermark": 7,
        "cycle": Cycle(now=T0),
    }
    values.update(fields)
    return Snapshot(**values)  # type: ignore[arg-type]  # the test's own keyword bag


def row(quantity: int, figure: int, **fields: object) -> Recorded:
    return Recorded(quantity, figure=str(figure), watermark=5, **fields)  # type: ignore[arg-type]


# --- single decisions ------------------------------------------------------------------------------


def test_a_rising_target_is_written_on_the_ledgers_quantity_and_a_falling_one_read_first() -> None:
    up = decide(snapshot(12, row(10, 10)))
    assert (up.target, up.goal, up.believed, up.write, up.read_first) == (12, 12, 10, True, False)
    assert (up.written.quantity, up.written.figure, up.written.watermark) == (12, "12", 7)
    down = decide(snapshot(8, row(10, 10)))
    assert (down.candidate, down.read_first) == (True, True)
    never = decide(snapshot(5, None))
    assert (never.believed, never.read_first, never.write) == (None, True, True)
    quiet = decide(snapshot(10, row(10, 10)))
    assert (quiet.candidate, quiet.write) == (False, False)


def test_demand_is_the_larger_of_now_and_the_marker_plus_new_orders() -> None:
    assert Demand(now=1, at_marker=2, since_marker=3, extra=1).units == 6
    assert Demand(now=4, at_marker=2, since_marker=1).units == 4
    d = decide(snapshot("7.9", row(10, 10), demand=Demand(now=2, at_marker=2)))
    assert d.target == 5  # whole units of 7.9 − 2


def test_a_drop_no_order_explains_is_held_back_and_recorded_with_its_start() -> None:
    read = snapshot(12, row(10, 10), reading=Reading(7))
    assert looks_for_sales(read)
    d = decide(read)
    assert (d.hidden, d.goal, d.believed, d.write) == (3, 9, 7, True)
    assert (d.written.held, d.written.held_since) == (3, "2026-11-01T10:00:00Z")
    # an order for 2 of the 3 units reached the ledger after the row's watermark (5)
    d = decide(replace(read, arrivals=((4, 9), (6, 2))))
    assert (d.hidden, d.goal) == (1, 11)
    # the reconcile command counts no drops: it writes the target
    d = decide(replace(read, cycle=replace(read.cycle, count_drops=False)))
    assert (d.hidden, d.goal) == (0, 12)


def test_held_units_stay_held_without_a_reading_until_the_limit() -> None:
    holding = row(9, 12, held=3, held_since="2026-11-01T10:00:00Z")
    later = snapshot(12, holding, cycle=Cycle(now=T0 + timedelta(minutes=5)))
    d = decide(later)
    assert (d.candidate, d.goal, d.write, d.hidden) == (True, 9, False, 3)
    assert d.settled is not None
    assert (d.settled.held, d.settled.held_since) == (3, holding.held_since)
    expired = decide(replace(later, cycle=Cycle(now=T0 + HOLD_LIMIT)))
    assert (expired.hidden, expired.goal, expired.write) == (0, 12, True)


def test_units_sold_while_others_are_held_are_held_for_the_whole_limit_too() -> None:
    holding = row(4, 8, held=4, held_since="2026-11-01T10:00:00Z")
    sold_now = T0 + timedelta(minutes=8)
    d = decide(snapshot(8, holding, reading=Reading(2), cycle=Cycle(now=sold_now)))
    assert (d.hidden, d.goal, d.write) == (6, 2, False)  # 4 held + 2 sold just now
    assert d.settled is not None
    assert d.settled.held_since == "2026-11-01T10:08:00Z"
    # past the first units' limit, but the newest units' order may still be on its way
    later = decide(snapshot(8, d.settled, cycle=Cycle(now=T0 + HOLD_LIMIT + timedelta(minutes=1))))
    assert (later.hidden, later.goal, later.write) == (6, 2, False)


def test_held_units_never_push_the_goal_below_zero_or_below_a_negative_target() -> None:
    holding = row(0, 2, held=5, held_since="2026-11-01T10:00:00Z")
    assert decide(snapshot(2, holding)).goal == 0
    negative = snapshot(-2, holding, cycle=Cycle(now=T0, allow_negative=True))
    assert decide(negative).goal == -2


def test_a_full_reconcile_or_a_stale_write_reads_first_and_a_sale_makes_a_candidate() -> None:
    quiet = snapshot(10, row(10, 10))
    for changed in (
        replace(quiet, cycle=Cycle(now=T0, full=True)),
        replace(quiet, reread=True),
    ):
        d = decide(changed)
        assert (d.candidate, d.read_first) == (True, True)
    sold = decide(replace(quiet, sold=True))
    assert (sold.candidate, sold.read_first) == (True, True)  # the target does not rise: read
    assert not decide(replace(quiet, reading=Reading(10))).write


def test_an_order_since_the_row_is_checked_by_compare_and_swap_when_nothing_else_changed() -> None:
    # Shopify confirmed 6 (10 − 4 units of a draft) at rowid 5. Since then the draft was booked
    # (it left the demand and the available figure), a receipt made up for it, and a Shopify
    # sale of 4 units reached the ledger in the catch-up (rowid 6): figure and demand look as
    # recorded, but Shopify shows 2 now.
    recorded = row(6, 10, demand=4)
    s = snapshot(10, recorded, demand=Demand(now=4, at_marker=0, since_marker=4), watermark=6)
    d = decide(s)
    assert (d.target, d.goal, d.believed, d.write, d.settled) == (6, 6, 6, True, None)
    # the compare-and-swap goes stale: with the reading the order explains the drop, nothing is held
    read = decide(replace(s, reading=Reading(2), arrivals=((6, 4),)))
    assert (read.hidden, read.goal, read.believed, read.write) == (0, 6, 2, True)
    # the same for an order that reached the ledger before this cycle's marker
    assert decide(snapshot(10, recorded, demand=Demand(now=4, at_marker=4), sold=True)).write
    # no order: nothing to write, nothing to settle
    quiet = decide(snapshot(10, recorded, demand=Demand(now=4, at_marker=4)))
    assert (quiet.candidate, quiet.write, quiet.settled) == (False, False, None)


def test_an_order_for_held_units_settles_them_and_one_beyond_them_is_checked() -> None:
    holding = row(4, 8, held=4, held_since="2026-11-01T10:00:00Z")
    later = Cycle(now=T0 + timedelta(minutes=2))
    lagging = snapshot(
        8, holding, demand=Demand(now=4, since_marker=4), watermark=6, arrivals=((6, 4),), cycle=later
    )
    d = decide(lagging)  # the held units' order: Shopify shows them already, nothing to write
    assert (d.hidden, d.goal, d.write) == (0, 4, False)
    assert d.settled is not None
    assert (d.settled.quantity, d.settled.held, d.settled.watermark) == (4, 0, 6)
    # 6 units arrived for 4 held, while a reservation left the demand: 2 were sold after
    # the row was confirmed, so Shopify's quantity is checked instead of settled
    more = decide(replace(lagging, arrivals=((6, 4), (7, 2)), watermark=7))
    assert (more.goal, more.write, more.settled) == (4, True, None)


def test_an_order_sold_after_the_reading_is_checked_not_settled() -> None:
    # Shopify showed 4 of the 6 confirmed (2 sold); 1 more was sold after the reading, and
    # both orders reached the ledger in the catch-up. With them the target is 4, what was
    # read: settling 4 with rowid 2 would hold the last unit back at the next reading.
    recorded = Recorded(6, figure="6", watermark=0)
    s = snapshot(
        7,
        recorded,
        demand=Demand(now=3, since_marker=3),
        watermark=2,
        reading=Reading(4),
        arrivals=((1, 2), (2, 1)),
    )
    assert looks_for_sales(s)
    d = decide(s)
    assert (d.target, d.hidden, d.goal, d.believed, d.write, d.settled) == (4, 0, 4, 4, True, None)
    # stale: read again, the orders explain the whole drop, and the unit is offered again
    again = decide(replace(s, reading=Reading(3)))
    assert (again.hidden, again.goal, again.believed, again.write) == (0, 4, 3, True)
    # the usual case: the reading shows the sale whose order came in the catch-up
    quiet = decide(replace(s, figure=Decimal(6), demand=Demand(now=2, since_marker=2), arrivals=((1, 2),)))
    assert (quiet.write, quiet.hidden) == (False, 0)
    assert quiet.settled is not None
    assert (quiet.settled.quantity, quiet.settled.watermark) == (4, 2)


def test_a_row_settled_without_reading_or_writing_keeps_its_watermark() -> None:
    # the hold ran out with nothing to write (the target is 0): the row loses its held units
    # but nothing tells which orders Shopify's quantity reflects beyond rowid 5
    expired = row(0, 2, demand=2, held=3, held_since="2026-11-01T09:00:00Z")
    d = decide(snapshot(2, expired, demand=Demand(now=2, at_marker=2), watermark=9))
    assert (d.candidate, d.write, d.hidden) == (True, False, 0)
    assert d.settled is not None
    assert (d.settled.held, d.settled.watermark) == (0, 5)
    # a reading tells: the row then carries the snapshot's watermark
    read = decide(snapshot(2, expired, demand=Demand(now=2, at_marker=2), watermark=9, reading=Reading(0)))
    assert read.settled is not None
    assert read.settled.watermark == 9


def test_orders_after_the_snapshots_watermark_do_not_explain_a_drop() -> None:
    # rowid 8 reached the ledger after the demand was read: it explains the next decision
    read = snapshot(12, row(10, 10), reading=Reading(7), watermark=7, arrivals=((6, 2), (8, 1)))
    d = decide(read)
    assert (d.hidden, d.goal, d.written.watermark) == (1, 11, 7)


def test_a_changed_total_with_nothing_to_write_is_restamped() -> None:
    recorded = replace(row(10, 10), totals="10/10", updated="u1")
    d = decide(snapshot(10, recorded, totals="12/10", updated="u2"))
    assert d.restamp == replace(recorded, totals="12/10", updated="u2")
    assert decide(snapshot(10, recorded, totals="10/10", updated="u2")).restamp is None
    listed = snapshot(10, recorded, totals="10/10", updated="u2", cycle=Cycle(now=T0, listed=True))
    assert decide(listed).restamp == replace(recorded, updated="u2")


# --- the property ------------------------------------------------------------------------------------


@dataclass
class Order:
    units: int
    visible_at: float
    #: "shopify" (not in Rackbeat), "draft", "booked"
    state: str = "shopify"
    rowid: int | None = None


@dataclass
class Model:
    """One SKU in Shopify and Rackbeat, and what the daemon keeps of it in its state DB."""

    status: str
    lag: float
    rnd: random.Random
    t: float = 0.0
    in_stock: int = 6
    shopify: int = 0
    orders: list[Order] = field(default_factory=list)
    # the daemon's state DB
    recorded: Recorded | None = None
    seen: int | None = None
    reread: bool = False
    rowids: int = 0
    cycles: int = 0

    # --- the world ---
    @property
    def available(self) -> int:
        return self.in_stock - sum(o.units for o in self.orders if o.state == "booked")

    def bound(self) -> int:
        unreserved = sum(o.units for o in self.orders if o.state in ("shopify", "draft"))
        return max(math.floor(self.available - unreserved), 0)

    def sell(self) -> None:
        if self.shopify > 0:
            units = self.rnd.randint(1, self.shopify)
            self.shopify -= units
            self.orders.append(Order(units, self.t + self.lag))

    def book(self) -> None:
        drafts = [o for o in self.orders if o.state == "draft"]
        if drafts:
            self.rnd.choice(drafts).state = "booked"

    def import_orders(self) -> None:
        """The orders flow: Shopify's search shows an order after the lag."""
        for order in self.orders:
            if order.rowid is None and order.visible_at <= self.t:
                self.rowids += 1
                order.rowid = self.rowids
                order.state = "draft" if self.status == "draft" else "booked"

    # --- the order ledger, as the stock flow reads it ---
    def watermark(self) -> int:
        return self.rowids

    def unreserved(self) -> int:
        return sum(o.units for o in self.orders if o.rowid is not None and o.state == "draft")

    def after(self, rowid: int) -> list[tuple[int, int]]:
        return sorted((o.rowid, o.units) for o in self.orders if o.rowid is not None and o.rowid > rowid)

    # --- the stock flow's cycle, around decide ---
    def with_arrivals(self, s: Snapshot) -> Snapshot:
        return replace(s, arrivals=tuple(self.after(0))) if looks_for_sales(s) else s

    def catch_up(self, mid: list[str]) -> None:
        while mid:
            getattr(self, mid.pop())()
        self.import_orders()

    def stock_cycle(self, mid: list[str], *, full: bool) -> None:
        marker, at_marker = self.watermark(), self.unreserved()
        figure = Decimal(self.available)
        cycle = Cycle(now=T0 + timedelta(seconds=self.t), full=full or self.cycles == 0)
        self.cycles += 1
        sold = not cycle.full and self.seen is not None and bool(self.after(self.seen))
        first = self.with_arrivals(
            Snapshot(
                "A",
                "item",
                figure,
                self.recorded,
                Demand(at_marker, at_marker),
                marker,
                cycle,
                sold=sold,
                reread=self.reread,
            )
        )
        d = decide(first)
        self.seen = marker
        if not d.candidate:
            return
        s = first
        reading = Reading(self.shopify) if d.read_first else None
        for round_ in range(MAX_STALE_ROUNDS):
            self.catch_up(mid)
            new = sum(units for rowid, units in self.after(marker))
            s = self.with_arrivals(
                replace(
                    s,
                    demand=Demand(self.unreserved(), at_marker, new),
                    watermark=self.watermark(),
                    reading=reading or s.reading,
                    arrivals=(),
                )
            )
            d = decide(s)
            if not d.write:
                if d.settled is not None:
                    self.recorded = d.settled
                self.reread = False
                return
            if self.apply(d):
                return
            self.reread = True  # stale: read first, this round or the next cycle
            if round_ < MAX_STALE_ROUNDS - 1:
                reading = Reading(self.shopify)

    def apply(self, d: Decision) -> bool:
        """inventorySetQuantities with changeFromQuantity: True when Shopify took it."""
        if d.believed != self.shopify:
            return False
        self.shopify, self.recorded, self.reread = d.goal, d.written, False
        return True


STEPS = ["sale", "sale", "import", "book", "receipt", "adjust", "mid", "full", "cycle", "cycle", "cycle"]


@settings(max_examples=2500, deadline=None)
@given(
    steps=st.lists(st.sampled_from(STEPS), min_size=5, max_size=30),
    status=st.sampled_from(["draft", "booked"]),
    lag=st.sampled_from([0.0, 20.0, 45.0, 100.0, 250.0]),
    seed=st.integers(0, 10_000),
)
# the ledger's quantity settled, unread and unwritten, with orders sold after it was confirmed
@example(
    steps=[
        "sale",
        "full",
        "sale",
        "sale",
        "receipt",
        "sale",
        "mid",
        "receipt",
        "cycle",
        "sale",
        "cycle",
        "sale",
        "receipt",
        "full",
    ],
    status="booked",
    lag=20.0,
    seed=2062,
)
# a reading settled with an order sold after it (the quantity read was low by just as much)
@example(steps=["receipt", "mid", "sale", "full", "cycle", "book"], status="draft", lag=0.0, seed=8)
def test_decisions_never_offer_more_than_rackbeat_minus_unreserved_demand(
    steps: list[str], status: str, lag: float, seed: int
) -> None:
    rnd = random.Random(seed)
    m = Model(status, lag, rnd)
    mid: list[str] = []  # what the next catch-up does first (between the reading and the write)
    m.stock_cycle(mid, full=True)
    assert m.shopify == m.bound() == 6
    for step in steps:
        m.t += 30
        if step == "sale":
            m.sell()
        elif step == "import":
            m.import_orders()
        elif step == "book":
            m.book()
        elif step == "receipt":
            m.in_stock += rnd.randint(1, 3)
        elif step == "adjust":
            m.in_stock -= rnd.randint(1, 2)  # breakage, a stock count
        elif step == "mid":
            mid.extend(rnd.sample(["sell", "book", "import_orders"], rnd.randint(1, 3)))
        else:
            m.stock_cycle(mid, full=step == "full")
            assert m.shopify <= m.bound(), (m, steps)
    # activity stops: once Shopify's search shows every order, Shopify shows what the world allows
    mid.clear()
    for _ in range(2 + int(lag // 60)):
        m.t += 60
        m.import_orders()
        m.stock_cycle(mid, full=False)
        assert m.shopify <= m.bound(), (m, steps)
    # then Shopify shows exactly what the world allows: no units stay held for orders the
    # ledger has (nor are they let go once the hold would have run out)
    assert m.shopify == m.bound(), (m, steps)
    m.t += HOLD_LIMIT.total_seconds()
    m.stock_cycle(mid, full=False)
    assert m.shopify == m.bound(), (m, steps)
