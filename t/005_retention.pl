# Retention: under continuous load with a short webhook.retention, the
# worker purges delivered deliveries, their attempts, finished events and
# dead letters in small steps, so the tables stay bounded; nothing still
# waiting is ever purged.
use strict;
use warnings;
use FindBin;
use lib $FindBin::Bin;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);
use WebhookTest;

# the breaker would stop the always-failing endpoint: not this test's subject
my $node = start_node('retention',
	"webhook.retention = '1s'\nwebhook.dead_letter_retention = '2s'\nwebhook.breaker_failures = 0\n");
my $rcv = start_receiver('retention');
$node->safe_psql('postgres', qq{
	SELECT webhook_create_endpoint('ok', '$rcv->{url}/ok/ok', event_types => '{load.*}');
	SELECT webhook_create_endpoint('dead', '$rcv->{url}/dead/status/500', event_types => '{doomed.*}',
	                               retry_schedule => '{}');
	-- a disabled endpoint's deliveries wait: retention must leave them alone
	SELECT webhook_create_endpoint('waiting', '$rcv->{url}/waiting/ok', event_types => '{load.*}');
	SELECT webhook_disable(id, 'kept waiting') FROM webhook_endpoints WHERE name = 'waiting';
});

sub sizes
{
	return split /\|/, $node->safe_psql('postgres', q{
		SELECT (SELECT count(*) FROM webhook_deliveries d JOIN webhook_endpoints e ON e.id = d.endpoint_id
		         WHERE e.name = 'ok'),
		       (SELECT count(*) FROM webhook_attempts),
		       (SELECT count(*) FROM webhook_events)});
}

# ten seconds of load: rounds of 200 events, each waited for before the next
my ($published, $max_deliveries, $max_attempts) = (0, 0, 0);
my $t0 = time();
my $round = 0;
while (time() - $t0 < 10)
{
	$round++;
	$node->safe_psql('postgres',
		"SELECT count(webhook_publish('load.r$round', jsonb_build_object('i', i))) FROM generate_series(1, 200) i;
		 SELECT webhook_publish('doomed.r$round', '{}')");
	$published += 200;
	$node->poll_query_until('postgres', qq{
		SELECT NOT EXISTS (SELECT 1 FROM webhook_deliveries d JOIN webhook_endpoints e ON e.id = d.endpoint_id
		                    WHERE e.name = 'ok' AND d.status <> 'delivered')
		   AND NOT EXISTS (SELECT 1 FROM webhook_events x WHERE NOT webhook_fanned_out(x.txid, x.id))})
	  or die "round $round not delivered";
	if (time() - $t0 > 4)    # past the first retention periods
	{
		my ($d, $a) = sizes();
		$max_deliveries = $d if $d > $max_deliveries;
		$max_attempts = $a if $a > $max_attempts;
	}
}
note("$round rounds, $published events delivered; at most $max_deliveries deliveries and $max_attempts attempts kept");
cmp_ok($published, '>=', 2000, 'enough load to matter');
cmp_ok($max_deliveries, '<', $published / 2, 'delivered deliveries purged while the load runs');
cmp_ok($max_attempts, '<', $published / 2, 'attempts purged while the load runs');

# after the load, everything finished goes; what waits stays
ok($node->poll_query_until('postgres', q{
	SELECT (SELECT count(*) FROM webhook_deliveries WHERE status IN ('delivered', 'dead')) = 0
	   AND (SELECT count(*) FROM webhook_attempts) = 0}), 'all finished deliveries and attempts purged');
is($node->safe_psql('postgres', q{
	SELECT count(*) = (SELECT count(*) FROM webhook_events WHERE type LIKE 'load.%')
	  FROM webhook_deliveries d JOIN webhook_endpoints e ON e.id = d.endpoint_id
	 WHERE e.name = 'waiting' AND d.status = 'pending'}), 't',
	'deliveries waiting for a disabled endpoint and their events are kept');
ok($node->poll_query_until('postgres', q{
	SELECT count(*) = 0 FROM webhook_events WHERE type LIKE 'doomed.%'}),
	'dead letters purged after webhook.dead_letter_retention, and their events');

# retention off: nothing is purged
$node->append_conf('postgresql.conf', "webhook.retention = 0\nwebhook.dead_letter_retention = 0\n");
$node->reload;
$node->poll_query_until('postgres', "SELECT current_setting('webhook.retention') = '0'");
$node->safe_psql('postgres', "SELECT webhook_publish('doomed.kept', '{}')");
$node->poll_query_until('postgres', "SELECT count(*) = 1 FROM webhook_dead_letters WHERE event_type = 'doomed.kept'")
  or die 'doomed.kept not dead';
# a purge step runs every second; three of them later the row is still there
$node->poll_query_until('postgres', "SELECT now() - max(died_at) > interval '3 s' FROM webhook_dead_letters");
is($node->safe_psql('postgres', "SELECT count(*) FROM webhook_dead_letters WHERE event_type = 'doomed.kept'"),
	'1', 'webhook.dead_letter_retention = 0 keeps dead letters');

# The fan-out removes the ticks it has passed: after 12,000 events in 24
# transactions, none is left behind but the newest
$node->safe_psql('postgres',
	"SELECT count(webhook_publish('nobody.listens', jsonb_build_object('i', i))) FROM generate_series(1, 500) i")
  for 1 .. 24;
ok($node->poll_query_until('postgres', q{
	SELECT NOT EXISTS (SELECT 1 FROM webhook_events x WHERE NOT webhook_fanned_out(x.txid, x.id))
	   AND (SELECT count(*) FROM webhook_ticks) <= 1}),
	'every event fanned out, and the ticks passed removed');
unlike(slurp_file($node->logfile), qr/(?:ERROR|FATAL)|TRAP/, 'and no error logged');

done_testing();
