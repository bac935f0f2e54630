"""Shopify bulk queries that survive a restart: start once, poll, stream the result.

A bulk query (``bulkOperationRunQuery``) reads a whole connection in Shopify's background
for a flat few query-cost points and leaves the answer as a JSONL file (one line per
object) at a signed URL for a week. The first start of a large shop uses one for the SKU
index (:mod:`daemon.index`): paging 50,000 variants under the Standard plan's 100 points
a second takes about 25 minutes; a bulk query takes a couple.

:class:`BulkRead` is one such read for one purpose (``index``):

1. **Start**: the operation's id and its creation time are committed to
   ``bulk_operations`` *before* anything waits for it. A restart finds the id there and
   polls that operation instead of starting another, so a crash costs at most the
   download (the file stays for a week; reading it again is harmless: every row is an
   upsert).
2. **Wait**: poll ``bulkOperation(id:)`` with waits that grow from
   :data:`FIRST_POLL_SECONDS` to :data:`MAX_POLL_SECONDS` (the sleep is injected).
3. **Stream**: the file is read line by line as it arrives, never whole.
4. **Forget**: the caller deletes the row in the transaction that commits the read's end.

When the bulk read cannot give the answer, :class:`BulkUnavailable` says why and the
caller reads page by page instead (logged with the reason): Shopify refused to start
one (``userErrors``: another bulk query of this app running — we do not wait for an
operation we did not start and cannot see the end of — or the query refused), the answer
to the start was lost (it may be running: no second one is started blindly), the
operation FAILED, was CANCELED or EXPIRED, Shopify no longer knows it (null), its file is
gone (404), or a line of the file is not what the query asks for. Transport failures
(5xx, timeouts, a download cut off) are *not* a reason to fall back: they raise as
usual, the cycle fails and backs off, and the next attempt polls the stored operation
again.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import structlog

from daemon.errors import AmbiguousWrite, MalformedResponse, NotFoundError, ValidationError
from daemon.shopify import BulkOperation, JSONObject, ShopifyClient
from daemon.store import Store, Transaction

log = structlog.get_logger("daemon.bulk")

#: the first wait before asking how a bulk operation stands …
FIRST_POLL_SECONDS = 1.0
#: … doubling up to this
MAX_POLL_SECONDS = 10.0
#: statuses after which no file will come
_UNUSABLE = frozenset({"FAILED", "CANCELED", "EXPIRED"})


class BulkUnavailable(Exception):
    """The bulk read cannot give the answer; ``reason`` says why (read page by page instead)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class StoredOperation:
    """A bulk operation this shop's daemon started and has not finished reading."""

    operation_id: str
    #: when Shopify created it: the data are at least this fresh
    started_at: datetime


class BulkRead:
    """One resumable bulk read for ``purpose``; see the module docstring."""

    def __init__(
        self,
        store: Store,
        shopify: ShopifyClient,
        purpose: str,
        *,
        sleep: Callable[[float], Awaitable[None]] | None = None,
    ) -> None:
        """``sleep`` (between polls) defaults to the client's injected one."""
        self.store = store
        self.shopify = shopify
        self.purpose = purpose
        self._sleep = sleep or shopify.sleep

    async def stored(self) -> StoredOperation | None:
        """The operation started earlier (before a restart, too), if any."""
        row = await self.store.fetchone(
            "SELECT operation_id, started_at FROM bulk_operations WHERE shop = ? AND purpose = ?",
            (self.store.shop, self.purpose),
        )
        if row is None:
            return None
        return StoredOperation(str(row[0]), datetime.fromisoformat(str(row[1])))

    async def start(self, query: str) -> StoredOperation:
        """The stored operation, or a new one started with ``query`` and committed before
        this returns. Raises BulkUnavailable when Shopify refuses or the answer is lost."""
        found = await self.stored()
        if found is not None:
            return found
        try:
            operation = await self.shopify.bulk_query_start(query)
        except ValidationError as exc:
            raise BulkUnavailable(f"Shopify refused the bulk query: {exc}") from exc
        except AmbiguousWrite as exc:
            raise BulkUnavailable(f"the answer to the bulk query's start was lost ({exc})") from exc
        started = StoredOperation(operation.id, operation.created_at or datetime.now(UTC))
        async with self.store.transaction() as tx:
            await tx.execute(
                "INSERT INTO bulk_operations (shop, purpose, operation_id, started_at) VALUES (?, ?, ?, ?)",
                (self.store.shop, self.purpose, started.operation_id, started.started_at.isoformat()),
            )
        log.info("bulk.started", purpose=self.purpose, operation=operation.id, shop=self.store.shop)
        return started

    async def wait(
        self,
        operation_id: str,
        on_progress: Callable[[BulkOperation], Awaitable[None]] | None = None,
    ) -> str:
        """Poll until the operation is final; return its result's URL. ``on_progress``
        hears every answer while it runs. Raises BulkUnavailable when no file will come."""
        wait = FIRST_POLL_SECONDS
        while True:
            operation = await self.shopify.bulk_operation(operation_id)
            if operation is None:
                raise BulkUnavailable(f"Shopify no longer knows bulk operation {operation_id}")
            if operation.status in _UNUSABLE:
                code = f" ({operation.error_code})" if operation.error_code else ""
                raise BulkUnavailable(f"bulk operation {operation_id} {operation.status}{code}")
            if operation.status == "COMPLETED":
                if operation.url is None:  # completed with nothing to read: an empty shop
                    return ""
                return operation.url
            if on_progress is not None:
                await on_progress(operation)
            await self._sleep(wait)
            wait = min(wait * 2, MAX_POLL_SECONDS)

    async def lines(self, url: str) -> AsyncGenerator[tuple[int, JSONObject], None]:
        """``(line number, object)`` of the result as it streams in (nothing for an empty
        result). Raises BulkUnavailable when the file is gone or a line is not JSON."""
        if not url:
            return
        try:
            async for number, row in self.shopify.bulk_lines(url):
                yield number, row
        except NotFoundError as exc:
            raise BulkUnavailable(str(exc)) from exc
        except MalformedResponse as exc:
            raise BulkUnavailable(str(exc)) from exc

    async def forget(self, tx: Transaction) -> None:
        """Inside ``tx`` (the one that commits the read's end): the operation is done with."""
        await tx.execute(
            "DELETE FROM bulk_operations WHERE shop = ? AND purpose = ?", (self.store.shop, self.purpose)
        )

    async def abandon(self, reason: str) -> None:
        """Give the operation up (it cannot be used): the next read starts afresh."""
        async with self.store.transaction() as tx:
            await self.forget(tx)
        log.warning("bulk.fallback", purpose=self.purpose, reason=reason, shop=self.store.shop)
