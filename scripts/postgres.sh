#!/usr/bin/env bash
# Start or stop a throwaway PostgreSQL cluster for tests (journal on PostgreSQL).
#
#   scripts/postgres.sh start [DIR]   initdb into DIR (default: a new temp dir), start the server
#                                     on a unix socket inside DIR (no TCP port), create database
#                                     "healthcard"; prints the DSN on stdout, e.g.
#                                     postgresql://postgres@/healthcard?host=/tmp/hcpg.X/socket
#   scripts/postgres.sh stop DIR      stop the server and delete DIR
#   scripts/postgres.sh dsn DIR       print the DSN of a running cluster again
#
# Uses Debian's /usr/lib/postgresql/*/bin (or initdb/pg_ctl on PATH). initdb refuses to run as
# root, so as root the cluster runs as the "postgres" user (runuser/su). Authentication is
# "trust" for local connections only: this is for tests, never for real data.
set -euo pipefail

die() { echo "postgres.sh: $*" >&2; exit 1; }

find_bin() {
    local name=$1 candidate
    for candidate in /usr/lib/postgresql/*/bin/"$name"; do
        [[ -x $candidate ]] && { echo "$candidate"; return 0; }
    done
    command -v "$name" 2>/dev/null && return 0
    return 1
}

as_owner() {
    # Run a command as the cluster owner (postgres when we are root).
    if [[ $(id -u) -eq 0 ]]; then
        if command -v runuser >/dev/null 2>&1; then
            runuser -u postgres -- "$@"
        else
            su postgres -s /bin/sh -c "$(printf '%q ' "$@")"
        fi
    else
        "$@"
    fi
}

dsn_of() {
    echo "postgresql://postgres@/healthcard?host=$1/socket"
}

start() {
    local dir=${1:-}
    local initdb pg_ctl
    initdb=$(find_bin initdb) || die "PostgreSQL is not installed (no initdb)"
    pg_ctl=$(find_bin pg_ctl) || die "PostgreSQL is not installed (no pg_ctl)"
    if [[ -z $dir ]]; then
        dir=$(mktemp -d "${TMPDIR:-/tmp}/hcpg.XXXXXX")
    fi
    mkdir -p "$dir/socket"
    if [[ $(id -u) -eq 0 ]]; then
        id postgres >/dev/null 2>&1 || die "running as root needs a 'postgres' user"
        chown -R postgres: "$dir"
    fi
    if [[ ! -f $dir/data/PG_VERSION ]]; then
        as_owner "$initdb" -D "$dir/data" -U postgres --auth=trust --encoding=UTF8 \
            --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 \
            || { cat "$dir/initdb.log" >&2; die "initdb failed"; }
    fi
    as_owner "$pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
        -o "-c listen_addresses='' -c unix_socket_directories='$dir/socket' -c fsync=off \
-c max_connections=100 -c shared_buffers=32MB" start >/dev/null \
        || { cat "$dir/server.log" >&2; die "server did not start"; }
    local psql
    psql=$(find_bin psql) || die "psql not found"
    if ! as_owner "$psql" -h "$dir/socket" -U postgres -d postgres -tAc \
            "SELECT 1 FROM pg_database WHERE datname = 'healthcard'" | grep -q 1; then
        as_owner "$psql" -h "$dir/socket" -U postgres -d postgres -qc \
            "CREATE DATABASE healthcard" >/dev/null
    fi
    # The socket directory must be reachable by the test user as well.
    chmod 755 "$dir" "$dir/socket"
    dsn_of "$dir"
}

stop() {
    local dir=${1:?usage: postgres.sh stop DIR}
    local pg_ctl
    pg_ctl=$(find_bin pg_ctl) || die "PostgreSQL is not installed (no pg_ctl)"
    if [[ -f $dir/data/postmaster.pid ]]; then
        as_owner "$pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 || true
    fi
    rm -rf "$dir"
}

case ${1:-} in
    start) start "${2:-}" ;;
    stop) stop "${2:-}" ;;
    dsn) dsn_of "${2:?usage: postgres.sh dsn DIR}" ;;
    *) die "usage: postgres.sh start [DIR] | stop DIR | dsn DIR" ;;
esac
