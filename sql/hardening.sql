\set SHOW_CONTEXT never
-- Attacks of the outside review, each refused (docs/reliability.md lists them).

-------------------------------------------------------------------------------
-- 1. Objects planted on the caller's search_path are never called by any
--    function of the extension.  A schema first on the path shadows, with
--    the same signature, every pg_catalog function and operator over the
--    common types (each shadow records its call, then does the real work),
--    plus the review's own attack: ||(text[], text[]) that steals its
--    arguments.  Then every function of the extension runs with that path.
-------------------------------------------------------------------------------
CREATE SCHEMA evil;
CREATE TABLE evil.calls (what text);
GRANT USAGE ON SCHEMA evil TO PUBLIC;
GRANT INSERT ON evil.calls TO PUBLIC;
DO $plant$
DECLARE
    ok_types constant regtype[] := '{text,bigint,integer,smallint,boolean,jsonb,json,
        timestamptz,interval,name,oid,bytea,float8,numeric,"text[]","bigint[]","integer[]",
        "interval[]","jsonb[]",regclass,"char",inet,cidr,"varchar"}';
    f record;
    n integer := 0;
BEGIN
    -- functions
    FOR f IN
        SELECT p.proname, p.prorettype::regtype AS ret,
               string_agg(format_type(t, NULL), ', ' ORDER BY i) AS sig,
               string_agg('$' || i, ', ' ORDER BY i) AS args
          FROM pg_proc p, unnest(p.proargtypes::oid[]) WITH ORDINALITY u(t, i)
         WHERE p.pronamespace = 'pg_catalog'::regnamespace AND p.prokind = 'f'
           AND NOT p.proretset AND p.provariadic = 0 AND p.pronargs > 0
           AND p.prorettype = ANY (ok_types::oid[])
         GROUP BY p.oid, p.proname, p.prorettype
        HAVING bool_and(t = ANY (ok_types::oid[]))
        UNION ALL
        SELECT p.proname, p.prorettype::regtype, '', ''
          FROM pg_proc p
         WHERE p.pronamespace = 'pg_catalog'::regnamespace AND p.prokind = 'f'
           AND NOT p.proretset AND p.pronargs = 0 AND p.prorettype = ANY (ok_types::oid[])
    LOOP
        EXECUTE format('CREATE FUNCTION evil.%I(%s) RETURNS %s LANGUAGE plpgsql SET search_path = pg_catalog AS %L',
                       f.proname, f.sig, f.ret,
                       format('BEGIN INSERT INTO evil.calls VALUES (%L); RETURN pg_catalog.%I(%s); END',
                              f.proname || '(' || f.sig || ')', f.proname, f.args));
        n := n + 1;
    END LOOP;
    -- operators, through a shadow function of their own
    FOR f IN
        SELECT o.oid, o.oprname, o.oprleft::regtype AS l, o.oprright::regtype AS r,
               o.oprresult::regtype AS ret, o.oprcode::oid AS code
          FROM pg_operator o
         WHERE o.oprnamespace = 'pg_catalog'::regnamespace
           AND o.oprleft = ANY (ok_types::oid[]) AND o.oprright = ANY (ok_types::oid[])
           AND o.oprresult = ANY (ok_types::oid[])
    LOOP
        EXECUTE format('CREATE FUNCTION evil.op_%s(%s, %s) RETURNS %s LANGUAGE plpgsql SET search_path = pg_catalog AS %L',
                       f.oid, f.l, f.r, f.ret,
                       format('BEGIN INSERT INTO evil.calls VALUES (%L); RETURN %s($1, $2); END',
                              f.oprname || '(' || f.l || ', ' || f.r || ')', f.code::regproc));
        EXECUTE format('CREATE OPERATOR evil.%s (LEFTARG = %s, RIGHTARG = %s, FUNCTION = evil.op_%s)',
                       f.oprname, f.l, f.r, f.oid);
        n := n + 1;
    END LOOP;
    RAISE NOTICE 'planted % shadows: %', CASE WHEN n > 1000 THEN 'over 1000' ELSE n::text END,
        n > 1000;
END
$plant$;
-- the review's attack: || over text[] hands its arguments (the endpoint's
-- secrets, in webhook_test) to the planter
CREATE FUNCTION public.steal(a text[], b text[]) RETURNS text[] LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO evil.calls VALUES ('steal ' || pg_catalog.array_to_string(a, ','));
    RETURN pg_catalog.array_cat(a, b);
END $$;
CREATE OPERATOR public.|| (LEFTARG = text[], RIGHTARG = text[], FUNCTION = public.steal);
-- and same-named functions of the extension's own, in case one were
-- called unqualified
CREATE FUNCTION evil.webhook_valid_event_type(text, boolean) RETURNS boolean LANGUAGE plpgsql AS
  $$ BEGIN INSERT INTO evil.calls VALUES ('webhook_valid_event_type'); RETURN true; END $$;
CREATE FUNCTION evil.webhook_wake(boolean) RETURNS void LANGUAGE plpgsql AS
  $$ BEGIN INSERT INTO evil.calls VALUES ('webhook_wake'); END $$;
CREATE FUNCTION evil.webhook_get_endpoint(bigint) RETURNS public.webhook_endpoints LANGUAGE plpgsql AS
  $$ BEGIN INSERT INTO evil.calls VALUES ('webhook_get_endpoint'); RETURN NULL; END $$;

-- A watched table and a receiver that refuses connections (loopback only)
CREATE TABLE hard_orders (id int PRIMARY KEY, note text);
CREATE TABLE hard_parted (id int, region text) PARTITION BY LIST (region);
CREATE TABLE hard_parted_eu PARTITION OF hard_parted FOR VALUES IN ('eu');
SET track_functions = 'all';
SELECT webhook_define_event_type('hard.paid', 'paid', example => '{"x": 1}');
SELECT now() - interval '1 hour' AS an_hour_ago \gset
-- from here on, statements call the extension's functions with constants
-- only: an operator or function in the statement itself would be the
-- planted one
SET search_path = evil, pg_catalog, public;
SELECT public.webhook_create_endpoint('hard', 'http://127.0.0.1:1/hook', event_types => '{hard.*}',
           headers => '{"X-Token": {"value": "tok", "secret": true}}') AS ep \gset
SELECT public.webhook_create_endpoint('hard-ed', 'http://127.0.0.1:1/ed', signing => 'standard-ed25519') AS ep_ed \gset
SELECT public.webhook_valid_event_type('hard.paid'), public.webhook_valid_secret('whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw'),
       public.webhook_check_url('http://127.0.0.1/x'), public.webhook_generate_secret() IS NOT NULL AS gen,
       public.webhook_line_key(NULL) AS line;
SELECT public.webhook_verify('whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw', 'msg_1', 1700000000, '{}',
           public.webhook_sign('whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw', 'msg_1', 1700000000, '{}'), '100 years');
SELECT public.webhook_derive_public_key(public.webhook_generate_secret('standard-ed25519')) IS NOT NULL AS pk;
SELECT public.webhook_public_key(:ep_ed) IS NOT NULL AS pk2;
SELECT public.webhook_check_event_types('{hard.paid}');
SELECT public.webhook_subscribe(:ep, 'hard.more', '{"x": 1}');
SELECT public.webhook_unsubscribe(:ep, 'hard.more');
SELECT public.webhook_update_endpoint(:ep, description => 'updated', timeout => '2s');
SELECT public.webhook_rotate_secret(:ep) IS NOT NULL AS rotated;
SELECT (public.webhook_get_endpoint(:ep)).name;
SELECT public.webhook_set_state(:ep, 'paused', 'by hand');
SELECT public.webhook_disable(:ep), public.webhook_enable(:ep), public.webhook_resume(:ep);
SELECT public.webhook_publish('hard.paid', '{"n": 1}', 'hard-key') AS key_ev \gset
SELECT public.webhook_publish('hard.paid', '{"n": 1}', 'hard-key') IS NOT NULL AS republished;
SELECT public.webhook_publish_json('hard.paid', '{"n": 2}', 'hard-key-2', 'line-1') IS NOT NULL AS published_json;
SELECT public.webhook_wake();
SELECT count(*) IS NOT NULL AS workers FROM public.webhook_worker_status();
SELECT public.webhook_statement('record') IS NOT NULL AS statement;
SELECT public.webhook_watch('hard_orders', event_prefix => 'hard.order', exclude_columns => '{note}');
SELECT public.webhook_watch('hard_parted');
INSERT INTO hard_orders VALUES (1, 'n');
INSERT INTO hard_parted VALUES (1, 'eu');
SELECT public.webhook_fanout() IS NOT NULL AS fanned_out;
SELECT ok, status, error IS NOT NULL AS failed FROM public.webhook_test(:ep);
SELECT ok FROM public.webhook_test(:ep, 'hard.paid');
SELECT public.webhook_backoff('1s', 2, 3) IS NOT NULL AS backoff;
SELECT count(*) IS NOT NULL AS chart FROM public.webhook_delivery_chart(:ep, '10 minutes');
SELECT public.webhook_replay_event(:key_ev) AS replayed_event;
SELECT public.webhook_recover(:ep, :'an_hour_ago') IS NOT NULL AS recovered;
SELECT (public.webhook_purge_step('30 days', '30 days', 10)).events IS NOT NULL AS purged_step;
SELECT (public.webhook_purge('30 days')).events IS NOT NULL AS purged;
SELECT public.webhook_unwatch('hard_orders');
SELECT public.webhook_unwatch('hard_parted');
SELECT public.webhook_delete_endpoint(:ep_ed);
RESET search_path;
SELECT max(id) AS last_delivery FROM webhook_deliveries \gset
UPDATE webhook_deliveries SET status = 'dead', attempts = 1, finished_at = now() WHERE id = :last_delivery;
SET search_path = evil, pg_catalog, public;
SELECT public.webhook_replay(:last_delivery) IS NOT NULL AS replayed;
SELECT public.webhook_delete_endpoint(:ep);
RESET search_path;
-- nothing planted was called
SELECT what AS called_planted_object FROM evil.calls ORDER BY 1;
-- and every function of the extension ran (a new function must be added here)
SELECT pg_stat_force_next_flush();
SELECT p.oid::regprocedure AS not_exercised
  FROM pg_depend d JOIN pg_proc p ON p.oid = d.objid
 WHERE d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'webhook')
   AND d.deptype = 'e' AND d.classid = 'pg_proc'::regclass
   AND p.prolang <> (SELECT oid FROM pg_language WHERE lanname = 'sql')  -- inlined: never counted
   AND NOT EXISTS (SELECT 1 FROM pg_stat_user_functions s WHERE s.funcid = p.oid AND s.calls > 0)
 ORDER BY 1;
-- every function of the extension but SQL-standard bodies (parsed when
-- created, so no path applies) runs with a pinned path, or runs no SQL
SELECT p.oid::regprocedure AS unpinned_runs_sql
  FROM pg_depend d JOIN pg_proc p ON p.oid = d.objid
 WHERE d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'webhook')
   AND d.deptype = 'e' AND d.classid = 'pg_proc'::regclass
   AND NOT coalesce('search_path=pg_catalog, pg_temp' = ANY (p.proconfig), false)
 ORDER BY 1;
RESET track_functions;
DROP TABLE hard_orders, hard_parted;
SET client_min_messages = warning;
DROP FUNCTION public.steal(text[], text[]) CASCADE;
DROP SCHEMA evil CASCADE;
RESET client_min_messages;

-------------------------------------------------------------------------------
-- 2. Views with a leaky filter: a role with SELECT on a view sees only its
--    rows, whatever it puts in WHERE.  Every view of the extension is a
--    security barrier.
-------------------------------------------------------------------------------
SELECT c.relname, coalesce('security_barrier=true' = ANY (c.reloptions), false) AS barrier
  FROM pg_depend d JOIN pg_class c ON c.oid = d.objid
 WHERE d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'webhook')
   AND d.deptype = 'e' AND d.classid = 'pg_class'::regclass AND c.relkind = 'v'
 ORDER BY 1;
-- events exist, none is a dead letter
SELECT webhook_create_endpoint('leak', 'https://leak.example.com/') AS leak_ep \gset
SELECT count(webhook_publish('secret.salary', jsonb_build_object('person', i))) FROM generate_series(1, 20) i;
SELECT webhook_fanout() > 0 AS fanned_out;
ANALYZE webhook_deliveries, webhook_events;
CREATE ROLE webhook_reader;
GRANT SELECT ON webhook_dead_letters, webhook_endpoint_health, webhook_endpoint_settings,
                webhook_delivery_stats, webhook_watched_tables TO webhook_reader;
SET ROLE webhook_reader;
-- the review's attack, as written, with the plan an attacker may choose
-- (a hash join reads every event): nothing may be raised
SET enable_nestloop = off;
SET enable_mergejoin = off;
CREATE FUNCTION pg_temp.leak(t text, d json) RETURNS boolean LANGUAGE plpgsql COST 0.0000001 AS
  $$ BEGIN RAISE NOTICE 'leaked % %', t, d; RETURN true; END $$;
SELECT count(*) FROM webhook_dead_letters WHERE pg_temp.leak(event_type, data);
-- with one dead letter: that one only
RESET ROLE;
UPDATE webhook_deliveries SET status = 'dead', attempts = 1, finished_at = now()
 WHERE id = (SELECT min(id) FROM webhook_deliveries WHERE endpoint_id = :leak_ep);
SET ROLE webhook_reader;
SELECT count(*) FROM webhook_dead_letters WHERE pg_temp.leak(event_type, data);
-- every view: the filter sees exactly the rows the view shows
CREATE TEMP TABLE seen (v text);
CREATE FUNCTION pg_temp.saw(v text) RETURNS boolean LANGUAGE plpgsql COST 0.0000001 AS
  $$ BEGIN INSERT INTO pg_temp.seen VALUES (v); RETURN true; END $$;
SELECT count(*) AS dead_letters FROM webhook_dead_letters WHERE pg_temp.saw(event_type || data::text);
SELECT v AS seen FROM pg_temp.seen;
TRUNCATE pg_temp.seen;
SELECT count(*) AS health_rows FROM webhook_endpoint_health WHERE pg_temp.saw(name || url || coalesce(last_error, '')) \gset
SELECT count(*) = :health_rows AS health_only_its_rows FROM pg_temp.seen;
TRUNCATE pg_temp.seen;
SELECT count(*) AS settings_rows FROM webhook_endpoint_settings WHERE pg_temp.saw(name || secret || headers::text) \gset
SELECT count(*) = :settings_rows AS settings_only_its_rows, count(*) FILTER (WHERE v LIKE '%whsec_%') AS secrets_seen
  FROM pg_temp.seen;
TRUNCATE pg_temp.seen;
SELECT count(*) AS stats_rows FROM webhook_delivery_stats WHERE pg_temp.saw(endpoint_id::text) \gset
SELECT count(*) = :stats_rows AS stats_only_its_rows FROM pg_temp.seen;
TRUNCATE pg_temp.seen;
SELECT count(*) AS watched_rows FROM webhook_watched_tables WHERE pg_temp.saw(table_name::text) \gset
SELECT count(*) = :watched_rows AS watched_only_its_rows FROM pg_temp.seen;
SELECT count(*) AS events_seen FROM pg_temp.seen WHERE v LIKE '%salary%';
RESET enable_nestloop;
RESET enable_mergejoin;
RESET ROLE;
DROP OWNED BY webhook_reader;
DROP ROLE webhook_reader;
SELECT webhook_delete_endpoint(:leak_ep);
