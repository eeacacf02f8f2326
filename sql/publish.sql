\set SHOW_CONTEXT never
SELECT webhook_create_endpoint('all', 'https://all.example.com/') AS e_all \gset
SELECT webhook_create_endpoint('orders', 'https://orders.example.com/', event_types => '{orders.*}') AS e_orders \gset
SELECT webhook_create_endpoint('paid', 'https://paid.example.com/', event_types => '{orders.paid,invoices.paid}') AS e_paid \gset

SELECT webhook_publish('orders.paid', '{"order": 1}') AS ev1 \gset
SELECT webhook_publish('orders.items.added', '{"order": 1}') AS ev2 \gset
SELECT webhook_publish('invoices.paid', '{"invoice": 7}') AS ev3 \gset
SELECT webhook_publish('ordersx.paid', '{}') AS ev4 \gset
-- not fanned out until the worker (here: we) runs webhook_fanout
SELECT count(*) FROM webhook_deliveries;
SELECT webhook_fanout(0);
SELECT webhook_fanout(-1);
SELECT webhook_fanout();
SELECT webhook_fanout();
SELECT ev.type, e.name, d.status, d.attempts
  FROM webhook_deliveries d JOIN webhook_events ev ON ev.id = d.event_id
  JOIN webhook_endpoints e ON e.id = d.endpoint_id
 ORDER BY ev.id, e.name;

-- Idempotency: the same key with the same event returns the first event
-- and enqueues nothing (the same data written otherwise is the same data)
SELECT webhook_publish('orders.paid', '{"order": 2, "total": 5}', 'order-2-paid') AS key_ev \gset
SELECT webhook_publish('orders.paid', '{"total":5,"order":2}', 'order-2-paid') = :key_ev AS same_id;
SELECT webhook_publish_json('orders.paid', '{ "order" : 2, "total" : 5 }', 'order-2-paid') = :key_ev AS same_id_json;
SELECT count(*), min(data::text) FROM webhook_events WHERE idempotency_key = 'order-2-paid';
-- ... with another type or other data it is refused, showing neither
\set VERBOSITY verbose
SELECT webhook_publish('orders.paid', '{"order": 99}', 'order-2-paid');
SELECT webhook_publish('billing.refund_issued', '{"order": 2, "total": 5}', 'order-2-paid');
\set VERBOSITY default
-- ... and keys are each role's own: another role can neither squat nor
-- probe them (the issue's attack: a forged event first, under the
-- application's future key)
CREATE ROLE webhook_app;
CREATE ROLE webhook_squatter;
GRANT EXECUTE ON FUNCTION webhook_publish(text, jsonb, text, text),
                          webhook_publish_json(text, json, text, text) TO webhook_app, webhook_squatter;
SET ROLE webhook_squatter;
SELECT webhook_publish('billing.refund_issued', '{"forged": true}', 'order-42-paid') AS forged \gset
SELECT webhook_publish('orders.paid', '{"order": 2, "total": 5}', 'order-2-paid') <> :key_ev AS not_probed;
RESET ROLE;
SET ROLE webhook_app;
SELECT webhook_publish('orders.paid', '{"order": 42}', 'order-42-paid') AS app42 \gset
SELECT :app42 <> :forged AS not_squatted;
SELECT webhook_publish('orders.paid', '{"order": 42}', 'order-42-paid') = :app42 AS same_again;
RESET ROLE;
SELECT k.publisher, k.idempotency_key, e.type, e.data::text
  FROM webhook_idempotency_keys k JOIN webhook_events e ON e.id = k.event_id
 WHERE k.idempotency_key IN ('order-42-paid', 'order-2-paid')
 ORDER BY k.publisher, k.idempotency_key;
DROP OWNED BY webhook_app, webhook_squatter;
DROP ROLE webhook_app, webhook_squatter;

-- Exact JSON: webhook_publish_json stores the text as given (key order,
-- spacing, duplicate keys, escapes, numbers jsonb would change), while
-- webhook_publish takes jsonb, untyped literals and jsonb expressions alike
SELECT webhook_publish_json('forms.submitted',
    '{"zeta": 1,  "alpha": "caf\u00e9",   "n": 12345678901234567890.000000000000000001, "zeta": 2, "f": 1.50E+3}') AS exact \gset
SELECT data::text FROM webhook_events WHERE id = :exact;
SELECT webhook_publish('forms.submitted', '{"zeta": 1,  "alpha": "caf\u00e9", "f": 1.50E+3}') AS normal \gset
SELECT data::text FROM webhook_events WHERE id = :normal;
SELECT webhook_publish('forms.submitted', jsonb_build_object('b', 1, 'a', 2)) AS built \gset
SELECT data::text FROM webhook_events WHERE id = :built;
SELECT webhook_publish_json('forms.submitted', json_build_object('b', 1, 'a', 2)) AS built_json \gset
SELECT data::text FROM webhook_events WHERE id = :built_json;
SELECT webhook_publish_json('forms.submitted', '{"a": 1');
-- valid json that jsonb cannot hold: the fan-out could not match filters
SELECT webhook_publish_json('forms.submitted', '{"a": "x\u0000y"}');
SELECT webhook_publish_json('forms.submitted', NULL);

-- Transactional: a rolled-back publish leaves nothing
BEGIN;
SELECT webhook_publish('orders.paid', '{"order": 3}') IS NOT NULL AS published;
ROLLBACK;
SELECT count(*) FROM webhook_events WHERE data::jsonb = '{"order": 3}';

-- Bad input
SELECT webhook_publish(NULL, '{}');
SELECT webhook_publish('orders.paid', NULL);
SELECT webhook_publish('orders paid', '{}');
SELECT webhook_publish('orders.', '{}');
SELECT webhook_publish('.orders', '{}');
SELECT webhook_publish('orders.*', '{}');
SELECT webhook_publish(repeat('a', 256), '{}');
SELECT webhook_publish('orders.paid', '{}', '');
SELECT webhook_publish('orders.paid', '{}', repeat('k', 256));
SELECT webhook_publish('orders.paid', jsonb_build_object('blob', repeat('x', 300000)));
SET webhook.max_payload_size = '2kB';
SELECT webhook_publish('orders.paid', jsonb_build_object('blob', repeat('x', 3000)));
RESET webhook.max_payload_size;
\set VERBOSITY terse
INSERT INTO webhook_events (type, data) VALUES ('bad type', '{}');
\set VERBOSITY default
SELECT count(*) FROM webhook_events;

-- Deleting an endpoint removes its deliveries and subscriptions, keeps events
SELECT webhook_delete_endpoint(:e_orders);
SELECT count(*) AS deliveries_left FROM webhook_deliveries WHERE endpoint_id = :e_orders;
SELECT count(*) AS subscriptions_left FROM webhook_subscriptions WHERE endpoint_id = :e_orders;
SELECT count(*) AS events_kept FROM webhook_events;
SELECT webhook_delete_endpoint(:e_all);
SELECT webhook_delete_endpoint(:e_paid);

-- The fan-out finds a type's subscriptions through webhook_type_patterns:
-- every pattern webhook_subscribed accepts for a type is among them (and
-- no other), over types and patterns of one to three segments
WITH types(t) AS (VALUES ('a'), ('a.b'), ('a.b.c'), ('ab.c'), ('a.bc'), ('b.a')),
     patterns(p) AS (VALUES ('*'), ('a'), ('a.*'), ('a.b'), ('a.b.*'), ('a.b.c'), ('a.b.c.*'),
                            ('ab.*'), ('a.bc'), ('b.*'), ('b.a'))
SELECT count(*) AS pairs,
       count(*) FILTER (WHERE webhook_subscribed(p, NULL, t, '{}')) AS matching,
       count(*) FILTER (WHERE webhook_subscribed(p, NULL, t, '{}')
                          IS DISTINCT FROM (p = ANY (webhook_type_patterns(t)))) AS disagreeing
  FROM types, patterns;
