#!/usr/bin/env bash
# Installs what CarteKit needs on Debian 12 when it is missing, then checks the Swift toolchain.
# Safe to run again: it installs nothing when everything is there.
set -euo pipefail

# Debian packages CarteKit builds and tests with (one line per purpose).
PACKAGES=(
  pkg-config                      # system-library targets
  libpcsclite-dev pcscd           # PC/SC client library and the daemon the tests start privately
  libusb-1.0-0-dev                # USB diagnostics
  libssl-dev                      # OpenSSL for card crypto
  opensc pcsc-tools python3-pyscard  # independent PC/SC clients the tests drive (opensc-tool, pcsc_scan, pyscard)
  curl libengine-pkcs11-openssl   # mutual TLS with the card's key through OpenSC's PKCS#11 (curl --engine pkcs11)
  util-linux procps iproute2      # unshare (private pcscd namespace), pgrep, ip (loopback in a private netns)
  vsmartcard-vpcd                 # stock vpcd, the second reference of `carte bench pcsc`
  gcc libc6-dev binutils valgrind # the C API: the C example and misuse program, nm/strip, valgrind checks
  umockdev gir1.2-umockdev-1.0 python3-gi  # fake USB readers for pcscd's hotplug and libusb (scripts/usb-testbed.py)
  python3-websocket               # an independent WebSocket client for carte agent's tests (forged Host, Origin, frames)
  chromium                        # a real browser, headless, for the agent's demo page (driven over DevTools by python3-websocket)
  libnss3-tools                   # certutil: carte agent trust install (the browsers' NSS databases)
  dpkg-dev lintian debootstrap   # the Debian package (scripts/package.sh) and the clean Debian 12 root its test installs it in
)

say() { printf 'bootstrap: %s\n' "$*" >&2; }

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if ((${#missing[@]})); then
  say "installing missing Debian packages: ${missing[*]}"
  SUDO=()
  if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
      SUDO=(sudo -n)
    else
      say "error: these packages are missing and installing them needs root:"
      say "  apt-get install --no-install-recommends ${missing[*]}"
      say "run this script as root, or install them and run it again."
      exit 1
    fi
  fi
  export DEBIAN_FRONTEND=noninteractive
  if ! "${SUDO[@]}" apt-get update -qq; then
    say "error: 'apt-get update' failed (no network, or no Debian mirror reachable)."
    say "install by hand: apt-get install --no-install-recommends ${missing[*]}"
    exit 1
  fi
  if ! "${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; then
    say "error: 'apt-get install ${missing[*]}' failed; see the messages above."
    exit 1
  fi
fi

# Swift is not a Debian package: it must already be installed (swift.org toolchain, 6.2 or later:
# Package.swift treats our warnings as errors with tools-version 6.2).
if ! command -v swift >/dev/null 2>&1; then
  for dir in /opt/swift/usr/bin /opt/swift/bin /usr/share/swift/usr/bin; do
    if [ -x "$dir/swift" ]; then export PATH="$dir:$PATH"; break; fi
  done
fi
if ! command -v swift >/dev/null 2>&1; then
  say "error: no Swift toolchain found. Install Swift 6.2 or later (https://www.swift.org/install/linux/)"
  say "and put its bin directory on PATH."
  exit 1
fi
version=$(swift --version 2>/dev/null | sed -n 's/.*Swift version \([0-9]*\)\.\([0-9]*\).*/\1 \2/p' | head -1)
read -r major minor <<<"${version:-0 0}"
if [ "$major" -lt 6 ] || { [ "$major" -eq 6 ] && [ "$minor" -lt 2 ]; }; then
  say "error: Swift $major.$minor found; CarteKit needs Swift 6.2 or later."
  exit 1
fi
say "ok: Debian packages present, Swift $major.$minor"
