"""Messages to the gateway itself as the uplink reads them, pushes as the fleet reads them, keys and signatures."""

from __future__ import annotations

import base64
import json
import logging

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from edged.fleet.remote import MAX_CONFIG_BYTES, PushRefused, read_push
from edged.fleet.ring import LogRing
from edged.fleet.signature import public_key, verify
from edged.model import Command
from edged.uplink.commands import GatewayRequest, Rejected, parse_command


def test_a_message_to_the_gateway_is_a_gateway_request_with_any_json_arguments() -> None:
    arguments = {"lines": 5, "level": "warning"}
    message = parse_command(json.dumps({"id": 7, "device": "$gateway", "point": "logs", "value": arguments}).encode())
    assert message == GatewayRequest(7, "logs", {"lines": 5, "level": "warning"})
    assert parse_command(b'{"device": "$gateway", "point": "ping"}') == GatewayRequest(None, "ping", None)
    assert isinstance(parse_command(b'{"device": "sim/relay", "point": "on", "value": true}'), Command)


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b'{"id": "a", "device": "$gateway", "point": "ping", "extra": 1}', "unknown key 'extra'"),
        (b'{"id": "a", "device": "$gateway", "point": ""}', "point must name the gateway operation"),
        (b'{"id": "a", "device": "$gateway", "value": {}}', "point must name the gateway operation"),
        (b'{"id": "a", "device": "$gateway", "point": "logs", "value": {"x": NaN}}', "value: NaN is not a JSON number"),
        (b'{"id": "a", "device": "$gateway", "point": "logs", "value": ["\\ud800"]}', "value: text is not valid Unicode"),
    ],
)
def test_a_malformed_message_to_the_gateway_is_rejected_with_its_id(payload: bytes, reason: str) -> None:
    message = parse_command(payload)
    assert isinstance(message, Rejected) and message.raw_id == "a" and reason in message.reason


def test_a_push_is_read_from_its_bytes_or_an_operation_s_value() -> None:
    push = read_push(b'{"id": "c1", "config": "gateway: {}\\n", "signature": "AAAA"}')
    assert (push.id, push.text, push.signature) == ("c1", b"gateway: {}\n", "AAAA")
    assert read_push({"id": "c1", "config": "x: 1\n"}).signature is None
    for payload, reason in [
        (b"[1]", "expected an object"),
        (b'{"id": "", "config": ""}', "id must be"),
        (b'{"id": "c", "config": 5}', "config must be"),
        (b'{"id": "c", "config": "", "sig": ""}', "unknown key 'sig'"),
        (b" " * (MAX_CONFIG_BYTES + 1), "at most"),
    ]:
        with pytest.raises(PushRefused, match=reason):
            read_push(payload)


def test_trusted_keys_are_pem_or_raw_base64_and_only_they_verify() -> None:
    key = Ed25519PrivateKey.generate()
    raw = base64.b64encode(key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)).decode()
    pem = key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo).decode()
    assert public_key(raw).public_bytes(Encoding.Raw, PublicFormat.Raw) == public_key(pem).public_bytes(Encoding.Raw, PublicFormat.Raw)
    signature = base64.b64encode(key.sign(b"text")).decode()
    assert verify(b"text", signature, (pem,)) and verify(b"text", signature, (raw,))
    assert not verify(b"text!", signature, (raw,))
    assert not verify(b"text", "not base64!", (raw,))
    with pytest.raises(ValueError, match="32 bytes"):
        public_key(base64.b64encode(b"short").decode())


def test_the_log_ring_keeps_the_last_lines_and_filters_them() -> None:
    ring = LogRing(3)
    logger = logging.getLogger("edged.test_ring")
    logger.addHandler(ring)
    logger.setLevel(logging.DEBUG)
    try:
        for n in range(5):
            logger.info("line %d", n)
        logger.warning("pump stuck", extra={"device": "sim/pump"})
    finally:
        logger.removeHandler(ring)
    assert [line.message for line in ring.tail(10)] == ["line 3", "line 4", "pump stuck"]
    assert [line.message for line in ring.tail(10, logging.WARNING)] == ["pump stuck"]
    assert [line.message for line in ring.tail(10, device="sim/pump")] == ["pump stuck"]
    assert [line.message for line in ring.tail(1)] == ["pump stuck"]
