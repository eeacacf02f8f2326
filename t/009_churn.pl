# Concurrent writers while endpoints churn: four sessions insert into a
# watched table and publish, while endpoints are created, disabled,
# enabled, rotated and deleted under them (the untouched endpoint's secret
# rotates away and back, so its receiver keeps verifying).  No writer fails, nothing
# deadlocks, and the endpoint nobody touches receives every committed event
# exactly once or more, under one webhook-id each.
use strict;
use warnings;
use FindBin;
use lib $FindBin::Bin;

use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);
use WebhookTest;

my $node = start_node('churn', "webhook.max_connections = 64\n");
my $rcv = start_receiver('churn');
my $u = $rcv->{url};

$node->safe_psql('postgres', qq{
	CREATE TABLE orders (id bigserial PRIMARY KEY, v int NOT NULL);
	SELECT webhook_watch('orders');
	SELECT webhook_create_endpoint('stable', '$u/stable/ok', secret => '$SECRET', max_in_flight => 64);
});

my $script = PostgreSQL::Test::Utils::tempdir() . '/write.sql';
open my $fh, '>', $script or die;
print $fh "INSERT INTO orders (v) VALUES (1);\nSELECT webhook_publish('pub.x', '{\"n\": 1}');\n";
close $fh;
my ($out, $err) = ('', '');
my $bench = IPC::Run::start(
	[ 'pgbench', '-n', '-c', '4', '-j', '2', '-T', '8', '-f', $script, '-d', $node->connstr('postgres') ],
	'>', \$out, '2>', \$err);

# churn until the writers are done
my $rounds = 0;
my $t0 = time();
while ($bench->pumpable && time() - $t0 < 60)
{
	$rounds++;
	$node->safe_psql('postgres', qq{
		SELECT webhook_create_endpoint('churn$rounds', '$u/churn/ok', event_types => '{orders.*}') AS id \\gset
		SELECT webhook_disable(:id, 'churn');
		SELECT webhook_enable(:id);
		SELECT webhook_rotate_secret(:id);
		SELECT webhook_delete_endpoint(id) FROM webhook_endpoints WHERE name = 'churn' || ($rounds - 1);
		-- the stable endpoint's secret rotates away and back: the receiver's
		-- secret is always the current one or still within its grace
		SELECT webhook_rotate_secret(id, CASE WHEN $rounds % 2 = 1 THEN NULL ELSE '$SECRET' END, '1 hour')
		  FROM webhook_endpoints WHERE name = 'stable';
	});
	$bench->pump_nb;
}
$bench->finish;
is($?, 0, 'pgbench finished without a failed transaction') or diag($err);
note("$rounds rounds of endpoint churn during the writes");
cmp_ok($rounds, '>=', 5, 'endpoints churned while the writers ran');

my $committed = $node->safe_psql('postgres', "SELECT (SELECT count(*) FROM orders) + (SELECT count(*) FROM webhook_events WHERE type = 'pub.x')");
note("$committed events committed");
cmp_ok($committed, '>=', 1000, 'enough writes to matter');

ok($node->poll_query_until('postgres', qq{
	SELECT count(*) = $committed FROM webhook_deliveries d JOIN webhook_endpoints e ON e.id = d.endpoint_id
	 WHERE e.name = 'stable' AND d.status = 'delivered'}), 'every committed event delivered to the stable endpoint');
my @got = grep { $_->{path} eq '/stable/ok' } @{ received($rcv) };
my %ids = map { $_->{id} => 1 } @got;
is(scalar(keys %ids), $committed, 'distinct webhook-ids received equal events committed');
is(scalar(grep { !$_->{verified} } @got), 0, 'every request verified');
note(scalar(@got) - scalar(keys %ids) . ' duplicates');
is($node->safe_psql('postgres', "SELECT count(*) FROM webhook_deliveries WHERE status = 'in_flight'"),
	'0', 'nothing left in flight');
unlike(slurp_file($node->logfile), qr/deadlock detected|terminated by signal/, 'no deadlock, no crash');

done_testing();
