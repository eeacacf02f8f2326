\set SHOW_CONTEXT never
-- Standard Webhooks known answer
SELECT webhook_sign('whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw', 'msg_p5jXN8AQM9LWM0D4loKWxJek',
                    1614265330, '{"test": 2432232314}');
-- any change to id, timestamp or body changes the signature
SELECT webhook_sign('whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw', 'msg_p5jXN8AQM9LWM0D4loKWxJel',
                    1614265330, '{"test": 2432232314}');
SELECT webhook_sign('whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw', 'msg_p5jXN8AQM9LWM0D4loKWxJek',
                    1614265331, '{"test": 2432232314}');
SELECT webhook_sign('whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw', 'msg_p5jXN8AQM9LWM0D4loKWxJek',
                    1614265330, '{"test": 2432232315}');
-- bad secrets
SELECT webhook_sign('MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw', 'msg_1', 1, 'x');
SELECT webhook_sign('whsec_!!!!', 'msg_1', 1, 'x');
SELECT webhook_sign('whsec_', 'msg_1', 1, 'x');
SELECT webhook_sign('whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw', repeat('m', 101), 1, 'x');
SELECT webhook_sign(NULL, 'msg_1', 1, 'x') IS NULL AS strict;
SELECT webhook_valid_secret(s) FROM (VALUES ('whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw'),
       ('whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaS'), ('whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw=='),
       ('whsec_' || replace(encode(convert_to(repeat('k', 64), 'UTF8'), 'base64'), E'\n', '')),
       ('whsec_' || replace(encode(convert_to(repeat('k', 65), 'UTF8'), 'base64'), E'\n', ''))) v(s);
-- event type names
SELECT t, webhook_valid_event_type(t) AS type, webhook_valid_event_type(t, true) AS pattern
  FROM (VALUES ('orders.created'), ('a'), ('a-b_c.D9'), ('*'), ('orders.*'), ('orders.'), ('.x'),
               ('a..b'), ('a b'), ('orders.*.x'), ('é'), ('')) v(t);
