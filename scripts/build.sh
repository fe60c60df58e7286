#!/bin/sh
# Builds mailpubsubd out of tree in build/ (warnings are errors).
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
[ -x configure ] || autoreconf -fi >/dev/null 2>&1
mkdir -p build
cd build
[ -f Makefile ] || "$top/configure" -q --enable-werror
make -s -j"$(nproc)"
