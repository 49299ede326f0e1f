"""Cloud commands, whatever the uplink: parsing a command message, answering
the ones that are refused at a bounded rate, and remembering which ones were
already taken.

A command is an object ``{"id": "c1", "device": "sim/relay", "point": "on",
"value": true}`` (``id`` optional). ``parse_command`` turns a message into a
``Command`` or into a ``Rejected`` (the reason it is not one); the uplink
service executes the first and answers the second with a ``rejected``
result.

A message comes from the network, so nothing in it is trusted: it is at most
``MAX_COMMAND_BYTES`` long and nested at most ``MAX_DEPTH`` deep (checked
before anything is built), JSON must be UTF-8 without ``NaN``/``Infinity``,
CBOR may only hold what JSON can (no tags, byte strings, ``undefined`` or
other simple values, and only finite floats), and text must be valid
Unicode. Whatever the bytes, ``parse_command`` returns; it never raises.

A message to the gateway itself (``"device": "$gateway"``, see docs/fleet.md)
is a ``GatewayRequest``: ``point`` names the operation and ``value`` holds
its arguments (any JSON value); the uplink service hands it to the fleet
handler instead of the Hub.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
import struct
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from edged.files import write_atomic
from edged.model import Command, Origin, describe

log = logging.getLogger(__name__)


MAX_COMMAND_BYTES = 64 * 1024  # a longer message is refused unread
MAX_DEPTH = 32  # arrays and objects nested deeper than this are refused unread
MAX_ID = 128  # characters of a command id
MAX_NAME = 256  # characters of a device id or point key
GATEWAY = "$gateway"  # the device id of the gateway itself, for gateway operations (edged.fleet)
_KEYS = ("id", "device", "point", "value")


class _Refused(ValueError):
    """The message is not a command; ``str(exc)`` says why."""


class _Unaccepted:
    """In place of a value JSON cannot hold (NaN, a CBOR tag, bytes, ...): the
    message still decodes, so its refusal can echo its id."""

    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Rejected:
    """A cloud command message that is not a command: answered ``rejected`` with ``reason``,
    echoing ``raw_id`` (a string or an integer of at most ``MAX_ID`` characters, or None
    when the message has no id to echo)."""

    raw_id: str | int | None
    reason: str


# -- fleet: messages to the gateway itself ------------------------------------


@dataclass(frozen=True, slots=True)
class GatewayRequest:
    """An operation on the gateway itself (``edged.fleet``): ``method`` (``ping``, ``status``,
    ``config``, ...) with its ``args`` as the message gave them (any JSON value; for a
    configuration pushed on its own topic, the message's bytes). ``raw_id`` is echoed in the answer."""

    raw_id: str | int | None
    method: str
    args: Any


def _gateway_request(raw_id: str | int | None, data: dict[Any, Any]) -> GatewayRequest | Rejected:
    unknown = set(data) - set(_KEYS)
    if unknown:
        return Rejected(raw_id, f"unknown key {describe(sorted(map(str, unknown))[0])}")
    method = data.get("point")
    if not isinstance(method, str) or not method or len(method) > MAX_NAME or not _unicode(method):
        return Rejected(raw_id, f"point must name the gateway operation (a non-empty string of at most {MAX_NAME} characters)")
    problem = _unaccepted(data.get("value"))
    if problem is not None:
        return Rejected(raw_id, f"value: {problem}")
    return GatewayRequest(raw_id, method, data.get("value"))


def _unaccepted(value: Any) -> str | None:
    """Why ``value`` (decoded JSON or CBOR) holds something JSON cannot, or None."""
    if isinstance(value, _Unaccepted):
        return value.reason
    if isinstance(value, str) and not _unicode(value):
        return "text is not valid Unicode"
    items = value.values() if isinstance(value, dict) else value if isinstance(value, list) else ()
    for item in items:
        problem = _unaccepted(item)
        if problem is not None:
            return problem
    if isinstance(value, dict) and not all(_unicode(key) for key in value):
        return "a key is not valid Unicode text"
    return None


# -- cloud commands ------------------------------------------------------------


def parse_command(payload: bytes | bytearray, encoding: Literal["json", "cbor"] = "json") -> Command | GatewayRequest | Rejected:
    """The command a message holds, or a ``Rejected`` saying why it holds none."""
    return read_command(payload, encoding)[0]


def read_command(
    payload: bytes | bytearray, encoding: Literal["json", "cbor"] = "json"
) -> tuple[Command | GatewayRequest | Rejected, str | int | None]:
    """What ``parse_command`` makes of a message, and the message's own id (None when it
    has none), by which a message shown again is recognised. An id longer than ``MAX_ID``
    characters is cut to that, and the message rejected."""
    if not isinstance(payload, (bytes, bytearray)):
        return Rejected(None, f"expected a {encoding.upper()} message, got {type(payload).__name__}"), None
    if len(payload) > MAX_COMMAND_BYTES:
        return Rejected(None, f"message of {len(payload)} bytes; at most {MAX_COMMAND_BYTES} are taken"), None
    try:
        data = _decode_json(payload) if encoding == "json" else _Cbor(bytes(payload)).document()
    except _Refused as exc:
        return Rejected(None, str(exc)), None
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError, JSONDecodeError, too many digits
        return Rejected(None, f"bad {encoding.upper()}: {exc}"), None
    if not isinstance(data, dict):
        return Rejected(None, "expected an object with device, point and value"), None
    raw_id, error = _id(data.get("id"))
    if error is None and data.get("device") == GATEWAY:
        return _gateway_request(raw_id, data), raw_id
    if error is None:
        error = _check(data)
    if error is not None:
        return Rejected(raw_id, error), raw_id
    fields: dict[str, Any] = {"origin": Origin.CLOUD}
    if raw_id is not None:
        fields["id"] = str(raw_id)
    return Command(data["device"], data["point"], data["value"], **fields), raw_id


def _id(raw: Any) -> tuple[str | int | None, str | None]:
    """The id to echo and, when it is not a usable id, why."""
    if raw is None:
        return None, None
    if isinstance(raw, _Unaccepted):
        return None, f"id: {raw.reason}"
    if isinstance(raw, bool) or not isinstance(raw, (str, int)):
        return None, f"id must be a string or an integer, got {_kind(raw)}"
    if isinstance(raw, int) and raw.bit_length() > 10_000:  # past what str() prints (4300 digits)
        return None, f"id longer than {MAX_ID} characters"
    if isinstance(raw, str) and not _unicode(raw):
        return None, "id is not valid Unicode text"
    text = str(raw)
    if len(text) > MAX_ID:
        return text[:MAX_ID], f"id longer than {MAX_ID} characters"
    return raw, None


def _check(data: dict[Any, Any]) -> str | None:
    missing = [k for k in ("device", "point", "value") if k not in data]
    if missing:
        return f"missing {', '.join(missing)}"
    unknown = set(data) - set(_KEYS)
    if unknown:
        return f"unknown key {describe(sorted(map(str, unknown))[0])}"
    for key in ("device", "point"):
        name = data[key]
        if not isinstance(name, str) or not name:
            return f"{key} must be a non-empty string"
        if len(name) > MAX_NAME:
            return f"{key} longer than {MAX_NAME} characters"
        if not _unicode(name):
            return f"{key} is not valid Unicode text"
    value = data["value"]
    if isinstance(value, _Unaccepted):
        return f"value: {value.reason}"
    if isinstance(value, float) and not math.isfinite(value):
        return f"value {value!r} is not a finite number"
    if isinstance(value, str) and not _unicode(value):
        return "value is not valid Unicode text"
    if not isinstance(value, (bool, int, float, str)):
        return f"value must be a bool, number or string, got {_kind(value)}"
    return None


def _kind(value: Any) -> str:
    return {dict: "an object", list: "an array", type(None): "null"}.get(type(value), type(value).__name__)


def _unicode(text: str) -> bool:
    """False for text holding a lone surrogate (JSON's ``"\\ud800"``), which no UTF-8 encoder takes."""
    if text.isascii():
        return True
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


# -- JSON --------------------------------------------------------------------

_JSON_SPECIAL = re.compile(r'[\\"\[\]{}]')


def _decode_json(payload: bytes | bytearray) -> Any:
    try:
        text = bytes(payload).decode()  # RFC 8259: JSON between systems is UTF-8
    except UnicodeDecodeError as exc:
        raise _Refused(f"bad JSON: not UTF-8 ({exc.reason} at byte {exc.start})") from exc
    _json_depth(text)
    return json.loads(text, parse_constant=_no_constant, parse_float=_finite_float)


def _json_depth(text: str) -> None:
    """Refuse text whose arrays and objects nest deeper than MAX_DEPTH, before the decoder recurses into them."""
    if text.count("[") + text.count("{") <= MAX_DEPTH:
        return
    depth, in_string, escaped = 0, False, -1
    for match in _JSON_SPECIAL.finditer(text):
        at, char = match.start(), match.group()
        if at == escaped:
            continue
        if in_string:
            if char == "\\":
                escaped = at + 1
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                raise _Refused(f"nested deeper than {MAX_DEPTH} levels")
        elif char in "]}":
            depth -= 1


def _no_constant(name: str) -> _Unaccepted:
    return _Unaccepted(f"{name} is not a JSON number")


def _finite_float(text: str) -> float | _Unaccepted:
    value = float(text)
    return value if math.isfinite(value) else _Unaccepted(f"{describe(text, 32)} is out of range for a number")


# -- CBOR --------------------------------------------------------------------


class _Cbor:
    """A CBOR decoder (RFC 8949) for what JSON can hold: integers, finite floats,
    text, arrays, maps with text keys, true, false and null. Anything else
    (a tag, bytes, undefined, another simple value, NaN or an infinity) is
    read past and stands as an ``_Unaccepted``. Lengths are checked against
    the bytes left before anything is read or allocated."""

    _FLOATS = {25: ">e", 26: ">f", 27: ">d"}
    _SIMPLE = {20: False, 21: True, 22: None}

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.at = 0

    def document(self) -> Any:
        value = self._item(1)
        if self.at != len(self.data):
            raise _Refused(f"bad CBOR: {len(self.data) - self.at} bytes after the first item")
        return value

    def _take(self, n: int) -> bytes:
        if n > len(self.data) - self.at:
            raise _Refused("bad CBOR: the message ends inside an item")
        chunk = self.data[self.at : self.at + n]
        self.at += n
        return chunk

    def _head(self) -> tuple[int, int, int | None]:
        """Major type, additional information and argument (None for indefinite length)."""
        (initial,) = self._take(1)
        major, info = initial >> 5, initial & 0x1F
        if info < 24:
            return major, info, info
        if info <= 27:
            return major, info, int.from_bytes(self._take(1 << (info - 24)))
        if info == 31 and major in (2, 3, 4, 5, 7):
            return major, info, None
        raise _Refused(f"bad CBOR: reserved additional information {info} at byte {self.at - 1}")

    def _item(self, depth: int) -> Any:
        if depth > MAX_DEPTH:
            raise _Refused(f"nested deeper than {MAX_DEPTH} levels")
        major, info, arg = self._head()
        if major == 0 and arg is not None:
            return arg
        if major == 1 and arg is not None:
            return -1 - arg
        if major == 3:
            return self._text(arg)
        if major == 4:
            return [self._item(depth + 1) for _ in self._count(arg, 1)]
        if major == 5:
            result = {}
            for _ in self._count(arg, 2):
                key = self._item(depth + 1)
                if not isinstance(key, str):
                    raise _Refused(f"CBOR map keys must be text, got {_kind(key)}")
                result[key] = self._item(depth + 1)
            return result
        if major == 7:
            return self._simple(info, arg)
        if major == 2:
            self._bytes(arg)
            return _Unaccepted("CBOR byte strings are not accepted")
        if major == 6:
            self._item(depth + 1)  # read past what the tag holds
            return _Unaccepted(f"CBOR tags are not accepted (tag {arg})")
        raise _Refused("bad CBOR: unexpected break")

    def _count(self, arg: int | None, size: int) -> Any:
        """Iterate over the items of an array (size 1) or map (size 2): a definite count, or up to a break."""
        if arg is not None:
            if arg * size > len(self.data) - self.at:  # every item takes at least one byte
                raise _Refused("bad CBOR: the message ends inside an item")
            yield from range(arg)
            return
        while True:
            if self.at < len(self.data) and self.data[self.at] == 0xFF:
                self.at += 1
                return
            yield None

    def _bytes(self, arg: int | None, major: int = 2) -> bytes:
        """A byte (major 2) or text (major 3) string's bytes: definite, or definite chunks up to a break."""
        if arg is not None:
            return self._take(arg)
        chunks = []
        while True:
            chunk_major, _, length = self._head()
            if chunk_major == 7 and length is None:
                return b"".join(chunks)
            if chunk_major != major or length is None:
                raise _Refused("bad CBOR: an indefinite string holds something other than definite chunks")
            chunks.append(self._take(length))

    def _text(self, arg: int | None) -> str:
        raw = self._bytes(arg, 3)
        try:
            return raw.decode()
        except UnicodeDecodeError as exc:
            raise _Refused("bad CBOR: text is not UTF-8") from exc

    def _simple(self, info: int, arg: int | None) -> Any:
        if info in self._SIMPLE:
            return self._SIMPLE[info]
        if info in self._FLOATS:
            assert arg is not None
            (value,) = struct.unpack(self._FLOATS[info], arg.to_bytes(1 << (info - 24)))
            return value if math.isfinite(value) else _Unaccepted(f"{value!r} is not a finite number")
        if arg is None:
            raise _Refused("bad CBOR: unexpected break")
        return _Unaccepted("CBOR undefined is not accepted" if info == 23 else f"CBOR simple value {arg} is not accepted")


class RejectionLimit:
    """A token bucket for the answers to refused commands: ``rate`` a second,
    ``burst`` at once. Beyond it a refusal is only counted (``dropped``) and
    logged once per burst, so a flood of junk cannot fill the outbox."""

    def __init__(self, rate: float = 10.0, burst: int = 50, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.burst = burst
        self.clock = clock
        self.dropped = 0  # refusals not answered, ever
        self._tokens = float(burst)
        self._refilled = clock()
        self._burst_dropped = 0  # refusals not answered since the last one answered

    def allow(self) -> bool:
        """True when this refusal may be answered; False when it is only counted."""
        now = self.clock()
        self._tokens = min(self.burst, self._tokens + (now - self._refilled) * self.rate)
        self._refilled = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            if self._burst_dropped:
                log.warning("%d refused cloud commands were not answered", self._burst_dropped)
                self._burst_dropped = 0
            return True
        if not self._burst_dropped:
            log.warning("cloud commands refused faster than %g/s: further refusals are counted, not answered", self.rate)
        self._burst_dropped += 1
        self.dropped += 1
        return False


class SeenCommands:
    """The last ``keep`` command messages taken, kept in a small JSON file.

    For an uplink that reads commands from a resource (CoAP Observe), the
    same representation comes again after every re-registration, reconnect
    and restart; a message seen before is not taken again. A message is
    known by its ``id``, or by its bytes when it has none.
    """

    def __init__(self, path: Path, keep: int = 256) -> None:
        self.path = path
        self._seen: deque[str] = deque(maxlen=keep)

    def load(self) -> None:
        """Read the file (blocking; call it in a thread). A damaged file is logged and ignored."""
        try:
            keys = json.loads(self.path.read_text())
        except FileNotFoundError:
            return
        except (OSError, ValueError) as exc:
            log.error("cannot read %s (%s); commands still shown by the cloud may run again", self.path, exc)
            return
        if isinstance(keys, list):
            self._seen.extend(str(key) for key in keys)

    def take(self, payload: bytes | bytearray, raw_id: Any) -> bool:
        """True the first time a message is seen (then ``save``); False for a repeat."""
        key = f"id:{raw_id}" if raw_id is not None else "sha256:" + hashlib.sha256(payload).hexdigest()
        if key in self._seen:
            return False
        self._seen.append(key)
        return True

    def save(self) -> None:
        """Write the file (blocking; call it in a thread), atomically."""
        try:
            write_atomic(self.path, json.dumps(list(self._seen)).encode())
        except OSError as exc:
            log.error("cannot save %s: %s", self.path, exc)
