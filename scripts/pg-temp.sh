#!/usr/bin/env bash
# Starts a throwaway PostgreSQL cluster for the tests and prints its URL on stdout.
# Usage: scripts/pg-temp.sh start DIR   |   scripts/pg-temp.sh stop DIR
# The cluster listens on a unix socket in DIR/run only; with WH_PG_TLS_PORT set, also on
# 127.0.0.1 at that port with TLS on (a certificate for 127.0.0.1 signed by a throwaway
# authority, DIR/data/root.crt). As root it runs as `postgres`.
set -euo pipefail
action=$1 dir=$2
bindir=${WH_PG_BINDIR:-}
if [ -z "$bindir" ]; then
  for d in /usr/lib/postgresql/*/bin; do [ -x "$d/postgres" ] && bindir=$d; done
fi
[ -n "$bindir" ] || { echo "pg-temp: PostgreSQL server binaries not found; apt-get install postgresql-15" >&2; exit 1; }

as_pg=()
if [ "$(id -u)" -eq 0 ]; then as_pg=(runuser -u postgres --); fi

case $action in
  start)
    mkdir -p "$dir/run"
    chmod 755 "$dir"
    chmod 700 "$dir/run"
    [ "$(id -u)" -eq 0 ] && chown postgres:postgres "$dir/run"
    if [ "$(id -u)" -eq 0 ]; then mkdir -p "$dir/data" && chown postgres:postgres "$dir/data"; fi
    "${as_pg[@]}" "$bindir/initdb" -D "$dir/data" -U postgres --auth=trust --encoding=UTF8 --locale=C \
      --no-sync --no-instructions >"$dir/initdb.log" 2>&1 || { cat "$dir/initdb.log" >&2; exit 1; }
    touch "$dir/postgres.log"
    [ "$(id -u)" -eq 0 ] && chown postgres:postgres "$dir/postgres.log"
    listen="-c listen_addresses="
    if [ -n "${WH_PG_TLS_PORT:-}" ]; then
      # A throwaway authority (root.crt) and a server certificate for 127.0.0.1 signed by it.
      openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=wisehosting-test-ca \
        -keyout "$dir/ca.key" -out "$dir/data/root.crt" 2>/dev/null
      openssl req -newkey rsa:2048 -nodes -subj /CN=127.0.0.1 \
        -keyout "$dir/data/server.key" -out "$dir/server.csr" 2>/dev/null
      printf 'subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n' >"$dir/server.ext"
      openssl x509 -req -in "$dir/server.csr" -CA "$dir/data/root.crt" -CAkey "$dir/ca.key" \
        -CAcreateserial -days 1 -extfile "$dir/server.ext" -out "$dir/data/server.crt" 2>/dev/null
      chmod 600 "$dir/data/server.key"
      [ "$(id -u)" -eq 0 ] && chown postgres:postgres "$dir/data/server.key" "$dir/data/server.crt" "$dir/data/root.crt"
      listen="-c listen_addresses=127.0.0.1 -c port=$WH_PG_TLS_PORT -c ssl=on"
    fi
    # fsync off and many connections: a test cluster, thrown away after the run.
    "${as_pg[@]}" "$bindir/pg_ctl" -D "$dir/data" -l "$dir/postgres.log" -w -t 60 \
      -o "-k $dir/run $listen -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=400" \
      start >/dev/null || { cat "$dir/postgres.log" >&2; exit 1; }
    echo "postgres://postgres@localhost${WH_PG_TLS_PORT:+:$WH_PG_TLS_PORT}/postgres?host=$dir/run"
    ;;
  stop)
    [ -d "$dir/data" ] && "${as_pg[@]}" "$bindir/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 || true
    rm -rf "$dir"
    ;;
  *) echo "usage: $0 start|stop DIR" >&2; exit 2 ;;
esac
