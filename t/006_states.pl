# Endpoint states: the circuit breaker stops hammering a failing receiver
# (a handful of probes, no attempts used up while open, nothing lost), a
# success closes it, 410 Gone disables, webhook.pause_after pauses and
# webhook_resume brings everything through; every change is logged and
# announced on webhook_alerts, and so is every dead letter.
use strict;
use warnings;
use FindBin;
use lib $FindBin::Bin;

use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use WebhookTest;

my $node = start_node('states', "webhook.breaker_failures = 3\nwebhook.breaker_cooldown = '1s'\n");
my $rcv = start_receiver('states');
my $u = $rcv->{url};

my $listener = $node->background_psql('postgres');
$listener->query_safe('LISTEN webhook_alerts');

sub requests_to
{
	my ($prefix) = @_;
	return scalar(grep { index($_->{path}, "/$prefix/") == 0 } @{ received($rcv) });
}

sub state_of
{
	my ($name) = @_;
	return $node->safe_psql('postgres', "SELECT state FROM webhook_endpoints WHERE name = '$name'");
}

# 1. circuit breaker: 20 events to a receiver answering 503
my $brk = $node->safe_psql('postgres', qq{
	SELECT webhook_create_endpoint('brk', '$u/brk/status/503', event_types => '{brk.*}',
	                               retry_schedule => '{1s,1s,1s,1s}')});
$node->safe_psql('postgres', "SELECT count(webhook_publish('brk.x', jsonb_build_object('i', i))) FROM generate_series(1, 20) i");
ok($node->poll_query_until('postgres', "SELECT state = 'circuit_open' FROM webhook_endpoints WHERE id = $brk"),
	'the circuit opens after failures in a row');
# probes: one request per cool-down (1 s, 2 s, 4 s...), never the whole
# queue; requests sent before the circuit opened started before state_since
my $probes_q = "SELECT count(*) FROM webhook_attempts a JOIN webhook_endpoints e ON e.id = a.endpoint_id
	WHERE e.id = $brk AND a.started_at > e.state_since";
$node->poll_query_until('postgres', "SELECT ($probes_q) >= 2") or diag('no two probes');
my $probes = $node->safe_psql('postgres', $probes_q);
cmp_ok($probes, '<=', 3, "while open only single probes are sent ($probes so far)");
is($node->safe_psql('postgres', "SELECT count(*) FROM webhook_deliveries WHERE endpoint_id = $brk AND status = 'dead'"),
	'0', 'nothing dead-lettered while the circuit is open');
like($node->safe_psql('postgres', "SELECT state_reason FROM webhook_endpoint_health WHERE endpoint_id = $brk"),
	qr/failed requests in a row; last: HTTP 503/, 'the health view gives the reason');

# the receiver comes back: the next probe succeeds, the circuit closes, all 20 arrive
$node->safe_psql('postgres', "UPDATE webhook_endpoints SET url = '$u/brk/ok' WHERE id = $brk");
ok($node->poll_query_until('postgres',
	"SELECT count(*) = 20 FROM webhook_deliveries WHERE endpoint_id = $brk AND status = 'delivered'"),
	'after a successful probe every event is delivered');
is(state_of('brk'), 'active', 'circuit closed');
my $total = requests_to('brk');
cmp_ok($total, '<=', 20 + 20 + 8, "requests in all: $total (the first wave, a few probes, the deliveries)");
is($node->safe_psql('postgres', "SELECT consecutive_failures FROM webhook_endpoint_health WHERE endpoint_id = $brk"),
	'0', 'failures in a row reset');

# 2. 410 Gone disables the endpoint; its deliveries wait
my $gone = $node->safe_psql('postgres', qq{
	SELECT webhook_create_endpoint('gone', '$u/gone/status/410', event_types => '{gone.*}')});
$node->safe_psql('postgres', "SELECT webhook_publish('gone.x', '{}')");
ok($node->poll_query_until('postgres', "SELECT state = 'disabled' FROM webhook_endpoints WHERE id = $gone"),
	'410 Gone disables the endpoint');
like($node->safe_psql('postgres', "SELECT state_reason FROM webhook_endpoints WHERE id = $gone"),
	qr/410 Gone/, 'with the reason');
is($node->safe_psql('postgres', "SELECT status FROM webhook_deliveries WHERE endpoint_id = $gone"),
	'pending', 'its delivery waits');

# 3. auto-pause: every request failing for webhook.pause_after
$node->append_conf('postgresql.conf', "webhook.pause_after = '2s'\nwebhook.breaker_failures = 0\n");
$node->reload;
$node->poll_query_until('postgres', "SELECT current_setting('webhook.pause_after') = '2s'");
my $pz = $node->safe_psql('postgres', qq{
	SELECT webhook_create_endpoint('pz', '$u/pz/status/500', event_types => '{pz.*}',
	                               retry_schedule => '{0.3s,0.3s,0.3s,0.3s,0.3s,0.3s,0.3s,0.3s,0.3s,0.3s,0.3s,0.3s,0.3s,0.3s,0.3s,0.3s,0.3s,0.3s,0.3s,0.3s}')});
$node->safe_psql('postgres', "SELECT count(webhook_publish('pz.x', jsonb_build_object('i', i))) FROM generate_series(1, 5) i");
ok($node->poll_query_until('postgres', "SELECT state = 'paused' FROM webhook_endpoints WHERE id = $pz"),
	'paused after failing for webhook.pause_after');
my $at_pause = requests_to('pz');
is($node->safe_psql('postgres', "SELECT count(*) FROM webhook_deliveries WHERE endpoint_id = $pz AND status = 'dead'"),
	'0', 'nothing dead when paused');
# paused means not attempted: a marker on another endpoint goes through meanwhile
$node->safe_psql('postgres', "SELECT webhook_publish('brk.marker', '{}')");
wait_received($rcv, sub { grep { $_->{body} =~ /brk\.marker/ } @{ $_[0] } }, 60, 'marker');
# requests that were in flight when it paused may still land
cmp_ok(requests_to('pz'), '<=', $at_pause + 5, 'no new requests while paused');
$node->safe_psql('postgres', "UPDATE webhook_endpoints SET url = '$u/pz/ok' WHERE id = $pz; SELECT webhook_resume($pz)");
ok($node->poll_query_until('postgres',
	"SELECT count(*) = 5 FROM webhook_deliveries WHERE endpoint_id = $pz AND status = 'delivered'"),
	'webhook_resume: everything delivered, nothing lost');

# 4. a dead letter is announced too
$node->safe_psql('postgres', qq{
	SELECT webhook_create_endpoint('dl', '$u/dl/status/500', event_types => '{dl.*}', retry_schedule => '{}');
	SELECT webhook_publish('dl.x', '{}')});
$node->poll_query_until('postgres', "SELECT count(*) = 1 FROM webhook_dead_letters WHERE event_type = 'dl.x'");

# 5. recovery of that dead letter and replay of a delivered delivery: same webhook-id again
my ($dl_ep, $dl_id) = split /\|/, $node->safe_psql('postgres',
	"SELECT endpoint_id, delivery_id FROM webhook_dead_letters WHERE event_type = 'dl.x'");
$node->safe_psql('postgres', qq{
	UPDATE webhook_endpoints SET url = '$u/dl/ok' WHERE id = $dl_ep;
	SELECT webhook_recover($dl_ep, now() - interval '1 hour')});
ok($node->poll_query_until('postgres', "SELECT status = 'delivered' FROM webhook_deliveries WHERE id = $dl_id"),
	'webhook_recover: the dead letter is delivered');
$node->safe_psql('postgres', "SELECT webhook_replay($dl_id)");
my $dl_reqs = wait_received($rcv, sub { scalar(grep { $_->{path} eq '/dl/ok' } @{ $_[0] }) >= 2 }, 60, 'replay');
my @dl = grep { index($_->{path}, '/dl/') == 0 } @$dl_reqs;
is(scalar(keys %{ { map { $_->{id} => 1 } @dl } }), 1, 'the dead attempt, the recovery and the replay share one webhook-id');

# 6. max_in_flight: never more than that many requests out to one endpoint
my $mif = $node->safe_psql('postgres', qq{
	SELECT webhook_create_endpoint('mif', '$u/mif/slow/300', event_types => '{mif.*}', max_in_flight => 2)});
$node->safe_psql('postgres', "SELECT count(webhook_publish('mif.x', jsonb_build_object('i', i))) FROM generate_series(1, 8) i");
my $throttled = 0;
wait_until(sub {
	$throttled ||= $node->safe_psql('postgres', "SELECT throttled FROM webhook_endpoint_health WHERE endpoint_id = $mif") eq 't';
	$node->safe_psql('postgres', "SELECT count(*) = 8 FROM webhook_deliveries WHERE endpoint_id = $mif AND status = 'delivered'") eq 't';
}, 60, 'mif delivered');
ok($throttled, 'the health view shows the endpoint throttled while deliveries wait for a free slot');
my @t = sort { $a <=> $b } map { $_->{t} } grep { index($_->{path}, '/mif/') == 0 } @{ received($rcv) };
is(scalar(@t), 8, 'all eight delivered');
# each request is held 300 ms: a third can start only after the first ended
my $min_gap = 1e9;
for my $i (0 .. $#t - 2)
{
	$min_gap = $t[ $i + 2 ] - $t[$i] if $t[ $i + 2 ] - $t[$i] < $min_gap;
}
cmp_ok($min_gap, '>=', 290, "never more than 2 in flight (closest third request: $min_gap ms)");

# every change was announced, with JSON a consumer can act on
my $out = $listener->query_safe('SELECT 1');
my @alerts = map { decode_json($_) } ($out =~ /payload "(\{.*?\})" received/g);
my %seen = map { ($_->{endpoint} // 'delivery') . ':' . ($_->{from} // '') . '->' . $_->{to} => 1 } @alerts;
ok($seen{'brk:active->circuit_open'}, 'alert: circuit opened');
ok($seen{'brk:circuit_open->active'}, 'alert: circuit closed');
ok($seen{'gone:active->disabled'}, 'alert: disabled by 410');
ok($seen{'pz:active->paused'}, 'alert: paused');
ok($seen{'pz:paused->active'}, 'alert: resumed');
ok(scalar(grep { ($_->{to} // '') eq 'dead' && $_->{delivery_id} } @alerts), 'alert: dead letter');
$listener->quit;

like(slurp_file($node->logfile), qr/endpoint "brk" active -> circuit_open/, 'state changes are logged');

done_testing();
