"""``edged provision``: create the gateway's key and a CSR (or a self-signed
certificate) and print what to register with the cloud: the gateway id, the
CSR path and the SHA-256 fingerprint of the public key. The work is done by
edged.identity, imported only when the command runs.

Run as root (as it is on an installed gateway), it hands the files to the
service: systemd runs edged as ``User=edged``/``Group=edged`` with
``UMask=0027``, so the key becomes ``root:edged`` 0640 (the service reads it
and cannot change it, like ``config.yaml``) and the CSR or certificate
``root:edged`` 0644. Where that account does not exist yet, the key stays
0600 and the exact ``chown``/``chmod`` to run later is printed. Nothing is
ever world-readable but the public CSR and certificate.
"""

from __future__ import annotations

import argparse
import grp
import os
import pwd
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from edged.identity import Identity

SERVICE_ACCOUNT = "edged:edged"  # User= and Group= of systemd/edged.service
KEY_MODE_FOR_SERVICE = 0o640  # root:GROUP; within what the unit's UMask=0027 allows


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
    parser.add_argument(
        "--service-account", default=SERVICE_ACCOUNT, metavar="USER[:GROUP]",
        help="as root: the account the service runs as (default edged:edged, as in edged.service); "
        "the key is made root:GROUP 0640 so the service can read it",
    )


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
    if _keep_from_others(identity.key_path):
        print(f"edged provision: {identity.key_path} was readable by other users; it no longer is", file=sys.stderr)
    if os.geteuid() == 0:
        try:
            group, todo = hand_over(identity, args.service_account)
        except OSError as exc:
            print(f"edged provision: {exc}", file=sys.stderr)
            return 1
        if group is None:
            print(f"edged provision: the service account {args.service_account!r} does not exist on this machine, so "
                  "the key is readable by root only; once it exists, let the service read it:", file=sys.stderr)  # fmt: skip
        else:
            print(f"owner:       root:{group} (the service reads the key: mode {KEY_MODE_FOR_SERVICE:04o})")
            if todo:
                print(f"edged provision: group {group!r} cannot enter {identity.key_path.parent}; "
                      "the service cannot read the key until you run:", file=sys.stderr)  # fmt: skip
        for line in todo:
            print(f"  {line}", file=sys.stderr)
    print(f"public key SHA-256: {identity.fingerprint}")
    what = "the CSR" if identity.csr_path else "the certificate"
    print(f"Register the gateway id and {what} with the cloud; check the fingerprint matches.")
    return 0


def hand_over(identity: Identity, account: str) -> tuple[str | None, list[str]]:
    """Give the files of ``identity`` to the group of ``account`` (``USER[:GROUP]``):
    the key root:GROUP 0640, the CSR or certificate root:GROUP 0644. Needs root.

    Return the group (None if it does not exist here) and the shell commands
    still to run: those that would do it, when the group does not exist; those
    that let the group into the directory, when it cannot enter it; else none."""
    files = [path for path in (identity.key_path, identity.csr_path, identity.cert_path) if path is not None]
    name = _group_name(account)
    if name is None:
        os.chown(identity.key_path, 0, 0)
        os.chmod(identity.key_path, 0o600)
        group = account.partition(":")[2] or account.partition(":")[0]
        return None, [
            f"chown root:{shlex.quote(group)} {' '.join(shlex.quote(str(path)) for path in files)}",
            f"chmod {KEY_MODE_FOR_SERVICE:04o} {shlex.quote(str(identity.key_path))}",
        ]
    gid = grp.getgrnam(name).gr_gid
    for path in files:
        os.chown(path, 0, gid)
    os.chmod(identity.key_path, KEY_MODE_FOR_SERVICE)
    directory = identity.key_path.parent
    info = directory.stat()
    if info.st_mode & 0o001 or (info.st_gid == gid and info.st_mode & 0o010):
        return name, []
    return name, [f"chgrp {shlex.quote(name)} {shlex.quote(str(directory))}", f"chmod g+rx {shlex.quote(str(directory))}"]


def _keep_from_others(key: Path) -> bool:
    """Take away any access of other users to a (kept) key; return whether there was any."""
    mode = key.stat().st_mode & 0o7777
    if not mode & 0o007:
        return False
    os.chmod(key, mode & ~0o007)
    return True


def _group_name(account: str) -> str | None:
    """The group of ``USER[:GROUP]`` (the user's primary group if none is given), if it exists here."""
    user, _, group = account.partition(":")
    try:
        if group:
            return grp.getgrnam(group).gr_name
        return grp.getgrgid(pwd.getpwnam(user).pw_gid).gr_name
    except KeyError:
        return None
