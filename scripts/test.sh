#!/usr/bin/env bash
# Runs the whole CarteKit test suite from a fresh clone: installs what is missing, builds, tests.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
# `carte --version` names the commit it was built from (Package.swift reads this).
export CARTEKIT_BUILD_COMMIT="$(bash scripts/build-commit.sh)"
command -v swift >/dev/null 2>&1 || export PATH="/opt/swift/usr/bin:/opt/swift/bin:$PATH"

log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
# Build every product first: the PC/SC tests load libifdcarte.so, which no test target links.
swift build 2>&1 | grep -v "warning: 'main'" | grep -v "prohibited flag" || true
swift test 2>&1 | tee "$log" || status=$?

# A plain summary line from Swift Testing's closing line (kept even when it fails).
summary=$(grep -E "Test run with [0-9]+ tests?" "$log" | tail -1 || true)
total=$(sed -n 's/.*Test run with \([0-9]*\) tests\{0,1\}.*/\1/p' <<<"$summary")
failed_tests=$(grep -E "^✘ Test .* failed after" "$log" | grep -cv "^✘ Test run with" || true)
if [ -n "$total" ]; then
  echo "tests: $((total - failed_tests)) passed, $failed_tests failed"
fi

# The Debian package: built, installed in a clean Debian 12 root without Swift, used there, purged
# (scripts/package-test.sh, docs/packaging.md). It needs root (debootstrap, chroot, namespaces): CI runs
# as root and never skips it; PACKAGE_TEST=0 skips it for a quick local run.
if [ "${PACKAGE_TEST:-1}" != 0 ] || [ "${CI:-}" = true ]; then
  if [ "$(id -u)" -eq 0 ]; then
    bash scripts/package-test.sh || status=1
  else
    echo "package: skipped: the clean-root test needs root (debootstrap, chroot, mount namespaces)"
  fi
fi

# A short run of every libFuzzer target (Fuzz/, scripts/fuzz.sh): fails on a crash, leak, timeout or
# out-of-memory. FUZZ_SECONDS=0 skips it (for a quick local run; CI always runs it).
fuzz_seconds=${FUZZ_SECONDS:-12}
if [ "${CI:-}" = true ] || [ "$fuzz_seconds" != 0 ]; then
  [ "$fuzz_seconds" = 0 ] && fuzz_seconds=12
  bash scripts/fuzz.sh --ci "$fuzz_seconds" || status=1
fi
exit "$status"
