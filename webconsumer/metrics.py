"""Prometheus metrics, read from the subscriber's status at scrape time."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from pgsubscriber import SubscriberStatus

PREFIX = "webconsumer"


class SubscriberCollector(Collector):
    """Exposes a :class:`~pgsubscriber.SubscriberStatus` as counters and gauges."""

    def __init__(self, status: Callable[[], SubscriberStatus]) -> None:
        self._status = status

    def collect(self) -> Iterator[Metric]:
        """One sample per metric, from the status as it is now."""
        st = self._status()
        counters = [
            ("events_delivered", "Events delivered to the handler.", st.events_delivered),
            ("batches", "Batches delivered to the handler.", st.batches_delivered),
            ("handler_seconds", "Time spent in successful handler calls.", st.handler_seconds),
            ("handler_failures", "Handler calls that raised (each was retried).", st.handler_failures),
            ("reconnects", "Connections to PostgreSQL lost and reopened.", st.reconnects),
        ]
        for name, documentation, value in counters:
            yield CounterMetricFamily(f"{PREFIX}_{name}", documentation, value=value)
        gauges = [
            ("subscriber_connected", "1 while connected to PostgreSQL.", float(st.connected)),
            ("subscriber_running", "1 while the subscriber loop runs.", float(st.running)),
            ("position", "The handler's position (id of the last event it recorded).", st.position),
            ("last_drawn_id", "The newest id drawn in the events table.", st.last_drawn_id),
            ("lag", "Ids between the newest id drawn and the handler's position.", st.lag),
            ("writers", "Producer transactions in flight at the last fetch.", st.writers),
            ("notify_queue_usage", "Fraction of the server's NOTIFY queue in use.", st.notify_queue_usage),
        ]
        for name, documentation, maybe in gauges:
            if maybe is not None:
                yield GaugeMetricFamily(f"{PREFIX}_{name}", documentation, value=maybe)


def metrics_registry(status: Callable[[], SubscriberStatus]) -> CollectorRegistry:
    """A registry of its own (not the global one), so that several apps can live in one process."""
    registry = CollectorRegistry(auto_describe=True)
    registry.register(SubscriberCollector(status))
    return registry
