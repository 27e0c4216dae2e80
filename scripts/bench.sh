#!/usr/bin/env bash
# Benchmarks (release build): ratios against references measured in the same run.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
command -v swift >/dev/null 2>&1 || export PATH="/opt/swift/usr/bin:/opt/swift/bin:$PATH"
swift build -c release --product carte 2>&1 | grep -v "warning: 'main'" >&2
exec "$(swift build -c release --show-bin-path)/carte" bench core "$@"
