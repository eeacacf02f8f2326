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

-- Idempotency: the same key returns the first event and enqueues nothing
SELECT webhook_publish('orders.paid', '{"order": 2}', 'order-2-paid') = webhook_publish('orders.paid', '{"order": 99}', 'order-2-paid') AS same_id;
SELECT count(*), min(data::text) FROM webhook_events WHERE idempotency_key = 'order-2-paid';

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
