"""Advertisements to measurements: which known formats an advertisement
carries (the table in formats.py: BTHome v2, ATC_MiThermometer or Xiaomi
MiBeacon service data, RuuviTag format 5 or iBeacon manufacturer data) and
what they say. Pure functions, no I/O: the adapter adds filtering,
deduplication and presence on top."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence

from bleak.backends.scanner import AdvertisementData

from edged.adapters.ble import formats
from edged.adapters.ble.formats import AdvertFormat, Decoded
from edged.adapters.ble.measurement import Measurement
from edged.model import ValueType

__all__ = ["ALL_FORMATS", "AdvertError", "Decoded", "chosen", "decode"]


class AdvertError(ValueError):
    """A frame in a known format that does not decode; ``str()`` says why."""


ALL_FORMATS = formats.load()


def chosen(names: Collection[str]) -> tuple[AdvertFormat, ...]:
    """The formats among ``names`` (a configuration's ``formats:``), in the table's order."""
    return tuple(f for f in ALL_FORMATS if f.name in names)


def decode(
    address: str, adv: AdvertisementData, among: Sequence[AdvertFormat] = ALL_FORMATS,
    keys: Mapping[str, bytes] | None = None,
) -> list[Decoded]:
    """Decode every frame of the formats ``among`` in ``adv`` from ``address`` (upper case);
    ``keys`` maps addresses to keys (BTHome bind keys). Raise ``AdvertError``."""
    out: list[Decoded] = []
    add_rssi = False  # to the first frame, if its format wants it
    for kind in among:
        data = (adv.service_data.get(kind.service_uuid) if kind.company_id is None  # type: ignore[arg-type]
                else adv.manufacturer_data.get(kind.company_id))  # fmt: skip
        if data is None:
            continue
        try:
            frame = kind.decode(data, address, adv.rssi, keys.get(address) if kind.keyed and keys else None)
        except ValueError as exc:
            raise AdvertError(f"{kind.label}: {exc}") from exc
        if frame is not None:
            add_rssi = add_rssi or (not out and kind.rssi)
            out.append(frame)
    if add_rssi:
        first = out[0]
        out[0] = first._replace(measurements=(*first.measurements, Measurement("rssi", adv.rssi, "dBm", ValueType.INT)))
    return out
