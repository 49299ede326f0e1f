"""A simulated Zigbee radio at zigpy's own seam.

``SimulatedApplication`` is a zigpy ``ControllerApplication`` whose radio is a
few in-process ``SimulatedNode`` objects instead of a USB stick. Everything
above ``send_packet`` / ``packet_received`` is zigpy's real code: joining,
the ZDO interview, the ZCL request/response matching, the device database
and network backups. Each node answers ZDO requests (node, active endpoint and
simple descriptors, bind, leave) and ZCL frames (read/write attributes,
configure reporting, On/Off, Level and Color commands) from its real
endpoint/cluster descriptors, and sends attribute reports.

The radio's NVRAM (network settings and keys) is a JSON file, the path
configured as the serial port, so a restart finds the same network; deleting
it is a radio swap that zigpy restores from its last backup.

Nodes join while joining is permitted. Every ``report_interval`` the
joined nodes' measured values move a little (someone walks by the motion
sensor, the plug's meter counts on) and each node reports the attributes
reporting was configured for: that is what ``edged demo`` shows.
Tests drive them directly:
``app.node("lamp").set(OnOff.cluster_id, "on_off", 1)`` reports a change,
``node.leave()`` announces a leave, ``node.silent = True`` stops it talking,
``app.node("remote").press(OnOff.cluster_id, "toggle")`` sends a remote's
command straight to the devices or group it is bound to. Lamps and plugs
keep group memberships (Groups cluster) and every node keeps the bindings
it was asked for (ZDO Bind/Unbind), as real ones do.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import voluptuous as vol
import zigpy.application
import zigpy.config as zconf
import zigpy.device
import zigpy.exceptions
import zigpy.types as t
import zigpy.zdo.types as zdo_t
from zigpy.backups import NetworkBackup
from zigpy.ota.image import parse_ota_image
from zigpy.profiles import zha
from zigpy.zcl import Cluster, foundation
from zigpy.zcl.clusters.general import Basic, Groups, Identify, LevelControl, OnOff, Ota, PowerConfiguration
from zigpy.zcl.clusters.homeautomation import ElectricalMeasurement
from zigpy.zcl.clusters.lighting import Color
from zigpy.zcl.clusters.measurement import (
    IlluminanceMeasurement,
    OccupancySensing,
    PressureMeasurement,
    RelativeHumidity,
    TemperatureMeasurement,
)
from zigpy.zcl.clusters.security import IasZone
from zigpy.zcl.clusters.smartenergy import Metering

from edged.adapters.zigbee import tuya
from edged.files import write_atomic

LOGGER = logging.getLogger(__name__)

COORDINATOR_IEEE = "00:12:4b:00:ed:9e:d0:01"
CONF_SIMULATION = "simulation"

# Node descriptors as real devices send them (logical type, MAC capability flags).
END_DEVICE = zdo_t.NodeDescriptor.deserialize(bytes.fromhex("024080021052520000" + "2c5200" + "00"))[0]
ROUTER = zdo_t.NodeDescriptor.deserialize(bytes.fromhex("01408e021052520000" + "2c5200" + "00"))[0]
COORDINATOR = zdo_t.NodeDescriptor.deserialize(bytes.fromhex("00408f021052520000" + "2c5200" + "00"))[0]

MAINS, BATTERY = 0x01, 0x03  # Basic.power_source
PLUG_FIRMWARE = 0x00010005  # the simulated plug's firmware version before any update
PLUG_IMAGE_TYPE = 0x0101
OTA_BLOCK = 64  # the largest image block a simulated device asks for


@dataclass(frozen=True, slots=True)
class Kind:
    """What a simulated device is: descriptors, Basic strings and initial raw values."""

    model: str
    node: zdo_t.NodeDescriptor
    device_type: int
    clusters: tuple[type[Cluster], ...]
    values: dict[tuple[int, str], Any]
    manufacturer: str = "edged simulated"
    out_clusters: tuple[type[Cluster], ...] = ()  # client clusters: what a remote sends to its bindings
    image_type: int = 0x0000  # the firmware image type it asks for in OTA queries
    manufacturer_clusters: tuple[int, ...] = ()  # server clusters zigpy has no class for (Tuya's 0xEF00)
    datapoints: dict[int, tuple[int, int]] = field(default_factory=dict)  # Tuya dp -> (type, value)
    xiaomi_tags: dict[int, tuple[int, int]] = field(default_factory=dict)  # Xiaomi tag -> (ZCL type, value)


def _lux(lx: float) -> int:
    return round(10000 * math.log10(lx) + 1)


KINDS: dict[str, Kind] = {
    "climate": Kind(
        "climate sensor", END_DEVICE, zha.DeviceType.TEMPERATURE_SENSOR,
        (Basic, PowerConfiguration, Identify, TemperatureMeasurement, RelativeHumidity, PressureMeasurement),
        {
            (TemperatureMeasurement.cluster_id, "measured_value"): 2150,
            (RelativeHumidity.cluster_id, "measured_value"): 4520,
            (PressureMeasurement.cluster_id, "measured_value"): 1013,
            (PowerConfiguration.cluster_id, "battery_percentage_remaining"): 180,
        },
    ),
    "motion": Kind(
        "motion sensor", END_DEVICE, zha.DeviceType.IAS_ZONE,
        (Basic, PowerConfiguration, Identify, OccupancySensing, IlluminanceMeasurement, IasZone),
        {
            (OccupancySensing.cluster_id, "occupancy"): 0,
            (IlluminanceMeasurement.cluster_id, "measured_value"): _lux(120),
            (IasZone.cluster_id, "zone_type"): IasZone.ZoneType.Motion_Sensor,
            (IasZone.cluster_id, "zone_status"): 0,
            (PowerConfiguration.cluster_id, "battery_percentage_remaining"): 200,
        },
    ),
    "contact": Kind(
        "door sensor", END_DEVICE, zha.DeviceType.IAS_ZONE, (Basic, PowerConfiguration, IasZone),
        {
            (IasZone.cluster_id, "zone_type"): IasZone.ZoneType.Contact_Switch,
            (IasZone.cluster_id, "zone_status"): 0,
            (PowerConfiguration.cluster_id, "battery_percentage_remaining"): 160,
        },
    ),
    "water_leak": Kind(
        "water leak sensor", END_DEVICE, zha.DeviceType.IAS_ZONE, (Basic, PowerConfiguration, IasZone),
        {
            (IasZone.cluster_id, "zone_type"): IasZone.ZoneType.Water_Sensor,
            (IasZone.cluster_id, "zone_status"): 0,
            (PowerConfiguration.cluster_id, "battery_percentage_remaining"): 190,
        },
    ),
    "lamp": Kind(
        "tunable white lamp", ROUTER, zha.DeviceType.COLOR_TEMPERATURE_LIGHT,
        (Basic, Identify, Groups, OnOff, LevelControl, Color),
        {
            (OnOff.cluster_id, "on_off"): 0,
            (LevelControl.cluster_id, "current_level"): 254,
            (Color.cluster_id, "color_temperature"): 370,
        },
    ),
    "plug": Kind(
        "smart plug", ROUTER, zha.DeviceType.SMART_PLUG, (Basic, Identify, Groups, OnOff, ElectricalMeasurement, Metering),
        {
            (OnOff.cluster_id, "on_off"): 0,
            (ElectricalMeasurement.cluster_id, "active_power"): 0,
            (ElectricalMeasurement.cluster_id, "rms_voltage"): 2301,
            (ElectricalMeasurement.cluster_id, "rms_current"): 0,
            (ElectricalMeasurement.cluster_id, "ac_power_multiplier"): 1,
            (ElectricalMeasurement.cluster_id, "ac_power_divisor"): 10,
            (ElectricalMeasurement.cluster_id, "ac_voltage_multiplier"): 1,
            (ElectricalMeasurement.cluster_id, "ac_voltage_divisor"): 10,
            (ElectricalMeasurement.cluster_id, "ac_current_multiplier"): 1,
            (ElectricalMeasurement.cluster_id, "ac_current_divisor"): 1000,
            (Metering.cluster_id, "current_summ_delivered"): 123456,
            (Metering.cluster_id, "instantaneous_demand"): 0,
            (Metering.cluster_id, "multiplier"): 1,
            (Metering.cluster_id, "divisor"): 1000,
            (Metering.cluster_id, "unit_of_measure"): 0,
            (Ota.cluster_id, "current_file_version"): PLUG_FIRMWARE,
        },
        out_clusters=(Ota,),
        image_type=PLUG_IMAGE_TYPE,
    ),
    "remote": Kind(
        "dimmer remote", END_DEVICE, zha.DeviceType.DIMMER_SWITCH, (Basic, PowerConfiguration, Identify),
        {(PowerConfiguration.cluster_id, "battery_percentage_remaining"): 170},
        out_clusters=(OnOff, LevelControl),
    ),
    "tuya_climate": Kind(
        "TS0601", END_DEVICE, zha.DeviceType.TEMPERATURE_SENSOR, (Basic,), {}, "_TZE200_bjawzodf",
        manufacturer_clusters=(tuya.CLUSTER_ID,),
        datapoints={1: (tuya.VALUE, 215), 2: (tuya.VALUE, 452), 4: (tuya.VALUE, 90)},
    ),
    "tuya_trv": Kind(
        "TS0601", END_DEVICE, zha.DeviceType.THERMOSTAT, (Basic,), {}, "_TZE204_rtrmfadk",
        manufacturer_clusters=(tuya.CLUSTER_ID,),
        datapoints={1: (tuya.ENUM, 0), 2: (tuya.VALUE, 200), 3: (tuya.VALUE, 195), 6: (tuya.ENUM, 1), 13: (tuya.VALUE, 80)},
    ),
    "aqara_weather": Kind(
        "lumi.weather", END_DEVICE, zha.DeviceType.TEMPERATURE_SENSOR, (Basic, Identify), {}, "LUMI",
        xiaomi_tags={0x01: (0x21, 3005), 0x64: (0x29, 2263), 0x65: (0x21, 4878), 0x66: (0x2B, 100560)},
    ),
    "coordinator": Kind("coordinator", COORDINATOR, zha.DeviceType.IAS_CONTROL, (Basic,), {}, "edged"),
}

PLUG_LOAD_W = 60.0
ENDPOINT = 1
TABLE_PAGE = 3  # neighbour and routing table entries per response, as small stacks send them


@dataclass(eq=False)
class SimulatedNode:
    """One device in radio range of the simulated coordinator."""

    app: SimulatedApplication
    ieee: t.EUI64
    kind: str
    nwk: int = 0xFFFE  # until it joins
    lqi: int = 200  # how well it and the coordinator hear each other (0..255)
    joined: bool = False
    silent: bool = False
    values: dict[tuple[int, str], Any] = field(default_factory=dict)
    reporting: dict[int, set[int]] = field(default_factory=dict)  # cluster id -> configured attribute ids
    commands: list[tuple[int, str, dict[str, Any]]] = field(default_factory=list)
    reads: list[tuple[int, list[str]]] = field(default_factory=list)  # (cluster id, attribute names) asked for
    groups: set[int] = field(default_factory=set)  # group ids this node is a member of
    binds: list[tuple[int, int, zdo_t.MultiAddress]] = field(default_factory=list)  # (endpoint, cluster, destination)
    zdo_requests: list[tuple[zdo_t.ZDOCmd, tuple[Any, ...]]] = field(default_factory=list)
    ota_requests: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # OTA commands it sent
    refuse: dict[str, foundation.Status] = field(default_factory=dict)  # cluster command name -> status it answers
    ota_status: foundation.Status | None = None  # ends every firmware update with this status, whatever the image
    datapoints: dict[int, tuple[int, int]] = field(default_factory=dict)  # Tuya dp -> (type, value)
    tuya_writes: list[tuya.Datapoint] = field(default_factory=list)  # Set Data it was sent
    # A Tuya device sends no data point until the gateway has read tuya.WAKE_ATTRIBUTES in one request.
    awake: bool = False
    _download: bytearray | None = None  # the image being downloaded
    _offer: dict[str, Any] = field(default_factory=dict)  # what the server offered
    _tsn: int = 0

    def __post_init__(self) -> None:
        spec = KINDS[self.kind]
        self.spec = spec
        self.values = dict(spec.values)
        mains = spec.node.is_mains_powered
        self.values[(Basic.cluster_id, "manufacturer")] = spec.manufacturer
        self.values[(Basic.cluster_id, "model")] = spec.model
        self.values[(Basic.cluster_id, "power_source")] = MAINS if mains else BATTERY
        self.clusters = {c.cluster_id: c for c in spec.clusters}
        self.datapoints = dict(spec.datapoints)
        self.xiaomi_tags = dict(spec.xiaomi_tags)
        if Ota in spec.out_clusters:  # the OTA client keeps its version attributes
            self.clusters[Ota.cluster_id] = Ota
        self._energy_wh = float(self.values.get((Metering.cluster_id, "current_summ_delivered"), 0))

    # -- what tests and the report loop do with a node ---------------------

    def set(self, cluster_id: int, attribute: str, raw: Any, *, report: bool = True) -> None:
        """Change a raw attribute value, and report it as the device would."""
        self.values[(cluster_id, attribute)] = raw
        if report:
            self.report(cluster_id, [attribute])

    def report(self, cluster_id: int, attributes: list[str]) -> None:
        """Send a Report Attributes frame (IAS zone status as a status change notification)."""
        cls = self.clusters[cluster_id]
        if cluster_id == IasZone.cluster_id:  # zone changes travel as notifications, not reports
            schema = cls.ClientCommandDefs.status_change_notification.schema
            payload = schema(zone_status=self.values[(cluster_id, "zone_status")], extended_status=0, zone_id=0, delay=0)
            hdr = foundation.ZCLHeader.cluster(self._next_tsn(), 0x00, direction=foundation.Direction.Server_to_Client)
            self._send_zcl(cluster_id, hdr, payload)
            return
        records = [foundation.Attribute(cls.attributes_by_name[a].id, self._type_value(cls, a)) for a in attributes]
        schema = foundation.GENERAL_COMMANDS[foundation.GeneralCommand.Report_Attributes].schema
        hdr = foundation.ZCLHeader.general(
            self._next_tsn(), foundation.GeneralCommand.Report_Attributes, direction=foundation.Direction.Server_to_Client
        )
        self._send_zcl(cluster_id, hdr, schema(attribute_reports=records))

    def press(self, cluster_id: int, command: str, **args: Any) -> None:
        """Send a cluster command (a remote's button) to every destination bound for that cluster."""
        cls = next(c for c in self.spec.out_clusters if c.cluster_id == cluster_id)
        definition = getattr(cls.ServerCommandDefs, command)
        for endpoint, bound_cluster, dst in self.binds:
            if bound_cluster != cluster_id:
                continue
            hdr = foundation.ZCLHeader.cluster(self._next_tsn(), definition.id)
            hdr.frame_control = hdr.frame_control.replace(disable_default_response=True)
            data = hdr.serialize() + definition.schema(**args).serialize()
            if dst.addrmode == 0x01:  # a group
                address = t.AddrModeAddress(addr_mode=t.AddrMode.Group, address=dst.nwk)
                dst_ep = 0xFF
            else:
                address = t.AddrModeAddress(addr_mode=t.AddrMode.IEEE, address=dst.ieee)
                dst_ep = dst.endpoint
            packet = self._packet(cluster_id, data, src_ep=endpoint, dst_ep=dst_ep, profile=zha.PROFILE_ID, tsn=hdr.tsn)
            self.app.route(self, packet.replace(dst=address))

    def tuya_report(self, *dps: int) -> None:
        """Send a Tuya Data Report (0xEF00 command 0x02) with these data points (all when none named);
        nothing until the device has been woken."""
        if not self.awake:
            return
        chosen = dps or tuple(self.datapoints)
        points = [tuya.Datapoint(dp, *self.datapoints[dp]) for dp in chosen]
        hdr = foundation.ZCLHeader.cluster(self._next_tsn(), 0x02, direction=foundation.Direction.Server_to_Client)
        data = hdr.serialize() + tuya.set_data(self._tsn, points)
        self._send_raw(tuya.CLUSTER_ID, data, hdr.tsn)

    def xiaomi_report(self) -> None:
        """Send the hourly Xiaomi report: Basic attribute 0xFF01 (manufacturer 0x115F) packing every tag."""
        packed = b"".join(bytes([tag]) + _typed(kind, value) for tag, (kind, value) in self.xiaomi_tags.items())
        hdr = foundation.ZCLHeader.general(self._next_tsn(), foundation.GeneralCommand.Report_Attributes, manufacturer=0x115F,
                                           direction=foundation.Direction.Server_to_Client)  # fmt: skip
        hdr.frame_control = hdr.frame_control.replace(disable_default_response=True)
        record = (0xFF01).to_bytes(2, "little") + bytes([0x42, len(packed)]) + packed
        self._send_raw(Basic.cluster_id, hdr.serialize() + record, hdr.tsn)

    def _send_raw(self, cluster_id: int, data: bytes, tsn: int) -> None:
        if self.silent or not self.joined:
            return
        self.app.deliver(self._packet(cluster_id, data, src_ep=ENDPOINT, dst_ep=1, profile=zha.PROFILE_ID, tsn=tsn))

    def _tuya(self, hdr: foundation.ZCLHeader, payload: bytes) -> None:
        """Set Data: take the new values and report them back, as Tuya devices do; Data Query:
        report every data point."""
        if hdr.command_id == tuya.DATA_QUERY:
            self.tuya_report()
            return
        if hdr.command_id != tuya.SET_DATA:
            return
        points = tuya.parse(payload)
        self.tuya_writes.extend(points)
        for point in points:
            self.datapoints[point.dp] = (point.type, int(point.value))  # type: ignore[arg-type]
        self.tuya_report(*(p.dp for p in points))

    def leave(self) -> None:
        """The device leaves the network (and announces it)."""
        self.joined = False
        self.reporting.clear()
        self.app.handle_leave(self.nwk, self.ieee)

    def reportable(self) -> dict[int, list[str]]:
        """Cluster id -> attribute names this node currently reports."""
        result: dict[int, list[str]] = {}
        for (cluster_id, name), _value in self.values.items():
            cls = self.clusters.get(cluster_id)
            if cls is None or cluster_id == Basic.cluster_id:
                continue
            if cls.attributes_by_name[name].id in self.reporting.get(cluster_id, ()):
                result.setdefault(cluster_id, []).append(name)
        return result

    def step(self, rng: random.Random, dt: float) -> None:
        """Let measured values move a little, as real ones do."""
        v = self.values
        if self.kind == "climate":
            key = (TemperatureMeasurement.cluster_id, "measured_value")
            v[key] = max(1500, min(3000, v[key] + rng.randint(-15, 15)))
            key = (RelativeHumidity.cluster_id, "measured_value")
            v[key] = max(2000, min(8000, v[key] + rng.randint(-40, 40)))
        elif self.kind == "motion":
            if rng.random() < 0.2:  # someone walks by, or leaves
                moving = not v[(OccupancySensing.cluster_id, "occupancy")]
                v[(OccupancySensing.cluster_id, "occupancy")] = int(moving)
                v[(IasZone.cluster_id, "zone_status")] = int(IasZone.ZoneStatus.Alarm_1) if moving else 0
            key = (IlluminanceMeasurement.cluster_id, "measured_value")
            v[key] = max(1, min(40000, v[key] + rng.randint(-300, 300)))
        elif self.kind == "tuya_climate":
            kind, tenths = self.datapoints[1]
            self.datapoints[1] = (kind, max(150, min(300, tenths + rng.randint(-2, 2))))
        elif self.kind == "aqara_weather":
            kind, hundredths = self.xiaomi_tags[0x64]
            self.xiaomi_tags[0x64] = (kind, max(1500, min(3000, hundredths + rng.randint(-15, 15))))
        elif self.kind == "plug":
            self._plug_load()
            power_w = v[(ElectricalMeasurement.cluster_id, "active_power")] / 10
            self._energy_wh += power_w * dt / 3600
            v[(Metering.cluster_id, "current_summ_delivered")] = round(self._energy_wh)  # Wh: the divisor is 1000

    # -- the radio side ----------------------------------------------------

    def _next_tsn(self) -> int:
        self._tsn = (self._tsn + 1) & 0xFF
        return self._tsn

    def _type_value(self, cls: type[Cluster], name: str) -> foundation.TypeValue:
        attr = cls.attributes_by_name[name]
        zcl_type = attr.zcl_type if attr.zcl_type is not None else foundation.DataType.from_python_type(attr.type).type_id
        return foundation.TypeValue(type=zcl_type, value=attr.type(self.values[(cls.cluster_id, name)]))

    def _packet(self, cluster_id: int, data: bytes, *, src_ep: int, dst_ep: int, profile: int, tsn: int) -> t.ZigbeePacket:
        return t.ZigbeePacket(
            src=t.AddrModeAddress(addr_mode=t.AddrMode.NWK, address=self.nwk),
            src_ep=src_ep,
            dst=t.AddrModeAddress(addr_mode=t.AddrMode.NWK, address=0x0000),
            dst_ep=dst_ep,
            tsn=tsn,
            profile_id=profile,
            cluster_id=cluster_id,
            data=t.SerializableBytes(data),
            lqi=self.lqi,  # as the coordinator hears it
            rssi=-50,
        )

    def _send_zcl(self, cluster_id: int, hdr: foundation.ZCLHeader, payload: Any) -> None:
        if self.silent or not self.joined:
            return
        data = hdr.serialize() + payload.serialize()
        self.app.deliver(self._packet(cluster_id, data, src_ep=ENDPOINT, dst_ep=1, profile=zha.PROFILE_ID, tsn=hdr.tsn))

    def _send_zdo(self, command: zdo_t.ZDOCmd, tsn: int, *args: Any) -> None:
        _, schema = zdo_t.CLUSTERS[command]
        data = zdo_t.ZDOHeader(command, tsn).serialize() + t.serialize(args, schema)
        self.app.deliver(self._packet(command, data, src_ep=0, dst_ep=0, profile=0, tsn=tsn))

    def receive(self, packet: t.ZigbeePacket) -> None:
        """Handle a packet the coordinator sent to this node."""
        if packet.dst_ep == 0:
            self._zdo(packet)
        else:
            self._zcl(packet)

    def _zdo(self, packet: t.ZigbeePacket) -> None:
        hdr, rest = zdo_t.ZDOHeader.deserialize(packet.cluster_id, packet.data.serialize())
        args, _ = t.deserialize(rest, zdo_t.CLUSTERS[packet.cluster_id][1])
        cmd, ok = zdo_t.ZDOCmd, zdo_t.Status.SUCCESS
        if hdr.command_id == cmd.Node_Desc_req:
            self._send_zdo(cmd.Node_Desc_rsp, hdr.tsn, ok, self.nwk, self.spec.node)
        elif hdr.command_id == cmd.Active_EP_req:
            self._send_zdo(cmd.Active_EP_rsp, hdr.tsn, ok, self.nwk, [ENDPOINT])
        elif hdr.command_id == cmd.Simple_Desc_req:
            descriptor = zdo_t.SizePrefixedSimpleDescriptor(
                endpoint=ENDPOINT,
                profile=zha.PROFILE_ID,
                device_type=self.spec.device_type,
                device_version=1,
                input_clusters=[c.cluster_id for c in self.spec.clusters] + list(self.spec.manufacturer_clusters),
                output_clusters=[c.cluster_id for c in self.spec.out_clusters],
            )
            self._send_zdo(cmd.Simple_Desc_rsp, hdr.tsn, ok, self.nwk, descriptor)
        elif hdr.command_id in (cmd.Bind_req, cmd.Unbind_req):
            self.zdo_requests.append((hdr.command_id, tuple(args)))
            _src, endpoint, cluster_id, dst = args
            entry = (endpoint, cluster_id, dst)
            if hdr.command_id == cmd.Bind_req and entry not in self.binds:
                self.binds.append(entry)
                self._send_zdo(cmd.Bind_rsp, hdr.tsn, ok)
            elif hdr.command_id == cmd.Unbind_req and entry in self.binds:
                self.binds.remove(entry)
                self._send_zdo(cmd.Unbind_rsp, hdr.tsn, ok)
            elif hdr.command_id == cmd.Bind_req:
                self._send_zdo(cmd.Bind_rsp, hdr.tsn, ok)  # already bound
            else:
                self._send_zdo(cmd.Unbind_rsp, hdr.tsn, zdo_t.Status.NO_ENTRY)
        elif hdr.command_id == cmd.Mgmt_Lqi_req:
            table = self.app.neighbors(self)
            start = args[0]
            page = zdo_t.Neighbors(Entries=len(table), StartIndex=start, NeighborTableList=table[start : start + TABLE_PAGE])
            self._send_zdo(cmd.Mgmt_Lqi_rsp, hdr.tsn, ok, page)
        elif hdr.command_id == cmd.Mgmt_Rtg_req:
            table = self.app.routes(self)
            start = args[0]
            page = zdo_t.Routes(Entries=len(table), StartIndex=start, RoutingTableList=table[start : start + TABLE_PAGE])
            self._send_zdo(cmd.Mgmt_Rtg_rsp, hdr.tsn, ok, page)
        elif hdr.command_id == cmd.Mgmt_Permit_Joining_req:
            self._send_zdo(cmd.Mgmt_Permit_Joining_rsp, hdr.tsn, ok)
        elif hdr.command_id == cmd.Mgmt_Leave_req:
            self._send_zdo(cmd.Mgmt_Leave_rsp, hdr.tsn, ok)
            asyncio.get_running_loop().call_soon(self.leave)
        else:
            LOGGER.debug("simulated %s ignores ZDO %s %r", self.ieee, hdr.command_id, args)

    def _zcl(self, packet: t.ZigbeePacket) -> None:
        cls = self.clusters.get(packet.cluster_id)
        hdr, rest = foundation.ZCLHeader.deserialize(packet.data.serialize())
        if packet.cluster_id in self.spec.manufacturer_clusters:
            self._tuya(hdr, rest)
            return
        if cls is None:
            self._default_response(packet.cluster_id, hdr, foundation.Status.UNSUPPORTED_CLUSTER)
            return
        if hdr.frame_control.frame_type == foundation.FrameType.GLOBAL_COMMAND:
            self._general(cls, hdr, rest)
            return
        if cls is Ota:
            self._ota(hdr, rest)
            return
        command = cls.server_commands.get(hdr.command_id)
        if command is None:
            self._default_response(cls.cluster_id, hdr, foundation.Status.UNSUP_CLUSTER_COMMAND)
            return
        args, _ = command.schema.deserialize(rest)
        self.commands.append((cls.cluster_id, command.name, args.as_dict()))
        if command.name in self.refuse:
            self._default_response(cls.cluster_id, hdr, self.refuse[command.name])
            return
        if cls.cluster_id == Groups.cluster_id:
            self._group_command(hdr, command.name, args.as_dict())
            return
        changed = self._apply(cls.cluster_id, command.name, args.as_dict())
        if packet.dst.addr_mode != t.AddrMode.Group:  # a multicast is never answered
            self._default_response(cls.cluster_id, hdr, foundation.Status.SUCCESS)
        for cluster_id, names in changed.items():
            self.report(cluster_id, names)

    def _general(self, cls: type[Cluster], hdr: foundation.ZCLHeader, rest: bytes) -> None:
        general = foundation.GeneralCommand
        command = foundation.GENERAL_COMMANDS.get(hdr.command_id)
        if command is None:
            self._default_response(cls.cluster_id, hdr, foundation.Status.UNSUP_GENERAL_COMMAND)
            return
        args, _ = command.schema.deserialize(rest)
        # a client cluster (the OTA client) answers from the client side
        client = cls in self.spec.out_clusters
        direction = foundation.Direction.Client_to_Server if client else foundation.Direction.Server_to_Client
        reply = foundation.ZCLHeader.general(hdr.tsn, 0, direction=direction)
        if hdr.command_id == general.Read_Attributes:
            if cls is Basic and tuple(args.attribute_ids) == tuya.WAKE_ATTRIBUTES:
                self.awake = True
            records = []
            self.reads.append((cls.cluster_id, [getattr(cls.attributes.get(a), "name", str(a)) for a in args.attribute_ids]))
            for attrid in args.attribute_ids:
                attr = cls.attributes.get(attrid)
                if attr is None or (cls.cluster_id, attr.name) not in self.values:
                    records.append(foundation.ReadAttributeRecord(attrid, foundation.Status.UNSUPPORTED_ATTRIBUTE))
                else:
                    records.append(
                        foundation.ReadAttributeRecord(attrid, foundation.Status.SUCCESS, self._type_value(cls, attr.name))
                    )
            reply.command_id = general.Read_Attributes_rsp
            self._send_zcl(cls.cluster_id, reply, command_schema(general.Read_Attributes_rsp)(status_records=records))
        elif hdr.command_id == general.Write_Attributes:
            for record in args.attributes:
                attr = cls.attributes.get(record.attrid)
                if attr is not None:
                    self.values[(cls.cluster_id, attr.name)] = record.value.value
            reply.command_id = general.Write_Attributes_rsp
            ok = [foundation.WriteAttributesStatusRecord(foundation.Status.SUCCESS)]
            self._send_zcl(cls.cluster_id, reply, command_schema(general.Write_Attributes_rsp)(status_records=ok))
        elif hdr.command_id == general.Configure_Reporting:
            self.reporting.setdefault(cls.cluster_id, set()).update(r.attrid for r in args.config_records)
            reply.command_id = general.Configure_Reporting_rsp
            ok = [foundation.ConfigureReportingResponseRecord(status=foundation.Status.SUCCESS)]
            self._send_zcl(cls.cluster_id, reply, command_schema(general.Configure_Reporting_rsp)(status_records=ok))
        else:
            self._default_response(cls.cluster_id, hdr, foundation.Status.UNSUP_GENERAL_COMMAND)

    # -- the OTA client: query next image, block requests, upgrade end -------

    def _ota(self, hdr: foundation.ZCLHeader, rest: bytes) -> None:
        """Take an OTA server command and answer as a device's OTA client does."""
        command = Ota.client_commands.get(hdr.command_id)
        if command is None:
            return
        args, _ = command.schema.deserialize(rest)
        version = self.values[(Ota.cluster_id, "current_file_version")]
        manufacturer = self.spec.node.manufacturer_code
        if command.name == "image_notify":
            self._ota_send("query_next_image", field_control=0, manufacturer_code=manufacturer,
                           image_type=self.spec.image_type, current_file_version=version)  # fmt: skip
        elif command.name == "query_next_image_response" and args.status == foundation.Status.SUCCESS:
            self._offer = {"manufacturer_code": args.manufacturer_code, "image_type": args.image_type,
                           "file_version": args.file_version, "image_size": args.image_size}  # fmt: skip
            self._download = bytearray()
            self._ota_next_block()
        elif command.name == "image_block_response" and self._download is not None:
            if args.status != foundation.Status.SUCCESS or args.file_offset != len(self._download):
                self._download = None
                return
            self._download += args.image_data
            if len(self._download) < self._offer["image_size"]:
                self._ota_next_block()
            else:
                self._ota_verify()
        elif command.name == "upgrade_end_response" and self._offer:
            # the device reboots into the new firmware
            self.values[(Ota.cluster_id, "current_file_version")] = self._offer["file_version"]
            self._offer, self._download = {}, None

    def _ota_next_block(self) -> None:
        offer = self._offer
        self._ota_send("image_block", field_control=0, manufacturer_code=offer["manufacturer_code"],
                       image_type=offer["image_type"], file_version=offer["file_version"],
                       file_offset=len(self._download or b""), maximum_data_size=OTA_BLOCK)  # fmt: skip

    def _ota_verify(self) -> None:
        """Check the downloaded image as a bootloader would (its header matches the offer), then end the upgrade."""
        offer = self._offer
        try:
            image, _ = parse_ota_image(bytes(self._download or b""))
            header = image.header
            good = (header.manufacturer_id, header.image_type, header.file_version) == (
                offer["manufacturer_code"], offer["image_type"], offer["file_version"],
            )
        except (ValueError, KeyError):
            good = False
        status = foundation.Status.SUCCESS if good else foundation.Status.INVALID_IMAGE
        if self.ota_status is not None:
            status, good = self.ota_status, self.ota_status == foundation.Status.SUCCESS
        self._ota_send("upgrade_end", status=status, manufacturer_code=offer["manufacturer_code"],
                       image_type=offer["image_type"], file_version=offer["file_version"])  # fmt: skip
        if not good:
            self._offer, self._download = {}, None

    def _ota_send(self, command: str, **args: Any) -> None:
        self.ota_requests.append((command, args))
        definition = getattr(Ota.ServerCommandDefs, command)
        hdr = foundation.ZCLHeader.cluster(self._next_tsn(), definition.id)
        hdr.frame_control = hdr.frame_control.replace(disable_default_response=True)
        self._send_zcl(Ota.cluster_id, hdr, definition.schema(**args))

    def _group_command(self, hdr: foundation.ZCLHeader, command: str, args: dict[str, Any]) -> None:
        """Groups cluster: add, remove and membership, answered with their own responses."""
        responses = Groups.ClientCommandDefs
        status = foundation.Status.SUCCESS
        if command == "add":
            status = foundation.Status.DUPLICATE_EXISTS if args["group_id"] in self.groups else status
            self.groups.add(args["group_id"])
            response, payload = responses.add_response, {"status": status, "group_id": args["group_id"]}
        elif command == "remove":
            status = status if args["group_id"] in self.groups else foundation.Status.NOT_FOUND
            self.groups.discard(args["group_id"])
            response, payload = responses.remove_response, {"status": status, "group_id": args["group_id"]}
        elif command == "remove_all":
            self.groups.clear()
            self._default_response(Groups.cluster_id, hdr, status)
            return
        elif command == "get_membership":
            asked = set(args["groups"])
            found = [g for g in sorted(self.groups) if not asked or g in asked]
            response, payload = responses.get_membership_response, {"capacity": 16 - len(self.groups), "groups": found}
        else:
            self._default_response(Groups.cluster_id, hdr, foundation.Status.UNSUP_CLUSTER_COMMAND)
            return
        reply = foundation.ZCLHeader.cluster(hdr.tsn, response.id, direction=foundation.Direction.Server_to_Client)
        self._send_zcl(Groups.cluster_id, reply, response.schema(**payload))

    def _default_response(self, cluster_id: int, hdr: foundation.ZCLHeader, status: foundation.Status) -> None:
        if hdr.frame_control.disable_default_response and status == foundation.Status.SUCCESS:
            return
        reply = foundation.ZCLHeader.general(
            hdr.tsn, foundation.GeneralCommand.Default_Response, direction=foundation.Direction.Server_to_Client
        )
        schema = command_schema(foundation.GeneralCommand.Default_Response)
        self._send_zcl(cluster_id, reply, schema(command_id=hdr.command_id, status=status))

    def _apply(self, cluster_id: int, command: str, args: dict[str, Any]) -> dict[int, list[str]]:
        """Carry out a cluster command; return the attributes it changed."""
        v = self.values
        on_off = (OnOff.cluster_id, "on_off")
        changed: dict[int, list[str]] = {}
        if cluster_id == OnOff.cluster_id and command in ("on", "off", "toggle"):
            v[on_off] = {"on": 1, "off": 0}.get(command, 1 - v[on_off])
            changed[OnOff.cluster_id] = ["on_off"]
        elif cluster_id == LevelControl.cluster_id and command in ("move_to_level", "move_to_level_with_on_off"):
            v[(cluster_id, "current_level")] = args["level"]
            changed[cluster_id] = ["current_level"]
            if command == "move_to_level_with_on_off":
                v[on_off] = int(args["level"] > 0)
                changed[OnOff.cluster_id] = ["on_off"]
        elif cluster_id == Color.cluster_id and command == "move_to_color_temp":
            v[(cluster_id, "color_temperature")] = args["color_temp_mireds"]
            changed[cluster_id] = ["color_temperature"]
        if self.kind == "plug" and OnOff.cluster_id in changed:
            self._plug_load()
            changed[ElectricalMeasurement.cluster_id] = ["active_power", "rms_current"]
        return changed

    def _plug_load(self) -> None:
        on = bool(self.values[(OnOff.cluster_id, "on_off")])
        voltage = self.values[(ElectricalMeasurement.cluster_id, "rms_voltage")] / 10
        self.values[(ElectricalMeasurement.cluster_id, "active_power")] = round(PLUG_LOAD_W * 10) if on else 0
        self.values[(ElectricalMeasurement.cluster_id, "rms_current")] = round(PLUG_LOAD_W / voltage * 1000) if on else 0
        self.values[(Metering.cluster_id, "instantaneous_demand")] = round(PLUG_LOAD_W) if on else 0


def _typed(type_id: int, value: int) -> bytes:
    """A ZCL typed value: the type byte, then the value as that type."""
    python_type = foundation.DataType.from_type_id(type_id).value.python_type
    return foundation.TypeValue(type=type_id, value=python_type(value)).serialize()


def command_schema(command: foundation.GeneralCommand) -> Any:
    return foundation.GENERAL_COMMANDS[command].schema


SIMULATION_SCHEMA = vol.Schema(
    {
        vol.Optional("devices", default=[]): [
            {vol.Required("kind"): vol.In(sorted(KINDS)), vol.Required("ieee"): str, vol.Optional("lqi", default=200): int}
        ],
        vol.Optional("report_interval", default=0.0): vol.Coerce(float),
        vol.Optional("seed", default=None): vol.Any(None, int),
    }
)


class SimulatedApplication(zigpy.application.ControllerApplication):
    """A coordinator whose radio is in-process; ``device: {path: ...}`` is its NVRAM file."""

    SCHEMA = zconf.CONFIG_SCHEMA.extend({vol.Optional(CONF_SIMULATION, default={}): SIMULATION_SCHEMA})

    def __init__(self, config: dict) -> None:
        super().__init__(config)
        sim = self.config[CONF_SIMULATION]
        self._nvram = Path(self.config[zconf.CONF_DEVICE][zconf.CONF_DEVICE_PATH])
        self.coordinator = SimulatedNode(self, t.EUI64.convert(COORDINATOR_IEEE), "coordinator", 0x0000)
        self.nodes: list[SimulatedNode] = [
            SimulatedNode(self, t.EUI64.convert(d["ieee"]), d["kind"], lqi=d["lqi"]) for d in sim["devices"]
        ]
        self._report_interval: float = sim["report_interval"]
        self._rng = random.Random(sim["seed"])
        self._connected = False
        self._report_task: asyncio.Task[None] | None = None
        self.permit_until = 0.0
        self.multicasts: list[t.ZigbeePacket] = []  # group-addressed frames the coordinator sent

    def node(self, kind_or_ieee: str) -> SimulatedNode:
        """The simulated node with this kind (the first one) or IEEE address."""
        for node in self.nodes:
            if node.kind == kind_or_ieee or str(node.ieee) == kind_or_ieee:
                return node
        raise KeyError(kind_or_ieee)

    def deliver(self, packet: t.ZigbeePacket) -> None:
        """Hand a packet from a node to zigpy on the next loop turn, as a radio's callback would."""
        if self._connected:
            asyncio.get_running_loop().call_soon(self.packet_received, packet)

    # -- ControllerApplication's radio contract ----------------------------

    async def connect(self) -> None:
        self._connected = True

    async def disconnect(self) -> None:
        self._connected = False
        if self._report_task is not None:
            self._report_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._report_task
            self._report_task = None

    async def load_network_info(self, *, load_devices: bool = False) -> None:
        text = await asyncio.to_thread(_read_text, self._nvram)
        if text is None:
            raise zigpy.exceptions.NetworkNotFormed("the simulated radio holds no network")
        backup = NetworkBackup.from_dict(json.loads(text))
        self.state.network_info = backup.network_info
        self.state.node_info = backup.node_info

    async def write_network_info(self, *, network_info: Any, node_info: Any) -> None:
        node_info = node_info.replace(nwk=t.NWK(node_info.nwk))
        if node_info.ieee == t.EUI64.UNKNOWN:
            node_info = node_info.replace(ieee=self.coordinator.ieee)
        self.coordinator.ieee = node_info.ieee
        text = json.dumps(NetworkBackup(network_info=network_info, node_info=node_info).as_dict())
        await asyncio.to_thread(_write_text, self._nvram, text)

    async def reset_network_info(self) -> None:
        await asyncio.to_thread(self._nvram.unlink, missing_ok=True)

    async def start_network(self) -> None:
        await self.load_network_info()
        self.coordinator.ieee = self.state.node_info.ieee
        self.coordinator.joined = True
        await self.register_endpoints()
        self.devices[self.state.node_info.ieee] = zigpy.device.Device(self, self.state.node_info.ieee, 0x0000)
        task = self._device.schedule_initialize()
        if task is not None:
            await task
        for node in self.nodes:
            known = self.devices.get(node.ieee)
            if known is not None:  # paired before: it kept its address and its bindings
                node.nwk, node.joined = known.nwk, True
                node.awake = True  # woken when it joined
                node.reporting = {c.cluster_id: set(c.attributes) for c in node.spec.clusters}
        if self._report_interval > 0:
            self._report_task = asyncio.create_task(self._report_loop(), name="simulated zigbee reports")

    async def force_remove(self, dev: zigpy.device.Device) -> None:
        with contextlib.suppress(KeyError):
            self.node(str(dev.ieee)).leave()

    async def add_endpoint(self, descriptor: zdo_t.SimpleDescriptor) -> None:
        pass  # the simulated coordinator accepts any endpoint

    async def permit_ncp(self, time_s: int = 60) -> None:
        loop = asyncio.get_running_loop()
        self.permit_until = loop.time() + time_s
        if time_s <= 0:
            return
        for node in self.nodes:
            if not node.joined:
                loop.call_soon(self._join, node)

    async def permit_with_link_key(self, node: t.EUI64, link_key: t.KeyData, time_s: int = 60) -> None:
        await self.permit_ncp(time_s)

    async def send_packet(self, packet: t.ZigbeePacket) -> None:
        if packet.dst.addr_mode == t.AddrMode.Broadcast:
            return  # permit-join and other broadcasts: nothing to answer
        if packet.dst.addr_mode == t.AddrMode.Group:
            self.multicasts.append(packet)
            for node in self._members(packet.dst.address):
                node.receive(packet)
            return
        target = self._find(packet.dst)
        if target is None or target.silent or not target.joined:
            raise zigpy.exceptions.DeliveryError(f"no route to {packet.dst}", status=t.MACStatus.MAC_NO_ACK)
        target.receive(packet)

    # -- the simulated world -----------------------------------------------

    def route(self, sender: SimulatedNode, packet: t.ZigbeePacket) -> None:
        """Carry a frame from one node to another node, a group, or the coordinator (no gateway in the loop)."""
        if sender.silent or not sender.joined:
            return
        if packet.dst.addr_mode == t.AddrMode.Group:
            targets = self._members(packet.dst.address)
        else:
            target = self._find(packet.dst)
            targets = [] if target is None or target.silent or not target.joined else [target]
        loop = asyncio.get_running_loop()
        for target in targets:
            if target is self.coordinator:
                loop.call_soon(self.packet_received, packet.replace(dst=t.AddrModeAddress(t.AddrMode.NWK, 0x0000)))
            else:
                loop.call_soon(target.receive, packet)

    def neighbors(self, node: SimulatedNode) -> list[zdo_t.Neighbor]:
        """A node's neighbour table: every node joined to the coordinator (a star with routers meshed).

        The coordinator lists every joined node as its child; a router lists
        the coordinator as parent and the other routers as siblings, each
        link as good as the worse of its two ends."""
        joined = [n for n in self.nodes if n.joined]
        if node is self.coordinator:
            return [self._neighbor(n, zdo_t.Relationship.Child, n.lqi) for n in joined]
        if not node.spec.node.is_router:
            return []
        siblings = [self._neighbor(n, zdo_t.Relationship.Sibling, min(n.lqi, node.lqi))
                    for n in joined if n is not node and n.spec.node.is_router]  # fmt: skip
        return [self._neighbor(self.coordinator, zdo_t.Relationship.Parent, node.lqi), *siblings]

    def routes(self, node: SimulatedNode) -> list[zdo_t.Route]:
        """A router's routing table: the coordinator reaches each router directly, a router the coordinator."""
        if node is self.coordinator:
            targets = [n for n in self.nodes if n.joined and n.spec.node.is_router]
        else:
            targets = [self.coordinator] if node.spec.node.is_router else []
        return [
            zdo_t.Route(DstNWK=t.NWK(n.nwk), RouteStatus=zdo_t.RouteStatus.Active, MemoryConstrained=0, ManyToOne=0,
                        RouteRecordRequired=0, Reserved=0, NextHop=t.NWK(n.nwk))
            for n in targets
        ]

    def _neighbor(self, node: SimulatedNode, relationship: zdo_t.Relationship, lqi: int) -> zdo_t.Neighbor:
        logical = node.spec.node.logical_type
        device_type = {0: zdo_t.DeviceType.Coordinator, 1: zdo_t.DeviceType.Router}.get(logical, zdo_t.DeviceType.EndDevice)
        return zdo_t.Neighbor(
            extended_pan_id=self.state.network_info.extended_pan_id,
            ieee=node.ieee,
            nwk=t.NWK(node.nwk),
            device_type=device_type,
            rx_on_when_idle=zdo_t.RxOnWhenIdle.On if device_type != zdo_t.DeviceType.EndDevice else zdo_t.RxOnWhenIdle.Off,
            relationship=relationship,
            reserved1=0,
            permit_joining=zdo_t.PermitJoins.Unknown,
            reserved2=0,
            depth=0 if node is self.coordinator else 1,
            lqi=lqi,
        )

    def _members(self, group_id: int) -> list[SimulatedNode]:
        return [n for n in self.nodes if n.joined and not n.silent and group_id in n.groups]

    def _find(self, address: t.AddrModeAddress) -> SimulatedNode | None:
        for node in [self.coordinator, *self.nodes]:
            if address.address in (node.nwk, node.ieee):
                return node
        return None

    def _join(self, node: SimulatedNode) -> None:
        if node.joined or asyncio.get_running_loop().time() > self.permit_until:
            return
        used = {n.nwk for n in self.nodes if n.joined} | {d.nwk for d in self.devices.values()}
        nwk = t.NWK(0x1000 + len(self.nodes))
        while nwk in used:
            nwk = t.NWK(nwk + 1)
        node.nwk, node.joined = nwk, True
        self.handle_join(nwk, node.ieee, t.NWK(0x0000))

    async def _report_loop(self) -> None:
        while True:
            await asyncio.sleep(self._report_interval)
            for node in self.nodes:
                if not node.joined or node.silent:
                    continue
                node.step(self._rng, self._report_interval)
                for cluster_id, names in node.reportable().items():
                    node.report(cluster_id, names)
                if node.datapoints:
                    node.tuya_report()
                if node.xiaomi_tags:
                    node.xiaomi_report()


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text()
    except FileNotFoundError:
        return None


def _write_text(path: Path, text: str) -> None:
    write_atomic(path, text.encode(), 0o600)  # the simulated stick's NVRAM holds its network key
