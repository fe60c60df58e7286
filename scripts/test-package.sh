#!/bin/sh
# The Debian package end to end, on this machine, as root: builds it with
# dpkg-buildpackage from a copy of the working tree, checks it with
# lintian (no errors) and the unit with systemd-analyze (verify clean,
# exposure "OK" or better), installs it (binary, unit, user, conffile,
# secrets 0600, state dir), installs it again over itself (secrets and an
# edited conffile survive), removes it (configuration and store stay),
# purges it (all gone) and removes the system
# user Debian leaves behind, so later runs start from the same machine.
# No service is started: systemd is not PID 1 here, and policy-rc.d says
# no in case it were.
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d /tmp/mailpubsub-pkg-XXXXXX)
made_policy=
cleanup() {
	dpkg --purge mailpubsub >/dev/null 2>&1 || true
	remove_user
	[ -n "$made_policy" ] && rm -f /usr/sbin/policy-rc.d
	rm -rf "$tmp"
}
# Debian keeps a package's system user on purge (files it owned may remain
# elsewhere); this test machine must not keep ours. Only the user our
# sysusers line made (its GECOS) is removed.
remove_user() {
	if getent passwd mailpubsub | grep -q ':mailpubsub daemon:'; then
		userdel mailpubsub
		getent group mailpubsub >/dev/null && groupdel mailpubsub || true
	fi
}
fail() { echo "test-package: FAIL: $*" >&2; exit 1; }
trap cleanup EXIT

[ "$(id -u)" = 0 ] || fail "run as root (dpkg -i)"
if [ ! -e /usr/sbin/policy-rc.d ]; then
	printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
	chmod 755 /usr/sbin/policy-rc.d
	made_policy=1
fi
# a previous run that was cut short
dpkg --purge mailpubsub >/dev/null 2>&1 || true
remove_user

echo "test-package: dpkg-buildpackage -us -uc -b (log: $tmp/build.log)"
mkdir "$tmp/src"
# what git tracks, as it is in the working tree (not the build dirs)
git -C "$top" ls-files -z --cached --others --exclude-standard |
	tar -C "$top" --null --ignore-failed-read -T - -cf - 2>/dev/null | tar -C "$tmp/src" -xf -
# the unit tests had their own step; the build itself is what is tested
if ! (cd "$tmp/src" && DEB_BUILD_OPTIONS="nocheck parallel=$(nproc)" \
		dpkg-buildpackage -us -uc -b >"$tmp/build.log" 2>&1); then
	tail -n 40 "$tmp/build.log" >&2
	fail "dpkg-buildpackage"
fi
deb=$(ls "$tmp"/mailpubsub_*_*.deb)
# the postinst runs systemd-sysusers: the package must say it needs it
dpkg-deb -f "$deb" Depends | grep -q 'systemd-sysusers' || fail "no dependency on systemd-sysusers"

echo "test-package: lintian"
lintian --fail-on error --pedantic -I "$tmp"/mailpubsub_*.changes 2>&1 |
	grep -v 'running with root privileges' | tee "$tmp/lintian.log"
grep -q '^E:' "$tmp/lintian.log" && fail "lintian errors"

echo "test-package: dpkg -i"
dpkg -i "$deb" >"$tmp/install.log" 2>&1 || { cat "$tmp/install.log" >&2; fail "dpkg -i"; }
unit=/lib/systemd/system/mailpubsub.service
mailpubsubd --version | grep -q '^mailpubsubd [0-9]' || fail "mailpubsubd --version"
[ -x /usr/bin/mailpubsubctl ] || fail "mailpubsubctl missing"
[ -f "$unit" ] || fail "no $unit"
getent passwd mailpubsub | grep -q ':/var/lib/mailpubsub:' || fail "no system user mailpubsub"
[ "$(stat -c %U:%a /var/lib/mailpubsub)" = mailpubsub:750 ] || fail "/var/lib/mailpubsub owner/mode"
for s in component.secret changelog.key; do
	[ "$(stat -c %U:%a /etc/mailpubsub/$s)" = mailpubsub:600 ] || fail "$s owner/mode"
done
grep -qx /etc/mailpubsub/mailpubsub.conf /var/lib/dpkg/info/mailpubsub.conffiles ||
	fail "mailpubsub.conf is not a conffile"
[ -f /usr/share/doc/mailpubsub/examples/mailpubsub.conf ] || fail "examples"
man -w mailpubsub.conf >/dev/null || fail "man pages"

echo "test-package: systemd-analyze verify / security"
systemd-analyze verify "$unit" || fail "systemd-analyze verify"
systemd-analyze security --offline=yes "$unit" > "$tmp/security.log" 2>&1 || true
tail -n 1 "$tmp/security.log"
tail -n 1 "$tmp/security.log" | grep -Eq ' (OK|SAFE) ' || fail "exposure worse than OK"

echo "test-package: reinstall over itself (the upgrade path)"
sum=$(cat /etc/mailpubsub/component.secret /etc/mailpubsub/changelog.key | md5sum)
echo '; edited by the administrator' >> /etc/mailpubsub/mailpubsub.conf
dpkg -i "$deb" >"$tmp/install.log" 2>&1 || { cat "$tmp/install.log" >&2; fail "dpkg -i again"; }
[ "$(cat /etc/mailpubsub/component.secret /etc/mailpubsub/changelog.key | md5sum)" = "$sum" ] ||
	fail "secrets changed on upgrade"
tail -n 1 /etc/mailpubsub/mailpubsub.conf | grep -q 'edited by the administrator' ||
	fail "the edited conffile was replaced"

echo "test-package: dpkg --remove (configuration, secrets and store stay)"
touch /var/lib/mailpubsub/mailpubsub.db
dpkg --remove mailpubsub >"$tmp/remove.log" 2>&1 || { cat "$tmp/remove.log" >&2; fail "remove"; }
[ ! -e /usr/sbin/mailpubsubd ] && [ ! -e "$unit" ] || fail "remove left the programs"
for p in /etc/mailpubsub/mailpubsub.conf /etc/mailpubsub/component.secret \
	 /etc/mailpubsub/changelog.key /var/lib/mailpubsub/mailpubsub.db; do
	[ -e "$p" ] || fail "remove deleted $p"
done

echo "test-package: dpkg --purge"
dpkg --purge mailpubsub >"$tmp/purge.log" 2>&1 || { cat "$tmp/purge.log" >&2; fail "purge"; }
for p in /usr/sbin/mailpubsubd /usr/bin/mailpubsubctl "$unit" /etc/mailpubsub /var/lib/mailpubsub \
	 /usr/lib/sysusers.d/mailpubsub.conf; do
	[ ! -e "$p" ] || fail "$p left after purge"
done
getent passwd mailpubsub >/dev/null || fail "purge removed the system user (Debian keeps it)"
echo "test-package: pass"
