"""SenML CBOR as properties: any row of readings, stored by the outbox and
encoded for the CoAP uplink, decodes to a valid SenML pack (RFC 8428) whose
resolved records give back every reading's name, value, time and quality.
Values that are not JSON numbers (NaN, infinities) reach the pack as
readings without a value, as the outbox stores them."""

from __future__ import annotations

import math
from typing import Any

import cbor2
from hypothesis import given
from hypothesis import strategies as st

from edged.outbox import _encode
from edged.uplink import senml

NAMES = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=20)
VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**63), 2**64 - 1), st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=30),
)
# Epoch seconds as the gateway's clock gives them (1970 to 2242), to the microsecond and beyond.
TIMES = st.floats(0, 2**33, allow_nan=False)
QUALITIES = st.integers(0, 2)
READINGS = st.lists(st.tuples(NAMES, VALUES, TIMES, QUALITIES), min_size=1, max_size=20)


def decoded_pack(gateway: str, device: str, seq: int, gen: int, readings: list[tuple[Any, ...]]) -> list[dict[Any, Any]]:
    payload = _encode(readings)  # what the outbox stores for the row
    records = cbor2.loads(senml.encode_row(gateway, device, seq, payload, gen))
    assert isinstance(records, list) and len(records) == len(readings)
    first = records[0]
    assert first[senml.BN] == f"{gateway}/{device}/" and first["gen"] == gen and first["seq"] == seq
    for i, record in enumerate(records):
        assert isinstance(record, dict) and isinstance(record[senml.N], str)
        assert i == 0 or (senml.BN not in record and senml.BT not in record)  # base values only in the first
        values = [label for label in (senml.V, senml.VS, senml.VB) if label in record]
        assert len(values) <= 1  # a record carries at most one value
        if senml.V in record:
            assert isinstance(record[senml.V], (int, float)) and not isinstance(record[senml.V], bool)
            assert math.isfinite(record[senml.V])
        assert math.isfinite(record[senml.T])
    return records


def same_time(resolved: float, ts: float, base: float) -> bool:
    """Equal up to the rounding of ``ts - base`` and ``base + t`` in floating point."""
    return math.isclose(resolved, ts, rel_tol=0, abs_tol=4 * math.ulp(max(abs(ts), abs(base), 1.0)))


@given(gateway=NAMES, device=NAMES, seq=st.integers(0, 2**63 - 1), gen=st.integers(0, 2**31), readings=READINGS)
def test_any_row_resolves_to_its_readings(
    gateway: str, device: str, seq: int, gen: int, readings: list[tuple[Any, ...]]
) -> None:
    records = decoded_pack(gateway, device, seq, gen, readings)
    resolved = senml.resolve(records)
    base = readings[0][2]
    for (key, value, ts, quality), (name, got, at), record in zip(readings, resolved, records, strict=True):
        assert name == f"{gateway}/{device}/{key}"
        assert got == value and type(got) is type(value)  # a bool stays a bool, an int an int
        assert same_time(at, ts, base), (at, ts, base)
        assert record.get("q", 0) == quality


@given(readings=st.lists(st.tuples(NAMES, st.one_of(VALUES, st.sampled_from([math.nan, math.inf, -math.inf])),
                                   TIMES, QUALITIES), min_size=1, max_size=20))
def test_non_finite_values_arrive_without_a_value(readings: list[tuple[Any, ...]]) -> None:
    records = decoded_pack("gw", "dev", 1, 0, readings)
    for (key, value, _ts, quality), (name, got, _at), record in zip(readings, senml.resolve(records), records,
                                                                     strict=True):
        assert name == f"gw/dev/{key}"
        if isinstance(value, float) and not math.isfinite(value):
            assert got is None and record.get("q", 0) == quality
        else:
            assert got == value
