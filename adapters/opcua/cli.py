"""``edged opcua ...``: OPC UA helpers on the command line.

``edged opcua cert --out DIR --uri URN`` writes a client key and a
self-signed certificate whose SubjectAltName holds the application URI, for
the ``security:`` section of an opcua adapter. Cheap to import: asyncua is
never imported here.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    commands = parser.add_subparsers(dest="opcua_command", required=True, metavar="COMMAND")
    cert = commands.add_parser("cert", help="make a client key and self-signed application certificate")
    cert.add_argument("--out", type=Path, required=True, help="folder for the key and certificate")
    cert.add_argument("--uri", required=True, help="application URI, e.g. urn:plant1:edged (the server expects it)")
    cert.add_argument("--host", default=None, help="host name for the certificate (default: this machine's)")
    cert.add_argument("--days", type=int, default=3650, help="validity in days (default 3650)")
    cert.add_argument("--force", action="store_true", help="replace existing files")


def main(args: argparse.Namespace) -> int:
    if args.opcua_command == "cert":
        return _cert(args)
    return 2  # argparse rejects unknown commands before this


def _cert(args: argparse.Namespace) -> int:
    from edged.adapters.opcua.certs import write_certificate

    try:
        files = write_certificate(args.out, args.uri, overwrite=args.force, host_name=args.host, days=args.days)
    except (FileExistsError, ValueError) as exc:
        print(f"edged opcua cert: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"edged opcua cert: cannot write {exc.filename}: {exc.strerror}", file=sys.stderr)
        return 1
    print(f"certificate: {files.certificate}")
    print(f"private key: {files.private_key}")
    print("security:")
    print(f"  application_uri: {args.uri}")
    print(f"  certificate: {files.certificate}")
    print(f"  private_key: {files.private_key}")
    return 0
