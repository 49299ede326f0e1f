"""The shipped unit file is valid and hardened, and the installer lays out
the files it promises (staged under DESTDIR, never touching this machine)."""

from __future__ import annotations

import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
UNIT = ROOT / "systemd" / "edged.service"

needs_systemd_analyze = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed"
)


@needs_systemd_analyze
def test_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    # verify insists that ExecStart= exists; /opt/edged is not installed here,
    # so a copy with ExecStart pointed at /bin/true is verified instead.
    text = UNIT.read_text()
    assert "ExecStart=/opt/edged/venv/bin/edged run" in text
    copy = tmp_path / "edged.service"
    copy.write_text(text.replace("ExecStart=/opt/edged/venv/bin/edged", "ExecStart=/bin/true"))
    command = ["systemd-analyze", "verify", str(copy)]
    result = subprocess.run(command, check=False, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "edged.service" not in result.stderr, result.stderr


@needs_systemd_analyze
def test_unit_security_rating_is_ok() -> None:
    result = subprocess.run(
        ["systemd-analyze", "security", "--offline=yes", "--no-pager", str(UNIT)],
        check=False, capture_output=True, text=True, timeout=60,
    )
    match = re.search(r"Overall exposure level for edged\.service: (\d+\.\d+) (\w+)", result.stdout)
    assert match, result.stdout + result.stderr
    assert float(match.group(1)) <= 2.0, match.group(0)


def unit_settings() -> dict[str, list[str]]:
    settings: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            key, _, value = line.partition("=")
            settings.setdefault(key, []).append(value)
    return settings


def test_unit_has_the_operational_settings() -> None:
    settings = unit_settings()
    assert settings["Type"] == ["notify"]
    assert settings["Restart"] == ["on-failure"]
    assert settings["WatchdogSec"]
    assert settings["StateDirectory"] == ["edged"]
    assert settings["ConfigurationDirectory"] == ["edged"]
    assert settings["LoadCredential"]
    assert "dialout" in settings["SupplementaryGroups"][0]
    assert settings["CapabilityBoundingSet"] == [""]
    assert settings["ProtectSystem"] == ["strict"]


def test_a_configuration_error_is_not_restarted_forever(tmp_path: Path) -> None:
    settings = unit_settings()
    prevented = {int(code) for value in settings.get("RestartPreventExitStatus", []) for code in value.split()}
    config = tmp_path / "config.yaml"
    config.write_text("adapters:\n  - type: modbus-tcp\n    name: plc\n    port: eighty\n")
    # The command line of the unit's ExecStart=, with this broken file.
    exec_start = settings["ExecStart"][0].split()
    assert exec_start[1:] == ["run", "--config", "/etc/edged/config.yaml"]
    result = subprocess.run(
        [sys.executable, "-m", "edged", "run", "--config", str(config)],
        check=False, capture_output=True, text=True, timeout=60,
    )
    assert result.stderr.startswith(f"{config}:"), result.stderr
    assert result.returncode in prevented  # the unit stays failed, with the error in the journal
    # Anything else (a crash exits 1; the watchdog kills with SIGABRT) is retried, without a start limit.
    assert 1 not in prevented
    assert settings["Restart"] == ["on-failure"]
    assert settings["StartLimitIntervalSec"] == ["0"]


def test_installer_stages_unit_config_and_credentials_dir(tmp_path: Path) -> None:
    result = subprocess.run(
        ["sh", str(ROOT / "scripts" / "install.sh")],
        env={"DESTDIR": str(tmp_path), "PATH": "/usr/bin:/bin:/usr/sbin:/sbin"},
        check=False, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "etc/systemd/system/edged.service").read_text() == UNIT.read_text()
    assert (tmp_path / "usr/share/dbus-1/system.d/edged.conf").exists()
    config = tmp_path / "etc/edged/config.yaml"
    assert "state_dir: /var/lib/edged" in config.read_text()
    assert stat.S_IMODE(config.stat().st_mode) == 0o640
    assert stat.S_IMODE((tmp_path / "etc/edged/credentials").stat().st_mode) == 0o700
    # A second run keeps the operator's configuration.
    config.write_text("gateway: {id: mine}\n")
    env = {"DESTDIR": str(tmp_path), "PATH": "/usr/bin:/bin"}
    subprocess.run(["sh", str(ROOT / "scripts" / "install.sh")], env=env, check=True, capture_output=True, timeout=60)
    assert config.read_text() == "gateway: {id: mine}\n"
