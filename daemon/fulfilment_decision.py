"""What to fulfil in Shopify for what Rackbeat shipped: pure decisions, no I/O.

The fulfilments flow reads an order's Rackbeat shipments and its Shopify fulfillment
orders, and asks two questions here:

* :func:`shipment_targets` — shipment by shipment, how many units of each SKU Shopify should
  show fulfilled once that shipment is in (cumulative, so that a shipment applied twice
  asks for nothing the second time), with the shipment's tracking;
* :func:`plan_fulfilment` — given Shopify's fulfillment orders *as they are now*, which
  fulfillment-order lines to fulfil, and by how much, to reach a target: never more than
  Rackbeat shipped, never more than Shopify has left, and nothing at all when units
  Rackbeat shipped sit in a fulfillment order the daemon must not touch (another
  location, on hold, closed): then the plan says why.

Because a plan is measured against Shopify's ``remainingQuantity`` read just before it is
sent, computing it again after a crash or a lost answer asks only for what did not land:
that is what makes ``fulfillmentCreate``, which takes no idempotency key, exactly once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from daemon.rackbeat import Order, Shipment
from daemon.shopify import FulfillmentOrder, OrderFulfilment, Tracking

#: fulfillment-order statuses the daemon fulfils from
FULFILLABLE = frozenset({"OPEN", "IN_PROGRESS"})
#: fulfillment-order statuses whose ``totalQuantity − remainingQuantity`` counts as fulfilled
#: (a moved fulfillment order may count twice: then the daemon fulfils less, never more)
COUNTED = FULFILLABLE | {"CLOSED"}
#: the shipment key of an order Rackbeat shipped without telling which units (all of it)
WHOLE_ORDER = "order"


@dataclass(frozen=True)
class ShipmentTarget:
    """Shopify's fulfilled units per SKU once ``shipment`` is in, and its tracking."""

    shipment: str
    units: Mapping[str, int]
    tracking: Tracking | None


@dataclass(frozen=True)
class Plan:
    """What one ``fulfillmentCreate`` sends (``lines``: fulfillment order id → [(its line
    id, quantity)]), or why nothing may be sent (``blocked``: reason code and detail)."""

    lines: Mapping[str, Sequence[tuple[str, int]]] = field(default_factory=dict)
    units: Mapping[str, int] = field(default_factory=dict)
    blocked: tuple[str, str] | None = None

    @property
    def empty(self) -> bool:
        """Nothing to send: Shopify shows the target fulfilled already."""
        return not self.lines and self.blocked is None


def _tracking(shipment: Shipment) -> Tracking | None:
    tracking = Tracking(company=shipment.carrier, number=shipment.tracking_number, url=shipment.tracking_url)
    return tracking if tracking else None


def _shipment_order(shipment: Shipment) -> tuple[int, str]:
    return (int(shipment.id), "") if shipment.id.isdigit() else (1 << 62, shipment.id)


def shipment_targets(
    order: Order, shipments: Sequence[Shipment], transferred: Mapping[str, int]
) -> tuple[list[ShipmentTarget], str | None]:
    """The cumulative targets of an order's shipped shipments, oldest first, and a note
    when some shipped units cannot be placed yet.

    With shipment lines, each shipment adds its lines. Without them (Rackbeat gave none):
    an order flagged shipped is fulfilled whole — ``transferred``, what the daemon sent to
    Rackbeat — with the tracking of its last shipment that has one; a partly shipped order
    waits until it is shipped in full.
    """
    shipped = sorted((s for s in shipments if s.is_shipped), key=_shipment_order)
    if shipped and all(s.lines is not None for s in shipped):
        targets: list[ShipmentTarget] = []
        total: dict[str, int] = {}
        for shipment in shipped:
            for line in shipment.lines or ():
                total[line.sku] = total.get(line.sku, 0) + line.quantity
            targets.append(ShipmentTarget(shipment.id, dict(total), _tracking(shipment)))
        return targets, None
    if not order.is_shipped:
        return [], "partly shipped in Rackbeat without shipment lines: fulfilled once it is shipped in full"
    tracked = [t for t in map(_tracking, shipped) if t is not None]
    return [ShipmentTarget(WHOLE_ORDER, dict(transferred), tracked[-1] if tracked else None)], None


def _blocked_reason(fulfillment_order: FulfillmentOrder, location: str) -> str:
    if fulfillment_order.status == "ON_HOLD":
        return "FULFILMENT_ON_HOLD"
    if fulfillment_order.status in FULFILLABLE and fulfillment_order.location_id != location:
        return "FULFILMENT_ELSEWHERE"
    return "FULFILMENT_CLOSED"


def plan_fulfilment(target: Mapping[str, int], current: OrderFulfilment, location: str) -> Plan:
    """The fulfillment-order lines to fulfil so that Shopify's fulfilled units of each SKU
    reach ``target`` (see the module docstring); ``location`` is the Shopify location the
    daemon stands for (``SHOPIFY_LOCATION_ID`` or the primary one).

    Shopify's fulfilled units count wherever they were fulfilled (by hand, elsewhere);
    units Shopify no longer has (edited out, or the shipping product, which is no Shopify
    line) are nobody's to fulfil and are passed over. When some units are blocked, nothing
    is planned: a fulfilment is never split around a fulfillment order someone holds.
    """
    fulfilled: dict[str, int] = {}
    for fo in current.fulfillment_orders:
        if fo.status not in COUNTED:
            continue  # a cancelled one's units were never fulfilled
        for line in fo.lines:
            if line.sku:
                fulfilled[line.sku] = fulfilled.get(line.sku, 0) + line.total - line.remaining
    need = {sku: units - fulfilled.get(sku, 0) for sku, units in target.items()}
    need = {sku: units for sku, units in need.items() if units > 0}
    usable = [
        fo for fo in current.fulfillment_orders if fo.status in FULFILLABLE and fo.location_id == location
    ]
    lines: dict[str, list[tuple[str, int]]] = {}
    units: dict[str, int] = {}
    for fo in usable:
        for line in fo.lines:
            wanted = need.get(line.sku or "", 0)
            take = min(wanted, line.remaining)
            if take > 0:
                lines.setdefault(fo.id, []).append((line.id, take))
                units[line.sku or ""] = units.get(line.sku or "", 0) + take
                need[line.sku or ""] = wanted - take
    for fo in current.fulfillment_orders:
        if fo in usable:
            continue
        stuck = sorted(
            {line.sku for line in fo.lines if line.sku and line.remaining > 0 and need.get(line.sku, 0) > 0}
        )
        if stuck:
            reason = _blocked_reason(fo, location)
            where = fo.location_id or "no location"
            detail = (
                f"Rackbeat shipped {', '.join(f'{sku} ×{need[sku]}' for sku in stuck)}, but Shopify's "
                f"fulfillment order {fo.id} is {fo.status.lower().replace('_', ' ')} at {where}"
                + (f" (the daemon fulfils at {location})" if reason == "FULFILMENT_ELSEWHERE" else "")
            )
            return Plan(blocked=(reason, detail))
    return Plan(lines=lines, units=units)
