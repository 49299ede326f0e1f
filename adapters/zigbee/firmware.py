"""Firmware updates (OTA) from local files, through zigpy's OTA support.

zigpy reads the images the configuration names (``ota.folder``: zigpy's file
provider; ``ota.index``: a Zigbee2MQTT-style local index) and nothing else:
its default providers, which download from the internet, are switched off.

A device says which firmware it runs only when it asks: the gateway sends
it an Image Notify, the device answers with Query Next Image (manufacturer
code, image type, current version), and zigpy matches that against the
images. An update is the OTA cluster's own exchange, driven by the device:
Image Notify, Query Next Image, one Image Block request per block, Upgrade
End; zigpy's OTA manager serves it, and then reads the new version and
interviews the device again. Progress is logged every 10 %, kept per device
for the status API and ``/metrics``, and updates that end are counted.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import zigpy.config
import zigpy.exceptions
from zigpy.zcl import ClusterType, foundation
from zigpy.zcl.clusters.general import Ota

from edged.errors import CommandError

if TYPE_CHECKING:
    import logging

    from zigpy.device import Device as ZigpyDevice
    from zigpy.ota import OtaImageWithMetadata
    from zigpy.zcl.clusters.general import QueryNextImageCommand

    from edged.adapters.zigbee.adapter import ZigbeeAdapter
    from edged.adapters.zigbee.config import Ota as OtaConfig

QUERY_TIMEOUT = 10.0  # how long a device gets to answer an Image Notify with its query
QUERY_EVENT = "ota_query_cache_updated"  # zigpy's event when a device's query arrives


def zigpy_config(ota: OtaConfig, log: logging.Logger) -> dict[str, Any]:
    """zigpy's ``ota`` settings: the local providers only, none that downloads."""
    providers: list[dict[str, Any]] = []
    if ota.folder is not None:
        if Path(ota.folder).is_dir():
            # zigpy asks whoever configures a folder to confirm they know an image can brick a device
            providers.append({"type": "advanced", "path": ota.folder, "warning": zigpy.config.CONF_OTA_ALLOW_ADVANCED_DIR_STRING})
        else:
            log.warning("ota.folder %s is not a folder: no images from it", ota.folder)
    if ota.index is not None:
        if Path(ota.index).is_file():
            providers.append({"type": "z2m_local", "index_file": ota.index})
        else:
            log.warning("ota.index %s is not a file: no images from it", ota.index)
    return {"enabled": bool(providers), "broadcast_enabled": bool(providers), "providers": [], "extra_providers": providers}


def ota_cluster(device: ZigpyDevice) -> Ota | None:
    """The device's OTA client cluster, if it takes firmware updates."""
    try:
        return device.find_cluster(cluster_id=Ota.cluster_id, cluster_type=ClusterType.Client)
    except ValueError:
        return None


class FirmwareUpdates:
    """What the adapter knows and does about its devices' firmware."""

    def __init__(self, adapter: ZigbeeAdapter) -> None:
        self.adapter = adapter
        self.progress: dict[str, float] = {}  # device id -> percent, while its update runs
        self.updates_total = 0
        self.failures_total = 0
        self.last: dict[str, dict[str, Any]] = {}  # device id -> how its last update ended
        self.ended = asyncio.Event()  # set each time an update ends, well or not

    async def query(self, device: ZigpyDevice) -> QueryNextImageCommand | None:
        """The device's own Query Next Image (its current version), asked for with an Image Notify.

        None when it does not answer in time (a sleeping device asks on its
        own schedule; zigpy keeps its last query)."""
        cluster = ota_cluster(device)
        if cluster is None:
            return None
        answered = asyncio.get_running_loop().create_future()
        unsubscribe = cluster.on_event(QUERY_EVENT, lambda _event: answered.done() or answered.set_result(None))
        try:
            await cluster.image_notify(payload_type=Ota.ImageNotifyCommand.PayloadType.QueryJitter, query_jitter=100)
            async with asyncio.timeout(QUERY_TIMEOUT):
                await answered
        except (zigpy.exceptions.ZigbeeException, TimeoutError):
            pass
        finally:
            unsubscribe()
        return cluster.last_query_cmd

    async def newest(self, device: ZigpyDevice, query: QueryNextImageCommand) -> OtaImageWithMetadata | None:
        """The newest image that fits the device and is newer than what it runs."""
        app = self.adapter._radio()
        found = await app.ota.get_ota_images(device, query)
        return found.upgrades[0] if found.upgrades else None

    async def status(self) -> list[dict[str, Any]]:
        """Every device that takes updates: its current version and the newest image for it."""
        app = self.adapter._radio()
        app.ota.invalidate_provider_caches()  # images added to the folder since are seen
        devices = [d for d in list(app.devices.values()) if self.adapter._is_peer(d) and ota_cluster(d) is not None]
        return list(await asyncio.gather(*(self._describe(d) for d in devices)))

    async def _describe(self, device: ZigpyDevice) -> dict[str, Any]:
        device_id = self.adapter.device_id(str(device.ieee))
        query = await self.query(device)
        image = await self.newest(device, query) if query is not None else None
        known = self.adapter.hub.devices.get(device_id)
        return {
            "device": device_id,
            "name": known.name if known else None,
            "manufacturer": device.manufacturer,
            "model": device.model,
            "image_type": None if query is None else int(query.image_type),
            "current_version": None if query is None else int(query.current_file_version),
            "available_version": None if image is None else int(image.version),
            "source": None if image is None else image.metadata.source,
            "progress": self.progress.get(device_id),
            "last_update": self.last.get(device_id),
        }

    async def start(self, device_ref: str) -> dict[str, Any]:
        """Start updating the device to the newest image; the update runs on (minutes, for a real one)."""
        device, _ = self.adapter._device_and_endpoint(device_ref)
        device_id = self.adapter.device_id(str(device.ieee))
        if ota_cluster(device) is None:
            raise CommandError(f"{device_id} takes no firmware updates (it has no OTA client cluster)")
        if device_id in self.progress:
            raise CommandError(f"{device_id} is already being updated ({self.progress[device_id]:.0f} %)")
        query = await self.query(device)
        if query is None:
            raise CommandError(f"{device_id} did not answer an OTA query: a sleeping device must be woken first")
        image = await self.newest(device, query)
        if image is None:
            raise CommandError(f"no newer image for {device_id} (it runs 0x{query.current_file_version:08X})")
        self.progress[device_id] = 0.0
        self.adapter.tasks.spawn(self.run(device, image, int(query.current_file_version)), name=f"{device_id} OTA")
        return {"device": device_id, "from_version": int(query.current_file_version), "to_version": int(image.version)}

    async def run(self, device: ZigpyDevice, image: OtaImageWithMetadata, current: int) -> bool:
        """Send the image to the device; log, keep and count how it went. Never raises: a failed
        update is the device's problem, not the gateway's."""
        device_id = self.adapter.device_id(str(device.ieee))
        log = self.adapter.log
        logged = [-1]

        def progress(_done: int, _total: int, percent: float) -> None:
            self.progress[device_id] = round(percent, 1)
            if int(percent) // 10 > logged[0]:
                logged[0] = int(percent) // 10
                log.info("%s: firmware update %d %%", device_id, int(percent), extra={"device": device_id})

        self.progress[device_id] = 0.0
        log.info("%s: firmware update 0x%08X -> 0x%08X (%s)", device_id, current, image.version, image.metadata.source,
                 extra={"device": device_id})  # fmt: skip
        try:
            result = await device.update_firmware(image, progress_callback=progress)
            reason = None if result == foundation.Status.SUCCESS else f"device ended with {_status(result)}"
        except Exception as exc:  # noqa: BLE001 - zigpy's update raises whatever the exchange met; the device is what failed
            reason = f"{type(exc).__name__}: {exc}"
        finally:
            self.progress.pop(device_id, None)
        self.last[device_id] = {"to_version": int(image.version), "ok": reason is None, "reason": reason, "at": time.time()}
        self.ended.set()
        if reason is not None:
            self.failures_total += 1
            self.adapter.errors_total += 1
            log.warning("%s: firmware update failed: %s", device_id, reason, extra={"device": device_id})
            self.adapter.problem(device_id, f"firmware update failed: {reason}")
            return False
        self.updates_total += 1
        log.info("%s: firmware updated to 0x%08X", device_id, image.version, extra={"device": device_id})
        return True

    async def auto_update(self) -> None:
        """Every ``ota.check_interval``, update each device a newer image fits, one at a time."""
        while True:
            await asyncio.sleep(self.adapter.config.ota.check_interval)
            app = self.adapter.app
            if app is None:
                continue
            app.ota.invalidate_provider_caches()
            for device in [d for d in list(app.devices.values()) if self.adapter._is_peer(d) and ota_cluster(d)]:
                device_id = self.adapter.device_id(str(device.ieee))
                query = await self.query(device) if device_id not in self.progress else None
                image = await self.newest(device, query) if query is not None else None
                if image is not None:
                    await self.run(device, image, int(query.current_file_version))


def _status(result: object) -> str:
    """A ZCL status as its name (``INVALID_IMAGE``), anything else as it is."""
    try:
        return foundation.Status(result).name  # type: ignore[arg-type]
    except ValueError:
        return repr(result)
