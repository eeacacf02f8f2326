# Destinations and lifecycle: loopback is refused at connect time once it is
# no longer allowed (a name that resolves to loopback too), without a byte
# reaching the receiver; no worker stays where the extension is not, one
# starts at CREATE EXTENSION and leaves at DROP EXTENSION, and the worker
# never blocks DROP DATABASE.
use strict;
use warnings;
use FindBin;
use lib $FindBin::Bin;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use WebhookTest;

my $node = start_node('lifecycle', "webhook.database_name = 'app'\n", no_extension => 1);
my $rcv = start_receiver('lifecycle');
my $u = $rcv->{url};
my $port = $rcv->{port};

# no database "app" yet: the launcher waits quietly; once it exists, a
# worker looks, finds no extension and leaves
my $log_start = -s $node->logfile;
$node->safe_psql('postgres', 'CREATE DATABASE app');
ok($node->poll_query_until('postgres', q{
	SELECT count(*) = 0 FROM pg_stat_activity WHERE backend_type = 'webhook worker'}),
	'no worker stays in a database without the extension');

# CREATE EXTENSION starts a worker at once, which serves it from then on
$node->safe_psql('app', q{
	CREATE SCHEMA hooks;
	CREATE EXTENSION webhook SCHEMA hooks});
my $id = $node->safe_psql('app', qq{
	SELECT hooks.webhook_create_endpoint('ep', '$u/ep/ok', secret => '$SECRET')});
$node->safe_psql('app', "SELECT hooks.webhook_publish('a.first', '{}')");
ok(wait_received($rcv, sub { grep { $_->{body} =~ /a\.first/ } @{ $_[0] } }, 60, 'first'),
	'delivered from an extension created in a non-default schema');
my $pid = worker_pid($node);
is($node->safe_psql('app', "SELECT database || ' ' || state || ' ' || (worker_pid = $pid) FROM hooks.webhook_workers"),
	'app served true', 'webhook_workers shows the database served by that worker');

# loopback no longer allowed: the worker checks every URL again, records a
# failed attempt and sends nothing
$node->append_conf('postgresql.conf', "webhook.allowed_networks = ''\n");
$node->reload;
$node->poll_query_until('app', "SELECT current_setting('webhook.allowed_networks') = ''")
  or die 'reload not applied';
my $before = scalar(@{ received($rcv) });
$node->safe_psql('app', "SELECT hooks.webhook_publish('a.blocked', '{}')");
ok($node->poll_query_until('app', qq{
	SELECT count(*) = 1 FROM hooks.webhook_attempts a
	  JOIN hooks.webhook_deliveries d ON d.id = a.delivery_id
	  JOIN hooks.webhook_events e ON e.id = d.event_id
	 WHERE e.type = 'a.blocked' AND NOT a.ok}), 'blocked attempt recorded as a failure');
like($node->safe_psql('app', q{
	SELECT d.last_error FROM hooks.webhook_deliveries d JOIN hooks.webhook_events e ON e.id = d.event_id
	 WHERE e.type = 'a.blocked'}), qr/outside webhook.allowed_networks/, 'the error names the rule');

# "localhost" is refused by name, before any connection and even in a direct UPDATE
my ($ok, $out, $err) = $node->psql('app', qq{
	UPDATE hooks.webhook_endpoints SET url = 'http://localhost:$port/ep/ok' WHERE id = $id});
like($err, qr/endpoint destination is not allowed/, 'a direct UPDATE to localhost is refused');

# A name that resolves to loopback is refused at connect time, address by
# address.  The machine's own name usually maps to 127.x in /etc/hosts.
my $host = `hostname`;
chomp $host;
my $resolved = `getent ahostsv4 $host 2>/dev/null`;
SKIP:
{
	skip "$host does not resolve to loopback here", 3
	  unless $host =~ /^[A-Za-z0-9.-]+$/ && $resolved =~ /^127\./ && $resolved !~ /^(?!127\.)\d/m;
	$node->append_conf('postgresql.conf', "webhook.allowed_networks = '127.0.0.0/8'\n");
	$node->reload;
	$node->poll_query_until('app', "SELECT current_setting('webhook.allowed_networks') = '127.0.0.0/8'");
	$node->safe_psql('app', qq{
		UPDATE hooks.webhook_endpoints SET url = 'http://$host:$port/ep/ok' WHERE id = $id});
	$node->append_conf('postgresql.conf', "webhook.allowed_networks = ''\n");
	$node->reload;
	$node->poll_query_until('app', "SELECT current_setting('webhook.allowed_networks') = ''");
	my $t = $node->safe_psql('app', "SELECT ok || '|' || coalesce(status::text, '') || '|' || error FROM hooks.webhook_test($id)");
	like($t, qr/^false\|\|destination address 127\.[0-9.]+ is not allowed/,
		"webhook_test to $host refused at connect time: $t");
	$node->safe_psql('app', "SELECT hooks.webhook_publish('a.byname', '{}')");
	ok($node->poll_query_until('app', qq{
		SELECT d.last_error LIKE 'destination address 127.% is not allowed'
		  FROM hooks.webhook_deliveries d JOIN hooks.webhook_events e ON e.id = d.event_id
		 WHERE e.type = 'a.byname' AND d.attempts >= 1}), 'the worker refuses it at connect time too');
}
is(scalar(@{ received($rcv) }), $before, 'not one request reached the receiver');

# allowed again: the waiting delivery goes through on its retry
$node->append_conf('postgresql.conf', "webhook.allowed_networks = '127.0.0.0/8, ::1/128'\n");
$node->reload;
$node->poll_query_until('app', "SELECT current_setting('webhook.allowed_networks') <> ''")
  or die 'reload not applied';
$node->safe_psql('app', qq{
	UPDATE hooks.webhook_endpoints SET url = '$u/ep/ok' WHERE id = $id;
	UPDATE hooks.webhook_deliveries SET next_attempt_at = now() WHERE status = 'pending'});
ok(wait_received($rcv, sub { grep { $_->{body} =~ /a\.blocked/ } @{ $_[0] } }, 60, 'after allow'),
	'delivered once the network is allowed again');

# A DROP EXTENSION left uncommitted while requests are in flight, then
# rolled back: the worker does no database work meanwhile (no error, it says
# it is waiting), keeps the outcomes, and records them after the rollback;
# each event is sent once.
$node->safe_psql('app', qq{
	UPDATE hooks.webhook_endpoints SET url = '$u/held/slow/1500', timeout = '10s' WHERE id = $id;
	SELECT count(hooks.webhook_publish('a.held', jsonb_build_object('i', i))) FROM generate_series(1, 5) i});
wait_received($rcv, sub { (grep { $_->{body} =~ /a\.held/ } @{ $_[0] }) >= 5 }, 60, 'held requests');
my $held_log = -s $node->logfile;
my $dropper = $node->background_psql('app');
$dropper->query_safe('BEGIN');
$dropper->query_safe('DROP EXTENSION webhook');
ok(wait_until(sub { slurp_file($node->logfile, $held_log) =~
			/waiting for a transaction that is dropping the extension/ }, 60, 'the wait logged'),
	'the worker waits for an uncommitted DROP EXTENSION and says so');
$dropper->query_safe('ROLLBACK');
$dropper->quit;
ok($node->poll_query_until('app', qq{
	SELECT count(*) = 5 FROM hooks.webhook_deliveries d JOIN hooks.webhook_events e ON e.id = d.event_id
	 WHERE e.type = 'a.held' AND d.status = 'delivered' AND d.attempts = 1}),
	'after the rollback, the outcomes kept meanwhile are recorded');
is(scalar(grep { $_->{body} =~ /a\.held/ } @{ received($rcv) }), 5, 'each held event was sent once');

# DROP EXTENSION is not blocked by requests in flight; CREATE again works
$node->safe_psql('app', qq{
	UPDATE hooks.webhook_endpoints SET url = '$u/ep/hang', timeout = '60s' WHERE id = $id;
	SELECT hooks.webhook_publish('a.hanging', '{}')});
wait_received($rcv, sub { grep { $_->{body} =~ /a\.hanging/ } @{ $_[0] } }, 60, 'hanging request');
my $old_max = $node->safe_psql('app', 'SELECT max(id) FROM hooks.webhook_events');
$node->safe_psql('app', 'SET lock_timeout = 0; DROP EXTENSION webhook');
pass('DROP EXTENSION with a request in flight');
$node->safe_psql('app', 'CREATE EXTENSION webhook');
# a new installation must not reuse the webhook-ids (event ids) of the old one
my $new_first = $node->safe_psql('app', "SELECT webhook_publish('a.probe', '{}')");
ok(abs($new_first - $old_max) > 1000000, "event ids start elsewhere after CREATE EXTENSION ($old_max, then $new_first)");
$node->safe_psql('app', qq{
	SELECT webhook_create_endpoint('again', '$u/again/ok', secret => '$SECRET');
	SELECT webhook_publish('a.again', '{}')});
ok(wait_received($rcv, sub { grep { $_->{body} =~ /a\.again/ } @{ $_[0] } }, 60, 'again'),
	'delivered after DROP and CREATE EXTENSION');

# pg_dump keeps every table and the id counters (webhook-id derives from
# the event id: a restore must never hand out an id twice)
my $dump = PostgreSQL::Test::Utils::tempdir() . '/app.sql';
$node->command_ok([ 'pg_dump', '-d', $node->connstr('app'), '-f', $dump ], 'pg_dump app');
$node->safe_psql('postgres', 'CREATE DATABASE restored');
$node->command_ok([ 'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', $node->connstr('restored'), '-f', $dump ],
	'restore');
my $q = 'SELECT concat_ws(\' \', (SELECT count(*) FROM webhook_endpoints), (SELECT count(*) FROM webhook_events),
	(SELECT count(*) FROM webhook_deliveries), (SELECT count(*) FROM webhook_subscriptions))';
is($node->safe_psql('restored', $q), $node->safe_psql('app', $q), 'endpoints, subscriptions and the queue restored');
is($node->safe_psql('restored', 'SELECT count(*) FROM webhook_attempts'), '0', 'the attempt log is not dumped');
ok($node->safe_psql('restored', "SELECT webhook_publish('a.after', '{}') > (SELECT max(id) FROM webhook_events WHERE type <> 'a.after')"),
	'event ids continue after the restore');
$node->safe_psql('postgres', 'DROP DATABASE restored');

# Events not fanned out yet stay queued through pg_dump and restore (a
# database the worker does not serve keeps them queued), and are fanned out
# there like any others
$node->safe_psql('postgres', 'CREATE DATABASE unserved');
$node->safe_psql('unserved', "CREATE EXTENSION webhook;
	SELECT webhook_create_endpoint('later', 'https://later.example.com/', event_types => '{q.*}');
	SELECT count(webhook_publish('q.done', jsonb_build_object('i', i))) FROM generate_series(1, 2) i");
# two events fanned out before the dump; then a transaction large enough to
# be set aside (50 events or more), of which ten are taken, and three
# events, not
$node->safe_psql('unserved', 'SELECT webhook_fanout()');
$node->safe_psql('unserved',
	"SELECT count(webhook_publish('q.bulk', jsonb_build_object('i', i))) FROM generate_series(1, 4100) i");
is($node->safe_psql('unserved', 'SELECT webhook_fanout(10)'), '10', 'ten events of the large transaction taken');
is($node->safe_psql('unserved', 'SELECT count(*) FROM webhook_fanout_aside'), '1', 'it is set aside');
$node->safe_psql('unserved',
	"SELECT count(webhook_publish('q.waiting', jsonb_build_object('i', i))) FROM generate_series(1, 3) i");
$node->command_ok([ 'pg_dump', '-d', $node->connstr('unserved'), '-f', $dump ], 'pg_dump a database with queued events');
$node->safe_psql('postgres', 'CREATE DATABASE unserved2');
$node->command_ok([ 'psql', '-X', '-q', '-1', '-v', 'ON_ERROR_STOP=1', '-d', $node->connstr('unserved2'), '-f', $dump ],
	'restore it in one transaction');
my $queued = 'SELECT string_agg(e.id::text, \',\' ORDER BY e.id) FROM webhook_events e WHERE NOT webhook_fanned_out(e.txid, e.id)';
my $waiting = $node->safe_psql('unserved', $queued);
is(scalar(split /,/, $waiting), 4093, 'the rest of the large transaction and three events wait for the fan-out');
is($node->safe_psql('unserved2', $queued), $waiting, 'the fan-out cursor is restored with the events');
is($node->safe_psql('unserved2', 'SELECT webhook_fanout(100000)'), '4093', 'restored waiting events are fanned out, and only they');
ok($node->log_contains('the fan-out starts again from the restored events not yet fanned out'),
	'the restore is recognised');
is($node->safe_psql('unserved2', 'SELECT count(*), count(DISTINCT event_id) FROM webhook_deliveries'), '4105|4105',
	'one delivery per restored event');
is($node->safe_psql('unserved2', 'SELECT count(*) FROM webhook_fanout_aside WHERE next_id <= hi_id'), '0',
	'nothing set aside is left to take');
$node->safe_psql('unserved2', "SELECT webhook_publish('q.after', '{}')");
is($node->safe_psql('unserved2', 'SELECT webhook_fanout()'), '1', 'events published after the restore are fanned out');
$node->safe_psql('postgres', 'DROP DATABASE unserved');
$node->safe_psql('postgres', 'DROP DATABASE unserved2');

# A dump taken while a transaction is set aside and an ordered endpoint
# holds the delivery of a later event of a key that transaction's last
# event has too: after the restore, the held delivery is made again, after
# the transaction's own event of that key (the restored cursor no longer
# holds it), and new ticks come after the restored deliveries' ticks
$node->safe_psql('postgres', 'CREATE DATABASE held');
$node->safe_psql('held', "CREATE EXTENSION webhook;
	SELECT webhook_create_endpoint('ordq', 'https://ordq.example.com/', event_types => '{h.*}', ordered => true);
	SELECT count(webhook_publish('h.bulk', jsonb_build_object('i', i), NULL, CASE WHEN i = 4100 THEN 'k' END))
	  FROM generate_series(1, 4100) i");
is($node->safe_psql('held', 'SELECT webhook_fanout(10)'), '10', 'ten events of the large transaction taken');
$node->safe_psql('held', "SELECT webhook_publish('h.later', '{}', NULL, 'k')");
$node->safe_psql('held', 'SELECT webhook_fanout(10)');
my $line = q{SELECT string_agg(e.type, ',' ORDER BY d.tick_id NULLS FIRST, d.event_id)
	FROM webhook_deliveries d JOIN webhook_events e ON e.id = d.event_id WHERE d.ordering_key = 'k'};
is($node->safe_psql('held', $line), 'h.later', 'the later event\'s delivery is made first, and held');
$node->command_ok([ 'pg_dump', '-d', $node->connstr('held'), '-f', $dump ], 'pg_dump it');
$node->safe_psql('postgres', 'CREATE DATABASE held2');
$node->command_ok([ 'psql', '-X', '-q', '-1', '-v', 'ON_ERROR_STOP=1', '-d', $node->connstr('held2'), '-f', $dump ],
	'restore it');
my $ticks = $node->safe_psql('held2', 'SELECT max(tick_id) FROM webhook_deliveries');
$node->safe_psql('held2', 'SELECT webhook_fanout(100000)');
is($node->safe_psql('held2', $line), 'h.bulk,h.later', 'after the restore, key k\'s line is in commit order');
is($node->safe_psql('held2', "SELECT min(tick_id) > $ticks FROM webhook_deliveries d JOIN webhook_events e ON e.id = d.event_id
	WHERE e.type = 'h.later'"), 't', 'ticks after the restore come after the restored ones');
is($node->safe_psql('held2', 'SELECT count(*), count(DISTINCT event_id) FROM webhook_deliveries'), '4101|4101',
	'one delivery per event');
$node->safe_psql('postgres', 'DROP DATABASE held');
$node->safe_psql('postgres', 'DROP DATABASE held2');

# DROP DATABASE is not blocked by the worker, which waits for it to return
$node->safe_psql('app', "SELECT webhook_publish('a.hang2', '{}')
	FROM webhook_create_endpoint('h2', '$u/h2/hang', timeout => '60s')");
wait_received($rcv, sub { grep { $_->{body} =~ /a\.hang2/ } @{ $_[0] } }, 60, 'hang2');
my $log = slurp_file($node->logfile, $log_start);
unlike($log, qr/\[$pid\] (?:ERROR|FATAL)|terminated by signal/,
	'the worker logged no error and nothing crashed until here');
$node->safe_psql('postgres', 'DROP DATABASE app');
pass('DROP DATABASE with the worker connected and a request in flight');
ok($node->poll_query_until('postgres',
	"SELECT count(*) = 0 FROM pg_stat_activity WHERE backend_type = 'webhook worker'"),
	'no worker without the database');

done_testing();
