# Retries and throttled sends go out at their due time, not at the
# worker's next poll: with webhook.poll_interval at one hour, a retry due
# 1 s after a failure (exact delays: retry_jitter 0 on the endpoint) is
# sent after that second, for plain, batch and ordered endpoints, and a
# rate-limited endpoint drains at its rate.  Other endpoints keep the
# server-wide jitter.  How late they are is measured by bench/run.sh
# (retry lateness), not asserted here.
use strict;
use warnings;
use FindBin;
use lib $FindBin::Bin;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use WebhookTest;

# the circuit breaker is not this test's subject
my $node = start_node('on_time', "webhook.poll_interval = '1h'\nwebhook.retry_jitter = 0.5\nwebhook.breaker_failures = 0\n");
my $rcv = start_receiver('on_time');
my $u = $rcv->{url};
worker_pid($node);
$node->safe_psql('postgres', qq{
	SELECT webhook_create_endpoint('plain', '$u/plain/flaky/1', event_types => '{p.*}',
	                               retry_schedule => '{1s}', retry_jitter => 0);
	SELECT webhook_create_endpoint('batched', '$u/batched/flaky/1', event_types => '{b.*}',
	                               retry_schedule => '{1s}', retry_jitter => 0, format => 'batch');
	SELECT webhook_create_endpoint('ordered', '$u/ordered/flaky/1', event_types => '{o.*}',
	                               retry_schedule => '{1s}', retry_jitter => 0, ordered => true);
	SELECT webhook_create_endpoint('jittered', '$u/jittered/flaky/1', event_types => '{j.*}',
	                               retry_schedule => '{2s}');
	SELECT webhook_create_endpoint('limited', '$u/limited/ok', event_types => '{l.*}', rate_limit => 2);
});

# the first requests of each id, and their retries, in the receiver's log
sub gaps
{
	my ($prefix) = @_;
	my (%first, @gaps);
	for my $r (sort { $a->{t} <=> $b->{t} } grep { $_->{path} =~ m{^/$prefix/} } @{ received($rcv) })
	{
		my $id = $r->{headers}{'webhook-id'};
		if (!exists $first{$id}) { $first{$id} = $r->{t}; }
		else { push @gaps, $r->{t} - $first{$id}; }
	}
	return @gaps;
}

$node->safe_psql('postgres', q{
	SELECT webhook_publish('p.e', jsonb_build_object('i', i)) FROM generate_series(1, 5) i;
	SELECT webhook_publish('b.e', jsonb_build_object('i', i)) FROM generate_series(1, 5) i;
	SELECT webhook_publish('o.e', jsonb_build_object('i', i), ordering_key => 'k') FROM generate_series(1, 3) i;
	SELECT webhook_publish('j.e', jsonb_build_object('i', i)) FROM generate_series(1, 20) i;
	SELECT webhook_publish('l.e', jsonb_build_object('i', i)) FROM generate_series(1, 6) i;
});
ok($node->poll_query_until('postgres',
		"SELECT count(*) = 0 FROM webhook_deliveries WHERE status <> 'delivered'"),
	'every retry and throttled send went out with the poll an hour away');
for my $ep (qw(plain batched ordered))
{
	my @g = gaps($ep);
	ok(@g > 0 && !grep({ $_ < 1000 } @g), "$ep: retried after its 1 s delay, not earlier (" . join(', ', map { sprintf '%.0f ms', $_ } @g) . ')');
}
my @j = gaps('jittered');
note('jittered: ' . join(', ', map { sprintf '%.0f', $_ } @j));
is(scalar @j, 20, 'each jittered event retried once');
ok(!grep({ $_ < 1000 || $_ > 3100 } @j), 'server-wide jitter still spreads the others within +-50 % of 2 s');
my @distinct = do { my %s; grep { !$s{ int($_ / 100) }++ } @j };
cmp_ok(scalar @distinct, '>', 3, 'and spreads them');
my @limited = sort { $a <=> $b } map { $_->{t} } grep { $_->{path} =~ m{^/limited/} } @{ received($rcv) };
is(scalar @limited, 6, 'the rate-limited endpoint got all six');
cmp_ok($limited[-1] - $limited[0], '>=', 1500, 'at its rate of 2 per second');

# Switching an existing endpoint to exact delays takes effect: the worker,
# which holds each endpoint's retry_jitter, reloads when a direct UPDATE
# changes only that (as it does for every other setting;
# webhook_update_endpoint writes every column, so it always did).  The
# warm-up event makes sure the worker holds the endpoint before the update.
$node->safe_psql('postgres', qq{
	SELECT webhook_create_endpoint('switched', '$u/switched/flaky/1', event_types => '{s.*}',
	                               retry_schedule => '{2s}');
	SELECT webhook_publish('s.warm', '{}');
});
ok($node->poll_query_until('postgres', q{
	SELECT count(*) = 1 FROM webhook_deliveries d JOIN webhook_events e ON e.id = d.event_id
	 WHERE e.type = 's.warm' AND d.status = 'delivered'}), 'switched: the worker holds the endpoint');
my $warm = $node->safe_psql('postgres', "SELECT 'msg_' || id FROM webhook_events WHERE type = 's.warm'");
$node->safe_psql('postgres', q{
	UPDATE webhook_endpoints SET retry_jitter = 0 WHERE name = 'switched';
	SELECT webhook_publish('s.e', jsonb_build_object('i', i)) FROM generate_series(1, 10) i;
});
ok($node->poll_query_until('postgres',
		"SELECT count(*) = 0 FROM webhook_deliveries WHERE status <> 'delivered'"),
	'switched: every event delivered');
my %switched;
for my $r (sort { $a->{t} <=> $b->{t} } grep { $_->{path} =~ m{^/switched/} && $_->{headers}{'webhook-id'} ne $warm } @{ received($rcv) })
{
	push @{ $switched{ $r->{headers}{'webhook-id'} } }, $r->{t};
}
my @sg = map { $_->[1] - $_->[0] } values %switched;
is(scalar @sg, 10, 'switched: each event retried once');
ok(!grep({ $_ < 2000 } @sg), 'switched: after exactly its 2 s once retry_jitter => 0 was set (' . join(', ', map { sprintf '%.0f', $_ } sort { $a <=> $b } @sg) . ' ms)');

done_testing();
