\set SHOW_CONTEXT never
CREATE TABLE orders (
    id       bigint PRIMARY KEY,
    customer text NOT NULL,
    total    numeric(10,2),
    paid     boolean NOT NULL DEFAULT false,
    tags     text[],
    meta     jsonb,
    card     text,
    placed   date,
    at       timestamptz
);
SELECT webhook_create_endpoint('orders', 'https://orders.example.com/', event_types => '{orders.*}') AS ep \gset
SELECT coalesce(max(id), 0) AS e0 FROM webhook_events \gset
SELECT webhook_watch('orders', exclude_columns => '{card}');

INSERT INTO orders VALUES (1, 'ada', 42.50, false, '{a,b}', '{"k": [1, 2]}', '4111-1111', '2026-01-02', '2026-01-02 03:04:05.678+00');
INSERT INTO orders (id, customer) VALUES (2, E'q"uote\\back');
UPDATE orders SET total = 43, paid = true WHERE id = 1;
-- changes only an excluded column: no event
UPDATE orders SET card = '5500-0000' WHERE id = 1;
-- changes nothing at all: no event
UPDATE orders SET customer = customer WHERE id = 1;
DELETE FROM orders WHERE id = 2;
SELECT type, jsonb_pretty(data::jsonb) FROM webhook_events WHERE id > :e0 ORDER BY id;
-- the excluded column never left the table
SELECT count(*) AS leaked FROM webhook_events WHERE data::text LIKE '%4111%' OR data::text LIKE '%5500%';

-- A rolled-back write emits nothing
BEGIN;
INSERT INTO orders (id, customer) VALUES (3, 'rolled back');
ROLLBACK;
SELECT count(*) FROM webhook_events WHERE data::text LIKE '%rolled back%';

-- Savepoints: the events of a rolled-back statement go, the others stay, in order
BEGIN;
INSERT INTO orders (id, customer) VALUES (20, 'kept');
SAVEPOINT s;
INSERT INTO orders (id, customer) VALUES (21, 'rolled back');
ROLLBACK TO SAVEPOINT s;
INSERT INTO orders (id, customer) VALUES (22, 'kept too'), (23, 'and this');
COMMIT;
SELECT data->'new'->>'customer' AS customer FROM webhook_events
 WHERE id > :e0 AND (data->'new'->>'id')::int >= 20 ORDER BY id;

-- A large statement is written in chunks and loses nothing
BEGIN;
INSERT INTO orders (id, customer) SELECT i, 'bulk ' || i FROM generate_series(1000, 26000) i;
SELECT pg_current_xact_id() AS bulk_txid \gset
COMMIT;
SELECT count(*), count(DISTINCT data->'new'->>'id') FROM webhook_events WHERE id > :e0 AND data->'new'->>'customer' LIKE 'bulk %';
-- every captured event carries its writer's transaction id, which the
-- fan-out's windows go by
SELECT count(*) AS other_txid FROM webhook_events e WHERE e.id > :e0
   AND data->'new'->>'customer' LIKE 'bulk %' AND e.txid <> :'bulk_txid';
DELETE FROM orders WHERE id >= 1000;
DELETE FROM webhook_events WHERE id > :e0 AND type = 'orders.deleted' AND (data->'old'->>'id')::int >= 1000;
DELETE FROM webhook_events WHERE id > :e0 AND data->'new'->>'customer' LIKE 'bulk %';

-- Only listed columns, custom prefix
SELECT webhook_watch('orders', event_prefix => 'shop.order', columns => '{id,paid}');
UPDATE orders SET total = 1 WHERE id = 1;
UPDATE orders SET paid = false WHERE id = 1;
SELECT type, data FROM webhook_events WHERE type LIKE 'shop.%' ORDER BY id;

-- Fan-out matches subscriptions: orders.* receives orders.*, not shop.*.
-- The events deleted by hand above are simply not in the log any more.
SELECT webhook_fanout(100000) > 0 AS fanned_out;
SELECT count(*) AS not_fanned_out FROM webhook_events e WHERE NOT webhook_fanned_out(e.txid, e.id);
SELECT ev.type, count(*) FROM webhook_deliveries d JOIN webhook_events ev ON ev.id = d.event_id
 WHERE d.endpoint_id = :ep GROUP BY 1 ORDER BY 1;

-- Bad input
SELECT webhook_watch(NULL);
SELECT webhook_watch('orders', columns => '{id}', exclude_columns => '{card}');
SELECT webhook_watch('orders', columns => '{nope}');
SELECT webhook_watch('orders', columns => '{}');
SELECT webhook_watch('orders', event_prefix => 'bad prefix');
SELECT webhook_watch('orders', event_prefix => 'orders.*');
CREATE VIEW orders_v AS SELECT * FROM orders;
SELECT webhook_watch('orders_v');
SELECT webhook_watch('no_such_table');
CREATE TEMPORARY TABLE temp_orders (id int);
SELECT webhook_watch('temp_orders');
DROP TABLE temp_orders;
CREATE TABLE "Bad Name" (id int);
SELECT webhook_watch('"Bad Name"');
SELECT webhook_watch('"Bad Name"', event_prefix => 'bad_name');
INSERT INTO "Bad Name" VALUES (1);
SELECT type, data FROM webhook_events WHERE type LIKE 'bad_name.%';

-- Unwatch
SELECT webhook_unwatch('orders');
SELECT webhook_unwatch('orders');
INSERT INTO orders (id, customer) VALUES (9, 'unwatched');
SELECT count(*) FROM webhook_events WHERE data::text LIKE '%unwatched%';

-- The triggers cannot be misused
SELECT webhook_watch('orders');
-- without the statement trigger the events are still written at the
-- statement's end
DROP TRIGGER webhook_capture_flush ON orders;
INSERT INTO orders (id, customer) VALUES (11, 'x');
SELECT count(*) FROM webhook_events WHERE type = 'orders.created' AND data->'new'->>'id' = '11';
SELECT webhook_unwatch('orders');
CREATE TRIGGER wrong BEFORE INSERT ON orders FOR EACH ROW EXECUTE FUNCTION webhook_capture('x', 'all');
INSERT INTO orders (id, customer) VALUES (10, 'x');
DROP TRIGGER wrong ON orders;
-- captured events skip webhook_events' CHECK constraints: a trigger attached
-- by hand is refused before its prefix is even read
CREATE TRIGGER wrong AFTER INSERT ON orders FOR EACH ROW EXECUTE FUNCTION webhook_capture('Bad Prefix', 'all');
INSERT INTO orders (id, customer) VALUES (10, 'x');
DROP TRIGGER wrong ON orders;

DROP TABLE orders CASCADE;
DROP TABLE "Bad Name";
SELECT webhook_delete_endpoint(:ep);

-- Privileges: a writer with no rights on the webhook tables still emits
-- events.  A table owner may attach the capture trigger (EXECUTE is
-- PUBLIC's, as adding a partition to a watched table needs it), but it
-- runs only where webhook_watch installed it: no forged events.
CREATE ROLE webhook_writer;
CREATE TABLE writer_orders (id int PRIMARY KEY, note text);
SELECT webhook_watch('writer_orders');
GRANT INSERT ON writer_orders TO webhook_writer;
CREATE TABLE writer_own (id int);
ALTER TABLE writer_own OWNER TO webhook_writer;
CREATE TABLE writer_mine (id int);
ALTER TABLE writer_mine OWNER TO webhook_writer;
SELECT webhook_watch('writer_mine');
SET ROLE webhook_writer;
INSERT INTO writer_orders VALUES (1, 'by a plain role');
SELECT count(*) FROM webhook_events;
CREATE TRIGGER forge AFTER INSERT ON writer_own
    FOR EACH ROW EXECUTE FUNCTION webhook_capture('invoice', 'all');
CREATE TRIGGER forge_flush AFTER INSERT ON writer_own
    FOR EACH STATEMENT EXECUTE FUNCTION webhook_capture_flush();
INSERT INTO writer_own VALUES (1);
-- nor under the name webhook_watch gives it
DROP TRIGGER forge ON writer_own;
CREATE TRIGGER webhook_capture AFTER INSERT ON writer_own
    FOR EACH ROW EXECUTE FUNCTION webhook_capture('invoice', 'all');
INSERT INTO writer_own VALUES (1);
-- nor by registering it (row security: only its own tables, and no grant)
INSERT INTO webhook_watches (tbl, trigger_args) VALUES ('writer_own', '{invoice,all}');
-- the owner of a watched table cannot change what its trigger emits
INSERT INTO writer_mine VALUES (1);
DROP TRIGGER webhook_capture ON writer_mine;
CREATE TRIGGER webhook_capture AFTER INSERT ON writer_mine
    FOR EACH ROW EXECUTE FUNCTION webhook_capture('invoice', 'all');
INSERT INTO writer_mine VALUES (2);
RESET ROLE;
SELECT type, data FROM webhook_events WHERE type IN ('writer_orders.created', 'writer_mine.created', 'invoice.created');
-- an administrator sees every capture trigger, and which capture accepts
SELECT table_name, owner, event_prefix, columns_mode, trigger_name, flush_triggers, registered
  FROM webhook_watched_tables WHERE table_name::text LIKE 'writer%' ORDER BY table_name::text;
-- and webhook_unwatch removes any of them, whatever their names
SELECT webhook_unwatch('writer_own');
SELECT webhook_unwatch('writer_mine');
SELECT tgname FROM pg_trigger WHERE tgrelid IN ('writer_own'::regclass, 'writer_mine'::regclass);
SELECT count(*) FROM webhook_watches WHERE tbl IN ('writer_own'::regclass, 'writer_mine'::regclass);
DROP TABLE writer_orders, writer_own, writer_mine;

-- The owner of a watched partitioned table adds, attaches and detaches
-- partitions (the cloned trigger needs EXECUTE on webhook_capture), and
-- the new partitions capture.
CREATE TABLE inv (id int, region text) PARTITION BY LIST (region);
ALTER TABLE inv OWNER TO webhook_writer;
GRANT CREATE ON SCHEMA public TO webhook_writer;
SELECT webhook_watch('public.inv');
SET ROLE webhook_writer;
CREATE TABLE public.inv_us PARTITION OF public.inv FOR VALUES IN ('us');
CREATE TABLE inv_eu (id int, region text);
ALTER TABLE inv ATTACH PARTITION inv_eu FOR VALUES IN ('eu');
INSERT INTO inv VALUES (1, 'us'), (2, 'eu');
INSERT INTO inv_us VALUES (3, 'us');
ALTER TABLE inv DETACH PARTITION inv_eu;
INSERT INTO inv_eu VALUES (4, 'eu');
RESET ROLE;
SELECT type, data->>'table' AS tbl, data->'new'->>'id' AS id FROM webhook_events
 WHERE type LIKE 'inv.%' ORDER BY id;
SELECT table_name, owner, partitions, registered FROM webhook_watched_tables WHERE table_name = 'inv'::regclass;
DROP TABLE inv, inv_eu;
REVOKE CREATE ON SCHEMA public FROM webhook_writer;
DROP ROLE webhook_writer;

-- Partitioned tables: writes through the parent and straight into a
-- partition (even one attached after webhook_watch) are all captured.
CREATE TABLE parted (id int, region text) PARTITION BY LIST (region);
CREATE TABLE parted_eu PARTITION OF parted FOR VALUES IN ('eu');
SELECT webhook_watch('parted');
CREATE TABLE parted_us PARTITION OF parted FOR VALUES IN ('us');
INSERT INTO parted VALUES (1, 'eu'), (2, 'us');
INSERT INTO parted_eu VALUES (3, 'eu');
INSERT INTO parted_us VALUES (4, 'us');
BEGIN;
INSERT INTO parted_us VALUES (5, 'us');
SAVEPOINT s;
INSERT INTO parted_us VALUES (6, 'us');
ROLLBACK TO s;
COMMIT;
SELECT type, data->>'table' AS tbl, data->'new'->>'id' AS id FROM webhook_events
 WHERE type LIKE 'parted.%' ORDER BY id;
SELECT webhook_unwatch('parted');
SELECT count(*) AS triggers_left FROM pg_trigger WHERE tgname LIKE 'webhook%' AND tgrelid::regclass::text LIKE 'parted%';
DROP TABLE parted;

-- Only a partition watched, written through its unwatched parent: each
-- statement's events are written at its end, so a later ROLLBACK TO
-- SAVEPOINT cannot take them along.
CREATE TABLE parted2 (id int, region text) PARTITION BY LIST (region);
CREATE TABLE parted2_eu PARTITION OF parted2 FOR VALUES IN ('eu');
SELECT webhook_watch('parted2_eu', 'p2');
BEGIN;
INSERT INTO parted2 VALUES (1, 'eu');
SAVEPOINT s;
INSERT INTO parted2 VALUES (2, 'eu');
ROLLBACK TO s;
COMMIT;
SELECT type, data->'new'->>'id' AS id FROM webhook_events WHERE type LIKE 'p2.%' ORDER BY id;
DROP TABLE parted2;

-- Subtransactions inside one statement: what an exception block rolls back
-- is never sent; what it keeps, and what the outer level captured, is.
CREATE TABLE sub_t (id int PRIMARY KEY);
SELECT webhook_watch('sub_t');
CREATE FUNCTION sub_try(i int) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    BEGIN
        INSERT INTO sub_t VALUES (i);
        IF i % 2 = 0 THEN
            RAISE EXCEPTION 'even';
        END IF;
    EXCEPTION WHEN raise_exception THEN
        NULL;
    END;
END $$;
CREATE TABLE sub_src (id int);
CREATE FUNCTION sub_src_trg() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM sub_try(NEW.id + 100);
    RETURN NULL;
END $$;
-- our row trigger on sub_t buffers, then sub_src's trigger opens
-- subtransactions that capture too
CREATE TRIGGER sub_src_trg AFTER INSERT ON sub_src FOR EACH ROW EXECUTE FUNCTION sub_src_trg();
SELECT sub_try(1), sub_try(2), sub_try(3);
WITH a AS (INSERT INTO sub_t VALUES (10), (11) RETURNING id)
INSERT INTO sub_src SELECT id FROM a;
SELECT data->'new'->>'id' AS id FROM webhook_events WHERE type = 'sub_t.created' ORDER BY (data->'new'->>'id')::int;
DROP TABLE sub_t, sub_src;
DROP FUNCTION sub_try(int), sub_src_trg();

-- json columns are embedded as given, but text jsonb cannot hold (\u0000)
-- would fail the fan-out's filter match: the write is refused instead,
-- naming the column; the same value in a jsonb column is refused by jsonb
CREATE TYPE json_pair AS (label text, doc json);
CREATE TABLE json_t (id int PRIMARY KEY, doc json, docs json[], pairs json_pair[]);
INSERT INTO json_t VALUES (0, '"\u0000 before the watch"');
SELECT webhook_watch('json_t');
\set SHOW_CONTEXT errors
INSERT INTO json_t VALUES (1, '{"a": "x\u0000y"}');
INSERT INTO json_t VALUES (2, '{}', ARRAY['"\u0000"'::json]);
INSERT INTO json_t VALUES (3, '{}', NULL, ARRAY[ROW('x', '"\u0000"')::json_pair]);
-- a row that held such a value before the watch: its old image is refused
-- too; unwatch, change it, and watch again
UPDATE json_t SET doc = '"fixed"' WHERE id = 0;
\set SHOW_CONTEXT never
SELECT webhook_unwatch('json_t');
UPDATE json_t SET doc = '"fixed"' WHERE id = 0;
SELECT webhook_watch('json_t');
INSERT INTO json_t VALUES (4, '{"b":  "caf\u00e9"}', ARRAY['1'::json], ARRAY[ROW('y', '[1,  2]')::json_pair]);
SELECT data->'new' AS stored FROM webhook_events WHERE type LIKE 'json_t.%' ORDER BY id;
SELECT webhook_unwatch('json_t');
DROP TABLE json_t;
DROP TYPE json_pair;

-- Two-phase commit: the events are written before PREPARE TRANSACTION and
-- become visible with COMMIT PREPARED; ROLLBACK PREPARED leaves none.
-- (Each statement's end writes what it captured, so nothing is left for
-- the flush before PREPARE, a safety net like the one before COMMIT.)
CREATE TABLE tpc_t (id int PRIMARY KEY);
SELECT webhook_watch('tpc_t');
BEGIN;
INSERT INTO tpc_t VALUES (1);
SELECT webhook_publish('tpc.published', '{"id": 1}') IS NOT NULL AS published;
PREPARE TRANSACTION 'webhook_tpc_1';
BEGIN;
INSERT INTO tpc_t VALUES (2);
PREPARE TRANSACTION 'webhook_tpc_2';
SELECT count(*) AS before_commit FROM webhook_events WHERE type LIKE 'tpc%';
COMMIT PREPARED 'webhook_tpc_1';
ROLLBACK PREPARED 'webhook_tpc_2';
SELECT type, data->'new' AS new FROM webhook_events WHERE type LIKE 'tpc%' ORDER BY id;
SELECT webhook_unwatch('tpc_t');
DROP TABLE tpc_t;
-- endpoint changes cannot be prepared: no wake-up would reach the worker
-- at COMMIT PREPARED, which would keep the old settings
BEGIN;
SELECT webhook_create_endpoint('tpc', 'https://tpc.example.com/') IS NOT NULL AS created;
PREPARE TRANSACTION 'webhook_tpc_3';
SELECT count(*) AS prepared FROM pg_prepared_xacts WHERE gid = 'webhook_tpc_3';
SELECT count(*) AS endpoints FROM webhook_endpoints WHERE name = 'tpc';

-- A dropped table leaves no registration behind, however it was dropped:
-- its OID may be reused by a table that must not inherit it
CREATE SCHEMA drop_s;
CREATE TABLE drop_s.a (id int);
CREATE TABLE drop_b (id int);
CREATE TABLE drop_c (id int);
CREATE ROLE webhook_dropper;
ALTER TABLE drop_b OWNER TO webhook_dropper;
SELECT webhook_watch('drop_s.a'), webhook_watch('drop_b'), webhook_watch('drop_c');
SELECT count(*) AS registered FROM webhook_watches WHERE tbl::oid IN ('drop_s.a'::regclass, 'drop_b'::regclass, 'drop_c'::regclass);
SELECT 'drop_s.a'::regclass::oid AS a_oid, 'drop_b'::regclass::oid AS b_oid, 'drop_c'::regclass::oid AS c_oid \gset
ALTER TABLE drop_c DROP COLUMN id;
SELECT count(*) AS kept_after_drop_column FROM webhook_watches WHERE tbl = :c_oid;
DROP SCHEMA drop_s CASCADE;
-- by its owner, who has no rights on webhook_watches
SET ROLE webhook_dropper;
DROP TABLE drop_b;
RESET ROLE;
DROP TABLE drop_c;
DROP ROLE webhook_dropper;
SELECT count(*) AS left_behind FROM webhook_watches WHERE tbl::oid IN (:a_oid, :b_oid, :c_oid);
