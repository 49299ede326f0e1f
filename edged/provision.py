"""``edged provision``: create the gateway's key and a CSR (or a self-signed
certificate) and print what to register with the cloud: the gateway id, the
CSR path and the SHA-256 fingerprint of the public key. The work is done by
edged.identity, imported only when the command runs.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = "Create the gateway's key and a CSR (or a self-signed certificate)."
    parser.add_argument("--config", "-c", type=Path, help="take the gateway id from this configuration")
    parser.add_argument("--gateway-id", help="the gateway's id (default: gateway.id of --config, else 'edged')")
    parser.add_argument(
        "--dir", type=Path, default=None,
        help="where to write gateway.key/.csr/.crt "
        "(default: the config's folder, else $CONFIGURATION_DIRECTORY, else .)",
    )
    parser.add_argument("--self-signed", action="store_true", help="write a self-signed certificate instead of a CSR")
    parser.add_argument("--key-type", choices=["ec", "rsa"], default="ec", help="EC P-256 (default) or RSA 3072")
    parser.add_argument(
        "--new-key", action="store_true", help="replace an existing key (changes the gateway's identity)"
    )
    parser.add_argument("--days", type=int, default=365, help="validity of a self-signed certificate (default 365)")
    parser.add_argument("--organization", help="O= of the subject")


def main(args: argparse.Namespace) -> int:
    gateway_id = args.gateway_id
    directory = args.dir
    if args.config is not None:
        from edged.config import load_config
        from edged.errors import ConfigError

        try:
            config = load_config(args.config)
        except ConfigError as exc:
            print(exc, file=sys.stderr)
            return 2
        gateway_id = gateway_id or config.gateway.id
        directory = directory or args.config.resolve().parent
    directory = directory or Path(os.environ.get("CONFIGURATION_DIRECTORY", "."))
    from edged.identity import provision

    try:
        identity = provision(
            gateway_id or "edged", directory, self_signed=args.self_signed, key_type=args.key_type,
            new_key=args.new_key, days=args.days, organization=args.organization,
        )
    except (OSError, ValueError) as exc:
        print(f"edged provision: {exc}", file=sys.stderr)
        return 1
    print(f"gateway id:  {identity.gateway_id}")
    print(f"private key: {identity.key_path} ({'created' if identity.key_created else 'kept'}; keep it secret)")
    if identity.csr_path:
        print(f"CSR:         {identity.csr_path}")
    if identity.cert_path:
        print(f"certificate: {identity.cert_path} (self-signed)")
    print(f"public key SHA-256: {identity.fingerprint}")
    what = "the CSR" if identity.csr_path else "the certificate"
    print(f"Register the gateway id and {what} with the cloud; check the fingerprint matches.")
    return 0
