"""The BLE adapter driven through a simulated radio at bleak's backend seam
(``BleakScanner(backend=...)``, ``BleakClient(backend=...)`` under
bleak-retry-connector's ``establish_connection``), with real frames."""

from __future__ import annotations

import asyncio
import logging

import pytest

from edged.adapters.ble import atc, ibeacon
from edged.adapters.ble.adapter import BleAdapter
from edged.adapters.ble.config import BleConfig
from edged.adapters.ble.formats import service_uuid
from edged.adapters.ble.simulator import (
    BTHOME_UUID,
    RUUVI_COMPANY_ID,
    Air,
    Peripheral,
    bthome_encrypted,
    bthome_objects,
    bthome_plain,
    ruuvi_format5,
)
from edged.errors import AdapterError
from edged.metrics import Metrics
from edged.model import Command, CommandStatus, DeviceStatus, Origin, Quality
from edged.status import views
from edged.view import GatewayView
from tests.adapters import conformance
from tests.gateway_log import gateway_log_fixture  # noqa: F401 - a fixture

SENSOR = "A4:C1:38:00:00:01"
LOCKED = "54:48:E6:8F:80:A5"
KEY = "231d39c1d7cc1ab1aee224cd096db932"
TAG = "CB:B8:33:4C:88:4F"
THERMO = "F0:00:00:00:00:10"
TEMP_UUID = "00002a6e-0000-1000-8000-00805f9b34fb"
SETPOINT_UUID = "0000ff01-0000-1000-8000-00805f9b34fb"
MIBEACON = service_uuid(0xFE95)
RUUVI_FRAME = bytes.fromhex("0512FC5394C37C0004FFFC040CAC364200CDCBB8334C884F")
PUBLISHED_ENCRYPTED = bytes.fromhex("41a47266c95f730011223378237214")  # bthome.io/encryption


def thermostat(air: Air, address: str = THERMO) -> Peripheral:
    device = air.add(Peripheral(address, "thermo"))
    device.add(TEMP_UUID, (2000).to_bytes(2, "little", signed=True), "read", "notify")
    device.add(SETPOINT_UUID, (2100).to_bytes(2, "little", signed=True), "read", "write")
    return device


def gatt_spec(device_id: str = "thermo", address: str = THERMO) -> dict:
    return {
        "id": device_id, "address": address, "characteristics": [
            {"key": "temperature", "uuid": "2a6e", "decoder": "int16_le", "scale": 0.01, "unit": "Cel", "notify": True},
            {"key": "setpoint", "uuid": "ff01", "decoder": "int16_le", "scale": 0.01, "unit": "Cel",
             "interval": "50ms", "writable": True},
        ],
    }


def make(hub, tmp_path, air: Air, **extra) -> BleAdapter:
    config = BleConfig.model_validate({"type": "ble", "name": "ble", **extra})
    return BleAdapter(config, hub, tmp_path, backend=air.backend())


def bthome_advert(air: Air, address: str, objects: list[tuple[int, float]], packet_id: int = 1) -> None:
    data = bthome_plain(bthome_objects(objects, packet_id=packet_id))
    air.advertise(address, name="SBHT-003C", service_data={BTHOME_UUID: data})


async def scanning(air: Air, watch) -> None:
    async with asyncio.timeout(5):
        await air.scanning.wait()


def value(hub, device_id: str, key: str):
    reading = hub.value(device_id, key)
    return None if reading is None else reading.value


async def test_conformance(hub, watch, running, tmp_path):
    air = Air()
    thermostat(air)
    adapter = make(hub, tmp_path, air, gatt=[gatt_spec()])
    task = running(adapter)
    await scanning(air, watch)
    bthome_advert(air, SENSOR, [(0x02, 21.5), (0x03, 40.0)])
    air.advertise(THERMO, name="thermo")
    await conformance.check_devices_report(adapter, hub, watch)
    await conformance.check_read_only_rejected(hub, "ble/a4:c1:38:00:00:01", "temperature")
    await conformance.check_write_round_trip(hub, watch, "ble/thermo", "setpoint", 22.5)
    await conformance.check_stop_marks_offline(adapter, hub, task)
    assert not air.connections  # the link was closed


async def test_bthome_advertisement_becomes_one_batch_of_readings(hub, watch, running, tmp_path):
    air = Air()
    running(make(hub, tmp_path, air))
    await scanning(air, watch)
    batches: list = []
    hub.subscribe(batches.append)
    air.advertise(SENSOR, name="SBHT-003C", service_data={BTHOME_UUID: bytes.fromhex("40003f015e02820803ac170c830b")})
    await watch.until(lambda: value(hub, "ble/a4:c1:38:00:00:01", "voltage") == 2.947)
    assert [{r.key: r.value for r in batch} for batch in batches] == [
        {"battery": 94, "temperature": 21.78, "humidity": 60.6, "voltage": 2.947, "rssi": -60}
    ]
    device = hub.devices["ble/a4:c1:38:00:00:01"]
    assert device.online and device.name == "SBHT-003C"
    assert (device.model, device.manufacturer) == ("BLU H&T", "Shelly")
    assert device.points["temperature"].unit == "Cel" and not device.points["temperature"].writable


async def test_encrypted_bthome_with_bind_key(hub, watch, running, tmp_path, caplog):
    air = Air()
    running(make(hub, tmp_path, air, keys={LOCKED: KEY}))
    await scanning(air, watch)
    air.advertise(LOCKED, service_data={BTHOME_UUID: PUBLISHED_ENCRYPTED})
    await watch.until(lambda: value(hub, "ble/54:48:e6:8f:80:a5", "humidity") == 50.55)
    assert value(hub, "ble/54:48:e6:8f:80:a5", "temperature") == 25.06
    # a replay of an older counter (after the dedup window) is not taken
    newer = bthome_encrypted(bthome_objects([(0x02, 30.0)]), LOCKED, bytes.fromhex(KEY), counter=0x33221101)
    air.advertise(LOCKED, service_data={BTHOME_UUID: newer})
    await watch.until(lambda: value(hub, "ble/54:48:e6:8f:80:a5", "temperature") == 30.0)
    older = bthome_encrypted(bthome_objects([(0x02, 10.0)]), LOCKED, bytes.fromhex(KEY), counter=0x33221100)
    with caplog.at_level(logging.WARNING):
        air.advertise(LOCKED, service_data={BTHOME_UUID: older})
        air.advertise(LOCKED, service_data={BTHOME_UUID: PUBLISHED_ENCRYPTED})
    assert value(hub, "ble/54:48:e6:8f:80:a5", "temperature") == 30.0
    assert len([r for r in caplog.records if "replay" in r.getMessage()]) == 1


async def test_wrong_bind_key_is_logged_with_device_and_flags_values_bad(hub, watch, running, tmp_path, caplog):
    air = Air()
    adapter = make(hub, tmp_path, air, bthome_keys={LOCKED: KEY})
    running(adapter)
    await scanning(air, watch)
    air.advertise(LOCKED, service_data={BTHOME_UUID: PUBLISHED_ENCRYPTED})
    await watch.until(lambda: value(hub, "ble/54:48:e6:8f:80:a5", "temperature") == 25.06)
    forged = bthome_encrypted(bthome_objects([(0x02, 99.0)]), LOCKED, bytes(16), counter=0x33221105)
    with caplog.at_level(logging.WARNING):
        air.advertise(LOCKED, service_data={BTHOME_UUID: forged})
        air.advertise(LOCKED, service_data={BTHOME_UUID: forged})
    await watch.until(lambda: hub.value("ble/54:48:e6:8f:80:a5", "temperature").quality is Quality.BAD)
    problems = [r for r in caplog.records if "bind key does not match" in r.getMessage()]
    assert len(problems) == 1 and problems[0].device == "ble/54:48:e6:8f:80:a5"
    assert adapter.errors_total == 2
    assert adapter.stats().needs_key == 1  # a configured device: a health problem too
    assert adapter.health_problems() == [f"adapter ble: {LOCKED}: BTHome: the bind key does not match "
                                         "(the frames do not decrypt with it)"]


async def test_ruuvi_and_ibeacon(hub, watch, running, tmp_path):
    air = Air()
    running(make(hub, tmp_path, air))
    await scanning(air, watch)
    air.advertise(TAG, name="Ruuvi 884F", manufacturer_data={RUUVI_COMPANY_ID: RUUVI_FRAME})
    beacon = ibeacon.IBeacon("e2c56db5-dffb-48d2-b060-d0f5a71096e0", 1, 2, -59)
    air.advertise("F0:00:00:00:00:03", manufacturer_data={ibeacon.COMPANY_ID: ibeacon.encode(beacon)}, rssi=-59)
    beacon_id = "ble/ibeacon-e2c56db5-dffb-48d2-b060-d0f5a71096e0-1-2"
    await watch.until(lambda: value(hub, beacon_id, "present") is True)
    assert value(hub, beacon_id, "distance") == 1.0
    assert value(hub, "ble/cb:b8:33:4c:88:4f", "pressure") == 100044
    assert value(hub, "ble/cb:b8:33:4c:88:4f", "voltage") == 2977
    assert hub.devices["ble/cb:b8:33:4c:88:4f"].model == "RuuviTag"
    assert hub.devices["ble/cb:b8:33:4c:88:4f"].points["pressure"].unit == "Pa"



async def test_atc_thermometers_in_both_layouts(hub, watch, running, tmp_path):
    air = Air()
    running(make(hub, tmp_path, air))
    await scanning(air, watch)
    air.advertise("A4:C1:38:D5:D4:98", name="ATC_D5D498", service_data={atc.UUID: bytes.fromhex("a4c138d5d49801453e510b7b62")})
    air.advertise("A4:C1:38:CF:01:56", name="ATC_CF0156", service_data={atc.UUID: bytes.fromhex("5601cf38c1a44008bd13470c64cc0f")})
    await watch.until(lambda: value(hub, "ble/a4:c1:38:cf:01:56", "humidity") is not None)
    await watch.until(lambda: value(hub, "ble/a4:c1:38:d5:d4:98", "battery") is not None)
    assert value(hub, "ble/a4:c1:38:d5:d4:98", "temperature") == 32.5
    assert value(hub, "ble/a4:c1:38:cf:01:56", "humidity") == 50.53
    assert hub.devices["ble/a4:c1:38:cf:01:56"].model == "ATC_MiThermometer (pvvx)"
    assert hub.devices["ble/a4:c1:38:d5:d4:98"].points["battery"].unit == "%EL"


async def test_xiaomi_mibeacon_frames_fill_one_device(hub, watch, running, tmp_path):
    air = Air()
    running(make(hub, tmp_path, air, formats=["mibeacon"]))  # the older name of the xiaomi family
    await scanning(air, watch)
    for raw in ("5020aa0137dfaa33342d580d100404016602", "5020aa018ddfaa33342d580410021201"):
        air.advertise("58:2D:34:33:AA:DF", name="MJ_HT_V1", service_data={MIBEACON: bytes.fromhex(raw)})
    await watch.until(lambda: value(hub, "ble/58:2d:34:33:aa:df", "temperature") == 27.4)
    assert value(hub, "ble/58:2d:34:33:aa:df", "humidity") == 61.4
    assert hub.devices["ble/58:2d:34:33:aa:df"].model == "LYWSDCGQ"


async def test_stock_lywsd03mmc_with_its_bind_key_and_govee_end_to_end(hub, watch, running, tmp_path):
    air = Air()
    running(make(hub, tmp_path, air, keys={"A4:C1:38:02:83:F4": "e9ea895fac7cca6d30532432a516f3a8"}))
    await scanning(air, watch)
    air.advertise("A4:C1:38:02:83:F4", name="LYWSD03MMC",
                  service_data={MIBEACON: bytes.fromhex("58585b0550f4830238c1a495ef58763c26000097e2abb5")})
    air.advertise("A4:C1:38:DD:DB:F8", name="GVH5075_DBF8", manufacturer_data={0xEC88: bytes.fromhex("00034db26400")})
    await watch.until(lambda: value(hub, "ble/a4:c1:38:02:83:f4", "humidity") == 46.0)
    await watch.until(lambda: value(hub, "ble/a4:c1:38:dd:db:f8", "temperature") == 21.6)
    govee = hub.devices["ble/a4:c1:38:dd:db:f8"]
    assert (govee.manufacturer, govee.model, govee.points["humidity"].unit) == ("Govee", "H5075", "%RH")

async def test_duplicates_within_window_do_not_reach_the_hub(hub, watch, running, tmp_path):
    air = Air()
    adapter = make(hub, tmp_path, air, dedup_window="1h")
    running(adapter)
    await scanning(air, watch)
    batches: list = []
    hub.subscribe(batches.append)
    for _ in range(50):
        air.advertise(TAG, manufacturer_data={RUUVI_COMPANY_ID: RUUVI_FRAME})
    changed = ruuvi_format5(25.0, 53.49, 100044, (0.004, -0.004, 1.036), 2977, 4, 66, 206, TAG)
    air.advertise(TAG, manufacturer_data={RUUVI_COMPANY_ID: changed})
    await watch.until(lambda: value(hub, "ble/cb:b8:33:4c:88:4f", "temperature") == 25.0)
    assert sum(1 for batch in batches for r in batch if r.key == "temperature") == 2
    assert adapter.duplicates_total == 49


async def test_silence_goes_offline_and_the_next_frame_brings_it_back(hub, watch, running, tmp_path):
    air = Air()
    running(make(hub, tmp_path, air, offline_after=0.2))
    await scanning(air, watch)
    device_id = "ble/a4:c1:38:00:00:01"
    bthome_advert(air, SENSOR, [(0x02, 20.0)], packet_id=1)
    await watch.until(lambda: hub.devices.get(device_id) and hub.devices[device_id].online)
    await watch.until(lambda: not hub.devices[device_id].online, timeout=5)
    bthome_advert(air, SENSOR, [(0x02, 20.5)], packet_id=2)
    await watch.until(lambda: hub.devices[device_id].online and value(hub, device_id, "temperature") == 20.5)
    statuses = [e.online for e in watch.events if isinstance(e, DeviceStatus) and e.device_id == device_id]
    assert statuses == [True, False, True]


async def test_beacon_that_leaves_is_reported_absent(hub, watch, running, tmp_path):
    air = Air()
    running(make(hub, tmp_path, air, offline_after=0.2))
    await scanning(air, watch)
    beacon = ibeacon.IBeacon("e2c56db5-dffb-48d2-b060-d0f5a71096e0", 7, 8, -59)
    air.advertise("F0:00:00:00:00:04", manufacturer_data={ibeacon.COMPANY_ID: ibeacon.encode(beacon)})
    beacon_id = "ble/ibeacon-e2c56db5-dffb-48d2-b060-d0f5a71096e0-7-8"
    await watch.until(lambda: value(hub, beacon_id, "present") is True)
    await watch.until(lambda: value(hub, beacon_id, "present") is False, timeout=5)
    assert not hub.devices[beacon_id].online


async def test_filters_by_address_and_name(hub, watch, running, tmp_path):
    air = Air()
    running(make(hub, tmp_path, air, addresses=[SENSOR.lower()], names=["Ruuvi *"]))
    await scanning(air, watch)
    bthome_advert(air, "A4:C1:38:00:00:09", [(0x02, 1.0)])  # neither address nor name
    air.advertise("CB:B8:33:4C:88:50", name="Other", manufacturer_data={RUUVI_COMPANY_ID: RUUVI_FRAME})
    air.advertise(TAG, name="Ruuvi 884F", manufacturer_data={RUUVI_COMPANY_ID: RUUVI_FRAME})
    bthome_advert(air, SENSOR, [(0x02, 2.0)])
    await watch.until(lambda: value(hub, "ble/a4:c1:38:00:00:01", "temperature") == 2.0)
    assert sorted(hub.devices) == ["ble/a4:c1:38:00:00:01", "ble/cb:b8:33:4c:88:4f"]


async def test_gatt_device_notifies_drops_and_reconnects(hub, watch, running, tmp_path):
    air = Air()
    thermostat(air)
    adapter = make(hub, tmp_path, air, gatt=[gatt_spec()])
    running(adapter)
    await scanning(air, watch)
    air.advertise(THERMO, name="thermo")
    await watch.until(lambda: hub.devices["ble/thermo"].online)
    air.notify(THERMO, TEMP_UUID, (2150).to_bytes(2, "little", signed=True))
    await watch.until(lambda: value(hub, "ble/thermo", "temperature") == 21.5)
    await watch.until(lambda: value(hub, "ble/thermo", "setpoint") == 21.0)  # polled

    air.drop(THERMO)
    await watch.until(lambda: not hub.devices["ble/thermo"].online)
    result = await hub.execute(Command("ble/thermo", "setpoint", 19.0, Origin.API))
    assert result.status is CommandStatus.REJECTED  # offline: nothing was sent
    await watch.until(lambda: hub.devices["ble/thermo"].online, timeout=5)  # reconnected after backoff
    assert air.connects[THERMO] == 2
    air.notify(THERMO, TEMP_UUID, (2225).to_bytes(2, "little", signed=True))  # subscribed again
    await watch.until(lambda: value(hub, "ble/thermo", "temperature") == 22.25)
    assert adapter.reconnects_total == 1


async def test_write_reaches_the_characteristic(hub, watch, running, tmp_path):
    air = Air()
    device = thermostat(air)
    running(make(hub, tmp_path, air, gatt=[gatt_spec()]))
    await scanning(air, watch)
    air.advertise(THERMO)
    await watch.until(lambda: hub.devices["ble/thermo"].online)
    result = await hub.execute(Command("ble/thermo", "setpoint", 23.4, Origin.RULE))
    assert result.status is CommandStatus.OK, result.reason
    assert device.writes == [(SETPOINT_UUID, (2340).to_bytes(2, "little", signed=True))]
    assert value(hub, "ble/thermo", "setpoint") == 23.4
    too_hot = await hub.execute(Command("ble/thermo", "setpoint", 400.0, Origin.RULE))
    assert too_hot.status is CommandStatus.FAILED and "out of range" in too_hot.reason
    assert len(device.writes) == 1


async def test_connection_limit_and_one_bad_device_does_not_stall_others(hub, watch, running, tmp_path):
    air = Air()
    addresses = [f"F0:00:00:00:00:{n:02X}" for n in range(0x20, 0x23)]
    for address in addresses:
        thermostat(air, address)
    specs = [gatt_spec(f"t{n}", address) for n, address in enumerate(addresses)]
    running(make(hub, tmp_path, air, gatt=specs, max_connections=2))
    await scanning(air, watch)
    for address in addresses:
        air.advertise(address)
    await watch.until(lambda: sum(hub.devices[f"ble/t{n}"].online for n in range(3)) == 2)
    waiting = next(n for n in range(3) if not hub.devices[f"ble/t{n}"].online)
    assert air.max_concurrent == 2
    # sensors keep reporting while links wait for a slot
    bthome_advert(air, SENSOR, [(0x02, 3.0)])
    await watch.until(lambda: value(hub, "ble/a4:c1:38:00:00:01", "temperature") == 3.0)
    # a slot frees when a device drops and the waiting one takes it
    holder = next(n for n in range(3) if n != waiting and hub.devices[f"ble/t{n}"].online)
    air.refuse.add(addresses[holder])
    air.drop(addresses[holder])
    await watch.until(lambda: hub.devices[f"ble/t{waiting}"].online, timeout=5)
    assert air.max_concurrent == 2


async def test_no_bluetooth_is_a_clear_failure(hub, tmp_path, caplog):
    air = Air()
    air.available = False
    adapter = make(hub, tmp_path, air)
    with caplog.at_level(logging.ERROR), pytest.raises(AdapterError, match="no usable Bluetooth adapter"):
        await adapter.run()
    assert adapter.state == "failed"
    assert "Bluetooth adapter is present" in caplog.text
    assert "Traceback" not in caplog.text


async def test_simulated_backend_runs_the_demo(hub, watch, running, tmp_path):
    from edged.adapters.ble import simulator

    config = BleConfig.model_validate({
        "type": "ble", "name": "ble", "backend": "simulated",
        "bthome_keys": {simulator.DEMO_BTHOME_ENCRYPTED: simulator.DEMO_BIND_KEY},  # the older name of keys:
        "gatt": [gatt_spec("thermostat", simulator.DEMO_GATT)],
    })
    running(BleAdapter(config, hub, tmp_path))
    expected = ["ble/a4:c1:38:00:00:01", "ble/a4:c1:38:00:00:02", "ble/cb:b8:33:4c:88:4f", "ble/a4:c1:38:cf:01:56",
                "ble/thermostat"]
    await watch.until(lambda: all(hub.devices.get(d) and hub.devices[d].online for d in expected))
    await watch.until(lambda: value(hub, "ble/a4:c1:38:00:00:02", "temperature") is not None)


async def test_stranger_without_bind_key_is_logged_once_and_not_registered(hub, watch, running, tmp_path, caplog):
    air = Air()
    adapter = make(hub, tmp_path, air)
    running(adapter)
    await scanning(air, watch)
    with caplog.at_level(logging.WARNING):
        for counter in range(1, 6):
            sealed = bthome_encrypted(bthome_objects([(0x02, 20.0)]), LOCKED, bytes.fromhex(KEY), counter=counter)
            air.advertise(LOCKED, service_data={BTHOME_UUID: sealed})
        bthome_advert(air, SENSOR, [(0x02, 4.0)])
    await watch.until(lambda: value(hub, "ble/a4:c1:38:00:00:01", "temperature") == 4.0)
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING] == [
        "ble/54:48:e6:8f:80:a5: BTHome: the frames are encrypted and keys: has no bind key for this address"
    ]
    assert "ble/54:48:e6:8f:80:a5" not in hub.devices
    assert adapter.errors_total == 5
    assert adapter.needs_key() == {LOCKED: "BTHome: the frames are encrypted and keys: has no bind key for this address"}
    assert adapter.stats().needs_key == 1
    assert adapter.health_problems() == []  # a neighbour's device is not the gateway's problem
    view = GatewayView("gw", hub, adapters={"ble": adapter})
    assert 'edged_adapter_ble_needs_key{adapter="ble"} 1.0' in Metrics(view).render().decode()


def random_address(number: int) -> str:
    """A random static address (the two top bits set), as phones and trackers use."""
    return f"D0:00:00:00:{number >> 8:02X}:{number & 0xFF:02X}"


async def test_a_flood_of_random_addresses_cannot_lock_out_a_real_sensor(hub, watch, running, tmp_path, caplog):
    air = Air()
    adapter = make(hub, tmp_path, air, max_devices=8)
    running(adapter)
    await scanning(air, watch)
    with caplog.at_level(logging.DEBUG, logger="edged"):
        for number in range(50):  # e.g. phones and trackers with random private addresses, or someone hostile
            bthome_advert(air, random_address(number), [(0x02, 99.0)])
        bthome_advert(air, SENSOR, [(0x02, 21.5)])  # a real sensor, first heard after the flood
        await watch.until(lambda: value(hub, "ble/a4:c1:38:00:00:01", "temperature") == 21.5, timeout=3)
    ble_devices = [device_id for device_id in hub.devices if device_id.startswith("ble/")]
    assert len(ble_devices) == 8  # memory stays bounded
    assert f"ble/{random_address(0).lower()}" not in hub.devices  # the longest silent went first
    assert f"ble/{random_address(49).lower()}" in hub.devices
    assert adapter.evicted_total == 50 + 1 - 8
    assert adapter.stats().evicted == 43
    summaries = [r for r in caplog.records if r.levelno == logging.WARNING and "evicted" in r.getMessage()]
    assert len(summaries) == 1  # once a minute, not once per eviction
    assert len([r for r in caplog.records if r.levelno == logging.DEBUG and "evicted for" in r.getMessage()]) == 43
    view = GatewayView("gw", hub, adapters={"ble": adapter})
    assert 'edged_adapter_ble_evicted_total{adapter="ble"} 43.0' in Metrics(view).render().decode()


async def test_configured_advertisers_are_never_evicted(hub, watch, running, tmp_path):
    air = Air()
    adapter = make(hub, tmp_path, air, max_devices=4, addresses=[SENSOR], names=["SBHT-*"], keys={LOCKED: KEY})
    running(adapter)
    await scanning(air, watch)
    bthome_advert(air, SENSOR, [(0x02, 21.5)])
    air.advertise(LOCKED, name="SBHT-lock", service_data={BTHOME_UUID: PUBLISHED_ENCRYPTED})
    await watch.until(lambda: value(hub, "ble/54:48:e6:8f:80:a5", "temperature") == 25.06)
    for number in range(20):  # the configured two are now the longest silent
        bthome_advert(air, random_address(number), [(0x02, 99.0)])
    bthome_advert(air, "A4:C1:38:00:00:77", [(0x02, 18.0)])  # an unlisted sensor matching the name still gets in
    await watch.until(lambda: value(hub, "ble/a4:c1:38:00:00:77", "temperature") == 18.0, timeout=3)
    assert value(hub, "ble/a4:c1:38:00:00:01", "temperature") == 21.5
    assert value(hub, "ble/54:48:e6:8f:80:a5", "temperature") == 25.06
    assert adapter.evicted_total == 21 - 2


async def test_a_device_silent_long_enough_may_restart_its_counter(hub, watch, running, tmp_path, caplog):
    air = Air()
    running(make(hub, tmp_path, air, keys={LOCKED: KEY}, offline_after=0.2))
    await scanning(air, watch)
    device_id = "ble/54:48:e6:8f:80:a5"
    later = bthome_encrypted(bthome_objects([(0x02, 30.0)]), LOCKED, bytes.fromhex(KEY), counter=0x33221101)
    air.advertise(LOCKED, service_data={BTHOME_UUID: later})
    await watch.until(lambda: value(hub, device_id, "temperature") == 30.0)
    await watch.until(lambda: not hub.devices[device_id].online, timeout=5)
    with caplog.at_level(logging.WARNING):
        air.advertise(LOCKED, service_data={BTHOME_UUID: PUBLISHED_ENCRYPTED})  # an older counter, after a restart
    await watch.until(lambda: value(hub, device_id, "temperature") == 25.06)
    assert hub.devices[device_id].online
    assert not [r for r in caplog.records if "replay" in r.getMessage()]


async def test_a_configured_device_without_its_key_shows_why_in_the_api(hub, watch, running, tmp_path):
    air = Air()
    running(make(hub, tmp_path, air, addresses=[LOCKED, SENSOR]))
    await scanning(air, watch)
    for counter in (1, 2):
        sealed = bthome_encrypted(bthome_objects([(0x02, 20.0)]), LOCKED, bytes.fromhex(KEY), counter=counter)
        air.advertise(LOCKED, service_data={BTHOME_UUID: sealed})
    await watch.until(lambda: "ble/54:48:e6:8f:80:a5" in hub.devices)
    shown = device_json(hub, "ble/54:48:e6:8f:80:a5")
    assert shown["online"] is False and shown["last_seen"] is None
    assert shown["problem"]["reason"] == "BLE frame needs a bind key (BTHome)"
    assert shown["problem"]["count"] == 2


async def test_a_wrong_key_is_the_devices_problem_until_a_frame_decrypts(hub, watch, running, tmp_path, gateway_log):
    air = Air()
    running(make(hub, tmp_path, air, keys={LOCKED: KEY}))
    await scanning(air, watch)
    air.advertise(LOCKED, service_data={BTHOME_UUID: PUBLISHED_ENCRYPTED})
    await watch.until(lambda: value(hub, "ble/54:48:e6:8f:80:a5", "temperature") == 25.06)
    forged = bthome_encrypted(bthome_objects([(0x02, 99.0)]), LOCKED, bytes(16), counter=0x33221105)
    air.advertise(LOCKED, service_data={BTHOME_UUID: forged})
    await watch.until(lambda: hub.devices["ble/54:48:e6:8f:80:a5"].problem is not None)
    assert device_json(hub, "ble/54:48:e6:8f:80:a5")["problem"]["reason"] == "bind key does not decrypt the frame (BTHome)"
    good = bthome_encrypted(bthome_objects([(0x02, 21.5)]), LOCKED, bytes.fromhex(KEY), counter=0x33221106)
    air.advertise(LOCKED, service_data={BTHOME_UUID: good})
    await watch.until(lambda: value(hub, "ble/54:48:e6:8f:80:a5", "temperature") == 21.5)
    assert hub.devices["ble/54:48:e6:8f:80:a5"].problem is None
    assert gateway_log.tracebacks() == [] and gateway_log.library_errors() == []


async def test_a_gatt_device_that_cannot_connect_shows_why(hub, watch, running, tmp_path, gateway_log):
    air = Air()
    thermostat(air)
    air.refuse.add(THERMO)
    air.on_connect = lambda address: watch.poke()
    running(make(hub, tmp_path, air, gatt=[gatt_spec()], connect_attempts=1))
    await scanning(air, watch)
    air.advertise(THERMO, name="thermo")
    await watch.until(lambda: hub.devices["ble/thermo"].problem is not None, timeout=10)
    reason = device_json(hub, "ble/thermo")["problem"]["reason"]
    assert reason.startswith("cannot connect: ") and "le-connection-abort-by-local" in reason
    air.refuse.discard(THERMO)
    await watch.until(lambda: hub.devices["ble/thermo"].online, timeout=10)
    assert hub.devices["ble/thermo"].problem is None
    assert gateway_log.tracebacks() == [] and gateway_log.library_errors() == []


def device_json(hub, device_id: str) -> dict:
    """The device as /api/devices shows it."""
    return views.device_json(GatewayView("gw", hub), hub.devices[device_id])
