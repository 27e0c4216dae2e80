#!/usr/bin/env bash
# Runs CarteKit's main job on the embedded default: a virtual bi-fente reader with the bundled
# synthetic Carte Vitale 2, read the way a Vitale reader reads it. Extra arguments go to `carte demo`
# (for example --json).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
# `carte --version` names the commit it was built from (Package.swift reads this).
export CARTEKIT_BUILD_COMMIT="$(bash scripts/build-commit.sh)"
command -v swift >/dev/null 2>&1 || export PATH="/opt/swift/usr/bin:/opt/swift/bin:$PATH"
swift build --product carte 2>&1 | grep -v "warning: 'main'" >&2
exec "$(swift build --show-bin-path)/carte" demo "$@"
