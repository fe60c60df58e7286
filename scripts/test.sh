#!/bin/sh
# Installs what is missing, builds, and runs every test: the unit tests
# (plain and under ASan+UBSan) and the integration suite against private
# Cyrus IMAP and Prosody instances; beside them, the README demo command in
# a fresh Debian 12 base-system root (scripts/fresh-root.sh).
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
sh scripts/deps.sh
sh scripts/build.sh

summary=$(mktemp)
freshlog=$(mktemp)
trap 'rm -f "$summary" "$freshlog"' EXIT
count() {   # name, then the command; records pass/fail of a suite
	name=$1; shift
	if "$@"; then echo "$name pass" >> "$summary"; else echo "$name FAIL" >> "$summary"; fi
}

# Not inside a fresh root already (scripts/fresh-root.sh test runs this).
if [ -z "${MAILPUBSUB_FRESH_ROOT:-}" ]; then
	echo "== fresh Debian 12 root: the README demo command on a base system (scripts/fresh-root.sh; beside the steps up to the storm, its output after them)"
	# Mostly waiting on the archive and on servers: niced, it takes the
	# cycles the suites below leave idle rather than stretching their
	# timeouts; the storm, which measures rates, waits for it to end.
	count fresh-root nice -n 10 ionice -c 2 -n 7 sh scripts/fresh-root.sh demo >"$freshlog" 2>&1 &
	fresh=$!
fi

echo "== the dependency rule of src/ (README \"Architecture\"): no upward include, no include cycle, no sqlite3_ outside src/store/"
count layers /usr/bin/python3 scripts/check-layers.py

echo "== unit tests"
count unit make -s -C build check

echo "== unit tests under AddressSanitizer + UndefinedBehaviorSanitizer"
mkdir -p build-asan
(cd build-asan && { [ -f Makefile ] || "$top/configure" -q --enable-werror --enable-sanitizers; })
count unit-asan env ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
	make -s -C build-asan check

echo "== integration tests (private Cyrus + Prosody + mailpubsubd)"
# the event storm runs on its own below, for its full minute
count integration make -s -C build check-integration PYTEST_ARGS="-k 'not storm'"

echo "== the Debian package: build, lintian, unit checks, install, upgrade, purge (~3 min)"
count package sh scripts/test-package.sh

echo "== fuzz targets (built now, run for 20 s each beside the next step; tests/fuzz/README.md)"
mkdir -p build-fuzz
(cd build-fuzz && { [ -f Makefile ] || CC=clang "$top/configure" -q --enable-fuzz --enable-sanitizers; })
make -s -C build-fuzz -j"$(nproc)" >/dev/null
fuzzlog=$(mktemp)
# one core of libFuzzer while the ASan integration tests mostly wait on
# servers: the suite stays within its half hour
count fuzz make -s -C build-fuzz fuzz FUZZ_SECONDS=20 >"$fuzzlog" 2>&1 &
fuzzer=$!

echo "== integration tests with mailpubsubd under ASan + UBSan"
# valgrind cannot run ASan binaries: the valgrind test ran in the plain pass;
# the storm measures rates (and ASan's quarantine makes RSS meaningless): it
# runs with the plain daemon below
count integration-asan env ASAN_OPTIONS=detect_leaks=1 \
	make -s -C build-asan check-integration PYTEST_ARGS="-k 'not valgrind and not storm'"
wait "$fuzzer" || true
echo "== fuzz output"
cat "$fuzzlog"
rm -f "$fuzzlog"

if [ -n "${fresh:-}" ]; then
	wait "$fresh" || true
	echo "== fresh Debian 12 root output"
	cat "$freshlog"
fi

echo "== event storm: over 10x the sustainable publish rate for a minute, then the backlog (~12 min)"
count storm env MAILPUBSUB_STORM_SECONDS=60 \
	make -s -C build check-integration PYTEST_ARGS="-s -k storm"

echo
cat "$summary"
passed=$(grep -c ' pass$' "$summary" || true)
failed=$(grep -c ' FAIL$' "$summary" || true)
echo "suites: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
