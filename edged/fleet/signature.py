"""Detached Ed25519 signatures of pushed configurations.

A trusted key is given as PEM text (``-----BEGIN PUBLIC KEY-----``) or as its
32 raw bytes in base64. A signature is the 64 raw bytes in base64, made over
the configuration text exactly as it is pushed (its UTF-8 bytes).
"""

from __future__ import annotations

import base64
import binascii

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key


def public_key(text: str) -> Ed25519PublicKey:
    """The Ed25519 public key ``text`` holds; ``ValueError`` saying why it holds none."""
    text = text.strip()
    if text.startswith("-----BEGIN"):
        key = load_pem_public_key(text.encode())
        if not isinstance(key, Ed25519PublicKey):
            raise ValueError(f"expected an Ed25519 public key; got a {type(key).__name__.removeprefix('_')}")
        return key
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("expected PEM text or the 32 bytes of an Ed25519 public key in base64") from None
    if len(raw) != 32:
        raise ValueError(f"an Ed25519 public key is 32 bytes; this one is {len(raw)}")
    return Ed25519PublicKey.from_public_bytes(raw)


def verify(document: bytes, signature: str, keys: tuple[str, ...]) -> bool:
    """True when ``signature`` (base64) over ``document`` was made by one of ``keys``."""
    try:
        raw = base64.b64decode(signature, validate=True)
    except (binascii.Error, ValueError):
        return False
    for key in keys:
        try:
            public_key(key).verify(raw, document)
            return True
        except (InvalidSignature, ValueError):
            continue
    return False
