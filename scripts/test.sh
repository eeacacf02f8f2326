#!/usr/bin/env bash
# scripts/test.sh: runs every test (pg_regress, isolation, TAP with the real
# worker and a loopback receiver, then each scripts/test.d/*.sh: the short
# fuzzing run) on a fresh Debian 12 machine, as root or as a user with sudo.
# Tests run from a temporary copy owned by the user that runs PostgreSQL, so
# nothing lands in the checkout.
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
. "$src/scripts/lib.sh"

install_packages
install_receiver "$src"
build_install "$src"

work=$(mktemp -d /tmp/webhook-test.XXXXXX)
trap 'rm -rf "$work"' EXIT
copy_tree "$src" "$work"
chmod 755 "$work"
[ "$(id -u)" = 0 ] && chown -R postgres "$work"

status=0
as_pg make -C "$work" installcheck PROVE_FLAGS='--timer' || status=$?
if [ $status -ne 0 ]; then
  for f in "$work/regression.diffs" "$work/output_iso/regression.diffs"; do
    [ -f "$f" ] && { echo "==== $f"; head -300 "$f"; }
  done
  for f in "$work"/tmp_check/log/*; do
    [ -f "$f" ] && { echo "==== $f (tail)"; tail -60 "$f"; }
  done
  exit $status
fi
# from the copy: the checkout may be unreadable to the PostgreSQL user
for t in "$work"/scripts/test.d/*.sh; do
  [ -e "$t" ] || continue
  echo "==== $(basename "$t")"
  as_pg env WEBHOOK_SRC="$work" bash "$t"
done
echo "all tests passed"
