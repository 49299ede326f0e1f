"""The gateway's log: the libraries' levels, their errors about a device, and how a device is named."""

from __future__ import annotations

import json
import logging

from edged import logs
from edged.config import GatewayConfig
from tests.gateway_log import GatewayLog, capture, gateway_log_fixture  # noqa: F401 - a fixture


async def test_libraries_log_warnings_unless_configured_and_levels_are_checked(gateway_log: GatewayLog) -> None:
    assert logging.getLogger("pymodbus").level == logging.WARNING
    assert logging.getLogger("zigpy").level == logging.WARNING
    config = GatewayConfig.model_validate({"log_levels": {"pymodbus": "debug", "aiocoap": "info", "edged.adapters.mb": "debug"}})
    capture("info", config.log_levels)
    assert logging.getLogger("pymodbus").level == logging.DEBUG
    assert logging.getLogger("coap").level == logging.INFO, "aiocoap's client logs as coap"
    assert logging.getLogger("edged.adapters.mb").level == logging.DEBUG
    assert logging.getLogger("asyncua").level == logging.WARNING
    capture("error")
    assert logging.getLogger("asyncua").level == logging.ERROR, "never more than edged itself"


async def test_a_library_error_about_a_device_is_debug_and_names_it(gateway_log: GatewayLog) -> None:
    library = logging.getLogger("pymodbus.logging")
    with logs.about("mb/meter"):
        library.error("No response received after 0 retries\n>>>>> send: 0x0 0x1 0x0 0x0")
        library.warning("Failed to connect\n>>>>> send: 0x0 0x1")
    library.error("Unhandled error in the library")  # not about a device edged reports: kept
    assert gateway_log.lines() == [
        ("WARNING", "pymodbus.logging", "[mb/meter] Failed to connect"),
        ("ERROR", "pymodbus.logging", "Unhandled error in the library"),
    ]


async def test_at_debug_the_library_shows_its_error_and_frames() -> None:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        log = capture("info", {"pymodbus": "debug"})
        with logs.about("mb/meter"):
            logging.getLogger("pymodbus.logging").error("No response received\n>>>>> send: 0x0 0x1")
        assert log.text == "DEBUG   pymodbus.logging: [mb/meter] No response received\n>>>>> send: 0x0 0x1\n"
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
        logging.getLogger("pymodbus").setLevel(logging.WARNING)


def test_json_lines_carry_the_device_as_a_field() -> None:
    record = logging.LogRecord("edged.adapters.mb", logging.WARNING, __file__, 1, "no answer", None, None)
    record.device = "mb/meter"
    assert json.loads(logs.JsonFormatter().format(record))["device"] == "mb/meter"
