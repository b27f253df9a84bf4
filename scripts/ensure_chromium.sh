#!/usr/bin/env bash
# The browser tests drive Debian's Chromium (never a downloaded browser): install it when missing.
set -euo pipefail
if [ -x /usr/bin/chromium ]; then exit 0; fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "Installing Debian's chromium for the browser tests..."
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
else
  echo "error: /usr/bin/chromium is missing; install it with: sudo apt-get install -y chromium chromium-driver" >&2
  exit 1
fi
