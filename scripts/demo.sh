#!/bin/sh
# Installs what is missing, builds, starts a private Prosody + Cyrus IMAP +
# mailpubsubd on 127.0.0.1 and shows mail events reaching a subscribed
# XMPP client. Everything runs from a temp dir and is stopped at the end
# (pass --keep to leave it running until Ctrl-C).
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
sh scripts/deps.sh
sh scripts/build.sh
exec /usr/bin/python3 tests/integration/demo.py "$@"
