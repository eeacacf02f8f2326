#!/usr/bin/env bash
# scripts/sanitize.sh: runs every test (pg_regress, isolation, TAP) once with
# the extension built with AddressSanitizer and UndefinedBehaviorSanitizer,
# and says whether the run was clean: every test passed and no sanitizer
# reported anything.  As root or as a normal user (with sudo only if Debian
# packages are missing); PostgreSQL runs as the user scripts/test.sh uses.
#
#   sudo bash scripts/sanitize.sh
#
# It never touches the system's PostgreSQL: it copies the server's lib and
# share trees into a temporary prefix (the Debian build is relocatable, so
# the copied pg_config and postgres find their files there), installs the
# instrumented webhook.so into that copy only, and runs `make installcheck`
# against it.  Only the server gets the sanitizer runtimes: the copy's
# `postgres` is a script that execs the real binary (postgres.bin) with
# libasan preloaded; psql, perl, node and the rest run as usual.  ASan
# writes its reports to files, one per process; UBSan writes to the server's
# stderr, which is the server log the tests keep (with gcc's two runtimes in
# one process, UBSan's log_path does nothing: libubsan's call to set it binds
# to libasan's copy), so both places are searched.  Before
# the suite, a canary (a function with a heap overflow and one with a bad
# shift, loaded into a throwaway single-user server) must produce one report
# of each kind, so a clean run cannot come from sanitizers that never ran.
#
#   SANITIZE_SUITES="regress isolation tap"   which suites to run
#   PROVE_TESTS="t/001_delivery.pl ..."       TAP files to run (default all)
#   ASAN_OPTIONS / UBSAN_OPTIONS              appended to the options below
#   SANITIZE_KEEP=1                           keep the temporary tree and logs
#
# Exits non-zero if a test fails, a sanitizer reports anything (each report
# is printed in full), or the canary shows the sanitizers are not working.
# Leak detection is off: PostgreSQL leaves memory to process exit by design.
# What is checked is webhook.so's own code (heap, stack and global accesses,
# undefined behaviour) and every malloc'd buffer (libcurl, OpenSSL) it
# touches; palloc'd memory lives inside large malloc'd blocks, so an overrun
# of one palloc chunk into the next is not seen.
set -euo pipefail
umask 022
src=$(cd "$(dirname "$0")/.." && pwd)
. "$src/scripts/lib.sh"

suites=${SANITIZE_SUITES:-regress isolation tap}
san_flags='-O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined'

install_packages
[ -d "$src/test/receiver/node_modules" ] || install_receiver "$src"

libasan=$(readlink -f "$(gcc -print-file-name=libasan.so)")
libubsan=$(readlink -f "$(gcc -print-file-name=libubsan.so)")
for f in "$libasan" "$libubsan"; do
  [ -f "$f" ] || { echo "sanitize: gcc's sanitizer runtime $f not found" >&2; exit 1; }
done

tmp=$(mktemp -d /tmp/webhook-sanitize.XXXXXX)
chmod 755 "$tmp"
sys_bindir=$(pg_config --bindir)
bindir=$tmp$sys_bindir

# Stops any server still running from the private prefix (an interrupted
# run), then removes the prefix.
cleanup() {
  local pids=() p
  for p in /proc/[0-9]*; do
    [ "$(readlink "$p/exe" 2>/dev/null)" = "$bindir/postgres.bin" ] && pids+=("${p#/proc/}")
  done
  if [ ${#pids[@]} -gt 0 ]; then
    kill -QUIT "${pids[@]}" 2>/dev/null || true
    sleep 2
    kill -KILL "${pids[@]}" 2>/dev/null || true
  fi
  if [ "${SANITIZE_KEEP:-}" = 1 ]; then
    echo "sanitize: kept $tmp"
  else
    rm -rf "$tmp"
  fi
}
trap cleanup EXIT

# ---- a private copy of the server, same layout under $tmp
sys_libroot=$(dirname "$sys_bindir")            # /usr/lib/postgresql/15
sys_share=$(pg_config --sharedir)               # /usr/share/postgresql/15
sys_inc=$(pg_config --pkgincludedir)            # /usr/include/postgresql
mkdir -p "$tmp$(dirname "$sys_libroot")" "$tmp$(dirname "$sys_share")" "$tmp$(dirname "$sys_inc")"
cp -a "$sys_libroot" "$tmp$sys_libroot"
cp -a "$sys_share" "$tmp$sys_share"
ln -s "$sys_inc" "$tmp$sys_inc"                 # headers are only read
pc=$bindir/pg_config
for k in bindir pkglibdir sharedir pgxs includedir-server; do
  want=$tmp$(pg_config --$k)
  got=$("$pc" --$k)
  [ "$got" = "$want" ] || { echo "sanitize: private pg_config --$k says $got, not $want" >&2; exit 1; }
done
pkglib=$("$pc" --pkglibdir)
share=$("$pc" --sharedir)
# whatever webhook the system has installed must not be picked up
rm -rf "$pkglib"/webhook.so "$pkglib"/bitcode/webhook "$pkglib"/bitcode/webhook.index.bc \
       "$share"/extension/webhook.control "$share"/extension/webhook--*.sql

# ---- the server under the sanitizers
reports=$tmp/reports        # one file per process ASan reported in (asan.PID)
launches=$tmp/launches      # one line per server process started through the wrapper
mkdir "$reports" "$tmp/stub"
: >"$launches"

# libasan, preloaded into a program not built with it, initialises on the
# first call it intercepts.  In postgres that is a malloc inside a library
# constructor (libgpg-error's bindtextdomain, p11-kit's newlocale) holding a
# glibc locale lock; the initialisation looks up swift_demangle with dlsym and
# clears the failure with dlerror, whose message translation takes the same
# lock and corrupts it, and the process hangs in its next bindtextdomain or at
# exit.  Defining swift_demangle (returning "not demangled") makes the lookup
# succeed, leaving dlerror nothing to translate.
cat >"$tmp/stub/stub.c" <<'EOF'
#include <stddef.h>
#include <stdint.h>
char *swift_demangle(const char *name, size_t len, char *out, size_t *outlen, uint32_t flags);
char *
swift_demangle(const char *name, size_t len, char *out, size_t *outlen, uint32_t flags)
{
	return NULL;
}
EOF
gcc -O2 -fPIC -shared -o "$tmp/stub/stub.so" "$tmp/stub/stub.c"

# A quarantine of 64 MB (not 256) per process: freed memory stays resident
# while quarantined, so a process's memory measures its quarantine filling
# as well as its own use.  t/008, which bounds the worker's growth, reads
# the quarantine from ASAN_OPTIONS (passed to the tests below; a server
# process's own environment is overwritten by its ps title) and allows it
# on top of its 20 MB; a smaller quarantine keeps that bound tight and still
# holds many cycles of the worker's freed memory.
asan_opts="detect_leaks=0:abort_on_error=0:allocator_may_return_null=1:quarantine_size_mb=64"
asan_opts+="${ASAN_OPTIONS:+:$ASAN_OPTIONS}:log_path=$reports/asan"
ubsan_opts="print_stacktrace=1:halt_on_error=1${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}"
mv "$bindir/postgres" "$bindir/postgres.bin"
# pg_ctl, initdb and pg_regress run the postgres beside them; postgres finds
# its share and lib directories from argv[0], so it is told it is that one.
cat >"$bindir/postgres" <<EOF
#!/bin/bash
# Written by scripts/sanitize.sh: the server with ASan's runtime (webhook.so
# brings libubsan itself).
echo \$\$ >>'$launches'
export LD_PRELOAD='$libasan $tmp/stub/stub.so'\${LD_PRELOAD:+" \$LD_PRELOAD"}
export ASAN_OPTIONS='$asan_opts'
export UBSAN_OPTIONS='$ubsan_opts'
exec -a '$bindir/postgres' '$bindir/postgres.bin' "\$@"
EOF
chmod 755 "$bindir/postgres"

# ---- the instrumented extension, built in a copy of the tree
tree=$tmp/tree
mkdir "$tree"
copy_tree "$src" "$tree"
# no _FORTIFY_SOURCE: its __memcpy_chk and friends bypass ASan's checks
cppflags=$("$pc" --cppflags | sed 's/-D_FORTIFY_SOURCE=[0-9]*//')
make -s -C "$tree" clean PG_CONFIG="$pc" >/dev/null
echo "sanitize: building webhook.so with $san_flags"
make -s -C "$tree" PG_CONFIG="$pc" COPT="$san_flags" CPPFLAGS="$cppflags"
make -s -C "$tree" install PG_CONFIG="$pc" >/dev/null
needed=$(readelf -d "$pkglib/webhook.so" | sed -n 's/.*NEEDED.*\[\(.*\)\]/\1/p' | tr '\n' ' ')
case "$needed" in
  *libasan*libubsan*|*libubsan*libasan*) ;;
  *) echo "sanitize: $pkglib/webhook.so does not link the sanitizer runtimes ($needed)" >&2; exit 1 ;;
esac

if [ "$(id -u)" = 0 ]; then
  chown -R "$(pg_user)" "$tree" "$reports" "$launches"
fi

# ---- canary: the sanitizers must see a heap overflow and a bad shift
canary=$tmp/canary
mkdir "$canary"
cat >"$canary/canary.c" <<'EOF'
#include "postgres.h"
#include "fmgr.h"
PG_MODULE_MAGIC;
PG_FUNCTION_INFO_V1(canary_overflow);
PG_FUNCTION_INFO_V1(canary_shift);
Datum
canary_overflow(PG_FUNCTION_ARGS)
{
	int32		n = PG_GETARG_INT32(0);
	char	   *p = malloc(n);
	volatile char c = p[n];

	free(p);
	PG_RETURN_INT32(c);
}
Datum
canary_shift(PG_FUNCTION_ARGS)
{
	PG_RETURN_INT32(1 << PG_GETARG_INT32(0));
}
EOF
# shellcheck disable=SC2086
gcc $san_flags -fPIC -shared -I"$("$pc" --includedir-server)" -o "$canary/canary.so" "$canary/canary.c"
[ "$(id -u)" = 0 ] && chown "$(pg_user)" "$canary"
single() {
  as_pg "$bindir/postgres" --single -D "$canary/data" -c exit_on_error=on postgres <<<"$1" >>"$canary/log" 2>&1 || true
}
as_pg "$bindir/initdb" -D "$canary/data" >"$canary/log" 2>&1
single "CREATE FUNCTION canary_overflow(int) RETURNS int AS '$canary/canary.so' LANGUAGE C STRICT;
CREATE FUNCTION canary_shift(int) RETURNS int AS '$canary/canary.so' LANGUAGE C STRICT;"
single "SELECT canary_overflow(40);"
single "SELECT canary_shift(40);"
if ! cat "$reports"/asan.* 2>/dev/null | grep -q 'heap-buffer-overflow' ||
   ! grep -q 'runtime error: shift exponent 40' "$canary/log"; then
  echo "sanitize: the canary was not caught: the sanitizers are not working" >&2
  ls -l "$reports" >&2
  cat "$canary/log" "$reports"/* >&2 2>/dev/null || true
  exit 1
fi
mkdir "$canary/reports"
mv "$reports"/* "$canary/reports"/
echo "sanitize: canary caught: $(grep -h '^SUMMARY' "$canary/reports"/*), $(grep -o 'runtime error: .*' "$canary/log")"
: >"$launches"

# ---- the suites
log=$tmp/installcheck.log
declare -A stage_rc stage_secs
run_stage() {
  local name=$1 t0=$SECONDS rc=0
  shift
  echo "==== $name"
  # ASAN_OPTIONS: what the servers run with, for tests that measure them
  # (no other program here loads ASan, so none acts on it)
  as_pg env PATH="$bindir:$PATH" ASAN_OPTIONS="$asan_opts" \
    make -C "$tree" installcheck PG_CONFIG="$pc" "$@" 2>&1 | tee -a "$log" || rc=$?
  stage_rc[$name]=$rc
  stage_secs[$name]=$((SECONDS - t0))
}
start=$SECONDS
for s in $suites; do
  case "$s" in
    regress) run_stage regress ISOLATION= TAP_TESTS= ;;
    isolation) run_stage isolation REGRESS= TAP_TESTS= ;;
    tap)
      args=(REGRESS= ISOLATION= PROVE_FLAGS=--timer)
      [ -n "${PROVE_TESTS:-}" ] && args+=("PROVE_TESTS=$PROVE_TESTS")
      run_stage tap "${args[@]}" ;;
    *) echo "sanitize: unknown suite $s" >&2; exit 1 ;;
  esac
done
total=$((SECONDS - start))

# ---- verdict
status=0
echo
echo "==== summary"
for s in $suites; do
  printf '%-10s %s in %d s\n' "$s" "$([ "${stage_rc[$s]}" = 0 ] && echo passed || echo FAILED)" "${stage_secs[$s]}"
  [ "${stage_rc[$s]}" = 0 ] || status=1
done
grep -hE '^ *All [0-9]+ tests passed|tests? failed|^Files=' "$log" | sed 's/^ *//' || true
awk '/^\[[0-9:]+\] t\/.*\.pl/ {
       if (match($0, / ok +[0-9]+ ms/)) printf "  %-22s ok      %6.1f s\n", $2, substr($0, RSTART + 4) / 1000
       else printf "  %-22s FAILED\n", $2 }' "$log"
nstarts=$(wc -l <"$launches")
echo "postgres processes started under ASan+UBSan: $nstarts"
[ "$nstarts" -gt 0 ] || { echo "sanitize: no server ran under the sanitizers" >&2; status=1; }

# ASan's files, and UBSan's reports (or ASan's, had a file failed) in the
# server logs: pg_regress's, pg_isolation_regress's and the TAP nodes'
found=$(ls "$reports")
marks='runtime error:|ERROR: AddressSanitizer|Sanitizer:'
logs=("$tree/log" "$tree/output_iso/log" "$tree/tmp_check/log")
logged=$(grep -rlE "$marks" "${logs[@]}" 2>/dev/null || true)
nreports=$(( $(printf '%s' "$found" | grep -c . || true) +
             $(cat /dev/null $logged | grep -cE "$marks" || true) ))
echo "sanitizer reports: $nreports"
if [ "$nreports" -gt 0 ]; then
  status=1
  for f in $found; do
    echo "---- $reports/$f"
    cat "$reports/$f"
  done
  for f in $logged; do
    echo "---- $f"
    grep -E -B2 -A40 "$marks" "$f" | head -300
  done
fi

if [ $status -ne 0 ]; then
  for f in "$tree/regression.diffs" "$tree/output_iso/regression.diffs"; do
    [ -f "$f" ] && { echo "==== $f"; head -300 "$f"; }
  done
  if [ "${stage_rc[tap]:-0}" != 0 ]; then
    # the failed files' logs (all of them if prove did not say which)
    failed=$(sed -n '/^Test Summary Report/,$p' "$log" | grep -oE '^t/[^ ]+\.pl' |
             sed 's|t/||; s|\.pl$||' | sort -u || true)
    files=("$tree"/tmp_check/log/*)
    if [ -n "$failed" ]; then
      files=()
      for t in $failed; do
        files+=("$tree/tmp_check/log/regress_log_$t" "$tree/tmp_check/log/${t}_"*.log)
      done
    fi
    for f in "${files[@]}"; do
      [ -f "$f" ] && { echo "==== $f (tail)"; tail -80 "$f"; }
    done
  fi
  echo "sanitize: FAILED ($total s)"
  exit 1
fi
echo "sanitize: clean: $suites passed, no sanitizer report ($total s)"
