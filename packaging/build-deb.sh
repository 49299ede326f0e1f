#!/bin/sh
# Build build/edged_<version>_<arch>.deb: the daemon in its own virtual
# environment under /opt/edged/venv (every extra installed), the systemd unit,
# the `edged` system user (sysusers.d), the D-Bus policy for BLE, and
# /etc/edged/config.yaml as a conffile.
#
#   packaging/build-deb.sh            (or: make deb)
#
# Needs python3 (3.11, as the target runs it), python3-venv, dpkg-deb, and
# what the extras build from source (gcc, python3-dev, autoconf, automake,
# libtool for DTLSSocket).
set -eu

SRC=$(CDPATH= cd -- "$(dirname -- "$0")/.." && pwd)
PYTHON=${PYTHON:-/usr/bin/python3}  # the interpreter the target runs: the venv links to it
OUT="$SRC/build"
STAGE="$OUT/deb-root"
PREFIX=/opt/edged

VERSION=$("$PYTHON" -c "import re, pathlib; print(re.search(r'__version__ = \"(.+)\"', pathlib.Path('$SRC/edged/__init__.py').read_text()).group(1))")
ARCH=$(dpkg --print-architecture)
PYVER=$("$PYTHON" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
DEB="$OUT/edged_${VERSION}_${ARCH}.deb"

rm -rf "$STAGE"
mkdir -p "$STAGE/DEBIAN"

# The virtual environment is built where it is staged, then told where it will live:
# its scripts and pyvenv.cfg name the staging path, which becomes /opt/edged/venv.
"$PYTHON" -m venv "$STAGE$PREFIX/venv"
"$STAGE$PREFIX/venv/bin/pip" install -q --upgrade pip
"$STAGE$PREFIX/venv/bin/pip" install -q "$SRC[all]"
grep -rlI --null "$STAGE$PREFIX/venv" "$STAGE$PREFIX/venv/bin" "$STAGE$PREFIX/venv/pyvenv.cfg" \
    | xargs -0 sed -i "s|$STAGE$PREFIX/venv|$PREFIX/venv|g"
find "$STAGE$PREFIX" -name __pycache__ -type d -prune -exec rm -rf {} +
rm -rf "$SRC/build/lib" "$SRC/build/bdist"*   # what pip's build left in the source tree

install -D -m 0644 "$SRC/docs/operations.md" "$STAGE$PREFIX/docs/operations.md"
install -D -m 0644 "$SRC/systemd/edged.service" "$STAGE/lib/systemd/system/edged.service"
install -D -m 0644 "$SRC/systemd/dbus-edged.conf" "$STAGE/usr/share/dbus-1/system.d/edged.conf"
install -D -m 0644 "$SRC/packaging/sysusers.conf" "$STAGE/usr/lib/sysusers.d/edged.conf"
install -D -m 0640 "$SRC/config.example.yaml" "$STAGE/etc/edged/config.yaml"
# Under systemd the state lives in $STATE_DIRECTORY (/var/lib/edged).
sed -i 's|^\(  *state_dir:\).*|\1 /var/lib/edged|' "$STAGE/etc/edged/config.yaml"

for script in postinst prerm postrm; do
    install -m 0755 "$SRC/packaging/$script" "$STAGE/DEBIAN/$script"
done
echo /etc/edged/config.yaml > "$STAGE/DEBIAN/conffiles"
SIZE=$(du -sk --exclude=DEBIAN "$STAGE" | cut -f1)
cat > "$STAGE/DEBIAN/control" <<EOF
Package: edged
Version: $VERSION
Architecture: $ARCH
Maintainer: edged developers <edged@localhost>
Installed-Size: $SIZE
Depends: python$PYVER, systemd (>= 247), adduser
Recommends: bluez
Section: net
Priority: optional
Homepage: https://localhost/edged
Description: edge gateway for Zigbee, BLE, Modbus and OPC UA devices
 One daemon that reads local devices (Zigbee, BLE, Modbus TCP/RTU, OPC UA),
 runs local rules, and forwards the readings to the cloud over MQTT or
 CoAP/DTLS from a durable on-disk outbox. Installed under /opt/edged with
 its own Python environment; configured in /etc/edged/config.yaml.
EOF

dpkg-deb --root-owner-group --build "$STAGE" "$DEB" >/dev/null
rm -rf "$STAGE"
echo "$DEB"
