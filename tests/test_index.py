"""The SKU index against the simulated Shopify: full build, incremental refresh, duplicates."""

from __future__ import annotations

from pathlib import Path

import pytest
from graphql import GraphQLSchema

from tests.harness import make_world

pytestmark = pytest.mark.anyio


async def test_build_then_refresh_keeps_the_index_current(
    tmp_path: Path, shopify_schema: GraphQLSchema
) -> None:
    async with make_world(tmp_path, validate_schema=shopify_schema) as w:
        for n in range(300):
            w.shopify_sim.add_product(f"Product {n}", [{"sku": f"SKU-{n:03}"}])
        w.shopify_sim.add_product("No SKU", [{"sku": None}])
        w.shopify_sim.add_product("Twin", [{"sku": "SKU-007"}])
        w.tick()

        assert await w.index.ensure_built() is True
        assert await w.index.ensure_built() is False  # built once only
        by_sku = await w.index.by_sku()
        assert len(by_sku) == 300  # the variant without SKU is not indexed
        assert await w.index.duplicates() == {"SKU-007": 2}
        assert all(e.inventory_item_id for rows in by_sku.values() for e in rows)

        w.tick(600)
        added = w.shopify_sim.add_product("Newcomer", [{"sku": "NEW-1"}, {"sku": "NEW-2"}])
        w.shopify_sim.update_variant(added.variant_ids[1], sku="NEW-2b")
        w.tick(60)
        assert await w.index.refresh() == {"NEW-1", "NEW-2b"}
        skus = set(await w.index.by_sku())
        assert {"NEW-1", "NEW-2b"} <= skus
        assert "NEW-2" not in skus

        # nothing changed: the next refresh finds nothing new
        w.tick(600)
        assert await w.index.refresh() == set()


@pytest.mark.parametrize("bulk_from", [1, 10_000], ids=["bulk", "paged"])
async def test_a_rebuild_drops_variants_gone_or_without_sku_and_keeps_by_sku_lookups_exact(
    tmp_path: Path, shopify_schema: GraphQLSchema, bulk_from: int
) -> None:
    async with make_world(tmp_path, validate_schema=shopify_schema) as w:
        w.index.bulk_from = bulk_from
        products = [w.shopify_sim.add_product(f"Product {n}", [{"sku": f"SKU-{n}"}]) for n in range(3)]
        w.tick()
        await w.index.build()
        assert set(await w.index.by_sku()) == {"SKU-0", "SKU-1", "SKU-2"}

        w.shopify_sim.update_variant(products[1].variant_ids[0], sku="")  # the SKU cleared
        w.tick(60)
        await w.index.build()
        assert set(await w.index.by_sku()) == {"SKU-0", "SKU-2"}
        # a lookup by SKU reads those rows only, and finds nothing of the cleared one
        assert set(await w.index.by_sku(["SKU-2", "SKU-1", "NONE"])) == {"SKU-2"}
