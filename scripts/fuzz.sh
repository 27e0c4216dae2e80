#!/usr/bin/env bash
# Builds CarteKit's libFuzzer executable (Fuzz/) with address sanitizer and runs its targets.
#
#   scripts/fuzz.sh                  every target, 60 s each, one after the other (one core)
#   scripts/fuzz.sh TARGET [SECONDS] one target (default 600 s); TARGET as in `scripts/fuzz.sh --list`
#   scripts/fuzz.sh --ci [SECONDS]   every target for SECONDS (default 15), two at a time, debug build; fails
#                                    on any crash, leak, timeout or out-of-memory (what scripts/test.sh runs)
#   scripts/fuzz.sh --campaign [TARGET ...]
#                                    long runs toward the bar of 10 million executions or 2 hours per target
#                                    (FUZZ_RUNS and FUZZ_SECONDS change it), every target or those named, two at
#                                    a time from a queue (one core each, FUZZ_JOBS changes it), from a copy of the
#                                    release executable (a later build does not replace it under a run); one line
#                                    per target is added to Fuzz/.build-fuzz/campaigns.tsv
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

# Ends the script (status 2) unless $1 is one of the targets.
known() { grep -qx -- "$1" <<<"$targets" || { say "unknown target '$1'; the targets are: $(tr '\n' ' ' <<<"$targets")"; exit 2; }; }

mode=one
case "${1:-}" in
  --list) printf '%s\n' $targets; exit 0 ;;
  --ci) mode=ci; seconds=${2:-15}; selected=$targets ;;
  --campaign)
    mode=campaign; shift; selected=${*:-$targets}
    for t in $selected; do known "$t"; done
    seconds=${FUZZ_SECONDS:-7200}; export FUZZ_RUNS=${FUZZ_RUNS:-10000000} ;;
  "") mode=all; seconds=60; selected=$targets ;;
  *)
    known "$1"
    selected=$1; seconds=${2:-600} ;;
esac
if [ -n "${FUZZ_RUNS:-}" ] && ! [[ "$FUZZ_RUNS" =~ ^[1-9][0-9]*$ ]]; then say "FUZZ_RUNS must be a positive whole number, not '$FUZZ_RUNS'"; exit 2; fi
if ! [[ "$seconds" =~ ^[0-9]+$ ]] || [ "$seconds" -lt 1 ]; then say "SECONDS must be a positive whole number, not '$seconds'"; exit 2; fi
jobs=${FUZZ_JOBS:-2}
if ! [[ "$jobs" =~ ^[1-9][0-9]*$ ]]; then say "FUZZ_JOBS must be a positive whole number, not '$jobs'"; exit 2; fi

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
exe="$bin/fuzz"
if [ "$mode" = campaign ]; then
  # A campaign runs for hours: it runs a copy, so building the tree meanwhile never swaps the executable.
  mkdir -p "$scratch/campaign"
  exe="$scratch/campaign/fuzz-$$"
  cp "$bin/fuzz" "$exe"
  trap 'rm -f "$exe"' EXIT
  if commit=$(git rev-parse --short HEAD 2>/dev/null); then
    git diff --quiet HEAD || commit="$commit+changes"
  else
    commit=unknown
  fi
  table="$scratch/campaigns.tsv"
  [ -s "$table" ] || printf 'started\tcommit\ttarget\texecutions\tedges\tseconds\texec_per_s\tnew_units\tpeak_rss_mb\toutcome\n' >"$table"
  say "campaign of $(wc -w <<<"$selected") target(s), $jobs at a time, each until $FUZZ_RUNS executions or $seconds s; results in $table"
fi

# One run of one target; prints its summary line and returns libFuzzer's status.
run() {
  local t=$1 s=$2
  local work="$scratch/corpus/$t" log="$scratch/logs/$t.log"
  mkdir -p "$work" "Fuzz/Regressions/$t" "$scratch/logs"
  local status=0 runs=() started=$SECONDS stamp
  stamp=$(date -u +%Y-%m-%dT%H:%M:%SZ)
  [ -n "${FUZZ_RUNS:-}" ] && runs=(-runs="$FUZZ_RUNS")
  # Leaks are checked after each input and at exit (Fuzz/lsan.supp says what is not a leak).
  ASAN_OPTIONS="detect_leaks=1:allocator_may_return_null=1:handle_abort=1" LSAN_OPTIONS="suppressions=$PWD/Fuzz/lsan.supp:print_suppressions=0" \
    CARTE_FUZZ_TARGET="$t" "$exe" "$work" "Fuzz/Corpus/$t" -max_total_time="$s" -timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=2048 \
      -max_len=65536 -print_final_stats=1 "${runs[@]}" -artifact_prefix="Fuzz/Regressions/$t/" >"$log" 2>&1 || status=$?
  final_stat() { sed -n "s/^stat::$1: *//p" "$log" | tail -1; }
  local execs cov
  execs=$(final_stat number_of_executed_units)
  cov=$(grep -oE "cov: [0-9]+" "$log" | tail -1 | cut -d' ' -f2)
  local found elapsed=$((SECONDS - started))
  found=$(grep -oE "(crash|leak|timeout|oom|slow-unit)-[0-9a-f]+" "$log" | sort -u | tr '\n' ' ' || true)
  if [ "$mode" = campaign ]; then
    local rate units rss
    rate=$(final_stat average_exec_per_sec); units=$(final_stat new_units_added); rss=$(final_stat peak_rss_mb)
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$stamp" "$commit" "$t" "${execs:-?}" "${cov:-?}" "$elapsed" \
      "${rate:-?}" "${units:-?}" "${rss:-?}" "$([ "$status" -eq 0 ] && echo ok || echo "failed ${found:-status $status}")" >>"$table"
  fi
  if [ "$status" -eq 0 ]; then
    printf 'fuzz: %-16s %6s s  %10s executions  %6s edges  ok\n' "$t" "$elapsed" "${execs:-?}" "${cov:-?}"
  else
    printf 'fuzz: %-16s %6s s  %10s executions  %6s edges  FAILED (status %s) %s— see %s\n' "$t" "$elapsed" "${execs:-?}" "${cov:-?}" "$status" "$found" "$log"
    grep -E "ERROR: |==ERROR|SUMMARY|Fatal error|Precondition failed|Assertion failed" "$log" | head -5 | sed 's/^/fuzz:   /'
  fi
  return "$status"
}

failed=0
if [ "$mode" = ci ] || [ "$mode" = campaign ]; then
  # $jobs at a time (two cores: two), each on one core; the next target starts as soon as one ends.
  running=0
  for t in $selected; do
    if [ "$running" -ge "$jobs" ]; then wait -n || failed=1; running=$((running - 1)); fi
    run "$t" "$seconds" &
    running=$((running + 1))
  done
  while [ "$running" -gt 0 ]; do wait -n || failed=1; running=$((running - 1)); done
else
  for t in $selected; do run "$t" "$seconds" || failed=1; done
fi
if [ "$failed" -ne 0 ]; then
  say "a target failed: its input is under Fuzz/Regressions/; fix the bug and commit the input with the fix"
  exit 1
fi
