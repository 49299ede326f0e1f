"""Xiaomi/Aqara reports: values packed as tags in one manufacturer attribute.

Older Xiaomi and Aqara devices send, every hour or so, a Report Attributes
frame on the Basic cluster (0x0000) whose attribute 0xFF01 is a character
string holding tag/value pairs; newer ones use attribute 0x00F7 (an octet
string) of cluster 0xFCC0. Each pair is a tag (1 byte) then a ZCL typed
value (type byte, then the value): tag 0x01 is the battery voltage in mV,
tags 0x64.. carry the device's measurements, which ones depending on the
model (quirks.yaml says which).
"""

from __future__ import annotations

from zigpy.zcl import foundation

BASIC, LUMI = 0x0000, 0xFCC0
ATTRIBUTES = {BASIC: 0xFF01, LUMI: 0x00F7}
STRINGS = (0x41, 0x42)  # octet string, character string: a length byte, then the bytes


def tlv(frame: bytes) -> dict[int, int | float | bool] | None:
    """The tags of a Report Attributes (or Read Attributes response) frame on 0x0000/0xFCC0, if it has them.

    ``frame`` is the whole ZCL frame; None when it is not such a report.
    ``ValueError`` when it is one but cut short or malformed."""
    hdr, rest = foundation.ZCLHeader.deserialize(frame)
    if hdr.frame_control.frame_type != foundation.FrameType.GLOBAL_COMMAND:
        return None
    if hdr.command_id == foundation.GeneralCommand.Report_Attributes:
        return _find(rest, with_status=False)
    if hdr.command_id == foundation.GeneralCommand.Read_Attributes_rsp:
        return _find(rest, with_status=True)
    return None


def _find(records: bytes, *, with_status: bool) -> dict[int, int | float | bool] | None:
    while len(records) >= 3:
        attribute = int.from_bytes(records[:2], "little")
        records = records[2:]
        if with_status:
            status, records = records[0], records[1:]
            if status != foundation.Status.SUCCESS:
                continue
        kind = records[0]
        if kind in STRINGS:
            length = records[1]
            value, records = records[2 : 2 + length], records[2 + length :]
            if attribute in ATTRIBUTES.values():
                return parse(bytes(value))
        else:
            _skipped, records = foundation.TypeValue.deserialize(records)
    return None


def parse(data: bytes) -> dict[int, int | float | bool]:
    """Tag -> value of a packed 0xFF01/0x00F7 string."""
    tags: dict[int, int | float | bool] = {}
    while data:
        tag = data[0]
        typed, data = foundation.TypeValue.deserialize(data[1:])
        value = typed.value
        tags[tag] = value if isinstance(value, bool | float) else int(value)
    return tags
