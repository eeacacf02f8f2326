#!/usr/bin/env bash
# scripts/chroot.sh: runs scripts/test.sh in a chroot of another Debian
# release, for the PostgreSQL majors this system's archive does not ship
# (scripts/test.sh calls it, as root or through sudo).  Everything about
# chroots is here.
#
#   bash scripts/chroot.sh SUITE SRC [ARGS...]
#
# runs "bash scripts/test.sh ARGS..." from a copy of the tree SRC inside the
# chroot of Debian SUITE (bookworm, trixie, sid).
#
# The chroot is /var/cache/webhook-chroots/SUITE (WEBHOOK_CHROOTS overrides
# the directory), kept for later runs.  When missing, debootstrap builds it
# from Debian's archive (WEBHOOK_MIRROR, default http://deb.debian.org/debian)
# in a temporary directory beside it, which is renamed into place only when
# complete; a chroot without its .webhook-complete marker is never used.
# Inside, no service starts when a package is installed (policy-rc.d), the
# postgresql packages create no cluster, and apt accepts Release files past
# their Valid-Until (unstable's are, on a snapshot mirror).  One run at a
# time uses a chroot: a second one waits for the lock beside it.
#
# A run copies SRC (without .git and build outputs) into the chroot's /tmp
# and, in a mount namespace of its own, mounts /proc, /dev, a tmpfs on
# /dev/shm and a devpts on /dev/pts, then runs test.sh there as root with
# a clean environment (FUZZ_SECONDS, FUZZ_TARGETS and PROVE_TESTS pass
# through).  The chroot uses this machine's DNS settings and trusts its
# local certificate authorities (/usr/local/share/ca-certificates): npm
# fetches the receiver's dependency through whatever this machine goes
# through.  On the way out, after a failure or a signal too, it stops the
# processes left inside, unmounts and removes the copy; the mounts belong
# to the namespace and vanish with it even if this script is killed.
#
# To rebuild a chroot, remove it while no run uses it:
#   rm -rf --one-file-system /var/cache/webhook-chroots/SUITE
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=scripts/lib.sh
. "$here/lib.sh"

cache=${WEBHOOK_CHROOTS:-/var/cache/webhook-chroots}
mirror=${WEBHOOK_MIRROR:-http://deb.debian.org/debian}

# Unmounts whatever is mounted at or under directory $1 (an interrupted
# debootstrap leaves /proc and /sys mounted in its target), then removes
# it without crossing into another file system.
remove_tree() {
  local m
  awk -v d="$1" '$2 == d || index($2, d "/") == 1 { print $2 }' /proc/mounts | sort -r |
    while read -r m; do umount "$m" 2>/dev/null || umount -l "$m"; done
  rm -rf --one-file-system "$1"
}

# Builds the chroot of Debian $1 at $2 (the caller holds its lock).
create_chroot() {
  local suite=$1 root=$2 tmp d t0=$SECONDS
  if ! command -v debootstrap >/dev/null 2>&1; then
    apt_install debootstrap
  fi
  for d in "$cache/.$suite.new."*; do
    [ -d "$d" ] && remove_tree "$d"    # left by a run that died while building
  done
  tmp=$(mktemp -d "$cache/.$suite.new.XXXXXX")
  chmod 755 "$tmp"             # it becomes the chroot's /
  echo "chroot: building Debian $suite in $root"
  if ! debootstrap --variant=minbase "$suite" "$tmp" "$mirror" >"$tmp.log" 2>&1; then
    tail -30 "$tmp.log" >&2
    remove_tree "$tmp"
    rm -f "$tmp.log"
    echo "chroot: debootstrap of $suite failed" >&2
    return 1
  fi
  rm -f "$tmp.log"
  printf '#!/bin/sh\n# no service starts in this chroot\nexit 101\n' >"$tmp/usr/sbin/policy-rc.d"
  chmod 755 "$tmp/usr/sbin/policy-rc.d"
  mkdir -p "$tmp/etc/postgresql-common/createcluster.d"
  echo 'create_main_cluster = false' >"$tmp/etc/postgresql-common/createcluster.d/webhook.conf"
  echo 'Acquire::Check-Valid-Until "false";' >"$tmp/etc/apt/apt.conf.d/99webhook"
  touch "$tmp/.webhook-complete"
  mv -T "$tmp" "$root"
  echo "chroot: Debian $suite built in $((SECONDS - t0)) s"
}

# Copies this machine's own certificate authorities (a TLS-inspecting
# proxy's, say) into the chroot $1, so that npm there trusts what it trusts
# here; marks the chroot for update-ca-certificates when they changed.
sync_local_cas() {
  local from=/usr/local/share/ca-certificates to=$1/usr/local/share/ca-certificates
  [ -d "$from" ] || return 0
  if ! diff -r "$from" "$to" >/dev/null 2>&1; then
    rm -rf "$to"
    cp -a "$from" "$to"
    touch "$1/.webhook-cas-changed"
  fi
}

# In the private mount namespace: mounts, runs the command in the chroot
# $1 from the copy $2 (a path inside it), cleans up on the way out.
inside() {
  local root=$1 copy=$2 status=0 var
  shift 2
  local vars=(HOME=/root PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
              LANG=C.UTF-8 DEBIAN_FRONTEND=noninteractive
              NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt)
  for var in FUZZ_SECONDS FUZZ_TARGETS PROVE_TESTS; do
    [ -z "${!var:-}" ] || vars+=("$var=${!var}")
  done
  # shellcheck disable=SC2064  # $root now: the trap runs after this function
  trap "inside_cleanup $(printf %q "$root")" EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  mount -t proc proc "$root/proc"
  mount --bind /dev "$root/dev"
  mount -t tmpfs -o mode=1777,nosuid,nodev shm "$root/dev/shm"
  mount -t devpts -o newinstance,ptmxmode=0666,mode=0620 devpts "$root/dev/pts"
  # (before ca-certificates is installed, its own set-up takes them in)
  if [ -e "$root/.webhook-cas-changed" ] && [ -x "$root/usr/sbin/update-ca-certificates" ]; then
    chroot "$root" update-ca-certificates >/dev/null && rm -f "$root/.webhook-cas-changed"
  fi
  env -i "${vars[@]}" chroot "$root" bash "$copy/scripts/test.sh" "$@" || status=$?
  return $status
}

# Stops every process whose root is the chroot $1 (a server or receiver a
# failed test left running), then unmounts what inside() mounted.
inside_cleanup() {
  local root=$1 p pids deadline
  pids=()
  for p in /proc/[0-9]*; do
    [ "$(readlink "$p/root" 2>/dev/null)" = "$root" ] && pids+=("${p#/proc/}")
  done
  if [ ${#pids[@]} -gt 0 ]; then
    echo "chroot: stopping ${#pids[@]} processes left in $root"
    kill -TERM "${pids[@]}" 2>/dev/null || true
    deadline=$((SECONDS + 10))
    while [ $SECONDS -lt $deadline ] && kill -0 "${pids[@]}" 2>/dev/null; do sleep 0.2; done
    kill -KILL "${pids[@]}" 2>/dev/null || true
  fi
  for p in dev/pts dev/shm dev proc; do
    mountpoint -q "$root/$p" && { umount "$root/$p" 2>/dev/null || umount -l "$root/$p"; }
  done
}

if [ "${1:-}" = --inside ]; then
  shift
  inside "$@"
  exit
fi

[ $# -ge 2 ] || { echo "usage: $0 SUITE SRC [ARGS...]" >&2; exit 2; }
[ "$(id -u)" = 0 ] || { echo "chroot.sh: run as root" >&2; exit 1; }
suite=$1 src=$(cd "$2" && pwd)
shift 2
root=$cache/$suite

mkdir -p "$cache"
exec 9>"$cache/.$suite.lock"
if ! flock -n 9; then
  echo "chroot: waiting for another run using $root"
  flock 9
fi
if [ ! -e "$root/.webhook-complete" ]; then
  if [ -e "$root" ]; then
    echo "chroot: $root is incomplete; building it again"
    remove_tree "$root"
  fi
  create_chroot "$suite" "$root"
fi

cp -L /etc/resolv.conf "$root/etc/resolv.conf"
sync_local_cas "$root"
copy=$(mktemp -d "$root/tmp/webhook-src.XXXXXX")
trap 'rm -rf --one-file-system "$copy"' EXIT
copy_tree "$src" "$copy"
unshare --mount --propagation private -- bash "$here/chroot.sh" --inside "$root" "${copy#"$root"}" "$@"
