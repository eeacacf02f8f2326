# scripts/lib.sh: shared by the scripts in scripts/.  Sourced, not run.

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
# without build or test outputs (the tests run from such copies).
copy_tree() {
  tar -C "$1" --exclude=.git --exclude=fuzz/build --exclude=tmp_check --exclude=tmp_check_iso \
      --exclude=./results --exclude=./output_iso --exclude=./log --exclude=bench/out -cf - . |
    tar -C "$2" -xf -
}

# Installs the Debian packages the project needs, if any is missing.
install_packages() {
  local pkgs=(build-essential pkg-config postgresql-15 postgresql-server-dev-15
              libcurl4-openssl-dev libssl-dev libipc-run-perl curl python3
              clang libclang-rt-14-dev prometheus-postgres-exporter "$@")
  command -v node >/dev/null 2>&1 || pkgs+=(nodejs)
  command -v npm >/dev/null 2>&1 || pkgs+=(npm)
  local missing=()
  for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "installing: ${missing[*]}"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
  export PATH="$(pg_config --bindir):$PATH"
}

# Installs the receiver's one dependency (the Standard Webhooks reference library).
install_receiver() {
  (cd "$1/test/receiver" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
}

# Builds with warnings as errors and installs the extension.
build_install() {
  (cd "$1" && make -s clean >/dev/null && make -s COPT='-Werror' && as_root make -s install >/dev/null)
}

# Prints a free TCP port on 127.0.0.1.
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
