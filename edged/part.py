"""What every long-running part of the gateway shows the rest of it.

A *part* (an adapter, an uplink, the outbox, the rules engine) has a
``name``, a ``state``, the ``labels`` its metrics carry (``{"adapter":
name}``; none for a part there is one of), ``health_problems()`` (why it
needs attention; empty when it does not) and ``stats()``: its figures as a
dataclass. Each field of
that dataclass says in its metadata how Prometheus shows it, so a figure is
declared once, next to the code that counts it, and the metrics collector
and the status documents read the same object::

    @dataclass
    class OutboxStats:
        depth: int = gauge("edged_outbox_depth_readings", "Readings stored and not yet acknowledged")
        dropped_full: int = counter("edged_outbox_dropped", "Readings the outbox lost, by reason", reason="full")

A field without such metadata is shown in the status documents only; a
field holding a mapping is one sample per key, the key in the label that
``label`` names.
"""

from __future__ import annotations

import bisect
import dataclasses
import enum
import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

FIGURE = "edged.figure"  # the metadata key a field's Figure is kept under


class State(enum.StrEnum):
    """Where a part is in its life; ``FAILED`` is a part that stopped on an error it cannot get past by itself."""

    STARTING = "starting"
    RUNNING = "running"
    FAILED = "failed"
    STOPPED = "stopped"


@dataclass(frozen=True)
class Figure:
    """How one stats field is shown as a Prometheus metric."""

    kind: Literal["counter", "gauge", "histogram"]
    name: str  # the metric family's name (a counter's samples get "_total")
    doc: str
    labels: tuple[tuple[str, str], ...] = ()  # fixed labels of this field's sample
    label: str | None = None  # for a mapping: the label its keys go in


def counter(name: str, doc: str, label: str | None = None, **labels: str) -> Any:
    """A stats field counted up from zero (or a mapping of such counts, keyed by ``label``)."""
    return _field(Figure("counter", name, doc, tuple(labels.items()), label), dict if label else 0)


def gauge(name: str, doc: str, label: str | None = None, **labels: str) -> Any:
    """A stats field that goes up and down (None: not known now, and not shown)."""
    return _field(Figure("gauge", name, doc, tuple(labels.items()), label), dict if label else 0)


def histogram(name: str, doc: str) -> Any:
    """A stats field holding a ``Histogram``: observations counted into buckets since start."""
    return _field(Figure("histogram", name, doc), Histogram)


class Histogram:
    """Observations (seconds, say) counted into buckets by upper bound, with their count and sum;
    never reset, so that Prometheus's ``rate()`` over it is right."""

    __slots__ = ("bounds", "count", "counts", "total")

    def __init__(self, bounds: tuple[float, ...] = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)) -> None:
        self.bounds = bounds
        self.counts = [0] * len(bounds)  # per bucket, not cumulative; above the last bound only in ``count``
        self.count = 0
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.count += 1
        self.total += value
        index = bisect.bisect_left(self.bounds, value)
        if index < len(self.bounds):
            self.counts[index] += 1

    def buckets(self) -> list[tuple[str, int]]:
        """Cumulative counts by upper bound, ending with ``+Inf`` (the Prometheus form)."""
        cumulative = list(itertools.accumulate(self.counts))
        return [*((f"{bound:g}", n) for bound, n in zip(self.bounds, cumulative, strict=True)), ("+Inf", self.count)]

    def copy(self) -> Histogram:
        other = Histogram(self.bounds)
        other.counts, other.count, other.total = list(self.counts), self.count, self.total
        return other


def _field(figure: Figure, default: Any) -> Any:
    if callable(default):
        return field(default_factory=default, metadata={FIGURE: figure})
    return field(default=default, metadata={FIGURE: figure})


def figures(stats: object) -> Iterator[tuple[Figure, Any]]:
    """Each field of ``stats`` that is a metric, with its value."""
    for item in dataclasses.fields(stats):  # type: ignore[arg-type]
        figure = item.metadata.get(FIGURE)
        if figure is not None:
            yield figure, getattr(stats, item.name)


def plain(stats: object) -> dict[str, Any]:
    """``stats`` as a JSON-able mapping by field name, for the status documents."""
    return dataclasses.asdict(stats)  # type: ignore[call-overload]


@runtime_checkable
class Part(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def state(self) -> State: ...

    @property
    def labels(self) -> dict[str, str]:
        """The labels of this part's metrics (``{"adapter": name}``); empty for a part there is one of."""
        ...

    def health_problems(self) -> list[str]:
        """Why this part needs attention; empty when it does not."""
        ...

    def stats(self) -> object:
        """This part's figures: a dataclass whose fields are declared with ``counter``, ``gauge``, ``histogram``."""
        ...
