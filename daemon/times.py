"""Moments as the state DB's cursors and ledgers keep them, and as Shopify writes them:
UTC, whole seconds, ``Z`` (``2026-12-07T06:08:25Z``). Such strings sort as the moments do,
so SQL compares them directly."""

from __future__ import annotations

from datetime import UTC, datetime


def iso(moment: datetime) -> str:
    """``moment`` as a cursor or ledger keeps it: UTC, whole seconds, ``Z``."""
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def parse_time(value: str) -> datetime:
    """An ISO 8601 time (Shopify's ``…Z``, or :func:`iso`'s) as an aware UTC datetime."""
    return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)
