"""``edged ble scan``: what is in range, which family decodes it and its values,
heard through the simulated air at bleak's backend seam."""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys

from edged.adapters.ble import cli
from edged.adapters.ble.formats import NAMES, service_uuid
from edged.adapters.ble.simulator import Air

LYWSD03MMC = "A4:C1:38:02:83:F4"
FRAME = bytes.fromhex("58585b0550f4830238c1a495ef58763c26000097e2abb5")  # published with its bind key below
KEY = "e9ea895fac7cca6d30532432a516f3a8"


async def _scan(air: Air, keys: dict[str, bytes]) -> dict[str, cli.Seen]:
    async def advertise() -> None:
        await air.scanning.wait()
        air.advertise(LYWSD03MMC, name="LYWSD03MMC", service_data={service_uuid(0xFE95): FRAME})
        air.advertise("A4:C1:38:DD:DB:F8", name="GVH5075_DBF8", manufacturer_data={0xEC88: bytes.fromhex("00034db26400")})
        air.advertise("11:22:33:44:55:66", name="phone")

    sender = asyncio.create_task(advertise())
    seen = await cli.scan(0.2, list(NAMES), keys, backend=air.backend())
    await sender
    return seen


async def test_scan_lists_family_model_values_and_what_a_key_would_unlock():
    seen = await _scan(Air(), {})
    text = cli.render(seen)
    assert "A4:C1:38:DD:DB:F8  GVH5075_DBF8" in text
    assert "  family: Govee  model: H5075\n  temperature: 21.6 Cel\n  humidity: 49.8 %RH\n  battery: 100 %EL" in text
    assert (f"{LYWSD03MMC}  LYWSD03MMC" in text
            and "  problem: Xiaomi: the frames are encrypted and keys: has no bind key for this address" in text)
    assert "(1 other advertiser(s) no family decodes; --all lists them)" in text
    assert "11:22:33:44:55:66  phone" in cli.render(seen, show_all=True)

    unlocked = cli.render(await _scan(Air(), {LYWSD03MMC: bytes.fromhex(KEY)}))
    assert "  family: Xiaomi  model: LYWSD03MMC\n  humidity: 46.0 %RH" in unlocked


def test_bad_arguments_exit_2_and_the_simulated_air_exits_0(capsys):
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    assert cli.main(parser.parse_args(["scan", "--formats", "nordic"])) == cli.EXIT_ARGUMENTS
    assert cli.main(parser.parse_args(["scan", "--key", f"{LYWSD03MMC}=short"])) == cli.EXIT_ARGUMENTS
    assert "expected ADDRESS=KEY" in capsys.readouterr().err
    done = subprocess.run([sys.executable, "-m", "edged", "ble", "scan", "--seconds", "0.5", "--simulated"],
                          capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "family: BTHome  model: BLU H&T" in done.stdout
