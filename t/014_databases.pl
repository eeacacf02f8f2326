# Every database that has the extension is served: a worker starts at
# CREATE EXTENSION (no restart), three databases deliver at once, one is
# dropped mid-run without being blocked and without disturbing the others,
# DROP EXTENSION stops a database's worker, and when max_worker_processes
# runs out the launcher says so once in the log and webhook_workers shows it.
use strict;
use warnings;
use FindBin;
use lib $FindBin::Bin;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);
use WebhookTest;

# every database, not only postgres (start_node's default)
# (a worker and a fan-out helper per served database: room for five)
my $node = start_node('databases', "webhook.database_name = ''\nmax_worker_processes = 16\n", no_extension => 1);
my $rcv = start_receiver('databases');
my $url = $rcv->{url};

sub workers
{
	my ($db) = @_;
	return $node->safe_psql($db // 'db1',
		"SELECT string_agg(database || '=' || state, ' ' ORDER BY database) FROM webhook_workers");
}

for my $db (qw(db1 db2 db3 db4))
{
	$node->safe_psql('postgres', "CREATE DATABASE $db");
}
for my $i (1 .. 3)
{
	$node->safe_psql("db$i", qq{
		CREATE EXTENSION webhook;
		SELECT webhook_create_endpoint('ep', '$url/db$i/slow/5', event_types => '{load.*}', max_in_flight => 4);
	});
}
ok($node->poll_query_until('db1',
		"SELECT count(*) = 3 FROM webhook_workers WHERE database IN ('db1', 'db2', 'db3') AND state = 'served'"),
	'a worker serves each database as soon as the extension is created there');
ok($node->poll_query_until('db1',
		"SELECT count(*) = 2 FROM webhook_workers WHERE database IN ('postgres', 'db4') AND state = 'no extension'"),
	'databases without the extension have no worker') or diag(workers());
is($node->safe_psql('postgres',
		"SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'webhook worker' AND datname IN ('postgres', 'db4')"),
	'0', 'no worker stays in them');

# 400 events in each database, delivered at once; db3 is dropped while its
# deliveries are on their way (each request takes 5 ms, four at a time)
my $n = 400;
for my $i (1 .. 3)
{
	$node->safe_psql("db$i",
		"SELECT count(webhook_publish('load.e', jsonb_build_object('i', i))) FROM generate_series(1, $n) i");
}
wait_until(sub { scalar(grep { $_->{path} =~ m{^/db3/} } @{ received($rcv) }) >= 20 }, 60, 'db3 delivering');
my $t0 = time();
my ($ret, $out, $err) = $node->psql('postgres', 'DROP DATABASE db3', timeout => 60);
my $drop_s = time() - $t0;
is($ret, 0, 'DROP DATABASE of a database being delivered succeeds') or diag($err);
cmp_ok($drop_s, '<', 30, sprintf('... without waiting for the worker (%.1f s)', $drop_s));

for my $i (1, 2)
{
	ok($node->poll_query_until("db$i",
			"SELECT count(*) = $n FROM webhook_deliveries WHERE status = 'delivered'"),
		"db$i: every event delivered");
	my %ids;
	$ids{ $_->{headers}{'webhook-id'} } = 1 for grep { $_->{path} =~ m{^/db$i/} } @{ received($rcv) };
	is(scalar keys %ids, $n, "db$i: each received");
}
ok($node->poll_query_until('db1', "SELECT NOT EXISTS (SELECT 1 FROM webhook_workers WHERE database = 'db3' OR database IS NULL)"),
	'the dropped database leaves webhook_workers') or diag(workers());
is($node->safe_psql('postgres', "SELECT count(*) FROM pg_stat_activity WHERE backend_type LIKE 'webhook%' AND datname = 'db3'"),
	'0', 'and has no process left');

# CREATE EXTENSION in a database that had none: served at once
$node->safe_psql('db4', qq{
	CREATE EXTENSION webhook;
	SELECT webhook_create_endpoint('ep', '$url/db4/ok');
	SELECT webhook_publish('late.e', '{}');
});
ok($node->poll_query_until('db4', "SELECT count(*) = 1 FROM webhook_deliveries WHERE status = 'delivered'"),
	'a database given the extension later is served without a restart');

# DROP EXTENSION: the worker leaves, and comes back with the extension
$node->safe_psql('db1', 'DROP EXTENSION webhook');
ok($node->poll_query_until('db2', "SELECT state = 'no extension' FROM webhook_workers WHERE database = 'db1'"),
	'DROP EXTENSION: the worker leaves') or diag(workers('db2'));
ok($node->poll_query_until('postgres',
		"SELECT count(*) = 0 FROM pg_stat_activity WHERE backend_type = 'webhook worker' AND datname = 'db1'"),
	'... and no worker process stays');
$node->safe_psql('db1', "CREATE EXTENSION webhook; SELECT webhook_create_endpoint('ep', '$url/db1again/ok'); SELECT webhook_publish('again.e', '{}')");
ok($node->poll_query_until('db1', "SELECT count(*) = 1 FROM webhook_deliveries WHERE status = 'delivered'"),
	'... and a new CREATE EXTENSION is served again');
# A launcher started again (killed here; the postmaster restarts it) finds
# the slots and the workers as they were: it neither starts a second worker
# nor stops the running ones
my $workers_before = $node->safe_psql('db2',
	"SELECT string_agg(database || ':' || worker_pid, ' ' ORDER BY database) FROM webhook_workers WHERE state = 'served'");
my $log_before = -s $node->logfile;
$node->safe_psql('postgres', "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE backend_type = 'webhook launcher'");
ok($node->poll_query_until('postgres',
		"SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'webhook launcher'"),
	'the launcher comes back');
$node->safe_psql('db2', "SELECT webhook_publish('load.after_launcher', '{}')");
ok($node->poll_query_until('db2', "SELECT count(*) = 1 FROM webhook_deliveries d JOIN webhook_events e ON e.id = d.event_id WHERE e.type = 'load.after_launcher' AND d.status = 'delivered'"),
	'the databases are served all along');
# the new launcher lists the databases at once; a database created now is
# listed by a later scan, so once it is served every scan that could have
# started a second worker has run (one would have logged leaving)
$node->safe_psql('postgres', 'CREATE DATABASE db5');
$node->safe_psql('db5', 'CREATE EXTENSION webhook');
ok($node->poll_query_until('db5', "SELECT count(*) = 1 FROM webhook_workers WHERE database = 'db5' AND state = 'served'"),
	'a database created after the restart is served');
is($node->safe_psql('db2',
		"SELECT string_agg(database || ':' || worker_pid, ' ' ORDER BY database) FROM webhook_workers WHERE state = 'served' AND database <> 'db5'"),
	$workers_before, 'the same workers serve the same databases');
my $log_after = slurp_file($node->logfile, $log_before);
unlike($log_after, qr/database ""|webhook worker serving database "db[1-4]"|slot is taken/,
	'no nameless message, no second worker started, none serving anew');
like($log_after, qr/webhook worker serving database "db5"/, '... though the log is read');
$node->stop;

# No background worker slot left: one line in the log, a state in the view
my $small = start_node('databases_small', "webhook.database_name = ''\nmax_worker_processes = 2\n", no_extension => 1);
for my $db (qw(s1 s2))
{
	$small->safe_psql('postgres', "CREATE DATABASE $db");
	$small->safe_psql($db, 'CREATE EXTENSION webhook');
}
ok($small->poll_query_until('s1', "SELECT count(*) >= 1 FROM webhook_workers WHERE state = 'waiting for a worker slot'"),
	'a database without a worker slot shows as waiting in webhook_workers')
  or diag($small->safe_psql('s1', 'SELECT * FROM webhook_workers'));
ok($small->wait_for_log(qr/webhook: no background worker slot is free to serve database "(postgres|s1|s2)"; trying again every 10 s/),
	'and the launcher says so in the log');
my $log = slurp_file($small->logfile);
my %lines;
$lines{$1}++ while $log =~ /no background worker slot is free to serve database "([^"]+)"/g;
ok(!grep({ $_ > 1 } values %lines), 'once per database');

done_testing();
