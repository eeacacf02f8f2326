\set SHOW_CONTEXT never
-- Columns of the views are part of the API
SELECT attname, format_type(atttypid, atttypmod)
  FROM pg_attribute WHERE attrelid = 'webhook_endpoint_health'::regclass AND attnum > 0 ORDER BY attnum;
SELECT attname, format_type(atttypid, atttypmod)
  FROM pg_attribute WHERE attrelid = 'webhook_dead_letters'::regclass AND attnum > 0 ORDER BY attnum;

-- Health counts follow delivery states; no secret is shown
SELECT webhook_fanout() >= 0 AS flushed_earlier_events;
SELECT webhook_create_endpoint('health', 'https://health.example.com/') AS ep \gset
SELECT count(webhook_publish('a.b', jsonb_build_object('n', i))) FROM generate_series(1, 4) i;
SELECT webhook_fanout();
UPDATE webhook_deliveries SET status = 'dead', attempts = 8, last_status = 500, last_error = 'HTTP 500',
       finished_at = now() WHERE id = (SELECT min(id) FROM webhook_deliveries WHERE endpoint_id = :ep);
UPDATE webhook_deliveries SET status = 'delivered', attempts = 1, finished_at = now()
 WHERE id = (SELECT max(id) FROM webhook_deliveries WHERE endpoint_id = :ep);
INSERT INTO webhook_attempts (endpoint_id, delivery_id, attempt, started_at, duration_ms, status_code, ok, error)
VALUES (:ep, NULL, 1, now(), 10, 200, true, NULL), (:ep, NULL, 1, now(), 30, 500, false, 'HTTP 500');
SELECT name, state, pending, in_flight, delivered, dead, oldest_pending_age IS NOT NULL AS has_age,
       last_success_at IS NOT NULL AS succeeded, last_failure_at IS NOT NULL AS failed, last_error,
       success_rate_1h, p50_ms_1h, p95_ms_1h
  FROM webhook_endpoint_health WHERE endpoint_id = :ep;
SELECT count(*) FROM webhook_endpoint_health h WHERE h::text LIKE '%whsec_%';
SELECT event_type, data, attempts, last_status, last_error, died_at IS NOT NULL AS died
  FROM webhook_dead_letters WHERE endpoint_id = :ep;

-- Consumer lag: the events committed that an endpoint has still to receive,
-- taken by the fan-out or not, and how long the oldest has waited; by its
-- subscriptions (types and filters), so an unrelated endpoint shows none
SELECT webhook_fanout() >= 0 AS flushed_earlier_events;
SELECT webhook_create_endpoint('lag_a', 'https://lag-a.example.com/', event_types => '{lag.a.*}') AS lag_a \gset
SELECT webhook_create_endpoint('lag_f', 'https://lag-f.example.com/', event_types => '{lag.*}') AS lag_f \gset
SELECT webhook_subscribe(:lag_f, 'lag.*', '{"hot": true}');
SELECT webhook_create_endpoint('lag_none', 'https://lag-none.example.com/', event_types => '{other.x}') AS lag_none \gset
SELECT name, lag_events, lag FROM webhook_endpoint_health WHERE name LIKE 'lag%' ORDER BY name;
INSERT INTO webhook_events (type, data, occurred_at)
SELECT 'lag.a.x', json_build_object('hot', i % 2 = 0), now() - interval '1 hour' FROM generate_series(1, 3) i;
SELECT webhook_publish('lag.b.x', '{"hot": true}') > 0 AS published;
-- not fanned out yet
SELECT name, lag_events, lag >= interval '1 hour' AS an_hour_behind, lag > interval '0' AS behind
  FROM webhook_endpoint_health WHERE name LIKE 'lag%' ORDER BY name;
-- the same count once fanned out (its deliveries), and none once sent
SELECT webhook_fanout();
SELECT name, lag_events, pending FROM webhook_endpoint_health WHERE name LIKE 'lag%' ORDER BY name;
UPDATE webhook_deliveries SET status = 'delivered', attempts = 1, finished_at = now()
 WHERE endpoint_id IN (:lag_a, :lag_f);
SELECT name, lag_events, lag FROM webhook_endpoint_health WHERE name LIKE 'lag%' ORDER BY name;
SELECT webhook_delete_endpoint(id) FROM webhook_endpoints WHERE name LIKE 'lag%';

-- Direct writes to deliveries are checked too
\set VERBOSITY terse
UPDATE webhook_deliveries SET status = 'lost' WHERE endpoint_id = :ep;
UPDATE webhook_deliveries SET attempts = -1 WHERE endpoint_id = :ep;
UPDATE webhook_deliveries SET status = 'in_flight' WHERE endpoint_id = :ep;

\set VERBOSITY default
-- webhook_test: unknown endpoint, bad type, refused destination (no connection made)
SELECT * FROM webhook_test(987654);
SELECT * FROM webhook_test(NULL);
SELECT * FROM webhook_test(:ep, 'bad type');
-- a direct UPDATE is held to the destination rules...
UPDATE webhook_endpoints SET url = 'http://10.0.0.1/x' WHERE id = :ep;
-- ...and webhook_test checks again before connecting (the rules may change)
ALTER TABLE webhook_endpoints DISABLE TRIGGER webhook_endpoints_check;
UPDATE webhook_endpoints SET url = 'http://10.0.0.1/x' WHERE id = :ep;
ALTER TABLE webhook_endpoints ENABLE TRIGGER webhook_endpoints_check;
SELECT ok, status, response, error FROM webhook_test(:ep);
SELECT attempt, status_code, ok, error FROM webhook_attempts WHERE endpoint_id = :ep AND delivery_id IS NULL ORDER BY id DESC LIMIT 1;
SELECT webhook_delete_endpoint(:ep);
