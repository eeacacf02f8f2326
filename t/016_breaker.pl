# The circuit breaker with its default settings (webhook.breaker_failures
# 10, webhook.breaker_cooldown 5s): a receiver that refuses the first
# request of every message and accepts its retry (one that reads a replica
# lagging a moment behind) gets all of a 2,000-event backlog, each event in
# two requests, while a receiver that refuses everything, sent the same
# backlog at the same time, is spared: its circuit opens after at most
# breaker_failures + max_in_flight requests, and then it gets single probes
# spaced by the doubling cool-down.
use strict;
use warnings;
use FindBin;
use lib $FindBin::Bin;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);
use WebhookTest;

# How long 2,000 events to the lagging receiver may take, from the publish
# to the last delivery.  Measured: about 10 s (the first burst, one 5 s
# cool-down, then the backlog), a minute under the sanitizers.  Before the
# probe preferred retries, the circuit never closed again: each probe was a
# first attempt, refused, and the cool-down doubled to 5 minutes.
my $bound = 120;
my $n = 2000;

my $node = start_node('breaker');
my $rcv = start_receiver('breaker');
my $u = $rcv->{url};

is($node->safe_psql('postgres',
		"SELECT current_setting('webhook.breaker_failures') || ' ' || current_setting('webhook.breaker_cooldown')"),
	'10 5s', 'the default breaker settings');

# /flaky/1: 500 to the first request of each webhook-id, 200 to the others
my $lag = $node->safe_psql('postgres', qq{
	SELECT webhook_create_endpoint('lag', '$u/lag/flaky/1', event_types => '{lag.*}',
	                               retry_schedule => '{300ms,1s,2s,5s,10s}')});
my $down = $node->safe_psql('postgres', qq{
	SELECT webhook_create_endpoint('down', '$u/down/status/503', event_types => '{down.*}',
	                               retry_schedule => '{300ms,1s,2s,5s,10s}')});

my $t0 = time();
$node->safe_psql('postgres', qq{
	SELECT count(webhook_publish('lag.x', jsonb_build_object('i', i))) FROM generate_series(1, $n) i;
	SELECT count(webhook_publish('down.x', jsonb_build_object('i', i))) FROM generate_series(1, $n) i});

# 1. the lagging receiver gets everything
my $status_q = "SELECT count(*) FILTER (WHERE status = 'delivered') || '/' || count(*) FILTER (WHERE status = 'dead')
	FROM webhook_deliveries WHERE endpoint_id = $lag";
my $last = '';
my $done = wait_until(sub {
	$last = $node->safe_psql('postgres', $status_q);
	$last eq "$n/0" || $last !~ m{/0$};
}, $bound, "$n deliveries to the lagging receiver");
my $took = time() - $t0;
is($last, "$n/0", "lagging receiver: all $n delivered, none dead ($last after " . sprintf('%.1f', $took) . " s)");
cmp_ok($took, '<', $bound, "within $bound s");
note($node->safe_psql('postgres', qq{
	SELECT 'lag: ' || state || ', consecutive_failures ' || consecutive_failures FROM webhook_endpoint_health
	 WHERE endpoint_id = $lag}));
is($node->safe_psql('postgres', "SELECT count(*) FROM webhook_deliveries WHERE endpoint_id = $lag AND attempts = 2"),
	$n, 'each in two attempts: the refused first one and its retry');
my $opened = () = slurp_file($node->logfile) =~ /endpoint "lag" active -> circuit_open/g;
note("the lagging receiver's circuit opened $opened times");

# 2. the receiver that refuses everything is spared: its circuit opened,
# and since then single probes went, the first a cool-down (5 s) after it
# opened, each next one twice as long after the one before
$node->poll_query_until('postgres', "SELECT state = 'circuit_open' FROM webhook_endpoints WHERE id = $down")
  or die 'the circuit did not open';
my $probes_q = "SELECT a.started_at FROM webhook_attempts a JOIN webhook_endpoints e ON e.id = a.endpoint_id
	WHERE e.id = $down AND a.started_at > e.state_since ORDER BY a.started_at";
ok(wait_until(sub { $node->safe_psql('postgres', "SELECT count(*) >= 2 FROM ($probes_q) p") eq 't' }, 60, 'two probes'),
	'probes went to the failing receiver');
my ($before, $gaps) = split /\|/, $node->safe_psql('postgres', qq{
	SELECT (SELECT count(*) FROM webhook_attempts a WHERE a.endpoint_id = $down AND a.started_at <= e.state_since),
	       (SELECT string_agg(round(g.s, 2)::text, ' ' ORDER BY g.t)
	          FROM (SELECT p.t, extract(epoch FROM p.t - coalesce(lag(p.t) OVER (ORDER BY p.t), e.state_since)) AS s
	                  FROM ($probes_q) p(t)) g)
	  FROM webhook_endpoints e WHERE e.id = $down});
cmp_ok($before, '<=', 10 + 16,
	"failing receiver: $before requests before the circuit opened (at most breaker_failures + max_in_flight)");
my @gaps = split / /, $gaps;
my $cooldown = 5;
my $spaced = 1;
for my $g (@gaps)
{
	$spaced = 0 if $g < $cooldown - 0.01;
	$cooldown = $cooldown * 2 > 300 ? 300 : $cooldown * 2;
}
ok($spaced, "then single probes, spaced by the doubling cool-down: s since the opening, then since each probe: @gaps");
is($node->safe_psql('postgres', "SELECT state FROM webhook_endpoints WHERE id = $down"),
	'circuit_open', 'its circuit stays open');
is($node->safe_psql('postgres', "SELECT count(*) FROM webhook_deliveries WHERE endpoint_id = $down AND status = 'dead'"),
	'0', 'and nothing of its backlog is dead');

done_testing();
