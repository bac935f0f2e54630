"""``python -m bench``: run every benchmark and print one table.

Each benchmark is a module with ``async def run(size: int | None = None) -> list[Row]``,
where a row is ``(benchmark, figure, value, unit)`` and ``size`` scales the workload
(None: the module's full size). The runner imports the modules of :data:`MODULES` in
order. A benchmark that raises is reported as failed and the others still run (exit
status 1). The last row is the peak resident set size of the whole run.

    python -m bench                 # full sizes (minutes)
    python -m bench --quick         # small sizes (seconds)
    python -m bench --json          # the rows as JSON objects
    python -m bench --only stock --size 500
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
from collections.abc import Sequence
from typing import cast

import anyio

from bench import Row, RunFunction, format_table, peak_rss_mib
from daemon.logs import configure_logging

#: every benchmark, in the order of the table
MODULES: tuple[str, ...] = (
    "bench.clients_shopify",
    "bench.clients_rackbeat",
    "bench.stock",
    "bench.index",
    "bench.idle",
    "bench.lost_answers",
    "bench.orders",
    "bench.fulfilments",
    "bench.shops",
    "bench.first_sync",
    "bench.incremental",
    "bench.live_check",
    "bench.health",
)
#: the workload of each benchmark under ``--quick`` (modules not listed run at full size)
QUICK_SIZES: dict[str, int] = {
    "bench.clients_shopify": 1_000,
    "bench.clients_rackbeat": 1_000,
    "bench.stock": 1_000,
    "bench.index": 5_000,
    "bench.idle": 100,
    "bench.lost_answers": 12,
    "bench.orders": 100,
    "bench.fulfilments": 100,
    "bench.shops": 200,
    "bench.first_sync": 1_000,
    "bench.incremental": 200,
    "bench.live_check": 500,
    "bench.health": 50,
}


def module_name(name: str) -> str:
    """``stock`` or ``bench.stock`` → ``bench.stock``."""
    return name if name.startswith("bench.") else f"bench.{name}"


async def collect(
    modules: Sequence[str] = MODULES,
    *,
    quick: bool = False,
    size: int | None = None,
) -> tuple[list[Row], bool]:
    """Run each benchmark module in turn; return the rows and whether every one succeeded.

    ``size`` overrides every module's workload; otherwise ``quick`` picks
    :data:`QUICK_SIZES` and the default is each module's full size.
    """
    rows: list[Row] = []
    ok = True
    peak = 0.0
    for name in modules:
        run = cast(RunFunction, importlib.import_module(name).run)
        workload = size if size is not None else QUICK_SIZES.get(name) if quick else None
        started = time.perf_counter()
        try:
            rows.extend(await run(workload))
        except Exception as exc:
            ok = False
            rows.append((name.removeprefix("bench."), "failed", type(exc).__name__, str(exc)[:120]))
        print(f"{name}: {time.perf_counter() - started:.1f} s", file=sys.stderr)
        # a benchmark may reset the kernel's peak counter for its own figure: keep the highest
        peak = max(peak, peak_rss_mib())
    rows.append(("process", "peak RSS of the whole run", round(peak or peak_rss_mib(), 1), "MiB (ru_maxrss)"))
    return rows, ok


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small workloads (seconds, not minutes)")
    parser.add_argument("--json", action="store_true", help="print the rows as a JSON array")
    parser.add_argument(
        "--size", type=int, default=None, help="workload of every benchmark (overrides --quick)"
    )
    parser.add_argument(
        "--only",
        action="append",
        metavar="NAME",
        help="run this benchmark only (repeatable): " + ", ".join(m.removeprefix("bench.") for m in MODULES),
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status (1 when a benchmark failed)."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.size is not None and args.size < 1:
        parser.error("--size must be at least 1")
    modules = MODULES
    if args.only:
        modules = tuple(module_name(n) for n in args.only)
        unknown = [m for m in modules if m not in MODULES]
        if unknown:
            parser.error(f"unknown benchmark {', '.join(unknown)}")
    # the table (or JSON) alone on stdout; the benchmarks' warnings, if any, on stderr
    configure_logging("warning", "console", stream=sys.stderr)
    rows, ok = anyio.run(lambda: collect(modules, quick=args.quick, size=args.size))
    if args.json:
        keys = ("benchmark", "figure", "value", "unit")
        print(json.dumps([dict(zip(keys, row, strict=True)) for row in rows], indent=2))
    else:
        print(format_table(rows))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
