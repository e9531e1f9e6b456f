#!/usr/bin/env bash
# The project's one test command (README "Run all tests"; .ci/run calls it).
# Installs and starts what the tests need on 127.0.0.1, runs every test, stops what it started.
#   - moto server (emulated AWS: S3, DynamoDB, SQS, SNS, Secrets Manager, KMS, WorkSpaces)
#   - PostgreSQL 15 (a throwaway cluster in a temp dir), when the server binaries are present
set -euo pipefail
cd "$(dirname "$0")/.."
here=$(pwd)
work=$(mktemp -d /tmp/lake-test.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done
  if [ -n "${PGDATA_DIR:-}" ] && [ -d "$PGDATA_DIR" ]; then
    runuser -u postgres -- pg_ctl -D "$PGDATA_DIR" -m immediate stop >/dev/null 2>&1 || pg_ctl -D "$PGDATA_DIR" -m immediate stop >/dev/null 2>&1 || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# ---- moto ----
if ! python3 -c 'import moto.server' 2>/dev/null; then
  echo "installing moto[server] ..."
  python3 -m pip install --quiet 'moto[server]>=5,<6'
fi
MOTO_PORT=$(free_port)
python3 scripts/moto_server.py --port "$MOTO_PORT" >"$work/moto.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do
  if python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$MOTO_PORT/moto-api/')" 2>/dev/null; then break; fi
  sleep 0.2
done
export LAKE_TEST_AWS_ENDPOINT="http://127.0.0.1:$MOTO_PORT"

# ---- PostgreSQL ----
if ! command -v initdb >/dev/null 2>&1 && [ ! -x /usr/lib/postgresql/15/bin/initdb ]; then
  if command -v apt-get >/dev/null 2>&1; then
    echo "installing postgresql ..."
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null) || true
  fi
fi
PG_BIN=$(dirname "$(command -v initdb 2>/dev/null || echo /usr/lib/postgresql/15/bin/initdb)")
if [ -x "$PG_BIN/initdb" ]; then
  id postgres >/dev/null 2>&1 || useradd -r -m postgres 2>/dev/null || true
  PGDATA_DIR="$work/pg"
  mkdir -p "$PGDATA_DIR" && chown postgres "$work" "$PGDATA_DIR" 2>/dev/null || true
  PG_PORT=$(free_port)
  as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
  as_pg "$PG_BIN/initdb" -D "$PGDATA_DIR" -U lake -A trust --no-sync -E UTF8 >"$work/initdb.log" 2>&1
  # one role must give its password (pii-matching's wrong-password test); everyone else: trust
  sed -i -e '1i host all lake_pw 127.0.0.1/32 scram-sha-256' -e '1i host all lake_tok 127.0.0.1/32 scram-sha-256' "$PGDATA_DIR/pg_hba.conf"
  # TLS (pii-matching's tests/tls.rs): a throwaway CA and a server certificate for DNS:localhost
  # only (no 127.0.0.1 SAN, so verify-full to 127.0.0.1 must fail), made here at every start and
  # gone with $work. Role lake_tls may connect only over TLS; the other roles stay as they were.
  if command -v openssl >/dev/null 2>&1; then
    tls="$work/tls"
    mkdir -p "$tls"
    ossl() { openssl "$@" 2>>"$tls/openssl.log" || { cat "$tls/openssl.log" >&2; return 1; }; }
    ec=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes)
    ossl req -x509 "${ec[@]}" -days 2 -subj /CN=lake-test-ca -keyout "$tls/ca.key" -out "$tls/ca.pem" \
      -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign
    ossl req -new "${ec[@]}" -subj /CN=localhost -keyout "$tls/server.key" -out "$tls/server.csr"
    printf '%s\n' subjectAltName=DNS:localhost basicConstraints=critical,CA:FALSE \
      keyUsage=critical,digitalSignature extendedKeyUsage=serverAuth >"$tls/server.ext"
    ossl x509 -req -in "$tls/server.csr" -CA "$tls/ca.pem" -CAkey "$tls/ca.key" -days 2 \
      -set_serial "0x$(openssl rand -hex 8)" -extfile "$tls/server.ext" -out "$tls/server.pem"
    rm -f "$tls/ca.key" "$tls/server.csr" "$tls/server.ext"
    chmod 600 "$tls/server.key"
    if [ "$(id -u)" = 0 ]; then chown postgres "$tls/server.key"; fi
    printf "ssl = on\nssl_cert_file = '%s'\nssl_key_file = '%s'\n" "$tls/server.pem" "$tls/server.key" \
      >>"$PGDATA_DIR/postgresql.conf"
    sed -i -e '1i hostnossl all lake_tls all reject' -e '1i hostssl all lake_tls all scram-sha-256' \
      -e '1i local all lake_tls reject' "$PGDATA_DIR/pg_hba.conf"
    echo "CREATE ROLE lake_tls LOGIN PASSWORD 'lake-tls-test'" |
      as_pg "$PG_BIN/postgres" --single -D "$PGDATA_DIR" postgres >"$work/single.log" 2>&1
    if grep -q ERROR "$work/single.log"; then cat "$work/single.log" >&2; exit 1; fi
    export LAKE_TEST_PG_CA="$tls/ca.pem"
  else
    echo "warning: no openssl; PostgreSQL without TLS, pii-matching's TLS tests will fail under CI" >&2
  fi
  as_pg "$PG_BIN/pg_ctl" -D "$PGDATA_DIR" -l "$work/pg.log" -w \
    -o "-c listen_addresses=127.0.0.1 -p $PG_PORT -k $PGDATA_DIR -c fsync=off" start >/dev/null
  export LAKE_TEST_DATABASE_URL="postgres://lake@127.0.0.1:$PG_PORT/postgres"
else
  echo "warning: no PostgreSQL server binaries; database tests will fail" >&2
fi

# ---- browser test (crates/lake/tests/review_browser.rs): Debian's Chromium + playwright-core ----
# Installed once; a re-run with both present needs no network. Missing under CI=true: the test fails.
# Chromium and Node separately: a machine whose Node.js (and npm) came from elsewhere must not be
# asked for Debian's nodejs/npm, which conflict with it and make apt refuse the whole install.
apt_install() {
  command -v apt-get >/dev/null 2>&1 || return 0
  echo "installing $* ..."
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null) ||
    echo "warning: apt-get install $* failed" >&2
}
[ -x /usr/bin/chromium ] || apt_install chromium
command -v node >/dev/null 2>&1 || apt_install nodejs npm
if [ ! -f crates/review-web/browser/node_modules/playwright-core/package.json ] && command -v npm >/dev/null 2>&1; then
  echo "installing playwright-core (npm ci) ..."
  (cd crates/review-web/browser && npm ci --no-audit --no-fund --silent) || true
fi

export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-gov-west-1 AWS_DEFAULT_REGION=us-gov-west-1
# With arguments (`-p CRATE --test NAME`), only what they name is built and run; without, everything.
if [ $# -gt 0 ]; then
  cargo test --no-fail-fast "$@"
else
  cargo test --workspace --all-targets --no-fail-fast
fi
