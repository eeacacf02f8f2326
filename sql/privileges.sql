\set SHOW_CONTEXT never
-- Roles of use.  The extension's owner (the superuser running this suite)
-- can do everything.  An application role writes watched tables, with no
-- privilege on the webhook tables, and may be granted webhook_publish.  An
-- operator role is granted the health views and sees no secret.  PUBLIC
-- gets nothing on the tables and no administrative function.
SELECT webhook_fanout() >= 0 AS flushed_earlier_events;
CREATE ROLE webhook_app;
CREATE ROLE webhook_ops;
CREATE ROLE webhook_nobody;    -- never granted anything: what PUBLIC may do

-- PUBLIC: no privilege on any table, view or sequence of the extension
SELECT count(*) AS public_relation_privileges
  FROM pg_depend d JOIN pg_class c ON c.oid = d.objid,
       aclexplode(coalesce(c.relacl, acldefault(CASE c.relkind WHEN 'S' THEN 's' ELSE 'r' END::"char", c.relowner))) a
 WHERE d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'webhook')
   AND d.deptype = 'e' AND d.classid = 'pg_class'::regclass
   AND a.grantee = 0;
SELECT count(*) AS relations,
       count(*) FILTER (WHERE CASE c.relkind
                                WHEN 'S' THEN has_sequence_privilege('webhook_nobody', c.oid, 'USAGE, SELECT, UPDATE')
                                ELSE has_table_privilege('webhook_nobody', c.oid,
                                        'SELECT, INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER')
                                  OR has_any_column_privilege('webhook_nobody', c.oid,
                                        'SELECT, INSERT, UPDATE, REFERENCES')
                              END) AS usable_without_grant
  FROM pg_depend d JOIN pg_class c ON c.oid = d.objid
 WHERE d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'webhook')
   AND d.deptype = 'e' AND d.classid = 'pg_class'::regclass;
-- PUBLIC may execute only pure helpers (validation and signing) and the
-- capture triggers (which run only where webhook_watch registered them), and
-- webhook_worker_status (shared memory: what pg_stat_activity shows anyway)
SELECT p.oid::regprocedure::text AS executable_by_public
  FROM pg_depend d JOIN pg_proc p ON p.oid = d.objid,
       aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) a
 WHERE d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'webhook')
   AND d.deptype = 'e' AND d.classid = 'pg_proc'::regclass
   AND a.grantee = 0 AND a.privilege_type = 'EXECUTE'
 ORDER BY 1;
-- a role with no grant can execute exactly those
SELECT array_agg(p.oid::regprocedure::text ORDER BY 1) FILTER (WHERE has_function_privilege('webhook_nobody', p.oid, 'EXECUTE'))
     = array_agg(p.oid::regprocedure::text ORDER BY 1) FILTER (WHERE EXISTS (
           SELECT 1 FROM aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) a
            WHERE a.grantee = 0 AND a.privilege_type = 'EXECUTE')) AS only_public_functions
  FROM pg_depend d JOIN pg_proc p ON p.oid = d.objid
 WHERE d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'webhook')
   AND d.deptype = 'e' AND d.classid = 'pg_proc'::regclass;
-- none of them runs with another role's rights
SELECT count(*) AS public_security_definer
  FROM pg_depend d JOIN pg_proc p ON p.oid = d.objid
 WHERE d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'webhook')
   AND d.deptype = 'e' AND d.classid = 'pg_proc'::regclass
   AND p.prosecdef AND has_function_privilege('webhook_nobody', p.oid, 'EXECUTE');

-- The owner sets things up: an endpoint with a known secret and an
-- Authorization header, and a watched table the application writes.
SELECT webhook_create_endpoint('priv', 'https://priv.example.com/in',
        event_types => '{priv_orders.*,app.*}',
        secret => 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw',
        headers => '{"Authorization": "Bearer s3cr3t-t0ken"}') AS ep \gset
CREATE TABLE priv_orders (id int PRIMARY KEY, note text);
SELECT webhook_watch('priv_orders');
GRANT SELECT, INSERT, UPDATE, DELETE ON priv_orders TO webhook_app;
SELECT coalesce(max(id), 0) AS e0 FROM webhook_events \gset

-- Application role: writes its table, and the events are captured
SET ROLE webhook_app;
INSERT INTO priv_orders VALUES (1, 'placed');
UPDATE priv_orders SET note = 'paid' WHERE id = 1;
DELETE FROM priv_orders WHERE id = 1;
-- nothing of the extension's tables, views or sequences
SELECT count(*) FROM webhook_events;
INSERT INTO webhook_events (type, data) VALUES ('app.forged', '{}');
SELECT count(*) FROM webhook_deliveries;
UPDATE webhook_deliveries SET status = 'pending';
SELECT secret FROM webhook_endpoints;
INSERT INTO webhook_subscriptions (endpoint_id, event_type) VALUES (1, '*');
DELETE FROM webhook_attempts;
SELECT count(*) FROM webhook_endpoint_health;
SELECT count(*) FROM webhook_dead_letters;
SELECT nextval('webhook_events_id_seq');
-- no administrative function
SELECT webhook_publish('app.signed_up', '{}');
SELECT webhook_create_endpoint('evil', 'https://evil.example.com/');
SELECT webhook_delete_endpoint(1);
SELECT webhook_disable(1);
SELECT webhook_watch('priv_orders');
SELECT webhook_unwatch('priv_orders');
SELECT webhook_fanout();
SELECT * FROM webhook_test(1);
SELECT webhook_generate_secret();
SELECT webhook_replay(1);
SELECT webhook_replay_event(1);
SELECT webhook_recover(1, now());
SELECT * FROM webhook_purge('0');
SELECT * FROM webhook_purge_step('0', '0', 10);
RESET ROLE;
SELECT type, data->'new' AS new, data->'old' AS old FROM webhook_events WHERE id > :e0 ORDER BY id;

-- ...and after GRANT EXECUTE on webhook_publish (SECURITY DEFINER) it can
-- publish, and do nothing more
GRANT EXECUTE ON FUNCTION webhook_publish(text, jsonb, text, text) TO webhook_app;
SET ROLE webhook_app;
SELECT webhook_publish('app.signed_up', '{"user": 1}') IS NOT NULL AS published;
SELECT webhook_publish('app.signed_up', '{"user": 2}', 'user-2')
     = webhook_publish('app.signed_up', '{"user": 2}', 'user-2') AS idempotent;
SELECT count(*) FROM webhook_events;
INSERT INTO webhook_events (type, data) VALUES ('app.forged', '{}');
SELECT webhook_create_endpoint('evil', 'https://evil.example.com/');
SELECT webhook_replay_event(1);
SELECT * FROM webhook_purge('0');
RESET ROLE;
SELECT type, data, idempotency_key FROM webhook_events WHERE id > :e0 AND type LIKE 'app.%' ORDER BY id;
-- everything the role may do beyond PUBLIC: its table and one function
SELECT c.relname, string_agg(p.priv, ', ' ORDER BY p.priv) AS privileges
  FROM pg_class c, unnest('{SELECT,INSERT,UPDATE,DELETE,TRUNCATE,REFERENCES,TRIGGER}'::text[]) p(priv)
 WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'v', 'p')
   AND has_table_privilege('webhook_app', c.oid, p.priv)
 GROUP BY 1 ORDER BY 1;
SELECT p.oid::regprocedure::text AS executable_by_app
  FROM pg_depend d JOIN pg_proc p ON p.oid = d.objid
 WHERE d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'webhook')
   AND d.deptype = 'e' AND d.classid = 'pg_proc'::regclass
   AND has_function_privilege('webhook_app', p.oid, 'EXECUTE')
   AND NOT has_function_privilege('webhook_nobody', p.oid, 'EXECUTE')
 ORDER BY 1;

-- The owner moves the queue by hand (no worker in this database): one
-- delivered, one dead, one attempt of each
SELECT webhook_fanout() >= 5 AS fanned_out;
SELECT min(id) AS d1, max(id) AS d2 FROM webhook_deliveries WHERE endpoint_id = :ep \gset
UPDATE webhook_deliveries SET status = 'delivered', attempts = 1, finished_at = now() WHERE id = :d1;
UPDATE webhook_deliveries SET status = 'dead', attempts = 1, last_status = 500, last_error = 'HTTP 500',
       finished_at = now() WHERE id = :d2;
INSERT INTO webhook_attempts (endpoint_id, delivery_id, attempt, started_at, duration_ms, status_code, ok, error, response_body)
VALUES (:ep, :d1, 1, now(), 10, 200, true, NULL, 'thanks'),
       (:ep, :d2, 1, now(), 30, 500, false, 'HTTP 500', 'oops');

-- Operator role: reads the health views, sees no secret
GRANT SELECT ON webhook_endpoint_health, webhook_dead_letters, webhook_delivery_stats TO webhook_ops;
GRANT EXECUTE ON FUNCTION webhook_delivery_chart(bigint, interval, interval) TO webhook_ops;
SET ROLE webhook_ops;
SELECT requests, delivered, failed FROM webhook_delivery_chart(:ep) WHERE requests > 0;
SELECT name, url, state, pending, in_flight, delivered, dead, last_error
  FROM webhook_endpoint_health WHERE endpoint_id = :ep;
SELECT event_type, data, attempts, last_status, last_error, died_at IS NOT NULL AS died
  FROM webhook_dead_letters WHERE endpoint_id = :ep;
SELECT sum(requests) AS requests, sum(delivered) AS delivered, sum(failed) AS failed
  FROM webhook_delivery_stats WHERE endpoint_id = :ep;
-- no column of any of them holds the secret or the header
SELECT 'webhook_endpoint_health' AS view, count(*) > 0 AS has_rows,
       count(*) FILTER (WHERE row_to_json(v)::text LIKE '%whsec_%' OR row_to_json(v)::text LIKE '%s3cr3t%') AS leaks
  FROM webhook_endpoint_health v
UNION ALL
SELECT 'webhook_dead_letters', count(*) > 0,
       count(*) FILTER (WHERE row_to_json(v)::text LIKE '%whsec_%' OR row_to_json(v)::text LIKE '%s3cr3t%')
  FROM webhook_dead_letters v
UNION ALL
SELECT 'webhook_delivery_stats', count(*) > 0,
       count(*) FILTER (WHERE row_to_json(v)::text LIKE '%whsec_%' OR row_to_json(v)::text LIKE '%s3cr3t%')
  FROM webhook_delivery_stats v;
-- refused: the tables behind the views, and every administrative function
SELECT secret FROM webhook_endpoints;
SELECT headers FROM webhook_endpoints;
SELECT count(*) FROM webhook_events;
SELECT count(*) FROM webhook_deliveries;
SELECT response_body FROM webhook_attempts;
UPDATE webhook_deliveries SET status = 'pending';
SELECT webhook_publish('app.signed_up', '{}');
SELECT webhook_disable(1);
SELECT webhook_enable(1);
SELECT webhook_resume(1);
SELECT webhook_replay(1);
SELECT webhook_replay_event(1);
SELECT webhook_recover(1, now());
SELECT * FROM webhook_purge('0');
SELECT * FROM webhook_test(1);
RESET ROLE;
-- everything the role may do beyond PUBLIC: read three views
SELECT c.relname, string_agg(p.priv, ', ' ORDER BY p.priv) AS privileges
  FROM pg_class c, unnest('{SELECT,INSERT,UPDATE,DELETE,TRUNCATE,REFERENCES,TRIGGER}'::text[]) p(priv)
 WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'v', 'p')
   AND has_table_privilege('webhook_ops', c.oid, p.priv)
 GROUP BY 1 ORDER BY 1;
SELECT count(*) AS executable_by_ops
  FROM pg_depend d JOIN pg_proc p ON p.oid = d.objid
 WHERE d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'webhook')
   AND d.deptype = 'e' AND d.classid = 'pg_proc'::regclass
   AND has_function_privilege('webhook_ops', p.oid, 'EXECUTE')
   AND NOT has_function_privilege('webhook_nobody', p.oid, 'EXECUTE');

-- The owner does what the others may not
SELECT secret = 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw' AS owner_reads_secret FROM webhook_endpoints WHERE id = :ep;
SELECT webhook_recover(:ep, now() - interval '1 hour');
SELECT webhook_replay(:d1);
SELECT status, count(*) FROM webhook_deliveries WHERE endpoint_id = :ep GROUP BY 1 ORDER BY 1;

-- A role granted webhook_replay and what the reference lists for it
-- replays; with UPDATE on the endpoints it makes one ordered (the trigger
-- runs with its rights and puts the queued deliveries in their lines)
CREATE ROLE webhook_replayer;
GRANT EXECUTE ON FUNCTION webhook_replay(bigint), webhook_requeue(bigint[], text[]), webhook_wake(boolean)
    TO webhook_replayer;
GRANT SELECT, UPDATE ON webhook_deliveries TO webhook_replayer;
GRANT SELECT ON webhook_endpoints, webhook_events TO webhook_replayer;
UPDATE webhook_deliveries SET status = 'dead', attempts = 7, finished_at = now() WHERE id = :d1;
SET ROLE webhook_replayer;
SELECT webhook_replay(:d1);
RESET ROLE;
SELECT status, attempts FROM webhook_deliveries WHERE id = :d1;
GRANT UPDATE ON webhook_endpoints TO webhook_replayer;
SET ROLE webhook_replayer;
UPDATE webhook_endpoints SET ordered = true WHERE id = :ep;
RESET ROLE;
SELECT count(*) AS queued, count(*) FILTER (WHERE ordering_key IS NOT NULL) AS in_lines
  FROM webhook_deliveries WHERE endpoint_id = :ep AND status IN ('pending', 'in_flight');
-- webhook_requeue re-queues only finished deliveries
SELECT webhook_requeue(ARRAY[:d1]::bigint[], '{in_flight}');

-- Clean up: nothing of the roles is left behind
SELECT webhook_unwatch('priv_orders');
DROP TABLE priv_orders;
SELECT webhook_delete_endpoint(:ep);
DROP OWNED BY webhook_app, webhook_ops, webhook_nobody, webhook_replayer;
DROP ROLE webhook_app, webhook_ops, webhook_nobody, webhook_replayer;
-- no grant to anyone but the owner remains on the extension's objects
SELECT count(*) AS grants_left
  FROM pg_depend d
  LEFT JOIN pg_class c ON d.classid = 'pg_class'::regclass AND c.oid = d.objid
  LEFT JOIN pg_proc p ON d.classid = 'pg_proc'::regclass AND p.oid = d.objid,
       aclexplode(coalesce(c.relacl, p.proacl)) a
 WHERE d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'webhook')
   AND d.deptype = 'e' AND a.grantee NOT IN (0, coalesce(c.relowner, p.proowner));
