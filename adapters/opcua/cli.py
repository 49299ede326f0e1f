"""``edged opcua ...``: OPC UA helpers on the command line.

``edged opcua cert --out DIR --uri URN`` writes a client key and a
self-signed certificate whose SubjectAltName holds the application URI, for
the ``security:`` section of an opcua adapter.

``edged opcua browse ENDPOINT [--path PATH] [--depth N] [--yaml]`` lists a
server's address space as a tree (NodeIds by namespace URI, data types,
access levels, units), or with ``--yaml`` as ``nodes:`` entries to paste into
a device. It connects with the adapter's own client set-up, so the security
options mean what the adapter's ``security:`` keys mean. Exit status: 0
listed, 2 bad arguments (or a --path the server does not have), 3 the server
cannot be reached or refuses the session.

Cheap to import: asyncua is imported only when a command runs.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from asyncua import Client

    from edged.adapters.opcua.address import BrowsePath
    from edged.adapters.opcua.config import SecurityConfig

EXIT_ARGUMENTS = 2
EXIT_UNREACHABLE = 3
PASSWORD_ENV = "EDGED_OPCUA_PASSWORD"
KEY_PASSWORD_ENV = "EDGED_OPCUA_KEY_PASSWORD"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    commands = parser.add_subparsers(dest="opcua_command", required=True, metavar="COMMAND")
    cert = commands.add_parser("cert", help="make a client key and self-signed application certificate")
    cert.add_argument("--out", type=Path, required=True, help="folder for the key and certificate")
    cert.add_argument("--uri", required=True, help="application URI, e.g. urn:plant1:edged (the server expects it)")
    cert.add_argument("--host", default=None, help="host name for the certificate (default: this machine's)")
    cert.add_argument("--days", type=int, default=3650, help="validity in days (default 3650)")
    cert.add_argument("--force", action="store_true", help="replace existing files")

    browse = commands.add_parser(
        "browse",
        help="list a server's address space, or print nodes: entries for the configuration",
        description=f"List the address space of an OPC UA server. The user password is read from ${PASSWORD_ENV} "
        f"(or asked for), an encrypted private key's password from ${KEY_PASSWORD_ENV}. Exit status: 0 listed, "
        f"2 bad arguments, 3 the server cannot be reached or refuses the session.",
    )
    browse.add_argument("endpoint", help="opc.tcp://host:port/path of the server")
    browse.add_argument("--path", help="browse path to start from, as in the adapter's path: key "
                        "(default 0:Objects), e.g. 0:Objects/nsu=urn:acme:plant1;Boiler or 0:Objects/2:Boiler")  # fmt: skip
    browse.add_argument("--depth", type=_count, default=5, help="levels below the start to list (default 5)")
    browse.add_argument("--max-nodes", type=_count, default=10_000, help="stop after this many nodes (default 10000)")
    browse.add_argument("--yaml", action="store_true", help="print nodes: entries for an opcua device instead of a tree")
    browse.add_argument("--timeout", type=float, default=4.0, help="seconds allowed for each request (default 4)")
    security = browse.add_argument_group("security (as the adapter's security: keys)")
    security.add_argument("--policy", default="None", choices=["None", "Basic256Sha256", "Aes128_Sha256_RsaOaep"])
    security.add_argument("--mode", default="None", choices=["None", "Sign", "SignAndEncrypt"])
    security.add_argument("--certificate", type=Path, help="the client's application certificate")
    security.add_argument("--private-key", type=Path, help="its private key")
    security.add_argument("--application-uri", default="urn:edged:client", help="the URI in the client certificate")
    security.add_argument("--server-certificate", type=Path, help="trust only this server certificate")
    security.add_argument("--trusted-certificates", type=Path, help="trust server certificates in (or signed by) this folder")
    security.add_argument("--trust-any-server", action="store_true", help="accept the certificate the server presents")
    security.add_argument("--username", help="user name (password from $" + PASSWORD_ENV + " or asked for)")


def _count(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected 0 or more; got {value}")
    return value


def main(args: argparse.Namespace) -> int:
    if args.opcua_command == "cert":
        return _cert(args)
    if args.opcua_command == "browse":
        return _browse(args)
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


class _Refused(Exception):
    """Why ``browse`` gives up; ``code`` is its exit status."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def _browse(args: argparse.Namespace) -> int:
    try:
        security, path, password = _browse_settings(args)
        lines = asyncio.run(_browse_server(args, security, path, password))
    except _Refused as exc:
        print(f"edged opcua browse: {exc}", file=sys.stderr)
        return exc.code
    print("\n".join(lines))
    return 0


def _browse_settings(args: argparse.Namespace) -> tuple[SecurityConfig, BrowsePath | None, str | None]:
    """The security settings, start path and password from the arguments; ``_Refused`` (exit 2) if they are wrong."""
    from pydantic import ValidationError

    from edged.adapters.opcua.address import BrowsePath
    from edged.adapters.opcua.config import SecurityConfig

    if not args.endpoint.startswith("opc.tcp://"):
        raise _Refused(f"expected an endpoint such as opc.tcp://plc:4840; got {args.endpoint!r}", EXIT_ARGUMENTS)
    for option in ("certificate", "private_key", "server_certificate", "trusted_certificates"):
        given = getattr(args, option)
        if given is not None and not given.exists():
            raise _Refused(f"--{option.replace('_', '-')} {given}: no such file or folder", EXIT_ARGUMENTS)
    try:
        path = BrowsePath.parse(args.path) if args.path else None
        security = SecurityConfig.model_validate({
            "policy": args.policy,
            "mode": args.mode,
            "certificate": args.certificate,
            "private_key": args.private_key,
            "private_key_password": os.environ.get(KEY_PASSWORD_ENV),
            "application_uri": args.application_uri,
            "server_certificate": args.server_certificate,
            "trusted_certificates": args.trusted_certificates,
            "trust_any_server": args.trust_any_server,
        })  # fmt: skip
    except ValidationError as exc:
        problem = exc.errors()[0]["msg"].removeprefix("Value error, ").rstrip(":")
        raise _Refused(_as_options(problem), EXIT_ARGUMENTS) from None
    except ValueError as exc:
        raise _Refused(f"--path: {exc}", EXIT_ARGUMENTS) from None
    password = None
    if args.username is not None:
        password = os.environ.get(PASSWORD_ENV)
        if password is None:
            if not sys.stdin.isatty():
                raise _Refused(f"--username needs a password: set {PASSWORD_ENV}", EXIT_ARGUMENTS)
            password = getpass.getpass(f"password for {args.username}: ")
    return security, path, password


def _as_options(problem: str) -> str:
    """A configuration message about ``security:`` keys, naming the command's options instead."""
    for key in ("server_certificate", "trusted_certificates", "trust_any_server", "private_key", "certificate"):
        problem = problem.replace(key, "--" + key.replace("_", "-"))
    return problem.replace("set --trust-any-server: true", "give --trust-any-server")


async def _browse_server(
    args: argparse.Namespace, security: SecurityConfig, path: BrowsePath | None, password: str | None
) -> list[str]:
    from asyncua import ua

    from edged.adapters.opcua import browse
    from edged.adapters.opcua.link import (
        TRANSPORT_ERRORS,
        check_pinned_certificate,
        make_client,
        quiet_expected_disconnects,
    )
    from edged.errors import AdapterError

    library_log = logging.getLogger("asyncua")
    if library_log.level == logging.NOTSET:
        library_log.setLevel(logging.ERROR)
    quiet_expected_disconnects()
    endpoint = args.endpoint
    try:
        client = await make_client(endpoint, security, name="browse", timeout=args.timeout,
                                   username=args.username, password=password)  # fmt: skip
        await check_pinned_certificate(endpoint, security, args.timeout)
        await client.connect(auto_reconnect=False)
    except (AdapterError, ua.UaError) as exc:
        raise _Refused(f"{endpoint}: {exc}", EXIT_UNREACHABLE) from None
    except TRANSPORT_ERRORS as exc:
        raise _Refused(f"cannot reach {endpoint}: {_reason(exc)}", EXIT_UNREACHABLE) from None
    try:
        start = await _start(client, path)
        tree = await browse.walk(client, start, browse.start_text(path), depth=args.depth, limit=args.max_nodes)
    except ua.UaError as exc:
        raise _Refused(f"{endpoint}: browsing failed: {exc}", EXIT_UNREACHABLE) from None
    except TRANSPORT_ERRORS as exc:
        raise _Refused(f"lost the connection to {endpoint}: {_reason(exc)}", EXIT_UNREACHABLE) from None
    finally:
        await _close(client)
    return browse.render_yaml(tree) if args.yaml else browse.render_tree(tree)


async def _start(client: Client, path: BrowsePath | None) -> object:
    """The NodeId at ``path`` (from Root; namespace indexes as the server numbers them now), or the Objects folder."""
    from asyncua import ua

    from edged.adapters.opcua.address import namespace_indexes
    from edged.adapters.opcua.browse import OBJECTS
    from edged.adapters.opcua.namespaces import NamespaceMap, NamespaceMissing, SessionNamespaces

    if path is None:
        return OBJECTS
    array = await client.get_namespace_array()
    now = NamespaceMap(Path(os.devnull), client.server_url.geturl())
    now.learn(array, namespace_indexes([path]))
    try:
        relative = SessionNamespaces(array, now).relative_path(path)
    except NamespaceMissing as exc:
        raise _Refused(f"--path {path}: {exc.reason}", EXIT_ARGUMENTS) from None
    (result,) = await client.translate_browsepaths(ua.NodeId(ua.ObjectIds.RootFolder), [relative])
    if not result.StatusCode.is_good() or not result.Targets:
        raise _Refused(f"--path {path}: the server has no such node ({result.StatusCode.name})", EXIT_ARGUMENTS)
    target = result.Targets[0].TargetId
    return ua.NodeId(target.Identifier, target.NamespaceIndex, target.NodeIdType)


async def _close(client: Client) -> None:
    try:
        async with asyncio.timeout(2):
            await client.disconnect()
    except Exception:  # noqa: BLE001 - the listing is done; closing must not fail it
        client.disconnect_socket()


def _reason(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
