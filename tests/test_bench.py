"""``python -m bench``: one table of every benchmark's figures (tiny workloads here)."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
import time
import types
from typing import Any

import pytest

from bench import Row
from bench.__main__ import MODULES, collect
from tests.test_process import REPO, clean_env

TINY = ["--quick", "--size", "40", "--only", "clients_shopify", "--only", "clients_rackbeat"]


def bench(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603  # this interpreter and fixed arguments, no shell
        [sys.executable, "-m", "bench", *args],
        cwd=REPO,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


@pytest.mark.anyio
async def test_a_failing_benchmark_is_reported_and_the_others_still_run(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    broken = types.ModuleType("bench.broken")

    async def run(size: int | None = None) -> list[Row]:
        raise RuntimeError("simulator refused to start")

    broken.run = run  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "bench.broken", broken)
    rows, ok = await collect(["bench.broken", "bench.clients_rackbeat"], size=40)
    assert not ok
    assert rows[0] == ("broken", "failed", "RuntimeError", "simulator refused to start")
    assert ("rackbeat client", "REST requests to page 40 products", 1, "requests") in [r[:4] for r in rows]


def test_runner_reports_each_client_benchmark_and_the_peak_rss() -> None:
    started = time.monotonic()
    result = bench(*TINY, "--json")
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stderr
    rows: list[dict[str, Any]] = json.loads(result.stdout)
    figures = {(row["benchmark"], row["figure"]): row["value"] for row in rows}
    # 40 products: 5 GraphQL pages of 8 (cost-bound), 1 REST page of 100
    assert figures["shopify client", "GraphQL requests to page 40 products"] == 5
    assert figures["shopify client", "requests per 1,000 products"] == 125.0
    assert figures["rackbeat client", "REST requests to page 40 products"] == 1
    assert figures["rackbeat client", "requests per 1,000 products"] == 25.0
    # the request budget on a simulated clock (a token bucket let 239 through in one minute)
    window = "most Rackbeat requests in any 60 s window at RACKBEAT_REQUESTS_PER_MINUTE=120, 400 requests"
    limited = "429 answers from a server allowing 120 per rolling minute, 400 requests"
    assert (figures["rackbeat client", window], figures["rackbeat client", limited]) == (120, 0)
    for name in ("shopify client", "rackbeat client"):
        seconds = figures[name, "scan of 40 products, this machine"]
        assert isinstance(seconds, float)
        # rounded to 0.01 s, so a tiny scan may show 0.0; never more than the whole run took
        assert 0 <= seconds <= elapsed
    assert rows[-1]["benchmark"] == "process"
    assert rows[-1]["figure"] == "peak RSS of the whole run"
    # MiB: a Python process with httpx and graphql-core loaded, and no more than a tiny run needs
    assert 10 < rows[-1]["value"] < 1024

    table = bench(*TINY)
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["benchmark", "figure", "value", "unit", "/", "notes"]
    assert len(lines) == len(rows) + 2  # header, rule, one line per row
    assert all(row["figure"] in line for row, line in zip(rows, lines[2:], strict=True))


def test_every_benchmark_of_the_table_exists() -> None:
    for name in MODULES:
        module = importlib.import_module(name)
        assert callable(module.run), name
