"""``rackbeat-shopify parked`` and ``retry`` through the entry point, against a state DB.

The commands only read and write the DB, so no API is needed: the environment holds a
complete set of settings (pointing nowhere) and ``SYNC_DB``.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path

import anyio
import pytest

from daemon.__main__ import main
from daemon.reasons import advice_for
from daemon.store import Store

SHOP = "cli-test.myshopify.com"
#: a moment well ahead, so a freshly parked record is not due yet
PARKED_AT = datetime(2099, 1, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The environment of an installed daemon; ``SYNC_DB`` is the returned (not yet created) path."""
    for name in list(os.environ):
        if name.startswith(("RACKBEAT_", "SHOPIFY_", "SYNC_", "HEALTH_", "LOG_")):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)  # no .env of a developer's checkout
    path = tmp_path / "state" / "sync.db"
    values = {
        "RACKBEAT_API_URL": "http://127.0.0.1:9/api",
        "RACKBEAT_API_TOKEN": "rb-token",
        "RACKBEAT_CONTACT_EMAIL": "ops@example.com",
        "SHOPIFY_SHOP": SHOP,
        "SHOPIFY_ACCESS_TOKEN": "shpat_test",
        "SYNC_DB": str(path),
        "SYNC_PAYMENT_TERMS": "1",
        "SYNC_CUSTOMER_GROUP": "1",
        "SYNC_EMPLOYEE": "1",
        "SYNC_DEFAULT_PRODUCT_GROUP": "1",
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    return path


def park(path: Path, *records: tuple[str, str, str, str]) -> None:
    """Park (flow, key, reason, detail) records in the DB at ``path``."""

    async def write() -> None:
        store = await Store.open(path, SHOP)
        try:
            async with store.transaction(PARKED_AT) as tx:
                for flow, key, reason, detail in records:
                    await tx.park(flow, key, reason, detail)
        finally:
            await store.close()

    anyio.run(write)


def due_keys(path: Path) -> set[str]:
    async def read() -> set[str]:
        store = await Store.open(path, SHOP)
        try:
            return {p.key for p in await store.due_parked("orders", datetime.now(UTC))}
        finally:
            await store.close()

    return anyio.run(read)


def test_parked_lists_each_record_with_reason_detail_and_fix(
    db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    park(
        db,
        ("orders", "#1042", "UNKNOWN_SKU", "order #1042: SKU 'GHOST-9' is not a Rackbeat product"),
        ("orders", "#1043", "REPEATED_FAILURE", "order #1043: failed 5 times in a row"),
    )
    assert main(["parked"]) == 0
    out = capsys.readouterr().out
    assert "orders/#1042  UNKNOWN_SKU" in out
    assert "'GHOST-9'" in out
    assert f"fix: {advice_for('UNKNOWN_SKU').fix}" in out
    assert "orders/#1043  REPEATED_FAILURE" in out
    assert f"fix: {advice_for('REPEATED_FAILURE').fix}" in out
    assert "next try 2099-01-01 12:05Z" in out  # not due: the first backoff is five minutes

    assert main(["parked", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["key"], r["reason"], r["attempts"]) for r in rows] == [
        ("#1042", "UNKNOWN_SKU", 1),
        ("#1043", "REPEATED_FAILURE", 1),
    ]
    assert rows[0]["advice"] == advice_for("UNKNOWN_SKU").fix


@pytest.mark.parametrize("key", ["1042", "#1042"])
def test_retry_takes_the_order_name_or_its_bare_number(
    db: Path, capsys: pytest.CaptureFixture[str], key: str
) -> None:
    park(
        db,
        ("orders", "#1042", "NO_EMAIL", "order #1042 has no e-mail"),
        ("orders", "#1043", "NO_EMAIL", "order #1043 has no e-mail"),
    )
    assert due_keys(db) == set()
    assert main(["retry", key]) == 0
    assert "1 parked record(s) queued for retry" in capsys.readouterr().out
    assert due_keys(db) == {"#1042"}  # only that one, now


def test_retry_all_and_an_unknown_key(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    park(
        db,
        ("orders", "#1042", "NO_EMAIL", "order #1042 has no e-mail"),
        ("orders", "#1043", "TOTALS_MISMATCH", "order #1043: lines add up to 10.00 SEK"),
    )
    assert main(["retry", "9999"]) == 1
    assert "no parked record with key '9999'" in capsys.readouterr().out
    assert due_keys(db) == set()
    assert main(["retry", "--all"]) == 0
    assert "2 parked record(s) queued for retry" in capsys.readouterr().out
    assert due_keys(db) == {"#1042", "#1043"}


def test_a_bare_number_does_not_hide_a_record_keyed_by_it(
    db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # a product parked under SKU "1042" is what `retry 1042` means when there is one
    park(
        db,
        ("products", "1042", "NO_SKU", "variant without SKU"),
        ("orders", "#1042", "NO_EMAIL", "order #1042 has no e-mail"),
    )
    assert main(["retry", "1042"]) == 0
    assert "1 parked record(s) queued for retry" in capsys.readouterr().out
    assert due_keys(db) == set()  # the order stays parked


def test_nothing_parked_and_no_db(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["parked"]) == 1
    assert "no state DB" in capsys.readouterr().out
    park(db)
    assert main(["parked"]) == 0
    assert "nothing parked" in capsys.readouterr().out
