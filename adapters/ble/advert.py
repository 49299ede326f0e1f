"""Advertisements to measurements: which known format an advertisement
carries (BTHome v2, ATC_MiThermometer or Xiaomi MiBeacon service data,
RuuviTag format 5 or iBeacon manufacturer data) and what it says. Pure functions, no I/O: the adapter adds filtering,
deduplication and presence on top."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import NamedTuple

from bleak.backends.scanner import AdvertisementData

from edged.adapters.ble import atc, bthome, ibeacon, mibeacon, ruuvi
from edged.adapters.ble.measurement import Measurement
from edged.model import ValueType


class Decoded(NamedTuple):
    """What one advertisement said about one device."""

    native_id: str  # the address (lower case), or ibeacon-<uuid>-<major>-<minor>
    model: str
    payload: bytes  # the frame itself: equal payloads are duplicates
    measurements: tuple[Measurement, ...]
    counter: int | None = None  # BTHome encryption counter (replay protection)


class AdvertError(ValueError):
    """A frame in a known format that does not decode; ``str()`` says why."""


ALL_FORMATS = frozenset({"bthome", "atc", "mibeacon", "ruuvi", "ibeacon"})


def decode(
    address: str, adv: AdvertisementData, formats: Collection[str] = ALL_FORMATS,
    keys: Mapping[str, bytes] | None = None,
) -> list[Decoded]:
    """Decode every known frame in ``adv`` from ``address`` (upper case);
    ``keys`` maps addresses to BTHome bind keys. Raise ``AdvertError``."""
    out: list[Decoded] = []
    native = address.lower()
    if "bthome" in formats and (data := adv.service_data.get(bthome.UUID)) is not None:
        try:
            packet = bthome.decode(data, address, (keys or {}).get(address))
        except ValueError as exc:  # BTHomeError, or an address that is no MAC (macOS gives UUIDs)
            raise AdvertError(f"BTHome: {exc}") from exc
        measurements = tuple(m for m in packet.measurements if m.key != "packet_id")
        out.append(Decoded(native, "BTHome v2", data, measurements, packet.counter))
    if "atc" in formats and (data := adv.service_data.get(atc.UUID)) is not None:
        try:
            reading = atc.decode(data)
        except atc.AtcError as exc:
            raise AdvertError(f"ATC: {exc}") from exc
        out.append(Decoded(native, f"ATC_MiThermometer ({reading.layout})", data, reading.measurements))
    if "mibeacon" in formats and (data := adv.service_data.get(mibeacon.UUID)) is not None:
        try:
            xiaomi = mibeacon.decode(data)
        except mibeacon.MiBeaconError as exc:
            raise AdvertError(f"MiBeacon: {exc}") from exc
        if xiaomi.measurements:  # frames without an object (pairing, keep-alive) say nothing
            out.append(Decoded(native, f"Xiaomi MiBeacon 0x{xiaomi.product:04X}", data, xiaomi.measurements))
    if "ruuvi" in formats and (data := adv.manufacturer_data.get(ruuvi.COMPANY_ID)) is not None:
        try:
            frame = ruuvi.decode(data)
        except ruuvi.RuuviError as exc:
            raise AdvertError(f"Ruuvi: {exc}") from exc
        out.append(Decoded(native, "RuuviTag", data, frame.measurements))
    if "ibeacon" in formats and (data := adv.manufacturer_data.get(ibeacon.COMPANY_ID)) is not None:
        beacon = ibeacon.decode(data)
        if beacon is not None:
            measurements = (
                Measurement("present", True, None, ValueType.BOOL),
                Measurement("rssi", adv.rssi, "dBm", ValueType.INT),
                Measurement("distance", ibeacon.distance(beacon.power, adv.rssi), "m", ValueType.FLOAT),
            )
            out.append(Decoded(beacon.native_id, "iBeacon", data, measurements))
    if out and out[0].model != "iBeacon":
        first = out[0]
        out[0] = first._replace(measurements=(*first.measurements, Measurement("rssi", adv.rssi, "dBm", ValueType.INT)))
    return out
