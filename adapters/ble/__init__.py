"""BLE adapter: advertisements of BTHome, Xiaomi, Ruuvi, Govee, INKBIRD, Qingping,
SensorPush, ThermoPro, ATC_MiThermometer and iBeacon devices without connecting
(decoded by the Home Assistant community's parsers), and GATT devices through
bleak and bleak-retry-connector."""

from edged.adapters import Entry

ENTRY = Entry(".config:BleConfig", ".adapter:BleAdapter", cli=".cli",
              cli_help="BLE: list the advertisers in range, their family and values")
