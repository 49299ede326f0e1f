"""What every uplink transport offers the uplink service, and where each one lives.

A ``Link`` is built once per uplink from its config and a ``LinkContext``
(what it may need of the gateway), and then connected again and again: each
``connect()`` is one connection to the cloud, closed when the block ends,
whatever happened. While connected, the service sends each outbox row with
``send`` (concurrently, up to ``inflight`` at once) and executes what
``commands()`` yields. Anything else a transport does while connected (Home
Assistant discovery over MQTT, recognising a command a CoAP resource shows
again) happens inside the link.

Links are found by the ``type:`` of the ``uplink:`` section and, for MQTT,
its ``profile:`` (the shape of the messages), in ``LINKS``; a transport's
module is imported only when a configuration uses it.
"""

from __future__ import annotations

import importlib
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from edged.model import Command
from edged.uplink.commands import GatewayRequest, Rejected

if TYPE_CHECKING:
    from edged.hub import Hub
    from edged.outbox import Row

__all__ = ["LINKS", "GatewayRequest", "Link", "LinkContext", "Rejected", "link_class"]

# type or type/profile -> the link class, as "module:attribute"
LINKS: dict[str, str] = {
    "mqtt": "edged.uplink.mqtt:MqttLink",
    "mqtt/sparkplug_b": "edged.uplink.sparkplug:SparkplugLink",
    "mqtt/thingsboard": "edged.uplink.thingsboard:ThingsboardLink",
    "coap": "edged.uplink.coap:CoapLink",
}


@dataclass(frozen=True)
class LinkContext:
    """What a link may need of the gateway besides its own config."""

    gateway_id: str
    state_dir: Path  # where a link keeps what must outlive a restart
    hub: Hub  # the devices, and their joins, leaves and status changes
    changed: Callable[[], None] = field(default=lambda: None)  # call when a figure of the link changed


class Link(Protocol):
    """One uplink transport. ``send`` and ``commands`` are used only while connected."""

    commands_repeated: int  # commands the cloud showed again and that were not taken twice, ever

    def connect(self) -> AbstractAsyncContextManager[None]:
        """Connect to the cloud for the length of the block; always close. ``UplinkError`` if it cannot."""
        ...

    async def send(self, row: Row) -> None:
        """Deliver one outbox row; return once the cloud acknowledged it. ``Refused`` when the
        cloud said no to it; ``UplinkError`` when the connection failed."""
        ...

    async def publish_state(self, payload: bytes) -> bool:
        """Keep the gateway's state digest (JSON) where the cloud reads it; False when this
        link has no place for one."""
        ...

    def commands(self) -> AsyncIterator[Command | GatewayRequest | Rejected]:
        """Every cloud command message as it comes, until the connection fails (``UplinkError``);
        a message to the gateway itself (edged.fleet) as a ``GatewayRequest``.
        A link that takes no commands yields nothing and waits."""
        ...


def link_class(type_: str, profile: str = "edged") -> Callable[[Any, LinkContext], Link]:
    """The link class of an ``uplink:`` section's ``type`` and ``profile``, built as ``cls(config, context)``."""
    module, _, attribute = LINKS[type_ if profile == "edged" else f"{type_}/{profile}"].partition(":")
    return getattr(importlib.import_module(module), attribute)  # type: ignore[no-any-return]
