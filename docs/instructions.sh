#!/usr/bin/env bash
# Instructions the server executes per task, counted by callgrind: tasktable's claim_tasks + complete_tasks, and the
# floor's claim + DELETE (the bench's floor statements). Timings on a shared machine move by a third from run to run;
# these counts are the same on every rerun, so they show a change of 1% (docs/performance.md, item 41).
#
#   docs/instructions.sh [TRANSACTIONS] [SETUP.sql]
#
# TRANSACTIONS (30) of CLAIM (128) tasks each from one pgbench client (prepared statements), on a throwaway cluster
# with 100,000 tasks queued in each table, their payloads PAYLOAD_BYTES long ({} by default; as the bench's
# --payload-bytes makes them otherwise); SETUP.sql, if given, runs after db/install.sql (to count a variant of the
# functions). Needs valgrind, pgbench and PostgreSQL's server binaries (PG_BIN; default: the newest
# /usr/lib/postgresql/*/bin). The cluster lives in a temporary directory, on port PORT (5499), and is removed at the
# end; as root it runs as the postgres user. Takes about a minute per count.
set -euo pipefail
T="${1:-30}"
SETUP="${2:+$(realpath "$2")}"   # before the cd below: a path relative to where it was called from
cd "$(dirname "$0")/.."
PORT="${PORT:-5499}"
CLAIM="${CLAIM:-128}"
PAYLOAD_BYTES="${PAYLOAD_BYTES:-2}"
PG_BIN="${PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)}"
for tool in valgrind pgbench psql "$PG_BIN/postgres" "$PG_BIN/initdb" "$PG_BIN/pg_ctl"; do
    command -v "$tool" >/dev/null || { echo "instructions.sh: $tool not found (apt-get install valgrind postgresql)" >&2; exit 2; }
done
DIR="$(mktemp -d)"
as_owner() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
[ "$(id -u)" = 0 ] && chown postgres "$DIR"
stop() { as_owner "$PG_BIN/pg_ctl" -D "$DIR/data" stop -m fast -w >/dev/null 2>&1 || true; }
trap 'stop; rm -rf "$DIR"' EXIT
PSQL=(psql -h "$DIR" -p "$PORT" -U postgres -qX -v ON_ERROR_STOP=1)

# The database every count starts from: migrated, 100,000 tasks in live_task and as many rows in the floor's table.
as_owner "$PG_BIN/initdb" -D "$DIR/data" -A trust -U postgres >/dev/null
as_owner "$PG_BIN/pg_ctl" -D "$DIR/data" -o "-p $PORT -k $DIR -c autovacuum=off" -l "$DIR/log" start -w >/dev/null
"${PSQL[@]}" -c "CREATE DATABASE count"
"${PSQL[@]}" -d count -f db/install.sql >/dev/null
[ -n "$SETUP" ] && "${PSQL[@]}" -d count -f "$SETUP" >/dev/null
# payloads as the bench's --payload-bytes makes them: {} (2 bytes), or {"pad": "xxx..."} of PAYLOAD_BYTES
"${PSQL[@]}" -d count -v bytes="$PAYLOAD_BYTES" <<'SQL'
CREATE TEMP TABLE p AS SELECT CASE WHEN :bytes <= 2 THEN '{}'::jsonb
                                   ELSE jsonb_build_object('pad', repeat('x', greatest(:bytes - 11, 0))) END AS payload;
INSERT INTO tasktable.live_task (queue, kind, payload) SELECT 'default', 'noop', p.payload FROM p, generate_series(1, 100000);
CREATE TABLE bench_floor (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, payload jsonb NOT NULL DEFAULT '{}',
                          run_at timestamptz NOT NULL DEFAULT now(), locked_at timestamptz);
INSERT INTO bench_floor (payload) SELECT p.payload FROM p, generate_series(1, 100000);
VACUUM ANALYZE;
CHECKPOINT;
SQL
stop
as_owner cp -a "$DIR/data" "$DIR/base"

cat > "$DIR/tasktable.sql" <<'SQL'
SELECT array_agg(id) AS ids, array_agg(attempt) AS att FROM tasktable.claim_tasks(:claim, 'count') \gset
SELECT cardinality(tasktable.complete_tasks(:ids, :att));
SQL
cat > "$DIR/floor.sql" <<'SQL'
WITH c AS (UPDATE bench_floor SET locked_at = now() WHERE id IN (SELECT id FROM bench_floor WHERE locked_at IS NULL
           AND run_at <= now() ORDER BY id LIMIT :claim FOR UPDATE SKIP LOCKED) RETURNING id, payload)
SELECT array_agg(id) AS ids FROM c \gset
DELETE FROM bench_floor WHERE id = ANY (:ids);
SQL

# One count: a fresh copy of the database, the server under callgrind counting inside PortalRun only (statements,
# not connection start-up), one pgbench client; the backend that served it executed the most instructions.
count() {
    as_owner rm -rf "$DIR/data"
    as_owner cp -a "$DIR/base" "$DIR/data"
    as_owner valgrind --tool=callgrind --trace-children=yes --toggle-collect=PortalRun \
        --callgrind-out-file="$DIR/callgrind.%p" "$PG_BIN/postgres" -D "$DIR/data" -p "$PORT" -k "$DIR" \
        -c autovacuum=off -c fsync=off > "$DIR/valgrind.log" 2>&1 &
    until "${PSQL[@]}" -d count -c "SELECT 1" >/dev/null 2>&1; do sleep 1; done
    pgbench -h "$DIR" -p "$PORT" -U postgres -n -M prepared -c 1 -j 1 -t "$T" -D claim="$CLAIM" -f "$DIR/$1.sql" count >"$DIR/pgbench.log" 2>&1 \
        || { cat "$DIR/pgbench.log" >&2; exit 1; }
    stop
    wait
    local n
    n=$(grep "Collected" "$DIR/valgrind.log" | tr -d ',' | awk '{print $4}' | sort -n | tail -1)
    printf '%-9s %9d instructions per task (%d transactions of %d)\n' "$1" $(( n / (T * CLAIM) )) "$T" "$CLAIM"
}
count tasktable
count floor
