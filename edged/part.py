"""What every long-running part of the gateway shows the rest of it.

A *part* (an adapter, the uplink, the outbox, the rules engine) has a
``name``, a ``state``, ``health_problems()`` (why it needs attention; empty
when it does not) and ``stats()``: its figures as a dataclass. Each field of
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

import dataclasses
import enum
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

    kind: Literal["counter", "gauge", "summary"]
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


def summary(name: str, doc: str) -> Any:
    """A stats field holding a recent window of samples, shown as quantiles, count and sum."""
    return _field(Figure("summary", name, doc), list)


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
        """This part's figures: a dataclass whose fields are declared with ``counter``, ``gauge``, ``summary``."""
        ...
