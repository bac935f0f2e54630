"""Shopify orders → Rackbeat sales orders, exactly once.

Read: orders updated since the cursor, oldest first. The cursor trails the cycle's start
by :data:`~daemon.incremental.OVERLAP` (Shopify's search index lags behind writes), so
recent orders are listed again; :class:`daemon.incremental.ChangeFeed` lists them by id
and time and reads in full only those not applied at that time, so an order costs one
full read per change. Decide: :func:`daemon.mapping.map_order` and the ledger's state.
Write: customer, draft, booking, shipment in Rackbeat. Commit: every step's outcome in
the order ledger before the next step, the cursor after the page.

The ledger state machine, one row per Shopify order::

    seen ─► customer ─► draft ─► booked ─► shipment ─► done
     │ ▲                  (S1=draft: done after draft; S1=booked: done after booked)
     │ └─ waiting      (SYNC_ORDER_TRIGGER not met yet: paid, or fulfilled in Shopify; or
     │                  held while Rackbeat's reference search is refuted: :data:`HELD`)
     └─► skipped      (a test order, cancelled before import, or created before the start)

A waiting order keeps its demand in the ledger, so the stock flow holds its units; it is
read again when Shopify changes it (paid, fulfilled, cancelled: then skipped), a held one
also once the search is proven.

Which orders: those created from the import start on — ``SYNC_ORDERS_SINCE`` or the
moment of the first start, stored in the DB on the first start. An older order that
changes later (fulfilled, refunded, tagged) shows up in the updated-since query but is
skipped, with a note that ``status`` counts.

Drafts (S1 = draft, or an order stopped before booking) do not reserve stock in
Rackbeat, so their demand is held for the stock flow. A few of them are read back from
Rackbeat every cycle (:data:`DRAFT_CHECKS_PER_CYCLE`, least recently checked first): once
the merchant books, ships, cancels or deletes one, its demand is released.

After a crash the flow resumes from the stored state. The ledger state "customer" is
committed before ``POST /orders/drafts`` is sent and stays until the draft's number is
saved: an order that *starts* an attempt in "customer" may have a draft already (a crash
between Rackbeat's answer and our commit, a failure after sending, a lost answer whose
read-back failed too). For such an order — and for one created before this state DB's
first start (:data:`FIRST_START`: an earlier state file, deleted since, may have imported
it) — the flow first looks for a Rackbeat order whose ``your_reference`` is the Shopify
order name and adopts it (:func:`is_our_order`). Any other order cannot have a draft
yet, so the search is skipped: a returning customer's order costs three Rackbeat
requests (draft, booking, shipment), a new customer's five (search and create the
customer first). A DB written by an older release searched always; its rows in
"customer" keep that meaning, so an upgrade makes no second order. Booking and shipping
a second time are answered with 422 by Rackbeat; the flow then reads the order's flags
and goes on.

A write whose answer is lost (a timeout, a reset connection, a 5xx, a truncated body)
may or may not have been applied (:class:`~daemon.errors.AmbiguousWrite`). It is settled
at once, inside the cycle (:func:`daemon.retry.settle_write`): the flow reads back — the
customer by e-mail, the draft by ``your_reference`` (:func:`is_our_order`), the order's
flags after booking or shipping — adopts what landed, writes again what did not (at most
:data:`~daemon.retry.SETTLE_ROUNDS` times) and goes on with the next order.

After the transfer: a cancellation in Shopify deletes a Rackbeat draft; a booked or
shipped order is parked for a person (CANCELLED_AFTER_TRANSFER), as is a quantity edit
(CHANGED_AFTER_TRANSFER, with the difference). Either way the ledger keeps what was
transferred, which is what the fulfilments flow measures Rackbeat's shipments against.

A record-level problem (unknown SKU, no e-mail, totals that do not add up, a 422)
parks that order with a reason; the others go on. Parked orders are retried with
backoff, or at once with ``rackbeat-shopify retry``. A retriable error (5xx, an
unreadable answer, a read-back that fails too: the API is down) stops the cycle so that
it is tried again, unless the same order failed :data:`MAX_FAILURES` times in a row:
then it is parked (REPEATED_FAILURE) and the others go on.

Several shops may feed one Rackbeat account, each with its own ``#1001``: an order is
only adopted when :func:`is_our_order` says it is this shop's.

State invariant (:mod:`daemon.store`): a cursor never passes a record whose outcome is not
committed, and applying a record again is harmless.
Here: each step's outcome is in the order ledger before the next step, the cursor moves
after its page, and a ledger row (or an adopted Rackbeat order) makes a repeat a no-op.
A draft create is only ever sent from the state "customer", which is committed first,
so a create whose outcome is not committed always leaves a row that searches before it
sends again. A state DB restored from a backup does not know the orders imported after
the backup was taken: deleting its :data:`FIRST_START` row (README, "Upgrading") makes
every order created before the next start searched for.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import structlog

from daemon.config import OrderNumbering, OrderStatus, OrderTrigger, Settings, UnprovenReferencePolicy
from daemon.errors import (
    MalformedResponse,
    NotFoundError,
    RecordError,
    RetriableError,
    ThrottledError,
    ValidationError,
)
from daemon.incremental import shopify_feed
from daemon.live_check import ReferenceGate
from daemon.mapping import MappedOrder, check_totals, map_order, order_demand, shopify_heading
from daemon.metrics import Metrics
from daemon.progress import Progress
from daemon.rackbeat import (
    Customer,
    Order,
    OrderStep,
    RackbeatClient,
    customer_body,
    number_taken,
    order_body,
    order_heading,
    order_state,
    step_already_done,
)
from daemon.reasons import advice_for
from daemon.retry import settle_write
from daemon.shared import KeyedLocks
from daemon.shopify import ShopifyClient
from daemon.shutdown import Shutdown, note_held, note_progress
from daemon.skipped import TEST_ORDER, SkippedNotice
from daemon.store import FULFILLED_IN_SHOPIFY, SKIPPED_BEFORE_START, Store
from daemon.storm import ParkGuard
from daemon.times import iso, parse_time

log = structlog.get_logger("daemon.flows.orders")

FLOW = "orders"
#: the most likely cause when orders due for a step never get one (health's stall check)
STALL_CAUSE = "orders are read but none gets through to Rackbeat; see `rackbeat-shopify parked` and the order.* log lines"
#: ledger states in order; an order is finished in "done" or "skipped"
STATES = ("seen", "waiting", "customer", "draft", "booked", "shipment", "done")
FINISHED = ("done", "skipped")
#: what an order held by the :class:`~daemon.live_check.ReferenceGate` waits for (its note)
HELD = "a proven reference search in Rackbeat (SYNC_ORDERS_UNPROVEN_REFERENCE=refuse; see check --live)"
#: a cycle whose cursor is further behind than this reports its progress (order counts, rate)
CATCH_UP_PROGRESS = timedelta(hours=1)
#: the cursors-table key of the import start (orders created before it are skipped)
SINCE = "orders.since"
#: the cursors-table key of this state DB's first start: an order created before it may
#: have been imported with an earlier state file (deleted, or a backup restored since), so
#: its draft is searched for first
FIRST_START = "orders.first_start"
#: consecutive retriable failures of one order before it is parked (REPEATED_FAILURE)
MAX_FAILURES = 5
#: drafts read back from Rackbeat per cycle (each is one GET) …
DRAFT_CHECKS_PER_CYCLE = 10
#: … each at most this often (the stock flow's catch-ups run cycles in quick succession)
DRAFT_CHECK_INTERVAL = timedelta(minutes=1)
#: SKUs checked in Rackbeat one by one before a new customer is created for an order
#: (beyond that the draft's own 422 names an unknown SKU)
SKU_CHECKS_PER_ORDER = 20


#: the order ledger's columns the flow reads and writes
_LEDGER = (
    "state",
    "rackbeat_number",
    "rackbeat_state",
    "customer_number",
    "shopify_updated_at",
    "demand",
    "note",
    "cancelled",
    "failures",
    "shopify_demand",
    "fulfilment",
)

#: ``displayFinancialStatus`` values that meet ``SYNC_ORDER_TRIGGER=paid``: paid (also when
#: partly refunded since), and authorised — a shop that captures the payment when it ships
#: would otherwise never transfer an order, since shipping needs the order in Rackbeat.
#: PARTIALLY_PAID waits for the rest; PENDING, REFUNDED, VOIDED and EXPIRED wait.
PAID_STATUSES = frozenset({"PAID", "PARTIALLY_REFUNDED", "AUTHORIZED"})
#: the ``displayFulfillmentStatus`` that meets ``SYNC_ORDER_TRIGGER=fulfilled`` (every unit;
#: PARTIALLY_FULFILLED waits)
FULFILLED = "FULFILLED"


def is_our_order(candidate: Order, reference: str, *, shop: str, customer: str | None) -> bool:
    """Whether a Rackbeat order found by ``your_reference`` is this shop's order
    ``reference`` (an earlier attempt made it) rather than another shop's of the same name.

    We write the shop's domain into the heading (:func:`daemon.mapping.shopify_heading`),
    so a heading naming this shop decides. An order made before headings named the shop
    carries the bare ``Shopify #1042``: then it must also belong to ``customer``, the one
    resolved for this order (None: not known, and the bare heading is taken as ours).
    Anything else (another shop's heading, an order typed in by hand) is not ours.
    """
    heading = (order_heading(candidate) or "").strip()
    if heading == shopify_heading(reference, shop):
        return True
    bare = heading == shopify_heading(reference, None)
    return bare and (customer is None or candidate.customer == customer)


def trigger_wait(order: Mapping[str, Any], trigger: OrderTrigger) -> str | None:
    """What ``order`` still waits for before it is transferred (``SYNC_ORDER_TRIGGER``),
    None when it goes now."""
    if trigger is OrderTrigger.PAID:
        status = str(order.get("displayFinancialStatus") or "unknown")
        return (
            None if status in PAID_STATUSES else f"payment (SYNC_ORDER_TRIGGER=paid; Shopify says {status})"
        )
    if trigger is OrderTrigger.FULFILLED:
        status = str(order.get("displayFulfillmentStatus") or "unknown")
        return (
            None if status == FULFILLED else f"fulfilment in Shopify (SYNC_ORDER_TRIGGER=fulfilled; {status})"
        )
    return None


def demand_difference(before: Mapping[str, int], after: Mapping[str, int]) -> str:
    """``SKU-1 2 → 3, SKU-2 1 → 0``: the SKUs whose units differ."""
    return ", ".join(
        f"{sku} {before.get(sku, 0)} → {after.get(sku, 0)}"
        for sku in sorted(set(before) | set(after))
        if before.get(sku, 0) != after.get(sku, 0)
    )


def target_state(status: OrderStatus) -> str:
    """The last ledger state S1 asks for."""
    return {OrderStatus.DRAFT: "draft", OrderStatus.BOOKED: "booked", OrderStatus.READY_TO_SHIP: "shipment"}[
        status
    ]


def _advance(reached: str, target: str) -> str:
    """The ledger state after Rackbeat's order reached ``reached`` (draft, booked,
    ready_to_ship): "done" once S1's target is met, else the step reached."""
    if reached == "cancelled":
        return "done"  # cancelled in Rackbeat by hand: never make it again
    order = ("draft", "booked", "shipment")
    step = "shipment" if reached in ("ready_to_ship", "shipped") else reached
    return "done" if order.index(step) >= order.index(target) else step


class OrdersFlow:
    """Imports Shopify orders into Rackbeat; see the module docstring."""

    name = FLOW

    def __init__(
        self,
        settings: Settings,
        store: Store,
        shopify: ShopifyClient,
        rackbeat: RackbeatClient,
        *,
        metrics: Metrics,
        shutdown: Shutdown,
        customers: KeyedLocks | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        gate: ReferenceGate | None = None,
    ) -> None:
        """``customers`` is shared by the orders flows of every shop of the account: one
        Rackbeat customer per e-mail, whichever shop sells to it first. ``gate`` (``run``'s,
        one per account) holds orders while Rackbeat's reference search is refuted."""
        self.gate = gate
        #: why the gate holds this cycle's orders back (:meth:`_gate`; None: it does not)
        self.refusal: str | None = None
        #: the refusal last logged under SYNC_ORDERS_UNPROVEN_REFERENCE=warn (log on change)
        self._warned: str | None = None
        self.settings = settings
        self.customers = customers or KeyedLocks()
        self.store = store
        self.shopify = shopify
        self.rackbeat = rackbeat
        self.metrics = metrics
        self.shutdown = shutdown
        self.clock = clock
        self.log = log.bind(flow=FLOW)
        #: held for a cycle: the stock flow's catch-up (``run_once``) and the flow's own loop
        #: never run a cycle at the same time
        self.lock = anyio.Lock()
        #: the last cycle stopped on a retriable error (orders parked for REPEATED_FAILURE
        #: during an outage are retried at once when a cycle gets through again)
        self._failing = False
        #: the import start (None until a cycle or ``missing_in_rackbeat`` read it: no age check)
        self._since: datetime | None = None
        #: orders created before this moment may have been imported with an earlier state
        #: file (:data:`FIRST_START`; None until a cycle read it)
        self._first_start: datetime | None = None
        #: SKUs seen in Rackbeat by this process that the SKU index does not hold (the
        #: shipping product): :meth:`_check_skus` looks each up once, not for every order
        self._in_rackbeat: set[str] = set()
        self._feed = shopify_feed(store, shopify, "orders", stream=FLOW, clock=clock)
        #: the running cycle's orders due for a step, and how those that failed failed
        #: (health's progress check; an error storm, :mod:`daemon.storm`)
        self._guard = ParkGuard(store, FLOW, self._feed.versions)
        self._skipped = SkippedNotice(self.log)

    # --- the cycle ---------------------------------------------------------------------------

    async def run_once(self) -> int:
        """One cycle: due parked orders, then every order updated since the cursor."""
        async with self.lock:
            self._guard.begin()
            try:
                refusal = await self._gate()
                applied = await self._release_held() if refusal is None else 0
                applied += await self._cycle()
                await self._guard.check()
            except RetriableError:
                self._failing = True
                raise
            note_progress(pending=self._guard.watch.attempts, confirmed=applied, cause=STALL_CAUSE)
            await self._skipped.after_cycle(self.store, iso(self._since) if self._since else None)
            if self._failing:
                self._failing = False
                woken = await self.store.wake_reason(FLOW, "REPEATED_FAILURE")
                if woken:
                    self.log.info("orders.repeated_failures_woken", orders=woken)
            if self.gate is not None and applied:
                self.gate.imported()
            if self.refusal is not None:
                # the cycle succeeds (the stock flow's catch-up goes on: the held orders'
                # units are in the ledger) while /healthz fails with the reason
                note_held(self.refusal)
            return applied

    async def _gate(self) -> str | None:
        """Ask the :class:`~daemon.live_check.ReferenceGate`: the refusal that holds this
        cycle's orders (as "waiting", their units held), or None. With
        ``SYNC_ORDERS_UNPROVEN_REFERENCE=warn`` a refusal is logged and orders go on; once
        the search is confirmed, :meth:`_release_held` imports the orders held earlier."""
        refusal = await self.gate.refusal() if self.gate is not None else None
        warn = (
            refusal is not None
            and self.settings.sync_orders_unproven_reference is UnprovenReferencePolicy.WARN
        )
        if warn and refusal != self._warned:
            self.log.warning(
                "orders.unproven_reference", detail=refusal, setting="SYNC_ORDERS_UNPROVEN_REFERENCE=warn"
            )
        self._warned = refusal if warn else None
        if refusal is not None and not warn:
            self.refusal = f"orders are held, not imported: {refusal}"
            return refusal
        self.refusal = None
        return None

    async def _release_held(self) -> int:
        """Import the orders the gate held (they wait for no change in Shopify); how many."""
        rows = await self.store.fetchall(
            "SELECT order_id FROM order_ledger WHERE shop = ? AND state = 'waiting' AND note = ?",
            (self.store.shop, f"waiting for {HELD}"),
        )
        if not rows:
            return 0
        orders = await self.shopify.orders_by_ids([str(row[0]) for row in rows])
        return sum([await self.apply(order) for order in orders])

    async def _cycle(self) -> int:
        cursor = await self._cursor()
        self._since = await self._import_start(cursor)
        self._first_start = await self._first_start_moment()
        started = self.clock()
        applied = await self._retry_parked()
        await self._refresh_drafts()
        # far behind (SYNC_ORDERS_SINCE in the past, or after a long stop): say how it goes
        progress = (
            Progress("order catch-up", None, shop=self.store.shop, since=iso(cursor))
            if started - cursor > CATCH_UP_PROGRESS
            else None
        )
        # the feed moves the cursor after each page, never past the search index's lag
        pages = self._feed.changes(cursor, hold=self._guard.hold)
        async with contextlib.aclosing(pages):
            async for batch in pages:
                for order in batch:
                    if await self.apply(order):
                        applied += 1
                if progress is not None:
                    progress.advance(len(batch))
                if self.shutdown.requested:
                    break
        if progress is not None and progress.done:
            progress.finish()
        return applied

    async def _cursor(self) -> datetime:
        stored = await self.store.get_cursor(FLOW)
        if stored is not None:
            return parse_time(stored)
        # First start: from SYNC_ORDERS_SINCE, else from now — never the whole history by surprise.
        start = self.settings.sync_orders_since or self.clock()
        async with self.store.transaction() as tx:
            await tx.set_cursor(FLOW, iso(start))
            await tx.set_cursor(SINCE, iso(start))
        self.log.info("orders.cursor_initialised", since=iso(start))
        return start

    async def _import_start(self, cursor: datetime) -> datetime:
        """The moment orders are imported from (created at or after it), stored on the
        first start. A DB from before it was stored gets the earliest moment it knows
        of: SYNC_ORDERS_SINCE, its first ledger row, or the cursor."""
        stored = await self.store.get_cursor(SINCE)
        if stored is not None:
            return parse_time(stored)
        first = await self.store.fetchval(
            "SELECT MIN(created_at) FROM order_ledger WHERE shop = ?", (self.store.shop,)
        )
        candidates = [cursor, *([parse_time(str(first))] if first else [])]
        start = self.settings.sync_orders_since or min(candidates)
        async with self.store.transaction() as tx:
            await tx.set_cursor(SINCE, iso(start))
        return start

    async def _first_start_moment(self) -> datetime:
        """When this state DB began importing (:data:`FIRST_START`), stored by the first
        cycle that finds it missing: a new file's, the first of a release that keeps it, or
        the first after an operator deleted it (a backup restored: see the README)."""
        stored = await self.store.get_cursor(FIRST_START)
        if stored is not None:
            return parse_time(stored)
        now = self.clock()
        async with self.store.transaction() as tx:
            await tx.set_cursor(FIRST_START, iso(now))
        return now

    async def _refresh_drafts(self) -> None:
        """Read back a few drafts from Rackbeat, least recently checked first, and record
        how far each is now: booked (Rackbeat reserves its stock), shipped, cancelled or
        deleted releases its demand. A failure here holds up nothing: the drafts are
        checked again next cycle."""
        rows = await self.store.fetchall(
            "SELECT order_id, order_name, rackbeat_number FROM order_ledger WHERE shop = ? "
            "AND rackbeat_state = 'draft' AND rackbeat_number IS NOT NULL AND cancelled = 0 "
            "AND (checked_at IS NULL OR checked_at <= ?) ORDER BY COALESCE(checked_at, ''), order_name LIMIT ?",
            (self.store.shop, iso(self.clock() - DRAFT_CHECK_INTERVAL), DRAFT_CHECKS_PER_CYCLE),
        )
        for order_id, name, number in rows:
            try:
                state = str(order_state(await self.rackbeat.get_order(str(number))))
            except NotFoundError:
                state = "deleted"
            except RetriableError as exc:
                self.log.info("orders.drafts_not_checked", error=str(exc), kind=exc.kind)
                return
            values: dict[str, Any] = {"rackbeat_state": state}
            if state != "draft":
                self.log.info("order.draft_changed", order=name, rackbeat_order=number, state=state)
                if state == "deleted":
                    values["note"] = f"Rackbeat draft {number} was deleted in Rackbeat"
            async with self.store.transaction() as tx:
                sets = ", ".join(f"{k} = ?" for k in values)
                await tx.execute(
                    f"UPDATE order_ledger SET {sets}, checked_at = ? WHERE shop = ? AND order_id = ?",  # noqa: S608  # fixed column names
                    (*values.values(), iso(self.clock()), self.store.shop, order_id),
                )

    async def _retry_parked(self) -> int:
        due = await self.store.due_parked(FLOW, self.clock())
        if not due:
            return 0
        keys = {p.key for p in due}
        rows = await self.store.fetchall(
            f"SELECT order_id FROM order_ledger WHERE shop = ? AND order_name IN ({','.join('?' * len(keys))})",  # noqa: S608  # placeholders only
            (self.store.shop, *keys),
        )
        applied = 0
        for order in await self.shopify.orders_by_ids([r[0] for r in rows]):
            if await self.apply(order):
                applied += 1
        return applied

    # --- one order -----------------------------------------------------------------------------

    async def apply(self, order: Mapping[str, Any]) -> bool:
        """Bring one order as far as S1 asks; True when this call changed Rackbeat.

        Record-level problems park the order (and return False); retriable and fatal
        errors propagate so that the cycle stops before its cursor moves.
        """
        name = str(order.get("name") or order.get("id"))
        try:
            return await self._apply(order, name)
        except RecordError as exc:
            await self._guard.failed(exc, name, str(order.get("id")))
            await self._park(order, name, exc)
            return False
        except ThrottledError:
            raise  # the API's budget, not this order
        except RetriableError as exc:
            if await self._count_failure(order, name) < MAX_FAILURES:
                raise  # retried with the whole cycle: most such errors pass
            # this cycle gets through because the order is set aside, which says nothing of
            # the cause: no waking of REPEATED_FAILURE orders at its end
            self._failing = False
            await self._park(
                order,
                name,
                RecordError(
                    f"order {name}: failed {MAX_FAILURES} times in a row ({exc.kind}: {exc})",
                    reason="REPEATED_FAILURE",
                ),
            )
            return False

    async def _count_failure(self, order: Mapping[str, Any], name: str) -> int:
        """Count one more retriable failure of this order in a row; return the count."""
        order_id = str(order.get("id") or name)
        now = iso(self.clock())
        async with self.store.transaction() as tx:
            await tx.execute(
                "INSERT INTO order_ledger (shop, order_id, order_name, state, failures, created_at, updated_at) "
                "VALUES (?, ?, ?, 'seen', 1, ?, ?) ON CONFLICT (shop, order_id) "
                "DO UPDATE SET failures = failures + 1, updated_at = excluded.updated_at",
                (self.store.shop, order_id, name, now, now),
            )
        return int(
            await self.store.fetchval(
                "SELECT failures FROM order_ledger WHERE shop = ? AND order_id = ?",
                (self.store.shop, order_id),
            )
        )

    async def _ledger(self, order_id: str) -> dict[str, Any] | None:
        row = await self.store.fetchone(
            f"SELECT {', '.join(_LEDGER)} FROM order_ledger WHERE shop = ? AND order_id = ?",  # noqa: S608  # fixed column names
            (self.store.shop, order_id),
        )
        return dict(zip(_LEDGER, row, strict=True)) if row is not None else None

    async def _save(self, order_id: str, name: str, **values: Any) -> None:
        """Upsert the ledger row of one order (a step's outcome) and unpark it."""
        now = iso(self.clock())
        given = {k: v for k, v in values.items() if k in _LEDGER}
        if "state" in given:
            given.setdefault("failures", 0)  # a step's outcome ends a run of failures
        async with self.store.transaction() as tx:
            await tx.execute(
                "INSERT INTO order_ledger (shop, order_id, order_name, state, created_at, updated_at) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (shop, order_id) DO NOTHING",
                (self.store.shop, order_id, name, given.get("state", "seen"), now, now),
            )
            sets = ", ".join(f"{k} = ?" for k in given)
            await tx.execute(
                f"UPDATE order_ledger SET {sets}, updated_at = ? WHERE shop = ? AND order_id = ?",  # noqa: S608  # column names are the constants above
                (*given.values(), now, self.store.shop, order_id),
            )
            if values.get("unpark", True):
                await tx.unpark(FLOW, name)

    async def _apply(self, order: Mapping[str, Any], name: str) -> bool:
        order_id = str(order.get("id") or "")
        if not order_id:
            raise MalformedResponse("an order without id")
        ledger = await self._ledger(order_id)
        updated = str(order.get("updatedAt") or "")
        if ledger is not None and ledger["state"] in FINISHED:
            await self._note_changes_after_import(order, name, ledger, updated)
            return False
        if ledger is not None and await self._waiting(name, ledger, updated):
            return False
        if ledger is None or ledger["rackbeat_number"] is None:
            skip = self.skip_reason(order, new=ledger is None)
            if skip is not None:
                await self._save(order_id, name, state="skipped", note=skip, shopify_updated_at=updated)
                if skip.startswith(SKIPPED_BEFORE_START):
                    self.metrics.count(FLOW, "skipped_before_start")
                # one orders.skipped line a cycle says how many (SkippedNotice)
                self.log.debug("order.skipped", order=name, reason=skip)
                return False
            if ledger is None or ledger["state"] in ("seen", "waiting"):
                wait = trigger_wait(order, self.settings.sync_order_trigger) or (
                    HELD if self.refusal else None
                )
                if wait is not None:
                    await self._hold_for_trigger(order, name, ledger, updated, wait)
                    return False
        elif await self._stopped_before_done(order, name, ledger, updated):
            return False
        self._guard.watch.attempt()
        try:
            mapped = map_order(
                order, shipping_product=self.settings.sync_shipping_product, shop=self.store.shop
            )
        except MalformedResponse as exc:
            # this one order cannot be read (a field missing): park it, do not block the rest
            raise RecordError(f"order {name}: {exc}", reason="MALFORMED") from None
        check_totals(mapped)
        demand = json.dumps(mapped.demand, sort_keys=True)
        if ledger is None or ledger["demand"] != demand or ledger["shopify_updated_at"] != updated:
            await self._save(
                order_id,
                name,
                state=ledger["state"] if ledger else "seen",
                demand=demand,
                shopify_updated_at=updated,
            )
        state = str(ledger["state"]) if ledger else "seen"
        customer = ledger["customer_number"] if ledger else None
        number = ledger["rackbeat_number"] if ledger else None
        target = target_state(self.settings.sync_order_status)
        steps = 0
        if state in ("seen", "waiting"):
            customer = await self._resolve_customer(mapped)
            state = "customer"
            # Shopify fulfilled it already (SYNC_ORDER_TRIGGER=fulfilled, a POS sale): the
            # fulfilments flow leaves it alone
            shopify_fulfilled = order.get("displayFulfillmentStatus") == FULFILLED
            await self._save(
                order_id,
                name,
                state=state,
                customer_number=customer,
                note=None,
                fulfilment=FULFILLED_IN_SHOPIFY if shopify_fulfilled else None,
            )
        if state == "customer":
            number, reached = await self._create_draft(
                mapped, str(customer), may_exist=self._may_have_draft(order, ledger)
            )
            state = _advance(reached, target)
            steps += 1
            await self._save(order_id, name, state=state, rackbeat_number=number, rackbeat_state=reached)
            self.metrics.count(FLOW, "drafts_created")
        if state == "draft":
            await self._book(str(number))
            state = _advance("booked", target)
            steps += 1
            await self._save(order_id, name, state=state, rackbeat_state="booked")
        if state == "booked":
            await self._ship(str(number))
            steps += 1
            await self._save(order_id, name, state="done", rackbeat_state="ready_to_ship")
        if steps:
            self.metrics.count(FLOW, "imported")
            self.log.info("order.imported", order=name, rackbeat_order=number, state=target)
        return steps > 0

    def _may_have_draft(self, order: Mapping[str, Any], ledger: Mapping[str, Any] | None) -> bool:
        """Whether a Rackbeat draft of ``order`` may exist before this attempt sends one:
        an earlier attempt reached "customer" (and so may have sent the create), or the
        order is older than this state DB (:data:`FIRST_START`)."""
        if ledger is not None and ledger["state"] == "customer":
            return True
        created = order.get("createdAt")
        first_start = self._first_start
        return first_start is not None and isinstance(created, str) and parse_time(created) < first_start

    async def _hold_for_trigger(
        self, order: Mapping[str, Any], name: str, ledger: Mapping[str, Any] | None, updated: str, wait: str
    ) -> None:
        """Record an order that waits for its trigger: its units stay held (the stock flow
        counts its demand), and it is transferred when Shopify shows the trigger met."""
        demand = json.dumps(order_demand(order), sort_keys=True)
        note = f"waiting for {wait}"
        if ledger is not None and (ledger["state"], ledger["demand"], ledger["note"]) == (
            "waiting",
            demand,
            note,
        ):
            if ledger["shopify_updated_at"] != updated:
                await self._save(str(order["id"]), name, shopify_updated_at=updated, unpark=False)
            return
        await self._save(
            str(order["id"]), name, state="waiting", demand=demand, note=note, shopify_updated_at=updated
        )
        if ledger is None or ledger["state"] != "waiting":
            self.metrics.count(FLOW, "waiting")
            self.log.debug("order.waiting", order=name, waiting_for=wait)  # counted by orders.skipped

    async def _waiting(self, name: str, ledger: Mapping[str, Any], updated: str) -> bool:
        """True for a parked order that is not due and has not changed in Shopify since."""
        if updated != ledger["shopify_updated_at"]:
            return False
        row = await self.store.fetchone(
            "SELECT next_attempt FROM parked WHERE shop = ? AND flow = ? AND key = ?",
            (self.store.shop, FLOW, name),
        )
        return row is not None and parse_time(str(row[0])) > self.clock()

    async def _stopped_before_done(
        self, order: Mapping[str, Any], name: str, ledger: Mapping[str, Any], updated: str
    ) -> bool:
        """Stop (instead of booking or shipping) an order whose draft exists but that was
        cancelled in Shopify since (:meth:`_cancel_after_transfer`), or whose draft was
        cancelled or deleted in Rackbeat: True when the order is finished so."""
        if order.get("cancelledAt"):
            await self._cancel_after_transfer(order, name, ledger, updated)
            return True
        number = ledger["rackbeat_number"]
        if ledger["rackbeat_state"] not in ("cancelled", "deleted"):
            return False
        note = f"Rackbeat order {number} was {ledger['rackbeat_state']} in Rackbeat; not made again"
        await self._save(str(order["id"]), name, state="done", note=note, shopify_updated_at=updated)
        self.log.warning("order.stopped", order=name, rackbeat_order=number, change=note)
        self.metrics.count(FLOW, "changed_after_import")
        return True

    async def missing_in_rackbeat(self, order: Mapping[str, Any]) -> bool:
        """For ``reconcile``: whether ``order`` is to be imported (not a test order, not
        cancelled, not created before the import start, not waiting for
        ``SYNC_ORDER_TRIGGER``) and Rackbeat has no order of it.

        A Rackbeat order of the same name counts when its heading names this shop, or is
        the bare heading of older releases: in doubt it is not missing, since reconcile
        must never make a second order (another shop's ``#1001`` does not count)."""
        if self._since is None:
            stored = await self.store.get_cursor(SINCE)
            self._since = parse_time(stored) if stored else self.settings.sync_orders_since
        if self.skip_reason(order) is not None:
            return False
        if trigger_wait(order, self.settings.sync_order_trigger) is not None:
            return False  # not due in Rackbeat yet (SYNC_ORDER_TRIGGER)
        ledger = await self._ledger(str(order.get("id") or ""))
        if ledger is not None and ledger["state"] in FINISHED:
            return False  # done (its Rackbeat order may have been deleted on purpose) or skipped
        name = str(order.get("name"))
        found = await self.rackbeat.orders_by_reference(name)
        return not any(is_our_order(o, name, shop=self.store.shop, customer=None) for o in found)

    def skip_reason(self, order: Mapping[str, Any], *, new: bool = True) -> str | None:
        """Why an order is not imported at all (None: it is). ``new``: the ledger has no
        row for it yet (only then is its age a reason: a parked order stays wanted)."""
        created = order.get("createdAt")
        since = self._since
        if new and since is not None and isinstance(created, str) and parse_time(created) < since:
            return f"{SKIPPED_BEFORE_START} {iso(since)} (created {created}; see SYNC_ORDERS_SINCE)"
        if order.get("test") and not self.settings.sync_import_test_orders:
            return f"{TEST_ORDER} (SYNC_IMPORT_TEST_ORDERS is off)"
        if order.get("cancelledAt"):
            return f"cancelled in Shopify before import ({order.get('cancelReason') or 'no reason given'})"
        return None

    async def _note_changes_after_import(
        self, order: Mapping[str, Any], name: str, ledger: Mapping[str, Any], updated: str
    ) -> None:
        """Act on a cancellation or line edit made in Shopify after the transfer: a
        cancellation goes to :meth:`_cancel_after_transfer`; an edit parks the order
        (CHANGED_AFTER_TRANSFER, for a person: Rackbeat's order keeps what was transferred,
        which is also what its fulfilment is measured against)."""
        if not updated or updated == ledger["shopify_updated_at"] or ledger["state"] == "skipped":
            return
        if order.get("cancelledAt"):
            if not ledger["cancelled"] and ledger["rackbeat_number"]:
                await self._cancel_after_transfer(order, name, ledger, updated)
                return
        elif ledger["demand"] and ledger["rackbeat_number"]:
            transferred = {k: int(v) for k, v in json.loads(ledger["demand"]).items()}
            current = order_demand(order)
            known = json.loads(ledger["shopify_demand"]) if ledger["shopify_demand"] else transferred
            if current != known:
                await self._save(
                    str(order["id"]),
                    name,
                    shopify_updated_at=updated,
                    shopify_demand=json.dumps(current, sort_keys=True) if current != transferred else None,
                    unpark=False,
                )
                if current != transferred:
                    number = ledger["rackbeat_number"]
                    how_far = str(ledger["rackbeat_state"] or "made").replace("_", " ")
                    await self._park_for_a_person(
                        name,
                        RecordError(
                            f"order {name} was edited in Shopify after transfer to Rackbeat order {number} "
                            f"({how_far}): {demand_difference(transferred, current)}",
                            reason="CHANGED_AFTER_TRANSFER",
                        ),
                    )
                return
        await self._save(str(order["id"]), name, shopify_updated_at=updated, unpark=False)

    async def _cancel_after_transfer(
        self, order: Mapping[str, Any], name: str, ledger: Mapping[str, Any], updated: str
    ) -> None:
        """Shopify cancelled an order that Rackbeat has: a draft is deleted in Rackbeat; a
        booked or shipped order is parked for a person (CANCELLED_AFTER_TRANSFER: credit it
        in Rackbeat), as is a draft Rackbeat refuses to delete. Either way the order is
        finished, its units are released, and nothing is fulfilled for it."""
        number = str(ledger["rackbeat_number"])
        order_id = str(order["id"])
        try:
            state = str(order_state(await self.rackbeat.get_order(number)))
        except NotFoundError:
            state = "deleted"
        refused: ValidationError | None = None
        if state == "draft":
            try:
                await self._delete_draft(number)
                state = "deleted"
            except ValidationError as exc:
                refused = exc
        if state in ("deleted", "cancelled"):
            note = f"cancelled in Shopify after transfer; Rackbeat order {number} {state}"
        else:
            how_far = "a draft Rackbeat would not delete" if refused else f"{state.replace('_', ' ')}"
            note = f"cancelled in Shopify after transfer; Rackbeat order {number} is {how_far}: credit it in Rackbeat"
        await self._save(
            order_id,
            name,
            state="done",
            note=note,
            cancelled=1,
            rackbeat_state=state,
            shopify_updated_at=updated,
            unpark=False,
        )
        self.log.warning("order.cancelled_after_transfer", order=name, rackbeat_order=number, state=state)
        self.metrics.count(FLOW, "cancelled_after_transfer")
        if state not in ("deleted", "cancelled"):
            detail = f"order {name} was cancelled in Shopify after transfer; Rackbeat order {number} is " + (
                f"a draft and Rackbeat refused to delete it: {refused}"
                if refused
                else state.replace("_", " ")
            )
            await self._park_for_a_person(name, RecordError(detail, reason="CANCELLED_AFTER_TRANSFER"))

    async def _delete_draft(self, number: str) -> None:
        """Delete a Rackbeat draft; gone already (a repeat after a lost answer) is done."""
        with contextlib.suppress(NotFoundError):
            await self.rackbeat.delete_draft(number)

    # --- steps ---------------------------------------------------------------------------------

    async def _resolve_customer(self, mapped: MappedOrder) -> str:
        email = mapped.customer.email
        if email is None:
            if self.settings.sync_fallback_customer:
                return self.settings.sync_fallback_customer
            raise RecordError(
                f"order {mapped.reference} has no e-mail and SYNC_FALLBACK_CUSTOMER is not set",
                reason="NO_EMAIL",
            )
        # one customer per e-mail across the account's shops: another shop's may be known
        async with self.customers.hold(email):
            return await self._find_or_create_customer(mapped, email)

    async def _find_or_create_customer(self, mapped: MappedOrder, email: str) -> str:
        cached = await self.store.fetchval(
            "SELECT customer_number FROM customers WHERE email = ? ORDER BY shop != ? LIMIT 1",
            (email, self.store.shop),
        )
        if cached is not None:
            return str(cached)
        found = await self.rackbeat.find_customer_by_email(email)
        if found is not None:
            number = str(found.number)
        else:
            await self._check_skus(mapped)  # an order that cannot be made leaves no customer behind
            s = self.settings
            body = customer_body(
                name=mapped.customer.name,
                email=email,
                phone=mapped.customer.phone,
                group=s.sync_customer_group,
                vat_zone=s.sync_vat_zone.value,
                currency=s.sync_currency,
                payment_terms=s.sync_payment_terms,
                locale=s.sync_language,
            )

            async def create() -> Customer:
                return await self.rackbeat.create_customer(body)

            async def landed() -> Customer | None:
                return await self.rackbeat.find_customer_by_email(email)

            # an answer lost on the way: the search tells whether it was made
            created = await settle_write(create, landed, what=f"create customer for {mapped.reference}")
            number = str(created.number)
            self.metrics.count(FLOW, "customers_created")
            self.log.info("customer.created", order=mapped.reference, customer=number)
        async with self.store.transaction() as tx:
            await tx.execute(
                "INSERT INTO customers (shop, email, customer_number) VALUES (?, ?, ?) "
                "ON CONFLICT (shop, email) DO UPDATE SET customer_number = excluded.customer_number",
                (self.store.shop, email, number),
            )
        return number

    async def _check_skus(self, mapped: MappedOrder) -> None:
        """Raise UNKNOWN_SKU (or NO_SHIPPING_PRODUCT) for a line whose product Rackbeat does
        not have. SKUs the SKU index has seen in Rackbeat are taken as known; a few others
        are looked up one by one, each once per process (the shipping product is never in
        the index)."""
        skus = sorted({line.item_id for line in mapped.lines})
        known = {
            str(r[0])
            for r in await self.store.fetchall(
                f"SELECT DISTINCT sku FROM sku_index WHERE shop = ? AND rackbeat_number IS NOT NULL "  # noqa: S608  # placeholders only
                f"AND sku IN ({','.join('?' * len(skus))})",
                (self.store.shop, *skus),
            )
        }
        for sku in [s for s in skus if s not in known and s not in self._in_rackbeat][:SKU_CHECKS_PER_ORDER]:
            if await self.rackbeat.get_product(sku) is not None:
                self._in_rackbeat.add(sku)
                continue
            if sku == self.settings.sync_shipping_product:
                raise RecordError(
                    f"order {mapped.reference}: shipping product {sku!r} (SYNC_SHIPPING_PRODUCT) "
                    "does not exist in Rackbeat",
                    reason="NO_SHIPPING_PRODUCT",
                )
            raise RecordError(
                f"order {mapped.reference}: SKU {sku!r} is not a Rackbeat product",
                reason="UNKNOWN_SKU",
                subject=sku,
            )

    async def _create_draft(self, mapped: MappedOrder, customer: str, *, may_exist: bool) -> tuple[str, str]:
        """Create the draft, or adopt the order an earlier attempt made (searched for only
        when ``may_exist``: see the module docstring); return its number and how far
        Rackbeat has it (draft, booked, ready_to_ship …)."""
        existing = await self._our_order(mapped, customer) if may_exist else None
        if existing is not None:
            self.log.info("order.adopted", order=mapped.reference, rackbeat_order=existing.number)
            self.metrics.count(FLOW, "adopted")
            return str(existing.number), str(order_state(existing))
        s = self.settings
        body = order_body(
            customer=customer,
            currency=mapped.currency or s.sync_currency,
            number=mapped.number if s.sync_order_number is OrderNumbering.SHOPIFY else None,
            payment_terms=s.sync_payment_terms,
            employee=s.sync_employee,
            your_reference=mapped.reference,
            heading=mapped.heading,
            delivery_address=mapped.delivery_address,
            lines=[
                {
                    "item_id": line.item_id,
                    "name": line.name,
                    "quantity": line.quantity,
                    "line_price": line.unit_price,
                }
                for line in mapped.lines
            ],
        )

        async def create() -> Order:
            return await self.rackbeat.create_draft_order(body)

        async def landed() -> Order | None:
            return await self._our_order(mapped, customer)

        try:
            # an answer lost on the way: the search by reference tells whether it was made
            created = await settle_write(create, landed, what=f"create draft for {mapped.reference}")
        except ValidationError as exc:
            if "customer_id" in exc.fields:
                await self._forget_customer(mapped, customer)
            raise self._explain_rejection(exc, mapped) from None
        return str(created.number), str(order_state(created))

    async def _our_order(self, mapped: MappedOrder, customer: str) -> Order | None:
        """The Rackbeat order an earlier attempt made for this order, None if none (another
        shop's order of the same name, or one typed in by hand, is not it)."""
        for existing in await self.rackbeat.orders_by_reference(mapped.reference):
            if is_our_order(existing, mapped.reference, shop=self.store.shop, customer=customer):
                return existing
        return None

    async def _forget_customer(self, mapped: MappedOrder, customer: str) -> None:
        """Rackbeat refused the customer (deleted there since we cached it): drop the
        cached e-mail → customer entry and send the order back to "seen", so that the next
        attempt resolves the customer again."""
        async with self.store.transaction() as tx:
            if mapped.customer.email is not None:
                await tx.execute(
                    "DELETE FROM customers WHERE shop = ? AND email = ? AND customer_number = ?",
                    (self.store.shop, mapped.customer.email, customer),
                )
            await tx.execute(
                "UPDATE order_ledger SET state = 'seen', customer_number = NULL "
                "WHERE shop = ? AND order_id = ? AND state = 'customer'",
                (self.store.shop, mapped.order_id),
            )
        self.log.warning("customer.refused", order=mapped.reference, customer=customer)

    def _explain_rejection(self, exc: ValidationError, mapped: MappedOrder) -> RecordError:
        """Turn a 422 on an order into the most specific reason code."""
        for field, messages in exc.fields.items():
            parts = field.split(".")
            if len(parts) >= 3 and parts[0] == "lines" and parts[1].isdigit() and parts[2] == "item_id":
                index = int(parts[1])
                sku = mapped.lines[index].item_id if index < len(mapped.lines) else "?"
                if sku == self.settings.sync_shipping_product:
                    return RecordError(
                        f"order {mapped.reference}: shipping product {sku!r} (SYNC_SHIPPING_PRODUCT) "
                        f"does not exist in Rackbeat: {' '.join(messages)}",
                        reason="NO_SHIPPING_PRODUCT",
                    )
                return RecordError(
                    f"order {mapped.reference}: SKU {sku!r} is not a Rackbeat product ({' '.join(messages)})",
                    reason="UNKNOWN_SKU",
                    subject=sku,
                )
        taken = number_taken(exc.fields)
        if taken is not None:
            return RecordError(
                f"order {mapped.reference}: Rackbeat already has an order number {mapped.number} "
                f"({' '.join(taken)})",
                reason="NUMBER_TAKEN",
            )
        if "customer_id" in exc.fields:
            return RecordError(
                f"order {mapped.reference}: Rackbeat refused its customer ({' '.join(exc.fields['customer_id'])}); "
                "the customer is looked up again on the next attempt",
                reason="REJECTED",
            )
        return RecordError(f"order {mapped.reference}: Rackbeat refused it: {exc}", reason="REJECTED")

    async def _book(self, number: str) -> None:
        async def book() -> bool:
            await self.rackbeat.book_order(number, send_mail=self.settings.sync_send_order_confirmation)
            return True

        await self._step("book", number, book)

    async def _ship(self, number: str) -> None:
        async def ship() -> bool:
            await self.rackbeat.create_shipment(number)
            return True

        await self._step("create-shipment", number, ship)

    async def _step(self, step: OrderStep, number: str, send: Callable[[], Awaitable[bool]]) -> None:
        """Book or ship the order once: a lost answer is settled by reading the order's
        flags; a refusal (422) is no error when the flags show the step done (our earlier
        attempt landed before a crash)."""

        async def landed() -> bool | None:
            return True if step_already_done(step, await self.rackbeat.get_order(number)) else None

        try:
            await settle_write(send, landed, what=f"{step} order {number}")
        except ValidationError:
            if await landed():
                return
            raise

    async def _park_for_a_person(self, name: str, exc: RecordError) -> None:
        """Park a finished order for a person to act on (its ledger row is left as it is):
        no automatic retries; ``rackbeat-shopify retry KEY`` clears it."""
        async with self.store.transaction(self.clock()) as tx:
            await tx.park(FLOW, name, exc.reason, str(exc), manual=True)
        self.metrics.count(FLOW, f"parked_{exc.reason.lower()}")
        self.log.warning("order.parked", order=name, reason=exc.reason, detail=str(exc))

    async def _park(self, order: Mapping[str, Any], name: str, exc: RecordError) -> None:
        """Park the order (its ledger row keeps its demand, so its stock stays held)."""
        order_id = str(order.get("id") or name)
        # the units it sold stay held back, whatever keeps the order from being mapped
        demand = json.dumps(order_demand(order), sort_keys=True)
        now = iso(self.clock())
        async with self.store.transaction(self.clock()) as tx:  # the backoff runs on our clock
            await tx.execute(
                "INSERT INTO order_ledger (shop, order_id, order_name, state, demand, shopify_updated_at, "
                "created_at, updated_at) VALUES (?, ?, ?, 'seen', ?, ?, ?, ?) ON CONFLICT (shop, order_id) "
                "DO UPDATE SET shopify_updated_at = excluded.shopify_updated_at, "
                "demand = COALESCE(excluded.demand, demand), updated_at = excluded.updated_at",
                (self.store.shop, order_id, name, demand, str(order.get("updatedAt") or ""), now, now),
            )
            await tx.park(
                FLOW, name, exc.reason, str(exc), subject=exc.subject, manual=advice_for(exc.reason).manual
            )
        self.metrics.count(FLOW, f"parked_{exc.reason.lower()}")
        self.log.warning("order.parked", order=name, reason=exc.reason, detail=str(exc))
