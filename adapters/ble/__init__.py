"""BLE adapter: BTHome v2, RuuviTag and iBeacon advertisements without
connecting, and GATT devices through bleak and bleak-retry-connector."""
