#!/bin/sh
# Install the built package on this machine, check what it installed, and purge it
# again: the configuration validates, the unit passes systemd-analyze verify, the
# daemon's command runs from /opt/edged, installing it again over itself (as an
# upgrade does) keeps the edited configuration and the state, and a purge leaves
# nothing behind.
#
#   packaging/check-deb.sh build/edged_<version>_<arch>.deb     (as root; CI runs it)
set -eu

DEB=$1
if dpkg -s edged >/dev/null 2>&1; then
    echo "check-deb: edged is already installed here; not touching it" >&2
    exit 1
fi
trap 'dpkg --purge edged >/dev/null 2>&1 || true' EXIT
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$(realpath "$DEB")" >/dev/null
getent passwd edged >/dev/null
/opt/edged/venv/bin/edged --version
/opt/edged/venv/bin/edged check-config /etc/edged/config.yaml
test "$(stat -c %G /etc/edged/config.yaml)" = edged
systemd-analyze verify /lib/systemd/system/edged.service
# An upgrade over an installed, configured gateway keeps the operator's file and the state.
echo "# edited by the operator" >> /etc/edged/config.yaml
echo kept > /var/lib/edged/check-deb-state
DEBIAN_FRONTEND=noninteractive dpkg -i --force-confold "$(realpath "$DEB")" >/dev/null
grep -q "^# edited by the operator" /etc/edged/config.yaml
test "$(cat /var/lib/edged/check-deb-state)" = kept
test "$(stat -c %G /etc/edged/config.yaml)" = edged
/opt/edged/venv/bin/edged check-config /etc/edged/config.yaml
dpkg --purge edged >/dev/null
test ! -e /opt/edged && test ! -e /var/lib/edged && test ! -e /etc/edged/config.yaml
echo "check-deb: $DEB installs, checks and purges cleanly"
