"""What to fulfil for what Rackbeat shipped: the pure decisions."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from daemon.fulfilment_decision import WHOLE_ORDER, plan_fulfilment, shipment_targets
from daemon.rackbeat import Order, Shipment, ShipmentLine
from daemon.shopify import FulfillmentOrder, FulfillmentOrderLine, OrderFulfilment, Tracking

HERE = "gid://shopify/Location/1"
THERE = "gid://shopify/Location/2"


def rackbeat_order(*, shipped: bool = True, partly: bool = False) -> Order:
    return Order(
        number="5001",
        customer="1",
        your_reference="#1001",
        is_booked=True,
        is_ready_for_shipping=False,
        is_shipped=shipped,
        is_partly_shipped=partly,
        is_cancelled=False,
        updated_at=None,
    )


def shipment(
    id: str, lines: Sequence[tuple[str, int]] | None, *, tracking: str | None = None, shipped: bool = True
) -> Shipment:
    return Shipment(
        id=id,
        is_shipped=shipped,
        lines=None if lines is None else tuple(ShipmentLine(sku, qty) for sku, qty in lines),
        carrier="PostNord" if tracking else None,
        tracking_number=tracking,
        tracking_url=None,
        updated_at=None,
    )


def fo(
    id: str, lines: Sequence[tuple[str, int, int]], *, status: str = "OPEN", location: str = HERE
) -> FulfillmentOrder:
    """lines: (sku, total, remaining)."""
    return FulfillmentOrder(
        id=id,
        status=status,
        location_id=location,
        lines=tuple(
            FulfillmentOrderLine(
                id=f"{id}-{n}", line_item_id=f"li-{n}", sku=sku, total=total, remaining=remaining
            )
            for n, (sku, total, remaining) in enumerate(lines)
        ),
    )


def shopify_order(*fulfillment_orders: FulfillmentOrder) -> OrderFulfilment:
    return OrderFulfilment(
        order_id="gid://shopify/Order/1",
        name="#1001",
        cancelled=False,
        fulfillment_status="UNFULFILLED",
        fulfillment_orders=tuple(fulfillment_orders),
        fulfillments=(),
    )


def test_shipments_with_lines_add_up_oldest_first() -> None:
    targets, note = shipment_targets(
        rackbeat_order(),
        [shipment("12", [("A", 1)], tracking="T2"), shipment("9", [("A", 2), ("B", 1)], tracking="T1")],
        {"A": 3, "B": 1},
    )
    assert note is None
    assert [(t.shipment, dict(t.units)) for t in targets] == [
        ("9", {"A": 2, "B": 1}),
        ("12", {"A": 3, "B": 1}),
    ]
    assert [t.tracking.number if t.tracking else None for t in targets] == ["T1", "T2"]


def test_a_shipped_order_without_lines_is_fulfilled_whole_with_the_last_tracking() -> None:
    targets, note = shipment_targets(
        rackbeat_order(), [shipment("1", None, tracking="T1"), shipment("2", None)], {"A": 2}
    )
    assert note is None
    assert [(t.shipment, dict(t.units), t.tracking) for t in targets] == [
        (WHOLE_ORDER, {"A": 2}, Tracking(company="PostNord", number="T1", url=None))
    ]
    # no shipments listed at all: the order's flag is enough
    targets, _ = shipment_targets(rackbeat_order(), [], {"A": 2})
    assert [(t.shipment, dict(t.units), t.tracking) for t in targets] == [(WHOLE_ORDER, {"A": 2}, None)]


def test_a_partly_shipped_order_without_lines_waits() -> None:
    targets, note = shipment_targets(
        rackbeat_order(shipped=False, partly=True), [shipment("1", None)], {"A": 2}
    )
    assert targets == []
    assert note is not None
    assert "shipped in full" in note


def test_unshipped_shipments_do_not_count() -> None:
    targets, _ = shipment_targets(
        rackbeat_order(shipped=False, partly=True),
        [shipment("1", [("A", 1)]), shipment("2", [("A", 1)], shipped=False)],
        {"A": 2},
    )
    assert [dict(t.units) for t in targets] == [{"A": 1}]


def test_the_plan_fulfils_up_to_the_target_and_no_further() -> None:
    current = shopify_order(fo("F1", [("A", 3, 3), ("B", 1, 1)]))
    plan = plan_fulfilment({"A": 2, "frakt": 1}, current, HERE)
    assert dict(plan.lines) == {"F1": [("F1-0", 2)]}  # the shipping product is no Shopify line
    assert dict(plan.units) == {"A": 2}


def test_units_fulfilled_already_anywhere_are_not_fulfilled_again() -> None:
    # one A fulfilled by hand: a target of 2 asks for one more
    current = shopify_order(fo("F1", [("A", 3, 2)]))
    assert dict(plan_fulfilment({"A": 2}, current, HERE).lines) == {"F1": [("F1-0", 1)]}
    # all fulfilled: nothing to send, which is how a send in doubt is known to have landed
    done = shopify_order(fo("F1", [("A", 2, 0)], status="CLOSED"))
    assert plan_fulfilment({"A": 2}, done, HERE).empty


def test_never_more_than_shopify_has_left() -> None:
    current = shopify_order(fo("F1", [("A", 1, 1)]))  # edited down to 1 after transfer
    assert dict(plan_fulfilment({"A": 3}, current, HERE).lines) == {"F1": [("F1-0", 1)]}


def test_a_sku_on_two_lines_is_spread_over_them() -> None:
    current = shopify_order(fo("F1", [("A", 1, 1), ("A", 2, 2)]))
    assert dict(plan_fulfilment({"A": 3}, current, HERE).lines) == {"F1": [("F1-0", 1), ("F1-1", 2)]}


@pytest.mark.parametrize(
    ("status", "location", "reason"),
    [
        ("ON_HOLD", HERE, "FULFILMENT_ON_HOLD"),
        ("OPEN", THERE, "FULFILMENT_ELSEWHERE"),
        ("CLOSED", HERE, "FULFILMENT_CLOSED"),
        ("INCOMPLETE", HERE, "FULFILMENT_CLOSED"),
    ],
)
def test_units_stuck_in_a_fulfillment_order_block_the_whole_plan(
    status: str, location: str, reason: str
) -> None:
    current = shopify_order(
        fo("F1", [("A", 1, 1)]), fo("F2", [("B", 1, 1)], status=status, location=location)
    )
    plan = plan_fulfilment({"A": 1, "B": 1}, current, HERE)
    assert plan.blocked is not None
    assert plan.blocked[0] == reason
    assert not plan.lines  # nothing is sent around the stuck units
    assert "B ×1" in plan.blocked[1]
    assert "F2" in plan.blocked[1]


def test_a_stuck_fulfillment_order_with_nothing_needed_blocks_nothing() -> None:
    current = shopify_order(fo("F1", [("A", 1, 1)]), fo("F2", [("B", 1, 1)], status="ON_HOLD"))
    plan = plan_fulfilment({"A": 1}, current, HERE)
    assert plan.blocked is None
    assert dict(plan.lines) == {"F1": [("F1-0", 1)]}
