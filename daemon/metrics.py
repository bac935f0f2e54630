"""Prometheus metrics of one daemon instance.

Each :class:`Metrics` owns its own registry (with the process and platform
collectors), so tests and the demo can run several daemons in one process.
API request counters are read from the clients at scrape time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

PREFIX = "rackbeat_shopify"

#: a source of API counters: api name → {"requests": n, "retries": n, "throttled": n}
ApiCounters = Callable[[], Mapping[str, Mapping[str, int]]]


class _ApiCollector(Collector):
    def __init__(self, source: ApiCounters) -> None:
        self.source = source

    def collect(self) -> Iterable[Metric]:
        families = {
            name: CounterMetricFamily(f"{PREFIX}_api_{name}", f"API {name} by API", labels=["api"])
            for name in ("requests", "retries", "throttled")
        }
        for api, counters in self.source().items():
            for name, family in families.items():
                family.add_metric([api], float(counters.get(name, 0)))
        return list(families.values())


class Metrics:
    """The daemon's metrics; flows call the ``record_*`` methods."""

    def __init__(self, api_counters: ApiCounters | None = None) -> None:
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        if api_counters is not None:
            self.registry.register(_ApiCollector(api_counters))
        r = self.registry
        self.last_success = Gauge(
            f"{PREFIX}_flow_last_success_timestamp_seconds",
            "Unix time of the flow's last successful cycle",
            ["flow"],
            registry=r,
        )
        self.up = Gauge(f"{PREFIX}_flow_up", "1 when the flow's last cycle succeeded", ["flow"], registry=r)
        self.lag = Gauge(
            f"{PREFIX}_flow_lag_seconds",
            "Seconds since the flow last completed a cycle",
            ["flow"],
            registry=r,
        )
        self.parked = Gauge(f"{PREFIX}_parked_records", "Records parked, by flow", ["flow"], registry=r)
        self.applied = Counter(
            f"{PREFIX}_records_applied", "Records applied by the flow", ["flow"], registry=r
        )
        self.errors = Counter(
            f"{PREFIX}_errors",
            "Errors by flow and kind (fatal, throttled, transport, …)",
            ["flow", "kind"],
            registry=r,
        )
        self.events = Counter(
            f"{PREFIX}_events",
            "Domain events: orders imported, quantities pushed, products created…",
            ["flow", "event"],
            registry=r,
        )

    def count(self, flow: str, event: str, amount: float = 1) -> None:
        """Add to a domain counter, e.g. ``count("orders", "imported")``."""
        if amount:
            self.events.labels(flow=flow, event=event).inc(amount)

    def value(self, flow: str, event: str) -> float:
        """The current value of a domain counter (0 when never counted)."""
        found = self.registry.get_sample_value(f"{PREFIX}_events_total", {"flow": flow, "event": event})
        return found or 0.0
