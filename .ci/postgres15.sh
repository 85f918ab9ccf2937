# Starts the machine's PostgreSQL 15 in a temporary directory on a free port, as the `postgres`
# user when running as root (the server refuses to run as root). Sets PG15_URL.
PG15=/usr/lib/postgresql/15/bin

as_postgres() {
  if [ "$(id -u)" = 0 ]; then su postgres -s /bin/bash -c "$*"; else bash -c "$*"; fi
}

start_postgres15() {
  PG15_DIR="$(mktemp -d /tmp/arvo-postgres-pg15-XXXXXX)"
  PG15_PORT="$(node -e "const s=require('net').createServer();s.listen(0,'127.0.0.1',()=>{console.log(s.address().port);s.close()})")"
  [ "$(id -u)" = 0 ] && chown postgres "$PG15_DIR"
  as_postgres "echo postgres > '$PG15_DIR/pw' && '$PG15/initdb' -D '$PG15_DIR/data' -U postgres --auth=scram-sha-256 --pwfile='$PG15_DIR/pw' >/dev/null"
  as_postgres "'$PG15/pg_ctl' -D '$PG15_DIR/data' -l '$PG15_DIR/log' -w -o \"-p $PG15_PORT -k '$PG15_DIR' -c listen_addresses=127.0.0.1 -c max_connections=300 -c fsync=off\" start >/dev/null"
  PG15_URL="postgres://postgres:postgres@127.0.0.1:$PG15_PORT/postgres"
  export PG15_URL PG15_DIR
}

stop_postgres15() {
  as_postgres "'$PG15/pg_ctl' -D '$PG15_DIR/data' -m fast -w stop >/dev/null" || true
  rm -rf "$PG15_DIR"
}
