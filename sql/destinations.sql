\set SHOW_CONTEXT never
-- Special address ranges (docs/reliability.md, "Address ranges"), judged from
-- literal hosts through webhook_check_url: nothing here connects anywhere.
-- This suite's webhook.allowed_networks is '127.0.0.1/32, ::1/128'.
-- Each range is probed inside, at its edges and just outside, in several
-- notations; the refused host is shown as libcurl normalized it, in lower case.
CREATE FUNCTION pg_temp.verdict(url text) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    detail text;
BEGIN
    PERFORM webhook_check_url(url);
    RETURN 'allowed';
EXCEPTION WHEN insufficient_privilege THEN
    GET STACKED DIAGNOSTICS detail = PG_EXCEPTION_DETAIL;
    RETURN 'refused ' || substring(detail FROM '"(.*)"');
END
$$;

-- IPv6 forms that carry an IPv4 address.  Only IPv4-mapped addresses are
-- the IPv4 address itself (the kernel connects to it over IPv4), so only
-- they follow webhook.allowed_networks' IPv4 entries; NAT64 (well-known
-- prefix) needs a public IPv4 address; every other form is refused.
SELECT what, pg_temp.verdict('http://[' || host || ']/') FROM (VALUES
    ('SIIT, the issue''s first example', '::ffff:0:127.0.0.1'),
    ('Teredo, the issue''s second example', '2001::7f00:1'),
    ('mapped loopback, allowed as 127.0.0.1', '::ffff:127.0.0.1'),
    ('mapped loopback, hex', '::ffff:7f00:1'),
    ('mapped loopback, uncompressed', '0:0:0:0:0:ffff:7f00:1'),
    ('mapped loopback, zero-padded upper case', '0000:0000:0000:0000:0000:FFFF:7F00:0001'),
    ('mapped loopback, zone id', '::ffff:127.0.0.1%25lo'),
    ('mapped 127.0.0.2', '::FFFF:127.0.0.2'),
    ('mapped public', '::ffff:93.184.216.34'),
    ('mapped benchmarking', '::ffff:198.18.0.1'),
    ('mapped 6to4 relay anycast', '::ffff:192.88.99.1'),
    ('IPv4-compatible loopback', '::127.0.0.1'),
    ('IPv4-compatible public', '::93.184.216.34'),
    ('IPv4-compatible, hex', '::5db8:d822'),
    ('IPv6 loopback, allowed', '0:0:0:0:0:0:0:1'),
    ('::2', '::2'),
    ('SIIT public', '::ffff:0:93.184.216.34'),
    ('SIIT, uncompressed', '0:0:0:0:ffff:0:7f00:1'),
    ('SIIT, upper case hex', '::FFFF:0:5DB8:D822'),
    ('SIIT, zone id', '::ffff:0:127.0.0.1%25eth0'),
    ('NAT64 public', '64:ff9b::93.184.216.34'),
    ('NAT64 public, hex', '64:ff9b::5db8:d822'),
    ('NAT64 public, uncompressed', '64:FF9B:0:0:0:0:5DB8:D822'),
    ('NAT64 loopback, not the allowed 127.0.0.1', '64:ff9b::127.0.0.1'),
    ('NAT64 private', '64:ff9b::192.168.1.1'),
    ('NAT64 documentation', '64:ff9b::198.51.100.1'),
    ('NAT64 AS112', '64:ff9b::192.175.48.1'),
    ('NAT64 prefix, non-zero bits 80-95', '64:ff9b::1:5db8:d822'),
    ('just below NAT64', '64:ff9a:ffff:ffff:ffff:ffff:ffff:ffff'),
    ('local-use NAT64 public', '64:ff9b:1::93.184.216.34'),
    ('local-use NAT64, last', '64:ff9b:1:ffff:ffff:ffff:ffff:ffff'),
    ('6to4 public', '2002:5db8:d822::1'),
    ('6to4 loopback', '2002:7f00:1::1'),
    ('6to4, last', '2002:ffff:ffff:ffff:ffff:ffff:ffff:ffff'),
    ('just below 6to4', '2001:ffff:ffff:ffff:ffff:ffff:ffff:ffff'),
    ('just above 6to4', '2003::1'),
    ('Teredo, RFC 4380 form', '2001:0:4136:e378:8000:63bf:3fff:fdd2'),
    ('Teredo, zero-padded', '2001:0000:0000:0000:0000:0000:7F00:0001'),
    ('Teredo, zone id', '2001::7f00:1%25eth0')
) AS t(what, host);

-- The rest of 2001::/23 (IETF protocol assignments), globally reachable
-- parts included, and the other IPv6 special-purpose ranges.
SELECT what, pg_temp.verdict('http://[' || host || ']/') FROM (VALUES
    ('2001::/23 first', '2001::'),
    ('PCP anycast', '2001:1::1'),
    ('TURN anycast', '2001:1::2'),
    ('benchmarking', '2001:2::1'),
    ('AMT', '2001:3::1'),
    ('AS112-v6', '2001:4:112::1'),
    ('ORCHID', '2001:10::1'),
    ('ORCHIDv2', '2001:20::1'),
    ('drone remote ID', '2001:30::1'),
    ('2001::/23 last', '2001:1ff:ffff:ffff:ffff:ffff:ffff:ffff'),
    ('just above 2001::/23', '2001:200::1'),
    ('documentation', '2001:db8::1'),
    ('documentation, uncompressed', '2001:DB8:0:0:0:0:0:1'),
    ('documentation, last', '2001:db8:ffff:ffff:ffff:ffff:ffff:ffff'),
    ('just below 2001:db8::/32', '2001:db7:ffff:ffff:ffff:ffff:ffff:ffff'),
    ('just above 2001:db8::/32', '2001:db9::'),
    ('AS112 direct delegation', '2620:4f:8000::1'),
    ('just below 2620:4f:8000::/48', '2620:4f:7fff:ffff:ffff:ffff:ffff:ffff'),
    ('just above 2620:4f:8000::/48', '2620:4f:8001::'),
    ('documentation 3fff::/20', '3fff::1'),
    ('3fff::/20 last', '3fff:fff:ffff:ffff:ffff:ffff:ffff:ffff'),
    ('just above 3fff::/20', '3fff:1000::'),
    ('just below 3fff::/20', '3ffe:ffff:ffff:ffff:ffff:ffff:ffff:ffff'),
    ('first of 2000::/3', '2000::1'),
    ('last of 2000::/3', '3fff:ffff:ffff:ffff:ffff:ffff:ffff:ffff'),
    ('just below 2000::/3', '1fff:ffff:ffff:ffff:ffff:ffff:ffff:ffff'),
    ('just above 2000::/3', '4000::'),
    ('SRv6 SIDs', '5f00::1'),
    ('discard-only', '100::1'),
    ('discard-only, last', '100::ffff:ffff:ffff:ffff'),
    ('dummy prefix', '100:0:0:1::1'),
    ('unique local, first', 'fc00::'),
    ('unique local, last', 'fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff'),
    ('link-local, zone id', 'fe80::1%25eth0'),
    ('link-local, upper case', 'FEBF::1'),
    ('site-local', 'fec0::1'),
    ('multicast', 'ff0e::1'),
    ('a public address', '2606:2800:220:1:248:1893:25c8:1946')
) AS t(what, host);

-- IPv4 special-purpose ranges, edges, and other notations.
SELECT what, pg_temp.verdict('http://' || host || '/') FROM (VALUES
    ('PCP anycast', '192.0.0.9'),
    ('just above 192.0.0.0/24', '192.0.1.0'),
    ('AS112-v4', '192.31.196.1'),
    ('just below AS112-v4', '192.31.195.255'),
    ('just above AS112-v4', '192.31.197.0'),
    ('AMT', '192.52.193.1'),
    ('6to4 relay anycast', '192.88.99.1'),
    ('just below 192.88.99.0/24', '192.88.98.255'),
    ('just above 192.88.99.0/24', '192.88.100.0'),
    ('AS112 direct delegation', '192.175.48.1'),
    ('benchmarking, first', '198.18.0.0'),
    ('benchmarking, last', '198.19.255.255'),
    ('benchmarking, hex', '0xc6.0x12.0.1'),
    ('benchmarking, decimal', '3323068417'),
    ('just below benchmarking', '198.17.255.255'),
    ('just above benchmarking', '198.20.0.0'),
    ('documentation TEST-NET-1', '192.0.2.1'),
    ('documentation TEST-NET-2', '198.51.100.1'),
    ('documentation TEST-NET-3, last', '203.0.113.255'),
    ('just above TEST-NET-3', '203.0.114.0'),
    ('CGNAT, first', '100.64.0.0'),
    ('just below CGNAT', '100.63.255.255'),
    ('just above CGNAT', '100.128.0.0'),
    ('multicast, last', '239.255.255.255'),
    ('just below multicast', '223.255.255.255'),
    ('reserved', '240.0.0.1'),
    ('limited broadcast', '255.255.255.255'),
    ('a public address', '93.184.216.34')
) AS t(what, host);
