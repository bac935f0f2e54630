"""The orders flow's demand view: what Shopify sold that Rackbeat does not reserve yet.

The orders flow owns the order ledger; this is the one read-only view of it that other
parts read (the stock flow subtracts the demand so that the shop never oversells while
an order is on its way; ``reconcile`` decides as the daemon would). Nothing here
writes, and nothing else reads the ledger's demand columns.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from daemon.store import Store


class OrderDemand:
    """Read-only view of the order ledger's demand: of the orders of ``shops`` (state keys;
    default the store's own shop). One process serves every shop of a Rackbeat account, so
    a shop's stock figure subtracts the orders of every shop that draws on its locations."""

    def __init__(self, store: Store, shops: Sequence[str] = ()) -> None:
        self.store = store
        self.shops = tuple(shops) or (store.shop,)
        self._shops = json.dumps(self.shops)

    async def unreserved(self) -> dict[str, int]:
        """SKU → units of Shopify orders whose stock Rackbeat does not reserve yet.

        That is every order in the ledger that is not skipped or cancelled and whose
        Rackbeat order does not exist yet or is a draft (Rackbeat reserves from booking
        on). A draft the merchant books by hand in Rackbeat is still counted until the
        orders flow reads it back: the error is towards underselling, never overselling.
        """
        total: dict[str, int] = {}
        for demand in (await self._unreserved_rows()).values():
            for sku, units in demand.items():
                total[sku] = total.get(sku, 0) + units
        return total

    async def unreserved_order_ids(self) -> set[str]:
        """The Shopify order ids whose demand :meth:`unreserved` counts."""
        return set(await self._unreserved_rows())

    async def watermark(self) -> int:
        """The order ledger's largest row number: rows after it reached the ledger later."""
        store = self.store
        return int(
            await store.fetchval(
                "SELECT COALESCE(MAX(rowid), 0) FROM order_ledger WHERE shop IN (SELECT value FROM json_each(?))",
                (self._shops,),
            )
            or 0
        )

    async def after(self, watermark: int, *, own: bool = False) -> list[tuple[int, dict[str, int]]]:
        """(row number, SKU → units) of the ledger rows added after ``watermark``, in order;
        with ``own`` only the store's own shop's (what its Shopify sold: another shop's sale
        changes the demand, not this shop's Shopify quantities)."""
        rows = await self.store.fetchall(
            "SELECT rowid, demand FROM order_ledger WHERE rowid > ? AND demand IS NOT NULL "
            "AND shop IN (SELECT value FROM json_each(?)) ORDER BY rowid",
            (watermark, json.dumps([self.store.shop]) if own else self._shops),
        )
        return [(int(rowid), {k: int(v) for k, v in json.loads(blob).items()}) for rowid, blob in rows]

    async def _unreserved_rows(self) -> dict[str, dict[str, int]]:
        rows = await self.store.fetchall(
            "SELECT shop, order_id, demand FROM order_ledger WHERE shop IN (SELECT value FROM json_each(?)) "
            "AND state != 'skipped' AND cancelled = 0 AND demand IS NOT NULL "
            "AND (rackbeat_state IS NULL OR rackbeat_state = 'draft')",
            (self._shops,),
        )
        return {
            _order_key(shop, str(order_id), self.store.shop): {
                k: int(v) for k, v in json.loads(demand).items()
            }
            for shop, order_id, demand in rows
        }


def _order_key(shop: str, order_id: str, own: str) -> str:
    """An order's key in :meth:`OrderDemand.unreserved_order_ids`: its Shopify id for the
    store's own shop, ``shop:id`` for another shop's (ids are per shop)."""
    return order_id if shop == own else f"{shop}:{order_id}"
