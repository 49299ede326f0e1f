"""Why an uplink cannot connect, as /api/status shows it, against the real peers (mosquitto,
libcoap's coap-server): refused, TLS verification failed (naming the server's certificate),
credentials refused, a wrong pre-shared key; and a log without tracebacks or library errors."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from pydantic import TypeAdapter

from edged.backoff import Backoff
from edged.hub import Hub
from edged.model import Reading
from edged.outbox import OutboxConfig
from edged.status.views import status_json
from edged.uplink.config import UplinkConfig
from edged.uplink.service import UplinkService
from edged.uplink.uplinks import single
from edged.view import GatewayView
from tests.gateway_log import GatewayLog, gateway_log_fixture  # noqa: F401 - a fixture
from tests.uplink.peers import Broker, CoapServer, coap_config, free_port


def uplink(tmp_path: Path, hub: Hub, config: Any) -> UplinkService:
    if isinstance(config, dict):
        config = TypeAdapter(UplinkConfig).validate_python(config)
    return single(OutboxConfig(), config, hub, tmp_path / "state", "gw1", backoff=Backoff(initial=0.05, maximum=0.2))


def mqtt(port: int, **extra: Any) -> dict[str, Any]:
    return {"type": "mqtt", "host": "127.0.0.1", "port": port, "connect_timeout": 2, **extra}


async def problem_after_two_failures(service: UplinkService, hub: Hub) -> dict[str, Any]:
    """The uplink's problem in /api/status once the connection failed twice in a row."""
    await service.wait_for(lambda: service.last_problem is not None and service.last_problem.count >= 2, 20)
    status = status_json(GatewayView("gw1", hub, uplink=service.uplinks))
    assert status["uplinks"]["uplink"]["problem"] == status["uplink"]["problem"]
    return status["uplink"]["problem"]


def clean(log: GatewayLog) -> None:
    assert log.tracebacks() == []
    assert log.library_errors() == []


async def test_nothing_listening_is_connection_refused(tmp_path: Path, hub: Hub, running: Any, gateway_log: GatewayLog):
    port = free_port()
    service = uplink(tmp_path, hub, mqtt(port))
    running(service)
    problem = await problem_after_two_failures(service, hub)
    assert problem["reason"] == f"connection refused by 127.0.0.1:{port}"
    assert problem["since"] <= problem["last"]
    clean(gateway_log)


# paho leaves the socket of a TLS handshake that failed open: closed when the uplink lets go of it (paho-mqtt 2.1).
@pytest.mark.filterwarnings("ignore:unclosed <ssl.SSLSocket:ResourceWarning")
async def test_a_server_certificate_from_another_ca_names_its_subject(
    tmp_path: Path, hub: Hub, tls_broker: Broker, certs: dict[str, Path], running: Any, gateway_log: GatewayLog
):
    tls = {"ca": certs["stranger_cert"], "cert": certs["client_cert"], "key": certs["client_key"]}
    service = uplink(tmp_path, hub, mqtt(tls_broker.port, tls=tls))
    running(service)
    problem = await problem_after_two_failures(service, hub)
    assert problem["reason"] == (
        "TLS verification failed: self-signed certificate in certificate chain; the server's certificate is CN=server"
    )
    clean(gateway_log)


async def test_a_wrong_password_is_authentication_failed(tmp_path: Path, hub: Hub, running: Any, gateway_log: GatewayLog):
    (tmp_path / "auth-broker").mkdir()
    broker = Broker(tmp_path / "auth-broker", users={"gw1": "right horse"})
    broker.start()
    try:
        for protocol in ("3.1.1", "5"):
            service = uplink(tmp_path / protocol, hub, mqtt(broker.port, protocol=protocol, username="gw1",
                                                            password="wrong horse", client_id=f"gw1-{protocol}"))
            running(service)
            problem = await problem_after_two_failures(service, hub)
            assert problem["reason"] in ("authentication failed: not authorized",
                                         "authentication failed: bad user name or password"), (protocol, problem)
    finally:
        broker.stop()
    clean(gateway_log)


async def test_the_problem_is_cleared_once_connected(tmp_path: Path, hub: Hub, running: Any, gateway_log: GatewayLog):
    port = free_port()
    service = uplink(tmp_path, hub, mqtt(port))
    running(service)
    await problem_after_two_failures(service, hub)
    (tmp_path / "late-broker").mkdir()
    broker = Broker(tmp_path / "late-broker", port=port)
    broker.start()
    try:
        await service.wait_for(lambda: service.connected, 20)
        assert status_json(GatewayView("gw1", hub, uplink=service.uplinks))["uplink"]["problem"] is None
    finally:
        broker.stop()


async def test_a_wrong_psk_is_told_as_a_failed_dtls_handshake(
    tmp_path: Path, hub: Hub, coap_server: CoapServer, running: Any, gateway_log: GatewayLog
):
    service = uplink(tmp_path, hub, coap_config(coap_server.port, psk="not-the-key", timeout=1))
    running(service)
    await service.wait_for(lambda: service.outbox.is_open, 10)
    hub.publish([Reading("sim/a", "temperature", 20.0, 1000.0)])  # DTLS shakes hands with the first message
    problem = await problem_after_two_failures(service, hub)
    # The server stays silent to a handshake with another key, but answers a ClientHello of its own.
    assert problem["reason"] == f"DTLS handshake with 127.0.0.1:{coap_server.port} failed (wrong PSK or identity?)"
    clean(gateway_log)


async def test_a_silent_server_that_does_not_speak_dtls_is_no_answer(
    tmp_path: Path, hub: Hub, running: Any, gateway_log: GatewayLog
):
    loop = asyncio.get_running_loop()
    silent, _ = await loop.create_datagram_endpoint(asyncio.DatagramProtocol, local_addr=("127.0.0.1", 0))
    port = silent.get_extra_info("sockname")[1]
    try:
        service = uplink(tmp_path, hub, coap_config(port, timeout=1))
        running(service)
        await service.wait_for(lambda: service.outbox.is_open, 10)
        hub.publish([Reading("sim/a", "temperature", 20.0, 1000.0)])
        problem = await problem_after_two_failures(service, hub)
        assert problem["reason"] == f"no answer from coaps://127.0.0.1:{port}/gw/readings within 1 s"
        clean(gateway_log)
    finally:
        silent.close()
