"""BLE advertisements decoded per second.

Two figures: the decoders alone (``Adverts.decode``, the families' parsers
included, on a mix of BTHome v2 plain and encrypted, RuuviTag format 5 and
iBeacon frames from 200 advertisers), and the whole path through the
adapter: frames delivered by
the simulated radio at bleak's backend seam into ``BleakScanner``, decoded,
deduplicated (every frame differs, so none is dropped), batched and
published into the Hub. Bounded by ``--adverts`` and ``--seconds``; no radio
and no network are used.

    .venv/bin/python bench/ble_decode.py [--adverts 100000] [--seconds 20]

A third figure sends each frame three times in a row, as sensors repeat
their frames: the copies are dropped as duplicates before any parser runs.
The last line is the headline: adverts through the adapter per second, every
one of them distinct and decoded.

Once the adapter scans, the garbage collector is set as ``edged run`` sets it
when it is ready (``edged.daemon.settle_collector``: the heap built so far
frozen, a young generation of 20,000 objects), so the adapter phases measure
the configuration the gateway runs in; the decoders alone run with Python's
defaults.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import tempfile
import time
from pathlib import Path

from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData

from edged.adapters.ble import advert, ibeacon
from edged.adapters.ble.adapter import BleAdapter
from edged.adapters.ble.config import BleConfig
from edged.adapters.ble.simulator import (
    BTHOME_UUID,
    RUUVI_COMPANY_ID,
    Air,
    bthome_encrypted,
    bthome_objects,
    bthome_plain,
    ruuvi_format5,
)
from edged.daemon import settle_collector
from edged.hub import Hub

DEVICES = 200
KEY = bytes.fromhex("231d39c1d7cc1ab1aee224cd096db932")


def address(n: int) -> str:
    high, low = divmod(n, 256)
    return f"A4:C1:38:00:{high:02X}:{low:02X}"


def frame(n: int, step: int) -> tuple[str, dict[str, bytes], dict[int, bytes]]:
    """Advertiser ``n``'s ``step``-th frame: a quarter each of the four kinds."""
    addr = address(n)
    kind = n % 4
    if kind == 0:
        objects = bthome_objects([(0x01, 90), (0x02, 20 + step % 100 / 10), (0x03, 45.5)], packet_id=step & 0xFF)
        return addr, {BTHOME_UUID: bthome_plain(objects)}, {}
    if kind == 1:
        objects = bthome_objects([(0x02, 20 + step % 100 / 10), (0x03, 45.5)])
        return addr, {BTHOME_UUID: bthome_encrypted(objects, addr, KEY, counter=step + 1)}, {}
    if kind == 2:
        data = ruuvi_format5(21.0, 50.0, 100_000, (0.0, 0.0, 1.0), 2900, 4, 1, step, addr)
        return addr, {}, {RUUVI_COMPANY_ID: data}
    beacon = ibeacon.IBeacon("e2c56db5-dffb-48d2-b060-d0f5a71096e0", 1, n, -59 - step % 2)
    return addr, {}, {ibeacon.COMPANY_ID: ibeacon.encode(beacon)}


def frames(count: int) -> list[tuple[str, dict[str, bytes], dict[int, bytes]]]:
    return [frame(i % DEVICES, i // DEVICES) for i in range(count)]


def bench_decoders(pool: list, adverts: int, seconds: float) -> float:
    keys = {address(n): KEY for n in range(1, DEVICES, 4)}
    decoders = advert.Adverts(advert.chosen(advert.formats.NAMES), keys)
    devices = {address(n): BLEDevice(address(n), None, {}) for n in range(DEVICES)}
    datas = [
        (devices[addr], AdvertisementData(None, manufacturer, service, list(service), None, -60, ()))
        for addr, service, manufacturer in pool
    ]
    done = 0
    started = time.perf_counter()
    deadline = started + seconds
    while done < adverts and time.perf_counter() < deadline:
        for n, (device, data) in enumerate(datas):
            decoders.decode(device, data, float(n))
            done += 1
            if done >= adverts or (not n % 1000 and time.perf_counter() > deadline):
                break
        else:
            continue
        break
    return done / (time.perf_counter() - started)


async def bench_adapter(pool: list, seconds: float, repeats: int = 1) -> tuple[float, int, int]:
    """Adverts/s through the adapter; with ``repeats`` > 1 each frame is sent that many times in a row
    (as sensors repeat their frames) and the copies are dropped as duplicates."""
    hub = Hub()
    readings = 0
    batches = 0

    def count(batch: list) -> None:
        nonlocal readings, batches
        batches += 1
        readings += len(batch)

    hub.subscribe(count)
    air = Air()
    config = BleConfig.model_validate({
        "type": "ble", "dedup_window": "2s" if repeats > 1 else 0, "max_devices": DEVICES * 2,
        "keys": {address(n): KEY.hex() for n in range(1, DEVICES, 4)},
    })
    with tempfile.TemporaryDirectory() as tmp:
        adapter = BleAdapter(config, hub, Path(tmp), backend=air.backend())
        task = asyncio.create_task(adapter.run())
        async with asyncio.timeout(10):
            await air.scanning.wait()
        settle_collector()  # as the daemon does once ready
        done = 0
        started = time.perf_counter()
        deadline = started + seconds
        sent = 0
        while done < len(pool) and time.perf_counter() < deadline:
            for addr, service, manufacturer in pool[done : done + 1000]:
                for _ in range(repeats):
                    air.advertise(addr, service_data=service, manufacturer_data=manufacturer)
            done += 1000
            sent += 1000 * repeats
            await asyncio.sleep(0)  # let the loop flush the batch, as between radio events
        elapsed = time.perf_counter() - started
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert adapter.errors_total == 0 and adapter.duplicates_total == sent - done, (adapter.duplicates_total, adapter.errors_total)
    return sent / elapsed, batches, readings


async def main(adverts: int, seconds: float) -> None:
    logging.basicConfig(level=logging.WARNING)
    built = time.perf_counter()
    pool = frames(adverts)  # fresh frames: counters and sequences only rise, as on the air
    print(f"ble_frames_built: {len(pool)} in {time.perf_counter() - built:.1f} s")
    decode_rate = bench_decoders(pool, adverts, seconds / 2)
    print(f"ble_decoder_only_per_s: {decode_rate:.0f} adverts/s")
    repeated, _, _ = await bench_adapter(pool[: len(pool) // 4], seconds / 8, repeats=3)
    print(f"ble_adverts_with_repeats_per_s: {repeated:.0f} adverts/s (each frame heard 3 times)")
    rate, batches, readings = await bench_adapter(pool, seconds / 2)
    print(f"ble_hub_batches: {batches} ({readings} readings)")
    print(f"ble_adverts_decoded_per_s: {rate:.0f} adverts/s")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--adverts", type=int, default=100_000, help="adverts per phase at most")
    parser.add_argument("--seconds", type=float, default=20.0, help="time for both phases at most")
    args = parser.parse_args()
    asyncio.run(main(args.adverts, args.seconds))
