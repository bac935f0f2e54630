"""Prometheus metrics of one daemon instance.

Each :class:`Metrics` owns its own registry (with the process and platform
collectors), so tests and the demo can run several daemons in one process.
API request counters are read from the clients at scrape time.

Every flow series carries a ``shop`` label (the shop's alias, ``SHOPS``): one process
serves every shop of a Rackbeat account. A flow counts through its shop's view,
:meth:`Metrics.for_shop`, which shares the registry. Rackbeat's request counters carry
no shop: the account has one budget.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

PREFIX = "rackbeat_shopify"

#: a source of API counters: (api name, shop alias or "" for the account, {"requests": n, …})
ApiCounters = Callable[[], Iterable[tuple[str, str, dict[str, int]]]]


class _ApiCollector(Collector):
    def __init__(self, source: ApiCounters) -> None:
        self.source = source

    def collect(self) -> Iterable[Metric]:
        families = {
            name: CounterMetricFamily(f"{PREFIX}_api_{name}", f"API {name} by API", labels=["api", "shop"])
            for name in ("requests", "retries", "throttled")
        }
        for api, shop, counters in self.source():
            for name, family in families.items():
                family.add_metric([api, shop], float(counters.get(name, 0)))
        return list(families.values())


class Metrics:
    """The daemon's metrics; flows count through :meth:`count` of their shop's view."""

    def __init__(self, api_counters: ApiCounters | None = None, shop: str = "") -> None:
        #: the shop :meth:`count` and :meth:`value` are about ("" before :meth:`for_shop`)
        self.shop = shop
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        if api_counters is not None:
            self.registry.register(_ApiCollector(api_counters))
        r = self.registry
        self.last_success = Gauge(
            f"{PREFIX}_flow_last_success_timestamp_seconds",
            "Unix time of the flow's last successful cycle",
            ["shop", "flow"],
            registry=r,
        )
        self.up = Gauge(
            f"{PREFIX}_flow_up", "1 when the flow's last cycle succeeded", ["shop", "flow"], registry=r
        )
        self.lag = Gauge(
            f"{PREFIX}_flow_lag_seconds",
            "Seconds since the flow last completed a cycle",
            ["shop", "flow"],
            registry=r,
        )
        self.parked = Gauge(
            f"{PREFIX}_parked_records", "Records parked, by flow", ["shop", "flow"], registry=r
        )
        self.stalled = Gauge(
            f"{PREFIX}_flow_stalled",
            "Cycles in a row in which the flow had work pending and none of it was confirmed "
            "(0: progressing or nothing to do)",
            ["shop", "flow"],
            registry=r,
        )
        self.applied = Counter(
            f"{PREFIX}_records_applied", "Records applied by the flow", ["shop", "flow"], registry=r
        )
        self.errors = Counter(
            f"{PREFIX}_errors",
            "Errors by flow and kind (fatal, throttled, transport, …)",
            ["shop", "flow", "kind"],
            registry=r,
        )
        self.events = Counter(
            f"{PREFIX}_events",
            "Domain events: orders imported, quantities pushed, products created…",
            ["shop", "flow", "event"],
            registry=r,
        )

        self.stock_lag = Gauge(
            f"{PREFIX}_stock_lag_seconds",
            "Seconds from the stock scan that saw a change until Shopify confirmed it "
            "(grows while a change waits; 0 when Shopify is as decided)",
            ["shop"],
            registry=r,
        )

    def for_shop(self, shop: str) -> Metrics:
        """The view one shop's flows count through (same registry and series)."""
        view = copy.copy(self)
        view.shop = shop
        return view

    def count(self, flow: str, event: str, amount: float = 1) -> None:
        """Add to this shop's domain counter, e.g. ``count("orders", "imported")``."""
        if amount:
            self.events.labels(shop=self.shop, flow=flow, event=event).inc(amount)

    def value(self, flow: str, event: str) -> float:
        """The current value of this shop's domain counter (0 when never counted)."""
        found = self.registry.get_sample_value(
            f"{PREFIX}_events_total", {"shop": self.shop, "flow": flow, "event": event}
        )
        return found or 0.0
