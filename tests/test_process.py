"""The daemon as an operator meets it: real processes (``python -m daemon …``), real signals.

Each test starts ``sys.executable -m daemon`` with an environment stripped of every
setting of ours (no ``RACKBEAT_``/``SHOPIFY_``/``SYNC_`` variables, no systemd directories)
in a temporary working directory without ``.env``, and looks only at what an operator
sees: exit status, output, the health endpoint, the state file. The tokens are
distinctive strings that must never show up in any output or in the state file.
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import sqlite3
import stat
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Collection, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio
import anyio.abc
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from daemon.demo import World, place_order, seed_world
from daemon.mapping import shopify_heading
from daemon.sim.rackbeat import RackbeatSimulator
from daemon.sim.shopify import ShopifySimulator
from tests.harness import apis_on_loopback, serving

REPO = Path(__file__).resolve().parent.parent
RACKBEAT_TOKEN = "rb-process-test-token-5b1e9d04"
SHOPIFY_TOKEN = "shpat_process_test_token_c7a2f0e8"
TOKENS = (RACKBEAT_TOKEN, SHOPIFY_TOKEN)
EX_CONFIG = 78
#: variables of ours, and systemd's, that must not leak in from the developer's shell
_PREFIXES = ("RACKBEAT_", "SHOPIFY_", "SYNC_", "HEALTH_", "LOG_", "SHOPS", "SHOP_")
_SYSTEMD = frozenset(
    {"CREDENTIALS_DIRECTORY", "STATE_DIRECTORY", "NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"}
)


def clean_env(values: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment without any setting of the daemon, plus ``values``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(_PREFIXES) and k not in _SYSTEMD}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    env.update(values or {})
    return env


def unused_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def daemon_env(
    tmp_path: Path, *, rackbeat_url: str, shopify_admin_url: str, health_port: int
) -> dict[str, str]:
    """A valid environment for ``run``: every required setting, short poll, DB in ``tmp_path``."""
    return clean_env(
        {
            "RACKBEAT_API_URL": rackbeat_url,
            "RACKBEAT_API_TOKEN": RACKBEAT_TOKEN,
            "RACKBEAT_CONTACT_EMAIL": "ops@example.com",
            "SHOPIFY_SHOP": "process-test.myshopify.com",
            "SHOPIFY_ACCESS_TOKEN": SHOPIFY_TOKEN,
            "SHOPIFY_ADMIN_URL": shopify_admin_url,
            "SYNC_DB": str(tmp_path / "state" / "sync.db"),
            "SYNC_POLL_SECONDS": "0.5",
            "HEALTH_LISTEN": f"127.0.0.1:{health_port}",
            "SYNC_PAYMENT_TERMS": "1",
            "SYNC_CUSTOMER_GROUP": "1",
            "SYNC_EMPLOYEE": "1",
        }
    )


def unreachable_env(tmp_path: Path, health_port: int) -> dict[str, str]:
    """Both APIs on a loopback port that refuses connections."""
    closed = unused_port()
    return daemon_env(
        tmp_path,
        rackbeat_url=f"http://127.0.0.1:{closed}/api",
        shopify_admin_url=f"http://127.0.0.1:{closed}/admin",
        health_port=health_port,
    )


def check_offline(tmp_path: Path, env: Mapping[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "daemon", "check", "--offline"],
        cwd=tmp_path,
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def assert_no_token(text: str | bytes, where: str) -> None:
    data = text if isinstance(text, bytes) else text.encode()
    for token in TOKENS:
        assert token.encode() not in data, f"a token appeared in {where}"


def assert_private_state(db: Path) -> None:
    """The state DB and its -wal/-shm files: owner-only, and no token inside."""
    files = list(db.parent.glob(f"{db.name}*"))
    assert db in files
    for path in files:
        assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0, f"{path.name} is readable by others"
        assert_no_token(path.read_bytes(), path.name)
    assert stat.S_IMODE(db.stat().st_mode) == 0o600


# --- check --offline --------------------------------------------------------------------------


def test_check_offline_without_settings_names_every_missing_variable(tmp_path: Path) -> None:
    result = check_offline(tmp_path, clean_env())
    assert result.returncode == EX_CONFIG
    output = result.stdout + result.stderr
    for variable in (
        "RACKBEAT_API_TOKEN",
        "SHOPIFY_SHOP",
        "SHOPIFY_ACCESS_TOKEN",
        "SHOPIFY_CLIENT_ID",
        "SHOPIFY_CLIENT_SECRET",
        # S3, S5, S8: required while SYNC_ORDERS is on (the default)
        "SYNC_PAYMENT_TERMS",
        "SYNC_CUSTOMER_GROUP",
        "SYNC_EMPLOYEE",
    ):
        assert variable in output, f"{variable} not named in:\n{output}"
    assert "Traceback" not in output


def test_check_offline_names_a_bad_choice_and_the_allowed_values(tmp_path: Path) -> None:
    result = check_offline(
        tmp_path,
        clean_env(
            {
                "RACKBEAT_API_TOKEN": RACKBEAT_TOKEN,
                "SHOPIFY_SHOP": "process-test.myshopify.com",
                "SHOPIFY_ACCESS_TOKEN": SHOPIFY_TOKEN,
                "SYNC_ORDERS": "false",
                "SYNC_ORDER_STATUS": "shipped",
            }
        ),
    )
    assert result.returncode == EX_CONFIG
    output = result.stdout + result.stderr
    problems = [line for line in output.splitlines() if "SYNC_ORDER_STATUS" in line]
    assert len(problems) == 1, output
    for word in ("shipped", "draft", "booked", "ready_to_ship"):
        assert word in problems[0]
    # the one wrong value is the only complaint
    assert "RACKBEAT_API_TOKEN" not in output
    assert_no_token(output, "check --offline output")


def test_check_offline_accepts_a_complete_environment(tmp_path: Path) -> None:
    result = check_offline(tmp_path, unreachable_env(tmp_path, unused_port()))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "configuration OK" in result.stdout
    assert_no_token(result.stdout + result.stderr, "check --offline output")


# --- run ----------------------------------------------------------------------------------------


@dataclass
class Daemon:
    """A running ``python -m daemon run`` and where its output goes."""

    process: anyio.abc.Process
    stdout: Path
    stderr: Path
    health: str

    def output(self) -> str:
        return self.stdout.read_text(errors="replace") + self.stderr.read_text(errors="replace")

    def cpu_seconds(self) -> float:
        """User + system CPU time so far, from Linux's /proc (the daemon runs on Linux)."""
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        # after the command name: state is field 3, utime 14 and stime 15 (1-based)
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    async def health_until(
        self, client: httpx.AsyncClient, statuses: Collection[str], *, within: float
    ) -> httpx.Response:
        """Poll ``/healthz`` until its ``status`` is one of ``statuses``."""
        with anyio.fail_after(within):
            while True:
                if self.process.returncode is not None:
                    pytest.fail(f"daemon exited with {self.process.returncode}:\n{self.output()}")
                response = await self.get(client, "/healthz")
                if response.json()["status"] in statuses:
                    return response
                await anyio.sleep(0.05)

    async def get(self, client: httpx.AsyncClient, path: str) -> httpx.Response:
        return await client.get(f"{self.health}{path}")

    async def wait_for(
        self, client: httpx.AsyncClient, path: str, ok: Callable[[httpx.Response], bool], *, within: float
    ) -> httpx.Response:
        """Poll ``path`` until ``ok(response)``; fail if the process exits or time runs out."""
        with anyio.fail_after(within):
            while True:
                if self.process.returncode is not None:
                    pytest.fail(f"daemon exited with {self.process.returncode}:\n{self.output()}")
                try:
                    response = await self.get(client, path)
                    if ok(response):
                        return response
                except httpx.TransportError:
                    pass  # not listening yet
                await anyio.sleep(0.05)

    async def wait_until(
        self, client: httpx.AsyncClient, path: str, status: int, *, within: float
    ) -> httpx.Response:
        """Poll ``path`` until it answers ``status``."""
        return await self.wait_for(client, path, lambda r: r.status_code == status, within=within)

    async def stop(self, *, within: float) -> int:
        """SIGTERM, then the exit status (fails the test when it takes longer than ``within``)."""
        self.process.send_signal(signal.SIGTERM)
        with anyio.fail_after(within):
            return await self.process.wait()


@asynccontextmanager
async def running_daemon(tmp_path: Path, env: Mapping[str, str], name: str) -> AsyncIterator[Daemon]:
    """Start ``run``; kill it on the way out if the test did not stop it."""
    out, err = tmp_path / f"{name}.stdout", tmp_path / f"{name}.stderr"
    host, port = env["HEALTH_LISTEN"].split(":")
    with out.open("wb") as stdout, err.open("wb") as stderr:
        process = await anyio.open_process(
            [sys.executable, "-m", "daemon", "run"], stdout=stdout, stderr=stderr, cwd=tmp_path, env=dict(env)
        )
        try:
            yield Daemon(process, out, err, f"http://{host}:{port}")
        finally:
            with anyio.CancelScope(shield=True):
                if process.returncode is None:
                    process.kill()
                await process.wait()
                await process.aclose()


@pytest.mark.anyio
async def test_run_with_unreachable_apis_idles_reports_and_stops_on_sigterm(tmp_path: Path) -> None:
    env = unreachable_env(tmp_path, unused_port())
    async with running_daemon(tmp_path, env, "unreachable") as daemon, httpx.AsyncClient(timeout=5) as client:
        await daemon.wait_until(client, "/livez", 200, within=20)
        assert (await daemon.get(client, "/readyz")).status_code == 200

        # the flows' clients are refused at once and back off: /healthz says so within seconds
        health = await daemon.health_until(client, ("warn", "fail"), within=10)
        assert health.headers["content-type"] == "application/health+json"
        doc = health.json()
        assert health.status_code == (503 if doc["status"] == "fail" else 200)
        head = await client.head(f"{daemon.health}/healthz")  # what a load balancer's probe sends
        assert head.status_code in (200, 503)
        assert head.headers["content-type"] == "application/health+json"
        assert head.content == b""
        flows = {check[0]["componentId"]: check[0] for check in doc["checks"].values()}
        assert set(flows) == {"orders", "fulfilments", "stock", "products"}
        assert any(flow["status"] != "pass" for flow in flows.values())
        assert all(flow["output"] for flow in flows.values() if flow["status"] != "pass")
        # nothing has succeeded against an API that is not there
        assert all(flow["lastSuccess"] is None for flow in flows.values())

        # an observation window, not a wait for an event: the daemon must spend it idle
        cpu_before = daemon.cpu_seconds()
        await anyio.sleep(2.0)
        cpu_after = daemon.cpu_seconds()
        assert cpu_after - cpu_before < 0.5, "the daemon spins while the APIs are down"
        assert len(daemon.output().splitlines()) < 30, "the daemon logs every retry, not state changes"
        assert (await daemon.get(client, "/livez")).status_code == 200

        # the flows are in their clients' backoff: a stop ends it, not the stop grace period
        started = anyio.current_time()
        assert await daemon.stop(within=10) == 0
        assert anyio.current_time() - started < 3.0
    output = daemon.output()
    assert "Traceback" not in output
    assert_no_token(output, "the daemon's output")


@asynccontextmanager
async def simulators_on_loopback(
    shopify: ShopifySimulator | None = None, rackbeat: RackbeatSimulator | None = None
) -> AsyncIterator[tuple[str, str]]:
    """Both simulators behind real sockets; yields (Rackbeat API URL, Shopify admin URL)."""
    async with apis_on_loopback(shopify, rackbeat) as served:
        yield served.rackbeat_url, served.shopify_admin_url


@pytest.mark.anyio
async def test_refused_tokens_make_healthz_fail_and_name_the_variable(tmp_path: Path) -> None:
    # the simulators know neither of our tokens: both APIs answer 401
    async with simulators_on_loopback() as (rackbeat_url, shopify_url):
        env = daemon_env(
            tmp_path, rackbeat_url=rackbeat_url, shopify_admin_url=shopify_url, health_port=unused_port()
        )
        async with running_daemon(tmp_path, env, "refused") as daemon, httpx.AsyncClient(timeout=5) as client:
            await daemon.wait_until(client, "/livez", 200, within=20)
            # each flow fails on the first API it asks (the orders flow's reference gate asks
            # Rackbeat first): wait until some flow has met Shopify's refusal as well
            health = await daemon.wait_for(
                client,
                "/healthz",
                lambda r: r.status_code == 503 and b"SHOPIFY_ACCESS_TOKEN" in r.content,
                within=20,
            )
            assert health.headers["content-type"] == "application/health+json"
            doc = json.loads(health.content)
            assert doc["status"] == "fail"
            failing = [c[0] for c in doc["checks"].values() if c[0]["status"] == "fail"]
            assert failing
            assert all(c["output"].startswith("auth:") for c in failing)
            named = " ".join(c["output"] for c in failing)
            assert "SHOPIFY_ACCESS_TOKEN" in named
            assert "RACKBEAT_API_TOKEN" in named
            assert_no_token(health.content, "/healthz")
            assert_no_token((await daemon.get(client, "/metrics")).content, "/metrics")
            assert await daemon.stop(within=10) == 0
    output = daemon.output()
    assert "SHOPIFY_ACCESS_TOKEN" in output  # the log says what to fix …
    assert_no_token(output, "the daemon's output")  # … without showing it


def writes_seen(world: World) -> int:
    """Writes that reached either simulator: Rackbeat's non-GET routes, Shopify's mutations."""
    rackbeat = sum(n for route, n in world.rackbeat.requests.items() if not route.startswith("GET"))
    shopify = sum(n for op, n in world.shopify.requests.items() if op in SHOPIFY_WRITES)
    return rackbeat + shopify


#: the Shopify operations of ours that change something
SHOPIFY_WRITES = frozenset({"SetStock", "ProductCreate", "ProductUpdate", "VariantsBulkUpdate"})


@pytest.mark.anyio
async def test_killed_while_writing_restarts_on_an_intact_private_db(tmp_path: Path) -> None:
    shop = "process-test.myshopify.com"
    world = World(
        ShopifySimulator(shop_domain=shop, access_tokens=(SHOPIFY_TOKEN,)),
        RackbeatSimulator(token=RACKBEAT_TOKEN),
        random.Random(7),  # test data
    )
    seed_world(world)
    async with simulators_on_loopback(world.shopify, world.rackbeat) as (rackbeat_url, shopify_url):
        env = daemon_env(
            tmp_path, rackbeat_url=rackbeat_url, shopify_admin_url=shopify_url, health_port=unused_port()
        )
        env.update(
            {
                "SYNC_DEFAULT_PRODUCT_GROUP": "1",
                "SYNC_CURRENCY": "DKK",
                "SYNC_ORDERS_SINCE": (datetime.now(UTC) - timedelta(minutes=1)).isoformat(),
            }
        )
        db = Path(env["SYNC_DB"])
        async with running_daemon(tmp_path, env, "first") as first, httpx.AsyncClient(timeout=5) as client:
            await first.wait_until(client, "/livez", 200, within=20)
            # keep orders coming until the daemon is in the middle of writing them and the stock
            with anyio.fail_after(30):
                while writes_seen(world) < 5:
                    place_order(world)
                    await anyio.sleep(0.02)
            first.process.kill()  # SIGKILL: no clean-up of any kind
            assert await first.process.wait() == -signal.SIGKILL
        assert_private_state(db)

        async with running_daemon(tmp_path, env, "second") as second, httpx.AsyncClient(timeout=5) as client:
            await second.wait_until(client, "/livez", 200, within=20)
            assert (await second.get(client, "/readyz")).status_code == 200
            with sqlite3.connect(db) as conn:
                assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
                tables = {
                    row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
                }
            conn.close()
            assert "cursors" in tables
            # the restarted daemon carries on from what was committed
            await second.health_until(client, ("pass",), within=30)
            assert await second.stop(within=10) == 0

    assert_private_state(db)
    for daemon in (first, second):
        assert "Traceback" not in daemon.output()
        assert_no_token(daemon.output(), "the daemon's output")


@pytest.mark.anyio
async def test_sigterm_while_the_state_db_opens_is_a_clean_stop(tmp_path: Path) -> None:
    # SIGTERM arrives at the worst moment of start-up, before the DB and the listener are up
    script = (
        "import os, signal, sys\n"
        "from daemon import __main__ as cli, store\n"
        "opened = store.Store.open.__func__\n"
        "async def open_(cls, *args, **kwargs):\n"
        "    os.kill(os.getpid(), signal.SIGTERM)\n"
        "    return await opened(cls, *args, **kwargs)\n"
        "store.Store.open = classmethod(open_)\n"
        "sys.exit(cli.main(['run']))\n"
    )
    env = unreachable_env(tmp_path, unused_port())
    with anyio.fail_after(20):
        result = await anyio.run_process([sys.executable, "-c", script], cwd=tmp_path, env=env, check=False)
    output = (result.stdout + result.stderr).decode(errors="replace")
    assert result.returncode == 0, output
    assert "Traceback" not in output
    assert '"daemon.stopping"' in output


@pytest.mark.anyio
async def test_a_health_port_already_taken_stops_with_exit_78_naming_the_variable(tmp_path: Path) -> None:
    # systemd's RestartPreventExitStatus=78 relies on this: a wrong setting is not retried
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        env = unreachable_env(tmp_path, int(taken.getsockname()[1]))
        with anyio.fail_after(20):
            result = await anyio.run_process(
                [sys.executable, "-m", "daemon", "run"], cwd=tmp_path, env=env, check=False
            )
    output = (result.stdout + result.stderr).decode(errors="replace")
    assert result.returncode == EX_CONFIG, output
    assert "HEALTH_LISTEN" in output
    assert "Traceback" not in output


# --- two shops on one Rackbeat account ----------------------------------------------------------

#: the shops of the account: alias → (domain, token)
SHOPS = {
    "a": ("shop-a.myshopify.com", "shpat_process_test_a_9b31e2"),
    "b": ("shop-b.myshopify.com", "shpat_process_test_b_71d0c4"),
}


def shops_env(
    tmp_path: Path, *, rackbeat_url: str, shopify_urls: Mapping[str, str], health_port: int
) -> dict[str, str]:
    """``run`` for the shops of :data:`SHOPS` (``SHOPS=a,b``, ``SHOP_A__…``), the order and
    customer numbers shared, orders from a minute ago on."""
    values = {
        "SHOPS": ",".join(SHOPS),
        "RACKBEAT_API_URL": rackbeat_url,
        "RACKBEAT_API_TOKEN": RACKBEAT_TOKEN,
        "RACKBEAT_CONTACT_EMAIL": "ops@example.com",
        "SYNC_DB": str(tmp_path / "state" / "sync.db"),
        "SYNC_POLL_SECONDS": "0.3",
        "HEALTH_LISTEN": f"127.0.0.1:{health_port}",
        "SYNC_PAYMENT_TERMS": "1",
        "SYNC_CUSTOMER_GROUP": "1",
        "SYNC_EMPLOYEE": "1",
        "SYNC_DEFAULT_PRODUCT_GROUP": "1",
        "SYNC_CURRENCY": "DKK",
        "SYNC_ORDERS_SINCE": (datetime.now(UTC) - timedelta(minutes=1)).isoformat(),
    }
    for alias, (domain, token) in SHOPS.items():
        values[f"SHOP_{alias.upper()}__SHOPIFY_SHOP"] = domain
        values[f"SHOP_{alias.upper()}__SHOPIFY_ACCESS_TOKEN"] = token
        values[f"SHOP_{alias.upper()}__SHOPIFY_ADMIN_URL"] = shopify_urls[alias]
    return clean_env(values)


async def last_successes(daemon: Daemon, client: httpx.AsyncClient, flow: str) -> dict[str, float]:
    """Each shop's ``flow``: when its last cycle succeeded (``/metrics``), by alias."""
    text = (await daemon.get(client, "/metrics")).text
    return {
        sample.labels["shop"]: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "rackbeat_shopify_flow_last_success_timestamp_seconds"
        and sample.labels["flow"] == flow
    }


@pytest.mark.anyio
async def test_two_shops_orders_with_the_same_names_reach_rackbeat_once_each_through_kill_9(
    tmp_path: Path,
) -> None:
    shops = {
        alias: ShopifySimulator(
            shop_domain=domain, access_tokens=(token,), bucket_size=20_000, restore_rate=1_000
        )
        for alias, (domain, token) in SHOPS.items()
    }
    rackbeat = RackbeatSimulator(token=RACKBEAT_TOKEN)
    rackbeat.add_product("frakt", "Frakt", group="2", inventory_enabled=False)
    for sku in ("MUG-1", "TEE-2", "CAP-3"):
        rackbeat.add_product(sku, stock=500)
        for sim in shops.values():
            sim.add_product(f"Product {sku}", [{"sku": sku, "price": "125.00", "stock": 500}])
    # waiting when the daemon starts: #1001 in both shops, by one customer, then more
    for n, sku in enumerate(("MUG-1", "TEE-2", "CAP-3")):
        for sim in shops.values():
            sim.sell(sku, 1 + n, email="same@example.com" if n == 0 else f"{sim.shop_domain}.{n}@example.com")
    assert all(sim.orders[next(iter(sim.orders))].name == "#1001" for sim in shops.values())

    # the daemon dies the moment the second #1001 lands in Rackbeat: it never hears the answer
    daemons: list[Daemon] = []
    landed: list[str] = []

    async def kill_at_the_second_1001(request: httpx.Request) -> httpx.Response:
        response = await rackbeat.handle(request)
        draft = request.method == "POST" and request.url.path.endswith("/orders/drafts")
        body = json.loads(request.content) if draft and response.is_success else {}
        if body.get("your_reference") == "#1001":
            landed.append(str(body.get("heading")))
            if len(landed) == 2:
                daemons[0].process.kill()
        return response

    def orders_of(alias: str) -> dict[str, list[str]]:
        """Each Shopify order name of the shop → the Rackbeat orders with its heading."""
        domain = SHOPS[alias][0]
        return {
            order.name: [
                o.number for o in rackbeat.orders if o.heading == shopify_heading(order.name, domain)
            ]
            for order in shops[alias].orders.values()
        }

    def each_once() -> bool:
        every = [numbers for alias in SHOPS for numbers in orders_of(alias).values()]
        assert all(len(numbers) <= 1 for numbers in every), "an order reached Rackbeat twice"
        return all(len(numbers) == 1 for numbers in every) and len(rackbeat.orders) == len(every)

    async with (
        serving(shops["a"].handle, "shopify-a") as shop_a,
        serving(shops["b"].handle, "shopify-b") as shop_b,
        serving(kill_at_the_second_1001, "rackbeat") as rackbeat_base,
    ):
        env = shops_env(
            tmp_path,
            rackbeat_url=f"{rackbeat_base}/api",
            shopify_urls={"a": f"{shop_a}/admin", "b": f"{shop_b}/admin"},
            health_port=unused_port(),
        )
        db = Path(env["SYNC_DB"])
        async with running_daemon(tmp_path, env, "first") as first:
            daemons.append(first)
            with anyio.fail_after(30):
                assert await first.process.wait() == -signal.SIGKILL
        assert sorted(landed) == sorted(shopify_heading("#1001", domain) for domain, _ in SHOPS.values())
        assert not each_once()  # the killed daemon had not finished
        assert_private_state(db)

        async with running_daemon(tmp_path, env, "second") as second, httpx.AsyncClient(timeout=5) as client:
            await second.wait_until(client, "/livez", 200, within=20)
            for sim in shops.values():  # more orders while it catches up
                sim.sell("MUG-1", 2, email="same@example.com")
            await second.health_until(client, ("pass",), within=30)
            with anyio.fail_after(30):
                while True:
                    if each_once():
                        break
                    await anyio.sleep(0.05)
            # two more orders cycles of each shop find nothing left to do
            with anyio.fail_after(20):
                for _ in range(2):
                    done = time.time()
                    while True:
                        cycles = await last_successes(second, client, "orders")
                        if all(cycles.get(alias, 0) > done for alias in SHOPS):
                            break
                        await anyio.sleep(0.05)
            assert each_once()
            assert await second.stop(within=10) == 0

    # the two #1001 are two Rackbeat orders, one per shop, told apart by their headings
    firsts = sorted(
        (o.heading, o.is_ready_for_shipping) for o in rackbeat.orders if o.your_reference == "#1001"
    )
    assert firsts == sorted((shopify_heading("#1001", domain), True) for domain, _ in SHOPS.values())
    assert all(o.is_ready_for_shipping for o in rackbeat.orders)
    # one customer for the e-mail that bought in both shops
    assert len([c for c in rackbeat.customers.values() if c.contact_email == "same@example.com"]) == 1
    assert_private_state(db)
    for daemon in (first, second):
        assert "Traceback" not in daemon.output()
        for _, token in SHOPS.values():
            assert token not in daemon.output()
        assert_no_token(daemon.output(), "the daemon's output")
