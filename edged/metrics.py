"""Prometheus metrics, read from the daemon's own counters at scrape time.

``DaemonCollector`` is a prometheus-client custom collector: nothing is
counted twice, the Hub, the adapters, the rules engine and the uplink keep
their plain counters and the collector turns them into metric families when
``/metrics`` is scraped. Parts that are not configured (no rules, no uplink)
or do not expose a counter are simply absent from the output. Each
``Metrics`` has its own registry, never the process-global one.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from edged import __version__

if TYPE_CHECKING:
    from edged.daemon import Daemon

ADAPTER_STATES = ("starting", "running", "stopped")
LATENCY_QUANTILES = (0.5, 0.9, 0.99)

# outbox stats() key -> (metric name, kind, help)
_OUTBOX: dict[str, tuple[str, str, str]] = {
    "outbox_depth": ("edged_outbox_depth_readings", "gauge", "Readings stored and not yet acknowledged by the cloud"),
    "outbox_bytes": ("edged_outbox_bytes", "gauge", "Size of the stored outbox rows"),
    "outbox_rows": ("edged_outbox_rows", "gauge", "Rows in the outbox"),
    "outbox_oldest_age": ("edged_outbox_oldest_age_seconds", "gauge", "Age of the oldest unacknowledged row"),
    "outbox_accepted": ("edged_outbox_accepted", "counter", "Readings committed to the outbox"),
    "outbox_acked": ("edged_outbox_acked", "counter", "Readings removed after the cloud acknowledged them"),
    "outbox_commit_failing": ("edged_outbox_commit_failing", "gauge", "1 while commits fail (disk full, I/O error)"),
    "outbox_open_failing": ("edged_outbox_open_failing", "gauge", "1 while the outbox database cannot be opened"),
    "outbox_dead_letters": ("edged_outbox_dead_letters_readings", "gauge", "Readings held in the dead letters"),
    "outbox_dead_lettered": ("edged_outbox_dead_lettered", "counter", "Readings moved to the dead letters (refused for good)"),
    "outbox_requeued": ("edged_outbox_requeued", "counter", "Readings an operator moved back from the dead letters"),
    "outbox_discarded": ("edged_outbox_discarded", "counter", "Readings deleted from the dead letters"),
    "outbox_corrupt": ("edged_outbox_corrupt", "counter", "Damaged outbox files moved aside"),
    "outbox_generation": ("edged_outbox_generation", "gauge", "The generation in the key of new messages"),
}
_OUTBOX_DROPS = {"outbox_dropped_full": "full", "outbox_rejected": "rejected", "outbox_expired": "expired"}


class DaemonCollector(Collector):
    """Yields the gateway's metric families from ``daemon`` on every scrape."""

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon

    def collect(self) -> Iterator[Metric]:
        daemon = self.daemon
        yield InfoMetricFamily("edged", "edged version and gateway id", value={
            "version": __version__, "gateway": daemon.config.gateway.id,
        })
        yield GaugeMetricFamily("edged_uptime_seconds", "Seconds since the daemon started", value=time.monotonic() - daemon.started_at)
        yield GaugeMetricFamily(
            "edged_event_loop_lag_seconds", "How late the event loop woke a 1 s timer, last measured",
            value=float(getattr(daemon, "loop_lag", 0.0)),
        )
        yield GaugeMetricFamily(
            "edged_clock_synced", "1 when the system clock is synchronised (or trusted); 0 marks stored readings unsynced",
            value=int(daemon.clock_synced),
        )
        yield CounterMetricFamily("edged_readings_in", "Readings that entered the Hub", value=daemon.hub.readings_in)
        yield from self._adapters()
        yield from self._rules()
        yield from self._outbox()
        yield from self._uplink()

    def _adapters(self) -> Iterator[Metric]:
        labels = ["adapter"]
        readings = CounterMetricFamily("edged_adapter_readings", "Readings an adapter published", labels=labels)
        delivered = CounterMetricFamily(
            "edged_adapter_readings_delivered", "Readings of an adapter the cloud acknowledged", labels=labels
        )
        acked = getattr(self.daemon.uplink, "delivered", {})
        errors = CounterMetricFamily("edged_adapter_errors", "Errors talking to devices", labels=labels)
        reconnects = CounterMetricFamily("edged_adapter_reconnects", "Reconnection attempts", labels=labels)
        state = GaugeMetricFamily("edged_adapter_state", "1 for the adapter's current state", labels=["adapter", "state"])
        devices = GaugeMetricFamily("edged_devices", "Devices known, by adapter and online status",
                                    labels=["adapter", "online"])
        counters: dict[str, CounterMetricFamily] = {}  # an adapter's own stats(), e.g. ble_evicted
        for name, adapter in list(self.daemon.adapters.items()):
            for key, count in _stats(adapter).items():
                if isinstance(count, (int, float)):
                        counters.setdefault(key, CounterMetricFamily(f"edged_adapter_{key}", f"Adapter counter {key}",
                                                                 labels=labels)).add_metric([name], count)  # fmt: skip
            readings.add_metric([name], getattr(adapter, "readings_total", 0))
            delivered.add_metric([name], acked.get(name, 0))
            errors.add_metric([name], getattr(adapter, "errors_total", 0))
            reconnects.add_metric([name], getattr(adapter, "reconnects_total", 0))
            current = getattr(adapter, "state", "stopped")
            for known in dict.fromkeys((*ADAPTER_STATES, current)):
                state.add_metric([name, known], 1.0 if known == current else 0.0)
            known_devices = self.daemon.hub.adapter_devices(name)
            online = sum(1 for device in known_devices if device.online)
            devices.add_metric([name, "true"], online)
            devices.add_metric([name, "false"], len(known_devices) - online)
        yield from (readings, delivered, errors, reconnects, state, devices, *counters.values())

    def _rules(self) -> Iterator[Metric]:
        rules = getattr(self.daemon, "rules", None)
        if rules is None:
            return
        if hasattr(rules, "firings_total"):
            yield CounterMetricFamily("edged_rule_firings", "Rule firings", value=rules.firings_total)
        if hasattr(rules, "errors_total"):
            yield CounterMetricFamily("edged_rule_errors", "Rule actions that failed", value=rules.errors_total)
        if hasattr(rules, "rules_paused"):
            yield CounterMetricFamily(
                "edged_rules_paused", "Rules paused because what rules did woke them too often (a loop)", value=rules.rules_paused
            )
        latencies = getattr(rules, "latencies", None)
        if latencies is not None:
            yield latency_summary(
                "edged_rule_latency_seconds",
                "From a reading entering the Hub to the rule's command reaching the adapter (recent window)",
                list(latencies),
            )

    def _outbox(self) -> Iterator[Metric]:
        outbox = getattr(self.daemon.uplink, "outbox", None)
        stats = _stats(outbox)
        if not stats:
            return
        for key, (name, kind, doc) in _OUTBOX.items():
            value = stats.get(key)
            if value is None:
                continue
            family = CounterMetricFamily if kind == "counter" else GaugeMetricFamily
            yield family(name, doc, value=value)
        drops = CounterMetricFamily("edged_outbox_dropped", "Readings the outbox lost, by reason", labels=["reason"])
        for key, reason in _OUTBOX_DROPS.items():
            if stats.get(key) is not None:
                drops.add_metric([reason], stats[key])
        yield drops

    def _uplink(self) -> Iterator[Metric]:
        uplink = self.daemon.uplink
        if uplink is None:
            return
        stats = {key.removeprefix("uplink_"): value for key, value in _stats(uplink).items() if not key.startswith("outbox_")}
        for attribute in ("connected", "acked", "reconnects"):
            if attribute not in stats and isinstance(getattr(uplink, attribute, None), (bool, int, float)):
                stats[attribute] = getattr(uplink, attribute)
        refused = stats.pop("refused", None)
        if isinstance(refused, dict):
            family = CounterMetricFamily("edged_uplink_refused", "Messages the cloud refused, by reason", labels=["reason"])
            for reason, count in sorted(refused.items()):
                family.add_metric([reason], count)
            yield family
        for key, value in sorted(stats.items()):
            if isinstance(value, bool) or key == "connected":
                yield GaugeMetricFamily(f"edged_uplink_{key}", f"Uplink {key} (1 = yes)", value=float(bool(value)))
            elif isinstance(value, (int, float)):
                if key.startswith(("acked", "sent", "published")) or key in ("reconnects", "errors"):
                    yield CounterMetricFamily(f"edged_uplink_{key}", f"Uplink {key} count", value=value)
                else:
                    yield GaugeMetricFamily(f"edged_uplink_{key}", f"Uplink {key}", value=value)


def latency_summary(name: str, doc: str, samples: list[float]) -> Metric:
    """A Prometheus summary (quantiles, count, sum) over a window of samples in seconds."""
    metric = Metric(name, doc, "summary")
    ordered = sorted(samples)
    if ordered:
        for q in LATENCY_QUANTILES:
            index = min(len(ordered) - 1, round(q * (len(ordered) - 1)))
            metric.add_sample(name, {"quantile": str(q)}, ordered[index])
    metric.add_sample(f"{name}_count", {}, len(ordered))
    metric.add_sample(f"{name}_sum", {}, sum(ordered))
    return metric


def _stats(part: object) -> Mapping[str, Any]:
    stats = getattr(part, "stats", None)
    if callable(stats):
        result = stats()
        return result if isinstance(result, Mapping) else {}
    return {}


class Metrics:
    """The daemon's metrics registry; ``render()`` gives the text exposition format."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self, daemon: Daemon) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(DaemonCollector(daemon))

    def render(self) -> bytes:
        return generate_latest(self.registry)
