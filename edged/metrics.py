"""Prometheus metrics, read from the gateway's parts at scrape time.

``GatewayCollector`` is a prometheus-client custom collector: nothing is
counted twice. The Hub and every part keep their plain counters and give
them as a stats dataclass whose fields declare their metric
(``edged.part``); the collector turns those into metric families when
``/metrics`` is scraped, each sample with its part's ``labels`` (an
adapter's ``adapter="<name>"``, an uplink's ``uplink="<name>"``). Parts that
are not configured (no rules, no uplink) are simply absent from the output. Each ``Metrics`` has its own
registry, never the process-global one.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, InfoMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from edged import __version__
from edged.part import Figure, State, figures
from edged.view import GatewayView

# (stats, labels of every sample it gives)
Sourced = tuple[object, dict[str, str]]


class GatewayCollector(Collector):
    """Yields the gateway's metric families from ``view`` on every scrape."""

    def __init__(self, view: GatewayView) -> None:
        self.view = view

    def collect(self) -> Iterator[Metric]:
        view = self.view
        yield InfoMetricFamily("edged", "edged version and gateway id", value={"version": __version__, "gateway": view.gateway_id})
        sources: list[Sourced] = [(view.stats(), {})]
        for part in view.parts():
            sources.append((part.stats(), part.labels))
        yield from families(sources)
        yield from self._adapter_states()

    def _adapter_states(self) -> Iterator[Metric]:
        state = GaugeMetricFamily("edged_adapter_state", "1 for the adapter's current state", labels=["adapter", "state"])
        devices = GaugeMetricFamily("edged_devices", "Devices known, by adapter and online status", labels=["adapter", "online"])
        for name, adapter in list(self.view.adapters.items()):
            for known in State:
                state.add_metric([name, known.value], 1.0 if known is adapter.state else 0.0)
            known_devices = self.view.hub.adapter_devices(name)
            online = sum(1 for device in known_devices if device.online)
            devices.add_metric([name, "true"], online)
            devices.add_metric([name, "false"], len(known_devices) - online)
        yield from (state, devices)


def families(sources: Iterable[Sourced]) -> Iterator[Metric]:
    """One metric family per figure name, with a sample from every source that has it."""
    made: dict[str, Metric] = {}
    for stats, labels in sources:
        for figure, value in figures(stats):
            if figure.kind == "histogram":
                made[figure.name] = HistogramMetricFamily(figure.name, figure.doc, buckets=value.buckets(), sum_value=value.total)
                continue
            for sample_labels, number in _samples(figure, value, labels):
                family = made.get(figure.name)
                if family is None:
                    kind = CounterMetricFamily if figure.kind == "counter" else GaugeMetricFamily
                    family = made[figure.name] = kind(figure.name, figure.doc, labels=list(sample_labels))
                family.add_metric(list(sample_labels.values()), number)
    yield from made.values()


def _samples(figure: Figure, value: Any, labels: dict[str, str]) -> Iterator[tuple[dict[str, str], float]]:
    fixed = {**labels, **dict(figure.labels)}
    if isinstance(value, Mapping):
        assert figure.label is not None
        for key, number in sorted(value.items()):
            yield {**fixed, figure.label: str(key)}, float(number)
    elif value is not None:
        yield fixed, float(value)


class Metrics:
    """The gateway's metrics registry; ``render()`` gives the text exposition format."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self, view: GatewayView) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(GatewayCollector(view))
        ProcessCollector(registry=self.registry)  # process_resident_memory_bytes, process_cpu_seconds_total, open fds

    def render(self) -> bytes:
        return generate_latest(self.registry)
