"""The first start on a big shop: the real ``run`` command in its own process, in real time.

The simulators run in this process, served on loopback, on the machine's clock and at the
limits a merchant lives with: Shopify's Standard plan (bucket 2,000 points, 100 points/s)
and Rackbeat's request budget at its default (``RACKBEAT_REQUESTS_PER_MINUTE`` = 300, kept
by the daemon itself). The daemon is ``python -m daemon run`` with an environment of its
own settings only (as systemd starts it), so its process holds nothing of the simulators:
its peak RSS (``VmHWM`` of ``/proc/<pid>/status``) is the daemon's alone.

Scenario: SKUS products in both systems, Rackbeat holding :data:`STOCK` of each and
Shopify 0, nothing synced yet (no state DB). Figures:

* seconds from the daemon's start until Shopify shows Rackbeat's figure for every SKU
  (the first complete push), polled here every :data:`POLL` seconds;
* the Shopify and Rackbeat requests it took;
* the daemon's peak RSS then, and after :data:`IDLE_SCANS` more quiet stock cycles.

The run is wall-clock bound by the rate limits (minutes at 50,000 SKUs): it is a bench
figure, never a test assertion.

    python -m bench.first_sync [SKUS]       # SKUS defaults to 50,000; 10,000 is run too
    python -m bench.first_sync 10000 changed  # every product changed a minute before
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
from anyio.abc import Process

from bench import Row, run_alone

if TYPE_CHECKING:
    from daemon.sim.rackbeat import RackbeatSimulator
    from daemon.sim.shopify import ShopifySimulator

#: the repository (the daemon runs there as ``python -m daemon``)
REPO = Path(__file__).resolve().parent.parent
#: the sizes of the full run (the second is the issue's goal size)
SIZES: tuple[int, ...] = (10_000, 50_000)
#: Rackbeat's stock of every SKU (Shopify starts at 0)
STOCK = 5
#: seconds between looks at the Shopify simulator's levels
POLL = 0.5
#: quiet stock cycles after the push whose RSS is measured too
IDLE_SCANS = 2
#: the daemon's poll interval here (short, so the quiet cycles come soon)
POLL_SECONDS = 5
#: a first sync that takes longer than this has failed (or is far off the goal)
TIMEOUT = 1800.0
#: the daemon's settings (tokens are the simulators')
_PREFIXES = ("RACKBEAT_", "SHOPIFY_", "SYNC_", "HEALTH_", "LOG_", "SHOPS", "SHOP_")


def _status_mib(pid: int, field: str) -> float:
    """A memory field (``VmHWM``, ``VmRSS``) of process ``pid`` in MiB (0 off Linux)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def build(
    skus: int, changed_ago: timedelta = timedelta(days=1)
) -> tuple[ShopifySimulator, RackbeatSimulator]:
    """The two simulators with ``skus`` products each, Shopify's last changed ``changed_ago``
    (Rackbeat's a day ago), on the machine's clock."""
    from bench.stock import BUCKET_POINTS, RESTORE_PER_SECOND, fast_handles  # noqa: PLC0415
    from daemon.sim.rackbeat import RackbeatSimulator  # noqa: PLC0415  # not in the daemon's process
    from daemon.sim.shopify import ShopifySimulator  # noqa: PLC0415

    yesterday = datetime.now(UTC) - timedelta(days=1)
    changed = datetime.now(UTC) - changed_ago  # Shopify's products only (an import, a bulk edit)
    built = False
    shopify = ShopifySimulator(
        now=lambda: datetime.now(UTC) if built else changed,
        bucket_size=BUCKET_POINTS,
        restore_rate=RESTORE_PER_SECOND,
        request_log_size=10,
    )
    rackbeat = RackbeatSimulator(now=lambda: datetime.now(UTC) if built else yesterday, request_log_size=10)
    fast_handles(shopify)
    for n in range(skus):
        sku = f"SKU-{n:06}"
        rackbeat.add_product(sku, f"Product {n}", sales_price="80", stock=STOCK)
        shopify.add_product(f"Product {n}", [{"sku": sku, "price": "100.00"}])
    rackbeat.add_product("frakt", "Frakt")
    built = True  # from here on the simulators' records age in real time
    return shopify, rackbeat


def daemon_env(urls: dict[str, str], db: Path) -> dict[str, str]:
    """The daemon's environment: this one without any setting of ours, plus the run's."""
    from daemon.sim.rackbeat import DEFAULT_TOKEN  # noqa: PLC0415
    from daemon.sim.shopify import DEFAULT_ACCESS_TOKEN  # noqa: PLC0415

    env = {k: v for k, v in os.environ.items() if not k.startswith(_PREFIXES)}
    env.update(
        {
            "PYTHONPATH": str(REPO),
            "RACKBEAT_API_URL": urls["rackbeat"],
            "RACKBEAT_API_TOKEN": DEFAULT_TOKEN,
            "RACKBEAT_CONTACT_EMAIL": "bench@example.com",
            "SHOPIFY_SHOP": "bench.myshopify.com",
            "SHOPIFY_ACCESS_TOKEN": DEFAULT_ACCESS_TOKEN,
            "SHOPIFY_ADMIN_URL": urls["shopify"],
            "SYNC_DB": str(db),
            "SYNC_POLL_SECONDS": str(POLL_SECONDS),
            "SYNC_PAYMENT_TERMS": "1",
            "SYNC_CUSTOMER_GROUP": "1",
            "SYNC_EMPLOYEE": "1",
            "HEALTH_LISTEN": "127.0.0.1:0",
            "LOG_LEVEL": "warning",
            "LOG_FORMAT": "json",
        }
    )
    return env


async def _until(done: Callable[[], bool], process: Process, deadline: float) -> None:
    """Poll ``done`` every :data:`POLL` seconds; raise if the daemon exits or time runs out."""
    while not done():
        if process.returncode is not None:
            raise RuntimeError(f"the daemon exited with status {process.returncode}")
        if time.monotonic() > deadline:
            raise RuntimeError("the daemon did not finish its first sync in time")
        await anyio.sleep(POLL)


async def measure(skus: int, changed_ago: timedelta = timedelta(days=1)) -> dict[str, Any]:
    """Start the daemon on a shop of ``skus`` SKUs, Shopify's products last changed
    ``changed_ago`` (a minute: an import just done, inside the SKU index's overlap); time
    its first complete push; its RSS."""
    from daemon.webserver import handler_app, serve  # noqa: PLC0415

    shopify, rackbeat = build(skus, changed_ago)
    # the SKUs' inventory items, looked up once (the simulator finds a SKU by scanning)
    waiting = {v.inventory_item_id for v in shopify.variants.values()}
    location = shopify.primary_location_id

    def pushed() -> bool:
        levels = shopify.levels
        waiting.difference_update(
            [item for item in waiting if (level := levels.get((item, location))) and level.available == STOCK]
        )
        return not waiting

    def scans() -> int:
        return sum(n for route, n in rackbeat.requests.items() if route.startswith("GET /products"))

    result: dict[str, Any] = {"skus": skus}
    async with anyio.create_task_group() as tg:
        rb_port = await tg.start(serve, handler_app(rackbeat.handle), "127.0.0.1", 0)
        sh_port = await tg.start(serve, handler_app(shopify.handle), "127.0.0.1", 0)
        urls = {"rackbeat": f"http://127.0.0.1:{rb_port}/api", "shopify": f"http://127.0.0.1:{sh_port}/admin"}
        with tempfile.TemporaryDirectory() as tmp, (Path(tmp) / "daemon.log").open("wb") as log:
            shopify.reset_requests()
            rackbeat.reset_counts()
            started = time.monotonic()
            process = await anyio.open_process(
                [sys.executable, "-m", "daemon", "run"],
                cwd=tmp,
                env=daemon_env(urls, Path(tmp) / "sync.db"),
                stdout=subprocess.DEVNULL,
                stderr=log,  # a pipe nobody reads would fill and stop the daemon
            )
            try:
                await _until(pushed, process, started + TIMEOUT)
                result["seconds"] = time.monotonic() - started
                result["shopify_requests"] = sum(shopify.requests.values())
                result["set_stock"] = shopify.requests["SetStock"]
                result["rackbeat_requests"] = rackbeat.request_total()
                result["peak_rss_push_mib"] = _status_mib(process.pid, "VmHWM")
                target = scans() + IDLE_SCANS * -(-(skus + 1) // 100)  # pages of the quiet scans
                await _until(lambda: scans() >= target, process, started + TIMEOUT)
                result["peak_rss_mib"] = _status_mib(process.pid, "VmHWM")
                result["rss_mib"] = _status_mib(process.pid, "VmRSS")
            finally:
                process.send_signal(signal.SIGTERM)
                with anyio.move_on_after(30):
                    await process.wait()
                if process.returncode is None:
                    process.kill()
                    await process.wait()
                errors = (Path(tmp) / "daemon.log").read_text(errors="replace")
                if process.returncode not in (0, -signal.SIGTERM):
                    raise RuntimeError(f"the daemon failed ({process.returncode}): {errors[-600:]}")
        tg.cancel_scope.cancel()
    return result


def rows(m: dict[str, Any]) -> list[Row]:
    """The table rows of one size."""
    n = m["skus"]
    return [
        (
            "first sync",
            f"{n} SKUs: start to first complete push (Standard plan, 300 Rackbeat req/min)",
            round(m["seconds"], 1),
            "s wall clock, daemon process (goal ≤ 180 s at 50,000)",
        ),
        (
            "first sync",
            f"{n} SKUs: Shopify / Rackbeat requests until then",
            f"{m['shopify_requests']} / {m['rackbeat_requests']}",
            "requests",
        ),
        (
            "first sync",
            f"{n} SKUs: daemon peak RSS at the push / after {IDLE_SCANS} quiet cycles",
            f"{m['peak_rss_push_mib']:.1f} / {m['peak_rss_mib']:.1f}",
            "MiB, the daemon process alone (goal ≤ 80 MiB at 50,000)",
        ),
    ]


async def run(size: int | None = None) -> list[Row]:
    """The bench runner's entry point: ``size`` SKUs, or :data:`SIZES` (full run)."""
    result: list[Row] = []
    for n in (size,) if size else SIZES:
        result.extend(rows(await measure(n)))
    return result


async def run_changed(size: int | None = None) -> list[Row]:
    """``size`` SKUs (default 10,000) whose products all changed a minute before the start."""
    m = await measure(size or SIZES[0], timedelta(minutes=1))
    return [
        (bench, f"{figure} (all changed a minute before)", value, unit)
        for bench, figure, value, unit in rows(m)
    ]


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m bench.first_sync [SKUS] [changed]``: ``changed``, the products all
    changed a minute before the start."""
    args = list(sys.argv[1:] if argv is None else argv)
    changed = "changed" in args
    run_alone(run_changed if changed else run, [a for a in args if a != "changed"])


if __name__ == "__main__":
    main()
