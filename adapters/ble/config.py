"""Configuration of the BLE adapter (pydantic only: validating a file never imports bleak
or a parser).

Advertisements of the families in ``formats:`` (BTHome, Xiaomi, Ruuvi, Govee,
INKBIRD, Qingping, SensorPush, ThermoPro, ATC_MiThermometer, iBeacon) become
readings without connecting; GATT devices declared here are connected, read
or subscribed, and written through bleak-retry-connector.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, BeforeValidator, Field, SecretStr, model_validator

from edged.adapter import AdapterConfig
from edged.adapters.ble.formats import ALIASES, NAMES
from edged.fields import DeclaredDevice, Duration, Key, Model, Secret, unique

_ADDRESS = re.compile(r"^[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}$")
_UUID16 = re.compile(r"^(0x)?[0-9A-Fa-f]{4}$")
_UUID128 = re.compile(r"^[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}$")

DecoderName = Literal[
    "int8", "uint8",
    "int16_le", "int16_be", "uint16_le", "uint16_be",
    "int32_le", "int32_be", "uint32_le", "uint32_be",
    "float32_le", "float32_be",
    "utf8", "raw",
]


def _address(value: str) -> str:
    if not _ADDRESS.match(value):
        raise ValueError(f"expected a Bluetooth address such as A4:C1:38:0D:1E:5F; got {value!r}")
    return value.upper()


def _uuid(value: str) -> str:
    """Accept a 16-bit UUID (``2a6e``, ``0x2A6E``) or a full 128-bit one; return the 128-bit lower-case form."""
    if _UUID16.match(value):
        return f"0000{value[-4:].lower()}-0000-1000-8000-00805f9b34fb"
    if _UUID128.match(value):
        return value.lower()
    raise ValueError(f"expected a 16-bit UUID such as 2a6e or a 128-bit UUID; got {value!r}")


def _bind_key(value: SecretStr) -> SecretStr:
    if not re.fullmatch(r"[0-9A-Fa-f]{32}|[0-9A-Fa-f]{24}", value.get_secret_value()):
        # ":": never echo a secret
        raise ValueError("a bind key is 32 hexadecimal characters (16 bytes; 24 for MiBeacon v2/v3 devices):")
    return value


def _family(value: object) -> object:
    return ALIASES.get(value, value) if isinstance(value, str) else value


Address = Annotated[str, AfterValidator(_address)]
Uuid = Annotated[str, AfterValidator(_uuid)]
BindKey = Annotated[Secret, AfterValidator(_bind_key)]
Family = Annotated[Literal[NAMES], BeforeValidator(_family)]  # type: ignore[valid-type]


class Characteristic(Model):
    """One GATT characteristic mapped to one point."""

    key: Key
    uuid: Uuid
    decoder: DecoderName = "uint8"
    scale: float = 1.0  # value = raw * scale (integer decoders); written values are divided by it
    unit: str | None = None
    notify: bool = False  # subscribe to notifications
    interval: Duration | None = Field(None, gt=0)  # read every interval
    writable: bool = False  # accept Commands
    write_response: bool = True  # write with response (acknowledged by the device)

    @model_validator(mode="after")
    def _has_a_use(self) -> Characteristic:
        if not (self.notify or self.interval or self.writable):
            raise ValueError("a characteristic needs notify: true, an interval, or writable: true:")
        if self.notify and self.interval:
            raise ValueError("choose notify: true or an interval, not both:")
        if self.scale == 0:
            raise ValueError("scale cannot be 0:")
        return self


class GattDevice(DeclaredDevice):
    address: Address
    characteristics: Annotated[list[Characteristic], unique("key", "characteristics")] = Field(min_length=1)


class BleConfig(AdapterConfig):
    type: Literal["ble"]
    # "bleak" uses the machine's Bluetooth (BlueZ); "simulated" uses edged's
    # built-in simulated sensors (for demos and laptops).
    backend: Literal["bleak", "simulated"] = "bleak"
    adapter: str | None = None  # BlueZ adapter such as hci0; default: the system's default
    scanning: Literal["active", "passive"] = "active"
    # Advertisement filters: empty lists take every advertiser of a family in
    # formats:; otherwise an advertiser must match an address or a name
    # pattern (shell-style, e.g. "SBHT-*").
    addresses: list[Address] = []
    names: list[str] = []
    formats: list[Family] = list(NAMES)  # the device families to decode (each parser is imported only if named)
    keys: dict[Address, BindKey] = {}  # address -> bind key of a device that encrypts (BTHome, Xiaomi)
    bthome_keys: dict[Address, BindKey] = {}  # the older name of keys:, still read
    dedup_window: Duration = 2.0  # identical advertisements from one device within this window are dropped
    offline_after: Duration = Field(600.0, gt=0)  # an advertiser silent this long goes offline
    # Advertisers tracked at most (bounds memory in busy places). When all are
    # taken, a new advertiser takes the place of the one silent longest; those
    # named in addresses, keys or gatt are never evicted.
    max_devices: int = Field(256, ge=1)
    gatt: Annotated[list[GattDevice], unique("id", "GATT devices")] = []
    max_connections: int = Field(3, ge=1, le=10)  # simultaneous GATT connections
    connect_attempts: int = Field(3, ge=1)  # attempts per connection round (bleak-retry-connector)
    reconnect_max: Duration = Field(60.0, gt=0)  # longest wait between reconnection rounds

    @model_validator(mode="after")
    def _check(self) -> BleConfig:
        if self.scanning == "passive" and self.gatt:
            raise ValueError(
                "passive scanning only sees the advertisements of the families in formats:, so GATT devices "
                "would never be found; use scanning: active:"
            )
        for address, key in self.bthome_keys.items():
            known = self.keys.get(address)
            if known is not None and known.get_secret_value().lower() != key.get_secret_value().lower():
                raise ValueError(f"{address} has one key under keys: and another under bthome_keys:; keep it "
                                 "under keys: only:")  # fmt: skip
        return self

    def all_keys(self) -> dict[str, bytes]:
        """Every device's key (``keys:`` and the older ``bthome_keys:``), by upper-case address."""
        merged = {**self.bthome_keys, **self.keys}
        return {address: bytes.fromhex(key.get_secret_value()) for address, key in merged.items()}
