"""``rackbeat-shopify check`` (online) against both simulators on real loopback sockets.

The command runs as a separate process (``python -m daemon check``) with a clean
environment, as an operator runs it after editing the settings; the simulators are
served by this test's event loop while it runs.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator, Mapping
from pathlib import Path

import anyio
import pytest

from daemon.sim.rackbeat import DEFAULT_TOKEN as RACKBEAT_TOKEN
from daemon.sim.rackbeat import RackbeatSimulator
from daemon.sim.shopify import DEFAULT_ACCESS_TOKEN as SHOPIFY_TOKEN
from tests.harness import Apis, apis_on_loopback
from tests.test_process import clean_env

pytestmark = pytest.mark.anyio

EX_NOPERM = 77
EX_CONFIG = 78
WRONG_TOKEN = "wrong-token-3e9f1a7c-never-printed"


@pytest.fixture
async def apis() -> AsyncIterator[Apis]:
    rackbeat = RackbeatSimulator()
    rackbeat.add_product("frakt", "Frakt")  # S15's default shipping product
    async with apis_on_loopback(rackbeat=rackbeat) as served:
        yield served


def settings(apis: Apis, tmp_path: Path, **overrides: str) -> dict[str, str]:
    """A complete environment naming numbers the simulated Rackbeat has; ``overrides`` by variable."""
    values = {
        "RACKBEAT_API_URL": apis.rackbeat_url,
        "RACKBEAT_API_TOKEN": RACKBEAT_TOKEN,
        "RACKBEAT_CONTACT_EMAIL": "ops@example.com",
        "SHOPIFY_SHOP": "check-test.myshopify.com",
        "SHOPIFY_ACCESS_TOKEN": SHOPIFY_TOKEN,
        "SHOPIFY_ADMIN_URL": apis.shopify_admin_url,
        "SHOPIFY_LOCATION_ID": apis.shopify.primary_location_id,
        "SYNC_DB": str(tmp_path / "sync.db"),
        "SYNC_PAYMENT_TERMS": "3",  # S3
        "SYNC_CUSTOMER_GROUP": "2",  # S5
        "SYNC_EMPLOYEE": "2",  # S8
        "SYNC_LOCATIONS": "1,2",  # S10
        "SYNC_DEFAULT_PRODUCT_GROUP": "2",  # S11
        "SYNC_SHIPPING_PRODUCT": "frakt",  # S15
    }
    values.update(overrides)
    return values


async def check(tmp_path: Path, values: Mapping[str, str]) -> tuple[int, str]:
    """Run ``check`` as a process; return its exit status and everything it printed."""
    with anyio.fail_after(30):
        result = await anyio.run_process(
            [sys.executable, "-m", "daemon", "check"],
            cwd=tmp_path,
            env=clean_env(values),
            check=False,
            stderr=subprocess.STDOUT,
        )
    return result.returncode, result.stdout.decode(errors="replace")


async def test_all_configured_numbers_present(apis: Apis, tmp_path: Path) -> None:
    status, output = await check(tmp_path, settings(apis, tmp_path))
    assert status == 0, output
    assert "all configured numbers exist" in output
    assert "Traceback" not in output


async def test_each_missing_number_is_named_with_its_variable(apis: Apis, tmp_path: Path) -> None:
    values = settings(
        apis,
        tmp_path,
        SYNC_PAYMENT_TERMS="9",
        SYNC_CUSTOMER_GROUP="8",
        SYNC_EMPLOYEE="7",
        SYNC_LOCATIONS="1,5",
        SYNC_DEFAULT_PRODUCT_GROUP="6",
        SYNC_SHIPPING_PRODUCT="porto",
        SHOPIFY_LOCATION_ID="424242",
        SYNC_CURRENCY="XTS",
    )
    status, output = await check(tmp_path, values)
    assert status == EX_CONFIG, output
    problems = {line.strip().split(":", 1)[0]: line for line in output.splitlines() if line.startswith("  ")}
    expected = {
        "SYNC_PAYMENT_TERMS": "9",
        "SYNC_CUSTOMER_GROUP": "8",
        "SYNC_EMPLOYEE": "7",
        "SYNC_LOCATIONS": "5",
        "SYNC_DEFAULT_PRODUCT_GROUP": "6",
        "SYNC_SHIPPING_PRODUCT": "porto",
        "SHOPIFY_LOCATION_ID": "424242",
        "SYNC_CURRENCY": "XTS",
    }
    assert set(problems) == set(expected), output
    for variable, value in expected.items():
        assert value in problems[variable]
    assert "1," not in problems["SYNC_LOCATIONS"]  # location 1 exists and is not blamed
    assert f"{len(expected)} problem(s)" in output


async def test_only_the_missing_numbers_are_named(apis: Apis, tmp_path: Path) -> None:
    status, output = await check(tmp_path, settings(apis, tmp_path, SYNC_EMPLOYEE="3"))
    assert status == EX_CONFIG, output
    named = [line.strip() for line in output.splitlines() if line.startswith("  ")]
    assert named == ["SYNC_EMPLOYEE: 3 does not exist in Rackbeat"]


@pytest.mark.parametrize("variable", ["SHOPIFY_ACCESS_TOKEN", "RACKBEAT_API_TOKEN"])
async def test_a_wrong_token_exits_77_naming_the_variable(apis: Apis, tmp_path: Path, variable: str) -> None:
    status, output = await check(tmp_path, settings(apis, tmp_path, **{variable: WRONG_TOKEN}))
    assert status == EX_NOPERM, output
    assert variable in output
    assert WRONG_TOKEN not in output
    assert "Traceback" not in output
