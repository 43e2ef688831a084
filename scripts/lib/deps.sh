# Installs what edgeshard needs from Debian's packages (quiet, idempotent). Sourced by scripts/*.
ES_PACKAGES=(
  postgresql-15 postgresql-server-dev-15 postgresql-15-wal2json libpq-dev
  liblz4-dev libxxhash-dev libboost-dev libgtest-dev libgmock-dev libbenchmark-dev
  cmake g++ make pkg-config libipc-run-perl util-linux procps
  libclang-rt-14-dev libsqlite3-dev liblmdb-dev
)

# Installs the packages that are missing (root only); a no-op when everything is there.
es_install_deps() {
  local missing=() pkg
  for pkg in "${ES_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" -ne 0 ]; then
    echo "edgeshard: missing packages: ${missing[*]} (run as root to install them)" >&2
    return 1
  fi
  echo "edgeshard: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# Builds and installs the extension, and builds the CMake targets (daemons, tests, benchmarks).
es_build() {
  local jobs
  jobs=$(nproc)
  make -s -j"$jobs" >/dev/null
  make -s install >/dev/null
  cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build build -j"$jobs" >/dev/null
}
