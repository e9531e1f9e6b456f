#!/usr/bin/env bash
# Starts (or stops) a throwaway PostgreSQL 15 with the settings bench/baseline_match.py
# gives its own server (shared_buffers 512MB, fsync off, ...), for the matching benchmark:
#   bash scripts/bench_pg.sh start [PORT]   # prints the URL for --database-url
#   bash scripts/bench_pg.sh stop
# The data dir lives in $BENCH_PG_DIR (default /tmp/lake-bench-pg). Needs a non-root user
# `postgres` when run as root (initdb refuses root).
set -euo pipefail
dir=${BENCH_PG_DIR:-/tmp/lake-bench-pg}
port=${2:-55432}
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
case "${1:-}" in
start)
    mkdir -p "$dir"
    [ "$(id -u)" = 0 ] && chown postgres "$dir"
    if [ ! -f "$dir/data/PG_VERSION" ]; then
        as_pg initdb -D "$dir/data" -U lake -A trust --no-sync -E UTF8 >/dev/null
        cat >>"$dir/data/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$dir'
max_connections = 40
shared_buffers = 512MB
fsync = off
synchronous_commit = off
full_page_writes = off
maintenance_work_mem = 512MB
CONF
    fi
    as_pg pg_ctl -D "$dir/data" -l "$dir/log" -w start >/dev/null
    echo "postgres://lake@127.0.0.1:$port/postgres"
    ;;
stop)
    as_pg pg_ctl -D "$dir/data" -m fast -w stop >/dev/null || true
    rm -rf "$dir"
    ;;
*)
    echo "usage: $0 start [PORT] | stop" >&2
    exit 2
    ;;
esac
