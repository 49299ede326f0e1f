"""Manufacturer clusters: Tuya 0xEF00 data points and Xiaomi/Aqara tag reports,
decoded from frames as devices send them, and end to end through the simulated radio."""

from __future__ import annotations

import asyncio

import pytest
from pydantic import ValidationError
from zigpy.zcl.clusters.general import Basic

from edged.adapters.zigbee import quirks, tuya, xiaomi
from edged.adapters.zigbee.adapter import ZigbeeAdapter
from edged.adapters.zigbee.config import ZigbeeConfig
from edged.model import Command, CommandStatus, Origin, Quality

TABLE = quirks.load(None)
CLIMATE, TRV, AQARA = "00:0d:6f:00:0e:d9:ed:01", "00:0d:6f:00:0e:d9:ed:02", "00:0d:6f:00:0e:d9:ed:03"


def decoded(manufacturer: str, frame: bytes) -> dict[str, object]:
    """What the table makes of a Tuya frame (a whole ZCL frame) from this manufacturer's TS0601."""
    entry = TABLE.tuya_for(manufacturer, "TS0601")
    by_dp = {m.dp: m for m in entry.datapoints}
    return {by_dp[p.dp].key: by_dp[p.dp].convert(p.value) for p in tuya.parse(frame[3:]) if p.dp in by_dp}


@pytest.mark.parametrize(
    ("manufacturer", "frame", "values"),
    [
        # a smoke detector's battery state report (data report 0x02, dp 14, enum 2)
        ("_TZE200_ntcy3xu1", bytes.fromhex("093a0200120e04000102"), {"battery_level": "high"}),
        # smoke: the alarm is dp 1 = 0
        ("_TZE200_ntcy3xu1", bytes.fromhex("09130200300104000100"), {"smoke": True}),
        # a thermometer's report of three data points in one frame: 23.5 Cel, 61.2 %RH, 87 % battery
        ("_TZE200_bjawzodf", bytes.fromhex("0905020007" "010200040000" "00eb" "02020004" "00000264" "04020004" "00000057"),
         {"temperature": 23.5, "humidity": 61.2, "battery": 87.0}),
        # below zero: a 32-bit signed value
        ("_TZE200_locansqn", bytes.fromhex("0906020008" "0102000 4ffffffcc".replace(" ", "")), {"temperature": -5.2}),
        # a soil sensor: moisture 38 %, 18.4 Cel
        ("_TZE200_myd45weu", bytes.fromhex("090702000a" "0302000400000026" "05020004000000b8"),
         {"soil_moisture": 38.0, "temperature": 18.4}),
        # a radiator valve: mode manual (enum 1), setpoint 21.5, heating (enum 1)
        ("_TZE204_rtrmfadk", bytes.fromhex("0908010011" "0104000101" "02020004000000d7" "0604000101"),
         {"mode": "manual", "setpoint": 21.5, "heating": True}),
        ("_TZE200_qq9mpfhw", bytes.fromhex("09090200200101000101"), {"water_leak": True}),
    ],
)
def test_tuya_data_points_decode_to_points(manufacturer, frame, values):
    assert decoded(manufacturer, frame) == values


def test_a_cut_tuya_frame_is_an_error():
    with pytest.raises(ValueError, match="says 4 bytes, 2 left"):
        tuya.parse(bytes.fromhex("0007" "01020004" "0000"))


def test_a_written_value_becomes_set_data():
    setpoint = next(m for m in TABLE.tuya_for("_TZE204_rtrmfadk", "TS0601").datapoints if m.key == "setpoint")
    assert tuya.set_data(0x12, [tuya.Datapoint(setpoint.dp, tuya.VALUE, setpoint.raw(21.5))]).hex() == "0012" "02020004000000d7"
    mode = next(m for m in TABLE.tuya_for("_TZE204_rtrmfadk", "TS0601").datapoints if m.key == "mode")
    with pytest.raises(ValueError, match="takes one of auto, manual, off, on; got 'boost'"):
        mode.raw("boost")


def test_xiaomi_heartbeat_report_decodes_to_points():
    # Report Attributes, manufacturer 0x115F, Basic attribute 0xFF01 as a character string of tag/typed-value pairs:
    # battery 3005 mV, 22.63 Cel, 48.78 %RH, 100560 Pa, and tags the table does not use (0x04, 0x05, 0x0A)
    packed = bytes.fromhex("0121bd0b" "0421a813" "05210900" "6429d708" "65210e13" "662bd0880100" "0a210000")
    frame = bytes.fromhex("1c5f11220a") + bytes.fromhex("01ff42") + bytes([len(packed)]) + packed
    tags = xiaomi.tlv(frame)
    entry = TABLE.xiaomi_for("lumi.weather")
    values = {m.key: m.convert(tags[m.tag]) for m in entry.tags}
    assert values == {"battery_voltage": 3.005, "temperature": 22.63, "humidity": 48.78, "pressure": 1005.6}
    assert xiaomi.tlv(bytes.fromhex("18230a0500" "2001")) is None  # a plain report without the packed attribute


def make(hub, tmp_path, **overrides) -> ZigbeeAdapter:
    config = {
        "type": "zigbee", "name": "zb", "radio": "simulated",
        "simulated": {"devices": [{"kind": "tuya_climate", "ieee": CLIMATE}, {"kind": "tuya_trv", "ieee": TRV},
                                  {"kind": "aqara_weather", "ieee": AQARA}], "report_interval": 0},
        **overrides,
    }
    return ZigbeeAdapter(ZigbeeConfig.model_validate(config), hub, tmp_path / "zb")


async def pair(adapter: ZigbeeAdapter, hub, watch) -> None:
    async with asyncio.timeout(10):
        await adapter.ready.wait()
    await adapter.permit_join(30)
    await watch.until(lambda: all(f"zb/{ieee}" in hub.devices and hub.devices[f"zb/{ieee}"].online for ieee in (CLIMATE, TRV, AQARA)))
    # the Tuya devices were woken and asked for their data points as they joined: their values come at once
    await watch.until(lambda: value(hub, CLIMATE, "temperature") is not None and value(hub, TRV, "setpoint") is not None)


def value(hub, device: str, key: str):
    reading = hub.value(f"zb/{device}", key)
    return None if reading is None else (reading.value, reading.quality)


async def test_tuya_and_aqara_devices_report_through_the_simulated_radio(hub, watch, running, tmp_path):
    adapter = make(hub, tmp_path)
    running(adapter)
    await pair(adapter, hub, watch)
    climate = hub.devices[f"zb/{CLIMATE}"]
    assert (climate.manufacturer, climate.model) == ("_TZE200_bjawzodf", "TS0601")
    assert {k: p.unit for k, p in climate.points.items()} == {"temperature": "Cel", "humidity": "%RH", "battery": "%EL"}
    assert hub.devices[f"zb/{TRV}"].points["setpoint"].writable and not hub.devices[f"zb/{TRV}"].points["temperature"].writable

    assert value(hub, CLIMATE, "temperature") == (21.5, Quality.GOOD) and value(hub, CLIMATE, "humidity")[0] == 45.2
    assert value(hub, CLIMATE, "battery") == (90, Quality.GOOD)
    # what woke it: the Basic attributes Tuya devices wait for, read in one request
    basic_reads = [names for cluster, names in adapter.app.node(CLIMATE).reads if cluster == Basic.cluster_id]
    assert [len(names) for names in basic_reads].count(len(tuya.WAKE_ATTRIBUTES)) == 1

    adapter.app.node(AQARA).xiaomi_report()
    await watch.until(lambda: value(hub, AQARA, "pressure") is not None)
    assert [value(hub, AQARA, k)[0] for k in ("battery_voltage", "temperature", "humidity", "pressure")] == [3.005, 22.63, 48.78, 1005.6]


async def test_a_radiator_valves_setpoint_and_mode_are_written_as_data_points(hub, watch, running, tmp_path):
    adapter = make(hub, tmp_path)
    running(adapter)
    await pair(adapter, hub, watch)
    trv = adapter.app.node(TRV)

    result = await hub.execute(Command(f"zb/{TRV}", "setpoint", 21.5, Origin.API))
    assert result.status is CommandStatus.OK, result.reason
    assert trv.tuya_writes[-1] == tuya.Datapoint(2, tuya.VALUE, 215)
    await watch.until(lambda: value(hub, TRV, "setpoint") == (21.5, Quality.GOOD))  # the valve reports what it took

    result = await hub.execute(Command(f"zb/{TRV}", "mode", "manual", Origin.RULE))
    assert result.status is CommandStatus.OK, result.reason
    assert trv.tuya_writes[-1] == tuya.Datapoint(1, tuya.ENUM, 1)
    await watch.until(lambda: value(hub, TRV, "mode") == ("manual", Quality.GOOD))

    result = await hub.execute(Command(f"zb/{TRV}", "mode", "boost", Origin.API))
    assert result.status is CommandStatus.FAILED and "auto, manual, off, on" in result.reason
    assert len(trv.tuya_writes) == 2


async def test_a_quirks_file_adds_and_overrides_entries_without_code(hub, watch, running, tmp_path):
    extra = tmp_path / "my-quirks.yaml"
    extra.write_text(
        "tuya:\n"
        "  - description: the same thermometer, read as a CO2 meter on dp 2\n"
        "    manufacturers: [_TZE200_bjawzodf]\n"
        "    datapoints:\n"
        "      - {dp: 1, key: temperature, unit: Cel, scale: 0.1}\n"
        "      - {dp: 2, key: co2, type: int, unit: ppm, scale: 10}\n"
    )
    adapter = make(hub, tmp_path, quirks=str(extra))
    running(adapter)
    await pair(adapter, hub, watch)
    assert set(hub.devices[f"zb/{CLIMATE}"].points) == {"temperature", "co2"}
    await watch.until(lambda: value(hub, CLIMATE, "co2") == (4520, Quality.GOOD))


def test_a_bad_quirks_file_is_a_configuration_error(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("tuya:\n  - description: x\n    manufacturers: [_TZE200_x]\n    datapoints: [{dp: 300, key: t}]\n")
    with pytest.raises(ValidationError, match=r"bad.yaml:4: tuya.0.datapoints.0.dp: Input should be less than or equal to 255"):
        ZigbeeConfig.model_validate({"type": "zigbee", "radio": "simulated", "quirks": str(bad)})


def test_a_quirks_file_that_expands_without_end_is_refused(tmp_path):
    """A quirks file is read with the configuration's limits: aliases that repeat a value
    billions of times are refused at once, not expanded."""
    bomb = tmp_path / "bomb.yaml"
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    bomb.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValidationError, match=r"bomb.yaml:\d+: .*alias"):
        ZigbeeConfig.model_validate({"type": "zigbee", "radio": "simulated", "quirks": str(bomb)})
