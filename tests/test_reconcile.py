"""reconcile: both sides compared in full; --dry-run writes nothing; a fix leaves nothing to fix."""

from __future__ import annotations

import io
import json
from datetime import timedelta
from pathlib import Path

import pytest
from graphql import GraphQLSchema

from daemon.app import Services
from daemon.reconcile import print_report, reconcile
from tests.harness import World, make_world

pytestmark = pytest.mark.anyio


def services(w: World) -> Services:
    assert w.http is not None
    return Services(w.settings, w.store, w.http, w.shopify, w.rackbeat_client, w.metrics)


def writes(w: World) -> int:
    shopify = sum(
        n
        for op, n in w.shopify_sim.requests.items()
        if op in ("SetStock", "ProductCreate", "ProductUpdate", "VariantsBulkUpdate")
    )
    rackbeat = sum(n for route, n in w.rackbeat.requests.items() if not route.startswith("GET"))
    return shopify + rackbeat


async def test_reconcile_reports_then_fixes_what_the_daemon_owns(
    tmp_path: Path, shopify_schema: GraphQLSchema
) -> None:
    async with make_world(tmp_path, validate_schema=shopify_schema) as w:
        w.rackbeat.add_product("frakt", "Frakt")
        for sku in ("BOTH-1", "BOTH-2"):
            w.rackbeat.add_product(sku, f"Name {sku}", sales_price="80", stock=10)
            w.shopify_sim.add_product(f"Name {sku}", [{"sku": sku, "price": "100.00", "stock": 3}])
        w.shopify_sim.update_product(w.shopify_sim.find_by_sku("BOTH-2").product_id, title="Renamed by hand")  # type: ignore[union-attr]
        w.shopify_sim.add_product("Only here", [{"sku": "SHOP-ONLY"}])
        w.shopify_sim.add_product("Twin A", [{"sku": "TWIN"}])
        w.shopify_sim.add_product("Twin B", [{"sku": "TWIN"}])
        w.rackbeat.add_product("RB-ONLY", "Only in Rackbeat")
        w.rackbeat.add_product("TWIN", "Twin")
        w.tick(60)
        missing = w.shopify_sim.sell("BOTH-1", 1)
        w.tick(600)

        report = await reconcile(services(w), dry_run=True, now=w.clock.now(), window=timedelta(days=1))
        assert writes(w) == 0  # a dry run writes nothing to either API
        assert report.only_in_shopify == ["SHOP-ONLY"]
        assert report.only_in_rackbeat == ["RB-ONLY"]
        assert report.duplicate_skus == {"TWIN": 2}
        stock = {(d.sku, d.shopify, d.target) for d in report.stock}
        assert ("BOTH-2", 3, 10) in stock
        assert ("BOTH-1", 2, 9) in stock  # 10 in Rackbeat, minus the order not imported yet
        assert any(d.sku == "BOTH-2" and d.field == "title" for d in report.products)
        assert report.missing_orders == [f"#{getattr(w.shopify_sim.node(missing), 'number', None)}"]
        out = io.StringIO()
        print_report(report, out, as_json=False)
        assert "SKUs only in Rackbeat: 1" in out.getvalue()
        doc = io.StringIO()
        print_report(report, doc, as_json=True)
        assert json.loads(doc.getvalue())["duplicate_skus"] == {"TWIN": 2}

        fixed = await reconcile(services(w), dry_run=False, now=w.clock.now(), window=timedelta(days=1))
        assert fixed.fixed["orders"] == 1
        assert w.rackbeat.order_count_by_reference(report.missing_orders[0]) == 1
        w.tick(600)
        again = await reconcile(services(w), dry_run=True, now=w.clock.now(), window=timedelta(days=1))
        assert again.stock == []
        assert [d for d in again.products if d.sku.startswith("BOTH")] == []
        assert again.missing_orders == []
        assert w.shopify_sim.available("BOTH-2") == 10
