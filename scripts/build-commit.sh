#!/usr/bin/env bash
# Prints the commit a build of this checkout comes from, for CARTEKIT_BUILD_COMMIT (Package.swift):
# 12 hex digits, "-dirty" when tracked files have local changes; nothing outside a git checkout.
cd "$(dirname "$0")/.." || exit 0
commit=$(git rev-parse --short=12 HEAD 2>/dev/null) || exit 0
git diff --quiet HEAD -- 2>/dev/null || commit="$commit-dirty"
printf '%s\n' "$commit"
