# Upgrade in place: 0.1.0, installed from its released script and filled
# (endpoints of every kind, subscriptions, the event catalog, a watched
# table, events with idempotency keys, and deliveries waiting, failed,
# dead and delivered), is updated with ALTER EXTENSION webhook UPDATE while
# the worker runs.  The worker waits (one LOG line) while the schema is
# 0.1.0 and writes to watched tables go on; after the update nothing is
# lost, every waiting delivery arrives, and the schema is exactly what a
# fresh CREATE EXTENSION makes.
use strict;
use warnings;
use FindBin;
use lib $FindBin::Bin;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use WebhookTest;

my $node = start_node('upgrade', '', no_extension => 1);
my $rcv = start_receiver('upgrade');
my $url = $rcv->{url};
my $versions = $node->safe_psql('postgres',
	"SELECT string_agg(version, ' ' ORDER BY version) FROM pg_available_extension_versions WHERE name = 'webhook'");
like($versions, qr/^0\.1\.0 /, "0.1.0 is installable ($versions)");
my $latest = $node->safe_psql('postgres', "SELECT default_version FROM pg_available_extensions WHERE name = 'webhook'");

$node->safe_psql('postgres', "CREATE EXTENSION webhook VERSION '0.1.0'");
ok($node->wait_for_log(qr/the extension in database "postgres" is version 0\.1\.0, the library serves \Q$latest\E; waiting/),
	'the worker waits for the update, and says so');

# Fill 0.1.0 the way its own functions do
$node->safe_psql('postgres', qq{
	SELECT webhook_create_endpoint('plain', '$url/plain/ok', event_types => '{orders.*}');
	SELECT webhook_create_endpoint('batched', '$url/batched/ok', event_types => '{orders.*}', format => 'batch');
	SELECT webhook_create_endpoint('ordered', '$url/ordered/ok', event_types => '{orders.*}', ordered => true);
	SELECT webhook_create_endpoint('signed-ed', '$url/ed/ok', event_types => '{invoice.*}', signing => 'standard-ed25519');
	SELECT webhook_create_endpoint('filtered', '$url/filtered/ok', event_types => '{none.such}');
	SELECT webhook_subscribe(id, 'orders.created', '{"new": {"vip": true}}') FROM webhook_endpoints WHERE name = 'filtered';
	SELECT webhook_create_endpoint('doomed', '$url/doomed/status/500', event_types => '{doomed.*}', retry_schedule => '{}');
	SELECT webhook_define_event_type('invoice.paid', 'an invoice was paid', example => '{"invoice": 1}');
	CREATE TABLE orders (id int PRIMARY KEY, vip boolean, note text);
	SELECT webhook_watch('orders', exclude_columns => '{note}');
	INSERT INTO orders SELECT i, i % 2 = 0, 'secret' FROM generate_series(1, 20) i;
	SELECT webhook_publish('invoice.paid', jsonb_build_object('invoice', i), 'inv-' || i) FROM generate_series(1, 10) i;
	SELECT webhook_publish('doomed.once', '{}');
	-- the deliveries 0.1.0's worker made (the 0.2.0 library serves 0.1.0's
	-- schema only once updated): one per event and matching endpoint, out
	-- of the fan-out queue, ordered endpoints' on their key's line
	WITH q AS (DELETE FROM webhook_fanout_queue RETURNING event_id)
	INSERT INTO webhook_deliveries (event_id, endpoint_id, ordering_key)
	SELECT e.id, s.endpoint_id, CASE WHEN p.ordered THEN webhook_line_key(e.ordering_key) END
	  FROM q JOIN webhook_events e ON e.id = q.event_id
	  JOIN webhook_subscriptions s
	    ON (s.event_type = '*' OR s.event_type = e.type
	        OR (s.event_type LIKE '%.*' AND starts_with(e.type, left(s.event_type, -1))))
	   AND (s.filter IS NULL OR e.data::jsonb @> s.filter)
	  JOIN webhook_endpoints p ON p.id = s.endpoint_id
	 ORDER BY 1, 2;
	-- an administrator's grants
	CREATE ROLE hook_admin;
	GRANT EXECUTE ON FUNCTION webhook_create_endpoint(text, text, text[], text, jsonb, interval[], interval, text, integer,
	                          text, integer, text, text, text, text, jsonb, integer, boolean),
	                          webhook_update_endpoint(bigint, text, text, text[], text, jsonb, interval[], interval, text,
	                          integer, text, integer, text, text, text, text, jsonb, integer, boolean) TO hook_admin;
	-- (a pinned role: PostgreSQL records no dependency on it)
	GRANT EXECUTE ON FUNCTION webhook_create_endpoint(text, text, text[], text, jsonb, interval[], interval, text, integer,
	                          text, integer, text, text, text, text, jsonb, integer, boolean) TO pg_monitor;
	-- one delivery of each finished kind, and one that failed once
	UPDATE webhook_deliveries SET status = 'dead', attempts = 1, last_status = 500, finished_at = now()
	 WHERE id = (SELECT min(id) FROM webhook_deliveries WHERE endpoint_id = (SELECT id FROM webhook_endpoints WHERE name = 'doomed'));
	UPDATE webhook_deliveries SET status = 'delivered', attempts = 1, finished_at = now()
	 WHERE id = (SELECT min(id) FROM webhook_deliveries WHERE endpoint_id = (SELECT id FROM webhook_endpoints WHERE name = 'plain'));
	UPDATE webhook_deliveries SET attempts = 1, last_status = 503, last_error = 'HTTP 503'
	 WHERE id = (SELECT max(id) FROM webhook_deliveries WHERE endpoint_id = (SELECT id FROM webhook_endpoints WHERE name = 'plain'));
});
my %before = (
	events => $node->safe_psql('postgres', 'SELECT count(*) FROM webhook_events'),
	deliveries => $node->safe_psql('postgres', "SELECT string_agg(status || ':' || n, ',' ORDER BY status) FROM (SELECT status, count(*) n FROM webhook_deliveries GROUP BY 1) s"),
	endpoints => $node->safe_psql('postgres', "SELECT jsonb_agg(to_jsonb(e) - '{consecutive_failures,failing_since,circuit_until,circuit_cooldown,state,state_since,state_reason}'::text[] ORDER BY id) FROM webhook_endpoints e"),
	subscriptions => $node->safe_psql('postgres', 'SELECT string_agg(s::text, E\'\n\' ORDER BY id) FROM webhook_subscriptions s'),
	pending => $node->safe_psql('postgres', "SELECT count(*) FROM webhook_deliveries WHERE status = 'pending'"),
);
$node->safe_psql('postgres', "CREATE TABLE waiting AS SELECT id FROM webhook_deliveries WHERE status = 'pending' AND endpoint_id <> (SELECT id FROM webhook_endpoints WHERE name = 'doomed')");
cmp_ok($before{pending}, '>', 40, "$before{pending} deliveries wait");
is(scalar @{ received($rcv) }, 0, 'nothing is sent while the schema is 0.1.0');

my ($fanout_rc, $fanout_out, $fanout_err) = $node->psql('postgres', 'SELECT webhook_fanout()');
like($fanout_err, qr/older than its library.*\n.*ALTER EXTENSION webhook UPDATE/,
	'a fan-out by hand asks for the update');

# writes to a watched table go on with the 0.2.0 library on the old schema
$node->safe_psql('postgres', 'INSERT INTO orders VALUES (100, true, NULL)');

# a dump of 0.1.0, with that event still queued (restored below)
my $dump010 = PostgreSQL::Test::Utils::tempdir() . '/v010.sql';
$node->command_ok([ 'pg_dump', '-d', $node->connstr('postgres'), '-f', $dump010 ], 'pg_dump of 0.1.0');

$node->safe_psql('postgres', 'ALTER EXTENSION webhook UPDATE');
is($node->safe_psql('postgres', "SELECT extversion FROM pg_extension WHERE extname = 'webhook'"),
	$latest, "updated to $latest");

# nothing lost
is($node->safe_psql('postgres', 'SELECT count(*) FROM webhook_events'), $before{events} + 1, 'every event kept');
is($node->safe_psql('postgres', "SELECT jsonb_agg(to_jsonb(e) ORDER BY id) @> \$j\$$before{endpoints}\$j\$ FROM webhook_endpoints e"),
	't', 'every endpoint setting kept');
is($node->safe_psql('postgres', 'SELECT string_agg(s::text, E\'\n\' ORDER BY id) FROM webhook_subscriptions s'),
	$before{subscriptions}, 'subscriptions kept');
is($node->safe_psql('postgres', "SELECT count(*) FROM webhook_dead_letters"), '1', 'the dead letter kept');
is($node->safe_psql('postgres', q{
	SELECT string_agg(p.proname || ' ' || has_function_privilege('hook_admin', p.oid, 'EXECUTE'), ', ' ORDER BY p.proname)
	  FROM pg_proc p WHERE p.proname IN ('webhook_create_endpoint', 'webhook_update_endpoint')}),
	'webhook_create_endpoint true, webhook_update_endpoint true',
	"an administrator's grants on the functions that gained options are kept");
is($node->safe_psql('postgres', "SELECT has_function_privilege('hook_admin', 'webhook_delete_endpoint(bigint)', 'EXECUTE')"),
	'f', '... and nothing more is granted');
is($node->safe_psql('postgres', "SELECT registered FROM webhook_watched_tables WHERE table_name = 'orders'::regclass"),
	't', 'the watched table is registered');

# every waiting delivery arrives, the failed one included; a capture after
# the update too
$node->safe_psql('postgres', "INSERT INTO orders VALUES (101, false, NULL)");
ok($node->poll_query_until('postgres',
		"SELECT count(*) = 0 FROM webhook_deliveries WHERE status IN ('pending', 'in_flight') AND endpoint_id <> (SELECT id FROM webhook_endpoints WHERE name = 'doomed')"),
	'every waiting delivery was delivered');
is($node->safe_psql('postgres', q{
	SELECT count(*) FROM waiting w JOIN webhook_deliveries d ON d.id = w.id
	 WHERE d.status = 'delivered' AND EXISTS (SELECT 1 FROM webhook_attempts a WHERE a.ok AND w.id = ANY (coalesce(a.delivery_ids, ARRAY[a.delivery_id])))}),
	$node->safe_psql('postgres', 'SELECT count(*) FROM waiting'), 'each of them with a successful request');
my $got = received($rcv);
is($node->safe_psql('postgres', "SELECT count(*) FROM webhook_events WHERE type = 'orders.created' AND data::jsonb->'new'->>'id' IN ('100', '101')"),
	'2', 'rows written before and after the update were captured');
unlike(join('', map { $_->{body} } @$got), qr/"note"/, 'excluded columns stay excluded');

# keys: 0.1.0's are not carried over; new ones are the role's
is($node->safe_psql('postgres', 'SELECT count(*) FROM webhook_idempotency_keys'), '0', "0.1.0's keys are not carried over");
my $k = $node->safe_psql('postgres', "SELECT webhook_publish('invoice.paid', '{\"invoice\": 99}', 'inv-99')");
is($node->safe_psql('postgres', "SELECT webhook_publish('invoice.paid', '{\"invoice\": 99}', 'inv-99')"), $k, 'new keys deduplicate');

# the schema is exactly a fresh installation's
my $describe = q{
	WITH ext AS (SELECT oid FROM pg_extension WHERE extname = 'webhook'),
	members AS (SELECT d.classid, d.objid FROM pg_depend d, ext WHERE d.refobjid = ext.oid AND d.deptype = 'e')
	SELECT string_agg(x, E'\n' ORDER BY x) FROM (
	  SELECT 'function ' || pg_get_functiondef(p.oid) || ' acl ' || (SELECT string_agg(g::text, ',' ORDER BY g::text) FROM unnest(coalesce(p.proacl, acldefault('f', p.proowner))) g) ||
	         coalesce(' comment ' || obj_description(p.oid, 'pg_proc'), '') AS x
	    FROM members m JOIN pg_proc p ON m.classid = 'pg_proc'::regclass AND p.oid = m.objid
	  UNION ALL
	  SELECT 'relation ' || c.relname || ' ' || c.relkind::text || coalesce(' ' || c.reloptions::text, '') ||
	         ' acl ' || (SELECT string_agg(g::text, ',' ORDER BY g::text) FROM unnest(coalesce(c.relacl, acldefault('r', c.relowner))) g) || ' rls ' || c.relrowsecurity ||
	         coalesce(' comment ' || obj_description(c.oid, 'pg_class'), '') ||
	         CASE WHEN c.relkind = 'v' THEN ' view ' || pg_get_viewdef(c.oid) ELSE '' END
	    FROM members m JOIN pg_class c ON m.classid = 'pg_class'::regclass AND c.oid = m.objid
	  UNION ALL
	  SELECT 'column ' || c.relname || '.' || a.attname || ' ' || format_type(a.atttypid, a.atttypmod) ||
	         CASE WHEN a.attnotnull THEN ' not null' ELSE '' END ||
	         coalesce(' default ' || pg_get_expr(ad.adbin, ad.adrelid), '') ||
	         CASE WHEN a.attidentity <> '' THEN ' identity ' || a.attidentity::text ELSE '' END
	    FROM members m JOIN pg_class c ON m.classid = 'pg_class'::regclass AND c.oid = m.objid
	    JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
	    LEFT JOIN pg_attrdef ad ON ad.adrelid = c.oid AND ad.adnum = a.attnum
	   WHERE c.relkind IN ('r', 'p')
	  UNION ALL
	  SELECT 'constraint ' || c.relname || ' ' || k.conname || ' ' || pg_get_constraintdef(k.oid)
	    FROM members m JOIN pg_class c ON m.classid = 'pg_class'::regclass AND c.oid = m.objid
	    JOIN pg_constraint k ON k.conrelid = c.oid
	  UNION ALL
	  SELECT 'index ' || pg_get_indexdef(i.indexrelid)
	    FROM members m JOIN pg_class c ON m.classid = 'pg_class'::regclass AND c.oid = m.objid
	    JOIN pg_index i ON i.indrelid = c.oid
	  UNION ALL
	  SELECT 'trigger ' || pg_get_triggerdef(t.oid)
	    FROM members m JOIN pg_class c ON m.classid = 'pg_class'::regclass AND c.oid = m.objid
	    JOIN pg_trigger t ON t.tgrelid = c.oid AND NOT t.tgisinternal
	  UNION ALL
	  SELECT 'policy ' || p.polname || ' ' || pg_get_expr(p.polqual, p.polrelid)
	    FROM members m JOIN pg_class c ON m.classid = 'pg_class'::regclass AND c.oid = m.objid
	    JOIN pg_policy p ON p.polrelid = c.oid
	  UNION ALL
	  -- (initial privileges that are the default are as good as none: the
	  -- update's GRANT to PUBLIC leaves such a row, pg_dump sees no difference)
	  SELECT 'initprivs ' || pg_describe_object(i.classoid, i.objoid, i.objsubid) || ' ' || i.privtype::text || ' ' || i.initprivs::text
	    FROM members m JOIN pg_init_privs i ON i.classoid = m.classid AND i.objoid = m.objid
	    LEFT JOIN pg_proc p ON i.classoid = 'pg_proc'::regclass AND p.oid = i.objoid
	   WHERE p.oid IS NULL
	      OR (SELECT array_agg(g::text ORDER BY g::text) FROM unnest(i.initprivs) g)
	         IS DISTINCT FROM (SELECT array_agg(g::text ORDER BY g::text) FROM unnest(acldefault('f', p.proowner)) g)
	  UNION ALL
	  SELECT 'config ' || unnest(e.extconfig)::regclass::text || ' ' FROM pg_extension e, ext WHERE e.oid = ext.oid
	) s};
# A dump of 0.1.0 restores into 0.1.0 (the dump's CREATE EXTENSION IF NOT
# EXISTS then does nothing), and the update fans out what was queued in it,
# exactly as it did in the database dumped
$node->safe_psql('postgres', 'CREATE DATABASE from_dump');
$node->safe_psql('from_dump', "CREATE EXTENSION webhook VERSION '0.1.0'");
$node->command_ok([ 'psql', '-X', '-q', '-1', '-v', 'ON_ERROR_STOP=1', '-d', $node->connstr('from_dump'), '-f', $dump010 ],
	'the dump of 0.1.0 restores into 0.1.0');
$node->safe_psql('from_dump', 'ALTER EXTENSION webhook UPDATE');
# (the worker serves "postgres" only: the fan-out is run by hand)
is($node->safe_psql('from_dump', 'SELECT webhook_fanout()'), '1', 'after the update, the queued event is fanned out');
is($node->safe_psql('from_dump', 'SELECT count(*) FROM webhook_events e WHERE NOT webhook_fanned_out(e.txid, e.id)'),
	'0', '... and nothing else waits');
my $made = q{SELECT string_agg(d.event_id || ':' || d.endpoint_id, ',' ORDER BY d.event_id, d.endpoint_id)
	FROM webhook_deliveries d WHERE d.event_id <= %s};
my $last_dumped = $node->safe_psql('from_dump', 'SELECT max(id) FROM webhook_events');
is($node->safe_psql('from_dump', sprintf($made, $last_dumped)), $node->safe_psql('postgres', sprintf($made, $last_dumped)),
	'the same deliveries as in the database dumped, none twice');
$node->safe_psql('postgres', 'DROP DATABASE from_dump');

# updated by another superuser than the one that created the extension,
# the functions that carry grants over stay the old owner's, who can
# revoke them (the grantor of a grant is the function's owner)
$node->safe_psql('postgres', 'CREATE DATABASE other_updater');
$node->safe_psql('other_updater', q{
	CREATE EXTENSION webhook VERSION '0.1.0';
	GRANT EXECUTE ON FUNCTION webhook_update_endpoint(bigint, text, text, text[], text, jsonb, interval[], interval, text,
	                          integer, text, integer, text, text, text, text, jsonb, integer, boolean) TO hook_admin;
	CREATE ROLE updater SUPERUSER;
	SET ROLE updater;
	ALTER EXTENSION webhook UPDATE;
	RESET ROLE;
	REVOKE ALL ON ALL FUNCTIONS IN SCHEMA public FROM hook_admin;
});
is($node->safe_psql('other_updater', q{
	SELECT pg_get_userbyid(proowner) || ' ' || has_function_privilege('hook_admin', oid, 'EXECUTE')
	  FROM pg_proc WHERE proname = 'webhook_update_endpoint'}),
	'postgres false', 'the old owner keeps the function and can revoke the grant carried over');
$node->safe_psql('postgres', 'DROP DATABASE other_updater');
# the grants carried over are what the same GRANT makes on a fresh
# installation: the ACL and the role dependencies
$node->safe_psql('postgres', 'CREATE DATABASE fresh');
$node->safe_psql('fresh', q{
	CREATE EXTENSION webhook;
	GRANT EXECUTE ON FUNCTION webhook_create_endpoint(text, text, text[], text, jsonb, interval[], interval, text, integer,
	                          text, integer, text, text, text, text, jsonb, integer, boolean, text, float8),
	                          webhook_update_endpoint(bigint, text, text, text[], text, jsonb, interval[], interval, text,
	                          integer, text, integer, text, text, text, text, jsonb, integer, boolean, text, float8) TO hook_admin;
	GRANT EXECUTE ON FUNCTION webhook_create_endpoint(text, text, text[], text, jsonb, interval[], interval, text, integer,
	                          text, integer, text, text, text, text, jsonb, integer, boolean, text, float8) TO pg_monitor;
});
my $grants = q{
	SELECT p.proname || ' acl ' || p.proacl::text || ' deps ' ||
	       coalesce((SELECT string_agg(pg_get_userbyid(d.refobjid) || ':' || d.deptype::text, ',' ORDER BY 1)
	                   FROM pg_shdepend d
	                  WHERE d.classid = 'pg_proc'::regclass AND d.objid = p.oid
	                    AND d.dbid = (SELECT oid FROM pg_database WHERE datname = current_database())), '')
	  FROM pg_proc p WHERE p.proname IN ('webhook_create_endpoint', 'webhook_update_endpoint') ORDER BY 1};
my $fresh_grants = $node->safe_psql('fresh', $grants);
like($fresh_grants, qr/hook_admin:a/, 'a GRANT records a dependency');
is($node->safe_psql('postgres', $grants), $fresh_grants, "the update's grants are a GRANT's");
my ($rc, $out, $err) = $node->psql('postgres', 'DROP ROLE hook_admin');
like($err, qr/privileges for function webhook_create_endpoint.*privileges for function webhook_update_endpoint/s,
	'DROP ROLE sees the grants carried over');
# (the administrator's grants are its own, not the schema's)
for my $db (qw(postgres fresh))
{
	$node->safe_psql($db, 'REVOKE ALL ON ALL FUNCTIONS IN SCHEMA public FROM hook_admin, pg_monitor');
}
$node->safe_psql('postgres', 'DROP ROLE hook_admin');
my $upgraded = $node->safe_psql('postgres', $describe);
my $fresh = $node->safe_psql('fresh', $describe);
cmp_ok(length $fresh, '>', 10000, 'the description covers the schema');
like($fresh, qr/^initprivs function webhook_create_endpoint\(.*\{postgres=X\/postgres\}$/m,
	'... initial privileges included');
if ($upgraded ne $fresh)
{
	my %u = map { $_ => 1 } split /\n(?=(?:function|relation|column|constraint|index|trigger|policy|initprivs|config) )/, $upgraded;
	my %f = map { $_ => 1 } split /\n(?=(?:function|relation|column|constraint|index|trigger|policy|initprivs|config) )/, $fresh;
	diag("only after the update: " . substr($_, 0, 300)) for grep { !$f{$_} } sort keys %u;
	diag("only in a fresh install: " . substr($_, 0, 300)) for grep { !$u{$_} } sort keys %f;
}
is($upgraded, $fresh, 'the updated schema is exactly a fresh installation\'s');

done_testing();
