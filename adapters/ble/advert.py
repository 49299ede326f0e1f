"""Advertisements to measurements: which families (the table in formats.py)
claim an advertisement, and what their decoders say. Decoders that keep
state per device (the parsers) are made on a device's first frame, with its
key from ``keys:``, and forgotten with the device (or, past ``capacity``
devices, the one heard longest ago). No I/O: the adapter adds filtering,
deduplication and presence on top."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Collection, Mapping, Sequence

from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData

from edged.adapters.ble import formats
from edged.adapters.ble.formats import AdvertFormat, Decoded, Decoder, NeedsKey, Replay
from edged.adapters.ble.measurement import Measurement
from edged.model import ValueType

__all__ = ["AdvertError", "Adverts", "Decoded", "NeedsKey", "Replay", "chosen"]


class AdvertError(ValueError):
    """A frame of a known family that cannot be used; ``str()`` says why, ``__cause__`` is a
    ``Replay``, a ``NeedsKey`` or another ``ValueError``; ``family`` names the family."""

    def __init__(self, message: str, family: str = "") -> None:
        super().__init__(message)
        self.family = family


def chosen(names: Collection[str]) -> tuple[AdvertFormat, ...]:
    """The families among ``names`` (a configuration's ``formats:``), in the table's order."""
    return formats.load(names)


class Adverts:
    """Decodes advertisements with the decoders of ``among``, one per device and family."""

    def __init__(self, among: Sequence[AdvertFormat], keys: Mapping[str, bytes] | None = None,
                 capacity: int = 1024) -> None:  # fmt: skip
        self.formats = tuple(among)
        self._keys = dict(keys or {})  # upper-case address -> key
        # Which families may claim an advertisement, found by what it carries: most adverts
        # are ruled out without asking any family.
        self._by_uuid: dict[str, list[AdvertFormat]] = {}
        self._by_company: dict[int, list[AdvertFormat]] = {}
        for kind in self.formats:
            for uuid in kind.service_uuids:
                self._by_uuid.setdefault(uuid, []).append(kind)
            for company in kind.company_ids:
                self._by_company.setdefault(company, []).append(kind)
        self._by_name = tuple(k for k in self.formats if k.names)
        self._named = bool(self._by_name)  # a name may decide a claim
        self._by_advertised = tuple(k for k in self.formats if k.advertised_uuids)
        self._seen_kinds: dict[tuple[object, ...], tuple[tuple[AdvertFormat, bool], ...]] = {}
        self._capacity = capacity
        self._devices: OrderedDict[str, dict[str, Decoder]] = OrderedDict()  # least recently heard first

    def decode(self, device: BLEDevice, adv: AdvertisementData, now: float = 0.0) -> list[Decoded]:
        """What ``adv`` from ``device`` says, one ``Decoded`` per family that claims it and has
        something to say. Raise ``AdvertError`` for a frame that cannot be used."""
        signature = (tuple(adv.service_data), tuple(adv.manufacturer_data),
                     tuple(adv.service_uuids) if self._by_advertised else (),
                     self._named and bool(adv.local_name))  # fmt: skip
        candidates = self._seen_kinds.get(signature)
        if candidates is None:
            candidates = self._candidates(adv, signature)
        out: list[Decoded] = []
        add_rssi = False  # to the first frame, if its family wants it
        decoders: dict[str, Decoder] | None = None
        for kind, sure in candidates:
            if not sure and not kind.claims(adv):
                continue
            if kind.per_device:
                if decoders is None:
                    address = device.address.upper()
                    decoders = self._devices.get(address)
                    if decoders is None:
                        decoders = self._decoders(address)
                    else:
                        self._devices.move_to_end(address)
                decoder = decoders.get(kind.name)
                if decoder is None:
                    key = self._keys.get(device.address.upper()) if kind.keyed else None
                    decoder = decoders[kind.name] = kind.decoder(key)
            else:
                decoder = kind.decoder(None)
            try:
                frame = decoder(device, adv, now)
            except ValueError as exc:
                raise AdvertError(f"{kind.label}: {exc}", kind.label) from exc
            if frame is not None:
                add_rssi = add_rssi or (not out and kind.rssi and not kind.per_device)
                out.append(frame)
        if add_rssi:  # the parsers report the RSSI themselves
            first = out[0]
            out[0] = first._replace(measurements=(*first.measurements, Measurement("rssi", adv.rssi, "dBm", ValueType.INT)))
        return out

    def _candidates(self, adv: AdvertisementData, signature: tuple[object, ...]) -> Sequence[tuple[AdvertFormat, bool]]:
        """The families that may claim ``adv``, in the table's order, each with whether what ``adv``
        carries proves the claim (no need to ask the family). Cached by what decides it,
        ``signature``: the UUIDs and company ids of its data, the service UUIDs it advertises,
        whether it has a name (a place holds few kinds of advertisement)."""
        if len(self._seen_kinds) >= 512:
            self._seen_kinds.clear()
        found = self._seen_kinds[signature] = self._claimants(adv, bool(signature[3]))
        return found

    def _claimants(self, adv: AdvertisementData, named: bool) -> tuple[tuple[AdvertFormat, bool], ...]:
        sure = {kind.name for uuid in adv.service_data for kind in self._by_uuid.get(uuid, ())}
        sure.update(kind.name for company in adv.manufacturer_data for kind in self._by_company.get(company, ())
                    if not kind.prefix)  # fmt: skip
        sure.update(kind.name for kind in self._by_advertised if not kind.advertised_uuids.isdisjoint(adv.service_uuids))
        maybe = {kind.name for company in adv.manufacturer_data for kind in self._by_company.get(company, ())}
        if named:  # the name decides: asked of the family
            maybe.update(kind.name for kind in self._by_name)
        return tuple((kind, kind.name in sure) for kind in self.formats if kind.name in sure or kind.name in maybe)

    def forget(self, address: str) -> None:
        """Drop what the decoders remember of ``address`` (it went silent, or was evicted): its
        next frame starts afresh, encryption counter included."""
        self._devices.pop(address.upper(), None)

    def __len__(self) -> int:
        return len(self._devices)

    def _decoders(self, address: str) -> dict[str, Decoder]:
        """A place for the decoders of a device heard for the first time (or again, once forgotten)."""
        if len(self._devices) >= self._capacity:
            self._devices.popitem(last=False)
        decoders = self._devices[address] = {}
        return decoders
