"""Shared fixtures. Async tests run on anyio's pytest plugin with the asyncio backend
(aiosqlite needs it)."""

from __future__ import annotations

import pytest

# the shopify_schema fixture (Shopify's Admin 2026-10 schema, fetched with npm)
pytest_plugins = ["tests.shopify_schema"]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
