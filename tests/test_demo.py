"""The demo: the README's first command takes a fresh clone to a working, truthful demo."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

from daemon.demo import run_demo
from daemon.sim.rackbeat import DEFAULT_TOKEN as RACKBEAT_TOKEN
from daemon.sim.shopify import DEFAULT_ACCESS_TOKEN

pytestmark = pytest.mark.anyio


async def test_the_demo_imports_every_order_exactly_once(tmp_path: Path) -> None:
    out = io.StringIO()
    code = await run_demo(
        seconds=6, seed_value=3, db=tmp_path / "demo.db", poll_seconds=0.5, activity_every=0.4, out=out
    )
    text = out.getvalue()
    assert code == 0, text
    assert "truth check:" in text
    assert "duplicates: 0" in text
    placed = int(text.split("placed in Shopify")[-1].split()[0])
    assert placed > 0, text
    assert "/healthz" in text
    log = (tmp_path / "demo-daemon.log").read_text()
    assert '"reason": "UNKNOWN_SKU"' in log  # the gift card order is parked, not lost
    assert "stock written" in log
    for token in (RACKBEAT_TOKEN, DEFAULT_ACCESS_TOKEN):
        assert token not in text
        assert token not in log


def test_demo_command_runs_from_the_command_line(tmp_path: Path) -> None:
    # a stray .env and environment must not leak into the demo
    (tmp_path / ".env").write_text("SHOPIFY_SHOP=not-a-shop\nSYNC_ORDER_STATUS=bogus\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RACKBEAT_", "SHOPIFY_", "SYNC_"))}
    env["SYNC_POLL_SECONDS"] = "nonsense"
    done = subprocess.run(
        [sys.executable, "-m", "daemon", "demo", "--seconds", "3"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=45,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "final summary" in done.stdout
