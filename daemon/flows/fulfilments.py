"""Rackbeat shipments → Shopify fulfilments with tracking, exactly once.

Read: Rackbeat's orders updated since the cursor
(:meth:`~daemon.rackbeat.RackbeatClient.changed_orders`: one list request per cycle however
many orders are open, one more per 100 orders updated since — shipped ones, and those the
daemon itself made or booked meanwhile), of which the flow keeps those flagged shipped or
partly shipped. An order the order ledger does not know (another shop's, one typed in by
hand) costs nothing more, nor does one whose ``updated_at`` was acted on already. For the
others: the order's shipments (one Rackbeat read: lines, carrier, tracking) and its
Shopify fulfillment orders (one Shopify read). Decide: :mod:`daemon.fulfilment_decision`. Write: one ``fulfillmentCreate`` per
Rackbeat shipment, with its tracking, or ``fulfillmentTrackingInfoUpdate`` when the
tracking came after the fulfilment. Commit: a row per shipment in ``fulfilments``, and the
ledger's ``fulfilment`` / ``shipped_seen``; the cursor after the whole list is read.

Exactly once. ``fulfillmentCreate`` takes no idempotency key, so the shipment's row is
committed as ``sending`` before the request goes out. What to send is always computed
from Shopify's ``remainingQuantity`` read just before (:func:`plan_fulfilment`), so a row
left ``sending`` by a crash, a timeout or a lost answer is settled by reading again: when
Shopify shows the units fulfilled, the send landed and is recorded; when not, it is sent
(a lost answer is settled at once, inside the cycle, :func:`daemon.retry.settle_write`;
a crash on the next cycle, which resumes every ``sending`` row first). Never more than
Rackbeat shipped, never an order Shopify had fulfilled already (by hand, by a 3PL, or
because ``SYNC_ORDER_TRIGGER=fulfilled`` transferred it fulfilled): that is recorded as
done without a request.

Not fulfilled, parked with advice: units sitting in a fulfillment order at another
location than the daemon's (FULFILMENT_ELSEWHERE), on hold (FULFILMENT_ON_HOLD; both
retried with backoff) or closed (FULFILMENT_CLOSED, for a person). An order cancelled in
Shopify is never fulfilled (the orders flow parks it, CANCELLED_AFTER_TRANSFER).

Detection. The list's filter is an assumption
(:func:`~daemon.rackbeat.changed_orders_params`). When an answer shows it ignored (an
order not updated since the cursor), the flow stops reading the list and reads back
instead: at most :data:`READ_BACKS_PER_CYCLE` open imported orders per cycle, least
recently checked first, one request each. ``status`` says which is used.

Only orders shipped from the first start with ``SYNC_FULFILMENTS`` on are fulfilled (and
those of the :data:`OVERLAP` before it): the cursor starts then, so shipments made before
(fulfilled by hand, as before) are left alone.

State invariant (:mod:`daemon.store`): a cursor never passes a record whose outcome is not
committed, and applying a record again is harmless. Here: the cursor moves after the
orders it covers are recorded, and a shipment's row (``done``) or Shopify's
``remainingQuantity`` makes a repeat a no-op.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog

from daemon.config import Settings
from daemon.errors import NotFoundError, RecordError, RetriableError, ThrottledError
from daemon.fulfilment_decision import Plan, ShipmentTarget, plan_fulfilment, shipment_targets
from daemon.metrics import Metrics
from daemon.rackbeat import Order, RackbeatClient, format_timestamp, parse_timestamp
from daemon.reasons import advice_for
from daemon.retry import settle_write
from daemon.shared import SharedChanges
from daemon.shopify import Fulfillment, OrderFulfilment, ShopifyClient, Tracking
from daemon.shutdown import Shutdown
from daemon.store import FULFILLED_IN_SHOPIFY, Store
from daemon.times import iso

log = structlog.get_logger("daemon.flows.fulfilments")

FLOW = "fulfilments"
#: the cursors-table key holding why shipped orders are found by reading orders back (set
#: when Rackbeat was seen to ignore the list's filters; absent: the lists are used)
DETECTION = "fulfilments.detection"
#: re-read this much before the cursor while it is new: an order saved in Rackbeat just
#: before a later one may become visible after it
OVERLAP = timedelta(minutes=2)
#: cursors-table keys: when (our clock) the cursor last moved, and when the last complete
#: scan started (the overlap is dropped once one started OVERLAP after the move)
MOVED, SCANNED = "fulfilments.moved", "fulfilments.scanned"
#: consecutive retriable failures of one order before it is parked (REPEATED_FAILURE), so
#: that one order Shopify or Rackbeat keeps failing on does not hold up the others
MAX_FAILURES = 5
#: with the read-back fall-back: open imported orders read back per cycle (one GET each) …
READ_BACKS_PER_CYCLE = 20
#: … each at most this often
READ_BACK_INTERVAL = timedelta(minutes=10)
#: the ledger's ``fulfilment`` of orders: every shipped unit fulfilled; some; none needed
DONE, PARTLY, NOT_NEEDED = "done", "partly", "not_needed"

_LEDGER = ("order_id", "order_name", "demand", "cancelled", "fulfilment", "shipped_seen")


def _tracking_json(tracking: Tracking | None) -> str | None:
    if not tracking:
        return None
    return json.dumps({"company": tracking.company, "number": tracking.number, "url": tracking.url})


class FulfilmentsFlow:
    """Fulfils Shopify orders that Rackbeat shipped; see the module docstring."""

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
        changes: SharedChanges[Order] | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        """``changes``: the list of orders updated since, as the account's shops share
        it, one read serving every shop."""
        self.settings = settings
        self.store = store
        self.shopify = shopify
        self.rackbeat = rackbeat
        self.metrics = metrics
        self.shutdown = shutdown
        self.clock = clock
        self.log = log.bind(flow=FLOW)
        #: consecutive retriable failures per order (a restart forgets them: it retries anyway)
        self._failures: dict[str, int] = {}
        self.changes = changes or SharedChanges[Order]()

    # --- the cycle ---------------------------------------------------------------------------

    async def run_once(self) -> int:
        """One cycle: orders in doubt or due after parking, then the shipped orders."""
        cursor = await self._cursor()
        applied = await self._resume()
        if await self.store.get_cursor(DETECTION) is None:
            applied += await self._scan(cursor)
        else:
            applied += await self._read_back()
        return applied

    async def _cursor(self) -> datetime:
        stored = await self.store.get_cursor(FLOW)
        if stored is not None:
            return parse_timestamp(stored)
        # First start: shipments from now on; earlier ones were fulfilled by hand.
        start = self.clock()
        async with self.store.transaction() as tx:
            await tx.set_cursor(FLOW, iso(start))
            await tx.set_cursor(MOVED, iso(start))
        self.log.info("fulfilments.cursor_initialised", since=iso(start))
        return start

    async def _scan(self, cursor: datetime) -> int:
        """Read the orders updated since the cursor (less the overlap while it is new),
        act on the shipped and partly shipped ones; move the cursor to the latest
        ``updated_at`` seen once every order in the list is recorded.

        The overlap is for an order saved just before the latest one but listed after it.
        Once a complete scan has started :data:`OVERLAP` after the cursor last moved, any
        such order has been listed, and the lists are read from the second after the cursor:
        a burst of shipments is not listed again every cycle until a newer one moves the
        cursor.
        """
        started = self.clock()
        moved = await self.store.get_cursor(MOVED)
        scanned = await self.store.get_cursor(SCANNED)
        settled = (
            moved is not None
            and scanned is not None
            and parse_timestamp(scanned) - parse_timestamp(moved) >= OVERLAP
        )
        # settled: every order of the cursor's second was listed already (the filter has seconds)
        since = cursor + timedelta(seconds=1) if settled else cursor - OVERLAP
        latest = cursor
        applied = 0
        # another shop's read may serve, made with a lower bound before ours
        _, bound, pages = await self.changes.read(
            self.store.shop, since, self.clock(), self.rackbeat.changed_orders
        )
        async with contextlib.aclosing(pages):
            async for page in pages:
                ignored = self._filter_ignored(page, bound)
                if ignored is not None:
                    await self._fall_back(ignored)
                    return applied
                for order in page:
                    # the others (made, booked …) have nothing to fulfil yet
                    if (order.is_shipped or order.is_partly_shipped) and await self.apply(order):
                        applied += 1
                    if order.updated_at is not None:
                        latest = max(latest, order.updated_at)
                if self.shutdown.requested:
                    return applied
        async with self.store.transaction() as tx:
            if latest > cursor:
                await tx.set_cursor(FLOW, iso(latest))
                await tx.set_cursor(MOVED, iso(started))
            await tx.set_cursor(SCANNED, iso(started))
        return applied

    @staticmethod
    def _filter_ignored(page: list[Order], since: datetime) -> str | None:
        """Why an answer shows Rackbeat ignoring the list's filter, None when it does not."""
        for order in page:
            if order.updated_at is not None and order.updated_at < since - timedelta(seconds=1):
                return (
                    f"Rackbeat ignored updated_at_from={format_timestamp(since)} (order {order.number} "
                    f"was updated {format_timestamp(order.updated_at)})"
                )
        return None

    async def _fall_back(self, why: str) -> None:
        async with self.store.transaction() as tx:
            await tx.set_cursor(DETECTION, why)
        self.log.warning(
            "fulfilments.detection_fallback", reason=why, read_backs_per_cycle=READ_BACKS_PER_CYCLE
        )

    async def _read_back(self) -> int:
        """The fall-back: read back a few open imported orders, least recently checked first."""
        rows = await self.store.fetchall(
            "SELECT rackbeat_number FROM order_ledger WHERE shop = ? AND rackbeat_number IS NOT NULL "
            "AND cancelled = 0 AND COALESCE(fulfilment, '') NOT IN (?, ?, ?) "
            "AND COALESCE(rackbeat_state, '') NOT IN ('draft', 'cancelled', 'deleted') "
            "AND (checked_at IS NULL OR checked_at <= ?) ORDER BY COALESCE(checked_at, ''), order_name LIMIT ?",
            (
                self.store.shop,
                DONE,
                NOT_NEEDED,
                FULFILLED_IN_SHOPIFY,
                iso(self.clock() - READ_BACK_INTERVAL),
                READ_BACKS_PER_CYCLE,
            ),
        )
        applied = 0
        for (number,) in rows:
            try:
                order = await self.rackbeat.get_order(str(number))
            except NotFoundError:
                order = None
            async with self.store.transaction() as tx:
                await tx.execute(
                    "UPDATE order_ledger SET checked_at = ? WHERE shop = ? AND rackbeat_number = ?",
                    (iso(self.clock()), self.store.shop, number),
                )
            if (
                order is not None
                and (order.is_shipped or order.is_partly_shipped)
                and await self.apply(order)
            ):
                applied += 1
        return applied

    async def _resume(self) -> int:
        """Orders with a shipment left ``sending`` (a crash), and parked orders now due."""
        names = [p.key for p in await self.store.due_parked(FLOW, self.clock())]
        parked = {p.key for p in await self.store.parked(FLOW)}
        in_doubt = await self.store.fetchall(
            "SELECT DISTINCT l.order_name FROM fulfilments f JOIN order_ledger l "
            "ON l.shop = f.shop AND l.order_id = f.order_id WHERE f.shop = ? AND f.state = 'sending'",
            (self.store.shop,),
        )
        names += [str(name) for (name,) in in_doubt if name not in parked and name not in names]
        applied = 0
        for name in names:
            number = await self.store.fetchval(
                "SELECT rackbeat_number FROM order_ledger WHERE shop = ? AND order_name = ?",
                (self.store.shop, name),
            )
            try:
                order = await self.rackbeat.get_order(str(number))
            except NotFoundError:
                # deleted in Rackbeat since: nothing more will ship; a send in doubt stays as it is
                async with self.store.transaction() as tx:
                    await tx.unpark(FLOW, name)
                    await tx.execute(
                        "UPDATE fulfilments SET state = 'abandoned', note = ? WHERE shop = ? AND state = 'sending' "
                        "AND order_id = (SELECT order_id FROM order_ledger WHERE shop = ? AND order_name = ?)",
                        (f"Rackbeat order {number} was deleted", self.store.shop, self.store.shop, name),
                    )
                self.log.warning("fulfilment.abandoned", order=name, rackbeat_order=number)
                continue
            if await self.apply(order, again=True):
                applied += 1
        return applied

    # --- one order -------------------------------------------------------------------------------

    async def apply(self, order: Order, *, again: bool = False) -> bool:
        """Fulfil what Rackbeat shipped of one order; True when Shopify was written.
        ``again``: act even if this ``updated_at`` was acted on (a retry)."""
        row = await self.store.fetchone(
            f"SELECT {', '.join(_LEDGER)} FROM order_ledger WHERE shop = ? AND rackbeat_number = ?",  # noqa: S608  # fixed column names
            (self.store.shop, order.number),
        )
        if row is None:
            return False  # not this shop's order (or one typed in by hand)
        ledger = dict(zip(_LEDGER, row, strict=True))
        seen = iso(order.updated_at) if order.updated_at else None
        if not again and seen is not None and ledger["shipped_seen"] == seen:
            return False
        name = str(ledger["order_name"])
        if not again and await self.store.fetchval(
            "SELECT 1 FROM parked WHERE shop = ? AND flow = ? AND key = ?", (self.store.shop, FLOW, name)
        ):
            return False  # tried again when due (or cleared by a person)
        if ledger["cancelled"] or ledger["fulfilment"] == FULFILLED_IN_SHOPIFY:
            await self._record(ledger, order, ledger["fulfilment"] or NOT_NEEDED)
            return False
        try:
            written, state = await self._fulfil(order, ledger)
        except RecordError as exc:
            await self._park(name, exc)
            return False
        except ThrottledError:
            raise  # the API's budget, not this order
        except RetriableError as exc:
            failures = self._failures[name] = self._failures.get(name, 0) + 1
            if failures < MAX_FAILURES:
                raise  # retried with the whole cycle: most such errors pass
            del self._failures[name]
            await self._park(
                name,
                RecordError(
                    f"order {name}: failed {MAX_FAILURES} times in a row ({exc.kind}: {exc})",
                    reason="REPEATED_FAILURE",
                ),
            )
            return False
        self._failures.pop(name, None)
        await self._record(ledger, order, state)
        async with self.store.transaction() as tx:
            await tx.unpark(FLOW, name)
        return written

    async def _fulfil(self, order: Order, ledger: Mapping[str, Any]) -> tuple[bool, str]:
        """Bring Shopify up to every shipped shipment of ``order``; return whether Shopify
        was written and the order's ``fulfilment`` now."""
        name = str(ledger["order_name"])
        transferred = {k: int(v) for k, v in json.loads(ledger["demand"] or "{}").items()}
        shipments = await self.rackbeat.order_shipments(order.number)
        targets, note = shipment_targets(order, shipments, transferred)
        if note:
            self.log.info("fulfilment.waiting", order=name, rackbeat_order=order.number, note=note)
        rows = {
            str(shipment): (str(state), tracking, fulfillment_id)
            for shipment, state, tracking, fulfillment_id in await self.store.fetchall(
                "SELECT shipment, state, tracking, fulfillment_id FROM fulfilments WHERE shop = ? AND order_id = ?",
                (self.store.shop, ledger["order_id"]),
            )
        }
        current: OrderFulfilment | None = None
        written = False
        for target in targets:
            state, tracking, fulfillment_id = rows.get(target.shipment, (None, None, None))
            if state == DONE:
                if await self._add_tracking(name, ledger, target, tracking, fulfillment_id):
                    written = True
                continue
            if current is None:
                current = await self._shopify_order(ledger)
                if current is None:
                    return written, NOT_NEEDED  # cancelled in Shopify: the orders flow parks it
            plan = plan_fulfilment(target.units, current, await self.location())
            if plan.blocked is not None:
                reason, detail = plan.blocked
                raise RecordError(f"order {name}: {detail}", reason=reason)
            if plan.empty:
                await self._settled(ledger, target, current, in_doubt=state is not None)
                continue
            await self._send(ledger, target, plan)
            written = True
            current = None  # the next shipment is planned against Shopify as it is now
        complete = order.is_shipped and note is None
        return written, DONE if complete else PARTLY

    async def _shopify_order(self, ledger: Mapping[str, Any]) -> OrderFulfilment | None:
        current = await self.shopify.order_fulfilment(str(ledger["order_id"]))
        if current is None:
            raise RecordError(
                f"order {ledger['order_name']} no longer exists in Shopify; nothing to fulfil",
                reason="NOT_FOUND",
            )
        return None if current.cancelled else current

    async def _send(self, ledger: Mapping[str, Any], target: ShipmentTarget, plan: Plan) -> None:
        """Record the intent, then ``fulfillmentCreate``; a lost answer is settled by
        reading Shopify's remaining quantities again."""
        name = str(ledger["order_name"])
        await self._save_shipment(ledger, target, "sending", units=plan.units)
        notify = self.settings.sync_fulfilment_notify_customer

        async def create() -> Fulfillment:
            return await self.shopify.fulfillment_create(plan.lines, tracking=target.tracking, notify=notify)

        async def landed() -> Fulfillment | None:
            fresh = await self.shopify.order_fulfilment(str(ledger["order_id"]))
            if fresh is None or not plan_fulfilment(target.units, fresh, await self.location()).empty:
                return None
            return _newest(fresh, target.tracking) or Fulfillment(
                id="", status="SUCCESS", tracking=Tracking()
            )

        fulfillment = await settle_write(create, landed, what=f"fulfil order {name}")
        await self._save_shipment(
            ledger, target, "done", units=plan.units, fulfillment_id=fulfillment.id or None
        )
        self.metrics.count(FLOW, "fulfilled")
        self.log.info(
            "order.fulfilled",
            order=name,
            shipment=target.shipment,
            units=sum(plan.units.values()),
            tracking=target.tracking.number if target.tracking else None,
        )

    async def _settled(
        self, ledger: Mapping[str, Any], target: ShipmentTarget, current: OrderFulfilment, *, in_doubt: bool
    ) -> None:
        """Shopify shows the shipment's units fulfilled: a send in doubt landed, or someone
        fulfilled them (by hand, a 3PL). Recorded without a request."""
        fulfillment = _newest(current, target.tracking) if in_doubt else None
        note = "the earlier send had landed" if in_doubt else "fulfilled in Shopify already"
        await self._save_shipment(
            ledger,
            target,
            DONE,
            units={},
            fulfillment_id=fulfillment.id if fulfillment else None,
            note=note,
            tracking_sent=bool(fulfillment),
        )
        self.metrics.count(FLOW, "settled" if in_doubt else "fulfilled_already")
        self.log.info("fulfilment.settled", order=ledger["order_name"], shipment=target.shipment, note=note)

    async def _add_tracking(
        self,
        name: str,
        ledger: Mapping[str, Any],
        target: ShipmentTarget,
        sent: str | None,
        fulfillment_id: str | None,
    ) -> bool:
        """Tracking Rackbeat got after the fulfilment was made: add it, once."""
        wanted = _tracking_json(target.tracking)
        if target.tracking is None or wanted == sent or not fulfillment_id:
            return False
        await self.shopify.fulfillment_tracking_update(
            fulfillment_id, target.tracking, notify=self.settings.sync_fulfilment_notify_customer
        )
        async with self.store.transaction() as tx:
            await tx.execute(
                "UPDATE fulfilments SET tracking = ?, updated_at = ? WHERE shop = ? AND order_id = ? AND shipment = ?",
                (wanted, iso(self.clock()), self.store.shop, ledger["order_id"], target.shipment),
            )
        self.metrics.count(FLOW, "tracking_added")
        self.log.info(
            "order.tracking_added", order=name, shipment=target.shipment, tracking=target.tracking.number
        )
        return True

    async def _save_shipment(
        self,
        ledger: Mapping[str, Any],
        target: ShipmentTarget,
        state: str,
        *,
        units: Mapping[str, int],
        fulfillment_id: str | None = None,
        note: str | None = None,
        tracking_sent: bool = True,
    ) -> None:
        now = iso(self.clock())
        async with self.store.transaction() as tx:
            await tx.execute(
                "INSERT INTO fulfilments (shop, order_id, shipment, state, lines, tracking, fulfillment_id, note, "
                "created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (shop, order_id, shipment) DO UPDATE SET state = excluded.state, "
                "lines = excluded.lines, tracking = excluded.tracking, fulfillment_id = excluded.fulfillment_id, "
                "note = excluded.note, updated_at = excluded.updated_at",
                (
                    self.store.shop,
                    ledger["order_id"],
                    target.shipment,
                    state,
                    json.dumps(dict(units), sort_keys=True),
                    _tracking_json(target.tracking) if tracking_sent else None,
                    fulfillment_id,
                    note,
                    now,
                    now,
                ),
            )

    async def _record(self, ledger: Mapping[str, Any], order: Order, fulfilment: str) -> None:
        """The order's ``fulfilment``, and the Rackbeat ``updated_at`` it was decided on."""
        async with self.store.transaction() as tx:
            await tx.execute(
                "UPDATE order_ledger SET fulfilment = ?, shipped_seen = ?, rackbeat_state = ?, updated_at = ? "
                "WHERE shop = ? AND order_id = ?",
                (
                    fulfilment,
                    iso(order.updated_at) if order.updated_at else None,
                    str(order.state),
                    iso(self.clock()),
                    self.store.shop,
                    ledger["order_id"],
                ),
            )

    async def _park(self, name: str, exc: RecordError) -> None:
        async with self.store.transaction(self.clock()) as tx:
            await tx.park(FLOW, name, exc.reason, str(exc), manual=advice_for(exc.reason).manual)
        self.metrics.count(FLOW, f"parked_{exc.reason.lower()}")
        self.log.warning("fulfilment.parked", order=name, reason=exc.reason, detail=str(exc))

    async def location(self) -> str:
        """The Shopify location the daemon fulfils from (:meth:`ShopifyClient.stock_location`)."""
        return await self.shopify.stock_location(self.settings.shopify_location_id)


def _newest(current: OrderFulfilment, tracking: Tracking | None) -> Fulfillment | None:
    """The fulfilment a send in doubt made: the newest with its tracking number (the newest
    of all when it had none)."""
    candidates = [
        f
        for f in current.fulfillments
        if tracking is None or not tracking.number or f.tracking.number == tracking.number
    ]
    return candidates[-1] if candidates else None
