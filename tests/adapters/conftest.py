"""Fixtures the adapter tests share."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.adapters.opcua_server import PlantServer, free_port


@pytest.fixture
async def plant() -> AsyncIterator[PlantServer]:
    """asyncua's server with the plant's nodes, on a free loopback port (a test file may have its own)."""
    server = PlantServer(free_port())
    await server.start()
    yield server
    await server.stop()
