#!/usr/bin/env bash
# scripts/test.sh: runs every test (pg_regress, isolation, TAP with the real
# worker and a loopback receiver, then each scripts/test.d/*.sh: the short
# fuzzing run) against every supported PostgreSQL major, on a fresh Debian
# 12 machine, as root or as a user with sudo.
#
#   bash scripts/test.sh                every major: 15, 17, 18
#   bash scripts/test.sh --pg 17        only 17 (--pg may repeat, or list "15 17")
#   WEBHOOK_PG="15 17" bash scripts/test.sh
#   bash scripts/test.sh --chroot       every major in a chroot, this system's too
#                                       (or WEBHOOK_CHROOT=1)
#
# A major whose Debian release this system is (15 on Debian 12) runs here;
# the others run in a chroot of the release that ships them (17: Debian 13,
# 18: Debian unstable), built once and kept (scripts/chroot.sh).  Each run
# installs the Debian packages it needs, builds with warnings as errors,
# installs the extension, and runs the tests from a temporary copy of the
# tree owned by the user that runs PostgreSQL, so nothing lands in the
# checkout and a checkout others cannot read works too.  A failed major
# does not stop the next; the summary at the end says which passed, and the
# exit status is non-zero if any failed.
#
#   bash scripts/test.sh --here 17      (what a chroot runs) one major, on this system
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
. "$src/scripts/lib.sh"

# Runs every test for PostgreSQL major $1 on this system; prints a summary
# line per suite and the time of each phase, prefixed "webhook-test:".
# The temporary copy ($work) goes when the script exits.
run_here() {
  local major=$1 t0=$SECONDS t1 t2 t3 status=0 f t
  install_packages "$major"
  install_receiver "$src"
  t1=$SECONDS
  build_install "$src"
  t2=$SECONDS

  work=$(mktemp -d /tmp/webhook-test.XXXXXX)
  trap 'rm -rf "$work"' EXIT
  copy_tree "$src" "$work"
  chmod 755 "$work"
  [ "$(id -u)" = 0 ] && chown -R "$(pg_user)" "$work"

  as_pg make -C "$work" installcheck PROVE_FLAGS='--timer' 2>&1 | tee "$work/.installcheck.log" ||
    status=$?
  if [ $status -ne 0 ]; then
    for f in "$work/regression.diffs" "$work/output_iso/regression.diffs"; do
      [ -f "$f" ] && { echo "==== $f"; head -300 "$f"; }
    done
    for f in "$work"/tmp_check/log/*; do
      [ -f "$f" ] && { echo "==== $f (tail)"; tail -60 "$f"; }
    done
    echo "webhook-test: PostgreSQL $major: installcheck FAILED"
    return $status
  fi
  # from the copy: the checkout may be unreadable to the PostgreSQL user
  for t in "$work"/scripts/test.d/*.sh; do
    [ -e "$t" ] || continue
    echo "==== $(basename "$t")"
    as_pg env WEBHOOK_SRC="$work" bash "$t" 2>&1 | tee -a "$work/.installcheck.log"
  done
  t3=$SECONDS
  grep -E 'tests (passed|failed)|^Files=|^Result:|^fuzz: ' "$work/.installcheck.log" |
    sed "s/^[# ]*/webhook-test: PostgreSQL $major: /; s/ *$//"
  echo "webhook-test: PostgreSQL $major: packages $((t1 - t0)) s, build $((t2 - t1)) s, tests $((t3 - t2)) s"
  echo "all tests passed"
}

majors=${WEBHOOK_PG:-}
here=""
all_chroot=${WEBHOOK_CHROOT:-}
while [ $# -gt 0 ]; do
  case $1 in
    --pg) majors="${majors:+$majors }${2//,/ }"; shift 2 ;;
    --here) here=$2; shift 2 ;;
    --chroot) all_chroot=1; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "test.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
if [ -n "$here" ]; then
  run_here "$here"
  exit
fi
majors=${majors:-$WEBHOOK_MAJORS}
for m in $majors; do
  pg_suite "$m" >/dev/null || { echo "test.sh: PostgreSQL $m is not supported (only $WEBHOOK_MAJORS)" >&2; exit 2; }
done

# what a chroot run takes from the environment (sudo would drop it)
pass=()
for v in FUZZ_SECONDS FUZZ_TARGETS PROVE_TESTS WEBHOOK_CHROOTS WEBHOOK_MIRROR; do
  [ -z "${!v:-}" ] || pass+=("$v=${!v}")
done

logs=$(mktemp -d /tmp/webhook-test-logs.XXXXXX)
trap 'rm -rf "$logs"' EXIT
summary=()
failed=0
for m in $majors; do
  suite=$(pg_suite "$m")
  t0=$SECONDS
  rc=0
  if [ -z "$all_chroot" ] && [ "$suite" = "$(this_suite)" ]; then
    where="this system"
    echo "======== PostgreSQL $m on $where"
    bash "$src/scripts/test.sh" --here "$m" 2>&1 | tee "$logs/$m" || rc=$?
  else
    where="Debian $suite chroot"
    echo "======== PostgreSQL $m in a $where"
    as_root env "${pass[@]}" bash "$src/scripts/chroot.sh" "$suite" "$src" --here "$m" 2>&1 |
      tee "$logs/$m" || rc=$?
  fi
  if [ $rc -eq 0 ]; then verdict=passed; else verdict="FAILED (exit $rc)"; failed=1; fi
  summary+=("PostgreSQL $m ($where): $verdict in $((SECONDS - t0)) s")
  while IFS= read -r line; do summary+=("  ${line#webhook-test: }"); done \
    < <(grep -E '^(webhook-test|chroot): ' "$logs/$m" || true)
done

echo
echo "======== summary"
printf '%s\n' "${summary[@]}"
exit $failed
