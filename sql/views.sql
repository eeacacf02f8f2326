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
