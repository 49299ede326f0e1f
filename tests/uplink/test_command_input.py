"""Hostile cloud command messages: whatever the bytes, ``parse_command``
answers (a Command, or a Rejected saying why not) and never raises, and only a bool, a finite
float, an int or valid text reaches the Hub; refusals are answered at a
bounded rate.

The property tests run ~100 examples each; for a long fuzzing run:
``HYPOTHESIS_PROFILE=fuzz pytest tests/uplink/test_command_input.py --timeout 0``."""

from __future__ import annotations

import json
import logging
import math
from typing import Any

import cbor2
import pytest
from hypothesis import given
from hypothesis import strategies as st

from edged.hub import Hub
from edged.model import Command, CommandStatus, Device, Point, ValueType
from edged.uplink.commands import MAX_COMMAND_BYTES, MAX_ID, Rejected, RejectionLimit, parse_command, read_command

COMMAND = {"id": "c1", "device": "sim/dimmer", "point": "level", "value": 1.5}


def command(**fields: Any) -> dict[str, Any]:
    return {**COMMAND, **fields}


# -- bounds ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "encoding"),
    [
        (b"[" * 100_000, "json"),  # larger than the bound, and too deep for json.loads
        (b"[" * 50_000 + b"]" * 50_000, "json"),  # within the bound, too deep
        (b'{"id": "c1", "value": ' + b"[" * 20_000 + b"]" * 20_000 + b"}", "json"),
        (b"\x81" * 50_000 + b"\x00", "cbor"),
        (b"\xa1\x65value" + b"\x9f" * 20_000, "cbor"),  # indefinite arrays, never closed
    ],
    ids=["json-100k-deep", "json-50k-deep", "json-deep-value", "cbor-deep", "cbor-deep-indefinite"],
)
def test_deep_nesting_is_refused_without_an_exception(payload: bytes, encoding: Any) -> None:
    rejected = parse_command(payload, encoding)
    assert isinstance(rejected, Rejected)
    assert "nested deeper" in rejected.reason or "bytes; at most" in rejected.reason


def test_a_message_longer_than_the_bound_is_refused_unread() -> None:
    payload = json.dumps(command(value="x" * MAX_COMMAND_BYTES)).encode()
    assert parse_command(payload) == Rejected(None, f"message of {len(payload)} bytes; at most {MAX_COMMAND_BYTES} are taken")
    assert isinstance(parse_command(json.dumps(command(value="x" * 1000)).encode()), Command)


def test_a_long_id_is_refused_and_echoed_cut_to_the_limit() -> None:
    long_id = "c" * 300
    rejected = parse_command(json.dumps(command(id=long_id)).encode())
    assert isinstance(rejected, Rejected) and "id longer than 128" in rejected.reason
    assert rejected.raw_id == long_id[:MAX_ID]
    rejected = parse_command(json.dumps(command(id=10**200)).encode())
    assert isinstance(rejected, Rejected) and rejected.raw_id is not None and len(str(rejected.raw_id)) == MAX_ID
    assert read_command(json.dumps(command(id="c" * MAX_ID)).encode())[1] == "c" * MAX_ID


@pytest.mark.parametrize(
    ("payload", "encoding", "why"),
    [
        (b'{"id": "c1", "device": "d", "point": "p", "value": NaN}', "json", "NaN is not a JSON number"),
        (b'{"id": "c1", "device": "d", "point": "p", "value": Infinity}', "json", "Infinity is not a JSON number"),
        (b'{"id": "c1", "device": "d", "point": "p", "value": -Infinity}', "json", "-Infinity is not a JSON number"),
        (b'{"id": "c1", "device": "d", "point": "p", "value": 1e999}', "json", "out of range for a number"),
        (b'{"id": "c1", "device": "d", "point": "p", "value": "\\ud800"}', "json", "not valid Unicode"),
        (b'{"id": "c1", "device": "d", "point": "p", "value": null}', "json", "bool, number or string"),
        (b'{"id": {"a": 1}, "device": "d", "point": "p", "value": 1}', "json", "id must be a string or an integer"),
        (b'{"id": "c1", "device": "", "point": "p", "value": 1}', "json", "device must be a non-empty string"),
        (cbor2.dumps(command(value=2**70)), "cbor", "CBOR tags are not accepted (tag 2)"),
        (cbor2.dumps(command(value=-(2**70))), "cbor", "CBOR tags are not accepted (tag 3)"),
        (cbor2.dumps(command(value=cbor2.CBORTag(1, 0))), "cbor", "CBOR tags are not accepted (tag 1)"),
        (cbor2.dumps(command(value=b"\x01")), "cbor", "byte strings are not accepted"),
        (cbor2.dumps(command(value=cbor2.undefined)), "cbor", "undefined is not accepted"),
        (cbor2.dumps(command(value=cbor2.CBORSimpleValue(99))), "cbor", "simple value 99"),
        (cbor2.dumps(command(value=math.nan)), "cbor", "not a finite number"),
        (cbor2.dumps(command(value=-math.inf)), "cbor", "not a finite number"),
        (cbor2.dumps({1: "a"}), "cbor", "map keys must be text"),
        (b"\xa4\x62id\x62c1\x66device\x61d\x65point\x61p\x65value\xd8\x1c\x81\xd8\x1d\x00", "cbor",
         "CBOR tags are not accepted (tag 28)"),  # a list holding itself
        (cbor2.dumps(COMMAND) + b"\x00", "cbor", "1 bytes after the first item"),
        (b"\x9b" + b"\xff" * 8, "cbor", "ends inside an item"),  # an array of 2**64-1 items, in 9 bytes
    ],
)
def test_values_json_cannot_hold_are_refused_with_a_reason(payload: bytes, encoding: Any, why: str) -> None:
    rejected = parse_command(payload, encoding)
    assert isinstance(rejected, Rejected) and why in rejected.reason
    if rejected.reason.startswith("value"):
        assert rejected.raw_id == "c1", "the refusal of a decodable message echoes its id"


# -- properties --------------------------------------------------------------

json_like = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)
cbor_like = st.recursive(
    json_like.filter(lambda v: not isinstance(v, (list, dict)))
    | st.binary(max_size=8) | st.just(cbor2.undefined) | st.integers(min_value=2**64, max_value=2**200),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.integers() | st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)
commands = st.fixed_dictionaries(
    {"device": st.text(max_size=20), "point": st.text(max_size=20), "value": json_like},
    optional={"id": json_like},
)
hostile = st.binary(max_size=512) | st.builds(
    lambda opener, depth, tail: opener * depth + tail,
    st.sampled_from([b"[", b"{\"a\":", b"\x81", b"\x9f", b"\xa1\x61a"]),
    st.integers(min_value=0, max_value=40_000),
    st.binary(max_size=16),
)


def assert_sound(parsed: tuple[Command | Rejected, Any]) -> None:
    cmd, raw_id = parsed
    assert isinstance(cmd, (Command, Rejected))
    assert raw_id is None or (isinstance(raw_id, (str, int)) and len(str(raw_id)) <= MAX_ID)
    if isinstance(cmd, Rejected):
        assert cmd.raw_id == raw_id and cmd.reason
    else:
        assert type(cmd.value) in (bool, int, float, str)
        assert not isinstance(cmd.value, float) or math.isfinite(cmd.value)
        assert isinstance(cmd.device_id, str) and isinstance(cmd.key, str)
        json.dumps({"id": cmd.id, "device": cmd.device_id, "point": cmd.key, "value": cmd.value}, allow_nan=False)
        cbor2.dumps({"id": cmd.id, "device": cmd.device_id, "point": cmd.key, "value": cmd.value})


@given(hostile)
def test_any_bytes_give_an_answer_and_never_an_exception(payload: bytes) -> None:
    assert_sound(read_command(payload, "json"))
    assert_sound(read_command(payload, "cbor"))


@given(commands | json_like)
def test_any_json_document_gives_a_sound_answer(data: Any) -> None:
    assert_sound(read_command(json.dumps(data).encode()))  # NaN and Infinity included, as Python writes them


@given(st.fixed_dictionaries({"device": st.text(max_size=20), "point": st.text(max_size=20), "value": cbor_like},
                             optional={"id": cbor_like}) | cbor_like)
def test_any_cbor_document_gives_a_sound_answer(data: Any) -> None:
    assert_sound(read_command(cbor2.dumps(data), "cbor"))


def indefinite(data: dict[str, Any]) -> bytes:
    """``data`` as a CBOR map of indefinite length, its text in chunks of indefinite length."""

    def item(value: Any) -> bytes:
        if isinstance(value, str) and value.isascii():  # chunks of 3 characters
            return b"\x7f" + b"".join(cbor2.dumps(value[i : i + 3]) for i in range(0, len(value), 3)) + b"\xff"
        return cbor2.dumps(value)

    return b"\xbf" + b"".join(item(key) + item(value) for key, value in data.items()) + b"\xff"


@given(
    st.text(min_size=1, max_size=50), st.text(min_size=1, max_size=50),
    st.booleans() | st.integers(-(2**64), 2**64 - 1) | st.floats() | st.text() | st.integers(2**64, 2**80),
    st.text(max_size=MAX_ID) | st.integers(-(2**63), 2**63),
)
def test_a_command_arrives_as_sent_when_json_can_hold_its_value_and_is_refused_with_its_id_if_not(
    device: str, point: str, value: Any, id_: Any
) -> None:
    sent = {"id": id_, "device": device, "point": point, "value": value}
    holdable = not isinstance(value, float) or math.isfinite(value)
    if isinstance(value, int) and not -(2**64) <= value < 2**64:
        holdable = False  # a CBOR bignum (JSON takes it, for the Hub to judge against the point)
    encodings = [(json.dumps(sent).encode(), "json", not isinstance(value, float) or holdable),
                 (cbor2.dumps(sent), "cbor", holdable), (indefinite(sent), "cbor", holdable)]
    for payload, encoding, taken in encodings:
        cmd, raw_id = read_command(payload, encoding)  # type: ignore[arg-type]
        assert raw_id == id_
        if taken:
            assert isinstance(cmd, Command), (encoding, cmd)
            assert (cmd.id, cmd.device_id, cmd.key) == (str(id_), device, point)
            assert cmd.value == value and type(cmd.value) is type(value)
        else:
            assert isinstance(cmd, Rejected) and cmd.reason.startswith("value: "), (encoding, cmd)
            assert cmd.raw_id == id_


# -- the Hub: values the point cannot take ------------------------------------


@pytest.fixture
def dimmer(hub: Hub) -> list[Command]:
    points = {
        "level": Point("level", ValueType.FLOAT, writable=True),
        "steps": Point("steps", ValueType.INT, writable=True),
        "label": Point("label", ValueType.STR, writable=True),
    }
    hub.add_device(Device("sim/dimmer", "sim", points=points, online=True))
    writes: list[Command] = []

    async def write(cmd: Command) -> None:
        writes.append(cmd)

    hub.attach_writer("sim", write)
    return writes


KEPT = object()  # the result repeats the value as sent


@pytest.mark.parametrize(
    ("point", "value", "why", "echo", "edge"),
    [
        ("level", 10**400, "an integer of 1329 bits, out of range for a float", None, 2**1000),
        ("level", math.nan, "expected a finite float, got nan", None, 1.7e308),
        ("level", -math.inf, "expected a finite float, got -inf", None, -1.7e308),
        ("steps", 2**64, "out of the 64-bit range", None, 2**64 - 1),  # uint64 is the widest a device has
        ("steps", -(2**63) - 1, "out of the 64-bit range", KEPT, -(2**63)),
        ("steps", 1e300, "got 1e+300, out of the 64-bit range", KEPT, 1.8e19),
        ("steps", 10**4000, "an integer of 13288 bits, out of the 64-bit range", None, 0),
        ("label", "\ud800", "not valid Unicode", None, "\u00e9t\u00e9 \U0001f600"),
    ],
)
async def test_the_hub_takes_only_values_within_the_points_range(
    hub: Hub, dimmer: list[Command], point: str, value: Any, why: str, echo: Any, edge: Any
) -> None:
    result = await hub.execute(Command("sim/dimmer", point, value))
    assert result.status is CommandStatus.REJECTED
    assert result.reason is not None and why in result.reason and len(result.reason) < 200
    assert result.command.value is (value if echo is KEPT else None), "a value JSON cannot hold is not repeated"
    assert dimmer == []
    result = await hub.execute(Command("sim/dimmer", point, edge))  # the last value within the range is taken
    assert result.status is CommandStatus.OK, result.reason
    assert [c.value for c in dimmer] == [edge]


async def test_a_rejected_long_name_or_value_is_not_repeated_in_full(hub: Hub, dimmer: list[Command]) -> None:
    result = await hub.execute(Command("sim/" + "x" * 60_000, "level", 1.0))
    assert result.reason is not None and "unknown device" in result.reason and len(result.reason) < 200
    result = await hub.execute(Command("sim/dimmer", "steps", "y" * 60_000))
    assert result.reason is not None and "expected int" in result.reason and len(result.reason) < 200
    assert result.command.value is None


# -- answers to refusals, rate-limited -----------------------------------------


def test_refusals_are_answered_at_most_ten_a_second_after_a_burst_of_fifty(caplog: pytest.LogCaptureFixture) -> None:
    now = [1000.0]
    limit = RejectionLimit(rate=10, burst=50, clock=lambda: now[0])
    caplog.set_level(logging.WARNING, "edged.uplink.commands")
    assert all(limit.allow() for _ in range(50))
    assert not any(limit.allow() for _ in range(200))
    assert limit.dropped == 200
    assert len(caplog.records) == 1 and "faster than 10/s" in caplog.records[0].getMessage()
    now[0] += 0.1  # one more token
    assert limit.allow() and not limit.allow()
    assert "200 refused cloud commands were not answered" in caplog.records[1].getMessage()
    assert len(caplog.records) == 3  # a new burst is logged once again
    now[0] += 3600
    assert sum(limit.allow() for _ in range(100)) == 50
