"""Benchmarks against the simulators: ratios and counts (``python -m bench``).

What the benchmark modules share: the row of the table, memory readings, the table itself,
and running one module on its own (``python -m bench.stock [SIZE]``).
"""

from __future__ import annotations

import contextlib
import resource
import sys
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import anyio
import httpx
from pydantic import SecretStr

from daemon.config import IsolatedSettings, Settings

#: (benchmark, figure, value, unit / notes)
Row = tuple[str, str, float | int | str, str]
RunFunction = Callable[[int | None], Awaitable[list[Row]]]
HEADER: Row = ("benchmark", "figure", "value", "unit / notes")


def bench_settings(db: Path, **overrides: Any) -> Settings:
    """The daemon's defaults, pointed at the simulators (``overrides`` by field name)."""
    values: dict[str, Any] = {
        "rackbeat_api_url": "http://rackbeat.sim/api",
        "rackbeat_contact_email": "bench@example.com",
        "shopify_shop": "bench.myshopify.com",
        "shopify_admin_url": "http://shopify.sim/admin",
        "sync_db": db,
        "sync_payment_terms": "1",
        "sync_customer_group": "1",
        "sync_employee": "1",
        "sync_poll_seconds": 60,
        **overrides,
    }
    # the simulators' tokens unless given: a daemon process a bench starts (bench.shops)
    # gets them from its parent and loads no simulator code
    if "rackbeat_api_token" not in values:
        from daemon.sim.rackbeat import DEFAULT_TOKEN  # noqa: PLC0415

        values["rackbeat_api_token"] = SecretStr(DEFAULT_TOKEN)
    if "shopify_access_token" not in values:
        from daemon.sim.shopify import DEFAULT_ACCESS_TOKEN  # noqa: PLC0415

        values["shopify_access_token"] = SecretStr(DEFAULT_ACCESS_TOKEN)
    return IsolatedSettings.of(values)


def peak_rss_mib() -> float:
    """Peak resident set size of this process so far, in MiB (``ru_maxrss``; KiB on Linux)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def _status_mib(field: str) -> float | None:
    """A ``/proc/self/status`` memory field (``VmRSS``, ``VmHWM``) in MiB; None off Linux."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def current_rss_mb() -> float:
    """Resident set size now, in MiB (Linux; 0 elsewhere)."""
    return _status_mib("VmRSS") or 0.0


def reset_peak_rss() -> None:
    """Start a new peak-RSS measurement (Linux: ``/proc/self/clear_refs`` ← 5); best effort."""
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def peak_rss_mb() -> float:
    """Peak resident set size since :func:`reset_peak_rss` (VmHWM), or of the process, in MiB."""
    peak = _status_mib("VmHWM")
    return peak if peak is not None else peak_rss_mib()


class TimedHandler:
    """A simulator's ``handle`` that adds up the seconds spent inside it: the simulator runs
    in this process, so its share of a wall-clock figure is measured apart."""

    def __init__(self, handle: Callable[[httpx.Request], Awaitable[httpx.Response]]) -> None:
        self.handle = handle
        self.seconds = 0.0

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        started = time.perf_counter()
        try:
            return await self.handle(request)
        finally:
            self.seconds += time.perf_counter() - started


def paging_rows(bench: str, protocol: str, m: Mapping[str, Any], per_page: str) -> list[Row]:
    """The rows of a client's paging benchmark: requests, per 1,000, wall clock and the
    client's share of it (``m`` from the module's measurement)."""
    read = int(m["products"])
    return [
        (bench, f"{protocol} requests to page {read} products", int(m["requests"]), "requests"),
        (bench, "requests per 1,000 products", round(m["requests"] * 1000 / max(read, 1), 1), per_page),
        (bench, f"scan of {read} products, this machine", round(m["seconds"], 2), "s wall clock"),
        (
            bench,
            "  of which client, HTTP and socket",
            round(m["seconds"] - m["simulator_seconds"], 2),
            "s (the rest: the in-process simulator)",
        ),
    ]


def format_table(rows: Sequence[Row]) -> str:
    """The rows under :data:`HEADER` as aligned text columns (values right-aligned)."""
    cells = [tuple(str(c) for c in row) for row in (HEADER, *rows)]
    widths = [max(len(row[i]) for row in cells) for i in range(4)]
    lines = []
    for bench, figure, value, unit in cells:
        line = f"{bench:<{widths[0]}}  {figure:<{widths[1]}}  {value:>{widths[2]}}  {unit}"
        lines.append(line.rstrip())
        if len(lines) == 1:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def run_alone(run: RunFunction, argv: Sequence[str] | None = None) -> None:
    """Run one benchmark module from the command line: ``[SIZE]``, then its table."""
    args = sys.argv[1:] if argv is None else argv
    size = int(args[0]) if args else None
    print(format_table(anyio.run(run, size)))
