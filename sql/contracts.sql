\set SHOW_CONTEXT never
\set VERBOSITY default
-- Contracts of the endpoint options, the event functions and the pure
-- helpers: happy paths, then a census of bad inputs (each shown with its
-- SQLSTATE, psql's :SQLSTATE, 00000 if a statement unexpectedly succeeds),
-- then proof that the failures changed nothing.  Every URL is loopback or an
-- example.com name; this suite's worker serves another database, so nothing
-- here is ever sent.

-------------------------------------------------------------------------------
-- 1. Endpoint options: happy paths
-------------------------------------------------------------------------------
-- standard format and signing, a source, a fixed whsec_ secret
SELECT webhook_create_endpoint('ct-standard', 'https://ct-standard.example.com/in',
        event_types => '{ct.*}', secret => 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw',
        format => 'standard', source => 'billing-db', signing => 'standard') AS std \gset
-- batch format with its batch size
SELECT webhook_create_endpoint('ct-batch', 'https://ct-batch.example.com/in',
        format => 'batch', batch_size => 50) AS batch \gset
-- raw format, GitHub-style hex signature in a header of our choosing
SELECT webhook_create_endpoint('ct-raw', 'http://127.0.0.1:9/raw', format => 'raw',
        signing => 'hmac-sha256-hex', secret => 'hex-secret-0001',
        signature_header => 'X-Hub-Signature-256', signature_prefix => 'sha256=') AS raw \gset
-- Stripe-style timestamped hex signature
SELECT webhook_create_endpoint('ct-ts', 'https://ct-ts.example.com/in',
        signing => 'timestamped-hex', secret => 'ts-secret-0001',
        signature_header => 'Stripe-Signature',
        headers => '{"Authorization": "Bearer hdr-tok", "x-auth-token": "xat-value", "X-Api-Key": "hdr-key",
                     "Proxy-Authorization": "Basic cHJveHk6cHc="}') AS ts \gset
-- ed25519: a generated key, and a fixed one (RFC 8032, test 1)
SELECT webhook_create_endpoint('ct-ed', 'https://ct-ed.example.com/in',
        signing => 'standard-ed25519') AS ed \gset
SELECT webhook_create_endpoint('ct-ed-fixed', 'https://ct-ed-fixed.example.com/in',
        signing => 'standard-ed25519',
        secret => 'whsk_nWGxne/9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A=') AS edfixed \gset
-- no signature at all (a secret is still generated and kept)
SELECT webhook_create_endpoint('ct-none', 'https://ct-none.example.com/in', signing => 'none') AS none \gset
-- bearer auth, rate limit, ordered delivery, one request at a time, a short
-- timeout and a schedule from webhook_backoff
SELECT webhook_create_endpoint('ct-bearer', 'https://ct-bearer.example.com/in',
        auth => '{"type": "bearer", "token": "t0k-bearer"}', rate_limit => 50, ordered => true,
        max_in_flight => 1, timeout => '1500ms', retry_schedule => webhook_backoff('1s', 2, 3)) AS bearer \gset
-- basic auth with plain, secret-marked and sensitive-named headers
SELECT webhook_create_endpoint('ct-basic', 'https://ct-basic.example.com/in',
        auth => '{"type": "basic", "username": "ada", "password": "pa55-basic"}',
        headers => '{"X-Tenant": "acme", "X-Token": {"value": "hidden-value", "secret": true},
                     "X-Plain": {"value": "shown-value"}, "X-Open": {"value": "open-value", "secret": false},
                     "Cookie": "c=cookie-value"}',
        description => 'contracts') AS basic \gset
-- API key auth
SELECT webhook_create_endpoint('ct-apikey', 'https://ct-apikey.example.com/in',
        auth => '{"type": "api_key", "header": "X-Api-Key", "key": "k3y-apikey"}',
        rate_limit => 100000, batch_size => 1000) AS apikey \gset
-- a direct INSERT with valid options is accepted (a fixed id, for messages that show it)
INSERT INTO webhook_endpoints (id, name, url, secret, format, signing, signature_header, auth, headers)
VALUES (4242, 'ct-direct-ok', 'https://ct-direct-ok.example.com/in', 'direct-secret-0001', 'raw',
        'hmac-sha256-hex', 'X-Signature', '{"type": "bearer", "token": "t0k-direct-ok"}',
        '{"X-Direct": {"value": "direct-hidden", "secret": true}}');

\x on
SELECT name, url, event_types, format, batch_size, source, signing, signature_header,
       signature_prefix, secret, previous_secrets, previous_secrets_until, auth, headers,
       retry_schedule, timeout, max_in_flight, rate_limit, ordered, description, state
  FROM webhook_endpoint_settings WHERE name LIKE 'ct-%' ORDER BY name COLLATE "C";
\x off
-- the view never shows a secret, an auth value or a hidden header value
SELECT count(*) AS leaks FROM webhook_endpoint_settings s
 WHERE s::text ~ '(whsec_|whsk_|-secret-|t0k-|pa55-|k3y-|hidden|cookie-value|hdr-|xat-|cHJveHk)';
-- (the same pattern does find them in the table itself)
SELECT count(*) AS in_table FROM webhook_endpoints e
 WHERE e.name LIKE 'ct-%'
   AND e::text ~ '(whsec_|whsk_|-secret-|t0k-|pa55-|k3y-|hidden|cookie-value|hdr-|xat-|cHJveHk)';
-- the table keeps them as given, or generated for the scheme
SELECT name, signing,
       CASE WHEN name IN ('ct-standard', 'ct-raw', 'ct-ts', 'ct-ed-fixed', 'ct-direct-ok') THEN secret
            WHEN signing = 'standard-ed25519' THEN (secret ~ '^whsk_[A-Za-z0-9+/]{86}==$')::text
            ELSE (secret ~ '^whsec_[A-Za-z0-9+/]{43}=$')::text END AS secret,
       webhook_valid_secret(secret, signing) AS valid, auth, headers
  FROM webhook_endpoints WHERE name LIKE 'ct-%' ORDER BY name COLLATE "C";

-- webhook_update_endpoint: NULL for every option changes nothing
SELECT e::text AS row_before FROM webhook_endpoints e WHERE id = :basic \gset
SELECT webhook_update_endpoint(:basic, name => NULL, url => NULL, event_types => NULL, secret => NULL,
        headers => NULL, retry_schedule => NULL, timeout => NULL, description => NULL,
        max_in_flight => NULL, format => NULL, batch_size => NULL, source => NULL, signing => NULL,
        signature_header => NULL, signature_prefix => NULL, auth => NULL, rate_limit => NULL,
        ordered => NULL);
SELECT e::text = :'row_before' AS unchanged FROM webhook_endpoints e WHERE id = :basic;
-- '' / '{}' / 0 clear the optional ones
SELECT webhook_update_endpoint(:basic, auth => '{}', headers => '{}', description => '');
SELECT webhook_update_endpoint(:raw, source => '', signature_header => '', signature_prefix => '');
SELECT webhook_update_endpoint(:bearer, auth => '{}', rate_limit => 0, ordered => false);
SELECT name, source, signature_header, signature_prefix, auth, headers, rate_limit, ordered, description
  FROM webhook_endpoint_settings WHERE id IN (:basic, :raw, :bearer) ORDER BY name COLLATE "C";
-- and values can be set again
SELECT webhook_update_endpoint(:raw, format => 'standard', source => 'raw-db', signature_header => 'X-Sig',
        signature_prefix => 'v=', batch_size => 7, max_in_flight => 3, timeout => '100ms',
        retry_schedule => '{}');
SELECT webhook_update_endpoint(:bearer, auth => '{"type": "api_key", "header": "X-Key", "key": "k2"}',
        headers => '{"X-Extra": "1"}', rate_limit => 1, format => 'raw', ordered => true);
SELECT webhook_update_endpoint(:batch, format => 'standard', ordered => true, timeout => '60s',
        retry_schedule => array_fill('30 days'::interval, ARRAY[50]));
SELECT name, format, batch_size, source, signature_header, signature_prefix, auth, headers,
       rate_limit, ordered, max_in_flight, timeout, cardinality(retry_schedule) AS retries
  FROM webhook_endpoint_settings WHERE id IN (:raw, :bearer, :batch) ORDER BY name COLLATE "C";
-- a new signing scheme needs a secret for it; the old scheme's previous secrets go
SELECT webhook_update_endpoint(:raw, signing => 'timestamped-hex');
SELECT webhook_update_endpoint(:none, signing => 'standard-ed25519',
                               secret => webhook_generate_secret('standard-ed25519'));
SELECT name, signing, webhook_valid_secret(secret, signing) AS valid
  FROM webhook_endpoints WHERE id IN (:raw, :none) ORDER BY name COLLATE "C";

-------------------------------------------------------------------------------
-- 2. Census of bad inputs: each a clean error with its SQLSTATE, no secret shown
-------------------------------------------------------------------------------
SELECT (SELECT count(*) FROM webhook_endpoints) AS n_endpoints,
       (SELECT count(*) FROM webhook_subscriptions) AS n_subscriptions,
       (SELECT count(*) FROM webhook_events) AS n_events,
       (SELECT count(*) FROM webhook_event_types) AS n_event_types,
       (SELECT md5(string_agg(e::text, '|' ORDER BY e.id)) FROM webhook_endpoints e) AS endpoints_md5,
       (SELECT md5(string_agg(s::text, '|' ORDER BY s.id)) FROM webhook_subscriptions s) AS subscriptions_md5
\gset

-- URLs
SELECT webhook_create_endpoint('ct-x', 'not a url');
\echo :SQLSTATE
SELECT webhook_create_endpoint('ct-x', 'ftp://files.example.com/');
\echo :SQLSTATE
SELECT webhook_create_endpoint('ct-x', 'javascript:alert(1)');
\echo :SQLSTATE
SELECT webhook_create_endpoint('ct-x', 'https://');
\echo :SQLSTATE
SELECT webhook_create_endpoint('ct-x', 'https://user:pa55-url@ct-x.example.com/');
\echo :SQLSTATE
SELECT webhook_create_endpoint('ct-x', 'https://ct-x.example.com/' || repeat('p', 2100));
\echo :SQLSTATE
SELECT webhook_create_endpoint('ct-x', E'https://ct-x.example.com/a\r\nX-Injected: 1');
\echo :SQLSTATE
SELECT webhook_create_endpoint('ct-x', 'http://10.0.0.1/');
\echo :SQLSTATE
SELECT webhook_create_endpoint('ct-x', 'http://169.254.169.254/latest/meta-data/');
\echo :SQLSTATE
SELECT webhook_create_endpoint('ct-x', NULL);
\echo :SQLSTATE
-- names
SELECT webhook_create_endpoint(repeat('n', 64), 'https://ct-x.example.com/');
\echo :SQLSTATE
SELECT webhook_create_endpoint('ct/x', 'https://ct-x.example.com/');
\echo :SQLSTATE
SELECT webhook_create_endpoint(NULL, 'https://ct-x.example.com/');
\echo :SQLSTATE
SELECT webhook_create_endpoint('ct-standard', 'https://ct-x.example.com/');
\echo :SQLSTATE
-- event types and description
SELECT webhook_create_endpoint('ct-x', 'https://ct-x.example.com/', event_types => '{}');
\echo :SQLSTATE
SELECT webhook_create_endpoint('ct-x', 'https://ct-x.example.com/', event_types => '{"ct created"}');
\echo :SQLSTATE
SELECT webhook_create_endpoint('ct-x', 'https://ct-x.example.com/', event_types => NULL);
\echo :SQLSTATE
SELECT webhook_create_endpoint('ct-x', 'https://ct-x.example.com/', description => repeat('d', 1001));
\echo :SQLSTATE
-- headers
SELECT webhook_create_endpoint('ct-x', 'https://ct-x.example.com/', headers => '{"X-A": "a\r\nX-B: b"}');
\echo :SQLSTATE
SELECT webhook_create_endpoint('ct-x', 'https://ct-x.example.com/', headers => '{"X-A": "line\nfeed"}');
\echo :SQLSTATE
SELECT webhook_create_endpoint('ct-x', 'https://ct-x.example.com/',
        headers => '{"X-A": {"value": "a\r\nb", "secret": true}}');
\echo :SQLSTATE
SELECT webhook_create_endpoint('ct-x', 'https://ct-x.example.com/', headers => '{"Content-Type": "text/plain\r\nX: y"}');
\echo :SQLSTATE
SELECT webhook_create_endpoint('ct-x', 'https://ct-x.example.com/', headers => '{"HOST": "evil.example.com"}');
\echo :SQLSTATE
SELECT webhook_create_endpoint('ct-x', 'https://ct-x.example.com/', headers => '{"Webhook-Signature": "v1,forged"}');
\echo :SQLSTATE
SELECT webhook_create_endpoint('ct-x', 'https://ct-x.example.com/', headers => '{"Transfer-Encoding": "chunked"}');
\echo :SQLSTATE
SELECT webhook_create_endpoint('ct-x', 'https://ct-x.example.com/', headers => '{"X-Dup": "1", "x-dup": "2"}');
\echo :SQLSTATE
SELECT webhook_create_endpoint('ct-x', 'https://ct-x.example.com/', headers => '{"Bad Name": "v"}');
\echo :SQLSTATE
SELECT webhook_create_endpoint('ct-x', 'https://ct-x.example.com/', headers => '{"X-N": 1}');
\echo :SQLSTATE
SELECT webhook_create_endpoint('ct-x', 'https://ct-x.example.com/',
        headers => '{"X-S": {"value": "v", "secret": "yes"}}');
\echo :SQLSTATE
SELECT webhook_create_endpoint('ct-x', 'https://ct-x.example.com/',
        headers => '{"X-S": {"value": "v", "extra": 1}}');
\echo :SQLSTATE
SELECT webhook_create_endpoint('ct-x', 'https://ct-x.example.com/', headers => '{"X-S": {"secret": true}}');
\echo :SQLSTATE
SELECT webhook_create_endpoint('ct-x', 'https://ct-x.example.com/',
        headers => jsonb_build_object('X-Long', repeat('v', 4097)));
\echo :SQLSTATE
SELECT webhook_create_endpoint('ct-x', 'https://ct-x.example.com/', headers => '[]');
\echo :SQLSTATE
SELECT webhook_create_endpoint('ct-x', 'https://ct-x.example.com/', headers => NULL);
\echo :SQLSTATE
-- auth
SELECT webhook_create_endpoint('ct-x', 'https://ct-x.example.com/', auth => '"bearer"');
\echo :SQLSTATE
SELECT webhook_create_endpoint('ct-x', 'https://ct-x.example.com/', auth => '[]');
\echo :SQLSTATE
SELECT webhook_create_endpoint('ct-x', 'https://ct-x.example.com/', auth => '{"type": "digest", "token": "t0k-x"}');
\echo :SQLSTATE
SELECT webhook_create_endpoint('ct-x', 'https://ct-x.example.com/', auth => '{"token": "t0k-x"}');
\echo :SQLSTATE
SELECT webhook_create_endpoint('ct-x', 'https://ct-x.example.com/', auth => '{"type": "bearer"}');
\echo :SQLSTATE
SELECT webhook_create_endpoint('ct-x', 'https://ct-x.example.com/',
        auth => '{"type": "bearer", "token": "t0k-x", "extra": "y"}');
\echo :SQLSTATE
SELECT webhook_create_endpoint('ct-x', 'https://ct-x.example.com/', auth => '{"type": "bearer", "token": ""}');
\echo :SQLSTATE
SELECT webhook_create_endpoint('ct-x', 'https://ct-x.example.com/', auth => '{"type": "bearer", "token": 42}');
\echo :SQLSTATE
SELECT webhook_create_endpoint('ct-x', 'https://ct-x.example.com/',
        auth => '{"type": "bearer", "token": "t0k-x\r\nX-Injected: 1"}');
\echo :SQLSTATE
SELECT webhook_create_endpoint('ct-x', 'https://ct-x.example.com/',
        auth => '{"type": "basic", "username": "ada:lovelace", "password": "pa55-x"}');
\echo :SQLSTATE
SELECT webhook_create_endpoint('ct-x', 'https://ct-x.example.com/', auth => '{"type": "basic", "username": "ada"}');
\echo :SQLSTATE
SELECT webhook_create_endpoint('ct-x', 'https://ct-x.example.com/',
        auth => '{"type": "api_key", "header": "Content-Type", "key": "k3y-x"}');
\echo :SQLSTATE
SELECT webhook_create_endpoint('ct-x', 'https://ct-x.example.com/',
        auth => '{"type": "api_key", "header": "webhook-id", "key": "k3y-x"}');
\echo :SQLSTATE
SELECT webhook_create_endpoint('ct-x', 'https://ct-x.example.com/',
        auth => '{"type": "api_key", "header": "Bad Header", "key": "k3y-x"}');
\echo :SQLSTATE
SELECT webhook_create_endpoint('ct-x', 'https://ct-x.example.com/',
        auth => '{"type": "api_key", "key": "k3y-x"}');
\echo :SQLSTATE
SELECT webhook_create_endpoint('ct-x', 'https://ct-x.example.com/',
        auth => '{"type": "bearer", "token": "t0k-x"}', headers => '{"Authorization": "Bearer t0k-y"}');
\echo :SQLSTATE
SELECT webhook_create_endpoint('ct-x', 'https://ct-x.example.com/',
        auth => '{"type": "api_key", "header": "X-Api-Key", "key": "k3y-x"}', headers => '{"x-api-key": "k3y-y"}');
\echo :SQLSTATE
-- timeouts
SELECT webhook_create_endpoint('ct-x', 'https://ct-x.example.com/', timeout => '-1s');
\echo :SQLSTATE
SELECT webhook_create_endpoint('ct-x', 'https://ct-x.example.com/', timeout => '0');
\echo :SQLSTATE
SELECT webhook_create_endpoint('ct-x', 'https://ct-x.example.com/', timeout => '99ms');
\echo :SQLSTATE
SELECT webhook_create_endpoint('ct-x', 'https://ct-x.example.com/', timeout => '1000 years');
\echo :SQLSTATE
SELECT webhook_create_endpoint('ct-x', 'https://ct-x.example.com/', timeout => NULL);
\echo :SQLSTATE
-- retry schedules
SELECT webhook_create_endpoint('ct-x', 'https://ct-x.example.com/',
        retry_schedule => array_fill('1s'::interval, ARRAY[51]));
\echo :SQLSTATE
SELECT webhook_create_endpoint('ct-x', 'https://ct-x.example.com/', retry_schedule => '{1s,-5s}');
\echo :SQLSTATE
SELECT webhook_create_endpoint('ct-x', 'https://ct-x.example.com/', retry_schedule => '{1s,NULL}');
\echo :SQLSTATE
SELECT webhook_create_endpoint('ct-x', 'https://ct-x.example.com/', retry_schedule => '{31 days}');
\echo :SQLSTATE
SELECT webhook_create_endpoint('ct-x', 'https://ct-x.example.com/', retry_schedule => NULL);
\echo :SQLSTATE
-- format and batch_size
SELECT webhook_create_endpoint('ct-x', 'https://ct-x.example.com/', format => 'xml');
\echo :SQLSTATE
SELECT webhook_create_endpoint('ct-x', 'https://ct-x.example.com/', format => 'Standard');
\echo :SQLSTATE
SELECT webhook_create_endpoint('ct-x', 'https://ct-x.example.com/', format => NULL);
\echo :SQLSTATE
SELECT webhook_create_endpoint('ct-x', 'https://ct-x.example.com/', format => 'batch', batch_size => 0);
\echo :SQLSTATE
SELECT webhook_create_endpoint('ct-x', 'https://ct-x.example.com/', format => 'batch', batch_size => 1001);
\echo :SQLSTATE
SELECT webhook_create_endpoint('ct-x', 'https://ct-x.example.com/', batch_size => -1);
\echo :SQLSTATE
SELECT webhook_create_endpoint('ct-x', 'https://ct-x.example.com/', batch_size => NULL);
\echo :SQLSTATE
-- source
SELECT webhook_create_endpoint('ct-x', 'https://ct-x.example.com/', source => '');
\echo :SQLSTATE
SELECT webhook_create_endpoint('ct-x', 'https://ct-x.example.com/', source => repeat('s', 256));
\echo :SQLSTATE
SELECT webhook_create_endpoint('ct-x', 'https://ct-x.example.com/', source => E'a\nb');
\echo :SQLSTATE
-- signing schemes and secrets unfit for them
SELECT webhook_create_endpoint('ct-x', 'https://ct-x.example.com/', signing => 'rsa');
\echo :SQLSTATE
SELECT webhook_create_endpoint('ct-x', 'https://ct-x.example.com/', signing => 'hmac-sha1-hex');
\echo :SQLSTATE
SELECT webhook_create_endpoint('ct-x', 'https://ct-x.example.com/', signing => NULL);
\echo :SQLSTATE
SELECT webhook_create_endpoint('ct-x', 'https://ct-x.example.com/', signing => 'standard-ed25519',
        secret => 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw');
\echo :SQLSTATE
SELECT webhook_create_endpoint('ct-x', 'https://ct-x.example.com/', signing => 'standard-ed25519',
        secret => 'whsk_nWGxne/9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA==');
\echo :SQLSTATE
SELECT webhook_create_endpoint('ct-x', 'https://ct-x.example.com/', signing => 'standard',
        secret => 'whsk_nWGxne/9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A=');
\echo :SQLSTATE
SELECT webhook_create_endpoint('ct-x', 'https://ct-x.example.com/', secret => 'whsec_c2hvcnQ=');
\echo :SQLSTATE
SELECT webhook_create_endpoint('ct-x', 'https://ct-x.example.com/', signing => 'hmac-sha256-hex',
        secret => 'short');
\echo :SQLSTATE
SELECT webhook_create_endpoint('ct-x', 'https://ct-x.example.com/', signing => 'timestamped-hex',
        secret => E'tab\tsecret-x');
\echo :SQLSTATE
SELECT webhook_create_endpoint('ct-x', 'https://ct-x.example.com/', signing => 'none',
        secret => repeat('s', 1025));
\echo :SQLSTATE
-- signature header and prefix
SELECT webhook_create_endpoint('ct-x', 'https://ct-x.example.com/', signing => 'hmac-sha256-hex',
        secret => 'hex-secret-x', signature_header => 'webhook-signature');
\echo :SQLSTATE
SELECT webhook_create_endpoint('ct-x', 'https://ct-x.example.com/', signing => 'hmac-sha256-hex',
        secret => 'hex-secret-x', signature_header => 'Content-Length');
\echo :SQLSTATE
SELECT webhook_create_endpoint('ct-x', 'https://ct-x.example.com/', signing => 'hmac-sha256-hex',
        secret => 'hex-secret-x', signature_header => 'X Sig');
\echo :SQLSTATE
SELECT webhook_create_endpoint('ct-x', 'https://ct-x.example.com/', signing => 'hmac-sha256-hex',
        secret => 'hex-secret-x', signature_prefix => E'sha256=\r\n');
\echo :SQLSTATE
SELECT webhook_create_endpoint('ct-x', 'https://ct-x.example.com/', signing => 'hmac-sha256-hex',
        secret => 'hex-secret-x', signature_prefix => repeat('p', 101));
\echo :SQLSTATE
-- ordered, rate_limit, max_in_flight
SELECT webhook_create_endpoint('ct-x', 'https://ct-x.example.com/', format => 'batch', ordered => true);
\echo :SQLSTATE
SELECT webhook_create_endpoint('ct-x', 'https://ct-x.example.com/', ordered => NULL);
\echo :SQLSTATE
SELECT webhook_create_endpoint('ct-x', 'https://ct-x.example.com/', rate_limit => 0);
\echo :SQLSTATE
SELECT webhook_create_endpoint('ct-x', 'https://ct-x.example.com/', rate_limit => 100001);
\echo :SQLSTATE
SELECT webhook_create_endpoint('ct-x', 'https://ct-x.example.com/', rate_limit => -5);
\echo :SQLSTATE
SELECT webhook_create_endpoint('ct-x', 'https://ct-x.example.com/', max_in_flight => 0);
\echo :SQLSTATE
SELECT webhook_create_endpoint('ct-x', 'https://ct-x.example.com/', max_in_flight => NULL);
\echo :SQLSTATE

-- webhook_update_endpoint
SELECT webhook_update_endpoint(987654, timeout => '1s');
\echo :SQLSTATE
SELECT webhook_update_endpoint(NULL, timeout => '1s');
\echo :SQLSTATE
SELECT webhook_update_endpoint(:basic, name => 'ct-standard');
\echo :SQLSTATE
SELECT webhook_update_endpoint(:basic, name => '');
\echo :SQLSTATE
SELECT webhook_update_endpoint(:basic, url => '');
\echo :SQLSTATE
SELECT webhook_update_endpoint(:basic, url => 'http://192.168.1.1/');
\echo :SQLSTATE
SELECT webhook_update_endpoint(:basic, event_types => '{}');
\echo :SQLSTATE
SELECT webhook_update_endpoint(:bearer, format => 'batch');
\echo :SQLSTATE
SELECT webhook_update_endpoint(:apikey, format => 'batch', ordered => true);
\echo :SQLSTATE
SELECT webhook_update_endpoint(:std, signing => 'standard-ed25519');
\echo :SQLSTATE
SELECT webhook_update_endpoint(:std, signing => 'bogus');
\echo :SQLSTATE
SELECT webhook_update_endpoint(:std, secret => 'short');
\echo :SQLSTATE
SELECT webhook_update_endpoint(:std, rate_limit => -1);
\echo :SQLSTATE
SELECT webhook_update_endpoint(:std, batch_size => 0);
\echo :SQLSTATE
SELECT webhook_update_endpoint(:std, headers => '{"Connection": "close"}');
\echo :SQLSTATE
SELECT webhook_update_endpoint(:std, auth => '{"type": "basic", "username": "a", "password": "pa55-x", "x": "y"}');
\echo :SQLSTATE
SELECT webhook_update_endpoint(:bearer, headers => '{"X-Key": "k3y-y"}');
\echo :SQLSTATE
SELECT webhook_update_endpoint(:std, timeout => '61s');
\echo :SQLSTATE
SELECT webhook_update_endpoint(:std, retry_schedule => '{NULL}');
\echo :SQLSTATE
-- valid event_types with an invalid option: the subscriptions stay as they were
SELECT webhook_update_endpoint(:std, event_types => '{ok.type}', timeout => '0');
\echo :SQLSTATE

-- webhook_subscribe and webhook_unsubscribe
SELECT webhook_subscribe(:std, 'ct created');
\echo :SQLSTATE
SELECT webhook_subscribe(:std, 'ct.*.x');
\echo :SQLSTATE
SELECT webhook_subscribe(:std, 'ct/created');
\echo :SQLSTATE
SELECT webhook_subscribe(:std, NULL);
\echo :SQLSTATE
SELECT webhook_subscribe(:std, 'ct.x', '[1]');
\echo :SQLSTATE
SELECT webhook_subscribe(987654, 'ct.x');
\echo :SQLSTATE
SELECT webhook_unsubscribe(:std, 'never.subscribed');
\echo :SQLSTATE

-- webhook_publish
SET webhook.max_payload_size = '1kB';
SELECT webhook_publish('ct.big', jsonb_build_object('pad', repeat('x', 2000)));
\echo :SQLSTATE
RESET webhook.max_payload_size;
SELECT webhook_publish('ct created', '{}');
\echo :SQLSTATE
SELECT webhook_publish('ct/created', '{}');
\echo :SQLSTATE
SELECT webhook_publish('ct..created', '{}');
\echo :SQLSTATE
SELECT webhook_publish('ct.*', '{}');
\echo :SQLSTATE
SELECT webhook_publish(E'ct.cre\nated', '{}');
\echo :SQLSTATE
SELECT webhook_publish('ct.' || repeat('t', 253), '{}');
\echo :SQLSTATE
SELECT webhook_publish('ct.created', '{}', ordering_key => repeat('k', 256));
\echo :SQLSTATE
SELECT webhook_publish('ct.created', '{}', idempotency_key => '');
\echo :SQLSTATE
SELECT webhook_publish('ct.created', '{}', idempotency_key => repeat('i', 256));
\echo :SQLSTATE
SELECT webhook_publish(NULL, '{}');
\echo :SQLSTATE
SELECT webhook_publish('ct.created', NULL);
\echo :SQLSTATE

-- webhook_define_event_type
SELECT webhook_define_event_type('ct created');
\echo :SQLSTATE
SELECT webhook_define_event_type('ct.*');
\echo :SQLSTATE
SELECT webhook_define_event_type(NULL);
\echo :SQLSTATE
SELECT webhook_define_event_type('ct.created', schema => '[{"type": "object"}]');
\echo :SQLSTATE
SELECT webhook_define_event_type('ct.created', schema => '"object"');
\echo :SQLSTATE
SELECT webhook_define_event_type('ct.created', description => repeat('d', 1001));
\echo :SQLSTATE
SET webhook.max_payload_size = '1kB';
SELECT webhook_define_event_type('ct.created', example => jsonb_build_object('pad', repeat('x', 2000)));
\echo :SQLSTATE
RESET webhook.max_payload_size;

-- webhook_rotate_secret
SELECT webhook_rotate_secret(:std, grace => '-1 hour');
\echo :SQLSTATE
SELECT webhook_rotate_secret(:std, grace => '31 days');
\echo :SQLSTATE
SELECT webhook_rotate_secret(:std, grace => NULL);
\echo :SQLSTATE
SELECT webhook_rotate_secret(:std, 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw');
\echo :SQLSTATE
SELECT webhook_rotate_secret(:std, 'short');
\echo :SQLSTATE
SELECT webhook_rotate_secret(:std, 'whsk_nWGxne/9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A=');
\echo :SQLSTATE
SELECT webhook_rotate_secret(:edfixed, 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw');
\echo :SQLSTATE
SELECT webhook_rotate_secret(987654);
\echo :SQLSTATE
SELECT webhook_rotate_secret(NULL);
\echo :SQLSTATE

-- webhook_public_key
SELECT webhook_public_key(4242);
\echo :SQLSTATE
SELECT webhook_public_key(987654);
\echo :SQLSTATE
SELECT webhook_public_key(NULL);
\echo :SQLSTATE

-- webhook_backoff
SELECT webhook_backoff('1s', 0.5, 5);
\echo :SQLSTATE
SELECT webhook_backoff('1s', 101, 5);
\echo :SQLSTATE
SELECT webhook_backoff('1s', 'NaN', 5);
\echo :SQLSTATE
SELECT webhook_backoff('1s', 2, 0);
\echo :SQLSTATE
SELECT webhook_backoff('1s', 2, 51);
\echo :SQLSTATE
SELECT webhook_backoff('10s', 2, 3, '5s');
\echo :SQLSTATE
SELECT webhook_backoff('1s', 2, 3, '31 days');
\echo :SQLSTATE
SELECT webhook_backoff('-1s', 2, 3);
\echo :SQLSTATE
SELECT webhook_backoff('31 days', 2, 3, '31 days');
\echo :SQLSTATE
SELECT webhook_backoff(NULL, 2, 3);
\echo :SQLSTATE
SELECT webhook_backoff('1s', NULL, 3);
\echo :SQLSTATE
SELECT webhook_backoff('1s', 2, NULL);
\echo :SQLSTATE
-- max_attempts counts the first request (a maxAttempts of 5 is 4 retries);
-- exactly one of retries and max_attempts
SELECT webhook_backoff('1s', 2, max_attempts => 5) = webhook_backoff('1s', 2, retries => 4) AS same,
       webhook_backoff('1s', 2, max_attempts => 5);
SELECT webhook_backoff('1s', 2, max_attempts => 1);
SELECT webhook_backoff('1s', 2, max_attempts => 0);
\echo :SQLSTATE
SELECT webhook_backoff('1s', 2, max_attempts => 52);
\echo :SQLSTATE
SELECT webhook_backoff('1s', 2, 3, max_attempts => 4);
\echo :SQLSTATE
SELECT webhook_backoff('1s', 2);
\echo :SQLSTATE
SELECT webhook_backoff('1s', 2, 3, NULL);
\echo :SQLSTATE

-- webhook_verify: any NULL is false (never NULL); a negative tolerance is an error
SELECT webhook_verify(NULL, 'msg_1', 1, 'b', 'v1,x') AS null_secret,
       webhook_verify('whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw', NULL, 1, 'b', 'v1,x') AS null_id,
       webhook_verify('whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw', 'msg_1', NULL, 'b', 'v1,x') AS null_ts,
       webhook_verify('whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw', 'msg_1', 1, NULL, 'v1,x') AS null_body,
       webhook_verify('whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw', 'msg_1', 1, 'b', NULL) AS null_header,
       webhook_verify('whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw', 'msg_1', 1, 'b', 'v1,x', NULL) AS null_tolerance;
SELECT webhook_verify('whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw', 'msg_1', 1, 'b', 'v1,x', '-1 min');
\echo :SQLSTATE
SELECT webhook_verify('whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw', 'msg_1', 1, 'b', 'v1,x', '-1 day');
\echo :SQLSTATE
-- malformed secrets and headers are just false
SELECT webhook_verify('plain', 'msg_1', extract(epoch FROM now())::bigint, 'b', 'v1,x') AS plain_secret,
       webhook_verify('whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw', 'msg_1', extract(epoch FROM now())::bigint,
                      'b', '') AS empty_header,
       webhook_verify('whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw', 'msg_1', extract(epoch FROM now())::bigint,
                      'b', 'v1,!!!! v1a,==== v2,abc') AS garbage_header;

-- webhook_generate_secret, webhook_sign, webhook_derive_public_key
SELECT webhook_generate_secret('bogus');
\echo :SQLSTATE
SELECT webhook_generate_secret('');
\echo :SQLSTATE
SELECT webhook_generate_secret(NULL) IS NULL AS strict;
SELECT webhook_sign('not-a-secret', 'msg_1', 1, 'b');
\echo :SQLSTATE
SELECT webhook_sign('whsec_c2hvcnQ=', 'msg_1', 1, 'b');
\echo :SQLSTATE
SELECT webhook_sign('whsk_nWGxne/9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA==',
                    'msg_1', 1, 'b');
\echo :SQLSTATE
SELECT webhook_sign('whpk_11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=', 'msg_1', 1, 'b');
\echo :SQLSTATE
SELECT webhook_sign('whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw', repeat('m', 101), 1, 'b');
\echo :SQLSTATE
SELECT webhook_derive_public_key('whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw');
\echo :SQLSTATE
SELECT webhook_derive_public_key('whpk_11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=');
\echo :SQLSTATE

-- direct writes to webhook_endpoints: the same clean errors, never the secret
INSERT INTO webhook_endpoints (name, url, secret, format)
VALUES ('ct-direct', 'https://ct-direct.example.com/', 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw', 'xml');
\echo :SQLSTATE
INSERT INTO webhook_endpoints (name, url, secret, signing)
VALUES ('ct-direct', 'https://ct-direct.example.com/', 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw', 'rsa');
\echo :SQLSTATE
INSERT INTO webhook_endpoints (name, url, secret)
VALUES ('ct-direct', 'https://ct-direct.example.com/', 'plain-secret-direct');
\echo :SQLSTATE
INSERT INTO webhook_endpoints (name, url, secret)
VALUES ('ct-direct', 'https://ct-direct.example.com/', NULL);
\echo :SQLSTATE
INSERT INTO webhook_endpoints (name, url, secret)
VALUES ('ct-direct', NULL, 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw');
\echo :SQLSTATE
INSERT INTO webhook_endpoints (name, url, secret)
VALUES ('ct-direct', 'gopher://ct-direct.example.com/', 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw');
\echo :SQLSTATE
INSERT INTO webhook_endpoints (name, url, secret, headers)
VALUES ('ct-direct', 'https://ct-direct.example.com/', 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw',
        '{"X-A": "a\r\nX-B: b"}');
\echo :SQLSTATE
INSERT INTO webhook_endpoints (name, url, secret, auth)
VALUES ('ct-direct', 'https://ct-direct.example.com/', 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw',
        '{"type": "bearer", "token": "t0k-direct", "user": "x"}');
\echo :SQLSTATE
INSERT INTO webhook_endpoints (name, url, secret, format, ordered)
VALUES ('ct-direct', 'https://ct-direct.example.com/', 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw', 'batch', true);
\echo :SQLSTATE
INSERT INTO webhook_endpoints (name, url, secret, rate_limit)
VALUES ('ct-direct', 'https://ct-direct.example.com/', 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw', 0);
\echo :SQLSTATE
INSERT INTO webhook_endpoints (name, url, secret, batch_size)
VALUES ('ct-direct', 'https://ct-direct.example.com/', 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw', 0);
\echo :SQLSTATE
INSERT INTO webhook_endpoints (name, url, secret, max_in_flight)
VALUES ('ct-direct', 'https://ct-direct.example.com/', 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw', 1001);
\echo :SQLSTATE
INSERT INTO webhook_endpoints (name, url, secret, previous_secrets)
VALUES ('ct-direct', 'https://ct-direct.example.com/', 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw', '{}');
\echo :SQLSTATE
INSERT INTO webhook_endpoints (name, url, secret, previous_secrets)
VALUES ('ct-direct', 'https://ct-direct.example.com/', 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw',
        (SELECT jsonb_agg(jsonb_build_object('secret', 'whsec_sJTbfOL5nLy95+wXimdUusZm4hkvB2gHrL1w1J3dBVk=',
                                             'expires_at', '2100-01-01T00:00:00Z'))
           FROM generate_series(1, 11)));
\echo :SQLSTATE
INSERT INTO webhook_endpoints (name, url, secret, signing, signature_header)
VALUES ('ct-direct', 'https://ct-direct.example.com/', 'hex-secret-direct', 'hmac-sha256-hex', 'Host');
\echo :SQLSTATE
UPDATE webhook_endpoints SET secret = 'short' WHERE id = :std;
\echo :SQLSTATE
UPDATE webhook_endpoints SET signing = 'standard-ed25519' WHERE id = :std;
\echo :SQLSTATE
UPDATE webhook_endpoints SET timeout = '0' WHERE id = :std;
\echo :SQLSTATE
UPDATE webhook_endpoints SET headers = '{"Host": "evil.example.com"}' WHERE id = :std;
\echo :SQLSTATE
UPDATE webhook_endpoints SET headers = '"X-A: 1"' WHERE id = :std;
\echo :SQLSTATE
UPDATE webhook_endpoints SET auth = '{"type": "api_key", "header": "host", "key": "k3y-direct"}' WHERE id = :std;
\echo :SQLSTATE
UPDATE webhook_endpoints SET auth = '[]' WHERE id = :std;
\echo :SQLSTATE
UPDATE webhook_endpoints SET retry_schedule = '{NULL}' WHERE id = :std;
\echo :SQLSTATE
UPDATE webhook_endpoints SET previous_secrets = '[{"secret": "whsec_bad", "expires_at": "2100-01-01"}]' WHERE id = :std;
\echo :SQLSTATE
UPDATE webhook_endpoints SET previous_secrets = '[{"secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}]' WHERE id = :std;
\echo :SQLSTATE
UPDATE webhook_endpoints SET format = 'batch' WHERE id = :bearer;
\echo :SQLSTATE
UPDATE webhook_endpoints SET name = NULL WHERE id = :std;
\echo :SQLSTATE
UPDATE webhook_endpoints SET source = E'x\ry' WHERE id = :std;
\echo :SQLSTATE
-- expiries that are no time, or never end
UPDATE webhook_endpoints SET previous_secrets = '[{"secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "expires_at": "soon"}]' WHERE id = :std;
\echo :SQLSTATE
UPDATE webhook_endpoints SET previous_secrets = '[{"secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "expires_at": "infinity"}]' WHERE id = :std;
\echo :SQLSTATE
-- the worker's columns and the state, written directly: clean errors, no row shown
UPDATE webhook_endpoints SET state = 'sleeping' WHERE id = :std;
\echo :SQLSTATE
UPDATE webhook_endpoints SET consecutive_failures = -1 WHERE id = :std;
\echo :SQLSTATE
UPDATE webhook_endpoints SET state_since = NULL WHERE id = :std;
\echo :SQLSTATE
INSERT INTO webhook_endpoints (name, url, secret, state)
VALUES ('ct-direct', 'https://ct-direct.example.com/', 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw', 'bogus');
\echo :SQLSTATE
-- options of another scheme, and headers the signature already uses
UPDATE webhook_endpoints SET signature_header = 'X-Sig' WHERE id = :std;
\echo :SQLSTATE
SELECT webhook_create_endpoint('ct-x', 'https://ct-x.example.com/', signing => 'timestamped-hex',
                               secret => 'shared-secret-x', signature_prefix => 'sha256=');
\echo :SQLSTATE
SELECT webhook_create_endpoint('ct-x', 'https://ct-x.example.com/', signing => 'hmac-sha256-hex',
                               secret => 'shared-secret-x', headers => '{"X-Webhook-Signature": "mine"}');
\echo :SQLSTATE
SELECT webhook_create_endpoint('ct-x', 'https://ct-x.example.com/', signing => 'hmac-sha256-hex',
                               secret => 'shared-secret-x', signature_header => 'Authorization',
                               auth => '{"type": "bearer", "token": "t0k-x"}');
\echo :SQLSTATE
-- the other configuration tables keep their constraints (terse: the failing
-- rows hold ids and timestamps)
\set VERBOSITY terse
INSERT INTO webhook_subscriptions (endpoint_id, event_type) VALUES (:std, 'ct created');
\echo :SQLSTATE
INSERT INTO webhook_subscriptions (endpoint_id, event_type) VALUES (987654, 'ct.created');
\echo :SQLSTATE
INSERT INTO webhook_events (type, data) VALUES ('ct created', '{}');
\echo :SQLSTATE
INSERT INTO webhook_event_types (name, schema) VALUES ('ct.direct', '[]');
\echo :SQLSTATE
\set VERBOSITY default

-------------------------------------------------------------------------------
-- 3. Nothing half-done: the failures above changed no row
-------------------------------------------------------------------------------
SELECT (SELECT count(*) FROM webhook_endpoints) = :n_endpoints AS endpoints_same,
       (SELECT count(*) FROM webhook_subscriptions) = :n_subscriptions AS subscriptions_same,
       (SELECT count(*) FROM webhook_events) = :n_events AS events_same,
       (SELECT count(*) FROM webhook_event_types) = :n_event_types AS event_types_same,
       (SELECT md5(string_agg(e::text, '|' ORDER BY e.id)) FROM webhook_endpoints e) = :'endpoints_md5'
           AS endpoint_rows_same,
       (SELECT md5(string_agg(s::text, '|' ORDER BY s.id)) FROM webhook_subscriptions s) = :'subscriptions_md5'
           AS subscription_rows_same;
SELECT count(*) AS stray FROM webhook_endpoints WHERE name IN ('ct-x', 'ct-direct');

-------------------------------------------------------------------------------
-- 4. Pure functions
-------------------------------------------------------------------------------
SELECT webhook_backoff('1s', 2, 5);
SELECT webhook_backoff('1s', 2, 5, '5s');
SELECT webhook_backoff('250ms', 1.5, 4);
SELECT webhook_backoff('0', 3, 2);
SELECT cardinality(webhook_backoff('1 day', 100, 50, '30 days')) AS n,
       (webhook_backoff('1 day', 100, 50, '30 days'))[50] AS last;

-- Standard Webhooks: sign, then verify within the tolerance
SELECT extract(epoch FROM now())::bigint AS now_ts \gset
SELECT webhook_sign('whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw', 'msg_contracts', :now_ts, '{"n": 1}') AS sig \gset
SELECT webhook_sign('whsec_sJTbfOL5nLy95+wXimdUusZm4hkvB2gHrL1w1J3dBVk=', 'msg_contracts', :now_ts, '{"n": 1}') AS other_sig \gset
SELECT :'sig' ~ '^v1,[A-Za-z0-9+/]{43}=$' AS well_formed;
SELECT webhook_verify('whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw', 'msg_contracts', :now_ts, '{"n": 1}', :'sig') AS valid,
       webhook_verify('whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw', 'msg_contracts', :now_ts, '{"n": 2}', :'sig') AS tampered_body,
       webhook_verify('whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw', 'msg_other', :now_ts, '{"n": 1}', :'sig') AS other_id,
       webhook_verify('whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw', 'msg_contracts', :now_ts + 1, '{"n": 1}', :'sig') AS other_ts,
       webhook_verify('whsec_sJTbfOL5nLy95+wXimdUusZm4hkvB2gHrL1w1J3dBVk=', 'msg_contracts', :now_ts, '{"n": 1}', :'sig') AS other_secret;
-- a stale (or future) timestamp fails even with a signature made for it
SELECT webhook_verify('whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw', 'msg_contracts', :now_ts - 3600, '{"n": 1}',
                      webhook_sign('whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw', 'msg_contracts', :now_ts - 3600, '{"n": 1}'),
                      '5 min') AS stale,
       webhook_verify('whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw', 'msg_contracts', :now_ts + 3600, '{"n": 1}',
                      webhook_sign('whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw', 'msg_contracts', :now_ts + 3600, '{"n": 1}'),
                      '5 min') AS future,
       webhook_verify('whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw', 'msg_contracts', :now_ts - 3600, '{"n": 1}',
                      webhook_sign('whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw', 'msg_contracts', :now_ts - 3600, '{"n": 1}'),
                      '2 hours') AS wide_tolerance;
-- several space-separated signatures: one valid is enough, wherever it is
SELECT webhook_verify('whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw', 'msg_contracts', :now_ts, '{"n": 1}',
                      :'other_sig' || ' ' || :'sig') AS second_matches,
       webhook_verify('whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw', 'msg_contracts', :now_ts, '{"n": 1}',
                      'v1a,xyz ' || :'other_sig' || ' ' || :'sig' || ' v1,AAAA') AS among_others,
       webhook_verify('whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw', 'msg_contracts', :now_ts, '{"n": 1}',
                      :'other_sig' || ' ' || :'other_sig') AS none_matches;

-- ed25519: a known key (RFC 8032, test 1) and a generated one
SELECT webhook_derive_public_key('whsk_nWGxne/9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A=') AS from_seed,
       webhook_derive_public_key('whsk_nWGxne/9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2DXWpgBgrEKt9VL/tPJZAc6DuFy89qmIyWvAhpo9wdRGg==') AS from_keypair,
       webhook_public_key(:edfixed) AS endpoint_key;
SELECT webhook_generate_secret('standard-ed25519') AS edsk \gset
SELECT webhook_derive_public_key(:'edsk') AS edpk \gset
SELECT webhook_sign(:'edsk', 'msg_contracts', :now_ts, '{"n": 1}') AS edsig \gset
SELECT :'edsk' ~ '^whsk_[A-Za-z0-9+/]{86}==$' AS secret_form, :'edpk' ~ '^whpk_[A-Za-z0-9+/]{43}=$' AS key_form,
       :'edsig' ~ '^v1a,[A-Za-z0-9+/]{86}==$' AS signature_form,
       webhook_sign(:'edsk', 'msg_contracts', :now_ts, '{"n": 1}') = :'edsig' AS deterministic;
SELECT webhook_verify(:'edpk', 'msg_contracts', :now_ts, '{"n": 1}', :'edsig') AS with_public_key,
       webhook_verify(:'edsk', 'msg_contracts', :now_ts, '{"n": 1}', :'edsig') AS with_secret_key,
       webhook_verify(:'edpk', 'msg_contracts', :now_ts, '{"n": 2}', :'edsig') AS tampered_body,
       webhook_verify('whpk_11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=', 'msg_contracts', :now_ts, '{"n": 1}',
                      :'edsig') AS other_key,
       webhook_verify(:'edpk', 'msg_contracts', :now_ts, '{"n": 1}', :'sig' || ' ' || :'edsig') AS second_matches,
       webhook_verify(:'edpk', 'msg_contracts', :now_ts, '{"n": 1}', replace(:'edsig', 'v1a,', 'v1,')) AS wrong_version,
       webhook_verify('whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw', 'msg_contracts', :now_ts, '{"n": 1}', :'edsig') AS hmac_key;
-- an endpoint's generated ed25519 key is served through webhook_public_key
SELECT webhook_public_key(:ed) = webhook_derive_public_key(secret) AS endpoint_public_key,
       webhook_verify(webhook_public_key(:ed), 'msg_contracts', :now_ts, 'x',
                      webhook_sign(secret, 'msg_contracts', :now_ts, 'x')) AS round_trip
  FROM webhook_endpoints WHERE id = :ed;

-- webhook_rotate_secret: the old secret keeps signing during the grace period
BEGIN;
SELECT webhook_rotate_secret(:std, 'whsec_sJTbfOL5nLy95+wXimdUusZm4hkvB2gHrL1w1J3dBVk=') AS rotated;
SELECT secret, previous_secrets -> 0 ->> 'secret' AS previous,
       (previous_secrets -> 0 ->> 'expires_at')::timestamptz - now() AS grace
  FROM webhook_endpoints WHERE id = :std;
SELECT previous_secrets, previous_secrets_until - now() AS until, secret
  FROM webhook_endpoint_settings WHERE id = :std;
COMMIT;
-- rotating back to a previous secret drops it from the previous ones
SELECT webhook_rotate_secret(:std, 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw', '1 hour') AS rotated_back;
SELECT secret, jsonb_array_length(previous_secrets) AS kept,
       previous_secrets -> 0 ->> 'secret' AS previous
  FROM webhook_endpoints WHERE id = :std;
-- a generated secret, twelve times: at most ten are kept, newest first
SELECT count(webhook_rotate_secret(:std)) AS rotations FROM generate_series(1, 12);
SELECT previous_secrets FROM webhook_endpoint_settings WHERE id = :std;
SELECT jsonb_array_length(previous_secrets) AS kept,
       (SELECT bool_and(webhook_valid_secret(p ->> 'secret')) FROM jsonb_array_elements(previous_secrets) p) AS valid,
       (SELECT count(DISTINCT p ->> 'secret') FROM jsonb_array_elements(previous_secrets) p) AS distinct_secrets,
       NOT previous_secrets @> '[{"secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}]' AS oldest_dropped
  FROM webhook_endpoints WHERE id = :std;
-- no grace: the old secret stops at once
SELECT webhook_rotate_secret(:ts, 'ts-secret-0002', '0') AS rotated;
SELECT previous_secrets FROM webhook_endpoint_settings WHERE id = :ts;
-- a rotation on a hex scheme takes any 8 to 1024 printable characters
SELECT webhook_rotate_secret(:ts, 'ts-secret-0003', '1 hour') AS rotated;
SELECT previous_secrets FROM webhook_endpoint_settings WHERE id = :ts;
-- a new scheme forgets the previous secrets
SELECT webhook_update_endpoint(:ts, signing => 'hmac-sha256-hex');
SELECT signing, previous_secrets FROM webhook_endpoint_settings WHERE id = :ts;
-- an ed25519 endpoint rotates to a generated ed25519 key
SELECT webhook_rotate_secret(:edfixed) ~ '^whsk_' AS rotated;
SELECT webhook_public_key(:edfixed) <> 'whpk_11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=' AS new_public_key,
       webhook_public_key(:edfixed) = webhook_derive_public_key(secret) AS matches_secret
  FROM webhook_endpoints WHERE id = :edfixed;
SELECT previous_secrets FROM webhook_endpoint_settings WHERE id = :edfixed;

-------------------------------------------------------------------------------
-- 5. The event catalog
-------------------------------------------------------------------------------
SELECT webhook_define_event_type('ct.created', 'an order was placed',
        '{"type": "object", "required": ["id"]}', '{"id": 1}');
SELECT webhook_define_event_type('ct.deleted');
SELECT created_at = updated_at AS fresh FROM webhook_event_types WHERE name = 'ct.created';
SELECT name, description, schema, example FROM webhook_event_types WHERE name LIKE 'ct.%' ORDER BY name;
-- defining it again replaces description, schema and example (NULL included)
SELECT webhook_define_event_type('ct.created', 'an order was placed, v2',
        '{"type": "object", "required": ["id", "total"]}');
SELECT name, description, schema, example, updated_at >= created_at AS updated
  FROM webhook_event_types WHERE name LIKE 'ct.%' ORDER BY name;
SELECT count(*) AS types FROM webhook_event_types WHERE name LIKE 'ct.%';

-- clean up
SELECT count(webhook_delete_endpoint(id)) AS deleted FROM webhook_endpoints WHERE name LIKE 'ct-%';
SELECT count(*) AS left_behind FROM webhook_endpoints WHERE name LIKE 'ct-%';
DELETE FROM webhook_event_types WHERE name LIKE 'ct.%';
