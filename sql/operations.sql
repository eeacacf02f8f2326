\set SHOW_CONTEXT never
-- Replay, recovery and retention.  No worker runs in this database: the
-- tests move deliveries through their states by hand.
SELECT webhook_fanout() >= 0 AS flushed_earlier_events;
SELECT webhook_create_endpoint('ops', 'https://ops.example.com/in', event_types => '{ops.*}') AS ep \gset
SELECT count(webhook_publish('ops.thing', jsonb_build_object('n', i))) FROM generate_series(1, 6) i;
SELECT webhook_fanout();
SELECT min(id) AS d1 FROM webhook_deliveries WHERE endpoint_id = :ep \gset
-- d1, d1+1 delivered long ago; d1+2, d1+3 dead (one old, one recent); d1+4 in flight; d1+5 pending
UPDATE webhook_deliveries SET status = 'delivered', attempts = 1, finished_at = now() - interval '10 days'
 WHERE id IN (:d1, :d1 + 1);
UPDATE webhook_deliveries SET status = 'dead', attempts = 8, last_status = 500, finished_at = now() - interval '40 days'
 WHERE id = :d1 + 2;
UPDATE webhook_deliveries SET status = 'dead', attempts = 8, last_status = 500, finished_at = now() - interval '1 hour'
 WHERE id = :d1 + 3;
UPDATE webhook_deliveries SET status = 'in_flight', attempts = 1, lease_token = 1, lease_until = now() + interval '1 min'
 WHERE id = :d1 + 4;
INSERT INTO webhook_attempts (endpoint_id, delivery_id, attempt, started_at, duration_ms, status_code, ok)
SELECT :ep, id, 1, coalesce(finished_at, now()), 1, 200, status = 'delivered'
  FROM webhook_deliveries WHERE endpoint_id = :ep;

-- replay: delivered and dead only; fresh schedule, same event (same webhook-id)
SELECT webhook_replay(:d1);
SELECT status, attempts, finished_at IS NULL AS unfinished, next_attempt_at <= now() AS due
  FROM webhook_deliveries WHERE id = :d1;
SELECT webhook_replay(:d1);
SELECT webhook_replay(:d1 + 4);
SELECT webhook_replay(-1);
SELECT webhook_replay(NULL);

-- replay_event: every endpoint that got the event
SELECT webhook_create_endpoint('ops2', 'https://ops2.example.com/in', event_types => '{ops.*}') AS ep2 \gset
SELECT webhook_publish('ops.both', '{}') AS both_ev \gset
SELECT webhook_fanout();
UPDATE webhook_deliveries SET status = 'delivered', attempts = 1, finished_at = now() WHERE event_id = :both_ev;
SELECT webhook_replay_event(:both_ev);
SELECT count(*) FILTER (WHERE status = 'pending') AS pending FROM webhook_deliveries WHERE event_id = :both_ev;
SELECT webhook_replay_event(:both_ev);
SELECT webhook_replay_event(-1);
DELETE FROM webhook_deliveries WHERE event_id = :both_ev;
SELECT webhook_delete_endpoint(:ep2);

-- recover: dead deliveries of one endpoint that died in a window
SELECT webhook_recover(:ep, now() - interval '2 hours');
SELECT status FROM webhook_deliveries WHERE id = :d1 + 3;
SELECT status FROM webhook_deliveries WHERE id = :d1 + 2;
SELECT webhook_recover(:ep, now() - interval '50 days', now() - interval '30 days');
SELECT webhook_recover(:ep, now(), now() - interval '1 day');
SELECT webhook_recover(:ep, NULL);
SELECT webhook_recover(-1, now());

-- purge: delivered deliveries (and their attempts) and finished events older
-- than the age; dead letters by their own age; nothing waiting is touched
UPDATE webhook_deliveries SET status = 'dead', attempts = 8, finished_at = now() - interval '40 days'
 WHERE id = :d1 + 2;
UPDATE webhook_events SET occurred_at = now() - interval '10 days'
 WHERE id IN (SELECT event_id FROM webhook_deliveries WHERE endpoint_id = :ep);
-- an old event not fanned out yet (still queued) is kept too
SELECT webhook_publish('ops.queued', '{}') AS queued_ev \gset
UPDATE webhook_events SET occurred_at = now() - interval '10 days' WHERE id = :queued_ev;
SELECT * FROM webhook_purge('7 days');
SELECT id - :d1 AS d, status FROM webhook_deliveries WHERE endpoint_id = :ep ORDER BY id;
SELECT * FROM webhook_purge('7 days');
SELECT * FROM webhook_purge('1 day', dead_letters_older_than => '0');
SELECT * FROM webhook_purge(NULL);
SELECT * FROM webhook_purge('-1 day');
-- the events of waiting deliveries are still there, and the queued one
SELECT count(*) FROM webhook_deliveries d JOIN webhook_events e ON e.id = d.event_id WHERE d.endpoint_id = :ep;
SELECT count(*) AS queued_kept FROM webhook_events e
 WHERE e.id = :queued_ev AND NOT webhook_fanned_out(e.txid, e.id);
SELECT webhook_fanout(100000) >= 1 AS fanned_out;
-- A transaction that changes the extension's row and moves the fan-out's
-- cursor is no restore (only a cursor of another installation is): nothing
-- is taken twice, and its own event goes after its commit
BEGIN;
UPDATE pg_extension SET extversion = extversion WHERE extname = 'webhook';
SELECT webhook_publish('ops.own', '{}') IS NOT NULL AS published;
SELECT webhook_fanout(100000) AS taken;
SELECT webhook_fanout(100000) AS taken_again;
COMMIT;
SELECT webhook_fanout(100000) AS taken_after_commit;
SELECT webhook_delete_endpoint(:ep);

-- States: every change is kept with its reason; enable and resume return
-- an endpoint to active from any state, with its health counters reset
SELECT webhook_create_endpoint('st', 'https://st.example.com/in') AS st \gset
UPDATE webhook_endpoints SET consecutive_failures = 7, failing_since = now() WHERE id = :st;
SELECT webhook_set_state(:st, 'paused', 'every request failed for 5 days');
SELECT webhook_set_state(:st, 'paused', 'again');
SELECT state, state_reason, consecutive_failures, next_attempt_at FROM webhook_endpoint_health WHERE endpoint_id = :st;
SELECT webhook_resume(:st);
SELECT state, state_reason, consecutive_failures, failing_since FROM webhook_endpoints WHERE id = :st;
SELECT webhook_disable(:st, 'maintenance');
SELECT state, state_reason FROM webhook_endpoints WHERE id = :st;
SELECT webhook_enable(:st);
SELECT state, state_reason FROM webhook_endpoints WHERE id = :st;
-- a circuit opened by hand is probed at once, then backs off
SELECT webhook_set_state(:st, 'circuit_open', 'opened by hand');
SELECT circuit_until <= now() AS probe_due, circuit_cooldown > 0 AS backs_off FROM webhook_endpoints WHERE id = :st;
SELECT webhook_enable(:st);
-- the LOG line of a change and its context, as the worker's call (four
-- arguments) leaves them in the server log: docs/operations.md quotes
-- them, and t/017_manual.pl compares its quote with this output
\set SHOW_CONTEXT always
SET client_min_messages = log;
SELECT webhook_set_state(:st, 'circuit_open', '10 failed requests in a row; last: HTTP 503', 'active');
RESET client_min_messages;
\set SHOW_CONTEXT never
SELECT webhook_enable(:st);
SELECT webhook_set_state(:st, 'sleeping', 'no such state');
SELECT webhook_resume(-1);

-- The chart and the per-minute statistics
INSERT INTO webhook_attempts (endpoint_id, delivery_id, attempt, started_at, duration_ms, status_code, ok)
SELECT :st, NULL, 1, date_bin('1 minute', now(), '2000-01-01') + interval '1 second',
       i, CASE WHEN i % 4 = 0 THEN 500 ELSE 200 END, i % 4 <> 0
  FROM generate_series(1, 40) i;
SELECT requests, delivered, failed, p95_ms, chart
  FROM webhook_delivery_chart(:st, '3 minutes') WHERE requests > 0;
SELECT count(*) BETWEEN 3 AND 5 AS buckets_filled, sum(requests) AS requests
  FROM webhook_delivery_chart(:st, '3 minutes');
SELECT sum(requests) >= 40 AS all_endpoints FROM webhook_delivery_chart(NULL, '1 hour', '10 minutes');
SELECT requests, delivered, failed, failure_rate, p50_ms, p95_ms
  FROM webhook_delivery_stats WHERE endpoint_id = :st;
SELECT * FROM webhook_delivery_chart(:st, '0');
SELECT * FROM webhook_delivery_chart(:st, '1 year', '1 second');
SELECT webhook_delete_endpoint(:st);

-- A transaction of 50 events or more (a bulk import, or a chunk of one)
-- is set aside when its window
-- opens, and taken beside the windows after it, a step of each in turn: an
-- event committed after it waits for one of its steps, not for all of them
SELECT webhook_fanout(100000) >= 0 AS flushed_earlier_events;
SELECT count(*) AS ordered_endpoints FROM webhook_endpoints WHERE ordered;
SELECT webhook_create_endpoint('bulk', 'https://bulk.example.com/', event_types => '{ops.bulk}') AS bulk \gset
SELECT webhook_create_endpoint('other', 'https://other.example.com/', event_types => '{ops.other}') AS other \gset
SELECT count(webhook_publish('ops.bulk', jsonb_build_object('i', i))) FROM generate_series(1, 4001) i;
SELECT webhook_publish('ops.other', '{"after": "the bulk"}') IS NOT NULL AS published;
SELECT webhook_fanout(100) AS taken;
SELECT count(*) AS set_aside FROM webhook_fanout_aside;
SELECT endpoint_id = :other AS other, count(*) FROM webhook_deliveries
 WHERE endpoint_id IN (:bulk, :other) GROUP BY 1 ORDER BY 1;
SELECT count(*) FILTER (WHERE webhook_fanned_out(txid, id)) AS taken, count(*)
  FROM webhook_events WHERE type = 'ops.bulk';
-- the lag counts the rest of it
SELECT name, lag_events FROM webhook_endpoint_health WHERE endpoint_id IN (:bulk, :other) ORDER BY 1;
-- while a transaction is set aside, an endpoint can be made or created
-- ordered, and while one is ordered, transactions are set aside all the
-- same
SELECT webhook_update_endpoint(:other, ordered => true) IS NOT NULL AS updated;
SELECT webhook_create_endpoint('ord', 'https://ord.example.com/', event_types => '{ops.ord}', ordered => true) AS ord \gset
SELECT webhook_delete_endpoint(:ord);
SELECT webhook_fanout(100000) AS taken;
SELECT count(*) AS set_aside FROM webhook_fanout_aside WHERE next_id <= hi_id;
SELECT count(webhook_publish('ops.bulk', jsonb_build_object('i', i))) FROM generate_series(1, 4001) i;
SELECT webhook_fanout(100) AS taken;
SELECT count(*) AS set_aside FROM webhook_fanout_aside WHERE next_id <= hi_id;
SELECT webhook_fanout(100000) AS taken;
-- An ordered endpoint's line goes in commit order, (tick_id, event_id):
-- a large transaction whose last event is of key k, then a one-event
-- transaction of key k.  The first step sets the large one aside and makes
-- the later event's delivery; the ordered claim (the worker's statement)
-- holds it, as the large transaction may still hold an earlier event of
-- its key (the claim takes only the head of line '', an earlier event).
-- Once that is fanned out, its delivery, made later, goes first.
SELECT max(e) AS bulk_k FROM (
  SELECT webhook_publish('ops.bulk', jsonb_build_object('i', i)) FROM generate_series(1, 4001) i
  UNION ALL SELECT webhook_publish('ops.other', '{"in": "the bulk"}', NULL, 'k')) s(e) \gset
SELECT webhook_publish('ops.other', '{"after": "the bulk"}', NULL, 'k') AS later_k \gset
SELECT webhook_fanout(100) AS taken;
SELECT event_id = :later_k AS later_k, ordering_key, tick_id > 0 AS has_tick FROM webhook_deliveries
 WHERE endpoint_id = :other AND status = 'pending';
SELECT webhook_statement('claim_ordered') AS claim_ordered \gset
:claim_ordered ;
CREATE TEMP TABLE claimed (id, endpoint_id, event_id, attempt, type, occurred_at, data, format, source,
                           batch_id, delivered_at, batch_size, batch_data)
    AS EXECUTE claim_ordered(10, 7, ARRAY[]::int8[], ARRAY[]::int4[], ARRAY[]::int4[], 1, ARRAY[0]);
SELECT event_id = :later_k AS later_k FROM claimed;
SELECT webhook_fanout(100000) AS taken;
SELECT event_id = :bulk_k AS bulk_k, status FROM webhook_deliveries
 WHERE endpoint_id = :other AND ordering_key = 'k' ORDER BY tick_id, event_id;
DROP TABLE claimed;
CREATE TEMP TABLE claimed (id, endpoint_id, event_id, attempt, type, occurred_at, data, format, source,
                           batch_id, delivered_at, batch_size, batch_data)
    AS EXECUTE claim_ordered(10, 7, ARRAY[]::int8[], ARRAY[]::int4[], ARRAY[]::int4[], 1, ARRAY[0]);
SELECT event_id = :bulk_k AS bulk_k_first FROM claimed;
DROP TABLE claimed;
DEALLOCATE claim_ordered;
-- A transaction set aside is stepped beside its own window, and may get
-- ahead of that window's earlier events: x, of key k2, then a transaction
-- of 60 events whose first is of k2 too (a1), in one window, with three
-- events before x.  Two calls of two events each take a1 (beside the
-- window's first events) before x; the ordered claim holds a1 while the
-- window may still hold an earlier event of its key, and once x is
-- fanned out, takes x first.
SELECT count(webhook_publish('ops.bulk', jsonb_build_object('w', i))) FROM generate_series(1, 3) i;
SELECT webhook_publish('ops.other', '{"x": 1}', NULL, 'k2') AS x \gset
SELECT min(e) AS a1 FROM (
  SELECT webhook_publish('ops.other', '{"a": 1}', NULL, 'k2')
  UNION ALL SELECT webhook_publish('ops.bulk', jsonb_build_object('a', i)) FROM generate_series(2, 60) i) s(e) \gset
SELECT webhook_fanout(2) + webhook_fanout(2) AS taken;
SELECT count(*) FILTER (WHERE event_id = :x) AS x_made, count(*) FILTER (WHERE event_id = :a1) AS a1_made
  FROM webhook_deliveries WHERE endpoint_id = :other;
:claim_ordered ;
CREATE TEMP TABLE claimed (id, endpoint_id, event_id, attempt, type, occurred_at, data, format, source,
                           batch_id, delivered_at, batch_size, batch_data)
    AS EXECUTE claim_ordered(10, 7, ARRAY[]::int8[], ARRAY[]::int4[], ARRAY[]::int4[], 1, ARRAY[0]);
SELECT count(*) FILTER (WHERE event_id = :a1) AS a1_claimed FROM claimed;
DROP TABLE claimed;
SELECT webhook_fanout(100000) AS taken;
CREATE TEMP TABLE claimed (id, endpoint_id, event_id, attempt, type, occurred_at, data, format, source,
                           batch_id, delivered_at, batch_size, batch_data)
    AS EXECUTE claim_ordered(10, 7, ARRAY[]::int8[], ARRAY[]::int4[], ARRAY[]::int4[], 1, ARRAY[0]);
SELECT count(*) FILTER (WHERE event_id = :x) AS x_claimed, count(*) FILTER (WHERE event_id = :a1) AS a1_claimed
  FROM claimed;
DROP TABLE claimed;
DEALLOCATE claim_ordered;
SELECT webhook_update_endpoint(:other, ordered => false) IS NOT NULL AS updated;
-- a transaction set aside and done while its window is still open stays
-- left out of that window: 5,000 one-event transactions, the bulk one, and
-- one more, in one window, taken 100 events a call (50 each): the bulk one
-- is done first, and nothing is taken twice
DO $$ BEGIN FOR i IN 1..5000 LOOP PERFORM webhook_publish('ops.other', jsonb_build_object('i', i)); COMMIT; END LOOP; END $$;
SELECT count(webhook_publish('ops.bulk', jsonb_build_object('i', i))) FROM generate_series(1, 4001) i;
SELECT webhook_publish('ops.other', '{"last": true}') IS NOT NULL AS published;
CREATE TEMP TABLE steps (n bigint, aside_done boolean, window_open boolean, bulk_not_taken bigint);
DO $$
DECLARE
    n bigint;
    done boolean;
    open boolean;
BEGIN
    LOOP
        n := webhook_fanout(100);
        EXIT WHEN n = 0;
        done := EXISTS (SELECT FROM webhook_fanout_aside a WHERE a.next_id > a.hi_id);
        open := EXISTS (SELECT FROM webhook_fanout_cursor k WHERE k.upto IS NOT NULL);
        INSERT INTO steps
        SELECT n, done, open,
               CASE WHEN done AND open THEN
                    (SELECT count(*) FROM webhook_events e
                      WHERE e.type = 'ops.bulk' AND NOT webhook_fanned_out(e.txid, e.id)) END;
    END LOOP;
END
$$;
SELECT sum(n) AS taken, count(*) FILTER (WHERE aside_done AND window_open) > 0 AS done_while_window_open,
       max(bulk_not_taken) AS bulk_not_taken_then
  FROM steps;
-- (the one done stays until the next window opens)
SELECT count(*) FILTER (WHERE next_id <= hi_id) AS to_take, count(*) AS kept FROM webhook_fanout_aside;
-- one delivery per event, none lost, none twice
SELECT endpoint_id = :other AS other, count(*), count(DISTINCT event_id) FROM webhook_deliveries
 WHERE endpoint_id IN (:bulk, :other) GROUP BY 1 ORDER BY 1;
SELECT count(*) FILTER (WHERE NOT webhook_fanned_out(txid, id)) AS not_taken FROM webhook_events;
-- An import committed in chunks: a transaction of 50 events or more is
-- set aside, so the event committed after three 150-event
-- transactions waits for a step, not for them all; a call takes a step of
-- the windows (the one event), then the transactions set aside, several a
-- statement, up to its limit
SELECT count(webhook_publish('ops.bulk', jsonb_build_object('i', i))) FROM generate_series(1, 150) i;
SELECT count(webhook_publish('ops.bulk', jsonb_build_object('i', i))) FROM generate_series(1, 150) i;
SELECT count(webhook_publish('ops.bulk', jsonb_build_object('i', i))) FROM generate_series(1, 150) i;
SELECT webhook_publish('ops.other', '{"after": "the chunks"}') AS after_chunks \gset
SELECT webhook_fanout(400) AS taken;
SELECT count(*) AS chunks_set_aside, count(*) FILTER (WHERE next_id <= hi_id) AS with_events_left
  FROM webhook_fanout_aside;
SELECT count(*) AS after_chunks_made FROM webhook_deliveries WHERE event_id = :after_chunks;
SELECT webhook_fanout(100000) AS taken;
-- one of 49 events stays in its window, one of 50 is set aside, and so is
-- not one of two events whose ids are far apart
SELECT count(webhook_publish('ops.bulk', jsonb_build_object('i', i))) FROM generate_series(1, 49) i;
SELECT count(webhook_publish('ops.bulk', jsonb_build_object('i', i))) FROM generate_series(1, 50) i;
BEGIN;
SELECT webhook_publish('ops.bulk', '{"far": 1}') IS NOT NULL AS published;
SELECT count(nextval(pg_get_serial_sequence('webhook_events', 'id'))) AS ids_skipped FROM generate_series(1, 100);
SELECT webhook_publish('ops.bulk', '{"far": 2}') IS NOT NULL AS published;
COMMIT;
SELECT webhook_fanout(10) AS taken;
SELECT count(*) FILTER (WHERE next_id <= hi_id) AS set_aside, max(hi_id - next_id) + 1 AS its_events_left
  FROM webhook_fanout_aside;
SELECT webhook_fanout(100000) AS taken;
-- transactions set aside from two windows, taken in one statement: each
-- delivery carries its own transaction's tick
SELECT count(webhook_publish('ops.bulk', jsonb_build_object('i', i))) FROM generate_series(1, 60) i;
SELECT webhook_fanout(2) AS taken;
SELECT count(webhook_publish('ops.bulk', jsonb_build_object('i', i))) FROM generate_series(1, 60) i;
SELECT webhook_fanout(2) AS taken;
SELECT count(DISTINCT tick_id) AS ticks, count(*) FILTER (WHERE next_id <= hi_id) AS with_events_left
  FROM webhook_fanout_aside;
SELECT webhook_fanout(1000) AS taken;
SELECT count(DISTINCT a.tick_id) AS ticks, count(*) FILTER (WHERE d.tick_id <> a.tick_id) AS other_tick,
       count(*) AS deliveries
  FROM webhook_deliveries d JOIN webhook_events e ON e.id = d.event_id JOIN webhook_fanout_aside a ON a.txid = e.txid
 WHERE d.endpoint_id = :bulk;
SELECT endpoint_id = :other AS other, count(*), count(DISTINCT event_id) FROM webhook_deliveries
 WHERE endpoint_id IN (:bulk, :other) GROUP BY 1 ORDER BY 1;
SELECT webhook_delete_endpoint(:bulk), webhook_delete_endpoint(:other);

-- The worker's look-ups of endpoints stay probes by key whatever the
-- statistics their generic plans were made from: the next-due look-up,
-- the three claims and the health update, planned (as the worker plans
-- them: no sequential scans, the claims without sorts) while few
-- endpoints exist, then run with 300 more, idle, and one with a delivery
-- waiting, read one endpoint row at a time, counting those a filter drops
-- (a hash join, which reads every endpoint, is what a plan made from
-- those statistics would otherwise use).  Autovacuum is held off the
-- tables meanwhile, so that no analyze has the plans made again.
ALTER TABLE webhook_endpoints SET (autovacuum_enabled = false);
ALTER TABLE webhook_deliveries SET (autovacuum_enabled = false);
CREATE FUNCTION pg_temp.endpoint_rows(q text) RETURNS numeric LANGUAGE plpgsql AS $$
DECLARE
    plan jsonb;
BEGIN
    EXECUTE 'EXPLAIN (ANALYZE, FORMAT JSON) ' || q INTO plan;
    -- rows per loop: PostgreSQL 18 shows their average to two decimals,
    -- earlier majors rounded
    RETURN (SELECT round(max(coalesce((n ->> 'Actual Rows')::numeric, 0)
                             + coalesce((n ->> 'Rows Removed by Filter')::numeric, 0)))
              FROM jsonb_path_query(plan, 'strict $.**?(@."Relation Name" == "webhook_endpoints")') n);
END
$$;
SET plan_cache_mode = force_generic_plan;
SET enable_seqscan = off;
SELECT webhook_statement('next_due') AS s \gset
:s ;
SELECT webhook_statement('claim_plain') AS s \gset
:s ;
SELECT webhook_statement('claim_batch') AS s \gset
:s ;
SELECT webhook_statement('claim_ordered') AS s \gset
:s ;
SELECT webhook_statement('health') AS s \gset
:s ;
BEGIN;
EXECUTE next_due(1, ARRAY[0]);
SET LOCAL enable_sort = off;
CREATE TEMP TABLE claimed (id, endpoint_id, event_id, attempt, type, occurred_at, data, format, source,
                           batch_id, delivered_at, batch_size, batch_data)
    AS EXECUTE claim_plain(10, 9, ARRAY[]::int8[], ARRAY[]::int4[], ARRAY[]::int4[], 1, ARRAY[0]);
INSERT INTO claimed EXECUTE claim_batch(10, 9, ARRAY[]::int8[], ARRAY[]::int4[], ARRAY[]::int4[], 1, ARRAY[0]);
INSERT INTO claimed EXECUTE claim_ordered(10, 9, ARRAY[]::int8[], ARRAY[]::int4[], ARRAY[]::int4[], 1, ARRAY[0]);
EXECUTE health(ARRAY[]::int8[], ARRAY[]::int4[], ARRAY[]::timestamptz[]);
ROLLBACK;
SELECT count(webhook_create_endpoint('plan' || i, 'https://plan.example.com/', event_types => '{ops.none}'))
  FROM generate_series(1, 300) i;
SELECT webhook_create_endpoint('planned', 'https://planned.example.com/', event_types => '{ops.plan}') AS planned \gset
SELECT webhook_create_endpoint('planb', 'https://planb.example.com/', event_types => '{ops.plan}',
                               format => 'batch') AS planb \gset
SELECT webhook_create_endpoint('plano', 'https://plano.example.com/', event_types => '{ops.plan}',
                               ordered => true) AS plano \gset
SELECT webhook_publish('ops.plan', '{}') IS NOT NULL AS published;
SELECT webhook_fanout() AS taken;
BEGIN;
SET LOCAL enable_sort = off;
SELECT pg_temp.endpoint_rows('EXECUTE next_due(1, ARRAY[0])') AS next_due,
       pg_temp.endpoint_rows('EXECUTE claim_plain(10, 9, ARRAY[]::int8[], ARRAY[]::int4[], ARRAY[]::int4[], 1, ARRAY[0])')
         AS claim_plain,
       pg_temp.endpoint_rows('EXECUTE claim_batch(10, 9, ARRAY[]::int8[], ARRAY[]::int4[], ARRAY[]::int4[], 1, ARRAY[0])')
         AS claim_batch,
       pg_temp.endpoint_rows('EXECUTE claim_ordered(10, 9, ARRAY[]::int8[], ARRAY[]::int4[], ARRAY[]::int4[], 1, ARRAY[0])')
         AS claim_ordered,
       pg_temp.endpoint_rows(format('EXECUTE health(ARRAY[%s]::int8[], ARRAY[0]::int4[], ARRAY[NULL]::timestamptz[])',
                                    :planned)) AS health;
ROLLBACK;
DEALLOCATE next_due;
DEALLOCATE claim_plain;
DEALLOCATE claim_batch;
DEALLOCATE claim_ordered;
DEALLOCATE health;
RESET enable_seqscan;
RESET plan_cache_mode;
ALTER TABLE webhook_endpoints RESET (autovacuum_enabled);
ALTER TABLE webhook_deliveries RESET (autovacuum_enabled);
SELECT count(webhook_delete_endpoint(id)) FROM webhook_endpoints WHERE name LIKE 'plan%';
