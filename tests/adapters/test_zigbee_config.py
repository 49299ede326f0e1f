"""The Zigbee configuration model: what it accepts, what it refuses and why,
and that validating it never imports zigpy."""

from __future__ import annotations

import subprocess
import sys

import pytest
from pydantic import ValidationError

from edged.adapters.zigbee.config import ZigbeeConfig


def validate(**fields) -> ZigbeeConfig:
    return ZigbeeConfig.model_validate({"type": "zigbee", **fields})


def test_real_radio_with_serial_port_and_defaults():
    config = validate(radio="znp", serial={"path": "/dev/ttyACM0"})
    assert config.serial.baudrate == 115200
    assert (config.silence.mains, config.silence.battery) == (7200.0, 21600.0)
    assert config.permit_join.default == 60 and config.permit_join.on_start == 0


def test_durations_and_network_settings():
    config = validate(
        radio="ezsp", serial={"path": "/dev/ttyUSB0", "baudrate": 460800, "flow_control": "hardware"},
        network={"channel": 15, "pan_id": 0x1A62, "extended_pan_id": "dd:dd:dd:dd:dd:dd:dd:dd",
                 "key": "01:03:05:07:09:0B:0D:0F:00:02:04:06:08:0A:0C:0D"},
        silence={"mains": "15m", "battery": "8h"},
    )
    assert (config.silence.mains, config.silence.battery) == (900.0, 28800.0)
    assert config.network.key.get_secret_value().startswith("01:03")


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"radio": "znp"}, "radio 'znp' needs serial"),
        ({"radio": "simulated", "serial": {"path": "/dev/ttyACM0"}}, "takes no serial port"),
        ({"radio": "cc2531", "serial": {"path": "/dev/ttyACM0"}}, "'znp', 'ezsp', 'deconz', 'xbee', 'zigate' or 'simulated'"),
        ({"radio": "znp", "serial": {"path": "/dev/x"}, "network": {"channel": 27}}, "less than or equal to 26"),
        ({"radio": "znp", "serial": {"path": "/dev/x"}, "network": {"channels": [11, 30]}}, "between 11 and 26"),
        ({"radio": "znp", "serial": {"path": "/dev/x"}, "network": {"key": "abc"}}, "32 hex digits"),
        ({"radio": "znp", "serial": {"path": "/dev/x"}, "permit_join": {"default": 300}}, "less than or equal to 254"),
        ({"radio": "znp", "serial": {"path": "/dev/x"}, "silence": {"mains": "soon"}}, "expected a duration"),
        ({"radio": "simulated", "simulated": {"devices": [{"kind": "toaster"}]}}, "'climate', 'motion'"),
        ({"radio": "simulated", "simulated": {"devices": [{"kind": "lamp", "ieee": "12:34"}]}},
         "expected an IEEE address of 8 hex bytes such as 00:12:4b:00:1c:a1:b2:c3; got '12:34'"),
        ({"radio": "simulated", "network": {"extended_pan_id": "dd-dd"}},
         "expected an extended PAN id of 8 hex bytes such as 00:12:4b:00:1c:a1:b2:c3; got 'dd-dd'"),
        ({"radio": "simulated", "silence": {"failed_pings": 0}}, "greater than or equal to 1"),
        ({"radio": "simulated", "silence": {"ping_after": "-1s"}}, "ping_after"),
        ({"radio": "simulated", "topology": {"weak_lqi": 300}}, "less than or equal to 255"),
        ({"radio": "simulated", "ota": {"check_interval": "0s"}}, "greater than 0"),
        ({"radio": "simulated", "ota": {"url": "https://example.invalid/index.json"}}, "Extra inputs are not permitted"),
        ({"radio": "simulated", "groups": [{"id": 16, "name": "a"}, {"id": 16, "name": "b"}]},
         "each group needs its own id; 16 given more than once"),
        ({"radio": "simulated", "groups": [{"id": 16, "name": "hall", "members": ["lamp"]}]},
         "expected an IEEE address, optionally with /endpoint"),
        ({"radio": "simulated", "groups": [{"id": 0xFFF8, "name": "hall"}]}, "less than or equal to 65527"),
        ({"radio": "simulated", "bindings": [{"source": "00:0d:6f:00:0e:d9:ed:04", "target": "hall"}]},
         "target 'hall' is neither an IEEE address nor a group name"),
        ({"radio": "simulated", "bindings": [{"source": "00:0d:6f:00:0e:d9:ed:04", "target": "00:0d:6f:00:0e:d9:ed:01",
                                              "cluster": "humidity"}]}, "'on_off', 'level'"),
    ],
)
def test_bad_settings_say_what_was_expected(fields, message):
    with pytest.raises(ValidationError, match=message):
        validate(**fields)


def test_defaults_of_availability_map_and_firmware():
    config = validate(radio="znp", serial={"path": "/dev/ttyACM0"})
    assert (config.silence.ping_after, config.silence.failed_pings) == (600.0, 3)
    assert (config.topology.scan_interval, config.topology.weak_lqi) == (14400.0, 80)
    assert (config.ota.folder, config.ota.index, config.ota.auto_update) == (None, None, False)
    assert (config.groups, config.bindings, config.quirks) == ([], [], None)


def test_simulated_radio_defaults_to_the_demo_devices():
    config = validate(radio="simulated")
    assert [d.kind for d in config.simulation.devices] == ["motion", "lamp", "plug"]


def test_validating_imports_no_zigpy():
    code = (
        "import sys\n"
        "from edged.adapters.zigbee.config import ZigbeeConfig\n"
        "ZigbeeConfig.model_validate({'type': 'zigbee', 'radio': 'znp', 'serial': {'path': '/dev/ttyACM0'}})\n"
        "assert not [m for m in sys.modules if m.startswith(('zigpy', 'bellows'))], 'zigpy imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
