# shellcheck shell=bash
# scripts/lib.sh: shared by the scripts in scripts/.  Sourced, not run.

# The PostgreSQL majors the extension supports and tests, and the Debian
# release whose archive ships each: scripts/test.sh runs a major on this
# system when it is that release, else in a chroot of it (scripts/chroot.sh).
WEBHOOK_MAJORS="15 17 18"

# The Debian suite whose archive has PostgreSQL major $1.
pg_suite() {
  case $1 in
    15) echo bookworm ;;
    17) echo trixie ;;
    18) echo sid ;;
    *) return 1 ;;
  esac
}

# This system's Debian suite (bookworm, trixie, sid), empty when unknown.
this_suite() {
  if grep -qs '/sid$' /etc/debian_version; then echo sid; return; fi
  (. /etc/os-release 2>/dev/null && echo "${VERSION_CODENAME:-}")
}

# The PostgreSQL major this system's archive ships (15 when unknown).
default_major() {
  local m
  for m in $WEBHOOK_MAJORS; do
    [ "$(pg_suite "$m")" = "$(this_suite)" ] && { echo "$m"; return; }
  done
  echo 15
}

# Runs a command as root: directly when we are root, else through sudo.
as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

# The unprivileged user that runs PostgreSQL: postgres when we are root.
pg_user() {
  if [ "$(id -u)" = 0 ]; then echo postgres; else id -un; fi
}

# Runs a command as pg_user.
as_pg() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

# Copies the source tree $1 into the directory $2, without git metadata and
# without build or test outputs (the tests run from such copies).  Further
# arguments prefix the command that writes $2 (as_root, for a directory the
# caller cannot write).
copy_tree() {
  local from=$1 to=$2
  shift 2
  tar -C "$from" --exclude=.git --exclude=fuzz/build --exclude=tmp_check --exclude=tmp_check_iso \
      --exclude=./results --exclude=./output_iso --exclude=./log --exclude=bench/out -cf - . |
    "$@" tar -C "$to" -xf -
}

# Installs those of the Debian packages named that are not installed yet,
# running apt-get update first (once per process).  Without the packages
# they only recommend: what is needed is named (a minimal chroot would
# otherwise get a mail server, whose set-up fails there).
apt_install() {
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -gt 0 ] || return 0
  echo "installing: ${missing[*]}"
  if [ -z "${apt_updated:-}" ]; then
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    apt_updated=1
  fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null
}

# Installs the Debian packages the project needs for PostgreSQL major $1
# (default: the one this system's archive ships), if any is missing, and
# puts that major first: PATH, and PG_CONFIG for every make.  Further
# arguments name more packages.
# shellcheck disable=SC2120  # demo.sh and sanitize.sh take the default
install_packages() {
  local major=${1:-$(default_major)}
  [ $# -eq 0 ] || shift
  local pkgs=(build-essential pkg-config ca-certificates "postgresql-$major"
              "postgresql-server-dev-$major" libcurl4-openssl-dev libssl-dev libipc-run-perl
              curl python3 prometheus-postgres-exporter "$@")
  command -v node >/dev/null 2>&1 || pkgs+=(nodejs)
  command -v npm >/dev/null 2>&1 || pkgs+=(npm)
  apt_install "${pkgs[@]}"
  export PATH="/usr/lib/postgresql/$major/bin:$PATH"
  export PG_CONFIG="/usr/lib/postgresql/$major/bin/pg_config"

  # The fuzz targets (fuzz/Makefile): the clang PostgreSQL was built with,
  # the only one sure to read its JIT bitcode, with its sanitizer runtimes;
  # and that bitcode, a package of its own from PostgreSQL 18 on.
  local clang
  clang=$(pg_config --configure | tr ' ' '\n' | sed -n "s/^'CLANG=.*clang-\([0-9]*\)'$/\1/p")
  if [ -n "$clang" ]; then pkgs=("clang-$clang" "libclang-rt-$clang-dev"); else pkgs=(clang libclang-rt-dev); fi
  [ -d "$(pg_config --pkglibdir)/bitcode/postgres" ] || pkgs+=("postgresql-$major-jit")
  apt_install "${pkgs[@]}"
}

# Installs the receiver's one dependency (the Standard Webhooks reference library).
install_receiver() {
  (cd "$1/test/receiver" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
}

# Builds with warnings as errors and installs the extension (into the
# PostgreSQL that PG_CONFIG names, which sudo would not pass on).
build_install() {
  local pc=${PG_CONFIG:-pg_config}
  (cd "$1" && make -s clean PG_CONFIG="$pc" >/dev/null && make -s COPT='-Werror' PG_CONFIG="$pc" &&
     as_root make -s install PG_CONFIG="$pc" >/dev/null)
}

# Prints a free TCP port on 127.0.0.1.
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
