#!/usr/bin/env bash
# A throwaway PostgreSQL server on loopback for the distributed-sweep tests (tests/test_postgres.py).
#
#   eval "$(bash .ci/postgres.sh)"      or      source .ci/postgres.sh
#
# installs Debian's postgresql where it is missing (apt-get, as root), creates a cluster in a
# private folder (not Debian's "main" cluster, which may already own port 5432), starts it on
# 127.0.0.1 on a free port, creates user/password/database "ganbench", and prints on stdout:
#
#   GANBENCH_TEST_POSTGRES_URL  postgresql://ganbench:ganbench@127.0.0.1:PORT/ganbench
#   GANBENCH_TEST_PG_CTL        pg_ctl for this server, run as its owner; tests append
#                               `stop -m immediate` or `start` to take it away and back
#   GANBENCH_REQUIRE_POSTGRES   1: the tests fail instead of skipping when the server is unreachable
#
# Everything else goes to stderr. Running it again reuses the server when it is still running.
# Settings: GANBENCH_PG_DIR (default /tmp/ganbench-postgres), GANBENCH_PG_PORT (default: the first
# free port from 54320).

# Sourced (as .ci/run does): run as a child, then export what it printed into the caller's shell.
if [[ ${BASH_SOURCE[0]} != "$0" ]]; then
  _ganbench_pg_env=$(bash "${BASH_SOURCE[0]}") || return 1
  eval "$_ganbench_pg_env"
  unset _ganbench_pg_env
  return 0
fi

set -euo pipefail

ROOT=${GANBENCH_PG_DIR:-/tmp/ganbench-postgres}
DATA=$ROOT/data
NAME=ganbench  # user, password and database

log() { echo "postgres.sh: $*" >&2; }
bindir() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1; }

install_postgres() {
  if [[ $EUID -ne 0 ]]; then
    log "PostgreSQL is not installed and this is not root: run 'apt-get install postgresql' as root"
    exit 1
  fi
  log "installing Debian's postgresql"
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql >&2
}

# The server refuses to run as root: as root it runs as the postgres user the package created.
as_owner() {
  if [[ $EUID -eq 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi
}

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

free_port() {
  local port=${GANBENCH_PG_PORT:-54320}
  while port_in_use "$port"; do port=$((port + 1)); done
  echo "$port"
}

create_cluster() {
  local port=$1
  mkdir -p "$ROOT"
  chmod 700 "$ROOT"
  [[ $EUID -eq 0 ]] && chown postgres: "$ROOT"
  # trust on the socket (to create the user), passwords over TCP (so bad credentials are refused)
  as_owner "$BIN/initdb" -D "$DATA" -U postgres -E UTF8 --auth-local=trust --auth-host=scram-sha-256 >&2
  # in postgresql.conf, so that a plain `pg_ctl start` (the tests' restart) brings back the same server
  cat <<EOF | as_owner tee -a "$DATA/postgresql.conf" >/dev/null
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$ROOT'
max_connections = 200
EOF
}

BIN=$(bindir)
[[ -n $BIN && -x $BIN/initdb ]] || { install_postgres; BIN=$(bindir); }
CTL="$BIN/pg_ctl -D $DATA -l $ROOT/server.log -w -t 120"
[[ $EUID -eq 0 ]] && CTL="runuser -u postgres -- $CTL"

[[ -f $DATA/PG_VERSION ]] || create_cluster "$(free_port)"
PORT=$(sed -n "s/^port = \([0-9]*\)$/\1/p" "$DATA/postgresql.conf" | tail -n 1)
if ! $CTL status >/dev/null 2>&1; then
  port_in_use "$PORT" && { log "port $PORT is taken by another program; remove $ROOT or set GANBENCH_PG_PORT"; exit 1; }
  log "starting PostgreSQL from $DATA on 127.0.0.1:$PORT"
  $CTL start >&2
fi

psql_admin() { as_owner "$BIN/psql" -h "$ROOT" -p "$PORT" -U postgres -d postgres -v ON_ERROR_STOP=1 -qtA "$@"; }
if [[ -z $(psql_admin -c "SELECT 1 FROM pg_roles WHERE rolname = '$NAME'") ]]; then
  psql_admin -c "CREATE ROLE $NAME LOGIN PASSWORD '$NAME'" >&2
fi
if [[ -z $(psql_admin -c "SELECT 1 FROM pg_database WHERE datname = '$NAME'") ]]; then
  psql_admin -c "CREATE DATABASE $NAME OWNER $NAME" >&2
fi

log "PostgreSQL ready on 127.0.0.1:$PORT"
printf 'export GANBENCH_TEST_POSTGRES_URL=%q\n' "postgresql://$NAME:$NAME@127.0.0.1:$PORT/$NAME"
printf 'export GANBENCH_TEST_PG_CTL=%q\n' "$CTL"
printf 'export GANBENCH_REQUIRE_POSTGRES=1\n'
