"""The Zigbee adapter: one zigpy coordinator and the devices joined to it.

zigpy does the Zigbee work (radio library, interview, ZCL, device database
and network backups); this module turns its events into the Hub's devices,
points and readings, and the Hub's commands into cluster commands:

- ``device_initialized``: register the device (points from its clusters,
  see codec.py) and, after a join, bind its clusters to the coordinator,
  configure attribute reporting and read the initial values;
- attribute updates (reports, read results) become one batch of readings per
  loop turn; any packet from a device marks it online; a mains device silent
  for ``silence.ping_after`` is pinged (a Basic cluster read) and marked
  offline after ``silence.failed_pings`` unanswered pings (its problem says
  ``no answer to 2 pings`` from the first one, until it answers); a device
  silent for longer than ``silence.mains`` / ``silence.battery`` is marked
  offline;
- a command the device refuses (a ZCL status other than SUCCESS) or that
  does not reach it is its problem too (``on: device answered FAILURE``),
  until it sends a value again;
- ``device_left`` marks it offline, ``device_removed`` removes it;
- groups (groups.py) are Hub devices whose writes are multicast commands;
  bindings (bindings.py) send a device's commands straight to another device
  or a group; the configuration's ``groups:`` and ``bindings:`` are made true
  at every start and when a device named there joins.

The database (``zigbee.db``) and an open-coordinator-format backup of the
network (``network-backup.json``) live in the adapter's state directory; a
new or wiped radio gets the last backup restored by zigpy on start.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import zigpy.exceptions
import zigpy.types as t
from zigpy.profiles import zha
from zigpy.zcl import Cluster, foundation
from zigpy.zcl.clusters.general import Basic
from zigpy.zcl.clusters.security import IasZone
from zigpy.zcl.helpers import ReportingConfig

from edged.adapter import Adapter, AdapterStats
from edged.adapters.zigbee import bindings, codec, firmware, groups, network_map, quirks, tuya, xiaomi
from edged.adapters.zigbee.bindings import Link, LinkStore
from edged.adapters.zigbee.config import BIND_CLUSTERS, GROUP_ID_MAX, GROUP_NAME_MAX, PERMIT_MAX_SECONDS, ZigbeeConfig
from edged.adapters.zigbee.config import Binding as BindingConfig
from edged.backoff import retry_forever
from edged.errors import AdapterError, CommandError, ConfigError
from edged.files import write_atomic
from edged.hub import Hub
from edged.model import Command, Device, Point, Quality, Reading
from edged.part import counter, gauge

if TYPE_CHECKING:
    from zigpy.application import ControllerApplication
    from zigpy.backups import NetworkBackup
    from zigpy.device import Device as ZigpyDevice
    from zigpy.group import Group

RADIOS: dict[str, str] = {
    "znp": "zigpy_znp.zigbee.application:ControllerApplication",
    "ezsp": "bellows.zigbee.application:ControllerApplication",
    "deconz": "zigpy_deconz.zigbee.application:ControllerApplication",
    "xbee": "zigpy_xbee.zigbee.application:ControllerApplication",
    "zigate": "zigpy_zigate.zigbee.application:ControllerApplication",
    "simulated": "edged.adapters.zigbee.simulator:SimulatedApplication",
}
DATABASE = "zigbee.db"
BACKUP = "network-backup.json"
SIMULATED_NVRAM = "simulated-radio.json"
# zigpy's cluster events that carry a new attribute value: a report, a read
# result, and a value changed by a quirk or by us (IAS zone notifications).
VALUE_EVENTS = ("attribute_report", "attribute_read", "attribute_updated")


def application_class(radio: str) -> type[ControllerApplication]:
    module, _, name = RADIOS[radio].partition(":")
    return getattr(importlib.import_module(module), name)


@dataclass(frozen=True, slots=True)
class Binding:
    """One point of one device, fed by one attribute of one cluster."""

    endpoint_id: int
    map: codec.PointMap
    key: str


@dataclass
class ZigbeeStats(AdapterStats):
    pings: int = counter("edged_adapter_zigbee_pings", "Pings (Basic cluster reads) sent to silent mains devices")
    pings_failed: int = counter("edged_adapter_zigbee_pings_failed", "Pings a device did not answer")
    offline_by_ping: int = counter("edged_adapter_zigbee_offline_by_ping", "Devices marked offline after unanswered pings")
    ota_updates: int = counter("edged_adapter_zigbee_ota_updates", "Firmware updates devices completed")
    ota_failures: int = counter("edged_adapter_zigbee_ota_failures", "Firmware updates that failed")
    ota_progress: dict[str, float] = gauge("edged_adapter_zigbee_ota_progress_percent", "Progress of running firmware updates",
                                           label="device")  # fmt: skip


@dataclass(slots=True)
class _Ping:
    """Where pinging one mains device stands."""

    failures: int = 0  # unanswered pings in a row
    next_at: float = 0.0  # wall-clock time before which it is not pinged again
    in_flight: bool = field(default=False)


class ZigbeeAdapter(Adapter[ZigbeeConfig]):
    config_model = ZigbeeConfig

    def __init__(self, config: ZigbeeConfig, hub: Hub, state_dir: Path) -> None:
        super().__init__(config, hub, state_dir)
        self.app: ControllerApplication | None = None  # set while the network is up
        self.ready = asyncio.Event()  # set while the network is up
        self._pending: list[Reading] = []
        self._flush_scheduled = False
        self._joined: set[t.EUI64] = set()
        self._bindings: dict[t.EUI64, dict[tuple[int, int, str], list[Binding]]] = {}
        self._unsubscribe: dict[t.EUI64, list[Any]] = {}
        self._export_lock = asyncio.Lock()
        self._pings: dict[t.EUI64, _Ping] = {}
        self.links = LinkStore(state_dir / bindings.FILE)
        self.firmware = firmware.FirmwareUpdates(self)
        self.quirks = quirks.Quirks()  # the manufacturer table, read at start
        self.scanned_at: float | None = None  # when zigpy last scanned a router's tables
        self.converged = asyncio.Event()  # set each time groups and bindings were brought to the configuration
        self.pings_total = 0
        self.pings_failed_total = 0
        self.offline_by_ping_total = 0

    async def start(self) -> None:
        try:
            self.quirks = await asyncio.to_thread(quirks.load, self.config.quirks)
        except ConfigError as exc:
            raise AdapterError(str(exc)) from exc
        self.tasks.spawn(retry_forever(f"{self.name}: radio", self._session, self.log, on_failure=self._failed))
        self.tasks.spawn(self._watch_silence(), name=f"{self.name} silence")
        if self.config.ota.auto_update:
            self.tasks.spawn(self.firmware.auto_update(), name=f"{self.name} firmware updates")

    async def stop(self) -> None:
        pass  # the session closes the radio when its task is cancelled

    def stats(self) -> ZigbeeStats:
        fw = self.firmware
        return ZigbeeStats(self.readings_total, self.errors_total, self.reconnects_total,
                           self.pings_total, self.pings_failed_total, self.offline_by_ping_total,
                           fw.updates_total, fw.failures_total, dict(fw.progress))  # fmt: skip

    # -- the radio session -------------------------------------------------

    def zigpy_config(self) -> dict[str, Any]:
        """The configuration handed to zigpy's ``ControllerApplication``."""
        cfg = self.config
        network: dict[str, Any] = {"channels": cfg.network.channels}
        if cfg.network.channel is not None:
            network["channel"] = cfg.network.channel
        if cfg.network.pan_id is not None:
            network["pan_id"] = cfg.network.pan_id
        if cfg.network.extended_pan_id is not None:
            network["extended_pan_id"] = cfg.network.extended_pan_id
        if cfg.network.key is not None:
            network["key"] = list(bytes.fromhex(cfg.network.key.get_secret_value().replace(":", "")))
        result: dict[str, Any] = {
            "database_path": str(self.state_dir / DATABASE),
            "network": network,
            "ota": firmware.zigpy_config(cfg.ota, self.log),
            "backup_enabled": True,
            "backup_period": max(1, round(cfg.backup_interval / 60)),
            "topology_scan_enabled": cfg.topology.scan_interval > 0,
            "topology_scan_period": max(1, round(cfg.topology.scan_interval / 60)),
        }
        if cfg.radio == "simulated":
            sim = cfg.simulation
            result["device"] = {"path": str(self.state_dir / SIMULATED_NVRAM)}
            result["topology_scan_enabled"] = False
            network.setdefault("channel", cfg.network.channels[0])  # no energy scan on air that is not there
            result["simulation"] = {
                "devices": [
                    {"kind": d.kind, "ieee": d.ieee or f"00:0d:6f:00:0e:d9:ed:{i + 1:02x}", "lqi": d.lqi}
                    for i, d in enumerate(sim.devices)
                ],
                "report_interval": sim.report_interval,
            }
        else:
            assert cfg.serial is not None
            result["device"] = {"path": cfg.serial.path, "baudrate": cfg.serial.baudrate}
            if cfg.serial.flow_control is not None:
                result["device"]["flow_control"] = cfg.serial.flow_control
        return result

    async def _session(self) -> None:
        """Start the network, serve it until the radio is lost, always shut down."""
        self.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)  # the database holds the network key
        cls = application_class(self.config.radio)
        try:
            app = await cls.new(self.zigpy_config(), auto_form=True, start_radio=True)
        except (zigpy.exceptions.ZigbeeException, OSError, TimeoutError) as exc:
            raise AdapterError(f"cannot start the {self.config.radio} radio: {exc}") from exc
        lost: asyncio.Future[Exception] = asyncio.get_running_loop().create_future()
        listener = _Listener(self, lost)
        app.add_listener(listener)
        app.backups.add_listener(listener)
        app.topology.add_listener(listener)
        self.app = app
        try:
            info = app.state.network_info
            self.log.info(
                "network up: channel %s, PAN 0x%04X, extended PAN %s, %d devices",
                info.channel, info.pan_id, info.extended_pan_id, len(app.devices) - 1,
            )
            await self._export_backup(app.backups.most_recent_backup())
            for device in list(app.devices.values()):
                if self._is_peer(device) and device.is_initialized:
                    self._register(device, publish_cache=True)
                    if self._recently_seen(device):
                        self.set_online(self.device_id(str(device.ieee)), True)
            for group in list(app.groups.values()):
                self._show_group(group)
            if self.config.permit_join.on_start:
                await app.permit(self.config.permit_join.on_start)
            await self._load_links()
            self.ready.set()
            self.tasks.spawn(self._converge(), name=f"{self.name} groups and bindings")
            exc = await lost
            raise AdapterError(f"lost the {self.config.radio} radio: {exc}") from exc
        finally:
            self.ready.clear()
            self.app = None
            for unsubscribers in self._unsubscribe.values():
                for unsubscribe in unsubscribers:
                    unsubscribe()
            self._unsubscribe.clear()
            await app.shutdown()
            for device in self.hub.adapter_devices(self.name):
                self.set_online(device.id, False)

    def _failed(self, exc: BaseException) -> None:
        self.errors_total += 1
        self.reconnects_total += 1

    async def permit_join(self, seconds: int | None = None) -> int:
        """Let new devices join for ``seconds`` (default from the config); 0 closes joining.

        Returns the seconds granted; raises ``CommandError`` when the radio is
        not up or the duration is outside 0..PERMIT_MAX_SECONDS."""
        seconds = self.config.permit_join.default if seconds is None else seconds
        if not 0 <= seconds <= PERMIT_MAX_SECONDS:
            raise CommandError(f"permit join takes 0..{PERMIT_MAX_SECONDS} seconds, got {seconds}")
        app = self.app
        if app is None:
            raise CommandError("the Zigbee radio is not connected")
        try:
            await app.permit(seconds)
        except (zigpy.exceptions.ZigbeeException, TimeoutError) as exc:
            raise CommandError(f"permit join failed: {exc}") from exc
        self.log.info("joining permitted for %d s", seconds)
        return seconds

    async def remove(self, device_id: str) -> None:
        """Ask a device to leave the network and forget it (its points leave the Hub).

        A device that does not answer the leave request (a dead or absent one)
        is removed all the same; raises ``CommandError`` for a device this
        adapter does not have or while the radio is not up."""
        app = self.app
        if app is None:
            raise CommandError("the Zigbee radio is not connected")
        native = device_id.removeprefix(f"{self.name}/")
        try:
            ieee = t.EUI64.convert(native)
        except ValueError as exc:
            raise CommandError(f"{device_id} is not a device of {self.name}") from exc
        if device_id not in self.hub.devices or ieee not in app.devices or not self._is_peer(app.devices[ieee]):
            raise CommandError(f"{device_id} is not a device of {self.name}")
        try:
            await app.remove(ieee)
        except (zigpy.exceptions.ZigbeeException, TimeoutError) as exc:
            raise CommandError(f"removing {device_id} failed: {exc}") from exc
        self.log.info("%s removed from the network", device_id, extra={"device": device_id})

    async def _export_backup(self, backup: NetworkBackup | None) -> None:
        if backup is None:
            return
        text = json.dumps(backup.as_open_coordinator_json(), indent=2)
        path = self.state_dir / BACKUP
        try:
            async with self._export_lock:
                await asyncio.to_thread(_write_private, path, text)
        except OSError as exc:
            self.errors_total += 1
            self.log.warning("cannot write the network backup to %s: %s", path, exc)

    # -- devices -----------------------------------------------------------

    def _is_peer(self, device: ZigpyDevice) -> bool:
        app = self.app
        return app is not None and device.ieee != app.state.node_info.ieee

    @staticmethod
    def _mains(device: ZigpyDevice) -> bool:
        return device.node_desc is not None and device.node_desc.is_mains_powered

    def _timeout(self, device: ZigpyDevice) -> float:
        return self.config.silence.mains if self._mains(device) else self.config.silence.battery

    def _recently_seen(self, device: ZigpyDevice) -> bool:
        return device.last_seen is not None and time.time() - device.last_seen < self._timeout(device)

    def _register(self, device: ZigpyDevice, *, publish_cache: bool = False) -> None:
        """(Re)build the device's points from its clusters and put it in the Hub.

        With ``publish_cache`` (on resume), publish zigpy's cached values as
        UNCERTAIN readings until the device reports again."""
        bindings: dict[tuple[int, int, str], list[Binding]] = {}
        points: dict[str, Point] = {}
        for unsubscribe in self._unsubscribe.pop(device.ieee, []):
            unsubscribe()
        unsubscribers = []
        first_endpoint: dict[int, int] = {}
        for endpoint in device.non_zdo_endpoints:
            for cluster in endpoint.in_clusters.values():
                maps = codec.point_maps(cluster)
                if not maps:
                    continue
                first = first_endpoint.setdefault(cluster.cluster_id, endpoint.endpoint_id)
                suffix = "" if first == endpoint.endpoint_id else f"_{endpoint.endpoint_id}"
                for pmap in maps:
                    key = pmap.key + suffix
                    bindings.setdefault((endpoint.endpoint_id, cluster.cluster_id, pmap.attribute), []).append(
                        Binding(endpoint.endpoint_id, pmap, key)
                    )
                    points[key] = Point(key, pmap.type, pmap.unit, pmap.writable)
                for extra, value_type in codec.EXTRA_POINTS.get(cluster.cluster_id, []):
                    points[extra + suffix] = Point(extra + suffix, value_type, None, True)
                unsubscribers.extend(cluster.on_event(name, self._attribute_updated) for name in VALUE_EVENTS)
                if cluster.cluster_id == IasZone.cluster_id:
                    unsubscribers.append(_add_listener(cluster, _ZoneListener(cluster)))
        for mapping in self._manufacturer_mappings(device):
            points[mapping.key] = Point(mapping.key, mapping.value_type, mapping.unit, mapping.writable)
        self._bindings[device.ieee] = bindings
        self._unsubscribe[device.ieee] = unsubscribers
        device_id = self.device_id(str(device.ieee))
        known = self.hub.devices.get(device_id)
        self.add_device(
            Device(
                device_id, self.name, known.name if known else None, device.manufacturer, device.model, points,
                online=known.online if known else False, last_seen=device.last_seen,
            )
        )
        if not publish_cache:
            return
        readings = []
        for (ep_id, cluster_id, attribute), binds in bindings.items():
            cluster = device.endpoints[ep_id].in_clusters[cluster_id]
            value = cluster.get(attribute)
            if value is not None:
                readings.extend(self._convert(device_id, cluster, binds, value, Quality.UNCERTAIN))
        self.publish(readings)

    def _device_initialized(self, device: ZigpyDevice) -> None:
        if not self._is_peer(device):
            return
        self._register(device)
        device_id = self.device_id(str(device.ieee))
        self.set_online(device_id, True)
        if device.ieee in self._joined:
            self._joined.discard(device.ieee)
            self.tasks.spawn(self._configure(device), name=f"{self.name} configure {device.ieee}")

    async def _configure(self, device: ZigpyDevice) -> None:
        """Bind, configure reporting and read initial values, cluster by cluster.

        Each step is tried on its own: a device that refuses one keeps the
        rest, and every refusal is logged with the device id. Requests go at
        normal priority, queued behind the radio's concurrency limit (the
        interview that triggered this ran at critical priority)."""
        app = self.app
        if app is None:
            return
        device_id = self.device_id(str(device.ieee))
        report = self.config.reporting
        async with app.request_priority(t.PacketPriority.NORMAL):
            if tuya.wakes_on_basic_read(device.manufacturer):
                await self._wake_tuya(device, device_id)
            for endpoint in device.non_zdo_endpoints:
                for cluster in endpoint.in_clusters.values():
                    maps = codec.point_maps(cluster)
                    if maps:
                        await self._configure_cluster(app, device_id, cluster, maps, report.min_interval, report.max_interval)
        self.log.info("%s configured (%s %s)", device_id, device.manufacturer, device.model, extra={"device": device_id})
        await self._converge(device.ieee)

    async def _wake_tuya(self, device: ZigpyDevice, device_id: str) -> None:
        """Read the Basic attributes a Tuya device waits for before it reports (one request), then,
        for a device with data points, ask for all of them so its values are known at once."""
        endpoint = next((ep for ep in device.non_zdo_endpoints if Basic.cluster_id in ep.in_clusters), None)
        try:
            if endpoint is not None:
                await endpoint.in_clusters[Basic.cluster_id].read_attributes_raw(list(tuya.WAKE_ATTRIBUTES))
            data_points = next((ep for ep in device.non_zdo_endpoints if tuya.CLUSTER_ID in ep.in_clusters), None)
            if data_points is not None:
                tsn = device.application.get_sequence()
                hdr = foundation.ZCLHeader.cluster(tsn, tuya.DATA_QUERY)
                hdr.frame_control = hdr.frame_control.replace(disable_default_response=True)
                await device.request(zha.PROFILE_ID, tuya.CLUSTER_ID, 1, data_points.endpoint_id, tsn, hdr.serialize(),
                                     expect_reply=False)  # fmt: skip
        except (zigpy.exceptions.ZigbeeException, TimeoutError) as exc:
            self.errors_total += 1
            self.log.warning("%s: waking the Tuya device failed: %s", device_id, exc, extra={"device": device_id})

    async def _configure_cluster(
        self, app: ControllerApplication, device_id: str, cluster: Cluster, maps: list[codec.PointMap],
        low: int, high: int,
    ) -> None:
        async def step(what: str, request: Awaitable[Any]) -> None:
            try:
                await request
            except (zigpy.exceptions.ZigbeeException, TimeoutError) as exc:
                self.errors_total += 1
                self.log.warning("%s: %s on %s failed: %s", device_id, what, cluster.ep_attribute, exc,
                                 extra={"device": device_id})

        await step("bind", cluster.bind())
        extra = codec.SCALE_ATTRIBUTES.get(cluster.cluster_id, [])
        if extra:
            await step("reading scale attributes", cluster.read_attributes(extra))
        if cluster.cluster_id == IasZone.cluster_id:
            self._register(cluster.endpoint.device)  # the zone type names the points
            await step("writing the CIE address", cluster.write_attributes({"cie_addr": app.state.node_info.ieee}))
            await step("zone enrollment", cluster.enroll_response(enroll_response_code=IasZone.EnrollResponse.Success, zone_id=0))
        attributes = sorted({m.attribute for m in maps})
        config = {
            cluster.find_attribute(name): ReportingConfig(low, high, max(m.change for m in maps if m.attribute == name))
            for name in attributes
        }
        await step("configuring reporting", cluster.configure_reporting_multiple(config))
        await step("reading values", cluster.read_attributes(attributes))

    # -- readings ----------------------------------------------------------

    def _manufacturer_mappings(self, device: ZigpyDevice) -> list[quirks.Mapping]:
        """The points the manufacturer table gives the device (Tuya data points, Xiaomi tags)."""
        tuya_entry = self.quirks.tuya_for(device.manufacturer, device.model)
        xiaomi_entry = self.quirks.xiaomi_for(device.model)
        return [*(tuya_entry.datapoints if tuya_entry else []), *(xiaomi_entry.tags if xiaomi_entry else [])]

    def _manufacturer_frame(self, device: ZigpyDevice, cluster_id: int, frame: bytes) -> None:
        """Readings from a Tuya data point frame or a Xiaomi tag report, for devices in the table."""
        if cluster_id != tuya.CLUSTER_ID and cluster_id not in xiaomi.ATTRIBUTES:
            return
        if not self._is_peer(device) or device.ieee not in self._bindings:
            return
        device_id = self.device_id(str(device.ieee))
        try:
            values = self._manufacturer_values(device, cluster_id, frame)
        except (ValueError, KeyError, IndexError) as exc:
            self.errors_total += 1
            self.log.warning("%s: cannot decode a manufacturer frame on 0x%04X (%s): %s", device_id, cluster_id,
                             frame.hex(), exc, extra={"device": device_id})  # fmt: skip
            return
        now = time.time()
        self._queue([Reading(device_id, mapping.key, mapping.convert(raw), now, Quality.GOOD) for mapping, raw in values])

    def _manufacturer_values(self, device: ZigpyDevice, cluster_id: int, frame: bytes) -> list[tuple[quirks.Mapping, Any]]:
        if cluster_id == tuya.CLUSTER_ID:
            entry = self.quirks.tuya_for(device.manufacturer, device.model)
            hdr, payload = foundation.ZCLHeader.deserialize(frame)
            if entry is None or hdr.frame_control.frame_type != foundation.FrameType.CLUSTER_COMMAND:
                return []
            if hdr.command_id not in tuya.REPORTS:
                return []
            by_dp = {m.dp: m for m in entry.datapoints}
            return [(by_dp[p.dp], p.value) for p in tuya.parse(payload) if p.dp in by_dp]
        xiaomi_entry = self.quirks.xiaomi_for(device.model)
        tags = xiaomi.tlv(frame) if xiaomi_entry is not None else None
        if xiaomi_entry is None or tags is None:
            return []
        by_tag = {m.tag: m for m in xiaomi_entry.tags}
        return [(by_tag[tag], value) for tag, value in tags.items() if tag in by_tag]

    def _queue(self, readings: list[Reading]) -> None:
        """Add readings to this loop turn's batch."""
        if not readings:
            return
        self._pending.extend(readings)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _attribute_updated(self, event: Any) -> None:
        ieee = t.EUI64.convert(event.device_ieee)
        binds = self._bindings.get(ieee, {}).get((event.endpoint_id, event.cluster_id, event.attribute_name))
        app = self.app
        if not binds or app is None or ieee not in app.devices:
            return
        cluster = app.devices[ieee].endpoints[event.endpoint_id].in_clusters[event.cluster_id]
        self._queue(self._convert(self.device_id(str(ieee)), cluster, binds, event.value, Quality.GOOD))

    def _convert(self, device_id: str, cluster: Cluster, binds: list[Binding], value: Any, quality: Quality) -> list[Reading]:
        now = time.time()
        readings = []
        for bind in binds:
            try:
                readings.append(Reading(device_id, bind.key, bind.map.convert(value, cluster), now, quality))
            except (TypeError, ValueError, ArithmeticError) as exc:
                self.errors_total += 1
                self.log.warning("%s.%s: cannot convert %r: %s", device_id, bind.key, value, exc, extra={"device": device_id})
                readings.append(Reading(device_id, bind.key, None, now, Quality.BAD))
        return readings

    def _flush(self) -> None:
        """Publish every reading gathered during this loop turn as one batch."""
        self._flush_scheduled = False
        batch, self._pending = self._pending, []
        self.publish(batch)

    def _heard(self, device: ZigpyDevice) -> None:
        if self._is_peer(device) and device.ieee in self._bindings:
            ping = self._pings.pop(device.ieee, None)
            device_id = self.device_id(str(device.ieee))
            if ping is not None and ping.failures:
                self.problem(device_id, None)  # it answers again
            self.set_online(device_id, True)

    def _watch_period(self) -> float:
        silence = self.config.silence
        shortest = min(silence.mains, silence.battery, silence.ping_after or silence.mains)
        return min(60.0, max(0.02, shortest / 4))

    async def _watch_silence(self) -> None:
        """Ping silent mains devices; mark offline every device silent for longer than its power source allows."""
        period = self._watch_period()
        while True:
            await asyncio.sleep(period)
            app = self.app
            if app is None:
                continue
            now = time.time()
            for ieee in list(self._bindings):
                device = app.devices.get(ieee)
                if device is None:
                    continue
                if self._ping_due(device, now):
                    self._pings.setdefault(ieee, _Ping()).in_flight = True
                    self.tasks.spawn(self._ping(device, period), name=f"{self.name} ping {ieee}")
                if not self._recently_seen(device):
                    self._mark_offline(device, f"silent for {now - (device.last_seen or 0):.0f} s")

    def _ping_due(self, device: ZigpyDevice, now: float) -> bool:
        after = self.config.silence.ping_after
        if not after or not self._mains(device) or device.last_seen is None or now - device.last_seen < after:
            return False
        ping = self._pings.get(device.ieee)
        return ping is None or (not ping.in_flight and now >= ping.next_at)

    async def _ping(self, device: ZigpyDevice, retry_after: float) -> None:
        """Read the Basic cluster's power source; count an unanswered read, and go offline after enough of them.

        A device that answers is heard (its reply marks it online again);
        one that does not is pinged again one watch period later, and once
        offline, every ``ping_after``."""
        app = self.app
        ping = self._pings.setdefault(device.ieee, _Ping())
        basic = _find_cluster(device, Basic.cluster_id, None)
        self.pings_total += 1
        try:
            if app is None or basic is None:
                raise zigpy.exceptions.ZigbeeException("no Basic cluster to read")
            async with app.request_priority(t.PacketPriority.LOW):
                await basic.read_attributes(["power_source"], allow_cache=False)
        except (zigpy.exceptions.ZigbeeException, TimeoutError, OSError) as exc:
            self.pings_failed_total += 1
            ping.failures += 1
            limit = self.config.silence.failed_pings
            device_id = self.device_id(str(device.ieee))
            self.log.info("%s: ping %d of %d unanswered: %s", device_id, ping.failures, limit, exc,
                          extra={"device": device_id})
            self.problem(device_id, f"no answer to {ping.failures} ping{'s' if ping.failures > 1 else ''}")
            if ping.failures >= limit and self._mark_offline(device, f"{ping.failures} pings unanswered"):
                self.offline_by_ping_total += 1
            offline = ping.failures >= limit
            ping.next_at = time.time() + (self.config.silence.ping_after if offline else retry_after)
        finally:
            ping.in_flight = False

    def _mark_offline(self, device: ZigpyDevice, why: str) -> bool:
        """Mark the device offline (logging why) unless it already is; say whether it was online."""
        device_id = self.device_id(str(device.ieee))
        hub_device = self.hub.devices.get(device_id)
        if hub_device is None or not hub_device.online:
            return False
        self.log.warning("%s offline: %s", device_id, why, extra={"device": device_id})
        self.set_online(device_id, False)
        return True

    # -- commands ----------------------------------------------------------

    async def write(self, command: Command) -> None:
        app = self.app
        if app is None:
            raise CommandError("the Zigbee radio is not connected")
        native = command.device_id.removeprefix(f"{self.name}/")
        group_id = groups.group_id_of(native)
        if group_id is not None:
            await self._write_group(app, group_id, command)
            return
        try:
            device = app.devices[t.EUI64.convert(native)]
        except (KeyError, ValueError) as exc:
            raise CommandError(f"no Zigbee device {native}") from exc
        tuya_entry = self.quirks.tuya_for(device.manufacturer, device.model)
        mapping = next((m for m in tuya_entry.datapoints if m.key == command.key), None) if tuya_entry else None
        if mapping is not None:
            await self._write_datapoint(device, mapping, command)
            return
        base, _, ep_text = command.key.rpartition("_")
        key, endpoint_id = (base, int(ep_text)) if ep_text.isdigit() else (command.key, None)
        if key not in codec.COMMANDS:
            raise CommandError(f"{command.key} cannot be written")
        cluster_id, call = codec.COMMANDS[key]
        cluster = _find_cluster(device, cluster_id, endpoint_id)
        if cluster is None:
            raise CommandError(f"{command.device_id} has no cluster 0x{cluster_id:04X} for {command.key}")
        try:
            response = await call(cluster, command.value)
            codec.check_response(response)
        except (zigpy.exceptions.ZigbeeException, TimeoutError) as exc:
            self.problem(command.device_id, f"{command.key}: {type(exc).__name__}: {exc}")
            raise CommandError(f"{type(exc).__name__}: {exc}") from exc
        except CommandError as exc:
            self.problem(command.device_id, f"{command.key}: {exc}")
            raise

    async def _write_datapoint(self, device: ZigpyDevice, mapping: quirks.Datapoint, command: Command) -> None:
        """A Tuya Set Data frame for one writable data point."""
        if not mapping.writable:
            raise CommandError(f"{command.key} cannot be written")
        try:
            raw = mapping.raw(command.value)
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        kind = tuya.ENUM if mapping.values is not None else tuya.BOOL if mapping.type == "bool" else tuya.VALUE
        endpoint = next((ep for ep in device.non_zdo_endpoints if tuya.CLUSTER_ID in ep.in_clusters), None)
        if endpoint is None:
            raise CommandError(f"{command.device_id} has no Tuya cluster 0xEF00")
        tsn = device.application.get_sequence()
        hdr = foundation.ZCLHeader.cluster(tsn, tuya.SET_DATA)
        hdr.frame_control = hdr.frame_control.replace(disable_default_response=True)
        data = hdr.serialize() + tuya.set_data(tsn, [tuya.Datapoint(mapping.dp, kind, raw)])
        try:
            await device.request(zha.PROFILE_ID, tuya.CLUSTER_ID, 1, endpoint.endpoint_id, tsn, data, expect_reply=False)
        except (zigpy.exceptions.ZigbeeException, TimeoutError) as exc:
            raise CommandError(f"{type(exc).__name__}: {exc}") from exc

    async def _write_group(self, app: ControllerApplication, group_id: int, command: Command) -> None:
        """One multicast frame to every member of the group."""
        group = app.groups.get(group_id)
        if group is None or command.key not in groups.POINTS:
            raise CommandError(f"{command.device_id}.{command.key} cannot be written")
        cluster_id, call = codec.COMMANDS[command.key]
        try:
            response = await call(group.endpoint[cluster_id], command.value)
        except (zigpy.exceptions.ZigbeeException, TimeoutError) as exc:
            raise CommandError(f"{type(exc).__name__}: {exc}") from exc
        codec.check_response(response)

    # -- the network map ---------------------------------------------------

    async def scan_topology(self) -> dict[str, Any]:
        """Scan every router's neighbour and routing tables now, and return the map.

        zigpy spaces its requests (a second or more each) not to crowd the
        network, so a scan takes a few seconds per router."""
        app = self._radio()
        await self._call("the topology scan", app.topology.scan())
        self.scanned_at = time.time()
        return self.network_map()

    def network_map(self) -> dict[str, Any]:
        """The map from the last scan (see network_map.py)."""
        return network_map.build(self._radio(), self.name, self.hub, self.config.topology.weak_lqi, self.scanned_at)

    # -- groups and bindings -----------------------------------------------

    def _radio(self) -> ControllerApplication:
        if self.app is None:
            raise CommandError("the Zigbee radio is not connected")
        return self.app

    def _device_and_endpoint(self, ref: str) -> tuple[ZigpyDevice, int | None]:
        """A joined device from its device id or IEEE address, with the endpoint after a ``/``, if any."""
        app = self._radio()
        native, _, endpoint = ref.removeprefix(f"{self.name}/").partition("/")
        try:
            device = app.devices[t.EUI64.convert(native)]
            endpoint_id = int(endpoint) if endpoint else None
        except (KeyError, ValueError) as exc:
            raise CommandError(f"{ref} is not a device of {self.name}") from exc
        if not self._is_peer(device):
            raise CommandError(f"{ref} is not a device of {self.name}")
        return device, endpoint_id

    def _group(self, ref: str | int) -> Group:
        group = groups.find(self._radio(), self.name, ref)
        if group is None:
            raise CommandError(f"{self.name} has no group {ref!r}")
        return group

    def _show_group(self, group: Group) -> None:
        self.add_device(groups.device(self.name, group, online=True))

    def groups(self) -> list[dict[str, Any]]:
        """Every group with its members, as the status API shows them."""
        app = self._radio()
        return [groups.describe(group, self.name) for group in sorted(app.groups.values(), key=lambda g: g.group_id)]

    def create_group(self, name: str, group_id: int | None = None) -> Group:
        """A new, empty group (the lowest free id unless one is given); it appears in the Hub at once."""
        app = self._radio()
        if not 1 <= len(name) <= GROUP_NAME_MAX:
            raise CommandError(f"a group name has 1..{GROUP_NAME_MAX} characters, got {name!r}")
        if group_id is None:
            group_id = groups.free_id(app)
        if not 1 <= group_id <= GROUP_ID_MAX:
            raise CommandError(f"a group id is 1..0x{GROUP_ID_MAX:04X}, got {group_id}")
        if group_id in app.groups or any(g.name == name for g in app.groups.values()):
            raise CommandError(f"{self.name} already has a group {name!r} or 0x{group_id:04X}")
        group = app.groups.add_group(group_id, name)
        self._show_group(group)
        self.log.info("group 0x%04X %r created", group_id, name)
        return group

    async def delete_group(self, ref: str | int) -> int:
        """Take every member out of the group, then forget it; returns its id."""
        app = self._radio()
        group = self._group(ref)
        for endpoint in list(group.values()):
            await self._call(f"removing {endpoint.device.ieee} from group 0x{group.group_id:04X}",
                             groups.remove(endpoint, group.group_id))  # fmt: skip
        app.groups.pop(group.group_id)
        self.hub.remove_device(self.device_id(groups.native_id(group.group_id)))
        self.log.info("group 0x%04X %r deleted", group.group_id, group.name)
        return group.group_id

    async def add_to_group(self, ref: str | int, device_ref: str) -> Group:
        """Put a device (``<id>`` or ``<id>/<endpoint>``) in the group with the Groups cluster's Add Group."""
        group = self._group(ref)
        device, endpoint_id = self._device_and_endpoint(device_ref)
        endpoint = groups.member_endpoint(device, endpoint_id)
        await self._call(f"adding {device.ieee} to group 0x{group.group_id:04X}", groups.add(endpoint, group.group_id, group.name or ""))
        return group

    async def remove_from_group(self, ref: str | int, device_ref: str) -> Group:
        """Take a device out of the group with the Groups cluster's Remove Group."""
        group = self._group(ref)
        device, endpoint_id = self._device_and_endpoint(device_ref)
        endpoint = groups.member_endpoint(device, endpoint_id)
        await self._call(f"removing {device.ieee} from group 0x{group.group_id:04X}", groups.remove(endpoint, group.group_id))
        return group

    def link(self, source: str, target: str | int, cluster: str | int) -> Link:
        """The binding a user names: a source device (``/endpoint`` optional), a device or group, a cluster."""
        cluster_id = BIND_CLUSTERS.get(cluster) if isinstance(cluster, str) else cluster
        if cluster_id is None:
            raise CommandError(f"expected a cluster among {', '.join(BIND_CLUSTERS)}; got {cluster!r}")
        device, source_ep = self._device_and_endpoint(source)
        source_ep = _binding_endpoint(device, cluster_id, source_ep, sending=True)
        group = groups.find(self._radio(), self.name, target)
        try:
            if group is not None:
                return Link(str(device.ieee), source_ep, cluster_id, group=group.group_id)
            if isinstance(target, int):
                raise CommandError(f"{self.name} has no group {target}")
            target_device, target_ep = self._device_and_endpoint(target)
            target_ep = _binding_endpoint(target_device, cluster_id, target_ep, sending=False)
            return Link(str(device.ieee), source_ep, cluster_id, str(target_device.ieee), target_ep)
        except ValueError as exc:
            raise CommandError(f"cannot bind {source} to {target}: {exc}") from exc

    async def _load_links(self) -> None:
        """Read the record of bindings made; an unreadable one is logged and started afresh."""
        try:
            await asyncio.to_thread(self.links.load)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            self.errors_total += 1
            self.log.warning("cannot read %s (%s): bindings made before are no longer undone when dropped",
                             self.links.path, exc)  # fmt: skip

    async def _save_links(self) -> None:
        """Write the bindings record as it is now. On the loop, not in a thread: the record is a
        few hundred bytes written when bindings change, and two writes in threads could land in
        the wrong order (a staler record last) or outlive a stopped adapter."""
        try:
            self.links.save()
        except OSError as exc:
            self.errors_total += 1
            self.log.warning("cannot write %s: %s", self.links.path, exc)

    async def bind(self, link: Link, origin: bindings.Origin = "operator") -> None:
        """Write the binding into the source device's table and remember it."""
        device, _ = self._device_and_endpoint(link.source)
        await self._call(f"binding {link.source}", bindings.bind(device, link))
        self.links.links[link] = origin
        await self._save_links()
        self.log.info("%s bound: %s", self.device_id(link.source), link.as_json())

    async def unbind(self, link: Link) -> None:
        """Remove the binding from the source device's table and forget it."""
        device, _ = self._device_and_endpoint(link.source)
        await self._call(f"unbinding {link.source}", bindings.unbind(device, link))
        self.links.links.pop(link, None)
        await self._save_links()
        self.log.info("%s unbound: %s", self.device_id(link.source), link.as_json())

    def bindings(self) -> list[dict[str, Any]]:
        """The bindings this adapter made, as the status API shows them."""
        return [{**link.as_json(), "origin": origin} for link, origin in self.links.links.items()]

    async def _call(self, what: str, request: Awaitable[Any]) -> Any:
        try:
            return await request
        except (zigpy.exceptions.ZigbeeException, TimeoutError) as exc:
            raise CommandError(f"{what} failed: {type(exc).__name__}: {exc}") from exc

    async def _converge(self, only: t.EUI64 | None = None) -> None:
        """Make the groups and bindings what the configuration says (for one device, when it has just joined).

        Each step is tried on its own; a device that is absent or refuses is
        logged and counted, and tried again when it next joins or at the next start."""
        app = self.app
        if app is None:
            return
        for declared in self.config.groups:
            group = app.groups.get(declared.id) or app.groups.add_group(declared.id, declared.name)
            self._show_group(group)
            await self._converge_group(app, group, declared.members, only)
        for group_id in self.links.config_groups - {g.id for g in self.config.groups}:
            if group_id in app.groups and only is None:
                await self._try(f"deleting group 0x{group_id:04X}, gone from the configuration", self.delete_group(group_id))
        self.links.config_groups = {g.id for g in self.config.groups}
        await self._converge_bindings(only)
        await self._save_links()
        self.converged.set()

    async def _converge_group(self, app: ControllerApplication, group: Group, members: list[str], only: t.EUI64 | None) -> None:
        wanted: set[tuple[t.EUI64, int]] = set()
        for member in members:
            ieee = t.EUI64.convert(member.partition("/")[0])
            device = app.devices.get(ieee)
            if device is None or not device.is_initialized:
                continue
            try:
                endpoint = groups.member_endpoint(device, int(member.partition("/")[2] or 0) or None)
            except CommandError as exc:
                self._converge_failed(f"group {group.name}", exc)
                continue
            wanted.add(endpoint.unique_id)
            if endpoint.unique_id not in group and only in (None, ieee):
                await self._try(f"adding {member} to group {group.name}", self.add_to_group(group.group_id, member))
        for ieee, endpoint_id in list(group):
            if (ieee, endpoint_id) not in wanted and only in (None, ieee) and ieee in app.devices:
                await self._try(f"removing {ieee}/{endpoint_id} from group {group.name}",
                                self.remove_from_group(group.group_id, f"{ieee}/{endpoint_id}"))  # fmt: skip

    async def _converge_bindings(self, only: t.EUI64 | None) -> None:
        for declared in self.config.bindings:
            source = t.EUI64.convert(declared.source.partition("/")[0])
            target = self._binding_target(declared)
            concerned = {source} | ({t.EUI64.convert(target.partition("/")[0])} if isinstance(target, str) else set())
            if (only is not None and only not in concerned) or self.app is None or source not in self.app.devices:
                continue
            try:
                link = self.link(declared.source, target, declared.cluster)
            except CommandError as exc:
                self._converge_failed(f"binding {declared.source} to {declared.target}", exc)
                continue
            if only is not None or self.links.links.get(link) != "config":
                await self._try(f"binding {declared.source} to {declared.target}", self.bind(link, "config"))
        for link, origin in list(self.links.links.items()):
            if origin == "config" and only is None and not any(self._declares(b, link) for b in self.config.bindings):
                await self._try(f"unbinding {link.source}, gone from the configuration", self.unbind(link))

    def _binding_target(self, declared: BindingConfig) -> str | int:
        group = next((g for g in self.config.groups if g.name == declared.target), None)
        return group.id if group is not None else declared.target

    def _declares(self, declared: BindingConfig, link: Link) -> bool:
        """Whether the configured binding is this link (endpoints aside)."""
        if t.EUI64.convert(declared.source.partition("/")[0]) != t.EUI64.convert(link.source):
            return False
        if BIND_CLUSTERS[declared.cluster] != link.cluster:
            return False
        target = self._binding_target(declared)
        if isinstance(target, int):
            return link.group == target
        return link.target is not None and t.EUI64.convert(target.partition("/")[0]) == t.EUI64.convert(link.target)

    async def _try(self, what: str, step: Awaitable[Any]) -> None:
        try:
            await step
        except CommandError as exc:
            self._converge_failed(what, exc)

    def _converge_failed(self, what: str, exc: Exception) -> None:
        self.errors_total += 1
        self.log.warning("%s: %s", what, exc)


class _Listener:
    """zigpy's listener interface (method names are zigpy's events)."""

    def __init__(self, adapter: ZigbeeAdapter, lost: asyncio.Future[Exception]) -> None:
        self.adapter = adapter
        self.lost = lost

    def device_joined(self, device: ZigpyDevice) -> None:
        self.adapter.log.info("%s joined", device.ieee, extra={"device": self.adapter.device_id(str(device.ieee))})
        self.adapter._joined.add(device.ieee)

    def device_initialized(self, device: ZigpyDevice) -> None:
        try:
            self.adapter._device_initialized(device)
        except Exception:  # zigpy swallows listener errors silently; say what broke
            self.adapter.log.exception("registering %s failed", device.ieee)

    def device_init_failure(self, device: ZigpyDevice) -> None:
        device_id = self.adapter.device_id(str(device.ieee))
        self.adapter.errors_total += 1
        self.adapter.log.warning("%s: interview failed", device_id, extra={"device": device_id})

    def device_left(self, device: ZigpyDevice) -> None:
        device_id = self.adapter.device_id(str(device.ieee))
        self.adapter.log.info("%s left the network", device_id, extra={"device": device_id})
        self.adapter.set_online(device_id, False)

    def device_removed(self, device: ZigpyDevice) -> None:
        for unsubscribe in self.adapter._unsubscribe.pop(device.ieee, []):
            unsubscribe()
        self.adapter._bindings.pop(device.ieee, None)
        self.adapter._pings.pop(device.ieee, None)
        self.adapter.hub.remove_device(self.adapter.device_id(str(device.ieee)))

    def handle_message(self, device: ZigpyDevice, profile: int, cluster: int, src_ep: int, dst_ep: int, message: bytes) -> None:
        self.adapter._heard(device)
        self.adapter._manufacturer_frame(device, cluster, message)

    def connection_lost(self, exc: Exception) -> None:
        if not self.lost.done():
            self.lost.set_result(exc)

    def neighbors_updated(self, ieee: t.EUI64, neighbors: list[Any]) -> None:
        self.adapter.scanned_at = time.time()

    def network_backup_created(self, backup: NetworkBackup) -> None:
        self.adapter.tasks.spawn(self.adapter._export_backup(backup), name="zigbee backup export")


class _ZoneListener:
    """IAS zones send changes as Status Change Notification commands: store them as the attribute."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster

    def cluster_command(self, tsn: int, command_id: int, args: Any) -> None:
        if command_id == IasZone.ClientCommandDefs.status_change_notification.id:
            self.cluster.update_attribute(IasZone.AttributeDefs.zone_status.id, args.zone_status)


def _add_listener(cluster: Cluster, listener: _ZoneListener) -> Any:
    listener_id = cluster.add_listener(listener)
    return lambda: cluster._listeners.pop(listener_id, None)


def _find_cluster(device: ZigpyDevice, cluster_id: int, endpoint_id: int | None) -> Cluster | None:
    for endpoint in device.non_zdo_endpoints:
        if endpoint_id is not None and endpoint.endpoint_id != endpoint_id:
            continue
        if cluster_id in endpoint.in_clusters:
            return endpoint.in_clusters[cluster_id]
    return None


def _binding_endpoint(device: ZigpyDevice, cluster_id: int, endpoint_id: int | None, *, sending: bool) -> int:
    """The endpoint a binding uses: a source sends from a client cluster (or from a server one,
    as a sensor reports), a target takes the command on a server cluster."""
    candidates = [ep for ep in device.non_zdo_endpoints if endpoint_id in (None, ep.endpoint_id)]
    for side in ("out_clusters", "in_clusters") if sending else ("in_clusters",):
        for endpoint in candidates:
            if cluster_id in getattr(endpoint, side):
                return endpoint.endpoint_id
    role = "send" if sending else "take"
    raise CommandError(f"{device.ieee} has no endpoint that can {role} cluster 0x{cluster_id:04X}")


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` (it holds the network key) readable by the owner only, atomically."""
    write_atomic(path, text.encode(), 0o600)
