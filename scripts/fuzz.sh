#!/usr/bin/env bash
# scripts/fuzz.sh: builds the libFuzzer targets (fuzz/Makefile) and runs each
# for FUZZ_SECONDS (default 60), as root or as a normal user.  Needs the
# clang PostgreSQL was built with and its sanitizer runtimes, libcurl,
# OpenSSL and the server headers and bitcode of the PostgreSQL pg_config
# names (fuzz/README.md).  Touches nothing outside fuzz/build/
# of the tree it belongs to, and never the network.
#
#   FUZZ_SECONDS=60    time per target
#   FUZZ_TARGETS="..." targets to run (default: all of them)
#
# Exits non-zero if a target finds a crash, a leak, a sanitizer report, a
# broken invariant or a timeout; the input that did it is kept in
# fuzz/build/artifacts/ and printed in base64.  Prints one line per target:
# runs executed, rate, coverage (edges of the whole binary, and of src/).
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
fuzz="$root/fuzz"
seconds=${FUZZ_SECONDS:-60}
targets=${FUZZ_TARGETS:-secret verify destination headers response}
build="$fuzz/build"

# Largest input per target: room for its longest field plus some.
max_len() {
  case "$1" in
    secret) echo 2048 ;;
    destination) echo 1024 ;;
    *) echo 4096 ;;
  esac
}

cc=$(make -s -C "$fuzz" BUILD="$build" print-cc)
if ! command -v "$cc" >/dev/null 2>&1; then
  case $cc in *-[0-9]*) rt=libclang-rt-${cc##*-}-dev ;; *) rt=libclang-rt-dev ;; esac
  echo "fuzz: $cc not found (Debian: apt-get install $(basename "$cc") $rt)" >&2
  exit 1
fi
make -s -C "$fuzz" BUILD="$build" >/dev/null || { echo "fuzz: build failed" >&2; exit 1; }
mkdir -p "$build/logs" "$build/artifacts"

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:symbolize=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

failed=()
for t in $targets; do
  bin="$build/fuzz_$t"
  log="$build/logs/$t.log"
  work="$build/corpus/$t"
  [ -x "$bin" ] || { echo "fuzz: no target $t" >&2; failed+=("$t"); continue; }
  mkdir -p "$work"
  rm -f "$build/artifacts/$t-"*
  # New inputs go to the work corpus (first directory); the seeds stay as committed.
  "$bin" -max_total_time="$seconds" -max_len="$(max_len "$t")" -timeout=30 \
    -rss_limit_mb=3072 -print_final_stats=1 -print_coverage=1 \
    -artifact_prefix="$build/artifacts/$t-" "$work" "$fuzz/corpus/$t" >"$log" 2>&1
  rc=$?

  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  done_line=$(grep -E '^#[0-9]+[[:space:]]+(DONE|INITED)' "$log" | tail -1)
  cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$done_line")
  ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$done_line")
  corp=$(sed -n 's/.* corp: \([0-9]*\)\/.*/\1/p' <<<"$done_line")
  # edges of the extension's own files, from -print_coverage
  src=$(grep -E '^(UN)?COVERED_FUNC: .*/src/[a-z_]+\.c:' "$log" |
        sed -n 's/.* edges: \([0-9]*\)\/\([0-9]*\) .*/\1 \2/p' |
        awk '{c += $1; t += $2; n++; if ($1 > 0) f++}
             END {if (t) printf "%d/%d (%d%%) in %d/%d functions", c, t, 100 * c / t, f, n; else print "?"}')

  status=ok
  if [ $rc -ne 0 ] || grep -qE '^==[0-9]+==ERROR|runtime error:|^==fuzz==|^==shim==|ERROR: libFuzzer|^SUMMARY: ' "$log"; then
    status=FAILED
    failed+=("$t")
  fi
  printf 'fuzz %-12s %s: %s runs in %s s (%s/s), cov %s, ft %s, corpus %s, src edges %s\n' \
    "$t" "$status" "${runs:-?}" "$seconds" "${rate:-?}" "${cov:-?}" "${ft:-?}" "${corp:-?}" "$src"
  if [ "$status" != ok ]; then
    echo "---- $log (report)"
    grep -vE '^(#[0-9]+|\s*NEW_FUNC|(UN)?COVERED_(FUNC|PC)|  UNCOVERED_PC)' "$log" | tail -80
    for a in "$build/artifacts/$t-"*; do
      [ -f "$a" ] || continue
      echo "---- reproducer $a ($(wc -c <"$a") bytes): $bin $a"
      base64 -w0 "$a"; echo
    done
  fi
done

if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: FAILED: ${failed[*]}" >&2
  exit 1
fi
echo "fuzz: all targets clean"
