"""The OPC UA adapter: one asyncua client session per server.

A session reads the server's NamespaceArray, resolves every configured node
once (browse paths in one TranslateBrowsePaths call, writable nodes' DataType
in one Read), then receives subscribed values and reads polled ones:

- Namespaces are looked up by URI at every session (namespaces.py): a node
  configured with a namespace index follows the URI that index had when edged
  first used it, so it is never read or written in another namespace that
  took the index; a namespace the server no longer has makes its points bad.

- Subscriptions run in asyncua's iterator mode. The client's observer is told
  after every Publish response how many notifications it queued, and the
  consumer turns exactly that many into ONE ``list[Reading]`` for the Hub.
- Polled nodes of the same interval are read together in one Read request.
- Events (``events:``) come through one more subscription, filtered by the
  server on event type and Severity; each becomes readings of its events
  device and a ``DeviceEvent`` (for the uplink and rules; at most ``max_rate``
  a second per device, the rest counted), and an alarm's event id can be
  acknowledged or confirmed by command.
- Status codes become ``Quality`` (Good/Uncertain/Bad by the code's top two
  bits); the source timestamp is kept (server timestamp, else arrival time).

Reconnect: asyncua's watchdog probes the server every ``keepalive`` seconds
and a dropped socket is seen at once; either moves the client to
DISCONNECTED, which ends the session. ``retry_forever`` then builds a new
client with backoff and recreates the session and every subscription.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import logging
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from asyncua import Client, ua
from asyncua.client.ua_client import UaClientState
from asyncua.common.events import Event as UaEvent
from asyncua.common.events import get_filter_from_event_type
from asyncua.common.node import Node
from asyncua.common.subscription import DataChangeEvent, OpcEvent, StatusChangeEvent, Subscription
from asyncua.observer import Observer

from edged.adapter import Adapter
from edged.adapters.opcua import codec
from edged.adapters.opcua.address import BrowsePath, NodeAddress, namespace_indexes
from edged.adapters.opcua.budget import EventBudget
from edged.adapters.opcua.config import EVENT_COMMANDS, EVENT_POINTS, EventsConfig, NodeConfig, OpcuaConfig
from edged.adapters.opcua.link import (
    TRANSPORT_ERRORS,
    check_pinned_certificate,
    make_client,
    quiet_expected_disconnects,
)
from edged.adapters.opcua.namespaces import MAP_FILE, NamespaceMap, NamespaceMissing, SessionNamespaces
from edged.backoff import Backoff, retry_forever
from edged.errors import AdapterError, CommandError
from edged.hub import Hub
from edged.model import Command, Device, DeviceEvent, Point, Quality, Reading, Value, ValueType
from edged.tasks import TaskSet

_QUALITY = (Quality.GOOD, Quality.UNCERTAIN, Quality.BAD, Quality.BAD)  # by StatusCode bits 31..30
_CONDITIONS_KEPT = 10_000  # event ids remembered for acknowledge/confirm, newest first out last
_CONDITION_METHODS = {
    "acknowledge": ua.NodeId(ua.ObjectIds.AcknowledgeableConditionType_Acknowledge),
    "confirm": ua.NodeId(ua.ObjectIds.AcknowledgeableConditionType_Confirm),
}
_NO_SUCH_NODE = frozenset({ua.StatusCodes.BadNodeIdUnknown, ua.StatusCodes.BadNodeIdInvalid})


@dataclass(slots=True, eq=False)
class _Binding:
    """One configured node as one point of one device."""

    device_id: str
    spec: NodeConfig
    point: Point
    node: Node | None = None  # set while a session is up and the node resolved
    problem: str | None = None  # why it did not resolve in this session (a write answers with it)
    reason: str | None = None  # the same for the device's problem (``OPC UA BadNodeIdUnknown``)
    vtype: ua.VariantType | None = None  # the node's encoding, for writes
    parent: Node | None = None  # a method's object
    arguments: list[ua.VariantType | None] | None = None  # a method's input argument types


@dataclass(slots=True, eq=False)
class _Feed:
    """A subscription and the bindings behind its client handles."""

    subscription: Subscription
    handles: dict[int, _Binding] = field(default_factory=dict)
    events: dict[int, EventsConfig] = field(default_factory=dict)  # by server handle
    ready: asyncio.Queue[int] = field(default_factory=asyncio.Queue)


class _PublishObserver(Observer):
    """Tells each feed how many notifications one Publish response queued."""

    def __init__(self) -> None:
        self.feeds: list[_Feed] = []

    def observe_request(self, request: Any) -> contextlib.AbstractContextManager[None]:
        return contextlib.nullcontext()

    def on_notification(self, subscription_id: int | None, event_count: int) -> None:
        for feed in self.feeds:
            if feed.subscription.subscription_id == subscription_id:
                feed.ready.put_nowait(event_count)
                return


class OpcuaAdapter(Adapter[OpcuaConfig]):
    config_model = OpcuaConfig

    def __init__(self, config: OpcuaConfig, hub: Hub, state_dir: Path) -> None:
        super().__init__(config, hub, state_dir)
        self._bindings: dict[tuple[str, str], _Binding] = {}
        self._client: Client | None = None  # while a session is up
        self._warned: set[tuple[str, str]] = set()
        self._sessions = 0
        self._namespaces = NamespaceMap(state_dir / MAP_FILE, config.endpoint)
        self._missing: set[tuple[str, str]] = set()  # (device id, namespace) reported missing, while it is
        self._conditions: dict[str, ua.NodeId] = {}  # event id (hex) -> ConditionId, of alarms received
        self._budgets: dict[str, EventBudget] = {}  # events device id -> its device events' rate limit
        self._moved: dict[int, int] = {}  # configured index -> index it was last reported at
        self._noted: BaseException | None = None  # the session failure last told as the problem

    async def start(self) -> None:
        library_log = logging.getLogger("asyncua")
        if library_log.level == logging.NOTSET:
            # asyncua logs every Publish response (with its payload) at INFO; keep its warnings only.
            library_log.setLevel(logging.WARNING)
        quiet_expected_disconnects()
        self._bindings.clear()
        for spec in self.config.devices:
            device_id = self.device_id(spec.id)
            points = {}
            for node in spec.nodes:
                point = Point(node.key, node.type, node.unit, node.commandable, node.name)
                points[node.key] = point
                self._bindings[(device_id, node.key)] = _Binding(device_id, node, point)
            self.add_device(Device(device_id, self.name, spec.name or spec.id, spec.manufacturer, spec.model, points))
        for events in self.config.events:
            points = {key: Point(key, type_) for key, type_ in EVENT_POINTS.items()}
            points |= {key: Point(key, ValueType.STR, writable=True) for key in EVENT_COMMANDS}
            self.add_device(Device(self.device_id(events.device), self.name, events.name or events.device, points=points))
        await asyncio.to_thread(self._namespaces.load)
        if self._namespaces.error is not None:
            self.log.error("%s: nodes named by namespace index are not used", self._namespaces.error)
        backoff = Backoff(initial=self.config.reconnect.initial, maximum=self.config.reconnect.maximum)
        self.tasks.spawn(
            retry_forever(f"{self.name}: {self.config.endpoint}", self._session, self.log, backoff, self._failed),
            name=f"{self.name} session",
        )

    async def stop(self) -> None:
        pass  # the session task closes its client when cancelled

    # -- session ------------------------------------------------------------

    def _failed(self, exc: BaseException) -> None:
        self.errors_total += 1
        if exc is not self._noted:
            self._note_failure(exc)

    def _note_failure(self, exc: BaseException) -> None:
        """A session could not be opened, or ended: the adapter's problem and each device's."""
        self._noted = exc
        reason = self._failure(exc)
        self.connection_problem(reason)
        for device_id in self._device_ids():
            self.problem(device_id, reason)

    def _failure(self, exc: BaseException) -> str:
        endpoint = self.config.endpoint
        if isinstance(exc, AdapterError):
            return str(exc)
        if isinstance(exc, ConnectionRefusedError):
            return f"connection refused by {endpoint}"
        if isinstance(exc, TimeoutError):
            return f"no answer from {endpoint} within {self.config.timeout:g} s"
        if isinstance(exc, OSError) and exc.strerror:
            return f"cannot reach {endpoint}: {exc.strerror}"
        text = str(exc)
        return f"{type(exc).__name__}: {text}" if text else type(exc).__name__

    def health_problems(self) -> list[str]:
        """Why the adapter has no session with its server; empty while it has one."""
        if self._client is not None or self.last_problem is None:
            return []
        return [f"adapter {self.name}: {self.last_problem.reason}"]

    async def _session(self) -> None:
        """Connect, serve values until the connection is lost, always disconnect."""
        client = await self._make_client()
        observer = _PublishObserver()
        client.uaclient.observer = observer
        try:
            try:
                await check_pinned_certificate(self.config.endpoint, self.config.security, self.config.timeout)
                await client.connect(auto_reconnect=False)
            except ua.UaError as exc:
                raise AdapterError(f"cannot open a session with {self.config.endpoint}: {exc}") from exc
            self._sessions += 1
            self.connection_problem(None)
            if self._sessions > 1:
                self.reconnects_total += 1
            self.log.info("connected to %s", self.config.endpoint)
            namespaces = await self._resolve(client)
            feeds = await self._subscribe(client, observer)
            feeds += await self._subscribe_events(client, observer, namespaces)
            self._client = client
            for device_id in self._device_ids():
                self.set_online(device_id, True)
            for binding in self._bindings.values():
                if binding.problem is not None:  # what did not resolve in this session stays the device's problem
                    self.problem(binding.device_id, f"{binding.spec.key}: {binding.reason or binding.problem}", binding.spec.key)
            # A TaskSet, not a TaskGroup: on 3.11 a TaskGroup whose child fails leaves its
            # parent task marked as cancelling, which would read as a stop request below.
            session = TaskSet()
            try:
                session.spawn(self._watch(client), name=f"{self.name} watchdog")
                for feed in feeds:
                    session.spawn(self._consume(feed), name=f"{self.name} subscription")
                for interval, bindings in self._poll_groups().items():
                    session.spawn(self._poll(client, interval, bindings), name=f"{self.name} poll {interval:g}s")
                await session.wait_failure()
            finally:
                await session.close()
        except Exception as exc:
            self._note_failure(exc)  # before the devices go offline: their offline line says why
            raise
        finally:
            self._client = None
            for binding in self._bindings.values():
                binding.node = binding.problem = binding.reason = None
            for device_id in self._device_ids():
                self.set_online(device_id, False)
            await self._disconnect(client)

    def _device_ids(self) -> set[str]:
        return {b.device_id for b in self._bindings.values()} | {self.device_id(e.device) for e in self.config.events}

    async def _make_client(self) -> Client:
        config = self.config
        return await make_client(
            config.endpoint,
            config.security,
            name=self.name,
            timeout=config.timeout,
            keepalive=config.keepalive,
            session_timeout=config.session_timeout,
            username=config.username,
            password=config.password.get_secret_value() if config.password is not None else None,
        )

    async def _disconnect(self, client: Client) -> None:
        try:
            async with asyncio.timeout(self.config.timeout):
                await client.disconnect()
        except Exception as exc:  # noqa: BLE001 - closing must not fail the caller
            self.log.debug("disconnect from %s: %r", self.config.endpoint, exc)
            client.disconnect_socket()
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            # asyncua's task clean-up swallows a CancelledError that hits it; honour the cancel.
            raise asyncio.CancelledError

    async def _watch(self, client: Client) -> None:
        """Return (by raising) when asyncua's watchdog or the socket reports the session dead."""
        async with client.subscribe_state() as states:
            await states.wait_for_state(UaClientState.DISCONNECTED)
        raise AdapterError(f"lost the connection to {self.config.endpoint}")

    async def _resolve(self, client: Client) -> SessionNamespaces:
        """Find every node (browse paths in one call) and the data type of writable ones (one Read)."""
        bindings = list(self._bindings.values())
        namespaces = await self._session_namespaces(client)
        by_path: list[tuple[_Binding, ua.RelativePath]] = []
        missing: dict[tuple[str, str], list[_Binding]] = defaultdict(list)
        for binding in bindings:
            location = binding.spec.location
            try:
                if isinstance(location, BrowsePath):
                    by_path.append((binding, namespaces.relative_path(location)))
                else:
                    binding.node = client.get_node(namespaces.node_id(location))
            except NamespaceMissing as exc:
                missing[(binding.device_id, exc.key)].append(binding)
                binding.problem = f"{binding.spec.address}: {exc.reason}"
                binding.reason = exc.reason
            except (ua.UaError, ValueError) as exc:
                self._node_failed(binding, f"NodeId is not valid: {exc}")
        self._report_namespaces(namespaces, missing)
        if by_path:
            root = ua.NodeId(ua.ObjectIds.RootFolder)
            results = await client.translate_browsepaths(root, [path for _, path in by_path])
            for (binding, _), result in zip(by_path, results, strict=True):
                if result.StatusCode.is_good() and result.Targets:
                    binding.node = client.get_node(result.Targets[0].TargetId)
                else:
                    self._node_failed(binding, f"browse path not found ({result.StatusCode.name})", result.StatusCode)
        for binding in bindings:
            if binding.spec.method and binding.node is not None:
                await self._resolve_method(binding)
        writable = [b for b in bindings if b.spec.writable and not b.spec.method and b.node is not None]
        if writable:
            types = await client.read_attributes([b.node for b in writable], ua.AttributeIds.DataType)
            for binding, data_value in zip(writable, types, strict=True):
                status = data_value.StatusCode
                if status is not None and status.value in _NO_SUCH_NODE:
                    self._node_failed(binding, f"the server has no such node ({status.name})", status)
                    continue
                if status is not None and status.is_good() and data_value.Value:
                    binding.vtype = codec.variant_type(data_value.Value.Value)
                if binding.vtype is None:
                    self.log.warning(
                        "%s (%s): data type %s cannot be written by edged", binding.spec.key, binding.spec.address,
                        data_value.Value.Value if data_value.Value else data_value.StatusCode,
                        extra={"device": binding.device_id},
                    )
        return namespaces

    async def _resolve_method(self, binding: _Binding) -> None:
        """Find a method's object and the types of its input arguments."""
        node = binding.node
        assert node is not None
        binding.parent = binding.arguments = None
        try:
            parent = await node.get_parent()
            try:
                arguments = await (await node.get_child("0:InputArguments")).read_value()
            except ua.UaStatusCodeError:  # no InputArguments property: the method takes none
                arguments = []
        except ua.UaError as exc:
            self._node_failed(binding, f"not a method edged can call: {exc}")
            return
        if parent is None:
            self._node_failed(binding, "the method has no object to be called on")
            return
        binding.parent = parent
        binding.arguments = [codec.variant_type(argument.DataType) for argument in arguments]

    async def _session_namespaces(self, client: Client) -> SessionNamespaces:
        """The server's NamespaceArray now; indexes the configuration uses for the first time are recorded."""
        try:
            array = await client.get_namespace_array()
        except ua.UaError as exc:
            raise AdapterError(f"cannot read the NamespaceArray of {self.config.endpoint}: {exc}") from exc
        if not isinstance(array, list) or not all(isinstance(uri, str) for uri in array):
            raise AdapterError(f"the NamespaceArray of {self.config.endpoint} is not a list of URIs: {array!r}")
        locations: list[NodeAddress | BrowsePath] = [b.spec.location for b in self._bindings.values()]
        for events in self.config.events:
            locations += [events.location, *(NodeAddress.parse(t) for t in events.types)]
        used = namespace_indexes(locations)
        learnt = self._namespaces.learn(array, used)
        if learnt:
            self.log.info(
                "namespace indexes in the configuration mean: %s (kept in %s)",
                ", ".join(f"ns={i} = {array[i]}" for i in learnt), self._namespaces.path,
            )
            try:
                await asyncio.to_thread(self._namespaces.save)
            except OSError as exc:
                self.errors_total += 1
                self.log.warning("cannot keep the namespace map in %s: %s", self._namespaces.path, exc)
        return SessionNamespaces(array, self._namespaces)

    def _report_namespaces(self, namespaces: SessionNamespaces, missing: dict[tuple[str, str], list[_Binding]]) -> None:
        """Log a moved namespace once per move, a missing one once per device while it stays missing."""
        for index, now in sorted(namespaces.moved.items()):
            if self._moved.get(index) != now:
                self._moved[index] = now
                self.log.warning(
                    "namespace %s is now index %d on the server (ns=%d when edged first used it); "
                    "nodes configured with ns=%d follow it",
                    self._namespaces.uris[index], now, index, index,
                )
        for index in [i for i in self._moved if i not in namespaces.moved]:
            del self._moved[index]
        for (device_id, key), bindings in missing.items():
            if (device_id, key) not in self._missing:
                self.log.warning(
                    "%s; its points %s read bad and refuse writes", bindings[0].problem,
                    ", ".join(b.spec.key for b in bindings), extra={"device": device_id},
                )
            now = time.time()
            self.publish([Reading(b.device_id, b.spec.key, None, now, Quality.BAD) for b in bindings])
        self._missing = set(missing)

    def _node_failed(self, binding: _Binding, reason: str, status: ua.StatusCode | None = None) -> None:
        """``binding``'s node cannot be used in this session; ``status`` is the server's answer, when it gave one."""
        binding.node = None
        binding.problem = f"{binding.spec.address}: {reason}"
        binding.reason = f"OPC UA {status.name}" if status is not None else reason
        self.log.warning(
            "%s (%s): %s", binding.spec.key, binding.spec.address, reason, extra={"device": binding.device_id},
        )
        self.publish([Reading(binding.device_id, binding.spec.key, None, time.time(), Quality.BAD)])

    async def _subscribe(self, client: Client, observer: _PublishObserver) -> list[_Feed]:
        """Create one subscription per publishing interval with every subscribed node as a monitored item."""
        settings = self.config.subscription
        groups: dict[float, list[_Binding]] = defaultdict(list)
        for binding in self._bindings.values():
            if binding.spec.poll is None and not binding.spec.method and binding.node is not None:
                groups[binding.spec.publishing_interval or settings.publishing_interval].append(binding)
        feeds = []
        for interval, bindings in groups.items():
            feed = await self._feed(client, observer, interval)
            subscription = feed.subscription
            requests = []
            for handle, binding in enumerate(bindings, start=1):
                feed.handles[handle] = binding
                requests.append(self._monitored_item(binding, handle))
            results = await subscription.create_monitored_items(requests)
            for binding, result in zip(bindings, results, strict=True):
                if isinstance(result, ua.StatusCode):
                    self._node_failed(binding, f"cannot monitor: {result.name}", result)
            feeds.append(feed)
        return feeds

    async def _feed(self, client: Client, observer: _PublishObserver, interval: float) -> _Feed:
        settings = self.config.subscription
        params = ua.CreateSubscriptionParameters(
            RequestedPublishingInterval=interval * 1000,
            RequestedLifetimeCount=settings.lifetime_count,
            RequestedMaxKeepAliveCount=settings.keepalive_count,
            MaxNotificationsPerPublish=settings.max_notifications,
            PublishingEnabled=True,
            Priority=0,
        )
        feed = _Feed(await client.create_subscription(params, queue_maxsize=0))
        observer.feeds.append(feed)
        return feed

    async def _subscribe_events(
        self, client: Client, observer: _PublishObserver, namespaces: SessionNamespaces
    ) -> list[_Feed]:
        """One subscription with an event monitored item per ``events:`` entry."""
        if not self.config.events:
            return []
        feed = await self._feed(client, observer, self.config.subscription.publishing_interval)
        for events in self.config.events:
            device_id = self.device_id(events.device)
            try:
                source = await self._event_source(client, namespaces, events.location)
                types = [client.get_node(namespaces.node_id(NodeAddress.parse(t))) for t in events.types]
                evfilter = await get_filter_from_event_type(types)
                if events.min_severity > 0:
                    evfilter.WhereClause = _with_min_severity(evfilter.WhereClause, events.min_severity)
                handle = await feed.subscription.subscribe_events(source, types, evfilter)
            except (NamespaceMissing, ua.UaError, AdapterError) as exc:
                reason = exc.reason if isinstance(exc, NamespaceMissing) else str(exc)
                self.log.warning(
                    "cannot subscribe to events of %s: %s", events.source, reason,
                    extra={"device": device_id},
                )
                now = time.time()
                self.publish([Reading(device_id, key, None, now, Quality.BAD) for key in EVENT_POINTS])
                continue
            feed.events[handle] = events
        return [feed]

    async def _event_source(
        self, client: Client, namespaces: SessionNamespaces, location: NodeAddress | BrowsePath
    ) -> Node:
        if isinstance(location, NodeAddress):
            return client.get_node(namespaces.node_id(location))
        root = ua.NodeId(ua.ObjectIds.RootFolder)
        (result,) = await client.translate_browsepaths(root, [namespaces.relative_path(location)])
        if not (result.StatusCode.is_good() and result.Targets):
            raise AdapterError(f"browse path not found ({result.StatusCode.name})")
        return client.get_node(result.Targets[0].TargetId)

    def _take_event(self, events: EventsConfig, event: UaEvent, now: float) -> tuple[list[Reading], DeviceEvent | None]:
        """An event as readings of its device (the whole event as JSON, its severity, message and
        active state) and as a device event, unless its device sent too many this second."""
        record = event_record(event)
        if record["severity"] is not None and record["severity"] < events.min_severity:
            return [], None  # a server that ignores the where clause
        condition_id = getattr(event, "NodeId", None)
        if record["event_id"] and isinstance(condition_id, ua.NodeId):
            self._conditions[record["event_id"]] = condition_id
            if len(self._conditions) > _CONDITIONS_KEPT:
                del self._conditions[next(iter(self._conditions))]
        stamp = getattr(event, "Time", None)
        ts = _epoch(stamp) if isinstance(stamp, datetime.datetime) else now
        device_id = self.device_id(events.device)
        readings = [
            Reading(device_id, "event", json.dumps(record), ts),
            Reading(device_id, "severity", record["severity"], ts),
            Reading(device_id, "message", record["message"], ts),
        ]
        if "active" in record:
            readings.append(Reading(device_id, "active", record["active"], ts))
        return readings, self._device_event(device_id, events, record, ts)

    def _device_event(self, device_id: str, events: EventsConfig, record: dict[str, Any], ts: float) -> DeviceEvent | None:
        """The device event ``record`` becomes, or None when its device is over its ``max_rate``."""
        budget = self._budgets.get(device_id)
        if budget is None:
            budget = self._budgets[device_id] = EventBudget(events.max_rate)
        if not budget.take():
            if budget.dropped == 1:
                self.log.warning(
                    "%s: more than %g events a second; the rest are counted and not sent as events", device_id, events.max_rate
                )
            return None
        data = {key: value for key, value in record.items() if key not in ("severity", "message")}
        dropped = budget.held_back()
        if dropped:
            data["dropped"] = dropped
        name = record.get("condition") or record["type"] or "event"
        message = record["message"]
        return DeviceEvent(device_id, str(name), record["severity"] or 0, None if message is None else str(message), data, ts)

    def _monitored_item(self, binding: _Binding, handle: int) -> ua.MonitoredItemCreateRequest:
        spec, settings = binding.spec, self.config.subscription
        sampling = spec.sampling_interval if spec.sampling_interval is not None else settings.sampling_interval
        parameters = ua.MonitoringParameters(
            ClientHandle=handle,
            SamplingInterval=sampling * 1000,
            QueueSize=spec.queue_size or settings.queue_size,
            DiscardOldest=True,
        )
        if spec.deadband is not None:
            parameters.Filter = ua.DataChangeFilter(
                Trigger=ua.DataChangeTrigger.StatusValue,
                DeadbandType=ua.DeadbandType.Absolute if spec.deadband.type == "absolute" else ua.DeadbandType.Percent,
                DeadbandValue=spec.deadband.value,
            )
        assert binding.node is not None
        return ua.MonitoredItemCreateRequest(
            ItemToMonitor=ua.ReadValueId(NodeId=binding.node.nodeid, AttributeId=ua.AttributeIds.Value),
            MonitoringMode=ua.MonitoringMode.Reporting,
            RequestedParameters=parameters,
        )

    async def _consume(self, feed: _Feed) -> None:
        """Turn the notifications of each Publish response into one batch."""
        handles = feed.handles
        subscription = feed.subscription
        while True:
            count = await feed.ready.get()
            now = time.time()
            batch: list[Reading] = []
            device_events: list[DeviceEvent] = []
            for _ in range(count):
                try:
                    event = await anext(subscription)  # queued already: returns without waiting
                except StopAsyncIteration:
                    raise AdapterError("subscription was deleted") from None
                if isinstance(event, DataChangeEvent):
                    item = event.data.monitored_item
                    binding = handles.get(item.ClientHandle)
                    if binding is not None:
                        batch.append(self._reading(binding, item.Value, now))
                elif isinstance(event, OpcEvent):
                    events = feed.events.get(event.event.server_handle or 0)
                    if events is not None:
                        readings, device_event = self._take_event(events, event.event, now)
                        batch += readings
                        if device_event is not None:
                            device_events.append(device_event)
                elif isinstance(event, StatusChangeEvent):
                    status = event.notification.Status
                    if not status.is_good():
                        raise AdapterError(f"subscription ended by the server: {status.name}")
            self.publish(batch)
            for device_event in device_events:  # after the readings, which rules that react to it may read
                self.emit_event(device_event)

    def _poll_groups(self) -> dict[float, list[_Binding]]:
        groups: dict[float, list[_Binding]] = defaultdict(list)
        for binding in self._bindings.values():
            if binding.spec.poll is not None and binding.node is not None:
                groups[binding.spec.poll].append(binding)
        return groups

    async def _poll(self, client: Client, interval: float, bindings: Sequence[_Binding]) -> None:
        """Read ``bindings`` in one Read request every ``interval`` seconds (missed ticks are skipped)."""
        nodes = [b.node for b in bindings]
        loop = asyncio.get_running_loop()
        due = loop.time()
        while True:
            try:
                values = await client.read_attributes(nodes)  # type: ignore[arg-type]
            except ua.UaStatusCodeError as exc:
                now = time.time()
                self.log.warning("read of %d nodes failed: %s", len(bindings), exc)
                self.publish([Reading(b.device_id, b.spec.key, None, now, Quality.BAD) for b in bindings])
                for device_id in {b.device_id for b in bindings}:
                    self.problem(device_id, f"read failed: OPC UA {ua.StatusCode(exc.code).name}")
            except ConnectionError:
                return  # the socket is closed: the watchdog ends the session and logs it, once
            else:
                now = time.time()
                self.publish([self._reading(b, dv, now) for b, dv in zip(bindings, values, strict=True)])
            due += interval
            late = loop.time() - due
            if late > 0:
                due += (late // interval + 1) * interval
            await asyncio.sleep(due - loop.time())

    def _reading(self, binding: _Binding, data_value: ua.DataValue | None, now: float) -> Reading:
        if data_value is None:
            return Reading(binding.device_id, binding.spec.key, None, now, Quality.BAD)
        status = data_value.StatusCode
        quality = _QUALITY[(status.value >> 30) & 3] if status is not None else Quality.GOOD
        stamp = data_value.SourceTimestamp or data_value.ServerTimestamp
        ts = _epoch(stamp) if stamp is not None else now
        value: Value = None
        if quality is not Quality.BAD and data_value.Value is not None:
            raw = data_value.Value.Value
            try:
                value = _convert(raw, binding.point.type)
            except ValueError as exc:
                quality = Quality.BAD
                key = (binding.device_id, binding.spec.key)
                if key not in self._warned:
                    self._warned.add(key)
                    self.log.warning(
                        "%s (%s): %s", binding.spec.key, binding.spec.address, exc,
                        extra={"device": binding.device_id},
                    )
        return Reading(binding.device_id, binding.spec.key, value, ts, quality)

    # -- commands -------------------------------------------------------------

    async def write(self, command: Command) -> None:
        binding = self._bindings.get((command.device_id, command.key))
        if binding is None and command.key in EVENT_COMMANDS:
            await self._answer_condition(command)
            return
        if binding is None:
            raise CommandError(f"no such point {command.device_id}.{command.key}")
        client, node = self._client, binding.node
        if client is None:
            reason = f": {self.last_problem.reason}" if self.last_problem else ""
            raise CommandError(f"not connected to {self.config.endpoint}{reason}")
        if node is None:
            raise CommandError(binding.problem or f"{binding.spec.address} is not available in this session")
        if binding.spec.method:
            await self._call(binding, command)
            return
        if binding.vtype is None:
            raise CommandError(f"the data type of {binding.spec.address} is not one edged can write")
        value = codec.coerce(command.value, binding.vtype)
        data_value = ua.DataValue(ua.Variant(value, binding.vtype))
        try:
            (status,) = await client.uaclient.write_attributes([node.nodeid], [data_value], ua.AttributeIds.Value)
        except ua.UaStatusCodeError as exc:
            raise CommandError(f"the server refused the write: {exc}") from exc
        except TRANSPORT_ERRORS as exc:
            raise CommandError(f"write to {self.config.endpoint} failed: {type(exc).__name__}: {exc}") from exc
        if not status.is_good():
            raise CommandError(f"the server refused the write of {binding.spec.address}: {status.name}")

    async def _answer_condition(self, command: Command) -> None:
        """Acknowledge or confirm the alarm whose event id (hex) the command carries.

        The value is the event id, or JSON ``{"event_id": "...", "comment": "..."}``."""
        text = str(command.value or "").strip()
        comment = ""
        if text.startswith("{"):
            try:
                data = json.loads(text)
                text, comment = str(data["event_id"]), str(data.get("comment", ""))
            except (ValueError, KeyError, TypeError) as exc:
                raise CommandError(f'expected {{"event_id": "<hex>", "comment": "..."}}; got {text!r} ({exc})') from None
        try:
            event_id = bytes.fromhex(text)
        except ValueError:
            raise CommandError(f"expected the event id of an alarm in hex; got {text!r}") from None
        condition_id = self._conditions.get(event_id.hex())
        if condition_id is None:
            raise CommandError(f"no alarm with event id {event_id.hex()} has been received")
        client = self._client
        if client is None:
            raise CommandError(f"not connected to {self.config.endpoint}")
        try:
            await client.get_node(condition_id).call_method(
                _CONDITION_METHODS[command.key],
                ua.Variant(event_id, ua.VariantType.ByteString),
                ua.Variant(ua.LocalizedText(comment), ua.VariantType.LocalizedText),
            )
        except ua.UaStatusCodeError as exc:
            raise CommandError(f"the server refused to {command.key} {condition_id.to_string()}: {exc}") from exc
        except TRANSPORT_ERRORS as exc:
            raise CommandError(f"{command.key} on {self.config.endpoint} failed: {type(exc).__name__}: {exc}") from exc
        self.publish([Reading(command.device_id, command.key, event_id.hex(), time.time())])

    async def _call(self, binding: _Binding, command: Command) -> None:
        """Call a method point's method with the command's value as its argument."""
        assert binding.node is not None and binding.parent is not None and binding.arguments is not None
        if len(binding.arguments) > 1:
            raise CommandError(f"{binding.spec.address} takes {len(binding.arguments)} arguments; edged passes one at most")
        args = []
        if binding.arguments:
            (vtype,) = binding.arguments
            if vtype is None:
                raise CommandError(f"the argument type of {binding.spec.address} is not one edged can pass")
            args.append(ua.Variant(codec.coerce(command.value, vtype), vtype))
        try:
            await binding.parent.call_method(binding.node, *args)
        except ua.UaStatusCodeError as exc:
            raise CommandError(f"the server refused the call of {binding.spec.address}: {exc}") from exc
        except TRANSPORT_ERRORS as exc:
            raise CommandError(f"call to {self.config.endpoint} failed: {type(exc).__name__}: {exc}") from exc
        # The point shows the value it was last called with (outputs are not kept).
        self.publish([Reading(binding.device_id, binding.spec.key, command.value, time.time())])


# Event fields carried by the ``event`` point, by their name in the event (browse path).
_CONDITION_FIELDS = {
    "condition": "ConditionName",
    "active": "ActiveState/Id",
    "acked": "AckedState/Id",
    "confirmed": "ConfirmedState/Id",
    "retain": "Retain",
}


def event_record(event: UaEvent) -> dict[str, Any]:
    """The fields of an event or alarm that edged reports, as JSON-ready values.

    Conditions (Alarms & Conditions) add their ConditionId, name and the Ids of
    their active, acked and confirmed states, where the server sends them."""
    message = getattr(event, "Message", None)
    event_type = getattr(event, "EventType", None)
    stamp = getattr(event, "Time", None)
    event_id = getattr(event, "EventId", None)
    severity = getattr(event, "Severity", None)
    record: dict[str, Any] = {
        "source": getattr(event, "SourceName", None),
        "severity": int(severity) if severity is not None else None,
        "message": getattr(message, "Text", message),
        "type": event_type.to_string() if isinstance(event_type, ua.NodeId) else None,
        "time": stamp.isoformat() if isinstance(stamp, datetime.datetime) else None,
        "event_id": event_id.hex() if isinstance(event_id, bytes) else None,
    }
    condition_id = getattr(event, "NodeId", None)
    if isinstance(condition_id, ua.NodeId):
        record["condition_id"] = condition_id.to_string()
    for key, name in _CONDITION_FIELDS.items():
        value = getattr(event, name, None)
        if value is not None:
            record[key] = getattr(value, "Text", value)
    return record


def _with_min_severity(where: ua.ContentFilter, minimum: int) -> ua.ContentFilter:
    """``where`` (the event type test) AND Severity >= ``minimum``."""
    severity = ua.SimpleAttributeOperand(
        TypeDefinitionId=ua.NodeId(ua.ObjectIds.BaseEventType),
        BrowsePath=[ua.QualifiedName("Severity", 0)],
        AttributeId=ua.AttributeIds.Value,
    )
    at_least = ua.ContentFilterElement(
        FilterOperator=ua.FilterOperator.GreaterThanOrEqual,
        FilterOperands=[severity, ua.LiteralOperand(Value=ua.Variant(minimum, ua.VariantType.UInt16))],
    )
    elements = list(where.Elements)
    for element in elements:  # they move one place down, behind the And
        for operand in element.FilterOperands:
            if isinstance(operand, ua.ElementOperand):
                operand.Index += 1
    both = ua.ContentFilterElement(
        FilterOperator=ua.FilterOperator.And,
        FilterOperands=[ua.ElementOperand(Index=1), ua.ElementOperand(Index=len(elements) + 1)],
    )
    if not elements:
        return ua.ContentFilter(Elements=[at_least])
    return ua.ContentFilter(Elements=[both, *elements, at_least])


def _epoch(stamp: datetime.datetime) -> float:
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=datetime.UTC)
    return stamp.timestamp()


def _convert(raw: object, type_: ValueType) -> Value:
    """An OPC UA value as the point's type; ``ValueError`` if it is none."""
    if type_ is ValueType.STR and not isinstance(raw, str):
        text = getattr(raw, "Text", None)  # LocalizedText
        if text is not None:
            return text
        if isinstance(raw, datetime.datetime):
            return raw.isoformat()
        if isinstance(raw, (list, tuple)):  # an array: JSON text, so it travels and compares as one value
            return json.dumps(raw, default=str)
        if isinstance(raw, Iterable) or raw is None:
            raise ValueError(f"expected str, got {type(raw).__name__} {raw!r}")
        return str(raw)
    return type_.coerce(raw)
