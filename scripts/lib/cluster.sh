# Throwaway PostgreSQL clusters for tests, the demo and benchmarks. Sourced by scripts/*.
#
# Each cluster lives under one temporary root owned by the postgres system user, listens on
# 127.0.0.1 only, on a free port, with its socket in its own directory. es_stop_all (installed as
# an EXIT trap by es_cluster_root) stops exactly the servers started here, by the PID in their
# postmaster.pid, also when the caller fails.

ES_ROOT=""
ES_MOUNTS=""  # file systems mounted under $ES_ROOT (es_mount_small_fs), unmounted by es_stop_all

# Creates the temporary root and the EXIT trap that stops everything under it.
es_cluster_root() {
  ES_ROOT=$(mktemp -d "${TMPDIR:-/tmp}/edgeshard.XXXXXX")
  chmod 755 "$ES_ROOT"
  chown postgres: "$ES_ROOT"
  trap 'es_stop_all' EXIT
  trap 'exit 130' INT TERM
}

# Runs a command as the postgres system user with the server binaries on PATH. (pg_config is
# asked here, not when this file is sourced: on a fresh machine it is installed after that.)
es_as_postgres() {
  runuser -u postgres -- env PATH="$(pg_config --bindir):$PATH" "$@"
}

# es_mount_small_fs DIR [SIZE]: a tmpfs of SIZE (default 64m) owned by postgres at DIR (created),
# for tests that fill a disk; unmounted by es_stop_all.
es_mount_small_fs() {
  local dir=$1 size=${2:-64m}
  mkdir -p "$dir"
  mount -t tmpfs -o "size=$size,uid=$(id -u postgres),gid=$(id -g postgres),mode=0755" tmpfs "$dir"
  ES_MOUNTS="$ES_MOUNTS $dir"
}

# Prints a TCP port on 127.0.0.1 that nothing listens on.
es_free_port() {
  local port
  while :; do
    port=$((20000 + RANDOM % 30000))
    grep -qx "$port" "$ES_ROOT"/*/port 2>/dev/null && continue
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && continue
    echo "$port"
    return 0
  done
}

# es_start_cluster NAME [conf line...]: initdb + start; prints nothing, port in $ES_ROOT/NAME/port.
es_start_cluster() {
  local name=$1
  shift
  local dir="$ES_ROOT/$name" attempt port
  mkdir -p "$dir"
  chown postgres: "$dir"
  es_as_postgres initdb -D "$dir/data" --auth=trust --username=postgres --no-sync -E UTF8 \
    --locale=C >"$dir/initdb.log" 2>&1 || { cat "$dir/initdb.log" >&2; return 1; }
  {
    echo "listen_addresses = '127.0.0.1'"
    echo "unix_socket_directories = '$dir'"
    echo "wal_level = logical"
    echo "max_wal_senders = 40"
    echo "max_replication_slots = 40"
    echo "max_prepared_transactions = 20"
    echo "output_plugin_libraries = 'pgoutput, test_decoding, edgeshard, wal2json'"
    echo "edgeshard.node_name = '$name'"
    echo "fsync = ${ES_FSYNC:-off}"
    echo "shared_buffers = 128MB"
    for line in "$@"; do echo "$line"; done
  } >>"$dir/data/postgresql.conf"
  for attempt in 1 2 3 4 5; do
    port=$(es_free_port)
    echo "$port" >"$dir/port"
    if es_as_postgres pg_ctl -D "$dir/data" -l "$dir/server.log" -o "-p $port" -w -t 60 start \
      >/dev/null 2>&1; then
      return 0
    fi
    grep -q "could not bind\|already in use" "$dir/server.log" 2>/dev/null || break
  done
  echo "edgeshard: could not start cluster $name (log: $dir/server.log)" >&2
  tail -20 "$dir/server.log" >&2
  return 1
}

# Prints the port of cluster NAME.
es_port() { cat "$ES_ROOT/$1/port"; }

# es_psql NAME [psql args...]: psql as postgres on cluster NAME, stopping at the first error.
es_psql() {
  local name=$1
  shift
  psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$(es_port "$name")" -U postgres -d postgres "$@"
}

# Stops every server started under $ES_ROOT by its postmaster PID, then removes the root.
es_stop_all() {
  local rc=$? pidfile pid i
  [ -n "$ES_ROOT" ] && [ -d "$ES_ROOT" ] || return $rc
  for pidfile in "$ES_ROOT"/*/data/postmaster.pid; do
    [ -f "$pidfile" ] || continue
    pid=$(head -n 1 "$pidfile")
    [ -n "$pid" ] || continue
    kill -INT "$pid" 2>/dev/null || continue  # fast shutdown
    for i in $(seq 1 100); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
  done
  # Small file systems of the tests (their daemons are gone with the test processes).
  for i in $ES_MOUNTS; do
    umount "$i" 2>/dev/null || umount -l "$i" 2>/dev/null || echo "edgeshard: could not unmount $i" >&2
  done
  ES_MOUNTS=""
  if [ -n "${ES_KEEP:-}" ]; then
    echo "edgeshard: kept $ES_ROOT" >&2
  else
    rm -rf "$ES_ROOT"
  fi
  return $rc
}
