"""Orders the daemon leaves out on purpose, said out loud.

An order is not imported when it was created before the import start (the first start,
or ``SYNC_ORDERS_SINCE``), is a test order (``SYNC_IMPORT_TEST_ORDERS`` off), or waits for
its trigger (``SYNC_ORDER_TRIGGER``). Each is right by itself, and each looks like "the
daemon does nothing" to a merchant who expected those orders — so the orders flow writes
one ``orders.skipped`` info line with the counts and the setting that would change each,
the first time there are any and whenever a count grows (not per order, not per cycle),
and ``status`` shows the same counts with the settings' names.

The counts are the order ledger's (:func:`skipped_orders`): what a cycle skips is there.
"""

from __future__ import annotations

from collections.abc import Mapping

import structlog

from daemon.store import SKIPPED_BEFORE_START, Store

#: why orders are not imported → the setting that would change it
SKIPPED_SETTINGS = {
    "before_start": "SYNC_ORDERS_SINCE",
    "test": "SYNC_IMPORT_TEST_ORDERS",
    "waiting": "SYNC_ORDER_TRIGGER",
}
_WHAT = {
    "before_start": "created before the import start",
    "test": "test orders",
    "waiting": "waiting for their trigger",
}
#: how the ledger's note of a skipped test order begins (:meth:`OrdersFlow.skip_reason`)
TEST_ORDER = "test order"


async def skipped_orders(store: Store) -> dict[str, int]:
    """How many of the shop's orders are left out, by why (:data:`SKIPPED_SETTINGS`)."""
    row = await store.fetchone(
        "SELECT "
        "COUNT(*) FILTER (WHERE state = 'skipped' AND note LIKE ?), "
        "COUNT(*) FILTER (WHERE state = 'skipped' AND note LIKE ?), "
        "COUNT(*) FILTER (WHERE state = 'waiting' AND cancelled = 0) "
        "FROM order_ledger WHERE shop = ?",
        (f"{SKIPPED_BEFORE_START}%", f"{TEST_ORDER}%", store.shop),
    )
    values = row or (0, 0, 0)
    return {why: int(n or 0) for why, n in zip(SKIPPED_SETTINGS, values, strict=True)}


def skipped_text(counts: Mapping[str, int]) -> str:
    """``20 created before the import start (SYNC_ORDERS_SINCE), 2 test orders (…)``."""
    return ", ".join(f"{n} {_WHAT[why]} ({SKIPPED_SETTINGS[why]})" for why, n in counts.items() if n)


class SkippedNotice:
    """The orders flow's ``orders.skipped`` line: said when a count grows."""

    def __init__(self, log: structlog.stdlib.BoundLogger) -> None:
        self.log = log
        self._said: dict[str, int] = {}

    async def after_cycle(self, store: Store, import_start: str | None) -> None:
        """Say the counts once a cycle when one of them grew since the last line."""
        counts = await skipped_orders(store)
        grown = any(n > self._said.get(why, 0) for why, n in counts.items())
        self._said = counts
        if grown:
            self.log.info("orders.skipped", **counts, import_start=import_start, detail=skipped_text(counts))
