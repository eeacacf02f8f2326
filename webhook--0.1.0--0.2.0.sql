/* webhook--0.1.0--0.2.0.sql: upgrades an installation of 0.1.0 to 0.2.0.
 *
 * Run by ALTER EXTENSION webhook UPDATE, in one transaction, while the
 * worker may run: the 0.2.0 library's worker waits (one LOG line) while the
 * schema is 0.1.0, and starts serving when this commits.  Nothing here
 * rewrites a table: columns are added without volatile defaults, indexes on
 * small configuration tables only.
 */

\echo Use "ALTER EXTENSION webhook UPDATE TO '0.2.0'" to load this file. \quit

-------------------------------------------------------------------------------
-- Functions run with a pinned search_path; views are security barriers
-------------------------------------------------------------------------------

ALTER FUNCTION @extschema@.webhook_test(bigint, text, jsonb) SET search_path = pg_catalog, pg_temp;
ALTER VIEW @extschema@.webhook_endpoint_settings SET (security_barrier = true);
ALTER VIEW @extschema@.webhook_endpoint_health SET (security_barrier = true);
ALTER VIEW @extschema@.webhook_delivery_stats SET (security_barrier = true);
ALTER VIEW @extschema@.webhook_dead_letters SET (security_barrier = true);

-------------------------------------------------------------------------------
-- Idempotency keys in the publishing role's namespace
-------------------------------------------------------------------------------

-- Idempotency keys, each in the namespace of the role that published it
-- (current_user at the call): one role can neither squat nor probe
-- another's keys.  digest is SHA-256 of the event's type and its data as
-- jsonb writes it, so that a reuse is told apart from a different event
-- without reading the event.  Written by webhook_publish before its event
-- (no foreign key), removed by retention with the event.
CREATE TABLE webhook_idempotency_keys (
    publisher       name NOT NULL,
    idempotency_key text NOT NULL CHECK (length(idempotency_key) BETWEEN 1 AND 255),
    event_id        bigint NOT NULL,
    digest          bytea NOT NULL CHECK (length(digest) = 32),
    PRIMARY KEY (publisher, idempotency_key)
);
CREATE INDEX webhook_idempotency_keys_event_idx ON webhook_idempotency_keys (event_id);
COMMENT ON TABLE webhook_idempotency_keys IS 'idempotency keys of webhook_publish, per publishing role, with a digest of the event they name';
-- Keys published under 0.1.0 belong to no role: they are not carried
-- over, and no longer deduplicate (docs/reference.md, Upgrading).
DROP INDEX @extschema@.webhook_events_idempotency_key_idx;

CREATE OR REPLACE FUNCTION webhook_publish(event_type text, data jsonb, idempotency_key text DEFAULT NULL,
                                ordering_key text DEFAULT NULL)
RETURNS bigint
AS 'MODULE_PATHNAME', 'webhook_publish'
LANGUAGE C VOLATILE
SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION webhook_publish(text, jsonb, text, text) IS
  'enqueues an event in the current transaction and returns its id; an idempotency_key reused by the same role with the same type and data returns the first event''s id; ordered endpoints send events of one ordering_key one after another';

CREATE FUNCTION webhook_publish_json(event_type text, data json, idempotency_key text DEFAULT NULL,
                                     ordering_key text DEFAULT NULL)
RETURNS bigint
AS 'MODULE_PATHNAME', 'webhook_publish_json'
LANGUAGE C VOLATILE
SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION webhook_publish_json(text, json, text, text) IS
  'webhook_publish for a json value: its text is stored as given and sent byte for byte (key order, spacing, escapes and numbers kept)';

REVOKE ALL ON FUNCTION webhook_publish_json(text, json, text, text) FROM PUBLIC;

-------------------------------------------------------------------------------
-- Capture runs only where webhook_watch registered it
-------------------------------------------------------------------------------

-- The tables webhook_watch watches, with the arguments it gave their
-- capture trigger.  webhook_capture runs only for a trigger found here (on
-- a partition: the trigger it was cloned from, on its partitioned table),
-- named webhook_capture and with these arguments.  So EXECUTE on the capture
-- functions can be left to PUBLIC, as the owner of a watched partitioned
-- table needs it to add partitions (PostgreSQL checks it when it clones the
-- trigger), and still no table owner can emit events of its own by
-- attaching the trigger.  A role other than a superuser sees and changes
-- only the rows of tables it owns (row security).
CREATE TABLE webhook_watches (
    tbl          regclass PRIMARY KEY,
    -- event prefix, column mode (all, include, exclude) and column names
    trigger_args text[] NOT NULL CHECK (cardinality(trigger_args) >= 2),
    watched_by   name NOT NULL DEFAULT current_user,
    watched_at   timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE webhook_watches IS 'tables watched by webhook_watch and the arguments of their capture trigger; capture runs only for triggers registered here';
ALTER TABLE webhook_watches ENABLE ROW LEVEL SECURITY;
CREATE POLICY webhook_watches_owner ON webhook_watches
    USING (pg_catalog.pg_has_role((SELECT c.relowner FROM pg_catalog.pg_class c WHERE c.oid = tbl), 'USAGE'));
SELECT pg_catalog.pg_extension_config_dump('webhook_watches', '');

-- The capture triggers 0.1.0's webhook_watch installed (EXECUTE on the
-- capture functions was PUBLIC's to be granted only): each registered with
-- its own arguments.  A capture trigger attached by hand under another
-- name is not: capture refuses it from now on (webhook_watched_tables
-- lists it).
DO $upgrade$
DECLARE
    t record;
    args text[];
    pos integer;
    rest bytea;
BEGIN
    FOR t IN SELECT g.tgrelid, g.tgargs FROM pg_catalog.pg_trigger g
              WHERE g.tgfoid = '@extschema@.webhook_capture()'::pg_catalog.regprocedure
                AND g.tgname = 'webhook_capture' AND g.tgparentid = 0 LOOP
        args := '{}';
        rest := t.tgargs;
        LOOP
            pos := position('\x00'::bytea IN rest);
            EXIT WHEN pos = 0;
            args := args || pg_catalog.convert_from(substring(rest FROM 1 FOR pos - 1),
                                                    pg_catalog.getdatabaseencoding());
            rest := substring(rest FROM pos + 1);
        END LOOP;
        INSERT INTO @extschema@.webhook_watches (tbl, trigger_args, watched_by)
        VALUES (t.tgrelid, args, (SELECT c.relowner::regrole::name FROM pg_catalog.pg_class c
                                   WHERE c.oid = t.tgrelid));
    END LOOP;
END
$upgrade$;

-- (position and substring are written in their SQL-standard forms, which
-- name pg_catalog's functions whatever the path.)
-- PostgreSQL checks EXECUTE for the owner of a watched partitioned table
-- when it clones the row trigger to a new partition
GRANT EXECUTE ON FUNCTION @extschema@.webhook_capture(), @extschema@.webhook_capture_flush() TO PUBLIC;

CREATE OR REPLACE FUNCTION webhook_watch(tbl regclass, event_prefix text DEFAULT NULL,
                              columns text[] DEFAULT NULL, exclude_columns text[] DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    prefix text;
    mode   text := 'all';
    cols   text[] := '{}';
    c      text;
    args   text;
    part   regclass;
BEGIN
    IF tbl IS NULL THEN
        RAISE EXCEPTION 'table must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF (SELECT relkind FROM pg_class WHERE oid = tbl) NOT IN ('r', 'p') THEN
        RAISE EXCEPTION '"%" is not a table', tbl USING ERRCODE = 'wrong_object_type';
    END IF;
    prefix := coalesce(event_prefix, (SELECT relname FROM pg_class WHERE oid = tbl));
    IF length(prefix) > 200 OR NOT @extschema@.webhook_valid_event_type(prefix) THEN
        IF event_prefix IS NULL THEN
            RAISE EXCEPTION 'table name "%" is not a valid event type prefix', prefix
                USING ERRCODE = 'invalid_parameter_value',
                      DETAIL = 'Event types are dot-separated segments of letters, digits, "_" and "-".',
                      HINT = 'Pass event_prefix.';
        END IF;
        RAISE EXCEPTION 'invalid event prefix "%"', left(prefix, 80)
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'Event types are dot-separated segments of letters, digits, "_" and "-".';
    END IF;
    IF columns IS NOT NULL AND exclude_columns IS NOT NULL THEN
        RAISE EXCEPTION 'columns and exclude_columns cannot both be given'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF columns IS NOT NULL THEN
        mode := 'include';
        cols := columns;
    ELSIF exclude_columns IS NOT NULL THEN
        mode := 'exclude';
        cols := exclude_columns;
    END IF;
    IF mode = 'include' AND cardinality(cols) = 0 THEN
        RAISE EXCEPTION 'columns must not be empty' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    FOREACH c IN ARRAY cols LOOP
        IF c IS NULL OR NOT EXISTS (SELECT 1 FROM pg_attribute
                                     WHERE attrelid = tbl AND attname = c
                                       AND attnum > 0 AND NOT attisdropped) THEN
            RAISE EXCEPTION 'column "%" of "%" does not exist', coalesce(c, 'NULL'), tbl
                USING ERRCODE = 'undefined_column';
        END IF;
    END LOOP;
    SELECT string_agg(quote_literal(a), ', ') INTO args
      FROM unnest(ARRAY[prefix, mode] || cols) a;
    IF EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = tbl AND tgname = 'webhook_capture') THEN
        EXECUTE format('DROP TRIGGER webhook_capture ON %s', tbl);
    END IF;
    -- tables dropped since they were watched
    DELETE FROM @extschema@.webhook_watches w
     WHERE NOT EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = w.tbl);
    INSERT INTO @extschema@.webhook_watches AS w (tbl, trigger_args)
    VALUES (tbl, ARRAY[prefix, mode] || cols)
    ON CONFLICT ON CONSTRAINT webhook_watches_pkey
    DO UPDATE SET trigger_args = excluded.trigger_args, watched_by = excluded.watched_by,
                  watched_at = excluded.watched_at;
    -- The statement trigger writes what the row triggers buffered.  Row
    -- triggers are cloned to partitions, statement triggers are not: put
    -- one on every partition too, for statements that name a partition.
    FOR part IN SELECT relid FROM pg_partition_tree(tbl) UNION SELECT tbl LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = part AND tgname = 'webhook_capture_flush') THEN
            EXECUTE format('CREATE TRIGGER webhook_capture_flush AFTER INSERT OR UPDATE OR DELETE ON %s '
                           'FOR EACH STATEMENT EXECUTE FUNCTION @extschema@.webhook_capture_flush()', part);
        END IF;
    END LOOP;
    EXECUTE format('CREATE TRIGGER webhook_capture AFTER INSERT OR UPDATE OR DELETE ON %s '
                   'FOR EACH ROW EXECUTE FUNCTION @extschema@.webhook_capture(%s)', tbl, args);
END
$$;
COMMENT ON FUNCTION webhook_watch(regclass, text, text[], text[]) IS
  'emits <prefix>.created/.updated/.deleted events for every row change of tbl, optionally limited to or excluding columns';

CREATE OR REPLACE FUNCTION webhook_unwatch(tbl regclass)
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    t record;
BEGIN
    IF tbl IS NULL THEN
        RAISE EXCEPTION 'table must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_trigger
                    WHERE tgrelid = tbl AND tgparentid = 0
                      AND tgfoid = '@extschema@.webhook_capture()'::regprocedure) THEN
        RAISE EXCEPTION '"%" is not watched', tbl USING ERRCODE = 'undefined_object';
    END IF;
    -- every capture trigger of the table and its partitions, whatever its
    -- name (one attached by hand too); clones go with the trigger they
    -- were cloned from
    FOR t IN SELECT g.tgname, g.tgrelid::regclass AS rel FROM pg_trigger g
              WHERE g.tgparentid = 0
                AND g.tgfoid IN ('@extschema@.webhook_capture()'::regprocedure,
                                 '@extschema@.webhook_capture_flush()'::regprocedure)
                AND g.tgrelid IN (SELECT relid FROM pg_partition_tree(tbl) UNION SELECT tbl) LOOP
        EXECUTE format('DROP TRIGGER %I ON %s', t.tgname, t.rel);
    END LOOP;
    DELETE FROM @extschema@.webhook_watches w WHERE w.tbl = webhook_unwatch.tbl;
END
$$;
COMMENT ON FUNCTION webhook_unwatch(regclass) IS 'stops emitting events for tbl: drops every capture trigger of it and its partitions, whatever their names';

-- Every capture trigger of the database, as an administrator needs to see
-- them: one row per table with one of its own (partitions' cloned triggers
-- are counted with their table), and whether capture accepts it.
CREATE VIEW webhook_watched_tables WITH (security_barrier) AS
SELECT t.tgrelid::regclass AS table_name,
       pg_get_userbyid(c.relowner) AS owner,
       w.trigger_args[1] AS event_prefix,
       w.trigger_args[2] AS columns_mode,
       CASE w.trigger_args[2] WHEN 'include' THEN w.trigger_args[3:] END AS included_columns,
       CASE w.trigger_args[2] WHEN 'exclude' THEN w.trigger_args[3:] END AS excluded_columns,
       t.tgname AS trigger_name,
       ARRAY(SELECT f.tgname FROM pg_trigger f
              WHERE f.tgfoid = '@extschema@.webhook_capture_flush()'::regprocedure
                AND f.tgrelid IN (SELECT relid FROM pg_partition_tree(t.tgrelid) UNION SELECT t.tgrelid)
              ORDER BY f.tgrelid::regclass::text, f.tgname)::text[] AS flush_triggers,
       (SELECT count(*) FROM pg_partition_tree(t.tgrelid) p WHERE p.relid <> t.tgrelid) AS partitions,
       (w.tbl IS NOT NULL AND t.tgname = 'webhook_capture'
        AND t.tgargs = (SELECT string_agg(convert_to(a, pg_catalog.getdatabaseencoding()) || '\x00'::bytea, ''::bytea ORDER BY o)
                          FROM unnest(w.trigger_args) WITH ORDINALITY x(a, o))) AS registered,
       w.watched_by,
       w.watched_at
  FROM pg_trigger t
  JOIN pg_class c ON c.oid = t.tgrelid
  LEFT JOIN @extschema@.webhook_watches w ON w.tbl = t.tgrelid
 WHERE t.tgfoid = '@extschema@.webhook_capture()'::regprocedure AND t.tgparentid = 0;
COMMENT ON VIEW webhook_watched_tables IS 'every capture trigger in the database: table, owner, event prefix, columns, trigger names, and whether webhook_watch registered it (capture refuses the others)';

-------------------------------------------------------------------------------
-- Retention removes the idempotency keys of the events it deletes
-------------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION webhook_purge_step(older_than interval, dead_older_than interval, lim integer,
                                   OUT deliveries bigint, OUT dead_letters bigint,
                                   OUT attempts bigint, OUT events bigint)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
    k record;
    n bigint;
    na bigint;
    evs bigint[];
    ev bigint[] := '{}';
BEGIN
    deliveries := 0; dead_letters := 0; attempts := 0;
    -- finished deliveries (and their attempts), each status by its own age
    FOR k IN SELECT * FROM (VALUES ('delivered', older_than), ('dead', dead_older_than)) v(status, age) LOOP
        WITH gone AS (
            DELETE FROM @extschema@.webhook_deliveries d
             WHERE d.id = ANY (ARRAY(SELECT x.id FROM @extschema@.webhook_deliveries x
                                      WHERE x.finished_at < now() - k.age AND x.status = k.status
                                      ORDER BY x.finished_at LIMIT lim FOR UPDATE SKIP LOCKED))
            RETURNING d.id, d.event_id
        ), a AS (
            DELETE FROM @extschema@.webhook_attempts t
             WHERE t.delivery_id = ANY (ARRAY(SELECT gone.id FROM gone))
            RETURNING 1
        )
        SELECT (SELECT count(*) FROM gone), (SELECT count(*) FROM a),
               (SELECT array_agg(DISTINCT gone.event_id) FROM gone)
          INTO n, na, evs;
        IF k.status = 'delivered' THEN
            deliveries := n;
        ELSE
            dead_letters := n;
        END IF;
        attempts := attempts + na;
        ev := ev || coalesce(evs, '{}');
    END LOOP;

    -- webhook_test's attempts belong to no delivery
    WITH a AS (
        DELETE FROM @extschema@.webhook_attempts t
         WHERE t.id = ANY (ARRAY(SELECT y.id FROM @extschema@.webhook_attempts y
                                  WHERE y.delivery_id IS NULL AND y.started_at < now() - older_than
                                  LIMIT lim))
        RETURNING 1
    )
    SELECT attempts + count(*) INTO attempts FROM a;

    -- Events fanned out long ago with no delivery left.  The candidates are
    -- the events of the deliveries just removed and the oldest lim events
    -- (those no endpoint subscribed to): bounded work, never a scan of the
    -- whole outbox.  The oldest are walked only when the very oldest is old
    -- enough, so a young outbox costs one index probe, not lim of them.
    WITH cand AS (
        SELECT unnest(ev) AS id
        UNION
        SELECT v.id FROM (SELECT o.id FROM @extschema@.webhook_events o ORDER BY o.id LIMIT lim) v
         WHERE (SELECT f.occurred_at FROM @extschema@.webhook_events f ORDER BY f.id LIMIT 1)
               < now() - older_than
    ), gone AS (
        DELETE FROM @extschema@.webhook_events e
         WHERE e.id = ANY (ARRAY(SELECT cand.id FROM cand))
           AND e.occurred_at < now() - older_than
           AND NOT EXISTS (SELECT 1 FROM @extschema@.webhook_fanout_queue q WHERE q.event_id = e.id)
           -- OFFSET 0: a probe per event, never an anti-join over all deliveries
           AND NOT EXISTS (SELECT 1 FROM @extschema@.webhook_deliveries d WHERE d.event_id = e.id OFFSET 0)
        RETURNING e.id
    ), keys AS (
        -- the idempotency keys naming them go with them
        DELETE FROM @extschema@.webhook_idempotency_keys ik
         WHERE ik.event_id = ANY (ARRAY(SELECT gone.id FROM gone))
    )
    SELECT count(*) INTO events FROM gone;
END
$$;
COMMENT ON FUNCTION webhook_purge_step(interval, interval, integer) IS
  'deletes at most lim of each kind of expired row; run by the worker for retention';


-------------------------------------------------------------------------------
-- Every database that has the extension is served
-------------------------------------------------------------------------------

CREATE FUNCTION webhook_worker_status(OUT datid oid, OUT database text, OUT state text,
                                      OUT worker_pid integer, OUT fanout_pid integer,
                                      OUT state_since timestamptz)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'webhook_worker_status'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION webhook_worker_status() IS
  'the launcher''s view of every database it looks after, from shared memory: state and worker pids';

REVOKE ALL ON FUNCTION webhook_worker_status() FROM PUBLIC;

-- Every database of the cluster the launcher looks after, whatever its
-- state: served, starting, no extension, waiting for a worker slot.
CREATE VIEW webhook_workers WITH (security_barrier) AS
SELECT w.datid, w.database, w.state, w.worker_pid, w.fanout_pid, w.state_since
  FROM webhook_worker_status() w;
COMMENT ON VIEW webhook_workers IS 'one row per database the launcher looks after: served, starting, no extension, or waiting for a background worker slot, with the worker''s and fan-out helper''s pids';
