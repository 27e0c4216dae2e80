#!/usr/bin/env bash
# Builds CarteKit's libFuzzer executable (Fuzz/) with address sanitizer and runs its targets.
#
#   scripts/fuzz.sh                  every target, 60 s each, one after the other (one core)
#   scripts/fuzz.sh TARGET [SECONDS] one target (default 600 s); TARGET as in `scripts/fuzz.sh --list`
#   scripts/fuzz.sh --ci [SECONDS]   every target for SECONDS (default 15), two at a time, debug build; fails
#                                    on any crash, leak, timeout or out-of-memory (what scripts/test.sh runs)
#   scripts/fuzz.sh --list           the targets
#   FUZZ_RUNS=N scripts/fuzz.sh …    also stop a target after N executions (a campaign toward a count)
#
# Each target starts from its seeds (Fuzz/Corpus/TARGET, committed) and a working corpus kept in
# Fuzz/.build-fuzz/corpus/TARGET (Fuzz/.build-fuzz-ci/ for --ci) between runs. An input that crashes, leaks, hangs (10 s) or takes more
# than 2 GiB is written to Fuzz/Regressions/TARGET/ (crash-…, leak-…, timeout-…, oom-…): commit it
# with the fix, and the normal test suite replays it for good (Tests/FuzzRegressionTests).
# A summary line per target gives its executions, coverage (edges) and outcome.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v swift >/dev/null 2>&1 || export PATH="/opt/swift/usr/bin:/opt/swift/bin:$PATH"

say() { printf 'fuzz: %s\n' "$*" >&2; }
scratch=Fuzz/.build-fuzz
targets=$(ls Fuzz/Corpus)

mode=one
case "${1:-}" in
  --list) printf '%s\n' $targets; exit 0 ;;
  --ci) mode=ci; seconds=${2:-15}; selected=$targets ;;
  "") mode=all; seconds=60; selected=$targets ;;
  *)
    if ! grep -qx -- "$1" <<<"$targets"; then
      say "unknown target '$1'; the targets are: $(tr '\n' ' ' <<<"$targets")"
      exit 2
    fi
    selected=$1; seconds=${2:-600} ;;
esac
if [ -n "${FUZZ_RUNS:-}" ] && ! [[ "$FUZZ_RUNS" =~ ^[1-9][0-9]*$ ]]; then say "FUZZ_RUNS must be a positive whole number, not '$FUZZ_RUNS'"; exit 2; fi
if ! [[ "$seconds" =~ ^[0-9]+$ ]] || [ "$seconds" -lt 1 ]; then say "SECONDS must be a positive whole number, not '$seconds'"; exit 2; fi

# libFuzzer and ASan come with the Swift toolchain. `--sanitize fuzzer` links libFuzzer; the combined
# -sanitize=fuzzer,address reaches every Swift module (two separate -sanitize flags keep only the last).
# Campaigns use an optimised build (about four times the executions per second); the short CI runs use
# a debug build, which compiles in half the time and keeps every debug precondition.
configuration=release
[ "$mode" = ci ] && { configuration=debug; scratch=Fuzz/.build-fuzz-ci; }
say "building the targets ($configuration, libFuzzer + address sanitizer) in $scratch"
swift build --package-path Fuzz -c "$configuration" --sanitize fuzzer -Xswiftc -sanitize=fuzzer,address --scratch-path "$scratch" 2>&1 \
  | grep -E "error|warning: unre|Compiling|Build" | grep -v "^\[" || true
bin="$scratch/$configuration"
[ -x "$bin/fuzz" ] || { say "the build did not produce $bin/fuzz"; exit 1; }

# One run of one target; prints its summary line and returns libFuzzer's status.
run() {
  local t=$1 s=$2
  local work="$scratch/corpus/$t" log="$scratch/logs/$t.log"
  mkdir -p "$work" "Fuzz/Regressions/$t" "$scratch/logs"
  local status=0 runs=()
  [ -n "${FUZZ_RUNS:-}" ] && runs=(-runs="$FUZZ_RUNS")
  # Leaks are checked after each input and at exit (Fuzz/lsan.supp says what is not a leak).
  ASAN_OPTIONS="detect_leaks=1:allocator_may_return_null=1:handle_abort=1" LSAN_OPTIONS="suppressions=$PWD/Fuzz/lsan.supp:print_suppressions=0" \
    CARTE_FUZZ_TARGET="$t" "$bin/fuzz" "$work" "Fuzz/Corpus/$t" -max_total_time="$s" -timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=2048 \
      -max_len=65536 -print_final_stats=1 "${runs[@]}" -artifact_prefix="Fuzz/Regressions/$t/" >"$log" 2>&1 || status=$?
  local execs cov
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  cov=$(grep -oE "cov: [0-9]+" "$log" | tail -1 | cut -d' ' -f2)
  local found
  found=$(grep -oE "(crash|leak|timeout|oom|slow-unit)-[0-9a-f]+" "$log" | sort -u | tr '\n' ' ' || true)
  if [ "$status" -eq 0 ]; then
    printf 'fuzz: %-16s %6s s  %10s executions  %6s edges  ok\n' "$t" "$s" "${execs:-?}" "${cov:-?}"
  else
    printf 'fuzz: %-16s %6s s  %10s executions  %6s edges  FAILED (status %s) %s— see %s\n' "$t" "$s" "${execs:-?}" "${cov:-?}" "$status" "$found" "$log"
    grep -E "ERROR: |==ERROR|SUMMARY|Fatal error|Precondition failed|Assertion failed" "$log" | head -5 | sed 's/^/fuzz:   /'
  fi
  return "$status"
}

failed=0
if [ "$mode" = ci ]; then
  # Two at a time (two cores), each on one core.
  set -- $selected
  while [ $# -gt 0 ]; do
    a=$1; shift
    b=${1:-}; [ $# -gt 0 ] && shift
    run "$a" "$seconds" & pa=$!
    if [ -n "$b" ]; then run "$b" "$seconds" & pb=$!; fi
    wait "$pa" || failed=1
    if [ -n "$b" ]; then wait "$pb" || failed=1; fi
  done
else
  for t in $selected; do run "$t" "$seconds" || failed=1; done
fi
if [ "$failed" -ne 0 ]; then
  say "a target failed: its input is under Fuzz/Regressions/; fix the bug and commit the input with the fix"
  exit 1
fi
