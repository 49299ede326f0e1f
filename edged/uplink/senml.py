"""SenML (RFC 8428) packs of outbox rows, in CBOR (content-format 112).

A row of one device becomes one pack: the first record carries the base
name ``<gateway>/<device>/`` and base time (the first reading's ts), every
record its point as ``n``, a time offset ``t`` and the value as ``v``
(numbers), ``vb`` (bools) or ``vs`` (strings). Two extension labels that a
receiver may ignore (RFC 8428 section 4.4): ``gen`` and ``seq`` in the first
record are the outbox generation and message id (the key to drop duplicates
by); ``clock: "unsynced"`` in the first record marks readings stamped
before the system clock was synchronised; ``q`` is the quality when not good (1 uncertain,
2 bad). A reading without a value (``None``) carries only ``q``.
"""

from __future__ import annotations

import json
from typing import Any

import cbor2

CONTENT_FORMAT = 112  # application/senml+cbor

# CBOR labels (RFC 8428 table 6)
BN, BT = -2, -3
N, V, VS, VB, T = 0, 2, 3, 4, 6


def pack(gateway: str, device: str, seq: int, readings: list[list[Any]], gen: int = 0,
         unsynced: bool = False) -> list[dict[Any, Any]]:  # fmt: skip
    """SenML records for ``[key, value, ts, quality]`` readings of one device."""
    records: list[dict[Any, Any]] = []
    base = readings[0][2] if readings else 0.0
    for key, value, ts, quality in readings:
        record: dict[Any, Any] = {N: key, T: ts - base}
        if isinstance(value, bool):
            record[VB] = value
        elif isinstance(value, (int, float)):
            record[V] = value
        elif isinstance(value, str):
            record[VS] = value
        if quality:
            record["q"] = quality
        records.append(record)
    if records:
        records[0].update({BN: f"{gateway}/{device}/", BT: base, "gen": gen, "seq": seq})
        if unsynced:
            records[0]["clock"] = "unsynced"
    return records


def encode_row(gateway: str, device: str, seq: int, payload: bytes, gen: int = 0, unsynced: bool = False) -> bytes:
    """CBOR SenML for one outbox row of readings."""
    return cbor2.dumps(pack(gateway, device, seq, json.loads(payload), gen, unsynced))


def resolve(records: list[dict[Any, Any]]) -> list[tuple[str, Any, float]]:
    """``(name, value, time)`` per record with base values applied (for receivers and tests)."""
    resolved = []
    name_base, time_base = "", 0.0
    for record in records:
        name_base = record.get(BN, name_base)
        time_base = record.get(BT, time_base)
        value = next((record[k] for k in (V, VS, VB) if k in record), None)
        resolved.append((name_base + record[N], value, time_base + record.get(T, 0.0)))
    return resolved
