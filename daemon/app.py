"""Wiring: builds the store, clients, flows, runner and health server from the settings.

``run_daemon`` is what ``rackbeat-shopify run`` and the demo call; the other
functions back the operator commands (``check``, ``status``, ``parked``, ``retry``,
``reconcile``, ``merge-state``).
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

import anyio
import httpx
import structlog

from daemon import __version__, sdnotify
from daemon.config import Account, ProductPriority, Settings, Shop
from daemon.errors import ConfigError, NotFoundError, SyncError
from daemon.flows.fulfilments import DETECTION, FulfilmentsFlow
from daemon.flows.orders import OrdersFlow
from daemon.flows.products import ProductsFlow
from daemon.flows.stock import StockFlow, read_rackbeat_only
from daemon.health import HealthApp
from daemon.index import SkuIndex
from daemon.live_check import ReferenceGate
from daemon.logs import configure_logging
from daemon.merge import merge_state as merge
from daemon.rackbeat import Order, Product, RackbeatClient
from daemon.reasons import advice_for
from daemon.reconcile import print_report
from daemon.reconcile import reconcile as compare
from daemon.runner import (
    CycleRequests,
    Flow,
    FlowSchedules,
    InlineCycles,
    Runner,
    ShopFlows,
    flow_key,
    handle_signals,
)
from daemon.services import AccountServices, Services, open_account, register_secrets
from daemon.shared import KeyedLocks, SharedChanges, StockReads
from daemon.shutdown import Shutdown
from daemon.store import PARKED_FOR_A_PERSON, SCHEMA_VERSION, Store
from daemon.webserver import serve

log = structlog.get_logger("daemon.app")

FLOW_NAMES = ("orders", "fulfilments", "stock", "products")


def build_flows(
    services: Services,
    shutdown: Shutdown,
    requests: CycleRequests | None = None,
    *,
    reads: StockReads | None = None,
    customers: KeyedLocks | None = None,
    changes: SharedChanges[Product] | None = None,
    shipped: SharedChanges[Order] | None = None,
    catch_up: Sequence[str] = ("orders",),
    gate: ReferenceGate | None = None,
) -> list[Flow]:
    """One shop's flows, as its settings switch them on, sharing one SKU index.

    ``requests`` is how the stock flow asks for an orders cycle: the runner's
    :class:`FlowSchedules` in the daemon; without a runner (benches) the orders cycle
    runs inline. ``reads``, ``customers``, ``changes``, ``shipped`` and ``catch_up`` (the orders flows
    whose demand the shop's stock subtracts, its own first) are what the account's shops
    share (:func:`build_account_flows`).
    """
    s = services.settings
    common = (s, services.store, services.shopify, services.rackbeat)
    shopify = services.shopify

    async def stock_location() -> str:
        return await shopify.stock_location(s.shopify_location_id)

    # with the stock flow on, a first build by bulk query also reads Shopify's levels for
    # the first push
    index = SkuIndex(
        services.store,
        shopify,
        min_interval=s.sync_poll_seconds / 2,
        levels_at=stock_location if s.sync_stock else None,
    )
    orders = OrdersFlow(*common, metrics=services.metrics, shutdown=shutdown, customers=customers, gate=gate)
    flows: list[Flow] = []
    if s.sync_orders:
        flows.append(orders)
        if s.sync_fulfilments:
            flows.append(
                FulfilmentsFlow(*common, metrics=services.metrics, shutdown=shutdown, changes=shipped)
            )
    if requests is None:
        requests = InlineCycles({orders.name: orders.run_once} if s.sync_orders else {})
    reads = reads or StockReads(services.rackbeat)
    if s.sync_stock:
        flows.append(
            StockFlow(
                *common,
                index=index,
                metrics=services.metrics,
                shutdown=shutdown,
                demand=services.demand,
                cycles=requests,
                reads=reads,
                catch_up=catch_up,
            )
        )
    # always on: with S13 = disabled it writes nothing but keeps the SKU index current
    flows.append(
        ProductsFlow(
            *common,
            index=index,
            metrics=services.metrics,
            shutdown=shutdown,
            changes=changes,
            # the stock flow's scans show which products changed: read them only then
            scans=reads if s.sync_stock else None,
        )
    )
    return flows


#: how long the first shop's stock cycle waits for the others' before the shared scan starts
GATHER_SECONDS = 10.0


def build_account_flows(
    opened: AccountServices,
    shutdown: Shutdown,
    requests: CycleRequests | None = None,
    gate: ReferenceGate | None = None,
) -> list[ShopFlows]:
    """Every shop's flows (:func:`build_flows`), sharing one stock scan per cycle, the
    customer lock, each other's orders catch-up where their S10 locations meet, and the
    reference-search ``gate`` (``run``'s: the Rackbeat facts are the account's)."""
    several = opened.account.several
    poll = opened.account.settings.sync_poll_seconds
    stocked = sum(1 for shop in opened.shops if shop.settings.sync_stock)
    reads = StockReads(opened.rackbeat, shops=stocked, gather=min(poll / 2, GATHER_SECONDS))
    customers = KeyedLocks()
    mirrors = sum(
        1 for shop in opened.shops if shop.settings.sync_product_priority is ProductPriority.RACKBEAT
    )
    changes = SharedChanges[Product](shops=mirrors, window=poll / 2)
    fulfilling = sum(
        1 for shop in opened.shops if shop.settings.sync_orders and shop.settings.sync_fulfilments
    )
    shipped = SharedChanges[Order](shops=fulfilling, window=poll / 2)
    by_key = {shop.store.shop: shop for shop in opened.shops}
    groups: list[ShopFlows] = []
    for shop in opened.shops:
        catch_up = [
            flow_key(by_key[key].alias, "orders", several=several)
            for key in shop.demand_shops
            if by_key[key] is shop or by_key[key].settings.sync_orders
        ]
        flows = build_flows(
            shop,
            shutdown,
            requests,
            reads=reads,
            customers=customers,
            changes=changes,
            shipped=shipped,
            catch_up=catch_up,
            gate=gate,
        )
        groups.append(ShopFlows(shop.alias, shop.store, flows))
    return groups


async def run_daemon(
    settings: Settings | Account,
    *,
    shutdown: Shutdown | None = None,
    http: httpx.AsyncClient | None = None,
    configure_logs: bool = True,
    on_ready: Callable[[Runner, int], None] | None = None,
) -> None:
    """Run every shop's flows until SIGTERM/SIGINT (or ``shutdown``): the ``run`` command."""
    account = settings if isinstance(settings, Account) else Account.single(settings)
    first = account.settings
    if configure_logs:
        configure_logging(first.log_level, first.log_format, cache=True)
    register_secrets(account)
    if not account.several:
        structlog.contextvars.bind_contextvars(shop=first.shop)
    shutdown = shutdown or Shutdown()
    try:
        async with anyio.create_task_group() as signals:
            # first of all: a SIGTERM while the DB opens or the listener binds is a clean stop
            await signals.start(handle_signals, shutdown)
            try:
                await _serve(account, shutdown, http, on_ready)
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
    account: Account,
    shutdown: Shutdown,
    http: httpx.AsyncClient | None,
    on_ready: Callable[[Runner, int], None] | None,
) -> None:
    """Open the services, bind the health listener, run the flows until ``shutdown``."""
    settings = account.settings
    async with open_account(account, http, shutdown=shutdown) as opened:
        schedules = FlowSchedules()
        runner = Runner(
            shops=build_account_flows(opened, shutdown, schedules, ReferenceGate(opened.rackbeat)),
            metrics=opened.metrics,
            poll_seconds=settings.sync_poll_seconds,
            shutdown=shutdown,
            requests=schedules,
        )
        if shutdown.requested:
            return  # stopped while starting: no listener, no READY=1
        health = HealthApp(runner, opened.store, opened.metrics, __version__)
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
                shops=[shop.alias for shop in account.shops],
                flows=list(runner.states),
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


async def check(
    settings: Settings | Account, *, offline: bool, out: TextIO, shops: Sequence[Shop] | None = None
) -> int:
    """``check``: settings valid; online also authenticate and verify configured numbers,
    for every shop (``shops``: those of ``--shop``)."""
    account = _account(settings)
    chosen = account.shops if shops is None else shops
    for shop in chosen:
        print(f"configuration OK for {_shop_name(account, shop)}", file=out)
    if offline:
        return 0
    register_secrets(account)
    problems: list[str] = []
    async with open_account(account) as opened:
        for services in opened.shops:
            if services.alias not in {shop.alias for shop in chosen}:
                continue
            prefix = f"shop {services.alias}: " if account.several else ""
            try:
                location = await services.shopify.primary_location_id()
            except SyncError as exc:
                if not account.several:
                    raise
                raise type(exc)(f"{prefix}{exc}") from None
            print(f"{prefix}Shopify: authenticated; primary location {location}", file=out)
            s = services.settings
            if s.shopify_location_id:
                ids = {loc["id"] for loc in await services.shopify.locations()}
                if s.shopify_location_id not in ids:
                    problems.append(
                        f"{prefix}SHOPIFY_LOCATION_ID: {s.shopify_location_id} is not a location of the shop"
                    )
            problems.extend(prefix + line for line in await verify_rackbeat_numbers(s, opened.rackbeat))
        print("Rackbeat: authenticated", file=out)
    for line in problems:
        print(f"  {line}", file=out)
    if problems:
        print(f"{len(problems)} problem(s) found", file=out)
        return 78
    print("all configured numbers exist", file=out)
    return 0


def _account(settings: Settings | Account) -> Account:
    return settings if isinstance(settings, Account) else Account.single(settings)


def _shop_name(account: Account, shop: Shop) -> str:
    return f"{shop.alias} ({shop.settings.shop})" if account.several else shop.settings.shop


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
    return "never" if moment is None else f"{_age(moment)} ago"


def _age(moment: datetime) -> str:
    """How long ago ``moment`` was: ``45s``, ``12m``, ``5h``, ``3d``."""
    seconds = max(0, int(time.time() - moment.timestamp()))
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 3 * 3600:
        return f"{seconds // 60}m"
    return f"{seconds // 3600}h" if seconds < 3 * 86400 else f"{seconds // 86400}d"


async def _open_existing(settings: Settings, out: TextIO) -> Store | None:
    if not settings.sync_db.exists():
        print(f"no state DB at {settings.sync_db} yet: the daemon has not run with these settings", file=out)
        return None
    return await Store.open(settings.sync_db, settings.shop)


@asynccontextmanager
async def _shop_stores(
    settings: Settings | Account, shops: Sequence[Shop] | None, out: TextIO
) -> AsyncIterator[list[tuple[Shop, Store]] | None]:
    """Every chosen shop with its view of the state DB, which is closed after the block
    (None when there is no DB yet)."""
    account = _account(settings)
    store = await _open_existing(account.settings, out)
    if store is None:
        yield None
        return
    try:
        yield [
            (shop, store.for_shop(shop.settings.shop)) for shop in (account.shops if shops is None else shops)
        ]
    finally:
        await store.close()


async def status(
    settings: Settings | Account, *, as_json: bool, out: TextIO, shops: Sequence[Shop] | None = None
) -> int:
    """``status``: cursors, lag, last errors and parked counts from the state DB, per shop."""
    account = _account(settings)
    docs: list[dict[str, Any]] = []
    async with _shop_stores(account, shops, out) as stores:
        if stores is None:
            return 1
        for shop, store in stores:
            doc = await _status_document(shop, store)
            docs.append(doc)
            if not as_json:
                _print_status(doc, account, shop, out)
    if as_json:
        print(json.dumps(docs[0] if not account.several else {"shops": docs}, indent=2), file=out)
    return 0


async def _status_document(shop: Shop, store: Store) -> dict[str, Any]:
    flows = await store.flows(FLOW_NAMES)
    parked = await store.parked_counts()
    counts = await store.counts()
    attention = await _attention(store)
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
    return {
        "shop": shop.settings.shop,
        "alias": shop.alias,
        "db": str(shop.settings.sync_db),
        "flows": rows,
        "counts": dict(counts),
        "progress": await _progress(store),
        **await _order_life(store),
        **attention,
    }


async def _progress(store: Store) -> list[dict[str, Any]]:
    """Long work under way (the first SKU index build), as the daemon last wrote it."""
    rows = await store.fetchall(
        "SELECT work, phase, done, total, seconds_left, updated_at FROM progress WHERE shop = ? ORDER BY work",
        (store.shop,),
    )
    return [
        {
            "work": work,
            "phase": phase,
            "done": int(done),
            "total": None if total is None else int(total),
            "seconds_left": None if left is None else round(float(left)),
            "updated_at": updated,
        }
        for work, phase, done, total, left, updated in rows
    ]


def _progress_line(row: Mapping[str, Any]) -> str:
    """``SKU index build: 12,000 of 50,000 variants, about 40 s left (storing, 3 s ago)``."""
    of = f" of {row['total']:,}" if row["total"] is not None else ""
    left = f", about {row['seconds_left']:,} s left" if row["seconds_left"] is not None else ""
    updated = datetime.fromisoformat(str(row["updated_at"]).replace("Z", "+00:00"))
    return f"{row['work']}: {row['done']:,}{of} variants{left} ({row['phase']}, {_ago(updated)})"


async def _order_life(store: Store) -> dict[str, Any]:
    """Orders waiting for SYNC_ORDER_TRIGGER, and how the fulfilments in Shopify stand."""
    waiting, oldest = await store.fetchone(
        "SELECT COUNT(*), MIN(created_at) FROM order_ledger WHERE shop = ? AND state = 'waiting' AND cancelled = 0",
        (store.shop,),
    ) or (0, None)
    shipments = dict(
        await store.fetchall(
            "SELECT state, COUNT(*) FROM fulfilments WHERE shop = ? GROUP BY state", (store.shop,)
        )
    )
    detection = await store.get_cursor(DETECTION)
    return {
        "orders_waiting": {
            "count": int(waiting),
            "oldest_since": str(oldest) if oldest else None,
        },
        "fulfilments": {
            "done": int(shipments.get("done", 0)),
            "in_doubt": int(shipments.get("sending", 0)),
            "detection": "list" if detection is None else "read-back",
            "detection_note": detection,
        },
    }


def _print_status(doc: Mapping[str, Any], account: Account, shop: Shop, out: TextIO) -> None:
    print(f"shop {_shop_name(account, shop)}  (state {doc['db']})", file=out)
    for row in doc["flows"]:
        success = datetime.fromisoformat(row["last_success"]) if row["last_success"] else None
        line = (
            f"  {row['flow']:<9} last success {_ago(success):<10} parked {row['parked']:<4} "
            f"cursor {row['cursor'] or '-'}"
        )
        print(line, file=out)
        if row["last_error"]:
            print(f"            last error: {row['last_error']}", file=out)
    print("  " + "  ".join(f"{k}={v}" for k, v in doc["counts"].items()), file=out)
    for row in doc["progress"]:
        print(f"  {_progress_line(row)}", file=out)
    waiting = doc["orders_waiting"]
    if waiting["count"]:
        oldest = datetime.fromisoformat(waiting["oldest_since"])
        print(
            f"  orders waiting for SYNC_ORDER_TRIGGER: {waiting['count']}, the oldest for {_age(oldest)}",
            file=out,
        )
    shipped = doc["fulfilments"]
    detection = (
        "Rackbeat's list of orders updated since"
        if shipped["detection"] == "list"
        else f"reading orders back ({shipped['detection_note']})"
    )
    print(
        f"  shipments fulfilled in Shopify: {shipped['done']}, in doubt {shipped['in_doubt']}; "
        f"shipped orders found by {detection}",
        file=out,
    )
    changed = doc["orders_changed_after_import"]
    if changed:
        print(
            f"  orders changed in Shopify after import ({len(changed)}; Rackbeat left as it was):", file=out
        )
        for row in changed[:20]:
            print(f"    {row['order']} (Rackbeat {row['rackbeat_order']}): {row['change']}", file=out)
    if doc["duplicate_skus"]:
        dupes = ", ".join(f"{k} ×{v}" for k, v in list(doc["duplicate_skus"].items())[:20])
        print(f"  SKUs on several Shopify variants (not synced): {dupes}", file=out)
    only = doc["skus_only_in_shopify"]
    if only:
        print(f"  SKUs only in Shopify ({len(only)}): {', '.join(only[:20])}", file=out)
    rackbeat_only = doc["skus_only_in_rackbeat"]
    if rackbeat_only["count"]:
        examples = ", ".join(rackbeat_only["examples"][:10])
        more = ", …" if rackbeat_only["count"] > 10 else ""
        print(f"  SKUs only in Rackbeat ({rackbeat_only['count']}): {examples}{more}", file=out)


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


async def reconcile(
    settings: Settings | Account,
    *,
    dry_run: bool,
    as_json: bool,
    days: float,
    out: TextIO,
    shops: Sequence[Shop] | None = None,
) -> int:
    """``reconcile``: compare both sides in full; fix what the daemon owns unless ``dry_run``;
    shop by shop."""
    account = _account(settings)
    register_secrets(account)
    chosen = {shop.alias for shop in (account.shops if shops is None else shops)}
    async with open_account(account) as opened:
        for services in opened.shops:
            if services.alias in chosen:
                if account.several and not as_json:
                    print(f"shop {services.alias} ({services.settings.shop})", file=out)
                report = await compare(services, dry_run=dry_run, window=timedelta(days=days))
                print_report(report, out, as_json=as_json)
    return 0


async def list_parked(
    settings: Settings | Account, *, as_json: bool, out: TextIO, shops: Sequence[Shop] | None = None
) -> int:
    """``parked``: every parked record with its reason and what to do about it."""
    account = _account(settings)
    async with _shop_stores(account, shops, out) as stores:
        if stores is None:
            return 1
        records = [(shop, r) for shop, store in stores for r in await store.parked()]
    if as_json:
        rows = [
            {
                **({"shop": shop.alias} if account.several else {}),
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
            for shop, r in records
        ]
        print(json.dumps(rows, indent=2), file=out)
        return 0
    if not records:
        print("nothing parked", file=out)
        return 0
    now = datetime.now(UTC)
    for shop, r in records:
        advice = advice_for(r.reason)
        due = (
            "due now"
            if r.next_attempt <= now
            else "waits for you (then `retry`)"
            if r.next_attempt >= PARKED_FOR_A_PERSON
            else f"next try {r.next_attempt:%Y-%m-%d %H:%M}Z"
        )
        where = f"{shop.alias}:" if account.several else ""
        print(
            f"{where}{r.flow}/{r.key}  {r.reason} ({advice.meaning})  attempts {r.attempts}, {due}", file=out
        )
        print(f"    {r.detail}", file=out)
        print(f"    fix: {advice.fix}", file=out)
    return 0


async def retry(
    settings: Settings | Account, *, key: str | None, out: TextIO, shops: Sequence[Shop] | None = None
) -> int:
    """``retry KEY|--all``: make parked records due now (the running daemon picks them up)."""
    changed = 0
    async with _shop_stores(settings, shops, out) as stores:
        if stores is None:
            return 1
        for _, store in stores:
            changed += await store.retry_parked(key)
    if key is not None and changed == 0:
        print(f"no parked record with key {key!r} (see `rackbeat-shopify parked`)", file=out)
        return 1
    print(f"{changed} parked record(s) queued for retry", file=out)
    return 0


async def merge_state(source: Path, target: Path, *, out: TextIO, known: Sequence[str] | None = None) -> int:
    """``merge-state PATH``: copy every shop's state from ``source`` (another instance's state
    file) into ``target`` (``SYNC_DB``), and say what was copied per table (:mod:`daemon.merge`).
    ``known``: the domains of the account's shops, when the settings name them."""
    report = await merge(source, target)
    created = " (created)" if report.created else ""
    print(f"merged {report.source} into {report.target}{created}", file=out)
    for shop in report.shops:
        print(f"  shop {shop}", file=out)
    width = max(len(table) for table in report.copied)
    for table, rows in report.copied.items():
        print(f"  {table:<{width}}  {rows:>7} rows", file=out)
    migrated = (
        f"migrated from schema {report.source_version} to {SCHEMA_VERSION}, otherwise unchanged"
        if report.source_version < SCHEMA_VERSION
        else "unchanged"
    )
    print(f"{report.total} rows copied in one transaction; {report.source} is {migrated}", file=out)
    for shop in report.shops:
        if known is not None and shop not in known:
            print(
                f"note: {shop} is not one of this account's shops (SHOPS); the daemon leaves its state "
                "alone until it is",
                file=out,
            )
    return 0


__all__ = ["SyncError", "check", "list_parked", "merge_state", "retry", "run_daemon", "status"]
