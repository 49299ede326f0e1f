"""Firmware updates from local files: the simulated plug takes an image through
zigpy's OTA cluster exchange (Image Notify, Query Next Image, Image Block
requests, Upgrade End) and then runs the new version."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging

import pytest
import zigpy.device
from zigpy.ota.image import ElementTagId, FieldControl, HeaderString, OTAImage, OTAImageHeader, SubElement
from zigpy.zcl import foundation

from edged.adapter import RouteError
from edged.adapters.zigbee import routes
from edged.adapters.zigbee.adapter import ZigbeeAdapter
from edged.adapters.zigbee.config import ZigbeeConfig
from edged.adapters.zigbee.simulator import PLUG_FIRMWARE, PLUG_IMAGE_TYPE
from edged.errors import CommandError
from edged.model import Quality

PLUG, LAMP = "00:0d:6f:00:0e:d9:ed:01", "00:0d:6f:00:0e:d9:ed:02"
MANUFACTURER = 0x1002  # the simulated devices' manufacturer code (node descriptor)
NEW = PLUG_FIRMWARE + 1


@pytest.fixture(autouse=True)
def no_post_update_pause(monkeypatch):
    """zigpy gives a real device 10 s to reboot before reading its new version; the simulated one reboots at once."""
    monkeypatch.setattr(zigpy.device, "AFTER_OTA_ATTR_READ_DELAY", 0)


def image(version: int, image_type: int = PLUG_IMAGE_TYPE, size: int = 300) -> bytes:
    """A Zigbee OTA file (ZCL 11.4): the 56-byte header, then one upgrade image sub-element."""
    element = SubElement(tag_id=ElementTagId.UPGRADE_IMAGE, data=bytes(range(256)) * (size // 256) + bytes(size % 256))
    header = OTAImageHeader(
        upgrade_file_id=OTAImageHeader.MAGIC_VALUE, header_version=0x0100, header_length=56,
        field_control=FieldControl(0), manufacturer_id=MANUFACTURER, image_type=image_type, file_version=version,
        stack_version=2, header_string=HeaderString("edged simulated plug"), image_size=56 + len(element.serialize()),
    )
    return OTAImage(header=header, subelements=[element]).serialize()


def make(hub, tmp_path, **ota) -> ZigbeeAdapter:
    config = {
        "type": "zigbee", "name": "zb", "radio": "simulated", "ota": ota,
        "simulated": {"devices": [{"kind": "plug", "ieee": PLUG}, {"kind": "lamp", "ieee": LAMP}], "report_interval": 0},
    }
    return ZigbeeAdapter(ZigbeeConfig.model_validate(config), hub, tmp_path / "zb")


async def pair(adapter: ZigbeeAdapter, hub, watch) -> None:
    async with asyncio.timeout(10):
        await adapter.ready.wait()
    await adapter.permit_join(30)
    last = {PLUG: "demand", LAMP: "color_temp"}
    await watch.until(lambda: all((r := hub.value(f"zb/{i}", k)) is not None and r.quality is Quality.GOOD for i, k in last.items()))


async def ended(adapter: ZigbeeAdapter) -> None:
    async with asyncio.timeout(10):
        await adapter.firmware.ended.wait()
    adapter.firmware.ended.clear()


async def test_the_plug_takes_an_image_from_the_folder_through_the_ota_exchange(hub, watch, running, tmp_path, caplog):
    folder = tmp_path / "firmware"
    folder.mkdir()
    (folder / "plug-new.ota").write_bytes(image(NEW))
    (folder / "other-device.ota").write_bytes(image(NEW + 5, image_type=0x0999))  # fits no device here
    (folder / "notes.txt").write_text("not an image")
    adapter = make(hub, tmp_path, folder=str(folder))
    running(adapter)
    await pair(adapter, hub, watch)

    listed = (await routes.ota_status(adapter, {}))["devices"]
    assert [(d["device"], d["current_version"], d["available_version"]) for d in listed] == [(f"zb/{PLUG}", PLUG_FIRMWARE, NEW)]

    caplog.set_level(logging.INFO, logger="edged.adapters.zb")
    started = await routes.ota_update(adapter, {"device": f"zb/{PLUG}"})
    assert started == {"device": f"zb/{PLUG}", "from_version": PLUG_FIRMWARE, "to_version": NEW}
    await ended(adapter)
    assert adapter.firmware.last[f"zb/{PLUG}"]["ok"], adapter.firmware.last

    plug = adapter.app.node(PLUG)
    sent = [name for name, _ in plug.ota_requests]
    first, end = sent.index("image_block"), sent.index("upgrade_end")
    assert sent[first - 1] == "query_next_image"
    assert sent[first:end] == ["image_block"] * -(-len(image(NEW)) // 50)  # zigpy serves 50-byte blocks
    assert plug.ota_requests[end][1]["status"] == 0  # the device found the image whole
    assert plug.ota_requests[-1][0] == "query_next_image" and plug.ota_requests[-1][1]["current_file_version"] == NEW
    assert plug.values[(0x0019, "current_file_version")] == NEW
    stats = adapter.stats()
    assert (stats.ota_updates, stats.ota_failures, stats.ota_progress) == (1, 0, {})
    progress = [r.getMessage() for r in caplog.records if "firmware update" in r.getMessage()]
    assert progress[0].endswith(f"0x{PLUG_FIRMWARE:08X} -> 0x{NEW:08X} (Advanced file provider ({folder}))")
    assert f"zb/{PLUG}: firmware update 100 %" in progress

    listed = (await routes.ota_status(adapter, {}))["devices"]
    assert (listed[0]["current_version"], listed[0]["available_version"]) == (NEW, None)
    with pytest.raises(RouteError) as error:
        await routes.ota_update(adapter, {"device": f"zb/{PLUG}"})
    assert error.value.status == 409 and "no newer image" in str(error.value)


async def test_a_zigbee2mqtt_style_local_index_names_the_images(hub, watch, running, tmp_path):
    data = image(NEW)
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "plug.ota").write_bytes(data)
    entry = {"fileVersion": NEW, "fileSize": len(data), "manufacturerCode": MANUFACTURER, "imageType": PLUG_IMAGE_TYPE,
             "sha512": hashlib.sha512(data).hexdigest(), "url": "images/plug.ota", "path": "images/plug.ota",
             "modelId": "smart plug"}
    index = tmp_path / "index.json"
    index.write_text(json.dumps([entry, {**entry, "fileVersion": NEW + 9, "modelId": "another plug"}]))
    adapter = make(hub, tmp_path, index=str(index))
    running(adapter)
    await pair(adapter, hub, watch)
    assert (await adapter.firmware.start(f"zb/{PLUG}"))["to_version"] == NEW  # the other model's newer image is not offered
    await ended(adapter)
    assert adapter.app.node(PLUG).values[(0x0019, "current_file_version")] == NEW


async def test_auto_update_takes_new_images_without_being_asked(hub, watch, running, tmp_path):
    folder = tmp_path / "firmware"
    folder.mkdir()
    adapter = make(hub, tmp_path, folder=str(folder), auto_update=True, check_interval="100ms")
    running(adapter)
    await pair(adapter, hub, watch)
    (folder / "plug.ota").write_bytes(image(NEW))  # dropped in while the gateway runs
    await ended(adapter)
    assert adapter.app.node(PLUG).values[(0x0019, "current_file_version")] == NEW
    assert adapter.stats().ota_updates == 1


async def test_without_local_images_nothing_is_offered_and_nothing_downloaded(hub, watch, running, tmp_path):
    adapter = make(hub, tmp_path)
    assert adapter.zigpy_config()["ota"]["providers"] == [] and adapter.zigpy_config()["ota"]["extra_providers"] == []
    running(adapter)
    await pair(adapter, hub, watch)
    assert [d["available_version"] for d in await adapter.firmware.status()] == [None]
    with pytest.raises(CommandError, match="no newer image"):
        await adapter.firmware.start(f"zb/{PLUG}")
    with pytest.raises(CommandError, match="takes no firmware updates"):
        await adapter.firmware.start(f"zb/{LAMP}")


async def test_a_failed_update_is_the_devices_problem_with_the_status_it_ended_with(hub, watch, running, tmp_path):
    folder = tmp_path / "firmware"
    folder.mkdir()
    (folder / "plug-new.ota").write_bytes(image(NEW))
    adapter = make(hub, tmp_path, folder=str(folder))
    running(adapter)
    await pair(adapter, hub, watch)
    adapter.app.node(PLUG).ota_status = foundation.Status.INVALID_IMAGE  # its bootloader rejects the image
    await routes.ota_update(adapter, {"device": f"zb/{PLUG}"})
    await ended(adapter)
    assert adapter.firmware.last[f"zb/{PLUG}"]["reason"] == "device ended with INVALID_IMAGE"
    problem = hub.devices[f"zb/{PLUG}"].problem
    assert problem is not None and problem.reason == "firmware update failed: device ended with INVALID_IMAGE"
    assert adapter.stats().ota_failures == 1
