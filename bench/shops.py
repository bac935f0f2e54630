"""Several Shopify shops on one Rackbeat account: one process against one process per shop.

For 1, 2 and 5 shops on one Rackbeat account of SKUS products (every shop sells all of
them), the daemon is wired as ``run`` wires it — :func:`~daemon.services.open_account`,
:func:`~daemon.app.build_account_flows` (one Rackbeat client and budget, one
:class:`~daemon.shared.StockReads`) and the :class:`~daemon.runner.Runner` with its
cycle requests — against in-process simulators (one Rackbeat, one Shopify per shop).
The runner's poll wait is the bench's gate: a cycle of every flow of every shop runs,
and when every flow rests again the next one is let go (``SYNC_POLL_SECONDS`` passes).

The **baseline** is today's way, one process per shop: the same shops as N one-shop
wirings (each its own Rackbeat client and budget, state DB and stock scan) run side by
side against the same simulators.

Scenario: a first start where every shop's whole stock is pushed (Shopify shows 0) and
:data:`ORDERS_PER_SHOP` orders of each shop are imported (``SYNC_ORDERS_SINCE`` before
them; about 6 Rackbeat requests each: a new customer, a draft, booked and shipped) — the
busy period — then :data:`SETTLE_CYCLES` cycles that settle what it wrote, then
:data:`IDLE_CYCLES` quiet cycles. Figures: Rackbeat requests of a quiet cycle (by flow),
stock scans per quiet cycle, the most Rackbeat requests in any 60 seconds of the busy
period (and when every shop's stock push began: a shop's stock waits for the orders of
every shop whose demand it subtracts), peak RSS.

Time: Rackbeat answers at once; each process's request budget
(``RACKBEAT_REQUESTS_PER_MINUTE`` at its default, 300) waits on that process's own
simulated clock, which only its budget's waits move (plus the poll interval between
cycles), so the window figure is what the budget lets through when requests cost
nothing: its worst case. A send's time is its process's clock (the separate processes'
clocks start together and are lined up at each cycle). The flows' own clocks are the
machine's. Shopify's cost bucket is made too large to throttle (not measured here).

Peak RSS is measured in a subprocess per configuration running the same wiring over
loopback HTTP (the daemon's own HTTP client) to simulators served by this process, so
the child's RSS is the daemon's alone.

    python -m bench.shops [SKUS]        # SKUS defaults to 10,000
"""

from __future__ import annotations

import bisect
import json
import math
import sys
import tempfile
from collections import Counter
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import httpx
import structlog
from pydantic import SecretStr

from bench import Row, bench_settings, current_rss_mb, format_table, peak_rss_mb, reset_peak_rss
from daemon.app import build_account_flows
from daemon.config import Account, Shop, check_account
from daemon.flows.stock import StockFlow
from daemon.logs import configure_logging
from daemon.runner import FlowSchedules, Runner
from daemon.services import open_account
from daemon.shared import StockReads
from daemon.shutdown import Shutdown

# The simulators are imported where they are used: the daemon process of the RSS figure
# (``--child``) loads no simulator code, so its RSS is the daemon's.
if TYPE_CHECKING:
    from daemon.sim.rackbeat import RackbeatSimulator
    from daemon.sim.shopify import ShopifySimulator, SimClock

#: the repository (the daemon process of the RSS figure runs ``python -m bench.shops`` there)
REPO = Path(__file__).resolve().parent.parent
#: the configurations measured: shops on one Rackbeat account
SHOP_COUNTS: tuple[int, ...] = (1, 2, 5)
#: the shops' aliases (``SHOPS``), in order
ALIASES: tuple[str, ...] = ("eu", "se", "no", "dk", "fi", "de", "nl", "pl")
DEFAULT_SKUS = 10_000
#: orders placed in every shop before the first start (each a new customer, one line)
ORDERS_PER_SHOP = 60
#: RACKBEAT_REQUESTS_PER_MINUTE's default (the bench leaves it as it is)
DEFAULT_RPM = 300
#: Rackbeat's stock of every SKU
STOCK = 50
#: cycles after the first start before the quiet ones are counted
SETTLE_CYCLES = 2
IDLE_CYCLES = 3
#: the simulators' products exist "since yesterday" (older than every flow's first cursor)
SEEDED_AGO = timedelta(days=1)
#: a cycle that takes longer than this (wall clock) has hung: the bench fails
CYCLE_TIMEOUT = 600.0


def shop_domain(alias: str) -> str:
    """The ``SHOPIFY_SHOP`` of the shop ``alias``."""
    return f"{alias}-bench.myshopify.com"


def shopify_host(alias: str) -> str:
    """The host the bench's transport routes to the shop's simulator."""
    return f"{alias}.shopify.sim"


# --- the simulators ----------------------------------------------------------------------------


@dataclass
class World:
    """One Rackbeat account and one Shopify shop per alias, on one simulated clock."""

    clock: SimClock
    rackbeat: RackbeatSimulator
    shops: dict[str, ShopifySimulator]
    #: SYNC_ORDERS_SINCE: just before the orders were placed
    orders_since: datetime
    skus: int

    def sku(self, n: int) -> str:
        """The SKU numbered ``n``."""
        return f"SKU-{n:05}"


def build_world(shops: int, skus: int, orders: int = ORDERS_PER_SHOP) -> World:
    """Seed the simulators: ``skus`` products in Rackbeat (:data:`STOCK` each) and in every
    shop (0 in Shopify: the first start pushes them all), then ``orders`` orders per shop."""
    from bench.stock import fast_handles  # noqa: PLC0415  # see the imports
    from daemon.sim.rackbeat import RackbeatSimulator  # noqa: PLC0415
    from daemon.sim.shopify import ShopifySimulator, SimClock  # noqa: PLC0415

    clock = SimClock(datetime.now(UTC) - SEEDED_AGO)
    rackbeat = RackbeatSimulator(now=clock.now, monotonic=clock.monotonic, sleep=clock.sleep)
    for n in range(skus):
        rackbeat.add_product(f"SKU-{n:05}", f"Product {n}", sales_price="80", stock=STOCK)
    rackbeat.add_product("frakt", "Frakt")
    sims: dict[str, ShopifySimulator] = {}
    for alias in ALIASES[:shops]:
        sim = ShopifySimulator(
            now=clock.now,
            monotonic=clock.monotonic,
            sleep=clock.sleep,
            shop_domain=shop_domain(alias),
            bucket_size=1e9,  # never throttles: Shopify's bucket is not what this bench measures
            restore_rate=1e9,
        )
        fast_handles(sim)
        sim.add_location("Warehouse", primary=True)
        for n in range(skus):
            sim.add_product(f"Product {n}", [{"sku": f"SKU-{n:05}", "price": "100.00"}])
        sims[alias] = sim
    # from here the simulators' time is the machine's (the flows' cursors are), then it moves on
    clock.advance(max(0.0, (datetime.now(UTC) - clock.now()).total_seconds()))
    since = clock.now() - timedelta(minutes=1)
    for index, (alias, sim) in enumerate(sims.items()):
        for k in range(orders):
            sku = f"SKU-{(k * 37 + index * 11) % skus:05}"
            sim.sell(sku, 1, email=f"buyer{k}@{alias}.example.com", first_name=f"Buyer {k}")
    return World(clock, rackbeat, sims, since, skus)


def accounts(
    aliases: Sequence[str],
    directory: Path,
    since: datetime,
    *,
    separate: bool,
    urls: Mapping[str, str] | None = None,
    tokens: Mapping[str, str] | None = None,
) -> list[Account]:
    """The shops as one account in one process (one state DB), or ``separate``: one
    process (account, state DB) per shop, as before several shops could share one.

    Every shop has the daemon's defaults (a Rackbeat budget of 300/min) and imports orders
    since ``since``. ``urls`` (``rackbeat`` and each alias) and ``tokens`` (``rackbeat``,
    ``shopify``) point at simulators on loopback; by default at the in-process ones.
    """
    urls = urls or {"rackbeat": "http://rackbeat.sim/api"}
    given = {
        f"{api}_{kind}": SecretStr(value)
        for api, value in (tokens or {}).items()
        for kind in (("api_token",) if api == "rackbeat" else ("access_token",))
    }

    def one(alias: str, db: str) -> Shop:
        settings = bench_settings(
            directory / db,
            shopify_shop=shop_domain(alias),
            shopify_admin_url=urls.get(alias, f"http://{shopify_host(alias)}/admin"),
            rackbeat_api_url=urls["rackbeat"],
            sync_orders_since=since,
            **given,
        )
        return Shop(alias, settings)

    if separate:
        return [Account((one(alias, f"{alias}.db"),)) for alias in aliases]
    account = Account(tuple(one(alias, "sync.db") for alias in aliases))
    problems = check_account(account.shops)
    if problems:
        raise RuntimeError("; ".join(problems))
    return [account]


# --- the daemons -------------------------------------------------------------------------------


class Gate:
    """The runners' poll wait (``sleep_until_stop``): a flow that finished its cycle rests
    here until :meth:`release`; :meth:`quiet` returns once every flow rests after its
    cycle of the current round (a flow woken by a cycle request runs and rests again)."""

    def __init__(self) -> None:
        #: flows of every runner behind this gate
        self.flows = 0
        self.round = 0
        self._resting: dict[int, int] = {}
        self._release = anyio.Event()
        self._quiet = anyio.Event()

    async def rest(self, seconds: float) -> None:
        """A flow's poll wait (or backoff): until the next round."""
        release, token = self._release, object()
        self._resting[id(token)] = self.round
        if len(self._resting) == self.flows and all(r == self.round for r in self._resting.values()):
            self._quiet.set()
        try:
            await release.wait()
        finally:
            del self._resting[id(token)]

    def release(self) -> None:
        """Start the next round: every resting flow runs a cycle."""
        self.round += 1
        self._quiet = anyio.Event()
        release, self._release = self._release, anyio.Event()
        release.set()

    async def quiet(self) -> None:
        """Until every flow rests after this round's cycle."""
        with anyio.fail_after(CYCLE_TIMEOUT):
            await self._quiet.wait()


class BudgetClock:
    """A daemon process's clock for its Rackbeat request budget: it moves only when the
    budget waits (:meth:`sleep`) or the bench lets a poll interval pass (:meth:`advance`)."""

    def __init__(self) -> None:
        self.seconds = 0.0

    def monotonic(self) -> float:
        """Seconds since the process started."""
        return self.seconds

    def advance(self, seconds: float) -> None:
        """Let time pass."""
        self.seconds += max(seconds, 0.0)

    async def sleep(self, seconds: float) -> None:
        """The budget's wait: time passes at once."""
        self.advance(seconds)


@dataclass(frozen=True)
class Send:
    """One request that reached the Rackbeat simulator."""

    process: int
    #: the sending process's clock (its request budget's), seconds
    at: float
    shop: str
    flow: str
    route: str


@dataclass
class Process:
    """One daemon process: its account, its request budget's clock, its runner."""

    account: Account
    clock: BudgetClock
    runner: Runner
    reads: StockReads


@dataclass
class Daemons:
    """Daemon processes (one or one per shop) against the simulators; see :func:`daemons`."""

    processes: list[Process]
    gate: Gate
    poll: float
    world: World | None
    sends: list[Send] = field(default_factory=list)
    #: when each shop's first stock write reached Shopify (its process's clock)
    pushed: dict[str, float] = field(default_factory=dict)

    def elapsed(self) -> float:
        """Seconds on the processes' clocks since they started (the latest of them)."""
        return max(p.clock.monotonic() for p in self.processes)

    @property
    def scans(self) -> int:
        """Rackbeat stock scans so far, every process's."""
        return sum(p.reads.scans for p in self.processes)

    async def cycle(self) -> list[Send]:
        """One round of every flow of every process; the Rackbeat requests it made."""
        start = len(self.sends)
        # the poll interval passes; the separate processes' clocks are lined up again
        at = max(p.clock.monotonic() for p in self.processes) + self.poll
        for p in self.processes:
            p.clock.advance(at - p.clock.monotonic())
        if self.world is not None:
            self.world.clock.advance(self.poll)
        self.gate.release()
        await self.settled()
        return self.sends[start:]

    async def settled(self) -> None:
        """Until every flow rests; a flow that failed fails the bench."""
        await self.gate.quiet()
        for p in self.processes:
            for key, state in p.runner.states.items():
                if state.failures:
                    raise RuntimeError(f"{key} failed: {state.last_error}")


@asynccontextmanager
async def daemons(
    accounts: Sequence[Account],
    world: World | None,
    *,
    loopback: bool = False,
) -> AsyncIterator[Daemons]:
    """Start one daemon wiring per account (its first cycle starts at once); stop them on exit.

    In-process (``loopback`` False): every process gets an HTTP client whose transport
    routes to ``world``'s simulators and notes each Rackbeat request (:class:`Send`: the
    process, its clock, and the shop and flow the runner bound to the calling task).
    ``loopback``: the daemon's own HTTP client, to the URLs of the settings.
    """
    gate = Gate()
    shutdown = Shutdown()
    poll = float(accounts[0].settings.sync_poll_seconds)
    result = Daemons([], gate, poll, world)
    async with AsyncExitStack() as stack:
        for index, account in enumerate(accounts):
            clock = BudgetClock()
            http = None if loopback else await stack.enter_async_context(_transport(result, index, clock))
            opened = await stack.enter_async_context(
                open_account(
                    account,
                    http,
                    shutdown=shutdown,
                    rackbeat_options={"sleep": clock.sleep, "clock": clock.monotonic},
                )
            )
            schedules = FlowSchedules()
            runner = Runner(
                shops=build_account_flows(opened, shutdown, schedules),
                metrics=opened.metrics,
                poll_seconds=poll,
                shutdown=shutdown,
                requests=schedules,
                sleep_until_stop=gate.rest,
            )
            reads = next(f.reads for f in runner.flows if isinstance(f, StockFlow))
            result.processes.append(Process(account, clock, runner, reads))
            gate.flows += len(runner.states)
        tg = await stack.enter_async_context(anyio.create_task_group())
        for p in result.processes:
            tg.start_soon(p.runner.run)

        async def stop() -> None:
            shutdown.request()
            gate.release()

        stack.push_async_callback(stop)
        yield result


@asynccontextmanager
async def _transport(daemons: Daemons, process: int, clock: BudgetClock) -> AsyncIterator[httpx.AsyncClient]:
    world = daemons.world
    if world is None:
        raise ValueError("an in-process transport needs the simulators")
    by_host = {shopify_host(alias): (alias, sim) for alias, sim in world.shops.items()}

    async def route(request: httpx.Request) -> httpx.Response:
        shop = by_host.get(request.url.host)
        if shop is not None:
            alias, sim = shop
            before = sim.requests["SetStock"]
            response = await sim.handle(request)
            if sim.requests["SetStock"] > before:
                daemons.pushed.setdefault(alias, clock.monotonic())
            return response
        bound = structlog.contextvars.get_contextvars()
        response = await world.rackbeat.handle(request)
        # the route as the simulator counts it (the last one it counted)
        route = world.rackbeat.request_log[-1].route if world.rackbeat.request_log else request.url.path
        daemons.sends.append(
            Send(process, clock.monotonic(), str(bound.get("shop", "")), str(bound.get("flow", "")), route)
        )
        return response

    async with httpx.AsyncClient(transport=httpx.MockTransport(route)) as http:
        yield http


def check_stock(world: World, sample: int = 100) -> None:
    """Every shop shows Rackbeat's available figure (a sample of SKUs, sold ones among them)."""
    step = max(1, world.skus // sample)
    for n in range(0, world.skus, step):
        sku = world.sku(n)
        want = int(world.rackbeat.available_quantity(sku))
        shown = {alias: sim.available(sku) for alias, sim in world.shops.items()}
        if any(v != want for v in shown.values()):
            raise RuntimeError(f"{sku}: Rackbeat has {want} available, the shops show {shown}")


# --- the counts --------------------------------------------------------------------------------


def window(sends: Sequence[Send], seconds: float = 60.0) -> int:
    """The most Rackbeat requests in any window ``[t, t + seconds)`` (the fullest starts at a send)."""
    times = sorted(s.at for s in sends)
    return max((bisect.bisect_left(times, t + seconds) - i for i, t in enumerate(times)), default=0)


async def measure(
    shops: int, skus: int = DEFAULT_SKUS, *, separate: bool = False, orders: int = ORDERS_PER_SHOP
) -> dict[str, Any]:
    """Run the scenario (module docstring) for ``shops`` shops in one process, or ``separate``
    (one process per shop), with ``orders`` orders per shop; count Rackbeat requests and
    stock scans."""
    world = build_world(shops, skus, orders)
    aliases = list(world.shops)
    with tempfile.TemporaryDirectory() as tmp:
        wiring = accounts(aliases, Path(tmp), world.orders_since, separate=separate)
        async with daemons(wiring, world) as d:
            await d.settled()  # the first start: every process's first cycle
            first_scans = d.scans
            first_start = list(d.sends)
            first_seconds = d.elapsed()
            pushed = dict(d.pushed)
            for _ in range(SETTLE_CYCLES):
                await d.cycle()
            busy = list(d.sends)
            idle: list[list[Send]] = []
            scans: list[int] = []
            for _ in range(IDLE_CYCLES):
                before = d.scans
                idle.append(await d.cycle())
                scans.append(d.scans - before)
    imported = Counter((o.heading, o.your_reference) for o in world.rackbeat.orders)
    expected = shops * orders
    if len(imported) != expected or any(n != 1 for n in imported.values()):
        raise RuntimeError(f"{len(imported)} of {expected} orders imported exactly once: {imported}")
    check_stock(world)
    last = idle[-1]
    return {
        "shops": shops,
        "skus": skus,
        "separate": separate,
        "idle": [len(c) for c in idle],
        "idle_by_flow": dict(Counter(s.flow for s in last)),
        "idle_by_route": dict(Counter(f"{s.flow}: {s.route}" for s in last)),
        "idle_scans": scans,
        "first_start_scans": first_scans,
        "first_start_requests": len(first_start),
        "busy_requests": len(busy),
        "first_start_minutes": first_seconds / 60,
        #: the last shop's first stock write, minutes into the first start
        "stock_pushed_minutes": max(pushed.values()) / 60 if len(pushed) == shops else None,
        "peak_window": window(busy),
        "orders_per_shop": orders,
    }


# --- peak RSS ------------------------------------------------------------------------------------


async def measure_rss(
    shops: int, skus: int = DEFAULT_SKUS, *, orders: int = ORDERS_PER_SHOP
) -> dict[str, Any]:
    """The same scenario with the simulators served on loopback by this process and the
    daemon in a child process (:func:`child`); its peak RSS (MiB: ``peak_rss_mib``, and
    ``rss_before_mib`` once its modules were loaded)."""
    from daemon.sim.rackbeat import DEFAULT_TOKEN as RACKBEAT_TOKEN  # noqa: PLC0415  # see the imports
    from daemon.sim.shopify import DEFAULT_ACCESS_TOKEN  # noqa: PLC0415
    from daemon.webserver import handler_app, serve  # noqa: PLC0415

    world = build_world(shops, skus, orders)
    sims: dict[str, Callable[[httpx.Request], Any]] = {"rackbeat": world.rackbeat.handle}
    sims.update({alias: sim.handle for alias, sim in world.shops.items()})
    async with anyio.create_task_group() as tg:
        ports = {
            name: await tg.start(serve, handler_app(handle), "127.0.0.1", 0) for name, handle in sims.items()
        }
        with tempfile.TemporaryDirectory() as tmp:
            urls = {alias: f"http://127.0.0.1:{ports[alias]}/admin" for alias in world.shops}
            spec = {
                "shops": list(world.shops),
                "db": tmp,
                "since": world.orders_since.isoformat(),
                "urls": {"rackbeat": f"http://127.0.0.1:{ports['rackbeat']}/api", **urls},
                "tokens": {"rackbeat": RACKBEAT_TOKEN, "shopify": DEFAULT_ACCESS_TOKEN},
            }
            done = await anyio.run_process(
                [sys.executable, "-m", "bench.shops", "--child", json.dumps(spec)],
                cwd=REPO,
                check=False,
            )
        tg.cancel_scope.cancel()
    if done.returncode != 0:
        raise RuntimeError(f"the daemon process failed: {done.stderr.decode()[-400:]}")
    result: dict[str, Any] = json.loads(done.stdout)
    imported = len({(o.heading, o.your_reference) for o in world.rackbeat.orders})
    if imported != shops * orders:
        raise RuntimeError(f"the daemon process imported {imported} of {shops * orders} orders")
    return result


async def child(spec: dict[str, Any]) -> dict[str, float]:
    """The daemon process of :func:`measure_rss`: the scenario over loopback; its RSS."""
    since = datetime.fromisoformat(spec["since"])
    wiring = accounts(
        spec["shops"], Path(spec["db"]), since, separate=False, urls=spec["urls"], tokens=spec["tokens"]
    )
    loaded = sorted(m for m in sys.modules if m.startswith("daemon.sim"))
    if loaded:
        raise RuntimeError(f"the daemon process loaded simulator code: {loaded}")
    before = current_rss_mb()
    reset_peak_rss()
    async with daemons(wiring, None, loopback=True) as d:
        await d.settled()
        for _ in range(SETTLE_CYCLES + IDLE_CYCLES):
            await d.cycle()
    return {"rss_before_mib": before, "peak_rss_mib": peak_rss_mb()}


# --- the table -----------------------------------------------------------------------------------


async def run(size: int | None = None) -> list[Row]:
    """The bench runner's entry point; ``size`` is the number of SKUs (default 10,000)."""
    skus = size or DEFAULT_SKUS
    one: dict[int, dict[str, Any]] = {}
    apart: dict[int, dict[str, Any]] = {}
    rss: dict[int, float] = {}
    for n in SHOP_COUNTS:
        one[n] = await measure(n, skus)
        apart[n] = one[n] if n == 1 else await measure(n, skus, separate=True)
        rss[n] = (await measure_rss(n, skus))["peak_rss_mib"]
    return table(skus, one, apart, rss)


def table(
    skus: int,
    one: Mapping[int, dict[str, Any]],
    apart: Mapping[int, dict[str, Any]],
    rss: Mapping[int, float],
    counts: Sequence[int] = SHOP_COUNTS,
) -> list[Row]:
    """The rows: for each of ``counts`` shops, :func:`measure` in ``one`` process and
    ``apart`` (a process per shop), and the peak RSS of one process (MiB, ``rss``)."""
    pages = math.ceil((skus + 1) / 100)  # the shipping product is a Rackbeat product too
    rows: list[Row] = []
    Cell = tuple[float | int | str, str]  # value, notes

    def both(figure: str, new: Callable[[int], Cell], old: Callable[[int], Cell]) -> None:
        """The figure for each shop count: in one process, and (2+ shops) a process per shop."""
        for n in counts:
            label = f"{n} shop{'s' if n > 1 else ''}"
            rows.append(("shops", f"{figure}, {label}, one process", *new(n)))
            if n > 1:
                rows.append(("shops", f"{figure}, {label}, a process per shop (before)", *old(n)))

    def by_flow(m: dict[str, Any]) -> str:
        return ", ".join(f"{flow} {count}" for flow, count in sorted(m["idle_by_flow"].items()))

    def busy(m: dict[str, Any]) -> str:
        minutes = m["first_start_minutes"]
        stock = m["stock_pushed_minutes"]
        return (
            f"first start: {m['first_start_requests']} requests, the last at {minutes:.1f} min, every "
            f"shop's stock pushed from {stock:.1f} min (simulated clock)"
        )

    both(
        f"Rackbeat requests per idle cycle, {skus} SKUs",
        lambda n: (one[n]["idle"][-1], f"requests (goal {pages} + a few): {by_flow(one[n])}"),
        lambda n: (apart[n]["idle"][-1], f"requests: {by_flow(apart[n])}"),
    )
    both(
        "Rackbeat stock scans per idle cycle",
        lambda n: (one[n]["idle_scans"][-1], f"scans (goal 1; first start: {one[n]['first_start_scans']})"),
        lambda n: (apart[n]["idle_scans"][-1], "scans"),
    )
    both(
        f"most Rackbeat requests in any 60 s, first start + {one[counts[0]]['orders_per_shop']} orders per shop",
        lambda n: (one[n]["peak_window"], f"requests (goal <= {DEFAULT_RPM}); {busy(one[n])}"),
        lambda n: (apart[n]["peak_window"], f"requests ({n} budgets of {DEFAULT_RPM}); {busy(apart[n])}"),
    )
    both(
        f"peak RSS, {skus} SKUs",
        lambda n: (round(rss[n], 1), "MiB (the daemon process alone; the simulators in another)"),
        lambda n: (round(n * rss[1], 1), f"MiB ({n} x the one-shop process)"),
    )
    rows.extend(
        (
            "shops",
            f"peak RSS per added shop, 1 -> {n} shops, one process",
            round((rss[n] - rss[1]) / (n - 1), 1),
            f"MiB (a process per shop, before: {rss[1]:.1f})",
        )
        for n in counts[1:]
    )
    return rows


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m bench.shops [SKUS]`` (``--child SPEC``: the daemon process of the RSS figure)."""
    args = list(sys.argv[1:] if argv is None else argv)
    configure_logging("warning", "console", stream=sys.stderr)
    if args[:1] == ["--child"]:
        spec = json.loads(args[1])
        print(json.dumps(anyio.run(child, spec)))
        return
    size = int(args[0]) if args else None
    print(format_table(anyio.run(run, size)))


if __name__ == "__main__":
    main()
