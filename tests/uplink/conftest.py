from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.uplink.peers import Broker, CoapServer, make_certs


@pytest.fixture
def certs(tmp_path: Path) -> dict[str, Path]:
    (tmp_path / "certs").mkdir()
    return make_certs(tmp_path / "certs")


@pytest.fixture
def tls_broker(tmp_path: Path, certs: dict[str, Path]) -> Iterator[Broker]:
    (tmp_path / "tls-broker").mkdir()
    broker = Broker(tmp_path / "tls-broker", tls=certs)
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture
async def coap_server(tmp_path: Path) -> AsyncIterator[CoapServer]:
    server = CoapServer(tmp_path / "coap-server.log")
    await server.start()
    yield server
    await server.stop()
