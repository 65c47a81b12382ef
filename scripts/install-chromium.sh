#!/bin/sh
# Installs Debian's chromium for the real-browser report test
# (test/integration/sim-report-browser.test.ts). playwright-core downloads no
# browser of its own, so the system package is the one it drives.
# Idempotent: does nothing when /usr/bin/chromium is already there.
set -eu

CHROMIUM=/usr/bin/chromium

if [ -x "$CHROMIUM" ]; then
  echo "install-chromium: $CHROMIUM already installed ($("$CHROMIUM" --version 2>/dev/null || echo 'version unknown'))"
  exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
  echo "install-chromium: $CHROMIUM is missing and apt-get is not available; install Chromium by hand and set CHROMIUM_PATH" >&2
  exit 1
fi

# root runs apt-get directly; anyone else goes through sudo
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then
    SUDO="sudo"
  else
    echo "install-chromium: not root and no sudo; cannot install chromium" >&2
    exit 1
  fi
fi

echo "install-chromium: $CHROMIUM missing; running apt-get update"
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -q
echo "install-chromium: installing the chromium package"
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium

if [ ! -x "$CHROMIUM" ]; then
  echo "install-chromium: apt-get finished but $CHROMIUM is still missing" >&2
  exit 1
fi
echo "install-chromium: installed $("$CHROMIUM" --version 2>/dev/null || echo "$CHROMIUM")"
