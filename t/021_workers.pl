# webhook.workers = 2: a database's endpoints are split between two
# delivery workers (endpoint id % 2).  Both run and show in webhook_workers;
# each endpoint's requests come from one of them (the lease token carries
# the worker's share) and keep its max_in_flight; under load nothing is
# sent twice.  The second worker stopped: the first takes back what it
# left in flight (resent: at least once), serves its share meanwhile, and
# starts it again.  The first worker stopped: the
# second leaves with it and both come back.
use strict;
use warnings;
use FindBin;
use lib $FindBin::Bin;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use WebhookTest;

my $node = start_node('workers', "webhook.workers = 2\nmax_worker_processes = 16\n");
my $rcv = start_receiver('workers');
my $u = $rcv->{url};

# The pids of the database's delivery workers, once all $n of them run
# (none of those in @old, when given).
sub workers
{
	my ($n, @old) = @_;
	my $not = @old ? ' AND NOT (worker_pids && ARRAY[' . join(',', @old) . '])' : '';
	$node->poll_query_until('postgres',
		"SELECT cardinality(worker_pids) = $n AND array_position(worker_pids, NULL) IS NULL$not FROM webhook_workers WHERE database = 'postgres'")
	  or die 'workers: ' . $node->safe_psql('postgres', 'SELECT * FROM webhook_workers');
	return split /,/,
	  $node->safe_psql('postgres',
		"SELECT array_to_string(worker_pids, ',') FROM webhook_workers WHERE database = 'postgres'");
}

# 1. two workers, the first one the launcher's
my @pids = workers(2);
is($pids[0], $node->safe_psql('postgres', "SELECT worker_pid FROM webhook_workers WHERE database = 'postgres'"),
	'worker_pids starts with the first worker');
is($node->safe_psql('postgres',
		"SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'webhook worker' AND pid IN ($pids[0], $pids[1])"),
	'2', 'both are delivery workers in pg_stat_activity');
ok($node->wait_for_log(qr/webhook worker 2 of 2 serving database "postgres"/), 'the second says so in the log');

# 2. four endpoints (ids 1 to 4), slow receivers: while requests are out,
# each endpoint's leases carry its share, and none has more than its
# max_in_flight out
my @ep = map {
	$node->safe_psql('postgres', qq{
		SELECT webhook_create_endpoint('w$_', '$u/w$_/slow/200', event_types => '{w.*}',
		                               secret => '$SECRET', max_in_flight => 3)})
} 1 .. 4;
is(join(',', map { $_ % 2 } @ep), '1,0,1,0', 'the endpoints fall in both shares');
# and two claimed by the other claims: a batch endpoint (id 5, the
# second worker's) and an ordered one (id 6, the first's)
my $eb = $node->safe_psql('postgres', qq{
	SELECT webhook_create_endpoint('wb', '$u/wb/slow/200', event_types => '{wb.*}', secret => '$SECRET',
	                               format => 'batch', batch_size => 5, max_in_flight => 2)});
my $eo = $node->safe_psql('postgres', qq{
	SELECT webhook_create_endpoint('wo', '$u/wo/slow/100', event_types => '{wo.*}', secret => '$SECRET',
	                               ordered => true, max_in_flight => 3)});
is("$eb $eo", '5 6', 'the batch endpoint is share 1, the ordered one share 0');
$node->safe_psql('postgres', qq{
	SELECT count(webhook_publish('w.x', jsonb_build_object('i', i))) FROM generate_series(1, 40) i;
	SELECT count(webhook_publish('wb.x', jsonb_build_object('i', i))) FROM generate_series(1, 40) i;
	SELECT count(webhook_publish('wo.x', jsonb_build_object('i', i), NULL, 'k' || i % 4)) FROM generate_series(1, 20) i;});
my ($both, $wrong, $most) = (0, 0, 0);
wait_until(sub {
	my ($shares, $bad, $max) = split /\|/, $node->safe_psql('postgres', q{
		SELECT count(DISTINCT lease_token >> 56),
		       count(*) FILTER (WHERE lease_token >> 56 <> endpoint_id % 2),
		       coalesce(max(n), 0)
		  FROM webhook_deliveries d
		  LEFT JOIN (SELECT endpoint_id AS e, count(*) AS n FROM webhook_deliveries
		              WHERE status = 'in_flight' AND endpoint_id <> 5 GROUP BY 1) m ON m.e = d.endpoint_id
		 WHERE status = 'in_flight'});
	$both ||= $shares == 2;
	$wrong += $bad;
	$most = $max if $max > $most;
	$node->safe_psql('postgres', "SELECT count(*) = 220 FROM webhook_deliveries WHERE status = 'delivered'") eq 't';
}, 120, '220 delivered');
ok($both, 'both workers had requests out at once');
is($wrong, 0, "every lease was taken by the endpoint's own worker (plain, batch and ordered claims)");
cmp_ok($most, '<=', 3, "no endpoint had more than its max_in_flight out ($most)");

# 3. under load, fast receivers: every delivery made exactly once
$node->safe_psql('postgres', "SELECT webhook_update_endpoint(id, url => replace(url, '/slow/200', '/ok')) FROM webhook_endpoints");
$node->safe_psql('postgres', "SELECT count(webhook_publish('w.y', jsonb_build_object('i', i))) FROM generate_series(1, 1000) i");
ok($node->poll_query_until('postgres', "SELECT count(*) = 4220 FROM webhook_deliveries WHERE status = 'delivered'"),
	'4,000 more delivered');
my @all = @{ received($rcv) };
is(scalar(grep { !$_->{verified} } @all), 0, 'every request verifies');
my $got = [ grep { $_->{path} =~ m{^/w\d/} } @all ];
my %per_id;
$per_id{ ($_->{path} =~ m{^/(w\d)/})[0] . ' ' . $_->{id} }++ for @$got;
is(scalar(@$got), 4160, 'one request per delivery');
is(scalar(grep { $_ > 1 } values %per_id), 0, 'no endpoint received a webhook-id twice');

# 4. the second worker stops with requests out (a receiver that hangs;
# its URL is changed meanwhile, which requests out do not see): the first
# takes back what it held and sends it again at once, and serves its share
# (endpoints 1 and 3) until it is back
$node->safe_psql('postgres', "SELECT webhook_update_endpoint($ep[0], url => '$u/w1/hang', timeout => '60s')");
$node->safe_psql('postgres', "SELECT count(webhook_publish('w.z', '{}')) FROM generate_series(1, 2)");
ok($node->poll_query_until('postgres',
		"SELECT count(*) = 2 FROM webhook_deliveries WHERE endpoint_id = $ep[0] AND status = 'in_flight' AND lease_token >> 56 = 1"),
	"the second worker holds endpoint 1's two requests");
$node->safe_psql('postgres', "SELECT webhook_update_endpoint($ep[0], url => '$u/w1/ok')");
$node->safe_psql('postgres', "SELECT pg_terminate_backend($pids[1])");
ok($node->poll_query_until('postgres',
		"SELECT worker_pids[2] IS NULL AND worker_pids[1] = $pids[0] FROM webhook_workers WHERE database = 'postgres'"),
	'the second worker is gone: worker_pids shows its share without one');
ok($node->poll_query_until('postgres',
		"SELECT count(*) = 0 FROM webhook_deliveries WHERE endpoint_id = $ep[0] AND status <> 'delivered'"),
	"endpoint 1's two requests are sent again and delivered");
is($node->safe_psql('postgres', "SELECT worker_pids[2] IS NULL FROM webhook_workers WHERE database = 'postgres'"),
	't', '... by the first worker, before the second is back');
ok($node->wait_for_log(qr/returned 2 in-flight deliveries to the queue/), 'the first worker logs what it took back');
# endpoint 3 (share 1) is served meanwhile, by the first worker
$node->poll_query_until('postgres',
	"SELECT count(*) = 0 FROM webhook_deliveries WHERE endpoint_id = $ep[2] AND status <> 'delivered'") or die;
my $before = $node->safe_psql('postgres', "SELECT count(*) FROM webhook_deliveries WHERE endpoint_id = $ep[2]");
$node->safe_psql('postgres', "SELECT webhook_update_endpoint($ep[2], url => '$u/w3/slow/300')");
$node->safe_psql('postgres', "SELECT count(webhook_publish('w.v', '{}')) FROM generate_series(1, 5)");
ok($node->poll_query_until('postgres',
		"SELECT EXISTS (SELECT FROM webhook_deliveries WHERE endpoint_id = $ep[2] AND status = 'in_flight' AND lease_token >> 56 = 0)"),
	"the first worker leases endpoint 3's deliveries (share 1) under its own share");
ok($node->poll_query_until('postgres',
		"SELECT count(*) = $before + 5 FROM webhook_deliveries WHERE endpoint_id = $ep[2] AND status = 'delivered'"),
	"endpoint 3's new events are delivered while the second worker is away");
is($node->safe_psql('postgres', "SELECT worker_pids[2] IS NULL FROM webhook_workers WHERE database = 'postgres'"),
	't', '... by the first worker alone');
# the first worker starts a second again
my @again = workers(2, $pids[1]);
is($again[0], $pids[0], 'the first worker stayed');
$node->safe_psql('postgres', "SELECT count(webhook_publish('w.u', '{}')) FROM generate_series(1, 5)");
ok($node->poll_query_until('postgres',
		"SELECT count(*) = 0 FROM webhook_deliveries WHERE status <> 'delivered'"),
	'and every endpoint is served again');
my %sent;
$sent{ $_->{id} }++ for grep { index($_->{path}, '/w1/') == 0 } @{ received($rcv) };
is(scalar(grep { $_ > 2 } values %sent), 0, "endpoint 1: at most the one request in flight at the stop again");
is(scalar(grep { $_ == 2 } values %sent), 2, '... which both were');

# 5. the first worker stops: the second leaves with it, and both come back
$node->safe_psql('postgres', "SELECT pg_terminate_backend($pids[0])");
my @new = workers(2, @again);
isnt($new[0], $pids[0], 'a new first worker');
$node->safe_psql('postgres', "SELECT count(webhook_publish('w.after', '{}')) FROM generate_series(1, 3)");
ok($node->poll_query_until('postgres', "SELECT count(*) = 0 FROM webhook_deliveries WHERE status <> 'delivered'"),
	'and delivering');

$node->stop;

# 6. a database waiting for a background worker slot comes before a second
# worker: with five slots (the launcher, the logical replication launcher,
# and the first worker, its helper and the second worker of "postgres"), a
# CREATE EXTENSION in "other" finds none free; the first worker of
# "postgres" stops its second, and "other" is served
my $small = start_node('workers_slots',
	"webhook.database_name = ''\nwebhook.workers = 2\nmax_worker_processes = 5\n", no_extension => 1);
$small->safe_psql('postgres', 'CREATE DATABASE other');
$small->safe_psql('postgres', 'CREATE EXTENSION webhook');
ok($small->poll_query_until('postgres',
		"SELECT cardinality(worker_pids) = 2 AND array_position(worker_pids, NULL) IS NULL AND fanout_pid IS NOT NULL
		   FROM webhook_workers WHERE database = 'postgres'"),
	'"postgres" has both workers and the helper: every slot is taken')
  or diag($small->safe_psql('postgres', 'SELECT * FROM webhook_workers'));
ok($small->poll_query_until('postgres', "SELECT state = 'no extension' FROM webhook_workers WHERE database = 'other'"),
	'"other" has no extension yet');
$small->safe_psql('other', 'CREATE EXTENSION webhook');
ok($small->poll_query_until('postgres', "SELECT state = 'served' FROM webhook_workers WHERE database = 'other'"),
	'"other" is served')
  or diag($small->safe_psql('postgres', 'SELECT * FROM webhook_workers'));
ok($small->wait_for_log(qr/stopping the further delivery workers of database "postgres": another database waits/),
	'after "postgres" stopped its second worker for it');
is($small->safe_psql('postgres', "SELECT worker_pids[2] IS NULL FROM webhook_workers WHERE database = 'postgres'"),
	't', '"postgres" is served by its first worker');
$small->stop;
done_testing();
