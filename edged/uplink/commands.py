"""Cloud commands, whatever the uplink: parsing a command message, and
remembering which ones were already taken.

A command is an object ``{"id": "c1", "device": "sim/relay", "point": "on",
"value": true}`` (``id`` optional). ``parse_command`` turns a message into a
``Command`` or into the reason it is not one; the uplink service executes
the first and answers the second with a ``rejected`` result.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import deque
from pathlib import Path
from typing import Any, Literal

from edged.files import write_atomic
from edged.model import Command, Origin

log = logging.getLogger(__name__)

Parsed = tuple[Command | None, str | None, Any]  # (command, why it is not one, the message's id)


def parse_command(payload: bytes | bytearray, encoding: Literal["json", "cbor"] = "json") -> Parsed:
    """Return ``(command, None, id)`` or ``(None, reason, id)`` for a command message."""
    try:
        data = _decode(payload, encoding)
    except (ValueError, TypeError) as exc:
        return None, f"bad {encoding.upper()}: {exc}", None
    if not isinstance(data, dict):
        return None, "expected an object with device, point and value", None
    raw_id = data.get("id")
    missing = [k for k in ("device", "point", "value") if k not in data]
    if missing:
        return None, f"missing {', '.join(missing)}", raw_id
    unknown = set(data) - {"id", "device", "point", "value"}
    if unknown:
        return None, f"unknown key {sorted(map(str, unknown))[0]!r}", raw_id
    if not isinstance(data["device"], str) or not isinstance(data["point"], str):
        return None, "device and point must be strings", raw_id
    if isinstance(data["value"], (dict, list)):
        return None, "value must be a bool, number, string or null", raw_id
    fields: dict[str, Any] = {"origin": Origin.CLOUD}
    if raw_id is not None:
        fields["id"] = str(raw_id)
    return Command(data["device"], data["point"], data["value"], **fields), None, raw_id


def _decode(payload: bytes | bytearray, encoding: Literal["json", "cbor"]) -> Any:
    if encoding == "json":
        return json.loads(payload)
    import cbor2  # the coap extra

    try:
        return cbor2.loads(payload)
    except cbor2.CBORDecodeError as exc:
        raise ValueError(str(exc)) from exc


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
