#!/usr/bin/env bash
# scripts/demo.sh: the end-to-end demo on a fresh Debian 12 machine, as root or
# as a user with sudo.  Installs what is missing, builds and installs the
# extension, starts a throwaway cluster (extension preloaded, free port) and
# a loopback receiver, watches a table, writes rows, and prints what the
# receiver got (signatures checked by the Standard Webhooks reference
# library) and the health view.  Cleans up after itself.
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
. "$src/scripts/lib.sh"

install_packages
install_receiver "$src"
build_install "$src"

SECRET=whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw
work=$(mktemp -d /tmp/webhook-demo.XXXXXX)
chmod 755 "$work"
[ "$(id -u)" = 0 ] && chown "$(pg_user)" "$work"
PGPORT=$(free_port)
receiver_pid=""
cleanup() {
  [ -n "$receiver_pid" ] && kill "$receiver_pid" 2>/dev/null || true
  as_pg pg_ctl -D "$work/data" -m fast stop >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

echo "== starting a throwaway cluster on port $PGPORT"
as_pg initdb -D "$work/data" -A trust >/dev/null
cat <<CONF | as_pg tee -a "$work/data/postgresql.conf" >/dev/null
port = $PGPORT
listen_addresses = ''
unix_socket_directories = '$work'
shared_preload_libraries = 'webhook'
webhook.database_name = 'app'
webhook.allow_http = on                    # the demo receiver is plain http
webhook.allowed_networks = '127.0.0.1/32'  # ... on loopback
CONF
as_pg pg_ctl -D "$work/data" -l "$work/postgres.log" -w start >/dev/null
as_pg createdb -h "$work" -p "$PGPORT" app
psql_() { as_pg psql -X -h "$work" -p "$PGPORT" -d app -v ON_ERROR_STOP=1 "$@"; }

echo "== starting the receiver"
node "$src/test/receiver/receiver.js" --port 0 --log "$work/received.jsonl" --secret "$SECRET" >/dev/null &
receiver_pid=$!
deadline=$((SECONDS + 20))
until [ -s "$work/received.jsonl.port" ]; do
  [ $SECONDS -lt $deadline ] || { echo "receiver did not start" >&2; exit 1; }
  sleep 0.1
done
RPORT=$(cat "$work/received.jsonl.port")

echo "== the application"
psql_ -e <<SQL
CREATE EXTENSION webhook;
CREATE TABLE orders (id bigserial PRIMARY KEY, customer text NOT NULL,
                     total numeric(10,2) NOT NULL, status text NOT NULL DEFAULT 'new');
SELECT webhook_create_endpoint('billing', 'http://127.0.0.1:$RPORT/billing/ok',
                               event_types => '{orders.*}', secret => '$SECRET');
SELECT webhook_watch('orders');
INSERT INTO orders (customer, total) VALUES ('ada', 42.00), ('grace', 17.50), ('linus', 99.99);
UPDATE orders SET status = 'paid' WHERE customer = 'ada';
DELETE FROM orders WHERE customer = 'linus';
SQL

echo "== waiting for the worker to deliver"
deadline=$((SECONDS + 30))
until [ "$(psql_ -At -c "SELECT count(*) FILTER (WHERE status = 'delivered') = 5 FROM webhook_deliveries")" = t ]; do
  [ $SECONDS -lt $deadline ] || { echo "deliveries did not complete" >&2; psql_ -c "TABLE webhook_deliveries"; exit 1; }
  sleep 0.1
done

echo "== what the receiver got"
python3 - "$work/received.jsonl" <<'PY'
import json, sys
for line in open(sys.argv[1]):
    r = json.loads(line)
    h = r["headers"]
    print(f'{r["method"]} {r["path"]}  webhook-id={h.get("webhook-id")}  verified={r["verified"]}')
    print(f'  webhook-signature: {h.get("webhook-signature")}')
    print(f'  body: {r["body"]}')
PY
bad=$(python3 -c 'import json,sys; print(sum(1 for l in open(sys.argv[1]) if not json.loads(l)["verified"]))' "$work/received.jsonl")
[ "$bad" = 0 ] || { echo "$bad requests failed signature verification" >&2; exit 1; }

echo "== a synchronous test send, and the health view"
psql_ -c "SELECT * FROM webhook_test(1)"
psql_ -x -c "SELECT * FROM webhook_endpoint_health"
echo "== demo finished"
