#!/usr/bin/env bash
# Benchmarks (release build): ratios against references measured in the same run.
# scripts/bench.sh [core|pcsc|vitale|cps|apcv|doctor] [options]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
command -v swift >/dev/null 2>&1 || export PATH="/opt/swift/usr/bin:/opt/swift/bin:$PATH"
# Every product: `bench pcsc` loads libifdcarte.so and libifdnull.so from the same directory.
swift build -c release 2>&1 | grep -v "warning: 'main'" | grep -v "prohibited flag" >&2 || true
which="${1:-core}"
[ $# -gt 0 ] && shift
exec "$(swift build -c release --show-bin-path)/carte" bench "$which" "$@"
