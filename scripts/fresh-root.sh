#!/bin/sh
# Runs a README command in a fresh Debian 12 root, as a new server or a
# container image is: nothing but the base system, services forbidden to
# start, the project cloned into /root (mode 0700, where a root user
# following the README clones it).
#
#   sh scripts/fresh-root.sh demo   # the Quick start: sh scripts/demo.sh
#   sh scripts/fresh-root.sh test   # the whole test command inside
#
# The clone is of this clone's HEAD (commit what you want checked). The
# base root (mmdebstrap, variant minbase: the Essential set and apt, what
# Debian's container image holds) is bootstrapped once from the host's apt
# sources and kept as a tarball under $MAILPUBSUB_FRESH_ROOT_CACHE (default
# /var/cache/mailpubsub-fresh-root), rebuilt after 30 days or when the
# host's sources change; the .debs the command downloads are kept there
# too. Everything the README command installs is installed afresh each run.
# Mounts live in a private mount namespace and are unmounted on exit; the
# root is removed. Run as root.
set -eu

stop_root() {   # root dir: kills what still runs in it (a server a failed command left)
	for p in /proc/[0-9]*; do
		[ "$(readlink "$p/root" 2>/dev/null)" = "$1" ] && kill -9 "${p#/proc/}" 2>/dev/null
	done
	n=0
	while [ $n -lt 50 ]; do
		busy=0
		for p in /proc/[0-9]*; do
			[ "$(readlink "$p/root" 2>/dev/null)" = "$1" ] && busy=1
		done
		[ $busy = 0 ] && return 0
		sleep 0.1; n=$((n + 1))
	done
}

# shellcheck disable=SC2317  # called from a trap
unmount_root() {   # root dir
	stop_root "$1"
	for m in dev sys proc; do
		if mountpoint -q "$1/$m"; then
			umount -R "$1/$m" || umount -R -l "$1/$m"
		fi
	done
}

inside() {   # root, what: run by the outer script in a private mount namespace
	root=$1
	trap 'unmount_root "$root"' EXIT
	mount --bind /proc "$root/proc"
	mount --rbind /sys "$root/sys"
	mount --rbind /dev "$root/dev"   # with /dev/pts and /dev/shm
	chroot "$root" /usr/bin/env -i HOME=/root TERM=dumb MAILPUBSUB_FRESH_ROOT=1 \
		PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
		sh -c "cd /root/mailpubsub && sh scripts/$2.sh" &
	# waited for in the background, so that a TERM is handled now: it ends
	# everything in the root, then the EXIT trap unmounts
	trap 'stop_root "$root"' TERM
	wait_for $!
}

wait_for() {   # pid of a child: waits through trapped signals, returns its status
	st=0
	wait "$1" || st=$?
	while kill -0 "$1" 2>/dev/null; do
		st=0
		wait "$1" || st=$?
	done
	return $st
}

what=${1:-demo}
case $what in
demo|test) ;;
--inside) inside "$2" "$3"; exit ;;
*) echo "usage: sh scripts/fresh-root.sh demo|test" >&2; exit 2 ;;
esac
[ "$(id -u)" = 0 ] || { echo "fresh-root.sh: run as root" >&2; exit 1; }
top=$(cd "$(dirname "$0")/.." && pwd)
cache=${MAILPUBSUB_FRESH_ROOT_CACHE:-/var/cache/mailpubsub-fresh-root}
suite=bookworm
variant=minbase
mkdir -p "$cache/archives"
start=$(date +%s)
say() { echo "fresh-root: $* (+$(( $(date +%s) - start )) s)"; }

# --- the base root: the host's sources and its Acquire::Check-* options
# (this machine's archive may be a snapshot whose Release files are old)
sources=""
for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
	[ -f "$f" ] && grep -q '^[^#]' "$f" && sources="$sources $f"
done
[ -n "$sources" ] || { echo "fresh-root.sh: no apt sources on the host" >&2; exit 1; }
aptopts=$(apt-config dump | grep '^Acquire::Check-' || true)
# shellcheck disable=SC2086
key=$( { echo "$suite $variant"; echo "$aptopts"; cat $sources; } | sha256sum | cut -c1-12)
base="$cache/base-$suite-$variant-$key.tar"
(
	flock 9
	if [ -f "$base" ] && [ -z "$(find "$base" -mtime +30)" ]; then
		exit 0
	fi
	say "bootstrapping a $variant $suite root into $base"
	set --
	while IFS= read -r opt; do
		[ -n "$opt" ] && set -- "$@" "--aptopt=$opt"
	done <<EOF
$aptopts
EOF
	# shellcheck disable=SC2086
	mmdebstrap -q --format=tar --variant="$variant" "$@" "$suite" "$base.new" $sources
	mv "$base.new" "$base"
	find "$cache" -maxdepth 1 -name 'base-*.tar' ! -path "$base" -delete
) 9>"$cache/base.lock"

# --- a root of our own; what a run killed outright left is removed first
reap() {   # root dir: stops what still runs in it, removes it (never across a mount)
	r=$1
	stop_root "$r"
	if grep -q " ${r}[/ ]" /proc/self/mountinfo; then
		echo "fresh-root.sh: $r still has mounts: not removed" >&2
		return 1
	fi
	rm -rf --one-file-system "$r" "$r.pid"
}
for old in "$cache"/root.*.pid; do
	[ -f "$old" ] || continue
	kill -0 "$(cat "$old")" 2>/dev/null || reap "${old%.pid}" || true
done
root=$(mktemp -d "$cache/root.XXXXXX")
echo $$ > "$root.pid"
trap 'reap "$root"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM HUP

tar -C "$root" -xf "$base"
say "base root unpacked in $root"
printf '#!/bin/sh\nexit 101\n' > "$root/usr/sbin/policy-rc.d"
chmod 755 "$root/usr/sbin/policy-rc.d"
# what a container runtime or the installer provides: name service for
# localhost and the host's resolver; and, as Debian's container image (and
# this machine's) has, dpkg without an fsync per file
cp -L /etc/resolv.conf "$root/etc/resolv.conf"
printf '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n' > "$root/etc/hosts"
echo force-unsafe-io > "$root/etc/dpkg/dpkg.cfg.d/docker-apt-speedup"
# the .debs of earlier runs (hard links: same file system)
find "$cache/archives" -name '*.deb' -exec cp -l -t "$root/var/cache/apt/archives/" {} +
if ! git -C "$top" diff --quiet HEAD 2>/dev/null; then
	say "note: uncommitted changes in $top are not in the clone"
fi
git clone -q "$top" "$root/root/mailpubsub"
say "cloned $(git -C "$top" rev-parse --short HEAD) into /root/mailpubsub; running sh scripts/$what.sh"

# In a private mount namespace the mounts are nobody else's business and
# go away with it; inside() unmounts them anyway when the command ends.
rc=0
unshare --mount --propagation private sh "$top/scripts/fresh-root.sh" --inside "$root" "$what" &
inner=$!
trap 'kill -TERM "$inner" 2>/dev/null || true' INT TERM HUP
wait_for "$inner" || rc=$?
trap 'exit 130' INT
trap 'exit 143' TERM HUP

# keep what was downloaded; after a run that passed, drop the versions the
# archive no longer has
if [ $rc = 0 ] && chroot "$root" apt-get -qq autoclean >/dev/null 2>&1; then
	for f in "$cache/archives/"*.deb; do
		[ -e "$root/var/cache/apt/archives/${f##*/}" ] || rm -f "$f"
	done
fi
if ls "$root/var/cache/apt/archives/"*.deb >/dev/null 2>&1; then
	for f in "$root/var/cache/apt/archives/"*.deb; do
		[ -e "$cache/archives/${f##*/}" ] || cp -l "$f" "$cache/archives/" 2>/dev/null || cp "$f" "$cache/archives/"
	done
fi
# the packages the root ended with, to compare with a development machine's
# shellcheck disable=SC2016
chroot "$root" dpkg-query -W -f='${db:Status-Abbrev} ${Package}\n' |
	sed -n 's/^ii  *//p' | sort > "$cache/packages-$what.txt"
say "$(wc -l < "$cache/packages-$what.txt") packages in the root: $cache/packages-$what.txt"
if [ $rc = 0 ]; then
	say "sh scripts/$what.sh passed in a fresh $suite root"
else
	say "sh scripts/$what.sh FAILED (exit $rc) in a fresh $suite root"
fi
exit $rc
