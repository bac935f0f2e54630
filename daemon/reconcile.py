"""``rackbeat-shopify reconcile``: compare both sides in full, and fix what the daemon owns.

Reads everything (the whole SKU index from Shopify, every Rackbeat product number, stock
on both sides, product fields, the orders of a recent window) and reports:

- SKUs in one system only, and SKUs on several Shopify variants;
- stock that differs from what the stock flow would write, with Rackbeat's figure at each
  location S10 lists (one more Rackbeat request per differing SKU);
- product fields that differ, per the guide's tables, in the direction S13 says;
- Shopify orders of the window that have no Rackbeat order.

Without ``--dry-run`` it then fixes what the settings make the daemon own, and only that,
in this order: missing orders when orders are synced (their demand counts in the stock),
products in S13's direction (a product created now gets its stock in the same run), stock
when S12 is on. A dry run counts the demand of missing orders the order ledger does not
hold yet (a parked order's is there already).
Nothing is written to either API with ``--dry-run`` (the SKU index in the state DB is
refreshed, which is the daemon's own state).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, TextIO

import structlog

from daemon.config import ProductPriority
from daemon.flows.orders import OrdersFlow
from daemon.flows.products import ProductsFlow
from daemon.flows.stock import StockDifference, StockFlow
from daemon.index import SkuIndex
from daemon.mapping import order_demand
from daemon.services import Services
from daemon.shutdown import Shutdown

log = structlog.get_logger("daemon.reconcile")


@dataclass
class Report:
    """What reconcile found, and what it fixed."""

    dry_run: bool
    only_in_shopify: list[str] = field(default_factory=list)
    only_in_rackbeat: list[str] = field(default_factory=list)
    duplicate_skus: dict[str, int] = field(default_factory=dict)
    stock: list[StockRow] = field(default_factory=list)
    products: list[Any] = field(default_factory=list)
    missing_orders: list[str] = field(default_factory=list)
    fixed: dict[str, int] = field(default_factory=dict)

    @property
    def differences(self) -> int:
        """How many differences were found in total."""
        return (
            len(self.only_in_shopify)
            + len(self.only_in_rackbeat)
            + len(self.duplicate_skus)
            + len(self.stock)
            + len(self.products)
            + len(self.missing_orders)
        )

    def as_json(self) -> dict[str, Any]:
        """A JSON-ready dict (dataclass rows become objects)."""

        return {
            "dry_run": self.dry_run,
            "only_in_shopify": self.only_in_shopify,
            "only_in_rackbeat": self.only_in_rackbeat,
            "duplicate_skus": self.duplicate_skus,
            "stock": [_plain(r) for r in self.stock],
            "products": [_plain(r) for r in self.products],
            "missing_orders": self.missing_orders,
            "fixed": self.fixed,
        }


async def reconcile(
    services: Services, *, dry_run: bool, window: timedelta = timedelta(days=7), now: datetime | None = None
) -> Report:
    """Compare both sides in full; fix what the daemon owns unless ``dry_run``."""
    s = services.settings
    shutdown = Shutdown()
    report = Report(dry_run=dry_run)
    index = SkuIndex(services.store, services.shopify, clock=lambda: now or datetime.now(UTC))
    await index.build()
    shopify_skus = set(await index.by_sku())
    report.duplicate_skus = await index.duplicates()
    rackbeat_numbers: set[str] = set()
    pages = services.rackbeat.stock_totals()
    async with contextlib.aclosing(pages):
        async for page in pages:
            rackbeat_numbers.update(t.number for t in page)
    rackbeat_numbers.discard(s.sync_shipping_product)  # an order line, never a shop product
    report.only_in_shopify = sorted(shopify_skus - rackbeat_numbers)
    report.only_in_rackbeat = sorted(rackbeat_numbers - shopify_skus)

    flows = (services.store, services.shopify, services.rackbeat)
    orders = OrdersFlow(s, *flows, metrics=services.metrics, shutdown=shutdown)
    unimported: dict[str, int] = {}
    if s.sync_orders:
        # orders first: imported (or, in a dry run, counted) before stock is decided
        missing = await _missing_orders(orders, services, (now or datetime.now(UTC)) - window)
        report.missing_orders = [str(order.get("name")) for order in missing]
        if not dry_run and missing:
            report.fixed["orders"] = sum([await orders.apply(order) for order in missing])
        if dry_run:
            unimported = await _demand_not_in_ledger(services, missing)
    # products before stock: a product created now gets its stock in this run, not the next
    if s.sync_product_priority is not ProductPriority.DISABLED:
        products = ProductsFlow(s, *flows, index=index, metrics=services.metrics, shutdown=shutdown)
        report.products = list(await products.differences())
        if not dry_run and report.products:
            report.fixed["products"] = await products.fix(report.products)
    if s.sync_stock:
        stock = StockFlow(
            s,
            *flows,
            index=index,
            metrics=services.metrics,
            shutdown=shutdown,
            demand=services.demand,
        )
        differences = await stock.reconcile(dry_run=dry_run, extra_demand=unimported)
        report.stock = [_stock_row(d) for d in differences]
        if not dry_run:
            # the targets Shopify confirmed: not one that went stale, was refused, cut short or held back
            report.fixed["stock"] = sum(1 for d in differences if d.fixed)
    return report


async def _demand_not_in_ledger(services: Services, missing: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    """SKU → units of the missing orders whose demand the order ledger does not count yet.

    A parked order (an unknown SKU, a rejected draft) is in the ledger with its demand,
    which the stock flow subtracts already; counting it again here would make a dry run
    report stock differences a real run would not write.
    """
    ids = [str(order.get("id") or order.get("name")) for order in missing]
    counted = await services.demand.unreserved_order_ids()
    demand: dict[str, int] = {}
    for order, order_id in zip(missing, ids, strict=True):
        if order_id in counted:
            continue
        for sku, units in order_demand(order).items():
            demand[sku] = demand.get(sku, 0) + units
    return demand


@dataclass(frozen=True)
class StockRow:
    """A stock difference as reconcile reports it: Shopify's quantity at ``location_id``,
    the target, and (with S10 listing locations) Rackbeat's figure at each listed location."""

    sku: str
    location_id: str
    shopify: int | None
    target: int
    #: Rackbeat location number → the figure there (SYNC_STOCK_FIGURE); empty with S10 = all
    rackbeat: dict[str, str] = field(default_factory=dict)


def _stock_row(difference: StockDifference) -> StockRow:
    """``difference`` as reported, with Rackbeat's figure at each listed location (S10 = a
    list: the reconcile reads every product per location, so the stock flow has them)."""
    shown = {n: _number(v) for n, v in difference.rackbeat.items()}
    return StockRow(difference.sku, difference.location_id, difference.shopify, difference.target, shown)


def _number(value: Decimal) -> str:
    """A figure without trailing zeros (``12``, ``2.5``)."""
    return format(value.normalize(), "f")


async def _missing_orders(orders: OrdersFlow, services: Services, since: datetime) -> list[dict[str, Any]]:
    """Shopify orders updated since ``since`` that should be in Rackbeat and are not
    (:meth:`OrdersFlow.missing_in_rackbeat`)."""
    missing: list[dict[str, Any]] = []
    pages = services.shopify.orders_updated_since(since)
    async with contextlib.aclosing(pages):
        async for page in pages:
            missing.extend([order for order in page if await orders.missing_in_rackbeat(order)])
    return missing


def _plain(row: Any) -> Any:
    """A dataclass row as a dict; anything else as it is."""
    if dataclasses.is_dataclass(row) and not isinstance(row, type):
        return dataclasses.asdict(row)
    return row


def _cells(fields: Mapping[str, Any]) -> list[str]:
    """``key=value`` cells of a row; a mapping (Rackbeat's figure per location) as
    ``rackbeat@1=12  rackbeat@2=3``, an empty one left out."""
    cells: list[str] = []
    for key, value in fields.items():
        if isinstance(value, dict):
            cells.extend(f"{key}@{k}={v}" for k, v in value.items())
        else:
            cells.append(f"{key}={value}")
    return cells


def print_report(report: Report, out: TextIO, *, as_json: bool) -> None:
    """The report as a readable table, or JSON."""
    if as_json:
        print(json.dumps(report.as_json(), indent=2, default=str), file=out)
        return
    mode = "dry run: nothing written" if report.dry_run else "fixed what the daemon owns"
    print(f"reconcile ({mode})", file=out)

    def section(title: str, rows: Sequence[Any]) -> None:
        print(f"\n{title}: {len(rows)}", file=out)
        for row in rows[:50]:
            fields = _plain(row)
            text = "  ".join(_cells(fields)) if isinstance(fields, dict) else fields
            print(f"  {text}", file=out)
        if len(rows) > 50:
            print(f"  … and {len(rows) - 50} more (use --json for all)", file=out)

    section("SKUs only in Shopify", report.only_in_shopify)
    section("SKUs only in Rackbeat", report.only_in_rackbeat)
    section("SKUs on several Shopify variants", [f"{k} ×{v}" for k, v in report.duplicate_skus.items()])
    section("stock differences", report.stock)
    section("product field differences", report.products)
    section("Shopify orders missing in Rackbeat", report.missing_orders)
    if report.fixed:
        print("\nfixed: " + ", ".join(f"{k} {v}" for k, v in report.fixed.items()), file=out)
    print(f"\n{report.differences} difference(s)", file=out)
