"""Incremental reads of Shopify that pay for a change once (issue 16).

Orders, the SKU index and the products flow each read what changed since their cursor
(Singer's *bookmark*: the ``updatedAt`` up to which every record is applied). Shopify's
search index lags behind writes, so a record updated at ``t`` may only show up in an
``updated_at:>=`` search some time after ``t``: a read that began at ``started`` may move
the bookmark no further than ``started −`` :data:`OVERLAP` (the *signpost*), and every
read goes over the last five minutes again. Reading those records again in full, every
cycle, made a bulk edit of 10,000 products cost 1,250 pages of full products per cycle
for five minutes.

So a read (:meth:`ChangeFeed.changes`) has two passes, one page at a time:

1. the cheap pass lists the ``id`` and ``updatedAt`` of the records changed since the
   bookmark (``ORDER_STAMPS``/``PRODUCT_STAMPS``: 250 a page, about one point each);
2. only the records not yet applied at that ``updatedAt`` are read in full, by id
   (``nodes(ids:)``), and handed to the flow; once it has applied them, their versions
   are committed to ``applied_versions`` (per stream), and after the page the bookmark
   moves as far as the page's latest ``updatedAt``, never past the signpost.

Listing the whole overlap every cycle would still cost 40 requests a cycle for five
minutes after a bulk edit of 10,000 products. Most changes show up in the search within
seconds, so a products pass lists from :data:`QUICK_OVERLAP` before the previous pass
began, and only at least every :data:`WHOLE_EVERY` (and first after a start) the *whole*
overlap from the bookmark. Every orders pass is whole: the stock flow counts every order
the search shows when its cycle begins, however late it showed up. A record that shows up
late in the search index is still read: a whole pass lists it while the bookmark is
before it (the bookmark never passes the signpost of the last whole pass: the moment it
began, less the overlap), and its version is unknown. A record is read in full once per
change — twice at most when it changed within :data:`VERSION_MARGIN` of its reading (then
its version is not trusted: Shopify's ``updatedAt`` has seconds precision, so a second
change within the same second would look like the first).

A read may stop early (``budget``: the stock flow's refresh of the SKU index must not hold
up its push): the feed remembers how far the pass got (in memory) and the next read goes
on from there with full pages, under the first read's signpost; the bookmark only ever
moves as described above. A restart loses that place, which costs at most a cheap pass.

State invariant (:mod:`daemon.store`): a cursor never passes a record whose outcome is not
committed, and applying a record again is harmless. Here: a record's version is
committed only after the flow has applied it and got control back (an exception, or a
stop, leaves it unrecorded and it is read again); the bookmark moves only after every
record of the page is applied, and never past the signpost; versions older than any
read can list (the bookmark less the overlap) are deleted with its move.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from daemon import shopify_documents as docs
from daemon.errors import MalformedResponse
from daemon.shopify import ShopifyClient
from daemon.store import Store, Transaction
from daemon.times import iso, parse_time

#: the bound on Shopify's search lag (and clock skew): a read moves its bookmark no closer
#: than this to the moment it began
OVERLAP = timedelta(minutes=5)
#: most changes show up in Shopify's search within seconds: a pass lists from this long
#: before the previous one began …
QUICK_OVERLAP = timedelta(seconds=30)
#: … and at least this often the whole overlap from the bookmark (a *whole* pass)
WHOLE_EVERY = timedelta(minutes=1)
#: a read with a budget also stops after listing this many records per record of its budget:
#: a listed record costs a point, one read in full about six (a bulk edit of 10,000 products
#: costs 10,000 points to list, 100 s of a Standard plan's bucket)
LISTED_PER_READ = 5
#: a version read this close to its ``updatedAt`` is not recorded (read again next time):
#: Shopify's ``updatedAt`` has seconds precision, and our clock and Shopify's differ a little
VERSION_MARGIN = timedelta(seconds=2)

#: the cheap pass: ``(since, first)`` → pages of ``{id, updatedAt}``, oldest first, the first
#: of ``first`` (the guess of how many there are), each after a full one twice as large
Stamps = Callable[[datetime, int], AsyncGenerator[list[dict[str, Any]], None]]
#: the full records of these ids, in that order (deleted ones left out)
Fetch = Callable[[Sequence[str]], Awaitable[list[dict[str, Any]]]]


def updated_at(record: Mapping[str, Any], what: str) -> datetime:
    """A record's ``updatedAt`` (MalformedResponse, naming ``what``, when it has none)."""
    value = record.get("updatedAt")
    if not isinstance(value, str):
        raise MalformedResponse(f"{what} {record.get('id')} without updatedAt")
    try:
        return parse_time(value)
    except ValueError:
        raise MalformedResponse(f"{what} {record.get('id')}: updatedAt {value!r} is not a time") from None


@dataclass
class _Pass:
    """A cheap pass: where it lists from (and goes on, after stopping at its budget), when
    it began, its signpost, and whether it lists the whole overlap."""

    signpost: datetime
    since: datetime
    started: datetime
    whole: bool
    resumed: bool = False


class Versions:
    """The versions of one stream's records that were applied (``applied_versions``)."""

    def __init__(self, store: Store, stream: str) -> None:
        self.store = store
        self.stream = stream

    async def unapplied(self, stamps: Sequence[tuple[str, datetime]]) -> list[str]:
        """The ids among ``stamps`` not applied at (or after) their ``updatedAt``, in order."""
        if not stamps:
            return []
        ids = [record_id for record_id, _ in stamps]
        marks = ",".join("?" * len(ids))
        rows = await self.store.fetchall(
            f"SELECT record_id, updated_at FROM applied_versions WHERE shop = ? AND stream = ? AND record_id IN ({marks})",  # noqa: S608  # placeholders only
            (self.store.shop, self.stream, *ids),
        )
        applied = {str(record_id): str(version) for record_id, version in rows}
        return [i for i, when in stamps if i not in applied or applied[i] < iso(when)]

    async def record(self, versions: Iterable[tuple[str, datetime]], read_at: datetime) -> None:
        """Commit that these versions, read at ``read_at``, are applied; a version within
        :data:`VERSION_MARGIN` of ``read_at`` is left out (a later one recorded stays)."""
        trusted = read_at - VERSION_MARGIN
        rows = [
            (self.store.shop, self.stream, record_id, iso(when))
            for record_id, when in versions
            if when <= trusted
        ]
        if not rows:
            return
        async with self.store.transaction() as tx:
            await tx.executemany(
                "INSERT INTO applied_versions (shop, stream, record_id, updated_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (shop, stream, record_id) DO UPDATE SET "
                "updated_at = MAX(updated_at, excluded.updated_at)",
                rows,
            )

    async def forget(self, tx: Transaction, record_ids: Iterable[str]) -> None:
        """Inside ``tx``: forget that these records were applied (the next read lists them
        again if the bookmark has not passed them)."""
        await tx.executemany(
            "DELETE FROM applied_versions WHERE shop = ? AND stream = ? AND record_id = ?",
            [(self.store.shop, self.stream, record_id) for record_id in record_ids],
        )

    async def advance(self, cursor_key: str, to: datetime) -> None:
        """Move the stream's bookmark to ``to`` (see :meth:`moved`)."""
        async with self.store.transaction() as tx:
            await tx.set_cursor(cursor_key, iso(to))
            await self.moved(tx, to)

    async def moved(self, tx: Transaction, to: datetime) -> None:
        """Inside the transaction that moves the bookmark to ``to``: forget the versions no
        read lists any more (one older than what a read lists is of a record that changed
        since). A read may go back :data:`OVERLAP` before its bookmark (the products flow's
        does), and the search filter has seconds precision: kept that far, and a second."""
        await tx.execute(
            "DELETE FROM applied_versions WHERE shop = ? AND stream = ? AND updated_at < ?",
            (self.store.shop, self.stream, iso(to - OVERLAP - timedelta(seconds=1))),
        )


class ChangeFeed:
    """One stream's incremental read (see the module docstring).

    ``stream`` names its versions; ``cursor_key`` is its bookmark in the cursors table;
    ``stamps`` and ``fetch`` are the two passes (:meth:`ShopifyClient.stamps_since`, and
    ``orders_by_ids``/``products_by_ids``); ``batch``: ids read in full per request;
    ``quick``: passes between whole ones may list only the last :data:`QUICK_OVERLAP` (not
    for orders: the stock flow counts every order Shopify's search shows when its cycle
    begins, however late it showed up).
    """

    def __init__(
        self,
        store: Store,
        stream: str,
        *,
        cursor_key: str,
        stamps: Stamps,
        fetch: Fetch,
        batch: int,
        what: str,
        clock: Callable[[], datetime],
        quick: bool = True,
    ) -> None:
        self.versions = Versions(store, stream)
        self.quick = quick
        self.cursor_key = cursor_key
        self._stamps = stamps
        self._fetch = fetch
        self.batch = batch
        self.what = what
        self.clock = clock
        self._pass: _Pass | None = None
        #: when the last complete pass, and the last complete whole pass, began
        self._last: datetime | None = None
        self._last_whole: datetime | None = None
        #: how many records the last complete pass of each kind (whole or not) listed: the
        #: next one's first page asks for about that many
        self._listed = {True: 0, False: 0}
        #: the last read stopped at its budget with records to go
        self.more = False

    async def changes(
        self,
        cursor: datetime,
        *,
        budget: int | None = None,
        hold: Callable[[], Awaitable[bool]] | None = None,
    ) -> AsyncGenerator[list[dict[str, Any]], None]:
        """Yield the records changed since ``cursor`` (the stored bookmark) that are not
        applied yet, a batch at a time, oldest first; commit each batch's versions when the
        caller asks for the next, and the bookmark after each page.

        ``budget``: stop after the page in which this many records were read in full, or
        :data:`LISTED_PER_READ` times as many listed (:attr:`more` says so); the next read
        goes on where this one stopped. A caller that
        stops early closes the generator: the batch in hand is then read again next time.

        ``hold``: awaited before the bookmark moves; True keeps it where it is this time (it
        may raise to stop the read: the orders flow's error-storm check, :mod:`daemon.storm`).
        """
        if self._pass is None or cursor > self._pass.since:
            self._pass = self._new_pass(cursor)
        current = self._pass
        listed_before = self._listed[current.whole]
        # a pass that goes on knows there is more: full pages
        first = (
            docs.STAMPS_PAGE_SIZE if current.resumed else min(docs.STAMPS_PAGE_SIZE, 2 * listed_before + 1)
        )
        self.more = False
        read = listed = 0
        pages = self._stamps(current.since, first)
        async with contextlib.aclosing(pages):
            async for page in pages:
                stamps = [(self._id(node), updated_at(node, self.what)) for node in page]
                listed += len(stamps)
                wanted = await self.versions.unapplied(stamps)
                for start in range(0, len(wanted), self.batch):
                    reading = self.clock()
                    records = await self._fetch(wanted[start : start + self.batch])
                    if records:
                        yield records
                    read += len(records)
                    await self.versions.record(
                        ((self._id(r), updated_at(r, self.what)) for r in records), reading
                    )
                if stamps:
                    last = max(when for _, when in stamps)
                    current.since = max(current.since, last)
                    if min(last, current.signpost) > cursor and await self._may_move(hold):
                        cursor = min(last, current.signpost)
                        await self.versions.advance(self.cursor_key, cursor)
                if budget is not None and (read >= budget or listed >= budget * LISTED_PER_READ):
                    self.more = current.resumed = True
                    return
        self._pass = None
        self._listed[current.whole] = listed
        self._last = current.started
        if current.whole:
            self._last_whole = current.started
        # every page is in: the bookmark may trail by the lag only
        if current.signpost > cursor and await self._may_move(hold):
            await self.versions.advance(self.cursor_key, current.signpost)

    async def _may_move(self, hold: Callable[[], Awaitable[bool]] | None) -> bool:
        """Whether the bookmark may move now (``hold``, see :meth:`changes`). When ``hold``
        raises, the next read starts over from the bookmark: the pass's records listed so
        far are listed again."""
        if hold is None:
            return True
        try:
            return not await hold()
        except BaseException:
            self._pass = None
            raise

    def _new_pass(self, cursor: datetime) -> _Pass:
        """A whole pass (from the bookmark) when none ran for :data:`WHOLE_EVERY`, else a
        quick one: from :data:`QUICK_OVERLAP` before the last pass began. A quick pass's
        signpost is the last whole pass's: only what was visible to that one was listed."""
        now = self.clock()
        last, whole_at = self._last, self._last_whole
        if not self.quick or last is None or whole_at is None or now - whole_at >= WHOLE_EVERY:
            return _Pass(signpost=now - OVERLAP, since=cursor, started=now, whole=True)
        since = max(cursor, last - QUICK_OVERLAP)
        return _Pass(signpost=whole_at - OVERLAP, since=since, started=now, whole=False)

    def _id(self, record: Mapping[str, Any]) -> str:
        value = record.get("id")
        if not isinstance(value, str):
            raise MalformedResponse(f"a {self.what} without id")
        return value


def shopify_feed(
    store: Store,
    shopify: ShopifyClient,
    kind: Literal["orders", "products"],
    *,
    stream: str,
    clock: Callable[[], datetime],
) -> ChangeFeed:
    """The feed of Shopify's ``kind`` for ``stream``, whose bookmark is the cursor of the
    same name: listed with ``ORDER_STAMPS``/``PRODUCT_STAMPS``, read by id in batches of a
    page of the full document. Orders are listed whole every pass (see ``quick``)."""
    fetch: Fetch = shopify.orders_by_ids if kind == "orders" else shopify.products_by_ids
    batch = docs.ORDERS_PAGE_SIZE if kind == "orders" else docs.PRODUCTS_PAGE_SIZE
    return ChangeFeed(
        store,
        stream,
        cursor_key=stream,
        stamps=lambda since, first: shopify.stamps_since(kind, since, first=first),
        fetch=fetch,
        batch=batch,
        what=kind.removesuffix("s"),
        clock=clock,
        quick=kind == "products",
    )
