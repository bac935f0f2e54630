"""``python -m bench``: one table of every benchmark's figures (tiny workloads here)."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest

from bench.__main__ import collect
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


def test_runner_reports_each_client_benchmark_and_the_peak_rss() -> None:
    result = bench(*TINY, "--json")
    assert result.returncode == 0, result.stderr
    rows: list[dict[str, Any]] = json.loads(result.stdout)
    figures = {(row["benchmark"], row["figure"]): row["value"] for row in rows}
    # 40 products: 5 GraphQL pages of 8 (cost-bound), 1 REST page of 100
    assert figures["shopify client", "GraphQL requests to page 40 products"] == 5
    assert figures["shopify client", "requests per 1,000 products"] == 125.0
    assert figures["rackbeat client", "REST requests to page 40 products"] == 1
    assert figures["rackbeat client", "requests per 1,000 products"] == 25.0
    for name in ("shopify client", "rackbeat client"):
        seconds = figures[name, "scan of 40 products, this machine"]
        assert isinstance(seconds, float)
        assert seconds >= 0  # rounded to 0.01 s: a tiny scan may show 0.0
    assert rows[-1]["benchmark"] == "process"
    assert rows[-1]["figure"] == "peak RSS of the whole run"
    assert rows[-1]["value"] > 10  # MiB: a Python process with httpx and graphql-core loaded

    table = bench(*TINY)
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["benchmark", "figure", "value", "unit", "/", "notes"]
    assert len(lines) == len(rows) + 2  # header, rule, one line per row
    assert all(row["figure"] in line for row, line in zip(rows, lines[2:], strict=True))


@pytest.mark.anyio
async def test_an_absent_optional_benchmark_is_reported_not_available() -> None:
    rows, ok = await collect(
        ["bench.clients_rackbeat", "bench.not_written_yet"], optional={"bench.not_written_yet"}, size=20
    )
    assert ok
    assert ("not_written_yet", "-", "not available", "no module bench.not_written_yet here") in rows
    assert rows[0][0] == "rackbeat client"
    with pytest.raises(ModuleNotFoundError):
        await collect(["bench.not_written_yet"], optional=(), size=20)
