#!/bin/sh
# Install edged as a system service: the `edged` system user, a virtualenv
# under /opt/edged, the systemd unit, the D-Bus policy for BLE, and
# /etc/edged with the example configuration (an existing config is kept).
#
#   sudo scripts/install.sh [--extras all] [--no-start]
#
# With DESTDIR set (packaging, tests) files are laid out under $DESTDIR and
# nothing touches the running system: no user, no venv, no systemctl.
set -eu

SRC=$(CDPATH= cd -- "$(dirname -- "$0")/.." && pwd)
EXTRAS=all
START=yes
PYTHON=${PYTHON:-python3}
DESTDIR=${DESTDIR:-}
PREFIX=/opt/edged

while [ $# -gt 0 ]; do
    case "$1" in
        --extras) EXTRAS=$2; shift 2 ;;
        --no-start) START=no; shift ;;
        -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
        *) echo "install.sh: unknown option $1" >&2; exit 2 ;;
    esac
done

if [ -z "$DESTDIR" ] && [ "$(id -u)" -ne 0 ]; then
    echo "install.sh: run as root (or set DESTDIR to stage the files)" >&2
    exit 1
fi

if [ -z "$DESTDIR" ]; then
    if ! getent passwd edged >/dev/null; then
        useradd --system --user-group --home-dir /var/lib/edged --no-create-home \
            --shell /usr/sbin/nologin --comment "edged gateway" edged
    fi
    "$PYTHON" -m venv "$PREFIX/venv"
    "$PREFIX/venv/bin/pip" install --upgrade pip
    "$PREFIX/venv/bin/pip" install "$SRC[$EXTRAS]"
fi

install -d -m 0755 "$DESTDIR$PREFIX/docs"
install -m 0644 "$SRC/docs/operations.md" "$DESTDIR$PREFIX/docs/operations.md"
install -D -m 0644 "$SRC/systemd/edged.service" "$DESTDIR/etc/systemd/system/edged.service"
install -D -m 0644 "$SRC/systemd/dbus-edged.conf" "$DESTDIR/usr/share/dbus-1/system.d/edged.conf"
install -d -m 0750 "$DESTDIR/etc/edged"
install -d -m 0700 "$DESTDIR/etc/edged/credentials"
if [ ! -e "$DESTDIR/etc/edged/config.yaml" ]; then
    install -m 0640 "$SRC/config.example.yaml" "$DESTDIR/etc/edged/config.yaml"
    # Under systemd the state lives in $STATE_DIRECTORY (/var/lib/edged).
    sed -i 's|^\(  *state_dir:\).*|\1 /var/lib/edged|' "$DESTDIR/etc/edged/config.yaml"
fi

if [ -z "$DESTDIR" ]; then
    chgrp edged /etc/edged /etc/edged/config.yaml
    systemctl daemon-reload
    systemctl reload dbus 2>/dev/null || true
    if [ "$START" = yes ]; then
        systemctl enable --now edged.service
    fi
    echo "edged installed; edit /etc/edged/config.yaml, then: systemctl restart edged"
    echo "put secrets in /etc/edged/credentials/<name> and refer to them as {credential: edged_<name>}"
fi
