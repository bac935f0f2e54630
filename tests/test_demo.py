"""The demo: the README's first command takes a fresh clone to a working, truthful demo."""

from __future__ import annotations

import io
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from daemon.demo import DemoOptions, demo
from daemon.sim.rackbeat import DEFAULT_TOKEN as RACKBEAT_TOKEN
from daemon.sim.shopify import DEFAULT_ACCESS_TOKEN

TOKENS = (RACKBEAT_TOKEN, DEFAULT_ACCESS_TOKEN)
#: a status line (output that is not a terminal) once orders reached Rackbeat
IMPORTED = re.compile(r"\| orders [1-9]\d*/\d+ in Rackbeat")


def _hostile_environment(directory: Path) -> dict[str, str]:
    """A stray .env, broken settings and proxy variables: none of it may reach the demo."""
    (directory / ".env").write_text("SHOPIFY_SHOP=not-a-shop\nSYNC_ORDER_STATUS=bogus\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RACKBEAT_", "SHOPIFY_", "SYNC_"))}
    env.update(
        SYNC_POLL_SECONDS="nonsense",
        SHOPIFY_ACCESS_TOKEN="shpat_from_the_environment",
        HEALTH_LISTEN="not an address",
        HTTP_PROXY="http://127.0.0.1:9",
        HTTPS_PROXY="http://127.0.0.1:9",
        ALL_PROXY="http://127.0.0.1:9",
        PYTHONUNBUFFERED="1",
    )
    return env


@pytest.mark.anyio
async def test_the_demo_imports_every_order_exactly_once(tmp_path: Path) -> None:
    out = io.StringIO()
    options = DemoOptions(
        seconds=4, seed=3, db=tmp_path / "demo.db", poll_seconds=0.5, activity_every=0.3, health_port=0
    )
    result = await demo(options, out)
    text = out.getvalue()

    assert result.ok, text
    truth = result.truth
    assert truth.once > 0, text
    assert truth.once == truth.placed - len(truth.unknown_sku)
    assert (truth.missing, truth.duplicated, truth.leaked) == ([], [], [])
    assert truth.unknown_sku, "the gift card order is in the demo"
    assert result.snapshot.event("orders", "imported") == truth.once
    assert result.snapshot.parked >= len(truth.unknown_sku)
    assert result.activity["orders placed"] > len(truth.unknown_sku)
    # the health endpoint answered while the demo ran, and the summary says so
    assert result.health_url.endswith("/healthz")
    assert result.snapshot.answered > 0
    assert f"{result.health_url}: answered {result.snapshot.answered} of" in text
    assert "truth check: OK" in text
    log = (tmp_path / "demo.log").read_text()
    assert '"reason": "UNKNOWN_SKU"' in log  # the gift card order is parked, not lost
    assert result.stock_writes > 0, "stock reached Shopify"
    for token in TOKENS:
        assert token not in text
        assert token not in log


def test_demo_command_runs_from_the_command_line(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "daemon", "demo", "--seconds", "6", "--health-port", "0"],
        cwd=tmp_path,
        env=_hostile_environment(tmp_path),
        capture_output=True,
        text=True,
        timeout=45,
        check=False,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert "final summary" in done.stdout
    assert "truth check: OK" in done.stdout
    assert "/healthz" in done.stdout
    for token in (*TOKENS, "shpat_from_the_environment"):
        assert token not in output
    assert list(tmp_path.iterdir()) == [tmp_path / ".env"], "the state DB lives in a temporary directory"


def test_ctrl_c_ends_the_demo_with_a_summary(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "daemon", "demo", "--health-port", "0"],
        cwd=tmp_path,
        env=_hostile_environment(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 30
        seen: list[str] = []
        # a status line with imported orders: the daemon's flows (and its signal handler) run
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            seen.append(line)
            if IMPORTED.search(line):
                break
        assert IMPORTED.search(seen[-1] if seen else ""), "".join(seen)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, out + err
    assert "final summary (stopped by Ctrl-C)" in out
    assert "truth check: OK" in out
