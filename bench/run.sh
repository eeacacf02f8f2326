#!/usr/bin/env bash
# bench/run.sh: the performance benchmark (docs/performance.md).
#
# Sets up a throwaway cluster with the extension preloaded, a loopback nginx
# answering 200 and wrk, then prints one table.  Every figure is the median
# of RUNS runs; ratios are computed inside the same run so machine noise
# cancels.  Loopback only.  Run as root (installs what is missing, runs the
# cluster as postgres) or as a normal user with the packages present.
#
#   bash bench/run.sh              # full run
#   RUNS=1 N=20000 BACKLOG=100000 SOAK_SECONDS=0 bash bench/run.sh   # quick look
set -euo pipefail
[ -n "${BENCH_TRACE:-}" ] && set -x

RUNS=${RUNS:-3}
N=${N:-50000}                 # events per throughput run
BACKLOG=${BACKLOG:-1000000}   # deliveries already waiting in the backlog run
CAPTURE_ROWS=${CAPTURE_ROWS:-100000}
LAT_N=${LAT_N:-200}
LAT_WARMUP=${LAT_WARMUP:-100}  # sent first (2 s), not counted

LATE_N=${LATE_N:-100}         # retries whose lateness is measured
HOL_ROWS=${HOL_ROWS:-1000000} # rows of the watched INSERT in the head-of-line run
HOL_CHUNK=${HOL_CHUNK:-1000}  # rows per transaction in its chunked run (10b)
SOAK_SECONDS=${SOAK_SECONDS:-1800}  # the soak run's length; 0 skips it
SOAK_RATE=${SOAK_RATE:-2000}        # events per second in the soak run
WORKERS_N=${WORKERS_N:-$N}          # events per run of the several-workers measure
IDLE_ENDPOINTS=${IDLE_ENDPOINTS:-5000}  # endpoints that receive nothing, in the last latency run
[ "$HOL_CHUNK" -ge 1 ] || { echo "bench: HOL_CHUNK is at least 1" >&2; exit 2; }
[ "$SOAK_SECONDS" -eq 0 ] || [ "$SOAK_SECONDS" -ge 60 ] ||
  { echo "bench: SOAK_SECONDS is 0 (no soak) or at least 60" >&2; exit 2; }

here=$(cd "$(dirname "$0")/.." && pwd)
. "$here/scripts/lib.sh"
install_packages "$(default_major)" nginx-light wrk
install_receiver "$here"
PGBIN=$(pg_config --bindir)

run_as=""
if [ "$(id -u)" = 0 ]; then run_as="runuser -u $(pg_user) --"; fi

work=$(mktemp -d /tmp/webhook-bench.XXXXXX)
chmod 755 "$work"
[ -n "$run_as" ] && chown postgres "$work"
cleanup() {
  [ -f "$work/nginx.pid" ] && kill "$(cat "$work/nginx.pid")" 2>/dev/null || true
  [ -n "${RCV_PID:-}" ] && kill "$RCV_PID" 2>/dev/null || true
  $run_as "$PGBIN/pg_ctl" -D "$work/data" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

PGPORT=$(free_port); NGPORT=$(free_port)

# --- receiver: nginx answering 200 to every POST, keep-alive ------------------
mkdir -p "$work/ng"
cat > "$work/ng/nginx.conf" <<EOF
worker_processes 1;
pid $work/nginx.pid;
error_log $work/ng/error.log;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $work/ng/body;
  client_body_buffer_size 64k;
  keepalive_requests 10000000;
  keepalive_timeout 300s;
  server { listen 127.0.0.1:$NGPORT; location / { return 200 'ok'; } }
}
EOF
nginx -c "$work/ng/nginx.conf"

# --- cluster ------------------------------------------------------------------
$run_as "$PGBIN/initdb" -D "$work/data" -A trust >/dev/null
cat >> "$work/data/postgresql.conf" <<EOF
port = $PGPORT
listen_addresses = ''
unix_socket_directories = '$work'
shared_preload_libraries = 'webhook'
webhook.database_name = 'postgres'
webhook.allow_http = on
webhook.allowed_networks = '127.0.0.1/32'
shared_buffers = 1GB
max_wal_size = 8GB
checkpoint_timeout = 30min
EOF
$run_as "$PGBIN/pg_ctl" -D "$work/data" -l "$work/pg.log" -w start >/dev/null
psql_() { $run_as psql -X -q -At -h "$work" -p "$PGPORT" -d postgres -v ON_ERROR_STOP=1 "$@"; }
psql_ -c "CREATE EXTENSION webhook"
psql_ -c "SELECT webhook_create_endpoint('nginx', 'http://127.0.0.1:$NGPORT/hook', event_types => '{bench.*}', max_in_flight => 64)" >/dev/null
psql_ -c "SELECT webhook_create_endpoint('nginxb', 'http://127.0.0.1:$NGPORT/batch', event_types => '{benchb.*}', max_in_flight => 64, format => 'batch', batch_size => 100)" >/dev/null

div() { awk "BEGIN { print ($1) / ($2) }"; }
median() { sort -g | awk '{a[NR]=$1} END {if (NR==0) print "nan"; else if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }
worker_pid() { psql_ -c "SELECT pid FROM pg_stat_activity WHERE backend_type = 'webhook worker'"; }
cpu_ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
rss_kb() { awk '/^RssAnon/ {print $2}' "/proc/$1/status"; }   # private memory, not shared buffers

# No transaction set aside with events left: the fan-out's cursor has passed
# such a transaction as soon as it was set aside.
aside_done="NOT EXISTS (SELECT FROM webhook_fanout_aside a WHERE a.next_id <= a.hi_id)"

# Waits until every delivery to the endpoints named like $1 (default nginx) is finished.
wait_drained() {
  local deadline=$((SECONDS + 900))
  # (events the cursor's snapshot does not show committed, found by index
  # probes: webhook_fanned_out would be called for each of a million events;
  # and the transactions set aside: a run's events wait behind the
  # backlog's, set aside before them)
  until [ "$(psql_ -c "SELECT EXISTS (SELECT FROM webhook_fanout_cursor) AND NOT EXISTS (SELECT 1 FROM webhook_events e, webhook_fanout_cursor k
                                         WHERE e.txid >= pg_snapshot_xmax(k.done)
                                            OR e.txid = ANY (ARRAY(SELECT pg_snapshot_xip(k.done))))
                         AND $aside_done
                         AND NOT EXISTS (SELECT 1 FROM webhook_deliveries WHERE status IN ('pending','in_flight') AND endpoint_id IN (SELECT id FROM webhook_endpoints WHERE name LIKE '${1:-nginx}'))")" = t ]; do
    [ $SECONDS -lt $deadline ] || { echo "timed out waiting for deliveries" >&2; exit 1; }
    sleep 0.2
  done
}
reset_queue() { psql_ -c "TRUNCATE webhook_attempts" -c "DELETE FROM webhook_events WHERE type IN ('bench.x', 'benchb.x', 'benchm.x')" -c "VACUUM webhook_deliveries, webhook_events, webhook_attempts, webhook_ticks"; }

# One throughput run: $3 (default N) events of type $1 (default bench.x)
# committed at once for endpoint $2 (default nginx); prints events per
# second from the first to the last request, and µs of worker CPU per event.
throughput_run() {
  local type=${1:-bench.x} ep=${2:-nginx} n=${3:-$N} pid t0 t1 rate
  reset_queue
  pid=$(worker_pid); t0=$(cpu_ticks "$pid")
  psql_ -c "SELECT count(webhook_publish('$type', jsonb_build_object('i', i, 'pad', repeat('x', 500)))) FROM generate_series(1, $n) i" >/dev/null
  wait_drained "$ep"
  t1=$(cpu_ticks "$pid")
  rate=$(psql_ -c "SELECT round(sum(coalesce(cardinality(delivery_ids), 1)) / extract(epoch FROM max(started_at) - min(started_at))) FROM webhook_attempts")
  echo "$rate $(( (t1 - t0) * 10000 / n ))"   # ticks are 10 ms
}

# 1. ceiling
body=$(python3 -c 'import json; print(json.dumps({"type":"bench.x","timestamp":"2026-01-01T00:00:00.000000Z","data":{"i":1,"pad":"x"*500}}))')
cat > "$work/post.lua" <<EOF
wrk.method = "POST"
wrk.body   = '$body'
wrk.headers["Content-Type"] = "application/json"
EOF
ceil=()
for _ in $(seq "$RUNS"); do
  ceil+=("$(wrk -t2 -c64 -d5s -s "$work/post.lua" "http://127.0.0.1:$NGPORT/hook" | awk '/Requests\/sec/ {print int($2)}')")
done
CEIL=$(printf '%s\n' "${ceil[@]}" | median)

# 2. throughput, one event per request; 8. CPU per delivery
rates=(); cpus=()
for _ in $(seq "$RUNS"); do read -r r c < <(throughput_run); rates+=("$r"); cpus+=("$c"); done
RATE=$(printf '%s\n' "${rates[@]}" | median); CPU=$(printf '%s\n' "${cpus[@]}" | median)
RSS_SMALL=$(rss_kb "$(worker_pid)")

# 3. throughput, batch format (100 events per request); 8. CPU per event
NB=$((N * 5))
brates_b=(); cpus_b=()
for _ in $(seq "$RUNS"); do read -r r c < <(throughput_run benchb.x nginxb "$NB"); brates_b+=("$r"); cpus_b+=("$c"); done
BATCH=$(printf '%s\n' "${brates_b[@]}" | median); CPU_B=$(printf '%s\n' "${cpus_b[@]}" | median)

# 4. backlog: BACKLOG deliveries waiting (scheduled for a retry tomorrow) on
# another active endpoint, then the same run: claiming must stay index-driven.
psql_ -c "SELECT webhook_create_endpoint('backlog', 'http://127.0.0.1:$NGPORT/backlog', event_types => '{backlog.*}')" >/dev/null
# (one transaction: the fan-out, woken by its commit, finds the deliveries
# made and adds none)
psql_ <<EOF
BEGIN;
INSERT INTO webhook_events (type, data) SELECT 'backlog.x', '{}' FROM generate_series(1, $BACKLOG);
INSERT INTO webhook_deliveries (event_id, endpoint_id, next_attempt_at)
SELECT e.id, (SELECT id FROM webhook_endpoints WHERE name = 'backlog'), now() + interval '1 day'
  FROM webhook_events e WHERE e.type = 'backlog.x';
COMMIT;
EOF
# the setup's own writes are flushed first, so the runs below do not pay
# for a checkpoint of a million inserted rows
psql_ -c "VACUUM ANALYZE webhook_deliveries, webhook_events, webhook_ticks" -c "CHECKPOINT"
brates=()
for _ in $(seq "$RUNS"); do read -r r _c < <(throughput_run); brates+=("$r"); done
BRATE=$(printf '%s\n' "${brates[@]}" | median)

# 7. memory after many more deliveries
for _ in 1 2 3 4 5; do throughput_run >/dev/null; done
RSS_BIG=$(rss_kb "$(worker_pid)")
TOTAL_DELIVERED=$(( N * (RUNS * 2 + 5) ))

# 5. capture cost
psql_ <<EOF
CREATE TABLE plain   (id bigint PRIMARY KEY, customer text, total numeric, note text);
CREATE TABLE watched (LIKE plain INCLUDING ALL);
CREATE TABLE plpgsql (LIKE plain INCLUDING ALL);
CREATE TABLE outbox (id bigserial PRIMARY KEY, payload jsonb NOT NULL);
CREATE FUNCTION outbox_trigger() RETURNS trigger LANGUAGE plpgsql AS
  \$\$ BEGIN INSERT INTO outbox (payload) VALUES (to_jsonb(NEW)); RETURN NULL; END \$\$;
CREATE TRIGGER outbox AFTER INSERT OR UPDATE OR DELETE ON plpgsql FOR EACH ROW EXECUTE FUNCTION outbox_trigger();
SELECT webhook_watch('watched');
SELECT webhook_create_endpoint('capture', 'http://127.0.0.1:$NGPORT/capture', event_types => '{watched.*}');
SELECT webhook_disable(id) FROM webhook_endpoints WHERE name = 'capture';
EOF
bulk() { # table -> ms for CAPTURE_ROWS rows
  psql_ -c "TRUNCATE $1" >/dev/null
  psql_ -c "CHECKPOINT" >/dev/null
  $run_as psql -X -q -At -h "$work" -p "$PGPORT" -d postgres <<EOF | awk '/^Time:/ {print $2}' | tail -1
\timing on
INSERT INTO $1 SELECT i, 'customer ' || i, i * 1.5, 'some note text' FROM generate_series(1, $CAPTURE_ROWS) i;
EOF
}
wr=(); pr=()
for _ in $(seq "$RUNS"); do
  p=$(bulk plain); w=$(bulk watched); o=$(bulk plpgsql)
  wr+=("$(div "$w" "$p")"); pr+=("$(div "$o" "$p")")
done
BULK_W=$(printf '%s\n' "${wr[@]}" | median); BULK_P=$(printf '%s\n' "${pr[@]}" | median)

psql_ -c "CREATE SEQUENCE pgb_seq CACHE 1000"
for t in plain watched plpgsql; do
  echo "INSERT INTO $t VALUES (nextval('pgb_seq'), 'customer', 1.5, 'note');" > "$work/pgb_$t.sql"
done
chmod 644 "$work"/pgb_*.sql
# The ticks the fan-out passed are deleted rows until a vacuum: each
# pgbench run starts from the ticks as a vacuum leaves them.
tps() { psql_ -c "TRUNCATE $1" -c "VACUUM webhook_ticks" >/dev/null; $run_as pgbench -n -h "$work" -p "$PGPORT" -c 4 -j 2 -T 5 -f "$work/pgb_$1.sql" postgres 2>/dev/null | awk '/^tps/ {print $3}'; }
tw=(); tp=()
for _ in $(seq "$RUNS"); do
  a=$(tps plain); b=$(tps watched); c=$(tps plpgsql)
  tw+=("$(div "$b" "$a")"); tp+=("$(div "$c" "$a")")
done
TPS_W=$(printf '%s\n' "${tw[@]}" | median); TPS_P=$(printf '%s\n' "${tp[@]}" | median)
psql_ -c "TRUNCATE webhook_events CASCADE" >/dev/null
# idle means idle: what the runs above left for autovacuum and the
# checkpointer is done first, so it does not land in the latency figures
psql_ -c "VACUUM ANALYZE" -c "CHECKPOINT" >/dev/null
sync

# 6. latency at idle: commit -> request received, via nginx's log with msec times
# (bench/latency.py publishes through one psql session, 20 ms apart)
kill "$(cat "$work/nginx.pid")"; while [ -f "$work/nginx.pid" ]; do sleep 0.05; done
sed -i "s|access_log off;|log_format t '\$msec \$http_webhook_id'; access_log $work/ng/access.log t;|" "$work/ng/nginx.conf"
nginx -c "$work/ng/nginx.conf"
psql_ -c "ALTER SYSTEM SET webhook.poll_interval = '10s'" -c "SELECT pg_reload_conf()" >/dev/null
read -r P50 P99 COMMIT50 _ < <(python3 "$here/bench/latency.py" \
  "$run_as psql -X -q -At -h $work -p $PGPORT -d postgres" "$work/ng/access.log" "$LAT_N" "$LAT_WARMUP")

# 9. retry lateness at idle: a receiver that fails the first request of
# each message (test/receiver/receiver.js, /flaky/1), a 1 s retry with
# exact delays, events 50 ms apart; lateness is the gap between a message's
# two requests, as the receiver saw them, minus the second.  It includes
# the first request's answer and its recording (about a millisecond), and
# the retry must not wait for the poll (still 10 s here).  The circuit
# breaker is off for it: a receiver failing every first request would open
# it (that case is t/016_breaker.pl's), and lateness would be its cool-down.
psql_ -c "ALTER SYSTEM SET webhook.breaker_failures = 0" -c "SELECT pg_reload_conf()" >/dev/null
node "$here/test/receiver/receiver.js" --port 0 --log "$work/late.jsonl" >/dev/null 2>&1 &
RCV_PID=$!
until [ -s "$work/late.jsonl.port" ]; do sleep 0.05; done
RCVPORT=$(cat "$work/late.jsonl.port")
psql_ -c "SELECT webhook_create_endpoint('late', 'http://127.0.0.1:$RCVPORT/late/flaky/1', event_types => '{late.*}', retry_schedule => '{1s}', retry_jitter => 0)" >/dev/null
for i in $(seq "$LATE_N"); do psql_ -c "SELECT webhook_publish('late.x', '{}')" >/dev/null; sleep 0.05; done
wait_drained late
read -r LATE50 LATE99 < <(python3 - "$work/late.jsonl" <<'PY'
import json, sys
first, gaps = {}, []
for line in open(sys.argv[1]):
    r = json.loads(line)
    i = r["headers"]["webhook-id"]
    if i in first:
        gaps.append(r["t"] - first[i] - 1000.0)
    else:
        first[i] = r["t"]
gaps.sort()
q = lambda p: gaps[min(len(gaps) - 1, int(p * len(gaps)))]
print("%.1f %.1f" % (q(0.5), q(0.99)))
PY
)

# 10. head-of-line: an unrelated endpoint's events (nginx, one every 20
# ms, as in 6.) sent from the start of a HOL_ROWS-row INSERT into the
# watched table until the fan-out has taken every event it captured; the
# import's endpoint (capture) is disabled, so its deliveries are made and
# wait.  Latency is commit -> request, as in 6.  An ordered endpoint
# (receiving nothing here) is present, as one is in many databases: its
# lines must not bring the blocking back.  Run twice: the import in one
# transaction, then committed in HOL_CHUNK-row transactions, as ETL tools
# and batched backfills commit (10b).
hol_run() { # rows per transaction -> hol.result: "p50 p99 sent insert_s fanout_s"
  local chunk=$1 ord
  psql_ -c "TRUNCATE watched" -c "VACUUM ANALYZE" -c "CHECKPOINT" >/dev/null
  ord=$(psql_ -c "SELECT webhook_create_endpoint('ordered', 'http://127.0.0.1:$NGPORT/ordered', event_types => '{ordered.*}', ordered => true)")
  rm -f "$work/hol.done" "$work/hol.times"
  (
    # latency.py sends until hol.done exists: it must, whatever happens here
    trap 'touch "$work/hol.done"' EXIT
    t0=$(date +%s.%N)
    # the import's last event: the fan-out takes a transaction in id order,
    # and the transactions in commit order
    last=$( { echo "BEGIN;"
              for ((lo = 1; lo <= HOL_ROWS; lo += chunk)); do
                hi=$((lo + chunk - 1)); [ "$hi" -le "$HOL_ROWS" ] || hi=$HOL_ROWS
                echo "INSERT INTO watched SELECT i, 'customer ' || i, i * 1.5, 'some note text' FROM generate_series($lo, $hi) i;"
                [ "$hi" -eq "$HOL_ROWS" ] || echo "COMMIT; BEGIN;"
              done
              echo "SELECT max(id) FROM webhook_events WHERE txid = pg_current_xact_id();"
              echo "COMMIT;"; } | psql_ )
    t1=$(date +%s.%N)
    [ -n "$last" ] || { echo "measure 10: the import captured no event" >&2; exit 1; }
    deadline=$((SECONDS + 900))
    # (every chunk set aside taken too: the last one may stay in its window)
    until [ "$(psql_ -c "SELECT webhook_fanned_out(txid, id) AND $aside_done FROM webhook_events WHERE id = $last")" = t ]; do
      [ $SECONDS -lt $deadline ] || { echo "measure 10: the fan-out did not take the import" >&2; exit 1; }
      sleep 0.2
    done
    t2=$(date +%s.%N)
    echo "$(div "$t1 - $t0" 1) $(div "$t2 - $t1" 1)" > "$work/hol.times"
  ) &
  local bg=$! p50 p99 n
  read -r p50 p99 _ n < <(python3 "$here/bench/latency.py" \
    "$run_as psql -X -q -At -h $work -p $PGPORT -d postgres" "$work/ng/access.log" 10 0 "$work/hol.done")
  wait "$bg"    # (set -e: a failed import or fan-out stops the script here)
  psql_ -c "SELECT webhook_delete_endpoint($ord)" >/dev/null
  echo "$p50 $p99 $n $(cat "$work/hol.times")" > "$work/hol.result"
}
hol_run "$HOL_ROWS"; read -r HOL50 HOL99 HOLN HOL_INSERT HOL_FANOUT < "$work/hol.result"
hol_run "$HOL_CHUNK"; read -r HOLC50 HOLC99 HOLCN HOLC_INSERT HOLC_FANOUT < "$work/hol.result"

# 11. soak: SOAK_RATE events/s (pgbench --rate, one webhook_publish per
# transaction) into two endpoints for SOAK_SECONDS, with a 1-minute
# retention, from an emptied queue; every minute, the total size of the
# extension's tables (indexes and TOAST included) and the private memory
# of the worker and of its helper.  The figures: at the end against at 5
# minutes.
if [ "$SOAK_SECONDS" -gt 0 ]; then
  # (nginx without the access log again: it would grow by 4,000 lines a second)
  kill "$(cat "$work/nginx.pid")"; while [ -f "$work/nginx.pid" ]; do sleep 0.05; done
  sed -i "s|access_log $work/ng/access.log t;|access_log off;|" "$work/ng/nginx.conf"
  nginx -c "$work/ng/nginx.conf"
  psql_ -c "SELECT webhook_delete_endpoint(id) FROM webhook_endpoints" >/dev/null
  psql_ -c "TRUNCATE webhook_events, webhook_attempts CASCADE" -c "VACUUM" -c "CHECKPOINT" >/dev/null
  psql_ -c "ALTER SYSTEM SET webhook.retention = '1min'" -c "ALTER SYSTEM SET webhook.dead_letter_retention = '1min'" \
        -c "ALTER SYSTEM SET webhook.poll_interval = '1s'" -c "SELECT pg_reload_conf()" >/dev/null
  for e in soak1 soak2; do
    psql_ -c "SELECT webhook_create_endpoint('$e', 'http://127.0.0.1:$NGPORT/$e', event_types => '{soak.*}', max_in_flight => 64)" >/dev/null
  done
  echo "SELECT webhook_publish('soak.x', '{\"order\": 42, \"pad\": \"$(printf 'x%.0s' $(seq 200))\"}');" > "$work/soak.sql"
  chmod 644 "$work/soak.sql"
  ext_size() { psql_ -c "SELECT sum(pg_total_relation_size(d.objid)) FROM pg_depend d JOIN pg_class c ON c.oid = d.objid
                          WHERE d.classid = 'pg_class'::regclass AND d.deptype = 'e' AND c.relkind = 'r'
                            AND d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'webhook')"; }
  helper_pid() { psql_ -c "SELECT pid FROM pg_stat_activity WHERE backend_type = 'webhook fanout'"; }
  # (30 s longer than the samples: the last is taken under load too)
  $run_as pgbench -n -h "$work" -p "$PGPORT" -c 2 -j 1 -R "$SOAK_RATE" -T "$((SOAK_SECONDS + 30))" -f "$work/soak.sql" postgres \
    > "$work/soak.pgbench" 2>&1 &
  SOAK_BG=$!
  echo "minute,bytes,worker_pid,worker_rss_kb,helper_pid,helper_rss_kb,waiting" > "$work/soak.csv"
  for m in $(seq 1 $((SOAK_SECONDS / 60))); do
    sleep 60
    w=$(worker_pid); h=$(helper_pid)
    echo "$m,$(ext_size),$w,$(rss_kb "$w"),$h,${h:+$(rss_kb "$h")},$(psql_ -c "SELECT count(*) FROM webhook_deliveries WHERE status IN ('pending', 'in_flight')")" >> "$work/soak.csv"
  done
  wait "$SOAK_BG"
  mkdir -p "$here/bench/out" && cp "$work/soak.csv" "$here/bench/out/soak.csv" 2>/dev/null || true
  # (against minute 5, or the first for a soak shorter than 5 minutes)
  ref=$(( SOAK_SECONDS >= 300 ? 5 : 1 ))
  read -r SOAK_SIZE5 SOAK_RSS5 < <(awk -F, -v r="$ref" '$1 == r {print $2, $4}' "$work/soak.csv")
  read -r SOAK_SIZE SOAK_RSS < <(tail -1 "$work/soak.csv" | awk -F, '{print $2, $4}')
  SOAK_MAX=$(awk -F, -v r="$ref" 'NR > 1 && $1 >= r && $2 > m {m = $2} END {print m}' "$work/soak.csv")
  SOAK_TPS=$(awk '/^tps/ {print int($3)}' "$work/soak.pgbench")
  SOAK_WAIT=$(tail -1 "$work/soak.csv" | awk -F, '{print $7}')
  # the worker must be the same process throughout
  [ "$(awk -F, 'NR > 1 {print $3}' "$work/soak.csv" | sort -u | wc -l)" = 1 ] || SOAK_RSS="$SOAK_RSS (restarted)"
fi

# 12. several delivery workers: WORKERS_N events for four endpoints (nginx,
# one event per request; ids in both shares), with webhook.workers = 1 and
# then 2 (a restart each time), alternated; deliveries per second over the
# four.  Last, as it restarts the server.
for i in 1 2 3 4; do
  psql_ -c "SELECT webhook_create_endpoint('multi$i', 'http://127.0.0.1:$NGPORT/m$i', event_types => '{benchm.*}', max_in_flight => 64)" >/dev/null
done
multi_run() { # webhook.workers -> deliveries/s
  psql_ -c "ALTER SYSTEM SET webhook.workers = $1" >/dev/null
  $run_as "$PGBIN/pg_ctl" -D "$work/data" -l "$work/pg.log" -w restart >/dev/null
  until [ "$(psql_ -c "SELECT cardinality(worker_pids) = $1 AND array_position(worker_pids, NULL) IS NULL FROM webhook_workers WHERE database = 'postgres'")" = t ]; do sleep 0.1; done
  reset_queue
  psql_ -c "SELECT count(webhook_publish('benchm.x', jsonb_build_object('i', i, 'pad', repeat('x', 500)))) FROM generate_series(1, $WORKERS_N) i" >/dev/null
  wait_drained 'multi%'
  psql_ -c "SELECT round(count(*) / extract(epoch FROM max(started_at) - min(started_at))) FROM webhook_attempts"
}
w1=(); w2=()
for _ in $(seq "$RUNS"); do w1+=("$(multi_run 1)"); w2+=("$(multi_run 2)"); done
W1=$(printf '%s\n' "${w1[@]}" | median); W2=$(printf '%s\n' "${w2[@]}" | median)

# 13. latency at idle as in 6, one worker again, with IDLE_ENDPOINTS more
# endpoints that receive nothing (subscribed to a type never published):
# what a claim costs must be the endpoints with work, not every endpoint.
psql_ -c "ALTER SYSTEM SET webhook.workers = 1" >/dev/null
$run_as "$PGBIN/pg_ctl" -D "$work/data" -l "$work/pg.log" -w restart >/dev/null
psql_ -c "SELECT count(webhook_create_endpoint('idle' || i, 'http://127.0.0.1:$NGPORT/idle', event_types => '{idle.*}')) FROM generate_series(1, $IDLE_ENDPOINTS) i" >/dev/null
until [ "$(psql_ -c "SELECT state FROM webhook_workers WHERE database = 'postgres'")" = served ]; do sleep 0.1; done
read -r I50 I99 _ _ < <(python3 "$here/bench/latency.py" \
  "$run_as psql -X -q -At -h $work -p $PGPORT -d postgres" "$work/ng/access.log" "$LAT_N" "$LAT_WARMUP")

printf '\n%-58s %14s %12s\n' "measure (median of $RUNS runs, $(nproc) cores)" "value" "target"
printf '%-58s %14s %12s\n' "1. ceiling: wrk POST, 64 connections (req/s)" "$CEIL" ""
printf '%-58s %14s %12s\n' "2. one event per request, N=$N (deliveries/s)" "$RATE" ">= 25% ceil"
printf '%-58s %14.1f%% %11s\n' "   ratio to ceiling" "$(div "$RATE * 100" "$CEIL")" "25%"
printf '%-58s %14s %12s\n' "3. batched, 100 events/request, N=$NB (events/s)" "$BATCH" ">= 100000"
printf '%-58s %14.1f%% %11s\n' "   ratio to ceiling" "$(div "$BATCH * 100" "$CEIL")" ""
printf '%-58s %14s %12s\n' "4. same with $BACKLOG waiting (deliveries/s)" "$BRATE" ""
printf '%-58s %14.1f%% %11s\n' "   backlog rate / empty-queue rate" "$(div "$BRATE * 100" "$RATE")" ">= 90%"
printf '%-58s %14.2f %12s\n' "5. bulk INSERT $CAPTURE_ROWS rows: watched / plain" "$BULK_W" "<= 2.0"
printf '%-58s %14.2f %12s\n' "   PL/pgSQL to_jsonb outbox trigger / plain" "$BULK_P" ""
printf '%-58s %14.2f %12s\n' "   pgbench single-row INSERT TPS: watched / plain" "$TPS_W" ">= 0.90"
printf '%-58s %14.2f %12s\n' "   PL/pgSQL outbox trigger TPS / plain" "$TPS_P" ""
printf '%-58s %14s %12s\n' "6. latency at idle, commit -> request: p50 (ms)" "$P50" "<= 1.5"
printf '%-58s %14s %12s\n' "   p99 (ms)" "$P99" "<= 5"
printf '%-58s %14s %12s\n' "   the publisher's own COMMIT within it: p50 (ms)" "$COMMIT50" ""
printf '%-58s %14s %12s\n' "7. worker private RSS after $((N * RUNS)) deliveries (kB)" "$RSS_SMALL" ""
printf '%-58s %14s %12s\n' "   after $TOTAL_DELIVERED deliveries (kB)" "$RSS_BIG" "+<10 MB"
printf '%-58s %14s %12s\n' "8. worker CPU per delivery, standard format (us)" "$CPU" ""
printf '%-58s %14s %12s\n' "   batch format, per event (us)" "$CPU_B" ""
printf '%-58s %14s %12s\n' "9. retry lateness at idle, 1 s delay: p50 (ms)" "$LATE50" "<= 10"
printf '%-58s %14s %12s\n' "   p99 (ms)" "$LATE99" "<= 50"
printf '%-58s %14s %12s\n' "10. unrelated endpoint during a $HOL_ROWS-row watched INSERT:" "" ""
printf '%-58s %14s %12s\n' "   commit -> request, p50 (ms)" "$HOL50" "<= 50"
printf '%-58s %14s %12s\n' "   p99 (ms)" "$HOL99" "<= 200"
printf '%-58s %14s %12s\n' "   events sent; INSERT (s); its fan-out after commit (s)" "$HOLN; $(printf '%.1f' "$HOL_INSERT"); $(printf '%.1f' "$HOL_FANOUT")" ""
printf '%-58s %14s %12s\n' "10b. the same import committed in $HOL_CHUNK-row transactions:" "" ""
printf '%-58s %14s %12s\n' "   commit -> request, p50 (ms)" "$HOLC50" "<= 50"
printf '%-58s %14s %12s\n' "   p99 (ms)" "$HOLC99" "<= 200"
printf '%-58s %14s %12s\n' "   events sent; INSERTs (s); fan-out after the last (s)" "$HOLCN; $(printf '%.1f' "$HOLC_INSERT"); $(printf '%.1f' "$HOLC_FANOUT")" ""
if [ "$SOAK_SECONDS" -gt 0 ]; then
  printf '%-58s %14s %12s\n' "11. soak: $SOAK_RATE events/s, 2 endpoints, 1-min retention, $((SOAK_SECONDS / 60)) min:" "" ""
  printf '%-58s %14s %12s\n' "   extension's tables at $ref min / at the end (MB)" "$((SOAK_SIZE5 / 1048576)) / $((SOAK_SIZE / 1048576))" ""
  printf '%-58s %14.2f %12s\n' "   end / $ref min" "$(div "$SOAK_SIZE" "$SOAK_SIZE5")" "<= 1.20"
  printf '%-58s %14.2f %12s\n' "   largest from $ref min on / $ref min" "$(div "$SOAK_MAX" "$SOAK_SIZE5")" ""
  printf '%-58s %14s %12s\n' "   worker private RSS at $ref min / at the end (kB)" "$SOAK_RSS5 / $SOAK_RSS" "flat"
  printf '%-58s %14s %12s\n' "   events published per second; deliveries waiting at the end" "$SOAK_TPS; $SOAK_WAIT" ""
fi
printf '%-58s %14s %12s\n' "12. four endpoints, $((WORKERS_N * 4)) deliveries: 1 worker (deliveries/s)" "$W1" ""
printf '%-58s %14s %12s\n' "   webhook.workers = 2 (deliveries/s)" "$W2" ""
printf '%-58s %14.2f %12s\n' "   2 workers / 1" "$(div "$W2" "$W1")" ""
printf '%-58s %14s %12s\n' "13. latency at idle with $IDLE_ENDPOINTS idle endpoints: p50 (ms)" "$I50" ""
printf '%-58s %14s %12s\n' "   p99 (ms)" "$I99" ""
