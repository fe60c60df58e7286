#!/bin/sh
# Installs the Debian 12 packages mailpubsub needs to build and test.
# Only what is missing is installed; run as root.
set -eu

PACKAGES="
autoconf automake libtool make gcc pkg-config build-essential
clang libclang-rt-14-dev
libstrophe-dev libuv1-dev libexpat1-dev libjansson-dev libsqlite3-dev
libinih-dev libsasl2-dev libsasl2-modules libssl-dev libetpan-dev libcmocka-dev
libmicrohttpd-dev libqpid-proton11-dev
libxml2-utils sqlite3 valgrind
cyrus-imapd cyrus-admin cyrus-clients sasl2-bin
prosody ejabberd
dovecot-core dovecot-lmtpd lua-socket lua-cjson
python3 python3-slixmpp python3-pytest python3-jsonschema python3-qpid-proton git
rabbitmq-server
prometheus util-linux
debhelper lintian libsystemd-dev systemd
mmdebstrap
"

missing=""
for p in $PACKAGES; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
		missing="$missing $p"
	fi
done
[ -z "$missing" ] && exec sh "$(dirname "$0")/dovecot-imapd.sh"
if [ "$(id -u)" != 0 ]; then
	echo "deps.sh: missing packages:$missing (run as root to install them)" >&2
	exit 1
fi
echo "deps.sh: installing$missing"
export DEBIAN_FRONTEND=noninteractive
# policy-rc.d keeps the packages' own services from starting: the tests run
# private instances and must not find the system ones on their ports.
if [ ! -e /usr/sbin/policy-rc.d ]; then
	printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
	chmod 755 /usr/sbin/policy-rc.d
	trap 'rm -f /usr/sbin/policy-rc.d' EXIT
fi
apt-get update -qq
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $missing >/dev/null
# not exec: the policy-rc.d trap must still run
sh "$(dirname "$0")/dovecot-imapd.sh"
