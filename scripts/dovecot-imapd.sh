#!/bin/sh
# Dovecot's imap server for the Dovecot tests, unpacked beside Cyrus.
#
# cyrus-imapd declares "Conflicts: imap-server" and dovecot-imapd provides
# it: installing dovecot-imapd removes Cyrus's imapd. So the Debian package
# is fetched with apt-get download (the same version as dovecot-core, whose
# plugins check it) and unpacked under $ROOT; the tests point Dovecot's
# imap and imap-login services and mail_plugin_dir there
# (tests/integration/dovecot.py). Run as root; idempotent.
set -eu

ROOT=${MAILPUBSUB_DOVECOT_IMAPD:-/var/cache/mailpubsub-tests/dovecot-imapd}
version=$(dpkg-query -W -f='${Version}' dovecot-core)
[ -x "$ROOT/usr/lib/dovecot/imap" ] && [ "$(cat "$ROOT/version" 2>/dev/null)" = "$version" ] && exit 0
if [ "$(id -u)" != 0 ]; then
	echo "dovecot-imapd.sh: $ROOT missing (run as root to unpack it)" >&2
	exit 1
fi
echo "dovecot-imapd.sh: unpacking dovecot-imapd $version into $ROOT"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && apt-get download -qq "dovecot-imapd=$version" >/dev/null 2>&1) || {
	apt-get update -qq
	(cd "$tmp" && apt-get download -qq "dovecot-imapd=$version")
}
rm -rf "$ROOT"
mkdir -p "$ROOT/modules"
dpkg-deb -x "$tmp"/dovecot-imapd_*.deb "$ROOT"
# mail_plugin_dir is one directory: dovecot-core's plugins and imap's
for f in /usr/lib/dovecot/modules/*.so "$ROOT"/usr/lib/dovecot/modules/*.so; do
	ln -sf "$f" "$ROOT/modules/"
done
echo "$version" > "$ROOT/version"
