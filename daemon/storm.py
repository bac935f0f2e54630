"""Error storms: when most records of a cycle fail the same way, the API is the problem.

A 404 on a per-record path means "this record is gone" — reasonable for one product,
wrong when every product of the cycle gets it: then the path (one of the Rackbeat facts
we could not prove, :mod:`daemon.rackbeat`) is wrong, and treating each failure as a
record problem would quietly stop the sync. A flow counts its per-record attempts and
failures in a :class:`StormWatch` (the failures keyed by path template and how they
failed, with what names the record masked: ``HTTP 404``, ``REJECTED: (HTTP 422) (field:
message)``, ``MALFORMED: order …: no quantity``); :meth:`StormWatch.storm` says whether one
kind of failure took at least :data:`STORM_SHARE` of at least :data:`STORM_MIN` attempts.
The flow then raises :class:`ApiProblem`: the runner fails the flow (``/healthz`` ``fail``
at once) with the path, the evidence and the ``check --live`` fact to run, while the failed
records are neither parked nor marked — they go through on the first cycle after the cause
is fixed.

The stock flow watches its per-location reads (a 404 leaves a product's figure unknown).
The orders and products flows watch the records they park for a reason that can be the
API's (:func:`failure_shape`: a 422 or refusal, a 404, a missing field — not an unknown SKU
or a missing e-mail) with a :class:`ParkGuard`, which decides before their cursor moves
past a page: while the failures so far could begin a storm (:meth:`StormWatch.undecided`)
the cursor waits (the feed's ``hold``, :meth:`daemon.incremental.ChangeFeed.changes`), and
on a storm the parks the cursor has not passed are taken back with their applied versions,
so the records are read again once it is fixed.

Fewer failures than that stay record problems, handled as the flow always did.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

from daemon import live_check as live
from daemon.errors import NotFoundError, RecordError, SyncError, ValidationError
from daemon.incremental import Versions
from daemon.store import Store

#: a storm needs at least this many attempts of the same kind in the cycle…
STORM_MIN = 5
#: …and this share of them failing the same way on the same path
STORM_SHARE = 0.8
#: records named as examples in the error
EXAMPLES = 3

#: the ``check --live`` fact that tests each path template
FACTS = {
    "/items/{n}/locations/available": live.LOCATION_STOCK,
    "/products/{n}/locations": live.LOCATION_STOCK,
    "/products/{n}": live.PRODUCT_FIELDS,
    "/orders/{n}": live.ORDER_FIELDS,
    "/orders/{n}/shipments": live.SHIPMENT_SHAPE,
    "/customers": live.CUSTOMER_EMAIL_SEARCH,
    "/orders/drafts": live.ORDER_FIELDS,
    "/products": live.PRODUCT_FIELDS,
}
#: parked reasons that may be the API's fault rather than the record's
_API_SHAPED = {ValidationError.reason, NotFoundError.reason, "MALFORMED"}
#: a request named in an error message (``POST /orders/drafts``)
_REQUEST = re.compile(r"\b(?:GET|POST|PUT|PATCH|DELETE) (/[^\s?:,()]*)")
#: what names one record in a message: quoted values, ``#1001``, words with digits (SKU-1, 1001)
_RECORD_BITS = re.compile(r"(HTTP \d+)|'[^']*'|\"[^\"]*\"|#[\w-]+|\b[\w-]*\d[\w-]*\b")


def path_template(path: str) -> str:
    """``/orders/1001/book`` → ``/orders/{n}/book``: a segment with a digit names a record."""
    return "/".join("{n}" if any(c.isdigit() for c in part) else part for part in path.split("/"))


def failure_shape(exc: RecordError) -> tuple[str, str] | None:
    """(path template, how it failed) of a record error that may be the API's fault — a 422
    or a refusal (``REJECTED``), a 404, a record without a field we need (``MALFORMED``) —
    with what names the record masked, so that the same failure on every record looks the
    same; None for the record's own problems (an unknown SKU, no e-mail, …)."""
    if exc.reason not in _API_SHAPED:
        return None
    text = str(exc)
    found = _REQUEST.search(text)
    path = path_template(found.group(1)) if found else ""
    if found:
        text = text[found.end() :]
    masked = _RECORD_BITS.sub(lambda m: m.group(1) or "…", text).strip(" :")
    return path, f"{exc.reason}: {masked}"


@dataclass(frozen=True)
class Storm:
    """One kind of failure that took most of a cycle's records."""

    path: str
    failure: str
    failed: int
    attempts: int
    examples: tuple[str, ...]

    @property
    def fact(self) -> str | None:
        """The ``check --live`` fact that tests :attr:`path` (None when there is none)."""
        return FACTS.get(self.path)

    def message(self) -> str:
        """What the runner shows on ``/healthz``, in the log and in ``status``."""
        examples = ", ".join(self.examples)
        check = f"; run `rackbeat-shopify check --live` (fact {self.fact})" if self.fact else ""
        return (
            f"{self.failure}{f' on {self.path}' if self.path else ''} for {self.failed} of "
            f"{self.attempts} records this cycle "
            f"(e.g. {examples}): an API problem, not the records; nothing parked, they go through "
            f"once it is fixed{check}"
        )


class ApiProblem(SyncError):
    """Most records of a cycle failed the same way on the same path (:class:`Storm`)."""

    kind = "api_problem"

    def __init__(self, storm: Storm) -> None:
        super().__init__(storm.message())
        self.storm = storm


@dataclass
class StormWatch:
    """A cycle's per-record attempts on one kind of call and how they failed."""

    attempts: int = 0
    failures: Counter[tuple[str, str]] = field(default_factory=Counter)
    #: the records that failed, by (path template, failure)
    records: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    #: records that failed in earlier cycles (parked): tried every cycle until they clear
    suspects: frozenset[str] = frozenset()
    #: the :attr:`suspects` that went through this cycle, or are gone
    cleared: set[str] = field(default_factory=set)

    def attempt(self) -> None:
        """One record tried."""
        self.attempts += 1

    def succeeded(self, record: str) -> None:
        """``record`` went through (or is gone): it no longer fails, if it was a suspect."""
        if record in self.suspects:
            self.cleared.add(record)

    def failed(self, path: str, failure: str, record: str) -> None:
        """One record failed: ``failure`` on the path template ``path``."""
        key = (path, failure)
        self.failures[key] += 1
        self.records.setdefault(key, []).append(record)

    def failed_records(self) -> dict[str, str]:
        """Every record that failed → how (``HTTP 404 on /products/{n}/locations``)."""
        return {r: f"{failure} on {path}" for (path, failure), rs in self.records.items() for r in rs}

    def undecided(self) -> bool:
        """Too few records tried yet to tell, and those that failed could begin a storm."""
        if self.attempts >= STORM_MIN or not self.failures:
            return False
        return self.failures.most_common(1)[0][1] >= STORM_SHARE * self.attempts

    def storm(self) -> Storm | None:
        """The failure that took most of the attempts, when it is a storm (else None)."""
        if self.attempts < STORM_MIN or not self.failures:
            return None
        (path, failure), count = self.failures.most_common(1)[0]
        if count < STORM_SHARE * self.attempts:
            return None
        return Storm(path, failure, count, self.attempts, tuple(self.records[(path, failure)][:EXAMPLES]))


class ParkGuard:
    """The storm check of a flow that parks the records it cannot apply and moves a cursor
    past them (orders, products): a :class:`StormWatch` of the running cycle, and the
    records it parked anew since its cursor last moved (record → id in ``versions``).

    :meth:`hold` goes to :meth:`daemon.incremental.ChangeFeed.changes` (or is asked before
    any cursor move): while the failures so far may begin a storm the cursor waits; on a
    storm the parks the cursor has not passed are taken back, with their applied versions
    (so the read lists them again), and :class:`ApiProblem` is raised.
    """

    def __init__(self, store: Store, flow: str, versions: Versions | None = None) -> None:
        self.store = store
        self.flow = flow
        self.versions = versions
        self.watch = StormWatch()
        self._unsettled: dict[str, str] = {}

    def begin(self) -> None:
        """A new cycle."""
        self.watch = StormWatch()
        self._unsettled = {}

    async def failed(self, exc: RecordError, record: str, record_id: str) -> None:
        """``record`` (``record_id`` in :attr:`versions`) failed with ``exc``; call before it
        is parked."""
        shape = failure_shape(exc)
        if shape is None:
            return
        self.watch.failed(*shape, record)
        if not await self.store.fetchval(
            "SELECT 1 FROM parked WHERE shop = ? AND flow = ? AND key = ?",
            (self.store.shop, self.flow, record),
        ):
            self._unsettled[record] = record_id

    async def check(self) -> None:
        """Before the cursor moves past the records tried so far (and at the cycle's end):
        raise :class:`ApiProblem` on a storm, its parks taken back; else those parks stay."""
        storm = self.watch.storm()
        if storm is None:
            self._unsettled.clear()
            return
        stormed = {
            record: self._unsettled[record]
            for record in self.watch.records[storm.path, storm.failure]
            if record in self._unsettled
        }
        async with self.store.transaction() as tx:
            for record in stormed:
                await tx.unpark(self.flow, record)
            if self.versions is not None:
                await self.versions.forget(tx, stormed.values())
        raise ApiProblem(storm)

    async def hold(self) -> bool:
        """True while the cursor must wait (the failures so far may begin a storm); raises
        :class:`ApiProblem` on a storm (see :meth:`check`)."""
        if self.watch.undecided():
            return True
        await self.check()
        return False
