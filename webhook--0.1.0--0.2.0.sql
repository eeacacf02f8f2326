/* webhook--0.1.0--0.2.0.sql: upgrades an installation of 0.1.0 to 0.2.0.
 *
 * Run by ALTER EXTENSION webhook UPDATE, in one transaction, while the
 * worker may run: the 0.2.0 library's worker waits (one LOG line) while the
 * schema is 0.1.0, and starts serving when this commits.  Nothing here
 * rewrites a table: columns are added without volatile defaults.  Two
 * indexes are built: on webhook_deliveries (partial: the retries waiting)
 * and on webhook_events (transaction id and id); while they are, the
 * update holds locks that make the fan-out and writers of events wait: on
 * millions of rows, that is seconds.
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
SELECT pg_catalog.pg_extension_config_dump('webhook_idempotency_keys', '');

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
    -- dropped at the end of its session by no command: its registration
    -- would outlive it (webhook_forget_dropped)
    IF (SELECT relpersistence FROM pg_class WHERE oid = tbl) = 't' THEN
        RAISE EXCEPTION 'cannot watch temporary table "%"', tbl USING ERRCODE = 'wrong_object_type';
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
           AND @extschema@.webhook_fanned_out(e.txid, e.id)
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
                                      OUT state_since timestamptz, OUT worker_pids integer[])
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'webhook_worker_status'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION webhook_worker_status() IS
  'the launcher''s view of every database it looks after, from shared memory: state, the first worker''s and the fan-out helper''s pids, and every delivery worker''s (webhook.workers)';


-- Every database of the cluster the launcher looks after, whatever its
-- state: served, starting, no extension, waiting for a worker slot or for
-- an update.  webhook_worker_status() is left to PUBLIC: a reader of the
-- view calls it with its own rights, and it shows no more than
-- pg_database and pg_stat_activity do.
CREATE VIEW webhook_workers WITH (security_barrier) AS
SELECT w.datid, w.database, w.state, w.worker_pid, w.fanout_pid, w.state_since, w.worker_pids
  FROM webhook_worker_status() w;
COMMENT ON VIEW webhook_workers IS 'one row per database the launcher looks after: served, starting, no extension, or waiting for a background worker slot, with the first worker''s and fan-out helper''s pids and the pids of every delivery worker';

-------------------------------------------------------------------------------
-- Endpoint options: batch items, per-endpoint jitter, Content-Type; backoff by max_attempts
-------------------------------------------------------------------------------

ALTER TABLE webhook_endpoints
    ADD COLUMN batch_items text NOT NULL DEFAULT 'event' CHECK (batch_items IN ('event', 'data')),
    ADD COLUMN retry_jitter float8 CHECK (retry_jitter BETWEEN 0 AND 1);

-- The worker holds them (retry_jitter in its endpoint cache): writing them
-- makes it reload, as writing the other settings does.
DROP TRIGGER webhook_endpoints_changed ON webhook_endpoints;
CREATE TRIGGER webhook_endpoints_changed
    AFTER INSERT OR DELETE OR TRUNCATE
       OR UPDATE OF id, name, url, format, batch_size, source, signing, signature_header,
                    signature_prefix, secret, previous_secrets, auth, headers, retry_schedule,
                    timeout, state, max_in_flight, rate_limit, ordered, batch_items, retry_jitter
    ON webhook_endpoints
    FOR EACH STATEMENT EXECUTE FUNCTION webhook_config_changed();

CREATE OR REPLACE FUNCTION webhook_endpoints_check()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    h record;
    v jsonb;
    a jsonb := NEW.auth;
    hname text;
    names text[] := '{}';
    schemes constant text[] := '{standard,hmac-sha256-hex,timestamped-hex,standard-ed25519,none}';
    token constant text := '^[A-Za-z0-9!#$%&''*+.^_`|~-]{1,100}$';
    reserved constant text[] := '{content-length,host,user-agent,transfer-encoding,connection,expect,te,upgrade}';
    -- type/subtype, then ; name=value parameters (a token or a quoted string)
    media_type constant text := '^[A-Za-z0-9!#$&^_.+-]{1,127}/[A-Za-z0-9!#$&^_.+-]{1,127}'
                                || '([ \t]*;[ \t]*[A-Za-z0-9!#$%&''*+.^_`|~-]+=([A-Za-z0-9!#$%&''*+.^_`|~-]+|"([^"\\\x01-\x1f\x7f]|\\[^\x01-\x1f\x7f])*"))*[ \t]*$';
    hex constant text[] := '{hmac-sha256-hex,timestamped-hex}';
    old_secret jsonb;
    expiry timestamptz;
BEGIN
    -- state and the worker's counters
    IF NEW.id IS NULL OR NEW.state IS NULL OR NEW.state_since IS NULL OR NEW.created_at IS NULL
       OR NEW.consecutive_failures IS NULL OR NEW.circuit_cooldown IS NULL THEN
        RAISE EXCEPTION 'a required endpoint column is NULL'
            USING ERRCODE = 'null_value_not_allowed',
                  DETAIL = 'id, state, state_since, created_at, consecutive_failures and circuit_cooldown must not be NULL.';
    END IF;
    IF NEW.state NOT IN ('active', 'disabled', 'paused', 'circuit_open') THEN
        RAISE EXCEPTION 'invalid endpoint state "%"', left(NEW.state, 80)
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'States are active, disabled, paused and circuit_open; use webhook_set_state().';
    END IF;
    IF NEW.consecutive_failures < 0 OR NEW.circuit_cooldown < 0 THEN
        RAISE EXCEPTION 'endpoint counters must not be negative' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF TG_OP = 'UPDATE'
       AND (NEW.name, NEW.url, NEW.format, NEW.batch_size, NEW.source, NEW.signing, NEW.signature_header,
            NEW.signature_prefix, NEW.secret, NEW.previous_secrets, NEW.auth, NEW.headers,
            NEW.retry_schedule, NEW.timeout, NEW.description, NEW.max_in_flight, NEW.rate_limit, NEW.ordered,
            NEW.batch_items, NEW.retry_jitter)
           IS NOT DISTINCT FROM
           (OLD.name, OLD.url, OLD.format, OLD.batch_size, OLD.source, OLD.signing, OLD.signature_header,
            OLD.signature_prefix, OLD.secret, OLD.previous_secrets, OLD.auth, OLD.headers,
            OLD.retry_schedule, OLD.timeout, OLD.description, OLD.max_in_flight, OLD.rate_limit, OLD.ordered,
            OLD.batch_items, OLD.retry_jitter) THEN
        RETURN NEW;
    END IF;

    IF NEW.signing IS NOT NULL AND NEW.signing <> ALL (schemes) THEN
        RAISE EXCEPTION 'invalid signing scheme "%"', left(NEW.signing, 80)
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'Schemes are standard, hmac-sha256-hex, timestamped-hex, standard-ed25519 and none.';
    END IF;
    IF NEW.format IS NOT NULL AND NEW.format NOT IN ('standard', 'batch', 'raw') THEN
        RAISE EXCEPTION 'invalid format "%"', left(NEW.format, 80)
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'Formats are standard, batch and raw.';
    END IF;
    IF NEW.name IS NULL OR NEW.url IS NULL OR NEW.secret IS NULL OR NEW.headers IS NULL
       OR NEW.retry_schedule IS NULL OR NEW.timeout IS NULL OR NEW.max_in_flight IS NULL
       OR NEW.format IS NULL OR NEW.batch_size IS NULL OR NEW.signing IS NULL
       OR NEW.ordered IS NULL OR NEW.previous_secrets IS NULL OR NEW.batch_items IS NULL THEN
        RAISE EXCEPTION 'a required endpoint option is NULL'
            USING ERRCODE = 'null_value_not_allowed',
                  DETAIL = 'name, url, secret, previous_secrets, headers, retry_schedule, timeout, max_in_flight, format, batch_size, batch_items, signing and ordered must not be NULL.';
    END IF;
    IF NEW.batch_items NOT IN ('event', 'data') THEN
        RAISE EXCEPTION 'invalid batch_items "%"', left(NEW.batch_items, 80)
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'Each item of a batch is the event envelope (event) or the event''s data as published (data).';
    END IF;
    IF NEW.batch_items <> 'event' AND NEW.format <> 'batch' THEN
        RAISE EXCEPTION 'batch_items does not apply to format %', NEW.format
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'Only the batch format has items; raw sends the data of one event as the body.';
    END IF;
    IF NEW.retry_jitter IS NOT NULL AND NOT (NEW.retry_jitter BETWEEN 0 AND 1) THEN
        RAISE EXCEPTION 'invalid retry_jitter %', NEW.retry_jitter
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'Retries are spread by a fraction between 0 (exact delays) and 1 of each delay; NULL uses webhook.retry_jitter.';
    END IF;
    IF NEW.name !~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$' THEN
        RAISE EXCEPTION 'invalid endpoint name "%"', left(NEW.name, 80)
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'A name is 1 to 63 characters: letters, digits, "_", "." and "-", starting with a letter or digit.';
    END IF;
    PERFORM @extschema@.webhook_check_url(NEW.url);
    -- the column's CHECK, word for word (its error would show the row)
    IF NOT (length(NEW.url) <= 2048 AND NEW.url ~ '^[hH][tT][tT][pP][sS]?://[^[:space:]]+$') THEN
        RAISE EXCEPTION 'invalid endpoint URL'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'A URL is http:// or https:// followed by up to 2048 characters, none of them white space.';
    END IF;
    IF NEW.batch_size NOT BETWEEN 1 AND 1000 THEN
        RAISE EXCEPTION 'invalid batch_size %', NEW.batch_size
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'A batch carries 1 to 1000 events.';
    END IF;
    IF NEW.source IS NOT NULL AND (length(NEW.source) NOT BETWEEN 1 AND 255 OR NEW.source ~ '[[:cntrl:]]') THEN
        RAISE EXCEPTION 'invalid source'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'A source is 1 to 255 characters with no control characters.';
    END IF;
    IF NOT @extschema@.webhook_valid_secret(NEW.secret, NEW.signing) THEN
        RAISE EXCEPTION 'invalid secret for signing scheme %', NEW.signing
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = CASE NEW.signing
                           WHEN 'standard' THEN 'A standard secret is "whsec_" followed by the base64 encoding of 24 to 64 bytes.'
                           WHEN 'standard-ed25519' THEN 'An ed25519 secret is "whsk_" followed by the base64 encoding of a 32-byte seed or a 64-byte key.'
                           ELSE 'A secret for this scheme is 8 to 1024 printable characters, used as given.' END,
                  HINT = format('Generate one with webhook_generate_secret(%L).', NEW.signing);
    END IF;
    IF jsonb_typeof(NEW.previous_secrets) <> 'array' OR jsonb_array_length(NEW.previous_secrets) > 10
       OR EXISTS (SELECT 1 FROM jsonb_array_elements(NEW.previous_secrets) p
                   WHERE jsonb_typeof(p) <> 'object' OR jsonb_typeof(p -> 'secret') IS DISTINCT FROM 'string'
                      OR jsonb_typeof(p -> 'expires_at') IS DISTINCT FROM 'string'
                      OR NOT @extschema@.webhook_valid_secret(p ->> 'secret', NEW.signing)) THEN
        RAISE EXCEPTION 'invalid previous_secrets'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'At most 10 objects {"secret", "expires_at"} whose secrets suit the signing scheme.',
                  HINT = 'Use webhook_rotate_secret().';
    END IF;
    -- every expiry must be a finite time: the worker reads them as timestamptz
    FOR old_secret IN SELECT value FROM jsonb_array_elements(NEW.previous_secrets) LOOP
        BEGIN
            expiry := (old_secret ->> 'expires_at')::timestamptz;
        EXCEPTION WHEN others THEN
            expiry := NULL;
        END;
        IF expiry IS NULL OR NOT isfinite(expiry) THEN
            RAISE EXCEPTION 'invalid expires_at in previous_secrets'
                USING ERRCODE = 'invalid_parameter_value',
                      DETAIL = 'Each old secret expires at a finite timestamp with time zone.',
                      HINT = 'Use webhook_rotate_secret().';
        END IF;
    END LOOP;
    IF NEW.signature_header IS NOT NULL AND (NEW.signature_header !~ token
       OR lower(NEW.signature_header) = ANY (reserved) OR lower(NEW.signature_header) LIKE 'webhook-%') THEN
        RAISE EXCEPTION 'invalid signature_header "%"', left(NEW.signature_header, 80)
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'A header name the extension does not set itself, such as X-Signature.';
    END IF;
    IF NEW.signature_prefix IS NOT NULL AND (length(NEW.signature_prefix) > 100 OR NEW.signature_prefix ~ '[[:cntrl:]]') THEN
        RAISE EXCEPTION 'invalid signature_prefix'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'A prefix such as "sha256=": at most 100 characters, no control characters.';
    END IF;
    -- options of one scheme are not silently ignored by another
    IF NEW.signature_header IS NOT NULL AND NEW.signing <> ALL (hex) THEN
        RAISE EXCEPTION 'signature_header does not apply to signing scheme %', NEW.signing
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'Only hmac-sha256-hex and timestamped-hex put their signature in a header of your choice.';
    END IF;
    IF NEW.signature_prefix IS NOT NULL AND NEW.signing <> 'hmac-sha256-hex' THEN
        RAISE EXCEPTION 'signature_prefix does not apply to signing scheme %', NEW.signing
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'Only hmac-sha256-hex puts a prefix before its signature.';
    END IF;
    IF NEW.signing = ANY (hex) THEN
        names := ARRAY[lower(coalesce(NEW.signature_header, 'X-Webhook-Signature'))];
    END IF;

    IF jsonb_typeof(NEW.headers) <> 'object' THEN
        RAISE EXCEPTION 'headers must be a JSON object' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    FOR h IN SELECT key, value FROM jsonb_each(NEW.headers) LOOP
        IF h.key !~ token THEN
            RAISE EXCEPTION 'invalid header name "%"', left(h.key, 80)
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        IF lower(h.key) = ANY (reserved) OR lower(h.key) LIKE 'webhook-%' THEN
            RAISE EXCEPTION 'header "%" cannot be set', h.key
                USING ERRCODE = 'invalid_parameter_value',
                      DETAIL = 'The extension sets this header itself.';
        END IF;
        IF lower(h.key) = ANY (names) THEN
            RAISE EXCEPTION 'header "%" is given twice', h.key
                USING ERRCODE = 'invalid_parameter_value',
                      DETAIL = 'Header names are case-insensitive, and the signature header is set by the extension.';
        END IF;
        names := names || lower(h.key);
        -- a value is a string, or {"value": string, "secret": true} to keep it hidden
        v := h.value;
        IF jsonb_typeof(v) = 'object' THEN
            IF jsonb_typeof(v -> 'value') IS DISTINCT FROM 'string'
               OR (v ? 'secret' AND jsonb_typeof(v -> 'secret') <> 'boolean')
               OR EXISTS (SELECT 1 FROM jsonb_object_keys(v) k WHERE k NOT IN ('value', 'secret')) THEN
                RAISE EXCEPTION 'invalid value for header "%"', h.key
                    USING ERRCODE = 'invalid_parameter_value',
                          DETAIL = 'A header value is a string or {"value": "...", "secret": true}.';
            END IF;
            v := v -> 'value';
        END IF;
        IF jsonb_typeof(v) <> 'string' THEN
            RAISE EXCEPTION 'value of header "%" must be a string', h.key
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        IF v #>> '{}' ~ '[\r\n\x01-\x08\x0b\x0c\x0e-\x1f\x7f]' OR length(v #>> '{}') > 4096 THEN
            RAISE EXCEPTION 'invalid value for header "%"', h.key
                USING ERRCODE = 'invalid_parameter_value',
                      DETAIL = 'Header values are at most 4096 characters with no control characters (CR and LF included).';
        END IF;
        IF lower(h.key) = 'content-type' AND v #>> '{}' !~ media_type THEN
            RAISE EXCEPTION 'invalid Content-Type'
                USING ERRCODE = 'invalid_parameter_value',
                      DETAIL = 'A Content-Type is a media type, type/subtype with optional ; name=value parameters, such as application/x-www-form-urlencoded or text/plain; charset=utf-8.';
        END IF;
    END LOOP;

    IF a IS NOT NULL THEN
        IF jsonb_typeof(a) <> 'object' OR jsonb_typeof(a -> 'type') IS DISTINCT FROM 'string'
           OR a ->> 'type' NOT IN ('bearer', 'basic', 'api_key') THEN
            RAISE EXCEPTION 'invalid auth'
                USING ERRCODE = 'invalid_parameter_value',
                      DETAIL = 'auth is {"type":"bearer","token":...}, {"type":"basic","username":...,"password":...} or {"type":"api_key","header":...,"key":...}.';
        END IF;
        IF EXISTS (SELECT 1 FROM jsonb_each(a) f
                    WHERE f.key <> 'type'
                      AND (f.key <> ALL (CASE a ->> 'type' WHEN 'bearer' THEN '{token}'::text[]
                                                           WHEN 'basic' THEN '{username,password}'
                                                           ELSE '{header,key}' END)
                           OR jsonb_typeof(f.value) <> 'string'
                           OR f.value #>> '{}' ~ '[\r\n\x01-\x08\x0b\x0c\x0e-\x1f\x7f]'
                           OR length(f.value #>> '{}') NOT BETWEEN 1 AND 4096))
           OR (SELECT count(*) FROM jsonb_object_keys(a)) <> (CASE a ->> 'type' WHEN 'bearer' THEN 2 ELSE 3 END) THEN
            RAISE EXCEPTION 'invalid % auth', a ->> 'type'
                USING ERRCODE = 'invalid_parameter_value',
                      DETAIL = CASE a ->> 'type'
                               WHEN 'bearer' THEN 'Bearer auth is {"type":"bearer","token":"..."}.'
                               WHEN 'basic' THEN 'Basic auth is {"type":"basic","username":"...","password":"..."}.'
                               ELSE 'API key auth is {"type":"api_key","header":"X-Api-Key","key":"..."}.' END
                               || ' Values are 1 to 4096 characters with no control characters.';
        END IF;
        IF a ->> 'type' = 'basic' AND position(':' IN a ->> 'username') > 0 THEN
            RAISE EXCEPTION 'invalid basic auth' USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'A username cannot contain ":".';
        END IF;
        hname := CASE WHEN a ->> 'type' = 'api_key' THEN lower(a ->> 'header') ELSE 'authorization' END;
        IF hname !~ token OR hname = ANY (reserved) OR hname LIKE 'webhook-%' OR hname = 'content-type' THEN
            RAISE EXCEPTION 'invalid api_key header "%"', left(a ->> 'header', 80)
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        IF hname = ANY (names) THEN
            RAISE EXCEPTION 'header "%" is set by both auth and headers or the signature', hname
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
    END IF;

    IF cardinality(NEW.retry_schedule) > 50 OR array_position(NEW.retry_schedule, NULL) IS NOT NULL
       OR EXISTS (SELECT 1 FROM unnest(NEW.retry_schedule) d
                   WHERE d < '0'::interval OR d > '30 days'::interval) THEN
        RAISE EXCEPTION 'invalid retry_schedule'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'A schedule has at most 50 delays, each between 0 and 30 days.',
                  HINT = 'webhook_backoff() builds exponential schedules.';
    END IF;
    IF NEW.timeout < '100ms' OR NEW.timeout > '60s' THEN
        RAISE EXCEPTION 'invalid timeout %', NEW.timeout
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'A timeout is between 100 milliseconds and 60 seconds.';
    END IF;
    IF length(NEW.description) > 1000 THEN
        RAISE EXCEPTION 'description is longer than 1000 characters'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF NEW.max_in_flight NOT BETWEEN 1 AND 1000 THEN
        RAISE EXCEPTION 'invalid max_in_flight %', NEW.max_in_flight
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'An endpoint takes between 1 and 1000 concurrent requests.';
    END IF;
    IF NEW.rate_limit NOT BETWEEN 1 AND 100000 THEN
        RAISE EXCEPTION 'invalid rate_limit %', NEW.rate_limit
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'A rate limit is 1 to 100000 requests per second; NULL (0 in webhook_update_endpoint) is unlimited.';
    END IF;
    IF NEW.ordered AND NEW.format = 'batch' THEN
        RAISE EXCEPTION 'an ordered endpoint cannot use the batch format'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF TG_OP = 'UPDATE' AND NEW.ordered AND NOT OLD.ordered THEN
        -- The fan-out's lock: a step running is waited for, and the next
        -- one waits for this transaction, so that it sees the endpoint
        -- ordered and gives each delivery its line.
        PERFORM pg_advisory_xact_lock('@extschema@.webhook_events'::regclass::oid::int4, 1);
        -- deliveries already queued join their keys' lines
        UPDATE @extschema@.webhook_deliveries d
           SET ordering_key = @extschema@.webhook_line_key(ev.ordering_key)
          FROM @extschema@.webhook_events ev
         WHERE d.endpoint_id = NEW.id AND d.status IN ('pending', 'in_flight')
           AND d.ordering_key IS NULL AND ev.id = d.event_id;
    END IF;
    RETURN NEW;
END
$$;
COMMENT ON FUNCTION webhook_endpoints_check() IS
  'trigger: checks every endpoint option, for the API and direct writes alike, with clear errors that never show a secret';

-- webhook_create_endpoint and webhook_update_endpoint take two more
-- options, so they are created anew.  Their initial privileges are a fresh
-- installation's (EXECUTE revoked from PUBLIC, recorded in pg_init_privs by
-- the REVOKE below).  The grants an administrator gave on the old ones are
-- carried over as they were: not by GRANT, which in an extension script
-- would count as the extension's initial privilege (and pg_dump would then
-- leave it out), but as GRANT outside one leaves them, the ACL and a
-- dependency of the function on each role in it (so that DROP ROLE refuses
-- while a grant remains, and DROP OWNED and REASSIGN OWNED find it), with
-- the functions owned by the role that owned the old ones.
SELECT pg_catalog.set_config('webhook_upgrade.create_acl', coalesce(p.proacl::text, ''), true),
       pg_catalog.set_config('webhook_upgrade.owner', p.proowner::pg_catalog.regrole::text, true)
  FROM pg_catalog.pg_proc p
 WHERE p.oid = 'webhook_create_endpoint(text, text, text[], text, jsonb, interval[], interval, text, integer,
                                        text, integer, text, text, text, text, jsonb, integer, boolean)'::pg_catalog.regprocedure;
SELECT pg_catalog.set_config('webhook_upgrade.update_acl', coalesce(p.proacl::text, ''), true)
  FROM pg_catalog.pg_proc p
 WHERE p.oid = 'webhook_update_endpoint(bigint, text, text, text[], text, jsonb, interval[], interval, text,
                                        integer, text, integer, text, text, text, text, jsonb, integer, boolean)'::pg_catalog.regprocedure;
DROP FUNCTION webhook_create_endpoint(text, text, text[], text, jsonb, interval[], interval, text, integer,
                                      text, integer, text, text, text, text, jsonb, integer, boolean);
DROP FUNCTION webhook_update_endpoint(bigint, text, text, text[], text, jsonb, interval[], interval, text,
                                      integer, text, integer, text, text, text, text, jsonb, integer, boolean);
CREATE FUNCTION webhook_create_endpoint(
    name             text,
    url              text,
    event_types      text[]     DEFAULT '{*}',
    secret           text       DEFAULT NULL,
    headers          jsonb      DEFAULT '{}',
    retry_schedule   interval[] DEFAULT '{5s,5min,30min,2h,5h,10h,10h}',
    timeout          interval   DEFAULT '10s',
    description      text       DEFAULT NULL,
    max_in_flight    integer    DEFAULT 16,
    format           text       DEFAULT 'standard',
    batch_size       integer    DEFAULT 100,
    source           text       DEFAULT NULL,
    signing          text       DEFAULT 'standard',
    signature_header text       DEFAULT NULL,
    signature_prefix text       DEFAULT NULL,
    auth             jsonb      DEFAULT NULL,
    rate_limit       integer    DEFAULT NULL,
    ordered          boolean    DEFAULT false,
    batch_items      text       DEFAULT 'event',
    retry_jitter     float8     DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    new_id bigint;
BEGIN
    IF event_types IS NULL THEN
        RAISE EXCEPTION 'event_types must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    PERFORM @extschema@.webhook_check_event_types(event_types);
    IF EXISTS (SELECT 1 FROM @extschema@.webhook_endpoints e WHERE e.name = webhook_create_endpoint.name) THEN
        RAISE EXCEPTION 'endpoint "%" already exists', name
            USING ERRCODE = 'unique_violation';
    END IF;
    -- every option is checked by the webhook_endpoints_check trigger
    INSERT INTO @extschema@.webhook_endpoints AS e
        (name, url, secret, headers, retry_schedule, timeout, description, max_in_flight,
         format, batch_size, source, signing, signature_header, signature_prefix, auth,
         rate_limit, ordered, batch_items, retry_jitter)
    VALUES (name, url,
            coalesce(secret, @extschema@.webhook_generate_secret(coalesce(signing, 'standard'))),
            headers, retry_schedule, timeout, description, max_in_flight,
            format, batch_size, source, signing, signature_header, signature_prefix,
            nullif(auth, '{}'), rate_limit, ordered, batch_items, retry_jitter)
    RETURNING e.id INTO new_id;
    INSERT INTO @extschema@.webhook_subscriptions (endpoint_id, event_type)
    SELECT DISTINCT new_id, t FROM unnest(event_types) t;
    RETURN new_id;
END
$$;
COMMENT ON FUNCTION webhook_create_endpoint(text, text, text[], text, jsonb, interval[], interval, text, integer,
                                            text, integer, text, text, text, text, jsonb, integer, boolean,
                                            text, float8) IS
  'creates an endpoint subscribed to event_types and returns its id; a NULL secret generates one for the signing scheme';

CREATE FUNCTION webhook_update_endpoint(
    endpoint_id      bigint,
    name             text       DEFAULT NULL,
    url              text       DEFAULT NULL,
    event_types      text[]     DEFAULT NULL,
    secret           text       DEFAULT NULL,
    headers          jsonb      DEFAULT NULL,
    retry_schedule   interval[] DEFAULT NULL,
    timeout          interval   DEFAULT NULL,
    description      text       DEFAULT NULL,
    max_in_flight    integer    DEFAULT NULL,
    format           text       DEFAULT NULL,
    batch_size       integer    DEFAULT NULL,
    source           text       DEFAULT NULL,
    signing          text       DEFAULT NULL,
    signature_header text       DEFAULT NULL,
    signature_prefix text       DEFAULT NULL,
    auth             jsonb      DEFAULT NULL,
    rate_limit       integer    DEFAULT NULL,
    ordered          boolean    DEFAULT NULL,
    batch_items      text       DEFAULT NULL,
    retry_jitter     float8     DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_variable
DECLARE
    cur @extschema@.webhook_endpoints;
BEGIN
    IF ordered THEN
        -- the fan-out's lock first, as the fan-out takes it before rows (the
        -- trigger takes it too, after the endpoint's row)
        PERFORM pg_advisory_xact_lock('@extschema@.webhook_events'::regclass::oid::int4, 1);
        -- making it ordered updates its queued deliveries: lock them first,
        -- in id order, as the worker does (deliveries, then the endpoint)
        PERFORM 1 FROM @extschema@.webhook_deliveries d
          WHERE d.endpoint_id = webhook_update_endpoint.endpoint_id
            AND d.status IN ('pending', 'in_flight')
          ORDER BY d.id FOR UPDATE;
    END IF;
    cur := @extschema@.webhook_get_endpoint(endpoint_id);
    IF event_types IS NOT NULL THEN
        PERFORM @extschema@.webhook_check_event_types(event_types);
    END IF;
    IF name IS NOT NULL AND EXISTS (SELECT 1 FROM @extschema@.webhook_endpoints e
                                     WHERE e.name = name AND e.id <> cur.id) THEN
        RAISE EXCEPTION 'endpoint "%" already exists', name USING ERRCODE = 'unique_violation';
    END IF;
    -- NULL keeps an option; '' (or '{}' for auth, 0 for rate_limit) clears an optional one.
    -- A new signing scheme forgets the previous secrets: they belong to the old one.
    -- Every option is checked by the webhook_endpoints_check trigger.
    UPDATE @extschema@.webhook_endpoints e
       SET name = coalesce(name, e.name),
           url = coalesce(url, e.url),
           secret = coalesce(secret, e.secret),
           previous_secrets = CASE WHEN coalesce(signing, e.signing) = e.signing
                                   THEN e.previous_secrets ELSE '[]' END,
           headers = coalesce(headers, e.headers),
           retry_schedule = coalesce(retry_schedule, e.retry_schedule),
           timeout = coalesce(timeout, e.timeout),
           description = CASE WHEN description IS NULL THEN e.description ELSE nullif(description, '') END,
           max_in_flight = coalesce(max_in_flight, e.max_in_flight),
           format = coalesce(format, e.format),
           batch_size = coalesce(batch_size, e.batch_size),
           source = CASE WHEN source IS NULL THEN e.source ELSE nullif(source, '') END,
           signing = coalesce(signing, e.signing),
           -- kept only while the scheme uses them, unless given
           signature_header = CASE WHEN signature_header IS NOT NULL THEN nullif(signature_header, '')
                                   WHEN coalesce(signing, e.signing) IN ('hmac-sha256-hex', 'timestamped-hex')
                                   THEN e.signature_header END,
           signature_prefix = CASE WHEN signature_prefix IS NOT NULL THEN nullif(signature_prefix, '')
                                   WHEN coalesce(signing, e.signing) = 'hmac-sha256-hex'
                                   THEN e.signature_prefix END,
           auth = CASE WHEN auth IS NULL THEN e.auth ELSE nullif(auth, '{}') END,
           rate_limit = CASE WHEN rate_limit IS NULL THEN e.rate_limit ELSE nullif(rate_limit, 0) END,
           ordered = coalesce(ordered, e.ordered),
           -- items are the envelope again when the format leaves batch, unless given
           batch_items = CASE WHEN batch_items IS NOT NULL THEN batch_items
                              WHEN coalesce(format, e.format) = 'batch' THEN e.batch_items
                              ELSE 'event' END,
           -- a negative value goes back to webhook.retry_jitter
           retry_jitter = CASE WHEN retry_jitter IS NULL THEN e.retry_jitter
                               WHEN retry_jitter < 0 THEN NULL ELSE retry_jitter END
     WHERE e.id = cur.id;
    IF event_types IS NOT NULL THEN
        -- the new list replaces the old; filters of patterns kept are kept
        DELETE FROM @extschema@.webhook_subscriptions s
         WHERE s.endpoint_id = cur.id AND s.event_type <> ALL (event_types);
        INSERT INTO @extschema@.webhook_subscriptions (endpoint_id, event_type)
        SELECT DISTINCT cur.id, t FROM unnest(event_types) t
        ON CONFLICT DO NOTHING;
    END IF;
END
$$;
COMMENT ON FUNCTION webhook_update_endpoint(bigint, text, text, text[], text, jsonb, interval[], interval, text,
                                            integer, text, integer, text, text, text, text, jsonb, integer, boolean,
                                            text, float8) IS
  'changes an endpoint''s options; NULL leaves an option unchanged, an empty value (''{}'' for auth, 0 for rate_limit, a negative retry_jitter) clears an optional one; event_types replaces the subscriptions';

-- owned as before (the ACL's grantor), whoever runs the update
DO $$
BEGIN
    EXECUTE pg_catalog.format('ALTER FUNCTION @extschema@.webhook_create_endpoint(text, text, text[], text, jsonb, interval[], interval, text, integer, text, integer, text, text, text, text, jsonb, integer, boolean, text, float8) OWNER TO %s',
                              pg_catalog.current_setting('webhook_upgrade.owner'));
    EXECUTE pg_catalog.format('ALTER FUNCTION @extschema@.webhook_update_endpoint(bigint, text, text, text[], text, jsonb, interval[], interval, text, integer, text, integer, text, text, text, text, jsonb, integer, boolean, text, float8) OWNER TO %s',
                              pg_catalog.current_setting('webhook_upgrade.owner'));
END
$$;
REVOKE ALL ON FUNCTION
    webhook_create_endpoint(text, text, text[], text, jsonb, interval[], interval, text, integer,
                            text, integer, text, text, text, text, jsonb, integer, boolean,
                            text, float8),
    webhook_update_endpoint(bigint, text, text, text[], text, jsonb, interval[], interval, text,
                            integer, text, integer, text, text, text, text, jsonb, integer, boolean,
                            text, float8)
FROM PUBLIC;
UPDATE pg_catalog.pg_proc
   SET proacl = NULLIF(pg_catalog.current_setting('webhook_upgrade.create_acl'), '')::pg_catalog.aclitem[]
 WHERE oid = 'webhook_create_endpoint(text, text, text[], text, jsonb, interval[], interval, text, integer,
                                      text, integer, text, text, text, text, jsonb, integer, boolean,
                                      text, float8)'::pg_catalog.regprocedure;
UPDATE pg_catalog.pg_proc
   SET proacl = NULLIF(pg_catalog.current_setting('webhook_upgrade.update_acl'), '')::pg_catalog.aclitem[]
 WHERE oid = 'webhook_update_endpoint(bigint, text, text, text[], text, jsonb, interval[], interval, text,
                                      integer, text, integer, text, text, text, text, jsonb, integer, boolean,
                                      text, float8)'::pg_catalog.regprocedure;
INSERT INTO pg_catalog.pg_shdepend (dbid, classid, objid, objsubid, refclassid, refobjid, deptype)
SELECT DISTINCT d.oid, 'pg_catalog.pg_proc'::pg_catalog.regclass, p.oid, 0,
       'pg_catalog.pg_authid'::pg_catalog.regclass, r.role, 'a'
  FROM pg_catalog.pg_proc p
 CROSS JOIN LATERAL pg_catalog.aclexplode(p.proacl) a
 CROSS JOIN LATERAL (VALUES (a.grantee), (a.grantor)) r(role)
  JOIN pg_catalog.pg_database d ON d.datname OPERATOR(pg_catalog.=) pg_catalog.current_database()
 WHERE p.oid IN ('webhook_create_endpoint(text, text, text[], text, jsonb, interval[], interval, text, integer,
                                          text, integer, text, text, text, text, jsonb, integer, boolean,
                                          text, float8)'::pg_catalog.regprocedure,
                 'webhook_update_endpoint(bigint, text, text, text[], text, jsonb, interval[], interval, text,
                                          integer, text, integer, text, text, text, text, jsonb, integer, boolean,
                                          text, float8)'::pg_catalog.regprocedure)
   AND r.role OPERATOR(pg_catalog.<>) 0 AND r.role OPERATOR(pg_catalog.<>) p.proowner
   -- pinned roles (below FirstUnpinnedObjectId) get no dependencies
   AND r.role OPERATOR(pg_catalog.>=) 12000;

-- retries (the third argument, as before) or max_attempts, by name
DROP FUNCTION webhook_backoff(interval, float8, integer, interval);
CREATE FUNCTION webhook_backoff(first interval, factor float8, retries integer DEFAULT NULL,
                                cap interval DEFAULT '1 day', max_attempts integer DEFAULT NULL)
RETURNS interval[]
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n integer;
BEGIN
    IF first IS NULL OR factor IS NULL OR cap IS NULL THEN
        RAISE EXCEPTION 'webhook_backoff: first, factor and cap must not be NULL'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF (retries IS NULL) = (max_attempts IS NULL) THEN
        RAISE EXCEPTION 'webhook_backoff needs either retries or max_attempts'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'retries counts the requests after the first; max_attempts counts every request, the first included (max_attempts = retries + 1).';
    END IF;
    IF max_attempts IS NOT NULL AND (max_attempts < 1 OR max_attempts > 51) THEN
        RAISE EXCEPTION 'invalid max_attempts %', max_attempts USING ERRCODE = 'invalid_parameter_value',
              DETAIL = 'max_attempts counts the first request too: 1 (no retry) to 51 (50 retries).';
    END IF;
    n := coalesce(retries, max_attempts - 1);
    IF n < 0 OR n > 50 THEN
        RAISE EXCEPTION 'invalid number of retries %', n USING ERRCODE = 'invalid_parameter_value',
              DETAIL = 'A schedule has 0 to 50 retries after the first request (max_attempts 1 to 51).';
    END IF;
    IF first < '0'::interval OR first > '30 days'::interval THEN
        RAISE EXCEPTION 'invalid first delay %', first USING ERRCODE = 'invalid_parameter_value',
              DETAIL = 'The first delay is between 0 and 30 days.';
    END IF;
    IF factor < 1 OR factor > 100 OR factor = 'NaN'::float8 THEN
        RAISE EXCEPTION 'invalid factor %', factor USING ERRCODE = 'invalid_parameter_value',
              DETAIL = 'Each delay is 1 to 100 times the one before.';
    END IF;
    IF cap < '0'::interval OR cap > '30 days'::interval THEN
        RAISE EXCEPTION 'invalid cap %', cap USING ERRCODE = 'invalid_parameter_value',
              DETAIL = 'The cap is between 0 and 30 days; no delay exceeds it.';
    END IF;
    -- computed in seconds (a float8 cannot overflow here), rounded to milliseconds
    RETURN ARRAY(SELECT make_interval(secs => round(least(extract(epoch FROM first) * power(factor, i),
                                                          extract(epoch FROM cap))::numeric, 3)::float8)
                   FROM generate_series(0, n - 1) i ORDER BY i);
END
$$;
COMMENT ON FUNCTION webhook_backoff(interval, float8, integer, interval, integer) IS
  'an exponential retry schedule of retries delays (or max_attempts - 1: max_attempts counts the first request), first, first*factor, ... each at most cap';

-- What an operator may see of the endpoints: every setting, with secrets,
-- auth values and sensitive header values shown as [redacted].
CREATE OR REPLACE VIEW webhook_endpoint_settings WITH (security_barrier) AS
SELECT e.id, e.name, e.url, e.description, e.state,
       ARRAY(SELECT s.event_type FROM webhook_subscriptions s
              WHERE s.endpoint_id = e.id ORDER BY s.event_type) AS event_types,
       e.format, e.batch_size, e.source, e.signing, e.signature_header, e.signature_prefix,
       '[redacted]'::text AS secret,
       (SELECT count(*) FROM jsonb_array_elements(e.previous_secrets) p
         WHERE (p ->> 'expires_at')::timestamptz > now())::int AS previous_secrets,
       (SELECT max((p ->> 'expires_at')::timestamptz) FROM jsonb_array_elements(e.previous_secrets) p)
           AS previous_secrets_until,
       CASE e.auth ->> 'type'
            WHEN 'bearer' THEN jsonb_build_object('type', 'bearer', 'token', '[redacted]')
            WHEN 'basic' THEN jsonb_build_object('type', 'basic', 'username', e.auth -> 'username',
                                                 'password', '[redacted]')
            WHEN 'api_key' THEN jsonb_build_object('type', 'api_key', 'header', e.auth -> 'header',
                                                   'key', '[redacted]')
       END AS auth,
       (SELECT coalesce(jsonb_object_agg(h.key,
                  CASE WHEN lower(h.key) IN ('authorization', 'proxy-authorization', 'cookie',
                                             'x-api-key', 'x-auth-token')
                         OR h.value @> '{"secret": true}'
                       THEN '"[redacted]"'::jsonb
                       WHEN jsonb_typeof(h.value) = 'object' THEN h.value -> 'value'
                       ELSE h.value END), '{}')
          FROM jsonb_each(e.headers) h) AS headers,
       e.retry_schedule, e.timeout, e.max_in_flight, e.rate_limit, e.ordered, e.created_at,
       e.batch_items, e.retry_jitter
  FROM webhook_endpoints e;
COMMENT ON VIEW webhook_endpoint_settings IS 'every endpoint setting, with secrets, auth values and sensitive header values shown as [redacted]: grant this, not the table';

-------------------------------------------------------------------------------
-- An open circuit probes with a due retry
-------------------------------------------------------------------------------

-- ... and the retries, per endpoint: an open circuit's probe is a due retry
-- when there is one, and walking the due index for it would pass every
-- first attempt waiting before it (the whole backlog, each probe).
CREATE INDEX webhook_deliveries_retry_due_idx
    ON webhook_deliveries (endpoint_id, next_attempt_at)
    WHERE attempts > 0 AND status = 'pending';

-------------------------------------------------------------------------------
-- Ordered lines in commit order, (tick_id, event_id): a transaction set
-- aside is fanned out beside later ones, so a delivery made later may
-- carry an earlier event
-------------------------------------------------------------------------------

-- the tick of the window that holds the event (webhook_ticks): an
-- ordered endpoint's line goes in (tick_id, event_id) order, commit
-- order, whenever the fan-out made the delivery
ALTER TABLE webhook_deliveries ADD COLUMN tick_id bigint;
-- Queued deliveries keep their order in the lines of ordered endpoints
-- (those ordered now or later), which was delivery id order: each gets a
-- tick below every real one (those start at 1), in id order.  (A delivery
-- finished before the update, and replayed to an ordered endpoint, has no
-- tick and goes first in its line.)
UPDATE webhook_deliveries SET tick_id = id - 4611686018427387904
 WHERE status IN ('pending', 'in_flight');
DROP INDEX webhook_deliveries_ordering_idx;
-- Ordered endpoints: the unfinished deliveries of each key, in commit
-- order (a delivery made later, of a transaction set aside, may carry an
-- earlier event); those made before the update from 0.1.0 and replayed
-- since (no tick) first.
CREATE INDEX webhook_deliveries_ordering_idx
    ON webhook_deliveries (endpoint_id, ordering_key, tick_id NULLS FIRST, event_id)
    WHERE ordering_key IS NOT NULL AND status IN ('pending', 'in_flight');

-------------------------------------------------------------------------------
-- The worker's statements, for the isolation tests
-------------------------------------------------------------------------------

CREATE FUNCTION webhook_statement(name text)
RETURNS text
AS 'MODULE_PATHNAME', 'webhook_statement'
LANGUAGE C STABLE STRICT
SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION webhook_statement(text) IS
  'internal: PREPARE name(types) AS <sql> for the worker''s statement called name, exactly as the library prepares it (the isolation tests run it)';

REVOKE ALL ON FUNCTION webhook_statement(text) FROM PUBLIC;

-------------------------------------------------------------------------------
-- A dropped table's registration goes with it
-------------------------------------------------------------------------------

-- A dropped table's registration goes with it: its OID may be reused, and
-- a new table under it must not inherit the registration.  Runs for every
-- command that drops something (DROP TABLE, DROP SCHEMA ... CASCADE, DROP
-- OWNED, ...), by any role: one index probe per dropped table.  Temporary
-- tables, dropped at the end of a session without a command, cannot be
-- watched.
CREATE FUNCTION webhook_forget_dropped()
RETURNS event_trigger
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    DELETE FROM @extschema@.webhook_watches w
     USING pg_event_trigger_dropped_objects() o
     WHERE o.classid = 'pg_class'::regclass AND o.objsubid = 0 AND w.tbl = o.objid;
END
$$;
COMMENT ON FUNCTION webhook_forget_dropped() IS
  'event trigger on sql_drop: removes dropped tables from webhook_watches';
CREATE EVENT TRIGGER webhook_forget_dropped ON sql_drop
    EXECUTE FUNCTION webhook_forget_dropped();
REVOKE ALL ON FUNCTION webhook_forget_dropped() FROM PUBLIC;

-------------------------------------------------------------------------------
-- The fan-out reads the log by snapshots (ticks); the fan-out queue goes
-------------------------------------------------------------------------------

-- Events already fanned out read '0' (the column's first default, which
-- rewrites nothing); those still queued are stamped '1', which the first
-- window holds (the cursor starts at '1:1:').  Events written by the 0.2.0
-- library on the old schema were queued like 0.1.0's.
ALTER TABLE @extschema@.webhook_events ADD COLUMN txid xid8 NOT NULL DEFAULT '0';
UPDATE @extschema@.webhook_events e SET txid = '1'
 WHERE e.id IN (SELECT q.event_id FROM @extschema@.webhook_fanout_queue q);
ALTER TABLE @extschema@.webhook_events ALTER COLUMN txid SET DEFAULT pg_current_xact_id();
-- The fan-out's path through the log: the events of one transaction, in id
-- order.
CREATE INDEX webhook_events_txid_idx ON webhook_events (txid, id);
COMMENT ON TABLE webhook_events IS 'the outbox: one row per published or captured event, written in the writer''s transaction and never updated';
ALTER EXTENSION webhook DROP TABLE @extschema@.webhook_fanout_queue;
DROP TABLE @extschema@.webhook_fanout_queue;

-- Ticks, as PgQ's: snapshots the worker takes when events may have been
-- committed since the last one.  The events a tick's snapshot shows
-- committed and the previous tick's does not are one window of the log;
-- the fan-out works through the windows in turn, each in id order (for the
-- events of one key, which writers lock in turn, that is commit order).
-- Windows are taken as they come, so a window holds what committed in the
-- meantime and no more however far the fan-out lags.  The fan-out removes
-- the ticks it has passed.
CREATE TABLE webhook_ticks (
    id       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    snapshot pg_snapshot NOT NULL,
    taken_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE webhook_ticks IS 'snapshots that bound the fan-out''s windows of webhook_events; the fan-out removes those it has passed';

-- Where the fan-out stands: every event whose transaction done shows
-- committed is fanned out.  While a window is open, upto is its snapshot
-- (that of tick tick_id), hi_id its highest event id, and its events with
-- an id below next_id are fanned out too; once it is done, done becomes
-- upto.  One row, made by the first fan-out.  It is dumped with the
-- events: a restore (whose transaction ids are another cluster's) is
-- recognised by the row naming another installation and having been
-- written by the transaction that created the extension, and the fan-out
-- then stamps the restored events it had not taken '1', the others '0',
-- and starts again from nothing ('1:1:', in which 0 is committed and 1 is
-- not).
CREATE TABLE webhook_fanout_cursor (
    only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    tick_id  bigint NOT NULL,
    done     pg_snapshot NOT NULL,
    upto     pg_snapshot,
    next_id  bigint,
    hi_id    bigint,
    -- who wrote the row: '<system identifier>/<database OID>/<extension OID>'
    installation text NOT NULL,
    CHECK ((upto IS NULL) = (next_id IS NULL) AND (upto IS NULL) = (hi_id IS NULL))
);
COMMENT ON TABLE webhook_fanout_cursor IS 'how far the fan-out has read webhook_events: a snapshot, and a position in the window after it';

-- Transactions set aside: when a window opens, each of its transactions
-- of 50 events or more (a bulk import, or a chunk of one) leaves the
-- window and is fanned out on its own, in id order, beside the windows;
-- the events committed after it wait for a step of the fan-out, not for
-- it.  Its events from next_id on are still to be taken;
-- hi_id is its highest; tick_id is the tick of the window it was set aside
-- from, which its deliveries carry (an ordered endpoint's line goes in
-- (tick_id, event_id) order: commit order, wherever the fan-out made the
-- delivery).  Once taken (next_id past hi_id), the row stays until the
-- next window opens: the window that set it aside must keep leaving it
-- out.  Dumped with the cursor.
CREATE TABLE webhook_fanout_aside (
    txid    xid8 PRIMARY KEY,
    next_id bigint NOT NULL,
    hi_id   bigint NOT NULL,
    tick_id bigint NOT NULL
);
COMMENT ON TABLE webhook_fanout_aside IS 'large transactions the fan-out takes on their own, beside its windows, and how far it has taken each';
-- Those with events left, in the order an ordered endpoint's line goes:
-- the fan-out takes them in turn, and the ordered claim holds a head
-- behind the first; the rows of those done, kept until the next window
-- opens, may be thousands (an import committed in small chunks).
CREATE INDEX webhook_fanout_aside_left_idx ON webhook_fanout_aside (tick_id, next_id)
    WHERE next_id <= hi_id;
-- ... and those done, which each window that opens deletes: without it,
-- every window would read the rows with events left too.
CREATE INDEX webhook_fanout_aside_done_idx ON webhook_fanout_aside (txid)
    WHERE next_id > hi_id;

-- The stretches of transaction ids from from_ up to upto's xmax that hold
-- no transaction upto shows running: each running transaction's ids are
-- left out by the bounds themselves, so that a walk of
-- webhook_events_txid_idx through them never steps over the rows a long
-- import has written and not yet committed.
CREATE FUNCTION webhook_log_ranges(from_ xid8, upto pg_snapshot, OUT lo xid8, OUT hi xid8)
RETURNS SETOF record
LANGUAGE sql IMMUTABLE PARALLEL SAFE
BEGIN ATOMIC
    WITH p AS (SELECT x FROM pg_snapshot_xip(upto) AS x WHERE x >= from_),
         -- each gap ends at the next running transaction (lead), or at xmax
         b AS (SELECT from_ AS lo, (SELECT min(p.x) FROM p) AS hi
               UNION ALL
               SELECT (((p.x)::text)::bigint + 1)::text::xid8, lead(p.x) OVER (ORDER BY p.x) FROM p),
         r AS (SELECT b.lo, coalesce(b.hi, pg_snapshot_xmax(upto)) AS hi FROM b)
    SELECT r.lo, r.hi FROM r WHERE r.lo < r.hi;
END;
COMMENT ON FUNCTION webhook_log_ranges(xid8, pg_snapshot) IS
  'internal: the stretches [lo, hi) of transaction ids from from_ to the snapshot''s xmax with no transaction it shows running';

-- The rule of what the fan-out has taken, from its cursor's columns (no
-- cursor yet: only the events stamped '0') and, for a transaction set
-- aside, its next_id (aside_next).  A pure function, inlined where it is
-- called: webhook_fanned_out and the lag of webhook_endpoint_health.
CREATE FUNCTION webhook_taken(txid xid8, id bigint, done pg_snapshot, upto pg_snapshot, next_id bigint,
                              aside_next bigint)
RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN coalesce(id < aside_next,
                pg_visible_in_snapshot(txid, coalesce(done, '1:1:'))
                OR coalesce(pg_visible_in_snapshot(txid, upto) AND id < next_id, false));
COMMENT ON FUNCTION webhook_taken(xid8, bigint, pg_snapshot, pg_snapshot, bigint, bigint) IS
  'internal: whether a fan-out cursor at (done, upto, next_id) has taken the event of this transaction id and id; aside_next: the transaction is set aside, taken up to there';

CREATE FUNCTION webhook_fanned_out(txid xid8, id bigint)
RETURNS boolean
LANGUAGE sql STABLE PARALLEL SAFE
RETURN (SELECT webhook_taken(webhook_fanned_out.txid, webhook_fanned_out.id, k.done, k.upto, k.next_id,
                             (SELECT a.next_id FROM webhook_fanout_aside a WHERE a.txid = webhook_fanned_out.txid))
          FROM (VALUES (1)) v LEFT JOIN webhook_fanout_cursor k ON true);
COMMENT ON FUNCTION webhook_fanned_out(xid8, bigint) IS
  'whether the fan-out has taken the event of this transaction id and id';
SELECT pg_catalog.pg_extension_config_dump('webhook_fanout_cursor', '');
SELECT pg_catalog.pg_extension_config_dump('webhook_fanout_aside', '');
-- the deliveries carry tick ids: after a restore, ticks go on above theirs
SELECT pg_catalog.pg_extension_config_dump(pg_catalog.pg_get_serial_sequence('webhook_ticks', 'id'), '');
REVOKE ALL ON FUNCTION webhook_fanned_out(xid8, bigint) FROM PUBLIC;
CREATE OR REPLACE FUNCTION webhook_fanout(lim integer DEFAULT 1000, wait boolean DEFAULT true)
RETURNS bigint
AS 'MODULE_PATHNAME', 'webhook_fanout'
LANGUAGE C VOLATILE STRICT
SET search_path = pg_catalog, pg_temp
-- its statements are planned for each call: as the worker's, never compiled
SET jit = off;
COMMENT ON FUNCTION webhook_fanout(integer, boolean) IS
  'creates the deliveries of up to lim committed events, in the order of the log, one fan-out at a time (without wait: -1 while another runs); returns the events taken; the worker and its fan-out helper run the same statement';

-------------------------------------------------------------------------------
-- Consumer lag in webhook_endpoint_health; the subscription rule in one place
-------------------------------------------------------------------------------

-- Whether a subscription (event_type pattern and filter) takes an event of
-- this type and data: the pattern '*', the type itself, or 'prefix.*' for
-- the types that start with 'prefix.'; and the filter, if any, contained
-- in the data.  The fan-out and the lag of webhook_endpoint_health ask this
-- one rule (inlined: data is read only when there is a filter).
CREATE FUNCTION webhook_subscribed(pattern text, filter jsonb, type text, data json)
RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN (pattern = '*' OR pattern = type OR (pattern LIKE '%.*' AND starts_with(type, left(pattern, -1))))
       AND (filter IS NULL OR data::jsonb @> filter);
COMMENT ON FUNCTION webhook_subscribed(text, jsonb, text, json) IS
  'internal: whether a subscription with this event_type pattern and filter takes an event of this type and data';

CREATE OR REPLACE VIEW webhook_endpoint_health WITH (security_barrier) AS
-- the events committed that the fan-out has not taken yet: those of the
-- transactions the cursor's snapshot shows running that have committed
-- since, and those after it, found as the tick finds them (the index on
-- txid, never stepping over a running transaction's rows), then the rule;
-- and the rest of the transactions set aside
WITH c AS MATERIALIZED (
    SELECT k.done, k.upto, k.next_id, coalesce(k.done, '1:1:') AS since,
           pg_current_snapshot() AS now, pg_current_xact_id_if_assigned() AS own
      FROM (VALUES (1)) v LEFT JOIN webhook_fanout_cursor k ON true
), waiting AS MATERIALIZED (
    SELECT ev.type, ev.data, ev.occurred_at
      FROM c, webhook_log_ranges(pg_snapshot_xmax(c.since), c.now) g, webhook_events ev
     WHERE ev.txid >= g.lo AND ev.txid < g.hi AND ev.txid IS DISTINCT FROM c.own
       AND NOT webhook_taken(ev.txid, ev.id, c.done, c.upto, c.next_id,
                             (SELECT a.next_id FROM webhook_fanout_aside a WHERE a.txid = ev.txid))
    UNION ALL
    SELECT ev.type, ev.data, ev.occurred_at
      FROM c, pg_snapshot_xip(c.since) AS s(txid), webhook_events ev
     WHERE pg_visible_in_snapshot(s.txid, c.now) AND ev.txid = s.txid AND ev.txid IS DISTINCT FROM c.own
       AND NOT webhook_taken(ev.txid, ev.id, c.done, c.upto, c.next_id,
                             (SELECT a.next_id FROM webhook_fanout_aside a WHERE a.txid = ev.txid))
    UNION ALL
    SELECT ev.type, ev.data, ev.occurred_at
      FROM c, webhook_fanout_aside a, webhook_events ev
     WHERE pg_visible_in_snapshot(a.txid, c.since) AND ev.txid = a.txid AND ev.id >= a.next_id)
SELECT e.id AS endpoint_id,
       e.name,
       e.url,
       e.state,
       coalesce(d.pending, 0)   AS pending,
       coalesce(d.in_flight, 0) AS in_flight,
       coalesce(d.delivered, 0) AS delivered,
       coalesce(d.dead, 0)      AS dead,
       now() - d.oldest_pending AS oldest_pending_age,
       (SELECT a.started_at FROM webhook_attempts a
         WHERE a.endpoint_id = e.id AND a.ok ORDER BY a.id DESC LIMIT 1) AS last_success_at,
       lf.started_at AS last_failure_at,
       lf.error      AS last_error,
       h.success_rate AS success_rate_1h,
       round(h.p50_ms::numeric, 1)::float8 AS p50_ms_1h,
       round(h.p95_ms::numeric, 1)::float8 AS p95_ms_1h,
       e.state_reason,
       e.state_since,
       e.consecutive_failures,
       CASE e.state
           WHEN 'active' THEN d.next_due
           WHEN 'circuit_open' THEN greatest(d.next_due, e.circuit_until)
       END AS next_attempt_at,
       -- deliveries are due but the endpoint has max_in_flight requests out
       coalesce(e.state = 'active' AND d.in_flight >= e.max_in_flight AND d.next_due <= now(), false)
           AS throttled,
       -- consumer lag: the events committed that the endpoint has still to
       -- receive (deliveries pending or in flight, and events the fan-out
       -- has not taken yet that it subscribes to), and how long since the
       -- oldest of them occurred
       coalesce(d.pending, 0) + coalesce(d.in_flight, 0) + w.events AS lag_events,
       coalesce(now() - least(o.oldest, w.oldest), interval '0') AS lag
  FROM webhook_endpoints e
  LEFT JOIN LATERAL (
        SELECT count(*) FILTER (WHERE x.status = 'pending')   AS pending,
               count(*) FILTER (WHERE x.status = 'in_flight') AS in_flight,
               count(*) FILTER (WHERE x.status = 'delivered') AS delivered,
               count(*) FILTER (WHERE x.status = 'dead')      AS dead,
               min(x.created_at) FILTER (WHERE x.status = 'pending') AS oldest_pending,
               min(x.next_attempt_at) FILTER (WHERE x.status = 'pending') AS next_due
          FROM webhook_deliveries x WHERE x.endpoint_id = e.id) d ON true
  LEFT JOIN LATERAL (
        SELECT min(ev.occurred_at) AS oldest
          FROM webhook_deliveries x JOIN webhook_events ev ON ev.id = x.event_id
         WHERE x.endpoint_id = e.id AND x.status IN ('pending', 'in_flight')) o ON true
  CROSS JOIN LATERAL (
        SELECT count(*) AS events, min(u.occurred_at) AS oldest
          FROM waiting u
         WHERE EXISTS (SELECT FROM webhook_subscriptions s
                        WHERE s.endpoint_id = e.id
                          AND webhook_subscribed(s.event_type, s.filter, u.type, u.data))) w
  LEFT JOIN LATERAL (
        SELECT a.started_at,
               coalesce(a.error, 'HTTP ' || a.status_code) AS error
          FROM webhook_attempts a
         WHERE a.endpoint_id = e.id AND NOT a.ok
         ORDER BY a.id DESC LIMIT 1) lf ON true
  LEFT JOIN LATERAL (
        SELECT round(avg(a.ok::int)::numeric, 4) AS success_rate,
               percentile_cont(0.5)  WITHIN GROUP (ORDER BY a.duration_ms) AS p50_ms,
               percentile_cont(0.95) WITHIN GROUP (ORDER BY a.duration_ms) AS p95_ms
          FROM webhook_attempts a
         WHERE a.endpoint_id = e.id AND a.started_at > now() - interval '1 hour') h ON true;
COMMENT ON VIEW webhook_endpoint_health IS 'one row per endpoint: state, queue counts, last success and failure, last-hour success rate and latency, consumer lag';


-------------------------------------------------------------------------------
-- The worker's claims cost the endpoints with work, not every endpoint
-------------------------------------------------------------------------------

-- The open circuits, for the worker's probe and its look-up of the next
-- probe: a scan of these, not of every endpoint.
CREATE INDEX webhook_endpoints_circuit_idx
    ON webhook_endpoints (circuit_until) WHERE state = 'circuit_open';

-- The subscription patterns that can take an event of this type: "*", the
-- type itself and each "<prefix>.*" of it.  The fan-out finds a type's
-- subscriptions through them (webhook_subscriptions_type_idx) instead of
-- testing every subscription; webhook_subscribed still decides.
CREATE FUNCTION webhook_type_patterns(type text)
RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN ARRAY['*', type]
       || ARRAY(SELECT array_to_string(p.s[1:i], '.') || '.*'
                  FROM (SELECT string_to_array(type, '.') AS s) p,
                       generate_series(1, cardinality(p.s) - 1) i);
COMMENT ON FUNCTION webhook_type_patterns(text) IS
  'internal: the subscription patterns that can take an event of this type ("*", the type, each "<prefix>.*")';

-- The fan-out looks up the subscriptions of each type it meets here.
CREATE INDEX webhook_subscriptions_type_idx ON webhook_subscriptions (event_type);
