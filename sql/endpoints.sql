\set SHOW_CONTEXT never
-- Creating endpoints: happy paths
SELECT webhook_create_endpoint('billing', 'https://billing.example.com/hooks',
                               event_types => '{orders.*}') AS id \gset
SELECT name, url, event_types_ok, secret ~ '^whsec_[A-Za-z0-9+/]{43}=$' AS generated_secret,
       headers, retry_schedule, timeout, state
  FROM webhook_endpoints,
       LATERAL (SELECT array_agg(event_type ORDER BY event_type) = '{orders.*}' AS event_types_ok
                  FROM webhook_subscriptions s WHERE s.endpoint_id = webhook_endpoints.id) s
 WHERE id = :id;
SELECT webhook_valid_secret(secret) FROM webhook_endpoints WHERE id = :id;
-- two generated secrets differ
SELECT webhook_generate_secret() <> webhook_generate_secret() AS random;

SELECT webhook_create_endpoint('crm', 'http://127.0.0.1:9/in', event_types => '{customers.created,orders.paid,*}',
        secret => 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw',
        headers => '{"X-Tenant": "acme", "Authorization": "Bearer t0k"}',
        retry_schedule => '{1s,10s}', timeout => '2s', description => 'CRM sync') AS crm \gset
SELECT name, secret, headers, retry_schedule, timeout, description FROM webhook_endpoints WHERE id = :crm;
SELECT event_type FROM webhook_subscriptions WHERE endpoint_id = :crm ORDER BY 1;

-- Bad input: each is a clear error and leaves nothing behind
SELECT webhook_create_endpoint(NULL, 'https://a.example.com/');
SELECT webhook_create_endpoint('x', NULL);
SELECT webhook_create_endpoint('', 'https://a.example.com/');
SELECT webhook_create_endpoint('bad name', 'https://a.example.com/');
SELECT webhook_create_endpoint(repeat('n', 64), 'https://a.example.com/');
SELECT webhook_create_endpoint('billing', 'https://other.example.com/');
SELECT webhook_create_endpoint('x', 'not a url');
SELECT webhook_create_endpoint('x', 'ftp://files.example.com/');
SELECT webhook_create_endpoint('x', 'https://user:pass@a.example.com/');
SELECT webhook_create_endpoint('x', 'https://a.example.com/' || repeat('p', 2100));
SELECT webhook_create_endpoint('x', E'https://a.example.com/\nx');
SELECT webhook_create_endpoint('x', 'https://a.example.com/', event_types => '{}');
SELECT webhook_create_endpoint('x', 'https://a.example.com/', event_types => '{orders..created}');
SELECT webhook_create_endpoint('x', 'https://a.example.com/', event_types => '{orders.*.x}');
SELECT webhook_create_endpoint('x', 'https://a.example.com/', event_types => '{NULL}');
SELECT webhook_create_endpoint('x', 'https://a.example.com/', secret => 'nope');
SELECT webhook_create_endpoint('x', 'https://a.example.com/', secret => 'whsec_c2hvcnQ=');
SELECT webhook_create_endpoint('x', 'https://a.example.com/', headers => '[]');
SELECT webhook_create_endpoint('x', 'https://a.example.com/', headers => '{"Content-Type": "text plain"}');
SELECT webhook_create_endpoint('x', 'https://a.example.com/', headers => '{"content-type": "text/plain; charset"}');
SELECT webhook_create_endpoint('x', 'https://a.example.com/', headers => '{"Content-Type": "text/plain", "content-TYPE": "text/csv"}');
SELECT webhook_create_endpoint('x', 'https://a.example.com/', headers => '{"webhook-id": "1"}');
SELECT webhook_create_endpoint('x', 'https://a.example.com/', headers => '{"Host": "evil"}');
SELECT webhook_create_endpoint('x', 'https://a.example.com/', headers => '{"X-A": "a\r\nX-B: b"}');
SELECT webhook_create_endpoint('x', 'https://a.example.com/', headers => '{"Bad Name": "v"}');
SELECT webhook_create_endpoint('x', 'https://a.example.com/', headers => '{"X-N": 1}');
SELECT webhook_create_endpoint('x', 'https://a.example.com/', retry_schedule => '{-1s}');
SELECT webhook_create_endpoint('x', 'https://a.example.com/', retry_schedule => '{40 days}');
SELECT webhook_create_endpoint('x', 'https://a.example.com/', retry_schedule => '{1s,NULL}');
SELECT webhook_create_endpoint('x', 'https://a.example.com/', timeout => '10ms');
SELECT webhook_create_endpoint('x', 'https://a.example.com/', timeout => '2 min');
SELECT webhook_create_endpoint('x', 'https://a.example.com/', description => repeat('d', 1001));
SELECT count(*) AS endpoints, (SELECT count(*) FROM webhook_subscriptions) AS subscriptions FROM webhook_endpoints;

-- Destinations: loopback, private and reserved addresses are refused without
-- any connection; 127.0.0.1/32 and ::1/128 are allowed by this suite's config.
SELECT webhook_check_url('http://127.0.0.1:8080/ok');
SELECT webhook_check_url('http://[::1]:8080/ok');
SELECT webhook_check_url('http://localhost/');
SELECT webhook_check_url('http://127.0.0.2/');
SELECT webhook_check_url('http://10.1.2.3/');
SELECT webhook_check_url('http://172.16.0.1/');
SELECT webhook_check_url('http://192.168.1.1/');
SELECT webhook_check_url('http://169.254.169.254/latest/meta-data/');
SELECT webhook_check_url('http://100.64.0.1/');
SELECT webhook_check_url('http://224.0.0.1/');
SELECT webhook_check_url('http://0.0.0.0/');
SELECT webhook_check_url('http://[::]/');
SELECT webhook_check_url('http://[fd00::1]/');
SELECT webhook_check_url('http://[fe80::1]/');
SELECT webhook_check_url('http://[::ffff:10.0.0.1]/');
SELECT webhook_check_url('http://[::ffff:169.254.169.254]/');
SELECT webhook_check_url('http://[64:ff9b::a00:1]/');
SELECT webhook_check_url('http://0xa9.0xfe.0xa9.0xfe/');
SELECT webhook_check_url('http://2852039166/');
SELECT webhook_check_url('http://012.0.0.1/');
-- a trailing dot names the same host; 6to4 and local-use NAT64 carry any IPv4
SELECT webhook_check_url('http://127.0.0.2./');
SELECT webhook_check_url('http://x.localhost./');
SELECT webhook_check_url('http://[2002:7f00:1::]/');
SELECT webhook_check_url('http://[64:ff9b:1::a00:1]/');
SELECT webhook_check_url('https://hooks.example.com/in');
SELECT webhook_check_url('https://93.184.216.34/in');
SELECT webhook_check_url('https://[2606:2800:220:1:248:1893:25c8:1946]/in');

-- Enable, disable, delete
SELECT webhook_disable(:id);
SELECT state, state_reason FROM webhook_endpoints WHERE id = :id;
SELECT webhook_disable(:id);
SELECT webhook_enable(:id);
SELECT state, state_reason FROM webhook_endpoints WHERE id = :id;
SELECT webhook_enable(12345);
SELECT webhook_disable(NULL);
SELECT webhook_delete_endpoint(12345);

-- Direct writes are held to the same rules by constraints
\set VERBOSITY terse
INSERT INTO webhook_endpoints (name, url, secret) VALUES ('direct', 'ftp://x', 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw');
INSERT INTO webhook_endpoints (name, url, secret) VALUES ('di rect', 'https://x.example.com', 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw');
INSERT INTO webhook_endpoints (name, url, secret) VALUES ('direct', 'https://x.example.com', 'plain');
UPDATE webhook_endpoints SET timeout = '0' WHERE id = :id;
UPDATE webhook_endpoints SET state = 'sleeping' WHERE id = :id;
UPDATE webhook_endpoints SET headers = '"x"' WHERE id = :id;
INSERT INTO webhook_subscriptions (endpoint_id, event_type) VALUES (:id, 'a b');
INSERT INTO webhook_subscriptions (endpoint_id, event_type) VALUES (999, 'a');
\set VERBOSITY default
SELECT webhook_delete_endpoint(id) FROM webhook_endpoints ORDER BY id;
-- max_in_flight: concurrent requests per endpoint
SELECT webhook_create_endpoint('mif0', 'https://mif.example.com/', max_in_flight => 0);
SELECT webhook_create_endpoint('mif1001', 'https://mif.example.com/', max_in_flight => 1001);
SELECT webhook_create_endpoint('mifnull', 'https://mif.example.com/', max_in_flight => NULL);
SELECT webhook_create_endpoint('mif', 'https://mif.example.com/', max_in_flight => 4) AS mif \gset
SELECT max_in_flight FROM webhook_endpoints WHERE id = :mif;
SELECT webhook_delete_endpoint(:mif);

-- Subscriptions with filters, and changing an endpoint
SELECT webhook_fanout() >= 0 AS flushed_earlier_events;
SELECT webhook_create_endpoint('subs', 'https://subs.example.com/', event_types => '{none.x}') AS subs \gset
SELECT webhook_subscribe(:subs, 'orders.*', '{"region": "eu"}');
SELECT webhook_subscribe(:subs, 'invoices.paid');
SELECT webhook_publish('orders.paid', '{"region": "eu", "n": 1}') AS ev_eu \gset
SELECT webhook_publish('orders.paid', '{"region": "us", "n": 2}') AS ev_us \gset
SELECT webhook_publish('invoices.paid', '{"n": 3}') AS ev_inv \gset
SELECT webhook_fanout();
SELECT e.data->>'n' AS n FROM webhook_deliveries d JOIN webhook_events e ON e.id = d.event_id
 WHERE d.endpoint_id = :subs ORDER BY 1;
-- subscribing again replaces the filter
SELECT webhook_subscribe(:subs, 'orders.*', '{"region": "us"}');
SELECT event_type, filter FROM webhook_subscriptions WHERE endpoint_id = :subs ORDER BY 1;
SELECT webhook_unsubscribe(:subs, 'invoices.paid');
SELECT webhook_unsubscribe(:subs, 'invoices.paid');
SELECT webhook_subscribe(:subs, 'orders.*', '[1]');
SELECT webhook_subscribe(:subs, 'orders..x');
SELECT webhook_subscribe(:subs, NULL);
SELECT webhook_subscribe(-1, 'orders.*');
-- update: NULL leaves an option as it is; event_types replaces the list
SELECT webhook_update_endpoint(:subs, url => 'https://subs2.example.com/in', timeout => '3s',
                               max_in_flight => 8, event_types => '{orders.*,refunds.*}');
SELECT name, url, timeout, max_in_flight, description FROM webhook_endpoints WHERE id = :subs;
SELECT event_type, filter FROM webhook_subscriptions WHERE endpoint_id = :subs ORDER BY 1;
SELECT webhook_update_endpoint(:subs, secret => 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw');
SELECT secret FROM webhook_endpoints WHERE id = :subs;
SELECT webhook_update_endpoint(:subs, url => 'ftp://subs.example.com/');
SELECT webhook_update_endpoint(:subs, url => 'http://10.0.0.1/');
SELECT webhook_update_endpoint(:subs, timeout => '2 min');
SELECT webhook_update_endpoint(:subs, name => 'bad name');
SELECT webhook_update_endpoint(:subs, max_in_flight => 0);
SELECT webhook_update_endpoint(-1, timeout => '1s');
SELECT url, timeout FROM webhook_endpoints WHERE id = :subs;
DELETE FROM webhook_deliveries WHERE endpoint_id = :subs;
SELECT webhook_delete_endpoint(:subs);

-- Content-Type: an endpoint may set its own, a media type (application/json
-- otherwise); batch items and per-endpoint jitter
SELECT webhook_create_endpoint('typed', 'https://typed.example.com/',
           headers => '{"Content-Type": "application/x-www-form-urlencoded"}') AS typed \gset
SELECT webhook_update_endpoint(:typed, headers => '{"content-type": "text/plain; charset=\"utf-8\""}');
SELECT headers FROM webhook_endpoint_settings WHERE id = :typed;
SELECT webhook_update_endpoint(:typed, headers => '{"Content-Type": "application/vnd.api+json; profile=x; v=2"}');
SELECT webhook_update_endpoint(:typed, format => 'batch', batch_items => 'data', retry_jitter => 0);
SELECT format, batch_items, retry_jitter FROM webhook_endpoint_settings WHERE id = :typed;
SELECT webhook_update_endpoint(:typed, retry_jitter => -1);
SELECT retry_jitter FROM webhook_endpoint_settings WHERE id = :typed;
-- leaving the batch format, items go back to envelopes
SELECT webhook_update_endpoint(:typed, format => 'standard');
SELECT format, batch_items FROM webhook_endpoint_settings WHERE id = :typed;
SELECT webhook_update_endpoint(:typed, batch_items => 'data');
SELECT webhook_update_endpoint(:typed, format => 'batch', batch_items => 'items');
SELECT webhook_update_endpoint(:typed, retry_jitter => 1.5);
SELECT webhook_update_endpoint(:typed, retry_jitter => 'NaN');
SELECT webhook_delete_endpoint(:typed);

