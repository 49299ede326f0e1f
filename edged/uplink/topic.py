"""MQTT's rules for the strings edged sends to a broker: topic names (to
publish to), topic filters (to subscribe to) and the client identifier
(MQTT 3.1.1 §1.5.3, §3.1.3.1 and §4.7; MQTT 5 §1.5.4 and §4.7).

A broker may close the connection on a string it does not accept (mosquitto
does, for a control character), so they are checked with the configuration.
Each function returns the string or raises ``ValueError`` saying what is wrong.

Only the standard library is imported here.
"""

from __future__ import annotations

import re

MAX_BYTES = 65535  # an MQTT string's length is a two-byte number

# NUL, control characters, surrogates (no UTF-8 for them) and Unicode non-characters.
_NOT_ALLOWED = re.compile(
    "[\x00-\x1f\x7f-\x9f\ud800-\udfff\ufdd0-\ufdef"
    + "".join(f"{chr(plane << 16 | 0xFFFE)}{chr(plane << 16 | 0xFFFF)}" for plane in range(17))
    + "]"
)


def mqtt_string(text: str) -> str:
    """``text`` as MQTT carries it: 1 to 65535 bytes of UTF-8 that brokers accept."""
    if not text:
        raise ValueError("cannot be empty:")
    bad = _NOT_ALLOWED.search(text)
    if bad:
        code = ord(bad.group())
        name = " (NUL)" if code == 0 else " (not UTF-8)" if 0xD800 <= code <= 0xDFFF else ""
        raise ValueError(f"cannot contain the character U+{code:04X}{name}: MQTT brokers refuse it")
    size = len(text.encode("utf-8"))
    if size > MAX_BYTES:
        raise ValueError(f"is {size} bytes long in UTF-8; MQTT allows at most {MAX_BYTES}:")
    return text


def topic_name(text: str) -> str:
    """A topic to publish to: an MQTT string without the wildcards ``+`` and ``#``."""
    mqtt_string(text)
    if "+" in text or "#" in text:
        raise ValueError("a topic to publish to cannot contain the wildcards + or #")
    return text


def topic_filter(text: str) -> str:
    """A topic to subscribe to: ``+`` stands for one whole level, ``#`` for the last ones."""
    mqtt_string(text)
    levels = text.split("/")
    for index, level in enumerate(levels):
        if ("+" in level and level != "+") or ("#" in level and level != "#"):
            raise ValueError(f"a wildcard + or # must be a whole level (between /); level {index + 1} is {level!r}")
        if level == "#" and index != len(levels) - 1:
            raise ValueError("the wildcard # must be the last level")
    return text


def matches(filter_: str, topic: str) -> bool:
    """Whether a subscription to ``filter_`` receives what is published to ``topic``."""
    if topic.startswith("$") and filter_[:1] in ("+", "#"):
        return False  # wildcards at the start do not reach the broker's own $ topics
    wanted, levels = filter_.split("/"), topic.split("/")
    for index, level in enumerate(wanted):
        if level == "#":
            return True
        if index >= len(levels) or level not in ("+", levels[index]):
            return False
    return len(wanted) == len(levels)
