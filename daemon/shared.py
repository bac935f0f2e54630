"""What the shops of one Rackbeat account share in one process, besides the budget.

- :class:`StockReads`: Rackbeat's stock as every shop's stock flow reads it. With one
  shop it streams straight from the client. With several, **one scan serves every shop**:
  a cycle that asks for the scan joins one that started after the cycle read its order
  ledger marker (so no order booked in between is missed: the scan is what Rackbeat
  reserved after the marker), and the first to ask waits a moment (``gather``) for the
  other shops' cycles before it starts one. Per-location reads (S10 as a list) made
  after the same scan are shared too. Each complete scan also leaves a
  :class:`ScanSummary` (when it started, the newest ``updated_at`` in it): the products
  flow reads Rackbeat's product details only when it shows a change.
- :class:`SharedChanges`: a list of Rackbeat's changes — products changed (S13 =
  rackbeat), orders updated — read once for every shop that asks within a short window:
  a shop joins a read whose lower bound is not after its own, and moves its cursor only
  as far as that read's start.
- :class:`KeyedLocks`: one lock per key across shops (one Rackbeat customer per e-mail,
  however many shops sell to it at the same moment).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Hashable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Generic, NamedTuple, TypeVar

import anyio

from daemon.rackbeat import LocationStock, RackbeatClient, StockTotals

T = TypeVar("T")


@dataclass(frozen=True)
class ScanSummary:
    """What one complete stock scan tells about product changes: when it started (UTC) and
    the newest ``updated_at`` of any product in it; ``undated``: some product had none."""

    started: datetime
    newest: datetime | None
    undated: bool

    def changed_since(self, moment: datetime) -> bool:
        """True when some product was updated at or after ``moment`` (or may have been:
        one without ``updated_at``)."""
        return self.undated or (self.newest is not None and self.newest >= moment)


@dataclass
class _Scan:
    """One scan of every product's totals, shared by the cycles that joined it."""

    started: float
    done: anyio.Event = field(default_factory=anyio.Event)
    pages: list[list[StockTotals]] | None = None
    #: per-location reads made after this scan, by (what, product number)
    reads: dict[tuple[str, str], _Once] = field(default_factory=dict)


class _Once:
    """The outcome of one read, awaited by everyone who asked for it."""

    def __init__(self) -> None:
        self.done = anyio.Event()
        self.value: Any = None
        self.error: Exception | None = None
        #: the first reader was cancelled (a stop): the others read for themselves
        self.abandoned = False

    async def get(self, read: Callable[[], Awaitable[Any]], *, first: bool) -> Any:
        if first:
            try:
                self.value = await read()
            except Exception as exc:
                self.error = exc
                raise
            except BaseException:
                self.abandoned = True
                raise
            finally:
                self.done.set()
            return self.value
        await self.done.wait()
        if self.abandoned:
            return await read()
        if self.error is not None:
            raise self.error
        return self.value


class StockReads:
    """Rackbeat's stock for the stock flows of ``shops`` shops (see the module docstring)."""

    def __init__(
        self,
        rackbeat: RackbeatClient,
        *,
        shops: int = 1,
        gather: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        """``clock`` (monotonic) orders scans and cycles; ``now`` (UTC) stamps each
        :class:`ScanSummary` on the clock the products flow keeps its cursor by."""
        self.rackbeat = rackbeat
        self.shops = shops
        self.gather = gather
        self.clock = clock
        self.now = now
        #: scans started so far (for tests and the bench)
        self.scans = 0
        #: the latest complete scan's summary (None until one completes)
        self.latest_summary: ScanSummary | None = None
        self._latest: _Scan | None = None
        self._running: _Scan | None = None
        self._gathering: anyio.Event | None = None
        self._arrived = 0
        self._lock = anyio.Lock()

    async def totals(
        self, since: float, on_total: Callable[[int], None] | None = None
    ) -> AsyncGenerator[list[StockTotals]]:
        """Every product's totals, page by page, from a scan that started at or after
        ``since`` (this process's monotonic clock)."""
        if self.shops <= 1:
            self.scans += 1
            pages = self._summarised(on_total)
            async with contextlib.aclosing(pages):
                async for page in pages:
                    yield page
            return
        scan = await self._scan(since, on_total)
        for page in scan.pages or ():
            yield page

    async def product_locations(self, since: float, number: str) -> list[LocationStock]:
        """:meth:`RackbeatClient.product_locations`, shared after one scan."""
        result: list[LocationStock] = await self._shared(
            since, ("locations", number), lambda: self.rackbeat.product_locations(number)
        )
        return result

    async def available_per_location(self, since: float, number: str) -> dict[str, Decimal | None]:
        """:meth:`RackbeatClient.available_per_location`, shared after one scan."""
        result: dict[str, Decimal | None] = await self._shared(
            since, ("available", number), lambda: self.rackbeat.available_per_location(number)
        )
        return result

    async def _shared(self, since: float, key: tuple[str, str], read: Callable[[], Awaitable[Any]]) -> Any:
        scan = self._latest
        if self.shops <= 1 or scan is None or scan.started < since:
            return await read()
        once = scan.reads.get(key)
        first = once is None
        if once is None:
            once = scan.reads[key] = _Once()
        return await once.get(read, first=first)

    async def _scan(self, since: float, on_total: Callable[[int], None] | None) -> _Scan:
        while True:
            async with self._lock:
                latest, running = self._latest, self._running
                if latest is not None and latest.started >= since:
                    return latest
                lead = running is None and self._gathering is None
                if lead:
                    self._gathering, self._arrived = anyio.Event(), 1
                    gathering = self._gathering
                elif running is None and self._gathering is not None:
                    gathering = self._gathering
                    self._arrived += 1
                    if self._arrived >= self.shops:
                        gathering.set()
            if running is not None:
                # one is running: join it if it started after our marker, else wait for the next
                await running.done.wait()
                if running.pages is not None and running.started >= since:
                    return running
                continue
            if not lead:
                await gathering.wait()
                continue  # the leader has started its scan (or failed to)
            try:
                with anyio.move_on_after(self.gather):
                    await gathering.wait()
            except BaseException:
                # stopped while gathering: let another cycle lead
                if self._gathering is gathering:
                    self._gathering = None
                gathering.set()
                raise
            return await self._run(on_total)

    async def _run(self, on_total: Callable[[int], None] | None) -> _Scan:
        async with self._lock:
            self.scans += 1
            scan = _Scan(self.clock())
            self._running = scan
            gathering, self._gathering = self._gathering, None
        if gathering is not None:
            gathering.set()  # the others now wait for the scan itself
        try:
            pages = self._summarised(on_total)
            async with contextlib.aclosing(pages):
                scan.pages = [page async for page in pages]
            self._latest = scan
        finally:
            self._running = None
            scan.done.set()
        return scan

    async def _summarised(self, on_total: Callable[[int], None] | None) -> AsyncGenerator[list[StockTotals]]:
        """The scan's pages; once all have passed, :attr:`latest_summary` is this scan's."""
        started = self.now()
        newest: datetime | None = None
        undated = False
        pages = self.rackbeat.stock_totals(on_total=on_total)
        async with contextlib.aclosing(pages):
            async for page in pages:
                for total in page:
                    if total.updated_at is None:
                        undated = True
                    elif newest is None or total.updated_at > newest:
                        newest = total.updated_at
                yield page
        self.latest_summary = ScanSummary(started, newest, undated)


class Changes(NamedTuple, Generic[T]):
    """What :meth:`SharedChanges.read` gives: the pages, the lower bound they were read
    with (a joined read's may be earlier than the asker's own), and when that read started
    (the asker's cursor must not pass it)."""

    started: datetime
    since: datetime
    pages: AsyncGenerator[list[T]]


@dataclass
class _ChangesRead(Generic[T]):
    """One read of a Rackbeat list, shared by the shops that joined it."""

    since: datetime
    started: datetime
    began: float
    done: anyio.Event = field(default_factory=anyio.Event)
    pages: list[list[T]] | None = None
    #: who has this read's pages (a reader never gets the same read twice)
    readers: set[Hashable] = field(default_factory=set)


class SharedChanges(Generic[T]):
    """One Rackbeat list of changes (products changed, orders updated) for the flows of
    ``shops`` shops (see the module docstring). With one shop the pages stream straight
    through."""

    def __init__(
        self, *, shops: int = 1, window: float = 0.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.shops = shops
        self.window = window
        self.clock = clock
        #: reads made so far (for tests and the bench)
        self.reads = 0
        self._latest: _ChangesRead[T] | None = None

    async def read(
        self,
        reader: Hashable,
        since: datetime,
        started: datetime,
        fetch: Callable[[datetime], AsyncGenerator[list[T]]],
    ) -> Changes[T]:
        """Pages of the records changed at or after ``since``, and the moment the read
        that found them started (the asking cycle's ``started``, or the earlier one of the
        read it joined: its cursor must not pass that). ``reader`` (the asking flow) joins
        a read of another shop's, never one it had already."""
        if self.shops <= 1:
            self.reads += 1
            return Changes(started, since, fetch(since))
        latest = self._latest
        if (
            latest is not None
            and reader not in latest.readers
            and latest.since <= since
            and self.clock() - latest.began <= self.window
        ):
            latest.readers.add(reader)
            await latest.done.wait()
            if latest.pages is not None:
                return Changes(latest.started, latest.since, _replay(latest.pages))
        self.reads += 1
        read = _ChangesRead[T](since, started, self.clock(), readers={reader})
        self._latest = read
        try:
            pages = fetch(since)
            async with contextlib.aclosing(pages):
                read.pages = [page async for page in pages]
        finally:
            read.done.set()
            if read.pages is None and self._latest is read:
                self._latest = None
        return Changes(started, since, _replay(read.pages))


async def _replay(pages: list[list[T]]) -> AsyncGenerator[list[T]]:
    for page in pages:
        yield page


class KeyedLocks:
    """One :class:`anyio.Lock` per key, forgotten when nobody holds or waits for it."""

    def __init__(self) -> None:
        self._locks: dict[Hashable, tuple[anyio.Lock, int]] = {}

    @asynccontextmanager
    async def hold(self, key: Hashable) -> AsyncIterator[None]:
        """Hold ``key``'s lock for the block."""
        lock, users = self._locks.get(key, (anyio.Lock(), 0))
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users <= 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)
