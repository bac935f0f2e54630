"""Wiring: builds the store, clients, flows, runner and health server from the settings.

``run_daemon`` is what ``rackbeat-shopify run`` and the demo call; the other
functions back the operator commands (``check``, ``status``, ``parked``, ``retry``).
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TextIO

import anyio
import httpx
import structlog

from daemon import __version__, sdnotify
from daemon.config import Settings
from daemon.demand import OrderDemand
from daemon.errors import ConfigError, NotFoundError, SyncError
from daemon.flows.orders import OrdersFlow
from daemon.flows.products import ProductsFlow
from daemon.flows.stock import StockFlow, read_rackbeat_only
from daemon.health import HealthApp
from daemon.index import SkuIndex
from daemon.logs import configure_logging
from daemon.rackbeat import RackbeatClient
from daemon.reasons import advice_for
from daemon.reconcile import print_report
from daemon.reconcile import reconcile as compare
from daemon.runner import CycleRequests, Flow, FlowSchedules, InlineCycles, Runner, handle_signals
from daemon.services import Services, open_services, register_secrets
from daemon.shutdown import Shutdown
from daemon.store import Store
from daemon.webserver import serve

log = structlog.get_logger("daemon.app")

FLOW_NAMES = ("orders", "stock", "products")


def build_flows(services: Services, shutdown: Shutdown, requests: CycleRequests | None = None) -> list[Flow]:
    """The flows the settings switch on, sharing one SKU index.

    ``requests`` is how the stock flow asks for an orders cycle: the runner's
    :class:`FlowSchedules` in the daemon; without a runner (benches) the orders cycle
    runs inline.
    """
    s = services.settings
    common = (s, services.store, services.shopify, services.rackbeat)
    index = SkuIndex(services.store, services.shopify, min_interval=s.sync_poll_seconds / 2)
    orders = OrdersFlow(*common, metrics=services.metrics, shutdown=shutdown)
    flows: list[Flow] = []
    if s.sync_orders:
        flows.append(orders)
    if requests is None:
        requests = InlineCycles({orders.name: orders.run_once} if s.sync_orders else {})
    if s.sync_stock:
        flows.append(
            StockFlow(
                *common,
                index=index,
                metrics=services.metrics,
                shutdown=shutdown,
                demand=OrderDemand(services.store),
                cycles=requests,
            )
        )
    # always on: with S13 = disabled it writes nothing but keeps the SKU index current
    flows.append(ProductsFlow(*common, index=index, metrics=services.metrics, shutdown=shutdown))
    return flows


async def run_daemon(
    settings: Settings,
    *,
    shutdown: Shutdown | None = None,
    http: httpx.AsyncClient | None = None,
    configure_logs: bool = True,
    on_ready: Callable[[Runner, int], None] | None = None,
) -> None:
    """Run until SIGTERM/SIGINT (or ``shutdown``): the ``run`` command."""
    if configure_logs:
        configure_logging(settings.log_level, settings.log_format, cache=True)
    register_secrets(settings)
    structlog.contextvars.bind_contextvars(shop=settings.shop)
    shutdown = shutdown or Shutdown()
    try:
        async with anyio.create_task_group() as signals:
            # first of all: a SIGTERM while the DB opens or the listener binds is a clean stop
            await signals.start(handle_signals, shutdown)
            try:
                await _serve(settings, shutdown, http, on_ready)
            finally:
                signals.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        # task groups wrap what failed; the caller's exit status (78 for a setting, 77 for
        # credentials …) needs the error itself
        sole = _sole_error(group)
        if sole is None:
            raise
        raise sole from None
    log.info("daemon.stopped")


def _sole_error(group: BaseExceptionGroup[BaseException]) -> SyncError | None:
    """The one :class:`SyncError` inside nested exception groups, cancellations aside;
    None when there are others (a bug: let the whole group through)."""
    leaves: list[BaseException] = []
    pending: list[BaseException] = [group]
    while pending:
        exc = pending.pop()
        if isinstance(exc, BaseExceptionGroup):
            pending.extend(exc.exceptions)
        elif not isinstance(exc, anyio.get_cancelled_exc_class()):
            leaves.append(exc)
    if len(leaves) == 1 and isinstance(leaves[0], SyncError):
        return leaves[0]
    return None


async def _serve(
    settings: Settings,
    shutdown: Shutdown,
    http: httpx.AsyncClient | None,
    on_ready: Callable[[Runner, int], None] | None,
) -> None:
    """Open the services, bind the health listener, run the flows until ``shutdown``."""
    async with open_services(settings, http, shutdown=shutdown) as services:
        schedules = FlowSchedules()
        runner = Runner(
            build_flows(services, shutdown, schedules),
            store=services.store,
            metrics=services.metrics,
            poll_seconds=settings.sync_poll_seconds,
            shutdown=shutdown,
            requests=schedules,
        )
        if shutdown.requested:
            return  # stopped while starting: no listener, no READY=1
        health = HealthApp(runner, services.store, services.metrics, __version__)
        host, port = settings.health_address
        async with anyio.create_task_group() as tg:
            try:
                bound = await tg.start(functools.partial(serve, health, name="health"), host, port)
            except OSError as exc:
                raise ConfigError(f"HEALTH_LISTEN: cannot listen on {host}:{port}: {exc.strerror}") from None
            log.info(
                "daemon.started",
                version=__version__,
                health=f"http://{host}:{bound}/healthz",
                db=str(settings.sync_db),
                flows=[f.name for f in runner.flows],
            )
            sdnotify.notify("READY=1", f"STATUS=started; health on {host}:{bound}")
            if on_ready is not None:
                on_ready(runner, bound)
            await runner.run()
            tg.cancel_scope.cancel()


# --- operator commands -------------------------------------------------------------------


def _summary(settings: Settings) -> dict[str, Any]:
    hidden = {"rackbeat_api_token", "shopify_access_token", "shopify_client_secret"}
    data = settings.model_dump(mode="json", exclude=hidden)
    data["shopify_auth"] = "access token" if settings.shopify_access_token else "client credentials"
    return data


async def check(settings: Settings, *, offline: bool, out: TextIO) -> int:
    """``check``: settings valid; online also authenticate and verify configured numbers."""
    print(f"configuration OK for {settings.shop}", file=out)
    if offline:
        return 0
    register_secrets(settings)
    problems: list[str] = []
    async with open_services(settings) as services:
        location = await services.shopify.primary_location_id()
        print(f"Shopify: authenticated; primary location {location}", file=out)
        if settings.shopify_location_id:
            ids = {loc["id"] for loc in await services.shopify.locations()}
            if settings.shopify_location_id not in ids:
                problems.append(
                    f"SHOPIFY_LOCATION_ID: {settings.shopify_location_id} is not a location of the shop"
                )
        problems.extend(await verify_rackbeat_numbers(settings, services.rackbeat))
        print("Rackbeat: authenticated", file=out)
    for line in problems:
        print(f"  {line}", file=out)
    if problems:
        print(f"{len(problems)} problem(s) found", file=out)
        return 78
    print("all configured numbers exist", file=out)
    return 0


async def verify_rackbeat_numbers(settings: Settings, rackbeat: RackbeatClient) -> list[str]:
    """Each configured Rackbeat number that does not exist, as a line naming its variable."""
    problems: list[str] = []

    async def numbers(fetch: Callable[[], Awaitable[list[Any]]]) -> set[str]:
        return {str(item.number if hasattr(item, "number") else item["number"]) for item in await fetch()}

    checks: list[tuple[str, str | None, Callable[[], Awaitable[list[Any]]]]] = [
        ("SYNC_PAYMENT_TERMS", settings.sync_payment_terms, rackbeat.payment_terms),
        ("SYNC_CUSTOMER_GROUP", settings.sync_customer_group, rackbeat.customer_groups),
        ("SYNC_EMPLOYEE", settings.sync_employee, rackbeat.employees),
        ("SYNC_DEFAULT_PRODUCT_GROUP", settings.sync_default_product_group, rackbeat.product_groups),
        # S7: a currency Rackbeat does not have would refuse every new customer
        ("SYNC_CURRENCY", settings.sync_currency, rackbeat.currencies),
    ]
    for variable, value, fetch in checks:
        if value is not None and value not in await numbers(fetch):
            problems.append(f"{variable}: {value} does not exist in Rackbeat")
    wanted = settings.location_numbers
    if wanted is not None:
        known = await numbers(rackbeat.locations)
        missing = [n for n in wanted if n not in known]
        if missing:
            problems.append(f"SYNC_LOCATIONS: {', '.join(missing)} not found among Rackbeat's locations")
    try:
        product = await rackbeat.get_product(settings.sync_shipping_product)
    except NotFoundError:
        product = None
    if product is None:
        problems.append(
            f"SYNC_SHIPPING_PRODUCT: product {settings.sync_shipping_product!r} does not exist in Rackbeat "
            "(create it in a group without stock)"
        )
    return problems


def _ago(moment: datetime | None) -> str:
    if moment is None:
        return "never"
    seconds = max(0, int(time.time() - moment.timestamp()))
    return f"{seconds}s ago" if seconds < 120 else f"{seconds // 60}m ago"


async def _open_existing(settings: Settings, out: TextIO) -> Store | None:
    if not settings.sync_db.exists():
        print(f"no state DB at {settings.sync_db} yet: the daemon has not run with these settings", file=out)
        return None
    return await Store.open(settings.sync_db, settings.shop)


async def status(settings: Settings, *, as_json: bool, out: TextIO) -> int:
    """``status``: cursors, lag, last errors and parked counts from the state DB."""
    store = await _open_existing(settings, out)
    if store is None:
        return 1
    try:
        flows = await store.flows(FLOW_NAMES)
        parked = await store.parked_counts()
        counts = await store.counts()
        attention = await _attention(store)
    finally:
        await store.close()
    rows: list[dict[str, Any]] = [
        {
            "flow": f.flow,
            "cursor": f.cursor,
            "last_success": f.last_success.isoformat() if f.last_success else None,
            "last_error": f.last_error
            if f.last_error_at and (not f.last_success or f.last_error_at > f.last_success)
            else None,
            "parked": parked.get(f.flow, 0),
        }
        for f in flows
    ]
    doc = {
        "shop": settings.shop,
        "db": str(settings.sync_db),
        "flows": rows,
        "counts": dict(counts),
        **attention,
    }
    if as_json:
        print(json.dumps(doc, indent=2), file=out)
        return 0
    print(f"shop {settings.shop}  (state {settings.sync_db})", file=out)
    for f, row in zip(flows, rows, strict=True):
        line = f"  {f.flow:<9} last success {_ago(f.last_success):<10} parked {row['parked']:<4} cursor {f.cursor or '-'}"
        print(line, file=out)
        if row["last_error"]:
            print(f"            last error: {row['last_error']}", file=out)
    print("  " + "  ".join(f"{k}={v}" for k, v in counts.items()), file=out)
    changed = attention["orders_changed_after_import"]
    if changed:
        print(
            f"  orders changed in Shopify after import ({len(changed)}; Rackbeat left as it was):", file=out
        )
        for row in changed[:20]:
            print(f"    {row['order']} (Rackbeat {row['rackbeat_order']}): {row['change']}", file=out)
    if attention["duplicate_skus"]:
        dupes = ", ".join(f"{k} ×{v}" for k, v in list(attention["duplicate_skus"].items())[:20])
        print(f"  SKUs on several Shopify variants (not synced): {dupes}", file=out)
    only = attention["skus_only_in_shopify"]
    if only:
        print(f"  SKUs only in Shopify ({len(only)}): {', '.join(only[:20])}", file=out)
    rackbeat_only = attention["skus_only_in_rackbeat"]
    if rackbeat_only["count"]:
        examples = ", ".join(rackbeat_only["examples"][:10])
        more = ", …" if rackbeat_only["count"] > 10 else ""
        print(f"  SKUs only in Rackbeat ({rackbeat_only['count']}): {examples}{more}", file=out)
    return 0


async def _attention(store: Store) -> dict[str, Any]:
    """What an operator should look at: orders changed after import, SKU trouble (on
    several Shopify variants, or on one side only)."""
    changed = await store.fetchall(
        "SELECT order_name, rackbeat_number, note FROM order_ledger "
        "WHERE shop = ? AND state = 'done' AND note IS NOT NULL ORDER BY updated_at",
        (store.shop,),
    )
    dupes = await store.fetchall(
        "SELECT sku, COUNT(*) FROM sku_index WHERE shop = ? GROUP BY sku HAVING COUNT(*) > 1 ORDER BY sku",
        (store.shop,),
    )
    # rackbeat_number is filled by the stock flow when it sees the SKU in Rackbeat
    only = await store.fetchall(
        "SELECT DISTINCT sku FROM sku_index WHERE shop = ? AND rackbeat_number IS NULL "
        "AND EXISTS (SELECT 1 FROM cursors WHERE shop = ? AND flow = 'stock') ORDER BY sku",
        (store.shop, store.shop),
    )
    rackbeat_only = await read_rackbeat_only(store)
    return {
        "orders_changed_after_import": [
            {"order": name, "rackbeat_order": number, "change": note} for name, number, note in changed
        ],
        "duplicate_skus": {str(sku): int(n) for sku, n in dupes},
        "skus_only_in_shopify": [str(r[0]) for r in only],
        "skus_only_in_rackbeat": rackbeat_only,
    }


async def reconcile(settings: Settings, *, dry_run: bool, as_json: bool, days: float, out: TextIO) -> int:
    """``reconcile``: compare both sides in full; fix what the daemon owns unless ``dry_run``."""
    register_secrets(settings)
    async with open_services(settings) as services:
        report = await compare(services, dry_run=dry_run, window=timedelta(days=days))
    print_report(report, out, as_json=as_json)
    return 0


async def list_parked(settings: Settings, *, as_json: bool, out: TextIO) -> int:
    """``parked``: every parked record with its reason and what to do about it."""
    store = await _open_existing(settings, out)
    if store is None:
        return 1
    try:
        records = await store.parked()
    finally:
        await store.close()
    if as_json:
        rows = [
            {
                "flow": r.flow,
                "key": r.key,
                "reason": r.reason,
                "detail": r.detail,
                "attempts": r.attempts,
                "first_seen": r.first_seen.isoformat(),
                "next_attempt": r.next_attempt.isoformat(),
                "meaning": advice_for(r.reason).meaning,
                "advice": advice_for(r.reason).fix,
            }
            for r in records
        ]
        print(json.dumps(rows, indent=2), file=out)
        return 0
    if not records:
        print("nothing parked", file=out)
        return 0
    now = datetime.now(UTC)
    for r in records:
        advice = advice_for(r.reason)
        due = "due now" if r.next_attempt <= now else f"next try {r.next_attempt:%Y-%m-%d %H:%M}Z"
        print(f"{r.flow}/{r.key}  {r.reason} ({advice.meaning})  attempts {r.attempts}, {due}", file=out)
        print(f"    {r.detail}", file=out)
        print(f"    fix: {advice.fix}", file=out)
    return 0


async def retry(settings: Settings, *, key: str | None, out: TextIO) -> int:
    """``retry KEY|--all``: make parked records due now (the running daemon picks them up)."""
    store = await _open_existing(settings, out)
    if store is None:
        return 1
    try:
        changed = await store.retry_parked(key)
    finally:
        await store.close()
    if key is not None and changed == 0:
        print(f"no parked record with key {key!r} (see `rackbeat-shopify parked`)", file=out)
        return 1
    print(f"{changed} parked record(s) queued for retry", file=out)
    return 0


__all__ = ["SyncError", "check", "list_parked", "retry", "run_daemon", "status"]
