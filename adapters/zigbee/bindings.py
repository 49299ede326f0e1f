"""Direct bindings: a device's cluster sends its commands straight to another device or a group.

A wall switch bound to a lamp switches it with no gateway in the loop: the
binding lives in the switch's own binding table, written with a ZDO Bind
request. ``Link`` is one such entry, a value that cannot name a bad one;
``LinkStore`` is the adapter's record of the links it made (``bindings.json``
in its state directory), each marked as coming from the configuration or
from an operator, so that a link dropped from the configuration is undone
at the next start and one made with ``edged zigbee bind`` is kept.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import zigpy.types as t
import zigpy.zdo.types as zdo_t

from edged.errors import CommandError
from edged.files import write_atomic

if TYPE_CHECKING:
    from zigpy.device import Device as ZigpyDevice

Origin = Literal["config", "operator"]
FILE = "bindings.json"


@dataclass(frozen=True, slots=True)
class Link:
    """``cluster`` of endpoint ``source_ep`` of ``source`` bound to an endpoint of a device, or to a group."""

    source: str  # IEEE address, as zigpy prints it
    source_ep: int
    cluster: int
    target: str | None = None  # IEEE address of the target device ...
    target_ep: int | None = None
    group: int | None = None  # ... or the target group

    def __post_init__(self) -> None:
        t.EUI64.convert(self.source)
        if not 1 <= self.source_ep <= 240 or not 0 <= self.cluster <= 0xFFFF:
            raise ValueError(f"bad endpoint {self.source_ep} or cluster {self.cluster}")
        if (self.group is None) == (self.target is None):
            raise ValueError("a binding goes to a device or to a group, not both or neither")
        if self.target is not None:
            t.EUI64.convert(self.target)
            if self.target_ep is None or not 1 <= self.target_ep <= 240:
                raise ValueError(f"bad target endpoint {self.target_ep}")

    def address(self) -> zdo_t.MultiAddress:
        """The binding's destination as the ZDO Bind request carries it."""
        if self.group is not None:
            return zdo_t.MultiAddress(addrmode=0x01, nwk=self.group)
        return zdo_t.MultiAddress(addrmode=0x03, ieee=t.EUI64.convert(self.target), endpoint=self.target_ep)

    def as_json(self) -> dict[str, Any]:
        return {k: v for k, v in (
            ("source", self.source), ("source_ep", self.source_ep), ("cluster", self.cluster),
            ("target", self.target), ("target_ep", self.target_ep), ("group", self.group),
        ) if v is not None}  # fmt: skip

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Link:
        return cls(data["source"], data["source_ep"], data["cluster"], data.get("target"), data.get("target_ep"),
                   data.get("group"))  # fmt: skip


async def bind(device: ZigpyDevice, link: Link) -> None:
    """Send the ZDO Bind request to the source device; raise ``CommandError`` unless it answers SUCCESS."""
    await _request(device, link, bind=True)


async def unbind(device: ZigpyDevice, link: Link) -> None:
    """Send the ZDO Unbind request; a binding the device does not have counts as removed."""
    await _request(device, link, bind=False)


async def _request(device: ZigpyDevice, link: Link, *, bind: bool) -> None:
    request = device.zdo.Bind_req if bind else device.zdo.Unbind_req
    status, *_ = await request(t.EUI64.convert(link.source), link.source_ep, link.cluster, link.address())
    if status == zdo_t.Status.SUCCESS or (not bind and status == zdo_t.Status.NO_ENTRY):
        return
    raise CommandError(f"{link.source} refused to {'bind' if bind else 'unbind'}: {zdo_t.Status(status).name}")


class LinkStore:
    """The links this adapter made, with where each came from, and the groups the configuration
    declared at the last start, kept in ``bindings.json``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.links: dict[Link, Origin] = {}
        self.config_groups: set[int] = set()

    def load(self) -> None:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return
        self.links = {Link.from_json(e["link"]): e["origin"] for e in data.get("links", [])}
        self.config_groups = set(data.get("config_groups", []))

    def save(self) -> None:
        data = {
            "links": [{"link": link.as_json(), "origin": origin} for link, origin in self.links.items()],
            "config_groups": sorted(self.config_groups),
        }
        write_atomic(self.path, json.dumps(data, indent=2).encode(), 0o600)
